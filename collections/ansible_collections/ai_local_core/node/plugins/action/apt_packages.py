"""Action ai_local_core.node.apt_packages: ``ansible.builtin.apt`` that refreshes an empty cache.

``cache_valid_time`` alone trusts the age of /var/lib/apt/lists even when it holds no package
indexes (fresh cloud and container images ship it empty). This action first looks for indexes
on the host (``ansible.builtin.find``, read-only, so it also runs in check mode); where there are
none it runs apt with ``update_cache: true`` whatever ``cache_valid_time`` says. The arguments
are otherwise apt's, passed on unchanged; check mode and diff are apt's own.

A no-op costs one ``dpkg-query`` instead of two modules: when the task only asks for packages
to be present (plain names, ``name=version`` pins, or a ``deb`` file on the host, read with
``dpkg-deb``) and dpkg reports every one of them installed at that version, apt is not run at all
(no cache refresh either: the index matters only when something is to be installed, and
unattended-upgrades keeps the installed packages current).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from ansible.errors import AnsibleActionFail  # type: ignore[import-untyped]
from ansible.plugins.action import ActionBase  # type: ignore[import-untyped]

APT_LISTS = "/var/lib/apt/lists"
INDEX_PATTERN = "*_Packages*"


PACKAGE = re.compile(r"^([a-z0-9][a-z0-9+.-]+)(?:=([A-Za-z0-9.+~:-]+))?$")
INSTALLED = re.compile(r"^(\S+) (\S+) (?:install|hold) ok installed$")
# apt arguments that ask for more than "these packages are present".
NOT_A_PLAIN_INSTALL = ("upgrade", "autoremove", "autoclean", "purge", "force", "clean")
QUERY = "dpkg-query -W -f '${Package} ${Version} ${Status}\\n' -- "


def wanted_packages(args: dict[str, Any]) -> dict[str, str | None] | None:
    """{name: exact version or None} when ``args`` only ask for packages to be present (plain
    names, ``name=version`` pins), else None. A ``deb`` file gives {}: its control fields say."""
    if args.get("state", "present") not in (None, "present"):
        return None
    if any(args.get(key) for key in NOT_A_PLAIN_INSTALL):
        return None
    deb = args.get("deb")
    names = args.get("name", args.get("pkg", args.get("package")))
    if deb:
        return {} if not names and isinstance(deb, str) and deb.startswith("/") else None
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    if not isinstance(names, list) or not names:
        return None
    wanted: dict[str, str | None] = {}
    for name in names:
        match = PACKAGE.match(name) if isinstance(name, str) else None
        if match is None:
            return None
        wanted[match.group(1)] = match.group(2)
    return wanted


def deb_fields(stdout: str) -> dict[str, str | None] | None:
    """{Package: Version} from ``dpkg-deb -f FILE Package Version``, else None."""
    fields = dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)
    if "Package" not in fields or "Version" not in fields:
        return None
    return {fields["Package"].strip(): fields["Version"].strip()}


def satisfied(wanted: dict[str, str | None], stdout: str) -> bool:
    """True when ``dpkg-query -W -f '${Package} ${Version} ${Status}\\n' NAMES`` reports every
    wanted package installed (at its pinned version, where pinned)."""
    installed = {}
    for line in stdout.splitlines():
        match = INSTALLED.match(line.strip())
        if match:
            installed[match.group(1)] = match.group(2)
    return bool(wanted) and all(
        name in installed and version in (None, installed[name]) for name, version in wanted.items()
    )


def apt_args(args: dict[str, Any], has_indexes: bool) -> dict[str, Any]:
    """The arguments for ansible.builtin.apt: ``args``, with a forced cache update when the host
    has no package indexes."""
    if has_indexes:
        return dict(args)
    return {**args, "update_cache": True, "cache_valid_time": 0}


class ActionModule(ActionBase):  # type: ignore[misc]  # ActionBase: ansible-core has no types
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True

    def run(
        self, tmp: str | None = None, task_vars: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        super().run(tmp, task_vars)
        del tmp
        wanted = wanted_packages(dict(self._task.args))
        if wanted == {}:
            deb = self._low_level_execute_command(
                "dpkg-deb -f " + shlex.quote(str(self._task.args["deb"])) + " Package Version"
            )
            wanted = deb_fields(str(deb.get("stdout", ""))) if deb.get("rc") == 0 else None
        if wanted:
            query = self._low_level_execute_command(
                QUERY + " ".join(shlex.quote(n) for n in wanted)
            )
            if satisfied(wanted, str(query.get("stdout", ""))):
                return {
                    "changed": False,
                    "cache_updated": False,
                    "msg": "already installed: "
                    + ", ".join(n if v is None else f"{n}={v}" for n, v in wanted.items()),
                }
        found = self._execute_module(
            module_name="ansible.builtin.find",
            module_args={"paths": [APT_LISTS], "patterns": [INDEX_PATTERN]},
            task_vars=task_vars,
        )
        if found.get("failed"):
            raise AnsibleActionFail(
                f"cannot look for package indexes in {APT_LISTS}: {found.get('msg')}",
                result=found,
            )
        args = apt_args(dict(self._task.args), int(found.get("matched", 0)) > 0)
        result: dict[str, Any] = self._execute_module(
            module_name="ansible.builtin.apt",
            module_args=args,
            task_vars=task_vars,
            wrap_async=self._task.async_val,
        )
        return result
