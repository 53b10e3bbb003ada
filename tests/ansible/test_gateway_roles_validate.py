"""Role ``gateway``'s checks of client roles and model allowlists stop the play before any change.

Each case applies the role to localhost in check mode with ``--tags gateway_validate`` (the
unknown-variable check and tasks/validate.yml only), with a test module that sets the
distribution facts first, so the njs availability check is exercised for Ubuntu 22.04 without an
Ubuntu host. Nothing on this machine is touched.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.local_play import run_ansible_playbook
from tests.molecule_support import parse_recap

KEY = "validate-NOT-A-SECRET-0123456789abcdef0123"
FAKE_FACTS = textwrap.dedent(
    """\
    #!/usr/bin/python
    # WANT_JSON
    import json, sys
    args = json.load(open(sys.argv[1]))
    print(json.dumps({"changed": False, "ansible_facts": args}))
    """
)


def run(
    tmp_path: Path, keys: list[dict[str, Any]], distribution: tuple[str, str]
) -> tuple[int, str]:
    name, version = distribution
    (tmp_path / "library").mkdir(exist_ok=True)
    (tmp_path / "library" / "fake_facts.py").write_text(FAKE_FACTS)
    facts = {
        "distribution": name,
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0],
    }
    (tmp_path / "play.yml").write_text(
        textwrap.dedent(
            f"""\
            - name: Gateway validation probe
              hosts: localhost
              connection: local
              gather_facts: false
              pre_tasks:
                - name: Pretend a distribution
                  fake_facts: {json.dumps(facts)}
                  tags: [gateway_validate]
              roles:
                - role: gateway
            """
        )
    )
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({"gateway_api_keys": keys}))
    res = run_ansible_playbook(
        *["-i", "localhost,", "--check", "--tags", "gateway_validate"],
        *["-e", "@vars.yml", "-e", f"ansible_python_interpreter={sys.executable}", "play.yml"],
        cwd=tmp_path,
        timeout=180,
    )
    out = res.stdout + res.stderr
    if res.returncode != 0:
        recap = parse_recap(out)["localhost"]
        assert (recap.failed, recap.changed) == (1, 0), out[-3000:]
    assert KEY not in out
    return res.returncode, out


def key(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "key": f"{name}-{KEY}", **extra}


@pytest.mark.parametrize(
    "distribution", [("Debian", "12.8"), ("Debian", "13.1"), ("Ubuntu", "24.04")], ids=str
)
def test_roles_and_allowlists_pass(tmp_path: Path, distribution: tuple[str, str]) -> None:
    keys = [key("ops", role="admin"), key("app", models=["llama3.1:8b", "Tiny", "library/x:1"])]
    code, out = run(tmp_path, keys, distribution)
    assert code == 0, out[-3000:]


def test_allowlists_refused_on_ubuntu_22_04(tmp_path: Path) -> None:
    code, out = run(tmp_path, [key("app", models=["tiny"])], ("Ubuntu", "22.04"))
    assert code != 0
    assert "model allowlists (models: on key:app) need nginx's njs module" in out, out[-3000:]
    assert "Ubuntu 24.04" in out and "Ubuntu 22.04" in out


def test_roles_without_allowlists_pass_on_ubuntu_22_04(tmp_path: Path) -> None:
    code, out = run(tmp_path, [key("ops", role="admin"), key("app")], ("Ubuntu", "22.04"))
    assert code == 0, out[-3000:]


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ([key("app", models=["Bad Name!"])], "API key app: Bad Name! is not a model name"),
        ([key("app", models=["a/b/c/d"])], "API key app: a/b/c/d is not a model name"),
        (
            [key("Ops", role="admin"), key("ops")],
            "API key Ops: another API key has the same name but for case",
        ),
    ],
    ids=["bad-name", "too-deep", "case-collision"],
)
def test_bad_roles_or_models_are_refused(
    tmp_path: Path, keys: list[dict[str, Any]], fragment: str
) -> None:
    code, out = run(tmp_path, keys, ("Debian", "12.8"))
    assert code != 0
    assert fragment in out, out[-3000:]
