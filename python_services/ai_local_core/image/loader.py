"""Load an image from an http(s) URL or a local path, safely.

The download connects only to addresses it checked: each hop (redirects
included) resolves the host once, refuses non-public addresses (unless
``allow_private_networks``) and connects to exactly those addresses, with the
``Host`` header, TLS SNI and certificate check still for the name in the URL
(httpcore's ``sni_hostname`` request extension). It asks for
``Accept-Encoding: identity`` and counts the raw bytes received against the byte
cap (checked against ``Content-Length`` first); a server that compresses anyway
has its body inflated to at most the cap. Explicit connect/read timeouts, a
total deadline and a redirect limit bound the time. Local files are read only
under ``local_dirs``.

The bytes are then decoded with Pillow, restricted to common raster formats,
rejected when the pixel count exceeds ``max_pixels`` (or Pillow's own
decompression-bomb limit) before any pixel data is decoded, and downscaled to at
most ``max_decoded_pixels`` before the conversion to RGB. Memory per image is
therefore about ``max_bytes`` (encoded) + 8 bytes x ``max_pixels`` (one full
decoded frame at up to 4 bytes per pixel plus one transient copy while
converting or resampling; JPEG is decoded at reduced scale and never holds it)
+ 4 bytes x ``max_decoded_pixels`` (the RGB image kept).

Pillow (a core dependency) is imported lazily, so a CLI that never decodes an image
never pays for the import.
"""

from __future__ import annotations

import io
import ipaddress
import math
import socket
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import httpx

from ai_local_core.errors import (
    BackendUnavailable,
    ImageFetchFailed,
    ImageTooLarge,
    InvalidImageSource,
    NotAnImage,
)
from ai_local_core.image.limits import ImageLimits, is_url, read_local

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "ALLOWED_FORMATS",
    "ImageLimits",
    "LoadedImage",
    "decode_image",
    "fetch_url",
    "is_url",
    "load_image",
    "read_local",
    "resolve_checked",
]

#: Formats Pillow may try; anything else is "not an image" for us.
ALLOWED_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
_ACCEPTED_GENERIC_TYPES: Final[frozenset[str]] = frozenset({"application/octet-stream", ""})


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


def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve ``host`` once; the addresses to connect to, each checked.

    Unless ``allow_private``, every address must be public: no loopback, private,
    link-local, CGNAT, reserved or multicast address (the node's own Ollama and
    API, the LAN, cloud metadata at 169.254.169.254). The fetch then connects to
    these very addresses, so a DNS answer that changes between this check and
    the connection (DNS rebinding) cannot take it elsewhere.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ImageFetchFailed(f"cannot resolve the image host {host}") from None
    addresses: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not allow_private and (not address.is_global or address.is_multicast):
            raise InvalidImageSource(
                f"image URL host {host} is not a public address; fetching from local "
                "or private networks is disabled (image.limits.allow_private_networks)"
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    if not addresses:
        raise ImageFetchFailed(f"cannot resolve the image host {host}")
    return addresses


def _decode_content(raw: bytes, encoding: str, limits: ImageLimits, where: str) -> bytes:
    """Undo a gzip/deflate ``Content-Encoding`` (a server that ignored ``identity``),
    producing at most ``max_bytes``: the raw bytes were counted already, and the
    inflated ones are capped here, so a small bomb never inflates in memory."""
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ImageFetchFailed(
            f"image URL on {where} answered with Content-Encoding {encoding!r}, "
            "which is not accepted (identity was asked)"
        )
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    try:
        try:
            inflater = zlib.decompressobj(wbits)
            data = inflater.decompress(raw, limits.max_bytes + 1)
        except zlib.error:
            if encoding != "deflate":
                raise
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as browsers accept
            data = inflater.decompress(raw, limits.max_bytes + 1)
    except zlib.error:
        raise ImageFetchFailed(f"image URL on {where} sent a corrupt {encoding} body") from None
    if len(data) > limits.max_bytes or inflater.unconsumed_tail:
        raise ImageTooLarge(
            f"image is over the limit of {limits.max_bytes} bytes once {encoding}-decoded"
        )
    return data


def _read_body(response: httpx.Response, limits: ImageLimits, where: str, deadline: float) -> bytes:
    """The checked, size-capped body of an answer that is not a redirect."""
    if response.status_code >= 400:
        raise ImageFetchFailed(
            f"image URL on {where} answered HTTP {response.status_code}",
            status=response.status_code,
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type.startswith("image/") and content_type not in _ACCEPTED_GENERIC_TYPES:
        raise NotAnImage(
            f"image URL on {where} returned content type {content_type!r}, not an image"
        )
    encoding = response.headers.get("content-encoding", "").strip().lower()
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise ImageTooLarge(
            f"image is {int(declared)} bytes, over the limit of {limits.max_bytes} bytes"
        )
    body = bytearray()
    # Raw bytes as they come off the wire, counted before any decoding.
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > limits.max_bytes:
            raise ImageTooLarge(f"image is over the limit of {limits.max_bytes} bytes")
        if time.monotonic() > deadline:
            raise ImageFetchFailed(
                f"downloading the image from {where} took over {limits.total_timeout_s:g} s"
            )
    return _decode_content(bytes(body), encoding, limits, where)


def _fetch_hop(url: httpx.URL, limits: ImageLimits, deadline: float) -> bytes | httpx.URL:
    """GET ``url`` from exactly the addresses :func:`resolve_checked` returned (the
    body), or the next URL when the answer is a redirect."""
    where = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolve_checked(url.host, port, allow_private=limits.allow_private_networks)
    timeout = httpx.Timeout(
        limits.read_timeout_s, connect=limits.connect_timeout_s, pool=limits.connect_timeout_s
    )
    headers = {
        # The URL carries the checked address; the server still sees the name it was
        # asked for, and TLS sends it as SNI and verifies the certificate against it.
        "Host": url.netloc.decode("ascii"),
        "Accept": "image/*",
        "Accept-Encoding": "identity",
    }
    last_error: httpx.HTTPError | None = None
    for address in addresses:
        if time.monotonic() > deadline:
            break
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            request = client.build_request(
                "GET",
                url.copy_with(host=address),
                headers=headers,
                extensions={"sni_hostname": url.host},
            )
            try:
                response = client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = exc  # the next checked address, if any
                continue
            try:
                location = response.headers.get("location")
                if response.is_redirect and location is not None:
                    try:
                        return url.join(location)
                    except httpx.InvalidURL as exc:
                        raise ImageFetchFailed(
                            f"image URL on {where} redirected to an invalid URL: {exc}"
                        ) from None
                return _read_body(response, limits, where, deadline)
            finally:
                response.close()
    if last_error is not None:
        raise last_error
    raise ImageFetchFailed(
        f"downloading the image from {where} took over {limits.total_timeout_s:g} s"
    )


def fetch_url(url: str, limits: ImageLimits) -> bytes:
    """Download ``url`` within the limits and return its body.

    Each hop (redirects included, at most ``max_redirects``) resolves the host
    once, checks the addresses and connects to them, never to a second answer.
    ``Accept-Encoding: identity`` is asked for and the raw bytes are counted
    against ``max_bytes``.
    """
    current = _check_url(url)
    where = current.host  # never echo the full URL: its query may carry a token
    deadline = time.monotonic() + limits.total_timeout_s
    try:
        for _hop in range(limits.max_redirects + 1):
            answer = _fetch_hop(current, limits, deadline)
            if isinstance(answer, bytes):
                return answer
            current = _check_url(str(answer))
        raise ImageFetchFailed(
            f"image URL on {where} redirected more than {limits.max_redirects} times"
        )
    except httpx.TimeoutException:
        raise ImageFetchFailed(f"timed out fetching the image from {where}") from None
    except httpx.UnsupportedProtocol as exc:
        raise InvalidImageSource(f"invalid image URL: {exc}") from None
    except httpx.HTTPError as exc:
        raise ImageFetchFailed(
            f"could not fetch the image from {where}: {type(exc).__name__}"
        ) from None


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the aspect of ``width`` x ``height`` within ``max_pixels``."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


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
                rgb = _downscaled_rgb(opened, limits.max_decoded_pixels)
            except (PilImage.DecompressionBombError, PilImage.DecompressionBombWarning):
                raise ImageTooLarge("the image has too many pixels (decompression bomb)") from None
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise NotAnImage(f"the image is corrupt or truncated: {exc}") from None
    return LoadedImage(data=data, format=image_format, width=width, height=height, image=rgb)


def _downscaled_rgb(opened: Image, max_pixels: int) -> Image:
    """``opened`` as RGB with at most ``max_pixels`` pixels, shrunk before the conversion.

    JPEG is decoded at 1/2, 1/4 or 1/8 scale right away (``draft``, inside
    ``thumbnail``), so its full frame is never held; other formats decode the full
    frame once (at most 4 bytes per pixel in Pillow), then shrink. Palette and
    bilevel images become RGB first (resampling them would be nearest-neighbour).
    """
    target = _fit(*opened.size, max_pixels)
    working = opened
    if target != opened.size:
        if opened.mode in ("P", "1"):
            working = opened.convert("RGB")
        working.thumbnail(target)
    return working if working.mode == "RGB" and working is not opened else working.convert("RGB")
