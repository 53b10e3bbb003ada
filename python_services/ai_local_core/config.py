"""Configuration of ai-local-core: YAML files plus environment overrides.

Where values come from, strongest first:

1. keyword arguments to :class:`Settings` (tests, embedding code);
2. environment variables ``AI_LOCAL_CORE_<SECTION>__<KEY>`` (nested with ``__``),
   e.g. ``AI_LOCAL_CORE_OLLAMA__URL``, ``AI_LOCAL_CORE_OLLAMA__RETRIES__MAX_ATTEMPTS``;
3. ``OLLAMA_HOST`` (Ollama's own variable) for ``ollama.url``;
4. the environment's YAML file: ``config/<AI_LOCAL_CORE_ENV>.yaml`` shipped in the
   package (``development`` by default, or ``production``), or the file named by
   ``AI_LOCAL_CORE_CONFIG`` instead;
5. ``config/models.yaml`` (model aliases and per-task defaults) under ``models``;
6. the defaults in this module.

Secrets (the gateway password or bearer token) come from the environment
(``AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN``) or from a file
(``AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN_FILE``); they are :class:`~pydantic.SecretStr`
and never appear in logs, reprs or error messages.

Adding a section later (e.g. ``image`` or ``translation``) is one model class and
one field on :class:`Settings`; the loading code does not change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ai_local_core.errors import ConfigError
from ai_local_core.image.base import DEFAULT_MAX_LENGTH, MAX_LENGTH_LIMIT
from ai_local_core.image.limits import ImageLimits

__all__ = [
    "CONFIG_DIR",
    "ENV_CONFIG",
    "ENV_NAME",
    "ApiSettings",
    "AuthSettings",
    "GoogleTranslationSettings",
    "ModelsSettings",
    "OllamaSettings",
    "OllamaTranslationSettings",
    "RetrySettings",
    "Settings",
    "TaskDefaults",
    "TaskModels",
    "TimeoutSettings",
    "TranslationSettings",
    "available_environments",
    "environment_file",
    "format_validation_error",
    "load_settings",
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
    """The YAML file for the current environment: ``AI_LOCAL_CORE_CONFIG`` when set,
    else ``config/<AI_LOCAL_CORE_ENV>.yaml`` shipped in the package."""
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
        # libyaml's safe loader when PyYAML has it (the same documents, parsed ~10x faster:
        # every CLI call reads this file), else the pure-Python one.
        data: Any = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
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


def as_mapping(value: Any, path: Path) -> Mapping[str, Any]:
    """``value`` if it is a mapping (``{}`` for None); :class:`ConfigError` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"config file {str(path)!r}: expected a mapping, got {type(value).__name__}"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _read_secret_file(path: Path, what: str) -> SecretStr:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    value = text.strip()
    if not value:
        raise ValueError(f"{what} file {str(path)!r} is empty")
    return SecretStr(value)


class AuthSettings(_Section):
    """Credentials of the gateway in front of Ollama (Ollama itself has none).

    Basic auth (``username`` + ``password``) or a bearer ``token``, not both: they
    share the Authorization header. ``*_file`` reads the secret from a file
    (trailing whitespace stripped), which keeps it out of the environment.
    """

    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    token: SecretStr | None = None
    token_file: Path | None = None

    @model_validator(mode="after")
    def _resolve(self) -> AuthSettings:
        if self.password_file is not None:
            if self.password is not None:
                raise ValueError("set password or password_file, not both")
            self.password = _read_secret_file(self.password_file, "password")
        if self.token_file is not None:
            if self.token is not None:
                raise ValueError("set token or token_file, not both")
            self.token = _read_secret_file(self.token_file, "token")
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        if self.token is not None and self.username:
            raise ValueError("use basic auth (username/password) or a bearer token, not both")
        return self

    @property
    def basic(self) -> tuple[str, str] | None:
        if not self.username:
            return None
        password = self.password.get_secret_value() if self.password is not None else ""
        return (self.username, password)

    @property
    def bearer(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None


class TimeoutSettings(_Section):
    """Seconds; all finite. ``read`` is the longest silence allowed between bytes."""

    connect: float = Field(5.0, gt=0, le=600)
    read: float = Field(300.0, gt=0, le=3600)
    write: float = Field(30.0, gt=0, le=600)
    pool: float = Field(5.0, gt=0, le=600)


class RetrySettings(_Section):
    """Exponential backoff with jitter on connection errors and 429/502/503/504."""

    max_attempts: int = Field(3, ge=1, le=10)
    backoff_initial: float = Field(0.5, ge=0, le=60)
    backoff_max: float = Field(8.0, ge=0, le=300)
    max_total: float = Field(60.0, gt=0, le=3600)


class OllamaSettings(_Section):
    url: str = "http://127.0.0.1:11434"
    auth: AuthSettings = Field(default_factory=AuthSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    #: Verify TLS certificates (``true``), skip (``false``), or a CA bundle path.
    verify_tls: bool | str = True
    #: Honour HTTP(S)_PROXY / NO_PROXY and friends from the environment.
    trust_env: bool = False
    #: Default ``keep_alive`` sent with generations (Ollama's own default if null).
    keep_alive: str | None = None

    @field_validator("url")
    @classmethod
    def _normalize_url(cls, value: str) -> str:
        from ai_local_core.ollama.urls import normalize_ollama_url

        return normalize_ollama_url(value)

    @model_validator(mode="after")
    def _move_userinfo_to_auth(self) -> OllamaSettings:
        """``http://user:pass@host`` becomes basic auth; the URL keeps no secret."""
        split = urlsplit(self.url)
        if split.username is None:
            return self
        if self.auth.username or self.auth.token is not None:
            raise ValueError("credentials in the URL and in ollama.auth: use one place")
        self.auth.username = unquote(split.username)
        if split.password is not None:
            self.auth.password = SecretStr(unquote(split.password))
        netloc = split.netloc.rsplit("@", 1)[1]
        self.url = urlunsplit(split._replace(netloc=netloc))
        return self


class TaskDefaults(_Section):
    """Defaults of one task; request values win over them."""

    model: str = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    system: str | None = None
    keep_alive: str | None = None
    #: Extra Ollama options (``num_ctx``, ``seed``, ...).
    options: dict[str, Any] = Field(default_factory=dict)


class TaskModels(_Section):
    completion: TaskDefaults = Field(default_factory=lambda: TaskDefaults(model="llama3.1:8b"))
    vision: TaskDefaults = Field(default_factory=lambda: TaskDefaults(model="llava:7b"))
    translation: TaskDefaults = Field(default_factory=lambda: TaskDefaults(model="llama3.1:8b"))


class ModelsSettings(_Section):
    """Model aliases and per-task defaults (``config/models.yaml``)."""

    aliases: dict[str, str] = Field(default_factory=dict)
    defaults: TaskModels = Field(default_factory=TaskModels)

    def for_task(self, task: str) -> TaskDefaults:
        value = getattr(self.defaults, task, None)
        if not isinstance(value, TaskDefaults):
            known = ", ".join(TaskModels.model_fields)
            raise ConfigError(f"no model defaults for task {task!r} (known: {known})")
        return value

    def resolve(self, name: str | None, *, task: str = "completion") -> str:
        """The model name to send: an alias is replaced, None means the task default."""
        if name is None or not name.strip():
            name = self.for_task(task).model
        name = name.strip()
        return self.aliases.get(name, name)


class ApiSettings(_Section):
    """The warm API server (served by gunicorn) and where CLIs find it."""

    #: Base URL of a running API server for the CLIs' warm path; null disables it.
    url: str | None = None
    bind: str = "127.0.0.1"
    port: int = Field(8088, ge=1, le=65535)
    # -- the server (gunicorn, see ai_local_core.api.gunicorn_conf)
    #: Worker processes; each holds its own backends (a BLIP copy per worker).
    workers: int = Field(1, ge=1, le=32)
    #: Threads per worker (gthread): concurrent requests per worker.
    threads: int = Field(4, ge=1, le=64)
    #: Seconds a worker may stay silent before gunicorn restarts it.
    timeout: int = Field(300, ge=10, le=3600)
    graceful_timeout: int = Field(30, ge=1, le=600)
    keepalive: int = Field(5, ge=0, le=300)
    #: Largest request body; larger bodies get 413.
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: Heavy requests running at once per worker; more wait up to queue_timeout, then 503.
    max_concurrent: int = Field(4, ge=1, le=256)
    queue_timeout: float = Field(30.0, gt=0, le=3600)
    #: Load the backends when a worker starts (in the background) instead of on first use.
    warm_on_start: bool = True
    #: A POST /v1/* whose work takes longer than this many seconds is answered 200 at once and
    #: kept alive with whitespace bytes (JSON ignores them) until its JSON body, which then holds
    #: any error: edges that cut silent requests (Cloudflare's 100 s, HTTP 524) never see one.
    keepalive_after: float = Field(10.0, gt=0, le=3600)
    #: Seconds between two of those whitespace bytes.
    keepalive_interval: float = Field(5.0, gt=0, le=300)
    # -- the CLIs' warm path (ai_local_core.api.remote)
    #: Seconds to connect to the API server before running in-process instead.
    connect_timeout: float = Field(0.5, gt=0, le=60)
    #: Seconds to wait for the API server's answer once connected.
    client_timeout: float = Field(300.0, gt=0, le=3600)


# -- image description (the `image` section)
DEFAULT_BLIP_MODEL: Final = "Salesforce/blip-image-captioning-base"
DEFAULT_VISION_PROMPT: Final = (
    "Describe this image in one or two plain sentences. Answer with the description only."
)


class BlipSettings(_Section):
    #: A Hugging Face model id or a local directory written by ``save_pretrained``.
    model: str = Field(DEFAULT_BLIP_MODEL, min_length=1)
    #: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    device: str = "auto"


class OllamaVisionSettings(_Section):
    #: Vision model (``llava``, ``moondream``, ``llama3.2-vision``...); null means
    #: ``models.defaults.vision.model``. Aliases from ``models.aliases`` apply.
    model: str | None = None
    prompt: str = Field(DEFAULT_VISION_PROMPT, min_length=1)
    #: Null means ``models.defaults.vision.temperature``.
    temperature: float | None = Field(None, ge=0, le=2)


class ImageSettings(_Section):
    """Image description: which backend, its model, and the input limits."""

    backend: Literal["blip", "ollama"] = "blip"
    default_max_length: int = Field(DEFAULT_MAX_LENGTH, ge=1, le=MAX_LENGTH_LIMIT)
    blip: BlipSettings = Field(default_factory=BlipSettings)
    ollama: OllamaVisionSettings = Field(default_factory=OllamaVisionSettings)
    limits: ImageLimits = Field(default_factory=ImageLimits)
    #: Whether the API server accepts local file paths (the CLIs always do).
    api_allow_local_paths: bool = False


class GoogleTranslationSettings(_Section):
    #: Longest wait for Google Translate, in seconds.
    timeout_s: float = Field(15.0, gt=0, le=300)
    #: Replaces ``https://translate.google.com/m`` (a mirror, or a stand-in in tests).
    base_url: str | None = None


class OllamaTranslationSettings(_Section):
    #: Null means ``models.defaults.translation.model``; aliases apply.
    model: str | None = None
    #: Null means ``models.defaults.translation.temperature``.
    temperature: float | None = Field(None, ge=0, le=2)


class TranslationSettings(_Section):
    """Translation: which backend and its limits."""

    #: ``google`` sends text to Google; ``ollama`` keeps it on this node.
    backend: Literal["google", "ollama"] = "google"
    #: Longest text accepted, in characters (Google caps it at 5000 anyway).
    max_chars: int = Field(5000, ge=1, le=100_000)
    google: GoogleTranslationSettings = Field(default_factory=GoogleTranslationSettings)
    ollama: OllamaTranslationSettings = Field(default_factory=OllamaTranslationSettings)


class Settings(BaseSettings):
    """All settings. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    env: str = DEFAULT_ENV
    log_level: str = "WARNING"
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    image: ImageSettings = Field(default_factory=ImageSettings)
    translation: TranslationSettings = Field(default_factory=TranslationSettings)

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _OllamaHostSource(settings_cls),
            _YamlFilesSource(settings_cls),
        )


# --------------------------------------------------------------------------- sources


class _DictSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping


class _OllamaHostSource(_DictSource):
    def __call__(self) -> dict[str, Any]:
        host = os.environ.get("OLLAMA_HOST", "").strip()
        return {"ollama": {"url": host}} if host else {}


class _YamlFilesSource(_DictSource):
    def __call__(self) -> dict[str, Any]:
        env_file = environment_file()
        data = read_yaml(env_file)
        models_file = CONFIG_DIR / "models.yaml"
        models = read_yaml(models_file) if models_file.is_file() else {}
        if models:
            data["models"] = _deep_merge(models, as_mapping(data.get("models"), env_file))
        return data


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(exc: ValidationError, *, prefix: str = "") -> str:
    """A one-line summary of a pydantic error that never repeats input values."""
    parts: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            text = f"unknown key {prefix}{loc!r}"
        elif loc:
            text = f"{prefix}{loc}: {msg}"
        else:
            text = msg
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Load settings for the current environment; raise :class:`ConfigError` if invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {format_validation_error(exc)}") from None
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:  # pydantic-settings' own parse errors
        raise ConfigError(f"invalid configuration: {exc}") from None
