"""Client roles and model allowlists of the gateway (role ``gateway``), on loopback.

An nginx rendered from the role with API keys of each kind (``app``, ``admin``, an ``app`` key
with a model allowlist) and a basic-auth user with role ``admin`` and an allowlist, in front of an
Ollama stand-in that records every request it receives: a refusal must be a JSON 403 (or 401 for
bad credentials) and the stand-in must have seen nothing.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.loopback_gateway import (
    GatewaySettings,
    NginxGateway,
    free_port,
    nginx_binary,
    njs_module,
    render_gateway,
    running_nginx,
)
from tests.fixtures.ollama import OllamaStandIn, start_standin

pytestmark = [pytest.mark.fault, pytest.mark.timeout(180)]

MODELS = ["tiny:latest", "llama3.1:8b", "llava:7b"]
KEYS = {
    name: f"roles-{name}-NOT-A-SECRET-0123456789abcdef"
    for name in ("app", "admin", "listed", "other")
}
USER = ("alice", "roles-alice-NOT-A-SECRET-pw")
# Spelled as an operator might: case and a bare name (tiny is tiny:latest).
LISTED_MODELS = ["Llama3.1:8B", "tiny"]
USER_MODELS = ["tiny", "tiny-copy"]
ADMIN_ROUTES = [
    ("POST", "/api/pull", {"model": "tiny"}),
    ("DELETE", "/api/delete", {"model": "tiny"}),
    ("POST", "/api/create", {"model": "x", "from": "tiny"}),
    ("POST", "/api/copy", {"source": "tiny", "destination": "tiny-2"}),
    ("POST", "/api/push", {"model": "tiny"}),
    ("POST", "/api/blobs/sha256:" + "0" * 64, None),
]


@pytest.fixture(scope="module")
def standin(fault_dir: Path) -> Iterator[OllamaStandIn]:
    running = start_standin(
        fault_dir / "roles-ollama", models=MODELS, env={"OLLAMA_STANDIN_TOKEN_DELAY": "0"}
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def gateway(fault_dir: Path, standin: OllamaStandIn) -> Iterator[NginxGateway]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (requirements/apt.txt)")
    if njs_module() is None:
        pytest.skip(
            "nginx's njs module is not installed (libnginx-mod-http-js, requirements/apt.txt)"
        )
    workdir = fault_dir / "roles-gateway"
    workdir.mkdir()
    port = free_port()
    settings = GatewaySettings(
        ollama_upstream=standin.ollama_host,
        keys=KEYS,
        key_roles={"admin": "admin", "listed": "app"},
        key_models={"listed": LISTED_MODELS},
        basic_auth=USER,
        user_role="admin",
        user_models=USER_MODELS,
        inference_rate="10000r/s",
        inference_burst=10000,
    )
    conf = render_gateway(workdir, port, settings)
    with running_nginx(workdir, conf, port) as running:
        yield running


@pytest.fixture
def seen(standin: OllamaStandIn) -> Iterator[OllamaStandIn]:
    """The stand-in with an empty request log."""
    standin.control("DELETE", "requests")
    yield standin


def request(
    gateway: NginxGateway,
    method: str,
    path: str,
    *,
    key: str | None = None,
    user: tuple[str, str] | None = None,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {KEYS[key]}"
    if user is not None:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def json_error(result: tuple[int, dict[str, str], bytes], status: int) -> str:
    """The gateway's JSON error shape: {"error": ..., "request_id": ...}; the message."""
    got, headers, body = result
    assert got == status, (got, body)
    assert headers["content-type"].startswith("application/json"), headers
    data = json.loads(body)
    assert set(data) == {"error", "request_id"}, data
    assert isinstance(data["error"], str) and data["error"], data
    for secret in [*KEYS.values(), USER[1]]:
        assert secret not in body.decode(), body
    message: str = data["error"]
    return message


def generate(model: str) -> dict[str, Any]:
    return {"model": model, "prompt": "hi", "stream": False}


# --- roles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"), ADMIN_ROUTES, ids=[p for _, p, _ in ADMIN_ROUTES]
)
def test_app_key_cannot_manage_models(
    gateway: NginxGateway, seen: OllamaStandIn, method: str, path: str, body: Any
) -> None:
    message = json_error(request(gateway, method, path, key="app", body=body), 403)
    assert "role admin" in message
    assert seen.requests() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/foo",
        "/api/tags/",
        "/api/generate/x",
        # nginx normalises this to /api/delete, Ollama would see the raw form: refused on the raw
        # path, whatever nginx or Ollama would make of it.
        "/api/generate/../delete",
        "/api/%64elete",
        "/api//delete",
    ],
)
def test_unknown_api_routes_are_refused(
    gateway: NginxGateway, seen: OllamaStandIn, path: str
) -> None:
    for key in ("app", "admin"):
        message = json_error(request(gateway, "POST", path, key=key, body=generate("tiny")), 403)
        assert message.startswith("forbidden"), message
    assert seen.requests() == []


def test_anonymous_and_wrong_credentials_still_get_401(
    gateway: NginxGateway, seen: OllamaStandIn
) -> None:
    for path in ("/api/delete", "/api/foo", "/api/tags"):
        json_error(request(gateway, "DELETE", path, body={"model": "tiny"}), 401)
    # The admin user's name with a wrong password: 401, never the admin route.
    wrong = (USER[0], "not-the-password-of-alice")
    json_error(request(gateway, "DELETE", "/api/delete", user=wrong, body={"model": "tiny"}), 401)
    json_error(request(gateway, "POST", "/api/copy", user=wrong, body={"source": "tiny"}), 401)
    assert seen.requests() == []


def test_app_key_reaches_inference_and_read_only_routes(
    gateway: NginxGateway, seen: OllamaStandIn
) -> None:
    calls = [
        ("GET", "/api/version", None),
        ("GET", "/api/tags", None),
        ("GET", "/api/ps", None),
        ("POST", "/api/show", {"model": "tiny"}),
        ("POST", "/api/generate", generate("llava:7b")),
        ("POST", "/api/chat", {"model": "tiny", "messages": [], "stream": False}),
        ("POST", "/api/embed", {"model": "tiny", "input": "hi"}),
        ("GET", "/v1/models", None),
        ("GET", "/api/version?x=1", None),
    ]
    for method, path, body in calls:
        status, _, answer = request(gateway, method, path, key="app", body=body)
        assert status == 200, (path, answer)
    assert len(seen.requests()) == len(calls)


def test_admin_key_manages_models(gateway: NginxGateway, seen: OllamaStandIn) -> None:
    copy = {"source": "tiny", "destination": "tiny-admin"}
    status, _, body = request(gateway, "POST", "/api/copy", key="admin", body=copy)
    assert status == 200, body
    status, _, body = request(
        gateway, "DELETE", "/api/delete", key="admin", body={"model": "tiny-admin"}
    )
    assert status == 200, body
    assert [(r["method"], r["path"]) for r in seen.requests()] == [
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
    ]
    # Model management spends the inference budget, not the cheap metadata one.
    log = [json.loads(line) for line in (gateway.workdir / "logs" / "access.log").open()]
    managed = [e for e in log if e["path"] in ("/api/copy", "/api/delete") and e["status"] == 200]
    assert managed and {e["class"] for e in managed} == {"inference"}, managed


def test_admin_user_with_the_right_password_manages_models(
    gateway: NginxGateway, seen: OllamaStandIn
) -> None:
    copy = {"source": "tiny", "destination": "tiny-copy"}
    status, _, body = request(gateway, "POST", "/api/copy", user=USER, body=copy)
    assert status == 200, body
    status, _, body = request(
        gateway, "DELETE", "/api/delete", user=USER, body={"model": "tiny-copy"}
    )
    assert status == 200, body
    # The user's allowlist holds for model management too.
    message = json_error(
        request(gateway, "DELETE", "/api/delete", user=USER, body={"model": "llava:7b"}), 403
    )
    assert "llava:7b" in message
    assert len(seen.requests()) == 2


# --- model allowlists -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny", "tiny:latest", "TINY", "llama3.1:8b", "LLAMA3.1:8b"])
def test_allowlisted_model_passes(gateway: NginxGateway, seen: OllamaStandIn, model: str) -> None:
    status, _, body = request(gateway, "POST", "/api/generate", key="listed", body=generate(model))
    assert status == 200, body
    assert json.loads(body)["done"] is True
    assert [r["path"] for r in seen.requests()] == ["/api/generate"]


@pytest.mark.parametrize(
    "body",
    [
        generate("llava:7b"),
        generate("llama3.1"),  # llama3.1:latest, not llama3.1:8b
        generate("tiny:q4"),
        # Go's JSON decoder matches field names ignoring case and keeps the last: every spelling
        # is checked.
        {"model": "tiny", "MODEL": "llava:7b", "prompt": "hi"},
        {"model": "tiny", "Model": "llava:7b", "prompt": "hi"},
        {"model": "tiny", "name": "llava:7b"},
    ],
    ids=["other", "bare-name", "other-tag", "upper-dup", "title-dup", "name-field"],
)
def test_model_outside_the_allowlist_is_refused_before_ollama(
    gateway: NginxGateway, seen: OllamaStandIn, body: dict[str, Any]
) -> None:
    message = json_error(request(gateway, "POST", "/api/generate", key="listed", body=body), 403)
    assert "is not allowed for this client" in message
    assert seen.requests() == []


def test_openai_route_checks_the_allowlist(gateway: NginxGateway, seen: OllamaStandIn) -> None:
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    status, _, body = request(
        gateway, "POST", "/v1/chat/completions", key="listed", body={"model": "tiny", **chat}
    )
    assert status == 200, body
    message = json_error(
        request(
            gateway,
            "POST",
            "/v1/chat/completions",
            key="listed",
            body={"model": "llava:7b", **chat},
        ),
        403,
    )
    assert '"llava:7b"' in message
    assert [r["path"] for r in seen.requests()] == ["/v1/chat/completions"]


def test_unreadable_body_is_refused(gateway: NginxGateway, seen: OllamaStandIn) -> None:
    # Go would decode the first object and ignore the rest: never passed unchecked.
    trailing = b'{"model":"tiny"} {"model":"llava:7b"}'
    message = json_error(request(gateway, "POST", "/api/generate", key="listed", raw=trailing), 400)
    assert "JSON" in message
    json_error(request(gateway, "POST", "/api/generate", key="listed", raw=b'["tiny"]'), 400)
    json_error(request(gateway, "POST", "/api/generate", key="listed", body={"model": 7}), 400)
    assert seen.requests() == []


def test_client_without_allowlist_is_unaffected(gateway: NginxGateway, seen: OllamaStandIn) -> None:
    for key in ("app", "other"):
        status, _, body = request(
            gateway, "POST", "/api/generate", key=key, body=generate("llava:7b")
        )
        assert status == 200, body
        # Not even a body it cannot read is refused: Ollama answers it.
        status, _, body = request(gateway, "POST", "/api/generate", key=key, raw=b"not json")
        assert status == 400 and "request_id" not in json.loads(body), body
    assert len(seen.requests()) == 4


def test_read_only_routes_through_the_check(gateway: NginxGateway, seen: OllamaStandIn) -> None:
    for path in ("/api/tags", "/api/version", "/v1/models"):
        status, _, body = request(gateway, "GET", path, key="listed")
        assert status == 200, (path, body)
    assert len(seen.requests()) == 3


def test_stream_through_the_check_arrives_token_by_token(
    gateway: NginxGateway, seen: OllamaStandIn
) -> None:
    delay = 0.1
    body = json.dumps(
        {
            "model": "tiny",
            "prompt": "one two three four five six",
            "options": {"standin_token_delay": delay},
        }
    )
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    arrivals: list[float] = []
    try:
        started = time.monotonic()
        conn.request(
            "POST",
            "/api/generate",
            body=body,
            headers={
                "Authorization": f"Bearer {KEYS['listed']}",
                "Content-Type": "application/json",
            },
        )
        response = conn.getresponse()
        assert response.status == 200
        while line := response.readline():
            if line.strip():
                arrivals.append(time.monotonic() - started)
                if json.loads(line).get("done"):
                    break
    finally:
        conn.close()
    # "Stand-in reply from tiny: " + 6 words = 10 tokens, then the final line.
    assert len(arrivals) == 11, arrivals
    # Buffered, the lines would all arrive together at the end.
    assert arrivals[-1] - arrivals[0] >= 8 * delay * 0.8, arrivals
    gaps = [b - a for a, b in itertools.pairwise(arrivals[:10])]
    assert statistics.median(gaps) >= delay / 2, gaps
