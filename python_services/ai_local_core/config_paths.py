"""Where the configuration comes from, without pydantic: the light half of the config.

:mod:`ai_local_core.config` (pydantic-settings) and the CLIs' fast lane
(:mod:`ai_local_core.cli.fast_lane`) both locate and read the YAML file here, so
they agree on which file counts:

* ``AI_LOCAL_CORE_CONFIG`` names a YAML file used instead of the packaged one;
* otherwise ``AI_LOCAL_CORE_ENV`` (``development`` by default) picks
  ``config/<name>.yaml`` shipped in the package.

:class:`RawConfig` answers "what do the environment and that file say about one
key?" with ``load_settings()``'s precedence (``AI_LOCAL_CORE_<SECTION>__<KEY>``
environment variables, case-insensitive, over the file), before any validation.
When it cannot be sure what ``load_settings()`` would make of a key (the file is
missing or broken, a section is set as a JSON object in the environment, the
same variable is set twice with different case...) it raises
:class:`Unresolved`, and the caller leaves the decision to ``load_settings()``.
Keyword arguments, ``OLLAMA_HOST`` and ``config/models.yaml`` matter only to the
``ollama`` and ``models`` sections, which the fast lane does not read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ai_local_core.errors import ConfigError

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_ENV",
    "ENV_CONFIG",
    "ENV_NAME",
    "ENV_PREFIX",
    "NESTED_DELIMITER",
    "RawConfig",
    "Unresolved",
    "as_mapping",
    "available_environments",
    "environment_file",
    "local_file_within",
    "read_yaml",
]

#: Directory of the YAML files shipped with the package.
CONFIG_DIR = Path(__file__).resolve().parent / "config"
#: Selects ``config/<name>.yaml``.
ENV_NAME = "AI_LOCAL_CORE_ENV"
#: Path of a YAML file used instead of the packaged environment file.
ENV_CONFIG = "AI_LOCAL_CORE_CONFIG"
#: Prefix of the environment variables that override settings.
ENV_PREFIX = "AI_LOCAL_CORE_"
#: Separates nested keys in those variables (``AI_LOCAL_CORE_API__URL``).
NESTED_DELIMITER = "__"
DEFAULT_ENV = "development"
_ENV_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def available_environments() -> list[str]:
    """Names accepted by ``AI_LOCAL_CORE_ENV`` (the packaged YAML files)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.is_file() and p.stem != "models")


def environment_file() -> Path:
    """The YAML file for the current environment (see module docstring)."""
    override = os.environ.get(ENV_CONFIG, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_CONFIG} points to {override!r}, which is not a file")
        return path
    name = os.environ.get(ENV_NAME, "").strip().lower() or DEFAULT_ENV
    path = CONFIG_DIR / f"{name}.yaml"
    if not _ENV_NAME_RE.match(name) or name == "models" or not path.is_file():
        known = ", ".join(available_environments())
        raise ConfigError(f"unknown {ENV_NAME} {name!r} (known: {known})")
    return path


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping (``{}`` when empty); :class:`ConfigError` otherwise."""
    import yaml  # here, not at the top: only this function needs it

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML{where}: {problem}"
        ) from None
    if data is None:
        return {}
    return dict(as_mapping(data, path))


def local_file_within(source: str, dirs: Sequence[str]) -> Path | None:
    """The real path of ``source`` when it is a regular file under one of ``dirs``, else None.

    Symbolic links are resolved on both sides before the comparison, and where the
    file lies is checked before whether it exists, so "outside the directories",
    "missing", "a directory" and "unreadable" all give the same None: a caller
    cannot learn which files exist outside the allowed directories. Used by the
    image loader (``image.limits.local_dirs``) and by the CLI's fast lane.
    """
    if not dirs:
        return None
    try:
        real = os.path.realpath(source)
        for root in dirs:
            base = os.path.realpath(root)
            if os.path.commonpath([real, base]) == base and real != base:
                path = Path(real)
                return path if path.is_file() else None
    except (OSError, ValueError):  # ValueError: a NUL byte, or mixed absolute/relative paths
        return None
    return None


def as_mapping(value: Any, path: Path) -> Mapping[str, Any]:
    """``value`` if it is a mapping (``{}`` for None); :class:`ConfigError` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"config file {str(path)!r}: expected a mapping, got {type(value).__name__}"
        )
    return value


class Unresolved(Exception):
    """:class:`RawConfig` cannot tell what ``load_settings()`` would make of a key."""


_MISSING: Any = object()


class RawConfig:
    """The unvalidated value of a key, from the environment or the environment's YAML file.

    ``get(("api", "url"), default)`` returns the string of
    ``AI_LOCAL_CORE_API__URL`` if that is set (names are case-insensitive, like
    pydantic-settings' default), else ``api.url`` from the file (any YAML
    type), else ``default``. It raises :class:`Unresolved` whenever
    ``load_settings()`` might read the key differently or fail on it.
    """

    def __init__(self) -> None:
        prefix = ENV_PREFIX.lower()
        self._env: dict[str, str] = {}
        self._clashes: set[str] = set()
        for name, value in os.environ.items():
            lowered = name.lower()
            if not lowered.startswith(prefix):
                continue
            if lowered in self._env and self._env[lowered] != value:
                self._clashes.add(lowered)
            self._env[lowered] = value
        self._file: dict[str, Any] | None = None

    def _env_name(self, keys: tuple[str, ...]) -> str:
        return (ENV_PREFIX + NESTED_DELIMITER.join(keys)).lower()

    def _from_env(self, keys: tuple[str, ...]) -> str | None:
        for depth in range(1, len(keys)):
            if self._env_name(keys[:depth]) in self._env:
                raise Unresolved(f"{self._env_name(keys[:depth]).upper()} sets a whole section")
        name = self._env_name(keys)
        if name in self._clashes:
            raise Unresolved(f"{name.upper()} is set twice with different values")
        deeper = name + NESTED_DELIMITER
        if any(other.startswith(deeper) for other in self._env):
            raise Unresolved(f"{name.upper()} has nested keys")
        return self._env.get(name)

    def _from_file(self, keys: tuple[str, ...]) -> Any:
        if self._file is None:
            try:
                self._file = read_yaml(environment_file())
            except ConfigError as exc:
                raise Unresolved(exc.message) from None
        node: Any = self._file
        for key in keys:
            if not isinstance(node, Mapping):
                raise Unresolved(f"{'.'.join(keys)}: a parent is not a mapping")
            node = node.get(key, _MISSING)
            if node is _MISSING:
                return _MISSING
        return node

    def get(self, keys: tuple[str, ...], default: Any = None) -> Any:
        """The raw value of ``keys`` (see the class docstring)."""
        from_env = self._from_env(keys)
        if from_env is not None:
            return from_env
        value = self._from_file(keys)
        return default if value is _MISSING else value
