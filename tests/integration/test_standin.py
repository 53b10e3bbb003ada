"""The Ollama stand-in itself: its CLI, packaging layout, persistence and protocol details."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StandInFactory
from tests.fixtures.ollama import STANDIN_DIR, STANDIN_EXECUTABLE, OllamaStandIn, clean_environ

pytestmark = pytest.mark.integration


def cli(
    *args: str, host: str = "127.0.0.1:9", executable: Path = STANDIN_EXECUTABLE, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = clean_environ({"OLLAMA_HOST": host, **env})
    return subprocess.run(
        [str(executable), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def raw(
    standin: OllamaStandIn,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(standin.host, standin.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_version_from_env_and_from_the_packaged_layout(tmp_path: Path) -> None:
    result = cli("--version", OLLAMA_STANDIN_VERSION="0.12.3")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "Warning: could not connect to a running Ollama instance",
        "Warning: client version is 0.12.3",
    ]
    root = tmp_path / "ollama-linux-amd64"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(STANDIN_EXECUTABLE, root / "bin" / "ollama")
    shutil.copytree(
        STANDIN_DIR, root / "lib" / "ollama", ignore=shutil.ignore_patterns("ollama", "__pycache__")
    )
    (root / "lib" / "ollama" / "VERSION").write_text("0.13.5\n")
    result = cli("-v", executable=root / "bin" / "ollama")
    assert result.returncode == 0
    assert "Warning: client version is 0.13.5" in result.stdout


def test_serve_through_the_shebang_and_client_subcommands(
    ollama_standin_factory: StandInFactory,
) -> None:
    standin = ollama_standin_factory(
        python=None, models=["llama3.1:8b"], env={"OLLAMA_STANDIN_VERSION": "0.9.9"}
    )
    host = standin.ollama_host
    assert cli("-v", host=host, OLLAMA_STANDIN_VERSION="0.9.9").stdout.strip() == (
        "ollama version is 0.9.9"
    )
    pulled = cli("pull", "gemma3:1b", host=host)
    assert pulled.returncode == 0, pulled.stderr
    assert "success" in pulled.stderr
    listing = cli("list", host=host).stdout.splitlines()
    assert listing[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert {line.split()[0] for line in listing[1:]} == {"gemma3:1b", "llama3.1:8b"}
    ran = cli("run", "llama3.1:8b", "Hello", "world", host=host)
    assert ran.stdout == "Stand-in reply from llama3.1:8b: Hello world\n"
    ps = cli("ps", host=host).stdout
    assert "llama3.1:8b" in ps and "minutes from now" in ps
    shown = cli("show", "llama3.1:8b", host=host).stdout
    assert "architecture        llama" in shown and "completion" in shown
    assert cli("stop", "llama3.1:8b", host=host).returncode == 0
    assert "llama3.1:8b" not in cli("ps", host=host).stdout
    removed = cli("rm", "gemma3:1b", host=host)
    assert removed.stdout.strip() == "deleted 'gemma3:1b'"
    missing = cli("pull", "missing-model", host=host)
    assert missing.returncode == 1
    assert "Error: pull model manifest: file does not exist" in missing.stderr
    assert standin.stop() == 0
    assert 'msg="Listening on 127.0.0.1:' in standin.logs()
    assert "[GIN]" in standin.logs()


def test_cli_without_a_server_says_so() -> None:
    result = cli("list")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: could not connect to ollama server")


def test_pulls_and_deletes_survive_a_restart(
    ollama_standin_factory: StandInFactory, tmp_path: Path
) -> None:
    models = tmp_path / "shared-models"
    first = ollama_standin_factory(models=[], models_dir=models)
    assert cli("pull", "mistral:7b", host=first.ollama_host).returncode == 0
    first.stop()
    second = ollama_standin_factory(models=[], models_dir=models)
    assert "mistral:7b" in cli("list", host=second.ollama_host).stdout
    assert (models / "manifests/registry.ollama.ai/library/mistral/7b").is_file()
    assert cli("rm", "mistral", host=second.ollama_host).returncode == 1  # :latest is absent
    assert cli("rm", "mistral:7b", host=second.ollama_host).returncode == 0
    second.stop()
    third = ollama_standin_factory(models=[], models_dir=models)
    assert "mistral" not in cli("list", host=third.ollama_host).stdout
    assert list((models / "blobs").iterdir()) == []


def test_unknown_pattern_from_env(ollama_standin_factory: StandInFactory) -> None:
    standin = ollama_standin_factory(models=[], env={"OLLAMA_STANDIN_UNKNOWN": "secret*,x:1b"})
    for name in ("secret-model", "x:1b"):
        status, _, body = raw(standin, "POST", "/api/pull", {"model": name, "stream": False})
        assert (status, json.loads(body)) == (
            500,
            {"error": "pull model manifest: file does not exist"},
        )
    status, _, body = raw(standin, "POST", "/api/pull", {"model": "x:2b", "stream": False})
    assert (status, json.loads(body)) == (200, {"status": "success"})


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:11434", True),
        ("localhost:11434", True),
        ("localhost", True),
        ("10.1.2.3", True),
        ("192.168.1.10:80", True),
        ("[::1]:11434", True),
        ("gpu.local", True),
        ("node.internal:11434", True),
        ("evil.example.com", False),
        ("8.8.8.8:11434", False),
        ("ollama.mydomain.org", False),
    ],
)
def test_host_check(ollama_standin: OllamaStandIn, host: str, allowed: bool) -> None:
    status, headers, body = raw(ollama_standin, "GET", "/api/version", headers={"Host": host})
    if allowed:
        assert status == 200
    else:
        assert (status, body, headers.get("Content-Length")) == (403, b"", "0")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:3000", True),
        ("https://127.0.0.1", True),
        ("app://whatever", True),
        ("chrome-extension://abcdef", True),
        ("https://evil.example.com", False),
    ],
)
def test_origin_check(ollama_standin: OllamaStandIn, origin: str, allowed: bool) -> None:
    status, headers, body = raw(ollama_standin, "GET", "/api/tags", headers={"Origin": origin})
    if allowed:
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == origin
    else:
        assert (status, body) == (403, b"")


def test_configured_origins_and_preflight(ollama_standin_factory: StandInFactory) -> None:
    standin = ollama_standin_factory(models=[], env={"OLLAMA_ORIGINS": "https://*.example.org"})
    status, _, _ = raw(standin, "GET", "/api/tags", headers={"Origin": "https://a.example.org"})
    assert status == 200
    status, headers, _ = raw(
        standin,
        "OPTIONS",
        "/api/chat",
        headers={"Origin": "https://a.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert status == 204
    assert "POST" in headers["Access-Control-Allow-Methods"]


def test_ndjson_stream_format(ollama_standin: OllamaStandIn) -> None:
    status, headers, body = raw(
        ollama_standin, "POST", "/api/generate", {"model": "llama3.1:8b", "prompt": "Hi"}
    )
    assert status == 200
    assert headers["Content-Type"] == "application/x-ndjson"
    assert headers["Transfer-Encoding"] == "chunked"
    lines = [json.loads(line) for line in body.splitlines()]
    assert all(not line["done"] for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert {"total_duration", "prompt_eval_count", "eval_count", "eval_duration"} <= set(final)
    assert all(value != 0 for value in final.values() if isinstance(value, int))


def test_error_bodies_and_statuses(ollama_standin: OllamaStandIn) -> None:
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/api/chat", None, 400, "missing request body"),
        ("POST", "/api/chat", {"model": "", "messages": []}, 400, "model is required"),
        (
            "POST",
            "/api/chat",
            {"model": "llama3.1:8b", "messages": [], "options": {"temperature": "hot"}},
            400,
            "temperature",
        ),
        (
            "POST",
            "/api/generate",
            {"model": "none:1b", "prompt": "x"},
            404,
            "model 'none:1b' not found",
        ),
        ("POST", "/api/show", {"model": "none:1b"}, 404, "not found"),
        ("DELETE", "/api/delete", {"model": "none:1b"}, 404, "not found"),
    ]
    for method, path, body, status, fragment in cases:
        got, headers, data = raw(ollama_standin, method, path, body)
        assert got == status, (path, data)
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert fragment in json.loads(data)["error"]
    status, _, data = raw(ollama_standin, "GET", "/api/nothing")
    assert (status, data) == (404, b"404 page not found")
    status, _, data = raw(ollama_standin, "GET", "/")
    assert (status, data) == (200, b"Ollama is running")
    status, _, data = raw(ollama_standin, "HEAD", "/api/version")
    assert (status, data) == (200, b"")


def test_load_and_unload_requests(ollama_standin: OllamaStandIn) -> None:
    status, _, data = raw(ollama_standin, "POST", "/api/generate", {"model": "llama3.1:8b"})
    assert (status, json.loads(data)["done_reason"]) == (200, "load")
    _, _, data = raw(
        ollama_standin, "POST", "/api/generate", {"model": "llama3.1:8b", "keep_alive": 0}
    )
    assert json.loads(data)["done_reason"] == "unload"
    assert ollama_standin.control("GET", "state")["loaded"] == []


def test_ps_reports_the_vram_share_from_env(
    ollama_standin: OllamaStandIn, ollama_standin_factory: StandInFactory
) -> None:
    # Default: a loaded model is wholly in VRAM.
    raw(ollama_standin, "POST", "/api/generate", {"model": "llama3.1:8b"})
    _, _, data = raw(ollama_standin, "GET", "/api/ps")
    (full,) = json.loads(data)["models"]
    assert full["size"] > 0 and full["size_vram"] == full["size"]
    assert "100% GPU" in cli("ps", host=ollama_standin.ollama_host).stdout

    partial = ollama_standin_factory(
        models=["llama3.1:8b"], env={"OLLAMA_STANDIN_VRAM_SHARE": "0.62"}
    )
    raw(partial, "POST", "/api/generate", {"model": "llama3.1:8b"})
    _, _, data = raw(partial, "GET", "/api/ps")
    (model,) = json.loads(data)["models"]
    assert model["size"] == full["size"]
    assert model["size_vram"] == int(model["size"] * 0.62)
    assert "38%/62% CPU/GPU" in cli("ps", host=partial.ollama_host).stdout

    cpu_only = ollama_standin_factory(
        models=["llama3.1:8b"], env={"OLLAMA_STANDIN_VRAM_SHARE": "0"}
    )
    raw(cpu_only, "POST", "/api/generate", {"model": "llama3.1:8b"})
    _, _, data = raw(cpu_only, "GET", "/api/ps")
    assert json.loads(data)["models"][0]["size_vram"] == 0
    assert "100% CPU" in cli("ps", host=cpu_only.ollama_host).stdout


def test_openai_compatible_endpoints(ollama_standin: OllamaStandIn) -> None:
    status, _, data = raw(ollama_standin, "GET", "/v1/models")
    listing = json.loads(data)
    assert listing["object"] == "list"
    assert {"id": "llama3.1:8b", "object": "model", "owned_by": "library"}.items() <= next(
        m for m in listing["data"] if m["id"] == "llama3.1:8b"
    ).items()
    request = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "Hi"}]}
    status, _, data = raw(ollama_standin, "POST", "/v1/chat/completions", request)
    reply = json.loads(data)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == "Stand-in reply from llama3.1:8b: Hi"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["completion_tokens"] == 5
    stream_request = {**request, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, data = raw(ollama_standin, "POST", "/v1/chat/completions", stream_request)
    assert headers["Content-Type"] == "text/event-stream"
    events = [e.removeprefix("data: ") for e in data.decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"])
    assert text == "Stand-in reply from llama3.1:8b: Hi"
    assert chunks[-1]["usage"]["total_tokens"] == 6
    status, _, data = raw(
        ollama_standin, "POST", "/v1/chat/completions", {**request, "model": "none:1b"}
    )
    assert status == 404 and json.loads(data)["error"]["type"] == "not_found_error"


def test_control_endpoints_are_validated(ollama_standin: OllamaStandIn) -> None:
    status, _, data = raw(ollama_standin, "POST", "/_standin/faults", {"kind": "explode"})
    assert status == 400 and "fault kind" in json.loads(data)["error"]
    assert ollama_standin.control("GET", "faults") == {"faults": []}


def test_standin_is_stdlib_only() -> None:
    """Without site-packages (-S) every stand-in module still imports: stdlib only."""
    code = (
        "import sys, importlib, importlib.util as u; d = sys.argv[1]; "
        "spec = u.spec_from_file_location('ollama_standin', d + '/__init__.py', "
        "submodule_search_locations=[d]); m = u.module_from_spec(spec); "
        "sys.modules['ollama_standin'] = m; spec.loader.exec_module(m); "
        "[importlib.import_module('ollama_standin.' + n) "
        " for n in ('standin_store', 'standin_server', 'standin_cli')]; "
        "print(any('site-packages' in p for p in sys.path))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(STANDIN_DIR)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr
