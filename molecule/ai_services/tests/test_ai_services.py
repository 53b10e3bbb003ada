"""Verify role `ai_services` on the converged Debian 12/13 hosts.

Neighbours (prepare.yml): role ollama running the Ollama stand-in with llama3.1:8b and llava:7b,
and role gateway on 127.0.0.1:8080 in front of Ollama and the services API (/services/).

The last test deploys a rebuilt wheel with another version and leaves the hosts on it: run
`molecule converge -s ai_services` before running `molecule verify` again.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

from tests.molecule_support import run_playbook, scenario_playbook

SCENARIO = Path(__file__).resolve().parents[1]
TEST_VARS = yaml.safe_load((SCENARIO / "vars" / "test.yml").read_text())
GATEWAY_KEY = TEST_VARS["molecule_ai_services_gateway_key"]
OLLAMA_PASSWORD = TEST_VARS["molecule_ai_services_ollama_password"]

SERVICE = "ai-local-core-api"
API = "http://127.0.0.1:8000"
GATEWAY = "http://127.0.0.1:8080/services"
OLLAMA = "http://127.0.0.1:11434"
COMPAT = "/opt/ai-local-core/app"
CONFIG = "/etc/ai-local-core/production.yaml"
SECRETS = "/etc/ai-local-core/secrets.env"
MARKER = "/opt/ai-local-core/venv/.ai-local-core-deploy.json"
IMAGE_DIR = "/srv/ai-services-test"
IMAGE_PORT = 18081
IMAGE_URL = f"http://127.0.0.1:{IMAGE_PORT}/red.png"
# A clean environment like PHP-FPM's: no HOME, no AI_LOCAL_CORE_*, a minimal PATH.
PHP_ENV = "env -i PATH=/usr/local/bin:/usr/bin:/bin"


def http(host: Any, url: str, *, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    """(status, parsed JSON body or text) of one request made on the host."""
    cmd = ["curl", "-sS", "-X", method, "-o", "/tmp/ai-services-body", "-w", "%{http_code}", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = host.run(shlex.join(cmd))
    assert out.rc == 0, out.stderr
    body = host.file("/tmp/ai-services-body").content_string
    try:
        return int(out.stdout), json.loads(body)
    except ValueError:
        return int(out.stdout), body


def as_php(host: Any, *argv: str) -> tuple[int, dict[str, Any]]:
    """Run a command as www-data in a clean environment; (exit status, the JSON it printed)."""
    out = host.run(f"cd / && runuser -u www-data -- {PHP_ENV} {shlex.join(argv)}")
    assert out.stdout.strip(), f"no output (exit {out.rc}): {out.stderr}"
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    return out.rc, json.loads(out.stdout)


def standin_requests(host: Any) -> list[dict[str, Any]]:
    status, body = http(host, f"{OLLAMA}/_standin/requests")
    assert status == 200
    return list(body["requests"])


def clear_standin_requests(host: Any) -> None:
    assert http(host, f"{OLLAMA}/_standin/requests", method="DELETE")[0] == 200


def main_pid(host: Any) -> int:
    return int(host.check_output(f"systemctl show --property MainPID --value {SERVICE}"))


@pytest.fixture(scope="module")
def image_server(host: Any) -> str:
    """A 4x4 red PNG served over loopback HTTP on the host (Waldus passes image URLs)."""
    unit = "ai-services-test-images"
    host.run(f"systemctl stop {unit}; systemctl reset-failed {unit}")
    host.run(f"mkdir -p {IMAGE_DIR}")
    script = (
        "import struct, zlib;"
        "chunk = lambda t, d: struct.pack('>I', len(d)) + t + d"
        " + struct.pack('>I', zlib.crc32(t + d));"
        "raw = b''.join(b'\\x00' + b'\\xff\\x00\\x00' * 4 for _ in range(4));"
        "png = b'\\x89PNG\\r\\n\\x1a\\n'"
        " + chunk(b'IHDR', struct.pack('>IIBBBBB', 4, 4, 8, 2, 0, 0, 0))"
        " + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'');"
        f"open('{IMAGE_DIR}/red.png', 'wb').write(png)"
    )
    assert host.run(f"python3 -c {shlex.quote(script)} && chmod 0755 {IMAGE_DIR}").rc == 0
    host.check_output(f"chmod 0644 {IMAGE_DIR}/red.png")
    started = host.run(
        "systemd-run --unit ai-services-test-images --property Type=exec "
        f"python3 -m http.server {IMAGE_PORT} --bind 127.0.0.1 --directory {IMAGE_DIR}"
    )
    assert started.rc == 0, started.stderr
    probe = host.run(
        f"for i in $(seq 1 40); do curl -fsS -o /dev/null {IMAGE_URL} && exit 0; sleep 0.25; done;"
        " exit 1"
    )
    assert probe.rc == 0, "the test image server did not start"
    return IMAGE_URL


# --------------------------------------------------------------------------------- the service


def test_service_active_enabled_as_its_own_user(host: Any) -> None:
    svc = host.service(SERVICE)
    assert svc.is_running and svc.is_enabled
    props = host.check_output(
        f"systemctl show --property Type,Restart,User,MemoryMax,NRestarts {SERVICE}"
    )
    assert "Type=notify" in props and "Restart=on-failure" in props
    assert "User=ai-services" in props
    assert f"MemoryMax={1024**3}" in props
    # gunicorn's arbiter and its worker, all as ai-services.
    users = host.check_output(f"ps -o user= --ppid {main_pid(host)} -p {main_pid(host)}").split()
    assert len(users) >= 2 and set(users) == {"ai-services"}, users
    user = host.user("ai-services")
    assert user.uid < 1000 and user.shell == "/usr/sbin/nologin"
    assert "ai-local-core" in user.groups


def test_listens_on_loopback_8000_only(host: Any) -> None:
    pid = main_pid(host)
    lines = host.check_output("ss -H -ltnp").splitlines()
    mine = {line.split()[3] for line in lines if f"pid={pid}," in line}
    assert mine == {"127.0.0.1:8000"}, lines


def test_security_exposure_at_most_2(host: Any) -> None:
    out = host.run(f"systemd-analyze security {SERVICE}.service")
    assert out.rc == 0, out.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout
    assert float(match[1]) <= 2.0, out.stdout


def test_unit_verifies_clean(host: Any) -> None:
    out = host.run(f"systemd-analyze verify {SERVICE}.service")
    assert out.rc == 0, out.stdout + out.stderr
    assert SERVICE not in out.stderr, out.stderr


def test_state_and_logs(host: Any) -> None:
    state = host.file("/var/lib/ai-local-core/services")
    assert state.is_directory and state.user == "ai-services" and state.mode == 0o750
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid(host)}/environ").splitlines()
    assert f"AI_LOCAL_CORE_CONFIG={CONFIG}" in environ
    assert "HF_HOME=/var/lib/ai-local-core/services/huggingface" in environ
    # Logs go to the journal, and never hold the secret.
    journal = host.check_output(f"journalctl -u {SERVICE} --no-pager -o cat")
    assert "Started" in journal and OLLAMA_PASSWORD not in journal


# ---------------------------------------------------------------------- settings and secrets


def test_settings_file(host: Any) -> None:
    conf = host.file(CONFIG)
    assert (conf.user, conf.group, conf.mode) == ("root", "ai-local-core", 0o640)
    settings = yaml.safe_load(conf.content_string)
    assert settings["env"] == "production"
    assert settings["ollama"]["url"] == OLLAMA
    assert settings["api"] == settings["api"] | {"url": API, "bind": "127.0.0.1", "port": 8000}
    assert settings["image"]["backend"] == "ollama"
    assert settings["translation"]["backend"] == "ollama"
    assert settings["models"]["aliases"] == {"molecule": "llama3.1:8b"}
    # ai_services_config_extra merged over the generated keys.
    assert settings["image"]["limits"]["max_bytes"] == 5242880
    assert OLLAMA_PASSWORD not in conf.content_string


def test_secrets_file_reaches_the_service_only(host: Any) -> None:
    secrets = host.file(SECRETS)
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "root", 0o600)
    # Not for the CLI users, although they are in the group that reads the settings.
    denied = host.run(f"runuser -u www-data -- cat {SECRETS}")
    assert denied.rc != 0 and OLLAMA_PASSWORD not in denied.stdout, denied.stdout
    assert "ai-local-core" in host.check_output("id -nG www-data").split()
    assert f'AI_LOCAL_CORE_OLLAMA__AUTH__PASSWORD="{OLLAMA_PASSWORD}"' in secrets.content_string
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid(host)}/environ")
    assert "AI_LOCAL_CORE_OLLAMA__AUTH__USERNAME=molecule-svc" in environ.splitlines()
    # The credentials travel with the server's requests to Ollama (the stand-in records whether
    # an Authorization header came with each one).
    clear_standin_requests(host)
    status, body = http(host, f"{API}/ready")
    assert status == 200 and body["ready"] is True, body
    seen = standin_requests(host)
    assert seen and all(r["authorization"] for r in seen), seen


# --------------------------------------------------------------------------- HTTP endpoints


def test_health_and_ready_through_the_gateway_with_auth(host: Any) -> None:
    status, body = http(host, f"{GATEWAY}/health", token=GATEWAY_KEY)
    assert status == 200 and body["status"] == "ok", body
    status, body = http(host, f"{GATEWAY}/ready", token=GATEWAY_KEY)
    assert status == 200 and body["ready"] is True, body
    assert body["checks"]["image"]["model"] == "llava:7b"
    # Without a credential the gateway answers, not the services.
    status, _ = http(host, f"{GATEWAY}/health")
    assert status == 401


def test_metrics_count_requests(host: Any) -> None:
    http(host, f"{API}/health")
    status, text = http(host, f"{API}/metrics")
    assert status == 200
    assert re.search(r'endpoint="/health"', str(text)), str(text)[:2000]


# ------------------------------------------------------------------------------------- CLIs


def test_cli_complete_uses_the_warm_server(host: Any) -> None:
    clear_standin_requests(host)
    rc, out = as_php(host, "ai-complete", '{"user": "Hello"}')
    assert rc == 0 and out["success"] is True, out
    assert out["content"].endswith("Hello") and out["model"] == "llama3.1:8b"
    # www-data cannot read the secrets: requests with credentials came from the API server.
    chats = [r for r in standin_requests(host) if r["path"] in ("/api/generate", "/api/chat")]
    assert chats and all(r["authorization"] for r in chats), chats


def test_cli_describe_uses_the_warm_server(host: Any, image_server: str) -> None:
    clear_standin_requests(host)
    rc, out = as_php(host, "ai-describe", image_server, "50")
    assert rc == 0 and out["success"] is True, out
    assert out["backend"] == "ollama" and out["model"] == "llava:7b" and out["max_length"] == 50
    assert out["image"] == {"format": "PNG", "width": 4, "height": 4}
    # www-data cannot read the secrets: requests with credentials came from the API server.
    generations = [r for r in standin_requests(host) if r["path"] in ("/api/generate", "/api/chat")]
    assert generations and all(r["authorization"] for r in generations), generations


def test_cli_translate_uses_the_warm_server(host: Any) -> None:
    clear_standin_requests(host)
    rc, out = as_php(host, "ai-translate", "Hello world", "pl")
    assert rc == 0 and out["success"] is True, out
    assert out["backend"] == "ollama" and out["target_language"] == "pl"
    assert "Hello world" in out["translation"]
    generations = [r for r in standin_requests(host) if r["path"] in ("/api/generate", "/api/chat")]
    assert generations and all(r["authorization"] for r in generations), generations


def test_cli_bad_input_is_a_json_error(host: Any) -> None:
    rc, out = as_php(host, "ai-translate", "Hello world", "xx-not-a-language")
    assert rc != 0 and out["success"] is False, out
    assert out["error"]["type"] and out["error"]["message"]


# -------------------------------------------------------------- Waldus compatibility paths


def test_compat_tree_layout(host: Any) -> None:
    for script in ("ollama/complete.py", "image/describe.py", "translation/translate.py"):
        f = host.file(f"{COMPAT}/src/{script}")
        assert f.is_file and f.user == "root" and f.mode == 0o755
    assert host.file(f"{COMPAT}/src/_bootstrap.py").is_file
    wrapper = host.file(f"{COMPAT}/.venv/bin/python")
    assert wrapper.mode == 0o755 and "/opt/ai-local-core/venv/bin/python" in wrapper.content_string


def test_compat_complete_exactly_as_php_calls_it(host: Any) -> None:
    # $AI_LOCAL_CORE_PATH set by the PHP side, the system python3, the JSON argument.
    rc, out = as_php(
        host,
        f"AI_LOCAL_CORE_PATH={COMPAT}",
        "sh",
        "-c",
        """python3 $AI_LOCAL_CORE_PATH/src/ollama/complete.py '{"user": "Hello"}'""",
    )
    assert rc == 0 and out["success"] is True, out
    assert out["content"] == "Stand-in reply from llama3.1:8b: Hello"


def test_compat_describe_and_translate(host: Any, image_server: str) -> None:
    rc, out = as_php(host, "python3", f"{COMPAT}/src/image/describe.py", image_server, "50")
    assert rc == 0 and out["success"] is True and out["max_length"] == 50, out
    rc, out = as_php(host, "python3", f"{COMPAT}/src/translation/translate.py", "Hello world", "pl")
    assert rc == 0 and out["success"] is True and out["target_language"] == "pl", out


def test_compat_bad_input(host: Any) -> None:
    rc, out = as_php(host, "python3", f"{COMPAT}/src/ollama/complete.py", "not json")
    assert rc == 2 and out["success"] is False and out["error"]["type"] == "invalid_input", out


# ------------------------------------------------------------------------ Ansible behaviour


def build_variant_wheel(work: Path) -> tuple[Path, str]:
    """The scenario's package sources with another version, built into a wheel."""
    source = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "source"
    tree = work / "src"
    shutil.copytree(
        source, tree, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text()
    match = re.search(r'^version = "([^"]+)"$', text, re.MULTILINE)
    assert match, "no static version in pyproject.toml"
    version = f"{match[1]}+molecule.redeploy"
    pyproject.write_text(text.replace(match[0], f'version = "{version}"', 1))
    init = tree / "python_services" / "ai_local_core" / "__init__.py"
    init.write_text(
        re.sub(r'__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text())
    )
    out = work / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*cmd, "--wheel-dir", str(out), str(tree)],
        check=True,
        capture_output=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )
    (wheel,) = out.glob("*.whl")
    return wheel, version


def test_new_wheel_restarts_once_then_nothing_changes(tmp_path: Path) -> None:
    hosts = {name: testinfra.get_host(f"podman://{name}") for name in _inventory_hosts()}
    before = {
        name: (
            h.check_output(f"systemctl show --property InvocationID --value {SERVICE}"),
            h.check_output("date +%s"),
        )
        for name, h in hosts.items()
    }
    wheel, version = build_variant_wheel(tmp_path)

    run = run_playbook(scenario_playbook(), "-e", f"ai_services_wheel={wheel}")
    tail = run.output[-5000:]
    assert run.returncode == 0, tail
    assert set(run.recaps) == set(hosts), tail
    assert all(r.changed > 0 for r in run.recaps.values()), tail
    assert run.output.count("RUNNING HANDLER [ai_services : Restart ai-local-core-api]") == 1

    for name, h in hosts.items():
        invocation, since = before[name]
        assert h.check_output(f"systemctl show --property InvocationID --value {SERVICE}") != (
            invocation
        )
        journal = h.check_output(f"journalctl -u {SERVICE} --since @{since} --no-pager -o cat")
        starts = [line for line in journal.splitlines() if line.startswith("Started ")]
        stops = [line for line in journal.splitlines() if line.startswith("Stopping ")]
        assert (len(starts), len(stops)) == (1, 1), journal
        marker = json.loads(h.file(MARKER).content_string)
        assert marker["version"] == version and marker["wheel"] == wheel.name
        status, body = http(h, f"{API}/health")
        assert status == 200 and body["version"] == version, body

    again = run_playbook(scenario_playbook(), "-e", f"ai_services_wheel={wheel}")
    assert again.returncode == 0, again.output[-5000:]
    for recap in again.recaps.values():
        assert recap.changed == 0, f"{recap}\n{again.output[-5000:]}"


def test_an_install_left_running_by_a_cut_off_run_is_stopped() -> None:
    """A run cut off during pip leaves pip running on the host (seen in make vm-test: the next
    run's rmtree of the virtualenv failed with "Directory not empty" while it wrote). The next
    run stops it before touching the virtualenv."""
    hosts = {name: testinfra.get_host(f"podman://{name}") for name in _inventory_hosts()}
    stale = "/opt/ai-local-core/venv/bin/pip3 install --left-by-a-cut-off-run"
    # pgrep's pattern, which does not match the shell that runs pgrep with it.
    pattern = shlex.quote(stale.replace("bin/pip3", "bin/[p]ip3"))
    for h in hosts.values():
        h.check_output(
            f"setsid -f bash -c {shlex.quote(f'exec -a {shlex.quote(stale)} sleep 600')}"
            " </dev/null >/dev/null 2>&1"
        )
        assert h.run(f"pgrep -f -- {pattern}").rc == 0
        # The marker of a finished install no longer matches: the install block runs again.
        marker = json.loads(h.file(MARKER).content_string)
        h.check_output(
            f"printf %s {shlex.quote(json.dumps({**marker, 'wheel': 'cut-off.whl'}))} > {MARKER}"
        )
    run = run_playbook(scenario_playbook())
    tail = run.output[-5000:]
    assert run.returncode == 0, tail
    assert (
        "changed: ["
        in run.output.split(
            "TASK [ai_services : Stop an install that an interrupted run left running]"
        )[1].split("TASK [")[0]
    ), tail
    for h in hosts.values():
        assert h.run(f"pgrep -f -- {pattern}").rc == 1
        assert json.loads(h.file(MARKER).content_string)["wheel"] != "cut-off.whl"
        status, body = http(h, f"{API}/health")
        assert status == 200, body


def _inventory_hosts() -> list[str]:
    inventory = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    return sorted(inventory["all"]["hosts"])
