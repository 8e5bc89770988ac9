"""The conversation, on aiogram's dispatcher: a photo of a person, a photo of a face, then
a face swap whose progress one message shows until the result photo arrives.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
import time

from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.filters import CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import FSInputFile, Message

from gptunnel_async import GPTunnelClient, GPTunnelError, throttle

from . import replies
from .progress import EDIT_INTERVAL, Clock, Sleep, ThrottledMessage, progress_text

logger = logging.getLogger(__name__)


class Swap(StatesGroup):
    """Where a chat is in the conversation; no state means "waiting for the person"."""

    waiting_for_face = State()


async def greet(message: Message, state: FSMContext) -> None:
    """``/start``: forget any half-started swap and explain what to send."""
    await state.clear()
    await message.answer(replies.GREETING)


async def explain(message: Message, state: FSMContext) -> None:
    """Anything that is not a photo: say which photo the bot is waiting for."""
    waiting_for_face = await state.get_state() == Swap.waiting_for_face.state
    await message.answer(replies.ASK_FOR_FACE if waiting_for_face else replies.GREETING)


async def take_person(message: Message, state: FSMContext) -> None:
    """The first photo: the person whose face is replaced."""
    assert message.photo  # the handler's filter lets only photos through
    await state.update_data(person=message.photo[-1].file_id)
    await state.set_state(Swap.waiting_for_face)
    await message.answer(replies.ASK_FOR_FACE)


async def take_face(
    message: Message,
    state: FSMContext,
    bot: Bot,
    gptunnel: GPTunnelClient,
    clock: Clock,
    sleep: Sleep,
) -> None:
    """The second photo: the face to put on the person. Swap them, showing the progress."""
    assert message.photo  # the handler's filter lets only photos through
    person: str = (await state.get_data())["person"]
    await state.clear()
    source = await _download(bot, person)
    face = await _download(bot, message.photo[-1].file_id)
    sent = await message.answer(progress_text("idle", 0))
    progress = ThrottledMessage(
        lambda text: _edit(sent, text),
        sent.text or "",
        interval=EDIT_INTERVAL,
        clock=clock,
        sleep=sleep,
    )

    try:
        created = await gptunnel.faceswap.create(source, face)
        # At most one event a second, never two alike, the last one always: what Telegram
        # takes. The wait keeps reading while an edit is on its way.
        waiter = gptunnel.faceswap.wait_for_result(created.id)
        async for event in throttle(waiter, every=EDIT_INTERVAL):
            await progress.show(progress_text(event.status, event.percent))
        task = event.task  # a wait that ends without raising ends with its done event
        with tempfile.TemporaryDirectory() as folder:
            path = await gptunnel.download_result(task, folder)
            await progress.show(replies.DONE)
            await message.answer_photo(FSInputFile(path), caption=replies.RESULT_CAPTION)
    except GPTunnelError as exc:
        logger.warning("face swap for chat %s failed: %s", message.chat.id, exc)
        await progress.show(replies.FAILED)
        await message.reply(replies.friendly_error(exc))


async def _download(bot: Bot, file_id: str) -> bytes:
    """A photo's bytes, from Telegram."""
    buffer = io.BytesIO()
    await bot.download(file_id, destination=buffer)
    return buffer.getvalue()


async def _edit(message: Message, text: str) -> None:
    """Edit the progress message; if that fails (the user deleted it, a flood limit),
    the face swap carries on regardless."""
    try:
        await message.edit_text(text)
    except (TelegramBadRequest, TelegramRetryAfter) as exc:
        logger.info("could not edit the progress message: %s", exc)


def create_dispatcher(
    gptunnel: GPTunnelClient,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> Dispatcher:
    """The bot's dispatcher, swapping faces through ``gptunnel``.

    Args:
        gptunnel: the GPTunnel client, kept open by the caller while the bot runs.
        clock: the progress message's time source; tests pass a fake one.
        sleep: the progress message's pause; tests pass one that moves the fake clock.

    Returns:
        A dispatcher that handles one chat's messages in order (an album of two photos
        included), so a chat's two photos never race.
    """
    router = Router(name="faceswap")
    router.message.register(greet, CommandStart())
    router.message.register(take_person, StateFilter(None), F.photo)
    router.message.register(take_face, Swap.waiting_for_face, F.photo)
    router.message.register(explain)
    dispatcher = Dispatcher(
        events_isolation=SimpleEventIsolation(), gptunnel=gptunnel, clock=clock, sleep=sleep
    )
    dispatcher.include_router(router)
    return dispatcher
