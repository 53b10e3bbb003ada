"""TEST FIXTURE: one command of a host, answered from $NVIDIA_STANDIN_DIR (see __init__.py).

Run through a two-line wrapper (``#!<python> standin.py``), so the command's name is argv[1].
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    name = Path(sys.argv[1]).name
    scenario = Path(os.environ["NVIDIA_STANDIN_DIR"])
    for suffix, stream in ((".out", sys.stdout), (".err", sys.stderr)):
        path = scenario / f"{name}{suffix}"
        if path.exists():
            stream.write(path.read_text())
    if name == "mokutil" and not (scenario / "mokutil.out").read_text():
        sys.stderr.write("mokutil: command not found\n")
    rc_file = scenario / f"{name}.rc"
    return int(rc_file.read_text()) if rc_file.exists() else 0


if __name__ == "__main__":
    sys.exit(main())
