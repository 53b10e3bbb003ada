"""Fault suite of ``make vm-test``: a converged node survives its services dying under it.

Run by tests/vm/vm_test.py after the verify phase (before the reboot, so that the reboot's
verify also sees everything back). Loopback versions of these faults (client error shapes) are in
tests/fault/; here the real systemd units on a real server bring the services back.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from tests.vm.nodelib import GATEWAY, MODEL, OLLAMA, api_key, http, site_only

# The ollama unit restarts after RestartSec=3; TCG makes the start itself slow.
RESTART_WITHIN_S = 45.0
STREAM_OUT = "/run/vm-test-stream"


def _unit_value(host: Any, unit: str, prop: str) -> str:
    return str(host.check_output(f"systemctl show -p {prop} --value {unit}")).strip()


def _wait(what: str, predicate: Any, timeout: float, step: float = 0.5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


@site_only
def test_ollama_killed_mid_stream_is_restarted_by_systemd(host: Any) -> None:
    pid_before = _unit_value(host, "ollama", "MainPID")
    restarts_before = int(_unit_value(host, "ollama", "NRestarts"))
    assert pid_before not in ("", "0"), "ollama is not running before the fault"
    # A slow stream (one token a second on the stand-in), read by curl in the background.
    payload = json.dumps(
        {"model": MODEL, "prompt": "count to ten slowly", "options": {"standin_token_delay": 1.0}}
    )
    curl = shlex.join(
        ["curl", "-sS", "-N", "-m", "90", "--data-binary", payload, f"{OLLAMA}/api/generate"]
    )
    host.run(
        f"rm -f {STREAM_OUT}*; ( {curl} > {STREAM_OUT} 2> {STREAM_OUT}.err;"
        f" echo $? > {STREAM_OUT}.rc ) > /dev/null 2>&1 &"
    )
    _wait(
        "the first streamed chunk",
        lambda: host.run(f"test -s {STREAM_OUT}").rc == 0,
        timeout=60,
    )
    killed_at = time.monotonic()
    assert host.run(f"kill -KILL {pid_before}").rc == 0

    # The client sees the stream end without its final "done" object, and an error exit.
    _wait("curl to end", lambda: host.run(f"test -s {STREAM_OUT}.rc").rc == 0, timeout=60)
    rc = int(host.check_output(f"cat {STREAM_OUT}.rc"))
    chunks = [json.loads(line) for line in host.check_output(f"cat {STREAM_OUT}").splitlines()]
    assert chunks, "no chunk arrived before the kill"
    assert not any(c.get("done") for c in chunks), chunks[-1]
    assert rc != 0, f"curl exited 0 on a cut stream: {host.run(f'cat {STREAM_OUT}.err').stdout}"

    # systemd restarts it (Restart=always) within seconds, as a new process.
    def back() -> bool:
        pid = _unit_value(host, "ollama", "MainPID")
        return pid not in ("0", pid_before) and host.run(f"curl -fsS {OLLAMA}/api/version").rc == 0

    _wait("ollama back under a new PID", back, timeout=RESTART_WITHIN_S)
    print(f"ollama answered again {time.monotonic() - killed_at:.1f}s after the kill")
    assert int(_unit_value(host, "ollama", "NRestarts")) == restarts_before + 1

    # The next request works, through the gateway as the Waldus side calls it.
    status, body = http(
        host,
        f"{GATEWAY}/api/generate",
        token=api_key(),
        data=json.dumps({"model": MODEL, "prompt": "Still there?", "stream": False}),
    )
    assert status == 200 and body["done"] is True, body
    host.run(f"rm -f {STREAM_OUT}*")


@site_only
def test_services_api_stopped_gateway_answers_json_and_cli_falls_back(host: Any) -> None:
    assert host.run("systemctl stop ai-local-core-api").rc == 0
    try:
        status, body = http(host, f"{GATEWAY}/services/ready", token=api_key())
        assert status in (502, 503), (status, body)
        assert isinstance(body, dict) and body.get("error"), body
        # The CLI finds no warm server and does the work in-process (talking to Ollama itself).
        out = host.run(
            "cd / && env -i PATH=/usr/local/bin:/usr/bin:/bin ai-translate 'Good night' de"
        )
        assert out.rc == 0, out.stdout + out.stderr
        assert json.loads(out.stdout)["success"] is True, out.stdout
        assert "Traceback" not in out.stderr
    finally:
        assert host.run("systemctl start ai-local-core-api").rc == 0
    status, body = http(host, f"{GATEWAY}/services/ready", token=api_key(), retries=15)
    assert status == 200 and body["ready"] is True, body
