"""The describe request model and base64 input (no backend needed)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from ai_local_core.cli._common import validate_input
from ai_local_core.errors import InvalidInput
from ai_local_core.image.errors import ImageTooLarge
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
