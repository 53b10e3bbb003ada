"""``ai-complete``: one chat completion through Ollama, Waldus-compatible.

Usage::

    ai-complete '{"user": "Hello", "temperature": 0.7}'
    python python_services/src/ollama/complete.py '{"user": "Hello"}'

Input keys: ``user``, ``system``, ``messages`` (a chat list instead of
user/system), ``model`` (a name or an alias from ``config/models.yaml``),
``temperature`` (0..2), ``max_tokens``, ``top_p`` (0..1], ``stop`` (a string or a
list), ``timeout`` (seconds), ``stream`` (false; true streams from Ollama, which
keeps tunnels alive, and still prints one object). When ``api.url`` points at a
running API server, the request goes to its ``/v1/complete`` (the warm path, through
the fast lane: :mod:`ai_local_core.cli.fast_lane`); when it does not answer, the
completion runs in-process. Output and exit codes: ``docs/cli-contract.md``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ai_local_core.cli._common import run_cli, validate_input
from ai_local_core.cli.fast_lane import WarmRoute
from ai_local_core.config import Settings
from ai_local_core.ollama import ChatMessage, ChatResponse, OllamaClient

__all__ = ["WARM_ROUTE", "CompleteRequest", "InputMessage", "complete", "complete_command", "main"]

#: The payload goes to the server as it is; the server validates it like the handler.
WARM_ROUTE = WarmRoute("/v1/complete")

MAX_STOP_SEQUENCES = 16


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class CompleteRequest(BaseModel):
    """The JSON object accepted by ``ai-complete``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: str | None = None
    system: str | None = None
    messages: list[InputMessage] | None = None
    model: str | None = Field(None, min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=131_072)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: list[str] | None = None
    timeout: float | None = Field(None, gt=0, le=3600)
    stream: bool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a string or a list of strings")
        if len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not v for v in value):
            raise ValueError("stop sequences must not be empty")
        return value

    @model_validator(mode="after")
    def _prompt_present(self) -> CompleteRequest:
        if self.messages is not None:
            if self.user is not None or self.system is not None:
                raise ValueError("give either 'messages' or 'user'/'system', not both")
            if not self.messages:
                raise ValueError("empty prompt: 'messages' is an empty list")
            if not any(m.content.strip() for m in self.messages):
                raise ValueError("empty prompt: every message is empty")
            return self
        if self.user is None:
            raise ValueError("missing prompt: give 'user' (or 'messages')")
        if not self.user.strip():
            raise ValueError("empty prompt: 'user' is empty")
        return self


def _messages(request: CompleteRequest, default_system: str | None) -> list[ChatMessage]:
    if request.messages is not None:
        return [ChatMessage(role=m.role, content=m.content) for m in request.messages]
    messages = []
    system = request.system if request.system is not None else default_system
    if system:
        messages.append(ChatMessage(role="system", content=system))
    messages.append(ChatMessage(role="user", content=request.user or ""))
    return messages


def complete(payload: Any, settings: Settings) -> dict[str, Any]:
    """The ``ai-complete`` handler: validate, ask Ollama, shape the answer."""
    request = validate_input(CompleteRequest, payload)
    defaults = settings.models.for_task("completion")
    model = settings.models.resolve(request.model, task="completion")

    options: dict[str, Any] = dict(defaults.options)
    temperature = request.temperature if request.temperature is not None else defaults.temperature
    max_tokens = request.max_tokens if request.max_tokens is not None else defaults.max_tokens
    top_p = request.top_p if request.top_p is not None else defaults.top_p
    if temperature is not None:
        options["temperature"] = temperature
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if top_p is not None:
        options["top_p"] = top_p
    if request.stop:
        options["stop"] = request.stop

    messages = _messages(request, defaults.system)
    started = time.monotonic()
    with OllamaClient.from_settings(settings) as client:
        if request.stream:
            with client.chat(
                model,
                messages,
                options=options,
                keep_alive=defaults.keep_alive,
                timeout=request.timeout,
                stream=True,
            ) as chunks:
                result = ChatResponse.from_stream(chunks)
        else:
            result = client.chat(
                model,
                messages,
                options=options,
                keep_alive=defaults.keep_alive,
                timeout=request.timeout,
            )
    duration_ms = (time.monotonic() - started) * 1000
    return {
        "content": result.content,
        "model": result.model or model,
        "provider": "ollama",
        "usage": result.usage.model_dump(),
        "duration_ms": round(duration_ms),
        "tokens_per_second": round(result.tokens_per_second, 2),
        "done_reason": result.done_reason,
    }


def complete_command(payload: Any, settings: Settings) -> dict[str, Any]:
    """The ``ai-complete`` CLI handler: warm API server if configured and up, else in-process.

    The API server itself calls :func:`complete` (never this function), so a server whose
    own configuration names ``api.url`` does not call itself.
    """
    request = validate_input(CompleteRequest, payload)
    if settings.api.url:
        from ai_local_core.api.remote import call_api

        answer = call_api(settings, "/v1/complete", request.model_dump(exclude_none=True))
        if answer is not None:
            return answer
    return complete(payload, settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``ai-complete``; returns the exit status."""
    return run_cli(complete_command, argv=argv, prog="ai-complete", warm=WARM_ROUTE)


if __name__ == "__main__":
    sys.exit(main())
