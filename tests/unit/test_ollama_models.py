"""Typed results: omitted metrics count as 0, tokens/s and usage."""

from __future__ import annotations

from ai_local_core.ollama.models import ChatResponse, GenerateResponse, PullProgress


def test_missing_duration_fields_count_as_zero() -> None:
    final = ChatResponse.model_validate(
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True}
    )
    assert (final.total_duration, final.load_duration, final.eval_count) == (0, 0, 0)
    assert final.tokens_per_second == 0.0
    assert final.prompt_tokens_per_second == 0.0
    assert final.usage.total_tokens == 0


def test_tokens_per_second_and_usage_from_the_final_object() -> None:
    final = GenerateResponse.model_validate(
        {
            "done": True,
            "prompt_eval_count": 12,
            "prompt_eval_duration": 60_000_000,
            "eval_count": 50,
            "eval_duration": 1_000_000_000,
            "total_duration": 1_250_000_000,
            "unknown_future_field": 1,
        }
    )
    assert final.tokens_per_second == 50.0
    assert final.prompt_tokens_per_second == 200.0
    assert final.usage.model_dump() == {
        "prompt_tokens": 12,
        "completion_tokens": 50,
        "total_tokens": 62,
    }
    assert final.total_duration_ms == 1250.0


def test_chat_chunks_fold_into_one_result() -> None:
    chunks = [
        ChatResponse.model_validate({"message": {"role": "assistant", "content": "Hel"}}),
        ChatResponse.model_validate({"message": {"role": "assistant", "content": "lo"}}),
        ChatResponse.model_validate(
            {
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "eval_count": 2,
                "eval_duration": 20_000_000,
                "done_reason": "stop",
            }
        ),
    ]
    result = ChatResponse.from_stream(chunks)
    assert result.content == "Hello"
    assert result.done and result.done_reason == "stop"
    assert result.tokens_per_second == 100.0


def test_generate_chunks_fold_and_an_empty_stream_is_not_done() -> None:
    chunks = [GenerateResponse(response="a "), GenerateResponse(response="b", done=True)]
    assert GenerateResponse.from_stream(chunks).response == "a b"
    assert GenerateResponse.from_stream([]).done is False


def test_pull_progress_fraction() -> None:
    assert PullProgress(status="pulling manifest").fraction is None
    assert PullProgress(status="pulling abc", total=200, completed=50).fraction == 0.25
