"""Text translation: a backend interface with ``google`` and ``ollama`` backends.

Backends validate the target language by ISO code (``pl``, ``en``, ``de``...)
and detect the source language themselves.
"""

from ai_local_core.translation.base import Translation, TranslationBackend
from ai_local_core.translation.languages import AUTO, LANGUAGES, normalize_language

__all__ = ["AUTO", "LANGUAGES", "Translation", "TranslationBackend", "normalize_language"]
