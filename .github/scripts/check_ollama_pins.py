#!/usr/bin/env python3
"""Check role ollama's pinned sha256 map against each release's published sha256sum.txt.

CI only (.github/workflows/ci.yml, job `ollama-pins`; needs internet). Reads
__ollama_checksums_pinned (roles/ollama/vars/main.yml: version -> arch -> sha256 of
ollama-linux-<arch>.tar.zst, .tgz before 0.14.0) and ollama_version / ollama_release_base_url
(roles/ollama/defaults/main.yml), fetches <base>/v<version>/sha256sum.txt per pinned version and
compares. Exit 1 names every mismatching or missing version/file; the default ollama_version must be
in the map too.

    python3 .github/scripts/check_ollama_pins.py [--base-url URL] [--repo DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(?:\./)?(\S+)\s*$")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def artifact_name(version: str, arch: str) -> str:
    ext = "tar.zst" if version_tuple(version) >= (0, 14, 0) else "tgz"
    return f"ollama-linux-{arch}.{ext}"


def fetch(url: str, attempts: int = 4) -> str:
    for attempt in range(1, attempts + 1):
        try:
            # https (the role's base URL) or file:// (a local copy, for testing this script).
            req = urllib.request.Request(url, headers={"User-Agent": "ai-local-core-ci"})  # noqa: S310
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                body: bytes = resp.read()
                return body.decode("utf-8")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or attempt == attempts:
                raise
        except (urllib.error.URLError, TimeoutError):
            if attempt == attempts:
                raise
        time.sleep(5 * attempt)
    raise AssertionError("unreachable")


def parse_sums(text: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in text.splitlines():
        found = LINE.match(line.strip())
        if found:
            sums[found.group(2)] = found.group(1).lower()
    return sums


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--base-url", help="default: ollama_release_base_url of the role")
    args = parser.parse_args()

    role = args.repo / "roles" / "ollama"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text(encoding="utf-8"))
    pinned = yaml.safe_load((role / "vars" / "main.yml").read_text(encoding="utf-8"))[
        "__ollama_checksums_pinned"
    ]
    base = (args.base_url or defaults["ollama_release_base_url"]).rstrip("/")
    errors: list[str] = []
    if str(defaults["ollama_version"]) not in {str(v) for v in pinned}:
        errors.append(
            f"ollama_version {defaults['ollama_version']} (roles/ollama/defaults/main.yml) has no "
            "entry in __ollama_checksums_pinned (roles/ollama/vars/main.yml)"
        )
    checked = 0
    for version, arches in pinned.items():
        version = str(version)
        url = f"{base}/v{version}/sha256sum.txt"
        try:
            sums = parse_sums(fetch(url))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            errors.append(f"{version}: cannot read {url}: {exc}")
            continue
        if not sums:
            errors.append(f"{version}: {url} lists no sha256 lines")
            continue
        for arch, sha in (arches or {}).items():
            name = artifact_name(version, str(arch))
            published = sums.get(name)
            if published is None:
                errors.append(f"{version}/{arch}: {name} is not listed in {url}")
            elif published != str(sha).lower():
                errors.append(
                    f"{version}/{arch}: {name} pinned {sha}, published {published} ({url})"
                )
            else:
                checked += 1
                print(f"ok  {version}/{arch}: {name} {published}")
    for error in errors:
        print(f"MISMATCH {error}", file=sys.stderr)
        if "GITHUB_ACTIONS" in os.environ:
            print(f"::error title=ollama pin::{error}")
    if errors:
        return 1
    print(f"{checked} pinned sha256 values match the published sha256sum.txt files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
