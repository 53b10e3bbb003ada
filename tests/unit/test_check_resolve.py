"""requirements/check_resolve.py's pure parts: the node set's inputs, pins and pip's blame.

The resolutions themselves run against the index in ``make resolve-check`` (CI), not here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_resolve", ROOT / "requirements" / "check_resolve.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cr = load()


def test_package_requirements_are_the_dependencies_and_the_vision_extra() -> None:
    specs = cr.package_requirements()
    names = {cr.normalised(spec.split(">")[0].split("<")[0].split("=")[0]) for spec in specs}
    assert {"httpx", "pydantic", "pillow", "typing-extensions", "torch", "transformers"} <= names


def test_node_platforms_are_glibc_2_35_linux() -> None:
    assert set(cr.NODE_PLATFORMS) == {"linux-x86_64", "linux-aarch64"}
    for tags in cr.NODE_PLATFORMS.values():
        assert tags[0].startswith("manylinux_2_35_")
        assert tags[-1].startswith("manylinux2014_")
    assert cr.NODE_PYTHONS == ("3.10", "3.11", "3.12", "3.13")


def test_the_node_set_pins_every_package_once() -> None:
    pins = cr.read_pins(cr.NODE_CONSTRAINTS)
    assert all("==" in line for line in pins.values())
    assert {"torch", "transformers", "pillow", "exceptiongroup"} <= set(pins)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Pillow", "pillow"), ("typing_extensions", "typing-extensions"), ("a.b__C", "a-b-c")],
)
def test_normalised(name: str, expected: str) -> None:
    assert cr.normalised(name) == expected


def test_blamed_names_the_pins_pip_cannot_have() -> None:
    error = (
        "ERROR: Cannot install Pillow<14 and >=10.1 because these package versions have "
        "conflicting dependencies.\n"
        "The conflict is caused by:\n"
        "    The user requested Pillow<14 and >=10.1\n"
        "    The user requested (constraint) pillow==13.0.0\n"
        "Additionally, some packages in these conflicts have no matching distributions "
        "available for your environment:\n"
        "    pillow\n"
        "    Soup_Sieve\n"
        "\n"
        "ERROR: Package 'networkx' requires a different Python: 3.10.0 not in '>=3.11'\n"
    )
    assert cr.blamed(error) == {"pillow", "soup-sieve", "networkx"}


def test_linux_markers_follow_the_tags() -> None:
    markers = cr.linux_markers("3.10", cr.NODE_PLATFORMS["linux-aarch64"])
    assert markers["python_version"] == "3.10"
    assert markers["platform_machine"] == "aarch64"
    assert markers["sys_platform"] == "linux"


def test_pip_runs_with_the_target_markers(tmp_path: Path) -> None:
    # The wrapper evaluates markers for the target, not for this Python.
    markers = cr.linux_markers("3.10", cr.NODE_PLATFORMS["linux-aarch64"])
    probe = (
        "from pip._vendor.packaging.markers import Marker; "
        'print(Marker(\'python_version < "3.11" and platform_machine == "aarch64"\').evaluate())'
    )
    code = cr.PIP_WITH_MARKERS.replace(
        "from pip._internal.cli.main import main\nsys.exit(main())\n", probe
    )
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(markers)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.strip() == "True"
    cmd = cr.pip_command(
        cr.NODE_PLATFORMS["linux-x86_64"],
        "3.10",
        tmp_path / "c.txt",
        [],
        ["torch"],
        tmp_path / "r.json",
        markers,
    )
    assert cmd[:3] == [sys.executable, "-c", cr.PIP_WITH_MARKERS]
    assert json.loads(cmd[3]) == markers
    assert cmd[4:6] == ["install", "--dry-run"]
    assert "--python-version" in cmd and cmd[-1] == "torch"
