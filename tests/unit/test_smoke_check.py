"""playbooks/files/smoke_check.py (`make smoke`) against a loopback imitation of the gateway:
the table, the exit status, and the credential kept out of the output."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "playbooks" / "files" / "smoke_check.py"
KEY = "smoke-test-key-NOT-A-SECRET-0123456789abcdef"
MODEL = "llama3.1:8b"


@dataclass
class Gateway:
    """What the imitation answers; tests change it to stage faults."""

    healthz: tuple[int, object] = (200, {"status": "ok"})
    open_tags: bool = False
    seen: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)


def make_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, obj: object) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") in (
                f"Bearer {KEY}",
                "Basic " + base64.b64encode(f"alice:{KEY}".encode()).decode(),
            )

        def do_GET(self) -> None:
            gateway.seen.append(("GET", self.path, {}))
            if self.path == "/healthz":
                self._send(*gateway.healthz)
            elif self.path == "/api/tags" and (gateway.open_tags or self._authorized()):
                self._send(200, {"models": []})
            else:
                self._send(401, {"error": "unauthorized"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length))
            gateway.seen.append(("POST", self.path, body))
            if self.path != "/api/generate" or not self._authorized():
                self._send(401, {"error": "unauthorized"})
            elif body.get("model") != MODEL:
                self._send(404, {"error": f"model '{body.get('model')}' not found"})
            else:
                self._send(200, {"model": MODEL, "response": "ok", "done": True})

    return Handler


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, str]]:
    state = Gateway()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def smoke(url: str, secret: str = KEY, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), url, "--model", MODEL, "--timeout", "5", *args],
        input=secret + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rows(output: str) -> dict[str, list[str]]:
    """step -> [HTTP, seconds, result, ...] from the table."""
    table = {}
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] in ("healthz", "completion", "refused"):
            table[parts[0]] = parts[1:]
    return table


def test_all_checks_pass(gateway: tuple[Gateway, str]) -> None:
    state, url = gateway
    run = smoke(url + "/")
    assert run.returncode == 0, run.stdout + run.stderr
    table = rows(run.stdout)
    assert [table[s][0] for s in ("healthz", "completion", "refused")] == ["200", "200", "401"]
    assert all(table[s][2] == "ok" for s in table), run.stdout
    assert all(float(table[s][1]) >= 0 for s in table)
    assert "all checks passed" in run.stdout
    assert KEY not in run.stdout + run.stderr
    # The completion is small and not streamed; the key went only with it.
    post = [body for method, _, body in state.seen if method == "POST"]
    assert post == [
        {
            "model": MODEL,
            "prompt": post[0]["prompt"],
            "stream": False,
            "options": {"num_predict": 8},
        }
    ]


def test_basic_auth_user(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    run = smoke(url, KEY, "--user", "alice")
    assert run.returncode == 0, run.stdout + run.stderr
    assert KEY not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("stage", "failing"),
    [
        ("healthz_unavailable", "healthz"),
        ("healthz_leaks_nothing_but_says_more", "healthz"),
        ("wrong_key", "completion"),
        ("open_gateway", "refused"),
    ],
)
def test_a_failing_check_fails_the_run(
    gateway: tuple[Gateway, str], stage: str, failing: str
) -> None:
    state, url = gateway
    secret = KEY
    if stage == "healthz_unavailable":
        state.healthz = (503, {"status": "unavailable"})
    elif stage == "healthz_leaks_nothing_but_says_more":
        state.healthz = (200, {"status": "ok", "version": "0.9"})
    elif stage == "wrong_key":
        secret = "wrong-key-0123456789abcdef0123456789abcdef"
    else:
        state.open_tags = True
    run = smoke(url, secret)
    assert run.returncode == 1, run.stdout
    table = rows(run.stdout)
    assert table[failing][2] == "FAIL", run.stdout
    assert [s for s in table if table[s][2] == "FAIL"] == [failing], run.stdout
    assert f"FAILED: {failing}" in run.stdout
    assert secret not in run.stdout + run.stderr


def test_nothing_listening() -> None:
    run = smoke("http://127.0.0.1:9")
    assert run.returncode == 1
    table = rows(run.stdout)
    assert {s: (table[s][0], table[s][2]) for s in table} == {
        "healthz": ("-", "FAIL"),
        "completion": ("-", "FAIL"),
        "refused": ("-", "FAIL"),
    }


def test_no_credential_is_refused(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    run = smoke(url, "")
    assert run.returncode == 2 and "no credential" in run.stderr
