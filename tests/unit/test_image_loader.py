"""Image input: URLs over a loopback server, local paths, and every rejection path."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from ai_local_core.errors import (
    AiLocalCoreError,
    ImageFetchFailed,
    ImageTooLarge,
    InvalidImageSource,
    InvalidInput,
    NotAnImage,
)
from ai_local_core.image.loader import ImageLimits, decode_image, load_image, resolve_checked

from tests.image_samples import gif_bytes, jpeg_bytes, png_bytes, png_claiming_size
from tests.loopback_http import LoopbackServer, loopback_server, slow, static

FAST = ImageLimits(
    connect_timeout_s=2, read_timeout_s=2, total_timeout_s=5, allow_private_networks=True
)


def in_dirs(*dirs: Path) -> ImageLimits:
    """FAST, with local files allowed under ``dirs``."""
    return FAST.model_copy(update={"local_dirs": tuple(str(d) for d in dirs)})


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
    image = load_image(str(target), in_dirs(tmp_path))
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
        ("/nonexistent/dir/cat.png", "not accepted here"),
        ("/etc/passwd", "not accepted here"),
    ],
)
def test_bad_sources(source: str, needle: str) -> None:
    with pytest.raises(InvalidImageSource, match=needle):
        load_image(source, FAST)


def test_local_paths_can_be_refused(tmp_path: Path) -> None:
    target = tmp_path / "pic.png"
    target.write_bytes(png_bytes())
    with pytest.raises(InvalidImageSource, match="not accepted"):
        load_image(str(target), in_dirs(tmp_path).model_copy(update={"allow_local_paths": False}))


def test_local_file_too_large(tmp_path: Path) -> None:
    target = tmp_path / "pic.png"
    target.write_bytes(png_bytes(64, 64) + b"\x00" * 2048)
    with pytest.raises(ImageTooLarge):
        load_image(str(target), in_dirs(tmp_path).model_copy(update={"max_bytes": 1024}))


def test_local_non_image(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("hello")
    with pytest.raises(NotAnImage):
        load_image(str(target), in_dirs(tmp_path))


def test_directory_is_not_an_image_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(InvalidImageSource, match="no such image file"):
        load_image(str(tmp_path / "sub"), in_dirs(tmp_path))


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

    parsed = httpx.URL(url)
    if public:
        assert resolve_checked(parsed.host, 80, allow_private=False) == [parsed.host]
    else:
        with pytest.raises(InvalidImageSource, match="not a public address"):
            resolve_checked(parsed.host, 80, allow_private=False)


# --------------------------------------------------------------------------- pinned addresses

PUBLIC_IP = "93.184.215.14"


class FakeDns:
    """``socket.getaddrinfo`` answering chosen addresses for some names (in turn), and
    ``socket.create_connection`` recording where each connection goes: the public
    address is routed to the loopback test server, anything else connects for real."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, server: LoopbackServer, answers: dict[str, list[str]]
    ) -> None:
        self.answers = {name: list(ips) for name, ips in answers.items()}
        self.connects: list[tuple[str, int]] = []
        self.server = server
        self._getaddrinfo = socket.getaddrinfo
        self._connect = socket.create_connection
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", self.create_connection)

    def getaddrinfo(self, host: object, port: object, *args: object, **kw: object) -> object:
        if isinstance(host, str) and host in self.answers:
            ips = self.answers[host]
            ip = ips.pop(0) if len(ips) > 1 else ips[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port)))]  # type: ignore[call-overload]
        return self._getaddrinfo(host, port, *args, **kw)  # type: ignore[arg-type]

    def create_connection(self, address: tuple[str, int], *args: object, **kw: object) -> object:
        self.connects.append(address)
        if address[0] == PUBLIC_IP:
            return self._connect(("127.0.0.1", self.server.port), *args, **kw)  # type: ignore[arg-type]
        return self._connect(address, *args, **kw)  # type: ignore[arg-type]


PUBLIC_ONLY = FAST.model_copy(update={"allow_private_networks": False})


def test_a_dns_answer_that_changes_after_the_check_is_not_followed(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # First answer public (checked), every later one 127.0.0.1 (DNS rebinding): the
    # connection must go to the checked address, never to a second resolution.
    dns = FakeDns(monkeypatch, server, {"rebind.example": [PUBLIC_IP, "127.0.0.1"]})
    image = load_image(f"http://rebind.example:{server.port}/cat.png", PUBLIC_ONLY)
    assert image.format == "PNG"
    assert dns.connects == [(PUBLIC_IP, server.port)]
    assert dns.answers["rebind.example"] == ["127.0.0.1"]  # resolved once only
    assert server.seen[-1].headers["host"] == f"rebind.example:{server.port}"


def test_a_rebinding_answer_never_reaches_the_loopback_server(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = FakeDns(monkeypatch, server, {"rebind.example": [PUBLIC_IP, "127.0.0.1"]})

    def refuse(address: tuple[str, int], *args: object, **kw: object) -> object:
        dns.connects.append(address)
        if address[0] == PUBLIC_IP:  # the checked host is down
            raise ConnectionRefusedError(111, "refused")
        return dns._connect(address, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", refuse)
    before = len(server.seen)
    with pytest.raises(ImageFetchFailed, match="could not fetch"):
        load_image(f"http://rebind.example:{server.port}/cat.png", PUBLIC_ONLY)
    assert dns.connects == [(PUBLIC_IP, server.port)]
    assert len(server.seen) == before


def test_the_request_keeps_the_host_name_for_host_and_tls(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    FakeDns(monkeypatch, server, {"images.example": [PUBLIC_IP]})
    sent: list[httpx.Request] = []
    original = httpx.Client.send

    def spy(self: httpx.Client, request: httpx.Request, **kw: object) -> httpx.Response:
        sent.append(request)
        return original(self, request, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.Client, "send", spy)
    load_image(f"http://images.example:{server.port}/cat.png", PUBLIC_ONLY)
    (request,) = sent
    assert request.url.host == PUBLIC_IP
    assert request.headers["host"] == f"images.example:{server.port}"
    assert request.extensions["sni_hostname"] == "images.example"
    assert request.headers["accept-encoding"] == "identity"


def test_every_redirect_hop_is_checked(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = FakeDns(
        monkeypatch, server, {"public.example": [PUBLIC_IP], "inside.example": ["127.0.0.1"]}
    )
    target = f"http://inside.example:{server.port}/cat.png"
    server.routes["/to-inside"] = static(302, b"", headers={"Location": target})
    before = len(server.seen)
    with pytest.raises(InvalidImageSource, match="not a public address"):
        load_image(f"http://public.example:{server.port}/to-inside", PUBLIC_ONLY)
    assert dns.connects == [(PUBLIC_IP, server.port)]
    assert [seen.path for seen in server.seen[before:]] == ["/to-inside"]


# --------------------------------------------------------------------------- raw bytes


def test_identity_encoding_is_asked(server: LoopbackServer) -> None:
    load_image(server.url("/cat.png"), FAST)
    assert server.seen[-1].headers["accept-encoding"] == "identity"


def test_compressed_bytes_are_counted_raw(server: LoopbackServer) -> None:
    import os

    payload = os.urandom(2000)  # incompressible: gzip makes it larger than the payload
    body = gzip.compress(payload)
    assert len(body) > 2010
    server.routes["/raw-count.png"] = static(
        200, body, "image/png", headers={"Content-Encoding": "gzip"}, length=-1
    )
    limits = FAST.model_copy(update={"max_bytes": 2010})  # the decoded 2000 bytes would fit
    with pytest.raises(ImageTooLarge, match="over the limit"):
        load_image(server.url("/raw-count.png"), limits)


def test_a_gzip_bomb_never_inflates_past_the_cap(server: LoopbackServer) -> None:
    import tracemalloc

    bomb = gzip.compress(b"\x00" * 50_000_000, compresslevel=9)  # about 50 KB on the wire
    server.routes["/bomb.gz"] = static(200, bomb, "image/png", headers={"Content-Encoding": "gzip"})
    limits = FAST.model_copy(update={"max_bytes": 1_000_000})
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match="over the limit"):
            load_image(server.url("/bomb.gz"), limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000  # decoding chunk by chunk held tens of MB here


def test_a_small_gzip_encoded_image_is_still_accepted(server: LoopbackServer) -> None:
    server.routes["/gz.png"] = static(
        200, gzip.compress(png_bytes()), "image/png", headers={"Content-Encoding": "gzip"}
    )
    assert load_image(server.url("/gz.png"), FAST).format == "PNG"


def test_other_content_encodings_are_refused(server: LoopbackServer) -> None:
    server.routes["/br.png"] = static(200, b"xx", "image/png", headers={"Content-Encoding": "br"})
    with pytest.raises(ImageFetchFailed, match="Content-Encoding 'br'"):
        load_image(server.url("/br.png"), FAST)


# --------------------------------------------------------------------------- downscaling


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_are_downscaled_before_rgb(fmt: str) -> None:
    data = jpeg_bytes(3000, 2000) if fmt == "JPEG" else png_bytes(3000, 2000)
    limits = ImageLimits(max_decoded_pixels=250_000)
    image = decode_image(data, limits)
    assert (image.format, image.width, image.height) == (fmt, 3000, 2000)  # as received
    width, height = image.image.size
    assert image.image.mode == "RGB"
    assert width * height <= 250_000
    assert abs(width / height - 1.5) < 0.02
    assert width >= 590  # shrunk to the cap, not far below it


def test_palette_images_are_downscaled_too() -> None:
    from PIL import Image

    buffer = __import__("io").BytesIO()
    Image.new("P", (1200, 800), 3).save(buffer, format="GIF")
    image = decode_image(buffer.getvalue(), ImageLimits(max_decoded_pixels=10_000))
    assert image.image.mode == "RGB"
    assert image.image.size[0] * image.image.size[1] <= 10_000


def test_small_images_keep_their_size() -> None:
    image = decode_image(png_bytes(40, 25), ImageLimits(max_decoded_pixels=1000))
    assert image.image.size == (40, 25)


def test_pillow_decompression_bomb_limit_applies_over_a_larger_pixel_cap() -> None:
    from PIL import Image

    too_many = int(Image.MAX_IMAGE_PIXELS or 0) * 2 + 1_000_000
    side = int(too_many**0.5) + 1
    limits = ImageLimits(max_pixels=side * side + 1)
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        decode_image(png_claiming_size(side, side), limits)


# --------------------------------------------------------------------------- local paths


def test_outside_the_allowed_dirs_and_missing_give_the_same_error(tmp_path: Path) -> None:
    from ai_local_core.errors import exit_code_for

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "pic.png").write_bytes(png_bytes())
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    (allowed / "link.png").symlink_to(outside)
    limits = in_dirs(allowed)
    assert load_image(str(allowed / "pic.png"), limits).format == "PNG"
    seen = set()
    for source in (
        "/etc/passwd",
        str(outside),
        str(allowed / "link.png"),  # a link out of the directory
        str(allowed / ".." / "outside.png"),
        str(allowed / "missing.png"),
        str(tmp_path / "missing.png"),
        "/nonexistent/dir/cat.png",
        str(allowed),
    ):
        with pytest.raises(InvalidImageSource) as caught:
            load_image(source, limits)
        error = caught.value
        seen.add(
            (error.error_type, exit_code_for(error.error_type), error.message.replace(source, "X"))
        )
    assert len(seen) == 1, seen
    ((error_type, code, _),) = seen
    assert (error_type, code) == ("invalid_image_source", 2)


def test_local_dirs_must_be_absolute() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="absolute"):
        ImageLimits(local_dirs=("pictures",))
