"""Verify the whole stack (playbooks/site.yml) on the converged container.

Every layer is up, a completion with the sandbox's API key goes through the gateway, a request
without credentials is refused with 401 JSON, the tunnel (cloudflared stand-in, quick mode)
delivers to the gateway and never to Ollama, Ollama and the services stay on loopback behind ufw,
and site.yml in check mode reports 0 changed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.molecule_support import assert_check_mode_clean, run_playbook

STANDINS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "standins"
GATEWAY = "http://127.0.0.1:8080"
BODY = "/tmp/default-scenario-body"


def _api_key() -> str:
    data = yaml.safe_load((STANDINS / "standins.yml").read_text(encoding="utf-8"))
    return str(data["gateway_api_keys"][0]["key"])


def http(
    host: Any, url: str, *, data: dict[str, Any] | None = None, key: str | None = None
) -> tuple[int, Any]:
    """(status, JSON body or text) of one request made on the host."""
    cmd = ["curl", "-sS", "--max-time", "60", "-o", BODY, "-w", "%{http_code}"]
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(data)]
    out = host.run(shlex.join([*cmd, url]))
    assert out.rc == 0, out.stderr
    body = host.file(BODY).content_string
    try:
        return int(out.stdout), json.loads(body)
    except ValueError:
        return int(out.stdout), body


@pytest.mark.parametrize(
    "unit", ["ollama", "ai-local-core-api", "nginx", "cloudflared-quick", "ufw"]
)
def test_layer_units_running_and_enabled(host: Any, unit: str) -> None:
    service = host.service(unit)
    assert service.is_enabled, unit
    if unit != "ufw":  # a oneshot that loads the rules at boot
        assert service.is_running, unit


REPO = Path(__file__).resolve().parents[3]
SCENARIO_VARS = yaml.safe_load((REPO / "molecule" / "default" / "molecule.yml").read_text())
MONITORING = SCENARIO_VARS["provisioner"]["inventory"]["group_vars"]["llm_nodes"].get(
    "site_monitoring_enabled", True
)


@pytest.mark.skipif(not MONITORING, reason="site_monitoring_enabled is false in molecule.yml")
@pytest.mark.parametrize(
    "unit",
    [
        "prometheus-node-exporter.service",
        "ai-local-core-exporter.service",
        "ai-local-core-healthcheck.timer",
    ],
)
def test_monitoring_units_running_and_enabled(host: Any, unit: str) -> None:
    service = host.service(unit)
    assert service.is_enabled, unit
    assert service.is_running, unit


def test_firewall_active_with_ollama_and_services_denied(host: Any) -> None:
    status = host.run("ufw status verbose")
    assert status.rc == 0, status.stderr
    assert "Status: active" in status.stdout
    assert "Default: deny (incoming)" in status.stdout
    lines = status.stdout.splitlines()
    for port in ("11434", "8000"):
        assert any(line.startswith(f"{port}/tcp") and "DENY" in line for line in lines), port
    # Cloudflare connects out from the host: the gateway has no allow rule at all.
    assert not any(line.startswith("8080") and "ALLOW" in line for line in lines), status.stdout


def test_ollama_and_services_listen_on_loopback_only(host: Any) -> None:
    listening = {str(s) for s in host.socket.get_listening_sockets()}
    for port in (11434, 8000, 8080):
        ours = [s for s in listening if s.endswith(f":{port}")]
        assert ours, f"nothing listens on {port}: {listening}"
        assert all("127.0.0.1" in s for s in ours), ours


def test_authenticated_completion_through_the_gateway(host: Any) -> None:
    status, body = http(
        host,
        f"{GATEWAY}/api/generate",
        data={"model": "llama3.1:8b", "prompt": "hello gateway", "stream": False},
        key=_api_key(),
    )
    assert status == 200, body
    assert body["response"].startswith("Stand-in reply from llama3.1:8b"), body


def test_authenticated_services_api_through_the_gateway(host: Any) -> None:
    status, body = http(
        host, f"{GATEWAY}/services/v1/complete", data={"user": "hello services"}, key=_api_key()
    )
    assert status == 200, body
    assert "hello services" in json.dumps(body), body


@pytest.mark.parametrize("key", [None, "sandbox-wrong-key-0123456789abcdef0123456789abcdef"])
def test_unauthenticated_completion_refused_with_json(host: Any, key: str | None) -> None:
    status, body = http(
        host,
        f"{GATEWAY}/api/generate",
        data={"model": "llama3.1:8b", "prompt": "no key", "stream": False},
        key=key,
    )
    assert status == 401, body
    assert isinstance(body, dict) and "error" in body, body


def test_tunnel_delivers_to_the_gateway(host: Any) -> None:
    quick = host.run("curl -sS --max-time 10 http://127.0.0.1:20241/quicktunnel")
    assert quick.rc == 0, quick.stderr
    assert json.loads(quick.stdout)["hostname"].endswith(".trycloudflare.com")
    # The stand-in's edge forwards to the tunnel's origin: the gateway asks for credentials
    # (Ollama itself would answer without any).
    status, body = http(host, "http://127.0.0.1:20241/standin-edge/api/version")
    assert status == 401, body


def test_ollama_defaults_left_to_ollama_are_not_written(host: Any) -> None:
    # ollama_context_length 0 (the default) means Ollama's own default, whose meaning changes
    # between releases: the drop-in leaves the variable out instead of writing 0.
    dropin = host.file("/etc/systemd/system/ollama.service.d/50-ai-local-core.conf")
    assert 'Environment="OLLAMA_HOST=' in dropin.content_string
    assert "OLLAMA_CONTEXT_LENGTH" not in dropin.content_string


def test_tailscale_absent(host: Any) -> None:
    assert not host.package("tailscale").is_installed


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tunnel_provider": "ngrok"}, "tunnel_provider must be cloudflared, tailscale or none"),
        ({"site_min_free_gb": 1000000}, "site_min_free_gb asks for 1000000 GiB"),
        (
            {"gateway_api_keys": [{"name": "waldus", "key": "{{ vault_gateway_key_waldus }}"}]},
            "Gateway credentials are missing",
        ),
        ({"tunnel_provider": "tailscale", "tailscale_auth_key": ""}, "vault_tailscale_auth_key"),
        (
            {"cloudflared_mode": "token", "cloudflared_token": ""},
            "set vault_cloudflared_token in the vault",
        ),
        ({"firewall_gateway_port": 9090}, "are set by playbooks/site.yml"),
    ],
    ids=["tunnel", "disk", "api-key", "tailscale-key", "cloudflared-token", "wired-var"],
)
def test_preflight_stops_site_before_any_change(override: dict[str, Any], message: str) -> None:
    run = run_playbook(
        REPO / "playbooks" / "site.yml",
        "-e",
        f"@{STANDINS / 'standins.yml'}",
        "-e",
        json.dumps(override),
    )
    assert run.returncode != 0, run.output[-3000:]
    assert " ".join(message.split()) in " ".join(run.output.split()), run.output[-3000:]
    assert "Deploy the LLM node" not in run.output, "the deploy play started"
    assert all(r.changed == 0 for r in run.recaps.values()), run.recaps


def test_check_mode_reports_no_changes() -> None:
    assert_check_mode_clean()


# --- Day-2 playbooks against the converged stack ----------------------------------------------
# Each runs as `make rotate/models/services/tunnel-url/upgrade` would (the playbook, the scenario's
# inventory, the stand-in vars as -e) and asserts on its effect; each puts the host back as the
# converge left it, so the order of the tests does not matter.

ROTATED_KEY = "sandbox-NOT-A-SECRET-rotated-0123456789abcdef01234567"
EXTRA_MODEL = "tinyllama:latest"


def day2(playbook: str, *extra: str, **overrides: Any) -> Any:
    """Run playbooks/<playbook> with the stand-in vars (minus ollama_version, which the upgrade
    playbook refuses as an extra var) and the overrides as extra vars."""
    data = yaml.safe_load((STANDINS / "standins.yml").read_text(encoding="utf-8"))
    data.pop("ollama_version", None)
    data.update(overrides)
    varsfile = STANDINS / "day2-vars.json"
    varsfile.write_text(json.dumps(data), encoding="utf-8")
    varsfile.chmod(0o600)
    return run_playbook(REPO / "playbooks" / playbook, "-e", f"@{varsfile}", *extra)


def _ok(run: Any, what: str) -> None:
    assert run.returncode == 0, f"{what} failed:\n{run.output[-4000:]}"
    assert run.recaps and all(r.failed == 0 for r in run.recaps.values()), run.recaps


def _version(host: Any) -> str:
    return str(
        json.loads(host.check_output("curl -fsS http://127.0.0.1:11434/api/version"))["version"]
    )


def _models(host: Any) -> set[str]:
    tags = json.loads(host.check_output("curl -fsS http://127.0.0.1:11434/api/tags"))
    return {m["name"] for m in tags["models"]}


def test_rotate_credentials_refuses_the_old_key_and_accepts_the_new(host: Any) -> None:
    old = _api_key()
    version = f"{GATEWAY}/api/version"
    try:
        run = day2(
            "rotate-credentials.yml", gateway_api_keys=[{"name": "sandbox", "key": ROTATED_KEY}]
        )
        _ok(run, "rotate-credentials.yml")
        assert http(host, version, key=ROTATED_KEY)[0] == 200
        assert http(host, version, key=old)[0] == 401, "the rotated-out key still works"
        assert ROTATED_KEY not in run.output, "the new key reached the playbook output"
    finally:
        back = day2("rotate-credentials.yml")
    _ok(back, "rotate-credentials.yml (back to the sandbox key)")
    assert http(host, version, key=old)[0] == 200
    assert http(host, version, key=ROTATED_KEY)[0] == 401


def test_models_playbook_pulls_the_declared_and_removes_the_absent(host: Any) -> None:
    declared = SCENARIO_VARS["provisioner"]["inventory"]["group_vars"]["llm_nodes"]["ollama_models"]
    before = _models(host)
    assert EXTRA_MODEL not in before
    try:
        run = day2("models.yml", ollama_models=[*declared, {"name": EXTRA_MODEL}])
        _ok(run, "models.yml (one more model)")
        assert _models(host) == before | {EXTRA_MODEL}
    finally:
        gone = day2(
            "models.yml", ollama_models=[*declared, {"name": EXTRA_MODEL, "state": "absent"}]
        )
    _ok(gone, "models.yml (the model declared absent)")
    assert _models(host) == before


def test_services_playbook_applies_a_changed_setting_and_restarts_the_api(host: Any) -> None:
    unit = "ai-local-core-api"
    settings = "/etc/ai-local-core/production.yaml"
    pid = host.service(unit).systemd_properties["MainPID"]
    try:
        run = day2("services.yml", ai_services_threads=6)
        _ok(run, "services.yml")
        assert yaml.safe_load(host.file(settings).content_string)["api"]["threads"] in (6, "6")
        assert host.service(unit).systemd_properties["MainPID"] != pid, "the API kept running"
        status, body = http(host, f"{GATEWAY}/services/ready", key=_api_key())
        assert status == 200, body
    finally:
        back = day2("services.yml")
    _ok(back, "services.yml (back to the converged settings)")
    assert yaml.safe_load(host.file(settings).content_string)["api"]["threads"] in (8, "8")


def test_tunnel_url_prints_the_quick_tunnel_address(host: Any) -> None:
    hostname = json.loads(host.check_output("curl -fsS http://127.0.0.1:20241/quicktunnel"))[
        "hostname"
    ]
    run = day2("tunnel-url.yml")
    _ok(run, "tunnel-url.yml")
    assert f"https://{hostname} (Cloudflare quick tunnel" in " ".join(run.output.split())
    assert run.recaps and all(r.changed == 0 for r in run.recaps.values()), run.recaps


def _standin_release(tmp_path: Path, version: str, reports: str | None = None) -> dict[str, str]:
    """An Ollama stand-in archive for `version` (reporting `reports` instead, if given)."""
    out = tmp_path / version / "ollama-linux-amd64.tar.zst"
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "fakes" / "ollama_standin" / "build_artifact.py"),
            "--version",
            reports or version,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "upgrade_ollama_version": version,
        "ollama_artifact_local_path": str(out),
        "ollama_artifact_sha256": res.stdout.split()[0],
    }


def test_upgrade_driver_playbook_on_a_node_without_a_gpu() -> None:
    # make upgrade-driver: on a node without an NVIDIA GPU, role nvidia_driver stops after its
    # detection and nothing moves.
    run = day2("upgrade-driver.yml")
    _ok(run, "upgrade-driver.yml")
    assert all(r.changed == 0 for r in run.recaps.values()), run.recaps
    said = " ".join(run.output.split())
    assert "SKIPPING the NVIDIA driver" in said, run.output[-3000:]
    assert "no NVIDIA GPU detected and nvidia_driver_required is auto" in said


def test_upgrade_playbook_moves_the_version_and_rolls_back_a_failing_one(
    host: Any, tmp_path: Path
) -> None:
    converged = _version(host)
    assert converged == str(
        yaml.safe_load((STANDINS / "standins.yml").read_text(encoding="utf-8"))["ollama_version"]
    )
    try:
        run = day2("upgrade-ollama.yml", **_standin_release(tmp_path, "0.91.0"))
        _ok(run, "upgrade-ollama.yml to 0.91.0")
        assert _version(host) == "0.91.0"
        assert host.file("/opt/ollama/current").linked_to == "/opt/ollama/0.91.0"
        # A release that never reports its version: the playbook restores 0.91.0 by itself.
        bad = day2(
            "upgrade-ollama.yml",
            **_standin_release(tmp_path, "0.93.0", reports="0.92.0"),
            ollama_start_timeout=8,
        )
        assert bad.returncode != 0, bad.output[-3000:]
        said = " ".join(bad.output.split())
        assert "The upgrade of Ollama to 0.93.0 failed" in said, bad.output[-3000:]
        assert "Rolled back to 0.91.0, which is running again." in said, bad.output[-3000:]
        assert _version(host) == "0.91.0"
        assert host.file("/opt/ollama/current").linked_to == "/opt/ollama/0.91.0"
    finally:
        back = day2("upgrade-ollama.yml", upgrade_ollama_version=converged)
    _ok(back, f"upgrade-ollama.yml back to {converged}")
    assert _version(host) == converged
