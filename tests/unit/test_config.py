"""Settings: YAML per environment, env overrides, secrets from env or files."""

from __future__ import annotations

from pathlib import Path

import pytest
from ai_local_core.config import (
    CONFIG_DIR,
    Settings,
    available_environments,
    load_settings,
)
from ai_local_core.errors import ConfigError
from ai_local_core.ollama import OllamaClient


def test_packaged_files_exist_and_development_is_the_default() -> None:
    assert {"development", "production"} <= set(available_environments())
    assert (CONFIG_DIR / "models.yaml").is_file()
    settings = load_settings()
    assert settings.env == "development"
    assert settings.ollama.url == "http://127.0.0.1:11434"
    assert settings.ollama.timeouts.read == 120.0


def test_production_file_is_picked_by_ai_local_core_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_ENV", "production")
    settings = load_settings()
    assert settings.env == "production"
    assert settings.log_level == "WARNING"
    assert settings.ollama.retries.max_attempts == 4


def test_unknown_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_ENV", "staging")
    with pytest.raises(ConfigError, match="unknown AI_LOCAL_CORE_ENV 'staging'"):
        load_settings()


def test_models_yaml_gives_aliases_and_task_defaults() -> None:
    models = load_settings().models
    assert models.resolve("small") == "llama3.2:3b"
    assert models.resolve("qwen2.5:7b") == "qwen2.5:7b"
    assert models.resolve(None) == models.defaults.completion.model == "llama3.1:8b"
    assert models.resolve(None, task="vision") == "llava:7b"
    assert models.for_task("translation").temperature == 0.1
    with pytest.raises(ConfigError):
        models.for_task("painting")


def test_config_file_override_merges_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "ollama:\n  url: gpu-node.internal:11434\nmodels:\n  aliases:\n    small: phi3:mini\n"
    )
    monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(path))
    settings = load_settings()
    assert settings.ollama.url == "http://gpu-node.internal:11434"
    assert settings.models.resolve("small") == "phi3:mini"
    assert settings.models.resolve("vision") == "llava:7b"  # kept from models.yaml


def test_missing_or_broken_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()
    broken = tmp_path / "broken.yaml"
    broken.write_text("ollama: [unclosed\n")
    monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(broken))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings()
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("ollama:\n  timeouts:\n    read: -1\n  colour: blue\n")
    monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(wrong))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "ollama.timeouts.read" in info.value.message
    assert "unknown key 'ollama.colour'" in info.value.message


def test_env_beats_ollama_host_beats_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:9999")
    assert load_settings().ollama.url == "http://127.0.0.1:9999"
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__URL", "https://gw.example")
    assert load_settings().ollama.url == "https://gw.example:443"
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__RETRIES__MAX_ATTEMPTS", "7")
    assert load_settings().ollama.retries.max_attempts == 7


def test_invalid_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__RETRIES__MAX_ATTEMPTS", "many")
    with pytest.raises(ConfigError, match=r"ollama\.retries\.max_attempts"):
        load_settings()


def test_token_from_env_is_secret_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN", "tok-123-secret")
    settings = load_settings()
    assert settings.ollama.auth.bearer == "tok-123-secret"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "tok-123-secret" not in text


def test_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("file-token\n")
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN_FILE", str(token))
    assert load_settings().ollama.auth.bearer == "file-token"
    monkeypatch.delenv("AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN_FILE")
    password = tmp_path / "password"
    password.write_text("pw-from-file")
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__AUTH__USERNAME", "waldus")
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__AUTH__PASSWORD_FILE", str(password))
    assert load_settings().ollama.auth.basic == ("waldus", "pw-from-file")


def test_unreadable_secret_file_is_a_config_error_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN_FILE", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="cannot read token file"):
        load_settings()


def test_basic_and_bearer_together_are_rejected_without_leaking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__AUTH__TOKEN", "leak-me-not")
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__AUTH__USERNAME", "u")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "not both" in info.value.message
    assert "leak-me-not" not in info.value.message


def test_url_credentials_move_to_auth() -> None:
    settings = Settings(ollama={"url": "http://bob:pa%3Ass@gw.internal:8080"})
    assert settings.ollama.url == "http://gw.internal:8080"
    assert settings.ollama.auth.basic == ("bob", "pa:ss")
    assert "pa:ss" not in repr(settings)


def test_client_from_settings_uses_every_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__URL", "gw.internal:1234")
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__TIMEOUTS__READ", "42")
    monkeypatch.setenv("AI_LOCAL_CORE_OLLAMA__RETRIES__MAX_ATTEMPTS", "5")
    with OllamaClient.from_settings(load_settings()) as client:
        assert client.base_url == "http://gw.internal:1234"
        assert client.timeout.read == 42.0
        assert client.retry.max_attempts == 5


def test_api_section_defaults() -> None:
    api = load_settings().api
    assert api.url is None
    assert (api.bind, api.port) == ("127.0.0.1", 8088)
