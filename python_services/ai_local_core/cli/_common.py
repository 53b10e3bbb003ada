"""The runner shared by every JSON command-line tool (complete, describe, translate).

Contract (see ``docs/cli-contract.md``):

* stdout carries exactly one JSON object and nothing else: ``{"success": true, ...}``
  or ``{"success": false, "error": {"type": ..., "message": ...}}``;
* the exit status is 0 on success, the error class's ``exit_code`` for an
  :class:`~ai_local_core.errors.AiLocalCoreError`, 1 for anything unexpected
  (``internal_error``) and 130 when interrupted;
* logs go to stderr; a traceback is printed (to stderr) only when
  ``AI_LOCAL_CORE_DEBUG`` is set.

A tool is a handler ``(payload, settings) -> dict`` plus, if its argv is not one
JSON object, an argv parser::

    def main(argv: Sequence[str] | None = None) -> int:
        return run_cli(my_handler, argv=argv, prog="ai-mytool")

The handler gets the settings from :func:`~ai_local_core.config.load_settings` (the
one configuration loader). A tool whose work the API server can do hands it there
with :func:`~ai_local_core.api.remote.call_api` when ``api.url`` is set, and runs
it in-process only when that returns None (the request never reached the server).
This module and the handlers' modules import the configuration, the request models
and above all the backends (httpx clients, Pillow, torch) only when they need them,
so a call that the warm server answers stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ai_local_core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, AiLocalCoreError, InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ai_local_core.config import Settings

__all__ = [
    "DEBUG_ENV",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "MAX_INPUT_BYTES",
    "Handler",
    "emit",
    "emit_result",
    "parse_json_argument",
    "reset_logging",
    "run_cli",
    "setup_logging",
    "validate_input",
]

#: Set to 1/true/yes to get tracebacks of unexpected errors on stderr.
DEBUG_ENV = "AI_LOCAL_CORE_DEBUG"
#: Largest accepted JSON input (bytes). Linux caps one argv string at 128 KiB anyway;
#: pass ``-`` to read the JSON object from stdin instead.
MAX_INPUT_BYTES = 100_000

Handler = Callable[[Any, "Settings"], Mapping[str, Any]]
_M = TypeVar("_M", bound="BaseModel")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(level: str | None = None) -> None:
    """Route ``ai_local_core`` logs to stderr (idempotent; undo with :func:`reset_logging`)."""
    logger = logging.getLogger("ai_local_core")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        logger.addHandler(handler)
    name = (level or os.environ.get("AI_LOCAL_CORE_LOG_LEVEL") or "WARNING").upper()
    logger.setLevel(getattr(logging, name, logging.WARNING))


def reset_logging() -> None:
    """Remove what :func:`setup_logging` added (matters when a CLI runs in-process)."""
    logger = logging.getLogger("ai_local_core")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def emit(obj: Mapping[str, Any]) -> None:
    """Write the one JSON object to stdout (ASCII-safe whatever the locale)."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the caller went away; nothing left to tell it
        pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_argument(
    argv: Sequence[str], *, max_bytes: int = MAX_INPUT_BYTES, example: str = '{"user": "Hello"}'
) -> dict[str, Any]:
    """The default argv parser: exactly one argument holding a JSON object (``-``: stdin)."""
    if not argv:
        raise InvalidInput(f"missing argument: expected one JSON object, e.g. '{example}'")
    if len(argv) > 1:
        raise InvalidInput(
            f"expected exactly one argument (a JSON object), got {len(argv)}; "
            "quote the JSON as a single shell word"
        )
    if argv[0] == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
    else:
        data = argv[0].encode("utf-8", "surrogateescape")
    if len(data) > max_bytes:
        raise InvalidInput(f"input too large: more than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("input is not valid UTF-8") from None
    if not text.strip():
        raise InvalidInput(f"empty input: expected a JSON object, e.g. '{example}'")
    try:
        value: Any = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"input is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidInput(f"input is not valid JSON: {reason}") from None
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number"
        )
        raise InvalidInput(f"input must be a JSON object, got {kind}")
    return value


def validate_input(model: type[_M], payload: Any) -> _M:
    """Validate a payload against a pydantic model; :class:`InvalidInput` on failure."""
    from pydantic import ValidationError

    from ai_local_core.config import format_validation_error
    from ai_local_core.inputs import unknown_keys

    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        message = f"invalid input: {format_validation_error(exc)}"
        ignored = unknown_keys(model, payload)
        if ignored:  # often the cause: a misspelt key
            message += "; unknown keys ignored: " + ", ".join(repr(k) for k in ignored)
        raise InvalidInput(message) from None


def run_cli(
    handler: Handler,
    *,
    argv: Sequence[str] | None = None,
    parse_args: Callable[[Sequence[str]], Any] | None = None,
    prog: str = "ai-local-core",
) -> int:
    """Run one CLI invocation; return the exit status (the caller passes it to sys.exit)."""
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    try:
        return _run(handler, args, parse_args, prog)
    finally:
        reset_logging()


def _run(
    handler: Handler,
    args: list[str],
    parse_args: Callable[[Sequence[str]], Any] | None,
    prog: str,
) -> int:
    log = logging.getLogger(f"ai_local_core.cli.{prog}")
    try:
        payload = (parse_args or parse_json_argument)(args)
        answer = _run_handler(handler, payload)
    except AiLocalCoreError as exc:
        log.info("%s failed: %s: %s", prog, exc.error_type, exc.message)
        if _debug_enabled():
            _print_traceback()
        emit({"success": False, "error": exc.to_dict()})
        return exc.exit_code
    except KeyboardInterrupt:
        emit({"success": False, "error": {"type": "interrupted", "message": "interrupted"}})
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the contract: never a traceback on stdout
        if _debug_enabled():
            _print_traceback()
        else:
            log.error(
                "%s: unexpected %s (set %s=1 for a traceback)", prog, type(exc).__name__, DEBUG_ENV
            )
        message = f"internal error ({type(exc).__name__}); set {DEBUG_ENV}=1 for details"
        emit({"success": False, "error": {"type": "internal_error", "message": message}})
        return EXIT_INTERNAL
    warnings = answer.get("warnings")
    for warning in warnings if isinstance(warnings, list) else ():
        log.warning("%s: %s", prog, warning)  # what the input had that was ignored
    return emit_result(answer)


def _run_handler(handler: Handler, payload: Any) -> dict[str, Any]:
    """Load the settings, set the log level, run the handler."""
    from ai_local_core.config import load_settings

    settings = load_settings()
    setup_logging(os.environ.get("AI_LOCAL_CORE_LOG_LEVEL") or settings.log_level)
    return dict(handler(payload, settings))


def _print_traceback() -> None:
    import traceback

    traceback.print_exc(file=sys.stderr)


def emit_result(result: Mapping[str, Any]) -> int:
    """Print a success object (``success`` first, the handler's keys after); the exit status."""
    body = dict(result)
    body.pop("success", None)
    try:
        emit({"success": True, **body})
    except (TypeError, ValueError) as exc:  # a handler returned something not JSON-able
        message = f"internal error (unserialisable result: {type(exc).__name__})"
        emit({"success": False, "error": {"type": "internal_error", "message": message}})
        return EXIT_INTERNAL
    return 0
