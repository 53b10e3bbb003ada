"""The client's retry rule, both ways: what may be repeated and what must not be.

Any request is retried after a failed connect, a connect timeout, 429 and 503 (with
``Retry-After``); a GET also after any transport error and a gateway's 502/504; a POST
or DELETE that may have reached Ollama's handler never is. A stream that ends without
its final (``done``) message is an error. Raw loopback sockets where the kind of failure
matters (a reset after the body went out, a refused connect), ``httpx.MockTransport``
elsewhere.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from ai_local_core.errors import InvalidInput
from ai_local_core.ollama import (
    ConnectionFailed,
    InvalidResponse,
    ModelNotFound,
    OllamaClient,
    OllamaError,
    RetryPolicy,
    ServerBusy,
    Timeout,
)

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002, max_total=5.0)
DONE = {"model": "m", "response": "", "done": True, "done_reason": "stop", "eval_count": 1}
CHAT_DONE = {"model": "m", "message": {"role": "assistant", "content": "ok"}, "done": True}
USER = [{"role": "user", "content": "hi"}]


def ndjson(*objects: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


# ---------------------------------------------------------------- raw loopback sockets


@dataclass
class ResettingServer:
    """Reads each whole request (head and body), then resets the connection (RST)."""

    port: int = 0
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)


def _read_request(conn: socket.socket) -> tuple[str, str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return "", "", b""
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    method, path = head.split(b" ")[:2]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return method.decode(), path.decode(), body


@contextmanager
def resetting_server() -> Iterator[ResettingServer]:
    server = ResettingServer()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    server.port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                request = _read_request(conn)
                if request[0]:
                    server.requests.append(request)
                # SO_LINGER 0: close() sends RST, after the whole request was received
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Call = Callable[[OllamaClient], object]
POSTS_AND_DELETE: dict[str, tuple[str, Call]] = {
    "generate": ("/api/generate", lambda c: c.generate("m", "hi")),
    "generate-stream": ("/api/generate", lambda c: list(c.generate("m", "hi", stream=True))),
    "chat": ("/api/chat", lambda c: c.chat("m", USER)),
    "embed": ("/api/embed", lambda c: c.embed("m", "hi")),
    "show": ("/api/show", lambda c: c.show("m")),
    "pull": ("/api/pull", lambda c: c.pull_model("m")),
    "delete": ("/api/delete", lambda c: c.delete("m")),
}
GETS: dict[str, tuple[str, Call]] = {
    "version": ("/api/version", lambda c: c.version()),
    "tags": ("/api/tags", lambda c: c.list_models()),
    "ps": ("/api/ps", lambda c: c.ps()),
}


def test_a_generate_reset_after_its_body_was_sent_is_not_sent_again() -> None:
    with resetting_server() as server:
        client = OllamaClient(f"127.0.0.1:{server.port}", retry=FAST, timeout=5.0)
        with client, pytest.raises(ConnectionFailed) as info:
            client.generate("m", "hi", options={"seed": 1})
    assert [(m, p) for m, p, _ in server.requests] == [("POST", "/api/generate")]
    assert json.loads(server.requests[0][2])["prompt"] == "hi"  # the body went out whole
    assert info.value.attempts == 1
    assert "after" not in info.value.message


@pytest.mark.parametrize("name", list(POSTS_AND_DELETE))
def test_no_post_or_delete_is_sent_again_after_a_reset(name: str) -> None:
    path, call = POSTS_AND_DELETE[name]
    with resetting_server() as server:
        client = OllamaClient(f"127.0.0.1:{server.port}", retry=FAST, timeout=5.0)
        with client, pytest.raises(ConnectionFailed):
            call(client)
    assert [p for _, p, _ in server.requests] == [path]


@pytest.mark.parametrize("name", list(GETS))
def test_a_get_reset_before_the_answer_is_sent_again(name: str) -> None:
    path, call = GETS[name]
    with resetting_server() as server:
        client = OllamaClient(f"127.0.0.1:{server.port}", retry=FAST, timeout=5.0)
        with client, pytest.raises(ConnectionFailed) as info:
            call(client)
    assert [p for _, p, _ in server.requests] == [path] * 3
    assert info.value.attempts == 3


@pytest.mark.parametrize("name", ["generate", "chat", "delete", "version"])
def test_a_refused_connect_is_retried_for_any_request(name: str) -> None:
    call = {**POSTS_AND_DELETE, **GETS}[name][1]
    port = free_port()
    sleeps: list[float] = []
    client = OllamaClient(f"127.0.0.1:{port}", retry=FAST, timeout=5.0)
    client.sleep = sleeps.append
    with client, pytest.raises(ConnectionFailed) as info:
        call(client)
    assert len(sleeps) == 2  # three attempts, two waits
    assert info.value.attempts == 3
    assert f"cannot connect to Ollama at http://127.0.0.1:{port}" in info.value.message
    assert "(after 3 attempts)" in info.value.message


# ---------------------------------------------------------------- MockTransport


class Script:
    """Plays responses (or raises transport errors) in order; records every request."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step

    def client(self, **kwargs: Any) -> OllamaClient:
        kwargs.setdefault("retry", FAST)
        return OllamaClient(
            "http://ollama.test:11434", transport=httpx.MockTransport(self), **kwargs
        )


def status(code: int, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": message}, headers=headers)


def test_a_refused_connect_then_success_runs_the_generation_once() -> None:
    script = Script(
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.Response(200, content=ndjson(DONE)),
    )
    assert script.client().generate("m", "hi").done
    assert len(script.requests) == 2


def test_a_connect_timeout_is_retried_for_a_post() -> None:
    script = Script(httpx.ConnectTimeout("timed out"))
    with pytest.raises(ConnectionFailed, match="connect timeout") as info:
        script.client().chat("m", USER)
    assert len(script.requests) == 3
    assert info.value.attempts == 3


@pytest.mark.parametrize("code", [429, 503])
def test_429_and_503_with_retry_after_are_retried_for_a_post(code: int) -> None:
    script = Script(
        status(code, "server busy, please try again.", **{"Retry-After": "0.004"}),
        httpx.Response(200, content=ndjson(DONE)),
    )
    sleeps: list[float] = []
    client = script.client(
        retry=RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=1, max_total=5)
    )
    client.sleep = sleeps.append
    assert client.generate("m", "hi").done
    assert [r.url.path for r in script.requests] == ["/api/generate"] * 2
    assert sleeps == [0.004]  # the server's Retry-After, not the backoff


def test_503_for_every_attempt_ends_as_server_busy() -> None:
    script = Script(status(503, "server busy, please try again."))
    with pytest.raises(ServerBusy) as info:
        script.client().delete("m")
    assert len(script.requests) == 3
    assert info.value.status == 503 and info.value.attempts == 3


@pytest.mark.parametrize("code", [502, 504])
@pytest.mark.parametrize("name", list(POSTS_AND_DELETE))
def test_a_gateway_502_or_504_is_not_sent_again_for_a_post_or_delete(code: int, name: str) -> None:
    path, call = POSTS_AND_DELETE[name]
    script = Script(status(code, "bad gateway"), httpx.Response(200, json={"status": "success"}))
    with pytest.raises(OllamaError) as info:
        call(script.client())
    assert [r.url.path for r in script.requests] == [path]
    assert info.value.status == code
    assert info.value.attempts == 1 and info.value.retryable is False


def test_a_delete_answered_502_is_not_repeated_into_model_not_found() -> None:
    """What the old client did: the first DELETE ran, the repeat found nothing to delete."""
    script = Script(status(502, "bad gateway"), status(404, 'model "m" not found'))
    with pytest.raises(ConnectionFailed) as info:
        script.client().delete("m")
    assert [r.method for r in script.requests] == ["DELETE"]
    assert not isinstance(info.value, ModelNotFound)


@pytest.mark.parametrize("code", [502, 503, 504])
@pytest.mark.parametrize("name", list(GETS))
def test_a_gateway_error_is_retried_for_a_get(code: int, name: str) -> None:
    path, call = GETS[name]
    script = Script(status(code), httpx.Response(200, json={"version": "1", "models": []}))
    call(script.client())
    assert [r.url.path for r in script.requests] == [path] * 2


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.WriteError("[Errno 32] Broken pipe"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=type,
)
def test_a_transport_error_after_the_connect_is_retried_for_get_only(error: Exception) -> None:
    get = Script(error, httpx.Response(200, json={"models": []}))
    assert get.client().list_models() == []
    assert len(get.requests) == 2
    post = Script(error, httpx.Response(200, content=ndjson(DONE)))
    with pytest.raises((ConnectionFailed, Timeout)) as info:
        post.client().generate("m", "hi")
    assert len(post.requests) == 1
    assert info.value.retryable is False


def test_nothing_is_retried_once_a_get_was_answered() -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b'{"models": ['
            raise httpx.ReadError("[Errno 104] Connection reset by peer")

    script = Script(httpx.Response(200, stream=Broken()))
    with pytest.raises(ConnectionFailed):
        script.client().list_models()
    assert len(script.requests) == 1


# ---------------------------------------------------------------- streams without done


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "folded"])
@pytest.mark.parametrize(
    "body",
    [
        ndjson({"model": "m", "response": "Hal", "done": False}),
        ndjson({"model": "m", "response": "Hal", "done": False}, {"model": "m", "response": "lo"}),
        b"",
    ],
    ids=["one-chunk", "two-chunks", "empty"],
)
def test_a_generation_ending_without_done_is_an_error(body: bytes, stream: bool) -> None:
    script = Script(httpx.Response(200, content=body))
    client = script.client()
    with pytest.raises(InvalidResponse, match="without its final message"):
        if stream:
            list(client.generate("m", "hi", stream=True))
        else:
            client.generate("m", "hi")
    assert len(script.requests) == 1


def test_a_chat_ending_without_done_is_an_error_also_folded() -> None:
    chunk = {"model": "m", "message": {"role": "assistant", "content": "Hal"}, "done": False}
    script = Script(httpx.Response(200, content=ndjson(chunk)))
    with pytest.raises(InvalidResponse, match="ended after 1 messages without its final"):
        script.client().chat("m", USER)


def test_a_pull_ending_without_success_is_an_error() -> None:
    script = Script(httpx.Response(200, content=ndjson({"status": "pulling manifest"})))
    with pytest.raises(InvalidResponse, match="without its final message"):
        script.client().pull_model("m")


# ---------------------------------------------------------------- what the official client parses


PAYLOAD = ndjson(
    {"model": "m", "message": {"role": "assistant", "content": "Zażółć "}, "done": False},
    {"model": "m", "message": {"role": "assistant", "content": "gęślą jaźń"}, "done": False},
    CHAT_DONE,
)


class Pieces(httpx.SyncByteStream):
    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces


@pytest.mark.parametrize("cut", range(1, len(PAYLOAD), 7))
def test_lines_cut_anywhere_give_the_same_answer(cut: int) -> None:
    script = Script(httpx.Response(200, stream=Pieces(PAYLOAD[:cut], PAYLOAD[cut:])))
    assert script.client().chat("m", USER).content == "Zażółć gęślą jaźńok"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('model "x" not found, try pulling it first', ModelNotFound),
        ("server busy, please try again.  maximum pending requests exceeded", ServerBusy),
        ("an error was encountered while running the model", OllamaError),
    ],
)
def test_error_lines_map_to_the_matching_class(message: str, expected: type) -> None:
    chunk = {"model": "m", "response": "x", "done": False}
    script = Script(httpx.Response(200, content=ndjson(chunk, {"error": message})))
    seen: list[str] = []
    with pytest.raises(OllamaError) as info:
        for item in script.client().generate("m", "hi", stream=True):
            seen.append(item.response)
    assert seen == ["x"]
    assert type(info.value) is expected
    assert info.value.message == message
    assert len(script.requests) == 1


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'"text"\n', b'{"a": 1\n'])
def test_a_line_that_is_not_a_json_object_is_an_invalid_response(line: bytes) -> None:
    script = Script(httpx.Response(200, content=line))
    with pytest.raises(InvalidResponse):
        script.client().generate("m", "hi")
    assert len(script.requests) == 1


def test_images_are_sent_as_given_and_never_read_as_file_names(tmp_path: Any) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for the server")
    script = Script(httpx.Response(200, content=ndjson(DONE)))
    client = script.client()
    client.generate("m", "hi", images=["aGVsbG8="])
    assert json.loads(script.requests[0].content)["images"] == ["aGVsbG8="]
    with pytest.raises(InvalidInput, match="base64"):
        client.generate("m", "hi", images=[str(secret)])
    assert len(script.requests) == 1


def test_ollama_api_key_from_the_environment_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "for-ollama-com")
    script = Script(httpx.Response(200, json={"version": "1"}))
    script.client().version()
    script.client(token="ours").version()
    assert "authorization" not in script.requests[0].headers
    assert script.requests[1].headers["authorization"] == "Bearer ours"
    assert script.requests[0].headers["user-agent"].startswith("ai-local-core/")


def test_show_without_model_info_is_still_an_answer() -> None:
    """Ollama leaves out an empty ``model_info``; the official ShowResponse requires it."""
    body = {"capabilities": ["completion", "vision"], "details": {"family": "llava"}}
    script = Script(httpx.Response(200, json=body))
    info = script.client().show("llava")
    assert info.capabilities == ["completion", "vision"]
    assert info.details.family == "llava" and info.model_info == {}
    assert json.loads(script.requests[0].content) == {"model": "llava"}
