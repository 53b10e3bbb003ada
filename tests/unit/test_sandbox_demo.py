"""tests/sandbox/demo.py: the changed tasks of a re-run and the timings it records for the bench."""

from __future__ import annotations

from bench.run import PROVISIONING_KEYS
from tests.molecule_support import changed_tasks
from tests.sandbox import demo

RERUN = """\
PLAY [Base system] *************************************************************

TASK [Gathering Facts] *********************************************************
Tuesday 24 November 2026  13:20:19 +0000 (0:00:00.013)       0:00:00.013 ******
ok: [sandbox]

TASK [base : Install packages] *************************************************
Tuesday 24 November 2026  13:20:20 +0000 (0:00:01.000)       0:00:01.013 ******
changed: [sandbox] => (item=curl)
changed: [sandbox] => (item=jq)

TASK [gateway : Render [the] site] *********************************************
ok: [sandbox]

RUNNING HANDLER [gateway : Reload nginx] ***************************************
changed: [sandbox -> localhost]

PLAY RECAP *********************************************************************
sandbox                    : ok=4    changed=2    unreachable=0    failed=0    skipped=0
"""


def test_changed_tasks_name_each_task_and_handler_once() -> None:
    assert changed_tasks(RERUN) == ["base : Install packages", "gateway : Reload nginx"]


def test_changed_tasks_of_a_clean_run_is_empty() -> None:
    clean = RERUN.replace("changed: [sandbox", "ok: [sandbox")
    assert changed_tasks(clean) == []


def run(seconds: float) -> demo.SiteRun:
    return demo.SiteRun(changed=0, seconds=seconds, output="")


def test_record_of_a_new_container_has_the_converge_time() -> None:
    record = demo.provisioning_record(run(401.26), run(12.34), fresh=True, extra=[])
    assert record["converge_s"] == 401.3
    assert record["noop_rerun_s"] == 12.3
    assert record["fresh"] is True
    assert record["source"] == demo.SOURCE
    assert demo.CONTAINER in str(record["host"]) and demo.IMAGE in str(record["host"])
    # The record is exactly what the bench reads (bench/run.py).
    assert set(record) == set(PROVISIONING_KEYS)
    assert record["noop_rerun_plain_s"] is None
    with_plain = demo.provisioning_record(
        run(401.0), run(12.0), fresh=True, extra=[], plain=run(30.04)
    )
    assert with_plain["noop_rerun_plain_s"] == 30.0


def test_record_of_a_reused_container_has_no_converge_time() -> None:
    record = demo.provisioning_record(run(30.0), run(12.0), fresh=False, extra=["--tags", "base"])
    assert record["converge_s"] is None
    assert record["fresh"] is False
    assert record["noop_rerun_s"] == 12.0
    assert "--tags base" in str(record["source"])
