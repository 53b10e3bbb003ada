"""The table of playbooks/status.yml: parsing of the raw facts and the table's content."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ai_local_core.monitoring.energy import DayRecord, EnergyMeter, EnergyReading
from ai_local_core.monitoring.status import (
    build_status,
    format_status,
    parse_nvidia_smi,
    parse_units,
    render_status,
)

REPO = Path(__file__).resolve().parents[2]
UNITS = "\n\n".join(
    [
        "Id=ollama.service\nLoadState=loaded\nActiveState=active\nSubState=running",
        "Id=ai-local-core-api.service\nLoadState=loaded\nActiveState=failed\nSubState=failed",
        "Id=nginx.service\nLoadState=loaded\nActiveState=active\nSubState=running",
        "Id=ai-local-core-exporter.service\nLoadState=loaded\nActiveState=active\nSubState=running",
        "Id=prometheus-node-exporter.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead",
        "Id=ai-local-core-healthcheck.timer\nLoadState=loaded\nActiveState=active\nSubState=waiting",
        "Id=cloudflared-quick.service\nLoadState=loaded\nActiveState=active\nSubState=running",
        "Id=tailscaled.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead",
    ]
)
SMI = (
    "0, NVIDIA GeForce RTX 3060, 570.86.15, 37, 6144, 12288, 61, 95.50, 170.00\n"
    "1, NVIDIA GeForce RTX 3060, 570.86.15, [N/A], 10, 12288, 30, [Not Supported], 170.00\n"
)


def raw(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "host": "llm-node",
        "os": "Ubuntu 24.04",
        "gpu_pci": True,
        "nvidia_smi": SMI,
        "ollama_version": "0.35.1",
        "ollama_tags": {"models": [{"name": "llama3.1:8b"}, {"name": "llava:7b"}]},
        "ollama_ps": {
            "models": [
                {
                    "name": "llama3.1:8b",
                    "size": 6 * 1024**3,
                    "size_vram": 3 * 1024**3,
                    "expires_at": "2026-11-24T09:05:00+00:00",
                }
            ]
        },
        "services_version": "0.1.0",
        "units": UNITS,
        "cloudflared_quicktunnel": {"hostname": "four-random-words.trycloudflare.com"},
        "cloudflared_hostname": "",
        "tailscale_status": None,
        "journal": (
            "-- Journal begins at Mon 2026-11-23 --\n"
            "2026-11-24T08:01:02+0000 llm-node gunicorn[812]: worker failed to boot\n"
        ),
    }
    data.update(overrides)
    return data


def rows(table: str) -> dict[str, list[str]]:
    """Table lines grouped by label (continuation lines join the label above)."""
    grouped: dict[str, list[str]] = {}
    label = ""
    for line in table.splitlines():
        head, value = line[:10].strip(), line[12:]
        label = head or label
        grouped.setdefault(label, []).append(value)
    return grouped


def test_full_gpu_node_table() -> None:
    table = render_status(raw())
    got = rows(table)
    assert got["host"] == ["llm-node"]
    assert got["os"] == ["Ubuntu 24.04"]
    assert got["driver"] == ["570.86.15"]
    assert got["ollama"] == ["0.35.1"]
    assert got["services"] == ["0.1.0"]
    units = " ".join(got["units"])
    assert "ollama active (running)" in units
    assert "api failed" in units
    assert "node-exporter not installed" in units
    assert "healthcheck-timer active (waiting)" in units
    assert "cloudflared-quick active (running)" in units
    assert "tailscaled" not in units  # a tunnel unit that is not installed is not listed
    assert got["models"] == ["2 present", "llama3.1:8b, llava:7b"]
    assert got["loaded"] == ["llama3.1:8b (6.0 GiB, 50% VRAM, until 2026-11-24 09:05 UTC)"]
    assert got["gpu"] == [
        "0 NVIDIA GeForce RTX 3060: 37% | 6144/12288 MiB | 61 C | 95.50/170.00 W",
        "1 NVIDIA GeForce RTX 3060: n/a% | 10/12288 MiB | 30 C | n/a/170.00 W",
    ]
    assert got["tunnel"] == ["cloudflared quick active (running)"]
    assert got["public url"] == ["https://four-random-words.trycloudflare.com"]
    assert got["errors"] == [
        "2026-11-24T08:01:02+0000 llm-node gunicorn[812]: worker failed to boot"
    ]
    assert max(len(line) for line in table.splitlines()) <= 100


def test_node_without_gpu_services_or_tunnel() -> None:
    units = "Id=ollama.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead"
    got = rows(
        render_status(
            raw(
                gpu_pci=False,
                nvidia_smi=None,
                ollama_version=None,
                ollama_tags=None,
                ollama_ps=None,
                services_version=None,
                units=units,
                cloudflared_quicktunnel=None,
                journal="",
            )
        )
    )
    assert got["driver"] == ["no GPU"] and got["gpu"] == ["no GPU"]
    assert got["ollama"] == ["not answering"]
    assert got["services"] == ["not installed"]
    assert "ollama inactive (dead)" in " ".join(got["units"])
    assert got["models"] == ["0 present"]
    assert got["loaded"] == ["none"]
    assert got["tunnel"] == ["none"] and got["public url"] == ["none"]
    assert got["errors"] == ["none"]


def test_gpu_on_the_bus_without_a_working_driver() -> None:
    got = rows(render_status(raw(nvidia_smi=None)))
    assert got["driver"] == ["not loaded"]
    assert "nvidia-smi does not answer" in got["gpu"][0]


def test_tailscale_and_kept_loaded_model() -> None:
    units = "Id=tailscaled.service\nLoadState=loaded\nActiveState=active\nSubState=running"
    status = {
        "BackendState": "Running",
        "Self": {"DNSName": "llm-node.tail1234.ts.net.", "TailscaleIPs": ["100.101.102.103"]},
    }
    ps = {
        "models": [
            {
                "name": "llama3.1:8b",
                "size": 100,
                "size_vram": 100,
                "expires_at": "2318-01-01T00:00:00Z",
            }
        ]
    }
    got = rows(render_status(raw(units=units, tailscale_status=status, ollama_ps=ps)))
    assert got["tunnel"] == ["tailscale Running"]
    assert got["public url"] == ["https://llm-node.tail1234.ts.net (100.101.102.103)"]
    assert got["loaded"][0].endswith("100% VRAM, kept loaded)")


def test_errors_keep_the_last_five_and_cut_long_lines() -> None:
    journal = "\n".join(f"line {i} " + "x" * (300 if i == 9 else 0) for i in range(10))
    status = build_status(raw(journal=journal))
    assert [e.split()[1] for e in status.errors] == ["5", "6", "7", "8", "9"]
    assert status.errors[-1].endswith("...") and len(status.errors[-1]) == 160


def test_parsers_ignore_malformed_input() -> None:
    assert parse_nvidia_smi("garbage\n\n1,2\n") == []
    assert parse_units("nothing here") == {}
    assert render_status([raw(host="a"), raw(host="b")]).count("host") == 2


FILTERS = REPO / "collections/ansible_collections/ai_local_core/node/plugins/filter"


def load_filters(name: str) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(
        f"ai_local_core_node_filter_{name}", FILTERS / name
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filters: dict[str, Any] = module.FilterModule().filters()
    return filters


def test_the_ansible_filter_uses_the_package() -> None:
    filters = load_filters("status.py")
    assert filters["status_table"](raw()) == render_status(raw())


#: ansible_facts.ai_local_core_gpu (module ai_local_core.node.gpu_facts) for the SMI rows above.
GPU_FACTS: dict[str, Any] = {
    "present": True,
    "reason": "",
    "pci_present": True,
    "gpus": [
        {
            "index": 0,
            "name": "NVIDIA GeForce RTX 3060",
            "uuid": "GPU-0",
            "driver_version": "570.86.15",
            "memory_total_mib": 12288,
            "memory_used_mib": 6144,
            "power_draw_w": 95.5,
            "power_limit_w": 170.0,
            "temperature_c": 61,
            "persistence_mode": True,
            "pstate": "P2",
            "utilization_percent": 37.0,
        },
        {
            "index": 1,
            "name": "NVIDIA GeForce RTX 3060",
            "uuid": None,
            "driver_version": "570.86.15",
            "memory_total_mib": 12288,
            "memory_used_mib": 10,
            "power_draw_w": None,
            "power_limit_w": 170.0,
            "temperature_c": 30,
            "persistence_mode": None,
            "pstate": None,
            "utilization_percent": None,
        },
    ],
}


def test_gpu_facts_give_the_same_rows_as_nvidia_smi_plus_the_power_state() -> None:
    from_smi = build_status(raw())
    from_facts = build_status({**raw(nvidia_smi=None), "gpu": GPU_FACTS})
    assert from_facts.driver == from_smi.driver == "570.86.15"
    table = format_status(from_facts)
    assert "0 NVIDIA GeForce RTX 3060: 37% | 6144/12288 MiB | 61 C | 95.50/170.00 W | P2" in table
    assert "1 NVIDIA GeForce RTX 3060: n/a% | 10/12288 MiB | 30 C | n/a/170.00 W" in table


def test_gpu_facts_without_a_gpu_say_why() -> None:
    absent = {"present": False, "pci_present": False, "gpus": [], "reason": "no nvidia-smi"}
    status = build_status({**raw(nvidia_smi=None), "gpu": absent})
    assert (status.driver, status.gpu_note) == ("no GPU", "no GPU")
    failed = {
        "present": False,
        "pci_present": True,
        "gpus": [],
        "reason": "nvidia-smi failed (rc 9): NVIDIA-SMI has failed",
    }
    status = build_status({**raw(nvidia_smi=None), "gpu": failed})
    assert status.driver == "not loaded"
    assert status.gpu_note == (
        "NVIDIA GPU on the PCI bus, but nvidia-smi does not answer "
        "(nvidia-smi failed (rc 9): NVIDIA-SMI has failed)"
    )


def test_the_vram_plan_row_comes_from_the_planner_through_the_collection_filter() -> None:
    plan = load_filters("vram.py")["ollama_vram_plan"](
        [{"name": "llama3.1:8b"}, {"name": "llava:7b"}, {"name": "mistral", "state": "absent"}],
        gpu=GPU_FACTS | {"gpus": GPU_FACTS["gpus"][:1]},
        installed=[],
    )
    assert plan["planned"] and plan["ok"]
    table = render_status({**raw(), "vram_plan": plan})
    row = table.split("\nvram plan   ", 1)[1].split("\ntunnel", 1)[0]
    text = row.replace("\n            ", " ")  # the wrapped value, joined
    assert text.startswith("estimate: 12.00 GiB (nvidia-smi, 1 GPU) - 0.25 driver")
    assert "llama3.1:8b 5.80 GiB, fits alone llava:7b 5.61 GiB, fits alone" in text
    assert "mistral" not in text
    assert "swap: ollama_max_loaded_models 1 keeps at most 1 of llama3.1:8b + llava:7b" in text
    assert text.endswith("verdict: every declared model fits alone; the combinations above swap")
    # Without a GPU and without ollama_vram_budget_gb: said so, not hidden.
    skipped = load_filters("vram.py")["ollama_vram_plan"](
        ["llama3.1:8b"], gpu={"present": False, "gpus": []}
    )
    assert "VRAM plan skipped" in render_status({**raw(), "vram_plan": skipped})
    # No plan handed over (an old playbook): no row.
    assert "vram plan" not in render_status(raw())


# ---------------------------------------------------------------------- energy


def energy_state() -> str:
    """The exporter's state file after a day of the NVML stand-in's readings and RAPL."""
    meter = EnergyMeter(None, tariff_pln_per_kwh=1.1, sample_seconds=15)
    start = datetime(2026, 11, 23, 23, 59, 30, tzinfo=timezone.utc)
    gpu_raw, cpu_raw = 0, 0
    for step in range(0, 8):
        when = start + timedelta(seconds=15 * step)
        busy = step % 2 == 1  # alternate 15 s at 120 W (busy) and 15 s at 20 W (idle)
        gpu_raw += (120 if busy else 20) * 15 * 1000 if step else 0
        cpu_raw += 30 * 15 * 1_000_000 if step else 0
        meter.record(
            [
                EnergyReading("gpu", "gpu:GPU-1111", {"gpu": "0"}, gpu_raw, 0.001, busy=busy),
                EnergyReading("cpu", "rapl:intel-rapl:0", {"name": "package-0"}, cpu_raw, 1e-6),
            ],
            when,
        )
    # A day recorded earlier in the window (3.6 MJ = 1 kWh at 1.1 PLN).
    meter.state.days["2026-11-01"] = DayRecord(gpu_j=3_600_000, cost_pln=1.1)
    meter.state.unavailable = {}
    return meter.state.to_json()


def test_status_shows_energy_cost_and_idle_busy_watts() -> None:
    got = rows(render_status(raw(energy_state=energy_state(), today="2026-11-24")))
    energy = got["energy"]
    # 2026-11-24 (from 00:00:00): 4 GPU intervals (2 busy, 2 idle) + 4 CPU intervals of 450 J.
    gpu_j = 2 * 120 * 15 + 2 * 20 * 15
    total_kwh = (gpu_j + 4 * 450) / 3.6e6
    assert energy[0] == f"today {total_kwh:.2f} kWh, {total_kwh * 1.1:.2f} PLN"
    assert energy[1].startswith("30 days 1.00 kWh, 1.10 PLN (3 recorded)")
    assert energy[2] == "GPU avg idle 20.0 W, busy 120.0 W"
    assert energy[3] == "measured: CPU package-0, GPU 0"


def test_status_energy_without_a_ledger_or_with_garbage() -> None:
    assert rows(render_status(raw()))["energy"] == [
        "no energy data (the exporter's state file is missing)"
    ]
    assert rows(render_status(raw(energy_state="{oops")))["energy"] == ["energy state unreadable"]
    unmeasured = json.dumps(
        {
            "unavailable": {
                "gpu": "NVML unavailable: NVML Shared Library Not Found",
                "cpu": "/sys/class/powercap/intel-rapl:0/energy_uj is readable by root only "
                "(kernel default since 5.10, CVE-2020-8694)",
            }
        }
    )
    table = render_status(raw(energy_state=unmeasured, today="2026-11-24"))
    assert rows(table)["energy"] == [
        "nothing measured",
        "CPU not measured: /sys/class/powercap/intel-rapl:0/energy_uj",
        "is readable by root only (kernel default since 5.10,",
        "CVE-2020-8694)",
        "GPU not measured: NVML unavailable: NVML Shared Library Not",
        "Found",
    ]
    assert max(len(line) for line in table.splitlines()) <= 100


def test_status_energy_with_the_cpu_measured_and_no_gpu_says_so() -> None:
    meter = EnergyMeter(None, tariff_pln_per_kwh=1.0, sample_seconds=15)
    start = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
    for n in range(5):
        cpu = EnergyReading(
            "cpu", "rapl:intel-rapl:0", {"name": "package-0"}, n * 450_000_000, 1e-6
        )
        meter.record([cpu], start + timedelta(seconds=15 * n))
    meter.state.unavailable = {"gpu": "NVML unavailable: NVML Shared Library Not Found"}
    table = render_status(raw(energy_state=meter.state.to_json(), today="2026-11-24"))
    energy = rows(table)["energy"]
    assert "GPU avg idle/busy: no GPU measured" in energy
    assert "measured: CPU package-0" in energy
