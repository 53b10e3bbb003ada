"""The benchmark suite of issue 12, in one run, on loopback: figures, ratios and goals.

    .venv/bin/python -m bench.run [--quick] [--sections overhead,streaming,...]

Starts, on 127.0.0.1 only, the Ollama stand-in (tests/fakes), the API server under gunicorn
(tests/api_harness.py) and an nginx of its own rendered from role ``gateway``
(bench/loopback_gateway.py; the system's nginx service is never touched), then measures, with
direct and gateway paths interleaved so both see the same machine state:

* ``overhead``    - GET /api/version direct vs through the gateway: p50/p99 latency on one
                    keep-alive connection and requests/s with 16 connections (wrk when installed,
                    else a Python load generator);
* ``streaming``   - streamed POST /api/generate with a token delay set on the stand-in: time to
                    first token and chunk count, direct vs gateway;
* ``ratelimit``   - 4 clients hammer the inference class for a window: accepted vs
                    rate*time+burst;
* ``concurrency`` - 200 simultaneous streams (200 client keys) through the gateway, then 200
                    simultaneous POST /services/v1/complete to the API workers; errors and the
                    peak RSS of the nginx workers and the gunicorn workers;
* ``cli``         - Waldus CLIs cold (in-process) vs warm (API server) (bench/warm_vs_cold.py);
* ``provisioning``- converge and no-op re-run times of site.yml cannot be measured on loopback:
                    read from the timings JSON files the systemd-host runs write: the sandbox
                    container of ``make demo`` (``--provisioning-sandbox``; the goal "no-op
                    re-run < 20 s on one container host" is judged on it) and the qemu VM of
                    ``make vm-test`` (``--provisioning``; shown for information: under TCG
                    emulation it is ~10x slower). A missing file is reported as not measured.

Writes ``.cache/bench/bench-<UTC time>.json`` and ``.cache/bench/latest.json``; prints the figures
and every goal of the issue as PASS/MISS with the measured value (``bench/report.py`` turns the
latest JSON into docs/benchmarks.md). Bounded: every section has a fixed duration or count.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import gateway_bench as gb  # noqa: E402
from bench.loopback_gateway import (  # noqa: E402
    GatewayError,
    GatewaySettings,
    NginxGateway,
    children_of,
    cpu_seconds,
    free_port,
    nginx_version,
    render_gateway,
    running_nginx,
)
from tests.api_harness import ApiServer, running_api_server  # noqa: E402
from tests.fixtures.ollama import OllamaStandIn, running_standin  # noqa: E402

OUT_DIR = REPO_ROOT / ".cache" / "bench"
PROVISIONING_JSON = OUT_DIR / "provisioning.json"  # make vm-test (tests/vm/vm_test.py)
PROVISIONING_SANDBOX_JSON = OUT_DIR / "provisioning-sandbox.json"  # make demo
MODEL = "llama3.1:8b"
SECTIONS = ("overhead", "streaming", "ratelimit", "concurrency", "cli", "provisioning")
CONCURRENT = 200
INFERENCE_RATE, INFERENCE_BURST = 20, 10  # r/s and burst of the inference class (per client)
KEYS = {
    "overhead": "bench-overhead-NOT-A-SECRET-0123456789abcdef",
    # A client with a model allowlist: its requests take the gateway's njs check (docs/gateway.md).
    "listed": "bench-listed-NOT-A-SECRET-0123456789abcdef",
    "stream": "bench-stream-NOT-A-SECRET-0123456789abcdef",
    "ratelimit": "bench-ratelimit-NOT-A-SECRET-0123456789abcdef",
} | {f"conc-{i:03d}": f"bench-conc-{i:03d}-NOT-A-SECRET-0123456789abcdef0" for i in range(200)}
BASIC_USER, BASIC_PASSWORD = "bench", "bench-password-NOT-A-SECRET"
STREAM_PROMPT = " ".join(f"w{i}" for i in range(16))  # a reply of ~21 tokens
# Goals of issue 12.
GOAL_P50_ADDED_MS = 1.0
GOAL_RPS_LOSS = 0.05
GOAL_TTFT_ADDED_MS = 5.0
GOAL_RATE_ACCURACY = 0.05
GOAL_WARM_SPEEDUP = 10.0
GOAL_NOOP_RERUN_S = 20.0


@dataclass(frozen=True)
class Plan:
    """Sizes of one run (``--quick`` halves the slow parts)."""

    rounds: int
    seconds: float
    streams: int
    token_delay: float
    window: float
    cold: int
    warm: int


FULL = Plan(rounds=3, seconds=3, streams=12, token_delay=0.02, window=4, cold=2, warm=5)
QUICK = Plan(rounds=2, seconds=2, streams=6, token_delay=0.02, window=3, cold=1, warm=3)


# --- the machine ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        mem_kib = int(first[1])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=False,
            timeout=10,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "nginx": nginx_version(),
        "load_generator": gb.wrk_version() if gb.wrk_binary() else "python (wrk not installed)",
        "git_commit": commit,
        "loadavg_start": list(os.getloadavg()),
    }


# --- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    standin: OllamaStandIn
    gateway: NginxGateway
    api: ApiServer | None

    def direct(self) -> gb.Target:
        return gb.Target("direct", self.standin.port, {})

    def via_gateway(self, key: str) -> gb.Target:
        return gb.Target("gateway", self.gateway.port, {"Authorization": f"Bearer {KEYS[key]}"})


@contextmanager
def running_stack(work: Path, with_api: bool) -> Iterator[Stack]:
    with ExitStack() as stack:
        standin = stack.enter_context(
            running_standin(
                work / "standin",
                env={"OLLAMA_NUM_PARALLEL": "512", "OLLAMA_MAX_QUEUE": "1024"},
            )
        )
        api: ApiServer | None = None
        api_port = free_port()
        if with_api:
            config = {
                "log_level": "WARNING",
                "ollama": {"url": standin.url},
                "translation": {"backend": "ollama"},
                "image": {"backend": "ollama"},
                "api": {"threads": 8, "max_concurrent": 4, "queue_timeout": 120},
            }
            api = stack.enter_context(running_api_server(work / "api", config, port=api_port))
        gw_dir = work / "gateway"
        gw_dir.mkdir()
        port = free_port()
        settings = GatewaySettings(
            ollama_upstream=standin.ollama_host,
            services_upstream=f"127.0.0.1:{api_port}",
            keys=KEYS,
            inference_rate=f"{INFERENCE_RATE}r/s",
            inference_burst=INFERENCE_BURST,
            max_streams_per_client=64,
            basic_auth=(BASIC_USER, BASIC_PASSWORD),
            key_models={"listed": ["llama3.1:8b"]},
        )
        conf = render_gateway(gw_dir, port, settings)
        gateway = stack.enter_context(running_nginx(gw_dir, conf, port))
        yield Stack(standin, gateway, api)


# --- sections -------------------------------------------------------------------------------------


def section_overhead(stack: Stack, plan: Plan) -> dict[str, Any]:
    direct, gateway = stack.direct(), stack.via_gateway("overhead")
    for target in (direct, gateway):  # warm-up: connections, upstream keep-alive
        gb.load(target, path="/api/version", connections=1, threads=1, duration=1)
    standin_pid, workers = stack.standin.process.pid, stack.gateway.worker_pids()
    watched = [standin_pid, *workers]
    listed = gb.Target("listed", stack.gateway.port, stack.via_gateway("listed").headers)
    latency: dict[str, list[dict[str, Any]]] = {"direct": [], "gateway": [], "listed": []}
    throughput: dict[str, list[dict[str, Any]]] = {"direct": [], "gateway": []}
    for _ in range(plan.rounds):
        for target in (direct, gateway, listed):
            latency[target.name].append(
                gb.load(
                    target, path="/api/version", connections=1, threads=1, duration=plan.seconds
                )
            )
        for target in (direct, gateway):
            before = {pid: cpu_seconds(pid) for pid in watched}
            result = gb.load(
                target, path="/api/version", connections=16, threads=2, duration=plan.seconds
            )
            result["cpu_s"] = {
                name: sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in pids)
                for name, pids in (("standin", [standin_pid]), ("nginx_workers", workers))
            }
            throughput[target.name].append(result)

    def med(rounds: list[dict[str, Any]], q: float) -> float:
        return statistics.median(gb.at(r, q) for r in rounds)

    summary: dict[str, Any] = {}
    for name in ("direct", "gateway"):
        summary[name] = {
            "p50_ms": med(latency[name], 50.0),
            "p99_ms": med(latency[name], 99.0),
            "rps_sequential": statistics.median(r["rps"] for r in latency[name]),
            "rps_concurrent": statistics.median(r["rps"] for r in throughput[name]),
            "requests": sum(r["requests"] for r in latency[name] + throughput[name]),
            "errors": sum(r["errors"] for r in latency[name] + throughput[name]),
        }
    d, g = summary["direct"], summary["gateway"]
    summary["p50_added_ms"] = g["p50_ms"] - d["p50_ms"]
    # The same request from a client with a model allowlist (through the njs check).
    summary["allowlist_p50_added_ms"] = med(latency["listed"], 50.0) - d["p50_ms"]
    summary["p99_added_ms"] = g["p99_ms"] - d["p99_ms"]
    summary["rps_ratio"] = g["rps_concurrent"] / d["rps_concurrent"]
    summary["rps_loss"] = 1 - summary["rps_ratio"]
    summary["rps_sequential_ratio"] = g["rps_sequential"] / d["rps_sequential"]

    # CPU per request of the upstream (direct rounds) and of nginx (gateway rounds): what the
    # gateway costs in machine time, independent of how the cores are shared.
    def cpu_us(name: str, proc: str) -> float:
        rounds = throughput[name]
        requests = sum(int(r["requests"]) for r in rounds)
        return 1e6 * sum(float(r["cpu_s"][proc]) for r in rounds) / max(1, requests)

    summary["cpu_us_per_request"] = {
        "standin_direct": cpu_us("direct", "standin"),
        "standin_via_gateway": cpu_us("gateway", "standin"),
        "nginx_workers": cpu_us("gateway", "nginx_workers"),
    }
    # Basic auth: one bcrypt verification (cost 12) per request in the nginx worker.
    credentials = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    basic = gb.Target("basic", stack.gateway.port, {"Authorization": f"Basic {credentials}"})
    summary["basic_auth_p50_ms"] = statistics.median(gb.timed_gets(basic, 5))
    summary["api_key_p50_ms"] = statistics.median(gb.timed_gets(gateway, 5))
    summary["latency_rounds"] = latency
    summary["throughput_rounds"] = throughput
    return summary


def section_streaming(stack: Stack, plan: Plan) -> dict[str, Any]:
    direct, gateway = stack.direct(), stack.via_gateway("stream")
    for target in (direct, gateway):
        gb.stream_timeline(target, model=MODEL, prompt="warm up", token_delay=0.0)
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "gateway": []}
    for _ in range(plan.streams):
        for target in (direct, gateway):
            runs[target.name].append(
                gb.stream_timeline(
                    target, model=MODEL, prompt=STREAM_PROMPT, token_delay=plan.token_delay
                )
            )
            time.sleep(1 / INFERENCE_RATE)  # stay inside the gateway's inference rate
    out: dict[str, Any] = {"token_delay_ms": plan.token_delay * 1000, "streams": plan.streams}
    for name, values in runs.items():
        out[name] = {
            "ttft_p50_ms": statistics.median(v["first_ms"] for v in values),
            "ttft_max_ms": max(v["first_ms"] for v in values),
            "chunks": statistics.median(v["chunks"] for v in values),
            "total_p50_ms": statistics.median(v["arrivals_ms"][-1] for v in values),
            "timelines_ms": [v["arrivals_ms"] for v in values],
        }
    out["ttft_added_ms"] = out["gateway"]["ttft_p50_ms"] - out["direct"]["ttft_p50_ms"]
    out["chunks_equal"] = all(
        a["chunks"] == b["chunks"] for a, b in zip(runs["direct"], runs["gateway"], strict=True)
    )
    return out


def section_ratelimit(stack: Stack, plan: Plan) -> dict[str, Any]:
    time.sleep(1.0)  # the key's bucket is untouched anyway; lets earlier load settle
    result = gb.rate_limit_window(
        stack.via_gateway("ratelimit"),
        model=MODEL,
        window=plan.window,
        clients=4,
        max_requests=50_000,
    )
    expected = INFERENCE_RATE * result["span_s"] + INFERENCE_BURST
    result |= {
        "rate_per_s": INFERENCE_RATE,
        "burst": INFERENCE_BURST,
        "expected": expected,
        "accuracy": result["accepted"] / expected,
        "deviation": abs(result["accepted"] - expected) / expected,
    }
    return result


def section_concurrency(stack: Stack, plan: Plan) -> dict[str, Any]:
    gateway, api = stack.gateway, stack.api
    groups: dict[str, Callable[[], list[int]]] = {
        "nginx_workers": gateway.worker_pids,
        "ollama_standin": lambda: [stack.standin.process.pid],
    }
    if api is not None:
        api_pid = api.process.pid
        groups["api_master"] = lambda: [api_pid]
        groups["api_workers"] = lambda: children_of(api_pid)
    keys = [f"conc-{i:03d}" for i in range(CONCURRENT)]
    sampler = gb.RssSampler(groups)
    idle = sampler.snapshot()
    direct = gb.concurrent_streams(
        stack.standin.port,
        None,
        model=MODEL,
        prompt=STREAM_PROMPT,
        token_delay=plan.token_delay * 2,
        timeout=120,
    )
    time.sleep(1.0)
    with sampler:
        streams = gb.concurrent_streams(
            gateway.port,
            [KEYS[k] for k in keys],
            model=MODEL,
            prompt=STREAM_PROMPT,
            token_delay=plan.token_delay * 2,
            timeout=120,
        )
    peak_streams = dict(sampler.peak_kib)
    out: dict[str, Any] = {
        "concurrent": CONCURRENT,
        "token_delay_ms": plan.token_delay * 2000,
        "direct_streams": direct,
        "streams": streams,
        "rss_idle_kib": idle,
        "rss_peak_streams_kib": peak_streams,
    }
    if api is not None:
        time.sleep(1.0)  # the keys' buckets refill (20 r/s)
        sampler = gb.RssSampler(groups)
        with sampler:
            out["api_posts"] = gb.concurrent_posts(
                gateway.port,
                [KEYS[k] for k in keys],
                path="/services/v1/complete",
                body={"user": "Hello from the bench", "model": MODEL},
                timeout=120,
            )
        out["rss_peak_api_kib"] = dict(sampler.peak_kib)
    return out


def section_cli(plan: Plan) -> dict[str, Any]:
    try:
        from bench import warm_vs_cold
    except ImportError as exc:  # the vision extra (torch, transformers) is missing
        return {"skipped": f"needs the vision extra ({exc})"}
    return warm_vs_cold.measure(plan.cold, plan.warm, torch_threads=1)


PROVISIONING_SOURCES = {
    "sandbox": ("container sandbox", "make demo"),
    "vm": ("qemu VM", "make vm-test"),
}
PROVISIONING_KEYS = (
    "converge_s",
    "noop_rerun_s",
    "noop_tasks",
    "noop_rerun_plain_s",
    "host",
    "measured_at",
    "source",
    "fresh",
)


def _seconds(value: object, path: Path, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{path}: {key} is {value!r}, not a number of seconds")
    return float(value)


def read_timings(path: Path, kind: str) -> dict[str, Any]:
    """One provisioning timings file (``kind``: sandbox or vm), or a not-measured entry."""
    label, producer = PROVISIONING_SOURCES[kind]
    if not path.exists():
        return {
            "kind": kind,
            "label": label,
            "measured": False,
            "source_file": str(path),
            "note": f"no {path.name}: run `{producer}` first",
        }
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    entry: dict[str, Any] = {"kind": kind, "label": label, "measured": True}
    entry |= {"source_file": str(path)} | {k: data.get(k) for k in PROVISIONING_KEYS}
    for key in ("converge_s", "noop_rerun_s", "noop_rerun_plain_s"):
        entry[key] = _seconds(data.get(key), path, key)
    tasks = data.get("noop_tasks")
    if tasks is not None and (isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 0):
        raise ValueError(f"{path}: noop_tasks is {tasks!r}, not a task count")
    entry["noop_tasks"] = tasks
    if entry["converge_s"] is None and entry.get("fresh") is False:
        entry["note"] = "no full-converge figure: the run reused an existing container"
    return entry


def section_provisioning(vm_path: Path, sandbox_path: Path) -> dict[str, Any]:
    """Both sources: the container sandbox (judged against the goal) and the VM (information)."""
    sources = {
        "sandbox": read_timings(sandbox_path, "sandbox"),
        "vm": read_timings(vm_path, "vm"),
    }
    return {"measured": any(s["measured"] for s in sources.values()), "sources": sources}


def provisioning_goal(pv: dict[str, Any] | None) -> tuple[float | None, bool | None, str]:
    """The no-op re-run goal (a container host): value, PASS/MISS (None: not measured), note."""
    sources = (pv or {}).get("sources") or {}
    sandbox, vm = sources.get("sandbox") or {}, sources.get("vm") or {}
    vm_note = ""
    if vm.get("measured") and vm.get("noop_rerun_s") is not None:
        vm_note = (
            f"qemu VM {vm['noop_rerun_s']:.1f} s, information only: not a container host"
            f" ({vm.get('host') or 'host not given'})"
        )
    if sandbox.get("measured") and sandbox.get("noop_rerun_s") is not None:
        value = float(sandbox["noop_rerun_s"])
        tasks, plain = sandbox.get("noop_tasks"), sandbox.get("noop_rerun_plain_s")
        note = "".join(
            [
                f"{tasks} tasks, mitogen_linear (the default); " if tasks is not None else "",
                f"plain SSH (MITOGEN=0) {plain:.1f} s; " if plain is not None else "",
                f"{sandbox.get('host') or 'host not given'}, measured {sandbox.get('measured_at')}",
            ]
        )
        return value, value < GOAL_NOOP_RERUN_S, f"{note}; {vm_note}" if vm_note else note
    name = Path(str(sandbox.get("source_file") or PROVISIONING_SANDBOX_JSON)).name
    note = f"no container-host figure: run `make demo` first (it writes {name})"
    return None, None, f"{note}; {vm_note}" if vm_note else note


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


# --- goals ----------------------------------------------------------------------------------------


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def goal(name: str, target: str, value: float | None, ok: bool | None, note: str = "") -> None:
        status = "NOT MEASURED" if ok is None else ("PASS" if ok else "MISS")
        out.append({"goal": name, "target": target, "value": value, "status": status, "note": note})

    ov = results.get("overhead")
    if isinstance(ov, dict) and "p50_added_ms" in ov:
        goal(
            "gateway p50 latency added",
            f"< {GOAL_P50_ADDED_MS:g} ms",
            ov["p50_added_ms"],
            ov["p50_added_ms"] < GOAL_P50_ADDED_MS,
        )
        if "allowlist_p50_added_ms" in ov:
            goal(
                "gateway p50 latency added, client with a model allowlist (njs check)",
                f"< {GOAL_P50_ADDED_MS:g} ms",
                ov["allowlist_p50_added_ms"],
                ov["allowlist_p50_added_ms"] < GOAL_P50_ADDED_MS,
            )
        cpu = ov["cpu_us_per_request"]
        goal(
            "gateway requests/s loss",
            f"< {GOAL_RPS_LOSS:.0%}",
            ov["rps_loss"],
            ov["rps_loss"] < GOAL_RPS_LOSS,
            f"nginx {cpu['nginx_workers']:.0f} us CPU per request, upstream"
            f" {cpu['standin_direct']:.0f} us direct / {cpu['standin_via_gateway']:.0f} us via"
            f" the gateway, all on the same {os.cpu_count()} cores at load"
            f" {results['machine']['loadavg_start'][0]:.1f}",
        )
    else:
        goal("gateway overhead", "p50 < 1 ms, req/s loss < 5%", None, None)
    st = results.get("streaming")
    if isinstance(st, dict) and "ttft_added_ms" in st:
        goal(
            "first token via gateway vs direct",
            f"within {GOAL_TTFT_ADDED_MS:g} ms",
            st["ttft_added_ms"],
            st["ttft_added_ms"] <= GOAL_TTFT_ADDED_MS,
        )
    else:
        goal("first token via gateway vs direct", "within 5 ms", None, None)
    rl = results.get("ratelimit")
    if isinstance(rl, dict) and "deviation" in rl:
        goal(
            "accepted vs rate*time+burst",
            f"within {GOAL_RATE_ACCURACY:.0%}",
            rl["deviation"],
            rl["deviation"] <= GOAL_RATE_ACCURACY,
        )
    else:
        goal("accepted vs rate*time+burst", "within 5%", None, None)
    cc = results.get("concurrency")
    if isinstance(cc, dict) and "streams" in cc:
        errors = cc["streams"]["errors"] + (cc.get("api_posts") or {}).get("errors", 0)
        goal(f"{CONCURRENT} simultaneous streams (+ API posts)", "0 errors", errors, errors == 0)
    else:
        goal(f"{CONCURRENT} simultaneous streams", "0 errors", None, None)
    cli = results.get("cli")
    if isinstance(cli, dict) and "tools" in cli:
        speedup = cli["tools"]["describe"]["cold_over_warm"]
        translate = cli["tools"].get("translate", {}).get("cold_over_warm")
        goal(
            "warm CLI vs cold (ai-describe)",
            f">= {GOAL_WARM_SPEEDUP:g}x",
            speedup,
            speedup >= GOAL_WARM_SPEEDUP,
            ""
            if translate is None
            else f"ai-translate {translate:.1f}x: its work is done by Ollama either way,"
            " so only the start-up differs",
        )
    else:
        goal("warm CLI vs cold", ">= 10x", None, None, str((cli or {}).get("skipped", "")))
    pv = results.get("provisioning")
    target = f"< {GOAL_NOOP_RERUN_S:g} s on one container host"
    if isinstance(pv, dict):
        goal("no-op re-run of site.yml", target, *provisioning_goal(pv))
    else:
        goal("no-op re-run of site.yml", target, None, None, "not measured in this run")
    return out


# --- printing -------------------------------------------------------------------------------------


def summary_lines(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    lines = [
        f"ai-local-core bench {results['finished_at']} on {m['cpu_model']}, {m['cores']} cores, "
        f"kernel {m['kernel']}, Python {m['python']}, {m['nginx']}, "
        f"load avg {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}",
    ]
    ov = results.get("overhead") or {}
    if "p50_added_ms" in ov:
        d, g = ov["direct"], ov["gateway"]
        cpu = ov["cpu_us_per_request"]
        lines += [
            "overhead (GET /api/version; latency: 1 connection; req/s: 16 connections):",
            f"  direct  p50 {d['p50_ms']:.3f} ms  p99 {d['p99_ms']:.3f} ms  "
            f"{d['rps_concurrent']:.0f} req/s",
            f"  gateway p50 {g['p50_ms']:.3f} ms  p99 {g['p99_ms']:.3f} ms  "
            f"{g['rps_concurrent']:.0f} req/s",
            f"  added p50 {ov['p50_added_ms']:+.3f} ms (with a model allowlist "
            f"{ov.get('allowlist_p50_added_ms', float('nan')):+.3f} ms), "
            f"p99 {ov['p99_added_ms']:+.3f} ms; "
            f"req/s gateway/direct {ov['rps_ratio']:.3f} (loss {ov['rps_loss']:.1%})",
            f"  basic auth (bcrypt cost 12) p50 {ov['basic_auth_p50_ms']:.1f} ms per request vs "
            f"API key {ov['api_key_p50_ms']:.2f} ms",
            f"  CPU per request: nginx workers {cpu['nginx_workers']:.0f} us, upstream (stand-in) "
            f"{cpu['standin_direct']:.0f} us direct, {cpu['standin_via_gateway']:.0f} us via "
            "the gateway",
        ]
    st = results.get("streaming") or {}
    if "ttft_added_ms" in st:
        lines.append(
            f"streaming ({st['streams']} streams per path, token delay {st['token_delay_ms']:g} "
            f"ms): first token direct {st['direct']['ttft_p50_ms']:.2f} ms, gateway "
            f"{st['gateway']['ttft_p50_ms']:.2f} ms ({st['ttft_added_ms']:+.2f} ms); chunks "
            f"{st['direct']['chunks']:g} vs {st['gateway']['chunks']:g}"
        )
    rl = results.get("ratelimit") or {}
    if "expected" in rl:
        lines.append(
            f"rate limit {rl['rate_per_s']}r/s burst {rl['burst']}, {rl['span_s']:.2f} s, "
            f"{rl['clients']} clients: accepted {rl['accepted']} vs rate*time+burst "
            f"{rl['expected']:.1f} (x{rl['accuracy']:.3f}), {rl['rejected']} answered 429"
        )
    cc = results.get("concurrency") or {}
    if "streams" in cc:
        s = cc["streams"]
        peak = cc["rss_peak_streams_kib"]
        lines.append(
            f"concurrency: {s['ok']}/{s['requests']} streams ok, {s['errors']} errors, wall "
            f"{s['wall_s']:.2f} s; peak RSS nginx workers {peak['nginx_workers'] / 1024:.1f} MiB"
        )
        if "api_posts" in cc:
            a, pa = cc["api_posts"], cc["rss_peak_api_kib"]
            lines.append(
                f"  API: {a['ok']}/{a['requests']} POST /services/v1/complete ok, "
                f"{a['errors']} errors, wall {a['wall_s']:.2f} s; peak RSS API workers "
                f"{pa['api_workers'] / 1024:.1f} MiB, nginx workers "
                f"{pa['nginx_workers'] / 1024:.1f} MiB"
            )
    cli = results.get("cli") or {}
    for tool, row in (cli.get("tools") or {}).items():
        lines.append(
            f"cli {tool}: cold {row['cold_ms']:.0f} ms, warm {row['warm_cli_ms']:.0f} ms "
            f"(x{row['cold_over_warm']:.1f})"
        )
    if "skipped" in cli:
        lines.append(f"cli: skipped ({cli['skipped']})")
    pv = results.get("provisioning") or {}
    for src in (pv.get("sources") or {}).values():
        if src.get("measured"):
            lines.append(
                f"provisioning ({src['label']}): full converge {_s(src.get('converge_s'))}, "
                f"no-op re-run {_s(src.get('noop_rerun_s'))} ({src.get('host')}, "
                f"{src.get('measured_at')})" + (f"; {src['note']}" if src.get("note") else "")
            )
        else:
            lines.append(f"provisioning ({src['label']}): not measured ({src.get('note')})")
    for name, err in (results.get("errors") or {}).items():
        lines.append(f"{name}: FAILED: {err}")
    lines.append("goals:")
    for g in results["goals"]:
        value = "-" if g["value"] is None else f"{g['value']:.4g}"
        note = f" ({g['note']})" if g["note"] else ""
        lines.append(f"  {g['status']:<12} {g['goal']}: {value} (target {g['target']}){note}")
    return lines


# --- main -----------------------------------------------------------------------------------------

_FAILURES = (
    gb.BenchError,
    GatewayError,
    OSError,
    RuntimeError,
    ValueError,
    KeyError,
    http.client.HTTPException,
    subprocess.SubprocessError,
)


def run(
    plan: Plan,
    sections: list[str],
    provisioning: Path,
    provisioning_sandbox: Path = PROVISIONING_SANDBOX_JSON,
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": plan.__dict__,
        "sections": sections,
        "command": " ".join([".venv/bin/python -m bench.run", *sys.argv[1:]]),
        "errors": {},
    }
    gateway_sections = [
        s for s in sections if s in ("overhead", "streaming", "ratelimit", "concurrency")
    ]
    if gateway_sections:
        with tempfile.TemporaryDirectory(prefix="ai-local-core-bench-") as tmp:
            work = Path(tmp)
            work.chmod(0o755)
            try:
                with running_stack(work, with_api="concurrency" in sections) as stack:
                    measures: dict[str, Callable[[], dict[str, Any]]] = {
                        "overhead": lambda: section_overhead(stack, plan),
                        "streaming": lambda: section_streaming(stack, plan),
                        "ratelimit": lambda: section_ratelimit(stack, plan),
                        "concurrency": lambda: section_concurrency(stack, plan),
                    }
                    for name in gateway_sections:
                        print(f"... {name}", file=sys.stderr, flush=True)
                        t0 = time.monotonic()
                        try:
                            results[name] = measures[name]()
                        except _FAILURES as exc:
                            results["errors"][name] = f"{type(exc).__name__}: {exc}"
                        results.setdefault("section_seconds", {})[name] = time.monotonic() - t0
            except _FAILURES as exc:
                results["errors"]["stack"] = f"{type(exc).__name__}: {exc}"
    if "cli" in sections:
        print("... cli", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            results["cli"] = section_cli(plan)
        except (*_FAILURES, SystemExit) as exc:
            results["errors"]["cli"] = f"{type(exc).__name__}: {exc}"
        results.setdefault("section_seconds", {})["cli"] = time.monotonic() - t0
    if "provisioning" in sections:
        try:
            results["provisioning"] = section_provisioning(provisioning, provisioning_sandbox)
        except (OSError, ValueError) as exc:
            results["errors"]["provisioning"] = f"{type(exc).__name__}: {exc}"
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["goals"] = goals(results)
    return results


def write(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"bench-{stamp}.json"
    text = json.dumps(results, indent=1, sort_keys=True) + "\n"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds, fewer runs")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where the JSON goes")
    parser.add_argument(
        "--provisioning",
        type=Path,
        default=PROVISIONING_JSON,
        help="timings JSON of the qemu VM's site.yml runs, written by `make vm-test` "
        "(converge_s, noop_rerun_s, host, measured_at, source); shown for information",
    )
    parser.add_argument(
        "--provisioning-sandbox",
        type=Path,
        default=PROVISIONING_SANDBOX_JSON,
        help="timings JSON of the sandbox container's site.yml runs, written by `make demo`; "
        "the no-op re-run goal is judged on it",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    results = run(
        QUICK if args.quick else FULL,
        sections,
        args.provisioning.resolve(),
        args.provisioning_sandbox.resolve(),
    )
    path = write(results, args.out_dir)
    print("\n".join(summary_lines(results)))
    print(f"results: {path} (and {args.out_dir / 'latest.json'})")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
