"""The ``google`` backend: Google Translate's public web endpoint.

deep-translator's ``GoogleTranslator.translate`` calls ``requests.get`` with no
timeout and offers no way to pass one (nor a session), so this backend makes
that one GET itself: the same URL (``https://translate.google.com/m``), the same
query (``sl``, ``tl``, ``q``) and the same reading of the page (the text of
``div.t0``, else of ``div.result-container``). deep-translator still supplies
the table of the languages Google knows.

The GET is bounded and runs in the caller's thread, nothing is left behind:

* connecting and every read from the socket wait at most ``timeout_s``
  (``requests``' ``(connect, read)`` timeout): an upstream that accepts and
  never answers fails after ``timeout_s``;
* the body (identity encoding: the bytes counted are the bytes sent) is read in
  chunks of :data:`_CHUNK_BYTES` and must be complete ``timeout_s`` after the
  call started (checked after each chunk) and within :data:`MAX_PAGE_BYTES`;
* the session, and with it the socket, is closed before the call returns or
  raises. The API server holds its request slot around the call, so a stuck
  upstream keeps its slot exactly until the socket is closed, then frees it.

Text leaves the machine with this backend: the ``ollama`` backend is the
private, offline alternative.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar, Final

from ai_local_core.errors import (
    TranslationFailed,
    TranslationRateLimited,
    UnsupportedLanguage,
)
from ai_local_core.translation.base import Translation, TranslationBackend
from ai_local_core.translation.languages import AUTO, normalize_language

logger = logging.getLogger(__name__)

#: Google's web endpoint caps a request at 5000 characters.
GOOGLE_MAX_CHARS: Final = 5000
#: Google Translate's mobile web page (deep-translator's ``BASE_URLS["GOOGLE_TRANSLATE"]``).
GOOGLE_URL: Final = "https://translate.google.com/m"
#: A larger answer is not the translation page (it is some tens of KiB).
MAX_PAGE_BYTES: Final = 4 * 1024 * 1024
_CHUNK_BYTES: Final = 8 * 1024
#: Standard codes that Google spells differently.
_TO_GOOGLE: Final = {"he": "iw", "jv": "jw", "zh": "zh-CN"}
#: Where the page holds the translation, in the order deep-translator looks.
_RESULT_CLASSES: Final = ("t0", "result-container")


def _google_code(code: str) -> str:
    return code if code == AUTO else _TO_GOOGLE.get(code, code)


class GoogleBackend(TranslationBackend):
    """Translate with Google Translate's web endpoint, bounded by ``timeout_s``."""

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
        self._base_url = base_url or GOOGLE_URL

    def check_language(self, code: str) -> str:
        from deep_translator.constants import GOOGLE_LANGUAGES_TO_CODES

        canonical = normalize_language(code)
        if _google_code(canonical) not in GOOGLE_LANGUAGES_TO_CODES.values():
            raise UnsupportedLanguage(f"Google Translate does not support {code!r}")
        return canonical

    def _translate(self, text: str, target: str, source: str) -> Translation:
        tl, sl = _google_code(target), _google_code(source)
        translated = text if sl == tl else self._fetch_translation(text, tl, sl)
        return Translation(
            text=translated, source_language=source, target_language=target, backend=self.name
        )

    def _fetch_translation(self, text: str, tl: str, sl: str) -> str:
        """One bounded GET of the translation page; the translated text."""
        import requests

        started = time.monotonic()
        try:
            status, page, encoding = self._get(
                {"tl": tl, "sl": sl, "q": text}, started + self.timeout_s
            )
        except requests.RequestException as exc:
            # A read timeout inside the body surfaces as requests' ConnectionError.
            if isinstance(exc, requests.Timeout) or (time.monotonic() - started >= self.timeout_s):
                raise self._timed_out() from None
            logger.warning("google translation failed: %s", type(exc).__name__)
            raise TranslationFailed(
                f"Google Translate request failed: {type(exc).__name__}"
            ) from None
        if status == 429:
            raise TranslationRateLimited(
                "Google Translate is rate limiting this host (HTTP 429); retry later"
            )
        if not 200 <= status < 300:
            raise TranslationFailed(f"Google Translate request failed: HTTP {status}")
        translated = _read_translation(page, encoding)
        if translated is None:
            raise TranslationFailed("Google Translate returned no translation")
        # An empty result means the text came back unchanged.
        return translated or text

    def _get(self, params: dict[str, str], deadline: float) -> tuple[int, bytes, str | None]:
        """Status, body and declared charset of the page; the socket is closed on return."""
        import requests

        with requests.Session() as session:
            response = session.get(
                self._base_url,
                params=params,
                headers={"Accept-Encoding": "identity"},
                timeout=(self.timeout_s, self.timeout_s),
                stream=True,
            )
            with response:
                if not 200 <= response.status_code < 300:
                    return response.status_code, b"", None
                body = bytearray()
                for chunk in response.iter_content(_CHUNK_BYTES):
                    body += chunk
                    if time.monotonic() >= deadline:
                        raise self._timed_out()
                    if len(body) > MAX_PAGE_BYTES:
                        raise TranslationFailed(
                            f"Google Translate's answer is over {MAX_PAGE_BYTES} bytes"
                        )
                # The declared charset, if any (requests assumes ISO-8859-1 for text/* without
                # one); else BeautifulSoup reads the page's <meta charset> or guesses.
                declared = "charset" in response.headers.get("Content-Type", "").lower()
                return response.status_code, bytes(body), response.encoding if declared else None

    def _timed_out(self) -> TranslationFailed:
        return TranslationFailed(f"Google Translate did not answer within {self.timeout_s:g} s")


def _read_translation(page: bytes, encoding: str | None) -> str | None:
    """The translation on Google's page (stripped), or None when the page has none."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, "html.parser", from_encoding=encoding)
    for css_class in _RESULT_CLASSES:
        element = soup.find("div", {"class": css_class})
        if element is not None:
            return element.get_text(strip=True)
    return None
