"""The CLIs' warm path: hand a request to a running API server, at most once.

When ``api.url`` is configured, ``ai-complete``, ``ai-describe`` and
``ai-translate`` POST their input to the server, which already holds the model,
instead of importing torch and loading weights in a fresh process.

The rule: the CLI runs the work in-process only when the request never reached
the server. If nothing accepts the connection (refused, no such host, no route,
a connect timeout after ``api.connect_timeout``, a failed TLS handshake) or
``api.url`` is not an http(s) URL, nothing was sent and :func:`post_json`
returns None: the CLI runs in-process as if no server were configured. Once the
connection is open and the request is on its way, whatever happens next is
final, because the server may already be doing the work (a BLIP generation, a
completion) and running it again here would do it twice:

* the server's JSON answer: a success is returned as it is, an error is raised
  again here with the same type and message (:class:`RemoteError`), so the CLI
  prints the same object and exits with the same code as an in-process run;
* a hang-up (the worker killed, the connection reset or closed without an
  answer), an answer that is not the server's JSON (a proxy's error page), or
  silence longer than :func:`silence_limit`: ``api_server_error`` (exit 25).

A slow answer may start with whitespace bytes (the server's keep-alive) and
carry its error in the body under status 200: the whole body is read and parsed.

Standard library only (``http.client``), and the configuration comes from
:class:`~ai_local_core.config.Settings` like everywhere else (:func:`call_api`).
"""

from __future__ import annotations

import http.client
import json
import logging
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from ai_local_core.errors import ApiServerError, RemoteError, exit_code_for

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

#: A larger answer is not the server's (its answers are a few hundred bytes).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: Seconds the server may need on top of a request's own ``timeout`` (connect, queue, retries).
SERVER_MARGIN = 60.0


class ApiTarget(NamedTuple):
    """Where the API server is and how long to wait for it (the ``api`` settings)."""

    url: str
    #: Seconds to connect before running in-process instead (``api.connect_timeout``).
    connect_timeout: float
    #: Seconds of silence allowed once connected (``api.client_timeout``; see
    #: :func:`silence_limit` for the request's own ``timeout``).
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


def call_api(settings: Settings, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """POST ``payload`` to the API server (``settings.api``); its success object, or None
    when ``api.url`` is unset or the server could not be reached: then, and only then, the
    caller runs the work in-process. See :func:`post_json` for what is raised."""
    api = settings.api
    if not api.url:
        return None
    return post_json(ApiTarget(api.url, api.connect_timeout, api.client_timeout), path, payload)


def post_json(target: ApiTarget, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """POST ``payload`` to ``target.url + path``.

    Returns the server's success object (``{"success": true, ...}``), or None when
    the request could not be sent (see the module docstring): only then may the
    caller run the work in-process. Raises :class:`RemoteError` for an error the
    server reported and :class:`~ai_local_core.errors.ApiServerError`
    when the server failed after it was sent the request.
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
        # From here on the server may be doing the work: every failure is final.
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
            raise ApiServerError(
                f"the API server at {base} failed after it was sent the request "
                f"({_failure(exc)}); not run again here"
            ) from None
    finally:
        conn.close()
    return _interpret(base, response.status, raw)


def _failure(exc: BaseException) -> str:
    """``RemoteDisconnected``, ``ConnectionResetError: [Errno 104] ...``: never payload bytes."""
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the connection closed without an answer"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed in the middle of the answer"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _interpret(base: str, status: int, raw: bytes) -> dict[str, Any]:
    body: Any = None
    if len(raw) <= MAX_ANSWER_BYTES:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            body = None
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        raise ApiServerError(
            f"the API server at {base} answered HTTP {status} without its JSON object "
            "(not the API server, or a proxy's error page); not run again here"
        )
    if body["success"]:
        return body
    raw_error = body.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    error_type = str(error.get("type") or "internal_error")
    message = str(error.get("message") or "the API server reported an error")
    # After keep-alive bytes the status is 200 whatever the body says: the body decides.
    raise RemoteError(error_type, message, status=status if status >= 400 else None)
