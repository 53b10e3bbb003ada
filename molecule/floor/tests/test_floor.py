"""Verify playbooks/site.yml (without the venv layers) on the Debian 11 floor container.

The point is the old userland: systemd 247 loads and verifies every unit the roles write, nginx
1.18 takes the gateway's configuration, ufw 0.36 holds the policy, and the converged node works
end to end (a completion through the gateway, Tailscale serve publishing the gateway with the
real client address). Idempotence and check mode (0 changed) run as in every scenario.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.molecule_support import assert_check_mode_clean

STANDINS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "standins"
GATEWAY = "http://127.0.0.1:8080"


def api_key() -> str:
    data = yaml.safe_load((STANDINS / "standins.yml").read_text(encoding="utf-8"))
    return str(data["gateway_api_keys"][0]["key"])


def fetch(host: Any, url: str, *headers: str, data: dict[str, Any] | None = None) -> Any:
    """(status, body) of one request made on the host with Python 3.9's urllib."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "url, headers, data = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]\n"
        "req = urllib.request.Request(url, headers=headers, data=data.encode() or None)\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=30); s, b = r.status, r.read()\n"
        "except urllib.error.HTTPError as e:\n"
        "    s, b = e.code, e.read()\n"
        "print(json.dumps([s, b.decode()]))\n"
    )
    hdrs = dict(h.split(": ", 1) for h in headers)
    body = json.dumps(data) if data is not None else ""
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    cmd = shlex.join(["python3", "-c", script, url, json.dumps(hdrs), body])
    status, text = json.loads(host.check_output(cmd))
    return status, text


def test_the_floor_is_what_it_claims(host: Any) -> None:
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("11")
    assert host.check_output("systemctl --version").split()[1] == "247"
    assert "nginx/1.18" in host.run("nginx -v").stderr
    assert host.check_output("python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 9)"


@pytest.mark.parametrize("unit", ["ollama", "nginx", "tailscaled", "ufw"])
def test_layer_units_running_and_enabled(host: Any, unit: str) -> None:
    service = host.service(unit)
    assert service.is_enabled, unit
    if unit != "ufw":
        assert service.is_running, unit


# The units the roles write (nginx.service is the distribution's: its man-page links fail
# systemd-analyze in an image without manuals).
@pytest.mark.parametrize("unit", ["ollama.service", "tailscaled.service"])
def test_systemd_247_verifies_the_units_cleanly(host: Any, unit: str) -> None:
    out = host.run(f"systemd-analyze verify {unit}")
    assert out.rc == 0, out.stdout + out.stderr
    name = unit.removesuffix(".service")
    assert not [line for line in out.stderr.splitlines() if name in line], out.stderr


def test_completion_through_the_gateway(host: Any) -> None:
    status, body = fetch(
        host,
        f"{GATEWAY}/api/generate",
        f"Authorization: Bearer {api_key()}",
        data={"model": "llama3.1:8b", "prompt": "Say hi", "stream": False},
    )
    assert status == 200, body
    assert json.loads(body)["done"] is True
    status, body = fetch(host, f"{GATEWAY}/api/tags")
    assert status == 401, body


def test_tailscale_serve_publishes_the_gateway_with_the_real_client(host: Any) -> None:
    status = json.loads(host.check_output("tailscale status --json"))
    assert status["BackendState"] == "Running"
    serve = host.check_output("tailscale serve status")
    assert "127.0.0.1:8080" in serve, serve
    conf = host.check_output("nginx -T 2>/dev/null")
    assert "real_ip_header X-Forwarded-For;" in conf
    # Only from loopback (tailscaled's serve proxy): another peer's header changes nothing.
    # /livez: /healthz would ask the services API, which the floor does not run.
    status_code, _ = fetch(host, f"{GATEWAY}/livez", "X-Forwarded-For: 198.51.100.23")
    assert status_code == 200
    log = host.check_output("tail -n 1 /var/log/nginx/ai-local-core/access.log")
    entry = json.loads(log)
    assert entry["remote_addr"] == "198.51.100.23" and entry["peer"] == "127.0.0.1", entry


def test_firewall_active_with_ollama_denied(host: Any) -> None:
    out = host.check_output("ufw status verbose")
    assert "Status: active" in out
    assert "Default: deny (incoming)" in out
    lines = out.splitlines()
    assert any(line.startswith("11434/tcp") and "DENY" in line for line in lines), out


def test_tailnet_peers_meet_ufw_first(host: Any) -> None:
    """tailscaled runs with --netfilter-mode=off (role tailscale): no ts-input chain accepting
    tailscale0 ahead of ufw, whose denies then apply to tailnet peers too (molecule/firewall
    proves those denies from a peer behind tailscale0). The stand-in adds that chain exactly when
    a real tailscaled would (mode on)."""
    rules = host.check_output("iptables -S INPUT").splitlines()
    assert not [rule for rule in rules if "ts-input" in rule], rules
    jumps = [rule for rule in rules if rule.startswith("-A INPUT -j ")]
    assert jumps and jumps[0] == "-A INPUT -j ufw-before-logging-input", jumps
    assert "--netfilter-mode=off" in host.check_output(
        "tail -n 1 /var/lib/tailscale/standin-up.log"
    )


def test_check_mode_reports_no_changes() -> None:
    assert_check_mode_clean(Path(__file__).resolve().parents[2] / "default" / "converge.yml")
