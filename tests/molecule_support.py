"""Helpers shared by the testinfra suites of every Molecule scenario.

The verifier runs with the repository root on PYTHONPATH (see .config/molecule/config.yml), so a
scenario's tests import this module as ``tests.molecule_support``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Recap:
    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    recaps: dict[str, Recap]


def parse_recap(output: str) -> dict[str, Recap]:
    """Parse the PLAY RECAP lines of ansible-playbook output."""
    recaps: dict[str, Recap] = {}
    for m in RECAP.finditer(output):
        recaps[m["host"]] = Recap(
            host=m["host"],
            ok=int(m["ok"]),
            changed=int(m["changed"]),
            unreachable=int(m["unreachable"]),
            failed=int(m["failed"]),
        )
    return recaps


def changed_tasks(output: str) -> list[str]:
    """The tasks (and handlers) that reported changed in ansible-playbook's default output."""
    names: list[str] = []
    current = ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: [") and current and current not in names:
            names.append(current)
    return names


def run_playbook(
    playbook: str | Path, *extra_args: str, env: dict[str, str] | None = None
) -> PlaybookRun:
    """Run a playbook against the scenario's inventory, with Molecule's Ansible environment."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    cmd = ["ansible-playbook", "-i", inventory, str(playbook), *extra_args]
    run_env = dict(os.environ)
    run_env["ANSIBLE_FORCE_COLOR"] = "false"
    run_env["ANSIBLE_NOCOLOR"] = "true"
    if env:
        run_env.update(env)
    res = subprocess.run(cmd, capture_output=True, text=True, env=run_env, check=False)
    output = res.stdout + res.stderr
    return PlaybookRun(res.returncode, output, parse_recap(output))


def scenario_playbook(name: str = "converge.yml") -> Path:
    return Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / name


def assert_check_mode_clean(playbook: str | Path | None = None) -> PlaybookRun:
    """Run the converge playbook in check mode on the converged hosts: no failure, 0 changed."""
    run = run_playbook(playbook or scenario_playbook(), "--check", "--diff")
    tail = run.output[-6000:]
    assert run.returncode == 0, f"check mode failed:\n{tail}"
    assert run.recaps, f"no PLAY RECAP in check-mode output:\n{tail}"
    for recap in run.recaps.values():
        assert recap.failed == 0 and recap.unreachable == 0, f"{recap}\n{tail}"
        assert recap.changed == 0, (
            f"check mode on a converged host reports changes: {recap}\n{tail}"
        )
    return run


def mitogen_env() -> dict[str, str] | None:
    """Ansible settings for mitogen's strategy (as `make ... MITOGEN=1`), None without mitogen."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or spec.origin is None:
        return None
    strategies = Path(spec.origin).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY": "mitogen_linear", "ANSIBLE_STRATEGY_PLUGINS": str(strategies)}
