"""Fault injection: a real loopback server answers each request with a chosen fault, and the
SDK must retry and recover, or raise the right typed error after the right number of attempts.

Faults come from :mod:`tests.faults` and are queued one request at a time on ``ScriptedAPI``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gptunnel_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GPTunnelClient,
    GPTunnelError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    PollPolicy,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    Task,
    UsageError,
    WaitTimeoutError,
)
from gptunnel_async._sansio.responses import MAX_ANSWER_BYTES

from . import faults
from .conftest import (
    API_KEY,
    FAST,
    HANG_GUARD,
    ScriptedAPI,
    client_tasks,
    connections_in_use,
    task_json,
)
from .test_downloads import folder_listing

DONE = task_json(status="done", percent=100)
RUNNING = task_json(status="running", percent=40)
TASK_BYTES = json.dumps(RUNNING).encode()
RETRIES = 2
REQUEST_TIMEOUT = 0.2


@pytest.fixture
async def impatient(api: ScriptedAPI) -> AsyncIterator[GPTunnelClient]:
    """A client whose requests give up after 0.2 s and are retried twice."""
    async with GPTunnelClient(
        api_key=API_KEY,
        base_url=api.base_url,
        timeout=REQUEST_TIMEOUT,
        max_retries=RETRIES,
        poll_policy=FAST,
    ) as client:
        yield client


# Each transient fault, the error it raises once retries run out, and how many requests
# one attempt makes: aiohttp itself resends an idempotent request once when the server
# drops the connection, before the SDK sees a failure.
TRANSIENT = [
    pytest.param(faults.answer(500, "Internal Server Error"), ServerError, 1, id="500"),
    pytest.param(faults.html(502), ServerError, 1, id="502-html"),
    pytest.param(
        faults.answer(503, {"error": {"message": "maintenance"}}), ServerError, 1, id="503"
    ),
    pytest.param(faults.answer(504), ServerError, 1, id="504-empty"),
    pytest.param(faults.answer(408, "Request Timeout"), APITimeoutError, 1, id="408"),
    pytest.param(faults.rate_limited("1"), RateLimitError, 1, id="429-seconds"),
    pytest.param(
        faults.rate_limited("Thu, 01 Jan 2099 00:00:00 GMT"), RateLimitError, 1, id="429-date"
    ),
    pytest.param(faults.reset(), APIConnectionError, 2, id="reset"),
    pytest.param(faults.truncated(TASK_BYTES), APIConnectionError, 1, id="truncated-body"),
    pytest.param(faults.not_http(), APIConnectionError, 1, id="not-http"),
    pytest.param(faults.stall(), APITimeoutError, 1, id="stall"),
    pytest.param(faults.stall_mid_body(TASK_BYTES), APITimeoutError, 1, id="stall-mid-body"),
]

NOT_A_TASK = [
    pytest.param(faults.html(200), id="html"),
    pytest.param(faults.garbage(200), id="garbage"),
    pytest.param(faults.answer(200, ""), id="empty"),
    pytest.param(faults.answer(200, "[1, 2]"), id="json-list"),
    pytest.param(faults.answer(200, '{"id": "task-1", "sta'), id="cut-json"),
    pytest.param(faults.answer(200, {"error": {"message": "no"}}), id="error-object"),
]

CLIENT_ERRORS = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (402, InsufficientBalanceError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
]


# -- one read: get_result ---------------------------------------------------------------


@pytest.mark.parametrize(("fault", "error", "per_attempt"), TRANSIENT)
async def test_a_transient_fault_is_retried_and_recovered(
    fault: faults.Reply,
    error: type[GPTunnelError],
    per_attempt: int,
    impatient: GPTunnelClient,
    api: ScriptedAPI,
    recorded_sleeps: list[float],
) -> None:
    api.script(*[fault] * RETRIES * per_attempt, DONE)
    task = await impatient.get_result("task-1")
    assert task.is_done
    assert len(recorded_sleeps) == RETRIES
    assert len(api.requests) == RETRIES * per_attempt + 1


@pytest.mark.parametrize(("fault", "error", "per_attempt"), TRANSIENT)
async def test_a_transient_fault_that_persists_raises_its_typed_error_after_every_attempt(
    fault: faults.Reply,
    error: type[GPTunnelError],
    per_attempt: int,
    impatient: GPTunnelClient,
    api: ScriptedAPI,
    recorded_sleeps: list[float],
) -> None:
    api.script(fault)
    with pytest.raises(error) as caught:
        await impatient.get_result("task-1")
    assert type(caught.value) is error
    assert len(recorded_sleeps) == RETRIES
    assert len(api.requests) == (RETRIES + 1) * per_attempt


@pytest.mark.parametrize("fault", NOT_A_TASK)
async def test_a_2xx_answer_that_is_not_a_task_raises_at_once(
    fault: faults.Reply, client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script(fault, DONE)
    with pytest.raises(ResponseDecodeError) as caught:
        await client.get_result("task-1")
    assert caught.value.status_code == 200
    assert len(api.requests) == 1
    assert recorded_sleeps == []


@pytest.mark.parametrize(
    "body",
    [faults.HTML_PAGE, b"\x00\xff\xfe garbage", "{error: {message: 'Unauthorized'", ""],
    ids=["html", "garbage", "broken-json", "empty"],
)
@pytest.mark.parametrize(("status", "error"), CLIENT_ERRORS)
async def test_an_error_body_that_is_not_json_keeps_the_status_class_and_is_not_retried(
    status: int,
    error: type[APIError],
    body: str | bytes,
    client: GPTunnelClient,
    api: ScriptedAPI,
    recorded_sleeps: list[float],
) -> None:
    api.script(faults.answer(status, body), DONE)
    with pytest.raises(error) as caught:
        await client.get_result("task-1")
    assert caught.value.status_code == status
    assert caught.value.type is None
    assert 0 < len(caught.value.message) <= 200
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "retry_after", ["-5", "1e309", "nan", "garbage", "", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
async def test_a_retry_after_that_makes_no_sense_falls_back_to_the_backoff(
    retry_after: str, client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script(faults.rate_limited(retry_after), DONE)
    await client.get_result("task-1")
    [pause] = recorded_sleeps
    assert 0.5 <= pause <= 0.75


async def test_a_retry_after_date_is_counted_from_now(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    api.script(faults.rate_limited(soon), DONE)
    await client.get_result("task-1")
    [pause] = recorded_sleeps
    assert 15 <= pause <= 20


async def test_an_answer_over_the_size_cap_is_refused_unread(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(faults.answer(200, b'{"id": "' + b"x" * MAX_ANSWER_BYTES + b'"}'))
    with pytest.raises(ResponseDecodeError, match="over") as caught:
        await client.get_result("task-1")
    assert len(caught.value.body) <= 200


async def test_a_huge_error_message_is_cut_short(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script(faults.answer(400, {"error": {"message": "no " * 100_000, "type": "x" * 10_000}}))
    with pytest.raises(BadRequestError) as caught:
        await client.get_result("task-1")
    assert len(caught.value.message) <= 1000
    assert len(str(caught.value)) <= 1500


@pytest.mark.parametrize("depth", [50, 1_000, 100_000])
async def test_deeply_nested_json_is_a_typed_outcome_never_a_crash(
    depth: int, client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    nested = "[" * depth + "]" * depth
    api.script(
        faults.answer(200, nested),
        faults.answer(200, f'{{"id": "t", "status": "failed", "error": {nested}}}'),
        faults.answer(200, f'{{"id": "t", "status": "done", "actions": {nested}}}'),
        faults.answer(400, f'{{"error": {{"message": {nested}, "code": {nested}}}}}'),
    )
    outcomes: list[object] = []
    for _ in range(4):
        try:
            outcomes.append(await client.get_result("t"))
        except GPTunnelError as exc:
            outcomes.append(exc)
    assert isinstance(outcomes[0], ResponseDecodeError)
    assert all(isinstance(outcome, Task | ResponseDecodeError) for outcome in outcomes[1:3])
    assert isinstance(outcomes[3], BadRequestError)


async def test_a_borrowed_session_that_raises_for_status_still_gives_typed_errors(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script(faults.answer(401, {"error": {"message": "Unauthorized"}}))
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        client = GPTunnelClient(api_key=API_KEY, base_url=api.base_url, session=session)
        with pytest.raises(AuthenticationError):
            await client.get_result("task-1")
    assert len(api.requests) == 1


@pytest.mark.filterwarnings("ignore:.*auth.*:DeprecationWarning")  # aiohttp 3.14's, of auth=
async def test_a_request_aiohttp_will_not_build_is_a_configuration_error(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    """A borrowed session made with ``auth=``: aiohttp will not combine it with the key's
    ``Authorization`` header, and its bare ``ValueError`` left every call. Now a
    ``ConfigurationError``, not retried (it would be refused again), nothing sent, and
    its rendering, locals and all, shows no key."""
    api.script(DONE)
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth("user", "pw")) as session:
        client = GPTunnelClient(api_key=API_KEY, base_url=api.base_url, session=session)
        with pytest.raises(ConfigurationError, match="cannot be sent: aiohttp refused") as caught:
            await client.get_result("task-1")
        assert recorded_sleeps == []  # no retry
        with pytest.raises(ConfigurationError, match="auth="):
            await client.wait_for_result("task-1", timeout=HANG_GUARD)
    assert api.requests == []
    shown = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert API_KEY not in shown


async def test_a_borrowed_session_with_a_base_url_is_used_or_refused_with_a_typed_error(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    """A session made with ``base_url=`` (for the application's own calls): older
    aiohttp (3.10, the lowest supported) asserts that every URL it is given is relative,
    and its bare ``AssertionError`` (no message) left every call. Where aiohttp takes the
    SDK's absolute URLs beside it, the call is made; where it does not, a
    ``ConfigurationError`` that names ``base_url=``, not retried, nothing sent."""
    api.script(DONE)
    origin = str(URL(api.base_url).origin())
    async with aiohttp.ClientSession(base_url=origin) as session:
        client = GPTunnelClient(api_key=API_KEY, base_url=api.base_url, session=session)
        [outcome] = await asyncio.gather(client.get_result("task-1"), return_exceptions=True)
    if isinstance(outcome, Task):
        assert outcome.is_done
    else:
        assert isinstance(outcome, ConfigurationError), repr(outcome)
        assert "base_url=" in str(outcome)
        assert recorded_sleeps == []
        assert api.requests == []


def corrupt_gzip(status: int) -> faults.Reply:
    """An answer of ``status`` whose body says it is gzip and is not."""

    async def reply(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": "gzip"}
        return web.Response(status=status, body=b"\x1f\x8b not gzip", headers=headers)

    return reply


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (404, NotFoundError), (429, RateLimitError), (503, ServerError)],
)
@pytest.mark.parametrize("unreadable", [corrupt_gzip, partial(faults.truncated, b"{" * 100)])
async def test_an_error_status_whose_body_cannot_be_read_is_still_that_error(
    api: ScriptedAPI, tmp_path: Path, status: int, error: type[APIError], unreadable: Any
) -> None:
    """The status says what an answer is; its body only adds detail. A 401 whose body
    was cut, or not the gzip it claimed, was an ``APIConnectionError`` (retried, the 401
    never told), a storage 404 not the expired result's ``NotFoundError``."""
    api.script(unreadable(status))
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, max_retries=0) as client:
        with pytest.raises(error) as read:
            await client.get_result("task-1")
        with pytest.raises(error) as downloaded:
            await client.download_result(f"{api.origin}files/r.png", tmp_path)
    assert read.value.status_code == downloaded.value.status_code == status
    assert folder_listing(tmp_path) == []


def stalled_body(status: int) -> faults.Reply:
    """An answer of ``status`` that sends the start of its body, then nothing more."""

    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"{" * 10)
        await asyncio.Event().wait()
        raise AssertionError("unreachable: the wait above only ends by cancellation")

    return reply


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (404, NotFoundError), (429, RateLimitError), (503, ServerError)],
)
async def test_an_error_status_whose_body_stalls_is_still_that_error(
    api: ScriptedAPI,
    tmp_path: Path,
    recorded_sleeps: list[float],
    status: int,
    error: type[APIError],
) -> None:
    """A body that stops coming (a proxy's page) ran into the request's timeout: a 401
    was an ``APITimeoutError``, retried, and never told. Its status is told, with what
    came of the body, within half the timeout."""
    api.script(stalled_body(status), stalled_body(status))
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, max_retries=0, timeout=REQUEST_TIMEOUT
    ) as client:
        with pytest.raises(error, match=r"\{\{\{") as read:
            await client.get_result("task-1")
        with pytest.raises(error) as downloaded:
            await client.download_result(f"{api.origin}files/r.png", tmp_path)
    assert read.value.status_code == downloaded.value.status_code == status
    assert folder_listing(tmp_path) == []


async def test_a_redirect_from_the_api_is_an_error_and_not_followed(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(faults.answer(302, "", {"Location": api.origin + "elsewhere"}), DONE)
    with pytest.raises(APIError) as caught:
        await client.get_result("task-1")
    assert caught.value.status_code == 302
    assert [r["path"] for r in api.requests] == ["/v1/faceswap/result"]


# -- waits ride through every transient fault -------------------------------------------


@pytest.mark.parametrize(
    "fault", [pytest.param(case.values[0], id=case.id) for case in TRANSIENT + NOT_A_TASK]
)
async def test_a_wait_rides_through_each_fault(
    fault: faults.Reply, impatient: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(RUNNING, fault, fault, DONE)
    events = [event async for event in impatient.wait_for_result("task-1")]
    assert [(e.status, e.percent) for e in events] == [("running", 40), ("done", 100)]


async def test_a_failed_read_logs_a_warning_with_its_reason_and_the_next_poll(
    client: GPTunnelClient,
    api: ScriptedAPI,
    recorded_sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.script(faults.html(200), RUNNING, DONE)
    with caplog.at_level(logging.DEBUG, logger="gptunnel_async"):
        await client.wait_for_result("task-1")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "task task-1: read failed (the answer is not JSON: Expecting value: line 1 "
            "column 1 (char 0)); polling again in 0.01s",
        ),
        ("DEBUG", "task task-1: status=running percent=40 read=2 next_wait=0.02s"),
        ("DEBUG", "task task-1: status=done percent=100 read=3 finished"),
    ]


@pytest.mark.parametrize(("status", "error"), CLIENT_ERRORS)
async def test_a_client_error_with_a_body_that_is_not_json_ends_a_wait_at_once(
    status: int, error: type[APIError], client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(RUNNING, faults.html(status), DONE)
    with pytest.raises(error):
        await client.wait_for_result("task-1")
    assert len(api.requests) == 2


async def test_a_stalled_body_mid_stream_is_retried_within_a_wait(
    impatient: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(RUNNING, faults.stall_mid_body(TASK_BYTES), DONE)
    task = await impatient.wait_for_result("task-1")
    assert task.is_done
    assert len(api.requests) == 3


async def test_a_stalled_body_past_the_deadline_ends_the_wait_on_time(
    patient: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(RUNNING, faults.stall_mid_body(TASK_BYTES))
    # The body never ends and the request would wait an hour: only the deadline ends it.
    async with asyncio.timeout(HANG_GUARD):
        with pytest.raises(WaitTimeoutError) as caught:
            await patient.wait_for_result("task-1", timeout=0.3)
    assert caught.value.task is not None
    assert caught.value.task.percent == 40


# -- the deadline against retry pauses --------------------------------------------------


async def test_the_deadline_cuts_a_retry_pause_short(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(faults.answer(503, "", {"Retry-After": "60"}))
    async with asyncio.timeout(HANG_GUARD):  # shorter than the 60 s pause asked for
        with pytest.raises(WaitTimeoutError):
            await client.wait_for_result("task-1", timeout=0.2)
    assert len(api.requests) == 1


@pytest.mark.parametrize("deadline", [0.05, 0.095, 0.1, 0.105, 0.15])
async def test_the_deadline_holds_wherever_it_lands_among_retry_pauses(
    deadline: float, client: GPTunnelClient, api: ScriptedAPI, hundredfold: None
) -> None:
    api.script(faults.answer(503, "", {"Retry-After": "10"}))  # pauses of 0.1 s, scaled
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_result("task-1", timeout=deadline)
    assert caught.value.task is None
    # A read sent just before the deadline may reach the server just after it: let it
    # land, then watch for longer than one scaled pause.
    await asyncio.sleep(0.12)
    sent = len(api.requests)
    await asyncio.sleep(0.12)
    assert len(api.requests) == sent  # nothing keeps polling after the wait ended
    assert client_tasks() == []


async def test_a_coarse_clock_still_ends_a_wait_with_wait_timeout_error(
    client: GPTunnelClient, api: ScriptedAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timers may fire up to one clock tick early (15.6 ms on Windows): the deadline's
    # expiry must be recognised by the timeout itself, not by re-reading the clock.
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "_clock_resolution", 0.05)
    api.script(faults.stall())
    waiting = asyncio.ensure_future(client.wait_for_result("task-1", timeout=0.2))
    await asyncio.sleep(0.17)  # wakes the loop within one "tick" of the deadline
    with pytest.raises(WaitTimeoutError):
        await waiting


# -- load ------------------------------------------------------------------------------


async def test_requests_queued_for_a_busy_pool_do_not_time_out_before_they_are_sent(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)
        return web.json_response({**DONE, "id": request.query["taskId"]})

    api.script(slow)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        # The last request queues 1.8 s, beyond its 1.5 s timeout, which leaves each
        # answer of 0.2 s a wide margin on a loaded machine.
        client = GPTunnelClient(
            api_key=API_KEY, base_url=api.base_url, timeout=1.5, session=session
        )
        tasks = await asyncio.gather(*(client.get_result(f"t{n}") for n in range(10)))
    assert all(task.is_done for task in tasks)
    assert recorded_sleeps == []  # none timed out while the one connection was busy
    assert len(api.requests) == 10


# -- lifecycle: cancellation and closing ------------------------------------------------


async def test_cancelling_a_wait_at_any_await_point_releases_its_connection(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    script = [
        RUNNING,
        faults.answer(503),
        faults.truncated(TASK_BYTES),
        task_json(status="running", percent=70),
        faults.stall(),
    ]

    async def ticks_until_stalled() -> int:
        api.replies[:] = list(script)
        waiting = asyncio.ensure_future(client.wait_for_result("task-1"))
        ticks = 0
        while api.in_flight == 0 or len(api.requests) < len(script):
            await asyncio.sleep(0)
            ticks += 1
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return ticks

    total = await ticks_until_stalled()
    assert total > 20  # the script really spans many await points
    for ticks in range(total + 3):
        api.replies[:] = list(script)
        waiting = asyncio.ensure_future(client.wait_for_result("task-1"))
        for _ in range(ticks):
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert connections_in_use(client) == 0, f"a connection held after {ticks} ticks"
        assert client_tasks() == [], f"a task left after {ticks} ticks"


async def test_closing_the_client_ends_its_waits_with_a_usage_error(
    client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(RUNNING)
    first_event = asyncio.Event()
    waiting = asyncio.ensure_future(
        client.wait_for_result("task-1", timeout=None, on_progress=lambda _: first_event.set())
    )
    await first_event.wait()
    await client.close()
    with pytest.raises(UsageError, match="closed"):
        await asyncio.wait_for(waiting, timeout=5)


async def test_closing_the_client_mid_request_ends_the_wait_too(
    client: GPTunnelClient, api: ScriptedAPI, instant: None
) -> None:
    api.script(faults.stall())
    waiting = asyncio.ensure_future(client.wait_for_result("task-1", timeout=None))
    while api.in_flight == 0:  # noqa: ASYNC110 - the server has no event to offer
        await asyncio.sleep(0.001)
    await client.close()
    with pytest.raises(UsageError):
        await asyncio.wait_for(waiting, timeout=5)


def _call(client: GPTunnelClient, how: str) -> asyncio.Future[Task]:
    """A read of ``task-1`` by ``get_result`` or by a wait without a deadline."""
    if how == "get_result":
        return asyncio.ensure_future(client.get_result("task-1"))
    return asyncio.ensure_future(client.wait_for_result("task-1", timeout=None))


@pytest.mark.parametrize("how", ["get_result", "wait_for_result"])
async def test_closing_the_client_ends_a_retry_pause_for_retry_after(
    client: GPTunnelClient, api: ScriptedAPI, how: str
) -> None:
    api.script((503, "busy", {"Retry-After": "60"}))
    calling = _call(client, how)
    while not api.requests:  # noqa: ASYNC110 - the server has no event to offer
        await asyncio.sleep(0.001)
    await client.close()
    async with asyncio.timeout(HANG_GUARD):  # a guard only: the pause asked for is 60 s
        with pytest.raises(UsageError, match="closed"):
            await calling
    assert len(api.requests) == 1
    assert client_tasks() == []


@pytest.mark.parametrize("how", ["get_result", "wait_for_result"])
async def test_closing_the_client_ends_a_request_in_flight_on_a_borrowed_session(
    api: ScriptedAPI, how: str
) -> None:
    api.script(faults.stall())
    async with aiohttp.ClientSession() as borrowed:
        client = GPTunnelClient(
            api_key=API_KEY, base_url=api.base_url, timeout=3600.0, session=borrowed
        )
        calling = _call(client, how)
        while api.in_flight == 0:  # noqa: ASYNC110 - the server has no event to offer
            await asyncio.sleep(0.001)
        await client.close()
        async with asyncio.timeout(HANG_GUARD):  # a guard only: the request may take 1 h
            with pytest.raises(UsageError, match="closed"):
                await calling
        assert not borrowed.closed  # the session is the caller's: still open
        assert client_tasks() == []
        assert borrowed.connector is not None and not borrowed.connector._acquired


async def test_closing_the_client_ends_a_download_in_flight_and_leaves_no_file(
    api: ScriptedAPI, tmp_path: Path
) -> None:
    api.script(faults.stall())
    async with aiohttp.ClientSession() as borrowed:
        client = GPTunnelClient(api_key=API_KEY, base_url=api.base_url, session=borrowed)
        dest = tmp_path / "result.png"
        url = f"{api.origin}files/result.png"
        downloading = asyncio.ensure_future(client.download_result(url, dest, timeout=None))
        while api.in_flight == 0:  # noqa: ASYNC110 - the server has no event to offer
            await asyncio.sleep(0.001)
        await client.close()
        async with asyncio.timeout(HANG_GUARD):  # a guard only: the download has no timeout
            with pytest.raises(UsageError, match="closed"):
                await downloading
    assert not dest.exists() and folder_listing(tmp_path) == []


async def test_closing_a_lent_session_ends_a_download_in_flight_within_the_timeout(
    api: ScriptedAPI, tmp_path: Path
) -> None:
    """The caller closes the session it lent while a download streams: aiohttp's read
    then waits forever, its own read timeout lost with the connection. Each read has
    the client's ``timeout`` all the same: the download ends soon after, typed, and
    leaves nothing, rather than at its deadline (never, with ``timeout=None``)."""
    api.script(faults.stall_mid_body(b"x" * 100_000))
    borrowed = aiohttp.ClientSession()
    client = GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, session=borrowed, timeout=REQUEST_TIMEOUT * 2
    )
    dest = tmp_path / "result.png"
    url = f"{api.origin}files/result.png"
    downloading = asyncio.ensure_future(client.download_result(url, dest, timeout=None))
    while api.in_flight == 0:  # noqa: ASYNC110 - the server has no event to offer
        await asyncio.sleep(0.001)
    await asyncio.sleep(REQUEST_TIMEOUT / 4)  # the body has started
    await borrowed.close()
    async with asyncio.timeout(HANG_GUARD):  # a guard only: the download has no timeout
        with pytest.raises(UsageError, match="session lent to this GPTunnelClient is closed"):
            await downloading  # its read timed out; the retry found the session closed
    await client.close()
    assert folder_listing(tmp_path) == []


async def test_a_policy_is_not_a_busy_loop_on_persistent_faults(
    impatient: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    policy = PollPolicy(initial=1.0, multiplier=1.0, max_interval=1.0, jitter=0.0, timeout=None)
    html = faults.answer(200, "<html>")  # not a task: a wait polls again, never retries
    api.script(html, html, html, DONE)
    task = await impatient.wait_for_result("task-1", policy=policy)
    assert task.is_done
    assert len(api.requests) == 4
    # None before the first read, then one per read, each the policy's interval (less
    # the moments since the read): neither a retry nor a tight loop.
    first, *between = recorded_sleeps
    assert first == 0
    assert len(between) == 3
    assert all(0.5 < pause <= 1.0 for pause in between)
