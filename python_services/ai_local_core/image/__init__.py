"""Image description: safe image loading and a backend interface with ``blip`` and ``ollama``.

Importing this package never imports torch, transformers, Pillow or httpx: the
names below are loaded on first use (the settings import
:mod:`ai_local_core.image.limits` and :mod:`ai_local_core.image.base` only), and
the backends import their libraries when they load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_local_core.image.base import DEFAULT_MAX_LENGTH, Description, ImageBackend
    from ai_local_core.image.limits import ImageLimits
    from ai_local_core.image.loader import LoadedImage, load_image

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "Description",
    "ImageBackend",
    "ImageLimits",
    "LoadedImage",
    "load_image",
]

_HOMES = {
    "DEFAULT_MAX_LENGTH": "ai_local_core.image.base",
    "Description": "ai_local_core.image.base",
    "ImageBackend": "ai_local_core.image.base",
    "ImageLimits": "ai_local_core.image.limits",
    "LoadedImage": "ai_local_core.image.loader",
    "load_image": "ai_local_core.image.loader",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
