"""The conversation, on aiogram's dispatcher: a photo of a person, a photo of a face, then
a face swap whose progress one message shows until the result photo arrives; ``/cancel``
stops following it.

The dispatcher handles one chat's updates one at a time, so the swap runs in an asyncio
task of its own (one per chat, in ``swaps``): the handler that starts it returns at once,
and the chat's next message, ``/cancel`` included, is read while the swap goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import tempfile
import time

from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import FSInputFile, Message

from gptunnel_async import GPTunnelClient, GPTunnelError, throttle

from . import replies
from .progress import EDIT_INTERVAL, Clock, Sleep, ThrottledMessage, progress_text

logger = logging.getLogger(__name__)


Swaps = dict[int, asyncio.Task[None]]
"""The running face swap of each chat, by chat id."""


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
    swaps: Swaps,
    clock: Clock,
    sleep: Sleep,
) -> None:
    """The second photo: the face to put on the person. Start the swap in a task of its
    own, and return: the chat's next message is read while it runs."""
    assert message.photo  # the handler's filter lets only photos through
    chat_id = message.chat.id
    if chat_id in swaps:  # the person is kept: this face may be sent again afterwards
        await message.answer(replies.BUSY)
        return
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
    swap = asyncio.create_task(_swap(message, sent, gptunnel, source, face, progress))
    swaps[chat_id] = swap
    swap.add_done_callback(lambda _: _forget(swaps, chat_id, swap))


async def cancel(message: Message, state: FSMContext, swaps: Swaps) -> None:
    """``/cancel``: stop following the chat's running swap, or forget a half-started one."""
    await state.clear()
    swap = swaps.pop(message.chat.id, None)
    if swap is None:
        await message.answer(replies.NOTHING_TO_CANCEL)
        return
    swap.cancel()  # the wait ends at once; GPTunnel has no call to stop the task itself
    await message.answer(replies.CANCELLED)


async def stop_swaps(swaps: Swaps) -> None:
    """On shutdown (a deploy, Ctrl-C): stop following every running swap, while the
    GPTunnel client is still open, each chat's progress message saying so."""
    running = list(swaps.values())
    for swap in running:
        swap.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def _swap(
    message: Message,
    sent: Message,
    gptunnel: GPTunnelClient,
    source: bytes,
    face: bytes,
    progress: ThrottledMessage,
) -> None:
    """Create the face swap, show its progress, and send the result photo or an error.
    A user who blocks the bot meanwhile ends it: the wait is closed at once."""
    try:
        created = await gptunnel.faceswap.create(source, face)
        # At most one event a second, never two alike, the last one always: what Telegram
        # takes. The wait keeps reading while an edit is on its way.
        waiter = gptunnel.faceswap.wait_for_result(created.id)
        async with contextlib.aclosing(throttle(waiter, every=EDIT_INTERVAL)) as events:
            async for event in events:
                await progress.show(progress_text(event.status, event.percent, event.remaining))
        task = event.task  # a wait that ends without raising ends with its done event
        with tempfile.TemporaryDirectory() as folder:
            path = await gptunnel.download_result(task, folder)
            await progress.show(replies.DONE)
            await message.answer_photo(FSInputFile(path), caption=replies.RESULT_CAPTION)
    except GPTunnelError as exc:
        logger.warning("face swap for chat %s failed: %s", message.chat.id, exc)
        await progress.show(replies.FAILED)
        await message.reply(replies.friendly_error(exc))
    except TelegramForbiddenError:  # the user blocked the bot: no one to tell, stop here
        logger.info("chat %s blocked the bot; its face swap is no longer followed", sent.chat.id)
    except asyncio.CancelledError:
        await _edit(sent, replies.CANCELLED_PROGRESS)
        raise


def _forget(swaps: Swaps, chat_id: int, swap: asyncio.Task[None]) -> None:
    """A swap has ended: take it out of ``swaps`` (unless a newer one took its place)
    and log an error it ended with (a Telegram call that failed, say)."""
    if swaps.get(chat_id) is swap:
        del swaps[chat_id]
    if not swap.cancelled() and swap.exception() is not None:
        logger.error("face swap for chat %s ended", chat_id, exc_info=swap.exception())


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
        included), so a chat's two photos never race. Each swap runs in a task of its
        own, in ``dispatcher["swaps"]`` by chat id, so the chat's messages are still read
        while it runs; the dispatcher's shutdown cancels those still running.
    """
    swaps: Swaps = {}
    router = Router(name="faceswap")
    router.message.register(greet, CommandStart())
    router.message.register(cancel, Command("cancel"))
    router.message.register(take_person, StateFilter(None), F.photo)
    router.message.register(take_face, Swap.waiting_for_face, F.photo)
    router.message.register(explain)
    dispatcher = Dispatcher(
        events_isolation=SimpleEventIsolation(),
        gptunnel=gptunnel,
        swaps=swaps,
        clock=clock,
        sleep=sleep,
    )
    dispatcher.include_router(router)
    dispatcher.shutdown.register(stop_swaps)
    return dispatcher
