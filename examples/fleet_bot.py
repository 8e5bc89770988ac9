"""The face-swap bot as a fleet: run it as several identical processes against one Redis.

Any worker may take a Telegram update, any worker may read the task, and one worker
sends the result, even if the worker that started the swap was restarted meanwhile:

- a ``RedisBudget`` keeps every worker's requests within one rate for the API key;
- a ``Watcher`` on a ``RedisStore`` holds the waits: the photo handler only creates the
  task and registers it at once with the chat to answer;
- aiogram's ``RedisStorage`` keeps the conversation (which photo came first).

Run: ``BOT_TOKEN=... python -m examples.fleet_bot --redis redis://localhost:6379/0``
in as many processes as you like; they share the waits of the same ``--name``. Give one
of them ``--progress``: it edits every task's progress message as the fleet reads it
(``throttle(watcher.progress(), per_task=True)``); the worker that delivers a task
writes its message's last edit.

A delivery can come twice, rarely (a worker killed after sending, before acknowledging):
then the user gets the photo twice, which this bot accepts. One that must not would keep
the ids of answered tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
from typing import Any

try:
    import redis.asyncio  # noqa: F401  (needed by run(); checked here for a one-line hint)
    from aiogram import Bot, Dispatcher, F, Router
    from aiogram.exceptions import (
        TelegramAPIError,
        TelegramBadRequest,
        TelegramForbiddenError,
        TelegramRetryAfter,
    )
    from aiogram.filters import CommandStart, StateFilter
    from aiogram.fsm.context import FSMContext
    from aiogram.fsm.storage.base import BaseStorage
    from aiogram.fsm.storage.memory import SimpleEventIsolation
    from aiogram.types import FSInputFile, Message
except ImportError as missing:  # pragma: no cover - the tests have both
    raise SystemExit(
        f"examples.fleet_bot needs aiogram 3 and redis-py ({missing.name} is missing): "
        "pip install -e '.[examples]'"
    ) from None

from gptunnel_async import GPTunnelClient, GPTunnelError, throttle
from gptunnel_async.fleet import (
    Delivery,
    FleetProgress,
    Handler,
    StoreUnavailableError,
    Watcher,
)

from .faceswap_bot import replies
from .faceswap_bot.bot import Swap, _download, explain, greet, take_person
from .faceswap_bot.progress import EDIT_INTERVAL, progress_text

logger = logging.getLogger(__name__)


async def start_swap(
    message: Message, state: FSMContext, bot: Bot, gptunnel: GPTunnelClient, watcher: Watcher
) -> None:
    """The second photo: create the swap and leave the wait to the fleet."""
    assert message.photo  # the handler's filter lets only photos through
    person: str = (await state.get_data())["person"]
    await state.clear()
    # The progress message first: the watch below names it, for whichever worker edits it.
    shown = await message.answer(progress_text("idle", 0))
    try:
        source = await _download(bot, person)
        face = await _download(bot, message.photo[-1].file_id)
        task = await gptunnel.faceswap.create(source, face)
    except GPTunnelError as exc:
        logger.warning("face swap for chat %s did not start: %s", message.chat.id, exc)
        await message.reply(replies.friendly_error(exc))
        return
    # Registered at once: a crash before it would leave a paid task nobody waits for.
    metadata = {"chat_id": message.chat.id, "message_id": shown.message_id}
    try:
        await watch_until_registered(watcher, task.id, metadata)
    except GPTunnelError as exc:  # Redis away for longer: the wait was not registered
        # The swap runs, paid for, with no one waiting for it: say which, for an operator.
        logger.error("face swap %s for chat %s is not watched: %s", task.id, message.chat.id, exc)
        await message.reply(replies.friendly_error(exc))


WATCH_TRIES = 5
"""How many times a wait is registered before the swap is given up on: Redis away for a
few seconds (a restart, a failover) costs no swap."""


async def watch_until_registered(
    watcher: Watcher, task_id: str, metadata: Any, *, first_pause: float = 0.5
) -> None:
    """Register the wait, trying again while Redis is away (``StoreUnavailableError``),
    pausing ``first_pause`` seconds, then twice as long each time (7.5 s in all): the
    task is created, and paid for, already; creating it again would pay twice. A
    ``watch()`` made twice registers it once.

    Raises:
        StoreUnavailableError: Redis stayed away through :data:`WATCH_TRIES` tries.
    """
    pause = first_pause
    for _ in range(WATCH_TRIES - 1):
        try:
            await watcher.watch(task_id, family="faceswap", metadata=metadata)
            return
        except StoreUnavailableError as exc:
            logger.warning("task %s: its wait is registered again in %gs: %s", task_id, pause, exc)
        await asyncio.sleep(pause)
        pause *= 2
    await watcher.watch(task_id, family="faceswap", metadata=metadata)


async def show_progress(bot: Bot, watcher: Watcher) -> None:
    """Edit each task's progress message as the fleet reads it, until cancelled; in one
    worker only (``--progress``), or every listening worker would make each edit again.

    ``throttle(per_task=True)`` keeps each message to one edit per two seconds. A
    task's last notice (``ended``) gets the same closing text the worker that delivers
    the task writes: whichever comes last, the message ends on it, even when the edits
    fall behind the notices. A lost connection to Redis ends ``progress()``: it is
    listened to again a second later (notices sent meanwhile are missed; the next
    one of each task shows it).
    """
    pause = 1.0
    while True:
        try:
            async for notice in throttle(
                watcher.progress(), every=2 * EDIT_INTERVAL, per_task=True
            ):
                pause = 1.0
                await _show(bot, notice)
        except GPTunnelError as exc:  # the store's connection: listen again, backing off
            logger.warning("progress messages paused for %gs: %s", pause, exc)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 30.0)


async def _show(bot: Bot, notice: FleetProgress) -> None:
    """One edit of a task's progress message; a message that cannot be edited (gone,
    unchanged) or a notice that names none (another bot's on the channel, an older
    version's) is skipped, never the end of the editing. Telegram's flood limit is
    waited out: every edit of the bot counts against it."""
    where = notice.metadata if isinstance(notice.metadata, dict) else {}
    chat_id, message_id = where.get("chat_id"), where.get("message_id")
    if not (isinstance(chat_id, int) and isinstance(message_id, int)):
        return
    if notice.ended:
        text = replies.DONE if notice.status == "done" else replies.FAILED
    else:
        text = progress_text(notice.status, notice.percent)
    try:
        await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
    except TelegramRetryAfter as exc:  # 429: no edit of this bot goes before it
        logger.info("progress edits wait %ss: Telegram's flood limit", exc.retry_after)
        await asyncio.sleep(exc.retry_after)
    except TelegramAPIError as exc:  # 400, 403 ...: this edit only
        logger.debug("task %s: progress not shown: %s", notice.task_id, exc)


def deliver_to(bot: Bot, gptunnel: GPTunnelClient) -> Handler:
    """The watcher's handler: send a finished swap to the chat that asked for it."""

    async def deliver(delivery: Delivery) -> None:
        chat_id = delivery.metadata["chat_id"]
        try:
            await _close_progress(bot, delivery)
            if delivery.outcome == "done" and delivery.task is not None:
                with tempfile.TemporaryDirectory() as folder:
                    path = await gptunnel.download_result(delivery.task, folder)
                    photo = FSInputFile(path)
                    await bot.send_photo(chat_id, photo, caption=replies.RESULT_CAPTION)
                return
            if delivery.error is not None:  # failed, expired, or an error such as a 404
                await bot.send_message(chat_id, replies.friendly_error(delivery.error))
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            # The user blocked the bot, or the chat is gone: another delivery would fail
            # alike (raising would have the fleet deliver it again and again).
            logger.warning(
                "task %s: chat %s cannot be answered: %s", delivery.task_id, chat_id, exc
            )

    return deliver


async def _close_progress(bot: Bot, delivery: Delivery) -> None:
    """The progress message's last edit: done, or why not."""
    message_id = delivery.metadata.get("message_id")
    if message_id is None:
        return
    text = replies.DONE if delivery.error is None else replies.FAILED
    chat_id = delivery.metadata["chat_id"]
    with contextlib.suppress(TelegramBadRequest):  # deleted by the user, or unchanged
        await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)


def create_fleet_dispatcher(
    gptunnel: GPTunnelClient, watcher: Watcher, storage: BaseStorage | None = None
) -> Dispatcher:
    """The bot's dispatcher for one worker of the fleet.

    Args:
        gptunnel: the client (with the fleet's ``RedisBudget``), kept open by the caller.
        watcher: the fleet's watcher, running in this worker.
        storage: the conversation's storage: aiogram's ``RedisStorage`` for a fleet
            (memory by default, for one process and tests).
    """
    router = Router(name="fleet-faceswap")
    router.message.register(greet, CommandStart())
    router.message.register(take_person, StateFilter(None), F.photo)
    router.message.register(start_swap, Swap.waiting_for_face, F.photo)
    router.message.register(explain)
    dispatcher = Dispatcher(
        storage=storage,
        events_isolation=SimpleEventIsolation(),
        gptunnel=gptunnel,
        watcher=watcher,
    )
    dispatcher.include_router(router)
    return dispatcher


async def run(  # pragma: no cover - needs Telegram
    token: str, redis_url: str, name: str, progress: bool = False
) -> None:
    """One worker: poll Telegram, read due tasks, deliver finished ones (and, with
    ``progress``, edit the progress messages), until stopped."""
    from aiogram.fsm.storage.redis import RedisStorage
    from redis.asyncio import Redis

    from gptunnel_async.fleet import RedisBudget, RedisStore

    redis = Redis.from_url(redis_url, socket_timeout=10)
    gptunnel = GPTunnelClient(budget=RedisBudget(redis, 20, name=name))
    async with gptunnel, Bot(token) as bot:
        watcher = Watcher(
            gptunnel,
            RedisStore(redis, name=name),
            handler=deliver_to(bot, gptunnel),
            max_attempts=10,  # then a dead letter, not a retry every minute for a day
        )
        async with watcher:
            editing = asyncio.create_task(show_progress(bot, watcher)) if progress else None
            dispatcher = create_fleet_dispatcher(gptunnel, watcher, RedisStorage(redis))
            try:
                await dispatcher.start_polling(bot)  # until SIGTERM or Ctrl-C
            finally:
                if editing is not None:
                    editing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await editing


def main() -> None:  # pragma: no cover - needs Telegram
    """Read the options and ``BOT_TOKEN``, and run one worker."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.fleet_bot", description="One worker of a face-swap bot fleet."
    )
    parser.add_argument("--redis", default="redis://localhost:6379/0", help="Redis URL")
    parser.add_argument("--name", default="faceswap-bot", help="the fleet's name in Redis")
    parser.add_argument(
        "--progress", action="store_true", help="edit the progress messages (in one worker only)"
    )
    args = parser.parse_args()
    token = os.environ.get("BOT_TOKEN")
    if not token:
        parser.error("set BOT_TOKEN to the bot's token from BotFather")
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run(token, args.redis, args.name, args.progress))


if __name__ == "__main__":
    main()
