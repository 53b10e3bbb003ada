"""Role `nvidia_driver` for hosts that are not here: Ubuntu 22.04/24.04 (and Debian 12/13).

No Ubuntu test host exists, so the Ubuntu paths are checked through the role's `render` entry point
(tasks_from: render): one ansible-playbook run over an inventory of fake hosts, each carrying the
facts of one platform and one set of role variables, renders the files the role would write and
its package selection into a temporary directory per host. The entry point only computes and
templates into that directory; test_render_entry_point_is_pure keeps it that way, so this test
can never modify the machine it runs on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.local_play import REPO, run_ansible_playbook
from tests.molecule_support import PlaybookRun, mitogen_env, parse_recap

ROLE = REPO / "roles" / "nvidia_driver"

UBUNTU_22 = {
    "ansible_distribution": "Ubuntu",
    "ansible_distribution_major_version": "22",
    "ansible_distribution_release": "jammy",
    "ansible_kernel": "5.15.0-119-generic",
    "ansible_architecture": "x86_64",
}
UBUNTU_24 = {
    "ansible_distribution": "Ubuntu",
    "ansible_distribution_major_version": "24",
    "ansible_distribution_release": "noble",
    "ansible_kernel": "6.8.0-45-generic",
    "ansible_architecture": "x86_64",
}
DEBIAN_12 = {
    "ansible_distribution": "Debian",
    "ansible_distribution_major_version": "12",
    "ansible_distribution_release": "bookworm",
    "ansible_kernel": "6.1.0-28-amd64",
    "ansible_architecture": "x86_64",
}
DEBIAN_13 = {
    "ansible_distribution": "Debian",
    "ansible_distribution_major_version": "13",
    "ansible_distribution_release": "trixie",
    "ansible_kernel": "6.12.48+deb13-cloud-amd64",
    "ansible_architecture": "x86_64",
}
# What tasks/detect.yml reads on a real host (register __nvidia_driver_pci), given as a host
# variable: "secureboot <mokutil --sb-state>" and "image-meta <status> <package> <depends>" lines.
SB_ON = "secureboot SecureBoot enabled"
JAMMY_HWE_HOST = {
    "stdout_lines": [
        "0000:01:00.0 0x10de 0x030000 0x2504",
        SB_ON,
        "image-meta ii  linux-image-5.15.0-119-generic ",
        "image-meta ii  linux-image-6.8.0-45-generic ",
        "image-meta ii  linux-image-generic linux-image-5.15.0-119-generic, linux-firmware",
        "image-meta ii  linux-image-generic-hwe-22.04 linux-image-6.8.0-45-generic, linux-firmware",
        "image-meta un  linux-image-lowlatency ",
    ]
}
RTX_3060 = [{"pci_slot": "0000:01:00.0", "pci_id": "10de:2504", "name": "GeForce RTX 3060"}]

# host name -> facts + role variables
CASES: dict[str, dict[str, Any]] = {
    # Ubuntu, distro source: Canonical's signed modules for the kernel flavour (generic: the 22.04
    # GA kernel 5.15; a 6.8 kernel on 22.04 is the HWE one; 24.04's GA kernel is 6.8).
    "jammy-distro": {**UBUNTU_22},
    "jammy-hwe": {**UBUNTU_22, "ansible_kernel": "6.8.0-45-generic"},
    "noble-hwe": {**UBUNTU_24, "ansible_kernel": "6.11.0-29-generic"},
    "noble-lowlatency-set": {**UBUNTU_24, "nvidia_driver_kernel_flavour": "lowlatency"},
    "jammy-dkms": {**UBUNTU_22, "nvidia_driver_kernel_modules": "dkms"},
    # A real host's reads: Secure Boot on, GA and HWE kernels installed, running the HWE one.
    "jammy-sb-detected": {
        **UBUNTU_22,
        "ansible_kernel": "6.8.0-45-generic",
        "__nvidia_driver_pci": JAMMY_HWE_HOST,
    },
    "noble-dkms-sb": {
        **UBUNTU_24,
        "nvidia_driver_kernel_modules": "dkms",
        "__nvidia_driver_pci": {"stdout_lines": [SB_ON]},
    },
    "trixie-sb": {**DEBIAN_13, "__nvidia_driver_pci": {"stdout_lines": [SB_ON]}},
    "noble-distro-full-open": {
        **UBUNTU_24,
        "nvidia_driver_branch": "580",
        "nvidia_driver_flavor": "full",
        "nvidia_driver_open_kernel_modules": True,
        "nvidia_driver_cuda_toolkit_install": True,
        "nvidia_driver_power_limit_watts": 150,
        "nvidia_driver_detected_gpus_override": RTX_3060,
    },
    "jammy-cuda": {
        **UBUNTU_22,
        "nvidia_driver_source": "cuda_repo",
        "nvidia_driver_branch": 550,
        "nvidia_driver_cuda_toolkit_install": True,
        "nvidia_driver_cuda_toolkit_version": "12.6",
    },
    "noble-cuda-arm": {
        **UBUNTU_24,
        "ansible_architecture": "aarch64",
        "ansible_kernel": "6.8.0-1010-nvidia-64k",
        "nvidia_driver_source": "cuda_repo",
        "nvidia_driver_flavor": "full",
        "nvidia_driver_open_kernel_modules": True,
        "nvidia_driver_cuda_repo_url": "https://mirror.example.internal/cuda/repos/",
    },
    "bookworm-distro": {**DEBIAN_12},
    "trixie-minimal": {
        **DEBIAN_13,
        "nvidia_driver_hold_packages": False,
        "nvidia_driver_blacklist_nouveau": False,
        "nvidia_driver_boot_modules": [],
        "nvidia_driver_persistence_mode": False,
        "nvidia_driver_open_kernel_modules": True,
    },
    "debian-cuda-refused": {**DEBIAN_13, "nvidia_driver_source": "cuda_repo"},
    "focal-refused": {
        **UBUNTU_22,
        "ansible_distribution_major_version": "20",
        "ansible_distribution_release": "focal",
    },
    "negative-power-refused": {**UBUNTU_24, "nvidia_driver_power_limit_watts": -5},
    "debian-signed-refused": {**DEBIAN_13, "nvidia_driver_kernel_modules": "signed"},
    "cuda-signed-refused": {
        **UBUNTU_24,
        "nvidia_driver_source": "cuda_repo",
        "nvidia_driver_kernel_modules": "signed",
    },
    "bad-flavour-refused": {**UBUNTU_24, "nvidia_driver_kernel_flavour": "Generic HWE"},
}
REFUSED = {
    "debian-cuda-refused": "nvidia_driver_source cuda_repo is not supported on Debian",
    "focal-refused": "supports Ubuntu 22.04/24.04 and Debian 12/13; focal-refused runs Ubuntu 20",
    "negative-power-refused": "nvidia_driver_power_limit_watts must be >= 0",
    "debian-signed-refused": (
        "nvidia_driver_kernel_modules signed needs Ubuntu with nvidia_driver_source distro"
    ),
    "cuda-signed-refused": "cuda-signed-refused has Ubuntu with cuda_repo. Use dkms (or auto).",
    "bad-flavour-refused": "nvidia_driver_kernel_flavour must be a kernel flavour such as generic",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlaybookRun]:
    root = tmp_path_factory.mktemp("nvidia-render")
    inventory: dict[str, Any] = {"all": {"hosts": {}}}
    for name, variables in CASES.items():
        inventory["all"]["hosts"][name] = {
            **variables,
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "nvidia_driver_render_dir": str(root / name),
        }
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (root / "play.yml").write_text(
        textwrap.dedent(
            """\
            - name: Render the nvidia_driver role for hosts that are not here
              hosts: all
              gather_facts: false
              tasks:
                - name: Render
                  ansible.builtin.include_role:
                    name: nvidia_driver
                    tasks_from: render
            """
        )
    )
    res = run_ansible_playbook(
        *["-i", str(root / "inventory.yml"), str(root / "play.yml")],
        cwd=root,
        timeout=600,
        ANSIBLE_BECOME="false",
        # ~25 hosts of local plays: mitogen's strategy, as the operator targets run, is 2x faster.
        **(mitogen_env() or {}),
    )
    output = res.stdout + res.stderr
    return root, PlaybookRun(res.returncode, output, parse_recap(output))


def selection(rendered: tuple[Path, PlaybookRun], host: str) -> dict[str, Any]:
    root, run = rendered
    recap = run.recaps.get(host)
    assert recap is not None and recap.failed == 0, run.output[-4000:]
    data: dict[str, Any] = yaml.safe_load((root / host / "selection.yml").read_text())
    return data


def rendered_file(rendered: tuple[Path, PlaybookRun], host: str, path: str) -> str:
    return (rendered[0] / host / path.lstrip("/")).read_text()


def test_ubuntu_2204_server_packages(rendered: tuple[Path, PlaybookRun]) -> None:
    sel = selection(rendered, "jammy-distro")
    # Canonical's signed modules for the GA kernel's flavour, the driver without DKMS: no
    # compiler, no headers, nothing to enrol for Secure Boot.
    assert sel["packages"] == [
        "linux-modules-nvidia-570-server-generic",
        "nvidia-headless-no-dkms-570-server",
        "nvidia-utils-570-server",
        "libnvidia-compute-570-server",
        "nvidia-compute-utils-570-server",
    ]
    assert (sel["kernel_modules"], sel["kernel_flavour"]) == ("signed", "generic")
    # No mokutil read in the preview: the state is unknown; the path is named.
    assert sel["modules_message"] == (
        "Secure Boot unknown: using Canonical's signed modules "
        "linux-modules-nvidia-570-server-generic (prebuilt and signed for the Ubuntu kernel, "
        "no DKMS, no key to enrol)."
    )
    assert sel["packages_userspace"] == [
        "nvidia-utils-570-server",
        "libnvidia-compute-570-server",
        "nvidia-compute-utils-570-server",
    ]
    # Canonical's drivers live in restricted; the role only checks Ubuntu's sources.
    assert (sel["components"], sel["components_edited"]) == (["restricted"], False)
    assert sel["cuda_repo"] == {} and sel["cuda_keyring"] == ""
    assert sel["files"] == [
        "/etc/modprobe.d/ai-local-core-blacklist-nouveau.conf",
        "/etc/modules-load.d/ai-local-core-nvidia.conf",
        "/etc/systemd/system/nvidia-persistenced.service.d/50-ai-local-core.conf",
        "/etc/apt/apt.conf.d/53ai-local-core-nvidia",
    ]
    dropin = rendered_file(
        rendered,
        "jammy-distro",
        "/etc/systemd/system/nvidia-persistenced.service.d/50-ai-local-core.conf",
    )
    assert (
        "ExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced "
        "--persistence-mode --verbose\n" in dropin
    )


@pytest.mark.parametrize(
    ("host", "flavour"),
    [
        ("jammy-hwe", "generic-hwe-22.04"),
        ("noble-distro-full-open", "generic"),
        ("noble-hwe", "generic-hwe-24.04"),
        ("noble-lowlatency-set", "lowlatency"),
    ],
)
def test_ubuntu_signed_modules_follow_the_kernel_flavour(
    rendered: tuple[Path, PlaybookRun], host: str, flavour: str
) -> None:
    sel = selection(rendered, host)
    assert (sel["kernel_modules"], sel["kernel_flavour"]) == ("signed", flavour)
    branch = "580" if host == "noble-distro-full-open" else "570"
    open_ = "-open" if host == "noble-distro-full-open" else ""
    assert sel["packages_module"][0] == f"linux-modules-nvidia-{branch}-server{open_}-{flavour}"
    assert not [p for p in sel["packages"] if "dkms" in p and "no-dkms" not in p], sel["packages"]
    assert not [p for p in sel["packages"] if p.startswith("linux-headers-")], sel["packages"]


def test_secure_boot_read_on_the_host_names_the_path(rendered: tuple[Path, PlaybookRun]) -> None:
    sel = selection(rendered, "jammy-sb-detected")
    # The installed metapackage that depends on the running kernel, as ubuntu-drivers picks it.
    assert sel["kernel_flavour"] == "generic-hwe-22.04"
    assert sel["modules_message"].startswith(
        "Secure Boot enabled: using Canonical's signed modules "
        "linux-modules-nvidia-570-server-generic-hwe-22.04 "
    )
    warning = "Secure Boot enabled: DKMS modules must be signed with an enrolled MOK key: see "
    debian = selection(rendered, "trixie-sb")
    assert debian["kernel_modules"] == "dkms"
    assert debian["modules_message"].startswith(warning + "docs/nvidia-driver.md#secure-boot")
    assert "Debian has no signed NVIDIA modules" in debian["modules_message"]
    ubuntu_dkms = selection(rendered, "noble-dkms-sb")
    assert ubuntu_dkms["modules_message"].startswith(warning)
    assert (
        "nvidia_driver_kernel_modules: signed avoids it on Ubuntu"
        in (ubuntu_dkms["modules_message"])
    )
    # The same line is the role's one debug message about it.
    assert "DKMS modules must be signed with an enrolled MOK key" in rendered[1].output


def test_ubuntu_dkms_on_request(rendered: tuple[Path, PlaybookRun]) -> None:
    sel = selection(rendered, "jammy-dkms")
    assert sel["kernel_modules"] == "dkms"
    assert sel["packages"] == [
        "nvidia-headless-570-server",
        "nvidia-dkms-570-server",
        "dkms",
        "linux-headers-5.15.0-119-generic",
        "nvidia-utils-570-server",
        "libnvidia-compute-570-server",
        "nvidia-compute-utils-570-server",
    ]
    assert sel["modules_message"] == "Secure Boot unknown: the kernel module is built with DKMS."


def test_ubuntu_2404_full_open_branch_with_toolkit_and_power_limit(
    rendered: tuple[Path, PlaybookRun],
) -> None:
    sel = selection(rendered, "noble-distro-full-open")
    assert sel["packages_module"] == [
        "linux-modules-nvidia-580-server-open-generic",
        "nvidia-driver-580-server-open",
    ]
    # The utilities have no -open variant.
    assert "nvidia-utils-580-server" in sel["packages_userspace"]
    # The distribution's toolkit is in multiverse.
    assert sel["packages_toolkit"] == ["nvidia-cuda-toolkit"]
    assert sel["components"] == ["restricted", "multiverse"]
    unit = rendered_file(
        rendered,
        "noble-distro-full-open",
        "/etc/systemd/system/ai-local-core-nvidia-power-limit.service",
    )
    assert "ExecStart=/usr/bin/nvidia-smi --power-limit=150\n" in unit
    assert "ConditionPathExists=/proc/driver/nvidia/version" in unit
    assert "WantedBy=multi-user.target" in unit
    profile = rendered_file(
        rendered, "noble-distro-full-open", "/etc/profile.d/ai-local-core-cuda.sh"
    )
    assert "CUDA_HOME=/usr/lib/nvidia-cuda-toolkit\n" in profile


def test_ubuntu_2204_cuda_repository(rendered: tuple[Path, PlaybookRun]) -> None:
    host = "jammy-cuda"
    sel = selection(rendered, host)
    # A YAML integer branch works like the string.
    assert sel["packages"] == [
        "nvidia-headless-550",
        "nvidia-dkms-550",
        "dkms",
        "linux-headers-5.15.0-119-generic",
        "nvidia-utils-550",
        "libnvidia-compute-550",
        "nvidia-compute-utils-550",
        "cuda-toolkit-12-6",
    ]
    # NVIDIA's repository has no modules signed for Ubuntu's kernels: DKMS.
    assert sel["kernel_modules"] == "dkms"
    base = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/"
    assert sel["cuda_repo"] == {
        "url": base,
        "key_url": base + "3bf863cc.pub",
        "origin": "developer.download.nvidia.com",
    }
    sources = rendered_file(rendered, host, "/etc/apt/sources.list.d/ai-local-core-cuda.sources")
    stanza = [line for line in sources.splitlines() if line and not line.startswith("#")]
    assert stanza == [
        "Types: deb",
        f"URIs: {base}",
        "Suites: /",
        "Signed-By: /etc/apt/keyrings/ai-local-core-cuda.asc",
    ]
    pin = rendered_file(rendered, host, "/etc/apt/preferences.d/ai-local-core-cuda")
    assert "Pin: origin developer.download.nvidia.com\nPin-Priority: 600" in pin
    assert "Pin: version 550.*\nPin-Priority: 700" in pin
    profile = rendered_file(rendered, host, "/etc/profile.d/ai-local-core-cuda.sh")
    assert "CUDA_HOME=/usr/local/cuda-12.6\n" in profile


def test_ubuntu_2404_cuda_repository_on_arm_through_a_mirror(
    rendered: tuple[Path, PlaybookRun],
) -> None:
    host = "noble-cuda-arm"
    sel = selection(rendered, host)
    assert sel["packages_module"][:2] == ["nvidia-driver-570-open", "nvidia-dkms-570-open"]
    assert sel["packages_toolkit"] == []
    url = "https://mirror.example.internal/cuda/repos/ubuntu2404/sbsa/"
    assert sel["cuda_repo"]["url"] == url
    pin = rendered_file(rendered, host, "/etc/apt/preferences.d/ai-local-core-cuda")
    assert "Pin: origin mirror.example.internal\n" in pin
    assert not (rendered[0] / host / "etc/profile.d").exists()


def test_debian_12_selection(rendered: tuple[Path, PlaybookRun]) -> None:
    sel = selection(rendered, "bookworm-distro")
    # Debian has no signed prebuilt NVIDIA modules: DKMS (and a MOK with Secure Boot).
    assert (sel["kernel_modules"], sel["kernel_flavour"]) == ("dkms", "")
    assert sel["packages"] == [
        "nvidia-kernel-dkms",
        "firmware-nvidia-gsp",
        "dkms",
        "linux-headers-amd64",
        "linux-headers-6.1.0-28-amd64",
        "nvidia-smi",
        "libcuda1",
        "nvidia-persistenced",
        "libnvidia-cfg1",
    ]
    assert sel["components"] == ["contrib", "non-free", "non-free-firmware"]
    assert sel["components_edited"] is True
    assert sel["sources_files"] == [
        "/etc/apt/sources.list",
        "/etc/apt/sources.list.d/debian.sources",
    ]
    dropin = rendered_file(
        rendered,
        "bookworm-distro",
        "/etc/systemd/system/nvidia-persistenced.service.d/50-ai-local-core.conf",
    )
    assert "--user nvpd --persistence-mode" in dropin


def test_debian_13_with_every_option_off(rendered: tuple[Path, PlaybookRun]) -> None:
    sel = selection(rendered, "trixie-minimal")
    # Debian 13 kernel names: 6.12.48+deb13-cloud-amd64 -> the cloud flavour's headers metapackage.
    assert sel["packages_module"] == [
        "nvidia-open-kernel-dkms",
        "firmware-nvidia-gsp",
        "dkms",
        "linux-headers-cloud-amd64",
        "linux-headers-6.12.48+deb13-cloud-amd64",
    ]
    assert sel["hold_patterns"] == []
    assert sel["files"] == []


@pytest.mark.parametrize(("host", "message"), sorted(REFUSED.items()))
def test_unsupported_input_is_refused(
    rendered: tuple[Path, PlaybookRun], host: str, message: str
) -> None:
    root, run = rendered
    assert run.recaps[host].failed == 1
    assert message in " ".join(run.output.split())
    assert not (root / host / "selection.yml").exists()


def test_unattended_upgrades_fragment_is_valid_apt_configuration(
    rendered: tuple[Path, PlaybookRun],
) -> None:
    path = rendered[0] / "jammy-distro" / "etc/apt/apt.conf.d/53ai-local-core-nvidia"
    if shutil.which("apt-config") is None:
        pytest.skip("apt-config is not installed here")
    res = subprocess.run(
        ["apt-config", "-c", str(path), "dump", "Unattended-Upgrade::Package-Blacklist"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    for pattern in ("^nvidia-", "^libnvidia-", "^libcuda", "^cuda-"):
        assert f'Unattended-Upgrade::Package-Blacklist:: "{pattern}";' in res.stdout


def test_only_the_render_directories_were_written(rendered: tuple[Path, PlaybookRun]) -> None:
    root = rendered[0]
    names = {p.name for p in root.iterdir()}
    assert names == {"inventory.yml", "play.yml", *(set(CASES) - set(REFUSED))}, names
    for host in set(CASES) - set(REFUSED):
        for path in (root / host).rglob("*"):
            assert path.is_dir() or path.name == "selection.yml" or "/etc/" in str(path)


# Task modules the render entry point may use: none of them can touch anything but the render
# directory (file/template/copy only ever get paths under nvidia_driver_render_dir there).
PURE = {
    "ansible.builtin.assert",
    "ansible.builtin.set_fact",
    "ansible.builtin.debug",
    "ansible.builtin.import_tasks",
    # Controller-side action plugin: reads the role's argument spec, runs nothing on the host.
    "ai_local_core.node.validate_vars",
}
RENDER_WRITES = {"ansible.builtin.file", "ansible.builtin.template", "ansible.builtin.copy"}


def modules(tasks_file: Path) -> list[tuple[str, dict[str, Any]]]:
    tasks = yaml.safe_load(tasks_file.read_text())
    found = []
    for task in tasks:
        names = [k for k in task if k.startswith(("ansible.", "ai_local_core."))]
        assert len(names) == 1, task
        found.append((names[0], task))
    return found


def test_render_entry_point_is_pure() -> None:
    for name in ("validate.yml", "select.yml"):
        used = {module for module, _ in modules(ROLE / "tasks" / name)}
        assert used <= PURE, (name, used - PURE)
    render = modules(ROLE / "tasks" / "render.yml")
    imports = [t[module] for module, t in render if module == "ansible.builtin.import_tasks"]
    assert imports == ["validate.yml", "select.yml"]
    for module, task in render:
        assert module in PURE | RENDER_WRITES, module
        if module in RENDER_WRITES:
            args = task[module]
            target = args.get("dest", args.get("path"))
            assert target.startswith("{{ nvidia_driver_render_dir }}"), task
