"""ai-complete's bad-input table and the shared runner's contract (no server needed)."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest
from ai_local_core.cli import _common
from ai_local_core.cli import complete as complete_cli
from ai_local_core.cli.complete import CompleteRequest
from ai_local_core.config import Settings

HUGE = '{"user": "' + "x" * 150_000 + '"}'


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = complete_cli.main(argv)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, f"stdout must hold exactly one line, got {out!r}"
    return code, json.loads(lines[0]), err


BAD_INPUTS = [
    ("missing argument", [], "missing argument"),
    ("two arguments", ['{"user": "a"}', "extra"], "exactly one argument"),
    ("empty argument", [""], "empty input"),
    ("not JSON", ["{user: hello}"], "not valid JSON"),
    ("truncated JSON", ['{"user": "hi"'], "not valid JSON"),
    ("NaN literal", ['{"user": "hi", "temperature": NaN}'], "NaN is not valid JSON"),
    ("array", ['["hello"]'], "must be a JSON object, got an array"),
    ("string", ['"hello"'], "got a string"),
    ("number", ["42"], "got a number"),
    ("null", ["null"], "got null"),
    ("misspelt key: the error", ['{"prompt": "hi"}'], "missing prompt"),
    ("misspelt key is named", ['{"prompt": "hi"}'], "unknown keys ignored: 'prompt'"),
    ("user not a string", ['{"user": 5}'], "user: Input should be a valid string"),
    ("temperature not numeric", ['{"user": "hi", "temperature": "abc"}'], "temperature: must be"),
    ("temperature NaN string", ['{"user": "hi", "temperature": "NaN"}'], "temperature: must be"),
    ("temperature inf string", ['{"user": "hi", "temperature": "inf"}'], "temperature: must be"),
    ("temperature overflow", ['{"user": "hi", "temperature": "1e999"}'], "temperature: must be"),
    ("temperature as bool", ['{"user": "hi", "temperature": true}'], "temperature: must be"),
    ("temperature as list", ['{"user": "hi", "temperature": [1]}'], "temperature"),
    ("max_tokens float", ['{"user": "hi", "max_tokens": 1.5}'], "max_tokens: must be a whole"),
    ("max_tokens 512.5", ['{"user": "hi", "max_tokens": "512.5"}'], "max_tokens: must be a whole"),
    ("max_tokens bool", ['{"user": "hi", "max_tokens": true}'], "max_tokens: must be"),
    ("max_tokens hex", ['{"user": "hi", "max_tokens": "0x10"}'], "max_tokens: must be"),
    ("timeout as words", ['{"user": "hi", "timeout": "ten"}'], "timeout: must be"),
    ("stream as string", ['{"user": "hi", "stream": "yes"}'], "stream: must be a boolean"),
    ("stream as number", ['{"user": "hi", "stream": 1}'], "stream"),
    ("options not an object", ['{"user": "hi", "options": [1]}'], "options"),
    ("unknown option", ['{"user": "hi", "options": {"top_kk": 1}}'], "unknown Ollama option"),
    ("option not whole", ['{"user": "hi", "options": {"top_k": 4.5}}'], "options.top_k: must be"),
    ("option not numeric", ['{"user": "hi", "options": {"seed": "x"}}'], "options.seed: must be"),
    ("option bool", ['{"user": "hi", "options": {"num_ctx": true}}'], "options.num_ctx: must"),
    ("option flag", ['{"user": "hi", "options": {"low_vram": "no"}}'], "options.low_vram: must"),
    (
        "option and top-level",
        ['{"user": "hi", "temperature": 0.1, "options": {"temperature": 0.1}}'],
        "give 'temperature' or 'options.temperature', not both",
    ),
    (
        "num_predict and max_tokens",
        ['{"user": "hi", "max_tokens": 5, "options": {"num_predict": 5}}'],
        "give 'max_tokens' or 'options.num_predict', not both",
    ),
    ("messages not a list", ['{"messages": "hi"}'], "messages"),
    ("stop with a number", ['{"user": "hi", "stop": ["a", 1]}'], "string or a list of strings"),
    ("bad role", ['{"messages": [{"role": "bot", "content": "x"}]}'], "messages.0.role"),
    ("temperature too high", ['{"user": "hi", "temperature": 2.5}'], "less than or equal to 2"),
    ("temperature negative", ['{"user": "hi", "temperature": -0.1}'], "greater than or equal"),
    ("top_p zero", ['{"user": "hi", "top_p": 0}'], "top_p"),
    ("top_p above one", ['{"user": "hi", "top_p": 1.5}'], "top_p"),
    ("max_tokens zero", ['{"user": "hi", "max_tokens": 0}'], "max_tokens"),
    ("timeout zero", ['{"user": "hi", "timeout": 0}'], "timeout"),
    ("empty prompt", ['{"user": ""}'], "empty prompt"),
    ("blank prompt", ['{"user": "   \\n"}'], "empty prompt"),
    ("no prompt", ['{"temperature": 0.5}'], "missing prompt"),
    ("empty messages", ['{"messages": []}'], "empty prompt"),
    ("blank messages", ['{"messages": [{"role": "user", "content": " "}]}'], "empty prompt"),
    (
        "messages and user",
        ['{"user": "a", "messages": [{"role": "user", "content": "b"}]}'],
        "not both",
    ),
    ("empty model", ['{"user": "hi", "model": ""}'], "model"),
    ("huge input", [HUGE], "input too large"),
    ("not UTF-8", ['{"user": "\udcff"}'], "not valid UTF-8"),
]


@pytest.mark.parametrize(("case", "argv", "fragment"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gives_the_json_error_and_exit_2(
    case: str, argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, payload, err = run(argv, capsys)
    assert code == 2
    assert payload["success"] is False
    assert payload["error"]["type"] == "invalid_input"
    assert fragment in payload["error"]["message"]
    assert "Traceback" not in err
    assert "x" * 1000 not in payload["error"]["message"]  # input is never echoed back


PHP_FRIENDLY: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("numeric string", {"temperature": "0.7"}, {"temperature": 0.7}),
    ("PHP float for an int", {"max_tokens": 512.0}, {"max_tokens": 512}),
    ("numeric string for an int", {"max_tokens": " 512 "}, {"max_tokens": 512}),
    ("integral float string", {"max_tokens": "512.0"}, {"max_tokens": 512}),
    ("exponent", {"top_p": "9e-1", "timeout": "1E2"}, {"top_p": 0.9, "timeout": 100.0}),
    ("int for a float", {"temperature": 1}, {"temperature": 1.0}),
    ("boolean string", {"stream": "TRUE"}, {"stream": True}),
    (
        "options",
        {"options": {"top_k": "40", "seed": 7.0, "repeat_penalty": "1.1", "numa": "false"}},
        {"options": {"top_k": 40, "seed": 7, "repeat_penalty": 1.1, "numa": False}},
    ),
    ("null options are left out", {"options": {"seed": None}}, {"options": {}}),
    ("options with a stop list", {"options": {"stop": ["x"]}}, {"options": {"stop": ["x"]}}),
]


@pytest.mark.parametrize(
    ("case", "extra", "expected"), PHP_FRIENDLY, ids=[c[0] for c in PHP_FRIENDLY]
)
def test_php_style_values_are_coerced(
    case: str, extra: dict[str, Any], expected: dict[str, Any]
) -> None:
    request = _common.validate_input(CompleteRequest, {"user": "hi", **extra})
    dumped = request.model_dump()
    assert {key: dumped[key] for key in expected} == expected
    for key, value in expected.items():  # the exact type, not only an equal value
        assert type(dumped[key]) is type(value)
    assert request.input_warnings() == []


def test_unknown_top_level_keys_are_ignored_with_warnings() -> None:
    request = _common.validate_input(
        CompleteRequest, {"user": "hi", "top_k": 40, "colour": "red", "max_tokens": 9}
    )
    assert request.max_tokens == 9
    assert request.input_warnings() == [
        "unknown key 'top_k' ignored; Ollama options go in 'options'",
        "unknown key 'colour' ignored",
    ]
    assert "top_k" not in request.model_dump() and "colour" not in request.model_dump()


def test_json_from_stdin_with_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"user": ""}')))
    code, payload, _ = run(["-"], capsys)
    assert code == 2
    assert "empty prompt" in payload["error"]["message"]


def test_config_error_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AI_LOCAL_CORE_ENV", "nowhere")
    code, payload, _ = run(['{"user": "hi"}'], capsys)
    assert code == 3
    assert payload["error"]["type"] == "config_error"


def _explode(payload: Any, settings: Settings) -> dict[str, Any]:
    raise RuntimeError("kaboom with secret detail")


def test_unexpected_error_is_internal_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(complete_cli, "complete", _explode)
    code, payload, err = run(['{"user": "hi"}'], capsys)
    assert code == 1
    assert payload["error"]["type"] == "internal_error"
    assert "RuntimeError" in payload["error"]["message"]
    assert "secret detail" not in payload["error"]["message"]
    assert "Traceback" not in err


def test_debug_env_prints_the_traceback_on_stderr_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(complete_cli, "complete", _explode)
    monkeypatch.setenv("AI_LOCAL_CORE_DEBUG", "1")
    code, payload, err = run(['{"user": "hi"}'], capsys)
    assert code == 1
    assert payload["success"] is False
    assert "Traceback" in err and "kaboom" in err


def test_runner_with_a_custom_argv_parser(capsys: pytest.CaptureFixture[str]) -> None:
    def parse(argv: Any) -> dict[str, Any]:
        return {"words": list(argv)}

    def handler(payload: Any, settings: Settings) -> dict[str, Any]:
        return {"count": len(payload["words"]), "env": settings.env}

    code = _common.run_cli(handler, argv=["a", "b"], parse_args=parse, prog="t")
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out) == {"success": True, "count": 2, "env": "development"}


def test_runner_reports_an_unserialisable_result(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(payload: Any, settings: Settings) -> dict[str, Any]:
        return {"value": object()}

    code = _common.run_cli(handler, argv=['{"a": 1}'], prog="t")
    out = capsys.readouterr().out
    assert code == 1
    assert json.loads(out)["error"]["type"] == "internal_error"
