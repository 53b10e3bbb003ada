"""The API's keep-alive for slow answers (``api.keepalive_after``), in-process on the stand-in.

Work that ends within the grace is answered as always; slower work is answered 200 at once, kept
alive with spaces, and ends with its JSON object, error included. Metrics and request slots count
such requests like any other. Through nginx and an edge with an idle limit:
``tests/fault/test_edge_idle.py``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ai_local_core.api import create_app
from ai_local_core.config import load_settings
from flask import Flask
from flask.testing import FlaskClient

from tests.fixtures.ollama import OllamaStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GRACE = 0.4
INTERVAL = 0.1


@pytest.fixture
def app(ollama_standin: OllamaStandIn) -> Iterator[Flask]:
    settings = load_settings(
        ollama={"url": ollama_standin.url, "retries": {"max_attempts": 1}},
        api={
            "keepalive_after": GRACE,
            "keepalive_interval": INTERVAL,
            "max_concurrent": 1,
            "queue_timeout": 0.2,
            "warm_on_start": False,
        },
        translation={"backend": "ollama"},
        image={"backend": "ollama"},
    )
    app = create_app(settings, warm_up=False)
    yield app
    app.extensions["ai_local_core"]["services"].close()


def post(
    client: FlaskClient, body: dict[str, Any]
) -> tuple[int, dict[str, str], list[tuple[float, bytes]]]:
    """Status, headers and the body's pieces with the time each arrived (from the request)."""
    started = time.monotonic()
    response = client.post("/v1/complete", json=body, buffered=False)
    pieces = [(time.monotonic() - started, piece) for piece in response.iter_encoded()]
    response.close()
    return response.status_code, dict(response.headers), pieces


def whole(pieces: list[tuple[float, bytes]]) -> Any:
    return json.loads(b"".join(piece for _, piece in pieces))


def metric(client: FlaskClient, line_start: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    values = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line_start)]
    return values[0] if values else 0.0


def test_quick_work_is_answered_as_always(app: Flask, ollama_standin: OllamaStandIn) -> None:
    client = app.test_client()
    status, headers, pieces = post(client, {"user": "Hello"})
    assert status == 200
    assert "X-Accel-Buffering" not in headers
    assert not b"".join(p for _, p in pieces).startswith(b" ")
    assert whole(pieces)["content"].endswith("Hello")
    ollama_standin.add_fault("status", status=503, path="/api/chat")
    status, _, pieces = post(client, {"user": "Hello"})
    assert status == 503
    assert whole(pieces)["error"]["type"] == "server_busy"


def test_slow_work_is_kept_alive_then_answered(app: Flask, ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("stall", seconds=1.2, path="/api/chat")
    client = app.test_client()
    status, headers, pieces = post(client, {"user": "Hello"})
    assert status == 200
    assert headers["X-Accel-Buffering"] == "no"
    spaces = [at for at, piece in pieces if piece == b" "]
    # The first space right after the grace, then one per interval until the answer (~1.2 s).
    assert GRACE <= spaces[0] < GRACE + 0.5, pieces
    assert len(spaces) >= 4, pieces
    gaps = [b - a for a, b in itertools.pairwise(spaces)]
    assert max(gaps) < INTERVAL + 0.4, gaps
    assert pieces[-1][0] >= 1.2
    answer = whole(pieces)
    assert answer["success"] is True
    assert answer["content"].endswith("Hello")
    line = 'ai_local_core_http_requests_total{endpoint="/v1/complete",method="POST",status="200"}'
    assert metric(client, line) == 1
    tokens = answer["usage"]["completion_tokens"]
    assert tokens > 0
    assert metric(client, "ai_local_core_completion_tokens_total") == tokens


def test_an_error_after_the_commit_is_in_the_body(
    app: Flask, ollama_standin: OllamaStandIn
) -> None:
    ollama_standin.add_fault("stall", seconds=1.5, path="/api/chat")
    client = app.test_client()
    # Ollama may stay silent 0.8 s: the grace is over first, then the read times out.
    status, _, pieces = post(client, {"user": "Hello", "timeout": 0.8})
    assert status == 200
    assert pieces[0][1] == b" "
    answer = whole(pieces)
    assert answer["success"] is False
    assert answer["error"]["type"] == "timeout"
    assert set(answer) == {"success", "error"}
    # Counted with the status the answer would have had, and as a backend error.
    line = 'ai_local_core_http_requests_total{endpoint="/v1/complete",method="POST",status="504"}'
    assert metric(client, line) == 1
    errors = 'ai_local_core_backend_errors_total{endpoint="/v1/complete",error_type="timeout"}'
    assert metric(client, errors) == 1


def test_a_kept_alive_request_holds_its_slot_to_the_end(
    app: Flask, ollama_standin: OllamaStandIn
) -> None:
    """One slot: while a slow request is kept alive another one is refused, and after it the
    slot is free again."""
    ollama_standin.add_fault("stall", seconds=1.2, path="/api/chat")
    results: list[tuple[int, Any]] = []

    def slow() -> None:
        status, _, pieces = post(app.test_client(), {"user": "slow"})
        results.append((status, whole(pieces)))

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(GRACE + 0.2)  # the slow one is past its grace, kept alive
    status, _, pieces = post(app.test_client(), {"user": "refused"})
    assert status == 503
    assert whole(pieces)["error"]["type"] == "service_busy"
    thread.join(10)
    assert results and results[0][0] == 200 and results[0][1]["success"] is True
    status, _, pieces = post(app.test_client(), {"user": "after"})
    assert status == 200 and whole(pieces)["success"] is True
