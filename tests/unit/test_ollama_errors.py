"""The exception hierarchy and the mapping of HTTP error responses."""

from __future__ import annotations

import pytest
from ai_local_core.errors import (
    AiLocalCoreError,
    AuthError,
    ConfigError,
    ConnectionFailed,
    InvalidInput,
    InvalidResponse,
    ModelNotFound,
    OllamaError,
    ServerBusy,
    Timeout,
)
from ai_local_core.ollama.client import error_from_response

ALL_ERRORS = [
    AiLocalCoreError,
    InvalidInput,
    ConfigError,
    OllamaError,
    ModelNotFound,
    ServerBusy,
    AuthError,
    ConnectionFailed,
    Timeout,
    InvalidResponse,
]


def test_one_hierarchy_with_unique_types_and_exit_codes() -> None:
    assert all(issubclass(cls, AiLocalCoreError) for cls in ALL_ERRORS)
    assert all(issubclass(cls, OllamaError) for cls in ALL_ERRORS[4:])
    types = [cls.error_type for cls in ALL_ERRORS]
    codes = [cls.exit_code for cls in ALL_ERRORS]
    assert len(set(types)) == len(types)
    assert len(set(codes)) == len(codes)
    assert all(t.islower() and " " not in t for t in types)
    assert {cls.exit_code for cls in ALL_ERRORS[3:]} == set(range(10, 17))


def test_error_carries_status_message_and_contract_dict() -> None:
    error = ServerBusy("queue full", status=503, retryable=True)
    assert str(error) == "queue full"
    assert error.status == 503
    assert error.to_dict() == {"type": "server_busy", "message": "queue full"}
    assert repr(error) == "ServerBusy('queue full', status=503)"


def test_note_attempts_appends_once_and_only_for_repeats() -> None:
    error = ConnectionFailed("cannot connect")
    error.note_attempts(1)
    assert error.message == "cannot connect"
    error.note_attempts(3)
    error.note_attempts(3)
    assert error.message == "cannot connect (after 3 attempts)"
    assert error.attempts == 3


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable", "fragment"),
    [
        (
            404,
            '{"error": "model \\"x\\" not found, try pulling it first"}',
            ModelNotFound,
            False,
            "try pulling",
        ),
        (404, "404 page not found", OllamaError, False, "endpoint not found"),
        (400, '{"error": "\\"e\\" does not support chat"}', OllamaError, False, "does not support"),
        (500, '{"error": "boom"}', OllamaError, False, "boom"),
        (
            503,
            '{"error": "server busy, please try again.  maximum pending requests exceeded"}',
            ServerBusy,
            True,
            "server busy",
        ),
        (
            429,
            '{"error": {"message": "slow down", "type": "rate_limit"}}',
            ServerBusy,
            True,
            "slow down",
        ),
        (502, "<html>bad gateway</html>", ConnectionFailed, False, "bad gateway"),
        (504, "", Timeout, False, "gateway timeout"),
        (401, '{"error": "unauthorized"}', AuthError, False, "401 Unauthorized: unauthorized"),
        (403, "", AuthError, False, "Host/Origin check"),
        (403, "denied by policy", AuthError, False, "403 Forbidden: denied by policy"),
    ],
)
def test_error_from_response(
    status: int, body: str, cls: type[OllamaError], retryable: bool, fragment: str
) -> None:
    error = error_from_response(status, body.encode(), what="chat")
    assert type(error) is cls
    assert error.status == status
    assert error.retryable is retryable
    assert fragment in error.message


def test_http_statuses_for_the_api_server() -> None:
    assert InvalidInput.http_status == 400
    assert ModelNotFound.http_status == 404
    assert ServerBusy.http_status == 503
    assert Timeout.http_status == 504
    assert {ConnectionFailed.http_status, InvalidResponse.http_status, AuthError.http_status} == {
        502
    }
