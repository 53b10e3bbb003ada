"""Load an image from an http(s) URL or a local path, safely.

The download is bounded three ways: a byte cap (checked against
``Content-Length`` first and again while streaming, after content decoding, so a
gzip bomb is cut off too), explicit connect/read timeouts plus a total deadline,
and a redirect limit. The bytes are then decoded with Pillow, restricted to
common raster formats, and rejected when the pixel count exceeds the cap (a
decompression bomb) before any pixel data is decoded.

Pillow (a core dependency) is imported lazily, so a CLI that never decodes an image
never pays for the import.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ai_local_core.backend_errors import BackendUnavailable
from ai_local_core.image.errors import (
    ImageFetchFailed,
    ImageTooLarge,
    InvalidImageSource,
    NotAnImage,
)

if TYPE_CHECKING:
    from PIL.Image import Image

#: Formats Pillow may try; anything else is "not an image" for us.
ALLOWED_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ACCEPTED_GENERIC_TYPES: Final[frozenset[str]] = frozenset({"application/octet-stream", ""})


class ImageLimits(BaseModel):
    """Bounds applied to every image input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Byte cap of the encoded image"
    )
    max_pixels: int = Field(default=40_000_000, gt=0, description="Pixel cap (width x height)")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=15.0, gt=0)
    total_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline for the whole download"
    )
    max_redirects: int = Field(default=3, ge=0)
    allow_local_paths: bool = Field(default=True, description="Accept local file paths as sources")
    allow_private_networks: bool = Field(
        default=False,
        description="Fetch from loopback, private, link-local and other non-public addresses",
    )


@dataclass(frozen=True)
class LoadedImage:
    """A decoded, validated image and the encoded bytes it came from."""

    data: bytes
    format: str
    width: int
    height: int
    image: Image = field(repr=False, compare=False)

    @property
    def mime(self) -> str:
        return f"image/{self.format.lower()}"


def is_url(source: str) -> bool:
    """Whether ``source`` is written as a URL (``scheme://...``) rather than a path."""
    return _URL_SCHEME.match(source.strip()) is not None


def load_image(source: str, limits: ImageLimits | None = None) -> LoadedImage:
    """Fetch (URL) or read (path) ``source`` and decode it; raise a typed error on any problem."""
    limits = limits or ImageLimits()
    source = source.strip()
    if not source:
        raise InvalidImageSource("image source is empty: pass an http(s) URL or a file path")
    data = fetch_url(source, limits) if is_url(source) else read_local(source, limits)
    return decode_image(data, limits)


def _check_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidImageSource(f"invalid image URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidImageSource(
            f"unsupported URL scheme {parsed.scheme!r}: only http and https are accepted"
        )
    if not parsed.host:
        raise InvalidImageSource("invalid image URL: no host")
    return parsed


def _refuse_non_public(request: httpx.Request) -> None:
    """Event hook run before every request, redirects included: public addresses only.

    Stops the server being used to reach the node's own services (Ollama, the
    API, the cloud metadata address...). The name is resolved here and again by
    the connection, so DNS rebinding is not covered; a proxy is the full answer.
    """
    host = request.url.host
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ImageFetchFailed(f"cannot resolve the image host {host}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise InvalidImageSource(
                f"image URL host {host} is not a public address; fetching from local "
                "or private networks is disabled (image.limits.allow_private_networks)"
            )


def fetch_url(url: str, limits: ImageLimits) -> bytes:
    """Download ``url`` within the limits and return the (content-decoded) body."""
    parsed = _check_url(url)
    where = parsed.host  # never echo the full URL: its query may carry a token
    hooks = {} if limits.allow_private_networks else {"request": [_refuse_non_public]}
    timeout = httpx.Timeout(
        limits.read_timeout_s, connect=limits.connect_timeout_s, pool=limits.connect_timeout_s
    )
    deadline = time.monotonic() + limits.total_timeout_s
    try:
        with (
            httpx.Client(
                timeout=timeout,
                follow_redirects=True,
                max_redirects=limits.max_redirects,
                event_hooks=hooks,
            ) as client,
            client.stream("GET", parsed, headers={"Accept": "image/*"}) as response,
        ):
            if response.status_code >= 400:
                raise ImageFetchFailed(
                    f"image URL on {where} answered HTTP {response.status_code}",
                    status=response.status_code,
                )
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not content_type.startswith("image/") and content_type not in (
                _ACCEPTED_GENERIC_TYPES
            ):
                raise NotAnImage(
                    f"image URL on {where} returned content type {content_type!r}, not an image"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limits.max_bytes:
                raise ImageTooLarge(
                    f"image is {int(declared)} bytes, over the limit of {limits.max_bytes} bytes"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limits.max_bytes:
                    raise ImageTooLarge(f"image is over the limit of {limits.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ImageFetchFailed(
                        f"downloading the image from {where} took over {limits.total_timeout_s:g} s"
                    )
            return bytes(body)
    except httpx.TooManyRedirects:
        raise ImageFetchFailed(
            f"image URL on {where} redirected more than {limits.max_redirects} times"
        ) from None
    except httpx.TimeoutException:
        raise ImageFetchFailed(f"timed out fetching the image from {where}") from None
    except httpx.UnsupportedProtocol as exc:
        raise InvalidImageSource(f"invalid image URL: {exc}") from None
    except httpx.HTTPError as exc:
        raise ImageFetchFailed(
            f"could not fetch the image from {where}: {type(exc).__name__}"
        ) from None


def read_local(source: str, limits: ImageLimits) -> bytes:
    """Read a local image file within the byte cap."""
    if not limits.allow_local_paths:
        raise InvalidImageSource("local file paths are not accepted here: pass an http(s) URL")
    path = Path(source)
    try:
        if not path.is_file():
            raise InvalidImageSource(f"no such image file: {source}")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLarge(
                f"image is {size} bytes, over the limit of {limits.max_bytes} bytes"
            )
        with path.open("rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise InvalidImageSource(f"cannot read image file {source}: {exc.strerror}") from None
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is over the limit of {limits.max_bytes} bytes")
    return data


def decode_image(data: bytes, limits: ImageLimits) -> LoadedImage:
    """Decode ``data`` with Pillow into RGB, refusing non-images and decompression bombs."""
    try:
        from PIL import Image as PilImage
        from PIL import UnidentifiedImageError
    except ImportError:
        raise BackendUnavailable(
            "Pillow is not installed: reinstall the package with its dependencies "
            "(pip install ai-local-core)"
        ) from None
    if not data:
        raise NotAnImage("the image is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PilImage.DecompressionBombWarning)
        try:
            opened = PilImage.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
        except UnidentifiedImageError:
            raise NotAnImage(
                f"the data is not an image in a supported format ({', '.join(ALLOWED_FORMATS)})"
            ) from None
        except (PilImage.DecompressionBombError, PilImage.DecompressionBombWarning):
            raise ImageTooLarge("the image has too many pixels (decompression bomb)") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise NotAnImage(f"the image is corrupt or truncated: {exc}") from None
        with opened:
            width, height = opened.size
            if width * height > limits.max_pixels:
                raise ImageTooLarge(
                    f"image is {width}x{height} = {width * height} pixels, "
                    f"over the limit of {limits.max_pixels}"
                )
            image_format = opened.format or "UNKNOWN"
            try:
                rgb = opened.convert("RGB")
            except (PilImage.DecompressionBombError, PilImage.DecompressionBombWarning):
                raise ImageTooLarge("the image has too many pixels (decompression bomb)") from None
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise NotAnImage(f"the image is corrupt or truncated: {exc}") from None
    return LoadedImage(data=data, format=image_format, width=width, height=height, image=rgb)
