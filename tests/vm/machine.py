"""Boot, reach and destroy the vm-test VM (qemu, direct kernel boot, user-mode networking).

One VM at a time: a throwaway qcow2 overlay on the cached base image, 2 vCPUs, virtio disk and
NIC, SSH forwarded from a free loopback port, the serial console in a log file, qemu daemonized
with a pid file. KVM is used only where the CPU advertises vmx/svm, /dev/kvm is usable and the
guest actually reaches SSH under it; otherwise (e.g. a nested, software /dev/kvm) TCG.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.vm.image import READY_MARKER, Image

MEMORY_MIB = 2560
CPUS = 2
# Seconds to wait for SSH after the start (TCG boots in ~25 s on 2 slow cores) and for a KVM
# attempt before falling back to TCG: on an idle machine. Deadlines stretch with the host's load
# (see Deadline): on a 2-core machine running two other jobs the guest gets a third of the CPU.
SSH_TIMEOUT_TCG = 240.0
SSH_TIMEOUT_KVM = 90.0
# At most this many times the idle deadline, however loaded the host.
MAX_LOAD_FACTOR = 4.0
# The image's vm-test-ready.service prints this line with the boot id once sshd of that boot is up.
READY_LINE = re.compile(READY_MARKER + r" boot_id=([0-9a-f-]{36})")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Between SSH attempts after a reboot: ufw `limit`s SSH to 6 new connections per 30 s per
# address, and every attempt here comes from the NAT's one address.
REBOOT_SSH_INTERVAL_S = 10.0


class VmError(Exception):
    """The VM did not start, answer or stop (printed by the caller, exit status 1)."""


def log(msg: str) -> None:
    print(f"[vm] {msg}", flush=True)


def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise VmError("qemu-system-x86_64 not found (make host-packages installs qemu-system-x86)")
    return path


def kvm_candidate() -> tuple[bool, str]:
    """Whether KVM is worth trying here, and why (not)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False, "no /proc/cpuinfo"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    if not flags & {"vmx", "svm"}:
        return False, "the CPU has no vmx/svm flag (a /dev/kvm here is nested emulation)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    return True, "vmx/svm present and /dev/kvm accessible"


def load_factor() -> float:
    """How much slower than idle this host runs now: 1-minute load per CPU, 1 to MAX_LOAD_FACTOR."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return min(MAX_LOAD_FACTOR, max(1.0, load / (os.cpu_count() or 1)))


class Deadline:
    """A deadline of ``base`` seconds on an idle host, stretched by the highest load seen while
    waiting (checked on every poll): a loaded CI machine does not fail a slow, healthy boot."""

    def __init__(self, base: float) -> None:
        self.base = base
        self.started = time.monotonic()
        self.factor = load_factor()

    @property
    def seconds(self) -> float:
        return self.base * self.factor

    def passed(self) -> bool:
        self.factor = max(self.factor, load_factor())
        return time.monotonic() - self.started > self.seconds

    def remaining(self) -> float:
        return max(0.0, self.started + self.seconds - time.monotonic())

    def describe(self) -> str:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        return (
            f"{self.seconds:.0f}s (base {self.base:.0f}s x load factor {self.factor:.1f}; "
            f"host load {load})"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Vm:
    """A running (or stopped) VM; ``run_dir`` holds its overlay, logs, ssh config and pid file."""

    image: Image
    run_dir: Path
    port: int = 0
    accel: str = ""
    pid: int | None = None
    boot_seconds: float = 0.0
    # Guest TCP ports forwarded besides SSH; ``forwards`` maps each to its port on 127.0.0.1.
    guest_ports: tuple[int, ...] = ()
    forwards: dict[int, int] = field(default_factory=dict)

    @property
    def overlay(self) -> Path:
        return self.run_dir / "overlay.qcow2"

    @property
    def serial_log(self) -> Path:
        return self.run_dir / "serial.log"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def ssh_config(self) -> Path:
        return self.run_dir / "ssh_config"

    @property
    def ssh_target(self) -> str:
        return "127.0.0.1"

    # --- ssh ---------------------------------------------------------------------------------
    def write_ssh_config(self) -> None:
        # The forwarded port lives in the ssh config, not in the inventory: Ansible then sees the
        # server's own SSH port (22), as it would on a real server, and the preflight/firewall
        # checks that keep the SSH connection open compare the right numbers.
        self.ssh_config.write_text(
            f"""Host 127.0.0.1
  HostName 127.0.0.1
  Port {self.port}
  User root
  IdentityFile {self.image.key}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  LogLevel ERROR
  ServerAliveInterval 15
  ServerAliveCountMax 4
  ControlMaster auto
  ControlPersist 120s
  ControlPath {self.run_dir}/cm-%C
""",
            encoding="utf-8",
        )

    def ssh(
        self, command: str, *, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "ssh",
            "-F",
            str(self.ssh_config),
            "-o",
            "ConnectTimeout=5",
            self.ssh_target,
            command,
        ]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise VmError(f"ssh {command!r} timed out after {timeout:.0f}s") from exc
        if check and res.returncode != 0:
            raise VmError(f"ssh {command!r} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def close_master(self) -> None:
        """Stop the ssh control master (a reboot or poweroff leaves it dangling otherwise)."""
        subprocess.run(
            ["ssh", "-F", str(self.ssh_config), "-O", "exit", self.ssh_target],
            capture_output=True,
            check=False,
            timeout=10,
        )

    def wait_ssh(self, timeout: float, *, after_boot_id: str | None = None) -> float:
        """Wait for the image's ready line on the serial console (of a boot other than
        ``after_boot_id``), then until root runs a command over SSH; return the seconds it took.

        The serial console is watched, not SSH knocked at: the node's firewall rate-limits SSH
        (ufw `limit`, 6 new connections per 30 s), and attempts made while it boots would count
        against it and lock the test out for the next half minute.
        """
        deadline = Deadline(timeout)
        while True:
            boot_id = self.ready_boot_id()
            if boot_id is not None and boot_id != after_boot_id:
                break
            self._check_waiting(deadline, "no ready line (sshd up) on the serial console")
            time.sleep(1)
        while True:
            try:
                res = self.ssh("cat /proc/sys/kernel/random/boot_id", timeout=20, check=False)
            except VmError:
                res = None
            if res is not None and res.returncode == 0 and res.stdout.strip() == boot_id:
                return time.monotonic() - deadline.started
            self._check_waiting(deadline, f"the ready boot {boot_id} did not answer over SSH")
            time.sleep(REBOOT_SSH_INTERVAL_S)

    def _check_waiting(self, deadline: Deadline, what: str) -> None:
        if not self.alive():
            raise VmError(f"qemu exited while waiting: {what}")
        if deadline.passed():
            raise VmError(f"{what} within {deadline.describe()}")

    def ready_boot_id(self) -> str | None:
        """The boot id of the last ready line on the serial console, if any."""
        try:
            text = self.serial_log.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None
        found = READY_LINE.findall(ANSI.sub("", text))
        return found[-1] if found else None

    # --- lifecycle ---------------------------------------------------------------------------
    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _qemu_argv(self, accel: str) -> list[str]:
        return [
            qemu_binary(),
            "-name",
            "ai-local-core-vm-test",
            "-accel",
            accel,
            "-cpu",
            "host" if accel == "kvm" else "max",
            "-smp",
            str(CPUS),
            "-m",
            str(MEMORY_MIB),
            "-kernel",
            str(self.image.kernel),
            "-initrd",
            str(self.image.initrd),
            "-append",
            "root=/dev/vda rw console=ttyS0 net.ifnames=1 systemd.show_status=1",
            # The overlay is thrown away after the run: no need to flush writes to the host disk.
            "-drive",
            f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-netdev",
            ",".join(
                [f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22"]
                + [f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for g, h in self.forwards.items()]
            ),
            "-device",
            "virtio-net-pci,netdev=net0,romfile=",
            "-device",
            "virtio-rng-pci",
            "-display",
            "none",
            "-serial",
            f"file:{self.serial_log}",
            "-daemonize",
            "-pidfile",
            str(self.pidfile),
        ]

    def _start(self, accel: str) -> None:
        self.overlay.unlink(missing_ok=True)
        self.serial_log.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                str(self.image.base),
                "-F",
                "qcow2",
                str(self.overlay),
            ],
            check=True,
        )
        self.port = free_port()
        self.forwards = {guest: free_port() for guest in self.guest_ports}
        self.write_ssh_config()
        res = subprocess.run(self._qemu_argv(accel), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise VmError(f"qemu ({accel}) did not start: {res.stderr.strip()}")
        self.pid = int(self.pidfile.read_text(encoding="utf-8").strip())
        self.accel = accel

    def boot(self) -> None:
        """Start the VM (KVM if it really works here, else TCG) and wait for SSH."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        use_kvm, why = kvm_candidate()
        started = time.monotonic()
        if use_kvm:
            log(f"trying KVM: {why}")
            try:
                self._start("kvm")
                self.wait_ssh(SSH_TIMEOUT_KVM)
            except (VmError, OSError, subprocess.CalledProcessError) as exc:
                log(f"KVM did not work ({exc}); falling back to TCG")
                self.kill()
            else:
                self.boot_seconds = time.monotonic() - started
                log(f"accelerator: KVM; SSH answered after {self.boot_seconds:.1f}s")
                return
        else:
            log(f"accelerator: TCG (software emulation, ~10x slower): {why}")
        started = time.monotonic()
        self._start("tcg")
        log(
            f"qemu pid {self.pid}, {CPUS} vCPU, {MEMORY_MIB} MiB, ssh on 127.0.0.1:{self.port}, "
            f"serial log {self.serial_log}"
        )
        self.wait_ssh(SSH_TIMEOUT_TCG)
        self.boot_seconds = time.monotonic() - started
        log(f"accelerator: TCG; SSH answered after {self.boot_seconds:.1f}s")

    def reboot(self, timeout: float = SSH_TIMEOUT_TCG) -> float:
        """Reboot the guest; return the seconds until SSH and systemd of the new boot are up."""
        old_boot_id = self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
        started = time.monotonic()
        # --no-block: the command returns before the connection drops (ssh may still see it
        # torn down, or hang until the keepalive gives up: both are fine here).
        with contextlib.suppress(VmError):
            self.ssh("systemctl --no-block reboot", check=False, timeout=30)
        self.close_master()
        self.wait_ssh(timeout, after_boot_id=old_boot_id)
        remaining = max(30.0, Deadline(timeout).seconds - (time.monotonic() - started))
        self.ssh(
            "systemctl is-system-running --wait >/dev/null || true", timeout=remaining, check=False
        )
        return time.monotonic() - started

    def diagnose(self) -> str:
        """What the VM was doing, for a failure report: host load, qemu's state, the guest's
        pending systemd jobs and failed units (if SSH still answers), the serial console's end."""
        parts = [
            f"host load {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
        ]
        parts.append(f"qemu pid {self.pid}: {'running' if self.alive() else 'gone'}")
        if self.alive():
            try:
                res = self.ssh(
                    "systemctl is-system-running; systemctl list-jobs --no-pager | head -20; "
                    "systemctl --failed --no-legend --no-pager",
                    timeout=20,
                    check=False,
                )
                parts.append(
                    "guest systemd (over SSH):\n" + (res.stdout.strip() or res.stderr.strip())
                )
            except VmError as exc:
                parts.append(f"guest not reachable over SSH: {exc}")
        parts.append(f"serial console ({self.serial_log}), last lines:\n{self.serial_tail()}")
        return "\n".join(parts)

    def serial_tail(self, lines: int = 60) -> str:
        try:
            text = self.serial_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no serial log)"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """Stop qemu by the pid file's PID (SIGTERM, then SIGKILL)."""
        if self.pid is None and self.pidfile.exists():
            try:
                self.pid = int(self.pidfile.read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                self.pid = None
        if self.pid is None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        self.pid = None

    def destroy(self) -> None:
        """Power off over SSH (bounded), then make sure qemu is gone, then drop the overlay."""
        if self.alive():
            with contextlib.suppress(VmError):
                self.ssh("systemctl --no-block poweroff", check=False, timeout=20)
            self.close_master()
            deadline = time.monotonic() + 30
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.5)
        self.kill()
        self.overlay.unlink(missing_ok=True)
