"""What one API worker process holds and reuses: the Ollama client and the backends.

Backends are created on first use (or by :meth:`Services.warm_up` when the worker
starts) and kept for the life of the process: that is the warm path the CLIs
use. A bounded semaphore caps concurrent heavy requests per worker; a request
that waits longer than ``api.queue_timeout`` for a slot gets 503.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ai_local_core.backend_errors import ServiceBusy
from ai_local_core.config import Settings
from ai_local_core.errors import AiLocalCoreError
from ai_local_core.image.base import ImageBackend
from ai_local_core.image.loader import ImageLimits
from ai_local_core.image.service import create_image_backend
from ai_local_core.ollama.client import OllamaClient
from ai_local_core.translation.base import TranslationBackend
from ai_local_core.translation.service import create_translation_backend

__all__ = ["Services"]

logger = logging.getLogger(__name__)


class Services:
    """Per-process state of the API server."""

    def __init__(self, settings: Settings, *, client: OllamaClient | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else OllamaClient.from_settings(settings)
        self._image: ImageBackend | None = None
        self._translation: TranslationBackend | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.api.max_concurrent)
        self.warm_errors: dict[str, str] = {}
        self.warming = False

    @property
    def image_limits(self) -> ImageLimits:
        section = self.settings.image
        return section.limits.model_copy(
            update={"allow_local_paths": section.api_allow_local_paths}
        )

    @property
    def image_backend(self) -> ImageBackend:
        with self._lock:
            if self._image is None:
                self._image = create_image_backend(self.settings, client=self.client)
            return self._image

    @property
    def translation_backend(self) -> TranslationBackend:
        with self._lock:
            if self._translation is None:
                self._translation = create_translation_backend(self.settings, client=self.client)
            return self._translation

    def warm_up(self) -> None:
        """Load the backends now; failures are kept for ``/ready`` and logged, not raised."""
        self.warming = True
        try:
            for name in ("image", "translation"):
                try:
                    if name == "image":
                        self.image_backend.load()
                    else:
                        self.translation_backend.load()
                    self.warm_errors.pop(name, None)
                except AiLocalCoreError as exc:
                    self.warm_errors[name] = f"{exc.error_type}: {exc.message}"
                    logger.warning("warm-up of the %s backend failed: %s", name, exc.message)
        finally:
            self.warming = False

    def warm_up_in_background(self) -> threading.Thread:
        """Warm up in a daemon thread so the worker answers ``/health`` at once."""
        thread = threading.Thread(target=self.warm_up, name="warm-up", daemon=True)
        thread.start()
        return thread

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the worker's request slots; 503 after ``api.queue_timeout`` seconds."""
        if not self._slots.acquire(timeout=self.settings.api.queue_timeout):
            raise ServiceBusy(
                "server busy: all request slots are taken; retry later",
            )
        try:
            yield
        finally:
            self._slots.release()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether Ollama answers and the backends are loaded, with the details."""
        ollama_ok = self.client.ping(timeout=min(2.0, self.settings.ollama.timeouts.connect + 1))
        image = self._image
        translation = self._translation
        checks: dict[str, Any] = {
            "ollama": {"ok": ollama_ok, "url": self.client.base_url},
            "image": {
                "ok": bool(image and image.loaded),
                "backend": self.settings.image.backend,
                "model": image.model if image else None,
            },
            "translation": {
                "ok": bool(translation and translation.loaded),
                "backend": self.settings.translation.backend,
            },
        }
        for name, error in self.warm_errors.items():
            checks[name]["error"] = error
        if self.warming:
            checks["warming_up"] = True
        ready = all(check["ok"] for check in checks.values() if isinstance(check, dict))
        return ready, checks

    def close(self) -> None:
        self.client.close()
