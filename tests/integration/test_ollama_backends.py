"""The ``ollama`` image and translation backends against the Ollama stand-in (loopback)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from ai_local_core.errors import (
    BackendUnavailable,
    DescribeFailed,
    InvalidInput,
    TextTooLong,
    TranslationFailed,
    UnsupportedLanguage,
)
from ai_local_core.image.loader import ImageLimits, decode_image
from ai_local_core.image.ollama import OllamaVisionBackend
from ai_local_core.ollama import ModelNotFound, OllamaClient, OllamaError, RetryPolicy, ServerBusy
from ai_local_core.translation.ollama import OllamaTranslationBackend

from tests.fixtures.ollama import OllamaStandIn
from tests.image_samples import gif_bytes, jpeg_bytes

pytestmark = pytest.mark.integration

NO_RETRY = RetryPolicy(max_attempts=1)


class RecordingTransport(httpx.HTTPTransport):
    """A real socket transport that also keeps the JSON bodies it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, object]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.content:
            self.bodies.append(json.loads(request.content))
        return super().handle_request(request)


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def client(ollama_standin: OllamaStandIn, transport: RecordingTransport) -> Iterator[OllamaClient]:
    with OllamaClient(ollama_standin.url, retry=NO_RETRY, timeout=5.0, transport=transport) as c:
        yield c


def test_describe_sends_base64_image_prompt_and_limit(
    client: OllamaClient, transport: RecordingTransport
) -> None:
    data = jpeg_bytes()
    backend = OllamaVisionBackend(client, "llava:7b", prompt="Say what you see.", temperature=0.2)
    result = backend.describe(decode_image(data, ImageLimits()), max_length=40)

    assert result.text == "Stand-in reply from llava:7b: Say what you see."
    assert (result.backend, result.model, result.tokens) == ("ollama", "llava:7b", 8)
    body = transport.bodies[-1]
    assert body["prompt"] == "Say what you see."
    assert body["images"] == [base64.b64encode(data).decode()]
    assert body["options"] == {"temperature": 0.2, "num_predict": 40}
    assert body["stream"] is True  # always streamed to Ollama: timeouts count silence


def test_max_length_bounds_the_answer(client: OllamaClient) -> None:
    backend = OllamaVisionBackend(client, "llava:7b", prompt="one two three four five six")
    result = backend.describe(decode_image(jpeg_bytes(), ImageLimits()), max_length=3)
    assert result.tokens == 3
    assert len(result.text.split()) == 3


def test_other_formats_are_sent_as_png(client: OllamaClient, transport: RecordingTransport) -> None:
    backend = OllamaVisionBackend(client, "llava:7b")
    backend.describe(decode_image(gif_bytes(), ImageLimits()), max_length=10)
    images = transport.bodies[-1]["images"]
    assert isinstance(images, list)
    assert base64.b64decode(images[0]).startswith(b"\x89PNG\r\n\x1a\n")


def test_load_checks_model_and_vision_capability(client: OllamaClient) -> None:
    vision = OllamaVisionBackend(client, "llava:7b")
    assert not vision.loaded
    vision.load()
    assert vision.loaded

    with pytest.raises(BackendUnavailable, match="cannot read images"):
        OllamaVisionBackend(client, "llama3.1:8b").load()
    with pytest.raises(ModelNotFound):
        OllamaVisionBackend(client, "missing-vision:1b").load()


def test_describe_unknown_model(client: OllamaClient) -> None:
    backend = OllamaVisionBackend(client, "missing-vision:1b")
    with pytest.raises(ModelNotFound):
        backend.describe(decode_image(jpeg_bytes(), ImageLimits()), max_length=10)


def test_describe_busy_server(ollama_standin: OllamaStandIn, client: OllamaClient) -> None:
    ollama_standin.add_fault("status", status=503, path="/api/generate")
    backend = OllamaVisionBackend(client, "llava:7b")
    with pytest.raises(ServerBusy) as caught:
        backend.describe(decode_image(jpeg_bytes(), ImageLimits()), max_length=10)
    assert caught.value.http_status == 503


def test_empty_description_is_an_error(ollama_standin: OllamaStandIn, client: OllamaClient) -> None:
    answer = {"model": "llava:7b", "response": "  \n", "done": True, "done_reason": "stop"}
    ollama_standin.add_fault("status", status=200, path="/api/generate", body=json.dumps(answer))
    backend = OllamaVisionBackend(client, "llava:7b")
    with pytest.raises(DescribeFailed, match="empty description"):
        backend.describe(decode_image(jpeg_bytes(), ImageLimits()), max_length=10)


def test_bad_arguments(client: OllamaClient) -> None:
    with pytest.raises(InvalidInput):
        OllamaVisionBackend(client, " ")
    with pytest.raises(InvalidInput):
        OllamaVisionBackend(client, "llava:7b", prompt="  ")
    backend = OllamaVisionBackend(client, "llava:7b")
    with pytest.raises(InvalidInput, match="max_length"):
        backend.describe(decode_image(jpeg_bytes(), ImageLimits()), max_length=0)


# --------------------------------------------------------------------------- translation


def test_translate_sends_strict_prompt(client: OllamaClient, transport: RecordingTransport) -> None:
    backend = OllamaTranslationBackend(client, "llama3.1:8b", temperature=0.0)
    result = backend.translate("Hello world", "PL")

    assert result.text == "Stand-in reply from llama3.1:8b: Hello world"
    assert (result.target_language, result.source_language) == ("pl", "auto")
    assert (result.backend, result.model) == ("ollama", "llama3.1:8b")
    body = transport.bodies[-1]
    messages = body["messages"]
    assert isinstance(messages, list)
    assert messages[0]["role"] == "system"
    assert "into Polish (language code: pl)" in messages[0]["content"]
    assert "translation only" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "Hello world"}
    assert body["options"] == {"temperature": 0.0, "num_predict": 2 * len("Hello world") + 64}


def test_translate_validates_before_calling(
    ollama_standin: OllamaStandIn, client: OllamaClient
) -> None:
    backend = OllamaTranslationBackend(client, "llama3.1:8b", max_chars=20)
    with pytest.raises(UnsupportedLanguage):
        backend.translate("Hello", "xx")
    with pytest.raises(InvalidInput, match="empty"):
        backend.translate("   ", "pl")
    with pytest.raises(TextTooLong):
        backend.translate("a" * 21, "pl")
    assert ollama_standin.requests("/api/chat") == []


def test_translate_unknown_model(client: OllamaClient) -> None:
    with pytest.raises(ModelNotFound):
        OllamaTranslationBackend(client, "missing-model:1b").translate("Hello", "de")


def test_translate_model_failure_is_reported(
    ollama_standin: OllamaStandIn, client: OllamaClient
) -> None:
    ollama_standin.add_fault("error", path="/api/chat", after_tokens=1, message="model crashed")
    with pytest.raises(OllamaError, match="model crashed") as caught:
        OllamaTranslationBackend(client, "llama3.1:8b").translate("Hello", "de")
    assert caught.value.http_status == 502


def test_translate_empty_answer(ollama_standin: OllamaStandIn, client: OllamaClient) -> None:
    answer = {
        "model": "llama3.1:8b",
        "message": {"role": "assistant", "content": " "},
        "done": True,
    }
    ollama_standin.add_fault("status", status=200, path="/api/chat", body=json.dumps(answer))
    with pytest.raises(TranslationFailed, match="empty translation"):
        OllamaTranslationBackend(client, "llama3.1:8b").translate("Hello", "de")
