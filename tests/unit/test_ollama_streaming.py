"""NDJSON decoding: buffering across chunk boundaries and error lines."""

from __future__ import annotations

import json

import pytest
from ai_local_core.ollama.exceptions import InvalidResponse, ModelNotFound, OllamaError, ServerBusy
from ai_local_core.ollama.streaming import NDJSONDecoder, iter_ndjson

LINES = [
    {"model": "m", "message": {"role": "assistant", "content": "Zażółć "}, "done": False},
    {"model": "m", "message": {"role": "assistant", "content": "gęślą jaźń"}, "done": False},
    {"model": "m", "done": True, "eval_count": 2},
]
PAYLOAD = b"".join(json.dumps(obj, ensure_ascii=False).encode() + b"\n" for obj in LINES)


@pytest.mark.parametrize("cut", range(1, len(PAYLOAD)))
def test_every_two_way_split_yields_the_same_objects(cut: int) -> None:
    assert list(iter_ndjson([PAYLOAD[:cut], PAYLOAD[cut:]])) == LINES


def test_one_byte_chunks_including_inside_multibyte_characters() -> None:
    chunks = [PAYLOAD[i : i + 1] for i in range(len(PAYLOAD))]
    assert list(iter_ndjson(chunks)) == LINES


def test_decoder_holds_a_partial_line_until_its_newline() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b"') == [{"a": 1}]
    assert decoder.pending == 4
    assert decoder.feed(b": 2}") == []
    assert decoder.feed(b"\n") == [{"b": 2}]
    assert decoder.close() == []


def test_blank_lines_crlf_and_a_last_line_without_newline() -> None:
    data = [b'\r\n{"a": 1}\r\n\n   \n{"b": 2}']
    assert list(iter_ndjson(data)) == [{"a": 1}, {"b": 2}]


def test_error_line_mid_stream_raises_after_the_good_lines() -> None:
    data = [b'{"response": "x", "done": false}\n{"error": "an error was encountered"}\n']
    seen = []
    with pytest.raises(OllamaError, match="an error was encountered") as info:
        for obj in iter_ndjson(data):
            seen.append(obj)
    assert seen == [{"response": "x", "done": False}]
    assert type(info.value) is OllamaError
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('model "x" not found, try pulling it first', ModelNotFound),
        ("server busy, please try again.  maximum pending requests exceeded", ServerBusy),
        ("pull model manifest: file does not exist", OllamaError),
    ],
)
def test_error_lines_map_to_the_matching_class(message: str, expected: type) -> None:
    line = json.dumps({"error": message}).encode() + b"\n"
    with pytest.raises(OllamaError) as info:
        list(iter_ndjson([line]))
    assert type(info.value) is expected
    assert info.value.message == message


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'"text"\n', b'{"a": 1\n'])
def test_a_line_that_is_not_a_json_object_is_an_invalid_response(line: bytes) -> None:
    with pytest.raises(InvalidResponse):
        list(iter_ndjson([line]))


def test_a_line_longer_than_the_limit_is_rejected() -> None:
    with pytest.raises(InvalidResponse, match="longer than 16 bytes"):
        list(iter_ndjson([b'{"a": "' + b"x" * 40], max_line_bytes=16))
