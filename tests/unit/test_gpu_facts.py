"""Module ``ai_local_core.node.gpu_facts`` (collections/.../plugins/modules/gpu_facts.py): the
parser of its one nvidia-smi query with captured output, the PCI look-up, and the facts with a
fake nvidia-smi (answering, failing, absent). Its use by role ollama's VRAM plan is tested in
tests/ansible/test_ollama_vram_plan.py."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

MODULE = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/ai_local_core/node/plugins/modules/gpu_facts.py"
)


@pytest.fixture(scope="module")
def gf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ai_local_core_node_gpu_facts", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total,memory.used,power.draw,
#: power.limit,temperature.gpu,persistence_mode,pstate,utilization.gpu
#: --format=csv,noheader,nounits on an RTX 3060 at idle (persistence on, P8) beside a second card
#: whose power readings are not supported, after a driver warning line.
CAPTURED = (
    "WARNING: infoROM is corrupted at gpu 0000:02:00.0\n"
    "0, NVIDIA GeForce RTX 3060, GPU-5f3c1a2b-7d4e-4f60-9a1b-2c3d4e5f6a7b, 570.133.07, "
    "12288, 1, 13.47, 170.00, 38, Enabled, P8, 0\n"
    "1, NVIDIA GeForce GTX 1650, GPU-0a1b2c3d-0000-4f60-9a1b-2c3d4e5f6a7b, 570.133.07, "
    "4096, 215, [N/A], [Not Supported], 45, Disabled, P0, 12\n"
)


def test_query_is_one_call_with_every_field(gf: Any) -> None:
    argv = gf.query_argv("/usr/bin/nvidia-smi")
    assert argv[0] == "/usr/bin/nvidia-smi" and argv[2] == "--format=csv,noheader,nounits"
    assert argv[1] == (
        "--query-gpu=index,name,uuid,driver_version,memory.total,memory.used,power.draw,"
        "power.limit,temperature.gpu,persistence_mode,pstate,utilization.gpu"
    )


def test_parser_reads_the_captured_output(gf: Any) -> None:
    gpus = gf.parse_query(CAPTURED)
    assert gpus == [
        {
            "index": 0,
            "name": "NVIDIA GeForce RTX 3060",
            "uuid": "GPU-5f3c1a2b-7d4e-4f60-9a1b-2c3d4e5f6a7b",
            "driver_version": "570.133.07",
            "memory_total_mib": 12288,
            "memory_used_mib": 1,
            "power_draw_w": 13.47,
            "power_limit_w": 170.0,
            "temperature_c": 38,
            "persistence_mode": True,
            "pstate": "P8",
            "utilization_percent": 0.0,
        },
        {
            "index": 1,
            "name": "NVIDIA GeForce GTX 1650",
            "uuid": "GPU-0a1b2c3d-0000-4f60-9a1b-2c3d4e5f6a7b",
            "driver_version": "570.133.07",
            "memory_total_mib": 4096,
            "memory_used_mib": 215,
            "power_draw_w": None,
            "power_limit_w": None,
            "temperature_c": 45,
            "persistence_mode": False,
            "pstate": "P0",
            "utilization_percent": 12.0,
        },
    ]
    assert gf.parse_query("") == [] and gf.parse_query("garbage\n1,2,3\n") == []


def fake_smi(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nvidia-smi"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_sysfs(root: Path, devices: dict[str, tuple[str, str]]) -> Path:
    for name, (vendor, klass) in devices.items():
        device = root / "bus/pci/devices" / name
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        (device / "class").write_text(klass + "\n")
    return root


def test_facts_from_an_answering_nvidia_smi(gf: Any, tmp_path: Path) -> None:
    captured = tmp_path / "captured.csv"
    captured.write_text(CAPTURED)
    smi = fake_smi(tmp_path / "bin", f'cat "{captured}"')
    sysfs = fake_sysfs(tmp_path / "sys", {"0000:02:00.0": ("0x10de", "0x030000")})
    facts = gf.gpu_facts(str(smi), sys_root=str(sysfs))
    assert facts["present"] is True and facts["reason"] == "" and facts["pci_present"] is True
    assert [g["memory_total_mib"] for g in facts["gpus"]] == [12288, 4096]


def test_no_gpu_is_not_a_failure(gf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No nvidia-smi on PATH; only an Intel display controller and an NVIDIA audio function.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    sysfs = fake_sysfs(
        tmp_path / "sys",
        {"0000:00:02.0": ("0x8086", "0x030000"), "0000:02:00.1": ("0x10de", "0x040300")},
    )
    facts = gf.gpu_facts(sys_root=str(sysfs))
    assert facts == {
        "present": False,
        "reason": "no nvidia-smi (nvidia-smi not found or not executable)",
        "pci_present": False,
        "gpus": [],
    }
    assert gf.pci_nvidia_present(str(tmp_path / "nothing")) is False


def test_a_failing_nvidia_smi_gives_its_stderr(gf: Any, tmp_path: Path) -> None:
    smi = fake_smi(
        tmp_path / "bin",
        "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'"
        " >&2\nexit 9",
    )
    sysfs = fake_sysfs(tmp_path / "sys", {"0000:02:00.0": ("0x10de", "0x030000")})
    facts = gf.gpu_facts(str(smi), sys_root=str(sysfs))
    assert facts["present"] is False and facts["pci_present"] is True
    assert facts["reason"] == (
        "nvidia-smi failed (rc 9): NVIDIA-SMI has failed because it could not communicate "
        "with the NVIDIA driver."
    )
    empty = gf.gpu_facts(str(fake_smi(tmp_path / "bin2", "exit 0")), sys_root=str(sysfs))
    assert (empty["present"], empty["reason"]) == (False, "nvidia-smi listed no GPU")
    hung = gf.gpu_facts(str(fake_smi(tmp_path / "bin3", "exec sleep 5")), timeout=0.2)
    assert hung["reason"] == "nvidia-smi failed: no answer within 0.2 s"
