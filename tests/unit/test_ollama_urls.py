"""OLLAMA_HOST-style address normalisation."""

from __future__ import annotations

import pytest
from ai_local_core.ollama.urls import normalize_ollama_url, redact_url


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "http://127.0.0.1:11434"),
        (":5000", "http://127.0.0.1:5000"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("::", "http://[::1]:11434"),
        ("1.2.3.4:56789", "http://1.2.3.4:56789"),
        ("example.com", "http://example.com:11434"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com/ollama/", "https://example.com:443/ollama"),
        ("[fe80::1]:8080", "http://[fe80::1]:8080"),
        ("'http://127.0.0.1:11434'", "http://127.0.0.1:11434"),
        ("http://user:pa%40ss@gw.internal:8080", "http://user:pa%40ss@gw.internal:8080"),
    ],
)
def test_normalize(value: str, expected: str) -> None:
    assert normalize_ollama_url(value) == expected


@pytest.mark.parametrize("value", ["ftp://host", "http://host:99999", "http://host/?q=1"])
def test_invalid_urls_raise_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        normalize_ollama_url(value)


def test_redact_hides_only_the_password() -> None:
    assert redact_url("http://bob:secret@gw:1/x") == "http://bob:***@gw:1/x"
    assert redact_url("http://gw:1") == "http://gw:1"
