"""Filters of role ``nvidia_driver`` (controller side, pure; tested in
tests/unit/test_nvidia_driver_state.py).

* ``nvidia_kernel_flavour``: the kernel flavour metapackage suffix Canonical's signed NVIDIA
  modules follow (``linux-modules-nvidia-<branch>-server-<flavour>``), the way ``ubuntu-drivers``
  picks it (UbuntuDrivers/detect.py ``get_linux_modules_metapackage``): the installed
  ``linux-image-<flavour>`` metapackage that depends on the running kernel's image, e.g.
  ``generic`` or ``generic-hwe-22.04``. Without that list (the render entry point) it is derived
  from the kernel release and the distribution version.
* ``nvidia_secure_boot``: ``mokutil --sb-state`` output -> enabled, disabled or unknown.
"""

from __future__ import annotations

import re
from typing import Any

# The kernel series each Ubuntu LTS release ships at GA; a newer series is its HWE kernel.
GA_KERNEL = {"22": (5, 15), "24": (6, 8)}
# Flavours that have an -hwe-<release> metapackage.
HWE_FLAVOURS = {"generic", "lowlatency", "generic-64k"}
_UBUNTU_KERNEL = re.compile(r"^(\d+)\.(\d+)\.\d+-\d+-([a-z][a-z0-9-]*)$")
# "<status> linux-image-<flavour> <Depends>" lines; metapackages have no version in the name.
_META = re.compile(r"^[a-z]i\S*\s+linux-image-([a-z][a-z0-9.+-]*)(?:\s+(.*))?$")
_NOT_META = ("unsigned-", "extra-", "uc-")


def _preference(flavour: str) -> tuple[bool, int]:
    # Both linux-image-generic and -generic-hwe-XX.04 may depend on the running kernel (24.04
    # before its first HWE kernel): the HWE one is what the host will boot next.
    return ("-hwe-" in flavour, len(flavour))


def nvidia_kernel_flavour(
    image_meta_lines: list[str] | None, kernel: str, major_version: Any
) -> str:
    """``image_meta_lines``: ``<db:Status-Abbrev> <Package> <Depends>`` for ``linux-image-*``
    (tasks/detect.yml); ``kernel``: ``ansible_kernel``; ``major_version``: "22" or "24"."""
    match = _UBUNTU_KERNEL.match(kernel or "")
    running_flavour = match.group(3) if match else ""
    metas: dict[str, list[str]] = {}
    for line in image_meta_lines or []:
        found = _META.match(line.strip())
        if found and not found.group(1).startswith(_NOT_META):
            deps = [d.strip().split(" ")[0] for d in (found.group(2) or "").split(",")]
            metas[found.group(1)] = [d for d in deps if d]
    exact = [f for f, deps in metas.items() if f"linux-image-{kernel}" in deps]
    if exact:
        return max(exact, key=_preference)
    # The metapackage moved on to a newer kernel than the running one: same flavour.
    same = [
        f
        for f, deps in metas.items()
        if running_flavour
        and any(re.match(rf"^linux-image-\d.*-{re.escape(running_flavour)}$", d) for d in deps)
    ]
    if same:
        return max(same, key=_preference)
    if not match:
        return ""
    series = (int(match.group(1)), int(match.group(2)))
    ga = GA_KERNEL.get(str(major_version))
    if ga and series > ga and running_flavour in HWE_FLAVOURS:
        return f"{running_flavour}-hwe-{major_version}.04"
    return running_flavour


def nvidia_secure_boot(text: Any) -> str:
    """``mokutil --sb-state`` output -> enabled, disabled or unknown (no mokutil, not EFI)."""
    value = str(text or "")
    if "SecureBoot enabled" in value:
        return "enabled"
    if "SecureBoot disabled" in value:
        return "disabled"
    return "unknown"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "nvidia_kernel_flavour": nvidia_kernel_flavour,
            "nvidia_secure_boot": nvidia_secure_boot,
        }
