"""How much does ``ai-complete`` cost over a raw HTTP call to Ollama?

Starts the Ollama stand-in on loopback (zero token delay), then times, in one run
and interleaved so both see the same machine state:

* ``raw``: one ``POST /api/chat`` (``stream: false``) over a fresh connection from
  this process (``http.client``);
* ``cli``: the same request through ``ai-complete`` in a new process (interpreter
  start + imports + config + request + JSON output);
* ``python``: ``python -c pass``, the bare interpreter start, for reference.

Prints medians in ms, the CLI's overhead (cli - raw) and the ratio cli/raw.

    .venv/bin/python bench/cli_overhead.py [--runs 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures.ollama import OllamaStandIn, running_standin  # noqa: E402

MAX_RUNS = 50
PAYLOAD = {"user": "Hello from the benchmark"}


def time_raw(standin: OllamaStandIn) -> float:
    body = json.dumps(
        {
            "model": "llama3.1:8b",
            "messages": [{"role": "user", "content": PAYLOAD["user"]}],
            "stream": False,
        }
    )
    started = time.perf_counter()
    conn = http.client.HTTPConnection(standin.host, standin.port, timeout=30)
    try:
        conn.request("POST", "/api/chat", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200 or not json.loads(data).get("done"):
        raise SystemExit(f"raw request failed: {response.status} {data[:200]!r}")
    return elapsed


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("ai-complete")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ai_local_core.cli.complete"]


def time_cli(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [*command, json.dumps(PAYLOAD)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0 or not json.loads(proc.stdout).get("success"):
        raise SystemExit(f"CLI failed ({proc.returncode}): {proc.stdout} {proc.stderr}")
    return elapsed


def time_python(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True, timeout=60)
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help=f"runs per variant (max {MAX_RUNS})")
    args = parser.parse_args(argv)
    runs = max(1, min(args.runs, MAX_RUNS))
    command = cli_command()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_standin(Path(tmp), models=["llama3.1:8b"]) as standin,
    ):
        env = standin.client_env()
        time_raw(standin)  # warm the stand-in (model "load") and the page cache
        time_cli(command, env)
        raw, cli, python = [], [], []
        for _ in range(runs):
            raw.append(time_raw(standin))
            cli.append(time_cli(command, env))
            python.append(time_python(env))
    raw_ms, cli_ms, py_ms = (statistics.median(v) for v in (raw, cli, python))
    print(f"ai-complete overhead over a raw HTTP call (Ollama stand-in, {runs} runs, medians)")
    print(f"  raw POST /api/chat          {raw_ms:8.1f} ms")
    print(f"  ai-complete (new process)   {cli_ms:8.1f} ms")
    print(f"  python -c pass              {py_ms:8.1f} ms")
    print(f"  overhead (cli - raw)        {cli_ms - raw_ms:8.1f} ms")
    print(
        f"    of which interpreter start {py_ms:7.1f} ms, imports + config + JSON "
        f"{cli_ms - raw_ms - py_ms:.1f} ms"
    )
    print(f"  ratio cli / raw             {cli_ms / raw_ms:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
