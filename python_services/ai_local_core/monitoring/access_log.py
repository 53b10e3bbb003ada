"""Follow the gateway's JSON access log and count requests, statuses and latency.

The gateway role writes one JSON object a line (``log_format gateway_json``:
``route``, ``status``, ``request_time``, ...). :class:`AccessLogFollower` keeps the
file open and reads only what was appended since the last poll; when logrotate
moves the file away (another inode at the path) it finishes the old file and
continues with the new one from its start, and a truncated file is read again
from the start. :class:`GatewayStats` turns the lines into counters and a
latency histogram per route; labels are the gateway's small fixed route names
and status codes, never client identities or paths (bounded cardinality).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["LATENCY_BUCKETS", "AccessLogEntry", "AccessLogFollower", "GatewayStats"]

#: Upper bounds (seconds) of the gateway latency histogram; +Inf is implied.
LATENCY_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Longest line kept; a longer one is counted invalid (the gateway's lines are < 1 KiB).
_MAX_LINE: Final = 64 * 1024


class AccessLogEntry(BaseModel):
    """The fields of one gateway access log line that the exporter uses."""

    model_config = ConfigDict(extra="ignore")

    route: str = "unknown"
    status: int
    request_time: float = 0.0

    @property
    def route_label(self) -> str:
        return self.route or "unknown"


@dataclass
class GatewayStats:
    """Request counters and a latency histogram per route, fed with access log entries."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    latency_buckets: dict[str, list[int]] = field(default_factory=dict)
    latency_sum: dict[str, float] = field(default_factory=dict)
    latency_count: dict[str, int] = field(default_factory=dict)
    invalid_lines: int = 0

    def add(self, entry: AccessLogEntry) -> None:
        route = entry.route_label
        key = (route, str(entry.status))
        self.requests[key] = self.requests.get(key, 0) + 1
        buckets = self.latency_buckets.setdefault(route, [0] * len(LATENCY_BUCKETS))
        # Counts per bucket (not cumulative); exposition makes them cumulative.
        position = bisect.bisect_left(LATENCY_BUCKETS, entry.request_time)
        if position < len(buckets):
            buckets[position] += 1
        self.latency_sum[route] = self.latency_sum.get(route, 0.0) + entry.request_time
        self.latency_count[route] = self.latency_count.get(route, 0) + 1

    def add_line(self, line: bytes) -> None:
        text = line.strip()
        if not text:
            return
        try:
            entry = AccessLogEntry.model_validate_json(text)
        except ValidationError:
            self.invalid_lines += 1
            return
        self.add(entry)

    def cumulative_buckets(self, route: str) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf`` (Prometheus layout)."""
        counts = self.latency_buckets.get(route, [0] * len(LATENCY_BUCKETS))
        result: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip(LATENCY_BUCKETS, counts, strict=True):
            running += count
            result.append((repr(float(bound)), running))
        result.append(("+Inf", self.latency_count.get(route, 0)))
        return result


class AccessLogFollower:
    """Reads the lines appended to ``path`` since the previous :meth:`poll`.

    ``from_start=False`` (the exporter's default) skips what the file holds when it
    is first opened: counters start at zero with the process, as Prometheus expects.
    A file rotated in later, or one that did not exist yet, is read from its start.
    """

    def __init__(self, path: Path, *, from_start: bool = False) -> None:
        self.path = path
        self._skip_existing = not from_start
        self._file: IO[bytes] | None = None
        self._inode: tuple[int, int] | None = None
        self._partial = b""
        self.readable = False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._inode = None
        self._partial = b""

    def _open(self, *, at_end: bool) -> None:
        handle = self.path.open("rb")
        stat = os.fstat(handle.fileno())
        self._file = handle
        self._inode = (stat.st_dev, stat.st_ino)
        self._partial = b""
        if at_end:
            handle.seek(0, os.SEEK_END)

    def _drain(self) -> list[bytes]:
        assert self._file is not None
        data = self._partial + self._file.read()
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > _MAX_LINE:
            lines.append(self._partial)  # counted invalid by the parser
            self._partial = b""
        return lines

    def poll(self) -> list[bytes]:
        """Complete new lines (without the newline); an incomplete last line waits."""
        lines: list[bytes] = []
        try:
            current = self.path.stat()
        except OSError:
            # Gone (between a rotation and the next write) or not readable: finish the open
            # file, then wait for the path to come back.
            if self._file is not None:
                lines.extend(self._drain())
            else:
                self._skip_existing = False  # when it appears, all of it is new
            self.readable = self._file is not None
            return lines
        try:
            if self._file is None:
                self._open(at_end=self._skip_existing)
                self._skip_existing = False
            elif self._inode != (current.st_dev, current.st_ino):
                lines.extend(self._drain())
                self.close()
                self._open(at_end=False)
            elif current.st_size < self._file.tell():
                self._file.seek(0)  # truncated in place (copytruncate)
                self._partial = b""
            lines.extend(self._drain())
        except OSError:
            self.close()
            self.readable = False
            return lines
        self.readable = True
        return lines
