"""A broken gateway file: ``nginx -t`` on the candidate refuses it (the role's validation step),
and even a broken file reloaded into nginx leaves the running configuration serving.

The role-level version (the play fails, the live file stays) is in the gateway Molecule scenario.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from bench.loopback_gateway import NginxGateway
from tests.fault.conftest import StandInSlot, call

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

BROKEN = "\nserver { listen 127.0.0.1:1; this_directive_does_not_exist on; }\n"


def serving(gateway: NginxGateway) -> None:
    status, _, body = call(gateway, "GET", "/livez", key=None)
    assert status == 200, body
    status, _, body = call(gateway, "GET", "/api/version", key="config")
    assert status == 200, body
    assert "version" in json.loads(body)


def test_broken_candidate_refused(standin_slot: StandInSlot, gateway: NginxGateway) -> None:
    standin_slot.running()
    candidate = gateway.workdir / "candidate-gateway.conf"
    candidate.write_text(gateway.gateway_conf.read_text() + BROKEN)
    result = gateway.test_config(gateway.main_conf_for(candidate, "candidate-nginx.conf"))
    assert result.returncode != 0
    assert "this_directive_does_not_exist" in result.stderr
    # The same check passes for the live file: the refusal is about the candidate.
    assert gateway.test_config().returncode == 0, gateway.test_config().stderr
    serving(gateway)


def test_broken_file_reloaded_old_config_keeps_serving(
    standin_slot: StandInSlot, gateway: NginxGateway
) -> None:
    standin_slot.running()
    live = gateway.gateway_conf
    backup = live.with_suffix(".good")
    shutil.copy2(live, backup)
    log_before = gateway.error_log.read_text() if gateway.error_log.exists() else ""
    workers_before = gateway.worker_pids()
    try:
        live.write_text(live.read_text() + BROKEN)
        gateway.reload()
        deadline = time.monotonic() + 20
        while (
            "this_directive_does_not_exist" not in gateway.error_log.read_text()[len(log_before) :]
        ):
            assert time.monotonic() < deadline, "nginx never reported the broken reload"
            time.sleep(0.1)
        serving(gateway)
        assert gateway.worker_pids() == workers_before
    finally:
        shutil.copy2(backup, live)
