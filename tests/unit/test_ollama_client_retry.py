"""OllamaClient over httpx.MockTransport: retries, auth, timeouts, streams (no sockets)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from ai_local_core.errors import ConfigError, InvalidInput
from ai_local_core.ollama import (
    AuthError,
    ConnectionFailed,
    InvalidResponse,
    ModelNotFound,
    OllamaClient,
    OllamaError,
    RetryPolicy,
    ServerBusy,
    Timeout,
)
from ai_local_core.ollama.client import DEFAULT_TIMEOUT

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002, max_total=5.0)
FINAL = {
    "model": "m",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "eval_count": 2,
    "eval_duration": 40_000_000,
}
CHAT_OK = {**FINAL, "message": {"role": "assistant", "content": "Hello"}}

Responder = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that plays a script of responses and records requests."""

    def __init__(self, *script: Responder | httpx.Response | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)


def client(recorder: Recorder, **kwargs: Any) -> OllamaClient:
    kwargs.setdefault("retry", FAST)
    return OllamaClient(
        "http://ollama.test:11434", transport=httpx.MockTransport(recorder), **kwargs
    )


def error(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message}, headers=headers)


def test_503_then_success_is_retried() -> None:
    rec = Recorder(
        error(503, "server busy, please try again.  maximum pending requests exceeded"),
        httpx.Response(200, json=CHAT_OK),
    )
    result = client(rec).chat("m", [{"role": "user", "content": "hi"}])
    assert result.content == "Hello"
    assert len(rec.requests) == 2


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried_until_attempts_run_out(status: int) -> None:
    rec = Recorder(error(status, "nope"))
    with pytest.raises(OllamaError) as info:
        client(rec).version()
    assert len(rec.requests) == 3
    assert info.value.status == status
    assert info.value.attempts == 3
    assert "(after 3 attempts)" in info.value.message


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, OllamaError),
        (401, AuthError),
        (403, AuthError),
        (404, ModelNotFound),
        (500, OllamaError),
    ],
)
def test_other_errors_are_not_retried(status: int, cls: type[OllamaError]) -> None:
    rec = Recorder(error(status, "model 'm' not found" if status == 404 else "bad"))
    with pytest.raises(cls) as info:
        client(rec).show("m")
    assert len(rec.requests) == 1
    assert info.value.status == status
    assert info.value.attempts == 1


def test_connection_refused_is_retried_then_reported_clearly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder(httpx.ConnectError("[Errno 111] Connection refused"))
    with (
        caplog.at_level(logging.WARNING, logger="ai_local_core.ollama"),
        pytest.raises(ConnectionFailed) as info,
    ):
        client(rec).list_models()
    assert len(rec.requests) == 3
    assert "cannot connect to Ollama at http://ollama.test:11434" in info.value.message
    assert "Connection refused" in info.value.message
    assert "(after 3 attempts)" in info.value.message
    assert len([r for r in caplog.records if "retrying in" in r.getMessage()]) == 2


def test_connection_error_then_success() -> None:
    rec = Recorder(httpx.ConnectError("refused"), httpx.Response(200, json={"version": "0.9"}))
    assert client(rec).version() == "0.9"
    assert len(rec.requests) == 2


def test_read_timeout_is_not_retried() -> None:
    rec = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(Timeout):
        client(rec).chat("m", [{"role": "user", "content": "hi"}])
    assert len(rec.requests) == 1


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=6, backoff_initial=0.1, backoff_max=0.5, max_total=60)
    c = client(Recorder(error(503, "busy")), retry=policy)
    c.sleep = sleeps.append
    with pytest.raises(ServerBusy):
        c.version()
    assert len(sleeps) == 5
    assert 0.1 <= sleeps[0] <= 0.2
    assert 0.2 <= sleeps[1] <= 0.3
    assert all(s <= 0.5 for s in sleeps)
    assert sleeps[-1] == 0.5


def test_total_time_bounds_the_retries() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_initial=0.05, backoff_max=0.05, max_total=0.12)
    rec = Recorder(error(503, "busy"))
    with pytest.raises(ServerBusy):
        client(rec, retry=policy).version()
    assert 2 <= len(rec.requests) < 10


def test_retry_after_header_is_honoured_but_capped() -> None:
    sleeps: list[float] = []
    rec = Recorder(
        error(429, "slow down", **{"Retry-After": "30"}), httpx.Response(200, json={"version": "1"})
    )
    policy = RetryPolicy(max_attempts=2, backoff_initial=0.001, backoff_max=0.01, max_total=5)
    c = client(rec, retry=policy)
    c.sleep = sleeps.append
    assert c.version() == "1"
    assert sleeps == [0.01]


def test_basic_auth_from_url_userinfo_is_kept_and_not_in_base_url() -> None:
    rec = Recorder(httpx.Response(200, json={"version": "1"}))
    c = OllamaClient("http://bob:s%3Acret@gw.test:8080/ollama", transport=httpx.MockTransport(rec))
    c.version()
    expected = "Basic " + base64.b64encode(b"bob:s:cret").decode()
    assert rec.requests[0].headers["Authorization"] == expected
    assert str(rec.requests[0].url) == "http://gw.test:8080/ollama/api/version"
    assert "s:cret" not in c.base_url and "bob" not in repr(c)


def test_bearer_token_header() -> None:
    rec = Recorder(httpx.Response(200, json={"version": "1"}))
    client(rec, token="t0ken").version()
    assert rec.requests[0].headers["Authorization"] == "Bearer t0ken"


def test_basic_and_bearer_together_are_a_config_error() -> None:
    with pytest.raises(ConfigError):
        OllamaClient("http://u:p@h", token="t")
    with pytest.raises(ConfigError):
        OllamaClient("http://h", basic_auth=("u", "p"), token="t")


def test_timeouts_are_finite_by_default_and_per_call_override_read() -> None:
    seen: list[dict[str, Any]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=CHAT_OK)

    c = client(Recorder(respond))
    assert None not in (
        DEFAULT_TIMEOUT.connect,
        DEFAULT_TIMEOUT.read,
        DEFAULT_TIMEOUT.write,
        DEFAULT_TIMEOUT.pool,
    )
    c.chat("m", [{"role": "user", "content": "hi"}])
    c.chat("m", [{"role": "user", "content": "hi"}], timeout=7.5)
    assert seen[0]["read"] == DEFAULT_TIMEOUT.read
    assert seen[1]["read"] == 7.5
    with pytest.raises(ConfigError):
        OllamaClient("http://h", timeout=httpx.Timeout(None))


def test_invalid_url_and_empty_model_are_rejected() -> None:
    with pytest.raises(ConfigError):
        OllamaClient("ftp://nope")
    with pytest.raises(InvalidInput):
        client(Recorder(httpx.Response(200))).show(" ")


def test_request_body_carries_options_and_default_keep_alive() -> None:
    rec = Recorder(httpx.Response(200, json={"response": "ok", "done": True}))
    c = client(rec, keep_alive="10m")
    c.generate("m", "hi", system="be brief", options={"temperature": 0.2})
    body = json.loads(rec.requests[0].content)
    assert body == {
        "model": "m",
        "prompt": "hi",
        "stream": True,  # always: the answer is folded from the chunks
        "system": "be brief",
        "options": {"temperature": 0.2},
        "keep_alive": "10m",
    }


def test_non_json_or_malformed_response_is_invalid_response() -> None:
    with pytest.raises(InvalidResponse):
        client(Recorder(httpx.Response(200, text="<html>"))).version()
    with pytest.raises(InvalidResponse):
        client(Recorder(httpx.Response(200, json={"models": [{"size": "big"}]}))).list_models()


# ---------------------------------------------------------------- streams


def ndjson(*objects: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


class BreakingStream(httpx.SyncByteStream):
    """Yields some bytes, then fails like a dropped connection."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def chunk(text: str) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": text}, "done": False}


def test_stream_open_is_retried_on_503_before_anything_is_yielded() -> None:
    rec = Recorder(error(503, "busy"), httpx.Response(200, content=ndjson(chunk("Hi"), FINAL)))
    with client(rec).chat("m", [{"role": "user", "content": "x"}], stream=True) as stream:
        parts = [c.content for c in stream]
    assert parts == ["Hi", ""]
    assert len(rec.requests) == 2


def test_a_stream_that_already_yielded_is_never_retried() -> None:
    rec = Recorder(
        httpx.Response(200, stream=BreakingStream(ndjson(chunk("Hi")))),
        httpx.Response(200, content=ndjson(chunk("again"), FINAL)),
    )
    stream = client(rec).chat("m", [{"role": "user", "content": "x"}], stream=True)
    received = []
    with pytest.raises(ConnectionFailed, match="mid-stream after 1 messages"):
        for item in stream:
            received.append(item.content)
    assert received == ["Hi"]
    assert len(rec.requests) == 1


def test_stream_error_line_raises_the_mapped_error() -> None:
    body = ndjson(chunk("a"), {"error": "an error was encountered while running the model"})
    rec = Recorder(httpx.Response(200, content=body))
    stream = client(rec).generate("m", "x", stream=True)
    with pytest.raises(OllamaError, match="while running the model"):
        list(stream)
    assert len(rec.requests) == 1


def test_stream_ending_without_the_final_message_is_invalid() -> None:
    rec = Recorder(httpx.Response(200, content=ndjson(chunk("a"))))
    with pytest.raises(InvalidResponse, match="without its final message"):
        list(client(rec).chat("m", [{"role": "user", "content": "x"}], stream=True))


def test_pull_feeds_progress_and_returns_success() -> None:
    lines: list[dict[str, Any]] = [
        {"status": "pulling manifest"},
        {"status": "pulling abc", "digest": "sha256:abc", "total": 10, "completed": 5},
        {"status": "success"},
    ]
    rec = Recorder(httpx.Response(200, content=ndjson(*lines)))
    seen: list[str] = []
    final = client(rec).pull_model("m", progress=lambda p: seen.append(p.status))
    assert final.status == "success"
    assert seen == ["pulling manifest", "pulling abc", "success"]


def test_pull_of_unknown_model_raises_with_the_servers_message() -> None:
    lines = ndjson({"status": "pulling manifest"}) + ndjson(
        {"error": "pull model manifest: file does not exist"}
    )
    rec = Recorder(httpx.Response(200, content=lines))
    with pytest.raises(OllamaError, match="file does not exist"):
        client(rec).pull_model("missing")
