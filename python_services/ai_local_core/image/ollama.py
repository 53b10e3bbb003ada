"""The ``ollama`` backend: image description by a vision model served by Ollama.

The image goes base64-encoded in ``images`` of ``POST /api/generate`` with a
configurable prompt; ``max_length`` becomes ``num_predict``. Formats other than
JPEG and PNG are re-encoded to PNG first (not every vision model's projector
decodes GIF, WebP, BMP or TIFF). Ollama errors surface as the client's
:class:`~ai_local_core.errors.OllamaError` subclasses.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ai_local_core.config import DEFAULT_VISION_PROMPT
from ai_local_core.errors import BackendUnavailable, DescribeFailed, InvalidInput
from ai_local_core.image.base import (
    DEFAULT_MAX_LENGTH,
    MAX_LENGTH_LIMIT,
    Description,
    ImageBackend,
)
from ai_local_core.image.loader import LoadedImage

if TYPE_CHECKING:
    from ai_local_core.ollama.client import OllamaClient

_PASS_THROUGH_FORMATS = frozenset({"JPEG", "PNG"})


def image_base64(image: LoadedImage) -> str:
    """The image as base64, re-encoded to PNG unless it already is JPEG or PNG."""
    if image.format in _PASS_THROUGH_FORMATS:
        data = image.data
    else:
        buffer = io.BytesIO()
        image.image.save(buffer, format="PNG")
        data = buffer.getvalue()
    return base64.b64encode(data).decode("ascii")


class OllamaVisionBackend(ImageBackend):
    """Describe images with an Ollama vision model (llava, moondream, llama3.2-vision...)."""

    name: ClassVar[str] = "ollama"

    def __init__(
        self,
        client: OllamaClient,
        model: str,
        *,
        prompt: str = DEFAULT_VISION_PROMPT,
        temperature: float | None = None,
        options: Mapping[str, Any] | None = None,
        keep_alive: str | None = None,
    ) -> None:
        if not model.strip():
            raise InvalidInput("the Ollama vision model name is empty")
        if not prompt.strip():
            raise InvalidInput("the vision prompt is empty")
        self._client = client
        self._model = model.strip()
        self.prompt = prompt
        self._options: dict[str, Any] = dict(options or {})
        if temperature is not None:
            self._options["temperature"] = temperature
        self._keep_alive = keep_alive
        self._checked = False
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._model

    @property
    def loaded(self) -> bool:
        return self._checked

    def load(self) -> None:
        """Check that the model is on the server and, when Ollama says, that it sees images."""
        with self._lock:
            if self._checked:
                return
            details = self._client.show(self._model)
            capabilities = details.capabilities
            if capabilities and "vision" not in capabilities:
                raise BackendUnavailable(
                    f"Ollama model {self._model!r} cannot read images "
                    f"(capabilities: {', '.join(capabilities)}); configure a vision model"
                )
            self._checked = True

    def describe(self, image: LoadedImage, *, max_length: int = DEFAULT_MAX_LENGTH) -> Description:
        if not 1 <= max_length <= MAX_LENGTH_LIMIT:
            raise InvalidInput(f"max_length must be between 1 and {MAX_LENGTH_LIMIT}")
        options = {**self._options, "num_predict": max_length}
        result = self._client.generate(
            self._model,
            self.prompt,
            images=[image_base64(image)],
            options=options,
            keep_alive=self._keep_alive,
        )
        text = result.response.strip()
        if not text:
            raise DescribeFailed(f"Ollama model {self._model!r} returned an empty description")
        self._checked = True
        return Description(
            text=text,
            backend=self.name,
            model=result.model or self._model,
            tokens=result.eval_count or None,
        )
