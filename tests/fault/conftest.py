"""Fixtures of the loopback fault tests: a restartable Ollama stand-in on a fixed port, the API
server's port, and an nginx rendered from role ``gateway`` in front of both
(``bench.loopback_gateway``).

The gateway is started once for the directory. Rate limits: inference 1r/s, burst 2, per API key;
each test uses its own key, so no test spends another's budget. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.loopback_gateway import (
    GatewaySettings,
    NginxGateway,
    free_port,
    nginx_binary,
    render_gateway,
    running_nginx,
)
from tests.fixtures.ollama import OllamaStandIn, start_standin

MODEL = "llama3.1:8b"
KEYS = {
    name: f"fault-{name}-NOT-A-SECRET-0123456789abcdef"
    for name in ("cli", "stream", "services", "ratelimit", "config", "edge")
}
INFERENCE_RATE_PER_S = 1
INFERENCE_BURST = 2


@dataclass
class StandInSlot:
    """The Ollama stand-in on a port that stays the same across kills and restarts."""

    workdir: Path
    port: int
    token_delay: float = 0.05
    current: OllamaStandIn | None = None
    started: list[OllamaStandIn] = field(default_factory=list)

    def start(self) -> OllamaStandIn:
        standin = start_standin(
            self.workdir / f"run-{len(self.started)}",
            models=[MODEL],
            models_dir=self.workdir / "models",
            env={
                "OLLAMA_HOST": f"127.0.0.1:{self.port}",
                "OLLAMA_STANDIN_TOKEN_DELAY": str(self.token_delay),
            },
        )
        self.current = standin
        self.started.append(standin)
        return standin

    def running(self) -> OllamaStandIn:
        """The live stand-in (started again if a test left it dead)."""
        if self.current is None or self.current.process.poll() is not None:
            return self.start()
        return self.current

    def stop_all(self) -> None:
        for standin in self.started:
            standin.stop()


@pytest.fixture(scope="session")
def fault_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: nginx workers (nobody, when the tests run as root) must traverse it.
    path = Path(tempfile.mkdtemp(prefix="ai-local-core-fault-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def standin_slot(fault_dir: Path) -> Iterator[StandInSlot]:
    slot = StandInSlot(fault_dir / "ollama", free_port())
    slot.start()
    try:
        yield slot
    finally:
        slot.stop_all()


@pytest.fixture(scope="session")
def api_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def gateway(fault_dir: Path, standin_slot: StandInSlot, api_port: int) -> Iterator[NginxGateway]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (requirements/apt.txt)")
    workdir = fault_dir / "gateway"
    workdir.mkdir()
    port = free_port()
    settings = GatewaySettings(
        ollama_upstream=f"127.0.0.1:{standin_slot.port}",
        services_upstream=f"127.0.0.1:{api_port}",
        keys=KEYS,
        inference_rate=f"{INFERENCE_RATE_PER_S}r/s",
        inference_burst=INFERENCE_BURST,
    )
    conf = render_gateway(workdir, port, settings)
    with running_nginx(workdir, conf, port) as running:
        yield running


def call(
    gateway: NginxGateway,
    method: str,
    path: str,
    *,
    key: str | None,
    body: Any = None,
    timeout: float = 20,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the gateway (a fresh connection): status, headers, body."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {KEYS[key]}"
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass(frozen=True)
class CliRun:
    returncode: int
    output: dict[str, Any]
    stderr: str


def parse_cli(returncode: int, stdout: str, stderr: str) -> CliRun:
    """The CLI contract: one JSON object on stdout, never a traceback on stderr."""
    assert "Traceback" not in stderr, stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout is not one line: {stdout!r} (stderr: {stderr[-1000:]})"
    output = json.loads(lines[0])
    assert isinstance(output, dict), output
    return CliRun(returncode, output, stderr)
