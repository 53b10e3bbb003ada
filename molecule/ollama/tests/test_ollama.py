"""Verify role `ollama` on the converged Debian 12/13 hosts (stand-in binary, see converge.yml)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from tests.molecule_support import run_playbook, scenario_playbook

VERSION = "0.90.0"
API = "http://127.0.0.1:11434"
SETTINGS = {
    "OLLAMA_HOST": "127.0.0.1:11434",
    "OLLAMA_MODELS": "/usr/share/ollama/.ollama/models",
    "OLLAMA_KEEP_ALIVE": "10m",
    "OLLAMA_NUM_PARALLEL": "2",
    "OLLAMA_MAX_LOADED_MODELS": "2",
    "OLLAMA_MAX_QUEUE": "512",
    "OLLAMA_FLASH_ATTENTION": "true",
    "OLLAMA_KV_CACHE_TYPE": "q8_0",
    "OLLAMA_CONTEXT_LENGTH": "8192",
    "OLLAMA_LOAD_TIMEOUT": "5m",
    "OLLAMA_ORIGINS": "https://chat.example.internal",
    "OLLAMA_NOPRUNE": "1",
}


def api(host: Any, path: str) -> Any:
    """GET an API path on the host itself (the server listens on loopback only)."""
    script = (
        "import json, urllib.request;"
        f"print(urllib.request.urlopen({API + path!r}, timeout=10).read().decode())"
    )
    out = host.run(f"python3 -c {shlex.quote(script)}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def main_pid(host: Any) -> int:
    out = host.check_output("systemctl show --property MainPID --value ollama")
    return int(out)


def model_names(host: Any) -> set[str]:
    return {m["name"] for m in api(host, "/api/tags")["models"]}


def test_service_active_enabled_and_restarting(host):
    svc = host.service("ollama")
    assert svc.is_running
    assert svc.is_enabled
    props = host.check_output("systemctl show --property Restart,RestartUSec,User,Group ollama")
    assert "Restart=always" in props
    assert "RestartUSec=3s" in props


def test_service_runs_as_ollama(host):
    pid = main_pid(host)
    assert pid > 0
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "ollama"
    user = host.user("ollama")
    assert user.home == "/usr/share/ollama"
    assert user.uid < 1000, "ollama must be a system user"
    assert user.shell == "/usr/sbin/nologin"
    # install.sh's GPU groups, where the host has them (the images have video, not render).
    assert "video" in user.groups


def test_listens_only_on_loopback_11434(host):
    pid = main_pid(host)
    lines = host.check_output("ss -H -ltnp").splitlines()
    mine = [line.split()[3] for line in lines if f"pid={pid}," in line]
    assert mine == ["127.0.0.1:11434"], lines
    assert not host.socket("tcp://0.0.0.0:11434").is_listening


def test_drop_in_holds_the_settings_and_the_process_got_them(host):
    dropin = host.file("/etc/systemd/system/ollama.service.d/50-ai-local-core.conf")
    assert dropin.user == "root" and dropin.mode == 0o644
    for name, value in SETTINGS.items():
        assert f'Environment="{name}={value}"' in dropin.content_string
    # What systemd loaded, and what the running server was started with.
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid(host)}/environ").splitlines()
    for name, value in SETTINGS.items():
        assert f"{name}={value}" in environ
    unit = host.file("/etc/systemd/system/ollama.service").content_string
    assert "ExecStart=/usr/local/bin/ollama serve" in unit
    assert "OLLAMA_" not in unit, "settings belong in the drop-in, not in the unit"


def test_links_point_at_the_version_directory(host):
    link = host.file("/usr/local/bin/ollama")
    assert link.is_symlink
    assert link.linked_to == f"/opt/ollama/{VERSION}/bin/ollama"
    assert host.file("/opt/ollama/current").linked_to == f"/opt/ollama/{VERSION}"
    assert host.file(f"/opt/ollama/{VERSION}/lib/ollama/VERSION").content_string.strip() == VERSION
    marker = json.loads(host.file(f"/opt/ollama/{VERSION}/.ai-local-core-install.json").content)
    assert marker["version"] == VERSION and len(marker["sha256"]) == 64
    # The verified archive is not kept once unpacked.
    assert host.check_output("ls -A /var/cache/ai-local-core/ollama") == ""


def test_api_reports_the_version(host):
    assert api(host, "/api/version") == {"version": VERSION}
    # The CLI behind the link agrees (it asks the running server).
    assert VERSION in host.check_output("ollama --version 2>&1")


def test_models_dir_owned_by_ollama(host):
    models = host.file("/usr/share/ollama/.ollama/models")
    assert models.is_directory and models.user == "ollama" and models.group == "ollama"
    out = host.run("find /usr/share/ollama/.ollama/models ! -user ollama")
    assert out.rc == 0 and out.stdout == "", f"files not owned by ollama: {out.stdout}"


def test_declared_models_present_and_absent_ones_gone(host):
    names = model_names(host)
    assert {"tinyllama:latest", "qwen2.5:0.5b"} <= names
    assert "mistral:latest" not in names
    log = host.file("/var/log/ollama-pull.log").content_string
    assert "tinyllama:latest: success" in log and "qwen2.5:0.5b: success" in log


def test_preloaded_model_is_pinned(host):
    loaded = {m["name"]: m for m in api(host, "/api/ps")["models"]}
    assert "tinyllama:latest" in loaded
    # keep_alive -1: pinned until the next restart.
    assert loaded["tinyllama:latest"]["expires_at"] > "2100"


def test_absent_model_is_removed_and_that_is_the_only_change():
    seed = run_playbook(scenario_playbook("seed_absent_model.yml"))
    assert seed.returncode == 0, seed.output[-3000:]
    run = run_playbook(scenario_playbook())
    assert run.returncode == 0, run.output[-4000:]
    assert run.recaps
    for recap in run.recaps.values():
        assert recap.changed == 1, (
            f"expected only the delete to change: {recap}\n{run.output[-4000:]}"
        )
    assert "Remove the models declared absent" in run.output


def test_unit_and_drop_in_verify_clean(host):
    out = host.run("systemd-analyze verify ollama.service")
    assert out.rc == 0, out.stdout + out.stderr
    assert "ollama" not in out.stderr, out.stderr


def test_service_is_hardened(host):
    """ollama.service is confined like the project's other units, keeping GPU device access."""
    out = host.check_output("systemd-analyze security ollama.service")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    # 9.x unhardened; the rest is what the GPU and the CUDA runtime need (docs/ollama-role.md).
    assert float(match.group(1)) <= 3.0, out
    props = host.check_output(
        "systemctl show --property NoNewPrivileges,ProtectSystem,DevicePolicy,DeviceAllow ollama"
    )
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    assert "DevicePolicy=closed" in props
    assert "char-nvidia* rw" in props, props


def test_service_writes_only_its_home_and_models(host):
    """Inside the service's mount namespace /usr is read-only, while the models stay writable."""
    pid = main_pid(host)
    enter = f"nsenter --target {pid} --mount --"
    outside = host.run(f"{enter} touch /usr/local/ollama-hardening-probe")
    assert outside.rc != 0 and "Read-only file system" in outside.stderr, outside.stderr
    models = SETTINGS["OLLAMA_MODELS"]
    probe = f"{models}/.hardening-probe"
    inside = host.run(f"{enter} sh -c 'touch {probe} && rm {probe}'")
    assert inside.rc == 0, inside.stderr
