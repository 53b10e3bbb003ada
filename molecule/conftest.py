"""pytest configuration shared by every scenario's testinfra suite.

Molecule hands testinfra its Ansible inventory, and testinfra then runs every check as an Ansible
ad-hoc module call (seconds each), because it has no native backend for Ansible's ``podman``
connection. Our test hosts are podman containers, so the ``host`` fixture is swapped for
testinfra's native podman backend (``podman exec``), which is an order of magnitude faster. Hosts
that are not local podman containers (the qemu VM over SSH) keep the backend testinfra chose.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache

import pytest
import testinfra


@cache
def _podman_container_exists(name: str) -> bool:
    if shutil.which("podman") is None:
        return False
    res = subprocess.run(["podman", "container", "exists", name], check=False)
    return res.returncode == 0


@pytest.fixture(scope="module")
def host(_testinfra_host):  # type: ignore[no-untyped-def]
    backend = _testinfra_host.backend
    name = getattr(backend, "host", None)
    if backend.NAME == "ansible" and isinstance(name, str) and _podman_container_exists(name):
        return testinfra.get_host(f"podman://{name}")
    return _testinfra_host
