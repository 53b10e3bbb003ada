"""The google backend, with Google's web endpoint replaced by a loopback stand-in.

The backend's real code path runs (one bounded ``requests`` GET, the page read with
BeautifulSoup as deep-translator reads it); only the base URL points at 127.0.0.1,
so nothing leaves the machine. A stuck upstream is :func:`tests.loopback_http.silent_server`.
"""

from __future__ import annotations

import html
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from ai_local_core.api import create_app
from ai_local_core.config import load_settings
from ai_local_core.errors import (
    InvalidInput,
    ServiceBusy,
    TextTooLong,
    TranslationFailed,
    TranslationRateLimited,
    UnsupportedLanguage,
)
from ai_local_core.translation.google import GoogleBackend

from tests.loopback_http import (
    LoopbackServer,
    loopback_server,
    send,
    silent_server,
    slow,
    static,
)

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


def test_translates_through_the_web_page(google: LoopbackServer) -> None:
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


def test_same_source_and_target_makes_no_request(google: LoopbackServer) -> None:
    before = len(google.seen)
    assert _backend(google).translate("Hello", "pl", source="pl").text == "Hello"
    assert len(google.seen) == before


def test_the_answer_is_asked_for_unencoded(google: LoopbackServer) -> None:
    _backend(google).translate("Hello world", "pl")
    assert google.seen[-1].headers["accept-encoding"] == "identity"


def test_a_page_without_a_declared_charset_is_read_as_it_is() -> None:
    page = "<html><body><div class='result-container'>Witaj świecie</div></body></html>"
    route = static(200, page.encode(), "text/html")  # no charset: requests would say latin-1
    with loopback_server({"/m": route}) as server:
        assert GoogleBackend(base_url=server.url("/m")).translate("Hi", "pl").text == (
            "Witaj świecie"
        )


def test_an_endless_page_is_cut_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import ai_local_core.translation.google as google_module

    monkeypatch.setattr(google_module, "MAX_PAGE_BYTES", 100_000)
    route = static(200, b"<html>" + b"x" * 200_000, "text/html")
    with (
        loopback_server({"/m": route}) as server,
        pytest.raises(TranslationFailed, match="over 100000 bytes"),
    ):
        GoogleBackend(base_url=server.url("/m")).translate("Hello", "pl")


def _new_threads(before: set[threading.Thread], within_s: float = 1.0) -> set[threading.Thread]:
    """Threads started since ``before`` that are still alive after ``within_s`` at most
    (a thread that is ending gets that long to finish)."""
    deadline = time.monotonic() + within_s
    while True:
        left = set(threading.enumerate()) - before
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def test_a_stuck_upstream_ends_the_call_and_its_socket() -> None:
    """An upstream that accepts and never answers: the call fails after ``timeout_s``, in
    the caller's thread, having closed its connection; no thread is left behind."""
    with silent_server() as server:
        before = set(threading.enumerate())
        count = threading.active_count()
        backend = GoogleBackend(base_url=server.url("/m"), timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(TranslationFailed, match=r"did not answer within 0\.5 s"):
            backend.translate("Hello", "pl")
        elapsed = time.monotonic() - started
        assert server.accepted.is_set()
        assert 0.4 < elapsed < 2.0
        # The call closed its socket before it raised: the upstream sees the hang-up now.
        assert server.hung_up.wait(1.0)
        assert _new_threads(before) == set()
        assert threading.active_count() <= count


def test_a_stuck_upstream_holds_its_api_slot_until_the_call_has_ended() -> None:
    """Through the API: the request keeps its slot while the call is stuck, and frees it
    only once the call has closed its connection; no thread outlives the request."""
    with silent_server() as server:
        settings = load_settings(
            api={"max_concurrent": 1, "queue_timeout": 0.1, "warm_on_start": False},
            translation={
                "backend": "google",
                "google": {"timeout_s": 1.0, "base_url": server.url("/m")},
            },
        )
        app = create_app(settings, warm_up=False)
        services = app.extensions["ai_local_core"]["services"]
        before = set(threading.enumerate())
        answers: list[Any] = []

        def call() -> None:
            body = {"text": "Hello", "target": "pl"}
            answers.append(app.test_client().post("/v1/translate", json=body))

        caller = threading.Thread(target=call, name="test-caller")
        caller.start()
        try:
            assert server.accepted.wait(2.0)
            with pytest.raises(ServiceBusy), services.slot():
                pass  # the stuck call holds the only slot
            assert not server.hung_up.is_set()
        finally:
            caller.join(5.0)
        assert not caller.is_alive()
        response = answers[0]
        assert response.status_code == 502
        assert response.get_json()["error"]["type"] == "translation_failed"
        # The slot is free again, and the call that held it has closed its connection.
        with services.slot():
            assert server.hung_up.wait(1.0)
        assert _new_threads(before) == set()
        services.close()


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
