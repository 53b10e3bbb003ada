"""Filters shared by the roles."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shlex
import socket
import subprocess
from typing import Any

CONTAINER_TYPES = frozenset(
    {"container", "podman", "docker", "lxc", "systemd-nspawn", "containerd"}
)


def is_container(facts: dict[str, Any]) -> bool:
    """True when the gathered facts describe a container guest."""
    return (
        facts.get("virtualization_role") == "guest"
        and facts.get("virtualization_type") in CONTAINER_TYPES
    )


# Unit and drop-in names end up in a shell command and in a template's `validate:` string, where
# Ansible formats `%s` with Python's % operator: no slash, space, quote or percent sign.
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@\\-]+\.[a-z]+")
_DROPIN_NAME = re.compile(r"[A-Za-z0-9:_.@\\-]+\.conf")

# $1: the unit's name, $2: the candidate file (Ansible's `%s`). The candidate goes into a scratch
# unit directory, searched first (SYSTEMD_UNIT_PATH's trailing ":" appends the usual paths, so
# the live drop-ins apply). Named by its path so systemd 247 (Debian 11) and 249 (Ubuntu 22.04),
# which lack the FILE:UNIT form, load it too.
_VERIFY_UNIT = (
    'u=$1; d=$(mktemp -d) && trap "rm -rf $d" EXIT && cp "$2" "$d/$u" && cd "$d" &&'
    ' out=$(SYSTEMD_UNIT_PATH="$d:" systemd-analyze verify "$d/$u" 2>&1); rc=$?;'
    ' echo "$out"; [ $rc -eq 0 ] && ! echo "$out" | grep -qF "$u"'
)
# $1: the unit, $2: the drop-in's name, $3: the candidate. The unit itself is the live one, found
# through the trailing ":"; the scratch drop-in shadows the installed one of the same name.
_VERIFY_DROPIN = (
    'u=$1; n=$2; d=$(mktemp -d) && trap "rm -rf $d" EXIT && mkdir "$d/$u.d" &&'
    ' cp "$3" "$d/$u.d/$n" && cd "$d" &&'
    ' out=$(SYSTEMD_UNIT_PATH="$d:" systemd-analyze verify "$u" 2>&1); rc=$?;'
    ' echo "$out"; [ $rc -eq 0 ] && ! echo "$out" | grep -qF "$n"'
)


def systemd_verify_command(unit: str, dropin: str | None = None) -> str:
    """A template `validate:` command that checks a candidate systemd unit file, or with
    ``dropin`` a candidate drop-in ``<unit>.d/<dropin>`` of the installed unit.

    It fails when ``systemd-analyze verify`` fails, and on any complaint that names the file:
    an unknown key or a bad assignment is only a warning to systemd.
    """
    if not _UNIT_NAME.fullmatch(unit):
        raise ValueError(f"not a systemd unit name: {unit!r}")
    if dropin is None:
        return f"sh -c '{_VERIFY_UNIT}' verify-unit {shlex.quote(unit)} %s"
    if not _DROPIN_NAME.fullmatch(dropin):
        raise ValueError(f"not a drop-in name (NAME.conf): {dropin!r}")
    return f"sh -c '{_VERIFY_DROPIN}' verify-dropin {shlex.quote(unit)} {shlex.quote(dropin)} %s"


# Tailscale gives its nodes addresses from these ranges (100.64.0.0/10 is the CGNAT range) and
# MagicDNS names under ts.net.
TAILNET_NETWORKS = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fd7a:115c:a1e0::/48"),
)


def _addresses(name: str) -> list[str]:
    """The addresses a connection to ``name`` may use: the name itself when it is an address,
    else what ssh's configuration (``ssh -G``: a Host alias with its HostName) and the
    controller's resolver (MagicDNS included, when the controller is in the tailnet) make of it."""
    name = name.strip().strip("[]")
    try:
        return [str(ipaddress.ip_address(name))]
    except ValueError:
        pass
    names = {name}
    try:
        out = subprocess.run(
            ["ssh", "-G", name], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        names |= {line.split()[1] for line in out.splitlines() if line.startswith("hostname ")}
    except (OSError, subprocess.SubprocessError):
        pass
    found: list[str] = []
    for candidate in sorted(names):
        if candidate.rstrip(".").endswith(".ts.net"):
            found.append(candidate)
            continue
        try:
            found.append(str(ipaddress.ip_address(candidate)))
            continue
        except ValueError:
            pass
        with contextlib.suppress(OSError, UnicodeError):
            found += [str(info[4][0]) for info in socket.getaddrinfo(candidate, None)]
    return found


def connection_tunnel(address: str, ssh_args: str = "") -> str:
    """The tunnel the play's connection to a host runs through, as far as the controller can
    tell: ``cloudflared`` (ssh arguments that proxy through ``cloudflared access``),
    ``tailscale`` (a tailnet address or MagicDNS name), else ``""``.

    A tunnel role refuses to remove the tunnel its own connection uses. Not seen: a ProxyCommand
    in the user's ~/.ssh/config for cloudflared (``ssh -G`` shows it, but it is not read here).
    """
    if "cloudflared" in ssh_args:
        return "cloudflared"
    for found in _addresses(address):
        if found.rstrip(".").endswith(".ts.net"):
            return "tailscale"
        try:
            ip = ipaddress.ip_address(found.split("%")[0])
        except ValueError:
            continue
        if any(ip in net for net in TAILNET_NETWORKS):
            return "tailscale"
    return ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "connection_tunnel": connection_tunnel,
            "is_container": is_container,
            "systemd_verify_command": systemd_verify_command,
        }
