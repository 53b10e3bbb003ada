"""The CLIs' fast lane: reach the warm API server with the standard library only.

A CLI with a warm route (``ai-describe``, ``ai-translate``) calls
:func:`attempt` from :func:`ai_local_core.cli._common.run_cli` after parsing its
argv and before anything imports pydantic, httpx or a backend:

1. read ``api.url``, ``api.connect_timeout``, ``api.client_timeout`` and
   ``log_level`` from the environment and the YAML file with
   ``load_settings()``'s precedence (:class:`~ai_local_core.config_paths.RawConfig`)
   and check them as the settings models would;
2. build the request body (the tool's ``body`` function: ``ai-describe`` reads a
   local image file and sends it base64-encoded);
3. POST it with :func:`ai_local_core.api.remote.post_json`.

The server's success object is printed as it is and its error keeps its type,
message and exit code. Whenever this module cannot be sure of what the full
path would do (a value it does not parse exactly like pydantic, a local file
that is missing or too large, a configuration file that does not load) it does
not guess: it steps aside *before* sending anything and the full path runs as
it always did (``load_settings()``, validation, the same server call through
:func:`~ai_local_core.api.remote.call_api`). When the server cannot be used (not
listening, not the JSON contract), the full path runs in-process with
``api.url`` cleared, so the server is not tried twice.

Only the keys read here are checked; the rest of the configuration is checked
by the server that does the work (and by any in-process run).
``AI_LOCAL_CORE_FAST_LANE=0`` turns the lane off: the full path then loads and
validates the whole configuration before it calls the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ai_local_core.api.remote import ApiTarget, post_json
from ai_local_core.config_paths import RawConfig, Unresolved

__all__ = [
    "API_CLIENT_TIMEOUT",
    "API_CONNECT_TIMEOUT",
    "API_URL",
    "DEFAULT_LOG_LEVEL",
    "FAST_LANE_ENV",
    "IMAGE_ALLOW_LOCAL_PATHS",
    "IMAGE_MAX_BYTES",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "BodyBuilder",
    "Count",
    "Flag",
    "RawConfig",
    "Seconds",
    "Unresolved",
    "WarmOutcome",
    "WarmRoute",
    "api_target",
    "attempt",
    "enabled",
    "log_level",
    "read_bool",
    "read_int",
    "read_seconds",
]


class Seconds(NamedTuple):
    """A float setting ``gt < value <= le`` (the pydantic ``Field`` bounds)."""

    keys: tuple[str, ...]
    default: float
    gt: float
    le: float


class Count(NamedTuple):
    """An int setting ``value > gt`` (the pydantic ``Field`` bound)."""

    keys: tuple[str, ...]
    default: int
    gt: int


class Flag(NamedTuple):
    """A bool setting."""

    keys: tuple[str, ...]
    default: bool


# The keys the fast lane reads, with the defaults and bounds of their pydantic
# fields (tests/unit/test_cli_fast_lane.py checks they match the models).
API_URL: tuple[str, ...] = ("api", "url")
API_CONNECT_TIMEOUT = Seconds(("api", "connect_timeout"), 0.5, 0.0, 60.0)
API_CLIENT_TIMEOUT = Seconds(("api", "client_timeout"), 300.0, 0.0, 3600.0)
IMAGE_MAX_BYTES = Count(("image", "limits", "max_bytes"), 10 * 1024 * 1024, 0)
IMAGE_ALLOW_LOCAL_PATHS = Flag(("image", "limits", "allow_local_paths"), True)
LOG_LEVEL: tuple[str, ...] = ("log_level",)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "WARNING"

#: ASCII digits only, as pydantic reads them (``\d`` also matches other scripts' digits).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
#: The strings pydantic accepts as booleans (lax mode), lower-cased.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


#: Set to 0/false/no/off to skip the fast lane (the full path still uses the server).
FAST_LANE_ENV = "AI_LOCAL_CORE_FAST_LANE"


def enabled() -> bool:
    """Whether the fast lane is on (``AI_LOCAL_CORE_FAST_LANE`` is not 0/false/no/off)."""
    return os.environ.get(FAST_LANE_ENV, "").strip().lower() not in ("0", "false", "no", "off")


def _name(keys: tuple[str, ...]) -> str:
    return ".".join(keys)


def read_seconds(raw: RawConfig, spec: Seconds) -> float:
    value = raw.get(spec.keys, spec.default)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unresolved(f"{_name(spec.keys)} is not a number")
    if not spec.gt < value <= spec.le:
        raise Unresolved(f"{_name(spec.keys)} is out of range")
    return float(value)


def read_int(raw: RawConfig, spec: Count) -> int:
    value = raw.get(spec.keys, spec.default)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        try:
            value = int(value)
        except ValueError:  # more digits than int() parses (pydantic refuses them too)
            raise Unresolved(f"{_name(spec.keys)} is not an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unresolved(f"{_name(spec.keys)} is not an integer")
    if not value > spec.gt:
        raise Unresolved(f"{_name(spec.keys)} is out of range")
    return value


def read_bool(raw: RawConfig, spec: Flag) -> bool:
    value = raw.get(spec.keys, spec.default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:  # no strip(), as pydantic
        return value.lower() in _TRUE
    raise Unresolved(f"{_name(spec.keys)} is not a boolean")


def api_target(raw: RawConfig) -> ApiTarget | None:
    """The API server the CLIs should use (None: ``api.url`` unset or empty)."""
    url = raw.get(API_URL, None)
    if url is not None and not isinstance(url, str):
        raise Unresolved("api.url is not a string")
    if not url:
        return None
    return ApiTarget(
        url, read_seconds(raw, API_CONNECT_TIMEOUT), read_seconds(raw, API_CLIENT_TIMEOUT)
    )


def log_level(raw: RawConfig) -> str:
    """``log_level`` as the settings would hold it (upper case, one of :data:`LOG_LEVELS`)."""
    value = raw.get(LOG_LEVEL, DEFAULT_LOG_LEVEL)
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise Unresolved("log_level is not a log level")
    return value.upper()


#: Builds the server's request body from the parsed argv payload (may read the config).
BodyBuilder = Callable[[Mapping[str, Any], RawConfig], dict[str, Any]]


class WarmRoute(NamedTuple):
    """A CLI's warm path: the API route and how to turn the argv payload into its body."""

    path: str
    #: None sends the payload as it is.
    body: BodyBuilder | None = None


class WarmOutcome(NamedTuple):
    """What :func:`attempt` found."""

    #: The server's success object; None when the full path must run.
    answer: dict[str, Any] | None
    #: The server was tried and could not be used: run in-process, do not try it again.
    in_process: bool
    #: ``log_level`` from the configuration, when it was read.
    log_level: str | None = None


def attempt(
    route: WarmRoute,
    payload: Mapping[str, Any],
    *,
    raw: RawConfig | None = None,
    on_log_level: Callable[[str], None] | None = None,
) -> WarmOutcome:
    """Try the warm API server for one CLI call (see the module docstring).

    Raises what :func:`~ai_local_core.api.remote.post_json` raises: the server's
    error (:class:`~ai_local_core.api.remote.RemoteError`) or ``api_server_error``.
    ``on_log_level`` is called with the configured level before anything is sent.
    """
    if not enabled():
        return WarmOutcome(None, in_process=False)
    raw = RawConfig() if raw is None else raw
    try:
        target = api_target(raw)
        if target is None:
            return WarmOutcome(None, in_process=False)
        level = log_level(raw)
        body = route.body(payload, raw) if route.body is not None else dict(payload)
    except Unresolved:
        return WarmOutcome(None, in_process=False)
    if on_log_level is not None:
        on_log_level(level)
    answer = post_json(target, route.path, body)
    return WarmOutcome(answer, in_process=answer is None, log_level=level)
