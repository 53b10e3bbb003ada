"""The CLI exit code of every ``error.type``: the one table (pure data, no imports).

Every type the API server can answer is here (``tests/unit/test_exit_codes.py`` walks
them): the exception classes' types, the HTTP-level types of :mod:`ai_local_core.api.app`
and ``internal_error``.

The exception classes take their ``exit_code`` from here
(:meth:`ai_local_core.errors.AiLocalCoreError.__init_subclass__`), and the CLIs'
fast lane (:mod:`ai_local_core.cli.fast_lane`) maps an error type reported by
the API server to its exit code with :func:`exit_code_for` without importing
the exception hierarchy. ``docs/cli-contract.md`` documents the same table.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["EXIT_CODES", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "exit_code_for"]

EXIT_OK = 0
#: ``internal_error``: an unexpected failure, and any type this table does not know.
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130

EXIT_CODES = MappingProxyType(
    {
        "internal_error": EXIT_INTERNAL,
        # ai_local_core.errors
        "invalid_input": 2,
        "config_error": 3,
        # ai_local_core.ollama.exceptions
        "ollama_error": 10,
        "model_not_found": 11,
        "server_busy": 12,
        "auth_error": 13,
        "connection_failed": 14,
        "timeout": 15,
        "invalid_response": 16,
        # ai_local_core.backend_errors, .image.errors, .translation.errors (20-29)
        "invalid_image_source": 2,
        "not_an_image": 2,
        "unsupported_language": 2,
        "backend_unavailable": 20,
        "translation_rate_limited": 20,
        "backend_failed": 21,
        "describe_failed": 21,
        "translation_failed": 21,
        "image_fetch_failed": 22,
        "payload_too_large": 23,
        "image_too_large": 23,
        "text_too_long": 23,
        "service_busy": 24,
        "api_server_error": 25,
        # ai_local_core.api.app: the API server's answers to HTTP-level errors (werkzeug's)
        "bad_request": 2,
        "unsupported_media_type": 2,
        "too_many_requests": 24,
        "not_found": 25,
        "method_not_allowed": 25,
        "http_error": 25,
        "interrupted": EXIT_INTERRUPTED,
    }
)


def exit_code_for(error_type: str) -> int:
    """The exit code of ``error_type``; 1 (``internal_error``) when it is unknown."""
    return EXIT_CODES.get(error_type, EXIT_INTERNAL)
