"""Settings of the exporter and the health check: the YAML file and the webhook secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from ai_local_core.errors import ConfigError
from ai_local_core.monitoring import healthcheck as hc
from ai_local_core.monitoring.settings import (
    CONFIG_ENV,
    WEBHOOK_ENV,
    load_settings,
    webhook_url_from_env,
)


def test_missing_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setattr("ai_local_core.monitoring.settings.DEFAULT_CONFIG_PATH", tmp_path / "no")
    settings = load_settings()
    assert settings.listen_address == "127.0.0.1" and settings.listen_port == 9101


def test_explicit_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("listen_port: 9300\ngpu_expected: true\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    settings = load_settings()
    assert settings.listen_port == 9300 and settings.gpu_expected
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("listen_port: [\n", "not valid YAML"),
        ("- a\n- b\n", "mapping"),
        ("ollama_url: ftp://x\n", "ollama_url"),
        ("units: ['--all']\n", "units"),
        ("vram_max_percent: 150\n", "vram_max_percent"),
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(path)


def test_webhook_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    assert webhook_url_from_env() is None
    monkeypatch.setenv(WEBHOOK_ENV, "  ")
    assert webhook_url_from_env() is None
    monkeypatch.setenv(WEBHOOK_ENV, "https://hooks.example/T0KEN")
    secret = webhook_url_from_env()
    assert secret is not None and secret.get_secret_value() == "https://hooks.example/T0KEN"
    assert "T0KEN" not in repr(secret) and "T0KEN" not in str(secret)


def test_dry_run_prints_checks_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    path = tmp_path / "m.yaml"
    path.write_text(
        f"ollama_url: http://127.0.0.1:9\ngateway_health_url: ''\napi_health_url: ''\n"
        f"units: []\nstate_file: {state}\nmodels_dir: {tmp_path}\ndisk_min_free_gib: 0\n"
        "http_timeout: 1\n"
    )
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/never-called")
    assert hc.main(["--config", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "FAIL ollama:" in out and "ok   disk:" in out
    assert '"alert": "broken"' in out  # what would be posted
    assert not state.exists()
