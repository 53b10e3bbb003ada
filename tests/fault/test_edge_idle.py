"""Long answers survive an edge that cuts silent requests (Cloudflare: HTTP 524 after 100 s).

The chain is the real one, on loopback: the cloudflared stand-in's edge (``tunnel --url`` to the
gateway, idle limit ``CLOUDFLARED_STANDIN_EDGE_IDLE_TIMEOUT``, seconds here) -> nginx rendered
from role ``gateway`` -> the services API under gunicorn -> an Ollama stand-in whose model takes
longer to load than the edge waits. With the API's keep-alive the request succeeds with a JSON
body; with the keep-alive pushed past the edge's limit the same request gets the edge's 524.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loopback_gateway import NginxGateway, free_port
from tests.api_harness import clean_env, start_api_server
from tests.fault.conftest import KEYS, MODEL
from tests.fixtures.ollama import REPO_ROOT, OllamaStandIn, start_standin

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]

CLOUDFLARED = REPO_ROOT / "tests" / "fakes" / "cloudflared_standin" / "cloudflared.py"
EDGE_IDLE_S = 1.5
LOAD_S = 3.5  # a cold model load: longer than the edge waits for a byte


@pytest.fixture(scope="module")
def slow_ollama(fault_dir: Path) -> Iterator[OllamaStandIn]:
    standin = start_standin(
        fault_dir / "edge-ollama",
        models=[MODEL],
        env={"OLLAMA_STANDIN_LOAD_DELAY": str(LOAD_S), "OLLAMA_STANDIN_TOKEN_DELAY": "0.05"},
    )
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def edge(gateway: NginxGateway, fault_dir: Path) -> Iterator[str]:
    """A quick tunnel to the gateway; its edge answers under ``<url>/standin-edge/``."""
    port = free_port()
    log_path = fault_dir / "cloudflared.log"
    with log_path.open("wb") as log:
        command = [sys.executable, str(CLOUDFLARED), "tunnel", "--no-autoupdate"]
        command += ["--url", gateway.url, "--metrics", f"127.0.0.1:{port}"]
        process = subprocess.Popen(
            command,
            env=clean_env({"CLOUDFLARED_STANDIN_EDGE_IDLE_TIMEOUT": str(EDGE_IDLE_S)}),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not _ready(port):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _through_edge(edge_url: str, path: str, body: object) -> tuple[int, bytes, float]:
    host, port = edge_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.monotonic()
    try:
        conn.request(
            "POST",
            "/standin-edge" + path,
            body=json.dumps(body),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {KEYS['edge']}",
            },
        )
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


@pytest.mark.parametrize("keepalive_after", [0.3, 30.0], ids=["keepalive", "silent"])
def test_slow_answer_through_the_edge(
    slow_ollama: OllamaStandIn,
    edge: str,
    api_port: int,
    fault_dir: Path,
    keepalive_after: float,
) -> None:
    slow_ollama.reset()  # the model is cold again: LOAD_S before its first token
    config = {
        "log_level": "WARNING",
        "ollama": {"url": slow_ollama.url, "retries": {"max_attempts": 1}},
        "api": {"keepalive_after": keepalive_after, "keepalive_interval": 0.5},
        "image": {"backend": "ollama"},
        "translation": {"backend": "ollama"},
    }
    api = start_api_server(
        fault_dir / f"edge-api-{keepalive_after:g}", config, port=api_port, ready=False
    )
    try:
        status, body, elapsed = _through_edge(
            edge, "/services/v1/complete", {"user": "Hello", "max_tokens": 50}
        )
    finally:
        api.stop()
    if keepalive_after < EDGE_IDLE_S:
        assert status == 200, body
        assert body.startswith(b" "), body[:80]
        answer = json.loads(body)
        assert answer["success"] is True, answer
        assert answer["content"].endswith("Hello")
        assert elapsed >= LOAD_S  # silent work longer than the edge's limit, kept alive
    else:
        # The control: the same request, no byte before the edge's limit.
        assert status == 524, body
        assert EDGE_IDLE_S <= elapsed < LOAD_S, elapsed
