"""Transient failures are retried with tenacity on a real loopback server; others are not."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from gptunnel_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    GPTunnelClient,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from gptunnel_async._sansio.retries import RETRY_AFTER_CAP

from . import faults
from .conftest import API_KEY, ScriptedAPI, task_json

DONE = task_json(status="done", percent=100)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_transient_statuses_are_retried_until_success(
    status: int, client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((status, "busy", {}), (status, "busy", {}), DONE)
    task = await client.get_result("t")
    assert task.is_done
    assert len(api.requests) == 3
    assert len(recorded_sleeps) == 2


async def test_backoff_grows_exponentially_with_bounded_jitter(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((503, "", {}), (503, "", {}), (503, "", {}), DONE)
    await client.get_result("t")
    assert len(recorded_sleeps) == 3
    for attempt, pause in enumerate(recorded_sleeps):
        nominal = 0.5 * 2**attempt
        assert nominal <= pause <= nominal + 0.25


async def test_retries_run_out_with_the_last_typed_error(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((502, "bad gateway", {}))
    with pytest.raises(ServerError) as caught:
        await client.get_result("t")
    assert caught.value.status_code == 502
    assert len(api.requests) == client._transport.max_retries + 1 == 4


async def test_max_retries_zero_means_one_attempt(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((503, "", {}))
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, max_retries=0) as client:
        with pytest.raises(ServerError):
            await client.get_result("t")
    assert len(api.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 501])
async def test_non_transient_statuses_are_never_retried(
    status: int, client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((status, {"error": {"message": "no"}}, {}), DONE)
    with pytest.raises(APIError) as caught:
        await client.get_result("t")
    assert caught.value.status_code == status
    assert len(api.requests) == 1
    assert recorded_sleeps == []


async def test_retry_after_seconds_is_honoured(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((429, "", {"Retry-After": "7"}), DONE)
    await client.get_result("t")
    assert recorded_sleeps == [7.0]


async def test_retry_after_http_date_is_honoured(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((503, "", {"Retry-After": "Thu, 01 Jan 2099 00:00:00 GMT"}), DONE)
    await client.get_result("t")
    assert recorded_sleeps == [RETRY_AFTER_CAP]


@pytest.mark.parametrize(
    "header",
    [
        "1_000",
        "\u0663\u0660",
        "\uff13\uff10",
        "1.5",
        "+5",
        "1e3",
        "inf",
        "Tue, 31 Feb 2026 12:00:30 GMT",
    ],
)
async def test_an_unreadable_retry_after_is_ignored_not_read_as_seconds(
    header: str, client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    """``float()`` read ``"1_000"`` and ``"1e3"`` as the whole 60 s cap, ``"٣٠"`` as 30 s:
    the retry now takes its usual first backoff, as with no hint at all."""
    api.script((429, "", {"Retry-After": header}), DONE)
    await client.get_result("t")
    (pause,) = recorded_sleeps
    assert 0.5 <= pause <= 0.75


async def test_retry_after_is_capped(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((429, "", {"Retry-After": "86400"}), DONE)
    await client.get_result("t")
    assert recorded_sleeps == [RETRY_AFTER_CAP]


async def test_rate_limit_that_persists_raises_rate_limit_error_with_retry_after(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((429, {"error": {"message": "slow down"}}, {"Retry-After": "2"}))
    with pytest.raises(RateLimitError) as caught:
        await client.get_result("t")
    assert caught.value.retry_after == 2.0
    assert caught.value.message == "slow down"


async def test_dropped_connections_are_retried_then_raise_connection_error(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script("reset")
    with pytest.raises(APIConnectionError, match="disconnected"):
        await client.get_result("t")
    # aiohttp itself resends once on a dropped keep-alive connection; the SDK adds 3 retries.
    assert len(recorded_sleeps) == 3
    assert len(api.requests) >= 4


async def test_a_refused_connection_is_a_connection_error(recorded_sleeps: list[float]) -> None:
    async with GPTunnelClient(api_key="k", base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_result("t")
    assert "k" not in str(caught.value).split()


async def test_a_stalled_request_times_out_and_is_retried(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    # The retry's answer comes at once: a second of timeout is ample for it even on a
    # loaded machine, so exactly one timeout is seen.
    api.script(faults.stall(), DONE)
    async with GPTunnelClient(api_key="k", base_url=api.base_url, timeout=1.0) as client:
        task = await client.get_result("t")
    assert task.is_done
    assert len(api.requests) == 2


async def test_timeouts_that_persist_raise_api_timeout_error(
    api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response(DONE)

    api.script(stall)
    async with GPTunnelClient(
        api_key="k", base_url=api.base_url, timeout=0.05, max_retries=1
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.get_result("t")
    assert len(api.requests) == 2


async def test_each_retry_logs_a_warning_with_reason_and_delay(
    client: GPTunnelClient,
    api: ScriptedAPI,
    recorded_sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.script((503, "", {"Retry-After": "3"}), DONE)
    with caplog.at_level(logging.DEBUG, logger="gptunnel_async"):
        await client.get_result("t")
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "503" in record.getMessage()
    assert "3.00s" in record.getMessage()
    assert API_KEY not in caplog.text


async def test_create_is_not_retried_after_a_server_error(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((500, "", {}), task_json(status="idle"))
    with pytest.raises(ServerError):
        await client.faceswap.create("https://a/1.png", "https://a/2.png")
    assert len(api.requests) == 1


async def test_create_is_retried_when_the_server_refused_it(
    client: GPTunnelClient, api: ScriptedAPI, recorded_sleeps: list[float]
) -> None:
    api.script((429, "", {"Retry-After": "1"}), (503, "", {}), task_json(status="idle"))
    task = await client.faceswap.create("https://a/1.png", "https://a/2.png")
    assert task.status == "idle"
    assert len(api.requests) == 3


async def test_not_found_is_raised_at_once(client: GPTunnelClient, api: ScriptedAPI) -> None:
    api.script((404, {"error": {"message": "task not found", "type": "not_found"}}, {}))
    with pytest.raises(NotFoundError, match="task not found"):
        await client.get_result("t")
