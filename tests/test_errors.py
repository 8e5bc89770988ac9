"""HTTP answers to typed errors: the class by status, the fields from the body when it parses."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from gptunnel_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GPTunnelError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    Task,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async._sansio.responses import error_from_response, structure
from gptunnel_async._sansio.retries import (
    RETRY_AFTER_CAP,
    honoured_retry_after,
    is_transient,
    parse_retry_after,
)

from .conftest import task_json


def error_body(message: str, type_: str, param: str | None = None) -> bytes:
    fields = {"message": message, "type": type_, "param": param, "code": None}
    return json.dumps({"error": fields}).encode()


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, InsufficientBalanceError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (408, APITimeoutError),
        (409, APIError),
        (422, APIError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (501, ServerError),
    ],
)
def test_status_chooses_the_error_class(status: int, cls: type[GPTunnelError]) -> None:
    error = error_from_response(status, {}, b"whatever")
    assert type(error) is cls
    assert isinstance(error, GPTunnelError)


def test_documented_error_body_fills_the_fields() -> None:
    body = error_body("'taskId' is a required property", "invalid_request_error", "taskId")
    error = error_from_response(400, {}, body)
    assert isinstance(error, BadRequestError)
    assert error.status_code == 400
    assert error.message == "'taskId' is a required property"
    assert error.type == "invalid_request_error"
    assert error.param == "taskId"
    assert error.code is None
    assert "invalid_request_error" in str(error)


def test_unparseable_error_body_gives_shortened_raw_text() -> None:
    body = b"{error: {message: 'Organization balance is too low'" + b" x" * 500
    error = error_from_response(402, {}, body)
    assert isinstance(error, InsufficientBalanceError)
    assert error.message.startswith("{error: {message: 'Organization balance is too low'")
    assert len(error.message) <= 200
    assert error.type is None


def test_empty_error_body_still_says_the_status() -> None:
    assert error_from_response(503, {}, b"").message == "HTTP 503"


def test_secret_echoed_in_an_error_body_is_masked() -> None:
    error = error_from_response(
        401, {}, error_body("bad key sk-secret", "unauthorized"), secret="sk-secret"
    )
    assert "sk-secret" not in str(error)
    assert "***" in error.message


def test_rate_limit_carries_retry_after_seconds() -> None:
    error = error_from_response(429, {"Retry-After": "7"}, b"")
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 7.0


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Tue, 24 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 24 Nov 2026 11:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "inf", "nan"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("digits", [309, 400, 4000])
def test_a_retry_after_of_more_seconds_than_a_float_holds_is_a_long_pause(digits: int) -> None:
    """Valid delta-seconds, only too long for a float: it was ignored as unreadable, and
    a wait read again at its own pace, as if the server had not asked for a pause."""
    hint = parse_retry_after("9" * digits)
    assert hint is not None and math.isfinite(hint)
    assert honoured_retry_after(hint) == RETRY_AFTER_CAP


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (APIConnectionError("reset"), True),
        (APITimeoutError("slow"), True),
        (error_from_response(408, {}, b""), True),
        (error_from_response(429, {}, b""), True),
        (error_from_response(500, {}, b""), True),
        (error_from_response(502, {}, b""), True),
        (error_from_response(503, {}, b""), True),
        (error_from_response(504, {}, b""), True),
        (error_from_response(501, {}, b""), False),
        (error_from_response(400, {}, b""), False),
        (error_from_response(401, {}, b""), False),
        (error_from_response(402, {}, b""), False),
        (error_from_response(403, {}, b""), False),
        (error_from_response(404, {}, b""), False),
    ],
)
def test_only_transient_failures_are_retryable(error: GPTunnelError, transient: bool) -> None:
    assert is_transient(error) is transient


def test_task_failed_error_carries_the_task_and_its_error() -> None:
    task = structure(Task, task_json(status="failed", error="no face found"))
    error = TaskFailedError(task)
    assert error.task_id == "task-1"
    assert error.task is task
    assert "no face found" in str(error)


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        ("failed", "no face found", "task task-1 failed: no face found"),
        ("FAILED", "no face found", "task task-1 failed: no face found"),
        ("error", None, "task task-1 failed (error): no error message given"),
        ("cancelled", "by the user", "task task-1 failed (cancelled): by the user"),
    ],
)
def test_a_failed_task_s_text_says_it_failed_whatever_its_status(
    status: str, error: str | None, text: str
) -> None:
    """ "task task-1 error: the task failed" read as if the SDK itself had failed."""
    assert str(TaskFailedError(Task(id="task-1", status=status, error=error))) == text


def test_wait_timeout_is_also_a_builtin_timeout() -> None:
    error = WaitTimeoutError("task-1", 5.0, None)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, GPTunnelError)
    assert error.task is None


def test_configuration_error_is_also_a_value_error() -> None:
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(ConfigurationError, GPTunnelError)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            NotFoundError("Task not found", status_code=200, type="not_found", code="4"),
            "code 4 not_found: Task not found",
        ),
        (
            NotFoundError("Task not found", status_code=404, type="not_found_error"),
            "404 not_found_error: Task not found",
        ),
        (
            AuthenticationError("Unauthorized", status_code=401, type="unauthorized"),
            "401 unauthorized: Unauthorized "
            "(check the API key: GPTUNNEL_API_KEY, or api_key= or --api-key)",
        ),
        (
            AuthenticationError("bad token", status_code=200, type="invalid_token", code="2"),
            "code 2 invalid_token: bad token "
            "(check the API key: GPTUNNEL_API_KEY, or api_key= or --api-key)",
        ),
        (APIError("odd", status_code=200), "200: odd"),
    ],
)
def test_an_api_errors_text_names_the_status_or_media_code_and_what_to_check(
    error: APIError, text: str
) -> None:
    assert str(error) == text
    assert "check the API key" not in error.message  # the API's own words stay apart


@pytest.mark.parametrize(
    ("body", "hinted"),
    [
        (b"404: Not Found", True),
        (b"<html><body>Not Found</body></html>", True),
        (b"", True),
        (b'{"error": {"message": "Task not found", "type": "not_found_error"}}', False),
    ],
)
def test_a_404_that_is_no_json_error_points_at_base_url(body: bytes, hinted: bool) -> None:
    error = error_from_response(404, {}, body)
    assert isinstance(error, NotFoundError)
    assert ("check base_url" in str(error)) is hinted
    assert "check base_url" not in error.message


KEY = "sk-redirect-0123456789abcdef"


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("https://gptunnel.ru/v1/faceswap/result?taskId=t1", "https://gptunnel.ru/v1/"),
        ("/v2/faceswap/result", "/v2/faceswap/result"),
        (f"https://evil.example/?key={KEY}", "key=***"),
    ],
)
def test_an_api_redirect_says_where_it_points_and_that_it_was_not_followed(
    status: int, location: str, shown: str
) -> None:
    """An ``http://`` base_url the server sends to ``https://``, or a moved API, read as a
    bare ``301: HTTP 301``; its ``Location`` (the key masked) now says what to change."""
    error = error_from_response(status, {"Location": location}, b"", secret=KEY)
    assert type(error) is APIError
    assert shown in str(error) and "follow no redirect" in str(error)
    assert KEY not in str(error)


@pytest.mark.parametrize(
    ("status", "headers", "result_file"),
    [
        (301, {}, False),
        (301, {"Location": ""}, False),
        (304, {}, False),
        (302, {"Location": "https://s.example/x.png"}, True),
        (404, {"Location": "https://gptunnel.ru/v1"}, False),
    ],
)
def test_only_an_api_redirect_with_a_location_gets_the_redirect_hint(
    status: int, headers: dict[str, str], result_file: bool
) -> None:
    error = error_from_response(status, headers, b"", result_file=result_file)
    assert "redirect" not in str(error)
