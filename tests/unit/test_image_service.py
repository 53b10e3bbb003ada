"""The describe request model and base64 input (no backend needed)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from ai_local_core.cli._common import validate_input
from ai_local_core.errors import ImageTooLarge, InvalidInput
from ai_local_core.image.loader import ImageLimits, is_url
from ai_local_core.image.service import DescribeRequest, decode_base64_image


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({}, "exactly one of"),
        ({"image": "http://x/a.png", "image_base64": "AAAA"}, "exactly one of"),
        ({"image": ""}, "at least 1 character"),
        ({"image": "   "}, "'image' is empty"),
        ({"image": 42}, "image: Input should be a valid string"),
        ({"image": "http://x/a.png", "max_length": "fifty"}, "max_length: must be a number"),
        ({"image": "http://x/a.png", "max_length": True}, "max_length: must be a whole number"),
        ({"image": "http://x/a.png", "max_length": [50]}, "max_length: Input should be a valid"),
        ({"image": "http://x/a.png", "max_length": 0}, "greater than or equal to 1"),
        ({"image": "http://x/a.png", "max_length": 513}, "less than or equal to 512"),
        ({"image": "http://x/a.png", "max_length": 5.5}, "max_length: must be a whole number"),
        ({"color": "red"}, "exactly one of .*; unknown keys ignored: 'color'"),
    ],
)
def test_bad_requests(payload: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        validate_input(DescribeRequest, payload)


def test_good_request() -> None:
    request = validate_input(DescribeRequest, {"image": "http://x/a.png", "max_length": 20})
    assert (request.image, request.max_length) == ("http://x/a.png", 20)
    assert request.input_warnings() == []


@pytest.mark.parametrize("max_length", ["20", 20.0, " 20 ", "20.0"])
def test_php_style_max_length(max_length: Any) -> None:
    request = validate_input(DescribeRequest, {"image": "http://x/a.png", "max_length": max_length})
    assert request.max_length == 20 and type(request.max_length) is int


def test_unknown_keys_are_ignored_and_named() -> None:
    request = validate_input(DescribeRequest, {"image": "http://x/a.png", "color": "red"})
    assert request.input_warnings() == ["unknown key 'color' ignored"]


def test_base64_plain_and_data_uri() -> None:
    raw = b"\x89PNG\r\n\x1a\nrest"
    encoded = base64.b64encode(raw).decode()
    limits = ImageLimits()
    assert decode_base64_image(encoded, limits) == raw
    assert decode_base64_image(f"data:image/png;base64,{encoded}", limits) == raw


@pytest.mark.parametrize("text", ["not base64!!", "AAA", "data:text/plain;base64,AAAA"])
def test_base64_invalid(text: str) -> None:
    with pytest.raises(InvalidInput, match="not valid base64"):
        decode_base64_image(text, ImageLimits())


def test_base64_too_large_is_refused_before_decoding() -> None:
    limits = ImageLimits(max_bytes=100)
    with pytest.raises(ImageTooLarge):
        decode_base64_image("A" * 400, limits)
    with pytest.raises(ImageTooLarge):
        decode_base64_image(base64.b64encode(b"x" * 101).decode(), limits)
    assert len(decode_base64_image(base64.b64encode(b"x" * 100).decode(), limits)) == 100


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("https://example.com/a.jpg", True),
        ("http://127.0.0.1:8080/a", True),
        ("ftp://host/a", True),
        ("/tmp/a.png", False),
        ("relative/a.png", False),
        ("C:/x.png", False),
    ],
)
def test_is_url(source: str, expected: bool) -> None:
    assert is_url(source) is expected


# --------------------------------------------------------------------------- the API's slot


class _Backend:
    name = "fake"
    model = "fake-model"
    loaded = True

    def load(self) -> None:
        pass

    def describe(self, image: Any, *, max_length: int) -> Any:
        from ai_local_core.image.base import Description

        return Description(text="a cat", backend="fake", model="fake-model", tokens=2)


def test_a_stalled_image_fetch_does_not_hold_the_request_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import time

    from ai_local_core.api.app import create_app
    from ai_local_core.api.services import Services
    from ai_local_core.cli import complete as complete_module
    from ai_local_core.config import Settings

    from tests.image_samples import png_bytes
    from tests.loopback_http import loopback_server, slow, static

    settings = Settings(
        api={"max_concurrent": 1, "queue_timeout": 0.5, "keepalive_after": 10},
        image={"limits": {"allow_private_networks": True, "read_timeout_s": 4}},
    )
    services = Services(settings)
    services._image = _Backend()  # type: ignore[assignment]
    monkeypatch.setattr(complete_module, "complete", lambda payload, settings: {"content": "ok"})
    app = create_app(settings, services=services, warm_up=False)
    routes = {"/slow.png": slow(2.0, static(200, png_bytes(), "image/png"))}
    with loopback_server(routes) as web:
        answers: dict[str, Any] = {}

        def fetch_image() -> None:
            response = app.test_client().post("/v1/describe", json={"image": web.url("/slow.png")})
            answers["describe"] = response.get_json()

        fetcher = threading.Thread(target=fetch_image)
        fetcher.start()
        deadline = time.monotonic() + 2
        while not web.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert web.seen, "the image fetch never started"
        started = time.monotonic()
        response = app.test_client().post("/v1/complete", json={"user": "Hi"})
        took = time.monotonic() - started
        fetcher.join(5)
    assert response.get_json() == {"success": True, "content": "ok"}
    assert took < 1.0  # not queued behind the image fetch (queue_timeout 0.5 s would be a 503)
    assert answers["describe"]["success"] is True
    assert answers["describe"]["description"] == "a cat"
