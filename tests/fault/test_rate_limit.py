"""Filling the gateway's inference rate limit: 429 with a JSON body and Retry-After, and the
client is served again once Retry-After has passed."""

from __future__ import annotations

import json
import time

import pytest

from bench.loopback_gateway import NginxGateway
from tests.fault.conftest import INFERENCE_BURST, MODEL, StandInSlot, call

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

BODY = {"model": MODEL, "prompt": "hi", "stream": False}
MAX_REQUESTS = 100


def test_rate_limit_429_json_then_recovers(
    standin_slot: StandInSlot, gateway: NginxGateway
) -> None:
    standin_slot.running()
    statuses: list[int] = []
    rejected: tuple[dict[str, str], bytes] | None = None
    for _ in range(MAX_REQUESTS):
        status, headers, body = call(gateway, "POST", "/api/generate", key="ratelimit", body=BODY)
        statuses.append(status)
        if status == 429:
            rejected = headers, body
            break
        assert status == 200, body
    assert rejected is not None, f"no 429 in {MAX_REQUESTS} requests: {statuses}"
    # The bucket admits the first request plus the burst at once.
    assert statuses.count(200) >= INFERENCE_BURST + 1, statuses

    headers, body = rejected
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["error"] == "rate limit exceeded"
    retry_after = int(headers["retry-after"])
    assert answer["retry_after"] == retry_after >= 1

    # After Retry-After the bucket has room again (waiting longer only adds room).
    time.sleep(retry_after + 0.2)
    status, _, body = call(gateway, "POST", "/api/generate", key="ratelimit", body=BODY)
    assert status == 200, body
    assert json.loads(body)["done"] is True
