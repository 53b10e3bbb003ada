"""The CLIs' warm fast path: hand a request to a running API server.

When ``api.url`` is configured, ``ai-describe`` and ``ai-translate`` POST their
input to the server, which already holds the model, instead of importing torch
and loading weights in a fresh process. If nothing listens there (connection
refused, connect timeout) or the answer is not the server's JSON (a proxy's
error page), the CLI runs in-process as if no server were configured. Once the
server has answered with its JSON, that answer is final: a success is printed as
is, an error is raised again here with the same type and message, so the CLI
prints the same object and exits with the same code as an in-process run.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpx

import ai_local_core.backend_errors
import ai_local_core.image.errors
import ai_local_core.ollama.exceptions
import ai_local_core.translation.errors  # noqa: F401 - registers the error classes
from ai_local_core.backend_errors import ApiServerError
from ai_local_core.config import Settings
from ai_local_core.errors import AiLocalCoreError

__all__ = ["RemoteError", "call_api", "exit_code_for"]

logger = logging.getLogger(__name__)

#: Answers that mean "this server cannot do it", not "your request failed".
_FALL_BACK_TYPES = frozenset({"not_found", "method_not_allowed"})


def _all_error_classes(root: type[AiLocalCoreError]) -> list[type[AiLocalCoreError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_all_error_classes(sub))
    return found


@cache
def _exit_codes() -> dict[str, int]:
    codes: dict[str, int] = {}
    for cls in _all_error_classes(AiLocalCoreError):
        codes.setdefault(cls.error_type, cls.exit_code)
    return codes


def exit_code_for(error_type: str) -> int:
    """The CLI exit code of an error type (1, ``internal_error``, when unknown)."""
    return _exit_codes().get(error_type, 1)


class RemoteError(AiLocalCoreError):
    """An error reported by the API server, re-raised with its type and message."""

    def __init__(self, error_type: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.error_type = error_type
        self.exit_code = exit_code_for(error_type)
        if status is not None:
            self.http_status = status


def call_api(settings: Settings, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """POST ``payload`` to the API server; its success object, or None to run in-process."""
    base = settings.api.url
    if not base:
        return None
    url = base.rstrip("/") + path
    timeout = httpx.Timeout(
        settings.api.client_timeout,
        connect=settings.api.connect_timeout,
        pool=settings.api.connect_timeout,
    )
    # Plain http (the usual loopback server) needs no TLS context; building one
    # reads the CA bundle, a noticeable share of this fast path.
    verify = urlsplit(base).scheme != "http"
    try:
        with httpx.Client(timeout=timeout, trust_env=False, verify=verify) as http:
            response = http.post(url, json=payload)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        logger.info("API server at %s not reachable (%s); running in-process", base, exc)
        return None
    except httpx.TimeoutException:
        raise ApiServerError(
            f"the API server at {base} did not answer within {settings.api.client_timeout:g} s"
        ) from None
    except httpx.HTTPError as exc:
        logger.warning("API server at %s failed (%s); running in-process", base, exc)
        return None
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        logger.warning(
            "API server at %s answered HTTP %s without the JSON contract; running in-process",
            base,
            response.status_code,
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
    raise RemoteError(error_type, message, status=response.status_code)
