"""bench/run.py and bench/report.py: reading the provisioning timings and judging the goal.

Two sources: the sandbox container of ``make demo`` (judged against "no-op re-run of site.yml
< 20 s on one container host") and the qemu VM of ``make vm-test`` (information only). Pure
functions over JSON files written here; nothing is timed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench import run as bench_run

SANDBOX = {
    "converge_s": 412.3,
    "noop_rerun_s": 14.2,
    "noop_tasks": 120,
    "host": "podman systemd container ai-local-core-sandbox",
    "measured_at": "2026-11-24T13:30:00+00:00",
    "source": "make demo (tests/sandbox/demo.py)",
    "fresh": True,
}
VM = {
    "converge_s": 2900.0,
    "noop_rerun_s": 150.5,
    "host": "vm-test: Debian 12 qemu VM (TCG), 2 vCPU",
    "measured_at": "2026-11-24T12:00:00+00:00",
    "source": "make vm-test (tests/vm/vm_test.py)",
}


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def section(tmp_path: Path, sandbox: object | None, vm: object | None) -> dict[str, Any]:
    sandbox_path, vm_path = tmp_path / "provisioning-sandbox.json", tmp_path / "provisioning.json"
    if sandbox is not None:
        write(sandbox_path, sandbox)
    if vm is not None:
        write(vm_path, vm)
    return bench_run.section_provisioning(vm_path, sandbox_path)


def goal_of(pv: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {"provisioning": pv}
    [goal] = [g for g in bench_run.goals(results) if "site.yml" in g["goal"]]
    return goal


def test_both_sources_are_read_with_their_origin(tmp_path: Path) -> None:
    pv = section(tmp_path, SANDBOX, VM)
    sandbox, vm = pv["sources"]["sandbox"], pv["sources"]["vm"]
    assert pv["measured"] is True
    assert sandbox["measured"] and vm["measured"]
    assert (sandbox["noop_rerun_s"], sandbox["converge_s"]) == (14.2, 412.3)
    assert (vm["noop_rerun_s"], vm["converge_s"]) == (150.5, 2900.0)
    assert sandbox["host"] == SANDBOX["host"] and vm["host"] == VM["host"]
    assert sandbox["measured_at"] == SANDBOX["measured_at"]
    assert sandbox["source"] == SANDBOX["source"] and vm["source"] == VM["source"]
    assert sandbox["source_file"].endswith("provisioning-sandbox.json")
    assert sandbox["fresh"] is True and vm["fresh"] is None
    assert sandbox["noop_tasks"] == 120 and vm["noop_tasks"] is None


def test_task_count_is_shown_beside_the_goal_and_in_the_table(tmp_path: Path) -> None:
    pv = section(tmp_path, SANDBOX, VM)
    assert "120 tasks" in goal_of(pv)["note"]
    rows = [line for line in report.provisioning_lines(pv) if line.startswith("| container")]
    assert rows and "| 14.2 s | 120 |" in rows[0], rows


def test_goal_is_judged_on_the_container_not_the_vm(tmp_path: Path) -> None:
    goal = goal_of(section(tmp_path, SANDBOX, VM))
    assert goal["status"] == "PASS"
    assert goal["value"] == 14.2
    assert "container host" in goal["target"]
    assert SANDBOX["host"] in goal["note"]
    assert "150.5 s, information only" in goal["note"]


def test_slow_container_rerun_is_a_miss_even_with_a_vm_figure(tmp_path: Path) -> None:
    goal = goal_of(section(tmp_path, SANDBOX | {"noop_rerun_s": 20.0}, VM | {"noop_rerun_s": 1}))
    assert goal["status"] == "MISS"
    assert goal["value"] == 20.0


def test_only_the_vm_file_leaves_the_goal_not_measured(tmp_path: Path) -> None:
    pv = section(tmp_path, None, VM)
    assert pv["measured"] is True
    assert pv["sources"]["sandbox"]["measured"] is False
    assert "make demo" in pv["sources"]["sandbox"]["note"]
    goal = goal_of(pv)
    assert goal["status"] == "NOT MEASURED"
    assert goal["value"] is None
    assert "run `make demo` first" in goal["note"]
    assert "150.5 s, information only" in goal["note"]


def test_no_file_at_all(tmp_path: Path) -> None:
    pv = section(tmp_path, None, None)
    assert pv["measured"] is False
    assert "make vm-test" in pv["sources"]["vm"]["note"]
    goal = goal_of(pv)
    assert goal["status"] == "NOT MEASURED"
    assert "make demo" in goal["note"]
    assert "information only" not in goal["note"]


def test_reused_container_has_no_converge_but_still_judges_the_rerun(tmp_path: Path) -> None:
    pv = section(tmp_path, SANDBOX | {"converge_s": None, "fresh": False}, None)
    sandbox = pv["sources"]["sandbox"]
    assert sandbox["converge_s"] is None
    assert "existing container" in sandbox["note"]
    assert goal_of(pv)["status"] == "PASS"


@pytest.mark.parametrize(
    "bad",
    [
        [1, 2],
        SANDBOX | {"noop_rerun_s": "fast"},
        SANDBOX | {"converge_s": -1},
        SANDBOX | {"noop_tasks": "many"},
    ],
    ids=["not-an-object", "text-seconds", "negative-seconds", "text-tasks"],
)
def test_malformed_timings_are_refused(tmp_path: Path, bad: object) -> None:
    path = write(tmp_path / "provisioning-sandbox.json", bad)
    with pytest.raises(ValueError, match=r"provisioning-sandbox\.json"):
        bench_run.read_timings(path, "sandbox")


def test_summary_prints_both_sources(tmp_path: Path) -> None:
    results: dict[str, Any] = {
        "machine": {
            "cpu_model": "cpu",
            "cores": 2,
            "kernel": "k",
            "python": "3.11",
            "nginx": "nginx",
            "loadavg_start": [0.0],
            "loadavg_end": [0.0],
        },
        "finished_at": "now",
        "provisioning": section(tmp_path, SANDBOX | {"converge_s": None, "fresh": False}, VM),
    }
    results["goals"] = bench_run.goals(results)
    text = "\n".join(bench_run.summary_lines(results))
    assert "provisioning (container sandbox): full converge -, no-op re-run 14.2 s" in text
    assert "provisioning (qemu VM): full converge 2900.0 s, no-op re-run 150.5 s" in text


def test_report_rows_container_first(tmp_path: Path) -> None:
    lines = report.provisioning_lines(section(tmp_path, SANDBOX, VM))
    rows = [line for line in lines if line.startswith("| container") or line.startswith("| qemu")]
    assert len(rows) == 2
    assert rows[0].startswith("| container sandbox | podman systemd container")
    assert "| 412.3 s | 14.2 s |" in rows[0]
    assert rows[1].startswith("| qemu VM | vm-test: Debian 12 qemu VM (TCG)")
    assert "| 2900.0 s | 150.5 s |" in rows[1]


def test_report_marks_a_missing_sandbox_file(tmp_path: Path) -> None:
    lines = report.provisioning_lines(section(tmp_path, None, VM))
    [row] = [line for line in lines if line.startswith("| container sandbox")]
    assert "not measured: no provisioning-sandbox.json: run `make demo` first" in row


def test_report_reads_the_older_flat_section_as_the_vm() -> None:
    flat = {"measured": True, "source_file": "/x/provisioning.json"} | VM
    [src] = report.provisioning_sources(flat)
    assert src["label"] == "qemu VM" and src["noop_rerun_s"] == 150.5
    assert report.provisioning_sources({"measured": False, "note": "none"}) == []
