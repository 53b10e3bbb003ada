"""Energy counters and cost: the NVML stand-in's counter across a reset and an exporter restart,
a reboot, RAPL wrap and permissions with a fake powercap tree, the tariff, the ledger."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from ai_local_core.monitoring import energy
from ai_local_core.monitoring.energy import (
    JOULES_PER_KWH,
    LEDGER_DAYS,
    EnergyMeter,
    EnergyReading,
    read_rapl,
    summarize,
)
from ai_local_core.monitoring.exporter import NodeCollector, build_registry
from ai_local_core.monitoring.gpu import read_gpus
from ai_local_core.monitoring.ollama_probe import OllamaSnapshot
from ai_local_core.monitoring.settings import MonitoringSettings
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.nvml import RTX_3060, NvmlStandIn

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=1)))
GPU0 = (("gpu", "0"), ("name", "NVIDIA GeForce RTX 3060"), ("uuid", "GPU-1111"))
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def scrape(node: NodeCollector) -> Samples:
    text = generate_latest(build_registry(node)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def node(settings: MonitoringSettings, clock: Clock, **kwargs: object) -> NodeCollector:
    return NodeCollector(
        settings,
        gpu_reader=read_gpus,  # the real reader, on the NVML stand-in
        ollama_reader=lambda url, timeout: OllamaSnapshot(up=False, reason="test"),
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def energy_settings(tmp_path: Path, **overrides: object) -> MonitoringSettings:
    values: dict[str, object] = {
        "gateway_access_log": None,
        "energy_state_file": tmp_path / "state" / "energy-state.json",
        "energy_tariff_pln_per_kwh": 1.25,
        "rapl_root": None,
    }
    values.update(overrides)
    return MonitoringSettings.model_validate(values)


# ---------------------------------------------------------------------- GPU (NVML)


def test_gpu_counter_survives_a_driver_reset_and_an_exporter_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = NvmlStandIn([RTX_3060]).install(monkeypatch)
    settings = energy_settings(tmp_path)
    clock = Clock()
    first = node(settings, clock)
    # The 5 kJ counted before the exporter ever ran are not attributed to anything: baseline 0.
    assert scrape(first)[("gpu_energy_joules_total", GPU0)] == 0

    nvml.run(15, 100.0, util=90)  # busy: 1500 J
    clock.advance(15)
    assert scrape(first)[("gpu_energy_joules_total", GPU0)] == pytest.approx(1500)

    nvml.reload_driver()  # NVML's counter starts again from 0 ...
    nvml.run(15, 20.0, util=0)  # ... and counts 300 J (idle): the raw value went down
    clock.advance(15)
    after_reset = scrape(first)
    assert after_reset[("gpu_energy_joules_total", GPU0)] == pytest.approx(1800)  # not 1500 - x
    first.save_energy()
    saved = json.loads(settings.energy_state_file.read_text())  # type: ignore[union-attr]
    assert saved["sources"]["gpu:GPU-1111"]["last_raw"] == 300_000  # mJ, the raw reading

    # The exporter restarts: the new process continues from the state file.
    nvml.run(15, 20.0, util=0)
    clock.advance(15)
    second = node(settings, clock)
    values = scrape(second)
    assert values[("gpu_energy_joules_total", GPU0)] == pytest.approx(2100)
    # Cost = energy x tariff: 2100 J = 0.000583 kWh at 1.25 PLN/kWh.
    assert values[("energy_cost_pln_total", ())] == pytest.approx(2100 / JOULES_PER_KWH * 1.25)
    assert values[("energy_tariff_pln_per_kwh", ())] == 1.25

    day = second.energy.state.days["2026-11-24"]
    assert (day.gpu_busy_s, day.gpu_busy_j) == pytest.approx((15, 1500))
    assert (day.gpu_idle_s, day.gpu_idle_j) == pytest.approx((30, 600))
    figures = summarize(second.energy.state, T0.date())
    assert figures.gpu_busy_watts == pytest.approx(100.0)
    assert figures.gpu_idle_watts == pytest.approx(20.0)


def test_a_reboot_resets_every_source_even_when_the_raw_value_grew(tmp_path: Path) -> None:
    state_file = tmp_path / "energy-state.json"
    reading = EnergyReading(
        kind="gpu", key="gpu:A", labels={"gpu": "0"}, raw=1_000_000, joules_per_unit=0.001
    )
    before = EnergyMeter(state_file, boot=1_000_000.0)
    before.record([reading], T0)
    before.record([replace(reading, raw=3_000_000)], T0)
    before.save(force=True)
    assert before.state.sources["gpu:A"].total_j == pytest.approx(2000)

    # Booted again an hour later; since then the counter reached 5 000 000 mJ (above the last
    # raw value, so a difference would undercount): the whole raw value is added.
    after = EnergyMeter(state_file, boot=1_003_600.0)
    later = T0 + timedelta(hours=2)
    after.record([replace(reading, raw=5_000_000)], later)
    assert after.state.sources["gpu:A"].total_j == pytest.approx(2000 + 5000)
    # The interval that spans the reboot is not an idle/busy interval.
    assert after.state.days[later.date().isoformat()].gpu_idle_s == 0

    # Same boot (a plain exporter restart, clocks a little apart): the difference again.
    again = EnergyMeter(state_file, boot=1_000_030.0)
    again.record([reading], later)  # no file written by `after`: continues from 3 000 000
    assert again.state.sources["gpu:A"].total_j == pytest.approx(2000 + 1000)  # reset: +raw


def test_a_gpu_without_an_energy_counter_is_skipped_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    NvmlStandIn([{**RTX_3060, "energy_mj": None}]).install(monkeypatch)
    collector = node(energy_settings(tmp_path), Clock())
    values = scrape(collector)
    assert not any(name == "gpu_energy_joules_total" for name, _ in values)
    assert "older than Volta" in collector.energy.state.unavailable["gpu"]
    assert collector.energy.state.days == {}  # nothing measured: no ledger day


def test_no_tariff_no_cost_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    NvmlStandIn([RTX_3060]).install(monkeypatch)
    values = scrape(node(energy_settings(tmp_path, energy_tariff_pln_per_kwh=0), Clock()))
    assert values[("energy_tariff_pln_per_kwh", ())] == 0
    assert ("energy_cost_pln_total", ()) not in values
    assert ("gpu_energy_joules_total", GPU0) in values


def test_one_kwh_costs_the_tariff() -> None:
    meter = EnergyMeter(None, tariff_pln_per_kwh=1.07)
    reading = EnergyReading(kind="gpu", key="g", labels={}, raw=0, joules_per_unit=0.001)
    meter.record([reading], T0)
    meter.record([EnergyReading("gpu", "g", {}, 3_600_000_000, 0.001, busy=True)], T0)
    assert meter.state.cost_pln_total == pytest.approx(1.07)
    figures = summarize(meter.state, T0.date())
    assert figures.day_kwh == pytest.approx(1.0) and figures.day_cost_pln == pytest.approx(1.07)


# ---------------------------------------------------------------------- CPU (RAPL)


def powercap(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    path = root / zone
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def test_rapl_package_counter_handles_the_wrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    NvmlStandIn([]).install(monkeypatch)  # no GPU: the CPU alone
    root = tmp_path / "powercap"
    package = powercap(root, "intel-rapl:0", "package-0", 700_000)
    powercap(root, "intel-rapl:0:0", "core", 500_000)  # a subzone: inside the package
    powercap(root, "intel-rapl:1", "psys", 900_000)  # the platform: overlaps the package
    (root / "intel-rapl").mkdir()  # the control type directory
    settings = energy_settings(tmp_path, rapl_root=root)
    clock = Clock()
    collector = node(settings, clock)
    cpu = (("name", "package-0"), ("zone", "intel-rapl:0"))
    assert scrape(collector)[("cpu_energy_joules_total", cpu)] == 0

    (package / "energy_uj").write_text("950000\n")  # +0.25 J
    clock.advance(15)
    assert scrape(collector)[("cpu_energy_joules_total", cpu)] == pytest.approx(0.25)

    (package / "energy_uj").write_text("150000\n")  # wrapped at 1 000 000: +0.05 + 0.15 J
    clock.advance(15)
    values = scrape(collector)
    assert values[("cpu_energy_joules_total", cpu)] == pytest.approx(0.45)
    assert len([k for k in values if k[0] == "cpu_energy_joules_total"]) == 1
    assert collector.energy.state.days["2026-11-24"].cpu_j == pytest.approx(0.45)
    assert values[("energy_cost_pln_total", ())] == pytest.approx(0.45 / JOULES_PER_KWH * 1.25)
    assert "GPU" not in " ".join(summarize(collector.energy.state, T0.date()).sources)


def test_unreadable_rapl_is_skipped_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "powercap"
    powercap(root, "intel-rapl:0", "package-0", 700_000)
    real = energy._read_int

    def root_only(path: Path) -> int:
        # energy_uj is 0400 root:root on current kernels (and these tests may run as root).
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(energy, "_read_int", root_only)
    readings, reason = read_rapl(root)
    assert readings == []
    assert reason is not None and "readable by root only" in reason

    assert read_rapl(tmp_path / "absent") == (
        [],
        f"no RAPL powercap zones ({tmp_path}/absent is absent)",
    )


# ---------------------------------------------------------------------- ledger


def test_ledger_keeps_35_days_and_sums_30() -> None:
    meter = EnergyMeter(None, tariff_pln_per_kwh=1.0, sample_seconds=15)
    raw = 0
    meter.record([EnergyReading("gpu", "g", {"gpu": "0"}, raw, 0.001, busy=False)], T0)
    for day in range(1, 41):
        raw += 360_000_000  # 0.1 kWh a day
        when = T0 + timedelta(days=day)
        meter.record([EnergyReading("gpu", "g", {"gpu": "0"}, raw, 0.001, busy=False)], when)
    assert len(meter.state.days) == LEDGER_DAYS
    last = (T0 + timedelta(days=40)).date()
    figures = summarize(meter.state, last)
    assert figures.day_kwh == pytest.approx(0.1)
    assert figures.window_kwh == pytest.approx(3.0) and figures.days_recorded == 30
    assert figures.window_cost_pln == pytest.approx(3.0)
    # A day apart is a gap, not an idle interval.
    assert figures.gpu_idle_watts is None
    lines = energy.format_summary(figures)
    assert lines[0] == "today 0.10 kWh, 0.10 PLN"
    assert lines[1] == "30 days 3.00 kWh, 3.00 PLN (30 recorded)"
    assert lines[2] == "GPU avg idle n/a, busy n/a"
    assert lines[3] == "measured: GPU 0"


def test_state_file_round_trip_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "energy-state.json"
    meter = EnergyMeter(path, tariff_pln_per_kwh=1.0)
    meter.record([EnergyReading("cpu", "rapl:x", {"zone": "x"}, 5, 1e-6, wrap=10)], T0)
    meter.save(force=True)
    loaded = energy.load_state(path)
    assert loaded is not None and loaded.sources["rapl:x"].last_raw == 5
    path.write_text("{not json")
    assert energy.load_state(path) is None
    assert EnergyMeter(path).state.sources == {}  # starts afresh, no exception
    assert (
        energy.parse_state({"days": {"not-a-date": {}, "2026-11-24": {"gpu_j": "x"}}})
        .days["2026-11-24"]
        .gpu_j
        == 0
    )


def test_unwritable_state_file_is_logged_once_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    meter = EnergyMeter(blocker / "sub" / "energy-state.json")
    meter.save(force=True)
    meter.save(force=True)
    assert len([r for r in caplog.records if "cannot write the energy state" in r.message]) == 1


# ---------------------------------------------------------------------- the exporter process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_exporter_samples_between_scrapes_and_saves_at_shutdown(tmp_path: Path) -> None:
    # No Prometheus scrapes this node: the exporter's own sampler keeps the counters and the
    # ledger, and SIGTERM writes the state (the periodic write is once a minute).
    root = tmp_path / "powercap"
    package = powercap(root, "intel-rapl:0", "package-0", 1_000, max_uj=10**12)
    state_file = tmp_path / "state" / "energy-state.json"
    config = tmp_path / "monitoring.yaml"
    config.write_text(
        json.dumps(
            {
                "listen_port": free_port(),
                "ollama_url": "http://127.0.0.1:9",
                "gateway_access_log": None,
                "http_timeout": 1,
                "energy_state_file": str(state_file),
                "energy_tariff_pln_per_kwh": 1.0,
                "energy_sample_seconds": 1,
                "rapl_root": str(root),
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "AI_LOCAL_CORE_MONITORING_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ai_local_core.monitoring.exporter", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not state_file.exists():  # the baseline sample, written at start
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        (package / "energy_uj").write_text("2001000\n")  # +2 J
        time.sleep(2.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    saved = json.loads(state_file.read_text())
    assert saved["sources"]["rapl:intel-rapl:0"]["total_j"] == pytest.approx(2.0), output
    assert saved["cost_pln_total"] == pytest.approx(2.0 / JOULES_PER_KWH)
    assert "GPU energy not measured" in output
