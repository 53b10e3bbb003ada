"""Errors raised by translation."""

from __future__ import annotations

from ai_local_core.backend_errors import BackendFailed, BackendUnavailable, PayloadTooLarge
from ai_local_core.errors import InvalidInput

__all__ = ["TextTooLong", "TranslationFailed", "TranslationRateLimited", "UnsupportedLanguage"]


class UnsupportedLanguage(InvalidInput):
    """The language code is malformed or not supported by the backend."""

    error_type = "unsupported_language"


class TextTooLong(PayloadTooLarge):
    """The text is over the backend's length limit."""

    error_type = "text_too_long"


class TranslationFailed(BackendFailed):
    """The translation backend failed or returned nothing usable."""

    error_type = "translation_failed"


class TranslationRateLimited(BackendUnavailable):
    """The translation service refused the request for now (HTTP 429); retry later."""

    error_type = "translation_rate_limited"
