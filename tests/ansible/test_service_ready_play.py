"""Module ``ai_local_core.node.service_ready`` through Ansible on this machine: it loads by its
FQCN from the local collection, waits in check mode too, and when the URL never answers fails
with the unit's journal (a fake journalctl first on PATH) and the secret redacted, even at -vvv.

Run with this venv's Python and, where pyenv has one, with Python 3.9 (the oldest managed host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ansible.local_play import BIN, run_ansible_playbook
from tests.api_harness import free_port
from tests.loopback_http import loopback_server, static

SECRET = "eyJhIjoiMTIzIiwidCI6InR1bm5lbCIsInMiOiJzZWNyZXQifQ"
JOURNAL_LINE = "fake-unit[99]: Error: listen tcp 127.0.0.1:11434: bind: address already in use"


def _python39() -> str | None:
    """A Python 3.9 that runs (pyenv's shim answers on PATH even where 3.9 is not selected)."""
    candidates = [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.9.*/bin/python3.9"))]
    candidates += [found] if (found := shutil.which("python3.9")) else []
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


def _interpreters() -> list[object]:
    py39 = _python39()
    return [
        pytest.param(sys.executable, id="venv"),
        *([pytest.param(py39, id="python3.9")] if py39 else []),
    ]


@pytest.mark.parametrize("interpreter", _interpreters())
def test_module_waits_then_fails_with_the_journal(tmp_path: Path, interpreter: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    journalctl = bindir / "journalctl"
    journalctl.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            echo "journalctl $*"
            echo '{JOURNAL_LINE}'
            echo 'fake-unit[99]: token {SECRET} rejected'
            """
        )
    )
    journalctl.chmod(0o755)
    dead = f"http://127.0.0.1:{free_port()}/ready"
    playbook = tmp_path / "play.yml"
    with loopback_server(
        {"/api/version": static(200, json.dumps({"version": "0.12.3"}).encode())}
    ) as server:
        playbook.write_text(
            textwrap.dedent(
                f"""\
                - name: service_ready on localhost
                  hosts: localhost
                  connection: local
                  gather_facts: false
                  vars:
                    ansible_python_interpreter: {interpreter}
                  tasks:
                    - name: Wait for the version
                      ai_local_core.node.service_ready:
                        url: {server.url("/api/version")}
                        json_key: version
                        json_value: "0.12.3"
                        timeout: 2
                        delay: 0.1
                      register: ready

                    - name: Check what it returned
                      ansible.builtin.assert:
                        that:
                          - ready is not changed
                          - ready.status == 200
                          - ready.json.version == '0.12.3'
                          - ready.attempts == 1

                    - name: Wait for a service that never answers
                      ai_local_core.node.service_ready:
                        url: {dead}
                        timeout: 0.3
                        delay: 0.1
                        request_timeout: 0.5
                        unit: fake-unit
                        journal_lines: 7
                        journal_output: cat
                        redact: ["{SECRET}"]
                        redact_as: <token redacted>
                        msg: fake-unit did not come up.
                """
            )
        )
        res = run_ansible_playbook(
            *["-i", "localhost,", "--check", "-vvv", str(playbook)],
            cwd=tmp_path,
            timeout=120,
            PATH=os.pathsep.join([str(bindir), str(BIN), "/usr/bin", "/bin"]),
        )
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-4000:]
    # The first task ran in check mode (supports_check_mode) and passed its checks.
    assert "Check what it returned" in out and "All assertions passed" in out, out[-4000:]
    assert len(server.seen) == 1
    # The second failed with the message, the last error and the journal.
    assert "fatal: [localhost]: FAILED!" in out, out[-4000:]
    assert "fake-unit did not come up." in out
    assert f"no answer from {dead}" in out
    assert "Last lines of `journalctl -u fake-unit`:" in out
    assert "journalctl --unit fake-unit --lines 7 --no-pager --output cat" in out
    assert JOURNAL_LINE in out
    assert "token <token redacted> rejected" in out
    assert SECRET not in out
