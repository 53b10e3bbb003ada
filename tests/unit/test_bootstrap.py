"""src/_bootstrap.py, the Waldus scripts' loader: in-process run, interpreter discovery, errors."""

from __future__ import annotations

import json
import os
import sys
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures.ollama import REPO_ROOT

BOOTSTRAP = REPO_ROOT / "src" / "_bootstrap.py"


@pytest.fixture
def bootstrap() -> ModuleType:
    spec = spec_from_file_location("_bootstrap_under_test", BOOTSTRAP)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_an_importable_cli_in_process(
    bootstrap: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fake_cli_mod.py").write_text(
        "def main(argv):\n    return 40 + len(argv)\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert bootstrap.run("fake_cli_mod", str(tmp_path / "shim.py"), ["a", "b"]) == 42


def test_configured_interpreter_wins(
    bootstrap: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_PYTHON", "/opt/custom/python")
    assert bootstrap.find_project_python(Path("/anywhere")) == "/opt/custom/python"


def test_nearest_venv_above_the_shim_is_found(bootstrap: ModuleType, tmp_path: Path) -> None:
    python = tmp_path / "repo" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    shim_dir = tmp_path / "repo" / "src" / "ollama"
    shim_dir.mkdir(parents=True)
    assert bootstrap.find_project_python(shim_dir) == str(python)


def test_no_interpreter_gives_the_json_error(
    bootstrap: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bootstrap, "find_project_python", lambda start: None)
    code = bootstrap.run("no_such_module_xyz", str(tmp_path / "shim.py"), [])
    payload = json.loads(capsys.readouterr().out)
    assert code == 3
    assert payload["success"] is False
    assert payload["error"]["type"] == "config_error"
    assert "AI_LOCAL_CORE_PYTHON" in payload["error"]["message"]


def test_a_second_failed_import_after_reexec_stops(
    bootstrap: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(bootstrap.REEXEC_ENV, "1")
    called: list[str] = []
    monkeypatch.setattr(os, "execve", lambda *a: called.append("execve"))
    code = bootstrap.run("no_such_module_xyz", str(tmp_path / "shim.py"), [])
    assert code == 3
    assert called == []
    assert sys.executable in json.loads(capsys.readouterr().out)["error"]["message"]
