"""The CLIs' warm path: ai-complete / ai-describe / ai-translate hand their work to the API
server through the normal settings and :func:`ai_local_core.api.remote.call_api`, at most once.

A scripted loopback server stands in for the API server. In-process ``main()``
calls check what is sent, printed and returned; the work that would run in this
process (the completion, the image backend, the translation) is replaced by a
recorder, so a test sees whether it ran. The rule under test: the work runs here
only when the request never reached the server (refused, connect timeout, no URL);
once the server was sent the request, its answer or its failure is final.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from ai_local_core.api import remote
from ai_local_core.cli import complete as complete_cli
from ai_local_core.cli import describe as describe_cli
from ai_local_core.cli import translate as translate_cli
from ai_local_core.config import Settings
from ai_local_core.image import service as image_service
from ai_local_core.translation import service as translation_service

from tests.api_harness import clean_env, free_port
from tests.fixtures.ollama import REPO_ROOT
from tests.loopback_http import Handler, LoopbackServer, loopback_server, send, slow, static

#: An image URL on loopback where nothing listens: only ever sent, or refused, never fetched.
NOWHERE = f"http://127.0.0.1:{free_port()}/cat.png"
OK_TRANSLATION = {
    "success": True,
    "translation": "Hallo Welt",
    "source_language": "auto",
    "target_language": "de",
    "backend": "ollama",
    "model": "llama3.1:8b",
    "duration_ms": 3,
}
OK_COMPLETION = {
    "success": True,
    "content": "Hi there",
    "model": "llama3.1:8b",
    "provider": "ollama",
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    "duration_ms": 4,
    "tokens_per_second": 50.0,
    "done_reason": "stop",
}
OK_DESCRIPTION = {
    "success": True,
    "description": "a red square",
    "backend": "blip",
    "model": "tiny",
    "tokens": 3,
    "max_length": 7,
    "image": {"format": "PNG", "width": 2, "height": 2},
    "duration_ms": 5,
}
#: Each tool's API route, its argv and the server's success object.
TOOLS: dict[str, tuple[Callable[[list[str]], int], str, list[str], dict[str, Any]]] = {
    "complete": (complete_cli.main, "/v1/complete", ['{"user": "Hi"}'], OK_COMPLETION),
    "describe": (describe_cli.main, "/v1/describe", [NOWHERE, "7"], OK_DESCRIPTION),
    "translate": (translate_cli.main, "/v1/translate", ["Hello world", "de"], OK_TRANSLATION),
}


def _json(status: int, body: object) -> Handler:
    return static(status, json.dumps(body).encode(), "application/json")


def _error(status: int, error_type: str | None, message: str = "it failed") -> Handler:
    error: dict[str, str] = {"message": message}
    if error_type is not None:
        error["type"] = error_type
    return _json(status, {"success": False, "error": error})


def _read_body(handler: BaseHTTPRequestHandler) -> Any:
    length = int(handler.headers.get("Content-Length") or 0)
    return json.loads(handler.rfile.read(length))


def _recorder(bodies: list[Any], then: Handler) -> Handler:
    def handle(handler: BaseHTTPRequestHandler) -> None:
        bodies.append(_read_body(handler))
        then(handler)

    return handle


def _hang_up(bodies: list[Any]) -> Handler:
    """Reads the whole request (the server has it: the work may have started), then closes
    the connection without a byte of answer, as a killed worker does."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        bodies.append(_read_body(handler))
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    return handle


def _cut_after_keepalive(bodies: list[Any]) -> Handler:
    """The committed slow answer (200, keep-alive spaces) cut before its JSON object."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        bodies.append(_read_body(handler))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        handler.close_connection = True
        handler.end_headers()
        handler.wfile.write(b"  ")
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)

    return handle


seen_bodies: list[Any] = []

#: The message each error route answers with.
ROUTE_MESSAGES = {
    "/lang": "unsupported language code 'xx'",
    "/busy": "no free slot",
    "/model": "model 'x' not found",
    "/fetch": "HTTP 404 from the image host",
    "/big": "image is over the limit",
    "/new": "it failed",
    "/untyped": "it failed",
}

ROUTES: dict[str, Handler] = {
    "/lang/v1/translate": _error(400, "unsupported_language", ROUTE_MESSAGES["/lang"]),
    "/busy/v1/translate": _error(503, "service_busy", ROUTE_MESSAGES["/busy"]),
    "/model/v1/translate": _error(404, "model_not_found", ROUTE_MESSAGES["/model"]),
    "/model/v1/complete": _error(404, "model_not_found", ROUTE_MESSAGES["/model"]),
    "/fetch/v1/describe": _error(400, "image_fetch_failed", ROUTE_MESSAGES["/fetch"]),
    "/big/v1/describe": _error(413, "image_too_large", ROUTE_MESSAGES["/big"]),
    "/new/v1/translate": _error(500, "brand_new_error"),
    "/untyped/v1/translate": _error(500, None),
    "/slow/v1/translate": slow(2.0, _json(200, OK_TRANSLATION)),
}
for _main, _route, _argv, _ok in TOOLS.values():
    ROUTES[f"/ok{_route}"] = _recorder(seen_bodies, _json(200, _ok))
    ROUTES[f"/hangup{_route}"] = _hang_up(seen_bodies)
    ROUTES[f"/cut{_route}"] = _cut_after_keepalive(seen_bodies)
    ROUTES[f"/proxy{_route}"] = _recorder(
        seen_bodies, static(502, b"<html>Bad Gateway</html>", "text/html")
    )
    ROUTES[f"/old{_route}"] = _recorder(seen_bodies, _error(404, "not_found", "no such route"))
    ROUTES[f"/odd{_route}"] = _recorder(seen_bodies, _json(200, {"no": "success key"}))


@pytest.fixture(scope="module")
def api() -> Iterator[LoopbackServer]:
    with loopback_server(ROUTES) as server:
        yield server


class InProcess:
    """Stands in for the work a CLI does in this process; records every run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[str] = []
        self.backends: list[str] = []

        def complete(payload: Any, settings: Settings) -> dict[str, Any]:
            self.runs.append("complete")
            return {"ran": "in-process"}

        def image_backend(settings: Settings, **kwargs: Any) -> object:
            self.backends.append("image")  # BLIP would load here
            return object()

        def describe(request: Any, backend: object, **kwargs: Any) -> dict[str, Any]:
            self.runs.append("describe")
            return {"ran": "in-process"}

        def translation_backend(settings: Settings, **kwargs: Any) -> object:
            self.backends.append("translation")
            return object()

        def translate(request: Any, backend: object) -> dict[str, Any]:
            self.runs.append("translate")
            return {"ran": "in-process"}

        monkeypatch.setattr(complete_cli, "complete", complete)
        monkeypatch.setattr(image_service, "create_image_backend", image_backend)
        monkeypatch.setattr(image_service, "describe", describe)
        monkeypatch.setattr(translation_service, "create_translation_backend", translation_backend)
        monkeypatch.setattr(translation_service, "translate", translate)


@pytest.fixture(autouse=True)
def here(api: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> InProcess:
    seen_bodies.clear()
    api.seen.clear()
    return InProcess(monkeypatch)


def run(
    main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any], str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.endswith("\n"), out
    assert "Traceback" not in err
    return code, json.loads(out), out, err


def use_api(monkeypatch: pytest.MonkeyPatch, url: str, **api: str) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_API__URL", url)
    for key, value in api.items():
        monkeypatch.setenv(f"AI_LOCAL_CORE_API__{key.upper()}", value)


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_success_comes_from_the_server(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    here: InProcess,
    tool: str,
) -> None:
    main, _, argv, ok = TOOLS[tool]
    use_api(monkeypatch, api.url("/ok"))
    code, out, text, _ = run(main, argv, capsys)
    assert (code, out) == (0, ok)
    assert text.startswith('{"success":true,')
    assert len(seen_bodies) == 1
    assert api.seen[-1].headers["content-type"] == "application/json"
    assert (here.runs, here.backends) == ([], [])  # nothing ran here


def test_what_each_tool_sends(
    api: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_api(monkeypatch, api.url("/ok"))
    request = {"user": "Hello", "temperature": "0.2", "top_k": 40}
    run(complete_cli.main, [json.dumps(request)], capsys)
    run(translate_cli.main, ["Hello world", "de"], capsys)
    run(describe_cli.main, [NOWHERE], capsys)
    assert seen_bodies == [
        request,  # as it is: the server validates it again and names what it ignored
        {"text": "Hello world", "target": "de", "source": "auto"},
        {"image": NOWHERE},
    ]


def test_describe_sends_a_local_file_base64(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    data = bytes(range(256)) * 4  # the server decodes it, not the CLI
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    use_api(monkeypatch, api.url("/ok"))
    monkeypatch.setenv("AI_LOCAL_CORE_IMAGE__LIMITS__LOCAL_DIRS", json.dumps([str(tmp_path)]))
    code, out, _, _ = run(describe_cli.main, [str(path), "7"], capsys)
    assert (code, out) == (0, OK_DESCRIPTION)
    sent = {"image_base64": base64.b64encode(data).decode(), "max_length": 7}
    assert seen_bodies == [sent]


# --------------------------------------------------------------------------- server errors


SERVER_ERRORS = [
    ("/lang", translate_cli.main, ["Hi", "xx"], "unsupported_language", 2),
    ("/busy", translate_cli.main, ["Hi", "de"], "service_busy", 24),
    ("/model", translate_cli.main, ["Hi", "de"], "model_not_found", 11),
    ("/model", complete_cli.main, ['{"user": "Hi", "model": "x"}'], "model_not_found", 11),
    ("/fetch", describe_cli.main, [NOWHERE], "image_fetch_failed", 22),
    ("/big", describe_cli.main, [NOWHERE], "image_too_large", 23),
    ("/new", translate_cli.main, ["Hi", "de"], "brand_new_error", 1),
    ("/untyped", translate_cli.main, ["Hi", "de"], "internal_error", 1),
]


@pytest.mark.parametrize(
    ("prefix", "main", "argv", "error_type", "exit_code"),
    SERVER_ERRORS,
    ids=[f"{case[0].strip('/')}-{i}" for i, case in enumerate(SERVER_ERRORS)],
)
def test_server_errors_keep_type_message_and_exit_code(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    here: InProcess,
    prefix: str,
    main: Callable[[list[str]], int],
    argv: list[str],
    error_type: str,
    exit_code: int,
) -> None:
    use_api(monkeypatch, api.url(prefix))
    served = ROUTE_MESSAGES[prefix]
    code, out, _, _ = run(main, argv, capsys)
    assert code == exit_code
    assert out == {"success": False, "error": {"type": error_type, "message": served}}
    assert (here.runs, here.backends) == ([], [])


# --------------------------------------------------------------------------- never twice

#: (route prefix, error type, a piece of the message): the server was sent the request.
ACCEPTED_THEN_FAILED = [
    ("/hangup", "api_server_error", "closed without an answer"),
    ("/cut", "api_server_error", "without its JSON object"),
    ("/proxy", "api_server_error", "answered HTTP 502 without its JSON object"),
    ("/odd", "api_server_error", "answered HTTP 200 without its JSON object"),
    ("/old", "not_found", "no such route"),
]


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize(
    ("prefix", "error_type", "needle"),
    ACCEPTED_THEN_FAILED,
    ids=[case[0].strip("/") for case in ACCEPTED_THEN_FAILED],
)
def test_a_request_the_server_was_sent_is_never_run_again_here(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    here: InProcess,
    tool: str,
    prefix: str,
    error_type: str,
    needle: str,
) -> None:
    main, _, argv, _ = TOOLS[tool]
    use_api(monkeypatch, api.url(prefix))
    code, out, _, _ = run(main, argv, capsys)
    assert (code, out["success"], out["error"]["type"]) == (25, False, error_type)
    assert needle in out["error"]["message"]
    assert len(seen_bodies) == 1  # the server got the whole request once...
    assert (here.runs, here.backends) == ([], [])  # ...and nothing ran (or loaded) here


def test_a_hang_up_names_the_server_and_says_it_was_not_rerun(
    api: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_api(monkeypatch, api.url("/hangup"))
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert code == 25
    assert out["error"] == {
        "type": "api_server_error",
        "message": f"the API server at {api.url('/hangup')} failed after it was sent the "
        "request (the connection closed without an answer); not run again here",
    }


# --------------------------------------------------------------------------- not reached


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_nothing_listening_runs_in_process_once(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    here: InProcess,
    tool: str,
) -> None:
    main, _, argv, _ = TOOLS[tool]
    use_api(monkeypatch, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AI_LOCAL_CORE_LOG_LEVEL", "INFO")
    code, out, _, err = run(main, argv, capsys)
    assert (code, out) == (0, {"success": True, "ran": "in-process"})
    assert here.runs == [tool]
    assert "not reachable" in err and "running in-process" in err


def test_connect_timeout_runs_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], here: InProcess
) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so
    # connecting hangs until the connect timeout (loopback only).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            use_api(monkeypatch, f"http://127.0.0.1:{port}", connect_timeout="0.2")
            monkeypatch.setenv("AI_LOCAL_CORE_LOG_LEVEL", "INFO")
            code, out, _, err = run(translate_cli.main, ["Hi", "de"], capsys)
        finally:
            for filler in fillers:
                filler.close()
    assert (code, out["ran"]) == (0, "in-process")
    assert here.runs == ["translate"]
    assert "not reachable (timed out); running in-process" in err


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_no_url_runs_in_process_without_a_request(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    here: InProcess,
    tool: str,
) -> None:
    main, _, argv, _ = TOOLS[tool]
    code, out, _, _ = run(main, argv, capsys)
    assert (code, out["ran"]) == (0, "in-process")
    assert here.runs == [tool]
    assert api.seen == []


def test_a_server_that_stops_answering_is_api_server_error(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    here: InProcess,
) -> None:
    use_api(monkeypatch, api.url("/slow"), client_timeout="0.3")
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert code == 25
    assert out["error"] == {
        "type": "api_server_error",
        "message": f"the API server at {api.url('/slow')} did not answer within 0.3 s",
    }
    assert here.runs == []


def test_the_requests_own_timeout_bounds_the_wait_for_the_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], here: InProcess
) -> None:
    """``ai-complete``'s ``timeout`` (Ollama's silence) plus the server's margin bounds
    the CLI's wait when it is longer than ``api.client_timeout``, and only then."""
    monkeypatch.setattr(remote, "SERVER_MARGIN", 0.2)

    def late(handler: BaseHTTPRequestHandler) -> None:
        _read_body(handler)
        time.sleep(0.6)
        send(handler, 200, json.dumps(OK_COMPLETION).encode(), content_type="application/json")

    with loopback_server({"/v1/complete": late}) as server:
        use_api(monkeypatch, server.url(""), client_timeout="0.3")
        code, out, _, _ = run(complete_cli.main, ['{"user": "Hi", "timeout": 0.6}'], capsys)
        assert (code, out) == (0, OK_COMPLETION)  # waited up to 0.8 s
        code, out, _, _ = run(complete_cli.main, ['{"user": "Hi", "timeout": 0.05}'], capsys)
        assert (code, out["error"]["type"]) == (25, "api_server_error")  # 0.3 s
        assert "did not answer within 0.3 s" in out["error"]["message"]
    assert here.runs == []


# --------------------------------------------------------------------------- before sending


@pytest.mark.parametrize(
    ("setup", "error_type", "exit_code"),
    [
        ("missing", "invalid_image_source", 2),
        ("too-large", "image_too_large", 23),
        ("local-off", "invalid_image_source", 2),
        ("directory", "invalid_image_source", 2),
        ("outside", "invalid_image_source", 2),
        ("no-dirs", "invalid_image_source", 2),
    ],
)
def test_local_file_problems_are_reported_here_without_a_request(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    here: InProcess,
    setup: str,
    error_type: str,
    exit_code: int,
) -> None:
    use_api(monkeypatch, api.url("/ok"))
    path = tmp_path / "photo.png"
    path.write_bytes(b"x" * 64)
    allowed = [str(tmp_path)]
    if setup == "outside":  # a file that exists, outside the allowed directory
        allowed = [str(tmp_path / "pictures")]
    elif setup == "no-dirs":
        allowed = []
    monkeypatch.setenv("AI_LOCAL_CORE_IMAGE__LIMITS__LOCAL_DIRS", json.dumps(allowed))
    if setup == "missing":
        path = tmp_path / "missing.png"
    elif setup == "too-large":
        monkeypatch.setenv("AI_LOCAL_CORE_IMAGE__LIMITS__MAX_BYTES", "63")
    elif setup == "local-off":
        monkeypatch.setenv("AI_LOCAL_CORE_IMAGE__LIMITS__ALLOW_LOCAL_PATHS", "false")
    elif setup == "directory":
        path = tmp_path
    code, out, _, _ = run(describe_cli.main, [str(path)], capsys)
    assert (code, out["error"]["type"]) == (exit_code, error_type)
    assert api.seen == []
    assert here.runs == []


@pytest.mark.parametrize(
    ("main", "argv", "needle"),
    [
        (describe_cli.main, [], "missing argument: the image URL or path"),
        (describe_cli.main, ["x.png", "fifty"], "MAX_LENGTH must be a whole number"),
        (describe_cli.main, ["a", "1", "b"], "expected at most 2 arguments"),
        (describe_cli.main, [NOWHERE, "0"], "greater than or equal to 1"),
        (translate_cli.main, ["Hello"], "missing argument: the target language"),
        (translate_cli.main, ["a", "b", "c", "d"], "expected at most 3 arguments"),
        (translate_cli.main, ["Hello", "x" * 17], "target: String should have at most 16"),
        (complete_cli.main, ['{"user": ""}'], "empty prompt"),
        (complete_cli.main, ["[1]"], "must be a JSON object"),
    ],
)
def test_bad_input_is_invalid_input_without_a_request(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    main: Callable[[list[str]], int],
    argv: list[str],
    needle: str,
) -> None:
    use_api(monkeypatch, api.url("/ok"))
    code, out, _, _ = run(main, argv, capsys)
    assert (code, out["error"]["type"]) == (2, "invalid_input")
    assert needle in out["error"]["message"]
    assert api.seen == []


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"AI_LOCAL_CORE_API__CONNECT_TIMEOUT": "600"}, "api.connect_timeout"),  # over 60
        ({"AI_LOCAL_CORE_API__CONNECT_TIMEOUT": "٣"}, "api.connect_timeout"),
        ({"AI_LOCAL_CORE_LOG_LEVEL": "verbose"}, "log_level"),
    ],
)
def test_config_errors_exit_3_without_a_request(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    needle: str,
) -> None:
    use_api(monkeypatch, api.url("/ok"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out["error"]["type"]) == (3, "config_error")
    assert needle in out["error"]["message"]
    assert api.seen == []


def test_the_settings_are_the_one_loader_s(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``api.url`` from a whole section as JSON, or from the config file: whatever
    ``load_settings()`` reads is what the CLI uses (no second reader to disagree)."""
    monkeypatch.setenv("AI_LOCAL_CORE_API", json.dumps({"url": api.url("/ok")}))
    code, _, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    monkeypatch.delenv("AI_LOCAL_CORE_API")
    config = tmp_path / "c.yaml"
    config.write_text(f"api:\n  url: {api.url('/ok')}\n  connect_timeout: 1_0\n")
    monkeypatch.setenv("AI_LOCAL_CORE_CONFIG", str(config))
    second, _, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, second) == (0, 0)
    assert len(api.seen) == 2


# --------------------------------------------------------------------------- cost, odds


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_a_warm_call_imports_no_backend(tool: str) -> None:
    """What a warm call imports: the settings, the request model and the HTTP helper, not
    Pillow, torch, transformers or the web framework."""
    _, route, argv, ok = TOOLS[tool]
    code = (
        "import json, sys\n"
        f"from ai_local_core.cli import {tool}\n"
        f"status = {tool}.main(sys.argv[1:])\n"
        "heavy = {'PIL', 'torch', 'transformers', 'numpy', 'flask', 'werkzeug', 'gunicorn'}\n"
        "found = heavy & {n.split('.')[0] for n in sys.modules}\n"
        "print(json.dumps(sorted(found)), file=sys.stderr)\n"
        "sys.exit(status)\n"
    )

    def heavy_imports(url: str) -> tuple[int, set[str], dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv],
            env=clean_env({"AI_LOCAL_CORE_API__URL": url}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO_ROOT,
        )
        return (
            proc.returncode,
            set(json.loads(proc.stderr.splitlines()[-1])),
            json.loads(proc.stdout),
        )

    with loopback_server({route: _json(200, ok)}) as server:
        status, heavy, out = heavy_imports(server.url(""))
    assert (status, out, heavy) == (0, ok, set())


def test_keyboard_interrupt_while_waiting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], here: InProcess
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(remote, "post_json", interrupted)
    use_api(monkeypatch, "http://127.0.0.1:9")
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out["error"]["type"]) == (130, "interrupted")
    assert here.runs == []


def test_server_answer_with_unicode_is_printed_ascii(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {**OK_TRANSLATION, "translation": "Witaj świecie"}
    body = json.dumps(answer, ensure_ascii=False).encode("utf-8")
    event = threading.Event()

    def handle(handler: BaseHTTPRequestHandler) -> None:
        send(handler, 200, body, content_type="application/json; charset=utf-8")
        event.set()

    with loopback_server({"/v1/translate": handle}) as server:
        use_api(monkeypatch, server.url(""))
        code, out, text, _ = run(translate_cli.main, ["Hello world", "pl"], capsys)
    assert event.is_set()
    assert (code, out["translation"]) == (0, "Witaj świecie")
    assert "\\u015b" in text
