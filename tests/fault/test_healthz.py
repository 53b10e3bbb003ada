"""``/healthz`` says whether the node can serve, to anyone, and nothing else.

The gateway asks the services API's ``/ready`` (Ollama answers, the backends are loaded) in a
subrequest whose body is discarded: 200 ``{"status":"ok"}`` when both are up, 503
``{"status":"unavailable"}`` when Ollama or the API is down, never a credential needed, never a
version, model, URL or path in the answer. ``/livez`` is nginx alone and stays 200 throughout.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loopback_gateway import NginxGateway
from tests.api_harness import ApiServer, start_api_server
from tests.fault.conftest import MODEL, StandInSlot, call

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

VISION_MODEL = "llava:7b"
OK = b'{"status":"ok"}\n'
UNAVAILABLE = b'{"status":"unavailable"}\n'


@pytest.fixture
def api(standin_slot: StandInSlot, api_port: int, fault_dir: Path) -> Iterator[ApiServer]:
    standin = standin_slot.running()
    # /ready wants the image backend loaded: a vision model from the stand-in's registry (kept
    # in the slot's models directory across restarts).
    pull = urllib.request.Request(
        f"{standin.url}/api/pull",
        data=json.dumps({"model": VISION_MODEL, "stream": False}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(pull, timeout=30) as response:
        assert response.status == 200
    config = {
        "log_level": "WARNING",
        "ollama": {"url": standin.url, "retries": {"max_attempts": 1}},
        "translation": {"backend": "ollama"},
        "image": {"backend": "ollama", "ollama": {"model": VISION_MODEL}},
        "models": {"defaults": {"translation": {"model": MODEL}}},
    }
    server = start_api_server(fault_dir / "api-healthz", config, port=api_port, ready=True)
    try:
        yield server
    finally:
        server.stop()


def healthz(gateway: NginxGateway) -> tuple[int, dict[str, str], bytes]:
    return call(gateway, "GET", "/healthz", key=None)


def livez(gateway: NginxGateway) -> tuple[int, bytes]:
    status, _, body = call(gateway, "GET", "/livez", key=None)
    return status, body


def last_route(gateway: NginxGateway, expected: str) -> object:
    """The route of the gateway's last access-log entry (JSON lines), once it is ``expected`` or
    after 5 s: nginx writes the entry after the response, so the client may read first."""
    deadline = time.monotonic() + 5.0
    while True:
        lines = (gateway.workdir / "logs" / "access.log").read_text().splitlines()
        route = json.loads(lines[-1]).get("route") if lines else None
        if route == expected or time.monotonic() > deadline:
            return route
        time.sleep(0.05)


def assert_reveals_nothing(headers: dict[str, str], body: bytes) -> None:
    assert headers["content-type"].startswith("application/json")
    # server_tokens off: "nginx", no version; no upstream header passes.
    assert headers.get("server", "nginx") == "nginx", headers
    for leak in (MODEL, "ollama", "127.0.0.1", "version", "/", "checks", "ready"):
        assert leak.encode() not in body, (leak, body)


def test_healthz_ok_when_ollama_and_services_answer(
    gateway: NginxGateway, api: ApiServer, standin_slot: StandInSlot
) -> None:
    # The API's own /ready has the details the gateway must keep to itself.
    status, _, details = call(gateway, "GET", "/services/ready", key="services")
    assert status == 200, details
    assert b"ollama" in details and b"127.0.0.1" in details, details

    status, headers, body = healthz(gateway)
    assert (status, body) == (200, OK)
    assert_reveals_nothing(headers, body)
    # The access log (and so the monitoring exporter's route metrics) names the route.
    assert last_route(gateway, "healthz") == "healthz"


def test_healthz_unavailable_when_ollama_is_down(
    gateway: NginxGateway, api: ApiServer, standin_slot: StandInSlot
) -> None:
    assert healthz(gateway)[0] == 200
    standin_slot.running().stop()
    try:
        status, headers, body = healthz(gateway)
        assert (status, body) == (503, UNAVAILABLE)
        assert_reveals_nothing(headers, body)
        assert last_route(gateway, "healthz") == "healthz"
        # nginx itself is fine: liveness stays green.
        assert livez(gateway) == (200, OK)
    finally:
        standin_slot.running()
    status, _, body = healthz(gateway)
    assert (status, body) == (200, OK)


def test_healthz_unavailable_when_services_are_down(
    gateway: NginxGateway, api: ApiServer, standin_slot: StandInSlot
) -> None:
    assert healthz(gateway)[0] == 200
    api.stop()
    status, headers, body = healthz(gateway)
    assert (status, body) == (503, UNAVAILABLE)
    assert_reveals_nothing(headers, body)
    assert livez(gateway) == (200, OK)


def test_ready_subrequest_location_is_not_reachable(gateway: NginxGateway) -> None:
    status, headers, body = call(gateway, "GET", "/_gateway_ready", key="services")
    assert status == 404 and b"not found" in body
    assert headers["content-type"].startswith("application/json")
