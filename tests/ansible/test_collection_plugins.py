"""Collection ``ai_local_core.node`` through ansible-playbook on this machine (controller side).

* ``validate_vars`` stops the play on a misspelled variable wherever it is set (inventory
  group_vars and host_vars, extra vars, play vars, set_fact, role defaults), like
  ``query('ansible.builtin.varnames')`` sees them, and passes documented ones, in check mode.
  (A misspelled role parameter is already refused by the argument spec validation.)
* ``systemd_verify_command``: the ``validate:`` string run by Ansible's copy module and by ``sh``
  against good and broken units and drop-ins (needs ``systemd-analyze``; no running systemd).
* ``apt_packages`` in check mode with a package that is installed (nothing is installed and the
  cache is not refreshed: check mode).

Results are read from the json stdout callback.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.local_play import REPO, run_ansible_playbook

FILTER = REPO / "collections/ansible_collections/ai_local_core/node/plugins/filter/node.py"
JSON_ENV = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
TYPO = "firewall_ssh_limits"  # firewall_ssh_limit is the documented one
TYPO_MSG = (
    f"unknown variable(s) for role firewall: {TYPO} "
    "(the documented ones are in roles/firewall/defaults/main.yml)"
)


def play(
    tmp_path: Path, playbook: str, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``playbook`` (YAML text) on localhost; the process and the json callback's report."""
    path = tmp_path / "play.yml"
    path.write_text(textwrap.dedent(playbook))
    if not (tmp_path / "inventory").exists():
        args = ("-i", "localhost,", *args)
    res = run_ansible_playbook(*args, str(path), cwd=tmp_path, timeout=120, **JSON_ENV, **env)
    # Other callbacks (profile_tasks) may print around the report, which starts a line of its own.
    start = res.stdout.find("{\n") if res.stdout.startswith("{") else res.stdout.find("\n{\n")
    try:
        report: dict[str, Any] = json.JSONDecoder().raw_decode(res.stdout[start:].lstrip())[0]
    except ValueError:
        pytest.fail(f"no json report:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res, report


def results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task name (without the ``role : `` in front) -> localhost's result."""
    return {
        task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["localhost"]
        for p in report["plays"]
        for task in p["tasks"]
        if "localhost" in task["hosts"]
    }


def stats(report: dict[str, Any]) -> dict[str, int]:
    got: dict[str, int] = report["stats"]["localhost"]
    return got


ROLE_PLAY = """\
    - name: Unknown variable probe
      hosts: localhost
      connection: local
      gather_facts: false
      {play_vars}
      pre_tasks:
        - name: Set a fact
          ansible.builtin.set_fact: {facts}
          tags: [always]
      roles:
        - role: firewall
          {role_params}
    """


def role_play(play_vars: str = "", facts: str = "{__probe: 1}", role_params: str = "") -> str:
    return ROLE_PLAY.format(play_vars=play_vars, facts=facts, role_params=role_params)


def write_inventory(tmp_path: Path, group_vars: dict[str, Any], host_vars: dict[str, Any]) -> None:
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "hosts.yml").write_text(
        yaml.safe_dump({"nodes": {"hosts": {"localhost": {"ansible_connection": "local"}}}})
    )
    (inv / "group_vars/nodes.yml").write_text(yaml.safe_dump(group_vars))
    (inv / "host_vars/localhost.yml").write_text(yaml.safe_dump(host_vars))


PROBE = ("--check", "--tags", "argument-spec-probe")


def assert_typo_stopped(res: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
    assert res.returncode != 0, res.stdout[-3000:]
    got = results(report)["Check the firewall_ variables"]
    assert got["failed"] is True and got["changed"] is False, got
    assert got["msg"] == TYPO_MSG
    assert got["unknown_vars"] == [TYPO]
    assert stats(report)["failures"] == 1 and stats(report)["changed"] == 0


@pytest.mark.parametrize("where", ["group_vars", "host_vars"])
def test_misspelled_inventory_variable_stops_the_play(tmp_path: Path, where: str) -> None:
    write_inventory(
        tmp_path,
        {TYPO: True} if where == "group_vars" else {},
        {TYPO: True} if where == "host_vars" else {},
    )
    res, report = play(tmp_path, role_play(), "-i", "inventory/hosts.yml", *PROBE)
    assert_typo_stopped(res, report)


def test_misspelled_extra_var_stops_the_play(tmp_path: Path) -> None:
    res, report = play(tmp_path, role_play(), *PROBE, "-e", f"{TYPO}=true")
    assert_typo_stopped(res, report)


def test_misspelled_play_var_stops_the_play(tmp_path: Path) -> None:
    res, report = play(tmp_path, role_play(play_vars=f"vars: {{{TYPO}: true}}"), *PROBE)
    assert_typo_stopped(res, report)


def test_misspelled_fact_stops_the_play(tmp_path: Path) -> None:
    res, report = play(tmp_path, role_play(facts=f"{{{TYPO}: true}}"), *PROBE)
    assert_typo_stopped(res, report)


def test_documented_variables_pass_from_everywhere(tmp_path: Path) -> None:
    write_inventory(tmp_path, {"firewall_ssh_limit": True}, {"firewall_ssh_port": 22})
    res, report = play(
        tmp_path,
        role_play(
            play_vars="vars: {firewall_logging: low}",
            facts="{firewall_purge_unmanaged: false}",
            role_params="firewall_default_incoming: deny",
        ),
        *["-i", "inventory/hosts.yml", *PROBE, "-e", '{"firewall_ssh_allowed_sources": []}'],
    )
    assert res.returncode == 0, res.stdout[-3000:]
    got = results(report)["Check the firewall_ variables"]
    assert got["changed"] is False and not got.get("failed"), got
    assert stats(report)["failures"] == 0


def test_published_facts_are_allowed_and_typos_of_them_are_not(tmp_path: Path) -> None:
    # Role nvidia_driver publishes nvidia_driver_gpu_present and others (the `allow` option).
    nvidia_play = """\
        - name: Published facts probe
          hosts: localhost
          connection: local
          gather_facts: false
          pre_tasks:
            - name: Set a fact
              ansible.builtin.set_fact: {facts}
              tags: [always]
          roles:
            - role: nvidia_driver
        """
    res, report = play(
        tmp_path, nvidia_play.format(facts="{nvidia_driver_gpu_present: false}"), *PROBE
    )
    assert res.returncode == 0, res.stdout[-3000:]
    res, report = play(
        tmp_path, nvidia_play.format(facts="{nvidia_driver_gpu_presnt: false}"), *PROBE
    )
    assert res.returncode != 0
    got = results(report)["Check the nvidia_driver_ variables"]
    assert got["msg"].startswith(
        "unknown variable(s) for role nvidia_driver: nvidia_driver_gpu_presnt (the documented"
    )


def make_role(roles: Path, defaults: dict[str, Any], task_args: str) -> None:
    role = roles / "demo"
    for sub in ("defaults", "meta", "tasks"):
        (role / sub).mkdir(parents=True)
    (role / "defaults/main.yml").write_text(yaml.safe_dump(defaults))
    spec = {"argument_specs": {"main": {"options": {"demo_port": {"type": "int"}}}}}
    (role / "meta/argument_specs.yml").write_text(yaml.safe_dump(spec))
    (role / "tasks/main.yml").write_text(
        f"- name: Reject unknown demo_ variables\n  ai_local_core.node.validate_vars:{task_args}\n"
    )


@pytest.mark.parametrize("task_args", [" {}", "\n    prefix: demo_"])
def test_role_defaults_count_and_the_prefix_defaults_to_the_role(
    tmp_path: Path, task_args: str
) -> None:
    make_role(tmp_path / "roles", {"demo_port": 1, "demo_undocumented": 2}, task_args)
    demo_play = """\
        - name: Role defaults probe
          hosts: localhost
          connection: local
          gather_facts: false
          roles: [demo]
        """
    # Not in check mode: the action changes nothing either way.
    res, report = play(tmp_path, demo_play, ANSIBLE_ROLES_PATH=str(tmp_path / "roles"))
    assert res.returncode != 0
    got = results(report)["Reject unknown demo_ variables"]
    assert got["msg"] == (
        "unknown variable(s) for role demo: demo_undocumented "
        "(the documented ones are in roles/demo/defaults/main.yml)"
    )


def test_outside_a_role_the_spec_file_is_an_option(tmp_path: Path) -> None:
    spec = {"argument_specs": {"main": {"options": {"demo_port": {"type": "int"}}}}}
    (tmp_path / "spec.yml").write_text(yaml.safe_dump(spec))
    playbook = """\
        - name: Explicit spec probe
          hosts: localhost
          connection: local
          gather_facts: false
          vars: {demo_port: 1}
          tasks:
            - name: Documented only
              ai_local_core.node.validate_vars:
                prefix: demo_
                argument_specs: "{{ playbook_dir }}/spec.yml"
            - name: With a misspelled one
              ai_local_core.node.validate_vars:
                prefix: demo_
                argument_specs: "{{ playbook_dir }}/spec.yml"
              vars: {demo_prot: 2}
        """
    res, report = play(tmp_path, playbook, "--check")
    assert res.returncode != 0
    got = results(report)
    assert got["Documented only"]["changed"] is False and not got["Documented only"].get("failed")
    assert got["With a misspelled one"]["msg"].startswith(
        "unknown variable(s) for role demo: demo_prot"
    )


# --- systemd_verify_command ---------------------------------------------------------------------
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)

GOOD_UNIT = "[Unit]\nDescription=probe\n\n[Service]\nExecStart=/bin/true\n"
UNKNOWN_KEY = GOOD_UNIT + "FooBar=1\n"  # only a warning to systemd: rc 0
MISSING_BINARY = "[Unit]\nDescription=probe\n\n[Service]\nExecStart=/nonexistent/probe\n"
GOOD_DROPIN = "[Service]\nEnvironment=PROBE=1\n"
BAD_DROPIN = "[Service]\nBogusKey=1\n"


def live_unit() -> str:
    """A unit installed on this machine that verifies cleanly, for the drop-in cases."""
    for unit in ("systemd-tmpfiles-clean.service", "systemd-journald.service", "apt-daily.service"):
        res = subprocess.run(
            ["systemd-analyze", "verify", unit], capture_output=True, text=True, check=False
        )
        if res.returncode == 0 and not (res.stdout + res.stderr).strip():
            return unit
    pytest.skip("no installed unit verifies cleanly here (needed under a drop-in)")


def verify_command(unit: str, dropin: str | None = None) -> str:
    # The filter itself; Ansible's rendering of it is covered by the copy-module test below.
    import importlib.util

    spec = importlib.util.spec_from_file_location("ai_local_core_node_filter_node", FILTER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    command: str = module.systemd_verify_command(unit, dropin=dropin)
    return command


def run_validate(command: str, candidate: Path) -> subprocess.CompletedProcess[str]:
    """As the copy module runs it: ``validate % path``, split like a shell, no shell around."""
    return subprocess.run(
        shlex.split(command % candidate), capture_output=True, text=True, check=False
    )


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("content", "ok", "complaint"),
    [
        (GOOD_UNIT, True, None),
        (UNKNOWN_KEY, False, "Unknown key"),
        (MISSING_BINARY, False, "/nonexistent/probe"),
    ],
    ids=["good", "unknown-key", "missing-binary"],
)
def test_unit_validation_with_sh(
    tmp_path: Path, content: str, ok: bool, complaint: str | None
) -> None:
    candidate = tmp_path / "candidate"
    candidate.write_text(content)
    res = run_validate(verify_command("ai-local-core-probe.service"), candidate)
    assert (res.returncode == 0) is ok, res.stdout + res.stderr
    if complaint:
        assert complaint in res.stdout
    assert not list(Path(tmp_path).glob("tmp.*"))


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("content", "ok"), [(GOOD_DROPIN, True), (BAD_DROPIN, False)], ids=["good", "unknown-key"]
)
def test_dropin_validation_with_sh(tmp_path: Path, content: str, ok: bool) -> None:
    candidate = tmp_path / "candidate"
    candidate.write_text(content)
    res = run_validate(verify_command(live_unit(), dropin="50-probe.conf"), candidate)
    assert (res.returncode == 0) is ok, res.stdout + res.stderr
    if not ok:
        assert "50-probe.conf" in res.stdout and "BogusKey" in res.stdout


@needs_systemd_analyze
def test_dropin_of_a_missing_unit_fails(tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    candidate.write_text(GOOD_DROPIN)
    res = run_validate(verify_command("ai-local-core-absent.service", "50-x.conf"), candidate)
    assert res.returncode != 0


@needs_systemd_analyze
def test_the_filter_validates_through_ansibles_copy_module(tmp_path: Path) -> None:
    # Writes only under tmp_path, for real (validate does not run in check mode).
    playbook = f"""\
        - name: systemd_verify_command probe
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Good unit
              ansible.builtin.copy:
                content: {json.dumps(GOOD_UNIT)}
                dest: "{{{{ playbook_dir }}}}/good.service"
                mode: "0644"
                validate: "{{{{ 'good.service' | ai_local_core.node.systemd_verify_command }}}}"
            - name: Good drop-in
              ansible.builtin.copy:
                content: {json.dumps(GOOD_DROPIN)}
                dest: "{{{{ playbook_dir }}}}/50-probe.conf"
                mode: "0644"
                validate: >-
                  {{{{ '{live_unit()}' | ai_local_core.node.systemd_verify_command(
                       dropin='50-probe.conf') }}}}
            - name: Broken unit
              ansible.builtin.copy:
                content: {json.dumps(UNKNOWN_KEY)}
                dest: "{{{{ playbook_dir }}}}/bad.service"
                mode: "0644"
                validate: "{{{{ 'bad.service' | ai_local_core.node.systemd_verify_command }}}}"
        """
    # The interpreter running these tests (discovery may find a broken one on this machine).
    res, report = play(tmp_path, playbook, "-e", f"ansible_python_interpreter={sys.executable}")
    got = results(report)
    assert got["Good unit"]["changed"] is True, got["Good unit"]
    assert got["Good drop-in"]["changed"] is True, got["Good drop-in"]
    broken = got["Broken unit"]
    assert broken["failed"] is True and broken["msg"] == "failed to validate", broken
    assert "Unknown key 'FooBar'" in broken["stdout"]
    assert (tmp_path / "good.service").read_text() == GOOD_UNIT
    assert not (tmp_path / "bad.service").exists()
    assert res.returncode != 0


# --- apt_packages -------------------------------------------------------------------------------
APT_LISTS = Path("/var/lib/apt/lists")
PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(
    shutil.which("apt-get") is None or not Path(PYTHON).exists(),
    reason=f"not a Debian-family machine (no apt-get or no {PYTHON})",
)
def test_apt_packages_in_check_mode(tmp_path: Path) -> None:
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "coreutils"], capture_output=True, text=True
    )
    if "install ok installed" not in installed.stdout:
        pytest.skip("coreutils is not installed as a package here")
    hello = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "hello"], capture_output=True)
    if hello.returncode == 0 or not any(APT_LISTS.glob("*_Packages*")):
        pytest.skip("needs package indexes and the package `hello` not installed")
    playbook = """\
        - name: apt_packages probe
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Installed package
              ai_local_core.node.apt_packages:
                name: [coreutils]
                state: present
                update_cache: true
                cache_valid_time: 0
            - name: Missing package
              ai_local_core.node.apt_packages:
                name: [coreutils, hello]
                state: present
                update_cache: true
                cache_valid_time: 315360000
        """
    # The system's Python, which has python3-apt (interpreter discovery may find another one).
    res, report = play(
        tmp_path, playbook, "--check", "--diff", "-e", f"ansible_python_interpreter={PYTHON}"
    )
    got = results(report)
    if "python3-apt must be installed" in str(got["Missing package"].get("msg")):
        pytest.skip("python3-apt is not installed here (check mode cannot install it)")
    assert res.returncode == 0, got
    # Everything installed: dpkg says so and apt is not run, not even for the refresh that
    # cache_valid_time 0 would ask for.
    first = got["Installed package"]
    assert first["changed"] is False and first["cache_updated"] is False, first
    assert first["msg"] == "already installed: coreutils", first
    # One package missing: apt runs (in check mode it reports the install and installs nothing).
    second = got["Missing package"]
    assert second["changed"] is True and not second.get("failed"), second
    assert "hello" in str(second.get("diff", second.get("stdout", ""))), second
    assert subprocess.run(["dpkg-query", "-W", "hello"], capture_output=True).returncode != 0
