"""The health check: checks, break/recover decisions, dedup, the webhook post, the CLI."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from ai_local_core.monitoring import healthcheck as hc
from ai_local_core.monitoring.energy import DayRecord, EnergyMeter, SourceState
from ai_local_core.monitoring.gpu import GpuSnapshot, GpuStats
from ai_local_core.monitoring.ollama_probe import LoadedModel, OllamaSnapshot
from ai_local_core.monitoring.settings import WEBHOOK_ENV, MonitoringSettings
from pydantic import SecretStr

from tests.conftest import StandInFactory
from tests.fixtures.ollama import OllamaStandIn

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
SECRET_URL_PART = "T0KEN-do-not-log"


def ok(name: str) -> hc.CheckResult:
    return hc.CheckResult(name=name, ok=True, detail=f"{name} fine")


def bad(name: str, detail: str = "down") -> hc.CheckResult:
    return hc.CheckResult(name=name, ok=False, detail=detail)


# ---------------------------------------------------------------------- decisions


def test_break_is_posted_once_then_recovery_once() -> None:
    state = hc.HealthState()
    state, alert = hc.decide(state, [ok("ollama"), ok("disk")], {}, host="n1", now=NOW)
    assert alert is None  # first run, all fine: nothing to say

    state, alert = hc.decide(state, [bad("ollama"), ok("disk")], {}, host="n1", now=NOW)
    assert alert is not None and alert.event == "broken"
    assert [r.name for r in alert.broken] == ["ollama"] and alert.recovered == []
    assert "BROKEN" in alert.text and "ollama: down" in alert.text

    # Same failure, other detail: no repeat.
    state, alert = hc.decide(
        state, [bad("ollama", "still down"), ok("disk")], {}, host="n1", now=NOW
    )
    assert alert is None
    assert state.failing == {"ollama": "still down"}

    state, alert = hc.decide(state, [ok("ollama"), ok("disk")], {}, host="n1", now=NOW)
    assert alert is not None and alert.event == "recovered"
    assert alert.recovered == ["ollama"] and alert.failing == []
    assert "RECOVERED" in alert.text

    state, alert = hc.decide(state, [ok("ollama"), ok("disk")], {}, host="n1", now=NOW)
    assert alert is None


def test_one_recovers_while_another_breaks() -> None:
    previous = hc.HealthState(failing={"gateway": "502"})
    _, alert = hc.decide(previous, [bad("ollama"), ok("gateway")], {}, host="n1", now=NOW)
    assert alert is not None and alert.event == "broken"
    assert [r.name for r in alert.broken] == ["ollama"]
    assert alert.recovered == ["gateway"]


def test_partial_recovery_is_posted_as_still_broken() -> None:
    previous = hc.HealthState(failing={"gateway": "502", "ollama": "down"})
    _, alert = hc.decide(previous, [bad("ollama"), ok("gateway")], {}, host="n1", now=NOW)
    assert alert is not None and alert.event == "broken"
    assert alert.broken == [] and alert.recovered == ["gateway"]
    assert [r.name for r in alert.failing] == ["ollama"]


# ---------------------------------------------------------------------- checks


def test_units_failed_and_restarted_since_last_run() -> None:
    output = (
        "Id=ollama.service\nLoadState=loaded\nActiveState=active\nNRestarts=3\n\n"
        "Id=nginx.service\nLoadState=loaded\nActiveState=failed\nNRestarts=0\n\n"
        "Id=tailscaled.service\nLoadState=not-found\nActiveState=inactive\nNRestarts=0\n\n"
        "Id=ai-local-core-api.service\nLoadState=loaded\nActiveState=active\nNRestarts=1\n"
    )
    seen: list[list[str]] = []

    def runner(args: Any) -> str:
        seen.append(list(args))
        return output

    units = ["ollama.service", "nginx.service", "tailscaled.service", "ai-local-core-api.service"]
    statuses = hc.read_units(units, runner)
    assert seen[0][-4:] == units and seen[0][0] == "show"
    results, restarts = hc.unit_checks(
        statuses, {"ollama.service": 1, "ai-local-core-api.service": 1}
    )
    by_name = {r.name: r for r in results}
    assert "unit:tailscaled.service" not in by_name  # not installed: skipped
    assert not by_name["unit:ollama.service"].ok
    assert "2 time(s)" in by_name["unit:ollama.service"].detail
    assert not by_name["unit:nginx.service"].ok
    assert by_name["unit:ai-local-core-api.service"].ok
    assert restarts == {"ollama.service": 3, "nginx.service": 0, "ai-local-core-api.service": 1}
    # First run (no previous counts): a baseline, not an alert.
    first, _ = hc.unit_checks(statuses, {})
    assert {r.name: r.ok for r in first}["unit:ollama.service"]


def test_gpu_checks() -> None:
    gpu = GpuStats(
        index=0, name="RTX 3060", uuid="GPU-1", memory_used_bytes=97, memory_total_bytes=100
    )
    full = GpuSnapshot(present=True, gpus=[gpu])
    results = {r.name: r for r in hc.gpu_checks(full, expected=True, vram_max_percent=95)}
    assert results["gpu"].ok
    assert not results["vram"].ok and "97.0% VRAM used" in results["vram"].detail
    relaxed = hc.gpu_checks(full, expected=True, vram_max_percent=98)
    assert all(r.ok for r in relaxed)

    absent = GpuSnapshot(present=False, reason="NVML unavailable: no driver")
    (missing,) = hc.gpu_checks(absent, expected=True, vram_max_percent=95)
    assert not missing.ok and "no driver" in missing.detail
    assert hc.gpu_checks(absent, expected=False, vram_max_percent=95) == []


def loaded(name: str, size: int, size_vram: int) -> LoadedModel:
    return LoadedModel(name=name, size_bytes=size, size_vram_bytes=size_vram)


def test_gpu_offload_check_names_each_model_and_its_share() -> None:
    snapshot = OllamaSnapshot(
        up=True,
        loaded=[
            loaded("llama3.1:8b", 1000, 625),
            loaded("nomic-embed-text:latest", 300, 300),
            loaded("llava:7b", 1000, 0),
            loaded("qwen2.5:7b", 10**10, 10**10 - 1),  # a byte short: still partly on the CPU
        ],
    )
    result = hc.gpu_offload_check(snapshot)
    assert result is not None and result.name == "gpu_offload" and not result.ok
    assert "llama3.1:8b: 62% in VRAM, 38% on the CPU" in result.detail
    assert "llava:7b: 0% in VRAM, 100% on the CPU" in result.detail
    assert "qwen2.5:7b: 99% in VRAM, 1% on the CPU" in result.detail
    assert "nomic-embed-text" not in result.detail  # wholly in VRAM: not named
    assert "driver or kernel updated without a reboot" in result.detail

    full = hc.gpu_offload_check(OllamaSnapshot(up=True, loaded=[loaded("llama3.1:8b", 1000, 1000)]))
    assert full == hc.CheckResult(name="gpu_offload", ok=True, detail="wholly in VRAM: llama3.1:8b")
    idle = hc.gpu_offload_check(OllamaSnapshot(up=True))
    assert idle is not None and idle.ok and idle.detail == "no model loaded"
    # Ollama down: the ollama check says so, this one says nothing.
    assert hc.gpu_offload_check(OllamaSnapshot(up=False, reason="refused")) is None


def offload_settings(tmp_path: Path, ollama_url: str, *, gpu_expected: bool) -> MonitoringSettings:
    return MonitoringSettings(
        ollama_url=ollama_url,
        gateway_health_url="",
        api_health_url="",
        models_dir=tmp_path,
        disk_min_free_gib=0,
        units=[],
        gpu_expected=gpu_expected,
        http_timeout=2,
    )


RTX = GpuSnapshot(
    present=True,
    gpus=[
        GpuStats(
            index=0, name="RTX 3060", uuid="GPU-1", memory_used_bytes=10, memory_total_bytes=100
        )
    ],
)


def test_partial_offload_on_a_gpu_node_posts_broken(
    tmp_path: Path, ollama_standin_factory: StandInFactory
) -> None:
    """End to end through run_checks and decide: the stand-in reports llama3.1:8b 62 % in VRAM."""
    standin = ollama_standin_factory(
        models=["llama3.1:8b"], env={"OLLAMA_STANDIN_VRAM_SHARE": "0.625"}
    )
    with httpx.Client(trust_env=False, timeout=10) as client:
        client.post(f"{standin.url}/api/generate", json={"model": "llama3.1:8b"}).raise_for_status()
    settings = offload_settings(tmp_path, standin.url, gpu_expected=True)
    previous = hc.HealthState()
    results, restarts = hc.run_checks(settings, previous, gpu_reader=lambda: RTX)
    by_name = {r.name: r for r in results}
    assert by_name["ollama"].ok and by_name["gpu"].ok
    assert not by_name["gpu_offload"].ok
    assert by_name["gpu_offload"].detail.startswith("llama3.1:8b: 62% in VRAM, 38% on the CPU")
    state, payload = hc.decide(previous, results, restarts, host="n1", now=NOW)
    assert payload is not None and payload.event == "broken"
    assert [r.name for r in payload.broken] == ["gpu_offload"]
    assert "BROKEN" in payload.text
    assert "- gpu_offload: llama3.1:8b: 62% in VRAM, 38% on the CPU" in payload.text
    # The next run sees the same failure: no second post.
    results, restarts = hc.run_checks(settings, state, gpu_reader=lambda: RTX)
    assert hc.decide(state, results, restarts, host="n1", now=NOW)[1] is None

    # Without a GPU expected the check does not run (on a CPU-only node everything is on the CPU).
    cpu_node = offload_settings(tmp_path, standin.url, gpu_expected=False)
    results, _ = hc.run_checks(cpu_node, hc.HealthState(), gpu_reader=lambda: RTX)
    assert "gpu_offload" not in {r.name for r in results}


def test_full_offload_passes_and_ollama_down_is_reported_once(
    tmp_path: Path, ollama_standin: OllamaStandIn
) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        client.post(
            f"{ollama_standin.url}/api/generate", json={"model": "llama3.1:8b"}
        ).raise_for_status()
    settings = offload_settings(tmp_path, ollama_standin.url, gpu_expected=True)
    results, _ = hc.run_checks(settings, hc.HealthState(), gpu_reader=lambda: RTX)
    offload = {r.name: r for r in results}["gpu_offload"]
    assert offload.ok and offload.detail == "wholly in VRAM: llama3.1:8b"

    asked: list[str] = []

    def reader(url: str, timeout: float) -> OllamaSnapshot:
        asked.append(url)
        return OllamaSnapshot(up=False, reason="refused")

    down = offload_settings(tmp_path, "http://127.0.0.1:9", gpu_expected=True)
    results, _ = hc.run_checks(down, hc.HealthState(), gpu_reader=lambda: RTX, ollama_reader=reader)
    failing = [r.name for r in results if not r.ok]
    assert failing == ["ollama"]  # not gpu_offload too
    assert asked == []  # /api/ps is not even asked


def test_disk_check(tmp_path: Path) -> None:
    assert hc.disk_check(tmp_path, 0).ok
    too_much = hc.disk_check(tmp_path / "not" / "there", 10**9)
    assert not too_much.ok
    assert f"measured at {tmp_path}" in too_much.detail


def test_http_and_ollama_checks(ollama_standin: OllamaStandIn) -> None:
    assert hc.ollama_check(ollama_standin.url, 2).ok
    ollama_standin.add_fault("status", status=503, count=1, path="/api/version")
    assert not hc.ollama_check(ollama_standin.url, 2).ok
    assert hc.http_check("x", f"{ollama_standin.url}/api/version", 2).ok
    gone = hc.http_check("x", f"{ollama_standin.url}/nope", 2)
    assert not gone.ok and "404" in gone.detail
    refused = hc.http_check("x", "http://127.0.0.1:9/", 1)
    assert not refused.ok and "ConnectError" in refused.detail


# ---------------------------------------------------------------------- webhook


@contextmanager
def receiver(statuses: list[int] | None = None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback webhook receiver: records JSON bodies, answers ``statuses`` in turn, then 204."""
    posts: list[dict[str, Any]] = []
    answers = list(statuses or [])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            posts.append(json.loads(self.rfile.read(length)))
            self.send_response(answers.pop(0) if answers else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook/{SECRET_URL_PART}", posts
    finally:
        server.shutdown()
        server.server_close()


def alert() -> hc.AlertPayload:
    _, payload = hc.decide(hc.HealthState(), [bad("ollama")], {}, host="n1", now=NOW)
    assert payload is not None
    return payload


def test_post_retries_5xx_and_sends_the_payload() -> None:
    with receiver([503]) as (url, posts):
        hc.post_webhook(SecretStr(url), alert(), timeout=5, wait_s=0)
    assert len(posts) == 2  # one 503, then delivered
    assert posts[1]["event"] == "broken" and posts[1]["host"] == "n1"
    assert posts[1]["source"] == "ai-local-core-healthcheck"
    assert posts[1]["broken"][0]["name"] == "ollama"
    assert "text" in posts[1]


def test_post_gives_up_without_leaking_the_url() -> None:
    with receiver([403]) as (url, posts), pytest.raises(hc.WebhookDeliveryFailed) as refused:
        hc.post_webhook(SecretStr(url), alert(), timeout=5, wait_s=0)
    assert len(posts) == 1  # 4xx is not retried
    assert "403" in str(refused.value) and SECRET_URL_PART not in str(refused.value)

    with pytest.raises(hc.WebhookDeliveryFailed) as unreachable:
        hc.post_webhook(
            SecretStr(f"http://127.0.0.1:9/{SECRET_URL_PART}"), alert(), timeout=1, wait_s=0
        )
    assert SECRET_URL_PART not in str(unreachable.value)
    assert "unreachable" in str(unreachable.value)


def test_post_through_a_mock_transport_counts_attempts() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    with pytest.raises(hc.WebhookDeliveryFailed, match="500"):
        hc.post_webhook(
            SecretStr("http://hooks.invalid/x"),
            alert(),
            timeout=1,
            attempts=3,
            wait_s=0,
            transport=httpx.MockTransport(handle),
        )
    assert len(calls) == 3


# ---------------------------------------------------------------------- CLI end to end


def write_settings(tmp_path: Path, ollama_url: str) -> Path:
    settings = MonitoringSettings(
        ollama_url=ollama_url,
        gateway_health_url="",
        api_health_url="",
        gateway_access_log=None,
        models_dir=tmp_path,
        disk_min_free_gib=0,
        units=[],
        state_file=tmp_path / "state" / "state.json",
        host_label="node-under-test",
        http_timeout=2,
    )
    path = tmp_path / "monitoring.yaml"
    path.write_text(json.dumps(settings.model_dump(mode="json")))  # JSON is YAML
    return path


def test_cli_posts_on_break_and_recovery_only(
    tmp_path: Path,
    ollama_standin: OllamaStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = write_settings(tmp_path, ollama_standin.url)
    monkeypatch.setattr(hc, "read_gpus", lambda: GpuSnapshot(present=False, reason="test"))
    with receiver() as (url, posts):
        monkeypatch.setenv(WEBHOOK_ENV, url)
        run = ["--config", str(config)]
        assert hc.main(run) == 0 and posts == []

        ollama_standin.add_fault("status", status=500, count=0, path="/api/version")
        assert hc.main(run) == 0
        assert hc.main(run) == 0  # still broken: no second post
        assert [p["event"] for p in posts] == ["broken"]
        assert posts[0]["host"] == "node-under-test"
        assert posts[0]["broken"][0]["name"] == "ollama"

        ollama_standin.reset()
        assert hc.main(run) == 0
        assert hc.main(run) == 0
        assert [p["event"] for p in posts] == ["broken", "recovered"]
        assert posts[1]["recovered"] == ["ollama"]
    output = capsys.readouterr()
    assert SECRET_URL_PART not in output.out + output.err
    logged = [r.getMessage() for r in caplog.records]
    assert any("posted a broken alert" in m for m in logged)
    assert not any(SECRET_URL_PART in m for m in logged), logged


def test_cli_undelivered_alert_is_retried_next_run(
    tmp_path: Path,
    ollama_standin: OllamaStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_settings(tmp_path, "http://127.0.0.1:9")  # Ollama "down"
    monkeypatch.setattr(hc, "read_gpus", lambda: GpuSnapshot(present=False, reason="test"))
    monkeypatch.setattr(hc, "post_webhook", _failing_post)
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:9/{SECRET_URL_PART}")
    assert hc.main(["--config", str(config)]) == 21  # backend_failed
    err = capsys.readouterr().err
    assert "alert not delivered" in err and SECRET_URL_PART not in err
    assert not (tmp_path / "state" / "state.json").exists()  # not advanced


def _failing_post(*args: object, **kwargs: object) -> None:
    raise hc.WebhookDeliveryFailed("the webhook answered 502", status=502)


def test_cli_rejects_a_bad_webhook_url_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_settings(tmp_path, "http://127.0.0.1:9")
    monkeypatch.setenv(WEBHOOK_ENV, f"hooks.example/{SECRET_URL_PART}")
    assert hc.main(["--config", str(config)]) == 3  # config_error
    err = capsys.readouterr().err
    assert WEBHOOK_ENV in err and SECRET_URL_PART not in err and "Traceback" not in err


def test_cli_without_webhook_still_tracks_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_settings(tmp_path, "http://127.0.0.1:9")
    monkeypatch.setattr(hc, "read_gpus", lambda: GpuSnapshot(present=False, reason="test"))
    assert hc.main(["--config", str(config)]) == 0
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert "ollama" in state["failing"]


# ---------------------------------------------------------------------- daily energy summary


def write_ledger(path: Path, day: date) -> None:
    """The exporter's energy state with one record for ``day``: 1.5 kWh, 1.65 PLN."""
    meter = EnergyMeter(path, tariff_pln_per_kwh=1.1)
    meter.state.days[day.isoformat()] = DayRecord(
        gpu_j=5_400_000, cost_pln=1.65, gpu_idle_s=3600, gpu_idle_j=54_000
    )
    meter.state.sources["gpu:GPU-1111"] = SourceState(kind="gpu", labels={"gpu": "0"})
    meter.save(force=True)


def test_daily_summary_is_due_once_a_day_after_the_hour(tmp_path: Path) -> None:
    ledger = tmp_path / "energy-state.json"
    settings = MonitoringSettings(energy_state_file=ledger, daily_summary_hour=8)
    morning = datetime(2026, 11, 24, 9, 30).astimezone()  # the node's local time
    assert hc.daily_summary(settings, hc.HealthState(), host="n1", now=morning) is None  # no ledger
    write_ledger(ledger, date(2026, 11, 23))
    early = datetime(2026, 11, 24, 7, 59).astimezone()
    assert hc.daily_summary(settings, hc.HealthState(), host="n1", now=early) is None

    payload = hc.daily_summary(settings, hc.HealthState(), host="n1", now=morning)
    assert payload is not None and payload.event == "daily_summary"
    assert payload.energy["day"] == "2026-11-23"
    assert payload.energy["day_kwh"] == pytest.approx(1.5)
    assert payload.energy["window_cost_pln"] == pytest.approx(1.65)
    assert payload.energy["gpu_idle_watts"] == pytest.approx(15.0)
    assert payload.text.splitlines() == [
        "[ai-local-core] n1: energy summary",
        "2026-11-23 1.50 kWh, 1.65 PLN",
        "30 days 1.50 kWh, 1.65 PLN (1 recorded)",
        "GPU avg idle 15.0 W, busy n/a",
        "measured: GPU 0",
    ]
    sent = hc.HealthState(summary_sent_on=date(2026, 11, 24))
    assert hc.daily_summary(settings, sent, host="n1", now=morning) is None
    off = settings.model_copy(update={"daily_summary": False})
    assert hc.daily_summary(off, hc.HealthState(), host="n1", now=morning) is None
    # The state keeps the day across decide().
    state, _ = hc.decide(sent, [ok("ollama")], {}, host="n1", now=NOW)
    assert state.summary_sent_on == date(2026, 11, 24)


def test_cli_posts_the_daily_summary_once(
    tmp_path: Path, ollama_standin: OllamaStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_settings(tmp_path, ollama_standin.url)
    data = json.loads(config.read_text())
    ledger = tmp_path / "state" / "energy-state.json"
    data.update(energy_state_file=str(ledger), daily_summary_hour=0)
    config.write_text(json.dumps(data))
    write_ledger(ledger, datetime.now().astimezone().date() - timedelta(days=1))
    monkeypatch.setattr(hc, "read_gpus", lambda: GpuSnapshot(present=False, reason="test"))
    run = ["--config", str(config)]

    assert hc.main(run) == 0  # no webhook URL: nothing posted, nothing marked
    assert json.loads((tmp_path / "state" / "state.json").read_text())["summary_sent_on"] is None
    with receiver() as (url, posts):
        monkeypatch.setenv(WEBHOOK_ENV, url)
        assert hc.main(run) == 0
        assert hc.main(run) == 0  # the same day: not again
    assert [p["event"] for p in posts] == ["daily_summary"]
    assert posts[0]["host"] == "node-under-test"
    assert "1.50 kWh, 1.65 PLN" in posts[0]["text"]
