"""Errors raised while loading an image or describing it."""

from __future__ import annotations

from ai_local_core.backend_errors import BackendFailed, PayloadTooLarge
from ai_local_core.errors import AiLocalCoreError, InvalidInput

__all__ = [
    "DescribeFailed",
    "ImageFetchFailed",
    "ImageTooLarge",
    "InvalidImageSource",
    "NotAnImage",
]


class InvalidImageSource(InvalidInput):
    """The image source is neither an http(s) URL nor a readable local file."""

    error_type = "invalid_image_source"


class NotAnImage(InvalidInput):
    """The bytes behind the source are not an image in a format we decode."""

    error_type = "not_an_image"


class ImageFetchFailed(AiLocalCoreError):
    """Downloading the image failed: an HTTP error status, no connection, a timeout.

    The API answers 400 when the image host answered 4xx (the URL is the
    caller's mistake, e.g. 404) and 502 otherwise (the host failed).
    """

    error_type = "image_fetch_failed"
    http_status = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        if status is not None and 400 <= status < 500:
            self.http_status = 400


class ImageTooLarge(PayloadTooLarge):
    """The image is over the byte cap or the pixel cap (a decompression bomb)."""

    error_type = "image_too_large"


class DescribeFailed(BackendFailed):
    """The description backend failed on a valid image."""

    error_type = "describe_failed"
