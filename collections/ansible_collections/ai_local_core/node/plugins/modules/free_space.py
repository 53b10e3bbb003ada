#!/usr/bin/python
"""Ansible module ``ai_local_core.node.free_space``: is there room on the disk of a path?

The one free-space check of the project: the preflight (the models directory), role ``ollama``
before it unpacks a new version (the install root) and before it pulls models (the models
directory). The path may not exist yet: the nearest existing directory on the way to it is
measured. Read-only, so it runs the same in check mode; fails with a message that names the
setting to change when there is less than ``min_gb`` GiB free.

Runs on the managed host: standard library and Ansible's module_utils only, Python 3.9+.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
module: free_space
short_description: Fail unless the filesystem of a path has enough free space
description:
  - Measures the free space of the nearest existing directory on the way to O(path).
  - Fails when it is below O(min_gb) GiB, naming O(setting); read-only, supports check mode.
options:
  path:
    description: The directory that will hold the data (it may not exist yet).
    type: path
    required: true
  min_gb:
    description: GiB that must be free (0 only measures).
    type: float
    default: 0
  setting:
    description: The variable that sets O(min_gb), named in the failure message.
    type: str
    default: min_gb
  what:
    description: What needs the space, at the start of the failure message (e.g. "Not pulling x").
    type: str
    default: ""
  hint:
    description: What the operator can do, at the end of the failure message.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
author: ai-local-core
"""

EXAMPLES = r"""
- name: Check the free disk space for models
  ai_local_core.node.free_space:
    path: /usr/share/ollama/.ollama/models
    min_gb: 20
    setting: site_min_free_gb
"""

RETURN = r"""
measured:
  description: The existing directory that was measured.
  returned: always
  type: str
free_gb:
  description: Its filesystem's free space in GiB, rounded to 0.1.
  returned: always
  type: float
"""

GIB = 1024**3


def nearest_directory(path: str) -> Path:
    """``path`` or the nearest existing directory above it (``/`` at the latest)."""
    here = Path(path).absolute()
    while not here.is_dir() and here.parent != here:
        here = here.parent
    return here


def check(path: str, min_gb: float, setting: str, what: str = "", hint: str = "") -> dict[str, Any]:
    """The result: ``measured``, ``free_gb``, and ``failed``/``msg`` when below ``min_gb``."""
    measured = nearest_directory(path)
    free_gb = round(shutil.disk_usage(measured).free / GIB, 1)
    result: dict[str, Any] = {"changed": False, "measured": str(measured), "free_gb": free_gb}
    where = str(measured)
    if measured != Path(path).absolute():
        where += f" (on the way to {path})"
    if free_gb < min_gb:
        text = f"{where} has {free_gb} GiB free; {setting} asks for {min_gb:.10g} GiB." + (
            f" {hint.strip()}" if hint.strip() else ""
        )
        result.update(failed=True, msg=f"{what.strip()}: {text}" if what.strip() else text)
    else:
        result["msg"] = f"{where}: {free_gb} GiB free"
    return result


def main() -> None:
    # Imported here, not at the top: check() stays importable by the unit tests without loading
    # ansible.module_utils (which patches sys.intern in the importing process).
    from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "min_gb": {"type": "float", "default": 0},
            "setting": {"type": "str", "default": "min_gb"},
            "what": {"type": "str", "default": ""},
            "hint": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    result = check(p["path"], p["min_gb"], p["setting"], p["what"], p["hint"])
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
