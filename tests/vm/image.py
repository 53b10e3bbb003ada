"""Build (and cache) the Debian 12 VM image that ``make vm-test`` boots.

The image is a debootstrap ``minbase`` rootfs with a kernel, systemd, OpenSSH and Python, written
straight into an ext4 filesystem (``mke2fs -d``: no loop mount, no partition table) and converted
to a qcow2 base. The kernel and initrd are copied out for qemu's direct kernel boot. Root logs in
with an ed25519 key generated for the image and kept next to it (0600).

Everything lives in ``.cache/vm/image-<recipe hash>/``; the hash covers the recipe below,
so an unchanged recipe is never rebuilt, and a changed one builds a new directory (older ones are
removed). Each run boots a fresh qcow2 overlay on top of the base (see :mod:`tests.vm.machine`).

    python -m tests.vm.image [--force]      # build or reuse; prints the cache directory
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_ROOT = REPO / ".cache" / "vm"
# Bump when the build steps below change in a way the recipe data does not show.
RECIPE_VERSION = 2
SUITE = "bookworm"
DISK_SIZE = "10G"
HOSTNAME = "ai-local-core-vm"

# A server's usual ground: kernel and init, SSH, Python for Ansible, networking and name
# resolution, and what the site playbook's first tasks use (python3-apt for the apt module,
# gnupg for apt keys).
PACKAGES = [
    "linux-image-amd64",
    "systemd-sysv",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "udev",
    "dbus",
    "systemd-resolved",
    "ca-certificates",
    "gnupg",
    "procps",
    "less",
    # What an Ubuntu Server install has already, so that the play does on the VM what it does on
    # the real server (and TCG does not spend ten minutes unpacking them).
    "curl",
    "zstd",
    "pciutils",
    "cron",
    "logrotate",
    "systemd-timesyncd",
    "unattended-upgrades",
    "ufw",
    # The two largest Debian packages the roles install (gateway, monitoring). Installing them is
    # proven on Debian 12 by the Molecule containers (the default scenario); here the roles' install
    # tasks find them and report ok, and the emulated CPU (~2 min of a loaded TCG guest) goes to
    # what only a VM proves. nginx's default site is the role's to disable, as on a server.
    "nginx",
    "prometheus-node-exporter",
]

# Files written into the rootfs (path -> content).
NETWORK_UNIT = """\
[Match]
Name=en*

[Network]
DHCP=yes
"""
FILES: dict[str, str] = {
    "etc/systemd/network/20-wired.network": NETWORK_UNIT,
    "etc/hostname": f"{HOSTNAME}\n",
    "etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n::1 localhost ip6-localhost\n",
    "etc/fstab": "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n",
    # Ubuntu builds systemd-resolved with LLMNR and mDNS off; Debian's default answers LLMNR on
    # port 5355 on every interface. Match the server the playbooks are written for.
    "etc/systemd/resolved.conf.d/90-vm-test.conf": "[Resolve]\nLLMNR=no\nMulticastDNS=no\n",
    # A throwaway test disk: no fsync per unpacked file, no manuals or docs (as Ubuntu's
    # minimised images), no translated package lists: package installs are the slow part under TCG.
    "etc/dpkg/dpkg.cfg.d/90-vm-test": (
        "force-unsafe-io\n"
        "path-exclude=/usr/share/man/*\n"
        "path-exclude=/usr/share/doc/*\n"
        "path-include=/usr/share/doc/*/copyright\n"
        "path-exclude=/usr/share/info/*\n"
    ),
    "etc/apt/apt.conf.d/90-vm-test": 'Acquire::Languages "none";\n',
    # Key logins only; the image has no passwords at all.
    "etc/ssh/sshd_config.d/50-vm-test.conf": (
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
    ),
}
# Readiness the image guarantees (tests/vm/machine.py waits for it): once sshd of this boot is up
# (ssh.service is Type=notify: "started" means it accepts connections), one line with the boot id
# on the serial console. systemd's own status lines are not a promise (they are rate-limited and
# dropped under load).
READY_MARKER = "ai-local-core-vm-ready"
FILES["etc/systemd/system/vm-test-ready.service"] = f"""\
[Unit]
Description=Tell the vm-test harness on the serial console that sshd is up
After=ssh.service
Wants=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c \\
  'echo "{READY_MARKER} boot_id=$(cat /proc/sys/kernel/random/boot_id)" >/dev/ttyS0'
"""
# Units enabled in the image (name -> the target that wants it).
ENABLED_UNITS = {
    "vm-test-ready.service": "multi-user.target",
    "systemd-networkd.service": "multi-user.target",
    "systemd-networkd.socket": "sockets.target",
    "systemd-resolved.service": "multi-user.target",
    "ssh.service": "multi-user.target",
}


class ImageError(Exception):
    """The image could not be built (printed by the caller, exit status 1)."""


@dataclass(frozen=True)
class Image:
    """A built image: everything a boot needs."""

    directory: Path
    base: Path
    kernel: Path
    initrd: Path
    key: Path
    recipe: str


def log(msg: str) -> None:
    print(f"[vm-image] {msg}", flush=True)


def _run(argv: list[str], *, quiet: bool = True) -> None:
    res = subprocess.run(
        argv,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        tail = "\n".join((res.stdout or "").splitlines()[-30:])
        raise ImageError(f"{' '.join(argv)} failed (exit {res.returncode}):\n{tail}")


def mirror() -> str:
    """$AI_LOCAL_CORE_DEBIAN_MIRROR, else the host's own Debian apt source, else deb.debian.org."""
    env = os.environ.get("AI_LOCAL_CORE_DEBIAN_MIRROR")
    if env:
        return env
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.exists():
        for line in src.read_text(encoding="utf-8").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def recipe_hash() -> str:
    h = hashlib.sha256()
    recipe = [RECIPE_VERSION, SUITE, DISK_SIZE, PACKAGES, FILES, ENABLED_UNITS]
    h.update(json.dumps(recipe).encode())
    return h.hexdigest()[:16]


def _image(directory: Path) -> Image:
    return Image(
        directory=directory,
        base=directory / "base.qcow2",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        key=directory / "id_ed25519",
        recipe=directory.name,
    )


def check_tools() -> None:
    missing = [
        tool
        for tool in ("debootstrap", "mke2fs", "qemu-img", "ssh-keygen")
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()
    ]
    if missing:
        raise ImageError(
            f"missing tools: {', '.join(missing)} (make host-packages installs "
            "debootstrap, qemu-utils, openssh-client)"
        )
    if os.geteuid() != 0:
        raise ImageError("building the VM image needs root (debootstrap, file ownership)")


def _configure_rootfs(root: Path, pubkey: str) -> None:
    for rel, content in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    for unit, target in ENABLED_UNITS.items():
        wants = root / "etc/systemd/system" / f"{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        link.unlink(missing_ok=True)
        own = f"etc/systemd/system/{unit}" in FILES
        link.symlink_to(f"/{'etc' if own else 'lib'}/systemd/system/{unit}")
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("/run/systemd/resolve/stub-resolv.conf")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(pubkey, encoding="utf-8")
    keys.chmod(0o600)
    # Empty machine-id: systemd makes a new one on the first boot of every overlay.
    (root / "etc/machine-id").write_text("", encoding="utf-8")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # A fresh server has no package lists yet; the roles fetch them.
    for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for p in (root / sub).glob("*"):
            if p.is_file():
                p.unlink()


def _boot_file(root: Path, pattern: str) -> Path:
    found = sorted((root / "boot").glob(pattern))
    if not found:
        raise ImageError(f"no /boot/{pattern} in the rootfs (linux-image-amd64 missing?)")
    return found[-1]


def build(directory: Path) -> Image:
    image = _image(directory)
    check_tools()
    part = directory.with_name(directory.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    started = time.monotonic()
    _run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "vm-test",
            "-f",
            str(part / "id_ed25519"),
        ]
    )
    (part / "id_ed25519").chmod(0o600)
    pubkey = (part / "id_ed25519.pub").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="ai-local-core-vm-", dir=CACHE_ROOT) as tmp:
        root = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} minbase from {mirror()} (about 2 minutes)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                SUITE,
                str(root),
                mirror(),
            ]
        )
        t_boot = time.monotonic()
        log(f"rootfs ready in {t_boot - started:.0f}s; writing the disk")
        _configure_rootfs(root, pubkey)
        shutil.copy2(_boot_file(root, "vmlinuz-*"), part / "vmlinuz")
        shutil.copy2(_boot_file(root, "initrd.img-*"), part / "initrd.img")
        raw = Path(tmp) / "disk.raw"
        _run(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(root), str(raw), DISK_SIZE])
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(part / "base.qcow2")])
    (part / "recipe.json").write_text(
        json.dumps({"suite": SUITE, "packages": PACKAGES, "mirror": mirror()}, indent=2) + "\n",
        encoding="utf-8",
    )
    part.rename(directory)
    size = image.base.stat().st_size >> 20
    log(f"image {directory.name} built in {time.monotonic() - started:.0f}s ({size} MiB qcow2)")
    return image


def ensure_image(*, force: bool = False) -> Image:
    """Return the cached image of the current recipe, building it first when needed."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    directory = CACHE_ROOT / f"image-{recipe_hash()}"
    image = _image(directory)
    if force:
        shutil.rmtree(directory, ignore_errors=True)
    if all(p.exists() for p in (image.base, image.kernel, image.initrd, image.key)):
        image.key.chmod(0o600)
        log(f"reusing cached image {directory.name}")
        return image
    shutil.rmtree(directory, ignore_errors=True)
    image = build(directory)
    for old in CACHE_ROOT.glob("image-*"):
        if old != directory:
            log(f"removing the outdated image {old.name}")
            shutil.rmtree(old, ignore_errors=True)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build (cached) the vm-test image.")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        image = ensure_image(force=args.force)
    except (ImageError, OSError) as exc:
        print(f"vm-image: {exc}", file=sys.stderr)
        return 1
    print(image.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
