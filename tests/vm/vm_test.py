"""``make vm-test``: provision a Debian 12 qemu VM with the site playbook over SSH and check it.

Phases (each timed, summary at the end):

1. image    build or reuse the cached VM image (tests/vm/image.py)
2. boot     a fresh overlay; KVM where it really works, else TCG; wait for SSH
3. converge ansible-playbook playbooks/site.yml over SSH, exactly as on a server, with the vendor
            binaries replaced by the test stand-ins (tests/sandbox/prepare_standins.py)
4. verify   the testinfra suite tests/vm/test_node.py over SSH
5. reboot   reboot once; time until SSH and systemd are back; verify again
6. rerun    site.yml again: 0 changed required
7. destroy  poweroff over SSH, then qemu by its pid file (always, also on failure or Ctrl-C)

    python -m tests.vm.vm_test [--playbook playbooks/site.yml] [--keep] [--skip-reboot]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from tests.molecule_support import PlaybookRun, parse_recap
from tests.vm.image import CACHE_ROOT, REPO, ImageError, ensure_image
from tests.vm.machine import Vm, VmError

HERE = Path(__file__).resolve().parent
NODE_VARS = HERE / "node_vars.yml"
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


def ansible_env(run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
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
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_playbook(
    playbook: Path, inventory: Path, extra: list[str], run_dir: Path, log_name: str
) -> PlaybookRun:
    """Run a playbook, streaming its output to the terminal and to run_dir/<log_name>."""
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
    with logfile.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=ansible_env(run_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                fh.write(line)
                out_lines.append(line)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    output = "".join(out_lines)
    return PlaybookRun(returncode, output, parse_recap(output))


def require_success(run: PlaybookRun, what: str, *, unchanged: bool = False) -> int:
    recap = run.recaps.get(HOSTNAME)
    if run.returncode != 0 or recap is None or recap.failed or recap.unreachable:
        raise VmTestError(f"{what} failed (exit {run.returncode}, recap {recap})")
    if unchanged and recap.changed != 0:
        changed = [
            line
            for line in run.output.splitlines()
            if line.startswith("changed:") or line.startswith("TASK [")
        ]
        # The TASK line before each changed: line names the task.
        names = [
            changed[i - 1] for i, line in enumerate(changed) if line.startswith("changed:") and i
        ]
        raise VmTestError(f"{what}: {recap.changed} changed, 0 required:\n" + "\n".join(names[:40]))
    return recap.changed


def run_testinfra(vm: Vm, context: Path, label: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE / "test_node.py"),
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
    args = parser.parse_args(argv)
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
        vm = Vm(image=image, run_dir=run_dir)
        with timings.phase("boot"):
            vm.boot()
        inventory = run_dir / "inventory.yml"
        write_inventory(vm, inventory)
        with timings.phase("converge"):
            run = run_playbook(playbook, inventory, extra, run_dir, "converge.log")
            changed = require_success(run, "converge")
        results.append(f"converge: ok, {changed} changed")
        with timings.phase("verify"):
            run_testinfra(vm, context, "after converge")
        results.append("verify: passed")
        if not args.skip_reboot:
            with timings.phase("reboot"):
                recovery = vm.reboot()
            timings.phases["reboot recovery (to SSH + boot finished)"] = recovery
            with timings.phase("verify after reboot"):
                run_testinfra(vm, context, "after reboot")
            results.append(f"reboot: back in {recovery:.0f}s, verify passed")
        with timings.phase("re-run"):
            rerun = run_playbook(playbook, inventory, extra, run_dir, "rerun.log")
            require_success(rerun, "re-run", unchanged=True)
        results.append("re-run: ok, 0 changed")
        ok = True
    except (VmTestError, VmError, ImageError, OSError, subprocess.SubprocessError) as exc:
        log(f"FAILED: {exc}")
        if vm is not None and vm.serial_log.exists():
            log(f"serial console ({vm.serial_log}), last lines:\n{vm.serial_tail()}")
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
