"""The HTTP API server (Flask app factory, served by gunicorn in production).

``create_app`` is imported lazily, so the CLIs can use :mod:`ai_local_core.api.remote`
without importing Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_local_core.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ai_local_core.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
