"""Verify role `nvidia_driver` on test hosts without a GPU.

converge.yml points detection at a fake PCI tree without NVIDIA devices (prepare.yml), so the
scenario means "no GPU" on any machine, including a developer's with a real NVIDIA card.
Each extra playbook runs once per module (fixtures) and covers every host; the per-host tests
read its result.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.molecule_support import (
    PlaybookRun,
    assert_check_mode_clean,
    run_playbook,
    scenario_playbook,
)

FAKE = "/var/tmp/ai-local-core-test"
ROLE_FILES = [
    "/etc/modprobe.d/ai-local-core-blacklist-nouveau.conf",
    "/etc/modules-load.d/ai-local-core-nvidia.conf",
    "/etc/systemd/system/nvidia-persistenced.service.d/50-ai-local-core.conf",
    "/etc/systemd/system/ai-local-core-nvidia-power-limit.service",
    "/etc/apt/apt.conf.d/53ai-local-core-nvidia",
    "/etc/profile.d/ai-local-core-cuda.sh",
    "/etc/apt/sources.list.d/ai-local-core-cuda.sources",
]
PROBES = [
    f"{FAKE}/pci-two-gpus",
    f"{FAKE}/pci-none",
    f"{FAKE}/does-not-exist",
    "/sys/bus/pci/devices",
]


def flat(run: PlaybookRun) -> str:
    """The output with whitespace runs collapsed: the YAML callback wraps long messages."""
    return " ".join(run.output.split())


def failed_tasks(run: PlaybookRun) -> set[str]:
    """Names of the tasks that reported `fatal:`."""
    chunks = run.output.split("TASK [")[1:]
    return {chunk.split("]", 1)[0] for chunk in chunks if "\nfatal: " in chunk}


def assert_nothing_nvidia(host) -> None:
    pkgs = host.run("dpkg-query -W -f '${Package}\\n'").stdout.split()
    nvidia = [p for p in pkgs if re.match(r"(nvidia|libnvidia|libcuda|cuda-|firmware-nvidia)", p)]
    assert nvidia == [], f"NVIDIA packages installed: {nvidia}"
    for path in ROLE_FILES:
        assert not host.file(path).exists, path
    sources = host.run("cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null").stdout
    assert "non-free" not in sources and "contrib" not in sources, sources
    assert host.run("apt-mark showhold").stdout.strip() == ""


@pytest.fixture(scope="module")
def auto_run() -> PlaybookRun:
    return run_playbook(scenario_playbook())


@pytest.fixture(scope="module")
def required_run() -> PlaybookRun:
    # As an operator types it: the string "true" (a YAML boolean true is what the GPU scenario's
    # converge.yml passes).
    return run_playbook(scenario_playbook(), "-e", "nvidia_driver_required=true")


@pytest.fixture(scope="module")
def forbidden_run() -> PlaybookRun:
    override = {
        "nvidia_driver_required": False,
        "nvidia_driver_detected_gpus_override": [
            {"pci_slot": "0000:01:00.0", "pci_id": "10de:2504", "name": "GeForce RTX 3060"}
        ],
    }
    return run_playbook(scenario_playbook(), "-e", json.dumps(override))


@pytest.fixture(scope="module")
def probe_run() -> PlaybookRun:
    extra = {"probe_paths": PROBES, "probe_out_dir": f"{FAKE}/detected"}
    run = run_playbook(scenario_playbook("detect.yml"), "-e", json.dumps(extra))
    assert run.returncode == 0, run.output[-3000:]
    return run


def test_auto_without_gpu_skips_with_one_message_and_changes_nothing(host, auto_run) -> None:
    assert auto_run.returncode == 0, auto_run.output[-3000:]
    assert auto_run.recaps, auto_run.output[-3000:]
    for name, recap in auto_run.recaps.items():
        message = (
            f"SKIPPING the NVIDIA driver on {name}: no NVIDIA GPU detected and "
            "nvidia_driver_required is auto. Nothing is installed or changed."
        )
        assert flat(auto_run).count(message) == 1, auto_run.output[-3000:]
        assert recap.changed == 0
    # The role ended right after the policy step: no repository, package or file task ran.
    assert "Install the tools the role needs" not in auto_run.output
    assert_nothing_nvidia(host)


def test_required_true_without_gpu_fails_before_any_change(host, required_run) -> None:
    assert required_run.returncode != 0, required_run.output[-3000:]
    assert required_run.recaps, required_run.output[-3000:]
    for recap in required_run.recaps.values():
        assert (recap.failed, recap.changed) == (1, 0), recap
    text = flat(required_run)
    assert "nvidia_driver_required is true but no NVIDIA GPU was detected" in text
    assert f"vendor 0x10de under {FAKE}/pci-none). Nothing was changed." in text
    # It failed at the policy step, before the first task that could change anything.
    assert failed_tasks(required_run) == {
        "nvidia_driver : Stop when a GPU is required but none is detected"
    }
    assert_nothing_nvidia(host)


def test_required_false_never_installs_even_with_a_gpu(host, forbidden_run) -> None:
    assert forbidden_run.returncode == 0, forbidden_run.output[-3000:]
    text = flat(forbidden_run)
    assert (
        "1 NVIDIA GPU(s) (from nvidia_driver_detected_gpus_override): "
        "GeForce RTX 3060 at 0000:01:00.0" in text
    )
    for name, recap in forbidden_run.recaps.items():
        assert recap.changed == 0
        assert (
            f"SKIPPING the NVIDIA driver on {name}: nvidia_driver_required is false "
            "(1 GPU(s) detected)" in text
        )
    assert_nothing_nvidia(host)


def detected(host, path: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        host.file(f"{FAKE}/detected/{PROBES.index(path)}.json").content_string
    )
    assert data["path"] == path
    return data


def test_detection_counts_nvidia_display_controllers_only(host, probe_run) -> None:
    data = detected(host, f"{FAKE}/pci-two-gpus")
    # The HDMI audio function (10de, class 0403) and the Intel iGPU (display, 8086) are not GPUs;
    # the 3D controller (class 0302) is.
    # Names from lspci (the stand-in of prepare.yml names the first card only; the second gets
    # the role's fallback name).
    rtx = "GA106 [GeForce RTX 3060 Lite Hash Rate]"
    assert data["gpus"] == [
        {"pci_slot": "0000:01:00.0", "pci_id": "10de:2504", "name": rtx},
        {"pci_slot": "0000:41:00.0", "pci_id": "10de:20b5", "name": "NVIDIA GPU [10de:20b5]"},
    ]
    assert (data["present"], data["count"], data["managed"]) == (True, 2, False)
    assert (
        f"2 NVIDIA GPU(s): {rtx} at 0000:01:00.0; "
        "NVIDIA GPU [10de:20b5] at 0000:41:00.0" in flat(probe_run)
    )


@pytest.mark.parametrize("path", [f"{FAKE}/pci-none", f"{FAKE}/does-not-exist"])
def test_detection_without_nvidia_devices(host, probe_run, path: str) -> None:
    data = detected(host, path)
    assert (data["gpus"], data["present"], data["count"], data["models"]) == ([], False, 0, [])


def test_detection_on_the_real_sysfs_matches_an_independent_count(host, probe_run) -> None:
    # The container sees the machine's real PCI devices; count NVIDIA display controllers by hand.
    script = (
        "n=0; for d in /sys/bus/pci/devices/*; do "
        '[ "$(cat $d/vendor)" = 0x10de ] && case "$(cat $d/class)" in 0x03*) n=$((n+1));; esac; '
        "done; echo $n"
    )
    expected = int(host.run(script).stdout.strip())
    assert detected(host, "/sys/bus/pci/devices")["count"] == expected


def test_check_mode_reports_no_changes() -> None:
    run = assert_check_mode_clean()
    assert "SKIPPING the NVIDIA driver" in flat(run)
