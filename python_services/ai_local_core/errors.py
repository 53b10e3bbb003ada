"""Every error type of ai-local-core, with its exit code and HTTP status: the one table.

Every error that the library, the CLIs or the API server raise on purpose is an
:class:`AiLocalCoreError` defined in this file (a test fails for one defined
elsewhere). Each class states three plain class attributes, the contract that
``docs/cli-contract.md`` documents (``tests/unit/test_exit_codes.py`` checks its
tables against this file):

* ``error_type`` - a stable snake_case name; the CLIs and the API print it as
  ``error.type``;
* ``exit_code`` - the CLI exit status for that error;
* ``http_status`` - the status the API server answers with.

``status`` on an instance is the upstream HTTP status that caused the error, if
there was one (for example 503 from Ollama); it is not the same as the class's
``http_status``.

:data:`EXIT_CODES` maps every ``error.type`` to its exit code: the classes' types,
the API server's answers to HTTP-level errors (which have no class) and
``interrupted``; the CLIs' warm path maps a type reported by the API server with
:func:`exit_code_for` (:class:`RemoteError`).
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "HTTP_LEVEL_EXIT_CODES",
    "AiLocalCoreError",
    "ApiServerError",
    "AuthError",
    "BackendFailed",
    "BackendUnavailable",
    "ConfigError",
    "ConnectionFailed",
    "DescribeFailed",
    "ImageFetchFailed",
    "ImageTooLarge",
    "InvalidImageSource",
    "InvalidInput",
    "InvalidResponse",
    "ModelNotFound",
    "NotAnImage",
    "OllamaError",
    "PayloadTooLarge",
    "RemoteError",
    "ServerBusy",
    "ServiceBusy",
    "TextTooLong",
    "Timeout",
    "TranslationFailed",
    "TranslationRateLimited",
    "UnsupportedLanguage",
    "WebhookDeliveryFailed",
    "error_classes",
    "exit_code_for",
]

EXIT_OK = 0
#: ``internal_error``: an unexpected failure, and any type :data:`EXIT_CODES` does not know.
EXIT_INTERNAL = 1
#: ``interrupted``: the CLI got SIGINT.
EXIT_INTERRUPTED = 130


class AiLocalCoreError(Exception):
    """Base of every error raised on purpose by ai-local-core."""

    error_type: str = "error"
    exit_code: int = EXIT_INTERNAL
    http_status: int = 500

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


# --- the caller and the configuration (exit 2, 3) -----------------------------------------


class InvalidInput(AiLocalCoreError):
    """The caller's input is malformed or out of range."""

    error_type = "invalid_input"
    exit_code = 2
    http_status = 400


class ConfigError(AiLocalCoreError):
    """The configuration (files, environment, secrets) is missing or invalid."""

    error_type = "config_error"
    exit_code = 3
    http_status = 500


# --- Ollama (exit 10-16), raised by ai_local_core.ollama.OllamaClient ----------------------


class OllamaError(AiLocalCoreError):
    """Ollama (or the gateway in front of it) failed to answer the request.

    ``retryable`` says whether the request may be repeated: as made, whether it cannot
    have reached Ollama's handler (a failed connect, 429, 503); once the client has
    tried, whether its retry rule let it repeat this request (see
    :mod:`ai_local_core.ollama.client`); ``attempts`` is how many times the request was
    sent before giving up.
    """

    error_type = "ollama_error"
    exit_code = 10
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
    exit_code = 11
    http_status = 404


class ServerBusy(OllamaError):
    """Ollama's queue is full (503) or the gateway rate-limits us (429)."""

    error_type = "server_busy"
    exit_code = 12
    http_status = 503


class AuthError(OllamaError):
    """The gateway rejected our credentials (401/403), or Ollama's Host/Origin check did.

    The API server answers 502 for it: the caller's own credentials are fine, ours
    towards the upstream are not.
    """

    error_type = "auth_error"
    exit_code = 13
    http_status = 502


class ConnectionFailed(OllamaError):
    """No connection to Ollama, or it broke before the answer was complete."""

    error_type = "connection_failed"
    exit_code = 14
    http_status = 502


class Timeout(OllamaError):
    """Ollama did not answer within the configured read/write timeout."""

    error_type = "timeout"
    exit_code = 15
    http_status = 504


class InvalidResponse(OllamaError):
    """Ollama answered something that is not the documented protocol."""

    error_type = "invalid_response"
    exit_code = 16
    http_status = 502


# --- image description, translation, the API server (exit 2, 20-25) ------------------------


class BackendUnavailable(AiLocalCoreError):
    """A backend cannot serve now: a missing optional dependency, a model that will not
    load, or an upstream service that asks us to come back later."""

    error_type = "backend_unavailable"
    exit_code = 20
    http_status = 503


class BackendFailed(AiLocalCoreError):
    """A backend (or the upstream service it calls) failed on a valid request."""

    error_type = "backend_failed"
    exit_code = 21
    http_status = 502


class PayloadTooLarge(AiLocalCoreError):
    """The input is over a size limit (bytes, pixels or characters)."""

    error_type = "payload_too_large"
    exit_code = 23
    http_status = 413


class ServiceBusy(AiLocalCoreError):
    """The API server has no free request slot right now; retry later."""

    error_type = "service_busy"
    exit_code = 24
    http_status = 503


class ApiServerError(AiLocalCoreError):
    """The warm API server could not be used for a request that had already been sent."""

    error_type = "api_server_error"
    exit_code = 25
    http_status = 502


class InvalidImageSource(InvalidInput):
    """The image source is neither an http(s) URL nor a readable local file."""

    error_type = "invalid_image_source"
    exit_code = 2
    http_status = 400


class NotAnImage(InvalidInput):
    """The bytes behind the source are not an image in a format we decode."""

    error_type = "not_an_image"
    exit_code = 2
    http_status = 400


class ImageFetchFailed(AiLocalCoreError):
    """Downloading the image failed: an HTTP error status, no connection, a timeout.

    The API answers 400 when the image host answered 4xx (the URL is the
    caller's mistake, e.g. 404) and 502 otherwise (the host failed).
    """

    error_type = "image_fetch_failed"
    exit_code = 22
    http_status = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        if status is not None and 400 <= status < 500:
            self.http_status = 400


class ImageTooLarge(PayloadTooLarge):
    """The image is over the byte cap or the pixel cap (a decompression bomb)."""

    error_type = "image_too_large"
    exit_code = 23
    http_status = 413


class DescribeFailed(BackendFailed):
    """The description backend failed on a valid image."""

    error_type = "describe_failed"
    exit_code = 21
    http_status = 502


class UnsupportedLanguage(InvalidInput):
    """The language code is malformed or not supported by the backend."""

    error_type = "unsupported_language"
    exit_code = 2
    http_status = 400


class TextTooLong(PayloadTooLarge):
    """The text is over the backend's length limit."""

    error_type = "text_too_long"
    exit_code = 23
    http_status = 413


class TranslationFailed(BackendFailed):
    """The translation backend failed or returned nothing usable."""

    error_type = "translation_failed"
    exit_code = 21
    http_status = 502


class TranslationRateLimited(BackendUnavailable):
    """The translation service refused the request for now (HTTP 429); retry later."""

    error_type = "translation_rate_limited"
    exit_code = 20
    http_status = 503


class WebhookDeliveryFailed(BackendFailed):
    """The health check's alert could not be posted (the URL is never part of the message)."""

    error_type = "backend_failed"
    exit_code = 21
    http_status = 502


# --- the API server's types without a class, and the CLI's copy of its errors -------------

#: The API server's answers to HTTP-level errors (werkzeug's; :mod:`ai_local_core.api.app`).
HTTP_LEVEL_EXIT_CODES = MappingProxyType(
    {
        "bad_request": 2,
        "unsupported_media_type": 2,
        "too_many_requests": 24,
        "not_found": 25,
        "method_not_allowed": 25,
        "http_error": 25,
    }
)


def error_classes() -> tuple[type[AiLocalCoreError], ...]:
    """Every class of this file that stands for one ``error.type`` (all but the base and
    :class:`RemoteError`), in the order of this file."""
    return tuple(
        value
        for value in globals().values()
        if isinstance(value, type)
        and issubclass(value, AiLocalCoreError)
        and value not in (AiLocalCoreError, RemoteError)
    )


class RemoteError(AiLocalCoreError):
    """An error reported by the API server, re-raised by the CLI with its type and message.

    ``error_type``, ``exit_code`` and ``http_status`` are set per instance from the
    server's answer (the class default, ``internal_error``, applies when it names none).
    """

    error_type = "internal_error"
    exit_code = EXIT_INTERNAL
    http_status = 500

    def __init__(self, error_type: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.error_type = error_type
        self.exit_code = exit_code_for(error_type)
        if status is not None:
            self.http_status = status


#: The exit code of every ``error.type``: the classes above, the HTTP-level types,
#: ``internal_error`` and ``interrupted``.
EXIT_CODES = MappingProxyType(
    {
        "internal_error": EXIT_INTERNAL,
        **{cls.error_type: cls.exit_code for cls in error_classes()},
        **HTTP_LEVEL_EXIT_CODES,
        "interrupted": EXIT_INTERRUPTED,
    }
)


def exit_code_for(error_type: str) -> int:
    """The exit code of ``error_type``; 1 (``internal_error``) when it is unknown."""
    return EXIT_CODES.get(error_type, EXIT_INTERNAL)
