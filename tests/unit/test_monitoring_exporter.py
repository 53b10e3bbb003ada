"""The exporter's /metrics: Ollama series from the stand-in, gateway series, the HTTP endpoint."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from ai_local_core.monitoring import exporter
from ai_local_core.monitoring.exporter import NodeCollector, build_registry
from ai_local_core.monitoring.gpu import GpuSnapshot
from ai_local_core.monitoring.ollama_probe import OllamaSnapshot
from ai_local_core.monitoring.settings import MonitoringSettings
from prometheus_client import generate_latest, start_wsgi_server
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.ollama import OllamaStandIn

NO_GPU = GpuSnapshot(present=False, reason="test: no GPU")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def collector(settings: MonitoringSettings, **kwargs: object) -> NodeCollector:
    return NodeCollector(settings, gpu_reader=lambda: NO_GPU, **kwargs)  # type: ignore[arg-type]


def scrape(node: NodeCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(generate_latest(build_registry(node)).decode())


def generate(standin: OllamaStandIn, model: str, keep_alive: str = "5m") -> None:
    body = {"model": model, "prompt": "hi", "stream": False, "keep_alive": keep_alive}
    request = urllib.request.Request(
        f"{standin.url}/api/generate", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_ollama_series_from_the_standin(ollama_standin: OllamaStandIn) -> None:
    settings = MonitoringSettings(ollama_url=ollama_standin.url, gateway_access_log=None)
    node = collector(settings)
    before = scrape(node)
    assert before[("ollama_up", ())] == 1
    assert before[("ollama_models_present", ())] == 4  # DEFAULT_MODELS
    assert before[("ollama_models_loaded", ())] == 0
    assert ("ollama_model_size_bytes", (("model", "llava:7b"),)) in before
    assert before[("ollama_info", (("version", "0.0.0-standin"),))] == 1

    generate(ollama_standin, "llama3.1:8b", keep_alive="10m")
    after = scrape(node)
    loaded = (("model", "llama3.1:8b"),)
    assert after[("ollama_models_loaded", ())] == 1
    assert after[("ollama_loaded_model_vram_ratio", loaded)] == 1.0
    assert after[("ollama_loaded_model_vram_bytes", loaded)] > 0
    ps = json.loads(urllib.request.urlopen(f"{ollama_standin.url}/api/ps", timeout=5).read())
    expected = datetime.fromisoformat(ps["models"][0]["expires_at"]).timestamp()
    assert after[("ollama_loaded_model_expires_timestamp_seconds", loaded)] == pytest.approx(
        expected
    )
    # No GPU: the absent form, and no per-GPU series.
    assert after[("gpu_present", ())] == 0
    assert not any(name.startswith("gpu_memory") for name, _ in after)


def test_ollama_down_is_ollama_up_0(tmp_path: Path) -> None:
    settings = MonitoringSettings(
        ollama_url="http://127.0.0.1:9", gateway_access_log=None, http_timeout=1
    )
    values = scrape(collector(settings))
    assert values[("ollama_up", ())] == 0
    assert ("ollama_models_present", ()) not in values


def test_gateway_series_from_the_access_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text('{"route":"ollama","status":200,"request_time":9.0}\n')  # before start
    settings = MonitoringSettings(ollama_url="http://127.0.0.1:9", gateway_access_log=log)
    node = collector(settings, ollama_reader=lambda url, timeout: _down())
    first = scrape(node)
    assert first[("gateway_access_log_readable", ())] == 1
    assert not any(name == "gateway_requests_total" for name, _ in first)
    with log.open("a") as handle:
        handle.write('{"route":"ollama","status":200,"request_time":0.3}\n')
        handle.write('{"route":"ollama","status":429,"request_time":0.0}\n')
        handle.write('{"route":"healthz","status":200,"request_time":0.0}\n')
        handle.write("garbage\n")
    values = scrape(node)
    assert values[("gateway_requests_total", (("route", "ollama"), ("status", "200")))] == 1
    assert values[("gateway_requests_total", (("route", "ollama"), ("status", "429")))] == 1
    assert values[("gateway_requests_total", (("route", "healthz"), ("status", "200")))] == 1
    assert values[("gateway_request_duration_seconds_count", (("route", "ollama"),))] == 2
    assert values[("gateway_request_duration_seconds_sum", (("route", "ollama"),))] == 0.3
    bucket = ("gateway_request_duration_seconds_bucket", (("le", "0.25"), ("route", "ollama")))
    assert values[bucket] == 1
    assert values[("gateway_access_log_invalid_lines_total", ())] == 1
    # Counters only grow: a scrape without new lines reports the same totals.
    assert scrape(node)[("gateway_requests_total", (("route", "ollama"), ("status", "200")))] == 1


def _down() -> OllamaSnapshot:
    return OllamaSnapshot(up=False, reason="test")


def test_metrics_over_http_on_loopback(ollama_standin: OllamaStandIn) -> None:
    settings = MonitoringSettings(ollama_url=ollama_standin.url, gateway_access_log=None)
    server, thread = start_wsgi_server(0, "127.0.0.1", registry=build_registry(collector(settings)))
    try:
        port = server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert "gpu_present 0.0" in text.splitlines()
    assert "ollama_up 1.0" in text.splitlines()


def test_check_config_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("listen_port: 9200\nunits: [ollama.service]\n")
    assert exporter.main(["--check-config", "--config", str(good)]) == 0
    assert "settings OK (127.0.0.1:9200)" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text("listen_port: 70000\nlisten_adress: 0.0.0.0\n")
    assert exporter.main(["--check-config", "--config", str(bad)]) == 3  # config_error
    err = capsys.readouterr().err
    assert "listen_port" in err and "listen_adress" in err
    assert "Traceback" not in err

    missing = tmp_path / "missing.yaml"
    assert exporter.main(["--check-config", "--config", str(missing)]) == 3
    assert "not found" in capsys.readouterr().err
