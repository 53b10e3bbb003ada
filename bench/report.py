"""Regenerate docs/benchmarks.md and its plots (docs/img/bench-*.png) from the latest bench JSON.

    .venv/bin/python -m bench.report [--input .cache/bench/latest.json]

Reads what ``python -m bench.run`` wrote; measures nothing itself. The plots (matplotlib, Agg):
latency percentiles direct vs gateway, streaming timelines (arrival of every chunk), accepted
requests over time against the rate limit's allowance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

REPO_ROOT = Path(__file__).resolve().parents[1]
LATEST = REPO_ROOT / ".cache" / "bench" / "latest.json"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
IMG = REPO_ROOT / "docs" / "img"
COLORS = {"direct": "#1f77b4", "gateway": "#d62728"}
DPI = 80


class ReportError(Exception):
    """The JSON is missing or not a bench result."""


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def plot_latency(overhead: dict[str, Any], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), width_ratios=[2, 1])
    for name in ("direct", "gateway"):
        for i, rnd in enumerate(overhead["latency_rounds"][name]):
            left.plot(
                rnd["percentiles"],
                rnd["latency_ms"],
                color=COLORS[name],
                alpha=0.8,
                lw=1.2,
                label=name if i == 0 else None,
            )
    left.set_yscale("log")
    left.set_xlabel("percentile")
    left.set_ylabel("latency (ms, log)")
    left.set_title("GET /api/version, 1 connection (each round a line)", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    names = ["direct", "gateway"]
    values = [overhead[n]["rps_concurrent"] for n in names]
    right.bar(names, values, color=[COLORS[n] for n in names])
    for x, v in enumerate(values):
        right.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=9)
    right.set_title("requests/s, 16 connections", fontsize=10)
    right.grid(True, axis="y", alpha=0.3)
    _save(fig, path)


def plot_streaming(streaming: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name in ("direct", "gateway"):
        for i, timeline in enumerate(streaming[name]["timelines_ms"]):
            ax.step(
                timeline,
                range(1, len(timeline) + 1),
                where="post",
                color=COLORS[name],
                alpha=0.6,
                lw=1,
                label=name if i == 0 else None,
            )
    ax.set_xlabel("ms since the request was sent")
    ax.set_ylabel("NDJSON chunks received")
    ax.set_title(
        f"streamed /api/generate, token delay {streaming['token_delay_ms']:g} ms "
        "(each stream a line)",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_ratelimit(rl: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    times = rl["accepted_at_s"]
    ax.step(
        times,
        range(1, len(times) + 1),
        where="post",
        color=COLORS["gateway"],
        label="accepted (200)",
    )
    span = rl["span_s"]
    ax.plot(
        [0, span],
        [rl["burst"], rl["burst"] + rl["rate_per_s"] * span],
        "k--",
        lw=1,
        label="rate*time + burst",
    )
    ax.set_xlabel("s since the first request")
    ax.set_ylabel("requests accepted")
    ax.set_title(
        f"{rl['rate_per_s']} r/s, burst {rl['burst']}: {rl['accepted']} accepted, "
        f"{rl['rejected']} answered 429",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _goal_value(goal: dict[str, Any]) -> str:
    value = goal["value"]
    if value is None:
        return "not measured"
    name = goal["goal"]
    if "loss" in name or "rate*time" in name:
        return f"{value:.1%}"
    if "CLI" in name:
        return f"{value:.1f}x"
    if "errors" in goal["target"]:
        return f"{value} errors"
    if "site.yml" in name:
        return f"{value:.1f} s"
    return f"{value:+.3f} ms"


def _repo_path(path: object) -> str:
    """A path inside the repository relative to its root, any other as it is."""
    try:
        return str(Path(str(path)).relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def provisioning_sources(pv: dict[str, Any]) -> list[dict[str, Any]]:
    """The timings sources of the provisioning section, container sandbox first.

    Results written before the section had two sources hold one flat entry: the VM's file.
    """
    sources = pv.get("sources")
    if isinstance(sources, dict):
        return [sources[k] for k in ("sandbox", "vm") if isinstance(sources.get(k), dict)]
    if pv.get("measured"):
        return [{"kind": "vm", "label": "qemu VM"} | pv]
    return []


def provisioning_lines(pv: dict[str, Any]) -> list[str]:
    """Markdown of the provisioning section: one row per timings source."""
    out = [
        "## Provisioning (site.yml)",
        "",
        "A converge needs a systemd host, which this loopback bench does not start: the figures"
        " come from the timings files the host runs write. `make demo` (the podman systemd"
        " container of the sandbox, reached over SSH with pipelining like a server) writes"
        " `.cache/bench/provisioning-sandbox.json`, with the no-op run's task count: the goal"
        ' "no-op re-run < 20 s on one container host" is judged on it; its full converge is'
        " recorded only when the run created the container. `make vm-test` (a Debian 12 qemu"
        " VM over SSH) writes `.cache/bench/provisioning.json`: shown for information only, a"
        " VM is not the container host the goal names, and without KVM qemu emulates the CPU"
        " (TCG, about 10x slower; the host column says which).",
        "",
        "What a no-op run costs: it still evaluates every task of the stack (the task count"
        " column: task banners, skipped ones included), and each task that runs costs a round"
        " trip to the host and a module start there (over SSH with pipelining and"
        " ControlPersist, as on a server). The way to the goal is fewer, coarser tasks, not a"
        " faster machine.",
        "",
    ]
    sources = provisioning_sources(pv)
    if not sources:
        out += ["**Not measured in this run.** Run `make demo` first.", ""]
        return out
    out += [
        "| source | host | measured at | full converge | no-op re-run | no-op tasks | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for src in sources:
        label = src.get("label") or src.get("kind")
        if not src.get("measured"):
            out.append(f"| {label} | - | - | - | - | - | not measured: {src.get('note') or ''} |")
            continue
        origin = src.get("source") or "no source given"
        note = "; ".join(str(n) for n in (origin, src.get("note")) if n)
        out.append(
            f"| {label} | {src.get('host') or '-'} | {src.get('measured_at') or '-'} |"
            f" {_fmt(src.get('converge_s'), ' s', 1)} | {_fmt(src.get('noop_rerun_s'), ' s', 1)}"
            f" | {src.get('noop_tasks') if src.get('noop_tasks') is not None else '-'}"
            f" | {note} (`{_repo_path(src.get('source_file'))}`) |"
        )
    out.append("")
    return out


def warm_cli_ms(row: dict[str, Any]) -> float:
    """The warm CLI's median (``warm_lane_ms`` in results from before the fast lane went)."""
    return float(row["warm_cli_ms"] if "warm_cli_ms" in row else row["warm_lane_ms"])


def render(results: dict[str, Any], images: dict[str, str]) -> str:
    m = results["machine"]
    cmd_run = results.get("command", ".venv/bin/python -m bench.run")
    out: list[str] = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/report.py from .cache/bench/latest.json: do not edit by hand;"
        " `make bench-report` regenerates it. -->",
        "",
        "What the node's pieces cost and whether their limits hold, measured **in one run on one"
        " machine**, on loopback: Ollama is the stand-in from `tests/fakes/ollama_standin` (a test"
        " fixture that answers Ollama's API instantly or with a set token delay; no model runs),"
        " so the figures are the cost of the gateway, the services and the CLIs themselves, not"
        " of inference. Direct and gateway paths are measured interleaved so both see the same"
        " machine state.",
        "",
        f"Run: {results['started_at']} to {results['finished_at']}"
        f" (commit `{m.get('git_commit') or '?'}`).",
        "",
        "## Goals (issue 12)",
        "",
        "| goal | target | measured | result |",
        "|---|---|---|---|",
    ]
    for g in results["goals"]:
        note = f" ({g['note']})" if g["note"] else ""
        out.append(f"| {g['goal']} | {g['target']} | {_goal_value(g)} | **{g['status']}**{note} |")
    out += [
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cores']} cores ({m.get('cores_usable')} usable),"
        f" {m['memory_gib']} GiB memory",
        f"- kernel {m['kernel']} ({m['os']}), Python {m['python']}, {m['nginx']},"
        f" load generator: {m['load_generator']}",
        f"- load average (1 min) at start {m['loadavg_start'][0]:.2f},"
        f" at the end {m.get('loadavg_end', [0.0])[0]:.2f}: the machine is shared; on a busy"
        " machine tails (p99) and requests/s move more than medians.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make setup            # host packages (nginx, wrk) and the pinned .venv",
        "make bench            # " + cmd_run,
        "make bench-report     # .venv/bin/python -m bench.report (this page and the plots)",
        "```",
        "",
        "Everything runs on 127.0.0.1: the Ollama stand-in, the API server under gunicorn and an"
        " nginx of the bench's own rendered from `roles/gateway/templates/gateway.conf.j2` by a"
        " small ansible-playbook run (1 worker; the system's nginx service is not touched)."
        " Results: `.cache/bench/bench-<time>.json` and `.cache/bench/latest.json`.",
        "",
    ]
    errors = results.get("errors") or {}
    if errors:
        out += ["## Sections that failed in this run", ""]
        out += [f"- `{name}`: {err}" for name, err in errors.items()]
        out.append("")

    ov = results.get("overhead")
    if ov:
        d, g = ov["direct"], ov["gateway"]
        out += [
            "## Gateway overhead",
            "",
            "`GET /api/version` (a metadata route, API key on the gateway). Latency: one"
            " keep-alive connection, sequential; requests/s: 16 connections, 2 load-generator"
            f" threads. {len(ov['latency_rounds']['direct'])} interleaved rounds per path of"
            f" {results['plan']['seconds']:g} s each; medians over rounds.",
            "",
            "| path | p50 | p99 | req/s (1 conn) | req/s (16 conn) | requests | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in (("direct", d), ("gateway", g)):
            out.append(
                f"| {name} | {row['p50_ms']:.3f} ms | {row['p99_ms']:.3f} ms |"
                f" {row['rps_sequential']:.0f} | {row['rps_concurrent']:.0f} |"
                f" {row['requests']} | {row['errors']} |"
            )
        out += [
            "",
            f"Added by the gateway: p50 {ov['p50_added_ms']:+.3f} ms, p99"
            f" {ov['p99_added_ms']:+.3f} ms; requests/s gateway/direct {ov['rps_ratio']:.3f}"
            f" (16 connections), {ov['rps_sequential_ratio']:.3f} (1 connection).",
            "",
            "CPU time per request (from /proc, over the 16-connection rounds): nginx workers"
            f" {ov['cpu_us_per_request']['nginx_workers']:.0f} us; the upstream"
            f" {ov['cpu_us_per_request']['standin_direct']:.0f} us when called directly,"
            f" {ov['cpu_us_per_request']['standin_via_gateway']:.0f} us behind the gateway.",
            "",
            "Basic auth instead of an API key (one bcrypt verification, cost 12, per request in"
            f" the nginx worker): p50 {ov['basic_auth_p50_ms']:.1f} ms per request against"
            f" {ov['api_key_p50_ms']:.2f} ms with the key: fine for people, use keys for programs.",
            "",
            "The direct upstream is the stand-in (Python's `http.server`); nginx, the stand-in"
            " and the load generator share the same cores, so under full load every cycle nginx"
            " spends is taken from the upstream: the requests/s ratio on a 2-core machine"
            " measures CPU sharing as much as the gateway. Against real Ollama, whose requests"
            " take seconds of GPU time, the gateway's share is negligible.",
            "",
            f"![latency percentiles and requests/s]({images['latency']})",
            "",
        ]
    st = results.get("streaming")
    if st:
        out += [
            "## Streaming",
            "",
            f"Streamed `POST /api/generate`, {st['streams']} streams per path, interleaved; the"
            f" stand-in waits {st['token_delay_ms']:g} ms before each token (a"
            f" {1000 / st['token_delay_ms']:.0f} tokens/s model).",
            "",
            "| path | first token p50 | first token max | chunks | whole stream p50 |",
            "|---|---|---|---|---|",
        ]
        for name in ("direct", "gateway"):
            row = st[name]
            out.append(
                f"| {name} | {row['ttft_p50_ms']:.2f} ms | {row['ttft_max_ms']:.2f} ms |"
                f" {row['chunks']:g} | {row['total_p50_ms']:.1f} ms |"
            )
        out += [
            "",
            f"First token via the gateway: {st['ttft_added_ms']:+.2f} ms; every stream had the"
            f" same chunk count on both paths: {'yes' if st['chunks_equal'] else 'no'}"
            " (nginx passes chunks through as they come: `proxy_buffering off`).",
            "",
            f"![streaming timelines]({images['streaming']})",
            "",
        ]
    rl = results.get("ratelimit")
    if rl:
        out += [
            "## Rate-limit accuracy",
            "",
            f"{rl['clients']} clients on one API key hammer the inference class"
            f" (`gateway_inference_rate: {rl['rate_per_s']}r/s`,"
            f" `gateway_inference_burst: {rl['burst']}`) for {rl['span_s']:.2f} s:"
            f" **{rl['accepted']}** accepted against rate*time+burst ="
            f" {rl['expected']:.1f} (deviation {rl['deviation']:.1%}); {rl['rejected']} answered"
            " 429 with the JSON error. nginx admits the first request and the burst at once,"
            " then one request per 1/rate s.",
            "",
            f"![accepted requests over time]({images['ratelimit']})",
            "",
        ]
    cc = results.get("concurrency")
    if cc:
        s = cc["streams"]
        ds = cc.get("direct_streams") or {}
        idle = cc["rss_idle_kib"]
        peak = cc["rss_peak_streams_kib"]
        out += [
            "## Concurrency and memory",
            "",
            f"{cc['concurrent']} streams opened at once (one API key each, token delay"
            f" {cc.get('token_delay_ms', 0):g} ms, {s['chunks_max']} chunks each):",
            "",
            "| path | ok | errors | first token p50 | stream p50 | slowest | wall |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in (("direct", ds), ("gateway", s)):
            if row:
                out.append(
                    f"| {name} | {row['ok']}/{row['requests']} | {row['errors']} |"
                    f" {_fmt(row.get('ttft_p50_ms'), ' ms', 1)} |"
                    f" {_fmt(row['duration_p50_s'], ' s', 2)} |"
                    f" {_fmt(row['duration_max_s'], ' s', 2)} | {row['wall_s']:.2f} s |"
                )
        out.append("")
        posts = cc.get("api_posts")
        if posts:
            out += [
                f"Then {posts['requests']} `POST /services/v1/complete` at once through the"
                " gateway to the API under gunicorn (1 worker, 8 threads, `api.max_concurrent`"
                f" 4: the rest queue): {posts['ok']} ok, {posts['errors']} errors, wall"
                f" {posts['wall_s']:.2f} s, slowest {_fmt(posts['duration_max_s'], ' s', 2)}.",
                "",
            ]
        out += [
            "| process | idle RSS | peak RSS, 200 streams | peak RSS, 200 API posts |",
            "|---|---|---|---|",
        ]
        api_peak = cc.get("rss_peak_api_kib") or {}
        for name in idle:
            out.append(
                f"| {name.replace('_', ' ')} ({idle[name]['processes']}) |"
                f" {idle[name]['rss_kib'] / 1024:.1f} MiB | {peak.get(name, 0) / 1024:.1f} MiB |"
                f" {_fmt(api_peak[name] / 1024 if name in api_peak else None, ' MiB', 1)} |"
            )
        out.append("")
        if s.get("error_samples"):
            out += ["Errors seen: " + "; ".join(s["error_samples"]), ""]
    cli = results.get("cli")
    if cli:
        out += ["## Waldus CLIs: cold vs warm", ""]
        if "tools" in cli:
            out += [
                f"Medians over {cli['cold_runs']} cold and {cli['warm_runs']} warm runs per tool"
                " (bench/warm_vs_cold.py). Cold: a fresh CLI process that does the work"
                " in-process (describe: the tiny random-weights BLIP built locally, so torch and"
                " transformers load each time). Warm: the same fresh process handing the work to"
                " the API server (settings loaded, request validated, one POST; no backend"
                f" imported). Interpreter start alone: {cli['python_start_ms']:.0f} ms.",
                "",
                "| tool | cold | warm | bare HTTP | cold/warm |",
                "|---|---|---|---|---|",
            ]
            for tool, row in cli["tools"].items():
                out.append(
                    f"| {tool} | {row['cold_ms']:.0f} ms | {warm_cli_ms(row):.0f} ms |"
                    f" {row['warm_http_ms']:.1f} ms | {row['cold_over_warm']:.1f}x |"
                )
            out.append("")
        else:
            out += [f"Skipped: {cli.get('skipped')}.", ""]
    pv = results.get("provisioning")
    if pv is not None:
        out += provisioning_lines(pv)
    out += [
        "## Fault tests",
        "",
        "`tests/fault/` (pytest marker `fault`, part of `make unit`) checks on loopback: Ollama"
        " killed mid-stream (the CLI prints `connection_failed`, exit 14, no traceback; the"
        " gateway answers JSON 502 meanwhile; the first request after the restart works), the"
        " services API stopped (gateway JSON 502, the CLIs run in-process), the rate limit"
        " filled (429 JSON with Retry-After, served again after it) and a broken gateway file"
        " (`nginx -t` refuses it; reloaded anyway, the old configuration keeps serving).",
        "",
        "`make vm-test` (part of `make test`, see [vm-test.md](vm-test.md)) stages the faults that"
        " need a real server under systemd: the first site.yml run is cut off (ansible-playbook"
        " and its SSH connections killed while pip fills the services' venv) and a second run"
        " must converge; Ollama's main process is killed in the middle of a stream (the stream"
        " ends without `done`, systemd restarts the unit under a new PID within seconds, the next"
        " completion through the gateway works); the services API is stopped (gateway JSON"
        " 502/503, `ai-translate` in-process); `models.yml` on a nearly full disk stops before"
        " pulling with the free-space message and 0 changed.",
        "",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--input", type=Path, default=LATEST, help="a bench JSON")
    parser.add_argument("--output", type=Path, default=DOC, help="the Markdown page")
    parser.add_argument("--images", type=Path, default=IMG, help="where the PNGs go")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.input.read_text())
        if not isinstance(results, dict) or "goals" not in results:
            raise ReportError(f"{args.input} is not a bench result")
    except (OSError, ValueError, ReportError) as exc:
        print(f"bench report: {exc} (run `make bench` first)", file=sys.stderr)
        return 1
    args.images.mkdir(parents=True, exist_ok=True)
    rel = Path("img")
    try:
        rel = args.images.resolve().relative_to(args.output.resolve().parent)
    except ValueError:
        rel = args.images.resolve()
    images = {
        "latency": f"{rel}/bench-latency.png",
        "streaming": f"{rel}/bench-streaming.png",
        "ratelimit": f"{rel}/bench-ratelimit.png",
    }
    if results.get("overhead"):
        plot_latency(results["overhead"], args.images / "bench-latency.png")
    if results.get("streaming"):
        plot_streaming(results["streaming"], args.images / "bench-streaming.png")
    if results.get("ratelimit"):
        plot_ratelimit(results["ratelimit"], args.images / "bench-ratelimit.png")
    args.output.write_text(render(results, images))
    print(f"wrote {args.output} and the plots under {args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
