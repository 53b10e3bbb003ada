"""Ollama dies in the middle of a stream: the CLI says so in its JSON (no traceback, exit 14),
the gateway answers JSON 502 while nothing listens, and the first request after the restart works.

Systemd restarting the real service is a host-level test (it needs systemd): not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bench.loopback_gateway import NginxGateway
from tests.fault.conftest import KEYS, MODEL, CliRun, StandInSlot, call, parse_cli
from tests.fixtures.ollama import REPO_ROOT

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]

# 120 words: a reply of ~125 tokens at 50 ms each, several seconds of stream to cut.
PROMPT = " ".join(f"word{i}" for i in range(120))
CONNECTION_FAILED = 14


def complete_cli(env: dict[str, str], prompt: str, *, stream: bool) -> subprocess.Popen[str]:
    payload = json.dumps({"user": prompt, "model": MODEL, "stream": stream})
    return subprocess.Popen(
        [sys.executable, "-m", "ai_local_core.cli.complete", payload],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> CliRun:
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"the CLI did not finish: {stdout} {stderr[-2000:]}")
    return parse_cli(proc.returncode, stdout, stderr)


def kill_mid_stream(slot: StandInSlot, proc: subprocess.Popen[str]) -> None:
    """Wait (bounded) until the stand-in streams the CLI's request, then SIGKILL it."""
    standin = slot.running()
    deadline = time.monotonic() + 45
    while standin.control("GET", "state")["active"] == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the stream never started (CLI exit {proc.poll()})")
        time.sleep(0.05)
    # Let a few tokens through (any amount works: the point is a stream that has begun).
    time.sleep(0.3)
    standin.process.kill()
    standin.process.wait(timeout=10)


def cli_env(slot: StandInSlot, gateway: NginxGateway | None) -> dict[str, str]:
    env = slot.running().client_env()
    if gateway is not None:
        env["AI_LOCAL_CORE_OLLAMA__URL"] = gateway.url
        env["AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN"] = KEYS["cli"]
    return env


@pytest.mark.parametrize("via", ["direct", "gateway"])
def test_killed_mid_stream_then_restarted(
    via: str, standin_slot: StandInSlot, request: pytest.FixtureRequest
) -> None:
    # Only the gateway variant needs nginx (it skips without it).
    gateway: NginxGateway | None = request.getfixturevalue("gateway") if via == "gateway" else None
    env = cli_env(standin_slot, gateway)
    proc = complete_cli(env, PROMPT, stream=True)
    kill_mid_stream(standin_slot, proc)
    run = finish(proc)

    assert run.returncode == CONNECTION_FAILED, run
    assert run.output["success"] is False
    assert run.output["error"]["type"] == "connection_failed"
    assert "mid-stream" in run.output["error"]["message"]

    if gateway is not None:
        # Nothing listens upstream now: nginx's own JSON error, not an HTML page.
        status, headers, body = call(gateway, "GET", "/api/version", key="cli")
        assert status == 502
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"] == "upstream unavailable"

    standin_slot.start()
    again = finish(complete_cli(env, "back again", stream=False))
    assert again.returncode == 0, again
    assert again.output["success"] is True
    assert again.output["content"].endswith("back again")
