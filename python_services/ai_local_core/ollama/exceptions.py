"""Errors raised by :class:`ai_local_core.ollama.OllamaClient`.

All of them derive from :class:`OllamaError`, itself an
:class:`~ai_local_core.errors.AiLocalCoreError`. ``status`` holds the upstream HTTP
status when there was one; ``retryable`` says whether the client may repeat the
request (connection errors and 429/502/503/504 only); ``attempts`` is how many
times the request was sent before giving up.

Exit codes (CLI; from :mod:`ai_local_core.exit_codes`) and HTTP statuses (API
server) are documented in ``docs/cli-contract.md``.
"""

from __future__ import annotations

import json
from typing import Any

from ai_local_core.errors import AiLocalCoreError

__all__ = [
    "RETRYABLE_STATUSES",
    "AuthError",
    "ConnectionFailed",
    "InvalidResponse",
    "ModelNotFound",
    "OllamaError",
    "ServerBusy",
    "Timeout",
    "error_from_message",
    "error_from_response",
]

#: Upstream statuses after which a request may be repeated.
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})

_MAX_BODY_IN_MESSAGE = 300


class OllamaError(AiLocalCoreError):
    """Ollama (or the gateway in front of it) failed to answer the request."""

    error_type = "ollama_error"
    http_status = 502

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, status=status)
        self.retryable = retryable
        self.attempts = 1
        #: Seconds the server asked us to wait (``Retry-After``), if it did.
        self.retry_after: float | None = None

    def note_attempts(self, attempts: int) -> None:
        """Record that the request was sent ``attempts`` times (once is not noted)."""
        self.attempts = attempts
        if attempts > 1 and "attempts)" not in self.message:
            self.message = f"{self.message} (after {attempts} attempts)"


class ModelNotFound(OllamaError):
    """The model is not present on the Ollama server (pull it first)."""

    error_type = "model_not_found"
    http_status = 404


class ServerBusy(OllamaError):
    """Ollama's queue is full (503) or the gateway rate-limits us (429)."""

    error_type = "server_busy"
    http_status = 503


class AuthError(OllamaError):
    """The gateway rejected our credentials (401/403), or Ollama's Host/Origin check did.

    The API server answers 502 for it: the caller's own credentials are fine, ours
    towards the upstream are not.
    """

    error_type = "auth_error"
    http_status = 502


class ConnectionFailed(OllamaError):
    """No connection to Ollama, or it broke before the answer was complete."""

    error_type = "connection_failed"
    http_status = 502


class Timeout(OllamaError):
    """Ollama did not answer within the configured read/write timeout."""

    error_type = "timeout"
    http_status = 504


class InvalidResponse(OllamaError):
    """Ollama answered something that is not the documented protocol."""

    error_type = "invalid_response"
    http_status = 502


def _short(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _MAX_BODY_IN_MESSAGE:
        return text[:_MAX_BODY_IN_MESSAGE] + "..."
    return text


def error_from_message(message: str, *, status: int | None = None) -> OllamaError:
    """Map an ``{"error": message}`` (body or mid-stream line) to the right class."""
    lowered = message.lower()
    if status == 404 or ("not found" in lowered and "model" in lowered):
        return ModelNotFound(message, status=status)
    if "server busy" in lowered or "maximum pending requests" in lowered:
        return ServerBusy(message, status=status, retryable=status in RETRYABLE_STATUSES)
    return OllamaError(message, status=status)


def error_from_response(status: int, body: bytes | str, *, what: str = "request") -> OllamaError:
    """Map an HTTP error response (status >= 400) to the right :class:`OllamaError`."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message: str | None = None
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, str):
            message = err
        elif isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]  # OpenAI-style error object from a gateway

    retryable = status in RETRYABLE_STATUSES
    if status in (401, 403):
        if message is None and not text.strip() and status == 403:
            detail = (
                "403 Forbidden with an empty body: Ollama's Host/Origin check refused the "
                "request (behind a proxy or tunnel, rewrite the Host header to "
                "localhost:11434)"
            )
        else:
            detail = f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}"
            if message or text.strip():
                detail += f": {_short(message or text)}"
        return AuthError(f"{what} rejected: {detail}", status=status)
    if status == 429:
        return ServerBusy(
            f"{what} rate-limited (429): {_short(message or text)}", status=status, retryable=True
        )
    if status == 503:
        return ServerBusy(
            message or f"server busy (503): {_short(text)}", status=status, retryable=True
        )
    if status == 504:
        return Timeout(
            f"gateway timeout (504): {_short(message or text)}", status=status, retryable=True
        )
    if status == 502:
        return ConnectionFailed(
            f"bad gateway (502): {_short(message or text)}", status=status, retryable=True
        )
    if status == 404:
        if message is not None:
            return ModelNotFound(message, status=status)
        return OllamaError(
            f"{what}: endpoint not found (404: {_short(text)}); is the URL pointing at Ollama?",
            status=status,
        )
    if message is not None:
        return error_from_message(message, status=status)
    return OllamaError(
        f"{what} failed with HTTP {status}: {_short(text)}", status=status, retryable=retryable
    )
