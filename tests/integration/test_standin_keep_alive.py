"""Idle means idle: the Ollama stand-in unloads a model after ``keep_alive`` of no use, observed
the way an operator (and the exporter) sees it, through ``GET /api/ps``.

Ollama's contract (docs/api.md, "keep_alive"): a generate/chat loads the model, ``/api/ps``
lists it with ``expires_at``; it is unloaded after keep_alive without requests, counted from the
end of the last request (a model in use never expires). keep_alive is a duration string
(``"5m"``, ``"1s"``), a number of seconds, negative for forever, 0 to unload at the end of the
request; without it, the server's ``OLLAMA_KEEP_ALIVE`` (default 5m). The waits poll with a
bounded deadline; no sleep stands for a speed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from ai_local_core.monitoring.exporter import NodeCollector, build_registry
from ai_local_core.monitoring.gpu import GpuSnapshot
from ai_local_core.monitoring.settings import MonitoringSettings
from ai_local_core.monitoring.status import build_status
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StandInFactory
from tests.fixtures.ollama import OllamaStandIn

pytestmark = pytest.mark.integration

#: The longest any wait below may take: generous for a loaded machine.
DEADLINE_S = 15.0


def post(standin: OllamaStandIn, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{standin.url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
        assert response.status == 200
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def ps(standin: OllamaStandIn) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"{standin.url}/api/ps", timeout=5) as response:
        return {m["name"]: m for m in json.loads(response.read())["models"]}


def wait_for(condition: Callable[[], bool], what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took (fails after DEADLINE_S)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > DEADLINE_S:
            pytest.fail(f"not within {DEADLINE_S} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def expires_in(entry: dict[str, Any]) -> float:
    return (
        datetime.fromisoformat(entry["expires_at"]) - datetime.now(timezone.utc)
    ).total_seconds()


def loaded_gauge(standin: OllamaStandIn) -> float:
    """``ollama_models_loaded`` as the node's exporter reports it (from /api/ps)."""
    node = NodeCollector(
        MonitoringSettings(ollama_url=standin.url, gateway_access_log=None),
        gpu_reader=lambda: GpuSnapshot(present=False, reason="test: no GPU"),
    )
    text = generate_latest(build_registry(node)).decode()
    return next(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ollama_models_loaded"
    )


def test_a_generate_loads_the_model_and_it_unloads_after_keep_alive(
    ollama_standin: OllamaStandIn,
) -> None:
    post(
        ollama_standin,
        "/api/generate",
        {"model": "llama3.1:8b", "prompt": "hi", "stream": False, "keep_alive": "1s"},
    )
    listed = ps(ollama_standin)
    assert list(listed) == ["llama3.1:8b"]
    assert 0 < expires_in(listed["llama3.1:8b"]) <= 1.0
    assert loaded_gauge(ollama_standin) == 1
    assert (
        build_status({"ollama_ps": {"models": list(listed.values())}})
        .models_loaded[0]
        .startswith("llama3.1:8b")
    )
    wait_for(lambda: ps(ollama_standin) == {}, "/api/ps empty after keep_alive 1s")
    assert loaded_gauge(ollama_standin) == 0
    assert build_status({"ollama_ps": {"models": []}}).models_loaded == []


def test_ollama_keep_alive_is_the_default_and_a_request_overrides_it(
    ollama_standin_factory: StandInFactory,
) -> None:
    standin = ollama_standin_factory(env={"OLLAMA_KEEP_ALIVE": "1s"})
    post(standin, "/api/chat", {"model": "llama3.1:8b", "messages": [], "stream": False})
    post(
        standin,
        "/api/chat",
        {
            "model": "llama3.2:3b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": False,
            "keep_alive": -1,
        },
    )
    listed = ps(standin)
    assert set(listed) == {"llama3.1:8b", "llama3.2:3b"}
    assert 0 < expires_in(listed["llama3.1:8b"]) <= 1.0
    assert expires_in(listed["llama3.2:3b"]) > 100 * 365 * 86400  # -1: forever
    wait_for(lambda: "llama3.1:8b" not in ps(standin), "the env default's model unloaded")
    assert list(ps(standin)) == ["llama3.2:3b"]
    # keep_alive 0 and nothing to generate unloads it at once.
    post(standin, "/api/generate", {"model": "llama3.2:3b", "keep_alive": 0})
    assert ps(standin) == {}


def test_keep_alive_values_seconds_and_zero(ollama_standin: OllamaStandIn) -> None:
    # A number is seconds.
    post(
        ollama_standin,
        "/api/generate",
        {"model": "llama3.2:3b", "prompt": "hi", "stream": False, "keep_alive": 600},
    )
    assert 590 < expires_in(ps(ollama_standin)["llama3.2:3b"]) <= 600
    # 0: answered, then unloaded at the end of the request.
    reply = post(
        ollama_standin,
        "/api/generate",
        {"model": "llama3.1:8b", "prompt": "hi", "stream": False, "keep_alive": 0},
    )
    assert reply[0]["response"].startswith("Stand-in reply")
    # Unloaded once the request has ended (like Ollama, after the answer went out).
    wait_for(lambda: list(ps(ollama_standin)) == ["llama3.2:3b"], "keep_alive 0 unloaded")


def test_a_model_in_use_never_expires_and_keep_alive_counts_from_the_end(
    ollama_standin: OllamaStandIn,
) -> None:
    # ~12 tokens at 0.25 s: the request lasts about 3 s, longer than its keep_alive of 1s.
    started = time.monotonic()
    chunks = post(
        ollama_standin,
        "/api/generate",
        {
            "model": "llama3.1:8b",
            "prompt": "one two three four five six seven",
            "keep_alive": "1s",
            "options": {"standin_token_delay": 0.25},
        },
    )
    took = time.monotonic() - started
    assert chunks[-1]["done"] and took > 1.5
    # Still loaded right after the request: its keep_alive started when it ended.
    assert "llama3.1:8b" in ps(ollama_standin)
    wait_for(lambda: ps(ollama_standin) == {}, "unloaded 1s after the end of the request")


def test_invalid_keep_alive_is_refused_like_ollama(ollama_standin: OllamaStandIn) -> None:
    request = urllib.request.Request(
        f"{ollama_standin.url}/api/generate",
        data=json.dumps({"model": "llama3.1:8b", "prompt": "hi", "keep_alive": "soon"}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert json.loads(caught.value.read()) == {"error": 'time: invalid duration "soon"'}
    assert ps(ollama_standin) == {}
