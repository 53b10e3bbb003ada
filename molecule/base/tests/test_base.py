"""Verify role `base` on the converged test hosts."""

from __future__ import annotations

import pytest

ESSENTIALS = ["curl", "ca-certificates", "zstd", "jq", "pciutils", "systemd-timesyncd"]


@pytest.mark.parametrize("name", [*ESSENTIALS, "unattended-upgrades"])
def test_essential_packages_installed(host, name):
    assert host.package(name).is_installed


def test_no_failed_units(host):
    out = host.run("systemctl --failed --no-legend --plain")
    assert out.rc == 0
    assert out.stdout.strip() == "", f"failed units: {out.stdout}"


def test_journald_persistent_with_size_cap(host):
    conf = host.run("systemd-analyze cat-config systemd/journald.conf").stdout
    assert "Storage=persistent" in conf
    assert "SystemMaxUse=1G" in conf
    machine_id = host.file("/etc/machine-id").content_string.strip()
    # journald writes to /var/log/journal/<machine-id> only when persistent storage is in effect.
    assert host.file(f"/var/log/journal/{machine_id}").is_directory
    usage = host.run("journalctl --disk-usage")
    assert usage.rc == 0


def test_timesyncd_configured_and_enabled(host):
    assert host.service("systemd-timesyncd").is_enabled
    conf = host.run("systemd-analyze cat-config systemd/timesyncd.conf").stdout
    assert "NTP=0.debian.pool.ntp.org" in conf


def test_periodic_unattended_upgrades_on(host):
    dump = host.run("apt-config dump APT::Periodic").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert host.service("unattended-upgrades").is_enabled


def test_blacklist_holds_nvidia_and_extra_patterns(host):
    dump = host.run("apt-config dump Unattended-Upgrade::Package-Blacklist").stdout
    for pattern in ("nvidia-", "libnvidia-", "ollama"):
        assert f'"{pattern}"' in dump, dump


@pytest.mark.parametrize(
    ("package", "blocked"),
    [
        ("nvidia-driver-550-server", True),
        ("libnvidia-compute-550-server", True),
        ("ollama", True),
        ("curl", False),
        ("openssl", False),
    ],
)
def test_unattended_upgrades_really_skips_blacklisted(host, package, blocked):
    # Ask unattended-upgrades' own matcher, with the blacklist apt reads from our config.
    script = (
        "import apt_pkg, importlib.machinery, importlib.util;"
        "loader = importlib.machinery.SourceFileLoader('uu', '/usr/bin/unattended-upgrade');"
        "spec = importlib.util.spec_from_loader('uu', loader);"
        "uu = importlib.util.module_from_spec(spec); loader.exec_module(uu);"
        "apt_pkg.init_config();"
        "bl = apt_pkg.config.value_list('Unattended-Upgrade::Package-Blacklist');"
        f"print(uu.is_pkgname_in_blacklist('{package}', bl))"
    )
    out = host.run(f'python3 -c "{script}"')
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == str(blocked)


def test_layout(host):
    assert host.group("ai-local-core").exists
    for path in ("/etc/ai-local-core", "/var/lib/ai-local-core", "/var/log/ai-local-core"):
        f = host.file(path)
        assert f.is_directory
        assert f.user == "root"
        assert f.group == "ai-local-core"
        assert f.mode == 0o750
