"""TEST FIXTURE, never shipped: stand-ins for the commands that
``ai_local_core.node.nvidia_driver_state`` runs on a host (nvidia-smi, mokutil, modinfo,
dpkg-query, journalctl, dmesg, dkms) and a fake sysfs, so its classification and reboot
decision run for real without a GPU, Secure Boot or an Ubuntu kernel.

``install(bin_dir)`` writes one executable per command into ``bin_dir`` (put it first on PATH);
each answers from the scenario directory named by ``$NVIDIA_STANDIN_DIR``: ``<command>.out``
(stdout), ``<command>.err`` (stderr), ``<command>.rc`` (exit status, default 0; 127 plays "not
installed"). ``Scenario`` writes such a directory plus a fake sysfs (``sys/``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS = ("nvidia-smi", "mokutil", "modinfo", "dpkg-query", "journalctl", "dmesg", "dkms")
STANDIN = Path(__file__).resolve().parent / "standin.py"

SMI_OK = "0, NVIDIA GeForce RTX 3060, 570.133.20, 00000000:01:00.0\n"
SMI_NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)
SMI_MISMATCH = (
    "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 570.172\n"
)
DPKG_570 = (
    "ii  nvidia-headless-no-dkms-570-server 570.133.20-0ubuntu0.22.04.1\n"
    "ii  linux-modules-nvidia-570-server-generic 5.15.0-119.129\n"
    "hi  libnvidia-compute-570-server 570.133.20-0ubuntu0.22.04.1\n"
    "ii  curl 7.81.0-1ubuntu1.16\n"
)


def install(bin_dir: Path) -> Path:
    """One stand-in executable per command in ``bin_dir``; returns ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(f"#!{sys.executable} {STANDIN}\n")
        path.chmod(0o755)
    return bin_dir


@dataclass
class Scenario:
    """A host's answers: command outputs and a sysfs with one RTX 3060 (or none)."""

    smi_out: str = SMI_OK
    smi_rc: int = 0
    secure_boot: str = "SecureBoot disabled"  # "" = mokutil not installed
    module_file: str | None = "/lib/modules/6.8.0-45-generic/kernel/nvidia-570srv/nvidia.ko"
    kernel_log: str = ""
    dpkg: str = DPKG_570
    gpu: bool = True
    gpu_driver: str | None = None  # the driver bound to the GPU in sysfs (nvidia, nouveau)
    modules: list[str] = field(default_factory=list)  # loaded modules (/sys/module/<name>)

    def write(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        answers: dict[str, tuple[str, int]] = {
            "nvidia-smi": (self.smi_out, self.smi_rc),
            "dpkg-query": (self.dpkg, 0),
            "journalctl": (self.kernel_log, 0),
            "dmesg": (self.kernel_log, 0),
            "dkms": ("", 127),
        }
        answers["mokutil"] = (self.secure_boot + "\n", 0) if self.secure_boot else ("", 127)
        if self.module_file is None:
            answers["modinfo"] = ("", 127)
        elif self.module_file:
            answers["modinfo"] = (self.module_file + "\n", 0)
        else:
            answers["modinfo"] = ("", 1)
        for name, (out, rc) in answers.items():
            (root / f"{name}.out").write_text(out)
            (root / f"{name}.rc").write_text(str(rc))
        devices = root / "sys" / "bus" / "pci" / "devices"
        devices.mkdir(parents=True, exist_ok=True)
        if self.gpu:
            dev = devices / "0000:01:00.0"
            dev.mkdir(exist_ok=True)
            for key, value in (("vendor", "0x10de"), ("class", "0x030000"), ("device", "0x2504")):
                (dev / key).write_text(value + "\n")
            if self.gpu_driver:
                drivers = root / "sys" / "bus" / "pci" / "drivers" / self.gpu_driver
                drivers.mkdir(parents=True, exist_ok=True)
                link = dev / "driver"
                if not link.is_symlink():
                    link.symlink_to(drivers)
        for name in self.modules:
            (root / "sys" / "module" / name).mkdir(parents=True, exist_ok=True)
        return root
