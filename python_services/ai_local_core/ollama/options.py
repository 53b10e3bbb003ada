"""Ollama's generation options as a request may give them (``ai-complete``'s ``options``).

:class:`GenerationOptions` is the official ``ollama`` package's :class:`ollama.Options`
(the documented option names and types: ``top_k``, ``num_ctx``, ``seed``,
``repeat_penalty``, ...) with unknown names refused and the request models' lenient
numbers (:mod:`ai_local_core.inputs`): ``"40"`` and ``40.0`` are the int ``40``.
Imported only when a request carries ``options`` (importing ``ollama`` costs time
that the CLIs' warm path does not spend).
"""

from __future__ import annotations

import typing
from typing import Any

import ollama
from pydantic import ConfigDict, ValidationInfo, field_validator

from ai_local_core.inputs import to_flag, to_number, to_whole_number

__all__ = ["GenerationOptions", "option_names"]


def _coercion(annotation: Any) -> Any:
    kinds = typing.get_args(annotation) or (annotation,)
    if bool in kinds:
        return to_flag
    if int in kinds:
        return to_whole_number
    if float in kinds:
        return to_number
    return None


class GenerationOptions(ollama.Options):
    """``ollama.Options``, strict: unknown names and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _lenient_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or info.field_name is None:
            return value
        coerce = _coercion(cls.model_fields[info.field_name].annotation)
        return value if coerce is None else coerce(value)


def option_names() -> frozenset[str]:
    """Every option name Ollama documents."""
    return frozenset(GenerationOptions.model_fields)
