"""``ai-complete``: one chat completion through Ollama, Waldus-compatible.

Usage::

    ai-complete '{"user": "Hello", "temperature": 0.7}'
    python3 $AI_LOCAL_CORE_PATH/src/ollama/complete.py '{"user": "Hello"}'

Input keys: ``user``, ``system``, ``messages`` (a chat list instead of
user/system), ``model`` (a name or an alias from ``config/models.yaml``),
``temperature`` (0..2), ``max_tokens``, ``top_p`` (0..1], ``stop`` (a string or a
list), ``timeout`` (seconds of silence allowed from Ollama), ``stream`` (accepted
for compatibility: Ollama is always streamed and the output is one object), ``options``
(Ollama's generation options: ``top_k``, ``num_ctx``, ``seed``...). Numbers may be
numeric strings; unknown top-level keys are ignored and named in ``warnings``. When
``api.url`` points at a running API server, the request goes to its ``/v1/complete``
(the warm path: :mod:`ai_local_core.api.remote`); only when the server cannot be
reached does the completion run in-process. Output and exit codes: ``docs/cli-contract.md``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ai_local_core.cli._common import run_cli, validate_input
from ai_local_core.inputs import Flag, Number, RequestModel, WholeNumber, with_warnings

if TYPE_CHECKING:
    from ai_local_core.config import Settings
    from ai_local_core.ollama import ChatMessage

__all__ = ["CompleteRequest", "InputMessage", "complete", "complete_command", "main"]

MAX_STOP_SEQUENCES = 16


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str


#: The top-level keys that are shortcuts for an Ollama option: giving both is an error.
_SAME_AS_OPTION = {
    "temperature": "temperature",
    "max_tokens": "num_predict",
    "top_p": "top_p",
    "stop": "stop",
}


class CompleteRequest(RequestModel):
    """The JSON object accepted by ``ai-complete``: numbers as JSON numbers or numeric
    strings, unknown top-level keys ignored with a warning (:mod:`ai_local_core.inputs`)."""

    user: str | None = None
    system: str | None = None
    messages: list[InputMessage] | None = None
    model: str | None = Field(None, min_length=1, max_length=256)
    temperature: Number | None = Field(None, ge=0, le=2)
    max_tokens: WholeNumber | None = Field(None, ge=1, le=131_072)
    top_p: Number | None = Field(None, gt=0, le=1)
    stop: list[str] | None = None
    timeout: Number | None = Field(None, gt=0, le=3600)
    stream: Flag = False
    #: Ollama's generation options (``top_k``, ``num_ctx``, ``seed``...), checked against
    #: ``ollama.Options`` by :meth:`_check_options`; the value kept is the checked one.
    options: dict[str, Any] | None = None

    @classmethod
    def unknown_key_warning(cls, key: str) -> str:
        from ai_local_core.ollama.options import option_names

        if key in option_names():
            return f"unknown key {key!r} ignored; Ollama options go in 'options'"
        return super().unknown_key_warning(key)

    @model_validator(mode="after")
    def _check_options(self) -> CompleteRequest:
        if not self.options:
            return self
        from ai_local_core.ollama.options import GenerationOptions

        try:
            checked = GenerationOptions.model_validate(self.options)
        except ValidationError as exc:
            raise ValueError(_options_error(exc)) from None
        options = checked.model_dump(exclude_none=True)
        for key, name in _SAME_AS_OPTION.items():
            if getattr(self, key) is not None and name in options:
                raise ValueError(f"give {key!r} or 'options.{name}', not both")
        self.options = options
        return self

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


def _options_error(exc: ValidationError) -> str:
    """``options.top_k: must be a whole number``; never the input values."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown Ollama option {name!r} in 'options'")
        else:
            parts.append(f"options.{name}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def _messages(request: CompleteRequest, default_system: str | None) -> list[ChatMessage]:
    from ai_local_core.ollama import ChatMessage

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
    from ai_local_core.ollama import OllamaClient

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
    # The request's own options over models.yaml's defaults (a top-level key and its option
    # together are refused by the model, so nothing the request set is overridden here).
    options.update(request.options or {})

    messages = _messages(request, defaults.system)
    started = time.monotonic()
    # Always streamed from Ollama and folded (the client's one way): ``timeout`` bounds the
    # silence between two chunks, whatever ``stream`` says.
    with OllamaClient.from_settings(settings) as client:
        result = client.chat(
            model,
            messages,
            options=options,
            keep_alive=defaults.keep_alive,
            timeout=request.timeout,
        )
    duration_ms = (time.monotonic() - started) * 1000
    answer: dict[str, Any] = {
        "content": result.content,
        "model": result.model or model,
        "provider": "ollama",
        "usage": result.usage.model_dump(),
        "duration_ms": round(duration_ms),
        "tokens_per_second": round(result.tokens_per_second, 2),
        "done_reason": result.done_reason,
    }
    return with_warnings(answer, request)


def complete_command(payload: Any, settings: Settings) -> dict[str, Any]:
    """The ``ai-complete`` CLI handler: the warm API server if configured and reachable, else
    in-process (never both: see :mod:`ai_local_core.api.remote`).

    The API server itself calls :func:`complete` (never this function), so a server whose
    own configuration names ``api.url`` does not call itself.
    """
    validate_input(CompleteRequest, payload)  # bad input fails here, before any request
    if settings.api.url:
        from ai_local_core.api.remote import call_api

        # The input as it is: the server validates it again and names what it ignored.
        answer = call_api(settings, "/v1/complete", dict(payload))
        if answer is not None:
            return answer
    return complete(payload, settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``ai-complete``; returns the exit status."""
    return run_cli(complete_command, argv=argv, prog="ai-complete")


if __name__ == "__main__":
    sys.exit(main())
