"""The translation backend interface and its result type."""

from __future__ import annotations

import abc
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ai_local_core.errors import InvalidInput, TextTooLong
from ai_local_core.translation.languages import AUTO, normalize_language


class Translation(BaseModel):
    """A translated text."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The translation")
    source_language: str = Field(description="Source code, or 'auto' when detected by the backend")
    target_language: str = Field(description="Canonical target code")
    backend: str = Field(description="Backend name, e.g. 'google' or 'ollama'")
    model: str | None = Field(default=None, description="Model used, for LLM backends")


class TranslationBackend(abc.ABC):
    """Translates text into a target language given by ISO code; the source is detected."""

    name: ClassVar[str]

    def __init__(self, *, max_chars: int) -> None:
        if max_chars <= 0:
            raise ValueError("max_chars must be positive")
        self.max_chars = max_chars

    @property
    def loaded(self) -> bool:
        """Whether the backend is ready; remote backends have nothing to load."""
        return True

    def load(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Prepare heavy resources; nothing by default."""

    def check_text(self, text: str) -> str:
        """Return ``text`` stripped, or raise for empty or over-long text."""
        stripped = text.strip()
        if not stripped:
            raise InvalidInput("text to translate is empty")
        if len(stripped) > self.max_chars:
            raise TextTooLong(
                f"text is {len(stripped)} characters, over the limit of {self.max_chars}"
            )
        return stripped

    def check_language(self, code: str) -> str:
        """Canonical code for ``code``; backends narrow what they accept by overriding."""
        return normalize_language(code)

    def translate(self, text: str, target: str, source: str = AUTO) -> Translation:
        """Validate the input, then translate ``text`` into ``target``."""
        clean = self.check_text(text)
        target_code = self.check_language(target)
        source_code = AUTO if source.strip().lower() == AUTO else self.check_language(source)
        return self._translate(clean, target_code, source_code)

    @abc.abstractmethod
    def _translate(self, text: str, target: str, source: str) -> Translation:
        """Translate validated input."""
