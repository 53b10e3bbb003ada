"""Settings of the exporter and the health check: one YAML file plus the webhook secret.

The file (``/etc/ai-local-core/monitoring.yaml`` by default, written by role
``monitoring``; another path with ``--config`` or ``AI_LOCAL_CORE_MONITORING_CONFIG``)
holds only non-secret values. The webhook URL is a credential (whoever knows it
can post to the channel), so it never sits in that file nor on a command line: it
comes from the environment variable ``AI_LOCAL_CORE_MONITORING_WEBHOOK_URL``,
which the systemd unit loads from a 0640 ``EnvironmentFile``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from ai_local_core.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_UNITS",
    "WEBHOOK_ENV",
    "MonitoringSettings",
    "load_settings",
    "webhook_url_from_env",
]

DEFAULT_CONFIG_PATH: Final = Path("/etc/ai-local-core/monitoring.yaml")
CONFIG_ENV: Final = "AI_LOCAL_CORE_MONITORING_CONFIG"
WEBHOOK_ENV: Final = "AI_LOCAL_CORE_MONITORING_WEBHOOK_URL"
DEFAULT_UNITS: Final = (
    "ollama.service",
    "ai-local-core-api.service",
    "nginx.service",
    "ai-local-core-exporter.service",
    "prometheus-node-exporter.service",
)


def _http_url(value: str) -> str:
    if value == "":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value


class MonitoringSettings(BaseModel):
    """Everything the exporter and the health check read; every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Exporter
    listen_address: str = "127.0.0.1"
    listen_port: int = Field(default=9101, ge=1, le=65535)
    # Probes
    ollama_url: str = "http://127.0.0.1:11434"
    gateway_health_url: str = "http://127.0.0.1:8080/livez"
    api_health_url: str = "http://127.0.0.1:8000/health"
    gateway_access_log: Path | None = Path("/var/log/nginx/ai-local-core/access.log")
    http_timeout: float = Field(default=5.0, gt=0, le=120)
    # Energy (exporter): the state file with the monotonic counters and the daily ledger (None:
    # kept in memory only, the counters restart with the exporter), the tariff that turns energy
    # into cost (PLN per kWh; 0: no cost), the GPU utilisation from which an interval counts as
    # busy, how often energy is sampled between scrapes, and the powercap root of RAPL (None: the
    # CPU is not measured).
    energy_state_file: Path | None = None
    energy_tariff_pln_per_kwh: float = Field(default=0.0, ge=0, le=100)
    energy_busy_utilization_percent: float = Field(default=10.0, gt=0, le=100)
    energy_sample_seconds: float = Field(default=15.0, ge=1, le=300)
    rapl_root: Path | None = Path("/sys/class/powercap")
    # Health check
    gpu_expected: bool = False
    models_dir: Path = Path("/usr/share/ollama/.ollama/models")
    disk_min_free_gib: float = Field(default=20.0, ge=0)
    vram_max_percent: float = Field(default=95.0, gt=0, le=100)
    units: list[str] = Field(default_factory=lambda: list(DEFAULT_UNITS))
    state_file: Path = Path("/var/lib/ai-local-core/monitoring/healthcheck-state.json")
    webhook_timeout: float = Field(default=10.0, gt=0, le=120)
    host_label: str = ""
    # Daily energy summary to the webhook: the first run at or after this local hour posts the
    # previous day's figures (once a day; only with a webhook URL and a ledger to read).
    daily_summary: bool = True
    daily_summary_hour: int = Field(default=8, ge=0, le=23)

    @field_validator("ollama_url", "gateway_health_url", "api_health_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("units")
    @classmethod
    def _check_units(cls, value: list[str]) -> list[str]:
        for unit in value:
            if not unit or unit.startswith("-") or any(c.isspace() for c in unit):
                raise ValueError(f"not a systemd unit name: {unit!r}")
        return value


def load_settings(path: Path | None = None) -> MonitoringSettings:
    """Read and validate the settings file; a missing default file means all defaults. The
    file is read and errors are worded like the services' own (:mod:`ai_local_core.config`)."""
    from ai_local_core.config import format_validation_error, read_yaml

    explicit = path is not None or CONFIG_ENV in os.environ
    target = path or Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    if not target.exists():
        if explicit:
            raise ConfigError(f"monitoring settings file not found: {target}")
        return MonitoringSettings()
    data = read_yaml(target)
    try:
        return MonitoringSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid monitoring settings in {target}: {format_validation_error(exc)}"
        ) from None


def webhook_url_from_env() -> SecretStr | None:
    """The webhook URL from the environment, checked; None when unset or empty."""
    raw = os.environ.get(WEBHOOK_ENV, "").strip()
    if not raw:
        return None
    try:
        _http_url(raw)
    except ValueError:
        # Never echo the value: it is a credential.
        raise ConfigError(f"{WEBHOOK_ENV} must be an http:// or https:// URL") from None
    return SecretStr(raw)
