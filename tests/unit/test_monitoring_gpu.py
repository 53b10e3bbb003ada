"""GPU figures through NVML: the NVML stand-in proves the series, the real one the absent path."""

from __future__ import annotations

import ctypes.util
import importlib
import sys
from typing import Any

import pytest
from ai_local_core.monitoring.exporter import NodeCollector, build_registry
from ai_local_core.monitoring.gpu import read_gpus
from ai_local_core.monitoring.ollama_probe import OllamaSnapshot
from ai_local_core.monitoring.settings import MonitoringSettings
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.nvml import RTX_3060, fake_nvml


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _metrics(snapshot_reader: Any) -> str:
    settings = MonitoringSettings(gateway_access_log=None)
    collector = NodeCollector(
        settings,
        gpu_reader=snapshot_reader,
        ollama_reader=lambda url, timeout: OllamaSnapshot(up=False, reason="not asked"),
    )
    return generate_latest(build_registry(collector)).decode()


def test_fake_nvml_gives_every_series_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    second = {**RTX_3060, "uuid": "GPU-2222", "power_mw": None, "util": None, "energy_mj": None}
    fake = fake_nvml([RTX_3060, second])
    monkeypatch.setitem(sys.modules, "pynvml", fake)

    snapshot = read_gpus()
    assert snapshot.present and snapshot.driver_version == "570.86.15"
    first = snapshot.gpus[0]
    assert first.name == "NVIDIA GeForce RTX 3060"  # bytes decoded
    assert first.power_draw_watts == pytest.approx(95.5)
    assert first.power_limit_watts == pytest.approx(170.0)
    assert first.memory_used_ratio == pytest.approx(0.5)
    assert first.energy_millijoules == 5_000_000
    assert snapshot.gpus[1].power_draw_watts is None  # NOT_SUPPORTED on that board
    assert snapshot.gpus[1].energy_millijoules is None
    assert fake.calls == ["init", "shutdown"]

    text = _metrics(read_gpus)
    labels = 'gpu="0",name="NVIDIA GeForce RTX 3060",uuid="GPU-1111"'
    assert "gpu_present 1.0" in text
    assert "gpu_count 2.0" in text
    assert f"gpu_utilization_percent{{{labels}}} 37.0" in text
    values = samples(text)
    gpu0 = (("gpu", "0"), ("name", "NVIDIA GeForce RTX 3060"), ("uuid", "GPU-1111"))
    assert values[("gpu_memory_used_bytes", gpu0)] == 6 * 1024**3
    assert values[("gpu_memory_total_bytes", gpu0)] == 12 * 1024**3
    assert f"gpu_temperature_celsius{{{labels}}} 61.0" in text
    assert f"gpu_power_draw_watts{{{labels}}} 95.5" in text
    assert f"gpu_power_limit_watts{{{labels}}} 170.0" in text
    assert 'gpu_driver_info{version="570.86.15"} 1.0' in text
    # The unsupported figures of the second board are left out, not reported as 0.
    assert 'gpu_power_draw_watts{gpu="1"' not in text
    assert 'gpu_utilization_percent{gpu="1"' not in text
    assert 'gpu_power_limit_watts{gpu="1",name="NVIDIA GeForce RTX 3060",uuid="GPU-2222"}' in text


def test_nvml_init_failure_is_gpu_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_nvml([RTX_3060], init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    snapshot = read_gpus()
    assert not snapshot.present
    assert snapshot.reason is not None and "Shared Library Not Found" in snapshot.reason
    assert fake.calls == ["init"]  # no shutdown after a failed init


def test_zero_gpus_is_gpu_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([]))
    snapshot = read_gpus()
    assert not snapshot.present and snapshot.reason == "NVML sees no GPU"
    assert snapshot.driver_version == "570.86.15"


def test_missing_module_is_gpu_absent() -> None:
    snapshot = read_gpus("ai_local_core_no_such_nvml_module")
    assert not snapshot.present
    assert snapshot.reason is not None and "not installed" in snapshot.reason


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="this host has the NVML library"
)
def test_real_pynvml_without_the_driver_reports_no_gpu_and_no_error() -> None:
    importlib.import_module("pynvml")  # the real package is a dependency: it must import

    snapshot = read_gpus()
    assert not snapshot.present
    assert snapshot.reason is not None and snapshot.reason.startswith("NVML unavailable")
    text = _metrics(read_gpus)
    assert "gpu_present 0.0" in text.splitlines()
    assert "gpu_count 0.0" in text.splitlines()
    assert "gpu_utilization_percent" not in text
    assert "gpu_power_draw_watts" not in text
