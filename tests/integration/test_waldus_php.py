"""The PHP examples of docs/waldus-integration.md, run as written with Debian's php-cli.

The ```php blocks marked ``// waldus-example: cli`` and ``// waldus-example: http`` are
taken from the page: the CLI one runs against the Ollama stand-in through the checkout's
``src/`` scripts (``AI_LOCAL_CORE_PATH`` = the repository root, the system ``python3``),
the HTTP one (Laravel) is checked with ``php -l``. Without ``php`` the tests skip, except
on CI (``CI=true``), where they fail: ``requirements/apt.txt`` installs ``php-cli``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.ollama import REPO_ROOT, OllamaStandIn

pytestmark = pytest.mark.integration

DOC = REPO_ROOT / "docs" / "waldus-integration.md"
_BLOCK = re.compile(r"^```php\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def php_block(marker: str) -> str:
    """The one ```php block of the page that holds ``// waldus-example: <marker>``."""
    blocks = [b for b in _BLOCK.findall(DOC.read_text()) if f"// waldus-example: {marker}\n" in b]
    assert len(blocks) == 1, f"expected one php block marked {marker!r} in {DOC}"
    return str(blocks[0])


@pytest.fixture(scope="module")
def php() -> str:
    found = shutil.which("php")
    if found is None:
        message = "php is not installed (apt-get install php-cli; it is in requirements/apt.txt)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: CI must run the PHP examples")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def system_python() -> str:
    """The caller's python3, outside this virtualenv (the scripts find the .venv themselves)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 outside the virtualenv")
    if not (REPO_ROOT / ".venv" / "bin" / "python").is_file():
        pytest.skip("the checkout has no .venv (make venv) for the scripts to find")
    return python


def run_php(php: str, tmp_path: Path, driver: str, env: dict[str, str]) -> Any:
    """The CLI block followed by ``driver`` (PHP that echoes one JSON value)."""
    script = tmp_path / "example.php"
    script.write_text(php_block("cli") + "\n" + driver + "\n")
    proc = subprocess.run(
        [php, "-d", "error_log=" + str(tmp_path / "php-error.log"), str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"php failed: {proc.stdout!r} {proc.stderr!r}"
    return json.loads(proc.stdout)


def php_env(standin: OllamaStandIn, **extra: str) -> dict[str, str]:
    env = standin.client_env(AI_LOCAL_CORE_PATH=str(REPO_ROOT), **extra)
    env["PATH"] = "/usr/bin:/bin"  # `python3` is the system one, as on the Waldus server
    return env


def test_cli_example_completes_with_php_style_values(
    php: str, system_python: str, ollama_standin: OllamaStandIn, tmp_path: Path
) -> None:
    driver = """
echo json_encode([
    aiLocalCoreComplete(['user' => 'Hi', 'temperature' => '0.7', 'max_tokens' => 512.0,
                         'top_k' => 40, 'options' => ['num_ctx' => '4096', 'stop' => ['from']]]),
    aiLocalCoreComplete(['user' => 'Hi', 'max_tokens' => 2.0, 'stream' => 'true']),
    aiLocalCoreTranslate("it's \\$HOME; `id` & \\"x\\"", 'pl'),
]);
"""
    env = php_env(ollama_standin, AI_LOCAL_CORE_TRANSLATION__BACKEND="ollama")
    with_options, short, translation = run_php(php, tmp_path, driver, env)
    assert with_options["ok"] is True, with_options
    assert with_options["data"]["content"] == "Stand-in reply "  # options.stop reached Ollama
    assert with_options["data"]["warnings"] == [
        "unknown key 'top_k' ignored; Ollama options go in 'options'"
    ]
    assert short["ok"] is True, short
    assert "warnings" not in short["data"]
    assert short["data"]["done_reason"] == "length"  # max_tokens 2.0 became num_predict 2
    assert translation["ok"] is True, translation
    assert 'it\'s $HOME; `id` & "x"' in translation["data"]["translation"]  # no shell ran
    assert "top_k" in (tmp_path / "php-error.log").read_text()  # stderr logged, not parsed


@pytest.mark.parametrize(
    ("fault", "request_", "error_type", "exit_code", "fallback"),
    [
        (None, {"user": ""}, "invalid_input", 2, False),
        (None, {"user": "Hi", "max_tokens": 512.5}, "invalid_input", 2, False),
        (None, {"user": "Hi", "model": "absent:1b"}, "model_not_found", 11, True),
        ({"kind": "status", "status": 503, "count": 0}, {"user": "Hi"}, "server_busy", 12, True),
    ],
    ids=["empty prompt", "max_tokens not whole", "unknown model", "busy"],
)
def test_cli_example_maps_exit_codes_to_fallback(
    php: str,
    system_python: str,
    ollama_standin: OllamaStandIn,
    tmp_path: Path,
    fault: dict[str, Any] | None,
    request_: dict[str, Any],
    error_type: str,
    exit_code: int,
    fallback: bool,
) -> None:
    if fault is not None:
        ollama_standin.add_fault(**fault)
    driver = f"echo json_encode(aiLocalCoreComplete(json_decode('{json.dumps(request_)}', true)));"
    result = run_php(php, tmp_path, driver, php_env(ollama_standin))
    assert result["ok"] is False
    assert (result["type"], result["exit"], result["fallback"]) == (error_type, exit_code, fallback)
    assert result["message"]


def test_cli_example_times_out_and_stops_the_script(
    php: str, system_python: str, ollama_standin: OllamaStandIn, tmp_path: Path
) -> None:
    ollama_standin.add_fault("stall", seconds=30.0)
    driver = "echo json_encode(aiLocalCoreComplete(['user' => 'Hi'], 3.0));"
    started = time.monotonic()
    result = run_php(php, tmp_path, driver, php_env(ollama_standin))
    assert time.monotonic() - started < 20
    assert (result["ok"], result["type"], result["fallback"]) == (False, "timeout", True)


def test_cli_example_without_the_scripts_falls_back(
    php: str, ollama_standin: OllamaStandIn, tmp_path: Path
) -> None:
    env = php_env(ollama_standin)
    env["AI_LOCAL_CORE_PATH"] = str(tmp_path / "nowhere")
    result = run_php(php, tmp_path, "echo json_encode(aiLocalCoreComplete(['user' => 'Hi']));", env)
    assert (result["ok"], result["type"], result["fallback"]) == (False, "node_unavailable", True)


def test_http_example_is_valid_php(php: str, tmp_path: Path) -> None:
    script = tmp_path / "http.php"
    script.write_text(php_block("http"))
    proc = subprocess.run([php, "-l", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Http::" in script.read_text() and "'success'" in script.read_text()
