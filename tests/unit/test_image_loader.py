"""Image input: URLs over a loopback server, local paths, and every rejection path."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from ai_local_core.errors import AiLocalCoreError, InvalidInput
from ai_local_core.image.errors import (
    ImageFetchFailed,
    ImageTooLarge,
    InvalidImageSource,
    NotAnImage,
)
from ai_local_core.image.loader import ImageLimits, decode_image, load_image

from tests.image_samples import gif_bytes, jpeg_bytes, png_bytes, png_claiming_size
from tests.loopback_http import LoopbackServer, loopback_server, slow, static

FAST = ImageLimits(
    connect_timeout_s=2, read_timeout_s=2, total_timeout_s=5, allow_private_networks=True
)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    big = b"\x00" * 4096
    routes = {
        "/cat.png": static(200, png_bytes(), "image/png"),
        "/cat.jpg": static(200, jpeg_bytes(), "image/jpeg; charset=binary"),
        "/anim.gif": static(200, gif_bytes(), "image/gif"),
        "/no-type.png": static(200, png_bytes(), None),
        "/octet.png": static(200, png_bytes(), "application/octet-stream"),
        "/page.html": static(200, b"<html>hi</html>", "text/html; charset=utf-8"),
        "/octet.txt": static(200, b"plain words, not pixels", "application/octet-stream"),
        "/svg": static(200, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        "/big-declared.png": static(200, png_bytes(), "image/png", length=10_000_000),
        "/big-streamed.png": static(200, big, "image/png", length=-1),
        "/gzip-bomb.png": static(
            200, gzip.compress(b"\x00" * 200_000), "image/png", headers={"Content-Encoding": "gzip"}
        ),
        "/bomb.png": static(200, png_claiming_size(50_000, 50_000), "image/png"),
        "/truncated.jpg": static(200, jpeg_bytes(400, 300)[:300], "image/jpeg"),
        "/empty.png": static(200, b"", "image/png"),
        "/server-error": static(500, b"oops", "text/plain"),
        "/slow.png": slow(3.0, static(200, png_bytes(), "image/png")),
        "/redirect": static(302, b"", headers={"Location": "/cat.png"}),
        "/loop": static(302, b"", headers={"Location": "/loop"}),
    }
    with loopback_server(routes) as srv:
        yield srv


def test_png_from_url_is_decoded_to_rgb(server: LoopbackServer) -> None:
    image = load_image(server.url("/cat.png"), FAST)
    assert (image.format, image.width, image.height) == ("PNG", 32, 24)
    assert image.mime == "image/png"
    assert image.image.mode == "RGB"
    assert image.image.getpixel((0, 0)) == (200, 30, 30)
    assert server.seen[-1].headers["accept"] == "image/*"


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("/cat.jpg", "JPEG"),
        ("/anim.gif", "GIF"),
        ("/no-type.png", "PNG"),
        ("/octet.png", "PNG"),
        ("/redirect", "PNG"),
    ],
)
def test_accepted_urls(server: LoopbackServer, path: str, fmt: str) -> None:
    image = load_image(server.url(path), FAST)
    assert image.format == fmt
    assert image.image.mode == "RGB"


def test_local_path(tmp_path: Path) -> None:
    target = tmp_path / "pic.jpg"
    target.write_bytes(jpeg_bytes(20, 10))
    image = load_image(str(target), FAST)
    assert (image.format, image.width, image.height) == ("JPEG", 20, 10)
    assert image.data == target.read_bytes()


@pytest.mark.parametrize(
    ("path", "error", "needle"),
    [
        ("/missing.png", ImageFetchFailed, "HTTP 404"),
        ("/server-error", ImageFetchFailed, "HTTP 500"),
        ("/page.html", NotAnImage, "text/html"),
        ("/octet.txt", NotAnImage, "not an image"),
        ("/svg", NotAnImage, "not an image"),
        ("/empty.png", NotAnImage, "empty"),
        ("/truncated.jpg", NotAnImage, "truncated"),
        ("/big-declared.png", ImageTooLarge, "10000000 bytes"),
        ("/big-streamed.png", ImageTooLarge, "over the limit"),
        ("/gzip-bomb.png", ImageTooLarge, "over the limit"),
        ("/bomb.png", ImageTooLarge, "pixels"),
        ("/loop", ImageFetchFailed, "redirected"),
    ],
)
def test_rejected_urls(
    server: LoopbackServer, path: str, error: type[AiLocalCoreError], needle: str
) -> None:
    limits = FAST.model_copy(
        update={"max_bytes": 1024 if "big" in path or "gzip" in path else 10**7}
    )
    with pytest.raises(error) as caught:
        load_image(server.url(path), limits)
    assert needle in caught.value.message
    assert isinstance(caught.value, AiLocalCoreError)


def test_status_codes_of_errors() -> None:
    assert ImageTooLarge("x").http_status == 413
    assert NotAnImage("x").http_status == 400
    assert InvalidImageSource("x").http_status == 400
    assert ImageFetchFailed("x").http_status == 502
    assert ImageFetchFailed("x", status=404).http_status == 400
    assert ImageFetchFailed("x", status=503).http_status == 502
    assert isinstance(NotAnImage("x"), InvalidInput)


def test_url_secrets_are_not_echoed(server: LoopbackServer) -> None:
    with pytest.raises(ImageFetchFailed) as caught:
        load_image(server.url("/missing.png?token=s3cr3t-value"), FAST)
    assert "s3cr3t" not in caught.value.message
    assert "127.0.0.1" in caught.value.message


def test_slow_server_times_out(server: LoopbackServer) -> None:
    limits = FAST.model_copy(update={"read_timeout_s": 0.3})
    with pytest.raises(ImageFetchFailed, match="timed out"):
        load_image(server.url("/slow.png"), limits)


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ImageFetchFailed, match="could not fetch"):
        load_image(f"http://127.0.0.1:{port}/x.png", FAST)


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ftp://127.0.0.1/cat.png", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://", "invalid image URL"),
        ("/nonexistent/dir/cat.png", "no such image file"),
    ],
)
def test_bad_sources(source: str, needle: str) -> None:
    with pytest.raises(InvalidImageSource, match=needle):
        load_image(source, FAST)


def test_local_paths_can_be_refused(tmp_path: Path) -> None:
    target = tmp_path / "pic.png"
    target.write_bytes(png_bytes())
    with pytest.raises(InvalidImageSource, match="not accepted"):
        load_image(str(target), FAST.model_copy(update={"allow_local_paths": False}))


def test_local_file_too_large(tmp_path: Path) -> None:
    target = tmp_path / "pic.png"
    target.write_bytes(png_bytes(64, 64) + b"\x00" * 2048)
    with pytest.raises(ImageTooLarge):
        load_image(str(target), FAST.model_copy(update={"max_bytes": 1024}))


def test_local_non_image(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("hello")
    with pytest.raises(NotAnImage):
        load_image(str(target), FAST)


def test_directory_is_not_an_image_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageSource, match="no such image file"):
        load_image(str(tmp_path), FAST)


def test_pixel_cap_applies_to_real_images() -> None:
    decode_image(png_bytes(40, 25), ImageLimits(max_pixels=1000))
    with pytest.raises(ImageTooLarge, match="41x25"):
        decode_image(png_bytes(41, 25), ImageLimits(max_pixels=1000))


def test_pillow_bomb_guard_maps_to_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        decode_image(png_bytes(20, 20), ImageLimits())


def test_private_networks_are_refused_by_default(server: LoopbackServer) -> None:
    before = len(server.seen)
    limits = FAST.model_copy(update={"allow_private_networks": False})
    for url in (server.url("/cat.png"), f"http://localhost:{server.port}/cat.png"):
        with pytest.raises(InvalidImageSource, match="not a public address"):
            load_image(url, limits)
    assert len(server.seen) == before


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("http://93.184.215.14/a.png", True),
        ("https://[2606:4700::1]/a.png", True),
        ("http://10.1.2.3/a.png", False),
        ("http://192.168.1.10:8080/a.png", False),
        ("http://169.254.169.254/latest/meta-data", False),
        ("http://[::1]:11434/api/tags", False),
        ("http://0.0.0.0/a.png", False),
        ("http://100.64.0.1/a.png", False),
    ],
)
def test_public_address_check(url: str, public: bool) -> None:
    import httpx
    from ai_local_core.image.loader import _refuse_non_public

    request = httpx.Request("GET", url)
    if public:
        _refuse_non_public(request)
    else:
        with pytest.raises(InvalidImageSource, match="not a public address"):
            _refuse_non_public(request)
