"""Verify role `firewall`: ufw really on, and reachability probed from other hosts.

Hosts (molecule.yml): two targets and a client on the scenario's own podman network.
- firewall-bookworm: gateway allowed on interface tailscale0 only; unmanaged rules kept.
- firewall-trixie: gateway allowed from the client's address only; unmanaged rules purged.
Both targets run listeners on 0.0.0.0/:: for 8080, 11434, 8000 and 9999 (prepare.yml), and a
simulated tailnet peer in network namespace `tailnet` behind a veth named tailscale0.
"""

from __future__ import annotations

import json
import re
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import testinfra

from tests.molecule_support import (
    changed_tasks,
    run_playbook,
    scenario_playbook,
)

testinfra_hosts = ["ansible://targets"]

BOOKWORM = "firewall-bookworm"
TRIXIE = "firewall-trixie"
CLIENT = "firewall-client"
OPEN = "open"

# Connects to every (address, port) at once, 2 s timeout each; reads an SSH banner if one comes.
PROBE = textwrap.dedent(
    """\
    import json, socket, sys, threading
    results = {}
    def probe(addr, port):
        key = f"{addr}|{port}"
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect((addr, port))
            except socket.timeout:
                results[key] = {"state": "timeout"}
                return
            except ConnectionRefusedError:
                results[key] = {"state": "refused"}
                return
            except OSError as exc:
                results[key] = {"state": "error: " + str(exc)}
                return
            banner = ""
            if port == 22:
                s.settimeout(2)
                try:
                    banner = s.recv(64).decode(errors="replace")
                except OSError:
                    pass
            results[key] = {"state": "open", "banner": banner}
    targets = json.loads(sys.argv[1])
    threads = [threading.Thread(target=probe, args=(a, p)) for a, p in targets]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps(results))
    """
)


@cache
def node(name: str) -> Any:
    return testinfra.get_host(f"podman://{name}")


@cache
def address(name: str) -> str:
    out = node(name).check_output("ip -4 -o addr show dev eth0")
    match = re.search(r"inet ([0-9.]+)/", out)
    assert match, out
    return match.group(1)


def probe(prober: Any, targets: list[tuple[str, int]], netns: str = "") -> dict[str, str]:
    prefix = f"ip netns exec {netns} " if netns else ""
    cmd = f"{prefix}python3 -c {_quote(PROBE)} {_quote(json.dumps(targets))}"
    out = prober.run(cmd)
    assert out.rc == 0, out.stderr
    raw: dict[str, dict[str, str]] = json.loads(out.stdout)
    states = {key: value["state"] for key, value in raw.items()}
    for key, value in raw.items():
        if key.endswith("|22") and value["state"] == OPEN:
            # A real sshd answers with its banner: the port is not just any listener.
            assert value["banner"].startswith("SSH-2.0-OpenSSH"), value
    return states


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture(scope="module")
def from_client() -> dict[str, str]:
    targets = [
        (address(t), port) for t in (BOOKWORM, TRIXIE) for port in (22, 8080, 11434, 8000, 9999)
    ]
    return probe(node(CLIENT), targets)


@pytest.mark.parametrize(
    ("target", "port", "reachable"),
    [
        (BOOKWORM, 22, True),
        (BOOKWORM, 8080, False),  # gateway only on tailscale0
        (BOOKWORM, 11434, False),  # even though an unmanaged rule allowed it before the run
        (BOOKWORM, 8000, False),
        (BOOKWORM, 9999, True),  # unmanaged rule kept (no purge)
        (TRIXIE, 22, True),
        (TRIXIE, 8080, True),  # the client's address is an allowed source
        (TRIXIE, 11434, False),
        (TRIXIE, 8000, False),
        (TRIXIE, 9999, False),  # unmanaged rule purged
    ],
)
def test_reachability_from_the_client(
    from_client: dict[str, str], target: str, port: int, reachable: bool
) -> None:
    state = from_client[f"{address(target)}|{port}"]
    assert (state == OPEN) is reachable, f"{target}:{port} from {CLIENT}: {state}"


def test_listeners_really_listen_on_all_addresses() -> None:
    # Control for the refused probes above: the same ports answer from the host itself
    # (loopback path, which ufw lets through), so the firewall is what blocks them.
    for target in (BOOKWORM, TRIXIE):
        states = probe(node(target), [(address(target), p) for p in (8080, 11434, 8000, 9999)])
        assert set(states.values()) == {OPEN}, (target, states)


def test_gateway_source_rule_is_per_address() -> None:
    # trixie allows the client's address only: another host on the same network is refused.
    states = probe(node(BOOKWORM), [(address(TRIXIE), 8080), (address(TRIXIE), 22)])
    assert states[f"{address(TRIXIE)}|8080"] != OPEN, states
    assert states[f"{address(TRIXIE)}|22"] == OPEN, states


@pytest.mark.parametrize(
    ("target", "gateway_open"), [(BOOKWORM, True), (TRIXIE, False)], ids=["allowed", "not-allowed"]
)
def test_tailnet_interface_rule(target: str, gateway_open: bool) -> None:
    # Packets from the peer behind tailscale0, over IPv4 and IPv6.
    peer_targets = [
        (addr, port) for addr in ("100.64.0.1", "fd7a:115c:a1e0::1") for port in (22, 8080, 11434)
    ]
    states = probe(node(target), peer_targets, netns="tailnet")
    for addr in ("100.64.0.1", "fd7a:115c:a1e0::1"):
        assert states[f"{addr}|22"] == OPEN, states
        assert (states[f"{addr}|8080"] == OPEN) is gateway_open, states
        assert states[f"{addr}|11434"] != OPEN, states


def test_ufw_enabled_with_default_deny(host: Any) -> None:
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing)" in status
    assert "Logging: on (low)" in status
    assert host.service("ufw").is_enabled
    # Active now, as after a reboot (Debian leaves it inactive until the next boot).
    assert host.run("systemctl is-active ufw.service").stdout.strip() == "active"


@pytest.mark.parametrize("tool", ["iptables", "ip6tables"])
def test_netfilter_rules_loaded(host: Any, tool: str) -> None:
    chain = "ufw-user-input" if tool == "iptables" else "ufw6-user-input"
    assert "-P INPUT DROP" in host.check_output(f"{tool} -S INPUT")
    rules = host.check_output(f"{tool} -S {chain}")
    assert re.search(r"--dport 22 .*-j ufw6?-user-limit", rules), rules
    for port in (11434, 8000):
        assert re.search(rf"--dport {port} -j DROP", rules), rules


def test_ipv6_filtered_like_ipv4(host: Any) -> None:
    assert "IPV6=yes" in host.file("/etc/default/ufw").content_string.splitlines()
    lines = host.check_output("ufw status verbose").splitlines()
    rules = [line for line in lines if " IN " in line]
    v6 = {re.sub(r"\s+", " ", line.replace(" (v6)", "")) for line in rules if "(v6)" in line}
    v4_any = {
        re.sub(r"\s+", " ", line) for line in rules if "(v6)" not in line and "Anywhere" in line
    }
    # SSH and the two denied ports at least, on both families.
    assert len(v4_any) >= 3, rules
    assert v6 == v4_any, (v4_any, v6)


def test_denied_ports_lead_the_rule_list(host: Any) -> None:
    numbered = host.check_output("ufw status numbered")
    first = re.findall(r"^\[ *[12]\] (\S+) +DENY IN", numbered, re.MULTILINE)
    assert sorted(first) == ["11434/tcp", "8000/tcp"], numbered


def test_ssh_rate_limited(host: Any) -> None:
    status = host.check_output("ufw status verbose")
    assert re.search(r"^22/tcp +LIMIT IN +Anywhere ", status, re.MULTILINE), status
    assert re.search(r"^22/tcp \(v6\) +LIMIT IN +Anywhere \(v6\)", status, re.MULTILINE), status


def test_unmanaged_and_stale_rules(host: Any) -> None:
    added = host.check_output("ufw show added")
    name = host.backend.get_hostname()
    # The rule that opened Ollama's port and our own leftover are gone everywhere.
    assert "ufw allow 11434/tcp\n" not in added + "\n"
    assert "7777" not in added
    # Someone else's rule on an unrelated port survives unless purge is on.
    assert ("ufw allow 9999/tcp" in added) is (name == BOOKWORM), added


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"ansible_connection": "ssh", "ansible_port": 2222}, "would lock this connection out"),
        ({"firewall_extra_rules": [{"port": 11434}]}, "would open always-denied port(s)"),
        ({"firewall_gateway_allowed_sources": ["10.0.0.0/33"]}, "sources must be CIDRs"),
        ({"firewall_gateway_port": 11434}, "must not be one of the always-denied ports"),
    ],
    ids=["ssh-port-mismatch", "extra-opens-ollama", "bad-cidr", "gateway-on-denied-port"],
)
def test_bad_settings_stop_before_any_change(
    tmp_path: Path, extra_vars: dict[str, Any], message: str
) -> None:
    play = tmp_path / "guard.yml"
    play.write_text(
        f"- name: Guard\n  hosts: {BOOKWORM}\n  gather_facts: false\n  roles: [firewall]\n"
    )
    before = node(BOOKWORM).check_output("ufw show added")
    run = run_playbook(play, "-e", json.dumps(extra_vars))
    assert run.returncode != 0, run.output[-3000:]
    assert message in run.output, run.output[-3000:]
    recap = run.recaps[BOOKWORM]
    assert (recap.failed, recap.changed) == (1, 0), run.output[-3000:]
    assert node(BOOKWORM).check_output("ufw show added") == before


def test_policy_and_logging_changes_applied_and_only_then() -> None:
    """The role skips `ufw default`/`ufw logging` when ufw already holds the value; a new
    value must still be applied (and reported), and going back must too."""
    converge = scenario_playbook()
    changed = {"firewall : Set the default policies", "firewall : Set the logging level"}
    wanted = {"firewall_default_incoming": "reject", "firewall_logging": "medium"}
    try:
        run = run_playbook(converge, "--limit", BOOKWORM, "-e", json.dumps(wanted))
        assert run.returncode == 0, run.output[-3000:]
        assert set(changed_tasks(run.output)) == changed, run.output[-3000:]
        status = node(BOOKWORM).check_output("ufw status verbose")
        assert "Default: reject (incoming), allow (outgoing)" in status, status
        assert "Logging: on (medium)" in status, status
    finally:
        back = run_playbook(converge, "--limit", BOOKWORM)
    assert back.returncode == 0, back.output[-3000:]
    assert set(changed_tasks(back.output)) == changed, back.output[-3000:]
    status = node(BOOKWORM).check_output("ufw status verbose")
    assert "Default: deny (incoming), allow (outgoing)" in status, status
    assert "Logging: on (low)" in status, status
