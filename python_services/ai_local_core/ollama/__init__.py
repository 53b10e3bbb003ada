"""Ollama client library: :class:`OllamaClient`, typed results and errors."""

from ai_local_core.ollama.client import DEFAULT_TIMEOUT, OllamaClient, ResponseStream, RetryPolicy
from ai_local_core.ollama.exceptions import (
    AuthError,
    ConnectionFailed,
    InvalidResponse,
    ModelNotFound,
    OllamaError,
    ServerBusy,
    Timeout,
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
