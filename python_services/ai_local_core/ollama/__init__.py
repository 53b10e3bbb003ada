"""Ollama client library: :class:`OllamaClient` over ``ollama.Client``, typed results, errors.

The errors are defined with every other error type in :mod:`ai_local_core.errors`
(re-exported here).

Importing this package (or :mod:`ai_local_core.ollama.urls`, which the settings use) never
imports httpx or the official client: the names below are loaded on first use, so a CLI's warm
call to the API server does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_local_core.errors import (
        AuthError,
        ConnectionFailed,
        InvalidResponse,
        ModelNotFound,
        OllamaError,
        ServerBusy,
        Timeout,
    )
    from ai_local_core.ollama.client import (
        DEFAULT_TIMEOUT,
        OllamaClient,
        ResponseStream,
        RetryPolicy,
    )
    from ai_local_core.ollama.models import (
        ChatMessage,
        ChatResponse,
        EmbedResponse,
        GenerateResponse,
        Metrics,
        ModelDetails,
        ModelInfo,
        PullProgress,
        RunningModel,
        ShowResponse,
        Usage,
    )

_CLIENT = "ai_local_core.ollama.client"
_ERRORS = "ai_local_core.errors"
_MODELS = "ai_local_core.ollama.models"
_HOMES = {
    **dict.fromkeys(["DEFAULT_TIMEOUT", "OllamaClient", "ResponseStream", "RetryPolicy"], _CLIENT),
    **dict.fromkeys(
        [
            "AuthError",
            "ConnectionFailed",
            "InvalidResponse",
            "ModelNotFound",
            "OllamaError",
            "ServerBusy",
            "Timeout",
        ],
        _ERRORS,
    ),
    **dict.fromkeys(
        [
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
        ],
        _MODELS,
    ),
}

__all__ = [
    "DEFAULT_TIMEOUT",
    "AuthError",
    "ChatMessage",
    "ChatResponse",
    "ConnectionFailed",
    "EmbedResponse",
    "GenerateResponse",
    "InvalidResponse",
    "Metrics",
    "ModelDetails",
    "ModelInfo",
    "ModelNotFound",
    "OllamaClient",
    "OllamaError",
    "PullProgress",
    "ResponseStream",
    "RetryPolicy",
    "RunningModel",
    "ServerBusy",
    "ShowResponse",
    "Timeout",
    "Usage",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
