"""ai-complete end to end: in-process main(), the console script and the Waldus shim."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from ai_local_core.cli import complete as complete_cli

from tests.conftest import StandInFactory
from tests.fixtures.ollama import REPO_ROOT, OllamaStandIn
from tests.loopback_http import LoopbackServer, loopback_server

pytestmark = pytest.mark.integration

SHIM = REPO_ROOT / "src" / "ollama" / "complete.py"
CONSOLE_SCRIPT = Path(sys.executable).with_name("ai-complete")
EXPECTED_KEYS = {
    "success",
    "content",
    "model",
    "provider",
    "usage",
    "duration_ms",
    "tokens_per_second",
    "done_reason",
}


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = complete_cli.main(argv)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return code, json.loads(out)


def run_process(command: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line: {proc.stdout!r} / {proc.stderr!r}"
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_success_shape(standin_env: OllamaStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_main(['{"user": "Hello", "temperature": 0.7}'], capsys)
    assert code == 0
    assert set(out) == EXPECTED_KEYS
    assert out["success"] is True
    assert out["content"] == "Stand-in reply from llama3.1:8b: Hello"
    assert out["model"] == "llama3.1:8b" and out["provider"] == "ollama"
    assert out["usage"] == {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
    assert isinstance(out["duration_ms"], int) and out["duration_ms"] >= 0
    assert out["tokens_per_second"] == 100.0
    assert out["done_reason"] == "stop"


def test_messages_alias_stop_max_tokens_and_stream(
    standin_env: OllamaStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    request = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one two three"},
        ],
        "model": "small",
        "max_tokens": 4,
        "stream": True,
    }
    code, out = run_main([json.dumps(request)], capsys)
    assert code == 0
    assert out["model"] == "llama3.2:3b"
    assert out["content"] == "Stand-in reply from llama3.2:3b: "
    assert out["done_reason"] == "length"
    assert out["usage"]["prompt_tokens"] == 5
    code, out = run_main(['{"user": "a b c", "stop": ["from"]}'], capsys)
    assert out["content"] == "Stand-in reply "
    body = standin_env.requests("/api/chat")
    assert len(body) == 2


@pytest.mark.parametrize(
    ("fault", "request_", "error_type", "exit_code"),
    [
        (None, {"user": "hi", "model": "absent:1b"}, "model_not_found", 11),
        ({"kind": "status", "status": 503, "count": 0}, {"user": "hi"}, "server_busy", 12),
        ({"kind": "stall", "seconds": 1.0}, {"user": "hi", "timeout": 0.2}, "timeout", 15),
        (
            {"kind": "status", "status": 200, "body": "garbage"},
            {"user": "hi"},
            "invalid_response",
            16,
        ),
        (
            {"kind": "error", "after_tokens": 1, "message": "boom"},
            {"user": "hi", "stream": True},
            "ollama_error",
            10,
        ),
    ],
    ids=["404", "503", "timeout", "invalid", "mid-stream"],
)
def test_ollama_failures_map_to_documented_exit_codes(
    standin_env: OllamaStandIn,
    capsys: pytest.CaptureFixture[str],
    fault: dict[str, Any] | None,
    request_: dict[str, Any],
    error_type: str,
    exit_code: int,
) -> None:
    if fault is not None:
        standin_env.add_fault(**fault)
    code, out = run_main([json.dumps(request_)], capsys)
    assert (code, out["success"], out["error"]["type"]) == (exit_code, False, error_type)
    assert out["error"]["message"]
    if fault is not None and fault["kind"] == "stall":
        # The stand-in finishes (and logs) the stalled request after the CLI gave up: wait for
        # it, so that the next test starts with a quiet stand-in and an empty request log.
        deadline = time.monotonic() + 10
        while not standin_env.requests("/api/chat") and time.monotonic() < deadline:
            time.sleep(0.05)


def test_connection_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__RETRIES__BACKOFF_INITIAL", "0.01")
    code, out = run_main(['{"user": "hi"}'], capsys)
    assert code == 14
    assert out["error"]["type"] == "connection_failed"
    assert f"127.0.0.1:{port}" in out["error"]["message"]
    assert "(after 3 attempts)" in out["error"]["message"]


def test_auth_token_from_a_file_accepted_and_rejected(
    ollama_standin_factory: StandInFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    standin = ollama_standin_factory(
        env={"OLLAMA_STANDIN_REQUIRE_BEARER": "tok"}, models=["llama3.1:8b"]
    )
    token = tmp_path / "token"
    token.write_text("tok\n")
    for key, value in standin.client_env(AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN_FILE=str(token)).items():
        if key.startswith("AI_LOCAL_CORE_"):
            monkeypatch.setenv(key, value)
    code, out = run_main(['{"user": "hi"}'], capsys)
    assert (code, out["success"]) == (0, True)
    token.write_text("wrong-token")
    code, out = run_main(['{"user": "hi"}'], capsys)
    assert (code, out["error"]["type"]) == (13, "auth_error")
    assert "wrong-token" not in json.dumps(out)


def _api_that_hangs_up(bodies: list[Any]) -> AbstractContextManager[LoopbackServer]:
    """An API server stand-in that reads the whole request, then closes the connection
    without an answer (a worker killed while it works)."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        bodies.append(json.loads(handler.rfile.read(length)))
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    return loopback_server({"/v1/complete": handle})


def test_a_server_that_took_the_request_and_hung_up_is_final(
    standin_env: OllamaStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 25, and Ollama (the in-process path's only way to do the work) never asked."""
    bodies: list[Any] = []
    with _api_that_hangs_up(bodies) as api:
        monkeypatch.setenv("AI_LOCAL_CORE_API__URL", api.url(""))
        code, out = run_main(['{"user": "Hello"}'], capsys)
    assert (code, out["error"]["type"]) == (25, "api_server_error")
    assert "not run again here" in out["error"]["message"]
    assert bodies == [{"user": "Hello"}]
    assert standin_env.requests("/api/chat") == []


def test_an_unreachable_server_runs_the_completion_here(
    standin_env: OllamaStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AI_LOCAL_CORE_API__URL", f"http://127.0.0.1:{port}")
    code, out = run_main(['{"user": "Hello"}'], capsys)
    assert (code, out["content"]) == (0, "Stand-in reply from llama3.1:8b: Hello")
    assert len(standin_env.requests("/api/chat")) == 1


def test_console_script_subprocess(ollama_standin: OllamaStandIn) -> None:
    assert CONSOLE_SCRIPT.exists(), "run `.venv/bin/pip install -e .` to create ai-complete"
    code, out, _ = run_process(
        [str(CONSOLE_SCRIPT), '{"user": "Hello"}'], ollama_standin.client_env()
    )
    assert (code, out["success"], out["content"]) == (
        0,
        True,
        "Stand-in reply from llama3.1:8b: Hello",
    )
    code, out, _ = run_process([str(CONSOLE_SCRIPT), "not json"], ollama_standin.client_env())
    assert (code, out["error"]["type"]) == (2, "invalid_input")


def test_waldus_shim_with_the_project_python(ollama_standin: OllamaStandIn) -> None:
    code, out, _ = run_process(
        [sys.executable, str(SHIM), '{"user": "Hi"}'], ollama_standin.client_env()
    )
    assert (code, out["content"]) == (0, "Stand-in reply from llama3.1:8b: Hi")


def test_waldus_shim_reexecs_from_a_foreign_python(
    ollama_standin: OllamaStandIn, tmp_path: Path
) -> None:
    foreign = shutil.which("python3", path="/usr/bin:/bin")
    if foreign is None:
        pytest.skip("no system python3 outside the virtualenv")
    probe = subprocess.run(
        [foreign, "-c", "import ai_local_core"],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    if probe.returncode == 0:
        pytest.skip("the system python can import ai_local_core itself")
    env = ollama_standin.client_env(AI_LOCAL_CORE_PYTHON=sys.executable)
    env["PATH"] = "/usr/bin:/bin"
    code, out, _ = run_process([foreign, str(SHIM), '{"user": "Hi"}'], env)
    assert (code, out["success"]) == (0, True)
    env["AI_LOCAL_CORE_PYTHON"] = str(tmp_path / "no-python")
    code, out, _ = run_process([foreign, str(SHIM), '{"user": "Hi"}'], env)
    assert (code, out["error"]["type"]) == (3, "config_error")
    assert os.fspath(tmp_path / "no-python") in out["error"]["message"]


def test_php_style_input_unknown_keys_and_options(ollama_standin: OllamaStandIn) -> None:
    """Numbers as strings or 512.0, Ollama options, unknown keys named on stdout and stderr."""
    payload = {
        "user": "Hi",
        "temperature": "0.7",
        "max_tokens": 512.0,
        "colour": "red",
        "options": {"stop": ["from"], "num_ctx": "4096"},
    }
    code, out, err = run_process(
        [str(CONSOLE_SCRIPT), json.dumps(payload)], ollama_standin.client_env()
    )
    assert (code, out["content"]) == (0, "Stand-in reply ")  # options.stop reached Ollama
    assert out["warnings"] == ["unknown key 'colour' ignored"]
    assert "unknown key 'colour' ignored" in err
    code, out, _ = run_process(
        [str(CONSOLE_SCRIPT), '{"user": "Hi", "options": {"top_kk": 1}}'],
        ollama_standin.client_env(),
    )
    assert (code, out["error"]["type"]) == (2, "invalid_input")
    assert "unknown Ollama option 'top_kk'" in out["error"]["message"]
