#!/usr/bin/env python3
"""Waldus entry point: ``python $AI_LOCAL_CORE_PATH/src/image/describe.py IMAGE [MAX_LENGTH]``.

Runs :mod:`ai_local_core.cli.describe` (see ``docs/cli-contract.md``) with this
python or, if it cannot import the project, the project's own interpreter.
"""

import sys
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path


def _run() -> int:
    path = Path(__file__).resolve().parent.parent / "_bootstrap.py"
    spec = spec_from_file_location("_ai_local_core_bootstrap", path)
    assert spec is not None and spec.loader is not None
    bootstrap = module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    return int(bootstrap.run("ai_local_core.cli.describe", __file__))


if __name__ == "__main__":
    sys.exit(_run())
