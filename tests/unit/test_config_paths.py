"""The fast lane's light config reading agrees with load_settings() on every key it reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ai_local_core import config, config_paths
from ai_local_core.cli import fast_lane
from ai_local_core.config import ApiSettings, load_settings
from ai_local_core.config_paths import RawConfig, Unresolved
from ai_local_core.errors import ConfigError
from ai_local_core.image.loader import ImageLimits
from annotated_types import Gt, Le
from pydantic.fields import FieldInfo


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _light_url() -> str | None:
    value = RawConfig().get(fast_lane.API_URL)
    assert value is None or isinstance(value, str)
    return value


# Each case: (environment, config file text or None) -> the api.url both must find.
URL_CASES: list[tuple[str, dict[str, str], str | None, str | None]] = [
    ("packaged development file", {}, None, None),
    ("packaged production file", {"AI_LOCAL_CORE_ENV": "production"}, None, None),
    ("config file", {}, "api:\n  url: http://file:1\n", "http://file:1"),
    (
        "env over config file",
        {"AI_LOCAL_CORE_API__URL": "http://env:2"},
        "api:\n  url: http://file:1\n",
        "http://env:2",
    ),
    ("env over packaged file", {"AI_LOCAL_CORE_API__URL": "http://env:2"}, None, "http://env:2"),
    (
        "env names are case-insensitive",
        {"ai_local_core_api__url": "http://lower:3"},
        "api:\n  url: http://file:1\n",
        "http://lower:3",
    ),
    (
        "AI_LOCAL_CORE_CONFIG beats AI_LOCAL_CORE_ENV",
        {"AI_LOCAL_CORE_ENV": "production"},
        "api:\n  url: http://file:1\n",
        "http://file:1",
    ),
    ("empty env value", {"AI_LOCAL_CORE_API__URL": ""}, "api:\n  url: http://file:1\n", ""),
    ("file sets other keys only", {}, "api:\n  connect_timeout: 2\n", None),
    ("empty file", {}, "", None),
    ("explicit null over nothing", {}, "api:\n  url: null\n", None),
]


@pytest.mark.parametrize(
    ("case", "env", "file_text", "expected"), URL_CASES, ids=[c[0] for c in URL_CASES]
)
def test_api_url_precedence_matches_load_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case: str,
    env: dict[str, str],
    file_text: str | None,
    expected: str | None,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if file_text is not None:
        monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(_write(tmp_path / "c.yaml", file_text)))
    assert load_settings().api.url == expected
    assert _light_url() == expected
    target = fast_lane.api_target(RawConfig())
    assert (target.url if target else None) == (expected or None)


def test_timeouts_come_from_env_then_file_then_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _write(tmp_path / "c.yaml", "api:\n  url: http://x:1\n  connect_timeout: 2\n")
    monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(path))
    monkeypatch.setenv("AI_LOCAL_CORE_API__CLIENT_TIMEOUT", "12.5")
    api = load_settings().api
    assert fast_lane.api_target(RawConfig()) == (api.url, api.connect_timeout, api.client_timeout)
    assert (api.connect_timeout, api.client_timeout) == (2.0, 12.5)
    monkeypatch.setenv("AI_LOCAL_CORE_API__CONNECT_TIMEOUT", "0.25")
    assert fast_lane.api_target(RawConfig()) == ("http://x:1", 0.25, 12.5)
    assert load_settings().api.connect_timeout == 0.25


def _compare(
    monkeypatch: pytest.MonkeyPatch,
    env_name: str,
    value: str,
    light: Callable[[RawConfig], Any],
    heavy: Callable[[], Any],
) -> None:
    """What the light reader accepts, load_settings() reads the same; the rest it leaves."""
    monkeypatch.setenv(env_name, value)
    try:
        got = light(RawConfig())
    except Unresolved:
        return
    assert heavy() == got, f"{env_name}={value!r}"


@pytest.mark.parametrize(
    "value",
    ["0.25", "+0.25", "1e-1", " 0.5 ", "5", ".5", "5.", "1_0", "0x10", "inf", "nan", "", "61",
     "0", "-1", "true"],
)  # fmt: skip
def test_seconds_are_read_like_pydantic(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _compare(
        monkeypatch,
        "AI_LOCAL_CORE_API__CONNECT_TIMEOUT",
        value,
        lambda raw: fast_lane.read_seconds(raw, fast_lane.API_CONNECT_TIMEOUT),
        lambda: load_settings().api.connect_timeout,
    )


@pytest.mark.parametrize(
    "value", ["5000", "+5000", " 5000 ", "5_000", "5e3", "5000.0", "-1", "0", "", "true"]
)
def test_counts_are_read_like_pydantic(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _compare(
        monkeypatch,
        "AI_LOCAL_CORE_IMAGE__LIMITS__MAX_BYTES",
        value,
        lambda raw: fast_lane.read_int(raw, fast_lane.IMAGE_MAX_BYTES),
        lambda: load_settings().image.limits.max_bytes,
    )


@pytest.mark.parametrize(
    "value",
    ["true", "True", "TRUE", "yes", "Y", "on", "1", "t", "false", "Off", "0", "n", "F", "no",
     " true", "true ", "2", "", "maybe"],
)  # fmt: skip
def test_flags_are_read_like_pydantic(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _compare(
        monkeypatch,
        "AI_LOCAL_CORE_IMAGE__LIMITS__ALLOW_LOCAL_PATHS",
        value,
        lambda raw: fast_lane.read_bool(raw, fast_lane.IMAGE_ALLOW_LOCAL_PATHS),
        lambda: load_settings().image.limits.allow_local_paths,
    )


@pytest.mark.parametrize("value", ["info", "DEBUG", "Warning", "verbose", "", " info"])
def test_log_level_is_read_like_pydantic(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _compare(
        monkeypatch, "AI_LOCAL_CORE_LOG_LEVEL", value, fast_lane.log_level,
        lambda: load_settings().log_level,
    )  # fmt: skip


def test_the_light_readers_accept_the_common_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    # So the comparisons above are not vacuous.
    monkeypatch.setenv("AI_LOCAL_CORE_API__CONNECT_TIMEOUT", " 0.5 ")
    monkeypatch.setenv("AI_LOCAL_CORE_IMAGE__LIMITS__MAX_BYTES", "+5000")
    monkeypatch.setenv("AI_LOCAL_CORE_IMAGE__LIMITS__ALLOW_LOCAL_PATHS", "Off")
    monkeypatch.setenv("AI_LOCAL_CORE_LOG_LEVEL", "info")
    raw = RawConfig()
    assert fast_lane.read_seconds(raw, fast_lane.API_CONNECT_TIMEOUT) == 0.5
    assert fast_lane.read_int(raw, fast_lane.IMAGE_MAX_BYTES) == 5000
    assert fast_lane.read_bool(raw, fast_lane.IMAGE_ALLOW_LOCAL_PATHS) is False
    assert fast_lane.log_level(raw) == "INFO"


# (environment, file text) that the light reader must not guess about.
UNRESOLVED_CASES: list[tuple[str, dict[str, str], str | None]] = [
    ("section as JSON", {"AI_LOCAL_CORE_API": '{"url": "http://json:1"}'}, None),
    (
        "same name twice",
        {"AI_LOCAL_CORE_API__URL": "http://a:1", "ai_local_core_api__url": "http://b:1"},
        None,
    ),
    ("nested under the key", {"AI_LOCAL_CORE_API__URL__X": "1"}, None),
    ("unknown environment", {"AI_LOCAL_CORE_ENV": "staging"}, None),
    ("broken YAML", {}, "api: [\n"),
    ("section not a mapping", {}, "api: null\n"),
    ("url not a string", {}, "api:\n  url: 5\n"),
    ("file not a mapping", {}, "- a\n- b\n"),
]


@pytest.mark.parametrize(
    ("case", "env", "file_text"), UNRESOLVED_CASES, ids=[c[0] for c in UNRESOLVED_CASES]
)
def test_unsure_cases_are_left_to_load_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case: str,
    env: dict[str, str],
    file_text: str | None,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if file_text is not None:
        monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(_write(tmp_path / "c.yaml", file_text)))
    with pytest.raises(Unresolved):
        fast_lane.api_target(RawConfig())


def test_a_missing_config_file_is_the_same_error_for_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="which is not a file") as heavy:
        load_settings()
    with pytest.raises(ConfigError) as light:
        config_paths.environment_file()
    assert light.value.message == heavy.value.message


def _bounds(field: FieldInfo) -> tuple[Any, Any]:
    gt = next((m.gt for m in field.metadata if isinstance(m, Gt)), None)
    le = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    return gt, le


def test_defaults_and_bounds_match_the_models() -> None:
    fields = ApiSettings.model_fields
    for spec, name in (
        (fast_lane.API_CONNECT_TIMEOUT, "connect_timeout"),
        (fast_lane.API_CLIENT_TIMEOUT, "client_timeout"),
    ):
        assert spec.default == fields[name].default
        assert (spec.gt, spec.le) == _bounds(fields[name])
    assert fields["url"].default is None
    limits = ImageLimits.model_fields
    assert fast_lane.IMAGE_MAX_BYTES.default == limits["max_bytes"].default
    assert (fast_lane.IMAGE_MAX_BYTES.gt, None) == _bounds(limits["max_bytes"])
    assert fast_lane.IMAGE_ALLOW_LOCAL_PATHS.default == limits["allow_local_paths"].default
    assert config.Settings.model_fields["log_level"].default == fast_lane.DEFAULT_LOG_LEVEL


def test_config_reexports_the_light_module() -> None:
    assert config.CONFIG_DIR == config_paths.CONFIG_DIR
    assert config.environment_file is config_paths.environment_file
    assert config.available_environments is config_paths.available_environments
