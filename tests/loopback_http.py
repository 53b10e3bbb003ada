"""A tiny scriptable HTTP server on 127.0.0.1 for tests (image URLs, stubbed web APIs).

Each route maps a path to a handler that writes the whole response; the server
records every request it saw. Runs in a daemon thread; use as a context manager.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class SeenRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class LoopbackServer:
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[SeenRequest] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    *,
    content_type: str | None = "application/octet-stream",
    headers: dict[str, str] | None = None,
    length: int | None = None,
) -> None:
    """Write a complete response; ``length=None`` sends the real Content-Length, -1 none."""
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    if length != -1:
        handler.send_header("Content-Length", str(len(body) if length is None else length))
    else:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def static(
    status: int,
    body: bytes = b"",
    content_type: str | None = "application/octet-stream",
    **kw: object,
) -> Handler:
    def handle(handler: BaseHTTPRequestHandler) -> None:
        send(handler, status, body, content_type=content_type, **kw)  # type: ignore[arg-type]

    return handle


def slow(delay_s: float, then: Handler) -> Handler:
    def handle(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(delay_s)
        with suppress(BrokenPipeError, ConnectionResetError):
            then(handler)

    return handle


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that time out on purpose reset their connection: not worth a traceback.
        return


@contextmanager
def loopback_server(routes: dict[str, Handler] | None = None) -> Iterator[LoopbackServer]:
    state = LoopbackServer(routes=dict(routes or {}))

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            state.seen.append(
                SeenRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
            )
            route = state.routes.get(parts.path)
            if route is None:
                send(self, 404, b"not found", content_type="text/plain")
                return
            route(self)

        do_GET = _dispatch
        do_POST = _dispatch
        do_HEAD = _dispatch

    server = _QuietServer(("127.0.0.1", 0), _Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class SilentServer:
    """A server that accepts connections, reads what comes and never answers."""

    port: int = 0
    #: Set once a connection was accepted.
    accepted: threading.Event = field(default_factory=threading.Event)
    #: Set when the client closed the connection it opened (it has really ended its call).
    hung_up: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    """A stuck upstream on 127.0.0.1: accepts, reads the request, never sends a byte.

    One connection at a time, in one thread started before the ``with`` body runs.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    state = SilentServer(port=listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                state.accepted.set()
                conn.settimeout(0.05)
                while not stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        state.hung_up.set()
                        break

    thread = threading.Thread(target=serve, name="silent-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(5)
        listener.close()
