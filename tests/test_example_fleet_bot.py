"""The fleet bot example: two workers against a real redis-server and the emulator; the
swap started in one is answered once, by whichever worker's watcher finished it."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramForbiddenError
from aiogram.methods import EditMessageText, SendMessage, SendPhoto, TelegramMethod
from aiogram.types import Message, PhotoSize, Update
from redis.asyncio import Redis

from examples.faceswap_bot import replies
from examples.faceswap_bot.progress import progress_text
from examples.fleet_bot import _show, create_fleet_dispatcher, deliver_to, show_progress
from gptunnel_async import NotFoundError, PollPolicy, Task
from gptunnel_async.fleet import (
    Delivery,
    FleetProgress,
    MemoryStore,
    RedisBudget,
    RedisStore,
    Watcher,
)
from gptunnel_async.testing import FakeGPTunnel, sample_image

from .test_example_bot import CHAT, FACE, NOW, PERSON, USER, FakeTelegram

FAST = PollPolicy(initial=0.05, max_interval=0.1, jitter=0.0)
FAILED = Task(id="t-1", status="failed", percent=30, error="no face found")


def photo(update_id: int, file_id: str) -> Update:
    sizes = [PhotoSize(file_id=file_id, file_unique_id=file_id, width=512, height=512)]
    message = Message(message_id=update_id, date=NOW, chat=CHAT, from_user=USER, photo=sizes)
    return Update(update_id=update_id, message=message)


async def test_a_swap_started_in_one_worker_is_answered_once_by_the_fleet(
    gptunnel_fake: FakeGPTunnel, redis: Redis
) -> None:
    telegram = FakeTelegram({"person": PERSON, "face": FACE})
    bot = Bot("42:TEST", session=telegram)
    workers: list[Any] = []
    async with (
        gptunnel_fake.client(poll_policy=FAST, budget=RedisBudget(redis, 50, name="bot")) as one,
        gptunnel_fake.client(poll_policy=FAST, budget=RedisBudget(redis, 50, name="bot")) as two,
    ):
        for client, name in ((one, "one"), (two, "two")):
            watcher = Watcher(
                client, RedisStore(redis, name="bot"), handler=deliver_to(bot, client), worker=name
            )
            workers.append((create_fleet_dispatcher(client, watcher), watcher))
        async with workers[0][1], workers[1][1]:
            updates = itertools.count(1)
            dispatcher = workers[0][0]  # the conversation, in worker one
            await dispatcher.feed_update(bot, photo(next(updates), "person"))
            await dispatcher.feed_update(bot, photo(next(updates), "face"))
            async with asyncio.timeout(15):
                while not telegram.sent_photos:  # noqa: ASYNC110 - a fake with no signal
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # time for a duplicate, were there one
            status = await workers[1][1].status()
    sends = [call for call in telegram.calls if isinstance(call, SendPhoto)]
    assert len(sends) == 1
    assert sends[0].chat_id == CHAT.id
    assert telegram.sent_photos == [sample_image("result.png")]
    assert (status.watched, status.finished_unhandled) == (0, 0)


async def test_a_chat_that_cannot_be_answered_is_logged_not_redelivered_for_ever(
    gptunnel_fake: FakeGPTunnel, caplog: pytest.LogCaptureFixture
) -> None:
    """A user who blocked the bot: raising would have the fleet deliver the result
    again after every delivery_timeout, until the task's record expires."""
    bot = Bot("42:TEST", session=Forbidding())
    async with gptunnel_fake.client() as client:
        deliver = deliver_to(bot, client)
        await deliver(Delivery("t-1", "faceswap", {"chat_id": CHAT.id}, "failed", FAILED))
    [line] = [r.getMessage() for r in caplog.records if r.name == "examples.fleet_bot"]
    assert line.startswith(f"task t-1: chat {CHAT.id} cannot be answered: ")


@pytest.mark.parametrize(
    ("delivery", "said"),
    [
        (
            Delivery("t-1", "faceswap", {"chat_id": CHAT.id}, "failed", FAILED),
            "could not swap these faces (no face found)",
        ),
        (
            Delivery(
                "t-1",
                "faceswap",
                {"chat_id": CHAT.id},
                "error",
                None,
                last_error=NotFoundError("gone", status_code=404),
            ),
            "something went wrong",
        ),
        (
            Delivery("t-1", "faceswap", {"chat_id": CHAT.id}, "expired", None, timeout=60.0),
            "took too long",
        ),
    ],
)
async def test_every_outcome_but_done_is_told_as_its_error(
    gptunnel_fake: FakeGPTunnel, delivery: Delivery, said: str
) -> None:
    telegram = FakeTelegram({})
    async with gptunnel_fake.client() as client:
        await deliver_to(Bot("42:TEST", session=telegram), client)(delivery)
    [reply] = [call for call in telegram.calls if isinstance(call, SendMessage)]
    assert delivery.error is not None
    assert reply.text == replies.friendly_error(delivery.error)
    assert said in reply.text


class Forbidding(FakeTelegram):
    def __init__(self) -> None:
        super().__init__({})

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        raise TelegramForbiddenError(method, "Forbidden: bot was blocked by the user")


async def test_one_worker_edits_each_task_s_progress_and_the_deliverer_writes_its_end(
    gptunnel_fake: FakeGPTunnel,
) -> None:
    """Two swaps at once: each message shows its own task's percent, and ends "done"."""
    telegram = FakeTelegram({})
    bot = Bot("42:TEST", session=telegram)
    steps = [("running", percent) for percent in (20, 40, 60, 80)]
    task_ids = [gptunnel_fake.script_task(steps=[*steps, ("done", 100)]) for _ in range(2)]
    async with (
        gptunnel_fake.client(poll_policy=FAST) as client,
        Watcher(client, MemoryStore(), handler=deliver_to(bot, client)) as watcher,
    ):
        editing = asyncio.create_task(show_progress(bot, watcher))
        await asyncio.sleep(0.05)  # listening before the first read
        for message_id, task_id in enumerate(task_ids, start=1000):
            await watcher.watch(task_id, metadata={"chat_id": CHAT.id, "message_id": message_id})
        async with asyncio.timeout(15):
            while len(telegram.sent_photos) < 2:  # noqa: ASYNC110 - a fake with no signal
                await asyncio.sleep(0.05)
        editing.cancel()
    edits = [call for call in telegram.calls if isinstance(call, EditMessageText)]
    for message_id in (1000, 1001):
        texts = [edit.text for edit in edits if edit.message_id == message_id]
        assert texts[-1] == replies.DONE
        running = {progress_text("running", percent) for _, percent in steps}
        first_done = texts.index(replies.DONE)  # the editor's or the deliverer's
        assert texts[:first_done] and set(texts[:first_done]) <= running  # its own task's
        # The editor may still write a notice it had before the deliverer's end (its
        # edits fall behind the notices): its own task's, and the ended notice's end
        # comes after it, so the message ends on it.
        assert set(texts[first_done:]) <= running | {replies.DONE}


@pytest.mark.parametrize(
    ("notice", "text"),
    [
        (FleetProgress("t", "running", 40, {"chat_id": 1, "message_id": 7}), "40 %"),
        (FleetProgress("t", "done", 100, {"chat_id": 1, "message_id": 7}, ended=True), "Done"),
        (FleetProgress("t", "expired", 40, {"chat_id": 1, "message_id": 7}, ended=True), "Failed"),
        (FleetProgress("t", "running", 40, None), None),  # another bot's task on the channel
        (FleetProgress("t", "running", 40, ["chat", 1]), None),
        (FleetProgress("t", "running", 40, {"chat_id": 1}), None),  # an older version's
        (FleetProgress("t", "running", 40, {"chat_id": "a", "message_id": 7}), None),
        (FleetProgress("t", "running", 40, {"chat_id": 1, "message_id": 7.5}), None),
    ],
)
async def test_a_notice_edits_its_message_or_nothing_and_never_stops_the_editing(
    notice: FleetProgress, text: str | None
) -> None:
    for failing in (False, True):  # a message gone, or not modified: that edit only
        telegram = FakeTelegram({})
        telegram.failing_edits = failing
        await _show(Bot("42:TEST", session=telegram), notice)
        edits = [call for call in telegram.calls if isinstance(call, EditMessageText)]
        assert [edit.message_id for edit in edits] == ([] if text is None else [7])
        assert text is None or text in edits[0].text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_swap_started_while_redis_restarts_is_still_answered(
    gptunnel_fake: FakeGPTunnel, redis_server: object
) -> None:
    """The swap was created (and paid for), then its watch() met Redis away for a moment:
    the user was told it failed, and the result never came, though Redis was back a
    second later. The example now registers the wait again, as docs/fleet.md says."""
    executable = shutil.which("redis-server") or "redis-server"
    port = _free_port()
    # As docs/fleet.md makes it: no retries of redis-py's own, which would hide the outage.
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=2)
    telegram = FakeTelegram({"person": PERSON, "face": FACE})
    bot = Bot("42:TEST", session=telegram)
    server: asyncio.subprocess.Process | None = None
    try:
        async with gptunnel_fake.client(poll_policy=FAST) as client:
            watcher = Watcher(
                client, RedisStore(redis, name="late"), handler=deliver_to(bot, client)
            )
            dispatcher = create_fleet_dispatcher(client, watcher)
            updates = itertools.count(1)
            await dispatcher.feed_update(bot, photo(next(updates), "person"))
            swap = asyncio.create_task(dispatcher.feed_update(bot, photo(next(updates), "face")))
            await asyncio.sleep(0.7)  # Redis is away for the first tries
            assert not swap.done()
            arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
            server = await asyncio.create_subprocess_exec(
                executable, *arguments, "no", stdout=asyncio.subprocess.DEVNULL
            )
            await asyncio.wait_for(swap, 15)
            async with watcher, asyncio.timeout(15):
                while not telegram.sent_photos:  # noqa: ASYNC110 - a fake with no signal
                    await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
        if server is not None:
            server.terminate()
            await server.wait()
    told = [call.text for call in telegram.calls if isinstance(call, SendMessage)]
    assert told == [replies.ASK_FOR_FACE, progress_text("idle", 0)]  # no error told
    assert telegram.sent_photos == [sample_image("result.png")]
