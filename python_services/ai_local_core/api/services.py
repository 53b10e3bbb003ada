"""What one API worker process holds and reuses: the Ollama client and the backends.

Backends are created on first use (or by :meth:`Services.warm_up` when the worker
starts) and kept for the life of the process: that is the warm path the CLIs
use. A bounded semaphore caps concurrent heavy requests per worker; a request
that waits longer than ``api.queue_timeout`` for a slot gets 503.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, NamedTuple

from ai_local_core.config import Settings
from ai_local_core.errors import AiLocalCoreError, ServiceBusy
from ai_local_core.image.base import ImageBackend
from ai_local_core.image.loader import ImageLimits
from ai_local_core.image.service import create_image_backend
from ai_local_core.ollama.client import OllamaClient
from ai_local_core.translation.base import TranslationBackend
from ai_local_core.translation.service import create_translation_backend

__all__ = ["Services", "WarmState"]

logger = logging.getLogger(__name__)


class WarmState(NamedTuple):
    """What the warm-up has found, as one immutable snapshot: ``/ready`` reads it once
    while the warm-up thread publishes a new one (never changing one that was read)."""

    #: Backend name to ``"error_type: message"`` of its last failed warm-up.
    errors: Mapping[str, str]
    #: Whether a warm-up is running.
    warming: bool


class Services:
    """Per-process state of the API server."""

    def __init__(self, settings: Settings, *, client: OllamaClient | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else OllamaClient.from_settings(settings)
        self._image: ImageBackend | None = None
        self._translation: TranslationBackend | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.api.max_concurrent)
        # Image fetches and decodes have their own slots: a slow image host holds one of
        # these, never a request slot that a completion or a translation needs.
        self._fetch_slots = threading.BoundedSemaphore(settings.api.max_concurrent)
        self._warm_lock = threading.Lock()
        self._warm_runs = 0
        self._warm = WarmState(MappingProxyType({}), warming=False)

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

    @property
    def warm_state(self) -> WarmState:
        """The warm-up's latest snapshot (immutable; a later change publishes a new one)."""
        return self._warm

    @property
    def warm_errors(self) -> Mapping[str, str]:
        return self._warm.errors

    @property
    def warming(self) -> bool:
        return self._warm.warming

    def _publish(self, *, runs: int = 0, name: str = "", error: str | None = None) -> None:
        """Swap in a new :class:`WarmState`: ``runs`` more warm-ups running, and ``name``'s
        error set (or cleared when ``error`` is None)."""
        with self._warm_lock:
            self._warm_runs += runs
            errors = dict(self._warm.errors)
            if name and error is None:
                errors.pop(name, None)
            elif name and error is not None:
                errors[name] = error
            self._warm = WarmState(MappingProxyType(errors), warming=self._warm_runs > 0)

    def warm_up(self) -> None:
        """Load the backends now; failures are kept for ``/ready`` and logged, not raised."""
        self._publish(runs=1)
        try:
            for name in ("image", "translation"):
                try:
                    if name == "image":
                        self.image_backend.load()
                    else:
                        self.translation_backend.load()
                    self._publish(name=name)
                except AiLocalCoreError as exc:
                    self._publish(name=name, error=f"{exc.error_type}: {exc.message}")
                    logger.warning("warm-up of the %s backend failed: %s", name, exc.message)
        finally:
            self._publish(runs=-1)

    def warm_up_in_background(self) -> threading.Thread:
        """Warm up in a daemon thread so the worker answers ``/health`` at once."""
        thread = threading.Thread(target=self.warm_up, name="warm-up", daemon=True)
        thread.start()
        return thread

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the worker's request slots; 503 after ``api.queue_timeout`` seconds."""
        with self._hold(self._slots, "request slots"):
            yield

    @contextmanager
    def fetch_slot(self) -> Iterator[None]:
        """Hold one of the worker's image-fetch slots (``api.max_concurrent`` of them, apart
        from the request slots) while an image is downloaded and decoded."""
        with self._hold(self._fetch_slots, "image fetch slots"):
            yield

    @contextmanager
    def _hold(self, slots: threading.BoundedSemaphore, what: str) -> Iterator[None]:
        if not slots.acquire(timeout=self.settings.api.queue_timeout):
            raise ServiceBusy(f"server busy: all {what} are taken; retry later")
        try:
            yield
        finally:
            slots.release()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether Ollama answers and the backends are loaded, with the details."""
        ollama_ok = self.client.ping(timeout=min(2.0, self.settings.ollama.timeouts.connect + 1))
        warm = self.warm_state  # one snapshot: the warm-up thread may publish another meanwhile
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
        for name, error in warm.errors.items():
            if not checks[name]["ok"]:  # a backend loaded since then has no error any more
                checks[name]["error"] = error
        if warm.warming:
            checks["warming_up"] = True
        ready = all(check["ok"] for check in checks.values() if isinstance(check, dict))
        return ready, checks

    def close(self) -> None:
        self.client.close()
