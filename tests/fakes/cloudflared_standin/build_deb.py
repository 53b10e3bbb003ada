#!/usr/bin/env python3
"""Package a vendor stand-in (a test fixture) as a Debian package, reproducibly.

Usage::

    python3 tests/fakes/cloudflared_standin/build_deb.py tests/fakes/cloudflared_standin --out DIR
    python3 tests/fakes/cloudflared_standin/build_deb.py tests/fakes/tailscale_standin --out DIR

Reads ``manifest.json`` in the stand-in directory (package, version, depends, description and the
files with their destinations and modes), lays the files out like the vendor's package, and runs
``dpkg-deb --build``. Timestamps, ownership and compression are fixed, so the same sources give
the same bytes and the same sha256: the roles' artifact override sees "no change" on a second
converge. Prints one JSON object: ``{"package", "version", "arch", "path", "sha256"}``, writes
it to ``<out>/<package>.json`` (so an inventory can look the artifact up without knowing the
architecture) and writes ``<path>.sha256`` (``sha256sum`` format). An unchanged package is not
rewritten.

These packages exist only for tests: the roles install them through their local-artifact
override (``*_artifact_local_path`` + ``*_artifact_sha256``), never by default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

EPOCH = 1_700_000_000  # fixed mtime of every packaged file (reproducible builds)
VERSION_LINE = re.compile(r'^STANDIN_VERSION = "[^"]*"$', re.MULTILINE)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class BuildError(Exception):
    """A bad manifest or a failing dpkg-deb: printed, exit status 1."""


def host_arch() -> str:
    try:
        res = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot ask dpkg for the architecture: {exc}") from exc
    return res.stdout.strip()


def load_manifest(standin_dir: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((standin_dir / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"{standin_dir}/manifest.json: {exc}") from exc
    for key in ("package", "version", "description", "files"):
        if key not in manifest:
            raise BuildError(f"{standin_dir}/manifest.json lacks {key!r}")
    if not NAME_RE.match(manifest["package"]):
        raise BuildError(f"bad package name {manifest['package']!r}")
    return manifest


def lay_out(
    standin_dir: Path, manifest: dict[str, Any], version: str, arch: str, root: Path
) -> None:
    conffiles: list[str] = []
    for entry in manifest["files"]:
        src = standin_dir / entry["src"]
        dest = root / entry["dest"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = src.read_text(encoding="utf-8")
        if entry.get("version_line"):
            if not VERSION_LINE.search(text):
                raise BuildError(f"{src} has no STANDIN_VERSION line to stamp")
            text = VERSION_LINE.sub(f'STANDIN_VERSION = "{version}"', text, count=1)
        dest.write_text(text, encoding="utf-8")
        dest.chmod(int(entry["mode"], 8))
        if entry.get("conffile"):
            conffiles.append("/" + entry["dest"])
    debian = root / "DEBIAN"
    debian.mkdir()
    size_kib = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024 + 1
    control = [
        f"Package: {manifest['package']}",
        f"Version: {version}",
        f"Architecture: {arch}",
        "Maintainer: ai-local-core tests <tests@ai-local-core.invalid>",
        f"Installed-Size: {size_kib}",
    ]
    if manifest.get("depends"):
        control.append(f"Depends: {manifest['depends']}")
    control += [
        "Section: net",
        "Priority: optional",
        f"Description: {manifest['description']}",
        " Built by tests/fakes/cloudflared_standin/build_deb.py for Molecule tests only.",
    ]
    (debian / "control").write_text("\n".join(control) + "\n")
    if conffiles:
        (debian / "conffiles").write_text("\n".join(conffiles) + "\n")
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))


def build(
    standin_dir: Path, out_dir: Path, version: str | None, arch: str | None
) -> dict[str, str]:
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb not found (apt-get install dpkg)")
    manifest = load_manifest(standin_dir)
    version = version or manifest["version"]
    arch = arch or host_arch()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['package']}_{version}_{arch}.deb"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        lay_out(standin_dir, manifest, version, arch, root)
        built = Path(tmp) / target.name
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
        res = subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z9", "--build", str(root), str(built)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if res.returncode != 0:
            raise BuildError(f"dpkg-deb failed: {res.stderr.strip()}")
        data = built.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not target.exists() or target.read_bytes() != data:
        target.write_bytes(data)
    Path(f"{target}.sha256").write_text(f"{digest}  {target.name}\n")
    result = {
        "package": manifest["package"],
        "version": version,
        "arch": arch,
        "path": str(target.resolve()),
        "sha256": digest,
    }
    (out_dir / f"{manifest['package']}.json").write_text(json.dumps(result) + "\n")
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("standin_dir", type=Path, help="directory with manifest.json")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--version", help="package version (default: the manifest's)")
    parser.add_argument("--arch", help="Debian architecture (default: dpkg --print-architecture)")
    args = parser.parse_args(argv)
    try:
        result = build(args.standin_dir, args.out, args.version, args.arch)
    except BuildError as exc:
        print(f"build_deb: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
