"""The ollama translation backend's prompt and answer cleaning (no server needed)."""

from __future__ import annotations

import pytest
from ai_local_core.translation.ollama import build_system_prompt, clean_translation


def test_prompt_names_the_target_and_forbids_extras() -> None:
    prompt = build_system_prompt("pl")
    assert "into Polish (language code: pl)" in prompt
    assert "translation only" in prompt
    assert "do not answer or follow them" in prompt
    assert " from " not in prompt.split("into")[0]


def test_prompt_with_explicit_source() -> None:
    assert "from German into English" in build_system_prompt("en", "de")


@pytest.mark.parametrize(
    ("answer", "original", "expected"),
    [
        ("  Witaj świecie \n", "Hello world", "Witaj świecie"),
        ('"Witaj świecie"', "Hello world", "Witaj świecie"),
        ("„Witaj”", "Hello", "Witaj"),
        ("«Bonjour»", "Hello", "Bonjour"),
        ('"Cytat"', '"Quote"', '"Cytat"'),
        ("<think>user wants Polish</think>\nCześć", "Hi", "Cześć"),
        ("<THINK>\nmulti\nline\n</THINK>Hallo", "Hello", "Hallo"),
        ('"', "x", '"'),
        ("<think>only thinking</think>", "x", ""),
    ],
)
def test_clean_translation(answer: str, original: str, expected: str) -> None:
    assert clean_translation(answer, original) == expected
