"""One client, one event loop after another: a command line, a notebook or a test suite
calls ``asyncio.run`` again and again, and the client follows; two loops running at once
cannot share it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import aiohttp
import pytest

from gptunnel_async import UsageError
from gptunnel_async.fleet import InProcessBudget
from gptunnel_async.testing import FakeGPTunnel


@pytest.fixture
def fake() -> Iterator[FakeGPTunnel]:
    """An emulator on a background thread: it outlives the loops of the test."""
    with FakeGPTunnel() as emulator:
        yield emulator


def test_one_client_serves_one_asyncio_run_after_another(fake: FakeGPTunnel) -> None:
    client = fake.client()  # made outside any loop
    task_id = fake.script_task(steps=[("running", 40), ("done", 100)])

    first = asyncio.run(client.get_result(task_id))
    second = asyncio.run(client.wait_for_result(task_id, timeout=5))
    third = asyncio.run(client.balance())
    asyncio.run(client.close())

    assert first.status == "running"
    assert second.is_done
    assert third.balance >= 0
    assert client.closed


@pytest.mark.parametrize("budget", ["requests_per_second", "shared InProcessBudget"])
def test_a_paced_client_serves_one_asyncio_run_after_another(
    fake: FakeGPTunnel, budget: str
) -> None:
    """The budget's turn (an asyncio lock) belongs to the loop it first waited in: requests
    queued for it under a later ``asyncio.run`` raised a bare ``RuntimeError``."""
    if budget == "requests_per_second":
        client = fake.client(requests_per_second=50)
    else:
        client = fake.client(budget=InProcessBudget(50))

    async def several() -> list[object]:
        return await asyncio.gather(*(client.balance() for _ in range(4)), return_exceptions=True)

    try:
        rounds = [asyncio.run(several()) for _ in range(3)]
    finally:
        asyncio.run(client.close())

    assert [type(answer).__name__ for answers in rounds for answer in answers] == ["Balance"] * 12


def test_a_client_used_on_another_running_loop_is_a_usage_error(fake: FakeGPTunnel) -> None:
    client = fake.client()
    task_id = fake.script_task(steps=[("done", 100)])
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(client.get_result(task_id), other).result(5)
        with pytest.raises(UsageError, match="another running event loop"):
            asyncio.run(client.get_result(task_id))
        # the loop it belongs to still works
        task = asyncio.run_coroutine_threadsafe(client.get_result(task_id), other).result(5)
        assert task.is_done
        asyncio.run_coroutine_threadsafe(client.close(), other).result(5)
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()


def test_a_borrowed_session_of_a_finished_loop_is_a_usage_error(fake: FakeGPTunnel) -> None:
    async def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = asyncio.run(make_session())
    client = fake.client(session=session)
    task_id = fake.script_task(steps=[("done", 100)])
    try:
        with pytest.raises(UsageError, match="no longer running"):
            asyncio.run(client.get_result(task_id))
    finally:
        asyncio.run(session.close())


async def test_within_one_loop_the_client_keeps_one_session(fake: FakeGPTunnel) -> None:
    async with fake.client() as client:
        task_id = fake.script_task(steps=[("done", 100)])
        await client.get_result(task_id)
        session = client._session
        await client.get_result(task_id)
        assert client._session is session


FORKED_CHILD = """
import asyncio, os, sys
from gptunnel_async import UsageError
from gptunnel_async.fleet import InProcessBudget
from gptunnel_async.testing import FakeGPTunnel

async def main() -> None:
    async with FakeGPTunnel() as fake, fake.client() as client:
        task_id = fake.script_task(steps=[("done", 100)])
        await client.get_result(task_id)  # its session is on this loop now
        child = os.fork()
        if child == 0:
            try:
                asyncio.run(client.get_result(task_id))
                print("no error")
            except UsageError as exc:
                print("UsageError:", exc)
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(child, 0)

asyncio.run(main())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_client_used_in_a_forked_child_says_to_make_one_per_process() -> None:
    done = subprocess.run(  # in a process of its own: forking pytest itself is not safe
        [sys.executable, "-c", FORKED_CHILD], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "UsageError: this GPTunnelClient was made in another process (this one was forked "
        "from it) and shares its connections; make a client in each process, after the fork"
    )
