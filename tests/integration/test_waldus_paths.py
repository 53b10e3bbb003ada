"""The Waldus paths exactly as the seed's PHP side runs them.

``python3 $AI_LOCAL_CORE_PATH/src/ollama/complete.py '{...}'`` with the system python3 and
``AI_LOCAL_CORE_PATH`` set to

* a checkout's root (this repository, with its ``.venv``), and
* a client-only install: the package's sources, ``python3 -m venv $AI_LOCAL_CORE_PATH/.venv``
  and a plain ``pip install $AI_LOCAL_CORE_PATH`` (no extras, no dev toolchain), as
  docs/waldus-integration.md tells a Waldus server to do. That test installs from the
  package index (about 10-60 s).

The scripts must find the interpreter themselves (no ``AI_LOCAL_CORE_PYTHON``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.ollama import REPO_ROOT, OllamaStandIn

pytestmark = pytest.mark.integration

SCRIPTS = ("src/ollama/complete.py", "src/image/describe.py", "src/translation/translate.py")
#: What a Waldus server must not get from a plain install.
DEV_ONLY = ("ansible", "ansible-core", "molecule", "torch", "transformers", "pytest")
#: The files of a checkout that a client install needs.
CLIENT_TREE = ("pyproject.toml", "README.md", "python_services/ai_local_core", "src")


@pytest.fixture(scope="module")
def system_python() -> str:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 outside the virtualenv")
    probe = subprocess.run(
        [python, "-c", "import ai_local_core"], capture_output=True, check=False, env={}
    )
    if probe.returncode == 0:
        pytest.skip("the system python3 imports ai_local_core itself: nothing to find")
    return python


def run_waldus(
    python: str, root: Path, standin: OllamaStandIn, payload: str
) -> tuple[int, dict[str, Any]]:
    """``python3 $AI_LOCAL_CORE_PATH/src/ollama/complete.py PAYLOAD`` through a shell."""
    env = standin.client_env(AI_LOCAL_CORE_PATH=str(root))
    env["PATH"] = str(Path(python).parent) + ":/usr/bin:/bin"
    proc = subprocess.run(
        ["sh", "-c", 'python3 "$AI_LOCAL_CORE_PATH/src/ollama/complete.py" "$1"', "sh", payload],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"one JSON line expected: {proc.stdout!r} {proc.stderr!r}"
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(lines[0])


def test_the_seed_paths_exist_in_a_checkout() -> None:
    for script in SCRIPTS:
        assert (REPO_ROOT / script).is_file(), script
    assert (REPO_ROOT / "src" / "_bootstrap.py").is_file()
    assert not (REPO_ROOT / "python_services" / "src").exists(), "the scripts moved to src/"


def test_checkout_root_as_ai_local_core_path(
    system_python: str, ollama_standin: OllamaStandIn
) -> None:
    if not (REPO_ROOT / ".venv" / "bin" / "python").is_file():
        pytest.skip("this checkout has no .venv (make venv) for the scripts to find")
    code, out = run_waldus(system_python, REPO_ROOT, ollama_standin, '{"user": "Hi"}')
    assert (code, out["success"], out["content"]) == (
        0,
        True,
        "Stand-in reply from llama3.1:8b: Hi",
    )
    code, out = run_waldus(system_python, REPO_ROOT, ollama_standin, '{"user": "Hi", "x": 1}')
    assert (code, out["warnings"]) == (0, ["unknown key 'x' ignored"])


def test_client_only_install(
    system_python: str, ollama_standin: OllamaStandIn, tmp_path: Path
) -> None:
    root = tmp_path / "ai-local-core"
    for rel in CLIENT_TREE:
        source = REPO_ROOT / rel
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(source, root / rel, ignore=ignore)
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / rel)
    venv = root / ".venv"
    made = subprocess.run(
        [system_python, "-m", "venv", str(venv)], capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, f"python3 -m venv failed (python3-venv?): {made.stderr}"
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    installed = subprocess.run(
        [*pip, "install", "-q", "--disable-pip-version-check", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run(
        [*pip, "list", "--format=json"], capture_output=True, text=True, check=True
    )
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert "ai-local-core" in names and "ollama" in names
    assert not names & set(DEV_ONLY), f"a plain install pulled dev tools: {names & set(DEV_ONLY)}"

    code, out = run_waldus(system_python, root, ollama_standin, '{"user": "Hi"}')
    assert (code, out["success"], out["content"]) == (
        0,
        True,
        "Stand-in reply from llama3.1:8b: Hi",
    )
    code, out = run_waldus(system_python, root, ollama_standin, '{"user": "Hi", "top_k": "x"}')
    assert code == 0 and out["warnings"] == [
        "unknown key 'top_k' ignored; Ollama options go in 'options'"
    ]
