#!/usr/bin/env python3
"""Check that the controller set and the node set resolve, from wheels, on every platform.

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

The node set (``roles/ai_services/files/node-constraints.txt``) is what role ``ai_services``
installs on a node, in the node's own Python: 3.10 on Ubuntu 22.04, 3.12 on 24.04 (3.11 and 3.13
on the Debian 12/13 test hosts). The second check resolves the package's own requirements,
``[project].dependencies`` and the ``vision`` extra read from ``pyproject.toml`` (the package is
not built), with the node set for CPython 3.10 to 3.13 on Linux x86_64 and aarch64 with glibc 2.35
(Ubuntu 22.04, the oldest node), evaluating the requirements' environment markers for that
Python and machine (PIP_WITH_MARKERS; pip alone evaluates them for the Python it runs on, and a
3.11 controller would miss anyio's ``exceptiongroup; python_version < "3.11"``). ``--set`` picks
one of the two checks.

``--lock-node`` writes the node set instead (``make lock-node``): one ``==`` pin per package that
one of those eight combinations installs. It prefers the versions of the lock
(requirements/constraints.txt); a pin of the lock that does not resolve somewhere (no wheel for
CPython 3.10, a Requires-Python that leaves 3.10 out, a conflict with such a package) is dropped,
and that package takes the newest version pip finds for the first combination that needs it. Every
later combination is resolved with the pins chosen so far, so one version serves all eight.

Run time: pip learns a wheel's dependencies from the metadata file PyPI serves next to it (PEP
658); an index without those files makes it download the wheels themselves, torch and its nvidia-*
wheels included (GBs per combination of the node set): ~90 s for the eight there, on a fast
mirror. A find-links directory with a local torch build (2.13.0+cpu) satisfies torch==2.13.0 for
its Python and resolves fewer packages (no nvidia-*): pip's configuration applies here too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

#: The nodes' platforms: glibc 2.35 is Ubuntu 22.04's, the oldest node (Ubuntu 24.04: 2.39; the
#: Debian 12/13 test hosts: 2.36, 2.41).
NODE_PLATFORMS: dict[str, tuple[str, ...]] = {
    "linux-x86_64": manylinux("x86_64", 35),
    "linux-aarch64": manylinux("aarch64", 35),
}
#: The nodes' own Pythons: Ubuntu 22.04 (3.10), Debian 12 (3.11), Ubuntu 24.04 (3.12), Debian 13
#: (3.13). The package keeps to 3.10 (ruff's target-version, mypy's python_version).
NODE_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
#: The package's extras the node set covers (role ai_services installs `vision` on request).
NODE_EXTRAS = ("vision",)
#: The node set: what role ai_services deploys (ai_services_pinned_set).
NODE_CONSTRAINTS = ROOT / "roles" / "ai_services" / "files" / "node-constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
#: The node set's header (then one `name==version` line per package, sorted by name).
NODE_HEADER = """\
# The node set: the pinned Python packages role ai_services installs into a node's virtualenv
# (ai_services_pinned_set: true), in the node's own Python. Every runtime dependency of the
# ai-local-core package, the vision extra included (torch, transformers, and the nvidia-* and
# triton wheels of PyPI's CUDA torch build, unused with a CPU torch build), one version each that
# installs from wheels on CPython 3.10, 3.11, 3.12 and 3.13, Linux x86_64 and aarch64, glibc 2.35+.
# Generated, do not edit: `make lock-node` (requirements/check_resolve.py --lock-node) resolves
# pyproject.toml's dependencies + [vision], preferring the versions of requirements/constraints.txt
# (the newest that resolves where those do not); `make resolve-check` checks it (installs nothing).
# Override one pin in the inventory: ai_services_constraints: ["torch==X.Y.Z"].
"""


#: pip with the environment markers of another machine. `--python-version` and `--platform` pick
#: wheels and check Requires-Python, but pip evaluates the markers of the requirements
#: (`exceptiongroup; python_version < "3.11"`, `triton; platform_machine == "x86_64"`) for the
#: Python it runs on: this runs pip with packaging's marker environment updated from argv[1].
def _wheelhouse() -> Any:
    """Role ai_services' wheelhouse script, the one place that knows how pip must see a target's
    environment markers (PIP_WITH_MARKERS, target_markers): loaded from its file."""
    path = ROOT / "roles" / "ai_services" / "files" / "ai_services_wheelhouse.py"
    spec = importlib.util.spec_from_file_location("ai_services_wheelhouse", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_WHEELHOUSE = _wheelhouse()
#: ``python -c PIP_WITH_MARKERS MARKERS_JSON pip-args...``: pip with the target's markers.
PIP_WITH_MARKERS: str = _WHEELHOUSE.PIP_WITH_MARKERS


def linux_markers(python: str, tags: Sequence[str]) -> dict[str, str]:
    """The marker environment of CPython ``python`` on the Linux machine of manylinux ``tags``."""
    machine = tags[0].split("_", 3)[-1] if tags[0].startswith("manylinux_") else "x86_64"
    markers: dict[str, str] = _WHEELHOUSE.target_markers(python, machine)
    return markers


def pip_command(
    tags: Sequence[str],
    python: str,
    constraint: Path,
    requirements: Sequence[Path],
    specs: Sequence[str],
    report: Path,
    markers: dict[str, str] | None = None,
) -> list[str]:
    """The pip command that resolves the set for one platform and Python version.

    ``markers``: evaluate environment markers for that environment (PIP_WITH_MARKERS) instead of
    this machine's.
    """
    cmd = [sys.executable, "-m", "pip"]
    if markers is not None:
        cmd = [sys.executable, "-c", PIP_WITH_MARKERS, json.dumps(markers)]
    cmd += ["install", "--dry-run", "--ignore-installed"]
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


def resolve(
    tags: Sequence[str],
    python: str,
    constraint: Path,
    requirements: Sequence[Path],
    specs: Sequence[str],
    markers: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]] | None, str]:
    """pip's resolution for one platform and Python: (its installs, "") or (None, its error)."""
    with tempfile.TemporaryDirectory(prefix="check-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = pip_command(tags, python, constraint, requirements, specs, report, markers)
        res = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
        if res.returncode != 0:
            return None, f"(pip rc={res.returncode})\n{pip_error(res.stdout)}"
        installs: list[dict[str, Any]] = json.loads(report.read_text(encoding="utf-8")).get(
            "install", []
        )
        return installs, ""


def check(
    name: str,
    python: str,
    constraint: Path,
    requirements: Sequence[Path],
    specs: Sequence[str],
    platforms: dict[str, tuple[str, ...]] = PLATFORMS,
) -> tuple[bool, str]:
    """Resolve for one platform and Python version: (True when it resolved, the line to print).

    The node set's platforms get their own environment markers; the controller check keeps
    this machine's (as it always did).
    """
    tags = platforms[name]
    markers = linux_markers(python, tags) if platforms is NODE_PLATFORMS else None
    installs, error = resolve(tags, python, constraint, requirements, specs, markers)
    label = f"{name} / cp{python}"
    if installs is None:
        return False, f"  {label}: FAILED {error}".replace("\n", "\n    ")
    return True, f"  {label}: ok ({len(installs)} packages)"


def check_all(
    combinations: Sequence[tuple[str, str]],
    jobs: int,
    constraint: Path,
    requirements: Sequence[Path],
    specs: Sequence[str],
    platforms: dict[str, tuple[str, ...]] = PLATFORMS,
) -> list[str]:
    """Check (platform, Python) combinations, ``jobs`` pips at a time; print each outcome in order.

    Returns the ``platform/cpX.Y`` of those that did not resolve.
    """
    failed: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures = [
            pool.submit(check, name, python, constraint, requirements, specs, platforms)
            for name, python in combinations
        ]
        for (name, python), future in zip(combinations, futures, strict=True):
            ok, line = future.result()
            print(line, flush=True)
            if not ok:
                failed.append(f"{name}/cp{python}")
    return failed


def normalised(name: str) -> str:
    """A project name as PEP 503 compares it (role ai_services merges pins by it too)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The package's runtime requirements with its NODE_EXTRAS, read from pyproject.toml.

    Read, not built: ``[project].dependencies`` and ``[project.optional-dependencies]``.
    """
    # tomllib is 3.11+: this script runs on the controller (3.11+), while mypy checks the
    # project as Python 3.10 (the nodes' floor), where a plain `import tomllib` does not exist.
    tomllib = importlib.import_module("tomllib")
    project: dict[str, Any] = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    missing = [extra for extra in NODE_EXTRAS if extra not in extras]
    if missing:
        raise SystemExit(f"{shown(pyproject)}: no optional dependencies {' '.join(missing)}")
    specs: list[str] = list(project.get("dependencies", []))
    for extra in NODE_EXTRAS:
        specs += extras[extra]
    return specs


def read_pins(path: Path) -> dict[str, str]:
    """The ``name==version`` lines of a constraints file, by normalised name."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, _ = line.partition("==")
        if sep:
            pins[normalised(name.strip())] = line
    return pins


#: Where pip's error names a pin that cannot be had: a constraint in a conflict, a package with no
#: distribution for the target, a release whose Requires-Python leaves the target out.
BLAMED = (
    re.compile(r"requested \(constraint\) ([A-Za-z0-9._-]+)"),
    re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)"),
    re.compile(r"satisfies the requirement ([A-Za-z0-9._-]+)"),
    re.compile(r"Package '([A-Za-z0-9._-]+)' requires a different Python"),
)


def blamed(error: str) -> set[str]:
    """Normalised names pip's error blames, including its list of packages without a wheel."""
    names = {normalised(m.group(1)) for rx in BLAMED for m in rx.finditer(error)}
    lines = error.splitlines()
    for i, line in enumerate(lines):
        if "no matching distributions available" in line:
            for item in lines[i + 1 :]:
                if not item.startswith("    ") or not item.strip():
                    break
                names.add(normalised(item.strip()))
    return names


def lock_node(out: Path, lock: Path) -> int:
    """Write the node set to ``out`` (see the module's docstring); 0 on success, 1 on failure."""
    specs = package_requirements()
    preferred = read_pins(lock)
    chosen: dict[str, str] = {}
    dropped: set[str] = set()
    print(
        f"locking the node set ({shown(PYPROJECT)} + [{','.join(NODE_EXTRAS)}]) into "
        f"{shown(out)}, preferring {shown(lock)}:",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="lock-node-") as tmp:
        pins_file = Path(tmp) / "pins.txt"
        for name, tags in NODE_PLATFORMS.items():
            for python in NODE_PYTHONS:
                label = f"{name} / cp{python}"
                while True:
                    pins = {k: v for k, v in preferred.items() if k not in dropped} | chosen
                    pins_file.write_text("\n".join(sorted(pins.values())) + "\n", encoding="utf-8")
                    markers = linux_markers(python, tags)
                    installs, error = resolve(tags, python, pins_file, [], specs, markers)
                    if installs is not None:
                        break
                    blame = (blamed(error) & set(preferred)) - dropped - set(chosen)
                    if not blame:
                        print(f"  {label}: FAILED {error}".replace("\n", "\n    "), flush=True)
                        return 1
                    for key in sorted(blame):
                        print(
                            f"  {label}: {preferred[key]} does not resolve here: left out, "
                            "the newest that resolves is taken",
                            flush=True,
                        )
                    dropped |= blame
                added = 0
                for item in installs:
                    meta = item["metadata"]
                    # Public versions only: a local build (torch's +cpu) satisfies ==X too.
                    pin = f"{meta['name']}=={str(meta['version']).split('+', 1)[0]}"
                    key = normalised(meta["name"])
                    if key in chosen and normalised(chosen[key]) != normalised(pin):
                        print(f"  {label}: FAILED: {pin}, but {chosen[key]} elsewhere", flush=True)
                        return 1
                    added += key not in chosen
                    chosen.setdefault(key, pin)
                print(f"  {label}: ok ({len(installs)} packages, {added} new pins)", flush=True)
    tmp_out = out.with_name(out.name + ".new")
    lines = [chosen[key] for key in sorted(chosen)]
    tmp_out.write_text(NODE_HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    tmp_out.replace(out)
    print(f"wrote {shown(out)}: {len(lines)} pins", flush=True)
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check, installing nothing, that a requirement set resolves from wheels for "
        "macOS and Linux controllers, and that the node set resolves for the nodes' Pythons."
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
        help="a platform, repeatable (default: all; the node set: the Linux ones)",
    )
    parser.add_argument(
        "--python",
        action="append",
        help=f"a Python version X.Y, repeatable (default: {' '.join(PYTHONS)}; "
        f"the node set: {' '.join(NODE_PYTHONS)})",
    )
    parser.add_argument(
        "--set",
        action="append",
        choices=("controller", "node"),
        dest="sets",
        help="which check, repeatable (default: both): controller, the -r files and specs with "
        "-c; node, the package's requirements + [vision] (pyproject.toml) with --node-constraint",
    )
    parser.add_argument(
        "--node-constraint",
        type=Path,
        default=NODE_CONSTRAINTS,
        help=f"the node set (default: {shown(NODE_CONSTRAINTS)})",
    )
    parser.add_argument(
        "--lock-node",
        action="store_true",
        help="write the node set (to --node-constraint, preferring the versions of -c) "
        "instead of checking",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        help="resolutions run at once (default: 1; on a small machine more pips at once, each "
        "downloading wheels whose index serves no separate metadata, are slower, not faster)",
    )
    parser.add_argument("specs", nargs="*", help="more requirements, e.g. 'torch'")
    args = parser.parse_args(argv)
    if args.requirement is None:
        args.requirement = [ROOT / "requirements" / "controller.in"]
    if args.sets is None:
        args.sets = ["controller", "node"]
    paths = [args.constraint, *args.requirement] if "controller" in args.sets else []
    if args.lock_node:
        paths = [args.constraint]
    elif "node" in args.sets:
        paths.append(args.node_constraint)
    for path in paths:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    for python in args.python or []:
        major, _, minor = python.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            parser.error(f"--python {python}: expected a version X.Y, e.g. 3.11")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.lock_node:
        return lock_node(args.node_constraint, args.constraint)
    failed: list[str] = []
    combinations = 0
    if "controller" in args.sets:
        platforms: list[str] = args.platform or list(PLATFORMS)
        pythons: list[str] = args.python or list(PYTHONS)
        what = " ".join([*(shown(p) for p in args.requirement), *args.specs])
        lock = shown(args.constraint)
        print(f"resolving {what} with {lock} (wheels only, nothing installed):", flush=True)
        pairs = [(name, python) for name in platforms for python in pythons]
        failed += check_all(pairs, args.jobs, args.constraint, args.requirement, args.specs)
        combinations += len(pairs)
    if "node" in args.sets:
        nodes = [name for name in args.platform or NODE_PLATFORMS if name in NODE_PLATFORMS]
        node_pythons: list[str] = args.python or list(NODE_PYTHONS)
        specs = package_requirements()
        what = f"{shown(PYPROJECT)}'s requirements + [{','.join(NODE_EXTRAS)}]"
        lock = shown(args.node_constraint)
        print(
            f"resolving the node set, {what} with {lock} (wheels only, glibc 2.35, "
            "nothing installed):",
            flush=True,
        )
        pairs = [(name, python) for name in nodes for python in node_pythons]
        node_failed = check_all(pairs, args.jobs, args.node_constraint, [], specs, NODE_PLATFORMS)
        failed += [f"node:{combination}" for combination in node_failed]
        combinations += len(pairs)
    if failed:
        print(f"resolve-check failed: {' '.join(failed)}", flush=True)
        return 1
    print(f"resolve-check ok: {combinations} platform/Python combinations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
