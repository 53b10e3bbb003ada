#!/usr/bin/python
"""Ansible module ``ai_local_core.node.gpu_facts``: the node's NVIDIA GPUs, read once.

The one GPU fact source of the project: role ``ollama`` (the VRAM plan, tasks/models.yml) and
``playbooks/status.yml`` read ``ansible_facts.ai_local_core_gpu`` instead of running nvidia-smi
each with its own query. One ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits`` call;
read-only, so it runs the same in check mode; a host without a GPU, without the driver or with a
driver that does not answer gets ``present: false`` and the reason, never a failure.

Runs on the managed host: standard library and Ansible's module_utils only, Python 3.9+.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
module: gpu_facts
short_description: The host's NVIDIA GPUs as facts (one nvidia-smi query)
description:
  - Runs C(nvidia-smi --query-gpu=...) once and sets C(ansible_facts.ai_local_core_gpu).
  - Never fails for a missing GPU or driver; C(present) is false and C(reason) says why.
  - Read-only; supports check mode.
options:
  nvidia_smi:
    description: The nvidia-smi command, looked up on PATH unless it is a path.
    type: str
    default: nvidia-smi
  timeout:
    description: Seconds nvidia-smi may take (a wedged driver can hang it).
    type: int
    default: 30
attributes:
  check_mode:
    support: full
author: ai-local-core
"""

EXAMPLES = r"""
- name: Read the GPU facts
  ai_local_core.node.gpu_facts:

- name: Show the VRAM of the first GPU
  ansible.builtin.debug:
    msg: "{{ ansible_facts.ai_local_core_gpu.gpus[0].memory_total_mib }} MiB"
  when: ansible_facts.ai_local_core_gpu.present
"""

RETURN = r"""
ansible_facts:
  description: C(ai_local_core_gpu)
  returned: always
  type: dict
  contains:
    ai_local_core_gpu:
      description: >-
        present (bool), reason (why absent, else empty), pci_present (an NVIDIA display
        controller on the PCI bus), gpus (list of index, name, uuid, driver_version,
        memory_total_mib, memory_used_mib, power_draw_w, power_limit_w, temperature_c,
        persistence_mode, pstate, utilization_percent; null where nvidia-smi says N/A).
      type: dict
      returned: always
"""

#: nvidia-smi's query fields and the keys they become, in this order.
FIELDS: tuple[tuple[str, str], ...] = (
    ("index", "index"),
    ("name", "name"),
    ("uuid", "uuid"),
    ("driver_version", "driver_version"),
    ("memory.total", "memory_total_mib"),
    ("memory.used", "memory_used_mib"),
    ("power.draw", "power_draw_w"),
    ("power.limit", "power_limit_w"),
    ("temperature.gpu", "temperature_c"),
    ("persistence_mode", "persistence_mode"),
    ("pstate", "pstate"),
    ("utilization.gpu", "utilization_percent"),
)
_INTEGERS = frozenset({"index", "memory_total_mib", "memory_used_mib", "temperature_c"})
_FLOATS = frozenset({"power_draw_w", "power_limit_w", "utilization_percent"})
#: The PCI vendor id of NVIDIA and the class prefix of display controllers.
_NVIDIA_VENDOR = "0x10de"
_DISPLAY_CLASS = "0x03"


def query_argv(nvidia_smi: str = "nvidia-smi") -> list[str]:
    """The one nvidia-smi call."""
    fields = ",".join(field for field, _ in FIELDS)
    return [nvidia_smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"]


def _value(key: str, text: str) -> Any:
    text = text.strip()
    # "[N/A]", "[Not Supported]", "[Unknown Error]", "N/A": nothing to report.
    if not text or text.startswith("[") or text.upper() == "N/A":
        return None
    if key == "persistence_mode":
        return {"enabled": True, "disabled": False}.get(text.lower())
    if key in _INTEGERS or key in _FLOATS:
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if key in _INTEGERS else number
    return text


def parse_query(text: str) -> list[dict[str, Any]]:
    """The GPUs of ``nvidia-smi --query-gpu=<FIELDS> --format=csv,noheader,nounits``.

    Lines that do not have every field (warnings, a truncated answer) are left out.
    """
    gpus: list[dict[str, Any]] = []
    for record in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(record) != len(FIELDS):
            continue
        # zip(strict=) is Python 3.10+; the lengths are equal (checked above).
        gpu = {key: _value(key, value) for (_, key), value in zip(FIELDS, record)}  # noqa: B905
        if gpu["index"] is None:
            continue
        gpus.append(gpu)
    return gpus


def pci_nvidia_present(sys_root: str = "/sys") -> bool:
    """An NVIDIA display controller on the PCI bus (sysfs), driver or not."""
    try:
        devices = sorted(Path(sys_root, "bus", "pci", "devices").iterdir())
    except OSError:
        return False
    for device in devices:
        try:
            if (device / "vendor").read_text(encoding="ascii").strip() != _NVIDIA_VENDOR:
                continue
            if (device / "class").read_text(encoding="ascii").strip().startswith(_DISPLAY_CLASS):
                return True
        except OSError:
            continue
    return False


def gpu_facts(
    nvidia_smi: str = "nvidia-smi", timeout: float = 30, sys_root: str = "/sys"
) -> dict[str, Any]:
    """``ai_local_core_gpu``: ``{present, reason, pci_present, gpus}``."""
    facts: dict[str, Any] = {
        "present": False,
        "reason": "",
        "pci_present": pci_nvidia_present(sys_root),
        "gpus": [],
    }
    command = nvidia_smi if os.sep in nvidia_smi else shutil.which(nvidia_smi)
    if not command or not os.access(command, os.X_OK):
        facts["reason"] = f"no nvidia-smi ({nvidia_smi} not found or not executable)"
        return facts
    try:
        done = subprocess.run(
            query_argv(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        facts["reason"] = f"nvidia-smi failed: no answer within {timeout:g} s"
        return facts
    except OSError as exc:
        facts["reason"] = f"nvidia-smi failed: {exc}"
        return facts
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip() or "no output")[-500:]
        facts["reason"] = f"nvidia-smi failed (rc {done.returncode}): {detail}"
        return facts
    facts["gpus"] = parse_query(done.stdout)
    if facts["gpus"]:
        facts["present"] = True
    else:
        facts["reason"] = "nvidia-smi listed no GPU"
    return facts


def main() -> None:
    # Imported here, not at the top: the parser and gpu_facts() stay importable by the unit tests
    # without loading ansible.module_utils (which patches sys.intern in the importing process).
    from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

    module = AnsibleModule(
        argument_spec={
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    facts = gpu_facts(module.params["nvidia_smi"], max(1, module.params["timeout"]))
    module.exit_json(changed=False, ansible_facts={"ai_local_core_gpu": facts})


if __name__ == "__main__":
    main()
