"""The CLIs' warm path: hand a request to a running API server.

When ``api.url`` is configured, ``ai-describe`` and ``ai-translate`` POST their
input to the server, which already holds the model, instead of importing torch
and loading weights in a fresh process. If nothing listens there (connection
refused, connect timeout) or the answer is not the server's JSON (a proxy's
error page, a server without that route), the CLI runs in-process as if no
server were configured. Once the server has answered with its JSON, that answer
is final: a success is printed as is, an error is raised again here with the
same type and message, so the CLI prints the same object and exits with the
same code as an in-process run. A server that stays silent once connected
(longer than ``api.client_timeout``, or than the request's own ``timeout`` plus
:data:`SERVER_MARGIN` when that is longer) is ``api_server_error``. A slow
answer may start with whitespace bytes (the server's keep-alive) and carry its
error in the body under status 200: the whole body is read and parsed.

Standard library only (``http.client``), so the CLIs' fast lane
(:mod:`ai_local_core.cli.fast_lane`) can use it before, and instead of,
importing pydantic, httpx or the backends; :func:`call_api` is the same call for
code that already holds :class:`~ai_local_core.config.Settings`.
"""

from __future__ import annotations

import http.client
import json
import logging
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from ai_local_core.backend_errors import ApiServerError
from ai_local_core.errors import AiLocalCoreError
from ai_local_core.exit_codes import exit_code_for

if TYPE_CHECKING:
    from ai_local_core.config import Settings

__all__ = [
    "MAX_ANSWER_BYTES",
    "SERVER_MARGIN",
    "ApiTarget",
    "RemoteError",
    "call_api",
    "exit_code_for",
    "post_json",
    "silence_limit",
]

logger = logging.getLogger(__name__)

#: Answers that mean "this server cannot do it", not "your request failed".
_FALL_BACK_TYPES = frozenset({"not_found", "method_not_allowed"})
#: A larger answer is not the server's (its answers are a few hundred bytes).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: Seconds the server may need on top of a request's own ``timeout`` (connect, queue, retries).
SERVER_MARGIN = 60.0


class ApiTarget(NamedTuple):
    """Where the API server is and how long to wait for it (the ``api`` settings)."""

    url: str
    #: Seconds to connect before running in-process instead (``api.connect_timeout``).
    connect_timeout: float
    #: Seconds of silence allowed once connected (``api.client_timeout``).
    client_timeout: float


def silence_limit(target: ApiTarget, payload: dict[str, Any]) -> float:
    """Seconds the CLI waits for the server's next byte: ``api.client_timeout``, or the
    request's own ``timeout`` (the silence it allows Ollama) plus :data:`SERVER_MARGIN`
    when that is longer, so the server can always report its own ``timeout`` error."""
    value = payload.get("timeout")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        return target.client_timeout  # absent or invalid: the server rejects the latter
    return max(target.client_timeout, float(value) + SERVER_MARGIN)


class RemoteError(AiLocalCoreError):
    """An error reported by the API server, re-raised with its type and message.

    ``error_type`` and ``exit_code`` are set per instance from the server's
    answer (the class default, ``internal_error``, applies when it names none).
    """

    error_type = "internal_error"

    def __init__(self, error_type: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.error_type = error_type
        self.exit_code = exit_code_for(error_type)
        if status is not None:
            self.http_status = status


def call_api(settings: Settings, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """POST ``payload`` to the API server; its success object, or None to run in-process."""
    api = settings.api
    if not api.url:
        return None
    return post_json(ApiTarget(api.url, api.connect_timeout, api.client_timeout), path, payload)


def post_json(target: ApiTarget, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """POST ``payload`` to ``target.url + path``.

    Returns the server's success object (``{"success": true, ...}``), or None when
    the server cannot be used and the CLI should run in-process; raises
    :class:`RemoteError` for an error the server reported and
    :class:`~ai_local_core.backend_errors.ApiServerError` when it stops answering.
    """
    base = target.url
    try:
        parts = urlsplit(base.rstrip("/") + path)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        logger.warning("API server URL %r is not valid (%s); running in-process", base, exc)
        return None
    if parts.scheme not in ("http", "https") or not host:
        logger.warning("API server URL %r is not an http(s) URL; running in-process", base)
        return None
    body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if parts.scheme == "http":
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            host, port, timeout=target.connect_timeout
        )
    else:  # the default TLS context: certificates and host names are verified
        conn = http.client.HTTPSConnection(host, port, timeout=target.connect_timeout)
    try:
        try:
            conn.connect()
        except OSError as exc:  # refused, no route, name not found, connect timeout, TLS
            logger.info("API server at %s not reachable (%s); running in-process", base, exc)
            return None
        wait = silence_limit(target, payload)
        if conn.sock is not None:
            conn.sock.settimeout(wait)
        try:
            conn.request(
                "POST",
                parts.path + (f"?{parts.query}" if parts.query else ""),
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "Connection": "close",
                },
            )
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER_BYTES + 1)  # to the end: keep-alive bytes first
        except TimeoutError:
            raise ApiServerError(
                f"the API server at {base} did not answer within {wait:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            logger.warning("API server at %s failed (%s); running in-process", base, exc)
            return None
    finally:
        conn.close()
    return _interpret(base, path, response.status, raw)


def _interpret(base: str, path: str, status: int, raw: bytes) -> dict[str, Any] | None:
    body: Any = None
    if len(raw) <= MAX_ANSWER_BYTES:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            body = None
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        logger.warning(
            "API server at %s answered HTTP %s without the JSON contract; running in-process",
            base,
            status,
        )
        return None
    if body["success"]:
        return body
    raw_error = body.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    error_type = str(error.get("type") or "internal_error")
    if error_type in _FALL_BACK_TYPES:
        logger.warning("API server at %s has no %s; running in-process", base, path)
        return None
    message = str(error.get("message") or "the API server reported an error")
    # After keep-alive bytes the status is 200 whatever the body says: the body decides.
    raise RemoteError(error_type, message, status=status if status >= 400 else None)
