"""The fleet bot example: two workers against a real redis-server and the emulator; the
swap started in one is answered once, by whichever worker's watcher finished it."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiogram import Bot
from aiogram.methods import SendPhoto
from aiogram.types import Message, PhotoSize, Update
from redis.asyncio import Redis

from examples.fleet_bot import create_fleet_dispatcher, deliver_to
from gptunnel_async import PollPolicy
from gptunnel_async.fleet import RedisBudget, RedisStore, Watcher
from gptunnel_async.testing import FakeGPTunnel, sample_image

from .test_example_bot import CHAT, FACE, NOW, PERSON, USER, FakeTelegram

FAST = PollPolicy(initial=0.05, max_interval=0.1, jitter=0.0)


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
