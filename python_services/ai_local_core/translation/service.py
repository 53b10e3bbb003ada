"""Translation as a service: the request model, the backend factory and the result
object shared by the ``ai-translate`` CLI and the API server."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ai_local_core.inputs import RequestModel, with_warnings
from ai_local_core.translation.base import TranslationBackend
from ai_local_core.translation.languages import AUTO

if TYPE_CHECKING:
    from ai_local_core.config import Settings
    from ai_local_core.ollama.client import OllamaClient

__all__ = ["TranslateRequest", "create_translation_backend", "translate"]


class TranslateRequest(RequestModel):
    """``text`` to translate into ``target`` (an ISO code); ``source`` defaults to auto.
    Unknown keys are ignored with a warning (:mod:`ai_local_core.inputs`)."""

    text: str
    target: str = Field(max_length=16)
    source: str = Field(AUTO, max_length=16)


def create_translation_backend(
    settings: Settings, *, client: OllamaClient | None = None
) -> TranslationBackend:
    """The backend chosen by ``settings.translation.backend``."""
    section = settings.translation
    if section.backend == "google":
        from ai_local_core.translation.google import GoogleBackend

        return GoogleBackend(
            timeout_s=section.google.timeout_s,
            max_chars=section.max_chars,
            base_url=section.google.base_url,
        )
    from ai_local_core.ollama.client import OllamaClient
    from ai_local_core.translation.ollama import OllamaTranslationBackend

    defaults = settings.models.for_task("translation")
    temperature = section.ollama.temperature
    return OllamaTranslationBackend(
        client if client is not None else OllamaClient.from_settings(settings),
        settings.models.resolve(section.ollama.model, task="translation"),
        max_chars=section.max_chars,
        temperature=temperature if temperature is not None else defaults.temperature,
        options=defaults.options,
        keep_alive=defaults.keep_alive or settings.ollama.keep_alive,
    )


def translate(request: TranslateRequest, backend: TranslationBackend) -> dict[str, Any]:
    """Translate and return the JSON result (without ``success``)."""
    started = time.perf_counter()
    result = backend.translate(request.text, request.target, source=request.source)
    answer: dict[str, Any] = {
        "translation": result.text,
        "source_language": result.source_language,
        "target_language": result.target_language,
        "backend": result.backend,
        "model": result.model,
        "duration_ms": round((time.perf_counter() - started) * 1000),
    }
    return with_warnings(answer, request)
