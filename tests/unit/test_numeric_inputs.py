"""Numbers written as text: ``ai-describe``'s ``MAX_LENGTH``, the JSON inputs' numeric strings
(:mod:`ai_local_core.inputs`) and numeric config values.

``str.isdigit()`` and the regex ``\\d`` accept more than ``int()`` parses ("²" is a digit to
``isdigit`` and nothing to ``int``) or more than pydantic and PHP do ("٣", an Arabic-Indic
three, is 3 to ``int``). Every parser here takes the ASCII digits 0-9 only and answers anything
else with ``invalid_input`` (exit 2, HTTP 400), never ``internal_error``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ai_local_core.api import create_app
from ai_local_core.cli import describe as describe_cli
from ai_local_core.config import load_settings
from ai_local_core.errors import ConfigError, InvalidInput
from ai_local_core.inputs import to_number, to_whole_number

HUGE = "9" * 400
#: More digits than int() parses by default (sys.get_int_max_str_digits(): 4300).
HUGER = "9" * 5000


def _run_describe(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code = describe_cli.main(argv)
    out, err = capsys.readouterr()
    assert out.count("\n") == 1, out
    assert "Traceback" not in err
    return code, json.loads(out)


@pytest.mark.parametrize(
    "max_length",
    [
        "²",  # superscript two: isdigit() is True, int() fails
        "٣",  # Arabic-Indic three: int() reads 3
        "\uff11\uff12",  # fullwidth 12
        " 12 ",
        "12\n",
        "-1",
        "+12",
        "1e3",
        "12.0",
        "0x10",
        "1_2",
        "",
        HUGE,
        HUGER,
    ],
)
def test_max_length_is_ascii_digits_only(
    max_length: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run_describe(["https://example.invalid/photo.jpg", max_length], capsys)
    assert code == 2
    assert out["error"]["type"] == "invalid_input"
    message = out["error"]["message"]
    assert message.startswith("MAX_LENGTH must be a whole number from 1 to 512")
    assert "digits 0-9" in message
    assert len(message) < 200  # the input is not echoed back


@pytest.mark.parametrize(("max_length", "needle"), [("0", ">= 1"), ("513", "<= 512")])
def test_max_length_out_of_range(
    max_length: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run_describe(["https://example.invalid/photo.jpg", max_length], capsys)
    assert (code, out["error"]["type"]) == (2, "invalid_input")
    message = out["error"]["message"]
    assert "max_length" in message
    assert ("greater than or equal to 1" if needle == ">= 1" else "less than or equal to 512") in (
        message
    )


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("50", 50), ("512", 512), ("007", 7)])
def test_valid_max_length(text: str, value: int) -> None:
    assert describe_cli.parse_args(["x.png", text]) == {"image": "x.png", "max_length": value}
    assert describe_cli.parse_max_length("0" * 20 + "9") == 9


@pytest.mark.parametrize("text", ["²", "٣", "١٢", "\uff11\uff12", HUGER])
def test_json_numeric_strings_are_ascii(text: str) -> None:
    with pytest.raises(ValueError, match="must be a"):
        to_whole_number(text)
    if text != HUGER:
        with pytest.raises(ValueError, match="must be a number"):
            to_number(text)
        with pytest.raises(ValueError, match="must be a number"):
            to_number(f"{text}.5")


def test_json_numeric_strings_still_accepted() -> None:
    assert to_whole_number(" 512 ") == 512  # docs/cli-contract.md, Input values
    assert to_whole_number("+7") == 7
    assert to_whole_number(HUGE) == int(HUGE)  # the field's range refuses it
    assert to_number("1e-3") == 0.001
    with pytest.raises(ValueError, match="finite"):
        to_number(HUGE)  # float() makes it inf


@pytest.mark.parametrize(
    ("max_length", "needle"),
    [
        ("٣", "max_length"),
        ("²", "max_length"),
        (HUGE, "less than or equal to 512"),
        (HUGER, "max_length"),
        ("-1", "greater than or equal to 1"),
    ],
)
def test_api_max_length(max_length: str, needle: str) -> None:
    app = create_app(load_settings(api={"warm_on_start": False}), warm_up=False)
    try:
        body = {"image": "https://example.invalid/photo.jpg", "max_length": max_length}
        response = app.test_client().post("/v1/describe", json=body)
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert error["type"] == "invalid_input"
        assert needle in error["message"]
    finally:
        app.extensions["ai_local_core"]["services"].close()


@pytest.mark.parametrize("value", ["٣", "²", HUGER])
def test_config_numbers_in_other_scripts_are_config_errors(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AI_LOCAL_CORE_IMAGE__LIMITS__MAX_BYTES", "AI_LOCAL_CORE_API__CONNECT_TIMEOUT"):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=name.lower().split("__", 1)[1].replace("__", ".")):
            load_settings()
        monkeypatch.delenv(name)


def test_invalid_input_is_exit_2() -> None:
    assert InvalidInput.exit_code == 2
