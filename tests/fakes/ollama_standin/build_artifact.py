#!/usr/bin/env python3
"""Package the Ollama stand-in like an official Ollama release archive (a test fixture).

The official Linux archive unpacks to ``bin/ollama`` and ``lib/ollama/``. This script builds the
same layout around the stand-in: ``bin/ollama`` is the stand-in's launcher, ``lib/ollama/`` holds
its Python modules, a ``VERSION`` file (the stand-in reports that version) and a dummy shared
library, so the role's unpack, link and version checks see a realistic tree. The archive is a
``.tar.zst`` (compressed with the ``zstd`` command) or a ``.tgz`` when the output name ends so.

The output is byte-for-byte reproducible for the same stand-in sources and version (fixed
mtimes, owners and member order), so its sha256 is stable across runs.

Usage: build_artifact.py --version 0.90.0 --out DIR/ollama-linux-amd64.tar.zst
Prints ``<sha256>  <path>`` (sha256sum format) on stdout; ``--sha256-file`` also writes it there.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "ollama"
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
MTIME = 1_700_000_000  # fixed, so the archive is reproducible


def _member(name: str, data: bytes, mode: int) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info, data


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_tar(version: str) -> bytes:
    """The uncompressed tar stream in the official layout."""
    if not LAUNCHER.is_file():
        raise SystemExit(f"error: the stand-in launcher {LAUNCHER} is missing")
    modules = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if not any(p.name == "__init__.py" for p in modules):
        raise SystemExit(f"error: the stand-in package in {HERE} has no __init__.py")
    files = [_member("./bin/ollama", LAUNCHER.read_bytes(), 0o755)]
    files += [_member(f"./lib/ollama/{p.name}", p.read_bytes(), 0o644) for p in modules]
    files.append(_member("./lib/ollama/VERSION", f"{version}\n".encode(), 0o644))
    # A stand-in for the bundled runtime libraries (the real archive carries libggml and CUDA).
    files.append(_member("./lib/ollama/libggml-base.so", b"\x7fELF stand-in library\n", 0o644))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for directory in ("./bin", "./lib", "./lib/ollama"):
            tar.addfile(_directory(directory))
        for info, data in files:
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def compress(raw: bytes, out: Path, dest: Path) -> None:
    """Compress ``raw`` as ``out``'s suffix says, writing to ``dest``."""
    if out.name.endswith(".tar.zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise SystemExit("error: the zstd command is needed to build a .tar.zst artifact")
        res = subprocess.run(
            [zstd, "-q", "-19", "--no-check", "-c"], input=raw, capture_output=True, check=False
        )
        if res.returncode != 0:
            raise SystemExit(f"error: zstd failed: {res.stderr.decode(errors='replace')}")
        dest.write_bytes(res.stdout)
    elif out.name.endswith((".tgz", ".tar.gz")):
        dest.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    else:
        raise SystemExit("error: --out must end with .tar.zst or .tgz")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="version the stand-in reports")
    parser.add_argument("--out", required=True, type=Path, help="archive path (.tar.zst/.tgz)")
    parser.add_argument("--sha256-file", type=Path, help="also write '<sha256>  <name>' here")
    args = parser.parse_args(argv)
    if not VERSION_RE.match(args.version):
        parser.error(f"--version {args.version!r} is not a version like 0.90.0")
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    compress(build_tar(args.version), out, part)
    part.replace(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    line = f"{digest}  {out.name}\n"
    if args.sha256_file is not None:
        args.sha256_file.write_text(line, encoding="utf-8")
    sys.stdout.write(f"{digest}  {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
