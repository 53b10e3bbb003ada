#!/usr/bin/env python3
"""Check that a requirement set resolves, from wheels, for every platform a controller runs on.

Installs nothing: for each platform and Python version it runs ``pip install --dry-run
--ignore-installed --only-binary=:all: --platform ... --python-version ... --implementation cp``
with the lock (``-c requirements/constraints.txt``) and the set (``-r requirements/controller.in``
by default), and prints one line per combination, ``ok`` with the number of packages or
``FAILED`` with pip's error. Exit status: 0 when everything resolves, 1 when something does not,
2 on bad arguments.

pip's own configuration applies (index, extra indexes, find-links, a global constraint file):
the check asks the indexes this machine installs from. On a plain machine that is PyPI.

Only wheels: pip refuses ``--no-binary`` (and ``--prefer-binary`` without ``--only-binary``)
together with ``--platform``, because an sdist would have to be built on this machine to learn
its dependencies. Every package of the controller set ships a wheel today; one that ships only an
sdist makes the check fail with pip's "No matching distribution" for it. Such a package (pure
Python) would be checked by itself, ``--no-deps``, with its dependencies listed in the set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def manylinux(arch: str, glibc_minor: int = 28) -> tuple[str, ...]:
    """Every manylinux tag a glibc 2.<glibc_minor> machine accepts.

    pip expands a macOS --platform to every older macOS and ``manylinux2014`` to the older legacy
    tags, but takes a ``manylinux_2_X`` tag literally: a wheel tagged only ``manylinux_2_17``
    would not match ``manylinux_2_28`` alone.
    """
    versioned = (f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, 4, -1))
    return (*versioned, f"manylinux2014_{arch}")


#: Platform name -> pip --platform tags, for the oldest system of each: macOS 11 on Apple silicon,
#: macOS 12 on Intel; glibc 2.28 on Linux (Debian 10+, Ubuntu 20.04+, RHEL 8+).
PLATFORMS: dict[str, tuple[str, ...]] = {
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x86_64": ("macosx_12_0_x86_64",),
    "linux-x86_64": manylinux("x86_64"),
    "linux-aarch64": manylinux("aarch64"),
}
#: The controller's Python versions: 3.11 is the floor (ansible-core 2.19); `make venv` may pick
#: any of these.
PYTHONS = ("3.11", "3.12", "3.13")


def pip_command(
    tags: Sequence[str],
    python: str,
    constraint: Path,
    requirements: Sequence[Path],
    specs: Sequence[str],
    report: Path,
) -> list[str]:
    """The pip command that resolves the set for one platform and Python version."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in tags:
        cmd += ["--platform", tag]
    cmd += ["--report", str(report), "-c", str(constraint)]
    for req in requirements:
        cmd += ["-r", str(req)]
    return [*cmd, *specs]


def shown(path: Path) -> str:
    """A path as the user gave it, or relative to the repository when it lies inside."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def pip_error(output: str) -> str:
    """pip's error, from its first ERROR line (its warnings about extra indexes are noise here)."""
    lines = [line for line in output.splitlines() if line.strip() and "WARNING" not in line]
    first = next((i for i, line in enumerate(lines) if line.startswith("ERROR")), len(lines) - 5)
    return "\n".join(lines[max(first, 0) :]) or "(no output)"


def check(
    name: str,
    python: str,
    constraint: Path,
    requirements: Sequence[Path],
    specs: Sequence[str],
) -> bool:
    """Resolve for one platform and Python version; print the outcome; True when it resolved."""
    with tempfile.TemporaryDirectory(prefix="check-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = pip_command(PLATFORMS[name], python, constraint, requirements, specs, report)
        res = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
        label = f"{name} / cp{python}"
        if res.returncode != 0:
            error = pip_error(res.stdout).replace("\n", "\n    ")
            print(f"  {label}: FAILED (pip rc={res.returncode})\n    {error}", flush=True)
            return False
        installs = json.loads(report.read_text(encoding="utf-8")).get("install", [])
        print(f"  {label}: ok ({len(installs)} packages)", flush=True)
        return True


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check, installing nothing, that a requirement set resolves from wheels for "
        "macOS and Linux controllers."
    )
    parser.add_argument(
        "-c",
        "--constraint",
        type=Path,
        default=ROOT / "requirements" / "constraints.txt",
        help="the lock (default: requirements/constraints.txt)",
    )
    parser.add_argument(
        "-r",
        "--requirement",
        type=Path,
        action="append",
        help="a requirements file, repeatable (default: requirements/controller.in)",
    )
    parser.add_argument(
        "--platform",
        action="append",
        choices=sorted(PLATFORMS),
        help="a platform, repeatable (default: all)",
    )
    parser.add_argument(
        "--python",
        action="append",
        help=f"a Python version X.Y, repeatable (default: {' '.join(PYTHONS)})",
    )
    parser.add_argument("specs", nargs="*", help="more requirements, e.g. 'torch'")
    args = parser.parse_args(argv)
    if args.requirement is None:
        args.requirement = [ROOT / "requirements" / "controller.in"]
    for path in [args.constraint, *args.requirement]:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    for python in args.python or []:
        major, _, minor = python.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            parser.error(f"--python {python}: expected a version X.Y, e.g. 3.11")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    platforms: list[str] = args.platform or list(PLATFORMS)
    pythons: list[str] = args.python or list(PYTHONS)
    what = " ".join([*(shown(p) for p in args.requirement), *args.specs])
    lock = shown(args.constraint)
    print(f"resolving {what} with {lock} (wheels only, nothing installed):", flush=True)
    failed = [
        f"{name}/cp{python}"
        for name in platforms
        for python in pythons
        if not check(name, python, args.constraint, args.requirement, args.specs)
    ]
    if failed:
        print(f"resolve-check failed: {' '.join(failed)}", flush=True)
        return 1
    print(f"resolve-check ok: {len(platforms) * len(pythons)} platform/Python combinations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
