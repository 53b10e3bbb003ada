"""The official ``ollama`` Python client against the stand-in: proof it speaks the protocol."""

from __future__ import annotations

import ollama
import pytest

from tests.fixtures.ollama import OllamaStandIn

pytestmark = pytest.mark.integration


@pytest.fixture
def client(ollama_standin: OllamaStandIn) -> ollama.Client:
    return ollama.Client(host=ollama_standin.url, timeout=10)


def test_list(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    assert "llama3.1:8b" in models
    entry = models["llama3.1:8b"]
    assert entry.details is not None and entry.details.family == "llama"
    assert entry.modified_at is not None and entry.size


def test_chat_non_streaming_and_streaming(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    reply = client.chat(model="llama3.1:8b", messages=messages)
    assert reply.message.content == "Stand-in reply from llama3.1:8b: Why is the sky blue?"
    assert reply.done and reply.eval_count == 9
    parts = list(client.chat(model="llama3.1:8b", messages=messages, stream=True))
    assert "".join(p.message.content or "" for p in parts) == reply.message.content
    assert parts[-1].done_reason == "stop"


def test_generate_non_streaming_and_streaming(client: ollama.Client) -> None:
    whole = client.generate(model="llama3.1:8b", prompt="Hi", options={"num_predict": 2})
    assert whole.response == "Stand-in reply "
    assert whole.done_reason == "length"
    parts = list(client.generate(model="llama3.1:8b", prompt="Hi", stream=True))
    assert parts[-1].done
    assert "".join(p.response or "" for p in parts).endswith(": Hi")


def test_pull_streaming_and_not(client: ollama.Client) -> None:
    statuses = [p.status for p in client.pull("phi3:mini", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.pull("phi3:mini").status == "success"
    assert client.delete("phi3:mini").status == "success"


def test_errors_surface_as_response_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    assert missing.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as unknown:
        list(client.pull("missing-thing", stream=True))
    assert "file does not exist" in unknown.value.error


def test_show_ps_embed(client: ollama.Client) -> None:
    assert client.show("llama3.1:8b").capabilities == ["completion"]
    client.generate(model="llama3.1:8b", prompt="warm up")
    assert [m.model for m in client.ps().models] == ["llama3.1:8b"]
    embedded = client.embed(model="nomic-embed-text", input="hello")
    assert len(embedded.embeddings) == 1 and len(embedded.embeddings[0]) == 8
