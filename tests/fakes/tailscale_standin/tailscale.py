#!/usr/bin/python3
"""``tailscale`` CLI stand-in: a TEST FIXTURE that imitates Tailscale's command-line client.

Talks to the ``tailscaled`` stand-in over its Unix socket (see tailscaled.py). Implements the
commands the ``tailscale`` role runs, with the real flag syntax (Go ``flag`` package: ``-f``,
``--f``, ``--f=value``, ``--f value``; booleans only as ``--f`` or ``--f=false``):

* ``tailscale version``
* ``tailscale status [--json]``: BackendState, Self.Online, Self.TailscaleIPs, ...
* ``tailscale up [flags]``: the settings flags the role uses, ``--reset``, ``--timeout``,
  ``--auth-key`` (alias ``--authkey``) with the real ``file:/path`` form. Without ``--reset``,
  leaving out a non-default setting fails like the real CLI ("requires mentioning all
  non-default flags"). A malformed key fails with "backend error: invalid key".
* ``tailscale down``, ``tailscale logout``, ``tailscale ip [-4|-6]``
* ``tailscale serve status [--json]``, ``serve reset``, ``serve --bg [--https=N] [--yes] TARGET``
  and ``serve --https=N off``. Foreground serve (no ``--bg``) is refused instead of blocking.

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path
from typing import Any

STANDIN_VERSION = "1.92.5"
DEFAULT_SOCKET = "/run/tailscale/tailscaled.sock"
NOT_RUNNING = (
    "failed to connect to local tailscaled; it doesn't appear to be running "
    "(sudo systemctl start tailscaled ?)"
)
UP_STRING_FLAGS = {
    "login-server",
    "hostname",
    "advertise-tags",
    "advertise-routes",
    "exit-node",
    "operator",
    "netfilter-mode",
    "auth-key",
    "authkey",
    "timeout",
    "qr-format",
}
UP_BOOL_FLAGS = {
    "accept-dns",
    "accept-routes",
    "ssh",
    "shields-up",
    "advertise-exit-node",
    "snat-subnet-routes",
    "reset",
    "force-reauth",
    "json",
    "qr",
}
TIMEOUT_RE = re.compile(r"^(0|[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$")


class CliError(Exception):
    """Printed to stderr with exit status 1."""


def parse_flags(
    args: list[str], string_flags: set[str], bool_flags: set[str]
) -> tuple[dict[str, Any], list[str]]:
    """Go ``flag`` parsing: flags first, then positional arguments."""
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return values, args[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            return values, args[i:]
        name, eq, value = arg.lstrip("-").partition("=")
        if name in bool_flags:
            if eq and value not in ("true", "false", "1", "0", "t", "f", "TRUE", "FALSE"):
                raise CliError(f'invalid boolean value "{value}" for -{name}: parse error')
            values[name] = not eq or value in ("true", "1", "t", "TRUE")
        elif name in string_flags:
            if not eq:
                i += 1
                if i >= len(args):
                    raise CliError(f"flag needs an argument: -{name}")
                value = args[i]
            values[name] = value
        else:
            raise CliError(f"flag provided but not defined: -{name}")
        i += 1
    return values, []


def call(sock: str, request: dict[str, Any]) -> dict[str, Any]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(30)
            conn.connect(sock)
            conn.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        raise CliError(NOT_RUNNING) from None
    answer: dict[str, Any] = json.loads(data)
    return answer


def read_key(value: str) -> str:
    if value.startswith("file:"):
        path = Path(value[len("file:") :])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    return value


def cmd_up(sock: str, args: list[str]) -> int:
    flags, rest = parse_flags(args, UP_STRING_FLAGS, UP_BOOL_FLAGS)
    if rest:
        raise CliError(f'too many non-flag arguments: "{rest}"')
    timeout = flags.pop("timeout", "0s")
    if not TIMEOUT_RE.match(timeout):
        raise CliError(f'invalid value "{timeout}" for flag -timeout: parse error')
    key = flags.pop("auth-key", flags.pop("authkey", ""))
    reset = flags.pop("reset", False)
    force_reauth = flags.pop("force-reauth", False)
    for ignored in ("json", "qr", "qr-format"):
        flags.pop(ignored, None)
    if flags.get("netfilter-mode", "on") not in ("on", "nodivert", "off"):
        raise CliError(f'invalid value --netfilter-mode="{flags["netfilter-mode"]}"')
    answer = call(
        sock,
        {
            "cmd": "up",
            "prefs": flags,
            "explicit": sorted(flags),
            "reset": reset,
            "force_reauth": force_reauth,
            "auth_key": read_key(key),
        },
    )
    if "auth_url" in answer:
        sys.stderr.write(f"\nTo authenticate, visit:\n\n\t{answer['auth_url']}\n\n")
    if "error" in answer:
        raise CliError(str(answer["error"]))
    return 0


def cmd_status(sock: str, args: list[str]) -> int:
    flags, _ = parse_flags(args, {"peers", "self"}, {"json", "active", "web", "browser"})
    status = call(sock, {"cmd": "status"})
    if flags.get("json"):
        print(json.dumps(status, indent=2))
        return 0
    state = status["BackendState"]
    if state == "Stopped":
        print("Tailscale is stopped.")
        return 1
    if state == "NeedsLogin":
        print("Logged out.")
        return 1
    me = status["Self"]
    print(f"{me['TailscaleIPs'][0]:<16} {me['HostName']:<20} tagged-devices linux   -")
    return 0


def cmd_serve(sock: str, args: list[str]) -> int:
    if args[:1] == ["status"]:
        flags, _ = parse_flags(args[1:], set(), {"json"})
        config = call(sock, {"cmd": "serve-status"})["config"]
        if flags.get("json"):
            print(json.dumps(config, indent=2))
        elif not config:
            print("No serve config")
        else:
            for host, web in config.get("Web", {}).items():
                for path, handler in web["Handlers"].items():
                    print(f"https://{host}{path}\n|-- proxy {handler['Proxy']}")
        return 0
    if args[:1] == ["reset"]:
        answer = call(sock, {"cmd": "serve-reset"})
        return 0 if "error" not in answer else 1
    flags, rest = parse_flags(args, {"https", "http", "tcp", "set-path"}, {"bg", "yes"})
    if len(rest) != 1:
        raise CliError("try `tailscale serve --help` for usage info")
    if "http" in flags or "tcp" in flags or "set-path" in flags:
        raise CliError("the stand-in serves HTTPS on a port only (--https=N)")
    port = int(flags.get("https", "443"))
    if rest[0] == "off":
        answer = call(sock, {"cmd": "serve-set", "port": port, "off": True})
    else:
        if not flags.get("bg"):
            raise CliError("stand-in: foreground serve would block; use --bg")
        target = expand_target(rest[0])
        answer = call(sock, {"cmd": "serve-set", "port": port, "target": target})
        if "url" in answer:
            print(f"Available within your tailnet:\n\n{answer['url']}\n|-- proxy {target}\n")
            print("Serve started and running in the background.")
            print(f"To disable the proxy, run: tailscale serve --https={port} off")
    if "error" in answer:
        raise CliError(str(answer["error"]))
    return 0


def expand_target(target: str) -> str:
    """The real CLI's rules: a port, host:port or a URL on localhost/127.0.0.1."""
    if target.isdigit():
        return f"http://127.0.0.1:{target}"
    if "://" not in target:
        target = "http://" + target
    match = re.match(
        r"^(https?|https\+insecure)://(localhost|127\.0\.0\.1)(:[0-9]+)?(/.*)?$", target
    )
    if not match:
        raise CliError("invalid proxy target: only localhost or 127.0.0.1 proxies are supported")
    return target


def main(argv: list[str]) -> int:
    try:
        flags, rest = parse_flags(argv, {"socket"}, set())
        sock = flags.get("socket", DEFAULT_SOCKET)
        if not rest:
            raise CliError("tailscale: missing subcommand")
        cmd, args = rest[0], rest[1:]
        if cmd == "version":
            print(f"{STANDIN_VERSION}\n  tailscale commit: standin\n  go version: none (stand-in)")
            return 0
        if cmd == "up":
            return cmd_up(sock, args)
        if cmd == "status":
            return cmd_status(sock, args)
        if cmd in ("down", "logout"):
            answer = call(sock, {"cmd": cmd})
            if "error" in answer:
                raise CliError(str(answer["error"]))
            return 0
        if cmd == "ip":
            status = call(sock, {"cmd": "status"})
            ips = status["Self"]["TailscaleIPs"] or []
            if not ips:
                raise CliError(f"no current Tailscale IPs; state: {status['BackendState']}")
            want4 = "-6" not in args
            want6 = "-4" not in args
            for ip in ips:
                if (":" in ip and want6) or (":" not in ip and want4):
                    print(ip)
            return 0
        if cmd == "serve":
            return cmd_serve(sock, args)
        raise CliError(f"tailscale: unknown subcommand: {cmd}")
    except CliError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
