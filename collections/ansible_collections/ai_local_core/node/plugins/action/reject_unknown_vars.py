"""Action ai_local_core.node.reject_unknown_vars: fail on variables that carry a role's prefix
but are not options of its argument spec (a misspelled name, which Ansible would otherwise
ignore silently).

Runs on the controller only. The names checked are those the task sees, as
``query('ansible.builtin.varnames', '^<prefix>')`` would list them: inventory group_vars and
host_vars, play and role vars, role defaults, extra vars, set_fact and registered results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail, AnsibleError  # type: ignore[import-untyped]
from ansible.plugins.action import ActionBase  # type: ignore[import-untyped]

ARGUMENT_SPEC: dict[str, Any] = {
    # Default: the calling role's name and an underscore.
    "prefix": {"type": "str"},
    # Default: meta/argument_specs.yml of the calling role.
    "argument_specs": {"type": "path"},
    "entry_point": {"type": "str", "default": "main"},
    # Names that carry the prefix without being inputs (facts the role publishes).
    "allow": {"type": "list", "elements": "str", "default": []},
}


def unknown_vars(names: list[str], prefix: str, documented: set[str], allow: set[str]) -> list[str]:
    """The names that carry ``prefix`` and are neither documented nor allowed, sorted."""
    return sorted(n for n in set(names) if n.startswith(prefix) and n not in documented | allow)


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
        if args["argument_specs"]:
            spec_path = Path(args["argument_specs"])
        elif role is not None:
            spec_path = Path(role.get_role_path()) / "meta" / "argument_specs.yml"
            if not spec_path.is_file() and spec_path.with_suffix(".yaml").is_file():
                spec_path = spec_path.with_suffix(".yaml")
        else:
            raise AnsibleActionFail("outside a role: give the argument_specs option")
        prefix: str = args["prefix"] or f"{role_name}_"
        role_name = role_name or prefix.rstrip("_")

        try:
            specs = self._loader.load_from_file(str(spec_path))
            options = specs["argument_specs"][args["entry_point"]].get("options") or {}
        except (AnsibleError, OSError, KeyError, TypeError, AttributeError) as exc:
            raise AnsibleActionFail(
                f"cannot read the options of entry point {args['entry_point']!r} "
                f"from {spec_path}: {exc}"
            ) from exc

        unknown = unknown_vars(list(task_vars), prefix, set(options), set(args["allow"]))
        result["changed"] = False
        if unknown:
            result["failed"] = True
            result["unknown_vars"] = unknown
            result["msg"] = (
                f"unknown variable(s) for role {role_name}: {', '.join(unknown)} "
                f"(the documented ones are in roles/{role_name}/defaults/main.yml)"
            )
        else:
            result["msg"] = f"every {prefix} variable is documented"
        return result
