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
import json
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
from ai_local_core.config_paths import local_file_within
from ai_local_core.errors import InvalidInput

if TYPE_CHECKING:
    from ai_local_core.config import Settings

__all__ = ["WARM_ROUTE", "describe_command", "main", "parse_args", "parse_max_length", "warm_body"]

USAGE = "usage: describe.py IMAGE_URL_OR_PATH [MAX_LENGTH]"
IMAGE_LOCAL_DIRS: tuple[str, ...] = ("image", "limits", "local_dirs")
#: ``MAX_LENGTH``: ASCII digits only (``\d`` and ``str.isdigit`` take other scripts' digits).
_DIGITS = re.compile(r"[0-9]+")
#: More digits than any valid ``MAX_LENGTH`` has, leading zeros aside.
_MAX_DIGITS = 6
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


def _local_dirs(raw: RawConfig) -> list[str]:
    """``image.limits.local_dirs`` as the settings model reads it (a YAML list, or JSON in
    the environment), or :class:`Unresolved`."""
    value = raw.get(IMAGE_LOCAL_DIRS, [])
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Unresolved("image.limits.local_dirs is not a JSON list") from None
    if not isinstance(value, list) or not all(
        isinstance(item, str) and Path(item).is_absolute() for item in value
    ):
        raise Unresolved("image.limits.local_dirs is not a list of absolute paths")
    return value


def warm_body(payload: Mapping[str, Any], raw: RawConfig) -> dict[str, Any]:
    """The ``/v1/describe`` body: a URL as it is, a local file base64-encoded."""
    image = payload.get("image")
    if not isinstance(image, str):
        raise Unresolved("no image")
    if _URL_SCHEME.match(image.strip()):
        return dict(payload)
    if not read_bool(raw, IMAGE_ALLOW_LOCAL_PATHS):
        raise Unresolved("local paths are not allowed")
    path = local_file_within(image, _local_dirs(raw))
    if path is None:  # the full path gives the one "not there or not allowed" error
        raise Unresolved("not a file under image.limits.local_dirs")
    data = _read_image_file(str(path), read_int(raw, IMAGE_MAX_BYTES))
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
