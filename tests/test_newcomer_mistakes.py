"""The mistakes a newcomer makes with waits and families get a pointer to the fix: a wait
never awaited warns as a coroutine does, and a task read through the wrong family is
"not found" with a question about its family, in code as on the command line."""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gptunnel_async import ConfigurationError, GPTunnelClient, NotFoundError, UsageError, throttle
from gptunnel_async.testing import FakeGPTunnel


@pytest.fixture
async def client(fake: FakeGPTunnel) -> AsyncIterator[GPTunnelClient]:
    """A client of the emulator (``fake``, from conftest)."""
    async with fake.client() as opened:
        yield opened


def collected_warnings(drop: Callable[[], None]) -> list[str]:
    """The RuntimeWarnings raised while ``drop()`` lets go of its objects."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_a_wait_never_awaited_warns_when_it_is_dropped(client: GPTunnelClient) -> None:
    def forget() -> None:
        client.wait_for_result("t-forgotten")  # the missing await

    (warned,) = collected_warnings(forget)
    assert "'t-forgotten' was never awaited or iterated (a missing await?)" in warned


async def test_a_wait_dropped_on_purpose_or_used_does_not_warn(
    client: GPTunnelClient, fake: FakeGPTunnel
) -> None:
    def closed() -> None:
        client.wait_for_result("t-1").close()

    def never_iterated() -> None:
        client.as_completed(["t-1", "t-2"])

    assert collected_warnings(closed) == []
    assert collected_warnings(never_iterated) == []
    task_id = fake.script_task(steps=[("done", 100)])
    awaited = client.wait_for_result(task_id)
    await awaited
    iterated = client.wait_for_result(task_id)
    assert [event.status async for event in iterated] == ["done"]
    assert collected_warnings(lambda: None) == []
    del awaited, iterated
    assert collected_warnings(lambda: None) == []
    unstarted = client.as_completed([task_id])
    await unstarted.aclose()
    del unstarted
    assert collected_warnings(lambda: None) == []


async def test_a_wait_closed_or_refused_before_it_started_does_not_warn(
    client: GPTunnelClient,
) -> None:
    async def aclosed() -> None:
        waiter = client.wait_for_result("t-1")
        async with contextlib.aclosing(waiter):
            pass  # left before the loop: the documented way to stop a wait

    async def refused_by_throttle() -> None:
        with pytest.raises(ConfigurationError, match="every"):
            async for _ in throttle(client.wait_for_result("t-2"), every=-1):
                pass

    for drop in (aclosed, refused_by_throttle):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await drop()
            gc.collect()
        assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


async def test_a_closed_wait_that_never_started_cannot_be_awaited(
    client: GPTunnelClient,
) -> None:
    waiter = client.wait_for_result("t-1")
    waiter.close()
    with pytest.raises(UsageError, match="was closed; call wait_for_result again"):
        await waiter
    assert [event async for event in waiter] == []  # and iterates nothing


Read = Callable[[GPTunnelClient, str], Awaitable[Any]]

WRONG_FAMILY: list[tuple[str, str, Read, str]] = [
    ("a song read as a face swap", "suno", lambda c, t: c.get_result(t), "faceswap"),
    ("a song waited for as a face swap", "suno", lambda c, t: c.wait_for_result(t), "faceswap"),
    ("a song read by midjourney", "suno", lambda c, t: c.midjourney.result(t), "midjourney"),
    ("a face swap read as media", "", lambda c, t: c.media.result(t), "media"),
    ("a face swap waited for as media", "", lambda c, t: c.media.wait_for_result(t), "media"),
]


@pytest.mark.parametrize(
    ("what", "model", "read", "family"), WRONG_FAMILY, ids=[w[0] for w in WRONG_FAMILY]
)
async def test_a_task_of_another_family_is_not_found_with_a_question_about_its_family(
    client: GPTunnelClient, fake: FakeGPTunnel, what: str, model: str, read: Read, family: str
) -> None:
    options = {"model": model} if model else {}
    task_id = fake.script_task(steps=[("running", 5)], **options)
    with pytest.raises(NotFoundError) as caught:
        await read(client, task_id)
    text = str(caught.value)
    others = [
        f"client.{name}"
        for name in ("faceswap", "bgremover", "midjourney", "media")
        if name != family
    ]
    assert f"(is it a {family} task? read another family's task through that family: " in text
    assert text.endswith(", ".join(others) + ")") and text.count("is it a") == 1
    assert caught.value.status_code in (200, 404)  # media says so with HTTP 200, code 4


async def test_a_path_the_api_lacks_gets_no_family_question(fake: FakeGPTunnel) -> None:
    async with fake.client(base_url=fake.base_url.removesuffix("/v1")) as lost:
        with pytest.raises(NotFoundError) as caught:
            await lost.get_result("t-1")
    assert "check base_url" in str(caught.value) and "is it a" not in str(caught.value)
