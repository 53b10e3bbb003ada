"""Image description: safe image loading and a backend interface with ``blip`` and ``ollama``.

Importing this package never imports torch, transformers or Pillow; the
backends import them when they load.
"""

from ai_local_core.image.base import DEFAULT_MAX_LENGTH, Description, ImageBackend
from ai_local_core.image.loader import ImageLimits, LoadedImage, load_image

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "Description",
    "ImageBackend",
    "ImageLimits",
    "LoadedImage",
    "load_image",
]
