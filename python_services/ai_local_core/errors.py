"""The one exception hierarchy of ai-local-core.

Every error that the library, the CLIs or the API server raise on purpose is an
:class:`AiLocalCoreError`. Each subclass carries three things that the edges use:

* ``error_type`` - a stable snake_case name; the CLIs print it as ``error.type``;
* ``exit_code`` - the CLI exit status for that error, taken from the table in
  :mod:`ai_local_core.exit_codes` by ``error_type`` (never written by hand in a
  class body; documented in ``docs/cli-contract.md``);
* ``http_status`` - the status the API server answers with.

``status`` on an instance is the upstream HTTP status that caused the error, if
there was one (for example 503 from Ollama); it is not the same as the class's
``http_status``.
"""

from __future__ import annotations

from typing import Any

from ai_local_core.exit_codes import EXIT_CODES, EXIT_INTERNAL

__all__ = ["AiLocalCoreError", "ConfigError", "InvalidInput"]


class AiLocalCoreError(Exception):
    """Base of every error raised on purpose by ai-local-core."""

    error_type: str = "error"
    exit_code: int = EXIT_INTERNAL
    http_status: int = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the subclass the exit code of its ``error_type`` from the shared table."""
        super().__init_subclass__(**kwargs)
        code = EXIT_CODES.get(cls.error_type)
        if code is None:
            return  # a type missing from the table keeps its parent's code (a test flags it)
        declared = cls.__dict__.get("exit_code")
        if declared is not None and declared != code:
            raise TypeError(
                f"{cls.__name__}.exit_code = {declared} contradicts ai_local_core.exit_codes "
                f"({cls.error_type!r}: {code}); change the table, not the class"
            )
        cls.exit_code = code

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        status = "" if self.status is None else f", status={self.status}"
        return f"{type(self).__name__}({self.message!r}{status})"

    def to_dict(self) -> dict[str, str]:
        """The ``error`` object of the CLI/API JSON contract."""
        return {"type": self.error_type, "message": self.message}


class InvalidInput(AiLocalCoreError):
    """The caller's input is malformed or out of range."""

    error_type = "invalid_input"
    http_status = 400


class ConfigError(AiLocalCoreError):
    """The configuration (files, environment, secrets) is missing or invalid."""

    error_type = "config_error"
    http_status = 500
