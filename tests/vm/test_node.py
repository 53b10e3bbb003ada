"""testinfra suite of ``make vm-test``: the node works after the site converge (and a reboot).

Run by tests/vm/vm_test.py over SSH (``--hosts=ssh://root@127.0.0.1:PORT``) with the run's
context (node vars, stand-in vars and credentials) in the JSON file named by $VMTEST_CONTEXT.
Every request is made on the node itself (curl over SSH); the VM's gateway listens on loopback.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.vm.nodelib import GATEWAY, MODEL, OLLAMA, api_key, http, site_only

# ------------------------------------------------------------------------------------- system


def test_boot_finished_without_failed_units(host: Any) -> None:
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    failed = host.run("systemctl list-units --failed --plain --no-legend").stdout.strip()
    assert state == "running", f"system state {state}; failed units:\n{failed}"


def test_machine_id_generated_for_this_vm(host: Any) -> None:
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert len(machine_id) == 32, machine_id


def test_ssh_and_network_services(host: Any) -> None:
    for unit in ("ssh", "systemd-networkd", "systemd-resolved"):
        svc = host.service(unit)
        assert svc.is_running and svc.is_enabled, unit


def test_debian_mirror_reachable_through_nat(host: Any) -> None:
    # The guest's own apt source, fetched the way apt would (user-mode NAT, systemd-resolved).
    out = host.run(
        "mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list) && "
        'curl -fsS -o /dev/null --max-time 30 -w "%{http_code}" "$mirror/dists/bookworm/Release"'
    )
    assert out.rc == 0 and out.stdout == "200", out.stdout + out.stderr


def test_base_layout(host: Any) -> None:
    assert host.group("ai-local-core").exists
    for path in ("/etc/ai-local-core", "/var/lib/ai-local-core", "/var/log/ai-local-core"):
        d = host.file(path)
        assert d.is_directory and d.user == "root" and d.group == "ai-local-core", path
    for pkg in ("curl", "jq", "zstd", "python3-apt"):
        assert host.package(pkg).is_installed, pkg


def test_journal_is_persistent(host: Any) -> None:
    assert host.file("/var/log/journal").is_directory
    assert host.run("journalctl --list-boots --no-pager -q").rc == 0


# --------------------------------------------------------------------------------- the stack


@site_only
@pytest.mark.parametrize(
    "unit", ["ollama", "ai-local-core-api", "nginx", "cloudflared-quick", "ufw"]
)
def test_stack_services_active_and_enabled(host: Any, unit: str) -> None:
    svc = host.service(unit)
    assert svc.is_running, host.run(f"journalctl -u {unit} -n 30 --no-pager").stdout
    assert svc.is_enabled, unit


@site_only
def test_only_ssh_listens_beyond_loopback(host: Any) -> None:
    lines = host.check_output("ss -H -ltn").splitlines()
    public = {
        line.split()[3]
        for line in lines
        if not line.split()[3].startswith(("127.", "[::1]", "[::ffff:127."))
    }
    assert public <= {"0.0.0.0:22", "[::]:22", "*:22"}, lines


@site_only
def test_firewall_denies_incoming_but_ssh(host: Any) -> None:
    out = host.check_output("ufw status verbose")
    assert "Status: active" in out, out
    assert "deny (incoming)" in out, out
    assert "22/tcp" in out, out


@site_only
def test_gateway_health_without_credentials(host: Any) -> None:
    status, _ = http(host, f"{GATEWAY}/healthz", retries=10)
    assert status == 200


@site_only
def test_gateway_refuses_requests_without_credentials(host: Any) -> None:
    status, body = http(host, f"{GATEWAY}/api/tags")
    assert status == 401, body
    status, body = http(host, f"{GATEWAY}/api/tags", token="0" * 64)
    assert status == 401, body


@site_only
def test_gateway_answers_with_credentials(host: Any) -> None:
    status, body = http(host, f"{GATEWAY}/api/tags", token=api_key(), retries=5)
    assert status == 200, body
    names = [m["name"] for m in body["models"]]
    assert MODEL in names, names


@site_only
def test_authenticated_completion_through_the_gateway(host: Any) -> None:
    payload = json.dumps({"model": MODEL, "prompt": "Say hi", "stream": False})
    status, body = http(host, f"{GATEWAY}/api/generate", token=api_key(), data=payload)
    assert status == 200, body
    assert body["done"] is True and body["response"], body


@site_only
def test_services_api_ready_through_the_gateway(host: Any) -> None:
    status, body = http(host, f"{GATEWAY}/services/ready", token=api_key(), retries=10)
    assert status == 200, body
    assert body["ready"] is True, body
    status, _ = http(host, f"{GATEWAY}/services/ready")
    assert status == 401


@site_only
def test_services_completion_through_the_gateway(host: Any) -> None:
    status, body = http(
        host,
        f"{GATEWAY}/services/v1/complete",
        token=api_key(),
        data=json.dumps({"user": "Hello"}),
    )
    assert status == 200, body
    assert body, body


@site_only
def test_ollama_listens_on_loopback_only(host: Any) -> None:
    lines = host.check_output("ss -H -ltn").splitlines()
    ollama = [line.split()[3] for line in lines if line.split()[3].endswith(":11434")]
    assert ollama == ["127.0.0.1:11434"], lines
    status, _ = http(host, f"{OLLAMA}/api/version")
    assert status in (200, 401), status


@site_only
def test_cli_completes_through_the_local_stack(host: Any) -> None:
    out = host.run(
        'cd / && env -i PATH=/usr/local/bin:/usr/bin:/bin ai-complete \'{"user": "Hi"}\''
    )
    assert out.rc == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert isinstance(result, dict) and "Traceback" not in out.stderr, result
