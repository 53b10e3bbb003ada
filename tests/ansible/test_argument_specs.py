"""A wrong variable stops the play before any change, with a message that names it.

Every role has ``meta/argument_specs.yml``; its bad-input table lives in
``tests/ansible/argspec_cases/<role>.yml``. Each case applies one role to localhost in check mode,
with fact gathering off and a tag that selects only the tasks tagged ``always`` (the argument
check is one), so even a broken spec could not touch this machine.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.local_play import REPO, run_ansible_playbook
from tests.molecule_support import parse_recap

CASES_DIR = Path(__file__).parent / "argspec_cases"
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())


def load_cases() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CASES_DIR.glob("*.yml"))}


CASES = load_cases()
BAD = [
    pytest.param(role, case["vars"], case["expect"], id=f"{role}-{'-'.join(case['vars'])}")
    for role, data in CASES.items()
    for case in data.get("bad", [])
]
# Formats a type cannot express (versions, checksums, durations): the spec passes them and the
# role's own validation task, run right after it and before any change, stops the play.
BAD_AFTER_SPEC = [
    pytest.param(role, case["vars"], case["expect"], id=f"{role}-{'-'.join(case['vars'])}")
    for role, data in CASES.items()
    for case in data.get("bad_after_spec", [])
]
UNKNOWN = [(role, name) for role, data in CASES.items() for name in data.get("unknown", [])]


def run_role(
    tmp_path: Path, role: str, variables: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
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
    varfile.write_text(yaml.safe_dump(variables))
    return run_ansible_playbook(
        *["-i", "localhost,", "--check", "--tags", "argument-spec-probe"],
        *["-e", f"@{varfile}", str(playbook)],
        cwd=tmp_path,
        timeout=120,
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_argument_specs_and_cases(role: str) -> None:
    assert (REPO / "roles" / role / "meta" / "argument_specs.yml").is_file()
    assert (REPO / "roles" / role / "defaults" / "main.yml").is_file()
    assert CASES.get(role, {}).get("bad"), f"add bad-input cases in {CASES_DIR}/{role}.yml"


def assert_stopped(res: subprocess.CompletedProcess[str], fragments: list[str]) -> str:
    """The play failed in the argument checks, naming the problem, with nothing changed."""
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} missing from:\n{out[-3000:]}"
    recap = parse_recap(out)["localhost"]
    assert (recap.failed, recap.changed) == (1, 0), out[-3000:]
    assert "Validating arguments against arg spec" in out
    return out


@pytest.mark.parametrize(("role", "variables", "fragments"), BAD)
def test_bad_variable_stops_before_any_task(
    tmp_path: Path, role: str, variables: dict[str, Any], fragments: list[str]
) -> None:
    out = assert_stopped(run_role(tmp_path, role, variables), fragments)
    # The argument check is the only task that ran: nothing ok.
    assert parse_recap(out)["localhost"].ok == 0, out[-3000:]
    assert out.count("TASK [") == 1, out


@pytest.mark.parametrize(("role", "variables", "fragments"), BAD_AFTER_SPEC)
def test_bad_format_stops_before_any_change(
    tmp_path: Path, role: str, variables: dict[str, Any], fragments: list[str]
) -> None:
    assert_stopped(run_role(tmp_path, role, variables), fragments)


@pytest.mark.parametrize(("role", "name"), UNKNOWN)
def test_misspelled_variable_stops_the_play(tmp_path: Path, role: str, name: str) -> None:
    res = run_role(tmp_path, role, {name: True})
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert f"unknown variable(s) for role {role}: {name}" in out, out[-3000:]
    recap = parse_recap(out)["localhost"]
    assert recap.failed == 1 and recap.changed == 0


@pytest.mark.parametrize("role", ROLES)
def test_default_variables_pass_the_spec(tmp_path: Path, role: str) -> None:
    # Control case: the same probe with valid input passes, so the failures above come from
    # the bad values and not from the probe itself.
    res = run_role(tmp_path, role, {})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Validating arguments against arg spec" in out
    recap = parse_recap(out)["localhost"]
    assert recap.failed == 0 and recap.ok >= 1
