"""The ``image`` section of the settings (see :mod:`ai_local_core.config`)."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from ai_local_core.image.base import DEFAULT_MAX_LENGTH, MAX_LENGTH_LIMIT
from ai_local_core.image.limits import ImageLimits

DEFAULT_BLIP_MODEL: Final = "Salesforce/blip-image-captioning-base"
DEFAULT_VISION_PROMPT: Final = (
    "Describe this image in one or two plain sentences. Answer with the description only."
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class BlipSettings(_Section):
    #: A Hugging Face model id or a local directory written by ``save_pretrained``.
    model: str = Field(DEFAULT_BLIP_MODEL, min_length=1)
    #: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    device: str = "auto"


class OllamaVisionSettings(_Section):
    #: Vision model (``llava``, ``moondream``, ``llama3.2-vision``...); null means
    #: ``models.defaults.vision.model``. Aliases from ``models.aliases`` apply.
    model: str | None = None
    prompt: str = Field(DEFAULT_VISION_PROMPT, min_length=1)
    #: Null means ``models.defaults.vision.temperature``.
    temperature: float | None = Field(None, ge=0, le=2)


class ImageSettings(_Section):
    """Image description: which backend, its model, and the input limits."""

    backend: Literal["blip", "ollama"] = "blip"
    default_max_length: int = Field(DEFAULT_MAX_LENGTH, ge=1, le=MAX_LENGTH_LIMIT)
    blip: BlipSettings = Field(default_factory=BlipSettings)
    ollama: OllamaVisionSettings = Field(default_factory=OllamaVisionSettings)
    limits: ImageLimits = Field(default_factory=ImageLimits)
    #: Whether the API server accepts local file paths (the CLIs always do).
    api_allow_local_paths: bool = False
