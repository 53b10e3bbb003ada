"""One table of error types: the classes of ``ai_local_core/errors.py`` (each with its
``exit_code`` and ``http_status``), the CLIs' warm path, the API server's answers and the
docs all agree with it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import ai_local_core
from ai_local_core import errors
from ai_local_core.errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    HTTP_LEVEL_EXIT_CODES,
    AiLocalCoreError,
    RemoteError,
    error_classes,
    exit_code_for,
)

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


def test_every_error_class_is_in_the_errors_module_and_the_table() -> None:
    _import_the_package()
    classes = [
        cls for cls in _all_subclasses(AiLocalCoreError) if cls.__module__.startswith("ai_local_")
    ]
    assert len(classes) >= 24  # the whole hierarchy was found
    for cls in classes:
        # One file holds every error type; elsewhere only private subclasses (a marker
        # for a retry rule) are allowed, and they keep their parent's attributes.
        assert cls.__module__ == errors.__name__ or cls.__name__.startswith("_"), (
            f"{cls.__module__}.{cls.__qualname__}: define error classes in ai_local_core/errors.py"
        )
        assert cls.error_type in EXIT_CODES, f"{cls.__qualname__}: add {cls.error_type!r}"
        assert cls.exit_code == EXIT_CODES[cls.error_type], cls.__qualname__
    assert set(error_classes()) == {
        cls for cls in classes if cls.__module__ == errors.__name__ and cls is not RemoteError
    }
    # Every entry but the runner's own "interrupted" is a type the API server answers.
    assert set(EXIT_CODES) - _api_error_types() == {"interrupted"}


def test_each_class_states_its_contract_in_its_own_body() -> None:
    by_type: dict[str, tuple[int, int]] = {}
    for cls in error_classes():
        assert {"error_type", "exit_code", "http_status"} <= set(vars(cls)), cls.__qualname__
        assert cls.error_type.islower() and " " not in cls.error_type, cls.__qualname__
        assert cls.error_type not in HTTP_LEVEL_EXIT_CODES, cls.__qualname__
        contract = (cls.exit_code, cls.http_status)
        # Two classes may share a type (a subclass that only narrows where it is caught),
        # never with different codes.
        assert by_type.setdefault(cls.error_type, contract) == contract, cls.__qualname__


def _documented_rows() -> list[tuple[int, list[str], str]]:
    """(exit code, error types, API status cell) of every row of the docs' tables."""
    rows = []
    for line in CONTRACT.read_text(encoding="utf-8").splitlines():
        row = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|.*\|([^|]*)\|\s*$", line)
        if row is None:
            continue
        rows.append((int(row.group(1)), re.findall(r"`([a-z_]+)`", row.group(2)), row.group(3)))
    return rows


def _documented() -> dict[str, int]:
    return {name: code for code, names, _ in _documented_rows() for name in names}


def _api_error_types() -> set[str]:
    """Every ``error.type`` the API server answers, found by making it answer: each error
    class raised in a route, each HTTP error werkzeug knows, and an unexpected exception."""
    from ai_local_core.api import create_app
    from ai_local_core.config import load_settings
    from flask import abort
    from werkzeug.exceptions import default_exceptions

    _import_the_package()
    classes = [
        cls
        for cls in _all_subclasses(AiLocalCoreError)
        if cls.__module__.startswith("ai_local_") and cls is not RemoteError  # the CLI's
    ]
    app = create_app(load_settings(api={"warm_on_start": False}), warm_up=False)

    def raise_class(index: int) -> str:
        raise classes[index]("raised by the test")

    def raise_http(code: int) -> str:
        abort(code)

    def raise_unexpected() -> str:
        raise RuntimeError("a bug")

    app.add_url_rule("/test/class/<int:index>", view_func=raise_class)
    app.add_url_rule("/test/http/<int:code>", view_func=raise_http)
    app.add_url_rule("/test/unexpected", view_func=raise_unexpected)
    client = app.test_client()
    paths = [f"/test/class/{i}" for i in range(len(classes))]
    paths += [f"/test/http/{code}" for code in sorted(default_exceptions)]
    paths += ["/test/unexpected", "/no/such/route"]
    found: set[str] = set()
    try:
        for path in paths:
            response = client.get(path)
            body = response.get_json()
            assert response.status_code >= 400, path
            assert body["success"] is False, path
            found.add(body["error"]["type"])
        response = client.get("/v1/translate")  # a route without GET
        assert response.status_code == 405
        found.add(response.get_json()["error"]["type"])
    finally:
        app.extensions["ai_local_core"]["services"].close()
    assert {cls.error_type for cls in classes} <= found
    return found


def test_every_error_type_the_api_answers_has_an_exit_code_and_a_row_in_the_docs() -> None:
    types = _api_error_types()
    # The framework's own types are found, not listed by hand here.
    assert {"internal_error", "bad_request", "not_found", "method_not_allowed"} <= types
    assert "http_error" in types  # e.g. 418, 451: statuses without a name of their own
    documented = _documented()
    for error_type in sorted(types):
        assert error_type in EXIT_CODES, f"add {error_type!r} to ai_local_core/errors.py"
        assert error_type in documented, f"add {error_type!r} to docs/cli-contract.md"
        assert exit_code_for(error_type) != EXIT_INTERNAL or error_type == "internal_error", (
            f"{error_type!r} would exit 1, the code of a bug"
        )


def test_unknown_types_are_internal_errors() -> None:
    assert exit_code_for("no_such_type") == EXIT_INTERNAL == 1
    assert exit_code_for("interrupted") == 130


def test_the_documented_tables_match() -> None:
    assert _documented() == dict(EXIT_CODES)


def test_the_documented_api_statuses_match() -> None:
    """The last number of a row's "API status" cell is the class's ``http_status``
    (``image_fetch_failed``: "400 when the image host answered 4xx, else 502")."""
    statuses: dict[str, int] = {}
    for _, names, cell in _documented_rows():
        numbers = re.findall(r"\d+", cell)
        for name in names:
            if numbers:
                statuses[name] = int(numbers[-1])
    for cls in error_classes():
        assert statuses.get(cls.error_type) == cls.http_status, cls.__qualname__
    assert statuses["internal_error"] == 500
