"""Gateway measurements of the suite (``bench/run.py``): overhead, streaming, rate limit, load.

Every function takes targets on loopback (the Ollama stand-in direct, or the gateway in front of
it, see :mod:`bench.loopback_gateway`) and returns plain data (dicts of floats and lists) for the
suite's JSON. Bounded: durations and counts are capped by the callers (``bench/run.py``).

* :func:`load` - a load generator: ``wrk`` (Debian's package) when installed, with a Lua script
  that reports the latency percentiles, else a Python one (threads, keep-alive connections);
* :func:`stream_timeline` - one streamed ``POST /api/generate``: the arrival time of every NDJSON
  line (time to first token, chunk count);
* :func:`rate_limit_window` - clients hammer the inference class for a window: accepted vs 429;
* :func:`concurrent_streams` / :func:`concurrent_posts` - N simultaneous requests, one per client
  key, with the errors and durations; :class:`RssSampler` records the peak RSS of processes
  meanwhile.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: python bench/gateway_bench.py
    sys.path.insert(0, str(REPO_ROOT))

from bench.loopback_gateway import HOST, rss_kib  # noqa: E402

#: Percentiles recorded for every latency distribution (the plots use all of them).
PERCENTILES: tuple[float, ...] = (
    *[float(p) for p in range(1, 100)],
    99.5,
    99.9,
    99.99,
)


class BenchError(Exception):
    """A measurement could not be made; the message says why."""


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    headers: Mapping[str, str]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no samples")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- load generator -------------------------------------------------------------------------------

WRK_SCRIPT = """\
local auth = os.getenv("BENCH_AUTHORIZATION")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
local percentiles = {%s}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write("BENCH-JSON {\\"requests\\":", summary.requests, ",\\"duration_us\\":", summary.duration,
    ",\\"errors\\":", e.connect + e.read + e.write + e.status + e.timeout,
    ",\\"status_errors\\":", e.status, ",\\"percentiles_us\\":[")
  for i, p in ipairs(percentiles) do
    if i > 1 then io.write(",") end
    io.write(latency:percentile(p))
  end
  io.write("]}\\n")
end
"""


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    wrk = wrk_binary()
    if wrk is None:
        return "not installed"
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False, timeout=10)
    first = (out.stdout or out.stderr).strip().splitlines()
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer": the name and version.
    return " ".join(first[0].split()[:2]) if first else "unknown"


def load(
    target: Target, *, path: str, connections: int, threads: int, duration: float
) -> dict[str, Any]:
    """GET ``path`` for ``duration`` s on ``connections`` keep-alive connections.

    Returns requests, requests/s, errors and the latency percentiles (ms) of :data:`PERCENTILES`.
    """
    if wrk_binary() is not None:
        return _wrk(target, path=path, connections=connections, threads=threads, duration=duration)
    return _python_load(target, path=path, connections=connections, duration=duration)


def _wrk(
    target: Target, *, path: str, connections: int, threads: int, duration: float
) -> dict[str, Any]:
    wrk = wrk_binary()
    assert wrk is not None
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(WRK_SCRIPT % ", ".join(f"{p:g}" for p in PERCENTILES))
        env = dict(os.environ)
        # The credential travels in the environment, not in wrk's argv.
        env["BENCH_AUTHORIZATION"] = target.headers.get("Authorization", "")
        res = subprocess.run(
            [
                wrk,
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"http://{HOST}:{target.port}{path}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=duration + 60,
            check=False,
        )
    line = next((x for x in res.stdout.splitlines() if x.startswith("BENCH-JSON ")), None)
    if res.returncode != 0 or line is None:
        output = res.stdout[-1000:] + res.stderr[-1000:]
        raise BenchError(f"wrk failed ({res.returncode}): {output}")
    raw = json.loads(line.removeprefix("BENCH-JSON "))
    seconds = raw["duration_us"] / 1e6
    return {
        "tool": "wrk",
        "connections": connections,
        "threads": min(threads, connections),
        "duration_s": seconds,
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds,
        "errors": raw["errors"],
        "percentiles": list(PERCENTILES),
        "latency_ms": [us / 1000 for us in raw["percentiles_us"]],
    }


def _python_load(target: Target, *, path: str, connections: int, duration: float) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    deadline = time.perf_counter() + duration

    def worker(slot: int) -> None:
        conn = http.client.HTTPConnection(HOST, target.port, timeout=10)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    conn.request("GET", path, headers=dict(target.headers))
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, http.client.HTTPException):
                    errors[slot] += 1
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, target.port, timeout=10)
                    continue
                latencies[slot].append((time.perf_counter() - t0) * 1000)
                if resp.status != 200:
                    errors[slot] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = [v for values in latencies for v in values]
    return {
        "tool": "python",
        "connections": connections,
        "threads": connections,
        "duration_s": elapsed,
        "requests": len(flat),
        "rps": len(flat) / elapsed,
        "errors": sum(errors),
        "percentiles": list(PERCENTILES),
        "latency_ms": [percentile(flat, p) for p in PERCENTILES],
    }


def at(result: Mapping[str, Any], q: float) -> float:
    """The latency (ms) at percentile q of a :func:`load` result."""
    value: float = result["latency_ms"][list(result["percentiles"]).index(q)]
    return value


def timed_gets(target: Target, count: int, path: str = "/api/version") -> list[float]:
    """``count`` sequential GETs on one keep-alive connection: each latency in ms."""
    conn = http.client.HTTPConnection(HOST, target.port, timeout=30)
    latencies: list[float] = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=dict(target.headers))
            resp = conn.getresponse()
            resp.read()
            latencies.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise BenchError(f"{target.name} {path}: HTTP {resp.status}")
    finally:
        conn.close()
    return latencies


# --- streaming ------------------------------------------------------------------------------------


def stream_timeline(
    target: Target, *, model: str, prompt: str, token_delay: float
) -> dict[str, Any]:
    """One streamed generate: ms from sending to each NDJSON line, and whether it completed."""
    body = json.dumps(
        {"model": model, "prompt": prompt, "options": {"standin_token_delay": token_delay}}
    )
    headers = {"Content-Type": "application/json", **target.headers}
    conn = http.client.HTTPConnection(HOST, target.port, timeout=60)
    arrivals: list[float] = []
    done = False
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/api/generate", body=body, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"{target.name} stream: HTTP {resp.status} {resp.read()[:200]!r}")
        while True:
            line = resp.readline()
            if not line:
                break
            if not line.strip():
                continue
            arrivals.append((time.perf_counter() - t0) * 1000)
            item = json.loads(line)
            if "error" in item:
                raise BenchError(f"{target.name} stream: error line {item['error']!r}")
            if item.get("done"):
                done = True
                break
    finally:
        conn.close()
    if not done or not arrivals:
        raise BenchError(f"{target.name} stream ended without its final line")
    return {"first_ms": arrivals[0], "chunks": len(arrivals), "arrivals_ms": arrivals}


# --- rate limit -----------------------------------------------------------------------------------


def rate_limit_window(
    target: Target, *, model: str, window: float, clients: int, max_requests: int
) -> dict[str, Any]:
    """Hammer the inference class for ``window`` s: accepted, rejected (429), the span in s."""
    body = json.dumps({"model": model, "prompt": "hi", "stream": False})
    headers = {"Content-Type": "application/json", **target.headers}
    counts = {200: 0, 429: 0}
    other: list[int] = []
    accepted_at: list[float] = []
    lock = threading.Lock()
    budget = [max_requests]
    started = time.monotonic()
    deadline = started + window

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, target.port, timeout=30)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                conn.request("POST", "/api/generate", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                now = time.monotonic() - started
                with lock:
                    if resp.status in counts:
                        counts[resp.status] += 1
                        if resp.status == 200:
                            accepted_at.append(now)
                    else:
                        other.append(resp.status)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    span = time.monotonic() - started
    if other:
        raise BenchError(f"rate-limit window: unexpected statuses {sorted(set(other))}")
    return {
        "accepted": counts[200],
        "rejected": counts[429],
        "span_s": span,
        "accepted_at_s": sorted(accepted_at),
        "clients": clients,
    }


# --- concurrency ----------------------------------------------------------------------------------


class RssSampler:
    """Samples the RSS of groups of processes every ``interval`` s in a thread; keeps the peaks."""

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]], interval: float = 0.05):
        self.groups = groups
        self.interval = interval
        self.peak_kib: dict[str, int] = dict.fromkeys(groups, 0)
        self.processes: dict[str, int] = dict.fromkeys(groups, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """The current total RSS (KiB) and process count of every group."""
        now: dict[str, dict[str, int]] = {}
        for name, pids in self.groups.items():
            found = pids()
            now[name] = {"rss_kib": sum(rss_kib(pid) for pid in found), "processes": len(found)}
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, values in self.snapshot().items():
                if values["rss_kib"] > self.peak_kib[name]:
                    self.peak_kib[name] = values["rss_kib"]
                    self.processes[name] = values["processes"]
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _simultaneous(
    count: int, one: Callable[[int], None], timeout: float
) -> tuple[list[str], float, list[float]]:
    """Run ``one(i)`` for i < count in threads released together: errors, wall s, per-call s."""
    barrier = threading.Barrier(count + 1)
    errors: list[str] = []
    durations: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=timeout)
        except threading.BrokenBarrierError:
            with lock:
                errors.append("barrier broken")
            return
        t0 = time.perf_counter()
        try:
            one(index)
        except (BenchError, OSError, http.client.HTTPException, ValueError) as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            durations.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=timeout)
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=timeout)
    if any(thread.is_alive() for thread in threads):
        errors.append("some requests did not finish in time")
    return errors, time.perf_counter() - started, durations


def concurrent_streams(
    port: int,
    keys: Sequence[str] | None,
    *,
    model: str,
    prompt: str,
    token_delay: float,
    timeout: float,
    count: int = 200,
) -> dict[str, Any]:
    """One stream per key (or ``count`` without keys: direct), all at once: errors, durations."""
    chunks: list[int] = []
    firsts: list[float] = []

    def one(index: int) -> None:
        headers = {} if keys is None else {"Authorization": f"Bearer {keys[index]}"}
        target = Target("stream", port, headers)
        result = stream_timeline(target, model=model, prompt=prompt, token_delay=token_delay)
        chunks.append(result["chunks"])
        firsts.append(result["first_ms"])

    total = count if keys is None else len(keys)
    errors, wall, durations = _simultaneous(total, one, timeout)
    return _summary(total, errors, wall, durations) | {
        "ttft_p50_ms": statistics.median(firsts) if firsts else None,
        "chunks_min": min(chunks, default=0),
        "chunks_max": max(chunks, default=0),
    }


def concurrent_posts(
    port: int, keys: Sequence[str], *, path: str, body: Mapping[str, Any], timeout: float
) -> dict[str, Any]:
    """One JSON POST per key, all at once, through the gateway: errors and durations."""
    data = json.dumps(body)

    def one(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        try:
            conn.request(
                "POST",
                path,
                body=data,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {keys[index]}",
                },
            )
            resp = conn.getresponse()
            answer = json.loads(resp.read())
        finally:
            conn.close()
        if resp.status != 200 or not answer.get("success"):
            raise BenchError(f"HTTP {resp.status}: {str(answer)[:200]}")

    errors, wall, durations = _simultaneous(len(keys), one, timeout)
    return _summary(len(keys), errors, wall, durations)


def _summary(count: int, errors: list[str], wall: float, durations: list[float]) -> dict[str, Any]:
    return {
        "requests": count,
        "ok": len(durations),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "wall_s": wall,
        "duration_p50_s": statistics.median(durations) if durations else None,
        "duration_max_s": max(durations, default=None),
    }


def main(argv: list[str] | None = None) -> int:
    """``python bench/gateway_bench.py [--quick]``: the suite's gateway sections only."""
    from bench import run

    args = list(sys.argv[1:] if argv is None else argv)
    return run.main(["--sections", "overhead,streaming,ratelimit,concurrency", *args])


if __name__ == "__main__":
    sys.exit(main())
