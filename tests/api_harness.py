"""Run the API server under real gunicorn on a free loopback port (tests and bench).

The server gets its settings from a YAML file written here
(``AI_LOCAL_CORE_CONFIG``) and a clean environment: no inherited
``AI_LOCAL_CORE_*``/``OLLAMA_*`` variables, Hugging Face offline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
_ENV_PREFIXES = ("AI_LOCAL_CORE_", "OLLAMA_", "_AI_LOCAL_CORE_", "PROMETHEUS_MULTIPROC_DIR")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    return path


@dataclass
class ApiServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    config_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        return request("GET", self.url + path, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float = 30) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, _, raw = request("POST", self.url + path, data=data, timeout=timeout)
        return status, json.loads(raw)

    def stop(self, timeout: float = 15) -> None:
        """Quick shutdown (SIGINT: gunicorn stops its workers at once), then SIGKILL to whatever
        is left of the server's process group. A worker that outlived its master (the master
        killed after ``timeout`` on a loaded machine) still holds the listening socket: the
        kernel would accept connections to the stopped server that nobody ever answers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)


def request(
    method: str, url: str, *, data: bytes | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def wait_for(server: ApiServer, path: str, *, status: int = 200, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"API server exited ({server.process.returncode}):\n{server.logs()}")
        try:
            got, _, body = server.get(path, timeout=2)
            if got == status:
                return
            last = f"{got} {body[:300]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{path} never answered {status} ({last}):\n{server.logs()}")


def start_api_server(
    workdir: Path,
    config: Mapping[str, Any],
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    ready: bool = True,
    timeout: float = 90,
) -> ApiServer:
    """Start ``python -m ai_local_core.api.server`` (gunicorn) and wait for /health
    (and /ready when ``ready``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    merged: dict[str, Any] = dict(config)
    merged["api"] = {**dict(config.get("api") or {}), "bind": "127.0.0.1", "port": port}
    config_path = write_config(workdir / f"api-{port}.yaml", merged)
    log_path = workdir / f"api-{port}.log"
    full_env = clean_env({"AI_LOCAL_CORE_CONFIG": str(config_path), **(env or {})})
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "ai_local_core.api.server"],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            cwd=REPO_ROOT,
            # Its own process group: stop() kills the master and every worker together.
            start_new_session=True,
        )
    server = ApiServer(process, f"http://127.0.0.1:{port}", log_path, config_path)
    try:
        wait_for(server, "/health", timeout=timeout)
        if ready:
            wait_for(server, "/ready", timeout=timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_api_server(workdir: Path, config: Mapping[str, Any], **kw: Any) -> Iterator[ApiServer]:
    server = start_api_server(workdir, config, **kw)
    try:
        yield server
    finally:
        server.stop()
