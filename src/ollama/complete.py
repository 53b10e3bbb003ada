#!/usr/bin/env python3
"""Waldus entry point: ``python $AI_LOCAL_CORE_PATH/src/ollama/complete.py '{"user": "Hi"}'``.

Runs :mod:`ai_local_core.cli.complete` (see ``docs/cli-contract.md``) with this
python or, if it cannot import the project, the project's own interpreter (see
``../_bootstrap.py``). Kept parseable by any Python so that even a Python 2
``python`` gets the JSON error object instead of a SyntaxError.
"""

import sys


def _run():  # type: () -> int
    if sys.version_info < (3, 6):  # noqa: UP036 - the caller's python may be ancient
        sys.stdout.write(
            '{"success": false, "error": {"type": "config_error", "message": '
            '"Python 3.6 or newer is needed to start ai-local-core"}}\n'
        )
        return 3
    from importlib.util import module_from_spec, spec_from_file_location
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "_bootstrap.py"
    spec = spec_from_file_location("_ai_local_core_bootstrap", path)
    assert spec is not None and spec.loader is not None
    bootstrap = module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    return int(bootstrap.run("ai_local_core.cli.complete", __file__))


if __name__ == "__main__":
    sys.exit(_run())
