"""Building blocks of the JSON request models (``ai-complete``, ``/v1/describe``, ...).

The callers are PHP programs: Laravel's config values are strings (``"0.7"``) and
``json_encode`` writes ``512.0`` for a float. So the request models are strict
except for numbers and booleans, which are coerced, and only where the value is
exact:

* :data:`Number` (a float field): a JSON number or a numeric string (``"0.7"``,
  ``"1e-3"``); never a boolean, ``"NaN"``, ``"inf"`` or anything non-finite;
* :data:`WholeNumber` (an int field): the same, with an integral value
  (``512``, ``512.0``, ``"512"``, ``"512.0"``); ``512.5`` is refused;
* :data:`Flag` (a bool field): ``true``/``false`` or the strings ``"true"``/``"false"``.

Anything else stays ``invalid_input`` naming the field. :class:`RequestModel`
ignores unknown top-level keys instead of refusing them and lists them in
:meth:`RequestModel.input_warnings` (the success output's ``warnings``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    model_validator,
)
from typing_extensions import Self

__all__ = [
    "Flag",
    "Number",
    "RequestModel",
    "WholeNumber",
    "to_flag",
    "to_number",
    "to_whole_number",
    "unknown_keys",
    "with_warnings",
]

#: A decimal number as JSON (and Python's float()) writes it; no "inf", "nan", "0x1", "1_0".
#: ASCII digits only: ``\d`` would also match other scripts' digits ("٣"), which float()
#: and int() take but pydantic, PHP and JSON numbers do not.
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[+-]?[0-9]+")


def to_number(value: Any) -> Any:
    """A finite float from a JSON number or a numeric string; other types pass on unchanged
    (the strict field then names the wrong type)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, str):
        if not _NUMERIC.fullmatch(value.strip()):
            raise ValueError("must be a number (a numeric string is accepted)")
        value = float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def to_whole_number(value: Any) -> Any:
    """An int from an integral JSON number (``512.0``) or numeric string (``"512"``)."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not a boolean")
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than int() parses
            raise ValueError("must be a whole number") from None
    value = to_number(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


def to_flag(value: Any) -> Any:
    """A bool from ``true``/``false`` or the strings ``"true"``/``"false"`` (any case)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false"):
            raise ValueError("must be a boolean (true or false)")
        return text == "true"
    return value


Number = Annotated[float, BeforeValidator(to_number)]
WholeNumber = Annotated[int, BeforeValidator(to_whole_number)]
Flag = Annotated[bool, BeforeValidator(to_flag)]


def unknown_keys(model: type[BaseModel], payload: Any) -> list[str]:
    """The top-level keys of ``payload`` that ``model`` has no field for, in input order."""
    if not isinstance(payload, Mapping):
        return []
    return [str(key) for key in payload if key not in model.model_fields]


class RequestModel(BaseModel):
    """Base of the request models: strict types (see the module docstring), unknown
    top-level keys ignored and remembered for :meth:`input_warnings`. Nested objects
    (``messages`` items, ``options``) still refuse unknown keys."""

    model_config = ConfigDict(extra="ignore", strict=True)

    _ignored_keys: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_unknown_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        model._ignored_keys = unknown_keys(cls, data)
        return model

    @classmethod
    def unknown_key_warning(cls, key: str) -> str:
        """The warning for one ignored key (a subclass may add a hint)."""
        return f"unknown key {key!r} ignored"

    def input_warnings(self) -> list[str]:
        """One line per ignored key; empty when the input was clean."""
        return [self.unknown_key_warning(key) for key in self._ignored_keys]


def with_warnings(result: dict[str, Any], request: RequestModel) -> dict[str, Any]:
    """``result`` with ``warnings`` added when the request ignored something."""
    warnings = request.input_warnings()
    if warnings:
        result["warnings"] = warnings
    return result
