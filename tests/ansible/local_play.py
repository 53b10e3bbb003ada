"""Run ansible-playbook on this machine against the repository's roles (the tests in
tests/ansible): the project's ansible.cfg, roles/ on the roles path, no colour, an in-memory fact
cache, and the venv's commands first on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_ansible_playbook(
    *args: str, cwd: Path, timeout: float, **env: str
) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook ARGS`` in ``cwd``; ``env`` overrides (or adds to) the settings above."""
    run_env = dict(os.environ)
    run_env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CACHE_PLUGIN="memory",
        PATH=f"{BIN}{os.pathsep}{run_env.get('PATH', '')}",
    )
    run_env.update(env)
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
