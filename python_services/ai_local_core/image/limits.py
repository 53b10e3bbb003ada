"""The image input limits and local image files: the light half of the image loader.

:class:`ImageLimits` (the ``image.limits`` settings), :func:`is_url` and
:func:`read_local` need neither httpx nor Pillow, so the settings and a CLI that
only hands a local file to the API server import them from here without
importing the downloader (:mod:`ai_local_core.image.loader`, which re-exports
them).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ai_local_core.errors import ImageTooLarge, InvalidImageSource

__all__ = ["ImageLimits", "is_url", "local_file_within", "read_local"]

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ImageLimits(BaseModel):
    """Bounds applied to every image input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Byte cap of the encoded image"
    )
    max_pixels: int = Field(default=40_000_000, gt=0, description="Pixel cap (width x height)")
    max_decoded_pixels: int = Field(
        default=4_194_304,
        gt=0,
        description="Larger images are downscaled (aspect kept) to at most this many pixels "
        "before the conversion to RGB (2048 x 2048 by default)",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=15.0, gt=0)
    total_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline for the whole download"
    )
    max_redirects: int = Field(default=3, ge=0)
    allow_local_paths: bool = Field(
        default=True, description="Accept local file paths as sources (under local_dirs only)"
    )
    local_dirs: tuple[str, ...] = Field(
        default=(),
        description="Absolute directories under which local image files may be read; "
        "empty (the default): no local file is read",
    )
    allow_private_networks: bool = Field(
        default=False,
        description="Fetch from loopback, private, link-local and other non-public addresses",
    )

    @field_validator("local_dirs")
    @classmethod
    def _absolute_dirs(cls, dirs: tuple[str, ...]) -> tuple[str, ...]:
        for directory in dirs:
            if not Path(directory).is_absolute():
                raise ValueError(f"image.limits.local_dirs: {directory!r} is not an absolute path")
        return dirs


def is_url(source: str) -> bool:
    """Whether ``source`` is written as a URL (``scheme://...``) rather than a path."""
    return _URL_SCHEME.match(source.strip()) is not None


def local_file_within(source: str, dirs: Sequence[str]) -> Path | None:
    """The real path of ``source`` when it is a regular file under one of ``dirs``, else None.

    Symbolic links are resolved on both sides before the comparison, and where the
    file lies is checked before whether it exists, so "outside the directories",
    "missing", "a directory" and "unreadable" all give the same None: a caller
    cannot learn which files exist outside the allowed directories.
    """
    if not dirs:
        return None
    try:
        real = os.path.realpath(source)
        for root in dirs:
            base = os.path.realpath(root)
            if os.path.commonpath([real, base]) == base and real != base:
                path = Path(real)
                return path if path.is_file() else None
    except (OSError, ValueError):  # ValueError: a NUL byte, or mixed absolute/relative paths
        return None
    return None


def read_local(source: str, limits: ImageLimits) -> bytes:
    """Read a local image file within the byte cap, only under ``limits.local_dirs``.

    A file outside those directories, a missing one, a directory and an
    unreadable one all give the same :class:`InvalidImageSource` with the same
    message, so the error tells nothing about which files exist.
    """
    if not limits.allow_local_paths or not limits.local_dirs:
        raise InvalidImageSource(
            "local file paths are not accepted here (image.limits.local_dirs names none): "
            "pass an http(s) URL"
        )
    refused = InvalidImageSource(
        f"no such image file under the allowed directories (image.limits.local_dirs): {source}"
    )
    path = local_file_within(source, limits.local_dirs)
    if path is None:
        raise refused
    try:
        # The real path, not followed again: a link swapped in since the check is refused.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise refused
            if info.st_size > limits.max_bytes:
                raise ImageTooLarge(
                    f"image is {info.st_size} bytes, over the limit of {limits.max_bytes} bytes"
                )
            data = handle.read(limits.max_bytes + 1)
    except OSError:
        raise refused from None
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is over the limit of {limits.max_bytes} bytes")
    return data
