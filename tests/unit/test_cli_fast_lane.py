"""The CLIs' fast lane: ai-describe / ai-translate reach the API server with the stdlib only.

A scripted loopback server stands in for the API server. In-process ``main()``
calls check what is sent, printed and returned; the handlers that would run in
this process are replaced by recorders, so a test sees whether (and with which
``api.url``) the full path ran. One subprocess test checks that the lane
imports neither pydantic nor httpx.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from ai_local_core.cli import complete as complete_cli
from ai_local_core.cli import describe as describe_cli
from ai_local_core.cli import fast_lane
from ai_local_core.cli import translate as translate_cli
from ai_local_core.config import Settings
from ai_local_core.image.loader import is_url

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


def _json(status: int, body: object) -> Handler:
    return static(status, json.dumps(body).encode(), "application/json")


def _error(status: int, error_type: str | None, message: str = "it failed") -> Handler:
    error: dict[str, str] = {"message": message}
    if error_type is not None:
        error["type"] = error_type
    return _json(status, {"success": False, "error": error})


def _recorder(bodies: list[Any], then: Handler) -> Handler:
    def handle(handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        bodies.append(json.loads(handler.rfile.read(length)))
        then(handler)

    return handle


def _hang_up(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


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
    "/ok/v1/translate": _recorder(seen_bodies, _json(200, OK_TRANSLATION)),
    "/ok/v1/describe": _recorder(seen_bodies, _json(200, OK_DESCRIPTION)),
    "/ok/v1/complete": _recorder(seen_bodies, _json(200, OK_COMPLETION)),
    "/model/v1/complete": _error(404, "model_not_found", ROUTE_MESSAGES["/model"]),
    "/lang/v1/translate": _error(400, "unsupported_language", ROUTE_MESSAGES["/lang"]),
    "/busy/v1/translate": _error(503, "service_busy", ROUTE_MESSAGES["/busy"]),
    "/model/v1/translate": _error(404, "model_not_found", ROUTE_MESSAGES["/model"]),
    "/fetch/v1/describe": _error(400, "image_fetch_failed", ROUTE_MESSAGES["/fetch"]),
    "/big/v1/describe": _error(413, "image_too_large", ROUTE_MESSAGES["/big"]),
    "/new/v1/translate": _error(500, "brand_new_error"),
    "/untyped/v1/translate": _error(500, None),
    "/proxy/v1/translate": static(502, b"<html>Bad Gateway</html>", "text/html"),
    "/old/v1/translate": _error(404, "not_found", "no such route"),
    "/get-only/v1/translate": _error(405, "method_not_allowed", "POST not allowed"),
    "/odd/v1/translate": _json(200, {"translation": "no success key"}),
    "/hangup/v1/translate": _hang_up,
    "/slow/v1/translate": slow(2.0, _json(200, OK_TRANSLATION)),
}


@pytest.fixture(scope="module")
def api() -> Iterator[LoopbackServer]:
    with loopback_server(ROUTES) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(api: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen_bodies.clear()
    api.seen.clear()
    # Should a test ever run real translation in-process, Google stays out of reach.
    refused = f"http://127.0.0.1:{free_port()}/m"
    monkeypatch.setenv("AI_LOCAL_CORE_TRANSLATION__GOOGLE__BASE_URL", refused)


class Recorder:
    """Stands in for a CLI handler: records that the full path ran and with which api.url."""

    def __init__(self) -> None:
        self.api_urls: list[str | None] = []

    def __call__(self, payload: Any, settings: Settings) -> dict[str, Any]:
        self.api_urls.append(settings.api.url)
        return {"ran": "in-process"}


@pytest.fixture
def translate_here(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(translate_cli, "translate_command", recorder)
    return recorder


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


def test_translate_success_comes_from_the_server(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    translate_here: Recorder,
) -> None:
    use_api(monkeypatch, api.url("/ok"))
    code, out, text, _ = run(translate_cli.main, ["Hello world", "de"], capsys)
    assert code == 0
    assert out == OK_TRANSLATION
    assert text.startswith('{"success":true,')
    assert seen_bodies == [{"text": "Hello world", "target": "de"}]
    assert api.seen[-1].headers["content-type"] == "application/json"
    assert translate_here.api_urls == []  # nothing ran here


def test_complete_success_comes_from_the_server(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran_here: list[Any] = []

    def here(payload: Any, settings: Settings) -> dict[str, Any]:
        ran_here.append(payload)
        return {}

    monkeypatch.setattr(complete_cli, "complete", here)
    use_api(monkeypatch, api.url("/ok"))
    request = {"user": "Hello", "temperature": 0.2}
    code, out, _, _ = run(complete_cli.main, [json.dumps(request)], capsys)
    assert (code, out) == (0, OK_COMPLETION)
    assert seen_bodies == [request]
    assert ran_here == []  # the warm server did the work


def test_complete_server_error_keeps_type_and_exit_code(
    api: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_api(monkeypatch, api.url("/model"))
    code, out, _, _ = run(complete_cli.main, ['{"user": "Hi", "model": "x"}'], capsys)
    assert code == 11
    assert out["error"] == {"type": "model_not_found", "message": ROUTE_MESSAGES["/model"]}


def test_complete_runs_in_process_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran_here: list[str | None] = []

    def here(payload: Any, settings: Settings) -> dict[str, Any]:
        ran_here.append(settings.api.url)
        return {"content": "local"}

    monkeypatch.setattr(complete_cli, "complete", here)
    use_api(monkeypatch, f"http://127.0.0.1:{free_port()}")
    code, out, _, _ = run(complete_cli.main, ['{"user": "Hi"}'], capsys)
    assert (code, out) == (0, {"success": True, "content": "local"})
    assert ran_here == [None]  # api.url cleared: the server is not tried twice


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


def test_describe_sends_a_url_as_it_is(
    api: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_api(monkeypatch, api.url("/ok"))
    code, _, _, _ = run(describe_cli.main, [NOWHERE], capsys)
    assert code == 0
    assert seen_bodies == [{"image": NOWHERE}]


# --------------------------------------------------------------------------- server errors


SERVER_ERRORS = [
    ("/lang", translate_cli.main, ["Hi", "xx"], "unsupported_language", 2),
    ("/busy", translate_cli.main, ["Hi", "de"], "service_busy", 24),
    ("/model", translate_cli.main, ["Hi", "de"], "model_not_found", 11),
    ("/fetch", describe_cli.main, [NOWHERE], "image_fetch_failed", 22),
    ("/big", describe_cli.main, [NOWHERE], "image_too_large", 23),
    ("/new", translate_cli.main, ["Hi", "de"], "brand_new_error", 1),
    ("/untyped", translate_cli.main, ["Hi", "de"], "internal_error", 1),
]


@pytest.mark.parametrize(
    ("prefix", "main", "argv", "error_type", "exit_code"),
    SERVER_ERRORS,
    ids=[case[0].strip("/") for case in SERVER_ERRORS],
)
def test_server_errors_keep_type_message_and_exit_code(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    translate_here: Recorder,
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
    assert translate_here.api_urls == []


# --------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("prefix", ["/proxy", "/old", "/get-only", "/odd", "/hangup"])
def test_unusable_server_runs_in_process_once(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    translate_here: Recorder,
    prefix: str,
) -> None:
    use_api(monkeypatch, api.url(prefix))
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out) == (0, {"success": True, "ran": "in-process"})
    # The full path ran with api.url cleared: the server is not asked twice.
    assert translate_here.api_urls == [None]
    assert len(api.seen) == 1


def test_nothing_listening_runs_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], translate_here: Recorder
) -> None:
    use_api(monkeypatch, f"http://127.0.0.1:{free_port()}")
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out["ran"]) == (0, "in-process")
    assert translate_here.api_urls == [None]


def test_connect_timeout_runs_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], translate_here: Recorder
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
    assert translate_here.api_urls == [None]
    assert "not reachable (timed out); running in-process" in err


def test_no_url_runs_in_process_without_a_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], translate_here: Recorder
) -> None:
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out["ran"]) == (0, "in-process")
    assert translate_here.api_urls == [None]


def test_a_server_that_stops_answering_is_api_server_error(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    translate_here: Recorder,
) -> None:
    use_api(monkeypatch, api.url("/slow"), client_timeout="0.3")
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert code == 25
    assert out["error"] == {
        "type": "api_server_error",
        "message": f"the API server at {api.url('/slow')} did not answer within 0.3 s",
    }
    assert translate_here.api_urls == []


# --------------------------------------------------------------------------- deferring


@pytest.mark.parametrize(
    "env",
    [
        {"AI_LOCAL_CORE_FAST_LANE": "0"},
        {"AI_LOCAL_CORE_API": '{{"url": "{url}"}}'},  # a whole section as JSON
        {"AI_LOCAL_CORE_API__CONNECT_TIMEOUT": "1_0"},  # not parsed like pydantic here
    ],
)
def test_unsure_lane_leaves_the_decision_to_the_full_path(
    api: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    translate_here: Recorder,
    env: dict[str, str],
) -> None:
    url = api.url("/ok")
    if "AI_LOCAL_CORE_API" not in env:
        use_api(monkeypatch, url)
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(url=url))
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out["ran"]) == (0, "in-process")
    assert translate_here.api_urls == [url]  # the handler is still told about the server
    assert api.seen == []  # and nothing was sent before it


def test_full_path_gives_the_same_bytes(
    api: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = []
    for lane in ("1", "0"):
        monkeypatch.setenv("AI_LOCAL_CORE_FAST_LANE", lane)
        for prefix, argv in (("/ok", ["Hello world", "de"]), ("/busy", ["Hi", "de"])):
            use_api(monkeypatch, api.url(prefix))
            code, _, text, _ = run(translate_cli.main, argv, capsys)
            results.append((code, text))
    assert results[:2] == results[2:]
    assert [code for code, _ in results] == [0, 24, 0, 24]
    assert len(api.seen) == 4


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


# --------------------------------------------------------------------------- argv


@pytest.mark.parametrize(
    ("main", "argv", "needle"),
    [
        (describe_cli.main, [], "missing argument: the image URL or path"),
        (describe_cli.main, ["x.png", "fifty"], "MAX_LENGTH must be a whole number"),
        (describe_cli.main, ["a", "1", "b"], "expected at most 2 arguments"),
        (translate_cli.main, ["Hello"], "missing argument: the target language"),
        (translate_cli.main, ["a", "b", "c", "d"], "expected at most 3 arguments"),
    ],
)
def test_bad_argv_is_invalid_input_without_a_request(
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


def test_config_errors_in_the_full_path_still_exit_3(
    api: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_api(monkeypatch, api.url("/ok"), connect_timeout="600")  # over the bound of 60
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out["error"]["type"]) == (3, "config_error")
    assert "api.connect_timeout" in out["error"]["message"]
    assert api.seen == []


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    "source",
    ["http://x/y.png", "HTTPS://x", "ftp://x/y", "s3+x://b/k", " http://x", "x.png", "/a/b.png",
     "C:\\a.png", "://x", "1http://x", "file:/x", ""],
)  # fmt: skip
def test_describe_tells_urls_from_paths_like_the_loader(source: str) -> None:
    assert bool(describe_cli._URL_SCHEME.match(source.strip())) == is_url(source)


def test_lane_imports_only_the_standard_library_and_yaml(api: LoopbackServer) -> None:
    code = (
        "import json, sys, sysconfig\n"
        "from ai_local_core.cli import describe\n"
        "status = describe.main(sys.argv[1:])\n"
        "site = sysconfig.get_paths()['purelib']\n"
        "files = {n: getattr(m, '__file__', None) or '' for n, m in list(sys.modules.items())}\n"
        "third = {n.split('.')[0] for n, f in files.items() if f.startswith(site)}\n"
        "print(json.dumps(sorted(third - {'ai_local_core'})), file=sys.stderr)\n"
        "sys.exit(status)\n"
    )

    def third_party(url: str) -> tuple[int, set[str], dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-c", code, NOWHERE],
            env=clean_env({"AI_LOCAL_CORE_API__URL": url}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO_ROOT,
        )
        third = set(json.loads(proc.stderr.splitlines()[-1]))
        return proc.returncode, third, json.loads(proc.stdout)

    status, third, out = third_party(api.url("/ok"))
    assert (status, out) == (0, OK_DESCRIPTION)
    assert third <= {"yaml", "_distutils_hack"}  # the latter: setuptools' .pth, at start-up
    # The same call refused by the server runs the full path: pydantic and httpx come in.
    status, third, out = third_party(api.url("/old"))
    assert {"pydantic", "pydantic_settings", "httpx"} <= third
    assert out["error"]["type"] == "image_fetch_failed"  # in-process: nothing listens there


def test_attempt_reports_the_configured_log_level(
    api: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_api(monkeypatch, api.url("/ok"))
    monkeypatch.setenv("AI_LOCAL_CORE_LOG_LEVEL", "info")
    seen: list[str] = []
    outcome = fast_lane.attempt(
        translate_cli.WARM_ROUTE, {"text": "Hi", "target": "de"}, on_log_level=seen.append
    )
    assert outcome == fast_lane.WarmOutcome(OK_TRANSLATION, in_process=False, log_level="INFO")
    assert seen == ["INFO"]


def test_keyboard_interrupt_while_waiting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fast_lane, "post_json", interrupted)
    use_api(monkeypatch, "http://127.0.0.1:9")
    code, out, _, _ = run(translate_cli.main, ["Hi", "de"], capsys)
    assert (code, out["error"]["type"]) == (130, "interrupted")


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
