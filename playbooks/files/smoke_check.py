#!/usr/bin/env python3
"""`make smoke` (playbooks/smoke.yml): three requests to the node from outside, timed.

1. ``healthz``: ``GET <url>/healthz`` without credentials: 200 ``{"status":"ok"}`` (Ollama and
   the services API answer).
2. ``completion``: ``POST <url>/api/generate`` with the credential, a few tokens, no stream:
   200 with a ``response``.
3. ``refused``: ``GET <url>/api/tags`` without credentials: 401 with a JSON error.

Prints a table (step, HTTP status, seconds, ok/FAIL) and exits 1 when a step failed. The
credential comes on stdin (an API key, or with ``--user`` that user's password), never in argv
or the output. Standard library only: it runs with the controller's Ansible Python (a MacBook
with nothing else installed).

    printf '%s' "$KEY" | python3 smoke_check.py https://node.example.com --model llama3.1:8b
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

PROMPT = "Reply with one word: ok"


@dataclass(frozen=True)
class Step:
    name: str
    status: int | None
    seconds: float
    ok: bool
    detail: str = ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect (e.g. an access login page in front of the tunnel) is an answer, not a hop."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def request(
    url: str, *, body: dict[str, Any] | None, authorization: str | None, timeout: float
) -> tuple[int | None, bytes, float, str]:
    """One request: (status or None, body, seconds, error text)."""
    headers = {"Accept": "application/json", "User-Agent": "ai-local-core-smoke"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if authorization is not None:
        headers["Authorization"] = authorization
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (main: http(s))
    started = time.monotonic()
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            raw = response.read()
            return response.status, raw, time.monotonic() - started, ""
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, raw, time.monotonic() - started, ""
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, b"", time.monotonic() - started, str(reason) or type(exc).__name__


def _text(raw: bytes) -> str:
    return raw[:80].decode("utf-8", errors="replace").strip() or "(empty body)"


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def check_healthz(base: str, timeout: float) -> Step:
    status, raw, took, error = request(
        f"{base}/healthz", body=None, authorization=None, timeout=timeout
    )
    answer = _json(raw)
    ok = status == 200 and answer == {"status": "ok"}
    detail = error or ("" if ok else f"got {_text(raw)}")
    return Step("healthz", status, took, ok, detail)


def check_completion(base: str, model: str, authorization: str, timeout: float) -> Step:
    body = {"model": model, "prompt": PROMPT, "stream": False, "options": {"num_predict": 8}}
    status, raw, took, error = request(
        f"{base}/api/generate", body=body, authorization=authorization, timeout=timeout
    )
    answer = _json(raw)
    ok = (
        status == 200
        and isinstance(answer, dict)
        and isinstance(answer.get("response"), str)
        and answer.get("done") is True
    )
    detail = error
    if not ok and not error:
        message = answer.get("error") if isinstance(answer, dict) else None
        detail = f"{model}: {message or _text(raw)}"
    return Step("completion", status, took, ok, detail)


def check_refused(base: str, timeout: float) -> Step:
    status, raw, took, error = request(
        f"{base}/api/tags", body=None, authorization=None, timeout=timeout
    )
    answer = _json(raw)
    ok = status == 401 and isinstance(answer, dict) and "error" in answer
    detail = error or ("" if ok else "a request without credentials must get 401 JSON")
    return Step("refused", status, took, ok, detail)


def table(url: str, steps: list[Step]) -> str:
    lines = [f"smoke {url}", f"{'step':<12}{'HTTP':>5}{'seconds':>9}  result"]
    for step in steps:
        status = str(step.status) if step.status is not None else "-"
        result = "ok" if step.ok else "FAIL"
        line = f"{step.name:<12}{status:>5}{step.seconds:>9.3f}  {result}"
        lines.append(f"{line}  {step.detail}" if step.detail else line)
    failed = [step.name for step in steps if not step.ok]
    lines.append(f"FAILED: {', '.join(failed)}" if failed else "all checks passed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the node's public URL (tunnel, tailnet name, sandbox)")
    parser.add_argument("--model", required=True, help="the model of the completion")
    parser.add_argument("--user", help="basic-auth user (stdin: the password, not a key)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds, /healthz and 401")
    parser.add_argument(
        "--completion-timeout", type=float, default=120.0, help="seconds, the completion"
    )
    args = parser.parse_args(argv)
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        parser.error("no credential on stdin")
    if args.user:
        token = base64.b64encode(f"{args.user}:{secret}".encode()).decode()
        authorization = f"Basic {token}"
    else:
        authorization = f"Bearer {secret}"
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        parser.error(f"not an http(s) URL: {base}")
    steps = [
        check_healthz(base, args.timeout),
        check_completion(base, args.model, authorization, args.completion_timeout),
        check_refused(base, args.timeout),
    ]
    print(table(base, steps))
    return 0 if all(step.ok for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
