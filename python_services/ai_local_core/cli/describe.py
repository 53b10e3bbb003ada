"""``ai-describe``: describe an image, Waldus-compatible.

Usage::

    ai-describe "https://example.com/image.jpg" 50
    python3 $AI_LOCAL_CORE_PATH/src/image/describe.py /path/to/photo.png

Arguments: the image (an http(s) URL or a local path) and, optionally, the
maximum description length in tokens (default ``image.default_max_length``, 50).
The backend (``blip`` or ``ollama``) comes from ``image.backend``. When
``api.url`` points at a running API server, the request goes there (a local
file is sent base64-encoded) and no model is loaded here: Pillow, httpx and
torch are imported only when the work runs in this process. Output and exit
codes: ``docs/cli-contract.md``.
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ai_local_core.cli._common import run_cli, validate_input
from ai_local_core.errors import InvalidInput

if TYPE_CHECKING:
    from ai_local_core.config import Settings
    from ai_local_core.image.limits import ImageLimits
    from ai_local_core.image.service import DescribeRequest

__all__ = ["describe_command", "main", "parse_args", "parse_max_length", "server_body"]

USAGE = "usage: describe.py IMAGE_URL_OR_PATH [MAX_LENGTH]"
#: ``MAX_LENGTH``: ASCII digits only (``\d`` and ``str.isdigit`` take other scripts' digits).
_DIGITS = re.compile(r"[0-9]+")
#: More digits than any valid ``MAX_LENGTH`` has, leading zeros aside.
_MAX_DIGITS = 6


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``IMAGE [MAX_LENGTH]`` to the request object."""
    if not argv:
        raise InvalidInput(f"missing argument: the image URL or path ({USAGE})")
    if len(argv) > 2:
        raise InvalidInput(f"expected at most 2 arguments, got {len(argv)} ({USAGE})")
    payload: dict[str, Any] = {"image": argv[0]}
    if len(argv) == 2:
        payload["max_length"] = parse_max_length(argv[1])
    return payload


def parse_max_length(text: str) -> int:
    """``MAX_LENGTH`` as a command line writes it: the digits 0-9 and nothing else (no
    sign, spaces, exponent or other scripts' digits, which ``str.isdigit`` would accept).
    The range (1..512) is the request model's to check; a number of more than
    :data:`_MAX_DIGITS` digits is refused here (``int()`` would refuse some of them)."""
    significant = text.lstrip("0")
    if _DIGITS.fullmatch(text) is None or len(significant) > _MAX_DIGITS:
        from ai_local_core.image.base import MAX_LENGTH_LIMIT

        raise InvalidInput(
            f"MAX_LENGTH must be a whole number from 1 to {MAX_LENGTH_LIMIT}, written with "
            f"the digits 0-9 only ({USAGE})"
        )
    return int(text)


def server_body(request: DescribeRequest, limits: ImageLimits) -> dict[str, Any]:
    """The ``/v1/describe`` body: a URL as it is, a local file read here (within
    ``image.limits``, with the in-process errors) and sent base64-encoded."""
    from ai_local_core.image.limits import is_url, read_local

    body = request.model_dump(exclude_none=True)
    if request.image is not None and not is_url(request.image):
        data = read_local(request.image, limits)
        body = {"image_base64": base64.b64encode(data).decode("ascii")}
        if request.max_length is not None:
            body["max_length"] = request.max_length
    return body


def describe_command(payload: Any, settings: Settings) -> dict[str, Any]:
    """The ``ai-describe`` handler: the warm API server if configured and reachable, else
    in-process (never both: see :mod:`ai_local_core.api.remote`)."""
    from ai_local_core.image.service import DescribeRequest

    request = validate_input(DescribeRequest, payload)
    limits = settings.image.limits
    if settings.api.url:
        from ai_local_core.api.remote import call_api

        answer = call_api(settings, "/v1/describe", server_body(request, limits))
        if answer is not None:
            return answer
    from ai_local_core.image.service import create_image_backend, describe

    backend = create_image_backend(settings)
    return describe(
        request, backend, limits=limits, default_max_length=settings.image.default_max_length
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``ai-describe``; returns the exit status."""
    return run_cli(describe_command, argv=argv, parse_args=parse_args, prog="ai-describe")


if __name__ == "__main__":
    sys.exit(main())
