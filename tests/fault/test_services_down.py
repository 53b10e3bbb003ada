"""The services API stops: the gateway answers JSON 502 on its routes; a CLI configured to use the
API's own address (refused) runs the work in-process (same JSON contract, exit 0), and one pointed
at the gateway, which took the request and answered with its own JSON (not the API's), does not
run it again (``api_server_error``, exit 25: a request that was sent is never run twice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loopback_gateway import NginxGateway
from tests.api_harness import start_api_server
from tests.fault.conftest import MODEL, StandInSlot, call, parse_cli
from tests.fixtures.ollama import REPO_ROOT

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]


def test_api_stopped_gateway_502_and_cli_in_process(
    standin_slot: StandInSlot, gateway: NginxGateway, api_port: int, fault_dir: Path
) -> None:
    standin = standin_slot.running()
    config = {
        "log_level": "WARNING",
        "ollama": {"url": standin.url, "retries": {"max_attempts": 1}},
        "translation": {"backend": "ollama"},
        "image": {"backend": "ollama"},
        "models": {"defaults": {"translation": {"model": MODEL}}},
    }
    api = start_api_server(fault_dir / "api", config, port=api_port, ready=False)
    try:
        status, _, body = call(gateway, "GET", "/services/health", key="services")
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"
    finally:
        api.stop()
    assert api.process.returncode is not None

    status, headers, body = call(gateway, "GET", "/services/health", key="services")
    assert status in (502, 503), body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] in ("upstream unavailable", "service unavailable")

    # A CLI pointed at the stopped API (the way the role configures them: the API's own address)
    # and one pointed at the gateway (which answers its own JSON, not the API's contract).
    for api_url, in_process in ((api.url, True), (f"{gateway.url}/services", False)):
        standin.control("DELETE", "requests")
        env = standin.client_env(
            AI_LOCAL_CORE_API__URL=api_url,
            AI_LOCAL_CORE_TRANSLATION__BACKEND="ollama",
            AI_LOCAL_CORE_MODELS__DEFAULTS__TRANSLATION__MODEL=MODEL,
        )
        proc = subprocess.run(
            [sys.executable, "-m", "ai_local_core.cli.translate", "Hello world", "pl"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        run = parse_cli(proc.returncode, proc.stdout, proc.stderr)
        if not in_process:  # the gateway was sent the request: its answer (401, no key) is final
            assert run.returncode == 25, run
            assert run.output["error"]["type"] == "api_server_error"
            assert "without its JSON object" in run.output["error"]["message"]
            assert standin.requests() == [], "the CLI ran the work in-process after sending it"
            continue
        assert run.returncode == 0, run
        assert run.output["success"] is True
        assert run.output["backend"] == "ollama"
        # In-process: this CLI itself asked the stand-in, nobody else could have.
        assert standin.requests(), f"the stand-in saw no request for api.url={api_url}"
