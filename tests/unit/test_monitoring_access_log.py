"""Following the gateway's JSON access log: increments, partial lines, rotation, truncation."""

from __future__ import annotations

import json
from pathlib import Path

from ai_local_core.monitoring.access_log import AccessLogFollower, GatewayStats


def line(route: str = "ollama", status: int = 200, request_time: float = 0.2) -> str:
    # The shape of the gateway role's log_format gateway_json (extra fields are ignored).
    return (
        json.dumps(
            {
                "time": "2026-11-24T08:00:00+00:00",
                "client": "laptop",
                "method": "POST",
                "route": route,
                "class": "inference",
                "path": "/api/chat",
                "status": status,
                "bytes": 120,
                "request_time": request_time,
                "upstream_status": "200",
            }
        )
        + "\n"
    )


def test_reads_only_what_was_appended(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(line() * 3)
    follower = AccessLogFollower(log)  # the exporter's default: skip what is already there
    assert follower.poll() == []
    assert follower.readable
    with log.open("a") as handle:
        handle.write(line(status=429))
    lines = follower.poll()
    assert [json.loads(x)["status"] for x in lines] == [429]
    assert follower.poll() == []


def test_from_start_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    full = line(status=201)
    log.write_text(line() + full[:10])
    follower = AccessLogFollower(log, from_start=True)
    assert len(follower.poll()) == 1  # the half-written line waits
    with log.open("a") as handle:
        handle.write(full[10:])
    (rest,) = follower.poll()
    assert json.loads(rest)["status"] == 201


def test_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    follower = AccessLogFollower(log)
    follower.poll()
    with log.open("a") as handle:
        handle.write(line(status=200))
    log.rename(tmp_path / "access.log.1")  # logrotate's move; nginx still writes to the old inode
    with (tmp_path / "access.log.1").open("a") as handle:
        handle.write(line(status=502))
    log.write_text(line(status=404))  # nginx reopened (USR1) and wrote to the new file
    statuses = [json.loads(x)["status"] for x in follower.poll()]
    assert statuses == [200, 502, 404]


def test_truncation_reads_again_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(line() * 2)
    follower = AccessLogFollower(log, from_start=True)
    assert len(follower.poll()) == 2
    log.write_text(line(status=503))  # copytruncate-style: same inode, shorter
    assert [json.loads(x)["status"] for x in follower.poll()] == [503]


def test_missing_file_is_not_readable_and_read_whole_when_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    follower = AccessLogFollower(log)
    assert follower.poll() == [] and not follower.readable
    log.write_text(line(status=200))  # created after the exporter started: all of it is new
    assert [json.loads(x)["status"] for x in follower.poll()] == [200]
    assert follower.readable
    with log.open("a") as handle:
        handle.write(line(status=500))
    assert [json.loads(x)["status"] for x in follower.poll()] == [500]


def test_stats_count_by_route_and_status_with_cumulative_buckets() -> None:
    stats = GatewayStats()
    for text in (
        line("ollama", 200, 0.05),
        line("ollama", 200, 3.0),
        line("ollama", 429, 0.0),
        line("services", 502, 400.0),
        "not json\n",
        '{"route": "ollama"}\n',  # no status
    ):
        stats.add_line(text.encode())
    assert stats.requests == {("ollama", "200"): 2, ("ollama", "429"): 1, ("services", "502"): 1}
    assert stats.invalid_lines == 2
    buckets = dict(stats.cumulative_buckets("ollama"))
    assert buckets["0.01"] == 1  # the 0.0 s answer
    assert buckets["0.05"] == 2  # le is inclusive
    assert buckets["2.5"] == 2
    assert buckets["5.0"] == 3
    assert buckets["+Inf"] == 3
    services = dict(stats.cumulative_buckets("services"))
    assert services["300.0"] == 0 and services["+Inf"] == 1  # beyond the last bound
    assert stats.latency_sum["ollama"] == 3.05
