"""Run ansible-playbook on this machine against the repository's roles (the tests in
tests/ansible): the project's ansible.cfg, roles/ on the roles path, no colour, an in-memory fact
cache, and the venv's commands first on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

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


def run_role_tasks(
    tmp_path: Path,
    role: str,
    tasks_from: str,
    variables: dict[str, Any],
    *,
    check: bool = False,
    smi_dir: Path | None = None,
) -> tuple[int, str]:
    """``import_role: tasks_from:`` of a role on localhost (local connection, no facts) with
    ``variables`` as extra vars: (exit status, output). Only ``smi_dir`` (a fake ``nvidia-smi``)
    and the venv come before /usr/bin:/bin on the PATH, so whether a GPU is seen never depends
    on this machine."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: Role {role}, {tasks_from}
              hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - name: Run {tasks_from}
                  ansible.builtin.import_role:
                    name: {role}
                    tasks_from: {tasks_from}
            """
        )
    )
    varfile = tmp_path / "vars.yml"
    varfile.write_text(yaml.safe_dump(variables))
    res = run_ansible_playbook(
        *["-i", "localhost,", *(["--check"] if check else []), "-e", f"@{varfile}", str(playbook)],
        cwd=tmp_path,
        timeout=180,
        PATH=os.pathsep.join([*([str(smi_dir)] if smi_dir else []), str(BIN), "/usr/bin", "/bin"]),
    )
    return res.returncode, res.stdout + res.stderr
