#!/usr/bin/env python3
"""Time the arrival of a streamed response, line by line (a test helper for the gateway scenario).

Sends one HTTP/1.1 request over a raw socket and records when each complete NDJSON/SSE line
arrives, so a test can tell a token-by-token stream from one buffered blob. Prints one JSON
object: status, the header block, and the arrival time (seconds since the request was sent) of
every non-empty body line. Standard library only.

Usage: stream_probe.py HOST PORT PATH BODY_JSON [HEADER: VALUE ...]
"""

from __future__ import annotations

import json
import socket
import sys
import time


def main() -> int:
    host, port, path, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
    headers = [f"Host: {host}:{port}", "Content-Type: application/json", "Connection: close"]
    headers += sys.argv[5:]
    head = f"POST {path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection((host, port), timeout=30)
    start = time.monotonic()
    sock.sendall(head.encode() + body)
    buf = b""
    header_block = ""
    chunked = False
    body_buf = b""
    arrivals: list[float] = []
    while True:
        data = sock.recv(65536)
        now = round(time.monotonic() - start, 4)
        if not data:
            break
        buf += data
        if not header_block:
            if b"\r\n\r\n" not in buf:
                continue
            header_bytes, buf = buf.split(b"\r\n\r\n", 1)
            header_block = header_bytes.decode("latin-1")
            chunked = "transfer-encoding: chunked" in header_block.lower()
        if chunked:
            # Take every complete chunk out of buf.
            while b"\r\n" in buf:
                size_line, rest = buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0] or b"0", 16)
                if len(rest) < size + 2:
                    break
                body_buf += rest[:size]
                buf = rest[size + 2 :]
        else:
            body_buf += buf
            buf = b""
        while b"\n" in body_buf:
            line, body_buf = body_buf.split(b"\n", 1)
            if line.strip():
                arrivals.append(now)
    sock.close()
    status = int(header_block.split(" ", 2)[1]) if header_block else 0
    print(json.dumps({"status": status, "headers": header_block, "arrivals": arrivals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
