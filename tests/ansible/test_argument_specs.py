"""A wrong variable stops the play before any change, with a message that names it.

Each case applies one role with one bad variable to localhost, in check mode, with fact
gathering off and a tag that selects only the tasks tagged ``always`` (the argument check is one),
so even a broken spec could not touch this machine. The role's
meta/argument_specs.yml must reject the value in the very first task.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.molecule_support import parse_recap

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# (role, variables as YAML, fragments the error must contain)
CASES: list[tuple[str, str, list[str]]] = [
    (
        "base",
        "base_unattended_upgrades_enabled: not-a-boolean",
        ["base_unattended_upgrades_enabled", "bool"],
    ),
    ("base", "base_apt_cache_valid_time: soon", ["base_apt_cache_valid_time", "int"]),
    ("base", "base_packages: {curl: true}", ["base_packages", "list"]),
    ("base", "base_journald_persistent: [true]", ["base_journald_persistent", "bool"]),
]

# (role, a misspelled variable): caught by the role's first task after the argument check.
UNKNOWN: list[tuple[str, str]] = [
    ("base", "base_jounrald_persistent"),
]


def run_role(tmp_path: Path, role: str, variables: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: Argument spec probe
              hosts: localhost
              connection: local
              gather_facts: false
              roles:
                - role: {role}
            """
        )
    )
    varfile = tmp_path / "vars.yml"
    varfile.write_text(variables + "\n")
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CACHE_PLUGIN="memory",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "--check",
            "--tags",
            "argument-spec-probe",
            "-e",
            f"@{varfile}",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("role", "variables", "fragments"), CASES)
def test_bad_variable_stops_before_any_task(
    tmp_path: Path, role: str, variables: str, fragments: list[str]
) -> None:
    res = run_role(tmp_path, role, variables)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} missing from:\n{out[-3000:]}"
    # The argument check is the only task that ran: nothing ok, nothing changed.
    recap = parse_recap(out)["localhost"]
    assert recap.failed == 1
    assert recap.ok == 0
    assert recap.changed == 0
    assert "Validating arguments against arg spec" in out
    assert out.count("TASK [") == 1, out


@pytest.mark.parametrize(("role", "name"), UNKNOWN)
def test_misspelled_variable_stops_the_play(tmp_path: Path, role: str, name: str) -> None:
    res = run_role(tmp_path, role, f"{name}: true")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert f"unknown variable(s) for role {role}: {name}" in out, out[-3000:]
    recap = parse_recap(out)["localhost"]
    assert recap.failed == 1 and recap.changed == 0


@pytest.mark.parametrize("role", ["base"])
def test_default_variables_pass_the_spec(tmp_path: Path, role: str) -> None:
    # Control case: the same probe with valid input passes, so the failures above come from
    # the bad values and not from the probe itself.
    res = run_role(tmp_path, role, "{}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Validating arguments against arg spec" in out
    recap = parse_recap(out)["localhost"]
    assert recap.failed == 0 and recap.ok >= 1
