"""The API server under real gunicorn on loopback: every endpoint, success and failure.

Server A: blip (the tiny model built by the test) + ollama translation, on the
shared Ollama stand-in. Server B: ollama vision + google translation (Google
replaced by a loopback stand-in). Server C: Ollama unreachable (readiness).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_harness import ApiServer, free_port, request, running_api_server
from tests.fixtures.ollama import OllamaStandIn
from tests.image_samples import jpeg_bytes, png_bytes, png_claiming_size
from tests.loopback_http import LoopbackServer, loopback_server, send, static

pytestmark = [pytest.mark.integration, pytest.mark.vision]

pytest.importorskip("PIL")
pytest.importorskip("torch")
pytest.importorskip("transformers")


def _google_page(handler: Any) -> None:
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(handler.path).query)
    text = f"[{query['tl'][0]}] {query['q'][0]}"
    page = f"<html><div class='result-container'>{text}</div></html>".encode()
    send(handler, 200, page, content_type="text/html; charset=utf-8")


@pytest.fixture(scope="module")
def web() -> Iterator[LoopbackServer]:
    """Image URLs and a Google Translate stand-in, on loopback."""
    routes = {
        "/cat.png": static(200, png_bytes(), "image/png"),
        "/cat.jpg": static(200, jpeg_bytes(), "image/jpeg"),
        "/page.html": static(200, b"<html>not an image</html>", "text/html"),
        "/huge.png": static(200, b"\x00" * 300_000, "image/png"),
        "/bomb.png": static(200, png_claiming_size(40_000, 40_000), "image/png"),
        "/google/m": _google_page,
    }
    with loopback_server(routes) as server:
        yield server


def _base_config(standin: OllamaStandIn) -> dict[str, Any]:
    return {
        "log_level": "INFO",
        "ollama": {
            "url": standin.url,
            "timeouts": {"connect": 2.0, "read": 10.0},
            "retries": {"max_attempts": 1},
        },
        "api": {
            "workers": 1,
            "threads": 4,
            "max_concurrent": 2,
            "queue_timeout": 0.5,
            "max_request_bytes": 600_000,
        },
        "image": {
            "limits": {
                "max_bytes": 200_000,
                "max_pixels": 4_000_000,
                "connect_timeout_s": 2.0,
                "read_timeout_s": 2.0,
                "total_timeout_s": 5.0,
                "allow_private_networks": True,  # the test's image server is on loopback
            },
        },
    }


@pytest.fixture(scope="module")
def tiny_blip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.vision.tiny_blip import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="module")
def server_a(
    tmp_path_factory: pytest.TempPathFactory, _shared_standin: OllamaStandIn, tiny_blip_path: Path
) -> Iterator[ApiServer]:
    config = _base_config(_shared_standin)
    config["image"].update({"backend": "blip", "blip": {"model": str(tiny_blip_path)}})
    config["translation"] = {"backend": "ollama", "max_chars": 200}
    config["models"] = {"defaults": {"translation": {"model": "llama3.1:8b", "temperature": 0.0}}}
    with running_api_server(tmp_path_factory.mktemp("api-a"), config) as server:
        yield server


@pytest.fixture(scope="module")
def server_b(
    tmp_path_factory: pytest.TempPathFactory, _shared_standin: OllamaStandIn, web: LoopbackServer
) -> Iterator[ApiServer]:
    config = _base_config(_shared_standin)
    config["image"].update({"backend": "ollama", "ollama": {"model": "llava:7b"}})
    config["translation"] = {
        "backend": "google",
        "google": {"base_url": web.url("/google/m"), "timeout_s": 5.0},
    }
    with running_api_server(tmp_path_factory.mktemp("api-b"), config) as server:
        yield server


def _json_error(status: int, body: Any, expected_status: int, error_type: str) -> None:
    assert status == expected_status, body
    assert body["success"] is False
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert "Traceback" not in json.dumps(body)


# --------------------------------------------------------------------------- health, ready


def test_health(server_a: ApiServer) -> None:
    status, headers, raw = server_a.get("/health")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(raw)["status"] == "ok"


def test_ready_when_warm(server_a: ApiServer) -> None:
    status, _, raw = server_a.get("/ready")
    body = json.loads(raw)
    assert status == 200
    assert body["ready"] is True
    assert body["checks"]["ollama"]["ok"] is True
    assert body["checks"]["image"]["ok"] is True
    assert body["checks"]["image"]["backend"] == "blip"
    assert "tiny-blip" in body["checks"]["image"]["model"]
    assert body["checks"]["translation"]["ok"] is True


def test_not_ready_without_ollama(tmp_path: Path, _shared_standin: OllamaStandIn) -> None:
    config = _base_config(_shared_standin)
    config["ollama"]["url"] = f"http://127.0.0.1:{free_port()}"
    config["image"]["backend"] = "ollama"
    config["translation"] = {"backend": "ollama"}
    with running_api_server(tmp_path, config, ready=False) as server:
        deadline = time.monotonic() + 20
        while True:
            status, _, raw = server.get("/ready")
            body = json.loads(raw)
            if "warming_up" not in body["checks"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 503
        assert body["ready"] is False
        assert body["checks"]["ollama"]["ok"] is False
        assert body["checks"]["image"]["ok"] is False
        assert "connection_failed" in body["checks"]["image"]["error"]
        # Liveness does not depend on Ollama; requests fail with a clear 502.
        assert server.get("/health")[0] == 200
        status, answer = server.post("/v1/translate", {"text": "Hello", "target": "de"})
        _json_error(status, answer, 502, "connection_failed")


# --------------------------------------------------------------------------- describe


def test_describe_url_with_tiny_blip(server_a: ApiServer, web: LoopbackServer) -> None:
    status, body = server_a.post("/v1/describe", {"image": web.url("/cat.png"), "max_length": 5})
    assert status == 200, body
    assert body["success"] is True
    assert body["backend"] == "blip"
    assert len(body["description"].split()) == body["tokens"] == 5
    assert body["image"] == {"format": "PNG", "width": 32, "height": 24}
    assert body["max_length"] == 5


def test_describe_base64_and_default_length(server_a: ApiServer) -> None:
    encoded = base64.b64encode(jpeg_bytes()).decode()
    status, body = server_a.post("/v1/describe", {"image_base64": encoded})
    assert status == 200, body
    assert body["max_length"] == 50
    assert 1 <= body["tokens"] <= 50
    assert body["image"]["format"] == "JPEG"


def test_describe_with_ollama_vision(server_b: ApiServer, web: LoopbackServer) -> None:
    status, body = server_b.post("/v1/describe", {"image": web.url("/cat.jpg"), "max_length": 4})
    assert status == 200, body
    assert (body["backend"], body["model"], body["tokens"]) == ("ollama", "llava:7b", 4)
    assert body["description"] == "Stand-in reply from llava:7b:"


BAD_DESCRIBE: list[tuple[str, Any, int, str]] = [
    ("bad URL", {"image": "http://"}, 400, "invalid_image_source"),
    ("unsupported scheme", {"image": "ftp://127.0.0.1/cat.png"}, 400, "invalid_image_source"),
    ("local path refused", {"image": "/etc/hostname"}, 400, "invalid_image_source"),
    ("404 URL", {"image": "WEB/missing.png"}, 400, "image_fetch_failed"),
    ("not an image", {"image": "WEB/page.html"}, 400, "not_an_image"),
    ("image too large", {"image": "WEB/huge.png"}, 413, "image_too_large"),
    ("decompression bomb", {"image": "WEB/bomb.png"}, 413, "image_too_large"),
    ("bad base64", {"image_base64": "%%%"}, 400, "invalid_input"),
    ("base64 not an image", {"image_base64": "aGVsbG8="}, 400, "not_an_image"),
    ("missing fields", {}, 400, "invalid_input"),
    ("both sources", {"image": "WEB/cat.png", "image_base64": "aGk="}, 400, "invalid_input"),
    ("wrong type", {"image": 123}, 400, "invalid_input"),
    ("max_length not whole", {"image": "WEB/cat.png", "max_length": "50.5"}, 400, "invalid_input"),
    ("max_length bool", {"image": "WEB/cat.png", "max_length": True}, 400, "invalid_input"),
    ("max_length out of range", {"image": "WEB/cat.png", "max_length": 0}, 400, "invalid_input"),
    ("array body", [1, 2], 400, "invalid_input"),
    ("not JSON", b"{nope", 400, "invalid_input"),
    ("empty body", b"", 400, "invalid_input"),
    ("body over the cap", {"image_base64": "A" * 700_000}, 413, "payload_too_large"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "error_type"), BAD_DESCRIBE, ids=[c[0] for c in BAD_DESCRIBE]
)
def test_describe_bad_input(
    server_a: ApiServer, web: LoopbackServer, case: str, body: Any, status: int, error_type: str
) -> None:
    if isinstance(body, dict) and isinstance(body.get("image"), str):
        body = {**body, "image": body["image"].replace("WEB", web.url(""))}
    got, answer = server_a.post("/v1/describe", body)
    _json_error(got, answer, status, error_type)


# --------------------------------------------------------------------------- translate


def test_translate_with_ollama(server_a: ApiServer, ollama_standin: OllamaStandIn) -> None:
    status, body = server_a.post("/v1/translate", {"text": "Hello world", "target": "pl"})
    assert status == 200, body
    assert body == {
        "success": True,
        "translation": "Stand-in reply from llama3.1:8b: Hello world",
        "source_language": "auto",
        "target_language": "pl",
        "backend": "ollama",
        "model": "llama3.1:8b",
        "duration_ms": body["duration_ms"],
    }
    assert len(ollama_standin.requests("/api/chat")) == 1


def test_translate_with_google(server_b: ApiServer, web: LoopbackServer) -> None:
    status, body = server_b.post(
        "/v1/translate", {"text": "Hello world", "target": "de", "source": "en"}
    )
    assert status == 200, body
    assert body["translation"] == "[de] Hello world"
    assert (body["backend"], body["source_language"]) == ("google", "en")
    assert web.seen[-1].query["sl"] == ["en"]


BAD_TRANSLATE: list[tuple[str, Any, int, str]] = [
    ("unknown language", {"text": "Hi", "target": "xx"}, 400, "unsupported_language"),
    ("not a language code", {"text": "Hi", "target": "polish"}, 400, "unsupported_language"),
    ("empty text", {"text": "  ", "target": "pl"}, 400, "invalid_input"),
    ("text too long", {"text": "a" * 201, "target": "pl"}, 413, "text_too_long"),
    ("missing target", {"text": "Hi"}, 400, "invalid_input"),
    ("missing text", {"target": "pl"}, 400, "invalid_input"),
    ("wrong type", {"text": 42, "target": "pl"}, 400, "invalid_input"),
    ("target wrong type", {"text": "Hi", "target": ["pl"]}, 400, "invalid_input"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "error_type"), BAD_TRANSLATE, ids=[c[0] for c in BAD_TRANSLATE]
)
def test_translate_bad_input(
    server_a: ApiServer,
    ollama_standin: OllamaStandIn,
    case: str,
    body: Any,
    status: int,
    error_type: str,
) -> None:
    got, answer = server_a.post("/v1/translate", body)
    _json_error(got, answer, status, error_type)
    assert ollama_standin.requests("/api/chat") == []


def test_translate_upstream_failures(server_a: ApiServer, ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("status", status=503, path="/api/chat")
    status, body = server_a.post("/v1/translate", {"text": "Hi", "target": "de"})
    _json_error(status, body, 503, "server_busy")
    ollama_standin.add_fault("close", path="/api/chat")
    status, body = server_a.post("/v1/translate", {"text": "Hi", "target": "de"})
    _json_error(status, body, 502, "connection_failed")


# --------------------------------------------------------------------------- complete


def test_complete(server_a: ApiServer) -> None:
    status, body = server_a.post("/v1/complete", {"user": "Hello", "temperature": 0.7})
    assert status == 200, body
    assert body["success"] is True
    assert body["content"] == "Stand-in reply from llama3.1:8b: Hello"
    assert body["provider"] == "ollama"
    assert body["usage"]["completion_tokens"] == 5
    assert body["tokens_per_second"] > 0


BAD_COMPLETE: list[tuple[str, Any, int, str]] = [
    ("empty prompt", {"user": ""}, 400, "invalid_input"),
    ("missing prompt", {"temperature": 0.5}, 400, "invalid_input"),
    ("temperature out of range", {"user": "Hi", "temperature": 5}, 400, "invalid_input"),
    ("wrong type", {"user": ["Hi"]}, 400, "invalid_input"),
    ("temperature not numeric", {"user": "Hi", "temperature": "warm"}, 400, "invalid_input"),
    ("NaN", b'{"user": "Hi", "temperature": NaN}', 400, "invalid_input"),
    ("unknown option", {"user": "Hi", "options": {"top_kk": 1}}, 400, "invalid_input"),
    (
        "option and top-level",
        {"user": "Hi", "top_p": 0.5, "options": {"top_p": 0.5}},
        400,
        "invalid_input",
    ),
    ("unknown model", {"user": "Hi", "model": "missing-model:1b"}, 404, "model_not_found"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "error_type"), BAD_COMPLETE, ids=[c[0] for c in BAD_COMPLETE]
)
def test_complete_bad_input(
    server_a: ApiServer, case: str, body: Any, status: int, error_type: str
) -> None:
    got, answer = server_a.post("/v1/complete", body)
    _json_error(got, answer, status, error_type)


def test_php_style_input_and_unknown_keys(server_a: ApiServer, web: LoopbackServer) -> None:
    """Numeric strings and 512.0 are coerced; unknown keys are ignored and named."""
    body = {
        "user": "one two three",
        "temperature": "0.7",
        "max_tokens": "2.0",
        "stream": "false",
        "top_k": 40,
        "options": {"num_ctx": "4096"},
    }
    status, answer = server_a.post("/v1/complete", body)
    assert status == 200, answer
    assert answer["done_reason"] == "length"  # max_tokens "2.0" reached Ollama as 2
    assert answer["warnings"] == ["unknown key 'top_k' ignored; Ollama options go in 'options'"]
    status, answer = server_a.post("/v1/complete", {"user": "Hi", "options": {"stop": ["from"]}})
    assert (status, answer["content"]) == (200, "Stand-in reply ")
    assert "warnings" not in answer
    status, answer = server_a.post("/v1/translate", {"text": "Hi", "target": "pl", "tone": "x"})
    assert (status, answer["warnings"]) == (200, ["unknown key 'tone' ignored"])
    status, answer = server_a.post(
        "/v1/describe", {"image": web.url("/cat.png"), "max_length": "4", "colour": True}
    )
    assert (status, answer["max_length"], answer["warnings"]) == (
        200,
        4,
        ["unknown key 'colour' ignored"],
    )


def test_complete_busy_upstream(server_a: ApiServer, ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("status", status=503, path="/api/chat")
    status, body = server_a.post("/v1/complete", {"user": "Hello"})
    _json_error(status, body, 503, "server_busy")


def test_busy_server_answers_503(server_a: ApiServer, ollama_standin: OllamaStandIn) -> None:
    """Two slots per worker: a third request waiting over queue_timeout gets 503."""
    ollama_standin.add_fault("stall", path="/api/chat", seconds=2.0, count=2)
    results: list[tuple[int, Any]] = []

    def call() -> None:
        results.append(server_a.post("/v1/complete", {"user": "slow"}))

    slow_calls = [threading.Thread(target=call) for _ in range(2)]
    for thread in slow_calls:
        thread.start()
    time.sleep(0.5)
    status, body = server_a.post("/v1/complete", {"user": "one more"})
    for thread in slow_calls:
        thread.join(15)
    _json_error(status, body, 503, "service_busy")
    assert sorted(code for code, _ in results) == [200, 200]


# --------------------------------------------------------------------------- routing, metrics


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/v1/describe", 405, "method_not_allowed"),
        ("POST", "/health", 405, "method_not_allowed"),
        ("DELETE", "/v1/translate", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_are_json(
    server_a: ApiServer, method: str, path: str, status: int, error_type: str
) -> None:
    got, headers, raw = request(
        method, server_a.url + path, data=b"{}" if method != "GET" else None
    )
    assert headers["Content-Type"].startswith("application/json")
    _json_error(got, json.loads(raw), status, error_type)
    if status == 405:
        assert headers["Allow"]


def test_metrics(server_a: ApiServer, ollama_standin: OllamaStandIn) -> None:
    server_a.post("/v1/complete", {"user": "count me"})
    server_a.post("/v1/translate", {"text": "Hi", "target": "xx"})
    ollama_standin.add_fault("status", status=503, path="/api/chat")
    server_a.post("/v1/translate", {"text": "Hi", "target": "de"})
    status, headers, raw = server_a.get("/metrics")
    text = raw.decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert "ai_local_core_http_requests_created" in text  # one worker: plain registry
    assert (
        'ai_local_core_http_requests_total{endpoint="/v1/complete",method="POST",status="200"}'
        in text
    )
    assert 'endpoint="/v1/translate",method="POST",status="400"' in text
    assert (
        'ai_local_core_backend_errors_total{endpoint="/v1/translate",error_type="server_busy"}'
        in text
    )
    assert 'ai_local_core_http_request_duration_seconds_count{endpoint="/v1/describe"}' in text
    count_line = next(
        line
        for line in text.splitlines()
        if line.startswith("ai_local_core_completion_tokens_per_second_count")
    )
    assert float(count_line.split()[-1]) >= 1
    tokens_line = next(
        line
        for line in text.splitlines()
        if line.startswith("ai_local_core_completion_tokens_total")
    )
    assert float(tokens_line.split()[-1]) >= 6


def test_metrics_add_up_over_two_workers(tmp_path: Path, _shared_standin: OllamaStandIn) -> None:
    config = _base_config(_shared_standin)
    config["api"].update({"workers": 2, "threads": 2, "warm_on_start": False})
    config["image"]["backend"] = "ollama"
    config["translation"] = {"backend": "ollama"}
    with running_api_server(tmp_path, config, ready=False) as server:
        for _ in range(6):
            status, _ = server.post("/v1/translate", {"text": "Hi", "target": "de"})
            assert status == 200
        _, _, raw = server.get("/metrics")
        logs = server.logs()
    line = 'ai_local_core_http_requests_total{endpoint="/v1/translate",method="POST",status="200"}'
    values = [float(x.split()[-1]) for x in raw.decode().splitlines() if x.startswith(line)]
    assert values == [6.0]
    assert logs.count("Booting worker") == 2
    # Multiprocess mode (one file per worker, summed at scrape): no *_created samples.
    assert "ai_local_core_http_requests_created" not in raw.decode()
