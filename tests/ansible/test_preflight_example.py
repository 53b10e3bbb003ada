"""A copy of ``inventories/production.example`` with its example vault (public password, placeholder
secrets) stops in the preflight's first check, naming the settings that still hold a placeholder
and never their values, before anything runs on the host. The copy's host is this machine over a
local connection: the preflight only reads (facts, then the checks)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.ansible.local_play import REPO, run_ansible_playbook
from tests.molecule_support import parse_recap

EXAMPLE = REPO / "inventories" / "production.example"
#: The example vault's public password (inventories/production.example/vault-password.example).
EXAMPLE_VAULT_PASSWORD = "ai-local-core-example-vault"


def test_a_copy_of_the_production_example_stops_at_its_placeholders(tmp_path: Path) -> None:
    inventory = tmp_path / "production"
    shutil.copytree(EXAMPLE, inventory)
    res = run_ansible_playbook(
        *["-i", str(inventory / "hosts.yml")],
        *["--vault-password-file", str(inventory / "vault-password.example")],
        "-e",
        json.dumps({"ansible_connection": "local", "ansible_python_interpreter": sys.executable}),
        str(REPO / "playbooks" / "preflight.yml"),
        cwd=tmp_path,
        timeout=180,
        AI_LOCAL_CORE_VAULT_PASSWORD=EXAMPLE_VAULT_PASSWORD,
    )
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode != 0, out[-3000:]
    assert "TASK [Check the site settings]" in out and "Check the free disk space" not in out, out
    for setting in (
        "the API key of waldus",
        "the API key of laptop",
        "the password of admin",
        "cloudflared_token",
    ):
        assert setting in out, out[-3000:]
    assert "still hold the example inventory's placeholder value" in out, out[-3000:]
    assert "example-NOT-A-SECRET" not in out and "eyJhIjoiMDAw" not in out, out
    recap = parse_recap(res.stdout)["llm-node"]
    assert (recap.failed, recap.changed) == (1, 0), res.stdout[-3000:]
