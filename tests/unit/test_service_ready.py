"""Module ``ai_local_core.node.service_ready`` (collections/.../plugins/modules/service_ready.py):
its core (``run``) against a loopback HTTP server, with a fake journalctl on PATH. The module
through Ansible is tested in tests/ansible/test_service_ready_play.py."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.api_harness import free_port
from tests.loopback_http import Handler, loopback_server, send, static

MODULE = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/ai_local_core/node/plugins/modules/service_ready.py"
)
SECRET = "eyJhIjoiMTIzIiwicyI6InNlY3JldCJ9"


@pytest.fixture(scope="module")
def sr() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ai_local_core_node_service_ready", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def journalctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake journalctl first on PATH: prints its arguments, then lines holding a secret.
    Returns the file its arguments are written to."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    args_file = tmp_path / "journalctl.args"
    script = bindir / "journalctl"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{args_file}"\n'
        "echo 'ollama[42]: Error: listen tcp 127.0.0.1:11434: bind: address already in use'\n"
        f"echo 'cloudflared[7]: token {SECRET} refused'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return args_file


def _json(status: int, body: object) -> Handler:
    return static(status, json.dumps(body).encode(), "application/json")


def _sequence(*handlers: Handler) -> Handler:
    """Each request gets the next handler; the last one answers every request after."""
    calls = {"n": 0}

    def handle(handler: BaseHTTPRequestHandler) -> None:
        index = min(calls["n"], len(handlers) - 1)
        calls["n"] += 1
        handlers[index](handler)

    return handle


def params(url: str, **extra: Any) -> dict[str, Any]:
    """The module's parameters with its defaults, tiny timings."""
    base: dict[str, Any] = {
        "url": url,
        "status_code": [200],
        "json_key": None,
        "json_value": None,
        "timeout": 1.0,
        "delay": 0.05,
        "request_timeout": 0.5,
        "unit": None,
        "journal_lines": 50,
        "journal_output": "short-iso",
        "msg": None,
        "redact": [],
        "redact_as": "<redacted>",
    }
    base.update(extra)
    return base


def test_ready_at_once(sr: Any) -> None:
    with loopback_server({"/api/version": _json(200, {"version": "0.12.3"})}) as server:
        failed, result = sr.run(
            params(server.url("/api/version"), json_key="version", json_value="0.12.3")
        )
    assert not failed
    assert result["changed"] is False
    assert result["status"] == 200 and result["json"] == {"version": "0.12.3"}
    assert result["attempts"] == 1 and result["elapsed"] < 1
    assert len(server.seen) == 1 and server.seen[0].method == "GET"


def test_ready_after_a_few_tries(sr: Any) -> None:
    not_yet = static(503, b"starting", "text/plain")
    routes = {"/health": _sequence(not_yet, not_yet, _json(200, {"status": "ok"}))}
    with loopback_server(routes) as server:
        failed, result = sr.run(params(server.url("/health"), timeout=2.0))
    assert not failed, result
    assert result["attempts"] == 3 and len(server.seen) == 3
    assert result["status"] == 200 and result["json"] == {"status": "ok"}


def test_wrong_json_value_until_timeout_fails_with_the_last_value(
    sr: Any, journalctl: Path
) -> None:
    routes = {"/api/version": _json(200, {"version": "0.11.0"})}
    with loopback_server(routes) as server:
        started = time.monotonic()
        failed, result = sr.run(
            params(
                server.url("/api/version"),
                json_key="version",
                json_value="0.12.3",
                timeout=0.3,
                unit="ollama",
                msg="Ollama did not report version 0.12.3 within 0.3s.",
            )
        )
        took = time.monotonic() - started
    assert failed
    assert took < 1.5
    assert result["attempts"] >= 2 and len(server.seen) == result["attempts"]
    assert result["json"] == {"version": "0.11.0"} and result["status"] == 200
    assert "'0.11.0'" in result["last_error"] and "'0.12.3'" in result["last_error"]
    msg = result["msg"]
    assert msg.startswith("Ollama did not report version 0.12.3 within 0.3s.\nLast answer: ")
    assert "version is '0.11.0', expected '0.12.3'" in msg
    assert "Last lines of `journalctl -u ollama`:\n" in msg
    assert "bind: address already in use" in msg


def test_connection_refused_fails(sr: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/ready"
    failed, result = sr.run(params(url, timeout=0.2))
    assert failed
    assert "status" not in result and "json" not in result
    assert result["last_error"].startswith(f"no answer from {url}: ")
    assert "refused" in result["last_error"].lower()
    # No unit: no journal, and the default message names the URL and the timeout.
    assert "journal" not in result
    assert result["msg"].startswith(f"{url} was not ready within 0.2s.\nLast answer: no answer")


def test_timeout_zero_probes_once(sr: Any) -> None:
    with loopback_server({"/ready": static(503, b"no connections", "text/plain")}) as server:
        failed, result = sr.run(params(server.url("/ready"), timeout=0, delay=2.0))
    assert failed and result["attempts"] == 1 and len(server.seen) == 1
    assert result["last_error"] == "status 503: no connections"


def test_journal_lines_included_and_secrets_redacted(sr: Any, journalctl: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/ready"
    failed, result = sr.run(
        params(
            url,
            timeout=0,
            unit="cloudflared",
            journal_lines=25,
            journal_output="cat",
            msg=f"cloudflared.service failed to start ({SECRET}).",
            redact=[SECRET, ""],
            redact_as="<token redacted>",
        )
    )
    assert failed
    assert journalctl.read_text().split() == [
        "--unit",
        "cloudflared",
        "--lines",
        "25",
        "--no-pager",
        "--output",
        "cat",
    ]
    assert result["journal"].splitlines() == [
        "ollama[42]: Error: listen tcp 127.0.0.1:11434: bind: address already in use",
        "cloudflared[7]: token <token redacted> refused",
    ]
    assert SECRET not in result["msg"]
    assert result["msg"].startswith("cloudflared.service failed to start (<token redacted>).")
    assert result["msg"].endswith(
        "Last lines of `journalctl -u cloudflared`:\n" + result["journal"]
    )


def test_journal_that_cannot_be_read_is_named(
    sr: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no journalctl here
    assert sr.read_journal("ollama", 5).startswith("(journalctl could not run: ")
    failing = tmp_path / "journalctl"
    failing.write_text("#!/bin/sh\necho 'No journal files were found.' >&2\nexit 1\n")
    failing.chmod(0o755)
    assert sr.read_journal("ollama", 5) == (
        "(journalctl failed, rc 1: No journal files were found.)"
    )


def test_journal_reader_is_injectable(sr: Any) -> None:
    seen: list[tuple[str, int, str]] = []

    def reader(unit: str, lines: int, output: str) -> str:
        seen.append((unit, lines, output))
        return "line one\nline two"

    failed, result = sr.run(
        params(f"http://127.0.0.1:{free_port()}/health", timeout=0, unit="api", journal_lines=60),
        journal_reader=reader,
    )
    assert failed and seen == [("api", 60, "short-iso")]
    assert result["msg"].endswith("Last lines of `journalctl -u api`:\nline one\nline two")


@pytest.mark.parametrize(
    ("status", "body", "key", "value", "error"),
    [
        (200, b'{"version": "0.12.3"}', "version", "0.12.3", None),
        (200, b'{"version": 0.12}', "version", "0.12", None),  # compared as text too
        (200, b'{"a": {"b": "x"}}', "a.b", "x", None),  # dotted path
        (200, b'{"hostname": "x.trycloudflare.com"}', "hostname", None, None),  # present
        (200, b'{"hostname": ""}', "hostname", None, "hostname is empty in the answer"),
        (200, b"{}", "version", "1", "no 'version' in the answer"),
        (200, b"<html>", "version", "1", "status 200, the answer is not JSON: <html>"),
        (500, b'{"error": "boom"}', None, None, 'status 500: {"error": "boom"}'),
        (200, b"", None, None, None),
    ],
)
def test_judge(sr: Any, status: int, body: bytes, key: Any, value: Any, error: Any) -> None:
    attempt = sr.judge(status, body, [200], key, value)
    if error is None:
        assert attempt.ready, attempt.error
    else:
        assert attempt.error.startswith(error)


def test_timeout_and_delay_keep_the_old_retry_totals(sr: Any) -> None:
    """``retries: timeout / 2, delay: 2`` of the uri tasks: a dead service gets about timeout/2
    tries over ``timeout`` seconds (fake clock: the tries themselves take no time)."""
    now = {"t": 0.0}

    def sleep(seconds: float) -> None:
        now["t"] += seconds

    outcome = sr.wait_until(
        lambda: sr.Attempt(error="refused"), 60, 2, clock=lambda: now["t"], sleep=sleep
    )
    assert not outcome.ready and outcome.attempts == 31 and outcome.elapsed == 60


def test_a_slow_answer_counts_as_no_answer(sr: Any) -> None:
    def hang(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(0.5)
        send(handler, 200, b"late", content_type="text/plain")

    with loopback_server({"/health": hang}) as server:
        failed, result = sr.run(params(server.url("/health"), timeout=0, request_timeout=0.1))
    assert failed and result["last_error"].startswith("no answer from ")
    assert "timed out" in result["last_error"]
