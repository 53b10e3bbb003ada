"""Role ``nvidia_driver``'s reboot decision and diagnosis: module
``ai_local_core.node.nvidia_driver_state`` (collections/.../plugins/modules/nvidia_driver_state.py)
and the filters of plugins/filter/nvidia.py.

The pure functions (``decide``, ``classify``, the parsers, ``nvidia_kernel_flavour``) are tested
directly; ``nvidia_driver_state`` runs for real against the stand-ins of tests/fakes/
nvidia_driver_standin (nvidia-smi, mokutil, modinfo, dpkg-query, journalctl on PATH, a fake
sysfs), and ``play`` replays what tasks/reboot.yml and tasks/verify.yml do with its answer (write
the package state, reboot, read again), so "at most one reboot per run, none on the next run for
the same packages" is checked over several runs. Its run through ansible-playbook is in
tests/ansible/test_nvidia_driver_state_play.py.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.fakes.nvidia_driver_standin import (
    DPKG_570,
    SMI_MISMATCH,
    SMI_NO_DRIVER,
    Scenario,
    install,
)

PLUGINS = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/ai_local_core/node/plugins"
)
REJECTED_LOG = (
    "[    4.120000] nvidia: loading out-of-tree module taints kernel.\n"
    "[    4.120100] Lockdown: modprobe: unsigned module loading is restricted; "
    "see man kernel_lockdown.7\n"
    "[    4.120200] nvidia: Key was rejected by service\n"
)


def load(relpath: str) -> ModuleType:
    name = "ai_local_core_node_" + relpath.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, PLUGINS / relpath)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mod() -> ModuleType:
    return load("modules/nvidia_driver_state.py")


@pytest.fixture(scope="module")
def flt() -> ModuleType:
    return load("filter/nvidia.py")


# --- decide: the whole table --------------------------------------------------------------------
BASE = {
    "smi_ok": True,
    "packages_changed": False,
    "recorded_state_matches": False,
    "rebooted": False,
    "reboot_allowed": True,
    "in_container": False,
    "local_connection": False,
}
DECISIONS = [
    ({}, "ok"),
    ({"packages_changed": True}, "reboot"),
    ({"packages_changed": True, "recorded_state_matches": True}, "reboot"),
    ({"packages_changed": True, "reboot_allowed": False}, "pending"),
    ({"packages_changed": True, "local_connection": True}, "pending"),
    ({"smi_ok": False}, "reboot"),
    ({"smi_ok": False, "reboot_allowed": False}, "pending"),
    ({"smi_ok": False, "local_connection": True}, "pending"),
    ({"smi_ok": False, "recorded_state_matches": True}, "fail"),
    ({"smi_ok": False, "recorded_state_matches": True, "reboot_allowed": False}, "fail"),
    ({"smi_ok": False, "recorded_state_matches": True, "local_connection": True}, "fail"),
    ({"smi_ok": False, "rebooted": True}, "fail"),
    ({"smi_ok": False, "rebooted": True, "packages_changed": True}, "fail"),
    ({"rebooted": True}, "ok"),
    ({"in_container": True, "smi_ok": False, "packages_changed": True}, "skip"),
]


@pytest.mark.parametrize(("change", "action"), DECISIONS)
def test_decide(mod: ModuleType, change: dict[str, bool], action: str) -> None:
    got, reason = mod.decide(**{**BASE, **change})
    assert got == action, (change, reason)
    assert reason


# --- classify ------------------------------------------------------------------------------------
def evidence(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "smi_rc": 9,
        "smi_output": SMI_NO_DRIVER,
        "kernel_log": [],
        "secure_boot": "disabled",
        "module_file": "/lib/modules/x/nvidia.ko",
        "nvidia_gpus": 1,
        "pci_drivers": [],
        "loaded_modules": [],
    }
    return {**base, **kw}


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"smi_rc": 0}, "ok"),
        ({"kernel_log": REJECTED_LOG.splitlines(), "secure_boot": "enabled"}, "signature_rejected"),
        (
            {"kernel_log": ["nvidia: Loading of unsigned module is rejected"]},
            "signature_rejected",
        ),
        # Only a taint with Secure Boot off; a rejection with it on.
        (
            {
                "kernel_log": [
                    "nvidia: module verification failed: signature and/or required key "
                    "missing - tainting kernel"
                ]
            },
            "unknown",
        ),
        (
            {
                "kernel_log": [
                    "nvidia: module verification failed: signature and/or required key "
                    "missing - tainting kernel"
                ],
                "secure_boot": "enabled",
            },
            "signature_rejected",
        ),
        ({"module_file": ""}, "no_module"),
        ({"module_file": None}, "unknown"),  # no modinfo: no evidence either way
        ({"pci_drivers": ["nouveau"]}, "nouveau_bound"),
        ({"loaded_modules": ["nouveau"]}, "nouveau_bound"),
        ({"nvidia_gpus": 0, "module_file": ""}, "no_device"),
        ({"smi_output": SMI_MISMATCH}, "version_mismatch"),
        (
            {"kernel_log": ["NVRM: API mismatch: the client has the version 570.172"]},
            "version_mismatch",
        ),
        ({"smi_rc": 127, "smi_output": "nvidia-smi: not found"}, "no_nvidia_smi"),
        ({}, "unknown"),
    ],
)
def test_classify(mod: ModuleType, kw: dict[str, Any], code: str) -> None:
    diagnosis = mod.classify(evidence(**kw))
    assert diagnosis["code"] == code, diagnosis
    assert diagnosis["title"]


def test_classify_lists_every_finding_strongest_first(mod: ModuleType) -> None:
    diagnosis = mod.classify(
        evidence(
            kernel_log=REJECTED_LOG.splitlines(),
            secure_boot="enabled",
            module_file="",
            loaded_modules=["nouveau"],
        )
    )
    assert diagnosis["findings"] == ["signature_rejected", "no_module", "nouveau_bound"]
    assert "mokutil --import /var/lib/dkms/mok.pub" in diagnosis["hint"]


def test_parsers(mod: ModuleType, flt: ModuleType) -> None:
    for parse in (mod.secure_boot_state, flt.nvidia_secure_boot):
        assert parse("SecureBoot enabled\n") == "enabled"
        assert parse("SecureBoot disabled\n") == "disabled"
        assert parse("EFI variables are not supported on this system") == "unknown"
        assert parse("sh: 1: mokutil: not found") == "unknown"
    assert flt.nvidia_secure_boot(None) == "unknown"
    regex = "^(nvidia-|libnvidia-|linux-modules-nvidia-)"
    lines = [*DPKG_570.splitlines(), "rc  nvidia-dkms-550-server 550.1"]
    assert mod.package_state(lines, regex) == (
        "libnvidia-compute-570-server 570.133.20-0ubuntu0.22.04.1\n"
        "linux-modules-nvidia-570-server-generic 5.15.0-119.129\n"
        "nvidia-headless-no-dkms-570-server 570.133.20-0ubuntu0.22.04.1"
    )


# --- nvidia_kernel_flavour -----------------------------------------------------------------------
GA_AND_HWE = [
    "ii  linux-image-generic linux-image-5.15.0-119-generic, linux-firmware",
    "ii  linux-image-generic-hwe-22.04 linux-image-6.8.0-45-generic, linux-firmware",
    "ii  linux-image-5.15.0-119-generic ",
    "ii  linux-image-unsigned-6.8.0-45-generic ",
]


@pytest.mark.parametrize(
    ("lines", "kernel", "major", "flavour"),
    [
        # From the installed metapackage that depends on the running kernel (ubuntu-drivers' way).
        (GA_AND_HWE, "5.15.0-119-generic", "22", "generic"),
        (GA_AND_HWE, "6.8.0-45-generic", "22", "generic-hwe-22.04"),
        # 24.04 before its first HWE kernel: both depend on it; the HWE one is what boots next.
        (
            [
                "ii  linux-image-generic linux-image-6.8.0-45-generic",
                "ii  linux-image-generic-hwe-24.04 linux-image-6.8.0-45-generic",
            ],
            "6.8.0-45-generic",
            "24",
            "generic-hwe-24.04",
        ),
        # The metapackage already moved on to a newer kernel (not rebooted yet): same flavour.
        (
            ["ii  linux-image-generic linux-image-6.8.0-50-generic"],
            "6.8.0-45-generic",
            "24",
            "generic",
        ),
        # Removed metapackages do not count.
        (
            ["rc  linux-image-lowlatency linux-image-6.8.0-45-lowlatency"],
            "6.8.0-45-generic",
            "24",
            "generic",
        ),
        # Without the list (the render entry point): from the kernel series.
        ([], "5.15.0-119-generic", "22", "generic"),
        ([], "6.8.0-45-generic", "22", "generic-hwe-22.04"),
        ([], "6.8.0-45-generic", "24", "generic"),
        ([], "6.11.0-29-generic", "24", "generic-hwe-24.04"),
        ([], "6.8.0-45-lowlatency", "22", "lowlatency-hwe-22.04"),
        ([], "6.8.0-1010-nvidia-64k", "24", "nvidia-64k"),
        ([], "6.1.0-28-amd64", "12", "amd64"),  # not used outside Ubuntu
        (None, "", "24", ""),
    ],
)
def test_kernel_flavour(
    flt: ModuleType, lines: list[str] | None, kernel: str, major: str, flavour: str
) -> None:
    assert flt.nvidia_kernel_flavour(lines, kernel, major) == flavour


# --- the module against stand-ins, run after run ------------------------------------------------
@dataclass
class Host:
    scenario_dir: Path
    state_file: Path
    reboots: int = 0


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    bin_dir = install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NVIDIA_STANDIN_DIR", str(tmp_path / "scenario"))
    yield Host(tmp_path / "scenario", tmp_path / "state" / "reboot-state")


def read(mod: ModuleType, host: Host, **params: Any) -> dict[str, Any]:
    base = {
        "packages_changed": False,
        "rebooted": False,
        "reboot_allowed": True,
        "local_connection": False,
        "in_container": False,
        "state_file": str(host.state_file),
        "package_regex": "^(nvidia-|libnvidia-|linux-modules-nvidia-)",
        "kernel_release": "6.8.0-45-generic",
        "sys_root": str(host.scenario_dir / "sys"),
    }
    result: dict[str, Any] = mod.nvidia_driver_state({**base, **params})
    return result


def play(
    mod: ModuleType,
    host: Host,
    before: Scenario,
    after: Scenario | None = None,
    **params: Any,
) -> dict[str, Any]:
    """One run of tasks/reboot.yml + verify.yml: read, maybe record the state and reboot (the
    host then answers as ``after``), read again; the result verify.yml acts on."""
    before.write(host.scenario_dir)
    first = read(mod, host, **params)
    if first["decision"] != "reboot":
        return first
    host.state_file.parent.mkdir(parents=True, exist_ok=True)
    host.state_file.write_text(first["package_state"] + "\n")
    host.reboots += 1
    (after or before).write(host.scenario_dir)
    return read(mod, host, rebooted=True)


def test_secure_boot_rejects_the_module_one_reboot_then_a_diagnosis(
    mod: ModuleType, host: Host
) -> None:
    rejected = Scenario(
        smi_out=SMI_NO_DRIVER,
        smi_rc=9,
        secure_boot="SecureBoot enabled",
        kernel_log=REJECTED_LOG,
    )
    # Run 1 installs the DKMS driver: one reboot, and the module is still refused.
    final = play(mod, host, rejected, packages_changed=True)
    assert host.reboots == 1
    assert (final["decision"], final["diagnosis"]["code"]) == ("fail", "signature_rejected")
    assert final["secure_boot"] == "enabled"
    assert "Key was rejected by service" in "\n".join(final["evidence"]["kernel_log"])
    # Run 2, nothing changed: the host was rebooted for these packages; no second reboot.
    again = play(mod, host, rejected)
    assert host.reboots == 1
    assert again["recorded_state_matches"] is True
    assert (again["decision"], again["diagnosis"]["code"]) == ("fail", "signature_rejected")


def test_packages_changed_reboot_exactly_once_then_ok(mod: ModuleType, host: Host) -> None:
    not_loaded = Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9)
    final = play(mod, host, not_loaded, Scenario(), packages_changed=True)
    assert (host.reboots, final["decision"]) == (1, "ok")
    assert final["smi"]["stdout_lines"][0].startswith("0, NVIDIA GeForce RTX 3060, 570.")
    # The next runs: nothing to do.
    for _ in range(2):
        assert play(mod, host, Scenario())["decision"] == "ok"
    assert host.reboots == 1


def test_failing_smi_with_the_recorded_state_fails_without_reboot(
    mod: ModuleType, host: Host
) -> None:
    no_module = Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9, module_file="")
    no_module.write(host.scenario_dir)
    host.state_file.parent.mkdir(parents=True)
    host.state_file.write_text(read(mod, host)["package_state"] + "\n")
    final = play(mod, host, no_module)
    assert host.reboots == 0
    assert (final["decision"], final["diagnosis"]["code"]) == ("fail", "no_module")
    # Other packages than at that reboot (an upgrade outside the role): one more try is allowed.
    upgraded = Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9, dpkg=DPKG_570.replace("133.20", "172.08"))
    assert play(mod, host, upgraded, Scenario())["decision"] == "ok"
    assert host.reboots == 1


def test_failing_smi_not_yet_rebooted_for_these_packages_reboots_once(
    mod: ModuleType, host: Host
) -> None:
    not_loaded = Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9)
    final = play(mod, host, not_loaded)
    assert host.reboots == 1
    assert (final["decision"], final["diagnosis"]["code"]) == ("fail", "unknown")
    play(mod, host, not_loaded)
    assert host.reboots == 1


def test_nouveau_bound(mod: ModuleType, host: Host) -> None:
    nouveau = Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9, gpu_driver="nouveau", modules=["nouveau"])
    final = play(mod, host, nouveau, packages_changed=True)
    assert host.reboots == 1
    assert (final["decision"], final["diagnosis"]["code"]) == ("fail", "nouveau_bound")
    assert final["evidence"]["pci_drivers"] == ["nouveau"]


def test_no_nvidia_device(mod: ModuleType, host: Host) -> None:
    gone = Scenario(smi_out="No devices were found\n", smi_rc=6, gpu=False)
    final = play(mod, host, gone, packages_changed=True)
    assert (final["decision"], final["diagnosis"]["code"]) == ("fail", "no_device")
    assert final["evidence"]["nvidia_gpus"] == 0


def test_mismatch_after_an_upgrade_reboots(mod: ModuleType, host: Host) -> None:
    mismatch = Scenario(smi_out=SMI_MISMATCH, smi_rc=18)
    mismatch.write(host.scenario_dir)
    # Before the reboot the module names the mismatch...
    assert read(mod, host, packages_changed=True)["diagnosis"]["code"] == "version_mismatch"
    # ...and the run reboots once into the new module.
    final = play(mod, host, mismatch, Scenario(), packages_changed=True)
    assert (host.reboots, final["decision"]) == (1, "ok")


@pytest.mark.parametrize(
    ("params", "action"),
    [
        ({"local_connection": True}, "pending"),
        ({"reboot_allowed": False}, "pending"),  # nvidia_driver_reboot false, or check mode
        ({"in_container": True}, "skip"),
    ],
)
def test_never_rebooted_here(
    mod: ModuleType, host: Host, params: dict[str, Any], action: str
) -> None:
    final = play(
        mod, host, Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9), packages_changed=True, **params
    )
    assert (final["decision"], host.reboots) == (action, 0)
    assert not host.state_file.exists()


def test_without_mokutil_secure_boot_is_unknown(mod: ModuleType, host: Host) -> None:
    Scenario(secure_boot="").write(host.scenario_dir)
    result = read(mod, host)
    assert (result["decision"], result["secure_boot"]) == ("ok", "unknown")
