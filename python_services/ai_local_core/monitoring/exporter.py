"""``ai-local-core-exporter``: GPU, Ollama and gateway metrics on ``/metrics``.

A custom prometheus-client collector reads everything at scrape time (NVML,
``/api/ps`` + ``/api/tags``, the new lines of the gateway access log), so the
figures are as fresh as the scrape and nothing runs between scrapes. Series:

* ``gpu_present`` (0/1), ``gpu_count``, ``gpu_driver_info{version}``, and per GPU
  (labels ``gpu``, ``name``, ``uuid``): ``gpu_utilization_percent``,
  ``gpu_memory_utilization_percent``, ``gpu_memory_used_bytes``,
  ``gpu_memory_total_bytes``, ``gpu_temperature_celsius``, ``gpu_power_draw_watts``,
  ``gpu_power_limit_watts``;
* ``ollama_up``, ``ollama_info{version}``, ``ollama_models_present``,
  ``ollama_model_size_bytes{model}``, ``ollama_models_loaded``, and per loaded
  model ``ollama_loaded_model_size_bytes``, ``ollama_loaded_model_vram_bytes``,
  ``ollama_loaded_model_vram_ratio``, ``ollama_loaded_model_expires_timestamp_seconds``;
* ``gateway_access_log_readable``, ``gateway_requests_total{route,status}``,
  ``gateway_request_duration_seconds{route}`` (histogram),
  ``gateway_access_log_invalid_lines_total``;
* energy (:mod:`.energy`): ``gpu_energy_joules_total{gpu,name,uuid}`` (NVML),
  ``cpu_energy_joules_total{zone,name}`` (RAPL package zones, where readable),
  ``energy_tariff_pln_per_kwh`` and, with a tariff above 0, ``energy_cost_pln_total``. These
  counters survive driver reloads, reboots and exporter restarts (the state file). Energy is
  also sampled every ``energy_sample_seconds`` between scrapes, so that the daily ledger read by
  ``make status`` and the health check's daily summary is kept without a Prometheus server.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, start_wsgi_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ai_local_core.errors import AiLocalCoreError
from ai_local_core.monitoring.access_log import AccessLogFollower, GatewayStats
from ai_local_core.monitoring.energy import EnergyMeter, EnergyReading, boot_time, read_rapl
from ai_local_core.monitoring.gpu import GpuSnapshot, read_gpus
from ai_local_core.monitoring.ollama_probe import OllamaSnapshot, read_ollama
from ai_local_core.monitoring.settings import MonitoringSettings, load_settings

__all__ = ["NodeCollector", "build_registry", "gpu_energy_readings", "main"]

logger = logging.getLogger("ai_local_core.monitoring.exporter")

GpuReader = Callable[[], GpuSnapshot]
OllamaReader = Callable[[str, float], OllamaSnapshot]
RaplReader = Callable[[Path], tuple[list[EnergyReading], str | None]]


def _default_ollama_reader(url: str, timeout: float) -> OllamaSnapshot:
    return read_ollama(url, timeout=timeout)


def _local_now() -> datetime:
    return datetime.now().astimezone()


def gpu_energy_readings(
    snapshot: GpuSnapshot, busy_percent: float
) -> tuple[list[EnergyReading], str | None]:
    """The NVML energy counters of a snapshot, and why there are none."""
    readings = [
        EnergyReading(
            kind="gpu",
            key=f"gpu:{gpu.uuid}" if gpu.uuid else f"gpu:index{gpu.index}",
            labels={"gpu": str(gpu.index), "name": gpu.name, "uuid": gpu.uuid},
            raw=gpu.energy_millijoules,
            joules_per_unit=0.001,
            busy=(
                None if gpu.utilization_percent is None else gpu.utilization_percent >= busy_percent
            ),
        )
        for gpu in snapshot.gpus
        if gpu.energy_millijoules is not None
    ]
    if readings:
        return readings, None
    if not snapshot.present:
        return [], snapshot.reason or "no GPU"
    return [], "NVML has no total energy counter for this GPU (older than Volta?)"


class NodeCollector(Collector):
    """Collects GPU, Ollama and gateway figures at every scrape."""

    def __init__(
        self,
        settings: MonitoringSettings,
        *,
        gpu_reader: GpuReader = read_gpus,
        ollama_reader: OllamaReader = _default_ollama_reader,
        access_log_from_start: bool = False,
        rapl_reader: RaplReader = read_rapl,
        energy_meter: EnergyMeter | None = None,
        clock: Callable[[], datetime] = _local_now,
    ) -> None:
        self.settings = settings
        self._gpu_reader = gpu_reader
        self._ollama_reader = ollama_reader
        self._rapl_reader = rapl_reader
        self._clock = clock
        self.energy = energy_meter or EnergyMeter(
            settings.energy_state_file,
            tariff_pln_per_kwh=settings.energy_tariff_pln_per_kwh,
            sample_seconds=settings.energy_sample_seconds,
            boot=boot_time(),
        )
        self._energy_reasons: dict[str, str] = {}
        self._lock = threading.Lock()
        self.gateway = GatewayStats()
        self._follower = (
            None
            if settings.gateway_access_log is None
            else AccessLogFollower(settings.gateway_access_log, from_start=access_log_from_start)
        )

    def collect(self) -> Iterator[Metric]:
        # One scrape at a time: the log follower and the counters are shared state.
        with self._lock:
            snapshot = self._gpu_reader()
            yield from self._gpu_metrics(snapshot)
            self._record_energy(snapshot)
            yield from self._energy_metrics()
            yield from self._ollama_metrics(
                self._ollama_reader(self.settings.ollama_url, self.settings.http_timeout)
            )
            yield from self._gateway_metrics()

    # ------------------------------------------------------------------ GPU

    @staticmethod
    def _gpu_metrics(snapshot: GpuSnapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "gpu_present", "1 when NVML reports at least one GPU, else 0.", int(snapshot.present)
        )
        yield GaugeMetricFamily("gpu_count", "GPUs reported by NVML.", len(snapshot.gpus))
        if snapshot.driver_version:
            info = InfoMetricFamily("gpu_driver", "NVIDIA driver version reported by NVML.")
            info.add_metric([], {"version": snapshot.driver_version})
            yield info
        labels = ["gpu", "name", "uuid"]
        families = {
            "utilization_percent": GaugeMetricFamily(
                "gpu_utilization_percent",
                "GPU busy time over the last sample period (%).",
                labels=labels,
            ),
            "memory_utilization_percent": GaugeMetricFamily(
                "gpu_memory_utilization_percent",
                "Time the memory controller was busy over the last sample period (%).",
                labels=labels,
            ),
            "memory_used_bytes": GaugeMetricFamily(
                "gpu_memory_used_bytes", "VRAM in use (bytes).", labels=labels
            ),
            "memory_total_bytes": GaugeMetricFamily(
                "gpu_memory_total_bytes", "VRAM size (bytes).", labels=labels
            ),
            "temperature_celsius": GaugeMetricFamily(
                "gpu_temperature_celsius",
                "GPU core temperature (degrees Celsius).",
                labels=labels,
            ),
            "power_draw_watts": GaugeMetricFamily(
                "gpu_power_draw_watts", "Board power draw (W).", labels=labels
            ),
            "power_limit_watts": GaugeMetricFamily(
                "gpu_power_limit_watts", "Enforced board power limit (W).", labels=labels
            ),
        }
        for gpu in snapshot.gpus:
            values = [str(gpu.index), gpu.name, gpu.uuid]
            for field_name, family in families.items():
                value = getattr(gpu, field_name)
                if value is not None:
                    family.add_metric(values, float(value))
        if snapshot.gpus:
            yield from families.values()

    # ------------------------------------------------------------------ energy

    def sample_energy(self) -> None:
        """Read the energy counters now (the exporter's sampler calls this between scrapes)."""
        with self._lock:
            self._record_energy(self._gpu_reader())

    def save_energy(self) -> None:
        """Write the energy state now (at shutdown)."""
        with self._lock:
            self.energy.save(force=True)

    def _record_energy(self, snapshot: GpuSnapshot) -> None:
        readings, gpu_reason = gpu_energy_readings(
            snapshot, self.settings.energy_busy_utilization_percent
        )
        reasons: dict[str, str] = {}
        if gpu_reason is not None:
            reasons["gpu"] = gpu_reason
        if self.settings.rapl_root is not None:
            cpu, cpu_reason = self._rapl_reader(self.settings.rapl_root)
            readings.extend(cpu)
            if cpu_reason is not None:
                reasons["cpu"] = cpu_reason
        for kind, reason in reasons.items():
            if self._energy_reasons.get(kind) != reason:
                logger.info("%s energy not measured: %s", kind.upper(), reason)
        self._energy_reasons = reasons
        self.energy.record(readings, self._clock(), unavailable=reasons)
        self.energy.save()

    def _energy_metrics(self) -> Iterator[Metric]:
        gpu_labels = ["gpu", "name", "uuid"]
        gpu = CounterMetricFamily(
            "gpu_energy_joules",
            "GPU board energy (J, NVML); monotonic across driver reloads, reboots and "
            "exporter restarts.",
            labels=gpu_labels,
        )
        for source in self.energy.totals("gpu"):
            gpu.add_metric([source.labels.get(k, "") for k in gpu_labels], source.total_j)
        cpu = CounterMetricFamily(
            "cpu_energy_joules",
            "CPU package energy (J, RAPL powercap); monotonic across wraps, reboots and "
            "exporter restarts.",
            labels=["zone", "name"],
        )
        for source in self.energy.totals("cpu"):
            cpu.add_metric(
                [source.labels.get("zone", ""), source.labels.get("name", "")], source.total_j
            )
        if gpu.samples:
            yield gpu
        if cpu.samples:
            yield cpu
        tariff = self.energy.tariff
        yield GaugeMetricFamily(
            "energy_tariff_pln_per_kwh",
            "Electricity tariff the cost is computed with (PLN per kWh; 0: no cost).",
            tariff,
        )
        if tariff > 0:
            yield CounterMetricFamily(
                "energy_cost_pln",
                "Cost of the measured energy (GPU boards and CPU packages) at the tariff in "
                "force when it was used (PLN).",
                value=self.energy.state.cost_pln_total,
            )

    # ------------------------------------------------------------------ Ollama

    @staticmethod
    def _ollama_metrics(snapshot: OllamaSnapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ollama_up",
            "1 when Ollama answered /api/version, /api/tags and /api/ps.",
            int(snapshot.up),
        )
        if not snapshot.up:
            return
        if snapshot.version:
            info = InfoMetricFamily("ollama", "Ollama server version.")
            info.add_metric([], {"version": snapshot.version})
            yield info
        yield GaugeMetricFamily(
            "ollama_models_present", "Models on disk (/api/tags).", len(snapshot.present)
        )
        sizes = GaugeMetricFamily(
            "ollama_model_size_bytes", "Size of each model on disk (bytes).", labels=["model"]
        )
        for model in snapshot.present:
            sizes.add_metric([model.name], model.size_bytes)
        yield sizes
        yield GaugeMetricFamily(
            "ollama_models_loaded", "Models loaded in memory (/api/ps).", len(snapshot.loaded)
        )
        loaded_size = GaugeMetricFamily(
            "ollama_loaded_model_size_bytes",
            "Memory size of each loaded model (bytes).",
            labels=["model"],
        )
        vram = GaugeMetricFamily(
            "ollama_loaded_model_vram_bytes",
            "Part of each loaded model in VRAM (bytes).",
            labels=["model"],
        )
        ratio = GaugeMetricFamily(
            "ollama_loaded_model_vram_ratio",
            "Share of each loaded model in VRAM (1: fully on the GPU, 0: CPU only).",
            labels=["model"],
        )
        expires = GaugeMetricFamily(
            "ollama_loaded_model_expires_timestamp_seconds",
            "When Ollama unloads each model unless it is used again (Unix time, keep_alive).",
            labels=["model"],
        )
        for loaded in snapshot.loaded:
            loaded_size.add_metric([loaded.name], loaded.size_bytes)
            vram.add_metric([loaded.name], loaded.size_vram_bytes)
            ratio.add_metric([loaded.name], loaded.vram_share)
            if loaded.expires_at is not None:
                expires.add_metric([loaded.name], loaded.expires_at.timestamp())
        yield from (loaded_size, vram, ratio, expires)

    # ------------------------------------------------------------------ gateway

    def _gateway_metrics(self) -> Iterator[Metric]:
        if self._follower is None:
            return
        for line in self._follower.poll():
            self.gateway.add_line(line)
        stats = self.gateway
        yield GaugeMetricFamily(
            "gateway_access_log_readable",
            "1 when the gateway's JSON access log could be read at this scrape.",
            int(self._follower.readable),
        )
        requests = CounterMetricFamily(
            "gateway_requests",
            "Requests answered by the gateway since the exporter started, by route and status.",
            labels=["route", "status"],
        )
        for (route, status), count in sorted(stats.requests.items()):
            requests.add_metric([route, status], count)
        yield requests
        latency = HistogramMetricFamily(
            "gateway_request_duration_seconds",
            "Time the gateway took to answer (nginx $request_time), by route.",
            labels=["route"],
        )
        for route in sorted(stats.latency_count):
            latency.add_metric(
                [route], stats.cumulative_buckets(route), sum_value=stats.latency_sum[route]
            )
        yield latency
        yield CounterMetricFamily(
            "gateway_access_log_invalid_lines",
            "Access log lines that were not the gateway's JSON format.",
            value=stats.invalid_lines,
        )


def build_registry(collector: NodeCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ai-local-core-exporter",
        description="Serve GPU, Ollama and gateway metrics for Prometheus on /metrics.",
    )
    parser.add_argument("--config", type=Path, default=None, help="settings file (YAML)")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the settings file and exit"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request with its URL at INFO; the webhook URL is a secret.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
    except AiLocalCoreError as exc:
        print(f"ai-local-core-exporter: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.check_config:
        print(
            "ai-local-core-exporter: settings OK "
            f"({settings.listen_address}:{settings.listen_port})"
        )
        return 0
    collector = NodeCollector(settings)
    collector.sample_energy()  # the baseline of the energy counters
    registry = build_registry(collector)
    try:
        server, thread = start_wsgi_server(
            settings.listen_port, settings.listen_address, registry=registry
        )
    except OSError as exc:
        print(
            f"ai-local-core-exporter: cannot listen on "
            f"{settings.listen_address}:{settings.listen_port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def _sample() -> None:
        while not stop.wait(settings.energy_sample_seconds):
            collector.sample_energy()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sampler = threading.Thread(target=_sample, name="energy-sampler", daemon=True)
    sampler.start()
    logger.info("listening on %s:%d", settings.listen_address, settings.listen_port)
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)
    sampler.join(timeout=5)
    collector.save_energy()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
