"""Action ai_local_core.node.validate_vars: a role's input check, one task per role, before any
change. It fails on

* variables that carry the role's prefix but are not options of its argument spec (a misspelled
  name, which Ansible would otherwise ignore silently): the names the task sees, as
  ``query('ansible.builtin.varnames', '^<prefix>')`` would list them (inventory group_vars and
  host_vars, play and role vars, role defaults, extra vars, set_fact and registered results);
* the role's own checks of what a type cannot express (formats, ranges, combinations): each a
  ``{ok: <templated boolean>, msg: <text>}``; every failing one is reported, in order.

Outside a role and without ``prefix`` (a playbook's preflight), only the checks run. Runs on
the controller only, changes nothing. The types and choices are the argument spec's job
(``meta/argument_specs.yml``, validated by Ansible before the role's first task). A check's
message must not contain a secret: it is printed when the check fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail, AnsibleError  # type: ignore[import-untyped]
from ansible.module_utils.parsing.convert_bool import boolean  # type: ignore[import-untyped]
from ansible.plugins.action import ActionBase  # type: ignore[import-untyped]

ARGUMENT_SPEC: dict[str, Any] = {
    # Default: the calling role's name and an underscore.
    "prefix": {"type": "str"},
    # Default: meta/argument_specs.yml of the calling role.
    "argument_specs": {"type": "path"},
    "entry_point": {"type": "str", "default": "main"},
    # Names that carry the prefix without being inputs (facts the role publishes).
    "allow": {"type": "list", "elements": "str", "default": []},
    "checks": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "ok": {"type": "raw", "required": True},
            "msg": {"type": "str", "required": True},
        },
    },
}


def unknown_vars(names: list[str], prefix: str, documented: set[str], allow: set[str]) -> list[str]:
    """The names that carry ``prefix`` and are neither documented nor allowed, sorted."""
    return sorted(n for n in set(names) if n.startswith(prefix) and n not in documented | allow)


def failing_checks(checks: list[dict[str, Any]]) -> list[str]:
    """The messages of the checks whose ``ok`` is false, in order; ``ok`` must be a boolean
    (or the text of one): anything else is a mistake in the role, not in the input."""
    failed = []
    for number, check in enumerate(checks, 1):
        try:
            ok = boolean(check["ok"], strict=True)
        except TypeError as exc:
            raise AnsibleActionFail(
                f"check {number} ({check['msg']!r}): ok is {check['ok']!r}, not a boolean"
            ) from exc
        if not ok:
            failed.append(check["msg"].strip().rstrip("."))
    return failed


class ActionModule(ActionBase):  # type: ignore[misc]  # ActionBase: ansible-core has no types
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _requires_connection = False

    def run(
        self, tmp: str | None = None, task_vars: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)

        role = self._task._role
        role_name: str = role.get_name(include_role_fqcn=False) if role else ""
        spec_path: Path | None = None
        if args["argument_specs"]:
            spec_path = Path(args["argument_specs"])
        elif role is not None:
            spec_path = Path(role.get_role_path()) / "meta" / "argument_specs.yml"
            if not spec_path.is_file() and spec_path.with_suffix(".yaml").is_file():
                spec_path = spec_path.with_suffix(".yaml")
        elif args["prefix"]:
            raise AnsibleActionFail("outside a role: give the argument_specs option")
        # Outside a role, without a prefix (a playbook's preflight checks): the checks only.
        prefix: str = args["prefix"] or f"{role_name}_"
        role_name = role_name or prefix.rstrip("_")

        unknown = []
        if spec_path is not None:
            try:
                specs = self._loader.load_from_file(str(spec_path))
                options = specs["argument_specs"][args["entry_point"]].get("options") or {}
            except (AnsibleError, OSError, KeyError, TypeError, AttributeError) as exc:
                raise AnsibleActionFail(
                    f"cannot read the options of entry point {args['entry_point']!r} "
                    f"from {spec_path}: {exc}"
                ) from exc
            unknown = unknown_vars(list(task_vars), prefix, set(options), set(args["allow"]))
        problems = failing_checks(args["checks"])
        result["changed"] = False
        messages = []
        if unknown:
            result["unknown_vars"] = unknown
            messages.append(
                f"unknown variable(s) for role {role_name}: {', '.join(unknown)} "
                f"(the documented ones are in roles/{role_name}/defaults/main.yml)"
            )
        if problems:
            result["problems"] = problems
            where = f"role {role_name}: " if role_name else ""
            messages.append(where + "; ".join(problems))
        if messages:
            result["failed"] = True
            result["msg"] = "\n".join(messages)
        else:
            documented = f"every {prefix} variable is documented; " if spec_path else ""
            result["msg"] = f"{documented}{len(args['checks'])} check(s) passed"
        return result
