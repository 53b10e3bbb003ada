"""Command line of the Ollama stand-in (a test fixture, never shipped).

Mirrors the real ``ollama`` binary closely enough for install roles and smoke
tests: ``serve``, ``-v``/``--version``, and the client subcommands ``list``,
``pull``, ``rm``, ``ps``, ``show``, ``run`` (non-interactive) and ``stop``, which
talk to the server at ``OLLAMA_HOST`` over HTTP. Errors print ``Error: ...`` on
stderr and exit 1, like the real one.

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .standin_server import ServerConfig, parse_host, read_version, serve

USAGE = """Large language model runner (Ollama stand-in: a test fixture)

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama
  show        Show information for a model
  run         Run a model
  stop        Stop a running model
  pull        Pull a model from a registry
  list        List models
  ps          List running models
  rm          Remove a model

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information
"""

CONNECT_ERROR = "could not connect to ollama server, run 'ollama serve' to start it"


class CliError(Exception):
    pass


class Client:
    """Tiny HTTP client for the subcommands (urllib; follows OLLAMA_HOST)."""

    def __init__(self, env: dict[str, str]) -> None:
        scheme, host, port = parse_host(env.get("OLLAMA_HOST", ""))
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.base = f"{scheme}://{hostport}"

    def _open(self, method: str, path: str, body: Any = None, timeout: float = 600.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "ollama-standin-cli",
            },
        )
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(raw).get("error") or raw
            except (ValueError, AttributeError):
                message = raw or f"HTTP {exc.code}"
            raise CliError(str(message)) from None
        except (urllib.error.URLError, OSError):
            raise CliError(CONNECT_ERROR) from None

    def json(self, method: str, path: str, body: Any = None, timeout: float = 600.0) -> Any:
        with self._open(method, path, body, timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else {}

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        with self._open("POST", path, body) as response:
            for line in response:
                if not line.strip():
                    continue
                obj = json.loads(line)
                if isinstance(obj, dict) and obj.get("error"):
                    raise CliError(str(obj["error"]))
                yield obj


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def human_since(iso: str) -> str:
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    seconds = (datetime.now(timezone.utc) - then).total_seconds()
    return _span(seconds) + " ago" if seconds >= 1 else "Less than a second ago"


def human_until(iso: str) -> str:
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    seconds = (then - datetime.now(timezone.utc)).total_seconds()
    if seconds > 100 * 365 * 86400:
        return "Forever"
    if seconds <= 0:
        return "Stopping..."
    return _span(seconds) + " from now"


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "0 seconds"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "    ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


def cmd_version(env: dict[str, str], executable_dir: Path) -> int:
    client_version = read_version(executable_dir, env)
    server_version = ""
    try:
        server_version = str(Client(env).json("GET", "/api/version", timeout=3).get("version", ""))
    except CliError:
        print("Warning: could not connect to a running Ollama instance")
    if server_version:
        print(f"ollama version is {server_version}")
    if server_version != client_version:
        print(f"Warning: client version is {client_version}")
    return 0


def cmd_list(client: Client) -> int:
    models = client.json("GET", "/api/tags").get("models", [])
    rows = [["NAME", "ID", "SIZE", "MODIFIED"]]
    for m in models:
        rows.append(
            [m["name"], m["digest"][:12], human_bytes(m["size"]), human_since(m["modified_at"])]
        )
    print(_table(rows))
    return 0


def processor(size: int, size_vram: int) -> str:
    """The PROCESSOR column of ``ollama ps``, worded like Ollama's CLI."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = int((size - size_vram) / size * 100 + 0.5)  # Go's math.Round: halves away from zero
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def cmd_ps(client: Client) -> int:
    models = client.json("GET", "/api/ps").get("models", [])
    rows = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]]
    for m in models:
        rows.append(
            [
                m["name"],
                m["digest"][:12],
                human_bytes(m["size"]),
                processor(int(m["size"]), int(m.get("size_vram", m["size"]))),
                str(m.get("context_length", 4096)),
                human_until(m["expires_at"]),
            ]
        )
    print(_table(rows))
    return 0


def cmd_pull(client: Client, name: str, out: Any = sys.stderr) -> int:
    status = ""
    for line in client.stream("/api/pull", {"model": name, "stream": True}):
        status = str(line.get("status", ""))
        if "total" in line and "completed" in line:
            done = line["completed"] * 100 // max(1, line["total"])
            out.write(f"{status}: {done}% of {human_bytes(line['total'])}\n")
        elif status:
            out.write(f"{status}\n")
        out.flush()
    return 0 if status == "success" else 1


def cmd_rm(client: Client, names: Sequence[str]) -> int:
    for name in names:
        client.json("DELETE", "/api/delete", {"model": name})
        print(f"deleted '{name}'")
    return 0


def cmd_show(client: Client, name: str, flags: set[str]) -> int:
    info = client.json("POST", "/api/show", {"model": name})
    for flag, key in (
        ("--modelfile", "modelfile"),
        ("--license", "license"),
        ("--parameters", "parameters"),
        ("--template", "template"),
        ("--system", "system"),
    ):
        if flag in flags:
            print(info.get(key, ""))
            return 0
    details = info.get("details", {})
    model_info = info.get("model_info", {})
    arch = model_info.get("general.architecture", details.get("family", ""))
    print("  Model")
    print(f"    {'architecture':<20}{arch}")
    print(f"    {'parameters':<20}{details.get('parameter_size', '')}")
    print(f"    {'context length':<20}{model_info.get(f'{arch}.context_length', '')}")
    print(f"    {'quantization':<20}{details.get('quantization_level', '')}")
    print()
    print("  Capabilities")
    for capability in info.get("capabilities", []):
        print(f"    {capability}")
    print()
    return 0


def cmd_run(client: Client, name: str, prompt: str, keep_alive: str | None) -> int:
    try:
        client.json("POST", "/api/show", {"model": name})
    except CliError as exc:
        if "not found" not in str(exc):
            raise
        if cmd_pull(client, name) != 0:
            return 1
    body: dict[str, Any] = {"model": name, "prompt": prompt, "stream": True}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    for chunk in client.stream("/api/generate", body):
        sys.stdout.write(str(chunk.get("response", "")))
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_stop(client: Client, name: str) -> int:
    client.json("POST", "/api/generate", {"model": name, "keep_alive": 0})
    return 0


def _need(args: Sequence[str], count: int, usage: str) -> None:
    if len(args) < count:
        raise CliError(f"accepts {count} arg(s), received {len(args)}\nUsage: {usage}")


def main(argv: Sequence[str], executable: str) -> int:
    env = dict(os.environ)
    executable_dir = Path(executable).resolve().parent
    args = list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    try:
        if command in ("-v", "--version"):
            return cmd_version(env, executable_dir)
        if command == "serve":
            return serve(ServerConfig.from_env(env, executable_dir))
        client = Client(env)
        if command in ("list", "ls"):
            return cmd_list(client)
        if command == "ps":
            return cmd_ps(client)
        if command == "pull":
            _need(rest, 1, "ollama pull MODEL")
            return cmd_pull(client, rest[0])
        if command == "rm":
            _need(rest, 1, "ollama rm MODEL [MODEL...]")
            return cmd_rm(client, rest)
        if command == "show":
            names = [a for a in rest if not a.startswith("--")]
            _need(names, 1, "ollama show MODEL [flags]")
            return cmd_show(client, names[0], {a for a in rest if a.startswith("--")})
        if command == "stop":
            _need(rest, 1, "ollama stop MODEL")
            return cmd_stop(client, rest[0])
        if command == "run":
            keep_alive = None
            positional = []
            iterator = iter(rest)
            for arg in iterator:
                if arg == "--keepalive":
                    keep_alive = next(iterator, None)
                elif arg.startswith("--keepalive="):
                    keep_alive = arg.split("=", 1)[1]
                elif not arg.startswith("--"):
                    positional.append(arg)
            _need(positional, 1, "ollama run MODEL [PROMPT]")
            prompt = " ".join(positional[1:])
            if not prompt and not sys.stdin.isatty():
                prompt = sys.stdin.read()
            if not prompt:
                raise CliError("the stand-in has no interactive mode: pass a PROMPT")
            return cmd_run(client, positional[0], prompt, keep_alive)
        raise CliError(f'unknown command "{command}" for "ollama"')
    except CliError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
