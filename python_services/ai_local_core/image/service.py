"""Image description as a service: the request model, the backend factory and the
result object shared by the ``ai-describe`` CLI and the API server (so both give
the same JSON)."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from ai_local_core.errors import ImageTooLarge, InvalidInput
from ai_local_core.image.base import MAX_LENGTH_LIMIT, ImageBackend
from ai_local_core.image.limits import ImageLimits
from ai_local_core.inputs import RequestModel, WholeNumber, with_warnings

if TYPE_CHECKING:
    from ai_local_core.config import Settings
    from ai_local_core.image.loader import LoadedImage
    from ai_local_core.ollama.client import OllamaClient

__all__ = [
    "DescribeRequest",
    "create_image_backend",
    "decode_base64_image",
    "describe",
    "load_request_image",
]

_DATA_URI = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,")


class DescribeRequest(RequestModel):
    """What to describe: ``image`` (an http(s) URL, or a local path where allowed) or
    ``image_base64`` (the encoded file, optionally as a ``data:`` URI); ``max_length``
    in tokens (the configured default when absent; ``50``, ``50.0`` or ``"50"``).
    Unknown keys are ignored with a warning (:mod:`ai_local_core.inputs`)."""

    image: str | None = Field(None, min_length=1, max_length=8192)
    image_base64: str | None = Field(None, min_length=1)
    max_length: WholeNumber | None = Field(None, ge=1, le=MAX_LENGTH_LIMIT)

    @model_validator(mode="after")
    def _one_source(self) -> DescribeRequest:
        if (self.image is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of 'image' (a URL or path) and 'image_base64'")
        if self.image is not None and not self.image.strip():
            raise ValueError("'image' is empty")
        return self


def decode_base64_image(text: str, limits: ImageLimits) -> bytes:
    """Decode base64 (or a ``data:image/...;base64,`` URI) within the byte cap."""
    payload = _DATA_URI.sub("", text.strip(), count=1)
    if len(payload) * 3 // 4 > limits.max_bytes + 3:
        raise ImageTooLarge(f"image is over the limit of {limits.max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("'image_base64' is not valid base64") from None
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is over the limit of {limits.max_bytes} bytes")
    return data


def create_image_backend(settings: Settings, *, client: OllamaClient | None = None) -> ImageBackend:
    """The backend chosen by ``settings.image.backend`` (not loaded yet)."""
    section = settings.image
    if section.backend == "blip":
        from ai_local_core.image.blip import BlipBackend

        return BlipBackend(section.blip.model, device=section.blip.device)
    from ai_local_core.image.ollama import OllamaVisionBackend
    from ai_local_core.ollama.client import OllamaClient

    defaults = settings.models.for_task("vision")
    temperature = section.ollama.temperature
    return OllamaVisionBackend(
        client if client is not None else OllamaClient.from_settings(settings),
        settings.models.resolve(section.ollama.model, task="vision"),
        prompt=section.ollama.prompt,
        temperature=temperature if temperature is not None else defaults.temperature,
        options=defaults.options,
        keep_alive=defaults.keep_alive or settings.ollama.keep_alive,
    )


def load_request_image(request: DescribeRequest, limits: ImageLimits) -> LoadedImage:
    """The request's image, fetched or read and decoded within ``limits``."""
    from ai_local_core.image.loader import decode_image, load_image

    if request.image_base64 is not None:
        return decode_image(decode_base64_image(request.image_base64, limits), limits)
    return load_image(request.image or "", limits)


def describe(
    request: DescribeRequest,
    backend: ImageBackend,
    *,
    limits: ImageLimits,
    default_max_length: int,
    fetch_slot: Callable[[], AbstractContextManager[object]] = nullcontext,
    slot: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> dict[str, Any]:
    """Load the image (inside ``fetch_slot``), describe it (inside ``slot``: the API's
    request slot, taken only once the image is fetched and decoded, so slow image
    hosts cannot hold it) and return the JSON result (without ``success``)."""
    started = time.perf_counter()
    max_length = request.max_length if request.max_length is not None else default_max_length
    with fetch_slot():
        image = load_request_image(request, limits)
    with slot():
        result = backend.describe(image, max_length=max_length)
    answer: dict[str, Any] = {
        "description": result.text,
        "backend": result.backend,
        "model": result.model,
        "tokens": result.tokens,
        "max_length": max_length,
        "image": {"format": image.format, "width": image.width, "height": image.height},
        "duration_ms": round((time.perf_counter() - started) * 1000),
    }
    return with_warnings(answer, request)
