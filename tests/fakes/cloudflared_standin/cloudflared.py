#!/usr/bin/python3
"""``cloudflared`` stand-in: a TEST FIXTURE that imitates Cloudflare's tunnel client.

It is packaged as a ``.deb`` by ``build_deb.py`` and installed on Molecule test hosts through the
``cloudflared`` role's local-artifact override only; it is never shipped and never a default.

It accepts the command lines the role writes and behaves like the real client where the role
depends on it, without any network beyond loopback:

* ``cloudflared --version`` / ``cloudflared version``: the real version line.
* ``cloudflared tunnel [flags] --url URL``: a quick tunnel. Logs the real banner with a fake
  ``https://<words>.trycloudflare.com`` URL, serves ``/metrics``, ``/ready``, ``/healthcheck`` and
  ``/quicktunnel`` (``{"hostname": ...}``) on ``--metrics``, and notifies systemd when "connected".
* ``cloudflared tunnel [flags] run``: a named tunnel. The token comes from ``--token`` or
  ``TUNNEL_TOKEN``; a token that is not base64 JSON with ``a``/``t``/``s`` keys (tunnel id a UUID,
  secret at least 32 bytes) fails with the real message and exit status 1. The token is never
  printed. Ingress comes from ``--config`` (the subset of YAML the role renders).
* ``cloudflared tunnel [--config F] ingress validate``: checks the ingress rules like the real one.

Stand-in only: ``/standin-edge/<path>`` on the metrics address plays the Cloudflare edge: it
forwards the request (any method, headers and body; ``X-Standin-Hostname`` picks the hostname) to
the origin of the matching ingress rule (or ``--url``) with the Host header the configuration asks
for, so tests can prove the ``--http-host-header`` / ``httpHostHeader`` wiring without the
internet. The answer streams through as the origin sends it, and the edge's idle rule applies:
when the origin sends no byte for ``CLOUDFLARED_STANDIN_EDGE_IDLE_TIMEOUT`` seconds (default 100,
like Cloudflare's proxy read timeout) the edge answers 524 (before the response started) or cuts
the response (after).

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Replaced by build_deb.py with the package version.
STANDIN_VERSION = "2025.11.1"
BUILD_STAMP = "2025-11-20-0000 UTC"

VALUE_FLAGS = {
    "metrics",
    "url",
    "http-host-header",
    "config",
    "loglevel",
    "transport-loglevel",
    "protocol",
    "token",
    "edge-ip-version",
    "logfile",
    "pidfile",
    "grace-period",
    "retries",
    "ha-connections",
    "origincert",
    "region",
    "tag",
    "credentials-file",
    "cred-file",
}
BOOL_FLAGS = {
    "no-autoupdate",
    "no-tls-verify",
    "post-quantum",
    "hello-world",
    "no-chunked-encoding",
}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
PROTOCOLS = ("auto", "quic", "http2")
WORDS = (
    "amber", "basin", "cedar", "delta", "ember", "fjord", "grove", "harbor", "island", "juniper",
    "kettle", "lagoon", "meadow", "nectar", "orchid", "prairie", "quartz", "ridge", "summit",
    "timber", "upland", "valley", "willow", "yonder", "zephyr", "garden", "forest", "mirror",
)  # fmt: skip
TOKEN_INVALID = "Provided Tunnel token is not valid."
EDGE_IDLE_ENV = "CLOUDFLARED_STANDIN_EDGE_IDLE_TIMEOUT"
#: Cloudflare's proxy read timeout: HTTP 524 after this long without a byte from the origin.
EDGE_IDLE_DEFAULT = 100.0
#: Not forwarded by the edge (hop-by-hop, or set by the edge itself).
EDGE_DROP_HEADERS = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "x-standin-hostname",
}  # fmt: skip


class UsageError(Exception):
    """Bad command line or configuration: printed and exit status 1, like urfave/cli."""


@dataclass
class Rule:
    hostname: str = ""
    service: str = ""
    http_host_header: str = ""


@dataclass
class Options:
    flags: dict[str, str] = field(default_factory=dict)
    bools: set[str] = field(default_factory=set)
    command: list[str] = field(default_factory=list)


def log(level: str, message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} {level} {message}\n")
    sys.stderr.flush()


def parse_args(argv: list[str]) -> Options:
    """Parse urfave/cli-style flags (``--f v``, ``--f=v``, ``-f``) around the sub-commands."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and arg not in ("-", "--"):
            name, eq, value = arg.lstrip("-").partition("=")
            if name in BOOL_FLAGS:
                if eq and value.lower() not in ("true", "false", "1", "0"):
                    raise UsageError(f'invalid boolean value "{value}" for flag -{name}')
                if not eq or value.lower() in ("true", "1"):
                    opts.bools.add(name)
            elif name in VALUE_FLAGS:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: -{name}")
                    value = argv[i]
                opts.flags[name] = value
            elif name in ("version", "v"):
                opts.command = ["version"]
            else:
                raise UsageError(f"flag provided but not defined: -{name}")
        else:
            opts.command.append(arg)
        i += 1
    return opts


# --- Configuration (the YAML subset the role renders) ------------------------------------------


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_config(path: str) -> tuple[dict[str, str], list[Rule]]:
    """Read top-level scalars and the ``ingress`` list (hostname, service, httpHostHeader)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise UsageError(f"Cannot read configuration file {path}: {exc.strerror}") from exc
    top: dict[str, str] = {}
    rules: list[Rule] = []
    section = ""
    in_origin = False
    for number, raw in enumerate(lines, start=1):
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#") or line.strip() == "---":
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent == 0:
            key, _, value = text.partition(":")
            section = key.strip()
            if value.strip():
                top[section] = _scalar(value)
            in_origin = False
            continue
        if section != "ingress":
            continue
        if text.startswith("- "):
            rules.append(Rule())
            text = text[2:].strip()
            in_origin = False
        if not rules:
            raise UsageError(f"{path}:{number}: ingress entries must be a list")
        key, _, value = text.partition(":")
        key = key.strip()
        if key == "originRequest":
            in_origin = True
            continue
        if in_origin and key == "httpHostHeader":
            rules[-1].http_host_header = _scalar(value)
        elif key == "hostname":
            rules[-1].hostname = _scalar(value)
            in_origin = False
        elif key == "service":
            rules[-1].service = _scalar(value)
            in_origin = False
        elif not in_origin:
            raise UsageError(f"{path}:{number}: the stand-in does not know ingress key {key!r}")
    return top, rules


def validate_rules(rules: list[Rule]) -> None:
    if not rules:
        raise UsageError(
            "No ingress rules were defined in provided config (if any) nor from the cli"
        )
    for index, rule in enumerate(rules, start=1):
        service = rule.service
        if not service:
            raise UsageError(f"Rule #{index} is missing its service")
        if not (
            service.startswith(("http_status:", "unix:", "tcp://", "ssh://", "rdp://"))
            or service == "hello_world"
            or (
                urllib.parse.urlsplit(service).scheme in ("http", "https")
                and urllib.parse.urlsplit(service).netloc
            )
        ):
            raise UsageError(f"Rule #{index}: {service!r} is not a valid service")
    last = rules[-1]
    if last.hostname not in ("", "*"):
        raise UsageError(
            "The last ingress rule must match all URLs (i.e. it should not have a hostname or "
            "path filter)"
        )


# --- Token ---------------------------------------------------------------------------------------


def _b64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padding optional; ValueError otherwise."""
    text = text.strip().replace("-", "+").replace("_", "/")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64") from exc


def parse_token(token: str) -> str:
    """Return the tunnel id of a valid token; raise UsageError (no token text) otherwise."""
    try:
        data: Any = json.loads(_b64(token))
        if not isinstance(data, dict) or not {"a", "t", "s"} <= set(data):
            raise ValueError("missing keys")
        if not isinstance(data["a"], str) or not data["a"]:
            raise ValueError("bad account tag")
        tunnel_id = str(uuid.UUID(str(data["t"])))
        if len(_b64(str(data["s"]))) < 32:
            raise ValueError("short secret")
    except (ValueError, UnicodeDecodeError):
        raise UsageError(TOKEN_INVALID) from None
    return tunnel_id


# --- Running tunnel ----------------------------------------------------------------------------


@dataclass
class Tunnel:
    rules: list[Rule]
    quick_hostname: str = ""
    connector_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    ready: bool = False
    requests: int = 0
    edge_idle_timeout: float = EDGE_IDLE_DEFAULT


def edge_idle_timeout() -> float:
    text = os.environ.get(EDGE_IDLE_ENV, "").strip()
    if not text:
        return EDGE_IDLE_DEFAULT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise UsageError(f"{EDGE_IDLE_ENV} must be seconds in (0, 3600], got {text!r}")
    return value


def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def make_handler(tunnel: Tunnel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cloudflared-standin"
        protocol_version = "HTTP/1.1"  # every answer has a length or is chunked

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path
            if path == "/metrics":
                self._send(200, metrics_text(tunnel).encode(), "text/plain; version=0.0.4")
            elif path == "/healthcheck":
                self._send(200, b"OK\n", "text/plain")
            elif path == "/ready":
                status = 200 if tunnel.ready else 503
                body = {
                    "status": status,
                    "readyConnections": (1 if tunnel.quick_hostname else 4) if tunnel.ready else 0,
                    "connectorId": tunnel.connector_id,
                }
                self._send(status, json.dumps(body).encode())
            elif path == "/quicktunnel":
                self._send(200, json.dumps({"hostname": tunnel.quick_hostname}).encode())
            elif path.startswith("/standin-edge/"):
                self._edge(path[len("/standin-edge") :])
            else:
                self._send(404, b"404 page not found\n", "text/plain")

        def _other(self) -> None:
            if self.path.startswith("/standin-edge/"):
                self._edge(self.path[len("/standin-edge") :])
            else:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(404, b"404 page not found\n", "text/plain")

        do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _other

        def _edge(self, origin_path: str) -> None:
            tunnel.requests += 1
            rule = tunnel.rules[-1]
            wanted = self.headers.get("X-Standin-Hostname", "")
            for candidate in tunnel.rules:
                if candidate.hostname in ("", "*", wanted):
                    rule = candidate
                    break
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if rule.service.startswith("http_status:"):
                self._send(int(rule.service.split(":", 1)[1]), b"")
                return
            origin = urllib.parse.urlsplit(rule.service)
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in EDGE_DROP_HEADERS
            }
            headers["Host"] = rule.http_host_header or origin.netloc
            connection_class = (
                http.client.HTTPSConnection
                if origin.scheme == "https"
                else http.client.HTTPConnection
            )
            # The socket timeout is the idle rule: it bounds every wait for the origin's bytes.
            conn = connection_class(
                origin.hostname or "localhost", origin.port, timeout=tunnel.edge_idle_timeout
            )
            try:
                try:
                    conn.connect()
                except OSError:
                    # The real edge answers 502 when the origin cannot be reached.
                    self._send(502, b"origin unreachable", "text/plain")
                    return
                try:
                    conn.request(
                        self.command,
                        origin.path.rstrip("/") + origin_path,
                        body=body if body or self.command in ("POST", "PUT", "PATCH") else None,
                        headers=headers,
                    )
                    response = conn.getresponse()
                except socket.timeout:  # noqa: UP041 - not TimeoutError on Python 3.9
                    log("ERR", f"origin sent no byte for {tunnel.edge_idle_timeout:g}s: 524")
                    self._send(524, b"error code: 524", "text/plain; charset=UTF-8")
                    return
                except (OSError, http.client.HTTPException):
                    self._send(502, b"origin unreachable", "text/plain")
                    return
                self._relay(response)
            finally:
                conn.close()

        def _relay(self, response: http.client.HTTPResponse) -> None:
            """Pass the origin's answer on as it comes, chunk by chunk, under the idle rule."""
            self.close_connection = True
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in EDGE_DROP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Connection", "close")
            if self.command == "HEAD" or response.status in (204, 304):
                self.end_headers()
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                while True:
                    data = response.read1(65536)
                    if not data:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except socket.timeout:  # noqa: UP041 - not TimeoutError on Python 3.9
                # Too late for a 524: the edge drops the response (no final chunk).
                log("ERR", f"origin idle for {tunnel.edge_idle_timeout:g}s mid-response: cut")
            except (OSError, http.client.HTTPException):
                pass

    return Handler


def metrics_text(tunnel: Tunnel) -> str:
    conns = (1 if tunnel.quick_hostname else 4) if tunnel.ready else 0
    return (
        "# HELP build_info Build and version information\n# TYPE build_info gauge\n"
        f'build_info{{goversion="standin",type="standin",revision="{BUILD_STAMP}",'
        f'version="{STANDIN_VERSION}"}} 1\n'
        "# HELP cloudflared_tunnel_ha_connections Number of active ha connections\n"
        "# TYPE cloudflared_tunnel_ha_connections gauge\n"
        f"cloudflared_tunnel_ha_connections {conns}\n"
        "# HELP cloudflared_tunnel_total_requests Amount of requests proxied through all the "
        "tunnels\n# TYPE cloudflared_tunnel_total_requests counter\n"
        f"cloudflared_tunnel_total_requests {tunnel.requests}\n"
    )


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"invalid --metrics address {address!r} (want host:port)")
    return host.strip("[]") or "localhost", int(port)


def serve_tunnel(opts: Options, tunnel: Tunnel) -> int:
    tunnel.edge_idle_timeout = edge_idle_timeout()
    host, port = split_address(opts.flags.get("metrics", "localhost:0"))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    try:
        server = Server((host, port), make_handler(tunnel))
    except OSError as exc:
        log("ERR", f"failed to bind the metrics server on {host}:{port}: {exc.strerror}")
        return 1
    log("INF", f"Starting metrics server on {host}:{server.server_address[1]}/metrics")
    threading.Thread(target=server.serve_forever, daemon=True).start()

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log("INF", f"Initiating graceful shutdown due to signal {signal.Signals(signum).name} ...")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    time.sleep(0.2)
    locations = ("fra08", "waw01", "ams05", "fra13")
    for index in range(1 if tunnel.quick_hostname else 4):
        log(
            "INF",
            f"Registered tunnel connection connIndex={index} connection={uuid.uuid4()} event=0 "
            f"ip=198.41.200.{13 + index} location={locations[index]} protocol="
            f"{opts.flags.get('protocol', 'quic').replace('auto', 'quic')}",
        )
    tunnel.ready = True
    sd_notify("READY=1")
    stop.wait()
    server.shutdown()
    return 0


def quick_tunnel(opts: Options) -> int:
    origin = opts.flags["url"]
    parts = urllib.parse.urlsplit(origin)
    if parts.scheme not in ("http", "https", "unix", "tcp", "ssh", "rdp") or not parts.netloc:
        raise UsageError(f"{origin} is an invalid URL (the URL must have a scheme and a host)")
    rule = Rule(service=origin, http_host_header=opts.flags.get("http-host-header", ""))
    rng = random.SystemRandom()
    hostname = "-".join(rng.sample(WORDS, 4)) + ".trycloudflare.com"
    log(
        "INF",
        "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a "
        "quick way to experiment and try it out. (stand-in: no request leaves this host)",
    )
    log("INF", "Requesting new quick Tunnel on trycloudflare.com...")
    lines = [
        "Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):",
        f"https://{hostname}",
    ]
    width = max(len(x) for x in lines)
    border = "+" + "-" * (width + 4) + "+"
    for line in [border, *[f"|  {x.ljust(width)}  |" for x in lines], border]:
        log("INF", line)
    return serve_tunnel(opts, Tunnel(rules=[rule], quick_hostname=hostname))


def named_tunnel(opts: Options, rules: list[Rule]) -> int:
    token = opts.flags.get("token") or os.environ.get("TUNNEL_TOKEN", "")
    if not token:
        raise UsageError(
            '"cloudflared tunnel run" requires the ID or name of the tunnel to run as the last '
            "command line argument or in the configuration file."
        )
    tunnel_id = parse_token(token)
    if rules:
        validate_rules(rules)
    else:
        # A remotely managed tunnel receives its ingress from the edge; the stand-in has none.
        rules = [Rule(service="http_status:503")]
    log("INF", f"Starting tunnel tunnelID={tunnel_id}")
    log("INF", f"Version {STANDIN_VERSION} (stand-in)")
    return serve_tunnel(opts, Tunnel(rules=rules))


def main(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
        cmd = opts.command
        if cmd[:1] == ["version"] or (cmd[:1] == ["tunnel"] and cmd[1:2] == ["version"]):
            print(f"cloudflared version {STANDIN_VERSION} (built {BUILD_STAMP})")
            return 0
        if not cmd or cmd[0] != "tunnel":
            raise UsageError(
                "the stand-in supports only 'cloudflared tunnel ...' and 'cloudflared --version'"
            )
        level = opts.flags.get("loglevel", "info")
        if level not in LOG_LEVELS:
            raise UsageError(f"Unknown log level {level!r}")
        if opts.flags.get("protocol", "auto") not in PROTOCOLS:
            raise UsageError(f"Unknown protocol {opts.flags['protocol']!r}")
        top: dict[str, str] = {}
        rules: list[Rule] = []
        if "config" in opts.flags:
            top, rules = parse_config(opts.flags["config"])
            for key in ("metrics", "loglevel", "protocol"):
                if key in top and key not in opts.flags:
                    opts.flags[key] = top[key]
        sub = cmd[1:]
        if sub[:2] == ["ingress", "validate"]:
            if "config" not in opts.flags:
                raise UsageError("No configuration file was given (--config)")
            print(f"Validating rules from {opts.flags['config']}")
            validate_rules(rules)
            print("OK")
            return 0
        if sub[:1] == ["run"]:
            if "url" in opts.flags and rules:
                raise UsageError("You can't set the --url flag when using multiple-origin ingress")
            return named_tunnel(opts, rules)
        if not sub and "url" in opts.flags:
            return quick_tunnel(opts)
        raise UsageError(f"the stand-in does not implement 'cloudflared {' '.join(cmd)}'")
    except UsageError as exc:
        log("ERR", str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
