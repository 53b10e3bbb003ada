"""The per-host table of ``playbooks/status.yml`` (``make status``).

The playbook gathers raw, read-only facts on each host (``systemctl show``, the GPU facts
of module ``ai_local_core.node.gpu_facts`` (or ``nvidia-smi`` CSV), Ollama's
``/api/version``, ``/api/tags`` and ``/api/ps``, the tunnel's status, the journal's recent
errors, the exporter's energy state file, the VRAM plan of the declared models) and hands them
to the Ansible filter ``ai_local_core.node.status_table`` (the local collection, in
``collections/``), which calls :func:`render_status`. Parsing and layout live here so that
they are unit-tested.

This module uses the standard library only: the filter runs inside the
controller's Ansible, whose Python may not have the package's dependencies.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from ai_local_core.monitoring.energy import format_summary, parse_state, summarize

__all__ = [
    "CORE_UNITS",
    "TUNNEL_UNITS",
    "GpuRow",
    "HostStatus",
    "build_status",
    "energy_lines",
    "format_status",
    "gpu_rows",
    "parse_nvidia_smi",
    "parse_units",
    "render_status",
]

#: Units always listed (``not installed`` when absent), with their short names.
CORE_UNITS: Final = (
    ("ollama.service", "ollama"),
    ("ai-local-core-api.service", "api"),
    ("nginx.service", "nginx"),
    ("ai-local-core-exporter.service", "exporter"),
    ("prometheus-node-exporter.service", "node-exporter"),
    ("ai-local-core-healthcheck.timer", "healthcheck-timer"),
)
#: Units listed only when installed.
TUNNEL_UNITS: Final = (
    ("cloudflared.service", "cloudflared"),
    ("cloudflared-quick.service", "cloudflared-quick"),
    ("tailscaled.service", "tailscaled"),
)
#: ``nvidia-smi --query-gpu=...`` fields, in this order.
NVIDIA_SMI_FIELDS: Final = (
    "index",
    "name",
    "driver_version",
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
    "power.limit",
)
_MAX_ERROR_LINES: Final = 5
_MAX_LINE: Final = 160
#: Width of a wrapped value (the table stays readable in a terminal and in Ansible's output).
_WIDTH: Final = 60


@dataclass(frozen=True)
class GpuRow:
    index: str
    name: str
    driver: str
    util: str
    mem_used: str
    mem_total: str
    temp: str
    power: str
    power_limit: str
    #: Performance state (P0 busy ... P8 idle), when the GPU facts give it.
    pstate: str = ""


@dataclass
class HostStatus:
    host: str
    os: str
    driver: str
    ollama: str
    services: str
    units: list[tuple[str, str]] = field(default_factory=list)
    models_present: list[str] = field(default_factory=list)
    models_loaded: list[str] = field(default_factory=list)
    gpus: list[GpuRow] = field(default_factory=list)
    gpu_note: str = ""
    tunnel: str = "none"
    public_url: str = "none"
    errors: list[str] = field(default_factory=list)
    energy: list[str] = field(default_factory=list)
    vram_plan: list[str] = field(default_factory=list)


def _clean(value: str) -> str:
    value = value.strip()
    return "n/a" if value.startswith("[") or value == "" else value


def parse_nvidia_smi(text: str) -> list[GpuRow]:
    """Rows of ``nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits``."""
    rows: list[GpuRow] = []
    for record in csv.reader(io.StringIO(text)):
        if len(record) != len(NVIDIA_SMI_FIELDS):
            continue
        values = [_clean(v) for v in record]
        rows.append(GpuRow(*values))
    return rows


def _fact(value: Any, digits: int | None = None) -> str:
    if value is None or isinstance(value, bool) or value == "":
        return "n/a"
    if digits is not None and isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def gpu_rows(facts: Mapping[str, Any]) -> list[GpuRow]:
    """Rows of ``ansible_facts.ai_local_core_gpu`` (module ``ai_local_core.node.gpu_facts``)."""
    rows: list[GpuRow] = []
    for gpu in facts.get("gpus") or []:
        if not isinstance(gpu, Mapping):
            continue
        rows.append(
            GpuRow(
                index=_fact(gpu.get("index")),
                name=_fact(gpu.get("name")),
                driver=_fact(gpu.get("driver_version")),
                util=_fact(gpu.get("utilization_percent"), 0),
                mem_used=_fact(gpu.get("memory_used_mib"), 0),
                mem_total=_fact(gpu.get("memory_total_mib"), 0),
                temp=_fact(gpu.get("temperature_c"), 0),
                power=_fact(gpu.get("power_draw_w"), 2),
                power_limit=_fact(gpu.get("power_limit_w"), 2),
                pstate=str(gpu.get("pstate") or ""),
            )
        )
    return rows


_PLAN_MODEL = re.compile(r"^(\S+): ([0-9.]+) GiB = .*: (fits alone|does NOT fit)(?:; (.*))?$")


def vram_plan_lines(plan: Any) -> list[str]:
    """The VRAM plan (``ai_local_core.node.ollama_vram_plan``'s ``lines``), one short line per
    model (``name 5.56 GiB, fits alone``) and the header, combinations and verdict as they are."""
    if isinstance(plan, Mapping):
        plan = plan.get("lines")
    if not isinstance(plan, list | tuple) or not plan:
        return ["not planned"]
    out: list[str] = []
    for line in plan:
        match = _PLAN_MODEL.match(str(line))
        if match:
            note = f" (KV cache {match.group(4)})" if match.group(4) else ""
            out.append(f"{match.group(1)} {match.group(2)} GiB, {match.group(3)}{note}")
        else:
            out.append(
                str(line).replace("VRAM plan (estimates, see docs/ollama-role.md): ", "estimate: ")
            )
    return out


def parse_units(text: str) -> dict[str, tuple[str, str]]:
    """``systemctl show -p Id,LoadState,ActiveState,SubState`` -> {unit: (load, active/sub)}."""
    units: dict[str, tuple[str, str]] = {}
    for block in text.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in fields:
            continue
        active = fields.get("ActiveState", "?")
        sub = fields.get("SubState", "")
        state = active if not sub or sub == active else f"{active} ({sub})"
        units[fields["Id"]] = (fields.get("LoadState", "?"), state)
    return units


def _models(data: Any) -> list[Mapping[str, Any]]:
    if isinstance(data, Mapping) and isinstance(data.get("models"), list):
        return [m for m in data["models"] if isinstance(m, Mapping)]
    return []


def _gib(size: Any) -> str:
    return f"{size / 1024**3:.1f} GiB" if isinstance(size, int | float) else "?"


def _loaded(model: Mapping[str, Any]) -> str:
    name = str(model.get("name") or model.get("model") or "?")
    size = model.get("size")
    vram = model.get("size_vram")
    share = (
        f"{vram / size * 100:.0f}% VRAM"
        if isinstance(size, int | float) and isinstance(vram, int | float) and size > 0
        else "VRAM ?"
    )
    expires = str(model.get("expires_at") or "")
    until = ""
    if expires:
        try:
            moment = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            until = f", until {expires}"
        else:
            until = ", kept loaded" if moment.year > 2200 else f", until {moment:%Y-%m-%d %H:%M %Z}"
    return f"{name} ({_gib(size)}, {share}{until})"


def _tunnel(raw: Mapping[str, Any], units: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    parts: list[str] = []
    urls: list[str] = []
    for unit, short in (("cloudflared-quick.service", "quick"), ("cloudflared.service", "token")):
        if units.get(unit, ("",))[0] == "loaded":
            parts.append(f"cloudflared {short} {units[unit][1]}")
            if short == "quick":
                quick = raw.get("cloudflared_quicktunnel")
                hostname = quick.get("hostname") if isinstance(quick, Mapping) else None
                urls.append(f"https://{hostname}" if hostname else "quick URL unknown")
            elif raw.get("cloudflared_hostname"):
                urls.append(f"https://{raw['cloudflared_hostname']}")
    if units.get("tailscaled.service", ("",))[0] == "loaded":
        status = raw.get("tailscale_status")
        if isinstance(status, Mapping):
            state = str(status.get("BackendState", "?"))
            self_node = status.get("Self")
            own: Mapping[str, Any] = self_node if isinstance(self_node, Mapping) else {}
            dns = str(own.get("DNSName", "")).rstrip(".")
            ips = own.get("TailscaleIPs") or []
            parts.append(f"tailscale {state}")
            if dns:
                urls.append(f"https://{dns}" + (f" ({ips[0]})" if ips else ""))
        else:
            parts.append(f"tailscale ({units['tailscaled.service'][1]}, status unknown)")
    return (", ".join(parts) or "none", ", ".join(urls) or "none")


def energy_lines(state: Any, today: Any) -> list[str]:
    """Today's and the last 30 days' kWh and cost, and the GPU's idle/busy watts.

    ``state`` is the exporter's energy state file (JSON text or already decoded), ``today`` the
    node's local date (``YYYY-MM-DD``; the latest day of the ledger when missing).
    """
    if isinstance(state, str | bytes):
        try:
            state = json.loads(state)
        except ValueError:
            return ["energy state unreadable"]
    if not isinstance(state, Mapping):
        return ["no energy data (the exporter's state file is missing)"]
    parsed = parse_state(state)
    try:
        day = date.fromisoformat(str(today))
    except ValueError:
        day = date.fromisoformat(max(parsed.days)) if parsed.days else date.today()
    return format_summary(summarize(parsed, day))


def build_status(raw: Mapping[str, Any]) -> HostStatus:
    """Turn the playbook's raw facts into a :class:`HostStatus` (missing pieces -> "?")."""
    units = parse_units(str(raw.get("units") or ""))
    facts = raw.get("gpu")
    smi = raw.get("nvidia_smi")
    gpu_reason = ""
    if isinstance(facts, Mapping):
        gpus = gpu_rows(facts) if facts.get("present") else []
        gpu_pci = bool(facts.get("pci_present"))
        gpu_reason = str(facts.get("reason") or "")
    else:
        gpus = parse_nvidia_smi(smi) if isinstance(smi, str) else []
        gpu_pci = bool(raw.get("gpu_pci"))
    if gpus:
        driver, gpu_note = gpus[0].driver, ""
    elif gpu_pci:
        driver, gpu_note = "not loaded", "NVIDIA GPU on the PCI bus, but nvidia-smi does not answer"
        if gpu_reason:
            gpu_note += f" ({gpu_reason})"
    else:
        driver, gpu_note = "no GPU", "no GPU"
    ollama_up = isinstance(raw.get("ollama_version"), str) and raw["ollama_version"]
    status = HostStatus(
        host=str(raw.get("host") or "?"),
        os=str(raw.get("os") or "?"),
        driver=driver,
        ollama=str(raw["ollama_version"]) if ollama_up else "not answering",
        services=str(raw.get("services_version") or "not installed"),
        gpus=gpus,
        gpu_note=gpu_note,
    )
    for unit, short in CORE_UNITS:
        load, state = units.get(unit, ("not-found", ""))
        status.units.append((short, state if load == "loaded" else "not installed"))
    for unit, short in TUNNEL_UNITS:
        load, state = units.get(unit, ("not-found", ""))
        if load == "loaded":
            status.units.append((short, state))
    present = _models(raw.get("ollama_tags"))
    status.models_present = sorted(str(m.get("name") or m.get("model") or "?") for m in present)
    status.models_loaded = [_loaded(m) for m in _models(raw.get("ollama_ps"))]
    status.tunnel, status.public_url = _tunnel(raw, units)
    journal = [line for line in str(raw.get("journal") or "").splitlines() if line.strip()]
    journal = [line for line in journal if not line.startswith("-- ")]  # journalctl markers
    status.errors = [
        line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
        for line in journal[-_MAX_ERROR_LINES:]
    ]
    status.energy = energy_lines(raw.get("energy_state"), raw.get("today"))
    if "vram_plan" in raw:
        status.vram_plan = vram_plan_lines(raw.get("vram_plan"))
    return status


def _gpu_line(gpu: GpuRow) -> str:
    return (
        f"{gpu.index} {gpu.name}: {gpu.util}% | {gpu.mem_used}/{gpu.mem_total} MiB"
        f" | {gpu.temp} C | {gpu.power}/{gpu.power_limit} W"
        + (f" | {gpu.pstate}" if gpu.pstate else "")
    )


def _wrap(items: Sequence[str], width: int = _WIDTH, sep: str = ", ") -> list[str]:
    """Join ``items`` into lines of at most ``width`` characters (an item is never split)."""
    lines: list[str] = []
    current = ""
    for item in items:
        candidate = f"{current}{sep}{item}" if current else item
        if current and len(candidate) > width:
            lines.append(current + sep.rstrip())
            current = item
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def format_status(status: HostStatus) -> str:
    """The compact two-column table of one host (values wrapped to short lines)."""
    rows: list[tuple[str, list[str]]] = [
        ("host", [status.host]),
        ("os", [status.os]),
        ("driver", [status.driver]),
        ("ollama", [status.ollama]),
        ("services", [status.services]),
        ("units", _wrap([f"{name} {state}" for name, state in status.units])),
        ("models", [f"{len(status.models_present)} present", *_wrap(status.models_present)]),
        ("loaded", status.models_loaded or ["none"]),
        ("gpu", [_gpu_line(gpu) for gpu in status.gpus] or [status.gpu_note]),
        ("energy", [line for item in status.energy for line in _wrap(item.split(" "), sep=" ")]),
        *(
            [
                (
                    "vram plan",
                    [ln for item in status.vram_plan for ln in _wrap(item.split(" "), sep=" ")],
                )
            ]
            if status.vram_plan
            else []
        ),
        ("tunnel", [status.tunnel]),
        ("public url", [status.public_url]),
        ("errors", status.errors or ["none"]),
    ]
    width = max(len(label) for label, _ in rows)
    lines: list[str] = []
    for label, values in rows:
        for index, value in enumerate(values):
            lines.append(f"{(label if index == 0 else '').ljust(width)}  {value}".rstrip())
    return "\n".join(lines)


def render_status(raw: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """One host's table, or the tables of several hosts separated by a blank line."""
    if isinstance(raw, Mapping):
        return format_status(build_status(raw))
    return "\n\n".join(format_status(build_status(item)) for item in raw)
