"""The ``translation`` section of the settings (see :mod:`ai_local_core.config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class GoogleTranslationSettings(_Section):
    #: Longest wait for Google Translate, in seconds.
    timeout_s: float = Field(15.0, gt=0, le=300)
    #: Replaces ``https://translate.google.com/m`` (a mirror, or a stand-in in tests).
    base_url: str | None = None


class OllamaTranslationSettings(_Section):
    #: Null means ``models.defaults.translation.model``; aliases apply.
    model: str | None = None
    #: Null means ``models.defaults.translation.temperature``.
    temperature: float | None = Field(None, ge=0, le=2)


class TranslationSettings(_Section):
    """Translation: which backend and its limits."""

    #: ``google`` sends text to Google; ``ollama`` keeps it on this node.
    backend: Literal["google", "ollama"] = "google"
    #: Longest text accepted, in characters (Google caps it at 5000 anyway).
    max_chars: int = Field(5000, ge=1, le=100_000)
    google: GoogleTranslationSettings = Field(default_factory=GoogleTranslationSettings)
    ollama: OllamaTranslationSettings = Field(default_factory=OllamaTranslationSettings)
