"""What the vm-test suites share: the run's context, the node's URLs and a curl helper.

The context (node vars, stand-in vars and credentials) is the JSON file named by $VMTEST_CONTEXT,
written by tests/vm/vm_test.py.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

CONTEXT: dict[str, Any] = json.loads(Path(os.environ["VMTEST_CONTEXT"]).read_text())
SITE: bool = bool(CONTEXT["site"])
STANDINS: dict[str, Any] = CONTEXT["standins"]
NODE_VARS: dict[str, Any] = CONTEXT["node_vars"]

GATEWAY = "http://127.0.0.1:8080"
OLLAMA = "http://127.0.0.1:11434"
MODEL = str(NODE_VARS.get("ai_services_completion_model", "llama3.1:8b"))

site_only = pytest.mark.skipif(not SITE, reason="the converged playbook is not site.yml")


def api_key() -> str:
    keys = STANDINS.get("gateway_api_keys") or []
    assert keys, "the stand-in vars hold no gateway API key"
    return str(keys[0]["key"])


def http(
    host: Any, url: str, *, token: str | None = None, data: str | None = None, retries: int = 0
) -> tuple[int, Any]:
    """(status, JSON body or text) of one request made on the node; the key stays off argv.

    The bearer header goes through a root-only file (curl -H @file), so the key never shows up
    in the node's process list.
    """
    cmd = ["curl", "-sS", "-m", "60", "-o", "/run/vm-test-body", "-w", "%{http_code}"]
    if retries:
        cmd += ["--retry", str(retries), "--retry-all-errors", "--retry-delay", "2"]
    prefix = ""
    if token is not None:
        header = f"Authorization: Bearer {token}"
        prefix = f"umask 077; printf '%s\\n' {shlex.quote(header)} > /run/vm-test-hdr && "
        cmd += ["-H", "@/run/vm-test-hdr"]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", data]
    cmd.append(url)
    out = host.run(prefix + shlex.join(cmd) + "; rc=$?; rm -f /run/vm-test-hdr; exit $rc")
    assert out.rc == 0, f"curl {url}: {out.stderr}"
    body = host.run("cat /run/vm-test-body; rm -f /run/vm-test-body").stdout
    try:
        return int(out.stdout), json.loads(body)
    except ValueError:
        return int(out.stdout), body
