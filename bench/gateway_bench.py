"""What does the gateway (role `gateway`, nginx) cost, and do its rate limits hold?

Starts, on loopback only, the Ollama stand-in and an nginx of its own whose gateway file is
rendered from the role's template by a small ansible-playbook run against localhost (the role's
defaults and vars, plus bench settings: temporary paths, three API keys, a basic-auth user,
inference limited to 20r/s without burst). The system's nginx service is not touched. Then, in one
run and interleaved so both paths see the same machine state:

* overhead: GET /api/version straight to the stand-in vs through the gateway (API key), one
  keep-alive connection, sequential: p50/p99 latency and requests/s, and the ratios; the same
  with 4 concurrent clients for requests/s;
* streaming: POST /api/generate (NDJSON, per-token delay) direct vs gateway: time to the first
  streamed line, p50, and the ratio;
* rate-limit accuracy: 4 clients hammer the inference class for a fixed window; requests accepted
  vs what 20r/s (burst 0) allows in that window;
* basic auth: the per-request cost of the bcrypt check (passlib's default cost 12) vs an API key.

    .venv/bin/python bench/gateway_bench.py [--requests 600] [--streams 20] [--window 3]

Needs nginx on PATH (Debian/Ubuntu: apt install nginx) and the dev venv (ansible-playbook,
bcrypt). Bounded: at most 2000 requests per measured path, 100 streams, a 10 s window.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures.ollama import (  # noqa: E402
    STANDIN_EXECUTABLE,
    OllamaStandIn,
    running_standin,
)

ROLE = REPO_ROOT / "roles" / "gateway"
HOST = "127.0.0.1"
MODEL = "tiny:latest"
INFERENCE_RATE = 20  # r/s, burst 0: the bucket the accuracy check measures
KEYS = {
    "bench": "bench-overhead-NOT-A-SECRET-0123456789abcdef",
    "stream": "bench-stream-NOT-A-SECRET-0123456789abcdef",
    "ratelimit": "bench-ratelimit-NOT-A-SECRET-0123456789abcdef",
}
BASIC_USER, BASIC_PASSWORD = "bench", "bench-password-NOT-A-SECRET"
MAX_REQUESTS, MAX_STREAMS, MAX_WINDOW = 2000, 100, 10.0


class BenchError(Exception):
    """The bench could not set up or measure; the message says why."""


# --- setup ----------------------------------------------------------------------------------------


# Real Ollama (Go's net/http) sends with TCP_NODELAY. Python's http.server does not, and on a
# reused (keep-alive) connection its header and body writes then meet the peer's delayed ACK:
# ~40 ms per response, which would hide everything the gateway does. The stand-in runs unchanged
# inside this wrapper, with TCP_NODELAY on every accepted connection.
NODELAY_WRAPPER = f"""\
import runpy, socketserver, sys
socketserver.StreamRequestHandler.disable_nagle_algorithm = True
sys.argv = [{str(STANDIN_EXECUTABLE)!r}, *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def render_gateway(workdir: Path, listen_port: int, upstream: str) -> Path:
    """The role's gateway.conf.j2 rendered by ansible-playbook into workdir; its path."""
    playbook = workdir / "render.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: Render the gateway configuration for the bench
              hosts: localhost
              connection: local
              gather_facts: false
              vars_files:
                - {ROLE}/defaults/main.yml
                - {ROLE}/vars/main.yml
              tasks:
                - name: Render the gateway file
                  ansible.builtin.template:
                    src: {ROLE}/templates/gateway.conf.j2
                    dest: {workdir}/gateway.conf
                    mode: "0644"
                - name: Render the API key map
                  ansible.builtin.template:
                    src: {ROLE}/templates/gateway-api-keys.map.j2
                    dest: {workdir}/gateway-api-keys.map
                    mode: "0600"
            """
        )
    )
    settings = {
        "gateway_listen": [f"{HOST}:{listen_port}"],
        "gateway_ollama_upstreams": [
            {"address": upstream, "weight": 1, "max_fails": 3, "fail_timeout": "30s"}
        ],
        "gateway_services_enabled": False,
        "gateway_api_keys": [{"name": name, "key": key} for name, key in KEYS.items()],
        "gateway_basic_auth_enabled": True,
        "gateway_basic_auth_users": [{"name": BASIC_USER, "password": BASIC_PASSWORD}],
        "gateway_inference_rate": f"{INFERENCE_RATE}r/s",
        "gateway_inference_burst": 0,
        "gateway_metadata_rate": "100000r/s",
        "gateway_metadata_burst": 10000,
        "gateway_max_streams_per_client": 64,
        "gateway_log_dir": str(workdir / "logs"),
        "__gateway_keys_map_path": str(workdir / "gateway-api-keys.map"),
        "__gateway_htpasswd_path": str(workdir / "gateway.htpasswd"),
        "ansible_python_interpreter": sys.executable,
    }
    extra = workdir / "settings.yml"
    extra.write_text(yaml.safe_dump(settings))
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CACHE_PLUGIN="memory",
    )
    ansible = Path(sys.executable).with_name("ansible-playbook")
    res = subprocess.run(
        [str(ansible), "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=180,
        check=False,
    )
    if res.returncode != 0:
        raise BenchError(f"rendering the role's template failed:\n{res.stdout[-3000:]}{res.stderr}")
    # The role writes this file with community.general.htpasswd; the same bcrypt entry here.
    digest = bcrypt.hashpw(BASIC_PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode()
    (workdir / "gateway.htpasswd").write_text(f"{BASIC_USER}:{digest}\n")
    return workdir / "gateway.conf"


@contextmanager
def running_nginx(workdir: Path, gateway_conf: Path) -> Iterator[str]:
    """An nginx of its own (1 worker) serving the rendered gateway file; yields its version."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        raise BenchError("nginx is not installed (Debian/Ubuntu: apt install nginx)")
    (workdir / "logs").mkdir(exist_ok=True)
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    # Workers (nobody when started as root) read the htpasswd file on each basic-auth request.
    workdir.chmod(0o755)
    (workdir / "gateway.htpasswd").chmod(0o644)
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            worker_processes 1;
            pid {workdir}/nginx.pid;
            error_log {workdir}/logs/nginx-error.log warn;
            events {{ worker_connections 1024; }}
            http {{
                {mime}
                access_log off;
                client_body_temp_path {temp}/body;
                proxy_temp_path {temp}/proxy;
                fastcgi_temp_path {temp}/fastcgi;
                uwsgi_temp_path {temp}/uwsgi;
                scgi_temp_path {temp}/scgi;
                include {gateway_conf};
            }}
            """
        )
    )
    base = [nginx, "-p", str(workdir), "-c", str(conf)]
    check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise BenchError(f"nginx -t refused the rendered configuration:\n{check.stderr}")
    version = subprocess.run(
        [nginx, "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    started = subprocess.run(base, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise BenchError(f"nginx did not start:\n{started.stderr}")
    pid_file = workdir / "nginx.pid"
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield version.removeprefix("nginx version: ")
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text().strip()), signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


# --- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    headers: dict[str, str]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_gets(target: Target, count: int, path: str = "/api/version") -> tuple[list[float], float]:
    """count sequential GETs on one keep-alive connection: latencies (ms) and requests/s."""
    conn = http.client.HTTPConnection(HOST, target.port, timeout=30)
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=target.headers)
            resp = conn.getresponse()
            resp.read()
            latencies.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise BenchError(f"{target.name} {path}: HTTP {resp.status}")
    finally:
        conn.close()
    return latencies, count / (time.perf_counter() - started)


def concurrent_rps(target: Target, clients: int, per_client: int) -> float:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            timed_gets(target, per_client)
        except (BenchError, OSError, http.client.HTTPException) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise BenchError(f"{target.name}: {errors[0]}")
    return clients * per_client / elapsed


def first_stream_line(target: Target, token_delay: float) -> float:
    """ms from sending a streamed generate to its first NDJSON line."""
    body = json.dumps(
        {"model": MODEL, "prompt": "one two three", "options": {"standin_token_delay": token_delay}}
    )
    headers = {"Content-Type": "application/json", **target.headers}
    conn = http.client.HTTPConnection(HOST, target.port, timeout=30)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/api/generate", body=body, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"{target.name} stream: HTTP {resp.status} {resp.read()[:200]!r}")
        first = resp.readline()
        elapsed = (time.perf_counter() - t0) * 1000
        if not first.strip().startswith(b"{"):
            raise BenchError(f"{target.name} stream: unexpected first line {first[:100]!r}")
        resp.read()
    finally:
        conn.close()
    return elapsed


def rate_limit_window(port: int, window: float, clients: int) -> tuple[int, int, float]:
    """Hammer the inference class for `window` seconds: accepted, rejected (429), span in s."""
    body = json.dumps({"model": MODEL, "prompt": "hi", "stream": False})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEYS['ratelimit']}"}
    counts = {200: 0, 429: 0}
    other: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + window
    budget = [int(MAX_WINDOW * 5000)]

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                conn.request("POST", "/api/generate", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                with lock:
                    if resp.status in counts:
                        counts[resp.status] += 1
                    else:
                        other.append(resp.status)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    span = time.monotonic() - started
    if other:
        raise BenchError(f"rate-limit window: unexpected statuses {sorted(set(other))}")
    return counts[200], counts[429], span


def interleaved(
    measure: Callable[[Target], list[float]], targets: list[Target], rounds: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {t.name: [] for t in targets}
    for _ in range(rounds):
        for target in targets:
            results[target.name] += measure(target)
    return results


# --- report ---------------------------------------------------------------------------------------


def run(requests: int, streams: int, window: float) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        workdir = Path(tmp)
        wrapper = workdir / "standin_nodelay.py"
        wrapper.write_text(NODELAY_WRAPPER)
        with running_standin(
            workdir / "standin",
            models=[MODEL],
            env={"OLLAMA_NUM_PARALLEL": "64"},
            executable=wrapper,
        ) as standin:
            port = free_port()
            gateway_conf = render_gateway(workdir, port, standin.ollama_host)
            with running_nginx(workdir, gateway_conf) as version:
                report(standin, port, version, requests, streams, window)


def report(
    standin: OllamaStandIn, port: int, version: str, requests: int, streams: int, window: float
) -> None:
    direct = Target("direct", standin.port, {})
    gateway = Target("gateway", port, {"Authorization": f"Bearer {KEYS['bench']}"})
    streaming_gateway = Target("gateway", port, {"Authorization": f"Bearer {KEYS['stream']}"})
    credentials = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    basic = Target("basic", port, {"Authorization": f"Basic {credentials}"})

    # Warm-up: connections, upstream keepalive, the stand-in's model load.
    for target in (direct, gateway):
        timed_gets(target, 20)
    first_stream_line(direct, 0.0)
    first_stream_line(streaming_gateway, 0.0)

    rounds = 10
    per_round = max(1, requests // rounds)
    rps: dict[str, list[float]] = {"direct": [], "gateway": []}

    def latency(target: Target) -> list[float]:
        values, per_second = timed_gets(target, per_round)
        rps[target.name].append(per_second)
        return values

    lat = interleaved(latency, [direct, gateway], rounds)
    # Requests/s with 4 clients: 3 interleaved rounds per path, the median round.
    conc_rounds = interleaved(
        lambda t: [concurrent_rps(t, 4, max(1, requests // 12))], [direct, gateway], 3
    )
    conc = {name: statistics.median(values) for name, values in conc_rounds.items()}

    token_delay = 0.02
    ttfb = interleaved(
        lambda t: [first_stream_line(t, token_delay)], [direct, streaming_gateway], streams
    )

    basic_ms, _ = timed_gets(basic, 5)
    key_ms, _ = timed_gets(gateway, 5)

    # The rate-limit check runs last, on its own key, after a pause that lets its bucket drain.
    time.sleep(1.0)
    accepted, rejected, span = rate_limit_window(port, window, clients=4)
    # A bucket without burst admits the first request, then one per 1/rate seconds.
    allowed = int(span * INFERENCE_RATE) + 1

    def row(name: str) -> str:
        values = lat[name]
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        per_second = statistics.median(rps[name])
        return f"  {name:<8} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   {per_second:8.0f} req/s"

    d50, g50 = percentile(lat["direct"], 0.5), percentile(lat["gateway"], 0.5)
    d99, g99 = percentile(lat["direct"], 0.99), percentile(lat["gateway"], 0.99)
    rps_ratio = statistics.median(rps["gateway"]) / statistics.median(rps["direct"])
    t_direct, t_gateway = statistics.median(ttfb["direct"]), statistics.median(ttfb["gateway"])
    basic_p50, key_p50 = statistics.median(basic_ms), statistics.median(key_ms)
    lines = [
        f"gateway bench: {version}, 1 worker, loopback, Ollama stand-in",
        f"GET /api/version, {len(lat['direct'])} requests per path, one keep-alive connection,"
        " sequential (API key on the gateway):",
        row("direct"),
        row("gateway"),
        f"  overhead p50 {g50 - d50:+.3f} ms (x{g50 / d50:.2f}),"
        f" p99 {g99 - d99:+.3f} ms (x{g99 / d99:.2f}); req/s gateway/direct {rps_ratio:.2f}",
        f"4 concurrent clients: direct {conc['direct']:.0f} req/s,"
        f" gateway {conc['gateway']:.0f} req/s, ratio {conc['gateway'] / conc['direct']:.2f}",
        f"streamed POST /api/generate (token delay {token_delay * 1000:.0f} ms),"
        f" {streams} streams per path:",
        f"  first line p50: direct {t_direct:.2f} ms, gateway {t_gateway:.2f} ms,"
        f" ratio {t_gateway / t_direct:.2f} ({t_gateway - t_direct:+.2f} ms)",
        f"rate limit {INFERENCE_RATE}r/s burst 0, {span:.2f} s window, 4 clients:"
        f" accepted {accepted} (allowed {allowed}), {rejected} answered 429,"
        f" accuracy {accepted / allowed:.2f}",
        f"basic auth (bcrypt cost 12) p50 {basic_p50:.1f} ms per request vs API key"
        f" {key_p50:.2f} ms (x{basic_p50 / key_p50:.0f})",
    ]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=600, help="requests per path (<= 2000)")
    parser.add_argument("--streams", type=int, default=20, help="streams per path (<= 100)")
    parser.add_argument("--window", type=float, default=3.0, help="rate-limit window in s (<= 10)")
    args = parser.parse_args(argv)
    if not (1 <= args.requests <= MAX_REQUESTS and 1 <= args.streams <= MAX_STREAMS):
        parser.error(f"--requests 1..{MAX_REQUESTS}, --streams 1..{MAX_STREAMS}")
    if not 0.5 <= args.window <= MAX_WINDOW:
        parser.error(f"--window 0.5..{MAX_WINDOW}")
    try:
        run(args.requests, args.streams, args.window)
    except (BenchError, OSError, http.client.HTTPException, subprocess.SubprocessError) as exc:
        print(f"gateway bench failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
