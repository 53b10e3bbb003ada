"""OllamaClient against the stand-in over real loopback sockets."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timezone

import pytest
from ai_local_core.ollama import (
    AuthError,
    ChatResponse,
    ConnectionFailed,
    InvalidResponse,
    ModelNotFound,
    OllamaClient,
    OllamaError,
    PullProgress,
    RetryPolicy,
    ServerBusy,
    Timeout,
)

from tests.conftest import StandInFactory
from tests.fixtures.ollama import OllamaStandIn

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, max_total=5)
USER = [{"role": "user", "content": "Hello there"}]


def make_client(standin: OllamaStandIn, **kwargs: object) -> OllamaClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout", 5.0)
    return OllamaClient(standin.url, **kwargs)  # type: ignore[arg-type]


def test_version_list_show(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client:
        assert client.version() == "0.0.0-standin"
        names = {m.name for m in client.list_models()}
        assert {"llama3.1:8b", "nomic-embed-text:latest"} <= names
        info = client.show("llama3.1:8b")
        assert info.capabilities == ["completion"]
        assert info.details.parameter_size == "8.0B"
        assert client.ping()


def test_chat_non_streaming(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client:
        result = client.chat("llama3.1:8b", USER)
    assert result.content == "Stand-in reply from llama3.1:8b: Hello there"
    assert result.done and result.done_reason == "stop"
    assert result.usage.completion_tokens == 6
    assert result.usage.prompt_tokens == 2
    assert result.tokens_per_second == pytest.approx(100.0)


def test_chat_streaming_yields_tokens_then_the_final_object(ollama_standin: OllamaStandIn) -> None:
    with (
        make_client(ollama_standin) as client,
        client.chat(
            "llama3.1:8b", USER, stream=True, options={"standin_token_delay": 0.001}
        ) as stream,
    ):
        chunks = list(stream)
    assert [c.done for c in chunks] == [False] * 6 + [True]
    result = ChatResponse.from_stream(chunks)
    assert result.content == "Stand-in reply from llama3.1:8b: Hello there"
    assert result.eval_count == 6
    assert result.tokens_per_second == pytest.approx(1000.0)


def test_generate_both_ways_and_options(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client:
        whole = client.generate("llama3.1:8b", "Say something", options={"num_predict": 3})
        streamed = list(client.generate("llama3.1:8b", "Say something", stream=True))
    assert whole.response == "Stand-in reply from "
    assert whole.done_reason == "length"
    assert whole.context
    assert "".join(c.response for c in streamed) == "Stand-in reply from llama3.1:8b: Say something"
    assert streamed[-1].done_reason == "stop"


def test_zero_metrics_are_omitted_and_read_as_zero(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client:
        client.chat("llama3.1:8b", USER)  # loads the model
        warm = client.chat("llama3.1:8b", USER, options={"num_predict": 0})
    assert warm.load_duration == 0
    assert warm.eval_count == 0 and warm.eval_duration == 0
    assert warm.tokens_per_second == 0.0
    assert warm.total_duration > 0


def test_embed(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client:
        result = client.embed("nomic-embed-text", ["one", "two words"])
    assert len(result.embeddings) == 2
    assert result.embeddings[0] != result.embeddings[1]
    assert result.prompt_eval_count == 3


def test_ps_reports_loaded_models_with_keep_alive(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client:
        client.chat("llama3.1:8b", USER, keep_alive="10m")
        client.chat("llama3.2:3b", USER, keep_alive=-1)
        running = {m.name: m for m in client.ps()}
        client.chat("llama3.2:3b", USER, keep_alive=0)
        after = {m.name for m in client.ps()}
    now = datetime.now(timezone.utc)
    expires = running["llama3.1:8b"].expires_at
    assert expires is not None
    assert 9 * 60 < (expires - now).total_seconds() <= 10 * 60
    forever = running["llama3.2:3b"].expires_at
    assert forever is not None and forever.year > now.year + 100
    assert after == {"llama3.1:8b"}


def test_pull_reports_progress_and_persists_then_delete(ollama_standin: OllamaStandIn) -> None:
    seen: list[PullProgress] = []
    with make_client(ollama_standin) as client:
        final = client.pull_model("qwen2.5:0.5b", progress=seen.append)
        assert final.status == "success"
        assert "qwen2.5:0.5b" in {m.name for m in client.list_models()}
        client.delete("qwen2.5:0.5b")
        assert "qwen2.5:0.5b" not in {m.name for m in client.list_models()}
        with pytest.raises(ModelNotFound):
            client.delete("qwen2.5:0.5b")
    statuses = [p.status for p in seen]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    transfers = [p for p in seen if p.total]
    assert transfers and transfers[-1].fraction == 1.0


def test_pull_of_an_unknown_model(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client, pytest.raises(OllamaError) as info:
        client.pull_model("missing-model:7b")
    assert "pull model manifest: file does not exist" in info.value.message


def test_model_not_found_and_missing_capability(ollama_standin: OllamaStandIn) -> None:
    with make_client(ollama_standin) as client:
        with pytest.raises(ModelNotFound) as info:
            client.chat("nope:1b", USER)
        assert info.value.status == 404
        assert "try pulling it first" in info.value.message
        with pytest.raises(OllamaError) as bad:
            client.chat("nomic-embed-text", USER)
        assert bad.value.status == 400
        assert "does not support chat" in bad.value.message
    assert len(ollama_standin.requests("/api/chat")) == 2  # neither was retried


def test_503_then_success_is_retried(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("status", status=503, count=1, path="/api/chat")
    with make_client(ollama_standin) as client:
        assert client.chat("llama3.1:8b", USER).done
    assert [r["status"] for r in ollama_standin.requests("/api/chat")] == [503, 200]


def test_persistent_503_ends_as_server_busy(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("status", status=503, count=0, path="/api/chat")
    with make_client(ollama_standin) as client, pytest.raises(ServerBusy) as info:
        client.chat("llama3.1:8b", USER)
    assert info.value.attempts == 3
    assert len(ollama_standin.requests("/api/chat")) == 3


def test_connection_refused_is_retried_then_clear() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        OllamaClient(f"127.0.0.1:{port}", retry=FAST) as client,
        pytest.raises(ConnectionFailed) as info,
    ):
        client.version()
    assert f"cannot connect to Ollama at http://127.0.0.1:{port}" in info.value.message
    assert info.value.attempts == 3


def test_connection_closed_without_answer_is_retried(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("close", count=1, path="/api/tags")
    with make_client(ollama_standin) as client:
        assert client.list_models()
    assert [r["status"] for r in ollama_standin.requests("/api/tags")] == [0, 200]


def test_slow_server_times_out_without_retry(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("stall", seconds=1.0, count=1, path="/api/chat")
    with make_client(ollama_standin, timeout=0.3) as client, pytest.raises(Timeout):
        client.chat("llama3.1:8b", USER)
    time.sleep(0.8)  # let the stalled handler finish before counting
    assert len(ollama_standin.requests("/api/chat")) == 1


def test_mid_stream_error_line(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("error", after_tokens=2, message="CUDA error: out of memory")
    received = []
    with make_client(ollama_standin) as client, pytest.raises(OllamaError, match="out of memory"):
        for chunk in client.chat("llama3.1:8b", USER, stream=True):
            received.append(chunk.content)
    assert received == ["Stand-in ", "reply "]
    assert len(ollama_standin.requests("/api/chat")) == 1


def test_mid_stream_error_in_a_folded_answer(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("error", after_tokens=1, message="runner crashed")
    with make_client(ollama_standin) as client, pytest.raises(OllamaError) as info:
        client.chat("llama3.1:8b", USER)
    assert "runner crashed" in info.value.message
    assert len(ollama_standin.requests("/api/chat")) == 1


@pytest.mark.parametrize("call", ["chat", "generate"])
def test_one_result_is_streamed_so_the_timeout_counts_silence(
    ollama_standin: OllamaStandIn, call: str
) -> None:
    """6 tokens 0.15 s apart: about 0.9 s in all, over the 0.5 s read timeout, never silent
    that long. Asked with ``stream: false`` Ollama would send nothing until the end."""
    options = {"standin_token_delay": 0.15}
    with make_client(ollama_standin, timeout=0.5) as client:
        if call == "chat":
            text = client.chat("llama3.1:8b", USER, options=options).content
        else:
            text = client.generate("llama3.1:8b", "Hello there", options=options).response
    assert text == "Stand-in reply from llama3.1:8b: Hello there"
    assert [r["path"] for r in ollama_standin.requests()][-1] == f"/api/{call}"


def test_dropped_stream_is_not_repeated(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("drop", after_tokens=3)
    received = []
    with make_client(ollama_standin) as client, pytest.raises(ConnectionFailed):
        for chunk in client.chat("llama3.1:8b", USER, stream=True):
            received.append(chunk.content)
    assert len(received) == 3
    assert len(ollama_standin.requests("/api/chat")) == 1


def test_lines_split_across_chunks_by_the_server(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("split", chunk_size=3)
    with make_client(ollama_standin) as client:
        chunks = list(client.chat("llama3.1:8b", USER, stream=True))
    assert ChatResponse.from_stream(chunks).content.endswith("Hello there")


def test_invalid_body_is_an_invalid_response(ollama_standin: OllamaStandIn) -> None:
    ollama_standin.add_fault("status", status=200, body="<html>proxy page</html>", count=1)
    with make_client(ollama_standin) as client, pytest.raises(InvalidResponse):
        client.version()


def test_host_check_gives_a_clear_auth_error(ollama_standin: OllamaStandIn) -> None:
    with (
        make_client(ollama_standin, headers={"Host": "ollama.example.com"}) as client,
        pytest.raises(AuthError) as info,
    ):
        client.version()
    assert info.value.status == 403
    assert "Host/Origin check" in info.value.message


def test_max_queue_answers_503_and_retries_recover(
    ollama_standin_factory: StandInFactory,
) -> None:
    standin = ollama_standin_factory(
        env={"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "0"}, models=["llama3.1:8b"]
    )
    slow_done = threading.Event()

    def slow() -> None:
        with make_client(standin) as client:
            client.chat("llama3.1:8b", USER, options={"standin_token_delay": 0.05})
        slow_done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 5
    while standin.control("GET", "state")["active"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with make_client(standin, retry=RetryPolicy.none()) as client, pytest.raises(ServerBusy):
        client.chat("llama3.1:8b", USER)
    patient = RetryPolicy(max_attempts=10, backoff_initial=0.1, backoff_max=0.2, max_total=10)
    with make_client(standin, retry=patient) as client:
        assert client.chat("llama3.1:8b", USER).done
    thread.join(timeout=10)
    assert slow_done.is_set()


def test_bearer_auth_accepted_and_rejected(ollama_standin_factory: StandInFactory) -> None:
    standin = ollama_standin_factory(
        env={"OLLAMA_STANDIN_REQUIRE_BEARER": "s3cret"}, models=["llama3.1:8b"]
    )
    with make_client(standin, token="s3cret") as client:
        assert client.chat("llama3.1:8b", USER).done
    with make_client(standin, token="wrong") as client, pytest.raises(AuthError) as info:
        client.version()
    assert info.value.status == 401
    assert "s3cret" not in info.value.message
    with make_client(standin) as client, pytest.raises(AuthError):
        client.version()
    assert [r["status"] for r in standin.requests("/api/version")] == [401, 401]


def test_basic_auth_from_the_url_accepted_and_rejected(
    ollama_standin_factory: StandInFactory,
) -> None:
    standin = ollama_standin_factory(
        env={"OLLAMA_STANDIN_REQUIRE_BASIC": "waldus:pa:ss"}, models=[]
    )
    url = f"http://waldus:pa%3Ass@{standin.ollama_host}"
    with OllamaClient(url, retry=FAST) as client:
        assert client.version() == "0.0.0-standin"
    with (
        OllamaClient(standin.url, basic_auth=("waldus", "nope"), retry=FAST) as client,
        pytest.raises(AuthError),
    ):
        client.version()
