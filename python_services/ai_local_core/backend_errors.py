"""Errors shared by the image-description and translation services.

All derive from the project's single hierarchy rooted at
:class:`ai_local_core.errors.AiLocalCoreError`, so the CLIs and the API server
map them to a JSON error, an exit code and an HTTP status without special cases.
Exit codes 20-29 belong to these services (see ``docs/cli-contract.md``); each
class's ``exit_code`` comes from :mod:`ai_local_core.exit_codes`.
"""

from __future__ import annotations

from ai_local_core.errors import AiLocalCoreError

__all__ = [
    "ApiServerError",
    "BackendFailed",
    "BackendUnavailable",
    "PayloadTooLarge",
    "ServiceBusy",
]


class BackendUnavailable(AiLocalCoreError):
    """A backend cannot serve now: a missing optional dependency, a model that will not
    load, or an upstream service that asks us to come back later."""

    error_type = "backend_unavailable"
    http_status = 503


class BackendFailed(AiLocalCoreError):
    """A backend (or the upstream service it calls) failed on a valid request."""

    error_type = "backend_failed"
    http_status = 502


class PayloadTooLarge(AiLocalCoreError):
    """The input is over a size limit (bytes, pixels or characters)."""

    error_type = "payload_too_large"
    http_status = 413


class ServiceBusy(AiLocalCoreError):
    """The API server has no free request slot right now; retry later."""

    error_type = "service_busy"
    http_status = 503


class ApiServerError(AiLocalCoreError):
    """The warm API server could not be used for a request that had already been sent."""

    error_type = "api_server_error"
    http_status = 502
