#!/usr/bin/env python3
"""Pull Ollama models through the HTTP API, logging the streamed progress.

Installed by the ai-local-core role ``ollama`` and run by it (detached) for the models that
/api/tags lacks. For each model it POSTs /api/pull with streaming on and writes a progress line
whenever the status changes, every 10 % of a layer, or at least every 15 s, to stdout and to the
log file, so ``tail -f`` on the log shows a long pull while it runs.

Exit status: 0 all pulled, 1 a pull failed (the server's error is printed), 2 the time limit was
reached, 64 bad usage. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

REPORT_EVERY_S = 15.0
REPORT_STEP_PCT = 10
# Longest silence accepted from the server (verifying a multi-GB layer sends nothing for a while).
STALL_S = 120.0


class PullError(Exception):
    """The server refused or aborted a pull."""


class PullTimeout(Exception):
    """The time limit ran out."""


class Progress:
    def __init__(self, log: TextIO | None) -> None:
        self.log = log

    def line(self, text: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = f"{stamp} {text}"
        print(out, flush=True)
        if self.log is not None:
            self.log.write(out + "\n")
            self.log.flush()


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    return f"{value:.1f} GB"


def pull(url: str, model: str, deadline: float, progress: Progress) -> None:
    body = json.dumps({"model": model, "stream": True}).encode()
    # main() accepts only http(s) base URLs.
    request = urllib.request.Request(  # noqa: S310
        f"{url}/api/pull",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "ai-local-core-ollama-role"},
    )
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PullTimeout(f"no time left to start pulling {model}")
    progress.line(f"{model}: pull requested")
    try:
        response = urllib.request.urlopen(request, timeout=min(remaining, STALL_S))  # noqa: S310
    except urllib.error.HTTPError as exc:
        raise PullError(f"{model}: HTTP {exc.code}: {_error_text(exc.read())}") from exc
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(getattr(exc, "reason", exc), TimeoutError):
            raise PullTimeout(f"{model}: no answer from {url}") from exc
        raise PullError(f"{model}: cannot reach {url}: {exc}") from exc
    last_status = ""
    last_pct: dict[str, int] = {}
    last_report = 0.0
    with response:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PullTimeout(f"{model}: time limit reached (last status: {last_status})")
            try:
                raw = response.readline()
            except TimeoutError as exc:
                raise PullTimeout(
                    f"{model}: no progress for {STALL_S:.0f}s (last status: {last_status})"
                ) from exc
            if not raw:
                raise PullError(f"{model}: the stream ended before success (last: {last_status})")
            if not raw.strip():
                continue
            try:
                event: dict[str, Any] = json.loads(raw)
            except ValueError as exc:
                raise PullError(f"{model}: unexpected line from the server: {raw[:200]!r}") from exc
            if "error" in event:
                raise PullError(f"{model}: {event['error']}")
            status = str(event.get("status", ""))
            total = int(event.get("total") or 0)
            completed = int(event.get("completed") or 0)
            now = time.monotonic()
            if total > 0:
                pct = min(100, completed * 100 // total)
                step = pct // REPORT_STEP_PCT
                changed = status != last_status or step != last_pct.get(status)
                if changed or now - last_report >= REPORT_EVERY_S:
                    progress.line(f"{model}: {status} {pct}% ({_size(completed)} / {_size(total)})")
                    last_pct[status] = step
                    last_report = now
            elif status != last_status or now - last_report >= REPORT_EVERY_S:
                progress.line(f"{model}: {status}")
                last_report = now
            last_status = status
            if status == "success":
                return


def _error_text(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:300] or "(empty body)"
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return str(data)[:300]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:11434", help="Ollama API base URL")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for all pulls")
    parser.add_argument("--log", help="append progress lines to this file")
    parser.add_argument("models", nargs="+", help="model names")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return 64
    if not args.url.startswith(("http://", "https://")):
        print(f"--url must be an http(s) URL, got {args.url!r}", file=sys.stderr)
        return 64
    deadline = time.monotonic() + args.timeout
    log = Path(args.log).open("a", encoding="utf-8") if args.log else None  # noqa: SIM115
    progress = Progress(log)
    try:
        for model in args.models:
            pull(args.url.rstrip("/"), model, deadline, progress)
            progress.line(f"{model}: pulled")
    except PullError as exc:
        progress.line(f"ERROR {exc}")
        print(str(exc), file=sys.stderr)
        return 1
    except PullTimeout as exc:
        message = f"timed out after {args.timeout:.0f}s: {exc}"
        progress.line(f"ERROR {message}")
        print(message, file=sys.stderr)
        return 2
    finally:
        if log is not None:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
