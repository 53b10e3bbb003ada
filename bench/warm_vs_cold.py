"""Cold (fresh process, backend in-process) vs warm (via the API server) latency.

For ``describe`` (the tiny random-weights BLIP built locally: the cost of a cold
run is importing torch/transformers and loading the model) and ``translate``
(the ``ollama`` backend against the Ollama stand-in), in one run, interleaved so
every figure sees the same machine state:

* cold CLI: ``python -m ai_local_core.cli.<tool>`` with no API server configured;
* warm CLI: the same fresh process with ``api.url`` set: the one path every call
  takes (``load_settings()``, the request validated, then the POST through
  :func:`ai_local_core.api.remote.call_api`; no backend imported);
* warm HTTP: the bare POST to the server from this process (what a long-lived
  caller pays; the floor of any warm CLI).

The warm CLIs get a configuration that cannot work in-process (a BLIP model
that does not exist, a Google endpoint that refuses connections), so a warm
success can only have come from the server. Prints medians in ms and the
ratios; counts are bounded (``--cold``, ``--warm``); nothing leaves 127.0.0.1
and nothing is downloaded.

``--torch-threads`` (default 1) sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for
the cold CLIs and the server alike: on a small, shared machine, torch's default
of one thread per core makes the tiny model's 20-token generation spin for
hundreds of ms on contended cores, in both paths; 0 keeps torch's default.

Run from the repository root: ``.venv/bin/python bench/warm_vs_cold.py``.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.api_harness import (  # noqa: E402 - after the sys.path line above
    ApiServer,
    clean_env,
    free_port,
    running_api_server,
    write_config,
)
from tests.fixtures.ollama import running_standin  # noqa: E402
from tests.image_samples import png_bytes  # noqa: E402
from tests.vision.tiny_blip import build_tiny_blip  # noqa: E402

MAX_COLD = 10
MAX_WARM = 50


def run_cli(
    module: str, args: list[str], config_path: Path, extra_env: dict[str, str]
) -> tuple[float, dict[str, Any]]:
    """Milliseconds for one fresh CLI process and its output; fails loudly unless it succeeded."""
    env = clean_env({"AI_LOCAL_CORE_CONFIG": str(config_path), **extra_env})
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    elapsed = (time.perf_counter() - started) * 1000
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        out = {}
    if proc.returncode != 0 or not out.get("success"):
        raise SystemExit(f"{module} failed: {proc.stdout} {proc.stderr[-2000:]}")
    return elapsed, out


def python_start(extra_env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=clean_env(extra_env), check=True)
    return (time.perf_counter() - started) * 1000


def post(server: ApiServer, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    status, answer = server.post(path, body, timeout=300)
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200 or not answer.get("success"):
        raise SystemExit(f"POST {path} failed: {status} {answer}")
    return elapsed


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def measure(cold_n: int, warm_n: int, torch_threads: int = 1) -> dict[str, Any]:
    """Run the comparison; medians in ms per tool (the suite's JSON, ``bench/run.py``)."""
    cold_n = max(1, min(cold_n, MAX_COLD))
    warm_n = max(1, min(warm_n, MAX_WARM))
    threads: dict[str, str] = {}
    if torch_threads > 0:
        threads = {"OMP_NUM_THREADS": str(torch_threads)}
        threads["MKL_NUM_THREADS"] = str(torch_threads)

    with tempfile.TemporaryDirectory(prefix="ai-local-core-bench-") as tmp:
        work = Path(tmp)
        model = build_tiny_blip(work / "tiny-blip")
        image = work / "photo.png"
        image.write_bytes(png_bytes(64, 48))
        with running_standin(work / "standin") as standin:
            config: dict[str, Any] = {
                "log_level": "WARNING",
                "ollama": {"url": standin.url, "retries": {"max_attempts": 1}},
                "image": {
                    "backend": "blip",
                    "blip": {"model": str(model), "device": "cpu"},
                    "limits": {"local_dirs": [str(work)]},  # the CLIs read photo.png there
                },
                "translation": {"backend": "ollama"},
                "models": {"defaults": {"translation": {"model": "llama3.1:8b"}}},
            }
            with running_api_server(work / "api", config, env=threads) as server:
                cold_cfg = write_config(work / "cold.yaml", {**config, "api": {"url": None}})
                # Only the server can answer this one: no BLIP model, no Google.
                refused = f"http://127.0.0.1:{free_port()}/m"
                broken = {
                    **config,
                    "image": {
                        "backend": "blip",
                        "blip": {"model": "/nonexistent/blip"},
                        "limits": {"local_dirs": [str(work)]},
                    },
                    "translation": {"backend": "google", "google": {"base_url": refused}},
                    "api": {"url": server.url},
                }
                warm_cfg = write_config(work / "warm.yaml", broken)
                describe_body = {
                    "image_base64": base64.b64encode(image.read_bytes()).decode(),
                    "max_length": 20,
                }
                tools = (
                    ("describe", "ai_local_core.cli.describe", [str(image), "20"], "/v1/describe",
                     describe_body),
                    ("translate", "ai_local_core.cli.translate", ["Hello world", "pl"],
                     "/v1/translate", {"text": "Hello world", "target": "pl"}),
                )  # fmt: skip
                rows: dict[str, dict[str, Any]] = {}
                starts: list[float] = []
                for name, module, cli_args, path, body in tools:
                    # Untimed: warms the server's route, the OS caches and the .pyc files.
                    post(server, path, body)
                    run_cli(module, cli_args, warm_cfg, threads)
                    cold: list[float] = []
                    warm: list[float] = []
                    bare: list[float] = []
                    keys: set[frozenset[str]] = set()
                    for i in range(max(cold_n, warm_n)):
                        if i < cold_n:
                            ms, out = run_cli(module, cli_args, cold_cfg, threads)
                            cold.append(ms)
                            keys.add(frozenset(out))
                        if i < warm_n:
                            ms, out = run_cli(module, cli_args, warm_cfg, threads)
                            warm.append(ms)
                            keys.add(frozenset(out))
                            bare.append(post(server, path, body))
                            starts.append(python_start(threads))
                    if len(keys) != 1:
                        raise SystemExit(f"{name}: the paths gave different keys: {keys}")
                    rows[name] = {
                        "cold_ms": median(cold),
                        "warm_cli_ms": median(warm),
                        "warm_http_ms": median(bare),
                        "cold_over_warm": median(cold) / median(warm),
                        "cold_samples_ms": cold,
                        "warm_cli_samples_ms": warm,
                    }
    return {
        "cold_runs": cold_n,
        "warm_runs": warm_n,
        "torch_threads": torch_threads,
        "python_start_ms": median(starts),
        "tools": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cold", type=int, default=3, help=f"cold runs per tool (1-{MAX_COLD})")
    parser.add_argument("--warm", type=int, default=7, help=f"warm runs per tool (1-{MAX_WARM})")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="OMP/MKL threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
    result = measure(args.cold, args.warm, args.torch_threads)
    threads_note = (
        f"{args.torch_threads} (OMP_NUM_THREADS)" if args.torch_threads > 0 else "torch's default"
    )
    print(
        f"medians over {result['cold_runs']} cold and {result['warm_runs']} warm runs per tool, "
        f"interleaved (ms); torch threads: {threads_note} in the cold CLIs and the server; "
        f"interpreter start (python -c pass): {result['python_start_ms']:.1f} ms"
    )
    print(
        f"{'tool':<10} {'cold CLI':>9} {'warm CLI':>9} {'warm HTTP':>10} "
        f"{'cold/warm CLI':>14} {'cold/warm HTTP':>15}"
    )
    for name, row in result["tools"].items():
        cold_ms, warm_ms, bare_ms = row["cold_ms"], row["warm_cli_ms"], row["warm_http_ms"]
        print(
            f"{name:<10} {cold_ms:>9.1f} {warm_ms:>9.1f} {bare_ms:>10.1f} "
            f"{cold_ms / warm_ms:>13.1f}x {cold_ms / bare_ms:>14.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
