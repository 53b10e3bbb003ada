"""The CLIs' warm path client: the server's answer (or failure) once it was sent the request;
None (run in-process) only when the request never reached it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from ai_local_core.api.remote import RemoteError, call_api, exit_code_for
from ai_local_core.config import Settings, load_settings
from ai_local_core.errors import ApiServerError

from tests.api_harness import free_port
from tests.loopback_http import Handler, LoopbackServer, loopback_server, slow, static


def _json(status: int, body: object) -> Handler:
    return static(status, json.dumps(body).encode(), "application/json")


def _kept_alive(body: object, *, pauses: int = 4, pause_s: float = 0.2) -> Handler:
    """The API's committed answer: 200, a space every ``pause_s``, then the JSON object."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        handler.close_connection = True
        handler.end_headers()
        for _ in range(pauses):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(pause_s)
        handler.wfile.write(json.dumps(body).encode() + b"\n")

    return handle


@pytest.fixture(scope="module")
def api() -> Iterator[LoopbackServer]:
    routes = {
        "/ok/v1/translate": _json(200, {"success": True, "translation": "Hallo"}),
        "/error/v1/translate": _json(
            400, {"success": False, "error": {"type": "unsupported_language", "message": "no"}}
        ),
        "/busy/v1/translate": _json(
            503, {"success": False, "error": {"type": "service_busy", "message": "busy"}}
        ),
        "/proxy/v1/translate": static(502, b"<html>Bad Gateway</html>", "text/html"),
        "/old/v1/translate": _json(
            404, {"success": False, "error": {"type": "not_found", "message": "no route"}}
        ),
        "/odd/v1/translate": _json(200, {"translation": "no success key"}),
        "/slow/v1/translate": slow(2.0, _json(200, {"success": True})),
        "/kept/v1/translate": _kept_alive({"success": True, "translation": "Hallo"}),
        "/kept-error/v1/translate": _kept_alive(
            {"success": False, "error": {"type": "timeout", "message": "Ollama was silent"}}
        ),
    }
    with loopback_server(routes) as server:
        yield server


def _settings(url: str | None, **api: object) -> Settings:
    return load_settings(api={"url": url, **api})


def test_no_url_means_in_process() -> None:
    assert call_api(_settings(None), "/v1/translate", {}) is None


def test_success_is_returned(api: LoopbackServer) -> None:
    answer = call_api(_settings(api.url("/ok")), "/v1/translate", {"text": "Hi", "target": "de"})
    assert answer == {"success": True, "translation": "Hallo"}
    assert api.seen[-1].path == "/ok/v1/translate"


@pytest.mark.parametrize(
    ("prefix", "error_type", "exit_code", "status"),
    [("/error", "unsupported_language", 2, 400), ("/busy", "service_busy", 24, 503)],
)
def test_server_errors_are_raised_with_their_type(
    api: LoopbackServer, prefix: str, error_type: str, exit_code: int, status: int
) -> None:
    with pytest.raises(RemoteError) as caught:
        call_api(_settings(api.url(prefix)), "/v1/translate", {})
    assert caught.value.to_dict() == {"type": error_type, "message": caught.value.message}
    assert (caught.value.exit_code, caught.value.http_status) == (exit_code, status)


@pytest.mark.parametrize(
    ("prefix", "status"), [("/proxy", 502), ("/odd", 200)], ids=["proxy", "odd"]
)
def test_answers_outside_the_contract_are_final_errors(
    api: LoopbackServer, prefix: str, status: int
) -> None:
    with pytest.raises(ApiServerError) as caught:
        call_api(_settings(api.url(prefix)), "/v1/translate", {})
    assert f"answered HTTP {status} without its JSON object" in caught.value.message
    assert caught.value.exit_code == 25


def test_a_server_without_the_route_is_final(api: LoopbackServer) -> None:
    # The request reached a server: its not_found is the answer (exit 25), not a reason to
    # run the work here as well.
    with pytest.raises(RemoteError) as caught:
        call_api(_settings(api.url("/old")), "/v1/translate", {})
    assert (caught.value.error_type, caught.value.exit_code) == ("not_found", 25)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "http://", "http://[::1"])
def test_a_url_that_is_not_http_sends_nothing_and_falls_back(url: str) -> None:
    assert call_api(_settings(url), "/v1/translate", {}) is None


def test_nothing_listening_falls_back() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert call_api(_settings(url), "/v1/translate", {}) is None


def test_a_server_that_stops_answering_is_an_error(api: LoopbackServer) -> None:
    settings = _settings(api.url("/slow"), client_timeout=0.3)
    with pytest.raises(ApiServerError, match=r"did not answer within 0\.3 s") as caught:
        call_api(settings, "/v1/translate", {})
    assert caught.value.exit_code == 25


def test_keepalive_bytes_count_as_answer_and_the_body_decides(api: LoopbackServer) -> None:
    # 0.8 s in all, never more than 0.2 s of silence: the client timeout bounds silence.
    settings = _settings(api.url("/kept"), client_timeout=0.5)
    assert call_api(settings, "/v1/translate", {}) == {"success": True, "translation": "Hallo"}
    with pytest.raises(RemoteError) as caught:
        call_api(_settings(api.url("/kept-error"), client_timeout=0.5), "/v1/translate", {})
    # Status 200 on the wire: the error's type and exit code come from the body.
    assert caught.value.to_dict() == {"type": "timeout", "message": "Ollama was silent"}
    assert caught.value.exit_code == 15


def test_the_requests_own_timeout_extends_the_wait(api: LoopbackServer) -> None:
    settings = _settings(api.url("/slow"), client_timeout=0.3)
    # Ollama may be silent for up to 1 s: the server gets that plus its margin (over 2 s).
    assert call_api(settings, "/v1/translate", {"timeout": 1}) == {"success": True}
    with pytest.raises(ApiServerError, match=r"did not answer within 0\.3 s"):
        call_api(settings, "/v1/translate", {"timeout": "not a number"})


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        ("invalid_input", 2),
        ("config_error", 3),
        ("model_not_found", 11),
        ("not_an_image", 2),
        ("image_fetch_failed", 22),
        ("image_too_large", 23),
        ("text_too_long", 23),
        ("backend_unavailable", 20),
        ("translation_failed", 21),
        ("internal_error", 1),
        ("something_new", 1),
    ],
)
def test_exit_codes_by_type(error_type: str, code: int) -> None:
    assert exit_code_for(error_type) == code
