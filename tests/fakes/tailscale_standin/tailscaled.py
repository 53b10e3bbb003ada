#!/usr/bin/python3
"""``tailscaled`` stand-in: a TEST FIXTURE that imitates Tailscale's node daemon.

Packaged with the ``tailscale`` CLI stand-in as a ``.deb`` (``build_deb.py``) and installed on
Molecule test hosts through the ``tailscale`` role's local-artifact override only; never shipped.

Like the real daemon it is started by ``tailscaled.service`` with ``--state`` and ``--socket``,
keeps the node's state in the state file (so a restart keeps the node logged in), answers the CLI
on a Unix socket, notifies systemd when ready, and owns a TUN interface named ``tailscale0`` that
carries the node's 100.x address while it is up (so firewall rules on ``tailscale0`` are testable).
Like tailscaled 1.48+ with ``--netfilter-mode=on`` (the CLI's default) it puts a ``ts-input``
chain ahead of the host's own, accepting everything on ``tailscale0``, where iptables exists.
``tailscaled --cleanup`` removes the interface and those rules, as ``ExecStopPost`` expects.

What it does not do: talk to a control server. Logging in validates the auth key's format only
(``tskey-auth-<id>-<secret>``); a malformed key fails like a revoked one does. Every successful
``tailscale up`` is appended to ``standin-up.log`` next to the state file, so tests can count
re-ups. The CLI protocol is one JSON request and one JSON answer per connection (the real one is
HTTP); only the stand-in CLI speaks it.

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

STANDIN_VERSION = "1.92.5"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# tskey-auth-<id>-<secret> (current) or tskey-<id>-<secret> (older keys).
KEY_RE = re.compile(r"^tskey-(auth-[A-Za-z0-9]{4,}|(?!auth-)[A-Za-z0-9]{4,})-[A-Za-z0-9]{8,}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
TAILNET = "tail1234.ts.net"
DEFAULT_CONTROL = "https://controlplane.tailscale.com"

# Preferences `tailscale up` sets, with the CLI's defaults on Linux.
DEFAULT_PREFS: dict[str, Any] = {
    "login-server": DEFAULT_CONTROL,
    "hostname": "",
    "advertise-tags": "",
    "advertise-routes": "",
    "advertise-exit-node": False,
    "accept-dns": True,
    "accept-routes": False,
    "ssh": False,
    "shields-up": False,
    "exit-node": "",
    "operator": "",
    "netfilter-mode": "on",
    "snat-subnet-routes": True,
}


def log(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def ip_cmd(*args: str) -> bool:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    return res.returncode == 0


def netfilter(tun_name: str, on: bool) -> None:
    """What tailscaled 1.48+ does with ``--netfilter-mode=on``, where iptables exists: its own
    ``ts-input`` chain, jumped to first from INPUT, accepting everything that arrives on the
    tailnet interface (ahead of ufw's chains). Any other mode, or the node down: no such rules."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue

        def run(*args: str, tool: str = tool) -> bool:
            res = subprocess.run([tool, "-w", *args], capture_output=True, check=False)
            return res.returncode == 0

        if on:
            run("-N", "ts-input")
            run("-F", "ts-input")
            run("-A", "ts-input", "-i", tun_name, "-j", "ACCEPT")
            if not run("-C", "INPUT", "-j", "ts-input"):
                run("-I", "INPUT", "1", "-j", "ts-input")
        else:
            while run("-D", "INPUT", "-j", "ts-input"):
                pass
            run("-F", "ts-input")
            run("-X", "ts-input")


class Daemon:
    def __init__(self, state_path: Path, tun_name: str) -> None:
        self.state_path = state_path
        self.up_log = state_path.parent / "standin-up.log"
        self.tun_name = tun_name
        self.tun_fd: int | None = None
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {
            "prefs": dict(DEFAULT_PREFS),
            "node_key": "",
            "want_running": False,
            "serve": {},
        }
        if state_path.exists():
            try:
                self.state.update(json.loads(state_path.read_text()))
            except (OSError, ValueError):
                log("stand-in: state file unreadable, starting logged out")

    # --- persistence and interface ---------------------------------------------------------------

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.chmod(0o600)
        tmp.replace(self.state_path)

    def open_tun(self) -> None:
        if self.tun_name == "userspace-networking":
            return
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR)
            ifr = struct.pack("16sH", self.tun_name.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(fd, TUNSETIFF, ifr)
            self.tun_fd = fd
            ip_cmd("link", "set", "dev", self.tun_name, "mtu", "1280")
        except OSError as exc:
            log(f"stand-in: no TUN device ({exc.strerror}); running without {self.tun_name}")

    def addresses(self) -> list[str]:
        if not self.state["node_key"]:
            return []
        digest = hashlib.sha256(self.state["node_key"].encode()).digest()
        ip4 = f"100.{64 + digest[0] % 64}.{digest[1]}.{max(digest[2], 1)}"
        ip6 = f"fd7a:115c:a1e0::{digest[3]:x}{digest[4]:02x}:{digest[5]:x}{digest[6]:02x}"
        return [ip4, ip6]

    def apply_interface(self) -> None:
        netfilter(
            self.tun_name,
            self.backend_state() == "Running" and self.state["prefs"]["netfilter-mode"] == "on",
        )
        if self.tun_fd is None:
            return
        ip_cmd("addr", "flush", "dev", self.tun_name)
        if self.backend_state() == "Running":
            ip4, ip6 = self.addresses()
            ip_cmd("addr", "add", f"{ip4}/32", "dev", self.tun_name)
            ip_cmd("-6", "addr", "add", f"{ip6}/128", "dev", self.tun_name)
            ip_cmd("link", "set", "dev", self.tun_name, "up")
        else:
            ip_cmd("link", "set", "dev", self.tun_name, "down")

    # --- state -----------------------------------------------------------------------------------

    def backend_state(self) -> str:
        if not self.state["node_key"]:
            return "NeedsLogin"
        return "Running" if self.state["want_running"] else "Stopped"

    def dns_name(self) -> str:
        host = self.state["prefs"]["hostname"] or socket.gethostname().split(".")[0]
        return f"{host.lower()}.{TAILNET}."

    def status(self) -> dict[str, Any]:
        state = self.backend_state()
        running = state == "Running"
        ips = self.addresses() if running else None
        prefs = self.state["prefs"]
        tags = [t for t in prefs["advertise-tags"].split(",") if t] or None
        health: list[str] = []
        if state == "NeedsLogin":
            health.append("You are logged out. The last login error was: none")
        elif state == "Stopped":
            health.append("Tailscale is stopped.")
        return {
            "Version": f"{STANDIN_VERSION}-standin",
            "TUN": self.tun_fd is not None,
            "BackendState": state,
            "HaveNodeKey": bool(self.state["node_key"]),
            "AuthURL": "",
            "TailscaleIPs": ips,
            "Self": {
                "ID": self.state["node_key"][:12],
                "PublicKey": f"nodekey:{self.state['node_key']}" if self.state["node_key"] else "",
                "HostName": prefs["hostname"] or socket.gethostname().split(".")[0],
                "DNSName": self.dns_name() if self.state["node_key"] else "",
                "OS": "linux",
                "TailscaleIPs": ips,
                "Tags": tags,
                "Online": running,
                "Active": running,
                "ExitNode": False,
            },
            "Health": health,
            "MagicDNSSuffix": TAILNET,
            "CurrentTailnet": {"Name": "example.com", "MagicDNSSuffix": TAILNET}
            if self.state["node_key"]
            else None,
            "Peer": {},
            "User": {},
        }

    # --- commands --------------------------------------------------------------------------------

    def up(self, req: dict[str, Any]) -> dict[str, Any]:
        prefs: dict[str, Any] = dict(DEFAULT_PREFS)
        prefs.update(req.get("prefs", {}))
        explicit = set(req.get("explicit", []))
        cur = self.state["prefs"]
        logged_in = bool(self.state["node_key"])
        for tag in filter(None, prefs["advertise-tags"].split(",")):
            if not tag.startswith("tag:") or len(tag) < 5:
                return {"error": f"tag: \"{tag}\": tags must start with 'tag:'"}
        if prefs["hostname"] and not HOSTNAME_RE.match(prefs["hostname"]):
            return {"error": f'invalid hostname "{prefs["hostname"]}"'}
        if logged_in and not req.get("reset"):
            missing = [
                name
                for name, default in DEFAULT_PREFS.items()
                if name not in explicit and cur.get(name, default) != default
            ]
            if missing:
                suggestion = " ".join(
                    f"--{name}={_flag_text(cur[name])}" for name in sorted(set(missing) | explicit)
                )
                return {
                    "error": "changing settings via 'tailscale up' requires mentioning all\n"
                    "non-default flags. To proceed, either re-run your command with --reset or\n"
                    "use the command below to explicitly mention the current value of\n"
                    f"all non-default settings:\n\n\ttailscale up {suggestion}"
                }
        control_changed = prefs["login-server"].rstrip("/") != cur["login-server"].rstrip("/")
        if (
            control_changed
            and logged_in
            and self.backend_state() == "Running"
            and not req.get("force_reauth")
        ):
            return {"error": "can't change --login-server without --force-reauth"}
        if not logged_in or req.get("force_reauth") or control_changed:
            key = str(req.get("auth_key", ""))
            if not key:
                url = f"https://login.tailscale.com/a/{secrets.token_hex(6)}"
                return {
                    "auth_url": url,
                    "error": "timeout waiting for Tailscale service to enter a Running state; "
                    'check health with "tailscale status"',
                }
            if not KEY_RE.match(key):
                # Deliberately leakier than the real message ("API key does not exist"): the key
                # is echoed, so tests prove the role redacts whatever the CLI prints.
                return {"error": f"backend error: invalid key: API key {key} not valid"}
            self.state["node_key"] = secrets.token_hex(32)
        self.state["prefs"] = prefs
        self.state["want_running"] = True
        self.save()
        self.apply_interface()
        flags = " ".join(f"--{k}={_flag_text(prefs[k])}" for k in sorted(explicit))
        with self.up_log.open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} up reset={bool(req.get('reset'))} "
                         f"{flags}\n")  # fmt: skip
        self.up_log.chmod(0o600)
        return {"ok": True}

    def serve_set(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.backend_state() != "Running":
            return {"error": "serve requires a running, logged-in node (BackendState Running)"}
        port = str(req["port"])
        web_key = f"{self.dns_name().rstrip('.')}:{port}"
        config = self.state["serve"] or {}
        if req.get("off"):
            config.get("TCP", {}).pop(port, None)
            config.get("Web", {}).pop(web_key, None)
            config = {k: v for k, v in config.items() if v}
        else:
            config.setdefault("TCP", {})[port] = {"HTTPS": True}
            config.setdefault("Web", {})[web_key] = {"Handlers": {"/": {"Proxy": req["target"]}}}
        self.state["serve"] = config
        self.save()
        return {"ok": True, "url": f"https://{web_key.removesuffix(':443')}/"}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        with self.lock:
            if cmd == "status":
                return self.status()
            if cmd == "up":
                return self.up(req)
            if cmd == "down":
                self.state["want_running"] = False
                self.save()
                self.apply_interface()
                return {"ok": True}
            if cmd == "logout":
                self.state.update(node_key="", want_running=False, serve={})
                self.state["prefs"] = dict(DEFAULT_PREFS)
                self.save()
                self.apply_interface()
                return {"ok": True}
            if cmd == "serve-status":
                return {"config": self.state["serve"] or {}}
            if cmd == "serve-reset":
                self.state["serve"] = {}
                self.save()
                return {"ok": True}
            if cmd == "serve-set":
                return self.serve_set(req)
        return {"error": f"stand-in tailscaled: unknown request {cmd!r}"}


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def serve_socket(daemon: Daemon, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o666)
    server.listen(16)

    def client(conn: socket.socket) -> None:
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            try:
                answer = daemon.handle(json.loads(data or b"{}"))
            except (ValueError, KeyError, TypeError) as exc:
                answer = {"error": f"stand-in tailscaled: bad request: {exc}"}
            conn.sendall(json.dumps(answer).encode() + b"\n")

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=client, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def cleanup(tun_name: str, socket_path: Path) -> int:
    netfilter(tun_name, on=False)
    if tun_name != "userspace-networking" and Path(f"/sys/class/net/{tun_name}").exists():
        ip_cmd("link", "del", "dev", tun_name)
    if socket_path.exists():
        socket_path.unlink()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tailscaled", description="tailscaled stand-in")
    parser.add_argument("--state", default="/var/lib/tailscale/tailscaled.state")
    parser.add_argument("--statedir", default="")
    parser.add_argument("--socket", default="/run/tailscale/tailscaled.sock")
    parser.add_argument("--port", type=int, default=41641)
    parser.add_argument("--tun", default="tailscale0")
    parser.add_argument("--cleanup", action="store_true")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--version", action="store_true")
    args = parser.parse_args(argv)
    if args.version:
        print(STANDIN_VERSION)
        return 0
    if not 0 <= args.port <= 65535:
        parser.error(f"invalid --port {args.port}")
    socket_path = Path(args.socket)
    if args.cleanup:
        return cleanup(args.tun, socket_path)
    state_path = Path(args.state) if args.state else Path(args.statedir) / "tailscaled.state"
    daemon = Daemon(state_path, args.tun)
    daemon.open_tun()
    daemon.apply_interface()
    serve_socket(daemon, socket_path)
    log(f"tailscaled stand-in {STANDIN_VERSION}: listening on {socket_path}, "
        f"backend {daemon.backend_state()}, udp port {args.port} (not bound)")  # fmt: skip
    sd_notify("READY=1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log("tailscaled stand-in: shutting down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
