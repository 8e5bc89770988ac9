"""A read leaves no reference cycles behind, whatever its outcome: with thousands of waits,
every cycle is work for the garbage collector on every read.

Each test runs a call with the collector off and ``gc.DEBUG_SAVEALL`` on, then collects:
whatever was only reachable through a cycle lands in ``gc.garbage``, where the test looks
for the SDK's objects (and tenacity's, which runs its retries).
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from gptunnel_async import GPTunnelClient, GPTunnelError, PollPolicy

from . import faults
from .conftest import API_KEY, ScriptedAPI, task_json

DONE = task_json(status="done", percent=100)
RUNNING = task_json(status="running", percent=40)
OURS = ("gptunnel_async", "tenacity")


def is_ours(thing: Any) -> bool:
    """An object of the SDK or of tenacity, or a frame of their code."""
    if isinstance(thing, FrameType):
        return any(f"/{name}/" in thing.f_code.co_filename for name in OURS)
    return type(thing).__module__.split(".")[0] in OURS


@contextmanager
def cycles() -> Iterator[list[Any]]:
    """The SDK's objects that the block leaves only reachable through cycles."""
    found: list[Any] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found += [thing for thing in gc.garbage if is_ours(thing)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def outcome(call: Awaitable[Any]) -> None:
    with suppress(GPTunnelError):
        await call


Call = Callable[[GPTunnelClient], Awaitable[Any]]

QUICK = PollPolicy(initial=0.01, max_interval=0.01, timeout=0.5)


@pytest.mark.parametrize(
    ("replies", "call"),
    [
        pytest.param([DONE], lambda client: client.get_result("t"), id="read"),
        pytest.param([(503, "busy", {}), DONE], lambda c: c.get_result("t"), id="read-retried"),
        pytest.param([(503, "busy", {})], lambda c: c.get_result("t"), id="read-retries-run-out"),
        pytest.param(["reset"], lambda c: c.get_result("t"), id="read-connection-reset"),
        pytest.param([(400, "no", {})], lambda c: c.get_result("t"), id="read-bad-request"),
        pytest.param([(200, "<html>", {})], lambda c: c.get_result("t"), id="read-not-a-task"),
        pytest.param(
            [RUNNING, (503, "busy", {}), RUNNING, DONE],
            lambda c: c.wait_for_result("t", policy=QUICK),
            id="wait",
        ),
        pytest.param(
            [(503, "busy", {})], lambda c: c.wait_for_result("t", policy=QUICK), id="wait-timeout"
        ),
        # The deadline lands on a read in flight: the first one, or one being retried.
        pytest.param(
            [faults.stall()],
            lambda c: c.wait_for_result("t", policy=QUICK),
            id="wait-timeout-mid-read",
        ),
        pytest.param(
            [(503, "busy", {}), faults.stall()],
            lambda c: c.wait_for_result("t", policy=QUICK),
            id="wait-timeout-mid-retry",
        ),
        pytest.param(
            [task_json(status="failed", error="no")],
            lambda c: c.wait_for_result("t", policy=QUICK),
            id="wait-failed",
        ),
    ],
)
async def test_a_call_leaves_no_cycles_whatever_its_outcome(
    replies: list[Any], call: Call, api: ScriptedAPI, instant: None
) -> None:
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, max_retries=2) as client:
        api.script(*replies)
        await outcome(call(client))  # the first call builds what every later one reuses
        api.replies[:] = replies
        with cycles() as found:
            await outcome(call(client))
    assert found == []


def describe(found: list[Any]) -> list[str]:
    return [
        f"frame {thing.f_code.co_name}" if isinstance(thing, FrameType) else type(thing).__name__
        for thing in found
    ]


@pytest.mark.parametrize(
    "reply",
    [faults.answer(200, b"PNG"), faults.answer(503, "SlowDown"), faults.reset()],
    ids=["saved", "storage-error", "reset"],
)
async def test_a_download_leaves_no_cycles(
    reply: faults.Reply, api: ScriptedAPI, tmp_path: Path, instant: None
) -> None:
    api.script(reply)
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url, max_retries=1) as client:
        await outcome(client.download_result(api.origin + "r.png", tmp_path / "first.png"))
        with cycles() as found:
            await outcome(client.download_result(api.origin + "r.png", tmp_path / "r.png"))
    assert describe(found) == []
