"""Language codes: normalisation and validation."""

from __future__ import annotations

import pytest
from ai_local_core.errors import InvalidInput, UnsupportedLanguage
from ai_local_core.translation.languages import LANGUAGES, language_name, normalize_language


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("pl", "pl"),
        ("PL", "pl"),
        (" de ", "de"),
        ("zh-cn", "zh-CN"),
        ("zh_TW", "zh-TW"),
        ("he", "he"),
        ("ceb", "ceb"),
        ("mni-mtei", "mni-Mtei"),
    ],
)
def test_normalize(given: str, expected: str) -> None:
    assert normalize_language(given) == expected


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ("", "not a language code"),
        ("p", "not a language code"),
        ("polish", "not a language code"),
        ("pl!", "not a language code"),
        ("12", "not a language code"),
        ("xx", "unsupported language code"),
        ("en-XX", "unsupported language code"),
        ("auto", "not a language code"),
    ],
)
def test_rejected_codes(given: str, needle: str) -> None:
    with pytest.raises(UnsupportedLanguage, match=needle) as caught:
        normalize_language(given)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.http_status == 400
    assert caught.value.error_type == "unsupported_language"


def test_names() -> None:
    assert language_name("pl") == "Polish"
    assert language_name("zh-TW") == "Chinese (Traditional)"
    assert len(LANGUAGES) > 100
    assert all(code == code.strip() and name for code, name in LANGUAGES.items())
