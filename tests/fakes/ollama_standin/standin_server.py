"""HTTP server of the Ollama stand-in (a test fixture, never shipped).

Follows Ollama's API as described in ``/work/shared/notes/ollama-facts.md``:
NDJSON streaming with omitted zero metrics, ``{"error"}`` bodies with 400/404/500/503,
the mid-stream error line, the Host check (403 with an empty body) and the Origin
check, pull progress, the ``OLLAMA_MAX_QUEUE`` 503, and the OpenAI-compatible
``/v1`` endpoints with SSE streaming.

Test-only features are namespaced: control endpoints under ``/_standin/`` and
environment variables prefixed ``OLLAMA_STANDIN_`` (see README.md).

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from .standin_store import (
    INVALID_NAME_ERROR,
    UNKNOWN_MODEL_ERROR,
    ModelName,
    ModelStore,
    StoredModel,
)

DEFAULT_VERSION = "0.0.0-standin"
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"
MAX_BODY = 64 * 1024 * 1024
_NOMINAL_TOKEN_NS = 10_000_000  # 100 tokens/s when no delay is configured
_PROMPT_TOKEN_NS = 1_000_000
_FOREVER = timedelta(days=292 * 365)
_PRIVATE_NETS = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
]
_EXTENSION_SCHEMES = (
    "chrome-extension://",
    "safari-extension://",
    "moz-extension://",
    "ms-browser-extension://",
)
_CORS_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, x-stainless-lang, "
    "x-stainless-package-version, x-stainless-os, x-stainless-arch, x-stainless-retry-count, "
    "x-stainless-runtime, x-stainless-runtime-version, x-stainless-async, x-stainless-timeout"
)
_CORS_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# ---------------------------------------------------------------------------- helpers


def log(level: str, msg: str, **attrs: Any) -> None:
    """A log line in the shape of Ollama's slog text handler, on stderr."""
    now = datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")
    extra = "".join(
        f" {k}={json.dumps(v) if isinstance(v, str) and ' ' in v else v}" for k, v in attrs.items()
    )
    sys.stderr.write(f"time={now} level={level} source=standin msg={json.dumps(msg)}{extra}\n")
    sys.stderr.flush()


def parse_duration(value: Any) -> float | None:
    """Seconds from a Go duration (``5m``, ``1h30m``, ``-1``) or a number; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total, pos = 0.0, 0
    for match in _DURATION_RE.finditer(body):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        return None
    return sign * total


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def created_at() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def tokenize(text: str) -> list[str]:
    """Word-ish tokens that keep their trailing whitespace (joined back losslessly)."""
    return re.findall(r"\s*\S+\s*", text) if text.strip() else []


def count_words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def _env_float(env: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(env.get(key, "") or default)
    except ValueError:
        return default


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, "") or default)
    except ValueError:
        return default


def read_version(executable_dir: Path, env: Mapping[str, str]) -> str:
    """OLLAMA_STANDIN_VERSION, else ``<bin>/../lib/ollama/VERSION``, else the default."""
    version = env.get("OLLAMA_STANDIN_VERSION", "").strip()
    if version:
        return version
    try:
        text = (executable_dir.parent / "lib" / "ollama" / "VERSION").read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_VERSION
    return text.strip() or DEFAULT_VERSION


def parse_host(value: str, default_port: int = 11434) -> tuple[str, str, int]:
    """``OLLAMA_HOST`` as Ollama's envconfig.Host reads it: (scheme, host, port)."""
    text = value.strip().strip("\"'")
    scheme = "http"
    if "://" in text:
        scheme, text = text.split("://", 1)
        default_port = 443 if scheme == "https" else 80 if scheme == "http" else default_port
    text = text.split("/", 1)[0]
    host, port = "127.0.0.1", default_port
    if text.startswith("["):
        end = text.find("]")
        host = text[1:end] if end > 0 else host
        rest = text[end + 1 :] if end > 0 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        name, _, port_text = text.partition(":")
        host = name or host
        if port_text.isdigit():
            port = int(port_text)
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address
    elif text:
        host = text
    if not 0 <= port <= 65535:
        port = default_port
    return scheme, host, port


# ---------------------------------------------------------------------------- config


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 11434
    models_dir: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    keep_alive: float = 300.0
    origins: list[str] = field(default_factory=list)
    num_parallel: int = 1
    max_queue: int = 512
    version: str = DEFAULT_VERSION
    token_delay: float = 0.0
    pull_delay: float = 0.0
    load_delay: float = 0.0
    require_bearer: str | None = None
    require_basic: str | None = None
    unknown: list[str] = field(default_factory=list)
    preload: list[str] = field(default_factory=list)
    reply: str = "Stand-in reply from {model}: {prompt}"
    embed_dim: int = 8
    #: Share of each loaded model that ``/api/ps`` reports in VRAM (``size_vram``): 1.0 = wholly
    #: on the GPU (Ollama's normal case on a GPU node), below 1 = partly offloaded to the CPU.
    vram_share: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], executable_dir: Path) -> ServerConfig:
        _, host, port = parse_host(env.get("OLLAMA_HOST", ""))
        models = env.get("OLLAMA_MODELS", "").strip()
        keep_alive = parse_duration(env.get("OLLAMA_KEEP_ALIVE", "") or "5m")
        origins = [o.strip() for o in env.get("OLLAMA_ORIGINS", "").strip("\"'").split(",")]
        return cls(
            host=host,
            port=port,
            models_dir=Path(models).expanduser() if models else Path.home() / ".ollama" / "models",
            keep_alive=300.0 if keep_alive is None else keep_alive,
            origins=[o for o in origins if o],
            num_parallel=max(1, _env_int(env, "OLLAMA_NUM_PARALLEL", 1)),
            max_queue=max(0, _env_int(env, "OLLAMA_MAX_QUEUE", 512)),
            version=read_version(executable_dir, env),
            token_delay=max(0.0, _env_float(env, "OLLAMA_STANDIN_TOKEN_DELAY", 0.0)),
            pull_delay=max(0.0, _env_float(env, "OLLAMA_STANDIN_PULL_DELAY", 0.0)),
            load_delay=max(0.0, _env_float(env, "OLLAMA_STANDIN_LOAD_DELAY", 0.0)),
            require_bearer=env.get("OLLAMA_STANDIN_REQUIRE_BEARER") or None,
            require_basic=env.get("OLLAMA_STANDIN_REQUIRE_BASIC") or None,
            unknown=[u for u in env.get("OLLAMA_STANDIN_UNKNOWN", "").split(",") if u.strip()],
            preload=[p for p in env.get("OLLAMA_STANDIN_PRELOAD", "").split(",") if p.strip()],
            reply=env.get("OLLAMA_STANDIN_REPLY") or cls.reply,
            embed_dim=max(1, _env_int(env, "OLLAMA_STANDIN_EMBED_DIM", 8)),
            vram_share=min(1.0, max(0.0, _env_float(env, "OLLAMA_STANDIN_VRAM_SHARE", 1.0))),
        )

    def allowed_origins(self) -> list[str]:
        origins = list(self.origins)
        for host in ("localhost", "127.0.0.1", "0.0.0.0"):
            origins += [
                f"http://{host}",
                f"https://{host}",
                f"http://{host}:*",
                f"https://{host}:*",
            ]
        return [
            *origins,
            "app://*",
            "file://*",
            "tauri://*",
            "vscode-webview://*",
            "vscode-file://*",
        ]


# ---------------------------------------------------------------------------- state


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Fault:
    """One injected fault; ``count`` <= 0 means until reset."""

    kind: str
    path: str = ""
    count: int = 1
    status: int = 503
    message: str | None = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after_tokens: int = 0
    seconds: float = 0.0
    chunk_size: int = 5

    KINDS = ("status", "close", "stall", "drop", "error", "split")
    REQUEST_KINDS = ("status", "close", "stall")

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise HttpError(400, "a fault is a JSON object")
        kind = data.get("kind")
        if kind not in cls.KINDS:
            raise HttpError(400, f"fault kind must be one of {', '.join(cls.KINDS)}")
        try:
            return cls(
                kind=kind,
                path=str(data.get("path", "")),
                count=int(data.get("count", 1)),
                status=int(data.get("status", 503)),
                message=None if data.get("message") is None else str(data["message"]),
                body=None if data.get("body") is None else str(data["body"]),
                headers={str(k): str(v) for k, v in dict(data.get("headers", {})).items()},
                after_tokens=int(data.get("after_tokens", 0)),
                seconds=float(data.get("seconds", 0.0)),
                chunk_size=max(1, int(data.get("chunk_size", 5))),
            )
        except (TypeError, ValueError) as exc:
            raise HttpError(400, f"invalid fault: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Loaded:
    model: StoredModel
    expires_at: datetime
    #: The keep_alive of the latest request (seconds; negative: forever).
    keep_alive: float = 300.0
    #: Requests using the model now: like Ollama's scheduler, a model in use never expires; its
    #: keep_alive counts from the end of the last request.
    in_use: int = 0


class Busy(Exception):
    pass


class Scheduler:
    """``OLLAMA_NUM_PARALLEL`` running requests, ``OLLAMA_MAX_QUEUE`` waiting, 503 beyond."""

    def __init__(self, num_parallel: int, max_queue: int) -> None:
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.active = 0
        self.waiting = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            if self.active >= self.num_parallel:
                if self.waiting >= self.max_queue:
                    raise Busy
                self.waiting += 1
                try:
                    while self.active >= self.num_parallel:
                        self._cond.wait()
                finally:
                    self.waiting -= 1
            self.active += 1
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify()


class State:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = ModelStore(config.models_dir, config.unknown)
        self.scheduler = Scheduler(config.num_parallel, config.max_queue)
        self.loaded: dict[ModelName, Loaded] = {}
        self.faults: list[Fault] = []
        self.requests: deque[dict[str, Any]] = deque(maxlen=2000)
        self.lock = threading.Lock()
        self.counter = 0

    def take_fault(self, path: str, kinds: tuple[str, ...]) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.kind in kinds and path.startswith(fault.path):
                    if fault.count > 0:
                        fault.count -= 1
                        if fault.count == 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def next_id(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def purge_expired(self) -> None:
        """Unload the models whose keep_alive ran out without use (what /api/ps then shows)."""
        now = datetime.now(timezone.utc)
        with self.lock:
            expired = [
                n
                for n, entry in self.loaded.items()
                if entry.in_use == 0 and entry.expires_at <= now
            ]
            for name in expired:
                del self.loaded[name]
        for name in expired:
            log("INFO", "unloaded model after keep_alive", model=name.display)

    def touch(self, model: StoredModel, keep_alive: float) -> bool:
        """Load ``model`` (if it is not) for a request; return True if it had to be loaded.

        The caller calls :meth:`release` when the request ends: ``keep_alive`` (seconds,
        negative = forever, 0 = unload at the end of the request) counts from then."""
        self.purge_expired()
        with self.lock:
            entry = self.loaded.get(model.name)
            cold = entry is None
            if entry is None:
                entry = self.loaded[model.name] = Loaded(model, _expiry(keep_alive), keep_alive)
            entry.keep_alive = keep_alive
            entry.expires_at = _expiry(keep_alive)
            entry.in_use += 1
            return cold

    def release(self, model: StoredModel) -> None:
        """The end of a request that :meth:`touch` counted: the keep_alive timer starts now."""
        with self.lock:
            entry = self.loaded.get(model.name)
            if entry is None:
                return
            entry.in_use = max(0, entry.in_use - 1)
            if entry.in_use == 0:
                if entry.keep_alive == 0:
                    del self.loaded[model.name]
                else:
                    entry.expires_at = _expiry(entry.keep_alive)

    def unload(self, model: StoredModel) -> None:
        """A request with keep_alive 0 and nothing to generate: unload now (or when the
        requests using it end)."""
        with self.lock:
            entry = self.loaded.get(model.name)
            if entry is None:
                return
            if entry.in_use:
                entry.keep_alive = 0
            else:
                del self.loaded[model.name]


def _expiry(keep_alive: float) -> datetime:
    span = _FOREVER if keep_alive < 0 else timedelta(seconds=keep_alive)
    return datetime.now(timezone.utc) + span


# ---------------------------------------------------------------------------- generation


@dataclass
class Plan:
    model: StoredModel
    requested: str
    tokens: list[str]
    done_reason: str
    prompt_tokens: int
    token_delay: float
    load_ns: int
    started: float
    fault: Fault | None = None
    split: Fault | None = None

    @property
    def fault_at(self) -> int | None:
        """Token index where a drop/error fault strikes (clamped to the reply length)."""
        if self.fault is None:
            return None
        return min(max(0, self.fault.after_tokens), len(self.tokens))

    def metrics(self, emitted: int) -> dict[str, int]:
        per_token = int(self.token_delay * 1e9) or _NOMINAL_TOKEN_NS
        values = {
            "total_duration": max(1, int((time.monotonic() - self.started) * 1e9)),
            "load_duration": self.load_ns,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": self.prompt_tokens * _PROMPT_TOKEN_NS,
            "eval_count": emitted,
            "eval_duration": emitted * per_token,
        }
        return {k: v for k, v in values.items() if v}  # Ollama omits zero metrics


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": (int,),
    "num_predict": (int,),
    "num_ctx": (int,),
    "seed": (int,),
    "repeat_penalty": (int, float),
    "standin_token_delay": (int, float),
}


def check_options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise HttpError(400, "json: cannot unmarshal options into Go struct field of type map")
    for key, types in _OPTION_TYPES.items():
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            kind = "float" if float in types else "int"
            raise HttpError(400, f"option {key!r} must be of type {kind}")
    stop = options.get("stop")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise HttpError(400, "option 'stop' must be of type array")
    return options


# ---------------------------------------------------------------------------- server


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # Real Ollama (Go's net/http) listens with SOMAXCONN; socketserver's default backlog of 5
    # would make connections opened all at once wait for TCP retransmissions.
    request_queue_size = 4096

    def __init__(self, config: ServerConfig) -> None:
        self.state = State(config)
        self.address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        super().__init__((config.host, config.port), Handler)
        try:
            self.loopback = ipaddress.ip_address(config.host).is_loopback
        except ValueError:
            self.loopback = config.host == "localhost"
        self.local_ips = _local_ips()

    @property
    def bound(self) -> str:
        raw_host, port = self.server_address[0], self.server_address[1]
        host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _local_ips() -> set[str]:
    ips: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(info[4][0]))
    except OSError:
        pass
    return ips


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Real Ollama (Go net/http) sets TCP_NODELAY; without it keep-alive replies wait ~40 ms.
    disable_nagle_algorithm = True
    server_version = "ollama-standin"

    # ------------------------------------------------------------------ plumbing

    @property
    def srv(self) -> StandinServer:
        return cast(StandinServer, self.server)

    @property
    def state(self) -> State:
        return self.srv.state

    def log_message(self, format: str, *args: Any) -> None:
        pass  # replaced by the gin-style line in _finish

    def _begin(self) -> None:
        self._started = time.monotonic()
        self._status = 0
        self._cors_origin: str | None = None
        self._head = self.command == "HEAD"
        self._body: bytes | None = None
        #: Models this request loaded or used (released, keep_alive timer started, at its end).
        self._using: list[StoredModel] = []
        self._recorded = False

    def _touch(self, model: StoredModel, keep_alive: float) -> bool:
        cold = self.state.touch(model, keep_alive)
        self._using.append(model)
        return cold

    def _release(self) -> None:
        """Release the models this request used (at its last write, at the latest when the
        request ends), so that a client sees the unload of keep_alive 0 as soon as it has the
        answer."""
        for model in self._using:
            self.state.release(model)
        self._using.clear()

    def _finish(self) -> None:
        elapsed = (time.monotonic() - self._started) * 1000
        stamp = time.strftime("%Y/%m/%d - %H:%M:%S")
        client = self.client_address[0]
        sys.stderr.write(
            f"[GIN] {stamp} | {self._status:3d} | {elapsed:10.3f}ms | {client:>15} | "
            f'{self.command:<7} "{self.path}"\n'
        )
        sys.stderr.flush()
        self._record()

    def _record(self) -> None:
        """Add the request to the log once: when its answer starts (so a client that has the
        answer always finds it there), or at its end for a request that never got one."""
        path = urlsplit(self.path).path
        if self._recorded or path.startswith("/_standin/"):
            return
        self._recorded = True
        with self.state.lock:
            self.state.requests.append(
                {
                    "method": self.command,
                    "path": path,
                    "status": self._status,
                    "authorization": bool(self.headers.get("Authorization")),
                    "host": self.headers.get("Host", ""),
                    "user_agent": self.headers.get("User-Agent", ""),
                    "time": time.time(),
                }
            )

    def _start(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self._record()
        self.send_response_only(status)
        self.send_header("Date", formatdate(usegmt=True))
        if self._cors_origin:
            self.send_header("Access-Control-Allow-Origin", self._cors_origin)
            self.send_header("Vary", "Origin")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._release()  # the request's work is done: its models' keep_alive starts now
        all_headers = dict(headers or {})
        if content_type:
            all_headers["Content-Type"] = content_type
        all_headers["Content-Length"] = str(len(body))
        self._start(status, all_headers)
        if body and not self._head:
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send_bytes(status, json_bytes(obj), "application/json; charset=utf-8", headers)

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    def send_empty(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        self.send_bytes(status, b"", None, headers)

    def abort_connection(self) -> None:
        self.close_connection = True
        self._status = self._status or 0
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # streaming (chunked transfer encoding)

    def stream_start(self, content_type: str) -> None:
        self._start(200, {"Content-Type": content_type, "Transfer-Encoding": "chunked"})

    def stream_write(self, data: bytes, split: Fault | None = None) -> None:
        pieces = [data]
        if split is not None:
            size = split.chunk_size
            pieces = [data[i : i + size] for i in range(0, len(data), size)]
        for piece in pieces:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
            if split is not None:
                time.sleep(0.002)

    def stream_end(self) -> None:
        self._release()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def read_body(self) -> bytes:
        """The request body (read once, before any answer, so keep-alive stays in sync)."""
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline(1024)
                    break
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    raise HttpError(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise HttpError(413, "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def read_json(self, *, required: bool = True) -> dict[str, Any]:
        body = self.read_body()
        if not body.strip():
            if required:
                raise HttpError(400, "missing request body")
            return {}
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise HttpError(400, f"invalid character in request body: {exc}") from None
        if not isinstance(data, dict):
            raise HttpError(
                400, "json: cannot unmarshal non-object into Go value of type api.Request"
            )
        return data

    # ------------------------------------------------------------------ checks

    def _host_allowed(self) -> bool:
        """Ollama's allowedHostsMiddleware: only when listening on loopback."""
        if not self.srv.loopback:
            return True
        raw = self.headers.get("Host", "")
        host = raw
        if raw.startswith("["):
            end = raw.find("]")
            host = raw[1:end] if end > 0 else raw
        elif raw.count(":") == 1:
            host = raw.rsplit(":", 1)[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and (
            ip.is_loopback
            or ip.is_unspecified
            or any(ip in net for net in _PRIVATE_NETS if net.version == ip.version)
            or str(ip) in self.srv.local_ips
        ):
            return True
        host = host.lower()
        if host in ("", "localhost") or host == socket.gethostname().lower():
            return True
        return host.endswith((".localhost", ".local", ".internal"))

    def _origin_allowed(self, origin: str) -> bool:
        host = self.headers.get("Host", "")
        if origin in (f"http://{host}", f"https://{host}"):
            return True
        if origin.startswith(_EXTENSION_SCHEMES):
            return True
        for pattern in self.state.config.allowed_origins():
            if pattern == "*" or pattern == origin:
                return True
            if "*" in pattern:
                prefix, suffix = pattern.split("*", 1)
                if (
                    origin.startswith(prefix)
                    and origin.endswith(suffix)
                    and len(origin) >= len(prefix) + len(suffix)
                ):
                    return True
        return False

    def _auth_ok(self) -> bool:
        config = self.state.config
        if not config.require_bearer and not config.require_basic:
            return True
        header = self.headers.get("Authorization", "")
        if config.require_bearer and header == f"Bearer {config.require_bearer}":
            return True
        if config.require_basic:
            expected = base64.b64encode(config.require_basic.encode()).decode()
            if header == f"Basic {expected}":
                return True
        return False

    # ------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._begin()
        path = urlsplit(self.path).path
        try:
            try:
                self.read_body()
                if path.startswith("/_standin/"):
                    self._control(path)
                    return
                if not self._checks(path):
                    return
                route = ROUTES.get((self.command if not self._head else "GET", path))
                if route is None and path.startswith("/v1/models/") and self.command == "GET":
                    route = Handler._v1_model
                if route is None:
                    self.send_bytes(404, b"404 page not found", "text/plain")
                    return
                route(self)
            except HttpError as exc:
                if path.startswith("/v1/"):
                    self._openai_error(exc.status, exc.message)
                else:
                    self.send_error_json(exc.status, exc.message)
            except Busy:
                self.send_error_json(503, BUSY_ERROR)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._release()
            self._finish()

    def _checks(self, path: str) -> bool:
        origin = self.headers.get("Origin")
        if origin:
            if not self._origin_allowed(origin):
                self.send_empty(403)
                return False
            same = origin in (
                f"http://{self.headers.get('Host', '')}",
                f"https://{self.headers.get('Host', '')}",
            )
            if not same:
                self._cors_origin = origin
                if self.command == "OPTIONS":
                    self.send_empty(
                        204,
                        {
                            "Access-Control-Allow-Methods": _CORS_METHODS,
                            "Access-Control-Allow-Headers": _CORS_HEADERS,
                            "Access-Control-Max-Age": "43200",
                        },
                    )
                    return False
        if not self._host_allowed():
            self.send_empty(403)
            return False
        if self.command == "OPTIONS":
            self.send_empty(204)
            return False
        if not self._auth_ok():
            scheme = "Basic" if self.state.config.require_basic else "Bearer"
            self.send_json(
                401,
                {"error": "unauthorized"},
                {"WWW-Authenticate": f'{scheme} realm="ollama-standin"'},
            )
            return False
        fault = self.state.take_fault(path, Fault.REQUEST_KINDS)
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "close":
            self.abort_connection()
            return False
        if fault is not None and fault.kind == "status":
            if fault.body is not None:
                body = fault.body.encode()
                self.send_bytes(fault.status, body, "text/plain" if body else None, fault.headers)
            else:
                message = fault.message or (BUSY_ERROR if fault.status == 503 else "injected fault")
                self.send_json(fault.status, {"error": message}, fault.headers)
            return False
        return True

    # ------------------------------------------------------------------ control

    def _control(self, path: str) -> None:
        state = self.state
        key = (self.command, path)
        if key == ("GET", "/_standin/health"):
            self.send_json(200, {"ok": True, "version": state.config.version})
        elif key == ("GET", "/_standin/faults"):
            with state.lock:
                self.send_json(200, {"faults": [f.to_json() for f in state.faults]})
        elif key == ("POST", "/_standin/faults"):
            data = self.read_json()
            items = data["faults"] if isinstance(data.get("faults"), list) else [data]
            try:
                faults = [Fault.from_json(item) for item in items]
            except HttpError as exc:
                self.send_error_json(exc.status, exc.message)
                return
            with state.lock:
                state.faults.extend(faults)
                self.send_json(200, {"faults": [f.to_json() for f in state.faults]})
        elif key == ("DELETE", "/_standin/faults"):
            with state.lock:
                state.faults.clear()
            self.send_json(200, {"faults": []})
        elif key == ("GET", "/_standin/requests"):
            with state.lock:
                self.send_json(200, {"requests": list(state.requests)})
        elif key == ("DELETE", "/_standin/requests"):
            with state.lock:
                state.requests.clear()
            self.send_json(200, {"requests": []})
        elif key == ("POST", "/_standin/reset"):
            with state.lock:
                state.faults.clear()
                state.requests.clear()
                state.loaded.clear()
            self.send_json(200, {"ok": True})
        elif key == ("GET", "/_standin/state"):
            state.purge_expired()
            with state.lock:
                self.send_json(
                    200,
                    {
                        "version": state.config.version,
                        "models_dir": str(state.config.models_dir),
                        "loaded": [n.display for n in state.loaded],
                        "active": state.scheduler.active,
                        "waiting": state.scheduler.waiting,
                    },
                )
        else:
            self.send_error_json(404, f"unknown control endpoint {self.command} {path}")

    # ------------------------------------------------------------------ simple routes

    def _root(self) -> None:
        self.send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self) -> None:
        self.send_json(200, {"version": self.state.config.version})

    def _model_name(
        self, data: Mapping[str, Any], *, required_msg: str = "model is required"
    ) -> tuple[str, ModelName]:
        raw = data.get("model") or data.get("name") or ""
        if not isinstance(raw, str) or not raw.strip():
            raise HttpError(400, required_msg)
        name = ModelName.parse(raw)
        if name is None:
            raise HttpError(400, INVALID_NAME_ERROR)
        return raw, name

    def _tag_entry(self, model: StoredModel) -> dict[str, Any]:
        return {
            "name": model.name.display,
            "model": model.name.display,
            "modified_at": model.modified_at,
            "size": model.size,
            "digest": model.digest,
            "details": model.details,
        }

    def _tags(self) -> None:
        models = self.state.store.models()
        self.send_json(200, {"models": [self._tag_entry(m) for m in models]})

    def _show(self) -> None:
        raw, name = self._model_name(self.read_json())
        model = self.state.store.get(name)
        if model is None:
            raise HttpError(404, f"model '{raw}' not found")
        family = model.family
        size_text = str(model.config.get("model_type", "7B")).rstrip("B")
        try:
            parameter_count = int(float(size_text) * 1e9)
        except ValueError:
            parameter_count = 7_000_000_000
        self.send_json(
            200,
            {
                "license": "Stand-in license: test fixture, no real weights.",
                "modelfile": (
                    '# Modelfile generated by "ollama show"\n'
                    "# To build a new Modelfile based on this, replace FROM with:\n"
                    f"# FROM {model.name.display}\n\n"
                    f"FROM {self.state.config.models_dir}/blobs/sha256-{model.digest}\n"
                    'TEMPLATE "{{ .Prompt }}"\nPARAMETER stop <|eot_id|>\n'
                ),
                "parameters": 'stop                           "<|eot_id|>"',
                "template": "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}",
                "details": model.details,
                "model_info": {
                    "general.architecture": family,
                    "general.file_type": 15,
                    "general.parameter_count": parameter_count,
                    f"{family}.context_length": 131072,
                    f"{family}.embedding_length": 4096,
                },
                "capabilities": model.capabilities,
                "modified_at": model.modified_at,
            },
        )

    def _delete(self) -> None:
        raw, name = self._model_name(self.read_json())
        if not self.state.store.delete(name):
            raise HttpError(404, f"model '{raw}' not found")
        with self.state.lock:
            self.state.loaded.pop(name, None)
        self.send_empty(200)

    def _copy(self) -> None:
        data = self.read_json()
        source = ModelName.parse(str(data.get("source", "")))
        destination = ModelName.parse(str(data.get("destination", "")))
        if source is None or destination is None:
            raise HttpError(400, INVALID_NAME_ERROR)
        if not self.state.store.copy(source, destination):
            raise HttpError(404, f'model "{data.get("source")}" not found')
        self.send_empty(200)

    def _ps(self) -> None:
        self.state.purge_expired()
        share = self.state.config.vram_share
        with self.state.lock:
            entries = sorted(self.state.loaded.values(), key=lambda e: e.expires_at, reverse=True)
        models = []
        for entry in entries:
            model = entry.model
            models.append(
                {
                    "name": model.name.display,
                    "model": model.name.display,
                    "size": model.size,
                    "digest": model.digest,
                    "details": model.details,
                    "expires_at": entry.expires_at.astimezone().isoformat(),
                    "size_vram": model.size if share >= 1.0 else int(model.size * share),
                    "context_length": 4096,
                }
            )
        self.send_json(200, {"models": models})

    # ------------------------------------------------------------------ pull

    def _pull(self) -> None:
        data = self.read_json()
        raw, name = self._model_name(data, required_msg=INVALID_NAME_ERROR)
        stream = data.get("stream") is not False
        store = self.state.store
        delay = self.state.config.pull_delay

        def progress_lines() -> Iterator[dict[str, Any]]:
            yield {"status": "pulling manifest"}
            if not store.is_pullable(name):
                raise HttpError(500, UNKNOWN_MODEL_ERROR)
            config, layers = store.layers_for(name)
            for layer in [*layers, config]:
                short = layer.digest.split(":", 1)[1][:12]
                status = f"pulling {short}"
                yield {"status": status, "digest": layer.digest, "total": layer.size}
                steps = 4 if layer.size > 1024 else 1
                for step in range(1, steps + 1):
                    if delay:
                        time.sleep(delay / steps)
                    completed = layer.size * step // steps
                    yield {
                        "status": status,
                        "digest": layer.digest,
                        "total": layer.size,
                        "completed": completed,
                    }
                store.write_blob(layer)
            yield {"status": "verifying sha256 digest"}
            yield {"status": "writing manifest"}
            store.write_manifest(name, config, layers)
            yield {"status": "success"}

        if not stream:
            for line in progress_lines():
                last = line
            self.send_json(200, last)
            return
        self.stream_start("application/x-ndjson")
        try:
            for line in progress_lines():
                self.stream_write(json_bytes(line) + b"\n")
        except HttpError as exc:
            self.stream_write(json_bytes({"error": exc.message}) + b"\n")
        self.stream_end()
        log("INFO", "pulled model" if store.get(name) else "pull failed", model=raw)

    # ------------------------------------------------------------------ inference

    def _keep_alive(self, data: Mapping[str, Any]) -> float:
        if "keep_alive" not in data or data["keep_alive"] is None:
            return self.state.config.keep_alive
        value = parse_duration(data["keep_alive"])
        if value is None:
            raise HttpError(400, f"time: invalid duration {json.dumps(data['keep_alive'])}")
        return value

    def _find_model(self, raw: str, name: ModelName, verb: str) -> StoredModel:
        """The stored model able to ``verb`` (generate/chat), or the 404/400 Ollama gives."""
        model = self.state.store.get(name)
        if model is None:
            raise HttpError(404, f'model "{raw}" not found, try pulling it first')
        if "completion" not in model.capabilities:
            raise HttpError(400, f'"{raw}" does not support {verb}')
        return model

    def _plan(
        self,
        raw: str,
        model: StoredModel,
        prompt_text: str,
        context_texts: list[str],
        options: dict[str, Any],
        keep_alive: float,
        fmt: Any,
        path: str,
    ) -> Plan:
        started = time.monotonic()
        cold = self._touch(model, keep_alive)
        load_ns = 0
        if cold:
            if self.state.config.load_delay:
                time.sleep(self.state.config.load_delay)
            load_ns = max(1_000_000, int(self.state.config.load_delay * 1e9))
        template = self.state.config.reply
        text = template.replace("{model}", raw).replace("{prompt}", prompt_text[:200])
        if fmt == "json" or isinstance(fmt, dict):
            text = json.dumps({"response": text})
        done_reason = "stop"
        stops = options.get("stop") or []
        cut = min((text.find(s) for s in stops if s and s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
        tokens = tokenize(text)
        limit = options.get("num_predict")
        if isinstance(limit, int) and limit >= 0 and len(tokens) > limit:
            tokens = tokens[:limit]
            done_reason = "length"
        delay = options.get("standin_token_delay")
        token_delay = float(delay) if delay is not None else self.state.config.token_delay
        return Plan(
            model=model,
            requested=raw,
            tokens=tokens,
            done_reason=done_reason,
            prompt_tokens=count_words(*context_texts),
            token_delay=max(0.0, token_delay),
            load_ns=load_ns,
            started=started,
            fault=self.state.take_fault(path, ("drop", "error")),
            split=self.state.take_fault(path, ("split",)),
        )

    def _emit_tokens(self, plan: Plan) -> Iterator[tuple[int, str]]:
        """Yield (index, token) with the per-token delay; stop at a drop/error fault."""
        for index, token in enumerate(plan.tokens):
            if index == plan.fault_at:
                return
            if plan.token_delay:
                time.sleep(plan.token_delay)
            yield index, token

    def _fault_message(self, plan: Plan) -> str:
        assert plan.fault is not None
        return plan.fault.message or "an error was encountered while running the model"

    def _generate(self) -> None:
        data = self.read_json()
        raw = data.get("model")
        if not isinstance(raw, str) or not raw.strip():
            raise HttpError(404, f"model '{raw or ''}' not found")
        name = ModelName.parse(raw)
        if name is None:
            raise HttpError(404, f"model '{raw}' not found")
        prompt = data.get("prompt") or ""
        if not isinstance(prompt, str):
            raise HttpError(
                400, "json: cannot unmarshal prompt into Go struct field of type string"
            )
        options = check_options(data.get("options"))
        keep_alive = self._keep_alive(data)
        model = self.state.store.get(name)
        if model is None:
            raise HttpError(404, f"model '{raw}' not found")
        if not prompt and keep_alive == 0:
            self.state.unload(model)
            self.send_json(
                200,
                {
                    "model": raw,
                    "created_at": created_at(),
                    "response": "",
                    "done": True,
                    "done_reason": "unload",
                },
            )
            return
        model = self._find_model(raw, name, "generate")
        with self.state.scheduler.slot():
            if not prompt:
                self._touch(model, keep_alive)
                self.send_json(
                    200,
                    {
                        "model": raw,
                        "created_at": created_at(),
                        "response": "",
                        "done": True,
                        "done_reason": "load",
                    },
                )
                return
            system = data.get("system") if isinstance(data.get("system"), str) else ""
            plan = self._plan(
                raw,
                model,
                prompt,
                [system or "", prompt],
                options,
                keep_alive,
                data.get("format"),
                "/api/generate",
            )
            context = list(range(1, min(64, plan.prompt_tokens + len(plan.tokens)) + 1))

            def final(emitted: int, response: str) -> dict[str, Any]:
                obj: dict[str, Any] = {
                    "model": raw,
                    "created_at": created_at(),
                    "response": response,
                    "done": True,
                    "done_reason": plan.done_reason,
                }
                if not data.get("raw"):
                    obj["context"] = context
                obj.update(plan.metrics(emitted))
                return obj

            if data.get("stream") is False:
                self._non_stream(plan, final)
                return
            self.stream_start("application/x-ndjson")
            emitted = 0
            for _, token in self._emit_tokens(plan):
                chunk = {"model": raw, "created_at": created_at(), "response": token, "done": False}
                self.stream_write(json_bytes(chunk) + b"\n", plan.split)
                emitted += 1
            if self._stream_fault(plan, emitted):
                return
            self.stream_write(json_bytes(final(emitted, "")) + b"\n", plan.split)
            self.stream_end()

    def _non_stream(self, plan: Plan, build: Callable[[int, str], dict[str, Any]]) -> None:
        parts = [token for _, token in self._emit_tokens(plan)]
        if plan.fault is not None and len(parts) == plan.fault_at:
            if plan.fault.kind == "drop":
                self.abort_connection()
                return
            if plan.fault.kind == "error":
                self.send_error_json(500, self._fault_message(plan))
                return
        self.send_json(200, build(len(parts), "".join(parts)))

    def _stream_fault(self, plan: Plan, emitted: int) -> bool:
        """Apply a drop/error fault at the end of the emitted tokens; True if applied."""
        if plan.fault is None or emitted != plan.fault_at:
            return False
        if plan.fault.kind == "drop":
            self.abort_connection()
        else:
            self.stream_write(json_bytes({"error": self._fault_message(plan)}) + b"\n")
            self.stream_end()
        return True

    def _chat_messages(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        messages = data.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise HttpError(
                400, "json: cannot unmarshal messages into Go struct field of type []api.Message"
            )
        for message in messages:
            if message.get("role") not in ("system", "user", "assistant", "tool"):
                raise HttpError(400, f"invalid role: {message.get('role')!r}")
            if not isinstance(message.get("content", ""), str):
                raise HttpError(
                    400, "json: cannot unmarshal content into Go struct field of type string"
                )
        return messages

    def _chat(self) -> None:
        data = self.read_json()
        raw, name = self._model_name(data)
        messages = self._chat_messages(data)
        options = check_options(data.get("options"))
        keep_alive = self._keep_alive(data)
        if not messages and keep_alive == 0:
            model = self.state.store.get(name)
            if model is None:
                raise HttpError(404, f"model '{raw}' not found")
            self.state.unload(model)
            self.send_json(
                200,
                {
                    "model": raw,
                    "created_at": created_at(),
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "unload",
                },
            )
            return
        model = self._find_model(raw, name, "chat")
        with self.state.scheduler.slot():
            if not messages:
                self._touch(model, keep_alive)
                self.send_json(
                    200,
                    {
                        "model": raw,
                        "created_at": created_at(),
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": "load",
                    },
                )
                return
            users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
            prompt = users[-1] if users else str(messages[-1].get("content", ""))
            texts = [str(m.get("content", "")) for m in messages]
            plan = self._plan(
                raw, model, prompt, texts, options, keep_alive, data.get("format"), "/api/chat"
            )

            def final(emitted: int, content: str) -> dict[str, Any]:
                obj: dict[str, Any] = {
                    "model": raw,
                    "created_at": created_at(),
                    "message": {"role": "assistant", "content": content},
                    "done": True,
                    "done_reason": plan.done_reason,
                }
                obj.update(plan.metrics(emitted))
                return obj

            if data.get("stream") is False:
                self._non_stream(plan, final)
                return
            self.stream_start("application/x-ndjson")
            emitted = 0
            for _, token in self._emit_tokens(plan):
                chunk = {
                    "model": raw,
                    "created_at": created_at(),
                    "message": {"role": "assistant", "content": token},
                    "done": False,
                }
                self.stream_write(json_bytes(chunk) + b"\n", plan.split)
                emitted += 1
            if self._stream_fault(plan, emitted):
                return
            self.stream_write(json_bytes(final(emitted, "")) + b"\n", plan.split)
            self.stream_end()

    def _embedding(self, text: str) -> list[float]:
        dim = self.state.config.embed_dim
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        values = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dim)]
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return [round(v / norm, 6) for v in values]

    def _embed_inputs(self, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise HttpError(400, "invalid input type")

    def _embed(self) -> None:
        data = self.read_json()
        raw, name = self._model_name(data)
        inputs = self._embed_inputs(data.get("input"))
        keep_alive = self._keep_alive(data)
        model = self.state.store.get(name)
        if model is None:
            raise HttpError(404, f"model '{raw}' not found")
        with self.state.scheduler.slot():
            started = time.monotonic()
            cold = self._touch(model, keep_alive)
            obj: dict[str, Any] = {"model": raw, "embeddings": [self._embedding(t) for t in inputs]}
            metrics = {
                "total_duration": max(1, int((time.monotonic() - started) * 1e9)),
                "load_duration": 1_000_000 if cold else 0,
                "prompt_eval_count": count_words(*inputs),
            }
            obj.update({k: v for k, v in metrics.items() if v})
            self.send_json(200, obj)

    def _embeddings_legacy(self) -> None:
        data = self.read_json()
        raw, name = self._model_name(data)
        model = self.state.store.get(name)
        if model is None:
            raise HttpError(404, f'model "{raw}" not found, try pulling it first')
        prompt = data.get("prompt") or ""
        self._touch(model, self._keep_alive(data))
        self.send_json(200, {"embedding": self._embedding(str(prompt)) if prompt else []})

    # ------------------------------------------------------------------ OpenAI compatibility

    def _openai_error(self, status: int, message: str) -> None:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        self.send_json(
            status, {"error": {"message": message, "type": kind, "param": None, "code": None}}
        )

    def _v1_chat(self) -> None:
        data = self.read_json()
        raw, name = self._model_name(data)
        messages = self._chat_messages(data)
        if not messages:
            raise HttpError(400, "[] is too short - 'messages'")
        options: dict[str, Any] = {}
        for src, dst in (
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("seed", "seed"),
            ("max_tokens", "num_predict"),
            ("max_completion_tokens", "num_predict"),
        ):
            if data.get(src) is not None:
                options[dst] = data[src]
        stop = data.get("stop")
        if stop is not None:
            options["stop"] = [stop] if isinstance(stop, str) else stop
        check_options(options)
        model = self._find_model(raw, name, "chat")
        with self.state.scheduler.slot():
            users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
            prompt = users[-1] if users else str(messages[-1].get("content", ""))
            texts = [str(m.get("content", "")) for m in messages]
            plan = self._plan(
                raw,
                model,
                prompt,
                texts,
                options,
                self.state.config.keep_alive,
                None,
                "/v1/chat/completions",
            )
            ident = f"chatcmpl-{self.state.next_id()}"
            created = int(time.time())
            finish = "length" if plan.done_reason == "length" else "stop"

            def usage(emitted: int) -> dict[str, int]:
                return {
                    "prompt_tokens": plan.prompt_tokens,
                    "completion_tokens": emitted,
                    "total_tokens": plan.prompt_tokens + emitted,
                }

            base = {
                "id": ident,
                "created": created,
                "model": raw,
                "system_fingerprint": "fp_ollama",
            }
            if not data.get("stream"):
                parts = [token for _, token in self._emit_tokens(plan)]
                if plan.fault is not None and len(parts) == plan.fault_at:
                    if plan.fault.kind == "drop":
                        self.abort_connection()
                    else:
                        self._openai_error(500, self._fault_message(plan))
                    return
                self.send_json(
                    200,
                    {
                        **base,
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "".join(parts)},
                                "finish_reason": finish,
                            }
                        ],
                        "usage": usage(len(parts)),
                    },
                )
                return
            self.stream_start("text/event-stream")
            emitted = 0
            for _, token in self._emit_tokens(plan):
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": token},
                            "finish_reason": None,
                        }
                    ],
                }
                self.stream_write(b"data: " + json_bytes(chunk) + b"\n\n", plan.split)
                emitted += 1
            if plan.fault is not None and emitted == plan.fault_at:
                if plan.fault.kind == "drop":
                    self.abort_connection()
                    return
                error = {
                    "error": {
                        "message": self._fault_message(plan),
                        "type": "api_error",
                        "param": None,
                        "code": None,
                    }
                }
                self.stream_write(b"data: " + json_bytes(error) + b"\n\n")
                self.stream_end()
                return
            last = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": finish,
                    }
                ],
            }
            self.stream_write(b"data: " + json_bytes(last) + b"\n\n", plan.split)
            stream_options = data.get("stream_options") or {}
            if isinstance(stream_options, dict) and stream_options.get("include_usage"):
                tail = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage(emitted),
                }
                self.stream_write(b"data: " + json_bytes(tail) + b"\n\n")
            self.stream_write(b"data: [DONE]\n\n")
            self.stream_end()

    def _v1_model_entry(self, model: StoredModel) -> dict[str, Any]:
        return {
            "id": model.name.display,
            "object": "model",
            "created": int(model.modified),
            "owned_by": model.name.namespace,
        }

    def _v1_models(self) -> None:
        models = self.state.store.models()
        self.send_json(200, {"object": "list", "data": [self._v1_model_entry(m) for m in models]})

    def _v1_model(self) -> None:
        raw = urlsplit(self.path).path[len("/v1/models/") :]
        name = ModelName.parse(raw)
        model = self.state.store.get(name) if name is not None else None
        if model is None:
            raise HttpError(404, f"model '{raw}' not found")
        self.send_json(200, self._v1_model_entry(model))

    def _v1_embeddings(self) -> None:
        data = self.read_json()
        raw, name = self._model_name(data)
        inputs = self._embed_inputs(data.get("input"))
        if not inputs:
            raise HttpError(400, "invalid input")
        model = self.state.store.get(name)
        if model is None:
            raise HttpError(404, f"model '{raw}' not found")
        self._touch(model, self.state.config.keep_alive)
        count = count_words(*inputs)
        self.send_json(
            200,
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "embedding": self._embedding(text), "index": i}
                    for i, text in enumerate(inputs)
                ],
                "model": raw,
                "usage": {"prompt_tokens": count, "total_tokens": count},
            },
        )


ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/"): Handler._root,
    ("GET", "/api/version"): Handler._version,
    ("GET", "/api/tags"): Handler._tags,
    ("POST", "/api/show"): Handler._show,
    ("DELETE", "/api/delete"): Handler._delete,
    ("POST", "/api/copy"): Handler._copy,
    ("GET", "/api/ps"): Handler._ps,
    ("POST", "/api/pull"): Handler._pull,
    ("POST", "/api/generate"): Handler._generate,
    ("POST", "/api/chat"): Handler._chat,
    ("POST", "/api/embed"): Handler._embed,
    ("POST", "/api/embeddings"): Handler._embeddings_legacy,
    ("POST", "/v1/chat/completions"): Handler._v1_chat,
    ("GET", "/v1/models"): Handler._v1_models,
    ("POST", "/v1/embeddings"): Handler._v1_embeddings,
}


def serve(config: ServerConfig) -> int:
    """Run until SIGINT/SIGTERM; the return value is the process exit status."""
    import signal

    try:
        server = StandinServer(config)
    except OSError as exc:
        sys.stderr.write(f"Error: listen tcp {config.host}:{config.port}: bind: {exc.strerror}\n")
        return 1
    state = server.state
    for raw in config.preload:
        name = ModelName.parse(raw)
        if name is None:
            log("WARN", "invalid preload model name", model=raw)
        elif state.store.get(name) is None:
            state.store.install(name)

    def stop(signum: int, _frame: Any) -> None:
        log("INFO", "received signal, shutting down", signal=signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(
        "INFO",
        "server config",
        env={
            "OLLAMA_HOST": f"http://{config.host}:{config.port}",
            "OLLAMA_MODELS": str(config.models_dir),
            "OLLAMA_KEEP_ALIVE": config.keep_alive,
            "OLLAMA_NUM_PARALLEL": config.num_parallel,
            "OLLAMA_MAX_QUEUE": config.max_queue,
            "OLLAMA_ORIGINS": config.origins,
        },
    )
    log("INFO", f"Listening on {server.bound} (version {config.version})")
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


__all__ = [
    "DEFAULT_VERSION",
    "ServerConfig",
    "StandinServer",
    "parse_duration",
    "parse_host",
    "read_version",
    "serve",
]
