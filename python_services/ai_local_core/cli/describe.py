"""``ai-describe``: describe an image, Waldus-compatible.

Usage::

    ai-describe "https://example.com/image.jpg" 50
    python3 $AI_LOCAL_CORE_PATH/src/image/describe.py /path/to/photo.png

Arguments: the image (an http(s) URL or a local path) and, optionally, the
maximum description length in tokens (default ``image.default_max_length``, 50).
The backend (``blip`` or ``ollama``) comes from ``image.backend``. When
``api.url`` points at a running API server, the request goes there (a local
file is sent base64-encoded) and no model is loaded here: the fast lane
(:mod:`ai_local_core.cli.fast_lane`) does that with the standard library only,
before pydantic, httpx, Pillow or torch are imported. Output and exit codes:
``docs/cli-contract.md``.
"""

from __future__ import annotations

import base64
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ai_local_core.cli._common import run_cli, validate_input
from ai_local_core.cli.fast_lane import (
    IMAGE_ALLOW_LOCAL_PATHS,
    IMAGE_MAX_BYTES,
    RawConfig,
    Unresolved,
    WarmRoute,
    read_bool,
    read_int,
)
from ai_local_core.errors import InvalidInput

if TYPE_CHECKING:
    from ai_local_core.config import Settings

__all__ = ["WARM_ROUTE", "describe_command", "main", "parse_args", "warm_body"]

USAGE = "usage: describe.py IMAGE_URL_OR_PATH [MAX_LENGTH]"
#: ``ai_local_core.image.loader.is_url``'s test, without importing the loader.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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


def _read_image_file(source: str, max_bytes: int) -> bytes:
    """The file's bytes when ``read_local`` would return them; else :class:`Unresolved`
    (the full path then gives ``read_local``'s own error)."""
    path = Path(source)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            raise Unresolved("not a regular file within the byte cap")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        raise Unresolved("cannot read the image file") from None
    if len(data) > max_bytes:
        raise Unresolved("the image file grew over the byte cap")
    return data


def warm_body(payload: Mapping[str, Any], raw: RawConfig) -> dict[str, Any]:
    """The ``/v1/describe`` body: a URL as it is, a local file base64-encoded."""
    image = payload.get("image")
    if not isinstance(image, str):
        raise Unresolved("no image")
    if _URL_SCHEME.match(image.strip()):
        return dict(payload)
    if not read_bool(raw, IMAGE_ALLOW_LOCAL_PATHS):
        raise Unresolved("local paths are not allowed")
    data = _read_image_file(image, read_int(raw, IMAGE_MAX_BYTES))
    body: dict[str, Any] = {"image_base64": base64.b64encode(data).decode("ascii")}
    if "max_length" in payload:
        body["max_length"] = payload["max_length"]
    return body


WARM_ROUTE = WarmRoute("/v1/describe", warm_body)


def describe_command(payload: Any, settings: Settings) -> dict[str, Any]:
    """The ``ai-describe`` handler: warm API server if configured and up, else in-process."""
    from ai_local_core.api.remote import call_api
    from ai_local_core.image.loader import is_url, read_local
    from ai_local_core.image.service import DescribeRequest, create_image_backend, describe

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
    return run_cli(
        describe_command, argv=argv, parse_args=parse_args, prog="ai-describe", warm=WARM_ROUTE
    )


if __name__ == "__main__":
    sys.exit(main())
