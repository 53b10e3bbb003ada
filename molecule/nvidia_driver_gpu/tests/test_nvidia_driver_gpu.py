"""Verify role `nvidia_driver` with a GPU forced present (fake PCI tree with an RTX 3060).

Debian 12 keeps one-line sources and gets flavor full; Debian 13 has deb822 sources like a stock
install and gets flavor headless with open kernel modules and the CUDA toolkit. In these containers
the userspace packages are installed; the kernel-module packages (and the toolkit) are resolved
with apt-get --simulate, and the role says so.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.molecule_support import (
    PlaybookRun,
    assert_check_mode_clean,
    run_playbook,
    scenario_playbook,
)

COMPONENTS = ["main", "contrib", "non-free", "non-free-firmware"]
HOLD = re.compile(r"^(nvidia-|libnvidia-|libcuda|firmware-nvidia-|xserver-xorg-video-nvidia|cuda-)")
USERSPACE = ["nvidia-smi", "libcuda1", "nvidia-persistenced", "libnvidia-cfg1", "pciutils"]
POWER_UNIT = "ai-local-core-nvidia-power-limit.service"


def release(host) -> str:
    return str(host.system_info.codename)


def flat(run: PlaybookRun) -> str:
    return " ".join(run.output.split())


@pytest.fixture(scope="module")
def check_run() -> PlaybookRun:
    return assert_check_mode_clean()


def test_check_mode_reports_no_changes(check_run) -> None:
    assert check_run.recaps


def test_tag_subsets_run_on_their_own() -> None:
    # An operator re-applying only the files, holds and checks: the role must not depend on facts
    # that the skipped parts (repositories, packages) would have set. One host is enough.
    name = f"{os.environ['MOLECULE_SCENARIO_NAME']}-bookworm"
    tags = "nvidia_driver_config,nvidia_driver_holds,nvidia_driver_verify"
    run = run_playbook(scenario_playbook(), "--check", "--tags", tags, "--limit", name)
    assert run.returncode == 0, run.output[-4000:]
    recap = run.recaps[name]
    assert (recap.failed, recap.changed) == (0, 0), recap
    assert "Install the userspace driver packages" not in run.output
    assert "Blacklist nouveau" in run.output


def test_components_enabled_in_the_distribution_sources(host) -> None:
    if release(host) == "bookworm":
        # One-line sources: every deb line of the release (and -updates) gained the components.
        lines = [
            line.split()
            for line in host.file("/etc/apt/sources.list").content_string.splitlines()
            if line.startswith("deb ")
        ]
        assert len(lines) == 2
        for words in lines:
            assert words[3:] == COMPONENTS, words
    else:
        # deb822: every Components field (release + updates, security) gained the missing ones;
        # non-free-firmware, there from the install, is not repeated.
        one_line = host.run("cat /etc/apt/sources.list 2>/dev/null").stdout
        assert not re.search(r"^deb", one_line, re.MULTILINE), one_line
        text = host.file("/etc/apt/sources.list.d/debian.sources").content_string
        fields = re.findall(r"^Components:(.*)$", text, re.MULTILINE)
        assert len(fields) >= 1
        for field in fields:
            assert sorted(field.split()) == sorted(COMPONENTS), field
            assert len(field.split()) == len(set(field.split()))


def test_apt_sees_the_components_without_duplicates(host) -> None:
    fmt = "'$(RELEASE) $(COMPONENT)'"
    out = host.run(f"apt-get indextargets --format {fmt} 'Identifier: Packages'")
    assert out.rc == 0, out.stderr
    seen = {tuple(line.split()) for line in out.stdout.splitlines()}
    for component in COMPONENTS:
        assert (release(host), component) in seen, seen
    # A component listed twice for a suite makes apt warn on every run.
    policy = host.run("apt-cache policy")
    assert "configured multiple times" not in policy.stderr, policy.stderr


@pytest.mark.parametrize("package", USERSPACE)
def test_userspace_packages_installed(host, package: str) -> None:
    assert host.package(package).is_installed


def test_kernel_module_packages_only_resolved(host) -> None:
    dkms = "nvidia-open-kernel-dkms" if release(host) == "trixie" else "nvidia-kernel-dkms"
    module = [dkms, "firmware-nvidia-gsp", "dkms", "linux-headers-amd64"]
    if release(host) == "bookworm":
        module.append("nvidia-driver")
    else:
        module.append("nvidia-cuda-toolkit")
    for package in module:
        assert not host.package(package).is_installed, package
        # ... but the archive offers them: the simulated install resolved against it.
        policy = host.run(f"apt-cache policy {package}").stdout
        assert re.search(r"Candidate: (?!\(none\))\S+", policy), policy


def test_converge_announces_what_a_container_skips(host, check_run) -> None:
    text = flat(check_run)
    name = host.backend.name
    assert f"CONTAINER (podman): {name} runs the host's kernel" in text.replace("''", "'")
    assert "SKIPPED here: kernel headers for" in text
    assert "resolved with apt-get --simulate only, so no DKMS build" in text
    assert "more package(s) would be installed on a real host" in text
    assert f"CONTAINER: no reboot, no modprobe and no nvidia-smi verification on {name}" in text
    assert "enabled but not started" in text


def test_nouveau_blacklisted(host) -> None:
    conf = host.file("/etc/modprobe.d/ai-local-core-blacklist-nouveau.conf")
    assert conf.mode == 0o644
    lines = conf.content_string.splitlines()
    assert "blacklist nouveau" in lines
    assert "options nouveau modeset=0" in lines


def test_boot_modules(host) -> None:
    conf = host.file("/etc/modules-load.d/ai-local-core-nvidia.conf").content_string
    assert [line for line in conf.splitlines() if not line.startswith("#")] == [
        "nvidia",
        "nvidia_uvm",
    ]


def test_installed_nvidia_packages_are_held(host) -> None:
    installed = host.run("dpkg-query -W -f '${Package}\\n'").stdout.split()
    expected = sorted(p for p in installed if HOLD.match(p))
    assert "nvidia-smi" in expected and "libcuda1" in expected
    held = sorted(host.run("apt-mark showhold").stdout.split())
    assert held == expected


def test_in_branch_upgrade_goes_through_the_holds_and_holds_again(host) -> None:
    """nvidia_driver_upgrade (playbooks/upgrade-driver.yml): apt's newest version of the same
    packages, through the holds; the mirror has nothing newer, so nothing changes, and every
    package is held again afterwards."""
    run = run_playbook(scenario_playbook(), "-e", "nvidia_driver_upgrade=true")
    assert run.returncode == 0, run.output[-4000:]
    assert all(r.changed == 0 and r.failed == 0 for r in run.recaps.values()), run.recaps
    assert "Read the installed NVIDIA package versions before the upgrade" in run.output
    installed = host.run("dpkg-query -W -f '${Package}\\n'").stdout.split()
    held = sorted(host.run("apt-mark showhold").stdout.split())
    assert held == sorted(p for p in installed if HOLD.match(p))


BLACKLIST_CASES = {
    "nvidia-smi": True,
    "libcuda1": True,
    "libnvidia-ml1": True,
    "firmware-nvidia-gsp": True,
    "nvidia-kernel-dkms": True,
    "cuda-toolkit-12-8": True,
    "curl": False,
    "pciutils": False,
}


def test_unattended_upgrades_skips_the_driver(host) -> None:
    dump = host.run("apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    assert '"^nvidia-";' in dump and '"^libcuda";' in dump, dump
    # The list as unattended-upgrades reads it (apt_pkg, every apt.conf.d fragment merged), matched
    # the way its is_pkgname_in_blacklist() does (re.match); molecule/base runs the real matcher.
    script = (
        "import apt_pkg, re, sys;"
        "apt_pkg.init_config();"
        "bl = apt_pkg.config.value_list('Unattended-Upgrade::Package-Blacklist');"
        "[print(p, any(re.match(b, p) for b in bl)) for p in sys.argv[1:]]"
    )
    out = host.run(f'python3 -c "{script}" {" ".join(BLACKLIST_CASES)}')
    assert out.rc == 0, out.stderr
    verdicts = dict(line.split() for line in out.stdout.splitlines())
    assert verdicts == {name: str(blocked) for name, blocked in BLACKLIST_CASES.items()}


def test_persistence_mode_through_a_drop_in(host) -> None:
    unit = host.run("systemctl cat nvidia-persistenced.service").stdout
    assert "ExecStart=/usr/bin/nvidia-persistenced --user nvpd --persistence-mode --verbose" in unit
    assert "ConditionPathExists=/proc/driver/nvidia/version" in unit
    assert host.service("nvidia-persistenced").is_enabled
    # Not failed: skipped by its condition, as before the first reboot on a real host.
    show = host.run("systemctl show -p ActiveState -p ConditionResult nvidia-persistenced").stdout
    assert "ActiveState=failed" not in show


def test_power_limit_unit(host) -> None:
    path = f"/etc/systemd/system/{POWER_UNIT}"
    text = host.file(path).content_string
    assert "ExecStart=/usr/bin/nvidia-smi --power-limit=150" in text
    assert "Type=oneshot" in text
    assert host.service(POWER_UNIT).is_enabled
    out = host.run(f"systemd-analyze verify {path}")
    assert out.rc == 0, out.stdout + out.stderr


def test_no_failed_units(host) -> None:
    out = host.run("systemctl --failed --no-legend --plain")
    assert out.stdout.strip() == "", out.stdout


def test_cuda_toolkit_profile_script(host) -> None:
    profile = host.file("/etc/profile.d/ai-local-core-cuda.sh")
    if release(host) == "bookworm":
        assert not profile.exists
        return
    out = host.run("sh -c '. /etc/profile.d/ai-local-core-cuda.sh; echo $CUDA_HOME; echo $PATH'")
    cuda_home, path = out.stdout.split()
    assert cuda_home == "/usr/lib/nvidia-cuda-toolkit"
    assert path.split(":")[0] == "/usr/lib/nvidia-cuda-toolkit/bin"
    # Sourcing it twice does not grow PATH.
    script = "/etc/profile.d/ai-local-core-cuda.sh"
    twice = host.run(f"sh -c '. {script}; . {script}; echo $PATH'")
    assert twice.stdout.strip() == path
