#!/usr/bin/python
"""Ansible module ``ai_local_core.node.nvidia_driver_state``: is the NVIDIA driver loaded, and if
not, reboot or stop with a diagnosis?

Role ``nvidia_driver`` (tasks/reboot.yml, tasks/verify.yml) runs it before and after its one
reboot. Read-only (supports check mode): it asks ``nvidia-smi``, and when that fails gathers the
evidence the host offers (kernel log, ``modinfo``, sysfs, ``mokutil --sb-state``, ``dkms status``),
classifies it (``classify``) and decides (``decide``): both are pure functions, unit-tested in
tests/unit/test_nvidia_driver_state.py. The reboot itself and the file that records the package
state it was made for are the role's tasks.

Runs on the managed host: standard library and Ansible's module_utils only, Python 3.9+.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
module: nvidia_driver_state
short_description: The NVIDIA driver's state, why it is not loaded, and whether to reboot
description:
  - Runs C(nvidia-smi --query-gpu=index,name,driver_version,pci.bus_id --format=csv,noheader).
  - When it fails, reads the kernel log (journalctl -k -b, else dmesg),
    C(modinfo -k <kernel> nvidia), the PCI devices and loaded modules in sysfs,
    C(mokutil --sb-state) and C(dkms status), and names the cause - signature_rejected, no_module,
    nouveau_bound, no_device, version_mismatch, no_nvidia_smi, unknown.
  - Decides C(decision) - ok, reboot, pending (a reboot is needed but not allowed here), fail (a
    reboot cannot help - the host was already rebooted for this package state), skip (container).
  - Read-only; supports check mode.
options:
  packages_changed:
    description: This run changed what the kernel needs (driver packages, nouveau blacklist).
    type: bool
    default: false
  rebooted:
    description: The role rebooted the host in this run (the read after that reboot).
    type: bool
    default: false
  reboot_allowed:
    description: The role may reboot this host now (nvidia_driver_reboot, not check mode).
    type: bool
    default: true
  local_connection:
    description: The play runs on this host; it is never rebooted.
    type: bool
    default: false
  in_container:
    description: A container test host; nothing to load, never rebooted.
    type: bool
    default: false
  state_file:
    description: The file the role writes before a reboot, with the package state it is for.
    type: path
    default: /var/lib/ai-local-core-nvidia-driver/reboot-state
  package_regex:
    description: Installed packages whose name matches (re.match) make the package state.
    type: str
    default: >-
      ^(nvidia-|libnvidia-|linux-modules-nvidia-|linux-objects-nvidia-|libcuda|firmware-nvidia-)
  kernel_release:
    description: The running kernel (uname -r); empty reads it.
    type: str
    default: ""
  pci_devices_path:
    description: >-
      The PCI devices directory (nvidia_driver_pci_devices_path); empty is
      <sys_root>/bus/pci/devices.
    type: path
    default: ""
  sys_root:
    description: TEST KNOB - where sysfs is mounted (a fake tree in tests).
    type: path
    default: /sys
attributes:
  check_mode:
    support: full
author: ai-local-core
"""

EXAMPLES = r"""
- name: Read the driver state
  ai_local_core.node.nvidia_driver_state:
    packages_changed: "{{ __nvidia_driver_install is changed }}"
    reboot_allowed: "{{ nvidia_driver_reboot | bool and not ansible_check_mode }}"
  register: __nvidia_driver_state
"""

RETURN = r"""
decision:
  description: >-
    ok, reboot, pending, fail or skip (not named "action": Ansible's task results use that key).
  type: str
  returned: always
reason:
  description: Why, in one sentence.
  type: str
  returned: always
diagnosis:
  description: >-
    code (ok, signature_rejected, no_module, nouveau_bound, no_device, version_mismatch,
    no_nvidia_smi, unknown), title, hint, findings (every code the evidence supports, strongest
    first).
  type: dict
  returned: always
smi:
  description: rc, stdout, stderr, stdout_lines of the nvidia-smi query.
  type: dict
  returned: always
secure_boot:
  description: enabled, disabled or unknown (no mokutil, not EFI).
  type: str
  returned: always
package_state:
  description: The installed NVIDIA packages, one "name version" per line, sorted.
  type: str
  returned: always
recorded_state_matches:
  description: The state file holds exactly package_state (the host was rebooted for it).
  type: bool
  returned: always
evidence:
  description: >-
    kernel_log (matching lines), module_file, nvidia_gpus, pci_drivers, loaded_modules, dkms.
  type: dict
  returned: always
"""

SMI_QUERY = ["--query-gpu=index,name,driver_version,pci.bus_id", "--format=csv,noheader"]
NOT_FOUND = 127

# Kernel log lines worth keeping, and the ones that prove a rejected signature.
_LOG_KEEP = re.compile(
    r"nvidia|nvrm|nouveau|module verification|key was rejected|unsigned module|lockdown",
    re.IGNORECASE,
)
_SIG_REJECTED = re.compile(
    r"key was rejected by service|loading of unsigned module is rejected"
    r"|lockdown: .*unsigned module loading is restricted|required key not available",
    re.IGNORECASE,
)
_SIG_MISSING = re.compile(r"module verification failed", re.IGNORECASE)
_MISMATCH = re.compile(r"driver/library version mismatch|API mismatch", re.IGNORECASE)

DIAGNOSES: dict[str, tuple[str, str]] = {
    "ok": ("driver loaded", ""),
    "no_device": (
        "no NVIDIA device on the PCI bus",
        "the card is not visible (lspci -nn | grep -i nvidia): check that it is seated and "
        "powered, and the BIOS/UEFI PCIe settings; nvidia_driver_detected_gpus_override may "
        "claim a GPU that is not there",
    ),
    "version_mismatch": (
        "driver/library version mismatch",
        "the loaded kernel module and the user-space libraries differ (an upgrade without a "
        "reboot, or the module for the running kernel is older): cat /proc/driver/nvidia/version "
        "vs dpkg -l 'libnvidia-compute*'; see docs/nvidia-driver.md#recover-from-a-driverlibrary-"
        "mismatch-after-an-upgrade",
    ),
    "signature_rejected": (
        "module signature rejected (Secure Boot)",
        "the kernel refuses the nvidia module's signature: on Ubuntu use Canonical's signed "
        "modules (nvidia_driver_kernel_modules: signed, the default there); with DKMS enrol its "
        "key (sudo mokutil --import /var/lib/dkms/mok.pub, then confirm in MokManager at the "
        "console on the next boot); see docs/nvidia-driver.md#secure-boot",
    ),
    "no_module": (
        "no nvidia module for the running kernel",
        "modinfo finds no nvidia module for this kernel: with signed modules the "
        "linux-modules-nvidia-<branch>-server-$(uname -r) package is missing (not yet published "
        "for this kernel: boot the previous kernel or wait); with DKMS the build failed "
        "(dkms status, /var/lib/dkms/nvidia/*/build/make.log; install linux-headers-$(uname -r))",
    ),
    "nouveau_bound": (
        "nouveau drives the GPU",
        "nouveau claimed the card before nvidia: check /etc/modprobe.d/ai-local-core-blacklist-"
        "nouveau.conf and rebuild the initramfs (sudo update-initramfs -u -k all), then reboot",
    ),
    "no_nvidia_smi": (
        "nvidia-smi is not installed",
        "the user-space utilities are missing (nvidia-utils-<branch>-server on Ubuntu, nvidia-smi "
        "on Debian): re-run the play",
    ),
    "unknown": (
        "nvidia-smi cannot talk to the driver, cause not recognised",
        "read the kernel log below (journalctl -k -b | grep -iE 'nvidia|nvrm')",
    ),
}


def secure_boot_state(text: str) -> str:
    """``mokutil --sb-state`` output -> enabled, disabled or unknown (no mokutil, not EFI)."""
    if re.search(r"SecureBoot enabled", text):
        return "enabled"
    if re.search(r"SecureBoot disabled", text):
        return "disabled"
    return "unknown"


def package_state(dpkg_lines: list[str], regex: str) -> str:
    """``${db:Status-Abbrev} ${Package} ${Version}`` lines -> "name version" lines of the installed
    packages matching ``regex``, sorted."""
    pattern = re.compile(regex)
    found = set()
    for line in dpkg_lines:
        words = line.split()
        if len(words) == 3 and re.match(r"^[a-z]i", words[0]) and pattern.match(words[1]):
            found.add(f"{words[1]} {words[2]}")
    return "\n".join(sorted(found))


def classify(evidence: dict[str, Any]) -> dict[str, Any]:
    """Name the cause of a failing nvidia-smi from the evidence, strongest first.

    evidence: smi_rc, smi_output, kernel_log (lines), secure_boot, module_file (str; "" = none,
    None = unknown), nvidia_gpus (NVIDIA display functions found in sysfs; None = unknown),
    pci_drivers (drivers bound to them), loaded_modules (of nvidia, nouveau).
    """
    if evidence.get("smi_rc") == 0:
        code = "ok"
        title, hint = DIAGNOSES[code]
        return {"code": code, "title": title, "hint": hint, "findings": []}
    log = "\n".join(evidence.get("kernel_log") or [])
    output = str(evidence.get("smi_output") or "")
    loaded = set(evidence.get("loaded_modules") or [])
    findings: list[str] = []
    if evidence.get("nvidia_gpus") == 0:
        findings.append("no_device")
    if _MISMATCH.search(output) or _MISMATCH.search(log):
        findings.append("version_mismatch")
    if _SIG_REJECTED.search(log) or (
        evidence.get("secure_boot") == "enabled" and _SIG_MISSING.search(log)
    ):
        findings.append("signature_rejected")
    if evidence.get("module_file") == "":
        findings.append("no_module")
    if "nouveau" in (evidence.get("pci_drivers") or []) or "nouveau" in loaded:
        findings.append("nouveau_bound")
    if evidence.get("smi_rc") == NOT_FOUND:
        findings.append("no_nvidia_smi")
    code = findings[0] if findings else "unknown"
    title, hint = DIAGNOSES[code]
    return {"code": code, "title": title, "hint": hint, "findings": findings}


def decide(
    *,
    smi_ok: bool,
    packages_changed: bool,
    recorded_state_matches: bool,
    rebooted: bool,
    reboot_allowed: bool,
    in_container: bool,
    local_connection: bool,
) -> tuple[str, str]:
    """(action, reason): ok, reboot, pending (needed, not allowed here), fail or skip.

    At most one reboot per run (``rebooted`` ends it) and none on a later run for the same package
    state (``recorded_state_matches``) unless this run changed what the kernel needs.
    """
    if in_container:
        return "skip", "a container has no kernel or GPU of its own"
    may_reboot = reboot_allowed and not local_connection
    if rebooted:
        if smi_ok:
            return "ok", "the driver is loaded after the reboot"
        return "fail", "nvidia-smi still fails after the reboot of this run"
    if packages_changed:
        why = "this run changed the driver packages or the nouveau blacklist"
        return ("reboot", why) if may_reboot else ("pending", why)
    if smi_ok:
        return "ok", "the driver is loaded"
    if recorded_state_matches:
        return (
            "fail",
            "nvidia-smi fails and the host was already rebooted for these packages: "
            "another reboot would not help",
        )
    why = "nvidia-smi fails and the host was not rebooted for these packages yet"
    return ("reboot", why) if may_reboot else ("pending", why)


def run(argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
    """(rc, stdout, stderr); rc 127 when the command does not exist."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError:
        return NOT_FOUND, "", f"{argv[0]}: not found"
    except (subprocess.TimeoutExpired, OSError) as exc:
        return 1, "", f"{argv[0]}: {exc}"
    return done.returncode, done.stdout, done.stderr


def read_sysfs(sys_root: str, pci_devices_path: str = "") -> dict[str, Any]:
    """NVIDIA display functions on the PCI bus, the drivers bound to them, nvidia/nouveau loaded."""
    devices = Path(pci_devices_path or Path(sys_root) / "bus" / "pci" / "devices")
    gpus: int | None = None
    drivers: list[str] = []
    if devices.is_dir():
        gpus = 0
        for dev in sorted(devices.iterdir()):
            try:
                vendor = (dev / "vendor").read_text().strip()
                klass = (dev / "class").read_text().strip()
            except OSError:
                continue
            if vendor.lower() != "0x10de" or not klass.startswith("0x03"):
                continue
            gpus += 1
            driver = dev / "driver"
            if driver.is_symlink():
                drivers.append(driver.readlink().name)
    loaded = [m for m in ("nvidia", "nouveau") if (Path(sys_root) / "module" / m).exists()]
    return {"nvidia_gpus": gpus, "pci_drivers": drivers, "loaded_modules": loaded}


def gather(kernel: str, sys_root: str, pci_devices_path: str = "") -> dict[str, Any]:
    """The evidence ``classify`` reads (only gathered when nvidia-smi fails)."""
    rc, out, _ = run(
        ["journalctl", "-k", "-b", "--no-pager", "-o", "short-monotonic", "-n", "3000"]
    )
    if rc != 0:
        rc, out, _ = run(["dmesg"])
    log = [line for line in out.splitlines() if _LOG_KEEP.search(line)][-40:]
    rc, out, _ = run(["modinfo", "-k", kernel, "-F", "filename", "nvidia"])
    module_file: str | None = None if rc == NOT_FOUND else (out.strip() if rc == 0 else "")
    dkms_rc, dkms_out, _ = run(["dkms", "status"])
    return {
        "kernel_log": log,
        "module_file": module_file,
        "dkms": dkms_out.strip()[-2000:] if dkms_rc == 0 else "",
        **read_sysfs(sys_root, pci_devices_path),
    }


def nvidia_driver_state(params: dict[str, Any]) -> dict[str, Any]:
    """The module's result for ``params`` (its options)."""
    kernel = params.get("kernel_release") or os.uname().release
    if params.get("in_container"):
        action, reason = decide(
            smi_ok=False,
            packages_changed=False,
            recorded_state_matches=False,
            rebooted=False,
            reboot_allowed=False,
            in_container=True,
            local_connection=False,
        )
        return {"decision": action, "reason": reason, "diagnosis": {}, "smi": {}, "secure_boot": ""}
    rc, out, err = run(["nvidia-smi", *SMI_QUERY])
    smi = {"rc": rc, "stdout": out, "stderr": err, "stdout_lines": out.splitlines()}
    smi_ok = rc == 0 and any(line.strip() for line in out.splitlines())
    _, sb_out, sb_err = run(["mokutil", "--sb-state"], timeout=20)
    secure_boot = secure_boot_state(sb_out + sb_err)
    _, dpkg_out, _ = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package} ${Version}\n"])
    state = package_state(dpkg_out.splitlines(), params["package_regex"])
    try:
        recorded = Path(params["state_file"]).read_text().strip()
    except OSError:
        recorded = None
    matches = recorded is not None and recorded == state
    evidence: dict[str, Any] = {"secure_boot": secure_boot}
    if not smi_ok:
        evidence.update(
            gather(kernel, params.get("sys_root") or "/sys", params.get("pci_devices_path") or "")
        )
    diagnosis = classify(
        {**evidence, "smi_rc": 0 if smi_ok else (rc or 1), "smi_output": f"{out}\n{err}"}
    )
    action, reason = decide(
        smi_ok=smi_ok,
        packages_changed=bool(params.get("packages_changed")),
        recorded_state_matches=matches,
        rebooted=bool(params.get("rebooted")),
        reboot_allowed=bool(params.get("reboot_allowed")),
        in_container=False,
        local_connection=bool(params.get("local_connection")),
    )
    return {
        "decision": action,
        "reason": reason,
        "diagnosis": diagnosis,
        "smi": smi,
        "secure_boot": secure_boot,
        "kernel_release": kernel,
        "package_state": state,
        "recorded_state_matches": matches,
        "evidence": evidence,
    }


def main() -> None:
    # Imported here, not at the top: the pure functions stay importable by the unit tests without
    # loading ansible.module_utils (which patches sys.intern in the importing process).
    from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

    module = AnsibleModule(
        argument_spec={
            "packages_changed": {"type": "bool", "default": False},
            "rebooted": {"type": "bool", "default": False},
            "reboot_allowed": {"type": "bool", "default": True},
            "local_connection": {"type": "bool", "default": False},
            "in_container": {"type": "bool", "default": False},
            "state_file": {
                "type": "path",
                "default": "/var/lib/ai-local-core-nvidia-driver/reboot-state",
            },
            "package_regex": {
                "type": "str",
                "default": (
                    "^(nvidia-|libnvidia-|linux-modules-nvidia-|linux-objects-nvidia-"
                    "|libcuda|firmware-nvidia-)"
                ),
            },
            "kernel_release": {"type": "str", "default": ""},
            "pci_devices_path": {"type": "path", "default": ""},
            "sys_root": {"type": "path", "default": "/sys"},
        },
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **nvidia_driver_state(module.params))


if __name__ == "__main__":
    main()
