"""An nginx of its own, on loopback, serving the gateway file rendered from role ``gateway``.

Shared by the bench (``bench/run.py``) and the loopback fault tests (``tests/fault/``). The role's
``gateway.conf.j2`` and key map are rendered by a small ``ansible-playbook`` run against localhost
(the role's defaults and vars plus the given settings, every path in a private directory); nginx
runs with ``-p <dir> -c <dir>/nginx.conf`` on a free loopback port. The system's nginx service is
never touched. Needs nginx on PATH (Debian/Ubuntu: ``apt install nginx``) and the dev venv.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
ROLE = REPO_ROOT / "roles" / "gateway"
HOST = "127.0.0.1"


class GatewayError(Exception):
    """The loopback gateway could not be rendered or started; the message says why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


def nginx_version() -> str:
    nginx = nginx_binary()
    if nginx is None:
        return "not installed"
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False, timeout=10)
    return out.stderr.strip().removeprefix("nginx version: ")


@dataclass(frozen=True)
class GatewaySettings:
    """The role variables that differ from the role's defaults for a loopback gateway."""

    ollama_upstream: str
    keys: Mapping[str, str]
    services_upstream: str | None = None
    inference_rate: str = "20r/s"
    inference_burst: int = 0
    metadata_rate: str = "100000r/s"
    metadata_burst: int = 10000
    max_streams_per_client: int = 64
    #: (user, password): basic auth on as well (bcrypt htpasswd, cost 12, as the role writes it).
    basic_auth: tuple[str, str] | None = None
    #: Client name -> role (``app``/``admin``) of API keys; absent means the role's default (app).
    key_roles: Mapping[str, str] = field(default_factory=dict)
    #: Client name -> model allowlist of API keys (njs check; absent: any model).
    key_models: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: Role and model allowlist of the basic-auth user.
    user_role: str | None = None
    user_models: Sequence[str] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def _key_entry(self, name: str, key: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "key": key}
        if name in self.key_roles:
            entry["role"] = self.key_roles[name]
        if name in self.key_models:
            entry["models"] = list(self.key_models[name])
        return entry

    def role_vars(self, workdir: Path, listen_port: int) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "gateway_listen": [f"{HOST}:{listen_port}"],
            "gateway_ollama_upstreams": [
                {
                    "address": self.ollama_upstream,
                    "weight": 1,
                    "max_fails": 3,
                    "fail_timeout": "30s",
                }
            ],
            "gateway_services_enabled": self.services_upstream is not None,
            "gateway_api_keys": [self._key_entry(name, key) for name, key in self.keys.items()],
            "gateway_inference_rate": self.inference_rate,
            "gateway_inference_burst": self.inference_burst,
            "gateway_metadata_rate": self.metadata_rate,
            "gateway_metadata_burst": self.metadata_burst,
            "gateway_max_streams_per_client": self.max_streams_per_client,
            "gateway_log_dir": str(workdir / "logs"),
            "__gateway_keys_map_path": str(workdir / "gateway-api-keys.map"),
            "__gateway_htpasswd_path": str(workdir / "gateway.htpasswd"),
            "__gateway_njs_path": str(workdir / "gateway.js"),
            "ansible_python_interpreter": sys.executable,
        }
        if self.services_upstream is not None:
            settings["gateway_services_upstream"] = self.services_upstream
        if self.basic_auth is not None:
            user, password = self.basic_auth
            settings["gateway_basic_auth_enabled"] = True
            entry: dict[str, Any] = {"name": user, "password": password}
            if self.user_role is not None:
                entry["role"] = self.user_role
            if self.user_models:
                entry["models"] = list(self.user_models)
            settings["gateway_basic_auth_users"] = [entry]
        settings.update(self.extra)
        return settings


def render_gateway(workdir: Path, listen_port: int, settings: GatewaySettings) -> Path:
    """The role's gateway.conf.j2 (and key map) rendered by ansible-playbook into workdir."""
    playbook = workdir / "render.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: Render the gateway configuration on loopback
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
                - name: Render the model allowlist check (njs)
                  ansible.builtin.template:
                    src: {ROLE}/templates/gateway.js.j2
                    dest: {workdir}/gateway.js
                    mode: "0644"
                  when: __gateway_njs_enabled | default(false) | bool
            """
        )
    )
    extra = workdir / "settings.yml"
    extra.write_text(yaml.safe_dump(settings.role_vars(workdir, listen_port)))
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
        timeout=300,
        check=False,
    )
    if res.returncode != 0:
        output = res.stdout[-3000:] + res.stderr
        raise GatewayError(f"rendering the role's template failed:\n{output}")
    if settings.basic_auth is not None:
        import bcrypt  # the dev venv's; the role writes the same entry (community.general.htpasswd)

        user, password = settings.basic_auth
        digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()
        htpasswd = workdir / "gateway.htpasswd"
        htpasswd.write_text(f"{user}:{digest}\n")
        htpasswd.chmod(0o644)  # workers (nobody when started as root) read it per request
    return workdir / "gateway.conf"


@dataclass
class NginxGateway:
    """A running nginx (master + workers) serving a rendered gateway file."""

    workdir: Path
    port: int
    version: str
    nginx: str
    conf: Path
    gateway_conf: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.workdir / "logs" / "nginx-error.log"

    def master_pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def worker_pids(self) -> list[int]:
        """The master's children (its workers)."""
        return children_of(self.master_pid())

    def test_config(self, conf: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` of the main configuration (or of another main file)."""
        return subprocess.run(
            [self.nginx, "-t", "-q", "-p", str(self.workdir), "-c", str(conf or self.conf)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    def main_conf_for(self, gateway_conf: Path, name: str) -> Path:
        """A main nginx.conf like the live one that includes another gateway file."""
        path = self.workdir / name
        path.write_text(main_conf(self.workdir, gateway_conf, workers=1))
        return path

    def reload(self) -> None:
        os.kill(self.master_pid(), signal.SIGHUP)


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0.0
    # After "pid (comm)": state is field 0, utime field 11, stime field 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Where Debian and Ubuntu put nginx's njs module (package libnginx-mod-http-js).
NJS_MODULE_PATHS = (
    Path("/usr/share/nginx/modules/ngx_http_js_module.so"),
    Path("/usr/lib/nginx/modules/ngx_http_js_module.so"),
)


def njs_module() -> Path | None:
    """nginx's njs module, when installed (model allowlists need it)."""
    return next((path for path in NJS_MODULE_PATHS if path.exists()), None)


def main_conf(workdir: Path, gateway_conf: Path, *, workers: int) -> str:
    temp = workdir / "temp"
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    # The distribution's nginx.conf loads the module from modules-enabled/; here only when the
    # gateway file uses it (a client with a model allowlist).
    load = ""
    if "js_import " in gateway_conf.read_text():
        module = njs_module()
        if module is None:
            raise GatewayError(
                "model allowlists need nginx's njs module: apt install libnginx-mod-http-js"
            )
        load = f"load_module {module};"
    return textwrap.dedent(
        f"""\
        {load}
        worker_processes {workers};
        pid {workdir}/nginx.pid;
        error_log {workdir}/logs/nginx-error.log warn;
        events {{ worker_connections 4096; }}
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


@contextmanager
def running_nginx(
    workdir: Path, gateway_conf: Path, port: int, workers: int = 1
) -> Iterator[NginxGateway]:
    """An nginx of its own serving the rendered gateway file; stopped (SIGQUIT) on exit."""
    nginx = nginx_binary()
    if nginx is None:
        raise GatewayError("nginx is not installed (Debian/Ubuntu: apt install nginx)")
    (workdir / "logs").mkdir(exist_ok=True)
    (workdir / "temp").mkdir(exist_ok=True)
    # Workers (nobody when started as root) may read files here.
    workdir.chmod(0o755)
    conf = workdir / "nginx.conf"
    conf.write_text(main_conf(workdir, gateway_conf, workers=workers))
    gateway = NginxGateway(workdir, port, nginx_version(), nginx, conf, gateway_conf)
    check = gateway.test_config()
    if check.returncode != 0:
        raise GatewayError(f"nginx -t refused the rendered configuration:\n{check.stderr}")
    base = [nginx, "-p", str(workdir), "-c", str(conf)]
    started = subprocess.run(base, capture_output=True, text=True, check=False, timeout=30)
    if started.returncode != 0:
        raise GatewayError(f"nginx did not start:\n{started.stderr}")
    try:
        wait_listening(port, timeout=10)
        yield gateway
    finally:
        if gateway.pid_file.exists():
            with suppress(OSError, ValueError):
                os.kill(gateway.master_pid(), signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while gateway.pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def wait_listening(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise GatewayError(f"nothing listens on {HOST}:{port}: {exc}") from None
            time.sleep(0.05)
