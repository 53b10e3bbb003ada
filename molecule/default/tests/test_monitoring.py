"""Verify role `monitoring` as site.yml deployed it (the whole stack, Debian 12 container here;
Ubuntu 22.04/24.04 in the workflow's matrix).

Neighbours: Ollama (the stand-in, with llama3.1:8b and llava:7b), the gateway on 127.0.0.1:8080,
the services package (it carries the exporter and the health check), the cloudflared quick
tunnel (stand-in). The webhook receiver is a tiny HTTP server the tests start inside the
container; molecule.yml points monitoring_webhook_url at it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.molecule_support import run_playbook

#: The platform name (molecule.yml; the GitHub workflow's Ubuntu jobs set the suffix).
HOST = "default-" + os.environ.get("AI_LOCAL_CORE_CI_PLATFORM", "bookworm")

SCENARIO = Path(__file__).resolve().parents[1]
REPO = SCENARIO.parents[1]
NODE_VARS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"][
    "group_vars"
]["llm_nodes"]
STANDINS_FILE = (
    Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
    / "standins"
    / "standins.yml"
)
STANDINS = yaml.safe_load(STANDINS_FILE.read_text(encoding="utf-8"))
OLLAMA_VERSION = str(STANDINS["ollama_version"])
HOOK_URL = str(NODE_VARS["monitoring_webhook_url"])
HOOK_PORT = int(HOOK_URL.split(":")[2].split("/")[0])
HOOK_TOKEN = HOOK_URL.rsplit("/", 1)[1]
POSTS = "/srv/webhook-receiver/posts.jsonl"
EXPORTER = "http://127.0.0.1:9101/metrics"
OLLAMA = "http://127.0.0.1:11434"
STATE = "/var/lib/ai-local-core-monitoring/healthcheck-state.json"

RECEIVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, out = int(sys.argv[1]), sys.argv[2]

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "body": json.loads(body)}) + "\n")
        self.send_response(204)
        self.end_headers()

HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def metrics(host: Any) -> str:
    out = host.run(f"curl -fsS {EXPORTER}")
    assert out.rc == 0, out.stderr
    return str(out.stdout)


def value(text: str, series: str) -> float:
    """The value of one exact series line, e.g. 'ollama_up' or 'x{model="a"}'."""
    for line in text.splitlines():
        name, _, number = line.rpartition(" ")
        if name == series:
            return float(number)
    raise AssertionError(f"{series} not in /metrics:\n{text}")


def posts(host: Any) -> list[dict[str, Any]]:
    content = host.run(f"cat {POSTS} 2>/dev/null || true").stdout
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def run_healthcheck(host: Any) -> None:
    out = host.run("systemctl start ai-local-core-healthcheck.service")
    journal = host.run("journalctl -u ai-local-core-healthcheck -n 20 --no-pager").stdout
    assert out.rc == 0, f"{out.stderr}\n{journal}"


def test_units_active_and_enabled(host: Any) -> None:
    for unit in (
        "prometheus-node-exporter",
        "ai-local-core-exporter",
        "ai-local-core-healthcheck.timer",
    ):
        service = host.service(unit)
        assert service.is_running, unit
        assert service.is_enabled, unit


def test_exporters_listen_on_loopback_only(host: Any) -> None:
    node = host.run("curl -fsS http://127.0.0.1:9100/metrics").stdout
    assert "node_exporter_build_info" in node
    address = host.run("hostname -I").stdout.split()[0]
    for port in (9100, 9101):
        probe = host.run(
            "python3 -c "
            + shlex.quote(
                "import socket,sys\n"
                f"s=socket.socket(); s.settimeout(2)\n"
                f"sys.exit(s.connect_ex(('{address}', {port})))"
            )
        )
        assert probe.rc != 0, f"port {port} answers on {address}"


def test_units_are_hardened_and_unprivileged(host: Any) -> None:
    for unit in ("ai-local-core-exporter", "ai-local-core-healthcheck"):
        shown = host.run(
            f"systemctl show -p User,NoNewPrivileges,ProtectSystem,PrivateDevices {unit}"
        ).stdout
        assert "User=ai-monitoring" in shown
        assert "NoNewPrivileges=yes" in shown
        assert "ProtectSystem=strict" in shown
        assert "PrivateDevices=yes" in shown  # no GPU here


def test_metrics_have_the_absent_gpu_and_the_standin_series(host: Any) -> None:
    text = metrics(host)
    assert re.search(r"^gpu_present 0(\.0)?$", text, re.MULTILINE), text
    assert value(text, "gpu_count") == 0
    assert "gpu_utilization_percent" not in text
    assert value(text, "ollama_up") == 1
    assert value(text, f'ollama_info{{version="{OLLAMA_VERSION}"}}') == 1
    assert value(text, "ollama_models_present") == 2
    assert value(text, 'ollama_model_size_bytes{model="llama3.1:8b"}') > 0
    assert value(text, 'ollama_model_size_bytes{model="llava:7b"}') > 0

    body = json.dumps(
        {"model": "llama3.1:8b", "prompt": "hi", "stream": False, "keep_alive": "10m"}
    )
    out = host.run(f"curl -fsS {OLLAMA}/api/generate -d {shlex.quote(body)}")
    assert out.rc == 0, out.stderr
    loaded = metrics(host)
    assert value(loaded, "ollama_models_loaded") == 1
    assert value(loaded, 'ollama_loaded_model_vram_ratio{model="llama3.1:8b"}') == 1
    expires = value(loaded, 'ollama_loaded_model_expires_timestamp_seconds{model="llama3.1:8b"}')
    assert 8 * 60 < expires - time.time() < 12 * 60  # keep_alive 10m (clocks are the same)


def test_gateway_requests_are_counted(host: Any) -> None:
    series = 'gateway_requests_total{route="healthz",status="200"}'
    before_text = metrics(host)
    before = value(before_text, series) if series in before_text else 0.0
    for _ in range(3):
        assert host.run("curl -fsS http://127.0.0.1:8080/healthz").rc == 0
    after = metrics(host)
    assert value(after, "gateway_access_log_readable") == 1
    assert value(after, series) == before + 3
    assert value(after, 'gateway_request_duration_seconds_count{route="healthz"}') >= 3


def test_webhook_secret_stays_out_of_units_and_logs(host: Any) -> None:
    secret = host.file("/etc/ai-local-core-monitoring/webhook.env")
    assert secret.mode == 0o640 and secret.user == "root" and secret.group == "root"
    assert HOOK_TOKEN in secret.content_string
    for path in (
        "/etc/systemd/system/ai-local-core-healthcheck.service",
        "/etc/ai-local-core-monitoring/monitoring.yaml",
    ):
        assert HOOK_TOKEN not in host.file(path).content_string, path


@pytest.fixture
def receiver(host: Any) -> Any:
    host.run("systemctl stop webhook-receiver.service 2>/dev/null; mkdir -p /srv/webhook-receiver")
    host.run(f"rm -f {POSTS}")
    script = "/srv/webhook-receiver/receiver.py"
    assert host.run(f"printf '%s' {shlex.quote(RECEIVER)} > {script}").rc == 0
    started = host.run(
        f"systemd-run --unit=webhook-receiver --collect python3 {script} {HOOK_PORT} {POSTS}"
    )
    assert started.rc == 0, started.stderr
    for _ in range(50):
        if host.run(f"curl -s -o /dev/null http://127.0.0.1:{HOOK_PORT}/").rc == 0:
            break
        time.sleep(0.1)
    yield
    host.run("systemctl stop webhook-receiver.service")


def test_healthcheck_posts_broken_then_recovered_once_each(host: Any, receiver: Any) -> None:
    host.run(f"rm -f {STATE}")
    try:
        run_healthcheck(host)  # a healthy baseline: nothing to post
        assert posts(host) == []

        assert host.run("systemctl stop ollama").rc == 0
        run_healthcheck(host)
        got = posts(host)
        assert [p["body"]["event"] for p in got] == ["broken"], got
        assert got[0]["path"] == f"/hook/{HOOK_TOKEN}"
        body = got[0]["body"]
        assert [b["name"] for b in body["broken"]] == ["ollama"]
        assert body["host"] == HOST
        assert "BROKEN" in body["text"]

        run_healthcheck(host)  # still broken: no second post
        assert len(posts(host)) == 1
    finally:
        assert host.run("systemctl start ollama").rc == 0
    for _ in range(60):
        if host.run(f"curl -fsS {OLLAMA}/api/version").rc == 0:
            break
        time.sleep(0.5)
    run_healthcheck(host)
    got = posts(host)
    assert [p["body"]["event"] for p in got] == ["broken", "recovered"], got
    assert got[1]["body"]["recovered"] == ["ollama"]
    run_healthcheck(host)
    assert len(posts(host)) == 2
    journal = host.run("journalctl -u ai-local-core-healthcheck --no-pager").stdout
    assert HOOK_TOKEN not in journal


def test_status_playbook_prints_the_table(host: Any) -> None:
    run = run_playbook(REPO / "playbooks" / "status.yml")
    assert run.returncode == 0, run.output[-4000:]
    assert all(r.changed == 0 and r.failed == 0 for r in run.recaps.values()), run.output[-4000:]
    out = run.output
    # The host's distribution as Ansible names it: Debian 12 here, Ubuntu 22.04/24.04 in the
    # workflow's Ubuntu matrix (ID and VERSION_ID of /etc/os-release).
    release = dict(
        line.split("=", 1)
        for line in host.file("/etc/os-release").content_string.splitlines()
        if "=" in line
    )
    distribution = (
        f"{release['ID'].strip(chr(34)).capitalize()} {release['VERSION_ID'].strip(chr(34))}"
    )
    for expected in (
        f"host        {HOST}",
        f"os          {distribution}",
        "driver      no GPU",
        f"ollama      {OLLAMA_VERSION}",
        "services    0.1.0",
        "ollama active (running)",
        "api active (running)",
        "nginx active (running)",
        "exporter active (running)",
        "node-exporter active (running)",
        "healthcheck-timer active (waiting)",
        "models      2 present",
        "llama3.1:8b, llava:7b",
        "gpu         no GPU",
        # The VRAM plan of the declared models (ollama_vram_budget_gb 12, the stand-in's sizes).
        "vram plan   estimate: 12.00 GiB (ollama_vram_budget_gb)",
        "llama3.1:8b 5.80 GiB, fits alone",
    ):
        assert expected in out, f"{expected!r} missing:\n{out[-4000:]}"
    assert re.search(r"loaded\s+(none|llama3\.1:8b \()", out), out[-4000:]
    # Check mode: still read-only and the same table.
    checked = run_playbook(REPO / "playbooks" / "status.yml", "--check")
    assert checked.returncode == 0 and f"ollama      {OLLAMA_VERSION}" in checked.output


def test_missing_package_stops_the_role_before_any_change(host: Any) -> None:
    # site.yml itself with the stand-in vars as -e (converge.yml's include_vars play has no tag).
    run = run_playbook(
        REPO / "playbooks" / "site.yml",
        "-e",
        f"@{STANDINS_FILE}",
        "--tags",
        "monitoring",
        "-e",
        "monitoring_venv=/opt/no-such-venv",
    )
    assert run.returncode != 0
    assert "Apply role ai_services" in run.output
    assert all(r.changed == 0 for r in run.recaps.values()), run.output[-3000:]
