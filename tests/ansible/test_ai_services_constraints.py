"""Role ``ai_services``' pins: the pinned set (files/node-constraints.txt) merged with
``ai_services_constraints``, as vars/main.yml computes ``__ai_services_constraints_effective``.

Each case evaluates the role's defaults and vars on localhost (``role_path`` given, as the role
has it) and writes the merged list to a file under tmp_path; nothing else on this machine changes.
That the set itself resolves is ``make resolve-check``'s job (requirements/check_resolve.py).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.local_play import REPO, run_ansible_playbook

ROLE = REPO / "roles" / "ai_services"
PINNED = ROLE / "files" / "node-constraints.txt"


def normalised(line: str) -> str:
    name = re.match(r"\s*([A-Za-z0-9._-]+)", line)
    assert name, line
    return re.sub(r"[-_.]+", "-", name.group(1)).lower()


def pinned_lines() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in PINNED.read_text().splitlines())
    return [line for line in lines if line]


def effective(tmp_path: Path, variables: dict[str, Any]) -> list[str]:
    result: list[str] = evaluated(tmp_path, "__ai_services_constraints_effective", variables)
    return result


def test_the_pinned_set_is_one_pin_per_package() -> None:
    lines = pinned_lines()
    assert lines, f"{PINNED} holds no pins"
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][^\s;]*", line) for line in lines), lines
    names = [normalised(line) for line in lines]
    assert len(names) == len(set(names))
    for package in ("torch", "transformers", "pillow", "pydantic", "typing-extensions"):
        assert package in names, package
    assert PINNED.read_text().startswith("# "), "the set's header says how it is made"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        pytest.param({}, pinned_lines(), id="default-the-pinned-set"),
        pytest.param(
            {"ai_services_pinned_set": False, "ai_services_constraints": ["torch==2.5.1"]},
            ["torch==2.5.1"],
            id="pinned-set-off",
        ),
        pytest.param({"ai_services_pinned_set": False}, [], id="pinned-set-off-no-constraints"),
    ],
)
def test_effective_constraints(
    tmp_path: Path, variables: dict[str, Any], expected: list[str]
) -> None:
    assert effective(tmp_path, variables) == expected


def test_a_constraint_replaces_the_pin_of_its_package_and_adds_the_others(
    tmp_path: Path,
) -> None:
    # Spellings pip treats as the same project: case, "-", "_" and "." alike.
    overrides = ["TORCH==2.5.1", "Typing.Extensions>=4.12,<5", "sentry-sdk==2.19.0"]
    result = effective(tmp_path, {"ai_services_constraints": overrides})
    replaced = {"torch", "typing-extensions"}
    kept = [line for line in pinned_lines() if normalised(line) not in replaced]
    assert result == kept + overrides
    names = [normalised(line) for line in result]
    assert len(names) == len(set(names)), "pip refuses two pins of one package"


def evaluated(tmp_path: Path, expression: str, variables: dict[str, Any]) -> Any:
    """A template expression over the role's defaults and vars, evaluated on localhost."""
    out = tmp_path / "value.json"
    playbook = tmp_path / "expr.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: One value of role ai_services
              hosts: localhost
              connection: local
              gather_facts: false
              vars_files:
                - {ROLE}/defaults/main.yml
                - {ROLE}/vars/main.yml
              tasks:
                - name: Write it
                  ansible.builtin.copy:
                    content: "{{{{ {expression} | to_json }}}}"
                    dest: {out}
                    mode: "0600"
            """
        )
    )
    varfile = tmp_path / "expr-vars.yml"
    local = {"role_path": str(ROLE), "ansible_python_interpreter": sys.executable}
    varfile.write_text(yaml.safe_dump({**local, **variables}))
    res = run_ansible_playbook(
        *["-i", "localhost,", "-e", f"@{varfile}", str(playbook)], cwd=tmp_path, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(out.read_text())


def test_index_credentials_go_to_pips_environment_not_its_arguments(tmp_path: Path) -> None:
    index = "https://deploy:s3cr3t-token@pypi.example.internal/simple"
    torch = "https://mirror-user:an0ther-secret@torch.example.internal/whl/cu124"
    variables = {
        "ai_services_install_source": "index",
        "ai_services_index_url": index,
        "ai_services_vision": True,
        "ai_services_torch_index_url": torch,
        "__ai_services_host_deps": "/unused",
    }
    args = evaluated(tmp_path, "__ai_services_pip_args", variables)
    env = evaluated(tmp_path, "__ai_services_pip_index_env", variables)
    assert "s3cr3t" not in json.dumps(args) and "an0ther" not in json.dumps(args), args
    assert env == {"PIP_INDEX_URL": index, "PIP_EXTRA_INDEX_URL": torch}
    # The wheelhouse script's command line (tasks/build.yml) takes no index option at all.
    build = (ROLE / "tasks" / "build.yml").read_text()
    assert "--index-url" not in build and "--extra-index-url" not in build
