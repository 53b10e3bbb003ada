"""Module ``ai_local_core.node.nvidia_driver_state`` through ansible-playbook on this machine, the
way role nvidia_driver (tasks/reboot.yml) calls it, with the stand-ins of
tests/fakes/nvidia_driver_standin first on PATH and a fake sysfs (the module's test knob
``sys_root``): its argument spec, check mode, and the answers the role acts on. The decision table
and the run-after-run behaviour are in tests/unit/test_nvidia_driver_state.py.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.local_play import run_ansible_playbook
from tests.fakes.nvidia_driver_standin import SMI_NO_DRIVER, Scenario, install

REJECTED_LOG = "[    4.1] Lockdown: modprobe: unsigned module loading is restricted\n"

SCENARIOS: dict[str, tuple[Scenario, dict[str, Any]]] = {
    # Secure Boot on, the DKMS module refused, already rebooted for these packages: stop.
    "rejected": (
        Scenario(
            smi_out=SMI_NO_DRIVER,
            smi_rc=9,
            secure_boot="SecureBoot enabled",
            kernel_log=REJECTED_LOG,
        ),
        {"recorded": True},
    ),
    # This run installed the driver: reboot.
    "installed": (Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9), {"packages_changed": True}),
    # Same, over a local connection: never.
    "local": (
        Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9),
        {"packages_changed": True, "local_connection": True},
    ),
    "nouveau": (
        Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9, gpu_driver="nouveau", modules=["nouveau"]),
        {"recorded": True},
    ),
    "loaded": (Scenario(), {}),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("nvidia-state")
    bin_dir = install(root / "bin")
    tasks = []
    for name, (scenario, params) in SCENARIOS.items():
        scenario_dir = scenario.write(root / name)
        state_file = root / name / "reboot-state"
        if params.pop("recorded", False):
            # The state the module reads from dpkg-query's stand-in, as the role wrote it.
            state_file.write_text(
                "libnvidia-compute-570-server 570.133.20-0ubuntu0.22.04.1\n"
                "linux-modules-nvidia-570-server-generic 5.15.0-119.129\n"
                "nvidia-headless-no-dkms-570-server 570.133.20-0ubuntu0.22.04.1\n"
            )
        tasks.append(
            {
                "name": name,
                "ai_local_core.node.nvidia_driver_state": {
                    **params,
                    "state_file": str(state_file),
                    "sys_root": str(scenario_dir / "sys"),
                    "kernel_release": "6.8.0-45-generic",
                },
                "environment": {
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "NVIDIA_STANDIN_DIR": str(scenario_dir),
                },
            }
        )
    play = [
        {
            "name": "nvidia_driver_state against stand-ins",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": tasks,
        }
    ]
    (root / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    res = run_ansible_playbook(
        "-i",
        "localhost,",
        "--check",  # read-only: the same answers in check mode
        str(root / "play.yml"),
        cwd=root,
        timeout=300,
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_BECOME="false",
    )
    start = res.stdout.find("{")
    assert res.returncode == 0, textwrap.shorten(res.stdout[-3000:] + res.stderr[-3000:], 6000)
    data: dict[str, Any] = json.JSONDecoder().raw_decode(res.stdout[start:])[0]
    return {
        task["task"]["name"]: task["hosts"]["localhost"]
        for p in data["plays"]
        for task in p["tasks"]
    }


@pytest.mark.parametrize(
    ("name", "action", "code"),
    [
        ("rejected", "fail", "signature_rejected"),
        ("installed", "reboot", "unknown"),
        ("local", "pending", "unknown"),
        ("nouveau", "fail", "nouveau_bound"),
        ("loaded", "ok", "ok"),
    ],
)
def test_answers(report: dict[str, dict[str, Any]], name: str, action: str, code: str) -> None:
    result = report[name]
    assert result["changed"] is False
    assert (result["decision"], result["diagnosis"]["code"]) == (action, code), result["reason"]


def test_evidence_and_state(report: dict[str, dict[str, Any]]) -> None:
    rejected = report["rejected"]
    assert rejected["secure_boot"] == "enabled"
    assert rejected["recorded_state_matches"] is True
    assert "unsigned module loading is restricted" in rejected["evidence"]["kernel_log"][0]
    assert rejected["package_state"].splitlines()[0].startswith("libnvidia-compute-570-server ")
    assert report["loaded"]["smi"]["stdout_lines"] == [
        "0, NVIDIA GeForce RTX 3060, 570.133.20, 00000000:01:00.0"
    ]


# --- the role's reboot.yml + verify.yml over a local connection (never reboots) ------------------
ROLE_HOSTS: dict[str, tuple[Scenario, bool]] = {
    # Already rebooted for these packages, the key refused: stop with the diagnosis.
    "role-rejected": (SCENARIOS["rejected"][0], True),
    # Not yet rebooted for them: a reboot is due, but never over a local connection.
    "role-not-loaded": (Scenario(smi_out=SMI_NO_DRIVER, smi_rc=9), False),
    # Loaded: verified.
    "role-loaded": (Scenario(), False),
}


@pytest.fixture(scope="module")
def role_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("nvidia-role")
    bin_dir = install(root / "bin")
    hosts: dict[str, Any] = {}
    for name, (scenario, recorded) in ROLE_HOSTS.items():
        scenario_dir = scenario.write(root / name)
        if recorded:
            (scenario_dir / "reboot-state").write_text(
                "libnvidia-compute-570-server 570.133.20-0ubuntu0.22.04.1\n"
                "linux-modules-nvidia-570-server-generic 5.15.0-119.129\n"
                "nvidia-headless-no-dkms-570-server 570.133.20-0ubuntu0.22.04.1\n"
            )
        hosts[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "standin_dir": str(scenario_dir),
            "ansible_distribution": "Ubuntu",
            "nvidia_driver_gpu_count": 1,
            "nvidia_driver_persistence_mode": False,
            # The PCI bus the module reads (the role's detection knob): the fake one.
            "nvidia_driver_pci_devices_path": str(scenario_dir / "sys/bus/pci/devices"),
        }
    (root / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    play = [
        {
            "name": "nvidia_driver reboot and verify against stand-ins",
            "hosts": "all",
            "gather_facts": False,
            "environment": {
                "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                "NVIDIA_STANDIN_DIR": "{{ standin_dir }}",
            },
            "tasks": [
                {
                    "name": "Reboot and verify",
                    "ansible.builtin.include_role": {
                        "name": "nvidia_driver",
                        "tasks_from": "reboot",
                    },
                },
                {
                    "name": "Verify",
                    "ansible.builtin.include_role": {
                        "name": "nvidia_driver",
                        "tasks_from": "verify",
                    },
                },
            ],
        }
    ]
    (root / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    res = run_ansible_playbook(
        "-i",
        str(root / "inventory.yml"),
        # Role vars outrank inventory variables: the state file per host via an extra var.
        "-e",
        "__nvidia_driver_reboot_state_file={{ standin_dir }}/reboot-state",
        str(root / "play.yml"),
        cwd=root,
        timeout=300,
        ANSIBLE_BECOME="false",
    )
    return " ".join((res.stdout + res.stderr).split()), root


def test_role_stops_with_the_diagnosis_and_never_reboots(role_run: tuple[str, Path]) -> None:
    output, _ = role_run
    assert "nvidia-smi fails on role-rejected and the role will not reboot it again" in output
    assert "Diagnosis: module signature rejected (Secure Boot) [signature_rejected]." in output, (
        output[-4000:]
    )
    assert "mokutil --import /var/lib/dkms/mok.pub" in output
    assert "Secure Boot: enabled; kernel" in output
    assert "role-rejected : ok=" in output and "failed=1" in output


def test_role_only_asks_for_a_reboot_over_a_local_connection(role_run: tuple[str, Path]) -> None:
    output, root = role_run
    assert "REBOOT REQUIRED on role-not-loaded: nvidia-smi fails and the host was not" in output
    assert "local connection: it never reboots the machine it runs on" in output
    # No state recorded: nothing was rebooted.
    assert not (root / "role-not-loaded" / "reboot-state").exists()
    assert "role-not-loaded : ok=" in output


def test_role_verifies_a_loaded_driver(role_run: tuple[str, Path]) -> None:
    output, _ = role_run
    assert "NVIDIA driver 570.133.20 verified on role-loaded" in output
