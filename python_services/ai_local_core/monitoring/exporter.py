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
  ``gateway_access_log_invalid_lines_total``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
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
from ai_local_core.monitoring.gpu import GpuSnapshot, read_gpus
from ai_local_core.monitoring.ollama_probe import OllamaSnapshot, read_ollama
from ai_local_core.monitoring.settings import MonitoringSettings, load_settings

__all__ = ["NodeCollector", "build_registry", "main"]

logger = logging.getLogger("ai_local_core.monitoring.exporter")

GpuReader = Callable[[], GpuSnapshot]
OllamaReader = Callable[[str, float], OllamaSnapshot]


def _default_ollama_reader(url: str, timeout: float) -> OllamaSnapshot:
    return read_ollama(url, timeout=timeout)


class NodeCollector(Collector):
    """Collects GPU, Ollama and gateway figures at every scrape."""

    def __init__(
        self,
        settings: MonitoringSettings,
        *,
        gpu_reader: GpuReader = read_gpus,
        ollama_reader: OllamaReader = _default_ollama_reader,
        access_log_from_start: bool = False,
    ) -> None:
        self.settings = settings
        self._gpu_reader = gpu_reader
        self._ollama_reader = ollama_reader
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
            yield from self._gpu_metrics(self._gpu_reader())
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
    registry = build_registry(NodeCollector(settings))
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

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    logger.info("listening on %s:%d", settings.listen_address, settings.listen_port)
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
