"""Cold (fresh process, backend in-process) vs warm (via the API server) latency.

For ``describe`` (the tiny random-weights BLIP built locally: the cost of a cold
run is importing torch/transformers and loading the model) and ``translate``
(the ``ollama`` backend against the Ollama stand-in), in one run:

* cold: ``python -m ai_local_core.cli.<tool>`` with no API server configured;
* warm CLI: the same fresh process with ``api.url`` set, so it POSTs to the server;
* warm HTTP: the bare POST to the server (what a long-lived caller pays).

Prints the medians in ms and the cold/warm ratios. Counts are bounded
(``--cold``, ``--warm``); nothing leaves 127.0.0.1 and nothing is downloaded.

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
    running_api_server,
    write_config,
)
from tests.fixtures.ollama import running_standin  # noqa: E402
from tests.image_samples import png_bytes  # noqa: E402
from tests.vision.tiny_blip import build_tiny_blip  # noqa: E402


def run_cli(module: str, args: list[str], config_path: Path) -> float:
    """Milliseconds for one fresh CLI process; fails loudly unless it succeeded."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=clean_env({"AI_LOCAL_CORE_CONFIG": str(config_path)}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    elapsed = (time.perf_counter() - started) * 1000
    out = json.loads(proc.stdout)
    if proc.returncode != 0 or not out.get("success"):
        raise SystemExit(f"{module} failed: {proc.stdout} {proc.stderr[-2000:]}")
    return elapsed


def post(server: ApiServer, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    status, answer = server.post(path, body, timeout=300)
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200 or not answer.get("success"):
        raise SystemExit(f"POST {path} failed: {status} {answer}")
    return elapsed


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold", type=int, default=3, help="cold runs per tool (1-10)")
    parser.add_argument("--warm", type=int, default=5, help="warm runs per tool (1-50)")
    args = parser.parse_args(argv)
    cold_n = max(1, min(args.cold, 10))
    warm_n = max(1, min(args.warm, 50))

    with tempfile.TemporaryDirectory(prefix="ai-local-core-bench-") as tmp:
        work = Path(tmp)
        model = build_tiny_blip(work / "tiny-blip")
        image = work / "photo.png"
        image.write_bytes(png_bytes(64, 48))
        with running_standin(work / "standin") as standin:
            config: dict[str, Any] = {
                "log_level": "WARNING",
                "ollama": {"url": standin.url, "retries": {"max_attempts": 1}},
                "image": {"backend": "blip", "blip": {"model": str(model), "device": "cpu"}},
                "translation": {"backend": "ollama"},
                "models": {"defaults": {"translation": {"model": "llama3.1:8b"}}},
            }
            with running_api_server(work / "api", config) as server:
                cold_cfg = write_config(work / "cold.yaml", {**config, "api": {"url": None}})
                warm_cfg = write_config(work / "warm.yaml", {**config, "api": {"url": server.url}})
                describe_args = [str(image), "20"]
                translate_args = ["Hello world", "pl"]
                describe_body = {
                    "image_base64": base64.b64encode(image.read_bytes()).decode(),
                    "max_length": 20,
                }
                translate_body = {"text": "Hello world", "target": "pl"}
                # One untimed call each warms the server's paths and the OS caches.
                post(server, "/v1/describe", describe_body)
                post(server, "/v1/translate", translate_body)

                rows = []
                for name, module, cli_args, path, body in (
                    ("describe", "ai_local_core.cli.describe", describe_args, "/v1/describe",
                     describe_body),
                    ("translate", "ai_local_core.cli.translate", translate_args, "/v1/translate",
                     translate_body),
                ):  # fmt: skip
                    cold = [run_cli(module, cli_args, cold_cfg) for _ in range(cold_n)]
                    warm_cli = [run_cli(module, cli_args, warm_cfg) for _ in range(warm_n)]
                    warm_http = [post(server, path, body) for _ in range(warm_n)]
                    rows.append((name, median(cold), median(warm_cli), median(warm_http)))

    print(f"medians over {cold_n} cold and {warm_n} warm runs (ms)")
    header = (
        f"{'tool':<10} {'cold CLI':>10} {'warm CLI':>10} {'warm HTTP':>10} "
        f"{'cold/warm CLI':>14} {'cold/warm HTTP':>15}"
    )
    print(header)
    for name, cold_ms, warm_cli_ms, warm_http_ms in rows:
        print(
            f"{name:<10} {cold_ms:>10.1f} {warm_cli_ms:>10.1f} {warm_http_ms:>10.1f} "
            f"{cold_ms / warm_cli_ms:>13.1f}x {cold_ms / warm_http_ms:>14.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
