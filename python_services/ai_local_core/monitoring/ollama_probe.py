"""What Ollama holds and runs: ``/api/version``, ``/api/tags`` and ``/api/ps``.

One short, retry-free round of requests through :class:`OllamaClient`; a server
that does not answer gives ``up=False`` and the reason, never an exception.
"""

from __future__ import annotations

from datetime import datetime

import httpx
from pydantic import BaseModel, ConfigDict

from ai_local_core.errors import AiLocalCoreError
from ai_local_core.ollama.client import OllamaClient, RetryPolicy

__all__ = ["LoadedModel", "OllamaSnapshot", "PresentModel", "read_ollama"]


class PresentModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    size_bytes: int


class LoadedModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    size_bytes: int
    size_vram_bytes: int
    expires_at: datetime | None = None

    @property
    def vram_share(self) -> float:
        """Fraction of the model that sits in GPU memory (1.0: fully on the GPU)."""
        return self.size_vram_bytes / self.size_bytes if self.size_bytes > 0 else 0.0


class OllamaSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    up: bool
    version: str | None = None
    present: list[PresentModel] = []
    loaded: list[LoadedModel] = []
    reason: str | None = None


def read_ollama(
    url: str, *, timeout: float = 3.0, transport: httpx.BaseTransport | None = None
) -> OllamaSnapshot:
    """Ask Ollama at ``url`` for its version, models and loaded models."""
    try:
        client = OllamaClient(url, timeout=timeout, retry=RetryPolicy.none(), transport=transport)
    except AiLocalCoreError as exc:
        return OllamaSnapshot(up=False, reason=str(exc))
    with client:
        try:
            version = client.version()
            tags = client.list_models()
            running = client.ps()
        except AiLocalCoreError as exc:
            return OllamaSnapshot(up=False, reason=str(exc))
    return OllamaSnapshot(
        up=True,
        version=version,
        present=[PresentModel(name=m.name or m.model, size_bytes=m.size) for m in tags],
        loaded=[
            LoadedModel(
                name=m.name or m.model,
                size_bytes=m.size,
                size_vram_bytes=m.size_vram,
                expires_at=m.expires_at,
            )
            for m in running
        ],
    )
