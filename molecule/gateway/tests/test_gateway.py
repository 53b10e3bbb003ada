"""Verify role `gateway` on the converged test hosts.

Every HTTP check runs inside the test host (testinfra) with the stdlib probes that prepare.yml
installed: http_probe.py (one request, or a burst with --repeat) and stream_probe.py (arrival time
of every streamed line). Upstreams are two Ollama stand-ins (127.0.0.1:11434 and :11435, each
recording the requests it received at /_standin/requests) and a services stand-in on :8000 that
echoes what it received and counts requests at /_standin/count. Keys are role app except
admin-probe (admin); listed-probe may name model tiny only (vars/secrets.yml).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

from tests.molecule_support import (
    PlaybookRun,
    run_playbook,
    scenario_playbook,
)

SECRETS = yaml.safe_load((Path(__file__).parents[1] / "vars" / "secrets.yml").read_text())
KEYS = {entry["name"]: entry["key"] for entry in SECRETS["molecule_gateway_api_keys"]}
USER = SECRETS["molecule_gateway_users"][0]
USER_PASS = f"{USER['name']}:{USER['password']}"
ALL_SECRETS = [
    *KEYS.values(),
    USER["password"],
    base64.b64encode(USER_PASS.encode()).decode(),
]

# Ubuntu 22.04 (the workflow's jammy hosts) has no njs: converge.yml leaves the allowlist out there.
NJS = os.environ.get("AI_LOCAL_CORE_CI_PLATFORM", "") != "jammy"
needs_njs = pytest.mark.skipif(not NJS, reason="no njs on Ubuntu 22.04: no model allowlists")
GATEWAY = "http://127.0.0.1:8080"
TLS_GATEWAY = "https://127.0.0.1:8443"
OLLAMA_PORTS = (11434, 11435)
TOOLS = "/usr/local/lib/gateway-test"
CONF = "/etc/nginx/conf.d/ai-local-core-gateway.conf"
PRIVATE = "/etc/nginx/ai-local-core"
CERT = f"{PRIVATE}/tls/gateway-selfsigned.crt"
LOG_DIR = "/var/log/nginx/ai-local-core"
BROKEN = "this is not nginx;"


def probe_command(url: str, *args: str) -> str:
    return shlex.join(["python3", f"{TOOLS}/http_probe.py", url, *args])


def probe(host: Any, url: str, *args: str) -> Any:
    """Run http_probe.py on the host; the parsed JSON result (a dict, or a list with --repeat)."""
    out = host.run(probe_command(url, *args))
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def probe_many(host: Any, calls: list[list[str]]) -> list[Any]:
    """Several probes in one round trip to the host (each call: URL then options)."""
    out = host.run(" && ".join(probe_command(*call) for call in calls))
    assert out.rc == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(results) == len(calls), out.stdout
    return results


def stat(host: Any, *paths: str) -> list[tuple[str, str, int]]:
    """(owner, group, mode) of each path, in one round trip."""
    out = host.run(shlex.join(["stat", "-c", "%U %G %a", *paths]))
    assert out.rc == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    return [(user, group, int(mode, 8)) for user, group, mode in rows]


def bearer(name: str) -> list[str]:
    return ["-H", f"Authorization: Bearer {KEYS[name]}"]


def body(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])


def standin_requests(host: Any) -> list[list[dict[str, Any]]]:
    """What each Ollama stand-in received since its last reset, in OLLAMA_PORTS order."""
    results = probe_many(host, [[f"http://127.0.0.1:{p}/_standin/requests"] for p in OLLAMA_PORTS])
    return [body(result)["requests"] for result in results]


def reset_upstreams(host: Any) -> None:
    calls = [[f"http://127.0.0.1:{p}/_standin/requests", "-X", "DELETE"] for p in OLLAMA_PORTS]
    calls.append(["http://127.0.0.1:8000/_standin/count", "-X", "DELETE"])
    assert [r["status"] for r in probe_many(host, calls)] == [200, 200, 200]


def upstream_request_count(host: Any) -> int:
    calls = [[f"http://127.0.0.1:{p}/_standin/requests"] for p in OLLAMA_PORTS]
    calls.append(["http://127.0.0.1:8000/_standin/count"])
    *ollama, services = probe_many(host, calls)
    return sum(len(body(r)["requests"]) for r in ollama) + int(body(services)["requests"])


def assert_json_error(result: dict[str, Any], status: int) -> dict[str, Any]:
    assert result["status"] == status, result
    assert result["headers"]["content-type"].startswith("application/json"), result
    data: dict[str, Any] = body(result)
    assert isinstance(data.get("error"), str) and data["error"], data
    return data


# --- install, files, service ----------------------------------------------------------------------


def test_nginx_running_with_valid_config(host):
    assert host.package("nginx").is_installed
    assert host.service("nginx").is_enabled
    check = host.run("nginx -t && systemctl is-active nginx")
    assert check.rc == 0, check.stdout + check.stderr
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    listening = {line.split()[3] for line in host.run("ss -ltnH").stdout.splitlines()}
    assert {"127.0.0.1:8080", "127.0.0.1:8443"} <= listening, listening
    # The distribution's default site (port 80) is gone; the gateway listens on loopback only.
    assert not {"0.0.0.0:80", "*:80", "[::]:80", "0.0.0.0:8080"} & listening, listening


def test_credential_files_are_private(host):
    keys_map = f"{PRIVATE}/gateway-api-keys.map"
    htpasswd = f"{PRIVATE}/gateway.htpasswd"
    tls_key = f"{PRIVATE}/tls/gateway-selfsigned.key"
    assert stat(host, keys_map, htpasswd, PRIVATE, tls_key) == [
        ("root", "root", 0o600),
        ("root", "www-data", 0o640),
        ("root", "www-data", 0o750),
        ("root", "root", 0o600),
    ]
    assert KEYS["ci-bot"] in host.file(keys_map).content_string
    # The model allowlists (njs): names only, no secret.
    script = f"{PRIVATE}/gateway.js"
    if NJS:
        assert stat(host, script) == [("root", "root", 0o644)]
        assert '"key:listed-probe": ["tiny:latest"]' in host.file(script).content_string
        assert host.package("libnginx-mod-http-js").is_installed
    else:
        assert not host.file(script).exists
    content = host.file(htpasswd).content_string
    entries = [line for line in content.splitlines() if line.strip()]
    assert [e.split(":", 1)[0] for e in entries] == [USER["name"]]
    assert entries[0].split(":", 1)[1].startswith(("$2b$", "$2y$")), "not a bcrypt hash"
    assert USER["password"] not in content


# --- authentication -------------------------------------------------------------------------------


HEALTHZ_OK = '{"status":"ok"}\n'
HEALTHZ_UNAVAILABLE = '{"status":"unavailable"}\n'


def assert_healthz(result: dict[str, Any], status: int, text: str) -> None:
    """The whole answer: the status and a fixed body, nothing from an upstream."""
    assert (result["status"], result["body"]) == (status, text), result
    assert result["headers"]["content-type"] == "application/json", result
    assert result["headers"].get("server") == "nginx", result  # no version


def wait_for_healthz(host: Any) -> None:
    for _ in range(20):
        if probe(host, f"{GATEWAY}/healthz")["status"] == 200:
            return
        host.run("sleep 0.5")
    raise AssertionError("/healthz did not come back to 200")


def test_healthz_says_ready_to_anyone_and_nothing_else(host):
    # The services API's /ready (the stand-in's, like the real one) has details to keep inside.
    details = probe(host, "http://127.0.0.1:8000/ready")
    assert details["status"] == 200 and "127.0.0.1:11434" in details["body"], details
    for result in probe_many(
        host,
        [
            [f"{GATEWAY}/healthz"],
            # A source outside gateway_allowed_networks, a wrong key, a wrong password: no matter.
            [f"{GATEWAY}/healthz", "--source", "127.0.0.2"],
            [f"{GATEWAY}/healthz", "-H", "Authorization: Bearer not-a-key-0123456789abcdef0123"],
            [f"{GATEWAY}/healthz", "--user", f"{USER['name']}:wrong-password"],
            [f"{TLS_GATEWAY}/healthz", "--cafile", CERT],
        ],
    ):
        assert_healthz(result, 200, HEALTHZ_OK)
    # The subrequest's location is not a route.
    assert_json_error(probe(host, f"{GATEWAY}/_gateway_ready", *bearer("ci-bot")), 404)


def test_healthz_unavailable_when_ollama_is_down(host):
    host.run("systemctl stop ollama-standin@11434")
    try:
        assert_healthz(probe(host, f"{GATEWAY}/healthz"), 503, HEALTHZ_UNAVAILABLE)
        # nginx itself is alive: /livez (the role's check, the monitoring's) stays 200.
        assert_healthz(probe(host, f"{GATEWAY}/livez"), 200, HEALTHZ_OK)
    finally:
        started = host.run("systemctl start ollama-standin@11434")
        assert started.rc == 0, started.stderr
    wait_for_healthz(host)


def test_healthz_is_rate_limited_like_anonymous_routes(host):
    # Its own identity (ip:127.0.0.2): 10r/s with a burst of 20 (the role's metadata defaults).
    results = probe(host, f"{GATEWAY}/healthz", "--source", "127.0.0.2", "--repeat", "60")
    statuses = [r["status"] for r in results]
    assert statuses[:21] == [200] * 21 and 429 in statuses, statuses
    limited = next(r for r in results if r["status"] == 429)
    assert assert_json_error(limited, 429)["retry_after"] >= 1
    assert limited["headers"]["retry-after"]


def test_only_verified_identities_have_a_rate_limit_budget(host):
    # A new made-up basic-auth name on every request: all of them spend one budget, the address's
    # (metadata: 10r/s, burst 20), so 429s come; buckets keyed on the claimed name never run out.
    made_up = probe(
        host,
        f"{GATEWAY}/api/tags",
        *["--source", "127.0.0.4", "--user", "mallory{n}:whatever-password-1", "--repeat", "60"],
    )
    statuses = [r["status"] for r in made_up]
    assert set(statuses) <= {401, 429} and 429 in statuses, statuses
    # Wrong passwords for the real user drain the sender's address, not the user's budget. The
    # inference class (30r/m, burst 5 here), since each wrong password costs a bcrypt check.
    generate = ["-d", '{"model":"tiny","prompt":"hi","stream":false}']
    wrong = probe(
        host,
        f"{GATEWAY}/api/generate",
        *["--source", "127.0.0.5", "--user", f"{USER['name']}:wrong-password-1", *generate],
        *["--repeat", "30"],
    )
    assert 429 in [r["status"] for r in wrong], [r["status"] for r in wrong]
    right = probe(
        host, f"{GATEWAY}/api/generate", "--source", "127.0.0.6", "--user", USER_PASS, *generate
    )
    assert right["status"] == 200, right


@pytest.mark.parametrize(
    ("case", "args", "status"),
    [
        ("no credentials", [], 401),
        ("wrong password", ["--user", f"{USER['name']}:not-the-password-at-all"], 401),
        ("unknown user", ["--user", "mallory:whatever-password-1"], 401),
        ("wrong key", ["-H", "Authorization: Bearer " + "0" * 64], 401),
        ("key of another scheme", ["-H", f"Authorization: Token {KEYS['ci-bot']}"], 401),
        ("valid user", ["--user", USER_PASS], 200),
        ("valid key", ["-H", f"Authorization: Bearer {KEYS['ci-bot']}"], 200),
    ],
)
def test_authentication_matrix(host, case, args, status):
    result = probe(host, f"{GATEWAY}/api/tags", *args)
    if status == 401:
        assert_json_error(result, 401)
        # Both methods are enabled: the challenge offers basic auth.
        assert result["headers"]["www-authenticate"].startswith("Basic"), result
    else:
        assert result["status"] == 200, (case, result)
        assert [m["name"] for m in body(result)["models"]] == ["tiny:latest"]


def test_bad_credentials_never_reach_an_upstream(host):
    reset_upstreams(host)
    bad = [
        [],
        ["--user", f"{USER['name']}:not-the-password-at-all"],
        ["-H", "Authorization: Bearer " + "f" * 64],
    ]
    paths = [
        ("/api/generate", ["-d", '{"model":"tiny","prompt":"hi","stream":false}']),
        ("/v1/chat/completions", ["-d", '{"model":"tiny","messages":[]}']),
        ("/api/tags", []),
        ("/services/health", []),
    ]
    calls = [[f"{GATEWAY}{path}", *cred, *extra] for cred in bad for path, extra in paths]
    for result in probe_many(host, calls):
        assert_json_error(result, 401)
    assert upstream_request_count(host) == 0
    # Control: the counters do see a request that passes the gateway.
    assert probe(host, f"{GATEWAY}/api/version", *bearer("ci-bot"))["status"] == 200
    assert upstream_request_count(host) == 1


# --- proxying -------------------------------------------------------------------------------------


def test_host_header_is_rewritten_and_credentials_stripped(host):
    foreign = ["-H", "Host: llm.example.com"]
    direct = probe(host, "http://127.0.0.1:11434/api/version", *foreign)
    assert direct["status"] == 403 and direct["body"] == "", (
        "the stand-in must enforce the Host check"
    )
    reset_upstreams(host)
    via = probe(host, f"{GATEWAY}/api/version", *foreign, *bearer("ci-bot"))
    assert via["status"] == 200, via
    assert "version" in body(via)
    seen = [r for requests in standin_requests(host) for r in requests]
    assert len(seen) == 1
    assert seen[0]["host"] == "localhost:11434"
    assert seen[0]["authorization"] is False


def test_browser_origin_is_not_forwarded_to_ollama(host):
    origin = ["-H", "Origin: https://chat.example.com"]
    direct = probe(host, "http://127.0.0.1:11434/api/version", *origin)
    assert direct["status"] == 403, "the stand-in must enforce the Origin check"
    via = probe(host, f"{GATEWAY}/v1/models", *origin, *bearer("ci-bot"))
    assert via["status"] == 200, via
    assert body(via)["object"] == "list"


def stream(host: Any, key: str, prompt: str, delay: float) -> dict[str, Any]:
    """A streamed /api/generate through the gateway (stream_probe.py on the host): status,
    headers and the arrival time of each line; the stand-in waits ``delay`` s per token."""
    request = json.dumps(
        {"model": "tiny", "prompt": prompt, "options": {"standin_token_delay": delay}}
    )
    cmd = shlex.join(
        [
            "python3",
            f"{TOOLS}/stream_probe.py",
            "127.0.0.1",
            "8080",
            "/api/generate",
            request,
            f"Authorization: Bearer {KEYS[key]}",
        ]
    )
    out = host.run(cmd)
    assert out.rc == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    assert result["status"] == 200, result
    return result


def test_stream_arrives_token_by_token(host):
    delay = 0.2
    result = stream(host, "stream-probe", "one two three four five six seven eight", delay)
    assert "application/x-ndjson" in result["headers"]
    arrivals = result["arrivals"]
    # "Stand-in reply from tiny: " + 8 prompt words = 12 tokens, then the final done line.
    assert len(arrivals) == 13, arrivals
    # Buffered, every line would arrive at once at the end; streamed, they spread over ~12 delays.
    assert arrivals[-1] - arrivals[0] >= 10 * delay * 0.8, arrivals
    assert len(set(arrivals)) >= 10, arrivals
    gaps = [b - a for a, b in itertools.pairwise(arrivals[:12])]
    assert min(gaps) >= delay / 2, gaps


def test_services_prefix_is_stripped_and_client_identified(host):
    health = probe(host, f"{GATEWAY}/services/health", *bearer("ci-bot"))
    assert health["status"] == 200 and body(health) == {"status": "ok"}
    # A client cannot claim another identity: the gateway sets X-Gateway-Client itself.
    echo = probe(
        host,
        f"{GATEWAY}/services/v1/echo?x=1",
        *bearer("ci-bot"),
        "-H",
        "X-Gateway-Client: key:admin",
    )
    seen = body(echo)
    assert seen["path"] == "/v1/echo?x=1"
    assert seen["headers"]["x-gateway-client"] == "key:ci-bot"
    assert seen["headers"]["x-forwarded-prefix"] == "/services"
    assert "authorization" not in seen["headers"]
    as_user = body(probe(host, f"{GATEWAY}/services/v1/echo", "--user", USER_PASS))
    assert as_user["headers"]["x-gateway-client"] == f"user:{USER['name']}"


def test_upstream_pool_spreads_and_fails_over(host):
    reset_upstreams(host)
    results = probe(host, f"{GATEWAY}/api/version", *bearer("ci-bot"), "--repeat", "8")
    assert [r["status"] for r in results] == [200] * 8
    counts = [len(requests) for requests in standin_requests(host)]
    assert sum(counts) == 8 and min(counts) >= 2, counts
    host.run("systemctl stop ollama-standin@11435")
    try:
        results = probe(host, f"{GATEWAY}/api/version", *bearer("ci-bot"), "--repeat", "6")
        assert [r["status"] for r in results] == [200] * 6, results
    finally:
        started = host.run("systemctl start ollama-standin@11435")
        assert started.rc == 0, started.stderr


def test_tls_listener_with_self_signed_certificate(host):
    health = probe(host, f"{TLS_GATEWAY}/healthz", "--cafile", CERT)
    assert health["status"] == 200, health
    version = probe(host, f"{TLS_GATEWAY}/api/version", "--cafile", CERT, *bearer("ci-bot"))
    assert version["status"] == 200, version
    plain = probe(host, f"{TLS_GATEWAY}/api/version", "--cafile", CERT)
    assert_json_error(plain, 401)


# --- roles and model allowlists -------------------------------------------------------------------


def test_app_clients_cannot_manage_models(host):
    # Each refusal spends the inference budget (30r/m, burst 5 here): at most 4 per identity.
    reset_upstreams(host)
    ci_bot, alice = bearer("ci-bot"), ["--user", USER_PASS]
    calls = [
        [f"{GATEWAY}/api/delete", "-X", "DELETE", *ci_bot, "-d", '{"model":"tiny"}'],
        [f"{GATEWAY}/api/pull", *ci_bot, "-d", '{"model":"tiny"}'],
        [f"{GATEWAY}/api/copy", *ci_bot, "-d", '{"source":"tiny","destination":"t2"}'],
        [f"{GATEWAY}/api/blobs/sha256:{'0' * 64}", *ci_bot, "-d", "x"],
        [f"{GATEWAY}/api/delete", "-X", "DELETE", *alice, "-d", '{"model":"tiny"}'],
        [f"{GATEWAY}/api/pull", *alice, "-d", '{"model":"tiny"}'],
    ]
    for result in probe_many(host, calls):
        data = assert_json_error(result, 403)
        assert data["error"] == "forbidden: model management needs a client with role admin"
    # Unknown Ollama routes: refused to every role (an allowlist of routes).
    for cred in (ci_bot, bearer("admin-probe")):
        data = assert_json_error(probe(host, f"{GATEWAY}/api/no-such-route", *cred), 403)
        assert data["error"] == "forbidden: not a route of this gateway"
    # Anonymous and a wrong password: 401 as before, never the role's 403.
    for cred in ([], ["--user", f"{USER['name']}:not-the-password-at-all"]):
        assert_json_error(probe(host, f"{GATEWAY}/api/delete", "-X", "DELETE", *cred), 401)
    assert upstream_request_count(host) == 0


def test_admin_key_manages_models(host):
    reset_upstreams(host)
    admin = bearer("admin-probe")
    copy = probe(
        host, f"{GATEWAY}/api/copy", *admin, "-d", '{"source":"tiny","destination":"tiny-copy"}'
    )
    assert copy["status"] == 200, copy
    # The pool may send the delete to the other stand-in (404 there): Ollama's answer either way.
    delete = probe(
        host, f"{GATEWAY}/api/delete", "-X", "DELETE", *admin, "-d", '{"model":"tiny-copy"}'
    )
    assert delete["status"] in (200, 404) and "request_id" not in delete["body"], delete
    seen = [(r["method"], r["path"]) for requests in standin_requests(host) for r in requests]
    assert sorted(seen) == [("DELETE", "/api/delete"), ("POST", "/api/copy")], seen
    # Model management is in the inference class (its budget), not the metadata one.
    entries = [e for e in read_access_log(host) if e["client"] == "key:admin-probe"]
    assert {e["class"] for e in entries if e["path"] in ("/api/copy", "/api/delete")} == {
        "inference"
    }


@needs_njs
def test_model_allowlist_is_checked_before_ollama(host):
    # listed-probe may name tiny only. /api/show (metadata class) for most checks: the inference
    # budget (burst 5) must last through the stream test below.
    reset_upstreams(host)
    listed = bearer("listed-probe")
    refused = probe_many(
        host,
        [
            [f"{GATEWAY}/api/show", *listed, "-d", '{"model":"other:7b"}'],
            [f"{GATEWAY}/api/show", *listed, "-d", '{"model":"tiny:q4"}'],
            [f"{GATEWAY}/api/show", *listed, "-d", '{"model":"tiny","MODEL":"other:7b"}'],
            [f"{GATEWAY}/api/generate", *listed, "-d", '{"model":"other:7b","prompt":"hi"}'],
            [f"{GATEWAY}/v1/chat/completions", *listed, "-d", '{"model":"other:7b","messages":[]}'],
        ],
    )
    for result in refused:
        assert "is not allowed for this client" in assert_json_error(result, 403)["error"]
    assert upstream_request_count(host) == 0
    allowed = probe_many(
        host,
        [
            *[
                [f"{GATEWAY}/api/show", *listed, "-d", f'{{"model":"{m}"}}']
                for m in ("tiny", "tiny:latest", "Tiny:Latest")
            ],
            [
                f"{GATEWAY}/api/generate",
                *listed,
                "-d",
                '{"model":"tiny","prompt":"hi","stream":false}',
            ],
            [f"{GATEWAY}/api/tags", *listed],
        ],
    )
    assert [r["status"] for r in allowed] == [200] * 5, allowed
    assert upstream_request_count(host) == 5
    # A client without an allowlist is not checked: Ollama answers the unknown model itself.
    other = probe(host, f"{GATEWAY}/api/show", *bearer("ci-bot"), "-d", '{"model":"other:7b"}')
    assert other["status"] == 404 and "request_id" not in other["body"], other


@needs_njs
def test_stream_through_the_allowlist_check_arrives_token_by_token(host):
    delay = 0.2
    arrivals = stream(host, "listed-probe", "one two three four", delay)["arrivals"]
    # "Stand-in reply from tiny: " + 4 prompt words = 8 tokens, then the final done line.
    assert len(arrivals) == 9, arrivals
    assert arrivals[-1] - arrivals[0] >= 6 * delay * 0.8, arrivals
    gaps = [b - a for a, b in itertools.pairwise(arrivals[:8])]
    assert min(gaps) >= delay / 2, gaps


# --- limits and errors ----------------------------------------------------------------------------


def test_inference_rate_limit_answers_429_json(host):
    request = ["-d", '{"model":"tiny","prompt":"hi","stream":false}']
    results = probe(
        host, f"{GATEWAY}/api/generate", *bearer("ratelimit-probe"), *request, "--repeat", "12"
    )
    statuses = [r["status"] for r in results]
    accepted = statuses.count(200)
    # 30r/m with burst 5: 6 at once (a 7th only if a 2 s interval passed during the burst).
    assert 6 <= accepted <= 7, statuses
    assert set(statuses) == {200, 429}, statuses
    limited = next(r for r in results if r["status"] == 429)
    data = assert_json_error(limited, 429)
    assert data["error"] == "rate limit exceeded"
    assert data["retry_after"] == 2
    assert limited["headers"]["retry-after"] == "2"
    # Metadata routes have their own budget: the same client still lists models.
    assert probe(host, f"{GATEWAY}/api/tags", *bearer("ratelimit-probe"))["status"] == 200


def test_concurrent_streams_per_client_are_capped(host):
    stream = json.dumps(
        {"model": "tiny", "prompt": "a b c d", "options": {"standin_token_delay": 0.4}}
    )
    auth = f"Authorization: Bearer {KEYS['conn-probe']}"
    streams = " ".join(
        shlex.join(
            [
                "python3",
                f"{TOOLS}/stream_probe.py",
                "127.0.0.1",
                "8080",
                "/api/generate",
                stream,
                auth,
            ]
        )
        + f" >/tmp/conn-probe-{i}.json &"
        for i in (1, 2)
    )
    third = shlex.join(
        ["python3", f"{TOOLS}/http_probe.py", f"{GATEWAY}/api/generate", "-H", auth, "-d", stream]
    )
    script = f"{streams} sleep 1; {third} >/tmp/conn-probe-3.json; wait"
    out = host.run(f"sh -c {shlex.quote(script)}")
    assert out.rc == 0, out.stderr
    first, second = (
        json.loads(host.file(f"/tmp/conn-probe-{i}.json").content_string) for i in (1, 2)
    )
    assert first["status"] == 200 and second["status"] == 200, (first, second)
    assert len(first["arrivals"]) == 9 and len(second["arrivals"]) == 9
    rejected = json.loads(host.file("/tmp/conn-probe-3.json").content_string)
    data = assert_json_error(rejected, 429)
    assert data["error"] == "too many concurrent requests for this client"
    assert rejected["headers"]["retry-after"] == "2"


def test_gateway_errors_are_json(host):
    assert_json_error(probe(host, f"{GATEWAY}/no/such/route", *bearer("ci-bot")), 404)
    # Source networks: only 127.0.0.1 is allowed.
    assert_json_error(
        probe(host, f"{GATEWAY}/api/tags", *bearer("ci-bot"), "--source", "127.0.0.2"), 403
    )
    # Request size: the scenario allows 1m.
    too_big = probe(
        host, f"{GATEWAY}/api/chat", *bearer("ci-bot"), "--body-size", str(2 * 1024 * 1024)
    )
    assert_json_error(too_big, 413)
    # An upstream's own error passes unchanged (Ollama's 404 body, not the gateway's).
    missing = probe(
        host, f"{GATEWAY}/api/show", *bearer("ci-bot"), "-d", '{"model":"no-such-model"}'
    )
    assert missing["status"] == 404
    assert "not found" in body(missing)["error"] and "request_id" not in body(missing)


def test_unreachable_upstream_gives_502_json(host):
    host.run("systemctl stop services-standin")
    try:
        assert_json_error(probe(host, f"{GATEWAY}/services/health", *bearer("ci-bot")), 502)
        # The node cannot serve the services: /healthz says so, and only that.
        assert_healthz(probe(host, f"{GATEWAY}/healthz"), 503, HEALTHZ_UNAVAILABLE)
    finally:
        started = host.run("systemctl start services-standin")
        assert started.rc == 0, started.stderr
    for _ in range(20):
        if probe(host, "http://127.0.0.1:8000/health")["status"] == 200:
            break
        host.run("sleep 0.5")


# --- logs -----------------------------------------------------------------------------------------


def read_access_log(host: Any) -> list[dict[str, Any]]:
    text = host.run(f"cat {LOG_DIR}/access.log {LOG_DIR}/access.log.1 2>/dev/null").stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_real_client_address_only_from_the_trusted_proxy(host):
    """CF-Connecting-IP counts from 127.0.0.1 (where cloudflared connects from) and nowhere else:
    the allowlist, the rate-limit identity and the log use the address it names; any other
    peer's header is ignored."""
    tags = [f"{GATEWAY}/api/tags", *bearer("ci-bot")]
    results = probe_many(
        host,
        [
            # From the proxy: a client outside the allowlist is refused, one inside is served.
            [*tags, "-H", "CF-Connecting-IP: 198.51.100.7"],
            [*tags, "-H", "CF-Connecting-IP: 127.0.0.7"],
            # From other peers: a forged header neither opens the door nor changes the address.
            [*tags, "--source", "127.0.0.2", "-H", "CF-Connecting-IP: 127.0.0.1"],
            [*tags, "--source", "127.0.0.5", "-H", "CF-Connecting-IP: 198.51.100.9"],
        ],
    )
    assert [r["status"] for r in results] == [403, 200, 403, 200], results
    current = host.check_output(f"cat {LOG_DIR}/access.log").splitlines()
    entries = [json.loads(line) for line in current if '"path":"/api/tags"' in line]
    seen = {(e["remote_addr"], e["peer"], e["status"]) for e in entries[-4:]}
    assert seen == {
        ("198.51.100.7", "127.0.0.1", 403),
        ("127.0.0.7", "127.0.0.1", 200),
        ("127.0.0.2", "127.0.0.2", 403),
        ("127.0.0.5", "127.0.0.5", 200),
    }, entries[-4:]
    # Anonymous identities follow the real address: /healthz's bucket is ip:<client>.
    health = probe(host, f"{GATEWAY}/healthz", "-H", "CF-Connecting-IP: 203.0.113.44")
    assert health["status"] == 200, health
    last = json.loads(host.check_output(f"tail -n 1 {LOG_DIR}/access.log"))
    assert last["client"] == "ip:203.0.113.44" and last["peer"] == "127.0.0.1", last


def test_access_log_is_json_with_client_ids(host):
    entries = read_access_log(host)
    assert entries, "empty access log"
    fields = {
        "time",
        "client",
        "method",
        "route",
        "path",
        "status",
        "bytes",
        "request_time",
        "upstream_response_time",
    }
    assert all(fields <= entry.keys() for entry in entries)
    clients = {entry["client"] for entry in entries}
    assert {"key:ci-bot", "key:stream-probe", f"user:{USER['name']}", "ip:127.0.0.1"} <= clients
    proxied = [
        e
        for e in entries
        if e["client"] == "key:ci-bot" and e["route"] == "ollama" and e["status"] == 200
    ]
    assert proxied and all(e["upstream_response_time"] not in ("", "-") for e in proxied)
    assert any(e["status"] == 429 and e["client"] == "key:ratelimit-probe" for e in entries)
    assert {e["class"] for e in entries} >= {"inference", "metadata", "health"}


def test_logs_hold_no_credentials(host):
    text = host.run(f"cat {LOG_DIR}/*.log* /var/log/nginx/*.log 2>/dev/null").stdout
    assert text.strip(), "no log content to check"
    for secret in ALL_SECRETS:
        assert secret not in text
    assert "Bearer" not in text and "Authorization" not in text


def test_logrotate_rotates_and_nginx_reopens(host):
    config = "/etc/logrotate.d/ai-local-core-gateway"
    assert host.run(f"logrotate --debug {config}").rc == 0
    forced = host.run(f"logrotate --force {config}")
    assert forced.rc == 0, forced.stderr
    assert host.file(f"{LOG_DIR}/access.log.1").exists
    # nginx reopens its logs asynchronously after the USR1 from postrotate: ask until a request
    # lands in the new file.
    for _ in range(20):
        assert probe(host, f"{GATEWAY}/healthz")["status"] == 200
        if "/healthz" in host.file(f"{LOG_DIR}/access.log").content_string:
            break
        host.run("sleep 0.5")
    log = f"{LOG_DIR}/access.log"
    assert "/healthz" in host.file(log).content_string, (
        "nginx did not reopen its log after rotation"
    )
    assert stat(host, LOG_DIR, log) == [("root", "adm", 0o755), ("www-data", "adm", 0o640)]


# --- configuration changes ------------------------------------------------------------------------


def _inventory_hosts(node: Any) -> set[str]:
    """Every host name in a YAML inventory (hosts: under any group)."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "hosts" and isinstance(value, dict):
                names.update(value)
            else:
                names |= _inventory_hosts(value)
    return names


def _scenario_hosts() -> list[Any]:
    inventory = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    return [testinfra.get_host(f"podman://{name}") for name in sorted(_inventory_hosts(inventory))]


@pytest.fixture(scope="module")
def broken_run() -> Iterator[tuple[PlaybookRun, dict[str, str]]]:
    """Converge once with a broken extra directive; the config checksums from before it."""
    before = {h.backend.name: h.file(CONF).sha256sum for h in _scenario_hosts()}
    run = run_playbook(
        scenario_playbook(),
        "--tags",
        "gateway_config",
        "-e",
        json.dumps({"gateway_extra_server_config": BROKEN}),
    )
    yield run, before


def test_broken_setting_fails_and_previous_config_keeps_serving(host, broken_run):
    run, before = broken_run
    name = host.backend.name
    assert run.returncode != 0, run.output[-3000:]
    assert run.recaps[name].failed == 1, run.output[-3000:]
    assert 'unknown directive "this"' in run.output, run.output[-3000:]
    conf = host.file(CONF)
    assert conf.sha256sum == before[name], "the live file was replaced by the broken one"
    assert BROKEN not in conf.content_string
    assert host.run("nginx -t").rc == 0
    assert probe(host, f"{GATEWAY}/api/version", *bearer("ci-bot"))["status"] == 200


def test_bad_credential_is_refused_by_name_without_showing_it():
    # Invalid ("!") and longer than any real key here: refused before any change, reported by
    # client name; the value itself must not appear in the play's output.
    secret = "NOT-A-SECRET-but-treated-as-one-" + "q" * 24 + "!"
    run = run_playbook(
        scenario_playbook(),
        "--tags",
        "gateway_validate",
        "-e",
        json.dumps({"gateway_api_keys": [{"name": "laptop", "key": secret}]}),
    )
    assert run.returncode != 0, run.output[-3000:]
    assert "API key of laptop: must be 32 to 256 characters" in run.output, run.output[-3000:]
    assert secret not in run.output
    assert run.recaps and all(r.failed == 1 and r.changed == 0 for r in run.recaps.values())
