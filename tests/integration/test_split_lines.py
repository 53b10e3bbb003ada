"""NDJSON lines cut across TCP writes by a raw socket server (what a proxy may do)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from ai_local_core.ollama import ChatResponse, OllamaClient, RetryPolicy

pytestmark = pytest.mark.integration

OBJECTS = [
    {"model": "m", "message": {"role": "assistant", "content": "Zażółć "}, "done": False},
    {"model": "m", "message": {"role": "assistant", "content": "gęślą jaźń"}, "done": False},
    {
        "model": "m",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "eval_count": 2,
        "eval_duration": 20_000_000,
    },
]
BODY = b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in OBJECTS)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@contextmanager
def raw_server(chunked: bool, size: int) -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, rest = request.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += conn.recv(65536)
            if chunked:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for piece in pieces(BODY, size):
                    conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    time.sleep(0.001)
                conn.sendall(b"0\r\n\r\n")
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                    b"Connection: close\r\n\r\n"
                )
                for piece in pieces(BODY, size):
                    conn.sendall(piece)
                    time.sleep(0.001)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "until-close"])
@pytest.mark.parametrize("size", [1, 7, 50])
def test_half_lines_are_buffered_until_the_newline(chunked: bool, size: int) -> None:
    assert any(b"\n" not in p for p in pieces(BODY, size)) or size > len(BODY)
    with (
        raw_server(chunked, size) as port,
        OllamaClient(f"127.0.0.1:{port}", retry=RetryPolicy.none(), timeout=5) as client,
    ):
        chunks = list(client.chat("m", [{"role": "user", "content": "x"}], stream=True))
    assert len(chunks) == 3
    result = ChatResponse.from_stream(chunks)
    assert result.content == "Zażółć gęślą jaźń"
    assert result.tokens_per_second == 100.0
