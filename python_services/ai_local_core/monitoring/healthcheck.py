"""``ai-local-core-healthcheck``: check the node once, alert on changes.

Run by a systemd timer. Each run checks:

* ``ollama`` - Ollama answers ``/api/version``;
* ``gateway`` / ``api`` - the gateway's ``/livez`` and the services API's ``/health``
  answer 200 (skipped when their URL is empty);
* ``gpu`` - NVML sees a GPU, when one is expected;
* ``vram`` - no GPU has more than ``vram_max_percent`` of its memory in use;
* ``gpu_offload`` - every model Ollama has loaded (``/api/ps``) is wholly in VRAM
  (``size_vram == size``), when a GPU is expected and Ollama answers: a model partly or wholly
  on the CPU (typically after a driver or kernel update without a reboot, or too little free
  VRAM) fails it, naming each model and its share in VRAM;
* ``disk`` - the file system of the models directory has ``disk_min_free_gib`` free;
* ``unit:<name>`` - a unit is not ``failed`` and systemd did not restart it
  (``NRestarts``) since the previous run.

The set of failing checks is kept in a state file. A JSON payload goes to the
webhook only when that set changes: ``"event": "broken"`` when a check starts
failing, ``"recovered"`` when the last failing check passes again (a run where some
checks break while others recover is ``broken``, with both lists filled). The
same failure is never posted twice. When the post fails, the state is not
advanced (the next run tries again) and the exit status is non-zero.

Once a day, the first run at or after ``daily_summary_hour`` (local time) posts a
``"event": "daily_summary"`` with the previous day's energy, cost and the 30 days
ending with it, and the GPU's average idle and busy power, read from the exporter's
energy ledger (:mod:`.energy`). Only with a webhook URL, ``daily_summary`` on and a
ledger that has a record of the previous day; the day posted is kept in the state
file, and a failed post is tried again at the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

from ai_local_core.errors import AiLocalCoreError, BackendFailed, WebhookDeliveryFailed
from ai_local_core.monitoring import energy
from ai_local_core.monitoring.gpu import GpuSnapshot, read_gpus
from ai_local_core.monitoring.ollama_probe import OllamaSnapshot, read_ollama
from ai_local_core.monitoring.settings import (
    MonitoringSettings,
    load_settings,
    webhook_url_from_env,
)
from ai_local_core.ollama.client import OllamaClient, RetryPolicy

__all__ = [
    "AlertPayload",
    "CheckResult",
    "HealthState",
    "SummaryPayload",
    "UnitStatus",
    "WebhookDeliveryFailed",
    "daily_summary",
    "decide",
    "disk_check",
    "gpu_checks",
    "gpu_offload_check",
    "http_check",
    "main",
    "ollama_check",
    "post_webhook",
    "read_units",
    "run_checks",
    "unit_checks",
]

logger = logging.getLogger("ai_local_core.monitoring.healthcheck")

_GIB = 1024**3
SOURCE = "ai-local-core-healthcheck"


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str


class UnitStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    unit: str
    load_state: str
    active_state: str
    restarts: int


class HealthState(BaseModel):
    """What the previous run saw (the state file)."""

    model_config = ConfigDict(extra="ignore")

    failing: dict[str, str] = Field(default_factory=dict)
    restarts: dict[str, int] = Field(default_factory=dict)
    updated_at: datetime | None = None
    #: The local day on which the daily summary was last posted.
    summary_sent_on: date | None = None


class AlertPayload(BaseModel):
    """The JSON body posted to the webhook. ``text`` suits Slack/Mattermost-style hooks."""

    source: str = SOURCE
    host: str
    event: Literal["broken", "recovered"]
    time: datetime
    broken: list[CheckResult]
    recovered: list[str]
    failing: list[CheckResult]
    text: str


class SummaryPayload(BaseModel):
    """The daily energy summary posted to the webhook (``energy``: the figures of ``text``)."""

    source: str = SOURCE
    host: str
    event: Literal["daily_summary"] = "daily_summary"
    time: datetime
    energy: dict[str, Any]
    text: str


# ---------------------------------------------------------------------- checks


def ollama_check(url: str, timeout: float) -> CheckResult:
    try:
        with OllamaClient(url, timeout=timeout, retry=RetryPolicy.none()) as client:
            version = client.version()
    except AiLocalCoreError as exc:
        return CheckResult(name="ollama", ok=False, detail=f"Ollama does not answer: {exc}")
    return CheckResult(name="ollama", ok=True, detail=f"Ollama {version} answers")


def http_check(name: str, url: str, timeout: float) -> CheckResult:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False, trust_env=False)
    except httpx.HTTPError as exc:
        return CheckResult(name=name, ok=False, detail=f"{url}: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return CheckResult(name=name, ok=False, detail=f"{url} answered {response.status_code}")
    return CheckResult(name=name, ok=True, detail=f"{url} answered 200")


def gpu_checks(
    snapshot: GpuSnapshot, *, expected: bool, vram_max_percent: float
) -> list[CheckResult]:
    results: list[CheckResult] = []
    if expected:
        if snapshot.present:
            names = ", ".join(g.name for g in snapshot.gpus)
            results.append(CheckResult(name="gpu", ok=True, detail=f"GPU present: {names}"))
        else:
            results.append(
                CheckResult(
                    name="gpu",
                    ok=False,
                    detail=f"a GPU is expected but none is usable ({snapshot.reason})",
                )
            )
    if snapshot.present:
        full = [
            f"GPU {g.index} {g.memory_used_ratio * 100:.1f}% VRAM used"
            for g in snapshot.gpus
            if g.memory_used_ratio is not None and g.memory_used_ratio * 100 >= vram_max_percent
        ]
        results.append(
            CheckResult(
                name="vram",
                ok=not full,
                detail=(
                    "; ".join(full) + f" (limit {vram_max_percent:g}%)"
                    if full
                    else f"VRAM below {vram_max_percent:g}%"
                ),
            )
        )
    return results


def gpu_offload_check(snapshot: OllamaSnapshot) -> CheckResult | None:
    """Every loaded model wholly in VRAM (``size_vram == size`` in ``/api/ps``).

    None when Ollama did not answer: the ``ollama`` check reports that, not this one.
    """
    if not snapshot.up:
        return None
    partial = [m for m in snapshot.loaded if m.size_bytes > 0 and m.size_vram_bytes < m.size_bytes]
    if partial:
        shares = []
        for model in partial:
            # Rounded down: a model 99.6 % in VRAM still shows 1 % on the CPU, never "100 %".
            in_vram = min(99, math.floor(model.vram_share * 100))
            shares.append(f"{model.name}: {in_vram}% in VRAM, {100 - in_vram}% on the CPU")
        return CheckResult(
            name="gpu_offload",
            ok=False,
            detail=(
                "; ".join(shares) + " (driver or kernel updated without a reboot, nvidia_uvm not "
                "loaded, or too little free VRAM: see nvidia-smi, ollama ps and "
                "journalctl -u ollama)"
            ),
        )
    if not snapshot.loaded:
        return CheckResult(name="gpu_offload", ok=True, detail="no model loaded")
    names = ", ".join(m.name for m in snapshot.loaded)
    return CheckResult(name="gpu_offload", ok=True, detail=f"wholly in VRAM: {names}")


def disk_check(path: Path, min_free_gib: float) -> CheckResult:
    """Free space of the file system holding ``path`` (or its nearest readable ancestor)."""
    target = path
    while True:
        try:
            stats = os.statvfs(target)
            break
        except OSError:
            if target.parent == target:
                return CheckResult(name="disk", ok=False, detail=f"cannot stat {path}")
            target = target.parent
    free_gib = stats.f_bavail * stats.f_frsize / _GIB
    where = str(path) if target == path else f"{path} (measured at {target})"
    detail = f"{free_gib:.1f} GiB free for {where}, minimum {min_free_gib:g} GiB"
    return CheckResult(name="disk", ok=free_gib >= min_free_gib, detail=detail)


Runner = Callable[[Sequence[str]], str]
OllamaReader = Callable[[str, float], OllamaSnapshot]


def _read_ollama(url: str, timeout: float) -> OllamaSnapshot:
    return read_ollama(url, timeout=timeout)


def _systemctl(args: Sequence[str]) -> str:
    result = subprocess.run(
        ["systemctl", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise BackendFailed(f"systemctl show failed: {result.stderr.strip()}")
    return result.stdout


def read_units(units: Sequence[str], runner: Runner = _systemctl) -> list[UnitStatus]:
    """``systemctl show`` of every unit at once (Id, LoadState, ActiveState, NRestarts)."""
    if not units:
        return []
    output = runner(["show", "--property=Id,LoadState,ActiveState,NRestarts", "--", *units])
    statuses: list[UnitStatus] = []
    for block in output.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if not fields:
            continue
        restarts = fields.get("NRestarts", "0")
        statuses.append(
            UnitStatus(
                unit=fields.get("Id", "?"),
                load_state=fields.get("LoadState", "?"),
                active_state=fields.get("ActiveState", "?"),
                restarts=int(restarts) if restarts.isdigit() else 0,
            )
        )
    return statuses


def unit_checks(
    statuses: Sequence[UnitStatus], previous_restarts: dict[str, int]
) -> tuple[list[CheckResult], dict[str, int]]:
    """Failed units and units restarted since the previous run; units not installed are skipped."""
    results: list[CheckResult] = []
    restarts: dict[str, int] = {}
    for status in statuses:
        if status.load_state != "loaded":
            continue
        restarts[status.unit] = status.restarts
        before = previous_restarts.get(status.unit)
        name = f"unit:{status.unit}"
        if status.active_state == "failed":
            results.append(CheckResult(name=name, ok=False, detail=f"{status.unit} has failed"))
        elif before is not None and status.restarts > before:
            count = status.restarts - before
            results.append(
                CheckResult(
                    name=name,
                    ok=False,
                    detail=f"systemd restarted {status.unit} {count} time(s) since the last check",
                )
            )
        else:
            results.append(
                CheckResult(name=name, ok=True, detail=f"{status.unit} {status.active_state}")
            )
    return results, restarts


def run_checks(
    settings: MonitoringSettings,
    previous: HealthState,
    *,
    gpu_reader: Callable[[], GpuSnapshot] | None = None,
    runner: Runner | None = None,
    ollama_reader: OllamaReader | None = None,
) -> tuple[list[CheckResult], dict[str, int]]:
    timeout = settings.http_timeout
    ollama = ollama_check(settings.ollama_url, timeout)
    results = [ollama]
    if settings.gateway_health_url:
        results.append(http_check("gateway", settings.gateway_health_url, timeout))
    if settings.api_health_url:
        results.append(http_check("api", settings.api_health_url, timeout))
    results.extend(
        gpu_checks(
            (gpu_reader or read_gpus)(),
            expected=settings.gpu_expected,
            vram_max_percent=settings.vram_max_percent,
        )
    )
    # Only with a GPU expected (on a CPU-only node every model is on the CPU) and an Ollama that
    # answers (the ollama check above already reports one that does not).
    if settings.gpu_expected and ollama.ok:
        offload = gpu_offload_check((ollama_reader or _read_ollama)(settings.ollama_url, timeout))
        if offload is not None:
            results.append(offload)
    results.append(disk_check(settings.models_dir, settings.disk_min_free_gib))
    restarts = dict(previous.restarts)
    try:
        unit_results, restarts = unit_checks(
            read_units(settings.units, runner or _systemctl), previous.restarts
        )
        results.extend(unit_results)
    except (AiLocalCoreError, OSError, subprocess.SubprocessError) as exc:
        results.append(CheckResult(name="units", ok=False, detail=f"cannot read units: {exc}"))
    return results, restarts


# ---------------------------------------------------------------------- decision


def decide(
    previous: HealthState,
    results: Sequence[CheckResult],
    restarts: dict[str, int],
    *,
    host: str,
    now: datetime,
) -> tuple[HealthState, AlertPayload | None]:
    """The next state, and the alert to post (None: nothing changed since the last post)."""
    failing = {r.name: r.detail for r in results if not r.ok}
    state = HealthState(
        failing=failing,
        restarts=restarts,
        updated_at=now,
        summary_sent_on=previous.summary_sent_on,
    )
    newly_broken = [r for r in results if not r.ok and r.name not in previous.failing]
    recovered = sorted(name for name in previous.failing if name not in failing)
    if not newly_broken and not recovered:
        return state, None
    failing_results = [r for r in results if not r.ok]
    if failing_results:
        event: Literal["broken", "recovered"] = "broken"
        lines = [f"[ai-local-core] {host}: BROKEN"]
        lines += [f"- {r.name}: {r.detail}" for r in failing_results]
        if recovered:
            lines.append("recovered: " + ", ".join(recovered))
    else:
        event = "recovered"
        lines = [f"[ai-local-core] {host}: RECOVERED ({', '.join(recovered)}); all checks pass"]
    payload = AlertPayload(
        host=host,
        event=event,
        time=now,
        broken=newly_broken,
        recovered=recovered,
        failing=failing_results,
        text="\n".join(lines),
    )
    return state, payload


def daily_summary(
    settings: MonitoringSettings, previous: HealthState, *, host: str, now: datetime
) -> SummaryPayload | None:
    """The daily energy summary when one is due at ``now``, else None.

    Due: on, at or after ``daily_summary_hour`` in the node's local time, not yet posted today,
    and the exporter's ledger has a record of the previous day (a node that measures nothing
    keeps none).
    """
    if not settings.daily_summary or settings.energy_state_file is None:
        return None
    local = now.astimezone()
    today = local.date()
    if local.hour < settings.daily_summary_hour:
        return None
    if previous.summary_sent_on is not None and previous.summary_sent_on >= today:
        return None
    ledger = energy.load_state(settings.energy_state_file)
    yesterday = today - timedelta(days=1)
    if ledger is None or yesterday.isoformat() not in ledger.days:
        return None
    figures = energy.summarize(ledger, yesterday)
    lines = [f"[ai-local-core] {host}: energy summary"]
    lines += energy.format_summary(figures, day_label=yesterday.isoformat())
    return SummaryPayload(host=host, time=now, energy=figures.as_dict(), text="\n".join(lines))


# ---------------------------------------------------------------------- webhook and state


def post_webhook(
    url: SecretStr,
    payload: AlertPayload | SummaryPayload,
    *,
    timeout: float,
    attempts: int = 3,
    wait_s: float = 2.0,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """POST the payload as JSON; retries transport errors and 5xx, never logs the URL."""
    body = payload.model_dump(mode="json")

    def attempt() -> None:
        with httpx.Client(timeout=timeout, trust_env=False, transport=transport) as client:
            response = client.post(url.get_secret_value(), json=body)
        if response.status_code >= 500:
            raise WebhookDeliveryFailed(
                f"the webhook answered {response.status_code}", status=response.status_code
            )
        if response.status_code >= 300:
            # 4xx: the request itself is refused (wrong URL or token); retrying cannot help.
            raise _FinalWebhookError(
                f"the webhook answered {response.status_code}", status=response.status_code
            )

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, _FinalWebhookError):
            return False
        return isinstance(exc, (WebhookDeliveryFailed, httpx.TransportError))

    try:
        for retry in Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_fixed(wait_s),
            retry=retry_if_exception(retryable),
            reraise=True,
        ):
            with retry:
                attempt()
    except _FinalWebhookError as exc:
        raise WebhookDeliveryFailed(exc.message, status=exc.status) from None
    except httpx.HTTPError as exc:
        # httpx messages can carry the URL; keep only the kind of failure.
        raise WebhookDeliveryFailed(f"the webhook is unreachable ({type(exc).__name__})") from None


class _FinalWebhookError(WebhookDeliveryFailed):
    """A 4xx answer: not retried."""


def load_state(path: Path) -> HealthState:
    try:
        return HealthState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return HealthState()
    except (OSError, ValidationError, ValueError) as exc:
        logger.warning("ignoring unreadable state file %s: %s", path, type(exc).__name__)
        return HealthState()


def save_state(path: Path, state: HealthState) -> None:
    """Write atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".state-", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(state.model_dump_json(indent=2))
        temp = Path(handle.name)
    temp.replace(path)


# ---------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ai-local-core-healthcheck",
        description=(
            "Check Ollama, the gateway, the API, GPU (models wholly in VRAM), disk and units "
            "once; post to the webhook (URL from the environment variable "
            "AI_LOCAL_CORE_MONITORING_WEBHOOK_URL) when something breaks or recovers."
        ),
    )
    parser.add_argument("--config", type=Path, default=None, help="settings file (YAML)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the checks; no post, no state change"
    )
    return parser.parse_args(argv)


def _summary(
    results: Sequence[CheckResult], alert: AlertPayload | None, summary: SummaryPayload | None
) -> dict[str, Any]:
    return {
        "ok": all(r.ok for r in results),
        "failing": {r.name: r.detail for r in results if not r.ok},
        "alert": None if alert is None else alert.event,
        "daily_summary": summary is not None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request with its URL at INFO; the webhook URL is a secret.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
        webhook = webhook_url_from_env()
    except AiLocalCoreError as exc:
        print(f"ai-local-core-healthcheck: {exc}", file=sys.stderr)
        return exc.exit_code
    previous = load_state(settings.state_file)
    results, restarts = run_checks(settings, previous)
    host = settings.host_label or socket.gethostname()
    now = datetime.now(timezone.utc)
    state, alert = decide(previous, results, restarts, host=host, now=now)
    summary = daily_summary(settings, previous, host=host, now=now)
    print(json.dumps(_summary(results, alert, summary), sort_keys=True))
    if args.dry_run:
        for result in results:
            print(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}")
        if summary is not None:
            print(summary.text)
        return 0
    if alert is not None:
        if webhook is None:
            logger.warning("state changed (%s) but no webhook URL is configured", alert.event)
        else:
            try:
                post_webhook(webhook, alert, timeout=settings.webhook_timeout)
            except WebhookDeliveryFailed as exc:
                print(f"ai-local-core-healthcheck: alert not delivered: {exc}", file=sys.stderr)
                return exc.exit_code  # state not advanced: the next run posts again
            logger.info("posted a %s alert", alert.event)
    status = 0
    if summary is not None and webhook is not None:
        try:
            post_webhook(webhook, summary, timeout=settings.webhook_timeout)
        except WebhookDeliveryFailed as exc:
            print(f"ai-local-core-healthcheck: summary not delivered: {exc}", file=sys.stderr)
            status = exc.exit_code  # not marked as sent: the next run posts it
        else:
            state = state.model_copy(update={"summary_sent_on": now.astimezone().date()})
            logger.info("posted the daily summary")
    try:
        save_state(settings.state_file, state)
    except OSError as exc:
        print(f"ai-local-core-healthcheck: cannot write the state file: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
