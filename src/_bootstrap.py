"""Run an ``ai_local_core`` CLI from a stable path with whatever python the caller has.

The Waldus PHP side runs e.g. ``python $AI_LOCAL_CORE_PATH/src/ollama/complete.py
'{"user": "Hello"}'`` with its own interpreter. The shims next to this file load it
by path (it is not a package) and call :func:`run`:

1. if that interpreter can import the CLI module, run it in-process;
2. otherwise re-exec the shim with the project's interpreter: ``AI_LOCAL_CORE_PYTHON``
   if set, else the first ``.venv/bin/python`` found in a parent directory of the
   shim (the repository root's virtualenv);
3. if there is none (or the re-exec'd interpreter fails to import too), print the
   contract's JSON error object and exit 3 (``config_error``).

Kept free of third-party imports and of syntax newer than Python 3.6 (old hosts
still run the PHP side): no ``from __future__ import annotations``, so annotations
that are not 3.6 syntax are quoted.
"""

import importlib
import json
import os
import sys
from pathlib import Path

__all__ = ["PYTHON_ENV", "REEXEC_ENV", "find_project_python", "run"]

PYTHON_ENV = "AI_LOCAL_CORE_PYTHON"
REEXEC_ENV = "_AI_LOCAL_CORE_REEXEC"
_EXIT_CONFIG_ERROR = 3


def _fail(message: str) -> int:
    error = {"type": "config_error", "message": message}
    sys.stdout.write(json.dumps({"success": False, "error": error}) + "\n")
    sys.stdout.flush()
    return _EXIT_CONFIG_ERROR


def find_project_python(start: Path) -> "str | None":
    """``AI_LOCAL_CORE_PYTHON``, else the nearest ``.venv`` interpreter above ``start``."""
    configured = os.environ.get(PYTHON_ENV, "").strip()
    if configured:
        return configured
    for directory in (start, *start.parents):
        for candidate in (
            directory / ".venv" / "bin" / "python",
            directory / ".venv" / "Scripts" / "python.exe",
        ):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def run(module: str, script: str, argv: "list[str] | None" = None) -> int:
    """Run ``module.main(argv)``; re-exec ``script`` under the project python if needed."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli = importlib.import_module(module)
    except ImportError as exc:
        return _reexec(script, args, exc)
    os.environ.pop(REEXEC_ENV, None)
    return int(cli.main(args))


def _reexec(script: str, args: "list[str]", exc: ImportError) -> int:
    reason = f"{type(exc).__name__}: {exc}"
    if os.environ.get(REEXEC_ENV):
        return _fail(
            f"{sys.executable} cannot import ai_local_core ({reason}); "
            f"install the project into it or point {PYTHON_ENV} at its virtualenv python"
        )
    python = find_project_python(Path(script).resolve().parent)
    if python is None:
        return _fail(
            f"ai_local_core is not importable by {sys.executable} ({reason}) and no project "
            f"interpreter was found: set {PYTHON_ENV} or create .venv in the repository root"
        )
    env = dict(os.environ)
    env[REEXEC_ENV] = "1"
    try:
        os.execve(python, [python, script, *args], env)  # noqa: S606 - fixed program, argv list
    except OSError as err:
        return _fail(f"cannot run the project interpreter {python}: {err.strerror}")
    return _fail("unreachable")  # pragma: no cover - execve does not return
