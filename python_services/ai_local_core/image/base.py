"""The image-description backend interface and its result type."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ai_local_core.image.loader import LoadedImage

DEFAULT_MAX_LENGTH: Final = 50
MAX_LENGTH_LIMIT: Final = 512


class Description(BaseModel):
    """What a backend says about an image."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The caption / description")
    backend: str = Field(description="Backend name, e.g. 'blip' or 'ollama'")
    model: str = Field(description="Model id or path the backend used")
    tokens: int | None = Field(default=None, description="Generated tokens, when known")


class ImageBackend(abc.ABC):
    """Describes images. Instances are created once per process and reused.

    ``load`` does the expensive part (importing torch, reading weights, checking
    the model exists) so a server can do it at start-up; ``describe`` calls it
    on first use when nobody did.
    """

    name: ClassVar[str]

    @property
    @abc.abstractmethod
    def model(self) -> str:
        """The model id or path in use."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load heavy resources; idempotent and thread-safe."""

    @property
    @abc.abstractmethod
    def loaded(self) -> bool:
        """Whether :meth:`load` has completed."""

    @abc.abstractmethod
    def describe(self, image: LoadedImage, *, max_length: int = DEFAULT_MAX_LENGTH) -> Description:
        """Describe ``image`` in at most ``max_length`` tokens."""
