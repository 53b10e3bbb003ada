#!/usr/bin/env python3
"""Services API stand-in for the gateway scenario (a test fixture, never shipped).

Answers ``GET /health`` with ``{"status": "ok"}``, ``GET /ready`` like the real API (200 when the
Ollama stand-in on 127.0.0.1:11434 answers, else 503, with details the gateway's ``/healthz``
must not show) and any other request with what it received (method, path, headers), so tests
can see what the gateway forwards. ``GET /_standin/count`` and
``DELETE /_standin/count`` read and reset the number of requests received (control calls are not
counted). Standard library only. Usage: services_standin.py [HOST:PORT] (default 127.0.0.1:8000).
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OLLAMA = "http://127.0.0.1:11434"

LOCK = threading.Lock()
COUNT = {"requests": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "services-standin"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.command} {self.path}\n")

    def _send(self, status: int, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/_standin/count":
            with LOCK:
                if self.command == "DELETE":
                    COUNT["requests"] = 0
                self._send(200, dict(COUNT))
            return
        with LOCK:
            COUNT["requests"] += 1
        if self.path == "/health":
            self._send(200, {"status": "ok"})
            return
        if self.path == "/ready":
            ok = ollama_answers()
            checks = {"ollama": {"ok": ok, "url": OLLAMA}, "model": "llama3.1:8b"}
            self._send(200 if ok else 503, {"ready": ok, "checks": checks})
            return
        self._send(
            200,
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_bytes": len(body),
            },
        )

    do_GET = _handle
    do_POST = _handle
    do_DELETE = _handle


def ollama_answers() -> bool:
    try:
        with urllib.request.urlopen(f"{OLLAMA}/api/version", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> None:
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8000").rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
