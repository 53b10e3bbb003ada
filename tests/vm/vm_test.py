"""``make vm-test``: provision a Debian 12 qemu VM with the site playbook over SSH and check it.

Phases (each timed, summary at the end):

1. image    build or reuse the cached VM image (tests/vm/image.py)
2. boot     a fresh overlay; KVM where it really works, else TCG; wait for SSH
3. converge ansible-playbook playbooks/site.yml over SSH, exactly as on a server, with the vendor
            binaries replaced by the test stand-ins (tests/sandbox/prepare_standins.py). The first
            attempt is cut off on purpose (ansible-playbook and its SSH connections killed, as when
            a laptop loses the connection mid-deploy) while the services' venv is being filled;
            a second run has to converge from whatever state that left.
4. verify   the testinfra suite tests/vm/test_node.py over SSH
5. faults   tests/vm/test_faults.py (Ollama killed mid-stream: systemd brings it back, the next
            request works) and a models.yml run on a nearly full disk (clear failure, 0 changed)
6. firewall probed from outside the VM through forwarded ports (the gateway's, Ollama's, the
            services API's and a probe listener on all addresses): none answers HTTP, SSH does;
            the probe port opened in ufw for a moment answers, which shows the path works
7. reboot   reboot once; time until SSH and systemd are back; verify again
8. destroy  poweroff over SSH, then qemu by its pid file (always, also on failure or Ctrl-C)

No no-op re-run here: the `default` Molecule scenario converges site.yml twice and requires 0
changed (idempotence) and runs it in check mode. The converge time goes to
.cache/bench/provisioning.json for `make bench`.

    python -m tests.vm.vm_test [--playbook playbooks/site.yml] [--keep] [--skip-reboot]
                               [--no-interrupt] [--skip-faults] [--plain-ssh]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from tests.molecule_support import PlaybookRun, changed_tasks, mitogen_env, parse_recap
from tests.vm.image import CACHE_ROOT, REPO, ImageError, ensure_image
from tests.vm.machine import Vm, VmError

HERE = Path(__file__).resolve().parent
NODE_VARS = HERE / "node_vars.yml"
PROVISIONING_JSON = REPO / ".cache" / "bench" / "provisioning.json"
# Where the first converge is cut off: while pip fills the services' venv (half a venv on disk).
INTERRUPT_AT = "TASK [ai_services : Install the package's dependencies"
INTERRUPT_DELAY_S = 8.0
# The disk-full fault: a model the stand-in registry has, and what is left free (GiB) below
# node_vars' ollama_pull_min_free_gb.
DISK_FULL_MODEL = "qwen2.5:0.5b"
DISK_FULL_LEAVE_GIB = 0.5
# Guest ports forwarded to the controller's loopback for the outside-in firewall probe: the
# gateway, Ollama, the services API (all bound to loopback on the node, and denied by ufw), and a
# probe listener the test starts on all addresses (denied by ufw until the test allows it).
GATEWAY_PORT, OLLAMA_PORT, SERVICES_PORT, PROBE_PORT = 8080, 11434, 8000, 18080
PROBED_PORTS = (GATEWAY_PORT, OLLAMA_PORT, SERVICES_PORT, PROBE_PORT)
# How long a forwarded connection may stay silent before it counts as "no HTTP answer".
PROBE_TIMEOUT_S = 8.0
STANDINS = REPO / "tests" / "sandbox" / "prepare_standins.py"
HOSTNAME = "vm-test"
# Where the testinfra suite finds the run's facts (ports, credentials); not AI_LOCAL_CORE_*: the
# repository's conftest clears those for every test.
CONTEXT_ENV = "VMTEST_CONTEXT"


class VmTestError(Exception):
    """A phase failed (printed, exit status 1)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM: clean up and stop."""


def log(msg: str) -> None:
    print(f"[vm-test] {msg}", flush=True)


@dataclass
class Timings:
    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        log(f"=== {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = time.monotonic() - started
            log(f"=== {name}: {self.phases[name]:.0f}s")

    def report(self) -> str:
        width = max((len(k) for k in self.phases), default=0)
        return "\n".join(f"  {k:<{width}}  {v:7.1f}s" for k, v in self.phases.items())


def write_inventory(vm: Vm, path: Path) -> None:
    node_vars: dict[str, Any] = yaml.safe_load(NODE_VARS.read_text(encoding="utf-8")) or {}
    host = {
        "ansible_host": "127.0.0.1",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(vm.image.key),
        # Port, host-key policy and the control socket are in the run's ssh config, so Ansible
        # sees the server's own SSH port (22) as on a real server (the preflight and firewall
        # checks that keep SSH reachable compare it with firewall_ssh_port).
        "ansible_ssh_common_args": f"-F {vm.ssh_config}",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    inventory = {"all": {"children": {"llm_nodes": {"hosts": {HOSTNAME: host}, "vars": node_vars}}}}
    path.write_text(
        "---\n# Written by tests/vm/vm_test.py for one run.\n"
        + yaml.safe_dump(inventory, sort_keys=False),
        encoding="utf-8",
    )


def prepare_standins(out: Path) -> Path | None:
    """Build the stand-in artifacts and their vars file; None where the script does not exist."""
    if not STANDINS.exists():
        log(f"{STANDINS.relative_to(REPO)} not found: running without stand-in vars")
        return None
    res = subprocess.run(
        [sys.executable, "-m", "tests.sandbox.prepare_standins", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise VmTestError(f"prepare_standins failed: {res.stderr.strip() or res.stdout.strip()}")
    lines = res.stdout.strip().splitlines()
    for line in lines[:-1]:
        log(line)
    return Path(lines[-1])


# Ansible with mitogen's strategy (main sets it unless --plain-ssh; see docs/vm-test.md).
MITOGEN: dict[str, str] = {}


def ansible_env(run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MITOGEN)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bindir}:{env.get('PATH', '')}"
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "false",
            "ANSIBLE_NOCOLOR": "true",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            # The VM is new every run: keep its facts out of the repository's fact cache.
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(run_dir / "facts"),
            "ANSIBLE_LOCAL_TEMP": str(run_dir / "ansible-tmp"),
            # The run's own SSH control masters, so an interruption can cut them (see interrupt).
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run_dir / "cp"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_playbook(
    playbook: Path,
    inventory: Path,
    extra: list[str],
    run_dir: Path,
    log_name: str,
    *,
    interrupt_at: str | None = None,
) -> PlaybookRun:
    """Run a playbook, streaming its output to the terminal and to run_dir/<log_name>.

    With interrupt_at, the run is killed INTERRUPT_DELAY_S seconds after a line starting with it
    (ansible-playbook with SIGKILL, then its SSH control masters: the connection is gone as if
    the network dropped). PlaybookRun.returncode is then the negative signal number.
    """
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inventory),
        str(playbook),
        *extra,
    ]
    if not Path(cmd[0]).exists():
        cmd[0] = shutil.which("ansible-playbook") or "ansible-playbook"
    log("$ " + " ".join(cmd))
    out_lines: list[str] = []
    logfile = run_dir / log_name
    timer: threading.Timer | None = None
    with logfile.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=ansible_env(run_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=interrupt_at is not None,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                fh.write(line)
                out_lines.append(line)
                if interrupt_at and timer is None and line.startswith(interrupt_at):
                    log(f"interrupting this run in {INTERRUPT_DELAY_S:.0f}s")
                    timer = threading.Timer(INTERRUPT_DELAY_S, _cut_off, (proc, run_dir))
                    timer.start()
            returncode = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    output = "".join(out_lines)
    return PlaybookRun(returncode, output, parse_recap(output))


def _cut_off(proc: subprocess.Popen[str], run_dir: Path) -> None:
    """Kill ansible-playbook (its whole process group) and the run's SSH control masters."""
    log("cutting the run off: SIGKILL to ansible-playbook, SSH control masters closed")
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    close_ansible_masters(run_dir)


def close_ansible_masters(run_dir: Path) -> None:
    """Kill Ansible's SSH control masters of this run (after a cut-off or a reboot: a master of
    the old connection would hang the next run in the banner exchange)."""
    # A master's process title names its socket: "ssh: <run_dir>/cp/<hash> [mux]".
    subprocess.run(["pkill", "-KILL", "-f", f"{run_dir / 'cp'}/"], check=False)


def wait_until_quiet(vm: Vm, timeout: float = 900.0) -> float:
    """Wait until no Ansible module runs on the VM (the cut-off one may go on to its end): no
    AnsiballZ module (plain SSH) and no mitogen context (its python is titled "(mitogen:...)")."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        # The brackets keep pgrep from matching the shell that runs it.
        res = vm.ssh("pgrep -fa '[A]nsiballZ|[m]itogen:' || true", timeout=30, check=False)
        if res.returncode == 0 and not res.stdout.strip():
            return time.monotonic() - started
        time.sleep(5)
    raise VmTestError(f"modules of the interrupted run still running after {timeout:.0f}s")


def require_success(run: PlaybookRun, what: str, *, unchanged: bool = False) -> int:
    recap = run.recaps.get(HOSTNAME)
    if run.returncode != 0 or recap is None or recap.failed or recap.unreachable:
        raise VmTestError(f"{what} failed (exit {run.returncode}, recap {recap})")
    if unchanged and recap.changed != 0:
        names = changed_tasks(run.output)
        raise VmTestError(f"{what}: {recap.changed} changed, 0 required:\n" + "\n".join(names[:40]))
    return recap.changed


def run_testinfra(vm: Vm, context: Path, label: str, suite: str = "test_node.py") -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE / suite),
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=-ra --strict-markers",
        f"--hosts=ssh://root@127.0.0.1:{vm.port}",
        f"--ssh-config={vm.ssh_config}",
        f"--ssh-identity-file={vm.image.key}",
    ]
    env = dict(os.environ)
    env[CONTEXT_ENV] = str(context)
    log(f"testinfra ({label}): " + " ".join(cmd[2:]))
    res = subprocess.run(cmd, cwd=REPO, env=env, check=False)
    if res.returncode != 0:
        raise VmTestError(f"testinfra suite failed ({label}, pytest exit {res.returncode})")


def write_context(run_dir: Path, standins: Path | None, playbook: Path) -> Path:
    extra: dict[str, Any] = {}
    if standins is not None:
        extra = yaml.safe_load(standins.read_text(encoding="utf-8")) or {}
    node_vars: dict[str, Any] = yaml.safe_load(NODE_VARS.read_text(encoding="utf-8")) or {}
    context = {
        "site": playbook.name == "site.yml",
        "node_vars": node_vars,
        "standins": extra,
    }
    path = run_dir / "context.json"
    path.write_text(json.dumps(context, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return path


def disk_full_fault(vm: Vm, inventory: Path, extra: list[str], run_dir: Path) -> str:
    """Fill the models' disk up to DISK_FULL_LEAVE_GIB free; models.yml must refuse to pull."""
    node_vars: dict[str, Any] = yaml.safe_load(NODE_VARS.read_text(encoding="utf-8")) or {}
    models_dir = node_vars.get("ollama_models_dir", "/usr/share/ollama/.ollama/models")
    fill = "/var/tmp/vm-test-disk-fill"
    free = int(vm.ssh(f"df --output=avail -B1 {models_dir} | tail -1").stdout.strip())
    size = free - int(DISK_FULL_LEAVE_GIB * 1024**3)
    if size <= 0:
        raise VmTestError(f"the VM disk has only {free} bytes free: cannot stage the fault")
    vm.ssh(f"fallocate -l {size} {fill}")
    try:
        wanted = [*node_vars.get("ollama_models", []), {"name": DISK_FULL_MODEL}]
        run = run_playbook(
            REPO / "playbooks" / "models.yml",
            inventory,
            [*extra, "-e", json.dumps({"ollama_models": wanted})],
            run_dir,
            "disk-full.log",
        )
    finally:
        vm.ssh(f"rm -f {fill}", check=False)
    recap = run.recaps.get(HOSTNAME)
    if run.returncode == 0 or recap is None or recap.failed != 1:
        raise VmTestError(
            f"models.yml on a full disk should fail once (exit {run.returncode}, {recap})"
        )
    if recap.changed != 0:
        raise VmTestError(f"models.yml on a full disk changed {recap.changed} things, 0 expected")
    if f"Not pulling {DISK_FULL_MODEL}" not in run.output:
        raise VmTestError("models.yml on a full disk failed without the free-space message")
    tags = vm.ssh("curl -fsS http://127.0.0.1:11434/api/tags").stdout
    if DISK_FULL_MODEL in tags:
        raise VmTestError(f"{DISK_FULL_MODEL} was pulled although the disk was full")
    return "disk nearly full: models.yml stopped before pulling, 0 changed"


def http_answer(port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """The status line an HTTP server sends back through the forwarded ``port``, or None.

    qemu's user-mode network accepts on the controller side before it reaches the guest, so a
    port the guest drops shows up as a connection that closes or stays silent, not as a refusal.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: vm-test\r\n\r\n")
            data = conn.recv(256)
    except OSError:
        return None
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    return line if line.startswith("HTTP/") else None


def firewall_probe(vm: Vm) -> str:
    """From outside the VM: only SSH answers; a listener on all addresses is dropped by ufw."""
    vm.ssh(
        f"systemd-run --unit=vm-test-probe --property=DynamicUser=yes --working-directory=/tmp "
        f"python3 -m http.server {PROBE_PORT} --bind 0.0.0.0 && "
        f"for i in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:{PROBE_PORT}/ && exit 0; "
        "sleep 0.2; done; exit 1"
    )
    try:
        # All at once: a dropped port costs PROBE_TIMEOUT_S of silence each.
        with ThreadPoolExecutor(len(PROBED_PORTS)) as pool:
            lines = pool.map(http_answer, (vm.forwards[port] for port in PROBED_PORTS))
            answered = dict(zip(PROBED_PORTS, lines, strict=True))
        leaks = {port: line for port, line in answered.items() if line is not None}
        if leaks:
            raise VmTestError(f"guest ports answer HTTP from outside the VM: {leaks}")
        vm.ssh(f"ufw allow {PROBE_PORT}/tcp")
        try:
            opened = http_answer(vm.forwards[PROBE_PORT])
        finally:
            vm.ssh(f"ufw delete allow {PROBE_PORT}/tcp")
        if opened is None:
            raise VmTestError(
                f"the probe port {PROBE_PORT} allowed in ufw still gave no HTTP answer from "
                "outside: the forwarded path does not work, so the denials above prove nothing"
            )
        if http_answer(vm.forwards[PROBE_PORT]) is not None:
            raise VmTestError(
                f"the probe port {PROBE_PORT} still answers after its rule was removed"
            )
    finally:
        vm.ssh("systemctl stop vm-test-probe", check=False)
    return (
        f"firewall from outside: ports {', '.join(map(str, PROBED_PORTS))} give no HTTP answer, "
        f"SSH does; the probe port answers ({opened}) only while allowed"
    )


def write_provisioning(timings: Timings, converge_phase: str, accel: str) -> None:
    """The converge time, for bench/run.py's provisioning section (no no-op re-run here: the
    sandbox of `make demo` measures it over SSH).

    With the cut-off first attempt, the converge time is both attempts together (the work of one
    full converge plus the second run's pass over what the first had done).
    """
    converge = timings.phases[converge_phase] + timings.phases.get("converge (cut off)", 0.0)
    data = {
        "converge_s": round(converge, 1),
        "noop_rerun_s": None,
        "host": (
            f"vm-test: Debian 12 qemu VM ({accel}), 2 vCPU, controller {socket.gethostname()}, "
            + ("Ansible with mitogen_linear" if MITOGEN else "Ansible over plain SSH")
        ),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": "make vm-test (tests/vm/vm_test.py)",
    }
    PROVISIONING_JSON.parent.mkdir(parents=True, exist_ok=True)
    PROVISIONING_JSON.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    log(f"provisioning figures written to {PROVISIONING_JSON.relative_to(REPO)}")


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--playbook",
        type=Path,
        default=REPO / "playbooks" / "site.yml",
        help="playbook to converge (default playbooks/site.yml)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the VM running at the end")
    parser.add_argument("--skip-reboot", action="store_true", help="no reboot phase")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the image first")
    parser.add_argument(
        "--no-interrupt", action="store_true", help="converge in one go (no cut-off first attempt)"
    )
    parser.add_argument("--skip-faults", action="store_true", help="no fault phase")
    parser.add_argument(
        "--plain-ssh",
        action="store_true",
        help="Ansible over plain SSH with pipelining (default: mitogen's mitogen_linear strategy,"
        " which makes the emulated guest's converge 2-3x shorter; see docs/vm-test.md)",
    )
    args = parser.parse_args(argv)
    if not args.plain_ssh:
        env = mitogen_env()
        if env is None:
            print(
                "vm-test: mitogen is not installed (make venv), or pass --plain-ssh",
                file=sys.stderr,
            )
            return 2
        MITOGEN.update(env)
    log(
        "Ansible over SSH: "
        + (
            "mitogen's mitogen_linear strategy"
            if MITOGEN
            else "plain SSH with pipelining (--plain-ssh)"
        )
    )
    playbook: Path = args.playbook.resolve()
    if not playbook.exists():
        print(f"vm-test: no playbook {playbook}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    timings = Timings()
    run_dir = CACHE_ROOT / "run"
    vm: Vm | None = None
    results: list[str] = []
    ok = False
    try:
        with timings.phase("image"):
            image = ensure_image(force=args.rebuild)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        with timings.phase("stand-ins"):
            standins = prepare_standins(run_dir / "standins")
        context = write_context(run_dir, standins, playbook)
        extra = ["-e", f"@{standins}"] if standins else []
        vm = Vm(image=image, run_dir=run_dir, guest_ports=PROBED_PORTS)
        with timings.phase("boot"):
            vm.boot()
        inventory = run_dir / "inventory.yml"
        write_inventory(vm, inventory)
        site = playbook.name == "site.yml"
        if site and not args.no_interrupt:
            with timings.phase("converge (cut off)"):
                cut = run_playbook(
                    playbook,
                    inventory,
                    extra,
                    run_dir,
                    "converge-cut.log",
                    interrupt_at=INTERRUPT_AT,
                )
                if cut.returncode >= 0:
                    raise VmTestError(
                        f"the first converge was not cut off (exit {cut.returncode}): "
                        f"no line starting with {INTERRUPT_AT!r}"
                    )
                quiet = wait_until_quiet(vm)
            results.append(f"converge cut off while filling the venv; VM quiet after {quiet:.0f}s")
        converge_phase = (
            "converge"
            if "converge (cut off)" not in timings.phases
            else ("converge (after the interruption)")
        )
        with timings.phase(converge_phase):
            run = run_playbook(playbook, inventory, extra, run_dir, "converge.log")
            changed = require_success(run, "converge")
        results.append(f"converge: ok, {changed} changed")
        with timings.phase("verify"):
            run_testinfra(vm, context, "after converge")
        results.append("verify: passed")
        if site and not args.skip_faults:
            with timings.phase("faults"):
                run_testinfra(vm, context, "faults", suite="test_faults.py")
                results.append("faults: Ollama killed mid-stream, restarted by systemd")
                results.append(disk_full_fault(vm, inventory, extra, run_dir))
        with timings.phase("firewall from outside"):
            results.append(firewall_probe(vm))
        if not args.skip_reboot:
            with timings.phase("reboot"):
                recovery = vm.reboot()
                close_ansible_masters(run_dir)
            timings.phases["reboot recovery (to SSH + boot finished)"] = recovery
            with timings.phase("verify after reboot"):
                run_testinfra(vm, context, "after reboot")
            results.append(f"reboot: back in {recovery:.0f}s, verify passed")
        if site:
            write_provisioning(timings, converge_phase, vm.accel.upper() or "?")
        ok = True
    except (VmTestError, VmError, ImageError, OSError, subprocess.SubprocessError) as exc:
        log(f"FAILED: {exc}")
        if vm is not None:
            log(f"what the VM was doing:\n{vm.diagnose()}")
    except Interrupted as exc:
        log(f"interrupted ({exc}): cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if vm is not None:
            if args.keep and vm.alive():
                log(
                    f"--keep: VM left running (pid {vm.pid}); ssh -F {vm.ssh_config} 127.0.0.1; "
                    f"stop: kill $(cat {vm.pidfile})"
                )
            else:
                with timings.phase("destroy"):
                    vm.destroy()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    accel = vm.accel.upper() if vm is not None and vm.accel else "-"
    print(f"\nvm-test {'PASSED' if ok else 'FAILED'} (accelerator {accel})")
    for line in results:
        print(f"  {line}")
    print("timings:\n" + timings.report(), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
