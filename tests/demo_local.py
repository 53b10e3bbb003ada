"""`make demo-local`: the Python services working end to end on this machine, in about a minute.

It starts the Ollama stand-in (a TEST FIXTURE imitating Ollama's API; no real model runs) and the
API server under gunicorn, both on free loopback ports, then calls the Waldus-compatible CLIs
exactly as the PHP side does, the API over HTTP, and shows a refused bad input. Everything stops
at the end. Nothing leaves this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.api_harness import start_api_server
from tests.fixtures.ollama import start_standin

REPO = Path(__file__).resolve().parents[1]
SHIMS = REPO / "src"


def show(title: str, argv: list[str], env: dict[str, str]) -> int:
    print(f"\n$ {' '.join(argv[1:]) if argv[0] == sys.executable else ' '.join(argv)}")
    print(f"  ({title})")
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    print(f"  exit {res.returncode}: {res.stdout.strip()}")
    return res.returncode


def main() -> int:
    print("ai-local-core local demo")
    print("NOTE: Ollama is replaced by the Ollama stand-in from tests/fakes/ (a test fixture).")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="ai-local-core-demo-") as tmp:
        work = Path(tmp)
        standin = start_standin(work / "ollama")
        api = None
        try:
            print(f"Ollama stand-in: {standin.url}")
            env = standin.client_env(AI_LOCAL_CORE_TRANSLATION__BACKEND="ollama")
            payload = json.dumps({"user": "Hello from Waldus", "model": "llama3.1:8b"})
            failures += (
                show(
                    "completion, as the PHP side calls it",
                    [sys.executable, str(SHIMS / "ollama" / "complete.py"), payload],
                    env,
                )
                != 0
            )
            failures += (
                show(
                    "translation by the local LLM, in-process",
                    [
                        sys.executable,
                        str(SHIMS / "translation" / "translate.py"),
                        "Hello world",
                        "pl",
                    ],
                    env,
                )
                != 0
            )
            config = {
                "ollama": {"url": standin.url},
                "translation": {"backend": "ollama"},
                "image": {"backend": "ollama"},
            }
            api = start_api_server(work / "api", config)
            print(f"\nAPI server (gunicorn): {api.url}")
            status, body = api.post("/v1/complete", {"user": "Hi", "model": "llama3.2:3b"})
            print(f"POST /v1/complete -> {status} {json.dumps(body)}")
            failures += status != 200
            warm = dict(env, AI_LOCAL_CORE_API__URL=api.url)
            failures += (
                show(
                    "the same translation through the warm API server",
                    [
                        sys.executable,
                        str(SHIMS / "translation" / "translate.py"),
                        "Good night",
                        "de",
                    ],
                    warm,
                )
                != 0
            )
            rc = show(
                "bad input is refused with a JSON error and a non-zero exit",
                [sys.executable, str(SHIMS / "ollama" / "complete.py"), "not json"],
                env,
            )
            failures += rc == 0
        finally:
            if api is not None:
                api.stop()
            standin.stop()
    print("\ndemo " + ("finished: everything answered as expected" if not failures else "FAILED"))
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
