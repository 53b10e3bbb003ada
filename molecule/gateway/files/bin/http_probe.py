#!/usr/bin/env python3
"""One HTTP request from inside the test host, result as JSON (a test helper, stdlib only).

The gateway scenario's tests run it through testinfra instead of curl, so the test hosts need no
extra packages. Prints {"status", "headers" (lower-case names), "body"}; a connection failure
prints {"status": 0, "error": ...}.

Usage: http_probe.py URL [-X METHOD] [-H 'Name: value' ...] [-d BODY | --body-size N]
                         [--user USER:PASSWORD] [--source ADDR] [--cafile PEM] [--insecure]
                         [--repeat N]
With --repeat N it sends the request N times, one new connection each, as fast as it can, and
prints a JSON list of the results; "{n}" in --user becomes the request's number (0, 1, ...).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import ssl
import sys
from urllib.parse import urlsplit


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("-X", dest="method", default=None)
    parser.add_argument("-H", dest="headers", action="append", default=[])
    parser.add_argument("-d", dest="data", default=None)
    parser.add_argument("--body-size", type=int, default=None)
    parser.add_argument("--user", default=None)
    parser.add_argument("--source", default=None)
    parser.add_argument("--cafile", default=None)
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--repeat", type=int, default=0)
    args = parser.parse_args()
    if args.repeat > 0:
        print(json.dumps([once(args, n) for n in range(args.repeat)]))
    else:
        print(json.dumps(once(args)))
    return 0


def once(args: argparse.Namespace, n: int = 0) -> dict[str, object]:

    url = urlsplit(args.url)
    body: bytes | None = None
    if args.data is not None:
        body = args.data.encode()
    elif args.body_size is not None:
        body = b"x" * args.body_size
    method = args.method or ("POST" if body is not None else "GET")
    headers = {}
    for item in args.headers:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    if args.user:
        user = args.user.replace("{n}", str(n))
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    source = (args.source, 0) if args.source else None
    port = url.port or (443 if url.scheme == "https" else 80)
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        context = ssl.create_default_context(cafile=args.cafile)
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            url.hostname or "", port, timeout=30, source_address=source, context=context
        )
    else:
        conn = http.client.HTTPConnection(
            url.hostname or "", port, timeout=30, source_address=source
        )
    path = url.path + (f"?{url.query}" if url.query else "")
    try:
        conn.request(method, path or "/", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()
    return {
        "status": resp.status,
        "headers": {k.lower(): v for k, v in resp.getheaders()},
        "body": data,
    }


if __name__ == "__main__":
    sys.exit(main())
