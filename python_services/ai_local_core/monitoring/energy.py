"""Energy counters that survive resets and restarts, and a small daily ledger.

Two kinds of hardware counters feed it:

* ``gpu``: NVML's ``nvmlDeviceGetTotalEnergyConsumption`` per GPU, millijoules since the
  driver was loaded. It starts again from 0 when the driver is reloaded or the host boots.
* ``cpu``: RAPL package zones of the powercap driver (``<root>/intel-rapl:N/energy_uj``,
  microjoules), which wrap to 0 after ``max_energy_range_uj`` (about an hour at full load) and
  start again at boot. ``energy_uj`` is readable by root only on most kernels (since Linux 5.10,
  CVE-2020-8694): an unreadable zone is skipped with a reason, never an error.

:class:`EnergyMeter` turns those raw readings into monotonic joule totals: the difference to the
previous reading is added; a reading below the previous one is a wrap (RAPL, which knows its
range) or a reset (NVML: the new raw value is added, the energy since the reset); a reboot since
the previous reading (the boot time moved) is a reset for every source. The totals, the last raw
readings and a per-day ledger (GPU and CPU joules, cost, GPU idle/busy seconds and joules,
bounded to :data:`LEDGER_DAYS` days) are kept in one JSON state file, so the counters also
survive a restart of the exporter. A GPU interval counts as *busy* when the GPU's utilisation at
the end of the interval is at or above a threshold, *idle* otherwise.

This module uses the standard library only: ``ai_local_core.monitoring.status`` (the filter of
``playbooks/status.yml``, run by the controller's Ansible) summarises the same state file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

__all__ = [
    "JOULES_PER_KWH",
    "LEDGER_DAYS",
    "DayRecord",
    "EnergyMeter",
    "EnergyReading",
    "EnergyState",
    "EnergySummary",
    "SourceState",
    "boot_time",
    "format_summary",
    "load_state",
    "parse_state",
    "read_rapl",
    "summarize",
]

logger = logging.getLogger("ai_local_core.monitoring.energy")

JOULES_PER_KWH: Final = 3_600_000.0
#: Days kept in the ledger (the 30-day figures plus a margin).
LEDGER_DAYS: Final = 35
#: Seconds between two writes of the state file (a crash loses no energy: the raw counters keep
#: counting, and the next reading adds the difference to the last saved one).
SAVE_INTERVAL_S: Final = 60.0
#: Two boot times further apart than this are two boots (NTP steps move the computed one a little).
BOOT_TOLERANCE_S: Final = 120.0
STATE_VERSION: Final = 1
_RAPL_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")


def boot_time() -> float | None:
    """When the host booted (Unix time), from ``CLOCK_BOOTTIME``; None where it is unknown.

    Read without ``/proc`` (the exporter's unit may hide it), so it works under its hardening.
    """
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is None:
        return None
    return time.time() - time.clock_gettime(clock)


@dataclass(frozen=True)
class EnergyReading:
    """One raw counter reading."""

    kind: str  # "gpu" or "cpu"
    #: Stable identity of the source across restarts (a GPU's UUID, a RAPL zone's directory).
    key: str
    labels: Mapping[str, str]
    raw: int
    #: Joules per raw unit: 0.001 for NVML (mJ), 1e-6 for RAPL (uJ).
    joules_per_unit: float
    #: The raw value after which the counter wraps to 0 (RAPL's max_energy_range_uj); None: it
    #: only goes down when it is reset.
    wrap: int | None = None
    #: GPU only: utilisation at or above the busy threshold; None: not classified.
    busy: bool | None = None


@dataclass
class SourceState:
    kind: str
    labels: dict[str, str]
    total_j: float = 0.0
    last_raw: int | None = None


@dataclass
class DayRecord:
    """One local calendar day of the node."""

    gpu_j: float = 0.0
    cpu_j: float = 0.0
    cost_pln: float = 0.0
    gpu_idle_s: float = 0.0
    gpu_idle_j: float = 0.0
    gpu_busy_s: float = 0.0
    gpu_busy_j: float = 0.0

    @property
    def total_j(self) -> float:
        return self.gpu_j + self.cpu_j


@dataclass
class EnergyState:
    """What the state file holds."""

    boot_time: float | None = None
    tariff_pln_per_kwh: float = 0.0
    cost_pln_total: float = 0.0
    last_sample_at: str | None = None
    sources: dict[str, SourceState] = field(default_factory=dict)
    #: ISO date -> record, at most LEDGER_DAYS entries.
    days: dict[str, DayRecord] = field(default_factory=dict)
    #: kind -> why that kind of source is not measured (no GPU counter, RAPL unreadable...).
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return json.dumps(data, indent=1, sort_keys=True)


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def parse_state(data: Any) -> EnergyState:
    """An :class:`EnergyState` from the decoded JSON; anything malformed is left out."""
    state = EnergyState()
    if not isinstance(data, Mapping):
        return state
    boot = data.get("boot_time")
    state.boot_time = _number(boot) if isinstance(boot, int | float) else None
    state.tariff_pln_per_kwh = _number(data.get("tariff_pln_per_kwh"))
    state.cost_pln_total = _number(data.get("cost_pln_total"))
    last = data.get("last_sample_at")
    state.last_sample_at = last if isinstance(last, str) else None
    sources = data.get("sources")
    if isinstance(sources, Mapping):
        for key, item in sources.items():
            if not isinstance(item, Mapping) or not isinstance(item.get("kind"), str):
                continue
            labels = item.get("labels")
            raw = item.get("last_raw")
            state.sources[str(key)] = SourceState(
                kind=item["kind"],
                labels=(
                    {str(k): str(v) for k, v in labels.items()}
                    if isinstance(labels, Mapping)
                    else {}
                ),
                total_j=_number(item.get("total_j")),
                last_raw=raw if isinstance(raw, int) and not isinstance(raw, bool) else None,
            )
    days = data.get("days")
    if isinstance(days, Mapping):
        for day, item in days.items():
            if not isinstance(item, Mapping):
                continue
            try:
                date.fromisoformat(str(day))
            except ValueError:
                continue
            state.days[str(day)] = DayRecord(
                **{name: _number(item.get(name)) for name in DayRecord.__dataclass_fields__}
            )
    unavailable = data.get("unavailable")
    if isinstance(unavailable, Mapping):
        state.unavailable = {str(k): str(v) for k, v in unavailable.items()}
    return state


def load_state(path: Path) -> EnergyState | None:
    """The state file's content; None when it is missing or unreadable (logged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("cannot read the energy state %s: %s", path, exc.strerror)
        return None
    try:
        return parse_state(json.loads(text))
    except ValueError:
        logger.warning("ignoring the unreadable energy state %s", path)
        return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".energy-", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
        temp = Path(handle.name)
    try:
        temp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


class EnergyMeter:
    """Monotonic energy totals and the daily ledger, from successive raw readings.

    Not thread-safe: the exporter calls it under its collector's lock.
    """

    def __init__(
        self,
        state_file: Path | None,
        *,
        tariff_pln_per_kwh: float = 0.0,
        sample_seconds: float = 15.0,
        boot: float | None = None,
    ) -> None:
        self.state_file = state_file
        self.sample_seconds = sample_seconds
        loaded = None if state_file is None else load_state(state_file)
        self.state = loaded or EnergyState()
        #: Sources whose counter restarted with a reboot since the state was written.
        self._rebooted: set[str] = set()
        if (
            self.state.boot_time is not None
            and boot is not None
            and abs(self.state.boot_time - boot) > BOOT_TOLERANCE_S
        ):
            self._rebooted = set(self.state.sources)
            # The time since the last sample spans a reboot: not an idle/busy interval.
            self.state.last_sample_at = None
        self.state.boot_time = boot
        self.state.tariff_pln_per_kwh = tariff_pln_per_kwh
        self._saved_at: float | None = None
        self._save_failed = False
        #: Keys of the sources in the latest reading, by kind (what the exporter shows).
        self.current: dict[str, list[str]] = {}

    @property
    def tariff(self) -> float:
        return self.state.tariff_pln_per_kwh

    def _delta_j(self, source: SourceState, reading: EnergyReading) -> float:
        last = source.last_raw
        if last is None:
            return 0.0  # first sight: the baseline
        if reading.key in self._rebooted:
            delta = reading.raw  # the counter started again at boot
        elif reading.raw >= last:
            delta = reading.raw - last
        elif reading.wrap is not None and reading.wrap > last:
            delta = reading.wrap - last + reading.raw
        else:
            delta = reading.raw  # reset (driver reload): what was counted since then
        return max(delta, 0) * reading.joules_per_unit

    def record(
        self,
        readings: Sequence[EnergyReading],
        now: datetime,
        *,
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        """Add one set of readings taken at ``now`` (an aware local time: it picks the day)."""
        state = self.state
        previous = _parse_time(state.last_sample_at)
        interval = None if previous is None else (now - previous).total_seconds()
        # A gap (the exporter was stopped, or the clock jumped) is not an idle/busy interval.
        classify = interval is not None and 0 < interval <= max(3 * self.sample_seconds, 60.0)
        # A day record only once something is measured (a node without meters keeps none).
        day = (
            state.days.setdefault(now.date().isoformat(), DayRecord()) if readings else DayRecord()
        )
        added_j = 0.0
        self.current = {}
        for reading in readings:
            source = state.sources.get(reading.key)
            if source is None:
                source = state.sources[reading.key] = SourceState(
                    kind=reading.kind, labels=dict(reading.labels)
                )
            joules = self._delta_j(source, reading)
            source.kind = reading.kind
            source.labels = dict(reading.labels)
            source.last_raw = reading.raw
            source.total_j += joules
            self._rebooted.discard(reading.key)
            self.current.setdefault(reading.kind, []).append(reading.key)
            added_j += joules
            if reading.kind == "gpu":
                day.gpu_j += joules
                if classify and reading.busy is not None and interval is not None:
                    if reading.busy:
                        day.gpu_busy_s += interval
                        day.gpu_busy_j += joules
                    else:
                        day.gpu_idle_s += interval
                        day.gpu_idle_j += joules
            else:
                day.cpu_j += joules
        cost = added_j / JOULES_PER_KWH * state.tariff_pln_per_kwh
        state.cost_pln_total += cost
        day.cost_pln += cost
        state.unavailable = dict(unavailable or {})
        state.last_sample_at = now.isoformat()
        for stale in sorted(state.days)[:-LEDGER_DAYS]:
            del state.days[stale]

    def totals(self, kind: str) -> list[SourceState]:
        """The sources of ``kind`` in the latest reading, with their totals."""
        return [self.state.sources[key] for key in self.current.get(kind, [])]

    def save(self, *, force: bool = False, monotonic: float | None = None) -> None:
        """Write the state file (at most every SAVE_INTERVAL_S unless ``force``); never raises."""
        if self.state_file is None:
            return
        clock = time.monotonic() if monotonic is None else monotonic
        if not force and self._saved_at is not None and clock - self._saved_at < SAVE_INTERVAL_S:
            return
        try:
            _write_atomically(self.state_file, self.state.to_json())
        except OSError as exc:
            if not self._save_failed:
                logger.warning(
                    "cannot write the energy state %s: %s (the counters restart from 0 "
                    "when the exporter restarts)",
                    self.state_file,
                    exc.strerror,
                )
            self._save_failed = True
            return
        self._save_failed = False
        self._saved_at = clock


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# ---------------------------------------------------------------------- RAPL


def _read_int(path: Path) -> int:
    return int(path.read_text(encoding="ascii").strip())


def read_rapl(root: Path) -> tuple[list[EnergyReading], str | None]:
    """The CPU package zones under ``root`` (``/sys/class/powercap``), and why some are missing.

    Only the top-level ``intel-rapl:N`` zones named ``package-*`` are read (their subzones and a
    ``psys`` zone overlap them). Never raises.
    """
    try:
        zones = sorted(
            path
            for path in root.iterdir()
            if _RAPL_PACKAGE_ZONE.match(path.name) and (path / "energy_uj").exists()
        )
    except OSError:
        return [], f"no RAPL powercap zones ({root} is absent)"
    readings: list[EnergyReading] = []
    problems: list[str] = []
    for zone in zones:
        try:
            name = (zone / "name").read_text(encoding="ascii").strip()
        except (OSError, ValueError):
            name = zone.name
        if not name.startswith("package"):
            continue
        try:
            raw = _read_int(zone / "energy_uj")
            wrap = _read_int(zone / "max_energy_range_uj")
        except PermissionError:
            problems.append(
                f"{zone / 'energy_uj'} is readable by root only "
                "(kernel default since 5.10, CVE-2020-8694)"
            )
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"cannot read {zone / 'energy_uj'}: {exc}")
            continue
        readings.append(
            EnergyReading(
                kind="cpu",
                key=f"rapl:{zone.name}",
                labels={"zone": zone.name, "name": name},
                raw=raw,
                joules_per_unit=1e-6,
                wrap=wrap if wrap > 0 else None,
            )
        )
    if not readings and not problems:
        problems.append(f"no RAPL package zone under {root}")
    return readings, "; ".join(problems) or None


# ---------------------------------------------------------------------- summary


@dataclass(frozen=True)
class EnergySummary:
    """One day and the window of days ending with it (the figures of status and summary)."""

    day: str
    day_kwh: float
    day_gpu_kwh: float
    day_cpu_kwh: float
    day_cost_pln: float
    window_days: int
    window_kwh: float
    window_cost_pln: float
    #: Days of the window with a record.
    days_recorded: int
    #: Average GPU board power (W, per GPU) while idle and while busy over the window.
    gpu_idle_watts: float | None
    gpu_busy_watts: float | None
    tariff_pln_per_kwh: float
    sources: tuple[str, ...]
    unavailable: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = list(self.sources)
        data["unavailable"] = dict(self.unavailable)
        return data


def _source_name(source: SourceState) -> str:
    if source.kind == "gpu":
        return f"GPU {source.labels.get('gpu', '?')}"
    return f"CPU {source.labels.get('name', source.labels.get('zone', '?'))}"


def summarize(state: EnergyState, day: date, window_days: int = 30) -> EnergySummary:
    """``day``'s figures and those of the ``window_days`` days ending with ``day``."""
    record = state.days.get(day.isoformat(), DayRecord())
    window = [(day - timedelta(days=n)).isoformat() for n in range(window_days)]
    records = [state.days[d] for d in window if d in state.days]
    idle_s = sum(r.gpu_idle_s for r in records)
    busy_s = sum(r.gpu_busy_s for r in records)
    return EnergySummary(
        day=day.isoformat(),
        day_kwh=record.total_j / JOULES_PER_KWH,
        day_gpu_kwh=record.gpu_j / JOULES_PER_KWH,
        day_cpu_kwh=record.cpu_j / JOULES_PER_KWH,
        day_cost_pln=record.cost_pln,
        window_days=window_days,
        window_kwh=sum(r.total_j for r in records) / JOULES_PER_KWH,
        window_cost_pln=sum(r.cost_pln for r in records),
        days_recorded=len(records),
        gpu_idle_watts=sum(r.gpu_idle_j for r in records) / idle_s if idle_s > 0 else None,
        gpu_busy_watts=sum(r.gpu_busy_j for r in records) / busy_s if busy_s > 0 else None,
        tariff_pln_per_kwh=state.tariff_pln_per_kwh,
        sources=tuple(sorted(_source_name(s) for s in state.sources.values())),
        unavailable=dict(state.unavailable),
    )


def _watts(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} W"


def format_summary(summary: EnergySummary, *, day_label: str = "today") -> list[str]:
    """Short lines: the day, the window, the idle/busy averages, what is and is not measured."""

    def amount(kwh: float, cost: float) -> str:
        if summary.tariff_pln_per_kwh > 0 or cost > 0:
            return f"{kwh:.2f} kWh, {cost:.2f} PLN"
        return f"{kwh:.2f} kWh (no tariff)"

    missing = [
        f"{kind.upper()} not measured: {reason}"
        for kind, reason in sorted(summary.unavailable.items())
    ]
    if not summary.sources and not summary.days_recorded:
        return ["nothing measured", *missing]
    split = (
        f" (GPU {summary.day_gpu_kwh:.2f} + CPU {summary.day_cpu_kwh:.2f})"
        if summary.day_gpu_kwh >= 0.01 and summary.day_cpu_kwh >= 0.01
        else ""
    )
    if (
        summary.gpu_idle_watts is None
        and summary.gpu_busy_watts is None
        and not any(source.startswith("GPU") for source in summary.sources)
    ):
        gpu_watts = "GPU avg idle/busy: no GPU measured"
    else:
        gpu_watts = (
            f"GPU avg idle {_watts(summary.gpu_idle_watts)}, busy {_watts(summary.gpu_busy_watts)}"
        )
    return [
        f"{day_label} {amount(summary.day_kwh, summary.day_cost_pln)}{split}",
        f"{summary.window_days} days {amount(summary.window_kwh, summary.window_cost_pln)}"
        f" ({summary.days_recorded} recorded)",
        gpu_watts,
        "measured: " + (", ".join(summary.sources) or "nothing now"),
        *missing,
    ]
