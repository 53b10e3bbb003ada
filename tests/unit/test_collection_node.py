"""The shared pieces of collection ``ai_local_core.node`` (collections/.../node/plugins): the
filters ``is_container``, ``systemd_verify_command`` and ``connection_tunnel``, and the pure
parts of the action plugins ``validate_vars`` and ``apt_packages`` (the latter with a stand-in
for the host's modules).
Their runs through ansible-playbook are in tests/ansible/test_collection_plugins.py."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

PLUGINS = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/ai_local_core/node/plugins"
)


def load(relpath: str) -> ModuleType:
    name = "ai_local_core_node_" + relpath.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, PLUGINS / relpath)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The action plugins import ansible, which replaces sys.intern for the whole process; torch's
    # dynamo (the vision tests) fails on import after that. The pure parts tested here do not need
    # the patch: put the original back.
    intern = sys.intern
    try:
        spec.loader.exec_module(module)
    finally:
        sys.intern = intern
    return module


@pytest.fixture(scope="module")
def node() -> ModuleType:
    return load("filter/node.py")


# --- is_container -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "virt_type", ["container", "podman", "docker", "lxc", "systemd-nspawn", "containerd"]
)
def test_container_guests_are_containers(node: ModuleType, virt_type: str) -> None:
    facts = {"virtualization_role": "guest", "virtualization_type": virt_type}
    assert node.is_container(facts) is True


@pytest.mark.parametrize(
    "facts",
    [
        {},  # facts not gathered (or no virtual subset)
        {"virtualization_role": "host", "virtualization_type": "kvm"},
        {"virtualization_role": "guest", "virtualization_type": "kvm"},  # a VM: real kernel
        {"virtualization_role": "host", "virtualization_type": "docker"},  # a Docker host
        {"virtualization_role": "NA", "virtualization_type": "NA"},
    ],
)
def test_hosts_and_vms_are_not_containers(node: ModuleType, facts: dict[str, Any]) -> None:
    assert node.is_container(facts) is False


def test_filters_are_registered(node: ModuleType) -> None:
    filters = node.FilterModule().filters()
    assert filters["is_container"] is node.is_container
    assert filters["systemd_verify_command"] is node.systemd_verify_command
    assert filters["connection_tunnel"] is node.connection_tunnel


# --- connection_tunnel ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "ssh_args", "tunnel"),
    [
        ("100.101.102.103", "", "tailscale"),  # a tailnet IPv4 (100.64.0.0/10)
        ("100.127.255.254", "", "tailscale"),
        ("[fd7a:115c:a1e0::1234]", "", "tailscale"),  # Tailscale's IPv6 range
        ("llm-node.tail1234.ts.net", "", "tailscale"),  # a MagicDNS name, not resolved here
        ("llm-node.tail1234.ts.net.", "", "tailscale"),
        ("100.128.0.1", "", ""),  # just past the range
        ("100.63.255.255", "", ""),
        ("192.168.1.20", "", ""),
        ("127.0.0.1", "", ""),
        ("fd7a:115c:a1e1::1", "", ""),
        ("192.168.1.20", "-o ProxyCommand='cloudflared access ssh --hostname %h'", "cloudflared"),
        (
            "ssh.example.com",
            '-o ProxyCommand="/usr/local/bin/cloudflared access ssh"',
            "cloudflared",
        ),
    ],
)
def test_connection_tunnel(node: ModuleType, address: str, ssh_args: str, tunnel: str) -> None:
    assert node.connection_tunnel(address, ssh_args) == tunnel


def test_connection_tunnel_follows_names(node: ModuleType) -> None:
    """A name counts by what it resolves to (MagicDNS on the controller) or its ssh HostName."""

    def resolve(name: str, port: Any) -> list[tuple[Any, ...]]:
        table = {"llm-node": "100.100.7.8", "lan-node": "192.168.1.20"}
        if name not in table:
            raise OSError("unknown host")
        return [(None, None, None, "", (table[name], 0))]

    ssh_g = mock.Mock(stdout="user root\nhostname 100.90.1.2\nport 22\n")
    with mock.patch.object(node.socket, "getaddrinfo", resolve):
        with mock.patch.object(node.subprocess, "run", return_value=mock.Mock(stdout="")):
            assert node.connection_tunnel("llm-node") == "tailscale"
            assert node.connection_tunnel("lan-node") == ""
            assert node.connection_tunnel("nowhere") == ""
        with mock.patch.object(node.subprocess, "run", return_value=ssh_g):
            # An ssh_config alias whose HostName is a tailnet address.
            assert node.connection_tunnel("nowhere") == "tailscale"


# --- systemd_verify_command --------------------------------------------------------------------
def split(command: str, path: str = "/tmp/.ansible_tmp_candidate") -> list[str]:
    """What Ansible's copy/template module runs: ``validate % path``, split like a shell."""
    return shlex.split(command % path)


def test_unit_command_verifies_the_candidate_under_its_unit_name(node: ModuleType) -> None:
    command = node.systemd_verify_command("ai-local-core-api.service")
    argv = split(command)
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["verify-unit", "ai-local-core-api.service", "/tmp/.ansible_tmp_candidate"]
    script = argv[2]
    assert 'SYSTEMD_UNIT_PATH="$d:" systemd-analyze verify "$d/$u"' in script
    # A complaint that names the unit fails it, not only a non-zero exit.
    assert '[ $rc -eq 0 ] && ! echo "$out" | grep -qF "$u"' in script
    # No FILE:UNIT form (systemd 250 and later only).
    assert "%s:" not in command


def test_dropin_command_puts_the_candidate_in_the_units_dropin_dir(node: ModuleType) -> None:
    command = node.systemd_verify_command("ollama.service", dropin="50-ai-local-core.conf")
    argv = split(command)
    assert argv[3:] == [
        "verify-dropin",
        "ollama.service",
        "50-ai-local-core.conf",
        "/tmp/.ansible_tmp_candidate",
    ]
    script = argv[2]
    assert 'mkdir "$d/$u.d" && cp "$3" "$d/$u.d/$n"' in script
    assert 'SYSTEMD_UNIT_PATH="$d:" systemd-analyze verify "$u"' in script
    assert '! echo "$out" | grep -qF "$n"' in script


def test_the_command_has_one_percent_s_and_no_other_percent_sign(node: ModuleType) -> None:
    # Ansible formats `validate` with Python's % operator.
    for command in (
        node.systemd_verify_command("x.timer"),
        node.systemd_verify_command("x.service", dropin="10-y.conf"),
    ):
        assert command.count("%") == 1 and command.endswith(" %s")


@pytest.mark.parametrize(
    ("unit", "dropin"),
    [
        ("ollama", None),  # no unit type suffix
        ("../ollama.service", None),
        ("a b.service", None),
        ("x'.service", None),
        ("x%d.service", None),
        ("ollama.service", "override"),  # systemd reads *.conf only
        ("ollama.service", "../50-x.conf"),
        ("ollama.service", "5$(id).conf"),
    ],
)
def test_unsafe_or_invalid_names_are_refused(
    node: ModuleType, unit: str, dropin: str | None
) -> None:
    with pytest.raises(ValueError, match="not a"):
        node.systemd_verify_command(unit, dropin=dropin)


def test_escaped_and_template_instance_names_are_accepted(node: ModuleType) -> None:
    argv = split(node.systemd_verify_command("getty@tty1.service"))
    assert argv[4] == "getty@tty1.service"
    argv = split(node.systemd_verify_command("dev-disk-by\\x2dlabel-data.mount"))
    assert argv[4] == "dev-disk-by\\x2dlabel-data.mount"


# --- validate_vars ----------------------------------------------------------------------
def test_unknown_vars_keeps_the_prefixed_undocumented_names_sorted() -> None:
    ruv = load("action/validate_vars.py")
    names = ["gateway_tls", "gateway_zz_typo", "gateway_a_typo", "other_x", "gateway_gpus", "x"]
    got = ruv.unknown_vars(names, "gateway_", {"gateway_tls"}, {"gateway_gpus"})
    assert got == ["gateway_a_typo", "gateway_zz_typo"]
    assert ruv.unknown_vars(["gateway_tls"], "gateway_", {"gateway_tls"}, set()) == []


def test_failing_checks_are_reported_in_order_and_ok_must_be_a_boolean() -> None:
    ruv = load("action/validate_vars.py")
    checks = [
        {"ok": True, "msg": "fine"},
        {"ok": False, "msg": "first problem."},
        {"ok": "false", "msg": " second problem "},
        {"ok": "True", "msg": "also fine"},
    ]
    assert ruv.failing_checks(checks) == ["first problem", "second problem"]
    with pytest.raises(ruv.AnsibleActionFail, match=r"check 1 .* not a boolean"):
        ruv.failing_checks([{"ok": "maybe", "msg": "x"}])


# --- apt_packages -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def apt() -> ModuleType:
    return load("action/apt_packages.py")


TASK_ARGS = {"name": ["ufw"], "state": "present", "update_cache": True, "cache_valid_time": 3600}


def test_apt_args_are_passed_on_when_there_are_indexes(apt: ModuleType) -> None:
    assert apt.apt_args(TASK_ARGS, True) == TASK_ARGS


def test_apt_args_force_a_refresh_without_indexes(apt: ModuleType) -> None:
    got = apt.apt_args(TASK_ARGS, False)
    assert got == {**TASK_ARGS, "update_cache": True, "cache_valid_time": 0}
    # Also when the task asked for no refresh at all.
    assert apt.apt_args({"name": "zstd"}, False)["update_cache"] is True


def test_wanted_packages_only_for_an_install(apt: ModuleType) -> None:
    assert apt.wanted_packages(TASK_ARGS) == {"ufw": None}
    assert apt.wanted_packages({"name": "ufw, nginx"}) == {"ufw": None, "nginx": None}
    assert apt.wanted_packages({"name": "cloudflared=2025.11.1"}) == {"cloudflared": "2025.11.1"}
    assert apt.wanted_packages({"name": "nginx=1.22*"}) is None
    assert apt.wanted_packages({"name": "ufw", "state": "latest"}) is None
    assert apt.wanted_packages({"deb": "/var/cache/x.deb"}) == {}
    assert apt.wanted_packages({"deb": "https://example.invalid/x.deb"}) is None
    assert apt.wanted_packages({"name": "ufw", "upgrade": "dist"}) is None
    assert apt.wanted_packages({"name": []}) is None


def test_satisfied_needs_every_package_at_its_version(apt: ModuleType) -> None:
    out = "a 1.0 install ok installed\nb 2:3.4-1 hold ok installed\nc 1 deinstall ok config-files\n"
    assert apt.satisfied({"a": None, "b": "2:3.4-1"}, out)
    assert not apt.satisfied({"a": "1.1"}, out)
    assert not apt.satisfied({"a": None, "c": None}, out)
    assert not apt.satisfied({"a": None, "zz": None}, out)
    assert not apt.satisfied({}, out)


def test_deb_fields(apt: ModuleType) -> None:
    assert apt.deb_fields("Package: cloudflared\nVersion: 2025.11.1\n") == {
        "cloudflared": "2025.11.1"
    }
    assert apt.deb_fields("dpkg-deb: error: not a Debian format archive\n") is None


def run_apt_action(
    apt: ModuleType,
    task_args: dict[str, Any],
    find_result: dict[str, Any],
    dpkg: tuple[int, str] = (1, ""),
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Run the action with a stand-in for ``_execute_module``; the modules it asked for."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def execute_module(
        module_name: str, module_args: dict[str, Any], task_vars: Any, **_: Any
    ) -> dict[str, Any]:
        calls.append((module_name, module_args))
        if module_name == "ansible.builtin.find":
            return find_result
        return {"changed": False, "cache_updated": module_args.get("cache_valid_time") == 0}

    task = mock.MagicMock()
    task.args = dict(task_args)
    task.async_val = 0
    task.check_mode = True
    action = apt.ActionModule(
        task, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None, mock.MagicMock()
    )
    dpkg_result = {"rc": dpkg[0], "stdout": dpkg[1], "stderr": ""}

    def low_level(cmd: str, **_: Any) -> dict[str, Any]:
        calls.append(("raw", {"cmd": cmd}))
        return dpkg_result

    with (
        mock.patch.object(action, "_execute_module", side_effect=execute_module),
        mock.patch.object(action, "_low_level_execute_command", side_effect=low_level),
    ):
        result: dict[str, Any] = action.run(task_vars={})
    return result, calls


def test_action_runs_find_then_apt_with_the_task_arguments(apt: ModuleType) -> None:
    result, calls = run_apt_action(apt, TASK_ARGS, {"matched": 3, "files": []})
    assert [name for name, _ in calls] == ["raw", "ansible.builtin.find", "ansible.builtin.apt"]
    assert calls[0][1] == {"cmd": "dpkg-query -W -f '${Package} ${Version} ${Status}\\n' -- ufw"}
    assert calls[1][1] == {"paths": ["/var/lib/apt/lists"], "patterns": ["*_Packages*"]}
    assert calls[2][1] == TASK_ARGS
    assert result == {"changed": False, "cache_updated": False}


def test_action_forces_the_refresh_on_an_empty_lists_directory(apt: ModuleType) -> None:
    result, calls = run_apt_action(apt, TASK_ARGS, {"matched": 0, "files": []})
    assert calls[2] == ("ansible.builtin.apt", {**TASK_ARGS, "cache_valid_time": 0})
    assert result["cache_updated"] is True


def test_action_runs_no_module_when_dpkg_has_everything(apt: ModuleType) -> None:
    result, calls = run_apt_action(apt, TASK_ARGS, {}, dpkg=(0, "ufw 0.36 install ok installed\n"))
    assert [name for name, _ in calls] == ["raw"]
    assert result == {"changed": False, "cache_updated": False, "msg": "already installed: ufw"}


def test_action_stops_when_the_lookup_fails(apt: ModuleType) -> None:
    with pytest.raises(apt.AnsibleActionFail, match="cannot look for package indexes"):
        run_apt_action(apt, TASK_ARGS, {"failed": True, "msg": "permission denied"})


# --- free_space -------------------------------------------------------------------------------
def test_free_space_measures_the_nearest_existing_directory(tmp_path: Path) -> None:
    fs = load("modules/free_space.py")
    missing = tmp_path / "not" / "yet" / "there"
    ok = fs.check(str(missing), 0, "some_min_gb")
    assert ok["measured"] == str(tmp_path) and not ok.get("failed")
    assert ok["msg"].startswith(f"{tmp_path} (on the way to {missing}): ")
    assert fs.check(str(tmp_path), 0, "x")["msg"].startswith(f"{tmp_path}: ")


def test_free_space_fails_below_the_minimum_naming_the_setting(tmp_path: Path) -> None:
    fs = load("modules/free_space.py")
    got = fs.check(str(tmp_path), 1000000, "site_min_free_gb", "Not pulling x", "Free space.")
    assert got["failed"] is True
    assert got["msg"].startswith(f"Not pulling x: {tmp_path} has ")
    assert got["msg"].endswith("GiB free; site_min_free_gb asks for 1000000 GiB. Free space.")
    assert not fs.check(str(tmp_path), 0.0, "x").get("failed")
