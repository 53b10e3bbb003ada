"""ai-describe and ai-translate end to end: in-process, and via the warm API server.

Every run is a fresh process, as the Waldus PHP side starts them. The warm path
is proven by giving the CLI a configuration that would fail in-process (a BLIP
model that does not exist, a Google endpoint that refuses connections) while
``api.url`` points at a running server: a success can only have come from the
server. The JSON keys must be the same either way.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.api_harness import ApiServer, clean_env, free_port, running_api_server, write_config
from tests.fixtures.ollama import REPO_ROOT, OllamaStandIn
from tests.image_samples import png_bytes
from tests.loopback_http import LoopbackServer, loopback_server, static

pytestmark = [pytest.mark.integration, pytest.mark.vision]

pytest.importorskip("PIL")
pytest.importorskip("torch")
pytest.importorskip("transformers")

DESCRIBE_SHIM = REPO_ROOT / "src" / "image" / "describe.py"
TRANSLATE_SHIM = REPO_ROOT / "src" / "translation" / "translate.py"
DESCRIBE_KEYS = {
    "success",
    "description",
    "backend",
    "model",
    "tokens",
    "max_length",
    "image",
    "duration_ms",
}
TRANSLATE_KEYS = {
    "success",
    "translation",
    "source_language",
    "target_language",
    "backend",
    "model",
    "duration_ms",
}


@pytest.fixture(scope="module")
def tiny_blip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.vision.tiny_blip import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="module")
def web() -> Iterator[LoopbackServer]:
    routes = {
        "/cat.png": static(200, png_bytes(), "image/png"),
        "/page.html": static(200, b"<html></html>", "text/html"),
    }
    with loopback_server(routes) as server:
        yield server


def _config(standin: OllamaStandIn, blip: str, translation: dict[str, Any]) -> dict[str, Any]:
    return {
        "ollama": {"url": standin.url, "retries": {"max_attempts": 1}},
        "image": {
            "backend": "blip",
            "blip": {"model": blip},
            "limits": {"allow_private_networks": True},  # images come from loopback
        },
        "translation": translation,
        "models": {"defaults": {"translation": {"model": "llama3.1:8b", "temperature": 0.0}}},
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, _shared_standin: OllamaStandIn, tiny_blip_path: Path
) -> Iterator[ApiServer]:
    config = _config(_shared_standin, str(tiny_blip_path), {"backend": "ollama"})
    with running_api_server(tmp_path_factory.mktemp("api"), config) as api:
        yield api


def run_cli(
    tmp_path: Path,
    module_or_shim: str | Path,
    args: list[str],
    config: dict[str, Any],
    env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], str]:
    config_path = write_config(tmp_path / f"cli-{free_port()}.yaml", config)
    if isinstance(module_or_shim, Path):
        command = [sys.executable, str(module_or_shim), *args]
    else:
        command = [sys.executable, "-m", module_or_shim, *args]
    proc = subprocess.run(
        command,
        env=clean_env(
            {
                "AI_LOCAL_CORE_CONFIG": str(config_path),
                # Local image files are read under the test's directory only.
                "AI_LOCAL_CORE_IMAGE__LIMITS__LOCAL_DIRS": json.dumps([str(tmp_path)]),
                **(env or {}),
            }
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line: {proc.stdout!r} / {proc.stderr!r}"
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


def _broken_config(standin: OllamaStandIn, api_url: str | None) -> dict[str, Any]:
    """A configuration that cannot work in-process: only the API server can answer."""
    config = _config(
        standin,
        "/nonexistent/blip-model",
        {"backend": "google", "google": {"base_url": f"http://127.0.0.1:{free_port()}/m"}},
    )
    config["api"] = {"url": api_url}
    return config


# --------------------------------------------------------------------------- translate


def test_translate_in_process(tmp_path: Path, ollama_standin: OllamaStandIn) -> None:
    config = _config(ollama_standin, "unused", {"backend": "ollama"})
    code, out, _ = run_cli(tmp_path, "ai_local_core.cli.translate", ["Hello world", "pl"], config)
    assert code == 0, out
    assert set(out) == TRANSLATE_KEYS
    assert out["translation"] == "Stand-in reply from llama3.1:8b: Hello world"
    assert out["target_language"] == "pl"
    assert len(ollama_standin.requests("/api/chat")) == 1


def test_translate_via_warm_server(
    tmp_path: Path, server: ApiServer, ollama_standin: OllamaStandIn
) -> None:
    config = _broken_config(ollama_standin, server.url)
    code, out, _ = run_cli(tmp_path, TRANSLATE_SHIM, ["Hello world", "pl"], config)
    assert code == 0, out
    assert set(out) == TRANSLATE_KEYS
    assert out["backend"] == "ollama"  # the server's backend, not the CLI's google
    assert out["translation"] == "Stand-in reply from llama3.1:8b: Hello world"


def test_translate_falls_back_when_server_is_down(
    tmp_path: Path, ollama_standin: OllamaStandIn
) -> None:
    config = _config(ollama_standin, "unused", {"backend": "ollama"})
    config["api"] = {"url": f"http://127.0.0.1:{free_port()}"}
    code, out, _ = run_cli(tmp_path, "ai_local_core.cli.translate", ["Hi", "de", "en"], config)
    assert code == 0, out
    assert (out["backend"], out["source_language"]) == ("ollama", "en")


def test_translate_errors_are_the_same_either_way(
    tmp_path: Path, server: ApiServer, ollama_standin: OllamaStandIn
) -> None:
    in_process = _config(ollama_standin, "unused", {"backend": "ollama"})
    warm = _broken_config(ollama_standin, server.url)
    for config in (in_process, warm):
        code, out, _ = run_cli(tmp_path, "ai_local_core.cli.translate", ["Hi", "xx"], config)
        assert (code, out["success"], out["error"]["type"]) == (2, False, "unsupported_language")
        assert out["error"]["message"] == "unsupported language code 'xx'"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "missing argument"),
        (["Hello"], "missing argument: the target language"),
        (["a", "b", "c", "d"], "at most 3 arguments"),
        (["", "pl"], "empty"),
        (["Hello", "klingon"], "not a language code"),
    ],
)
def test_translate_bad_arguments(
    tmp_path: Path, ollama_standin: OllamaStandIn, args: list[str], needle: str
) -> None:
    config = _config(ollama_standin, "unused", {"backend": "ollama"})
    code, out, _ = run_cli(tmp_path, "ai_local_core.cli.translate", args, config)
    assert code != 0
    assert out["success"] is False
    assert needle in out["error"]["message"]


# --------------------------------------------------------------------------- describe


def test_describe_in_process_with_tiny_blip(
    tmp_path: Path, tiny_blip_path: Path, ollama_standin: OllamaStandIn, web: LoopbackServer
) -> None:
    config = _config(ollama_standin, str(tiny_blip_path), {"backend": "ollama"})
    code, out, _ = run_cli(
        tmp_path, "ai_local_core.cli.describe", [web.url("/cat.png"), "7"], config
    )
    assert code == 0, out
    assert set(out) == DESCRIBE_KEYS
    assert out["backend"] == "blip"
    assert out["tokens"] == len(out["description"].split()) == 7


def test_describe_via_warm_server(
    tmp_path: Path, server: ApiServer, ollama_standin: OllamaStandIn, web: LoopbackServer
) -> None:
    config = _broken_config(ollama_standin, server.url)
    code, out, _ = run_cli(tmp_path, DESCRIBE_SHIM, [web.url("/cat.png"), "6"], config)
    assert code == 0, out
    assert set(out) == DESCRIBE_KEYS
    assert out["tokens"] == 6
    assert "tiny-blip" in out["model"]


def test_describe_local_file_via_warm_server(
    tmp_path: Path, server: ApiServer, ollama_standin: OllamaStandIn
) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(20, 20))
    config = _broken_config(ollama_standin, server.url)
    code, out, _ = run_cli(tmp_path, "ai_local_core.cli.describe", [str(image)], config)
    assert code == 0, out
    assert out["image"] == {"format": "PNG", "width": 20, "height": 20}
    assert out["max_length"] == 50


def test_describe_errors_are_the_same_either_way(
    tmp_path: Path, server: ApiServer, ollama_standin: OllamaStandIn, web: LoopbackServer
) -> None:
    in_process = _config(ollama_standin, "/nonexistent/blip-model", {"backend": "ollama"})
    warm = _broken_config(ollama_standin, server.url)
    results = []
    for config in (in_process, warm):
        for url in (web.url("/missing.png"), web.url("/page.html")):
            code, out, _ = run_cli(tmp_path, "ai_local_core.cli.describe", [url], config)
            results.append((code, out))
    assert results[0] == results[2]
    assert results[1] == results[3]
    assert results[0][0] == 22 and results[0][1]["error"]["type"] == "image_fetch_failed"
    assert results[1][0] == 2 and results[1][1]["error"]["type"] == "not_an_image"


def test_describe_model_that_cannot_load(tmp_path: Path, ollama_standin: OllamaStandIn) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes())
    config = _config(ollama_standin, "/nonexistent/blip-model", {"backend": "ollama"})
    code, out, _ = run_cli(tmp_path, "ai_local_core.cli.describe", [str(image)], config)
    assert (code, out["error"]["type"]) == (20, "backend_unavailable")
    assert "cannot load BLIP model" in out["error"]["message"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "missing argument"),
        (["a", "50", "x"], "at most 2 arguments"),
        (["http://127.0.0.1:1/x.png", "fifty"], "whole number"),
        (["http://127.0.0.1:1/x.png", "0"], "greater than or equal to 1"),
        (["", "10"], "at least 1 character"),
        (["/nonexistent/photo.png"], "no such image file"),
    ],
)
def test_describe_bad_arguments(
    tmp_path: Path, ollama_standin: OllamaStandIn, args: list[str], needle: str
) -> None:
    config = _config(ollama_standin, "/nonexistent/blip-model", {"backend": "ollama"})
    code, out, _ = run_cli(tmp_path, "ai_local_core.cli.describe", args, config)
    assert code == 2
    assert out["success"] is False
    assert needle in out["error"]["message"]


# --------------------------------------------------------------------------- never twice


def test_warm_answers_successes_and_errors(
    tmp_path: Path, server: ApiServer, ollama_standin: OllamaStandIn, web: LoopbackServer
) -> None:
    """Through the server (the configuration here could not do the work), successes and the
    server's errors keep their objects and exit codes."""
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(12, 10))
    warm = _broken_config(ollama_standin, server.url)
    calls = [
        ("ai_local_core.cli.translate", ["Hello world", "pl"]),
        ("ai_local_core.cli.translate", ["Hi", "xx"]),
        ("ai_local_core.cli.describe", [str(image), "5"]),
        ("ai_local_core.cli.describe", [web.url("/page.html")]),
        ("ai_local_core.cli.describe", [web.url("/missing.png")]),
    ]
    results = [run_cli(tmp_path, module, args, warm)[:2] for module, args in calls]
    assert [code for code, _ in results] == [0, 2, 0, 2, 22]
    assert results[2][1]["image"] == {"format": "PNG", "width": 12, "height": 10}
    assert results[2][1]["tokens"] == 5


def test_describe_is_not_run_again_after_the_server_hung_up(
    tmp_path: Path, tiny_blip_path: Path, ollama_standin: OllamaStandIn
) -> None:
    """The server read the request and died: exit 25, and BLIP is not loaded here to do
    the same work again (this configuration would describe the image in-process)."""
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(12, 10))
    received: list[int] = []

    def hang_up(handler: BaseHTTPRequestHandler) -> None:
        received.append(len(handler.rfile.read(int(handler.headers["Content-Length"]))))
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    config = _config(ollama_standin, str(tiny_blip_path), {"backend": "ollama"})
    with loopback_server({"/v1/describe": hang_up}) as api:
        config["api"] = {"url": api.url("")}
        code, out, _ = run_cli(tmp_path, "ai_local_core.cli.describe", [str(image), "5"], config)
    assert (code, out["error"]["type"]) == (25, "api_server_error")
    assert len(received) == 1 and received[0] > 0
    config["api"] = {"url": f"http://127.0.0.1:{free_port()}"}  # unreachable: runs here
    code, out, _ = run_cli(tmp_path, "ai_local_core.cli.describe", [str(image), "5"], config)
    assert (code, out["backend"], out["tokens"]) == (0, "blip", 5)
