"""Filters shared by the roles."""

from __future__ import annotations

from typing import Any

CONTAINER_TYPES = frozenset(
    {"container", "podman", "docker", "lxc", "systemd-nspawn", "containerd"}
)


def is_container(facts: dict[str, Any]) -> bool:
    """True when the gathered facts describe a container guest."""
    return (
        facts.get("virtualization_role") == "guest"
        and facts.get("virtualization_type") in CONTAINER_TYPES
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"is_container": is_container}
