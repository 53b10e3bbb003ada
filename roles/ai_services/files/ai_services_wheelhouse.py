#!/usr/bin/env python3
"""Controller side of role ``ai_services``: the package wheel and a wheelhouse for one target.

Run by the role on the Ansible controller (``delegate_to: localhost``), once per target host; the
results are cached under ``--cache`` so that a second run builds and downloads nothing:

* the wheel is built from a snapshot of the source tree (``pyproject.toml``, its readme and
  license files, and the package directories named by ``[tool.setuptools.packages.find]``) into
  ``<cache>/build/<source hash>/``; the same sources give the same wheel, byte for byte
  (``SOURCE_DATE_EPOCH``), so an unchanged tree never looks like a new release. ``--wheel`` takes
  a given wheel instead;
* the runtime dependencies are downloaded with ``pip download --only-binary=:all:`` for the
  target's Python version, ABI and platforms, with the target's environment markers
  (``PIP_WITH_MARKERS``), into ``<cache>/deps/<requirements hash>/``, keyed by
  what decides their content (the wheel's ``Requires-Dist``, extras, extra requirements,
  constraints, target, indexes): a new build of the package with the same dependencies reuses it.

Prints one JSON object: ``changed`` (something was built or downloaded), ``pending`` (check mode:
something would be), ``wheel`` (path), ``wheel_name``, ``sha256``, ``name``, ``version``,
``deps_dir``, ``deps_tar`` (the same wheels as one archive, unpacking to ``deps-<key>/``) and
``deps`` (file names; empty without ``--download``). Errors: a JSON object with
``error`` on stdout and exit status 1. Standard library only, Python 3.11+ (tomllib).
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tomllib

#: Fixed timestamp of every file in a built wheel (the wheel package honours it).
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip file can hold
#: Files never copied into the build snapshot.
IGNORED = ("__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".mypy_cache", ".ruff_cache")
#: The dependency set as one archive (see write_tar).
TAR_NAME = "wheels.tar"
#: setuptools' default license-files patterns.
LICENSE_PATTERNS = ("LICEN[CS]E*", "COPYING*", "NOTICE*", "AUTHORS*")


class WheelhouseError(Exception):
    """A problem reported as ``{"error": ...}``."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One run at a time per cache (the role runs this once per host, in parallel forks)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def source_files(source: Path) -> list[Path]:
    """The files a wheel build reads, relative to ``source``, sorted."""
    pyproject = source / "pyproject.toml"
    if not pyproject.is_file():
        raise WheelhouseError(f"no pyproject.toml in {source}")
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WheelhouseError(f"cannot read {pyproject}: {exc}") from None
    files = {Path("pyproject.toml")}
    readme = project.get("project", {}).get("readme")
    if isinstance(readme, dict):
        readme = readme.get("file")
    if isinstance(readme, str) and (source / readme).is_file():
        files.add(Path(readme))
    for pattern in LICENSE_PATTERNS:
        files.update(p.relative_to(source) for p in source.glob(pattern) if p.is_file())
    for name in ("setup.py", "setup.cfg", "MANIFEST.in"):
        if (source / name).is_file():
            files.add(Path(name))
    find = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    roots = find.get("where") or []
    if not roots:
        raise WheelhouseError(
            "pyproject.toml has no [tool.setuptools.packages.find] where = [...]: "
            "cannot tell which directories hold the package"
        )
    for root in roots:
        base = source / root
        if not base.is_dir():
            raise WheelhouseError(f"package directory {base} does not exist")
        for directory, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
            for filename in filenames:
                if not _ignored(filename):
                    files.add((Path(directory) / filename).relative_to(source))
    return sorted(files)


def source_hash(source: Path, files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(sha256_file(source / rel).encode() + b"\n")
    return digest.hexdigest()


def build_wheel(source: Path, files: Sequence[Path], dest: Path, *, isolation: bool) -> Path:
    """Build the wheel from a snapshot of ``files`` (the source tree is never written to)."""
    with tempfile.TemporaryDirectory(prefix="ai-services-build-") as tmp:
        snapshot = Path(tmp) / "src"
        for rel in files:
            target = snapshot / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, target)
            target.chmod(0o644)
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out)]
        if not isolation:
            cmd.append("--no-build-isolation")
        cmd.append(str(snapshot))
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PYTHONHASHSEED="0")
        run(cmd, env=env, what="building the wheel")
        wheels = sorted(out.glob("*.whl"))
        if len(wheels) != 1:
            raise WheelhouseError(f"the build produced {len(wheels)} wheels, expected 1")
        dest.mkdir(parents=True, exist_ok=True)
        final = dest / wheels[0].name
        shutil.copyfile(wheels[0], final)
        return final


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr)[-4000:]
        raise WheelhouseError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")


def wheel_metadata(wheel: Path) -> tuple[str, str, list[str]]:
    """Name, version and ``Requires-Dist`` lines of a wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise WheelhouseError(f"{wheel} has no single .dist-info/METADATA")
            text = archive.read(names[0]).decode("utf-8")
    except (OSError, zipfile.BadZipFile) as exc:
        raise WheelhouseError(f"{wheel} is not a readable wheel: {exc}") from None
    meta = email.parser.Parser().parsestr(text, headersonly=True)
    name, version = meta.get("Name"), meta.get("Version")
    if not name or not version:
        raise WheelhouseError(f"{wheel}: METADATA lacks Name or Version")
    return str(name), str(version), sorted(str(r) for r in meta.get_all("Requires-Dist") or [])


#: pip with the target's environment markers. ``--python-version`` and ``--platform`` pick the
#: wheels and check Requires-Python, but pip evaluates the markers of the requirements for the
#: Python it runs on: a 3.11+ controller would leave out ``exceptiongroup; python_version <
#: "3.11"`` (anyio's, needed on Ubuntu 22.04's 3.10), a macOS controller torch's Linux-only
#: ``nvidia-*`` wheels. This runs pip with packaging's marker environment updated from argv[1].
PIP_WITH_MARKERS = """\
import json, sys
from pip._vendor.packaging import markers
target = json.loads(sys.argv.pop(1))
here = markers.default_environment
markers.default_environment = lambda: {**here(), **target}
from pip._internal.cli.main import main
sys.exit(main())
"""


def target_markers(python: str, machine: str) -> dict[str, str]:
    """The environment markers of CPython ``python`` on a Linux ``machine`` host."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": arch,
    }


def target_platforms(machine: str, glibc: str) -> list[str]:
    """pip ``--platform`` tags a glibc ``machine`` host accepts, newest first."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    try:
        major, minor = (int(part) for part in glibc.split(".")[:2])
    except ValueError:
        raise WheelhouseError(f"cannot read the target's glibc version {glibc!r}") from None
    if major != 2 or minor < 17:
        raise WheelhouseError(f"glibc {glibc} is older than manylinux2014 (2.17)")
    tags = [f"manylinux_2_{n}_{arch}" for n in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def download_deps(
    args: argparse.Namespace, wheel: Path, platforms: Sequence[str], dest: Path
) -> None:
    """``pip download`` the wheel's dependencies (and the extra requirements) into ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tmp-", dir=dest.parent) as tmp:
        work = Path(tmp) / "wheels"
        markers = json.dumps(target_markers(args.python, args.machine))
        cmd = [sys.executable, "-c", PIP_WITH_MARKERS, markers, "download", "--dest", str(work)]
        cmd += ["--only-binary=:all:", "--implementation", "cp"]
        cmd += ["--python-version", args.python, "--abi", "cp" + args.python.replace(".", "")]
        for platform in platforms:
            cmd += ["--platform", platform]
        if args.constraint:
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text("\n".join(args.constraint) + "\n", encoding="utf-8")
            cmd += ["--constraint", str(constraints)]
        extras = f"[{','.join(args.extra)}]" if args.extra else ""
        cmd += [f"{wheel}{extras}", *args.require]
        run(cmd, what="downloading the dependencies")
        (work / wheel.name).unlink(missing_ok=True)  # pip copies the requested wheel too
        write_tar(work, dest.name)
        (work / ".complete").write_text("ok\n", encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)


def write_tar(directory: Path, prefix: str) -> None:
    """``wheels.tar`` in ``directory``: its wheels under ``deps-<prefix>/``, reproducible.

    The role ships a dependency set to a host as this one file (one transfer, unpacked there)
    instead of one copy per wheel.
    """
    with tarfile.open(directory / TAR_NAME, "w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(f"deps-{prefix}")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(SOURCE_DATE_EPOCH)
        archive.addfile(info)
        for wheel in sorted(directory.glob("*.whl")):
            info = tarfile.TarInfo(f"deps-{prefix}/{wheel.name}")
            info.size, info.mode, info.mtime = wheel.stat().st_size, 0o644, int(SOURCE_DATE_EPOCH)
            with wheel.open("rb") as handle:
                archive.addfile(info, handle)


def deps_key(args: argparse.Namespace, requires: Sequence[str], platforms: Sequence[str]) -> str:
    what = {
        "requires_dist": list(requires),
        "extras": sorted(args.extra),
        "require": list(args.require),
        "constraints": list(args.constraint),
        "python": args.python,
        "platforms": list(platforms),
        # Sets downloaded before the target's markers applied lack the target's own dependencies.
        "markers": target_markers(args.python, args.machine),
        # pip reads its indexes from the environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL): an
        # index URL may carry credentials, never passed on a command line. Only hashed here.
        "index_url": os.environ.get("PIP_INDEX_URL", ""),
        "extra_index_urls": os.environ.get("PIP_EXTRA_INDEX_URL", "").split(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    cache = Path(args.cache).expanduser().resolve()
    changed = pending = False
    result: dict[str, Any] = {}
    with locked(cache):
        wheel: Path | None = None
        if args.wheel:
            given = Path(args.wheel).expanduser().resolve()
            if not given.is_file() or given.suffix != ".whl":
                raise WheelhouseError(f"the given wheel {args.wheel} is not a .whl file")
            wheel = given
        else:
            source = Path(args.source).expanduser().resolve()
            files = source_files(source)
            build_dir = cache / "build" / source_hash(source, files)[:24]
            built = sorted(build_dir.glob("*.whl")) if (build_dir / ".complete").is_file() else []
            if built:
                wheel = built[0]
            elif args.check:
                pending = True
            else:
                shutil.rmtree(build_dir, ignore_errors=True)
                wheel = build_wheel(source, files, build_dir, isolation=args.build_isolation)
                (build_dir / ".complete").write_text("ok\n", encoding="utf-8")
                changed = True
        if wheel is None:
            return {"changed": False, "pending": True, "wheel": "", "sha256": "", "deps": []}
        name, version, requires = wheel_metadata(wheel)
        result = {
            "wheel": str(wheel),
            "wheel_name": wheel.name,
            "sha256": sha256_file(wheel),
            "name": name,
            "version": version,
            "deps_dir": "",
            "deps_tar": "",
            "deps": [],
        }
        if args.download:
            platforms = target_platforms(args.machine, args.glibc)
            deps_dir = cache / "deps" / deps_key(args, requires, platforms)[:24]
            if not (deps_dir / ".complete").is_file():
                if args.check:
                    pending = True
                else:
                    download_deps(args, wheel, platforms, deps_dir)
                    changed = True
            elif not (deps_dir / TAR_NAME).is_file():  # a cache from before the archive
                if args.check:
                    pending = True
                else:
                    write_tar(deps_dir, deps_dir.name)
                    changed = True
            result["deps_dir"] = str(deps_dir)
            result["deps_tar"] = str(deps_dir / TAR_NAME)
            if deps_dir.is_dir():
                result["deps"] = sorted(p.name for p in deps_dir.glob("*.whl"))
    result.update(changed=changed, pending=pending)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", required=True, help="cache directory on the controller")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="source tree holding pyproject.toml")
    src.add_argument("--wheel", help="a given wheel instead of a build")
    p.add_argument("--no-build-isolation", dest="build_isolation", action="store_false")
    p.add_argument("--download", action="store_true", help="also download the dependencies")
    p.add_argument("--python", default="", help="target Python version, X.Y")
    p.add_argument("--machine", default="x86_64", help="target machine (uname -m)")
    p.add_argument("--glibc", default="", help="target glibc version, 2.N")
    p.add_argument("--extra", action="append", default=[], help="package extra to include")
    p.add_argument("--require", action="append", default=[], help="another requirement")
    p.add_argument("--constraint", action="append", default=[], help="a constraint line")
    p.add_argument("--check", action="store_true", help="report, build and download nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.download and (not args.python or not args.glibc):
            raise WheelhouseError("--download needs --python and --glibc")
        if args.python and not all(part.isdigit() for part in args.python.split(".")):
            raise WheelhouseError(f"--python must be X.Y, got {args.python!r}")
        result = resolve(args)
    except WheelhouseError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
