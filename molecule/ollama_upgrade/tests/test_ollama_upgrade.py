"""Upgrade, rollback and failure paths of role `ollama`, driven with extra converge runs.

Apart from the upgrade (a full run), the runs use the role's tags to stay short: ollama_install
covers validation, artifact, links, pruning, restart and the version check; ollama_models the
models.

The tests run in file order and each leaves the host in the state the next one expects:
A (0.90.0, converged) -> B (0.91.0) -> back to A without a download -> two refused installs of C
(0.92.0, wrong sha256) and a refused version string and a failing pull, each leaving A running
untouched -> C with ollama_keep_versions=1, which prunes the oldest version.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from tests.molecule_support import (
    PlaybookRun,
    assert_check_mode_clean,
    run_playbook,
    scenario_playbook,
)

A, B, C = "0.90.0", "0.91.0", "0.92.0"
ZERO_SHA = "0" * 64
ARTIFACTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "artifacts"


def sha256_of(version: str) -> str:
    return (ARTIFACTS / version / "sha256sum.txt").read_text().split()[0]


def converge(*extra: str, **variables: Any) -> PlaybookRun:
    args: list[str] = list(extra)
    if variables:
        args += ["-e", json.dumps(variables)]
    return run_playbook(scenario_playbook(), *args)


def api_version(host: Any) -> str:
    script = (
        "import json, urllib.request;"
        "print(json.load(urllib.request.urlopen('http://127.0.0.1:11434/api/version', timeout=10))"
        "['version'])"
    )
    return host.check_output(f"python3 -c {shlex.quote(script)}").strip()


def main_pid(host: Any) -> int:
    return int(host.check_output("systemctl show --property MainPID --value ollama"))


def link_target(host: Any) -> str:
    return host.file("/usr/local/bin/ollama").linked_to


def versions_on_disk(host: Any) -> set[str]:
    out = host.check_output("ls -1 /opt/ollama")
    return {name for name in out.split() if name != "current"}


def assert_a_untouched(host: Any, pid_before: int) -> None:
    assert api_version(host) == A
    assert main_pid(host) == pid_before, "the running service was restarted"
    assert link_target(host) == f"/opt/ollama/{A}/bin/ollama"
    assert C not in versions_on_disk(host)
    assert host.check_output("ls -A /var/cache/ai-local-core/ollama") == ""


def test_converged_on_a(host):
    assert api_version(host) == A
    assert link_target(host) == f"/opt/ollama/{A}/bin/ollama"


def test_check_mode_reports_no_changes(host):
    # Takes `host` only to keep its place in the sequence: pytest runs tests without it last.
    assert_check_mode_clean()


def test_upgrade_to_b_keeps_settings_and_models(host):
    dropin = "/etc/systemd/system/ollama.service.d/50-ai-local-core.conf"
    settings_before = host.file(dropin).sha256sum
    pid_before = main_pid(host)
    run = converge(ollama_version=B)
    assert run.returncode == 0, run.output[-4000:]
    assert api_version(host) == B
    assert link_target(host) == f"/opt/ollama/{B}/bin/ollama"
    assert host.file("/opt/ollama/current").linked_to == f"/opt/ollama/{B}"
    assert main_pid(host) != pid_before, "a new version must restart the service"
    assert host.file(dropin).sha256sum == settings_before
    assert "OLLAMA_KEEP_ALIVE=15m" in host.check_output(
        f"tr '\\0' '\\n' < /proc/{main_pid(host)}/environ"
    )
    assert "tinyllama:latest" in host.check_output("ollama list")
    assert {A, B} <= versions_on_disk(host), "the previous version is kept for rollback"


def test_rollback_to_a_needs_no_download(host):
    # A source that does not exist and a sha256 that matches nothing: any attempt to fetch or
    # verify would fail, so success proves the on-disk copy of A was used.
    run = converge(
        "--tags",
        "ollama_install",
        ollama_version=A,
        ollama_artifact_local_path="/nonexistent/ollama-linux-amd64.tar.zst",
        ollama_artifact_sha256=ZERO_SHA,
    )
    assert run.returncode == 0, run.output[-4000:]
    assert api_version(host) == A
    assert link_target(host) == f"/opt/ollama/{A}/bin/ollama"
    assert {A, B} <= versions_on_disk(host)


def test_checksum_mismatch_of_a_local_artifact_changes_nothing(host):
    pid_before = main_pid(host)
    run = converge(
        "--tags", "ollama_install", ollama_version=C, ollama_artifact_sha256=sha256_of(A)
    )
    assert run.returncode != 0, run.output[-4000:]
    assert f"expected {sha256_of(A)}, got {sha256_of(C)}" in run.output, run.output[-4000:]
    assert all(r.changed == 0 for r in run.recaps.values()), run.recaps
    assert_a_untouched(host, pid_before)


def test_checksum_mismatch_from_a_mirror_changes_nothing(host):
    pid_before = main_pid(host)
    run = converge(
        "--tags",
        "ollama_install",
        ollama_version=C,
        ollama_artifact_local_path="",
        ollama_artifact_url=f"file:///srv/mirror/v{C}/ollama-linux-amd64.tar.zst",
        ollama_artifact_sha256=sha256_of(A),
    )
    assert run.returncode != 0, run.output[-4000:]
    # get_url's message names both sums; the role's names the source and what was left alone.
    assert f"did not match {sha256_of(A)}; it was {sha256_of(C)}" in run.output, run.output[-4000:]
    assert "the running version and /usr/local/bin/ollama are unchanged" in run.output
    assert all(r.changed == 0 for r in run.recaps.values()), run.recaps
    assert_a_untouched(host, pid_before)


def test_bad_version_string_is_refused_before_any_change(host):
    pid_before = main_pid(host)
    # converge.yml derives the artifact path and sha from the version: give them explicitly.
    run = converge(
        "--tags",
        "ollama_install",
        ollama_version="latest",
        ollama_artifact_local_path="/nonexistent/ollama-linux-amd64.tar.zst",
        ollama_artifact_sha256=ZERO_SHA,
    )
    assert run.returncode != 0
    assert "ollama_version must be a release number like 0.35.1" in run.output
    assert all(r.changed == 0 for r in run.recaps.values()), run.recaps
    assert_a_untouched(host, pid_before)


def test_failing_pull_stops_the_play_with_the_servers_error(host):
    pid_before = main_pid(host)
    run = converge(
        "--tags", "ollama_models", ollama_models=[{"name": "tinyllama"}, {"name": "missing-model"}]
    )
    assert run.returncode != 0
    assert "Pulling missing-model:latest failed" in run.output, run.output[-4000:]
    assert "file does not exist" in run.output
    assert_a_untouched(host, pid_before)


def test_keep_versions_prunes_the_oldest(host):
    run = converge("--tags", "ollama_install", ollama_version=C, ollama_keep_versions=1)
    assert run.returncode == 0, run.output[-4000:]
    assert api_version(host) == C
    # C is active; B was installed after A, so B is the one previous version kept.
    assert versions_on_disk(host) == {C, B}
