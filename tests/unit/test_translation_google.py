"""The google backend, with Google's web endpoint replaced by a loopback stand-in.

deep-translator's real code path runs (requests + BeautifulSoup); only the base
URL points at 127.0.0.1, so nothing leaves the machine.
"""

from __future__ import annotations

import html
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from ai_local_core.errors import InvalidInput
from ai_local_core.translation.errors import (
    TextTooLong,
    TranslationFailed,
    TranslationRateLimited,
    UnsupportedLanguage,
)
from ai_local_core.translation.google import GoogleBackend

from tests.loopback_http import LoopbackServer, loopback_server, send, slow, static

CANNED = {("pl", "Hello world"): "Witaj świecie", ("iw", "Good morning"): "בוקר טוב"}


def _google_page(handler: BaseHTTPRequestHandler) -> None:
    """Answer like translate.google.com/m: the translation in a result-container div."""
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(handler.path).query)
    key = (query.get("tl", [""])[0], query.get("q", [""])[0])
    text = CANNED.get(key, f"[{key[0]}] {key[1]}")
    page = (
        f"<html><body><div class='result-container'>{html.escape(text)}</div></body></html>"
    ).encode()
    send(handler, 200, page, content_type="text/html; charset=utf-8")


@pytest.fixture(scope="module")
def google() -> Iterator[LoopbackServer]:
    routes = {
        "/m": _google_page,
        "/rate-limited/m": static(429, b"Too Many Requests", "text/html"),
        "/broken/m": static(500, b"Server Error", "text/html"),
        "/empty/m": static(200, b"<html><body>nothing here</body></html>", "text/html"),
        "/slow/m": slow(3.0, _google_page),
    }
    with loopback_server(routes) as server:
        yield server


def _backend(server: LoopbackServer, prefix: str = "", **kw: float) -> GoogleBackend:
    return GoogleBackend(base_url=server.url(f"{prefix}/m"), **kw)  # type: ignore[arg-type]


def test_translates_through_deep_translator(google: LoopbackServer) -> None:
    result = _backend(google).translate("Hello world", "pl")
    assert result.text == "Witaj świecie"
    assert (result.source_language, result.target_language, result.backend) == (
        "auto",
        "pl",
        "google",
    )
    request = google.seen[-1]
    assert request.path == "/m"
    assert request.query["tl"] == ["pl"]
    assert request.query["sl"] == ["auto"]
    assert request.query["q"] == ["Hello world"]


def test_standard_codes_are_mapped_to_googles(google: LoopbackServer) -> None:
    result = _backend(google).translate("Good morning", "HE")
    assert result.text == "בוקר טוב"
    assert result.target_language == "he"
    assert google.seen[-1].query["tl"] == ["iw"]


def test_explicit_source_language(google: LoopbackServer) -> None:
    _backend(google).translate("Guten Tag", "en", source="de")
    assert google.seen[-1].query["sl"] == ["de"]


def test_text_is_stripped(google: LoopbackServer) -> None:
    _backend(google).translate("  Hello world \n", "pl")
    assert google.seen[-1].query["q"] == ["Hello world"]


@pytest.mark.parametrize(
    ("target", "error"),
    [("xx", UnsupportedLanguage), ("polski", UnsupportedLanguage), ("", UnsupportedLanguage)],
)
def test_bad_language_makes_no_request(
    google: LoopbackServer, target: str, error: type[Exception]
) -> None:
    before = len(google.seen)
    with pytest.raises(error):
        _backend(google).translate("Hello", target)
    assert len(google.seen) == before


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text(google: LoopbackServer, text: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        _backend(google).translate(text, "pl")


def test_text_too_long(google: LoopbackServer) -> None:
    with pytest.raises(TextTooLong) as caught:
        _backend(google).translate("a" * 5001, "pl")
    assert caught.value.http_status == 413
    backend = GoogleBackend(max_chars=10)
    with pytest.raises(TextTooLong, match="over the limit of 10"):
        backend.translate("a" * 11, "pl")


def test_rate_limited(google: LoopbackServer) -> None:
    with pytest.raises(TranslationRateLimited) as caught:
        _backend(google, "/rate-limited").translate("Hello", "pl")
    assert caught.value.http_status == 503


@pytest.mark.parametrize("prefix", ["/broken", "/empty", "/not-there"])
def test_upstream_failures(google: LoopbackServer, prefix: str) -> None:
    with pytest.raises(TranslationFailed) as caught:
        _backend(google, prefix).translate("Hello", "pl")
    assert caught.value.http_status == 502


def test_slow_upstream_is_bounded(google: LoopbackServer) -> None:
    with pytest.raises(TranslationFailed, match=r"did not answer within 0\.3 s"):
        _backend(google, "/slow", timeout_s=0.3).translate("Hello", "pl")


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = GoogleBackend(base_url=f"http://127.0.0.1:{port}/m")
    with pytest.raises(TranslationFailed, match="ConnectionError"):
        backend.translate("Hello", "pl")


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        GoogleBackend(timeout_s=0)
    with pytest.raises(ValueError, match="max_chars"):
        GoogleBackend(max_chars=0)
