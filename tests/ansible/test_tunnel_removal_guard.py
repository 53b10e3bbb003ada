"""The tunnel roles never remove the tunnel the play's own connection runs over.

The refusal is the first task of each role's absent path (tasks/absent.yml) and runs on the
controller (an assert): these plays target an inventory host reached over SSH, through the
tailnet or through cloudflared's SSH proxy, and no connection is ever opened. The pure address
rules are in tests/unit/test_collection_node.py; the tunnels scenario proves the cloudflared
refusal on a converged host."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ansible.local_play import run_ansible_playbook

PLAY = """
- name: Remove {role} from a node reached over a tunnel
  hosts: node
  gather_facts: false
  tasks:
    - name: The absent path
      ansible.builtin.include_role:
        name: {role}
        tasks_from: absent.yml
"""

CASES = [
    # (role, host vars, expected message, or None: the guard lets the removal go on)
    ("tailscale", "ansible_host=100.101.102.103", "through\nthe tailnet (100.101.102.103)"),
    ("tailscale", "ansible_host=llm-node.tail1234.ts.net", "through\nthe tailnet"),
    ("tailscale", "ansible_host=[fd7a:115c:a1e0::42]", "through\nthe tailnet"),
    (
        "cloudflared",
        "ansible_host=ssh.example.com "
        "ansible_ssh_common_args='-o ProxyCommand=\"cloudflared access ssh --hostname %h\"'",
        "through\ncloudflared's SSH proxy",
    ),
    # Over the tailnet, removing cloudflared is fine, and the other way round.
    ("cloudflared", "ansible_host=100.101.102.103", None),
    (
        "tailscale",
        "ansible_host=192.0.2.10 ansible_ssh_common_args='-o ProxyCommand=\"cloudflared access\"'",
        None,
    ),
]


@pytest.mark.parametrize(("role", "hostvars", "refusal"), CASES)
def test_the_play_keeps_its_own_tunnel(
    tmp_path: Path, role: str, hostvars: str, refusal: str | None
) -> None:
    (tmp_path / "hosts.ini").write_text(
        f"node ansible_connection=ssh ansible_user=nobody ansible_ssh_timeout=1 "
        f"ansible_ssh_retries=0 {hostvars}\n"
    )
    (tmp_path / "play.yml").write_text(PLAY.format(role=role))
    run = run_ansible_playbook(
        "-i", "hosts.ini", "play.yml", cwd=tmp_path, timeout=120, ANSIBLE_HOST_KEY_CHECKING="0"
    )
    out = run.stdout + run.stderr
    name = {"tailscale": "Tailscale", "cloudflared": "cloudflared"}[role]
    assert run.returncode != 0, out
    if refusal is None:
        # The guard passed; the next task needs the host, which is not there: unreachable.
        assert "Not removing" not in out, out
        assert "UNREACHABLE" in out, out
    else:
        assert f"Not removing {name} from node" in out, out
        assert " ".join(refusal.split()) in " ".join(out.split()), out
        assert "UNREACHABLE" not in out, out
