"""gunicorn configuration of the API server, from ai-local-core's settings.

Used by ``ai-local-core-api`` and usable directly::

    gunicorn -c python:ai_local_core.api.gunicorn_conf ai_local_core.api.wsgi:app

Values come from the ``api`` section (YAML or ``AI_LOCAL_CORE_API__*`` variables):
``bind``/``port``, ``workers``, ``threads``, ``timeout``, ``graceful_timeout``,
``keepalive``. Command-line flags and ``GUNICORN_CMD_ARGS`` still override them.
Workers are ``gthread`` workers: each holds its own backends (a BLIP model per
worker), so keep ``workers`` low on a GPU node and scale with ``threads``.

With more than one worker, Prometheus metrics need a shared directory: the
``PROMETHEUS_MULTIPROC_DIR`` given in the environment, or a fresh temporary one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ai_local_core.config import load_settings

_settings = load_settings()
_api = _settings.api

bind = [f"{_api.bind}:{_api.port}"]
workers = _api.workers
threads = _api.threads
worker_class = "gthread"
# gthread: the worker's main loop, not the request threads, reports to the arbiter, so this
# restarts a worker that hangs as a whole, never one that serves a long request (a slow answer
# sends keep-alive bytes meanwhile: ai_local_core.api.keepalive).
timeout = _api.timeout
graceful_timeout = _api.graceful_timeout
keepalive = _api.keepalive
loglevel = _settings.log_level.lower()
errorlog = "-"
accesslog = None
proc_name = "ai-local-core-api"
# Heartbeat files in memory, not on a possibly slow disk (gunicorn's advice).
if Path("/dev/shm").is_dir():  # noqa: S108 - a directory gunicorn writes its own tmp files in
    worker_tmp_dir = "/dev/shm"  # noqa: S108

_own_metrics_dir: str | None = None
if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="ai-local-core-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def on_starting(server: Any) -> None:
    """Drop metric files left by an earlier run in a reused directory."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and Path(directory).is_dir():
        for stale in Path(directory).glob("*.db"):
            stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Tell prometheus-client that a worker is gone (its gauges stop counting)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _own_metrics_dir is not None:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
