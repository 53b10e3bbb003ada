"""`make demo` / `make demo-down`: the whole stack on a local sandbox host, with stand-ins.

``make demo`` starts (or reuses) the podman systemd container ``ai-local-core-sandbox`` from the
Debian 12 test-host image, with its sshd published on 127.0.0.1:SSH_PORT (and the gateway on
127.0.0.1:GATEWAY_PORT, for ``make smoke``) and a root key made for it
(``.cache/sandbox/id_ed25519``, the client settings in ``.cache/sandbox/ssh_config``), builds
the vendor stand-ins (tests/sandbox/prepare_standins.py), runs ``playbooks/site.yml`` against
``inventories/sandbox`` over SSH with pipelining, exactly as against a real server, except that
the stand-ins replace Ollama, cloudflared and tailscale (announced loudly), and then shows
it working from inside the container: an authenticated completion through the gateway, a refused
unauthenticated one (401 JSON) and the status table. After the first site.yml run it runs
site.yml once more and requires 0 changed (its output, with the task times:
``.cache/sandbox/site-rerun.log``); both times go to ``.cache/bench/provisioning-sandbox.json``
for ``make bench`` (the converge time only when the first run converged a new container). A
second ``make demo`` reuses the container. ``make demo-down`` removes the container and the
stand-in files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from tests.molecule_support import changed_tasks, mitogen_env, parse_recap
from tests.sandbox.prepare_standins import STANDIN_BANNER
from tests.sandbox.prepare_standins import main as prepare_standins

REPO = Path(__file__).resolve().parents[2]
CONTAINER = "ai-local-core-sandbox"
IMAGE = "localhost/ai-local-core-bookworm:latest"
INVENTORY = REPO / "inventories" / "sandbox" / "hosts.yml"
STANDINS_DIR = REPO / ".cache" / "sandbox"
# sshd of the sandbox, published on the controller's loopback; inventories/sandbox/hosts.yml
# reaches it through SSH_CONFIG (written here), as `make deploy` reaches a server.
SSH_PORT = 22022
# The gateway (nginx, 0.0.0.0:8080 in the sandbox inventory), published on the controller's
# loopback for `make smoke` (inventories/sandbox: smoke_url).
GATEWAY_PORT = 28080
# Ports the container publishes on the controller's loopback ("host-ip:host-port:container-port").
PUBLISHED = (f"127.0.0.1:{SSH_PORT}:22", f"127.0.0.1:{GATEWAY_PORT}:8080")
SSH_KEY = STANDINS_DIR / "id_ed25519"
SSH_CONFIG = STANDINS_DIR / "ssh_config"
PROVISIONING_JSON = REPO / ".cache" / "bench" / "provisioning-sandbox.json"
RERUN_LOG = STANDINS_DIR / "site-rerun.log"
RERUN_PLAIN_LOG = STANDINS_DIR / "site-rerun-plain.log"
SOURCE = "make demo (tests/sandbox/demo.py)"
GATEWAY = "http://127.0.0.1:8080"
COMPLETION_PATH = "/api/generate"
COMPLETION_BODY: dict[str, object] = {
    "model": "llama3.1:8b",
    "prompt": "Hello from the sandbox",
    "stream": False,
}
SERVICES_PATH = "/services/v1/complete"
SERVICES_BODY: dict[str, object] = {"user": "Hello from the Waldus side"}


class DemoError(Exception):
    """A step that failed: printed, exit status 1."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


@dataclass(frozen=True)
class SiteRun:
    """One site.yml run: the recap's changed count, its wall time and its output."""

    changed: int
    seconds: float
    output: str

    @property
    def tasks(self) -> int:
        """Tasks the run went through (each task banner once; skipped ones included)."""
        return sum(1 for line in self.output.splitlines() if line.startswith("TASK ["))


def banner(text: str) -> None:
    line = "=" * 100
    print(f"\n{line}\n{text}\n{line}", flush=True)


def podman(*args: str, check: bool = True, stdin: str | None = None) -> str:
    res = subprocess.run(
        ["podman", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and res.returncode != 0:
        raise DemoError(f"podman {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout.strip()


def container_state() -> str:
    """'running', another podman state, or '' when there is no such container."""
    res = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Status}}", CONTAINER],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.strip() if res.returncode == 0 else ""


def wait_for_systemd(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = podman("exec", CONTAINER, "systemctl", "is-system-running", check=False)
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise DemoError(f"systemd in {CONTAINER} did not come up within {timeout:.0f} s ({state!r})")


def create_container() -> None:
    print(f"creating the sandbox container {CONTAINER} from {IMAGE}")
    podman(
        "run",
        "--detach",
        "--name",
        CONTAINER,
        "--hostname",
        "sandbox",
        "--privileged",
        "--systemd",
        "always",
        *(arg for port in PUBLISHED for arg in ("--publish", port)),
        IMAGE,
        "/sbin/init",
    )


def reuse_problem(state: str) -> str | None:
    """Why the existing container cannot be reused (None: it runs with systemd up)."""
    ports = podman("port", CONTAINER, check=False).splitlines()  # "22/tcp -> 127.0.0.1:22022"
    missing = [
        port
        for port in PUBLISHED
        if f"{port.rsplit(':', 1)[1]}/tcp -> {port.rsplit(':', 1)[0]}" not in ports
    ]
    if missing:
        return f"it does not publish {', '.join(missing)} (made by an older `make demo`)"
    try:
        if state == "running":
            print(f"reusing the running sandbox container {CONTAINER}")
        else:
            print(f"starting the existing sandbox container {CONTAINER} ({state})")
            podman("start", CONTAINER)
        wait_for_systemd()
    except DemoError as exc:
        # e.g. a container whose processes were killed with the machine's session: podman still
        # lists it as running, but nothing answers inside.
        return str(exc)
    return None


def ensure_container() -> bool:
    """Start the sandbox like Molecule's platforms: privileged, systemd as PID 1.

    An existing container is reused when it works; one that does not (stale, made by an older
    `make demo`) is replaced. Returns whether the container was created now (a fresh host for
    a full converge).
    """
    if shutil.which("podman") is None:
        raise DemoError("podman is not installed: run `make setup` first")
    if not podman("images", "-q", IMAGE, check=False):
        raise DemoError(f"image {IMAGE} is missing: run `make images`")
    state = container_state()
    if state:
        problem = reuse_problem(state)
        if problem is None:
            enable_ssh()
            return False
        print(f"replacing the sandbox container {CONTAINER}: {problem}")
        podman("rm", "--force", "--time", "10", CONTAINER)
    create_container()
    wait_for_systemd()
    enable_ssh()
    return True


def enable_ssh() -> None:
    """Root logs in with the sandbox's own key; sshd runs; the client config points at it."""
    STANDINS_DIR.mkdir(parents=True, exist_ok=True)
    if not SSH_KEY.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", CONTAINER, "-f", str(SSH_KEY)],
            check=True,
        )
    pubkey = SSH_KEY.with_suffix(".pub").read_text(encoding="utf-8")
    podman(
        "exec",
        "-i",
        CONTAINER,
        "sh",
        "-c",
        "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys && "
        "systemctl enable --now ssh >/dev/null 2>&1",
        stdin=pubkey,
    )
    SSH_CONFIG.write_text(
        f"""# Written by `make demo` (tests/sandbox/demo.py): the sandbox container's sshd.
Host {CONTAINER}
  HostName 127.0.0.1
  Port {SSH_PORT}
  User root
  IdentityFile {SSH_KEY}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
""",
        encoding="utf-8",
    )
    deadline = time.monotonic() + 30
    while True:
        res = subprocess.run(
            ["ssh", "-F", str(SSH_CONFIG), "-o", "ConnectTimeout=5", CONTAINER, "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise DemoError(f"the sandbox's sshd did not answer on {SSH_PORT}: {res.stderr}")
        time.sleep(1)


def run_site(
    standins: Path,
    extra: list[str],
    *,
    stream: bool = True,
    env_extra: dict[str, str] | None = None,
) -> SiteRun:
    """Run site.yml (its output streamed, or only kept); returns the recap's changed count."""
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(INVENTORY),
        str(REPO / "playbooks" / "site.yml"),
        "-e",
        f"@{standins}",
        *extra,
    ]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="false")
    env.update(env_extra or {})
    shown = " ".join(f"{k}=..." for k in env_extra or {})
    print(f"$ {shown}{' ' if shown else ''}ansible-playbook " + " ".join(cmd[1:]), flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if stream:
            sys.stdout.write(line)
    rc = proc.wait()
    took = time.monotonic() - started
    output = "".join(lines)
    if rc != 0:
        if not stream:
            sys.stdout.write(output[-8000:])
        raise DemoError(f"site.yml failed (exit {rc}) after {took:.0f} s; see the output above")
    recap = parse_recap(output).get("sandbox")
    if recap is None:
        raise DemoError("site.yml printed no PLAY RECAP for the sandbox")
    if stream:
        print(f"site.yml: {took:.0f} s, changed={recap.changed}")
    return SiteRun(recap.changed, took, output)


def rerun_site(
    standins: Path, extra: list[str], *, env_extra: dict[str, str] | None = None
) -> SiteRun:
    """Run site.yml again on the converged sandbox: it must change nothing."""
    how = "with mitogen's strategy" if env_extra else "over plain SSH"
    log = RERUN_LOG if env_extra else RERUN_PLAIN_LOG
    print(f"\nre-running site.yml {how} (it must change nothing) ...", flush=True)
    run = run_site(standins, extra, stream=False, env_extra=env_extra)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(run.output, encoding="utf-8")  # its task times (profile_tasks)
    if run.changed:
        tasks = changed_tasks(run.output)
        listing = "\n".join(f"  - {name}" for name in tasks) or "  (no task names found)"
        raise DemoError(
            f"the re-run of site.yml changed {run.changed} things, 0 required "
            f"(output: {log.relative_to(REPO)}); changed tasks:\n{listing}"
        )
    print(f"re-run (no-op, {how}): {run.seconds:.0f} s, {run.tasks} tasks, changed=0")
    return run


def host_description() -> str:
    return (
        f"podman systemd container {CONTAINER} ({IMAGE}) over SSH with pipelining, "
        f"controller {socket.gethostname()}, "
        f"{os.cpu_count()} CPUs shared with the controller, 1-min load average "
        f"{os.getloadavg()[0]:.1f} after the re-run"
    )


def provisioning_record(
    converge: SiteRun,
    rerun: SiteRun,
    *,
    fresh: bool,
    extra: list[str],
    plain: SiteRun | None = None,
) -> dict[str, object]:
    """The timings for bench/run.py; the converge figure only from a newly created container.
    converge and rerun ran as the operator targets do by default (mitogen's strategy), plain
    is the same no-op re-run with plain SSH (the MITOGEN=0 switch)."""
    source = SOURCE if not extra else f"{SOURCE}, ansible-playbook args: {' '.join(extra)}"
    return {
        "converge_s": round(converge.seconds, 1) if fresh else None,
        "noop_rerun_s": round(rerun.seconds, 1),
        "noop_tasks": rerun.tasks,
        "noop_rerun_plain_s": round(plain.seconds, 1) if plain else None,
        "host": host_description(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "fresh": fresh,
    }


def write_provisioning(record: dict[str, object]) -> None:
    PROVISIONING_JSON.parent.mkdir(parents=True, exist_ok=True)
    PROVISIONING_JSON.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if record["fresh"]:
        note = "full converge of a new container"
    else:
        note = (
            "converge_s null: the container existed already, so the first run was no full "
            "converge (`make demo-down` first for that figure)"
        )
    print(f"provisioning figures written to {PROVISIONING_JSON.relative_to(REPO)} ({note})")


def curl_in_container(path: str, body: dict[str, object], api_key: str | None) -> Answer:
    """POST from inside the container to the gateway; the key travels on stdin, not argv."""
    argv = ["exec", "-i", CONTAINER, "curl", "-sS", "--max-time", "60"]
    argv += ["-H", "Content-Type: application/json", "-H", "@-"]
    argv += ["-d", json.dumps(body), "-w", "\n%{http_code}", f"{GATEWAY}{path}"]
    header = f"Authorization: Bearer {api_key}\n" if api_key else "X-Demo: no-credentials\n"
    out = podman(*argv, stdin=header)
    text, _, code = out.rpartition("\n")
    return Answer(int(code), text)


def show(title: str, path: str, body: dict[str, object], answer: Answer, key: bool) -> str:
    auth = '-H "Authorization: Bearer $SANDBOX_API_KEY" ' if key else ""
    request = (
        f"podman exec {CONTAINER} curl -sS {auth}-H 'Content-Type: application/json' "
        f"-d '{json.dumps(body)}' {GATEWAY}{path}"
    )
    print(f"\n--- {title}\n$ {request}\nHTTP {answer.status}\n{answer.body.strip()}")
    return f"{request}\n  -> HTTP {answer.status} {answer.body.strip()[:160]}"


def status_table(standins: Path) -> bool:
    status = REPO / "playbooks" / "status.yml"
    if not status.exists():
        print("playbooks/status.yml does not exist yet: skipping the status table")
        return False
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(INVENTORY),
        str(status),
        "-e",
        f"@{standins}",
    ]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    res = subprocess.run(cmd, cwd=REPO, env=env, check=False)
    if res.returncode != 0:
        raise DemoError(f"playbooks/status.yml failed (exit {res.returncode})")
    return True


def demo(extra: list[str]) -> int:
    started = time.monotonic()
    banner("ai-local-core sandbox demo: playbooks/site.yml against a local podman container")
    fresh = ensure_container()
    if prepare_standins(["--out", str(STANDINS_DIR), "--quiet"]) != 0:
        raise DemoError("building the stand-ins failed")
    standins = STANDINS_DIR / "standins.yml"
    banner(
        f"!!! {STANDIN_BANNER}.\n"
        f"!!! Vendor artifacts and public test credentials come from {standins}.\n"
        "!!! Everything else is the real site playbook and the real roles."
    )
    # As `make deploy` does by default (MITOGEN=1): mitogen's strategy; then the no-op re-run
    # both ways, the default and the MITOGEN=0 switch (plain SSH with pipelining).
    mitogen = mitogen_env()
    if mitogen is None:
        raise DemoError("mitogen is not installed in the venv: run `make setup`")
    converge = run_site(standins, extra, env_extra=mitogen)
    rerun = rerun_site(standins, extra, env_extra=mitogen)
    plain = rerun_site(standins, extra)
    write_provisioning(provisioning_record(converge, rerun, fresh=fresh, extra=extra, plain=plain))
    data = yaml.safe_load(standins.read_text(encoding="utf-8"))
    api_key = str(data["gateway_api_keys"][0]["key"])

    banner("The gateway at work (requests sent from inside the sandbox, to 127.0.0.1:8080)")
    ok = curl_in_container(COMPLETION_PATH, COMPLETION_BODY, api_key)
    working = show("authenticated completion (API key)", COMPLETION_PATH, COMPLETION_BODY, ok, True)
    services = curl_in_container(SERVICES_PATH, SERVICES_BODY, api_key)
    show(
        "authenticated, the services API (Waldus contract)",
        SERVICES_PATH,
        SERVICES_BODY,
        services,
        True,
    )
    refused = curl_in_container(COMPLETION_PATH, COMPLETION_BODY, None)
    refusal = show("no credentials", COMPLETION_PATH, COMPLETION_BODY, refused, False)

    banner("Status")
    status_table(standins)

    failures = []
    if ok.status != 200 or "Stand-in reply" not in ok.body:
        failures.append(f"the authenticated completion answered {ok.status}")
    if services.status != 200:
        failures.append(f"the services API answered {services.status}")
    if refused.status != 401 or not refused.body.lstrip().startswith("{"):
        failures.append(f"the unauthenticated request answered {refused.status}, not 401 JSON")
    banner(
        f"Demo finished in {time.monotonic() - started:.0f} s "
        f"(SANDBOX_API_KEY is the public test key in {standins}).\n"
        f"WORKING: {working}\nREFUSED: {refusal}\n"
        "Remove the sandbox with: make demo-down"
    )
    if failures:
        raise DemoError("; ".join(failures))
    return 0


def demo_down() -> int:
    if shutil.which("podman") is not None and container_state():
        podman("rm", "--force", "--time", "10", CONTAINER)
        print(f"removed the sandbox container {CONTAINER}")
    else:
        print(f"no sandbox container {CONTAINER}")
    if STANDINS_DIR.exists():
        shutil.rmtree(STANDINS_DIR)
        print(f"removed {STANDINS_DIR.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=["up", "down"], nargs="?", default="up")
    parser.add_argument(
        "playbook_args", nargs="*", help="more ansible-playbook arguments for site.yml (after --)"
    )
    args = parser.parse_args(argv)
    try:
        return demo(args.playbook_args) if args.action == "up" else demo_down()
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
