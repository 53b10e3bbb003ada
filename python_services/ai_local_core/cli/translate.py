"""``ai-translate``: translate a text, Waldus-compatible.

Usage::

    ai-translate "Hello world" pl
    python3 $AI_LOCAL_CORE_PATH/src/translation/translate.py "Guten Tag" en [SOURCE]

Arguments: the text, the target language as an ISO code (``pl``, ``en``,
``de``...) and, optionally, the source language (default ``auto``). The backend
(``google`` or ``ollama``) comes from ``translation.backend``. When ``api.url``
points at a running API server, the request goes there and no backend is set up
here. Output and exit codes: ``docs/cli-contract.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ai_local_core.cli._common import run_cli, validate_input
from ai_local_core.errors import InvalidInput

if TYPE_CHECKING:
    from ai_local_core.config import Settings

__all__ = ["main", "parse_args", "translate_command"]

USAGE = "usage: translate.py TEXT TARGET_LANGUAGE [SOURCE_LANGUAGE]"


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``TEXT TARGET [SOURCE]`` to the request object."""
    if len(argv) < 2:
        missing = "the text and the target language" if not argv else "the target language"
        raise InvalidInput(f"missing argument: {missing} ({USAGE})")
    if len(argv) > 3:
        raise InvalidInput(f"expected at most 3 arguments, got {len(argv)} ({USAGE})")
    payload = {"text": argv[0], "target": argv[1]}
    if len(argv) == 3:
        payload["source"] = argv[2]
    return payload


def translate_command(payload: Any, settings: Settings) -> dict[str, Any]:
    """The ``ai-translate`` handler: the warm API server if configured and reachable, else
    in-process (never both: see :mod:`ai_local_core.api.remote`)."""
    from ai_local_core.translation.service import TranslateRequest

    request = validate_input(TranslateRequest, payload)
    if settings.api.url:
        from ai_local_core.api.remote import call_api

        answer = call_api(settings, "/v1/translate", request.model_dump())
        if answer is not None:
            return answer
    from ai_local_core.translation.service import create_translation_backend, translate

    return translate(request, create_translation_backend(settings))


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``ai-translate``; returns the exit status."""
    return run_cli(translate_command, argv=argv, parse_args=parse_args, prog="ai-translate")


if __name__ == "__main__":
    sys.exit(main())
