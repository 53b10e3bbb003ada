"""Typed requests and results of the Ollama API (pydantic v2).

Results keep Ollama's own field names. Ollama omits every metric that is zero
(``total_duration``, ``load_duration``, ``prompt_eval_count``,
``prompt_eval_duration``, ``eval_count``, ``eval_duration``), so all of them
default to 0 here. Unknown fields from newer servers are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatMessage",
    "ChatResponse",
    "EmbedResponse",
    "GenerateResponse",
    "Metrics",
    "ModelDetails",
    "ModelInfo",
    "PullProgress",
    "RunningModel",
    "ShowResponse",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Usage(BaseModel):
    """Token counts in the shape the CLIs and the API server report."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Metrics(_Result):
    """Counters of the final object of a generation; missing means 0 (nanoseconds)."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Decoding speed: ``eval_count / eval_duration * 1e9`` (0 when unknown)."""
        if self.eval_duration <= 0:
            return 0.0
        return self.eval_count / self.eval_duration * 1e9

    @property
    def prompt_tokens_per_second(self) -> float:
        """Prompt processing speed (0 when unknown)."""
        if self.prompt_eval_duration <= 0:
            return 0.0
        return self.prompt_eval_count / self.prompt_eval_duration * 1e9

    @property
    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_eval_count,
            completion_tokens=self.eval_count,
            total_tokens=self.prompt_eval_count + self.eval_count,
        )

    @property
    def total_duration_ms(self) -> float:
        return self.total_duration / 1e6


class ChatMessage(BaseModel):
    """One chat message (request and response side)."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str = ""
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class GenerateResponse(Metrics):
    """A chunk of ``/api/generate`` (streaming) or the whole answer (``stream: false``)."""

    model: str = ""
    created_at: str | None = None
    response: str = ""
    thinking: str | None = None
    done: bool = False
    done_reason: str | None = None
    context: list[int] | None = None

    @classmethod
    def from_stream(cls, chunks: Iterable[GenerateResponse]) -> GenerateResponse:
        """Fold streamed chunks into one result, as ``stream: false`` would return."""
        parts: list[str] = []
        last: GenerateResponse | None = None
        for chunk in chunks:
            parts.append(chunk.response)
            last = chunk
        if last is None:
            return cls(done=False)
        return last.model_copy(update={"response": "".join(parts)})


class ChatResponse(Metrics):
    """A chunk of ``/api/chat`` (streaming) or the whole answer (``stream: false``)."""

    model: str = ""
    created_at: str | None = None
    message: ChatMessage = Field(default_factory=lambda: ChatMessage(role="assistant"))
    done: bool = False
    done_reason: str | None = None

    @property
    def content(self) -> str:
        return self.message.content

    @classmethod
    def from_stream(cls, chunks: Iterable[ChatResponse]) -> ChatResponse:
        """Fold streamed chunks into one result, as ``stream: false`` would return."""
        parts: list[str] = []
        last: ChatResponse | None = None
        for chunk in chunks:
            parts.append(chunk.message.content)
            last = chunk
        if last is None:
            return cls(done=False)
        message = last.message.model_copy(update={"content": "".join(parts)})
        return last.model_copy(update={"message": message})


class ModelDetails(_Result):
    parent_model: str | None = None
    format: str | None = None
    family: str | None = None
    families: list[str] | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None


class ModelInfo(_Result):
    """One entry of ``/api/tags``."""

    name: str = ""
    model: str = ""
    modified_at: datetime | None = None
    size: int = 0
    digest: str = ""
    details: ModelDetails = Field(default_factory=ModelDetails)


class RunningModel(_Result):
    """One entry of ``/api/ps``."""

    name: str = ""
    model: str = ""
    size: int = 0
    size_vram: int = 0
    digest: str = ""
    expires_at: datetime | None = None
    context_length: int | None = None
    details: ModelDetails = Field(default_factory=ModelDetails)


class ShowResponse(_Result):
    """``/api/show``."""

    license: str | None = None
    modelfile: str | None = None
    parameters: str | None = None
    template: str | None = None
    system: str | None = None
    details: ModelDetails = Field(default_factory=ModelDetails)
    model_info: dict[str, Any] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list)
    modified_at: datetime | None = None


class PullProgress(_Result):
    """One status line of ``/api/pull``."""

    status: str = ""
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @property
    def fraction(self) -> float | None:
        """Completed share of the current layer (0..1), or None if not a transfer line."""
        if not self.total:
            return None
        return min(1.0, (self.completed or 0) / self.total)


class EmbedResponse(_Result):
    """``/api/embed``."""

    model: str = ""
    embeddings: list[list[float]] = Field(default_factory=list)
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
