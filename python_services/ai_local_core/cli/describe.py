"""``ai-describe``: describe an image, Waldus-compatible.

Usage::

    ai-describe "https://example.com/image.jpg" 50
    python python_services/src/image/describe.py /path/to/photo.png

Arguments: the image (an http(s) URL or a local path) and, optionally, the
maximum description length in tokens (default ``image.default_max_length``, 50).
The backend (``blip`` or ``ollama``) comes from ``image.backend``. When
``api.url`` points at a running API server, the request goes there (a local
file is sent base64-encoded) and no model is loaded here. Output and exit
codes: ``docs/cli-contract.md``.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Sequence
from typing import Any

from ai_local_core.cli._common import run_cli, validate_input
from ai_local_core.config import Settings
from ai_local_core.errors import InvalidInput
from ai_local_core.image.loader import is_url, read_local
from ai_local_core.image.service import DescribeRequest, create_image_backend, describe

__all__ = ["describe_command", "main", "parse_args"]

USAGE = "usage: describe.py IMAGE_URL_OR_PATH [MAX_LENGTH]"


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``IMAGE [MAX_LENGTH]`` to the request object."""
    if not argv:
        raise InvalidInput(f"missing argument: the image URL or path ({USAGE})")
    if len(argv) > 2:
        raise InvalidInput(f"expected at most 2 arguments, got {len(argv)} ({USAGE})")
    payload: dict[str, Any] = {"image": argv[0]}
    if len(argv) == 2:
        text = argv[1].strip()
        if not text.lstrip("-").isdigit():
            raise InvalidInput(f"MAX_LENGTH must be a whole number, got {argv[1]!r} ({USAGE})")
        payload["max_length"] = int(text)
    return payload


def describe_command(payload: Any, settings: Settings) -> dict[str, Any]:
    """The ``ai-describe`` handler: warm API server if configured and up, else in-process."""
    from ai_local_core.api.remote import call_api

    request = validate_input(DescribeRequest, payload)
    limits = settings.image.limits
    if settings.api.url:
        remote_payload = request.model_dump(exclude_none=True)
        if request.image is not None and not is_url(request.image):
            data = read_local(request.image, limits)
            remote_payload = {"image_base64": base64.b64encode(data).decode("ascii")}
            if request.max_length is not None:
                remote_payload["max_length"] = request.max_length
        answer = call_api(settings, "/v1/describe", remote_payload)
        if answer is not None:
            return answer
    backend = create_image_backend(settings)
    return describe(
        request, backend, limits=limits, default_max_length=settings.image.default_max_length
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``ai-describe``; returns the exit status."""
    return run_cli(describe_command, argv=argv, parse_args=parse_args, prog="ai-describe")


if __name__ == "__main__":
    sys.exit(main())
