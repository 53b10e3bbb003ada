"""One exit-code table: the exception classes, the fast lane and the docs all agree with it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import ai_local_core
import pytest
from ai_local_core.errors import AiLocalCoreError
from ai_local_core.exit_codes import EXIT_CODES, EXIT_INTERNAL, exit_code_for

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "cli-contract.md"
#: Modules that need the optional extras or a web framework; none defines an error class.
_SKIP = ("ai_local_core.api.app", "ai_local_core.api.wsgi", "ai_local_core.api.server")


def _all_subclasses(root: type[AiLocalCoreError]) -> list[type[AiLocalCoreError]]:
    found: list[type[AiLocalCoreError]] = []
    for sub in root.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def _import_the_package() -> None:
    for info in pkgutil.walk_packages(ai_local_core.__path__, "ai_local_core."):
        if info.name.startswith(_SKIP) or info.name.endswith("gunicorn_conf"):
            continue
        importlib.import_module(info.name)


def test_every_error_class_takes_its_exit_code_from_the_table() -> None:
    _import_the_package()
    classes = [
        cls for cls in _all_subclasses(AiLocalCoreError) if cls.__module__.startswith("ai_local_")
    ]
    assert len(classes) >= 24  # the whole hierarchy was found
    for cls in classes:
        assert cls.error_type in EXIT_CODES, f"{cls.__qualname__}: add {cls.error_type!r}"
        assert cls.exit_code == EXIT_CODES[cls.error_type], cls.__qualname__
    # Every entry but the runner's own "interrupted" belongs to a class.
    assert set(EXIT_CODES) - {cls.error_type for cls in classes} == {"interrupted"}


def test_a_class_cannot_contradict_the_table() -> None:
    with pytest.raises(TypeError, match=r"contradicts ai_local_core\.exit_codes"):

        class Wrong(AiLocalCoreError):
            error_type = "invalid_input"
            exit_code = 9


def test_unknown_types_are_internal_errors() -> None:
    assert exit_code_for("no_such_type") == EXIT_INTERNAL == 1
    assert exit_code_for("interrupted") == 130


def test_the_documented_tables_match() -> None:
    documented: dict[str, int] = {}
    for line in CONTRACT.read_text(encoding="utf-8").splitlines():
        row = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row is None:
            continue
        for name in re.findall(r"`([a-z_]+)`", row.group(2)):
            documented[name] = int(row.group(1))
    assert documented == dict(EXIT_CODES)
