"""The ``google`` backend: Google Translate's public web endpoint via deep-translator.

deep-translator calls ``requests.get`` without a timeout, so each call runs in a
daemon thread and the caller waits at most ``timeout_s``; a call that overruns
is abandoned (its thread ends when the socket does) and reported as a failure.
Text leaves the machine with this backend: the ``ollama`` backend is the
private, offline alternative.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import ClassVar, Final

from ai_local_core.translation.base import Translation, TranslationBackend
from ai_local_core.translation.errors import (
    TranslationFailed,
    TranslationRateLimited,
    UnsupportedLanguage,
)
from ai_local_core.translation.languages import AUTO, normalize_language

logger = logging.getLogger(__name__)

#: Google's web endpoint caps a request at 5000 characters.
GOOGLE_MAX_CHARS: Final = 5000
#: Standard codes that Google spells differently.
_TO_GOOGLE: Final = {"he": "iw", "jv": "jw", "zh": "zh-CN"}


def _run_bounded(call: Callable[[], str | None], timeout_s: float) -> str | None:
    """Run ``call`` in a daemon thread; re-raise its exception; give up after ``timeout_s``."""
    result: list[str | None] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            failure.append(exc)

    worker = threading.Thread(target=target, name="google-translate", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TranslationFailed(f"Google Translate did not answer within {timeout_s:g} s")
    if failure:
        raise failure[0]
    return result[0]


class GoogleBackend(TranslationBackend):
    """Translate with Google Translate through deep-translator."""

    name: ClassVar[str] = "google"

    def __init__(
        self,
        *,
        timeout_s: float = 15.0,
        max_chars: int = GOOGLE_MAX_CHARS,
        base_url: str | None = None,
    ) -> None:
        super().__init__(max_chars=min(max_chars, GOOGLE_MAX_CHARS))
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        # A mirror or a test server in place of https://translate.google.com/m.
        self._base_url = base_url

    def check_language(self, code: str) -> str:
        from deep_translator.constants import GOOGLE_LANGUAGES_TO_CODES

        canonical = normalize_language(code)
        if _TO_GOOGLE.get(canonical, canonical) not in GOOGLE_LANGUAGES_TO_CODES.values():
            raise UnsupportedLanguage(f"Google Translate does not support {code!r}")
        return canonical

    def _translate(self, text: str, target: str, source: str) -> Translation:
        from deep_translator import GoogleTranslator
        from deep_translator import exceptions as dt_errors
        from requests import RequestException

        translator = GoogleTranslator(
            source=source if source == AUTO else _TO_GOOGLE.get(source, source),
            target=_TO_GOOGLE.get(target, target),
        )
        if self._base_url:
            translator._base_url = self._base_url
        try:
            translated = _run_bounded(lambda: translator.translate(text), self.timeout_s)
        except dt_errors.TooManyRequests:
            raise TranslationRateLimited(
                "Google Translate is rate limiting this host (HTTP 429); retry later"
            ) from None
        except dt_errors.TranslationNotFound:
            raise TranslationFailed("Google Translate returned no translation") from None
        except (dt_errors.RequestError, dt_errors.BaseError, RequestException) as exc:
            logger.warning("google translation failed: %s", type(exc).__name__)
            raise TranslationFailed(
                f"Google Translate request failed: {type(exc).__name__}"
            ) from None
        # deep-translator returns None when the text comes back unchanged.
        return Translation(
            text=translated if translated else text,
            source_language=source,
            target_language=target,
            backend=self.name,
        )
