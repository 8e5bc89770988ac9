"""The Telegram bot example: its progress pacing, its replies, and its conversation, run
through aiogram's own dispatcher against the GPTunnel emulator, without Telegram.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.methods import EditMessageText, GetFile, SendMessage, SendPhoto, TelegramMethod
from aiogram.types import Chat, File, FSInputFile, Message, PhotoSize, Update, User

from examples.faceswap_bot import replies
from examples.faceswap_bot.bot import create_dispatcher
from examples.faceswap_bot.progress import ThrottledMessage, progress_text
from gptunnel_async import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    GPTunnelError,
    InsufficientBalanceError,
    PollPolicy,
    ServerError,
    Task,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async.testing import FakeGPTunnel, sample_image

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CHAT = Chat(id=7, type="private")
USER = User(id=7, is_bot=False, first_name="Ann")
PERSON, FACE = sample_image("source.png"), sample_image("face.png")


@dataclass
class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- the progress message -------------------------------------------------------------


@dataclass
class Edits:
    clock: FakeClock
    made: list[tuple[float, str]] = field(default_factory=list)

    async def __call__(self, text: str) -> None:
        self.made.append((self.clock.now, text))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def edits(clock: FakeClock) -> Edits:
    return Edits(clock)


def throttled(edits: Edits, clock: FakeClock, text: str = "0 %") -> ThrottledMessage:
    return ThrottledMessage(edits, text, clock=clock, sleep=clock.sleep)


async def test_the_same_text_is_never_sent_as_an_edit(edits: Edits, clock: FakeClock) -> None:
    message = throttled(edits, clock)
    clock.now = 5.0
    await message.show("0 %")
    await message.show("40 %")
    await message.show("40 %")
    assert edits.made == [(5.0, "40 %")]
    assert clock.slept == []


async def test_a_change_soon_after_sending_waits_out_the_second(
    edits: Edits, clock: FakeClock
) -> None:
    message = throttled(edits, clock)
    clock.now = 0.25
    await message.show("10 %")
    assert clock.slept == [0.75]
    assert edits.made == [(1.0, "10 %")]


async def test_a_burst_of_changes_is_edited_at_most_once_a_second(
    edits: Edits, clock: FakeClock
) -> None:
    message = throttled(edits, clock)
    for percent in range(10, 101, 10):
        clock.now += 0.1  # events come ten times faster than Telegram allows edits
        await message.show(f"{percent} %")
    times = [at for at, _ in edits.made]
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise([0.0, *times]))
    assert edits.made[-1][1] == "100 %"  # the newest state is shown, never dropped
    assert message.text == "100 %"


async def test_a_change_after_a_quiet_second_is_edited_at_once(
    edits: Edits, clock: FakeClock
) -> None:
    message = throttled(edits, clock)
    clock.now = 3.0
    await message.show("40 %")
    clock.now = 4.5
    await message.show("60 %")
    assert edits.made == [(3.0, "40 %"), (4.5, "60 %")]
    assert clock.slept == []


@pytest.mark.parametrize(
    ("status", "percent", "remaining", "text"),
    [
        ("idle", 0, None, "Waiting in the queue…\n░░░░░░░░░░ 0 %"),
        ("queued", 0, None, "Waiting in the queue…\n░░░░░░░░░░ 0 %"),
        ("running", 42, None, "Swapping faces…\n▓▓▓▓░░░░░░ 42 %"),
        ("running", 42, 30.4, "Swapping faces…\n▓▓▓▓░░░░░░ 42 %, about 30 s left"),
        ("running", 60, 90.0, "Swapping faces…\n▓▓▓▓▓▓░░░░ 60 %, about 90 s left"),
        ("running", 99, 0.2, "Swapping faces…\n▓▓▓▓▓▓▓▓▓▓ 99 %, about 1 s left"),
        ("running", 99, 0.0, "Swapping faces…\n▓▓▓▓▓▓▓▓▓▓ 99 %, about 1 s left"),
        ("processing", 95, None, "Swapping faces…\n▓▓▓▓▓▓▓▓▓▓ 95 %"),
        ("done", 100, None, "Swapping faces…\n▓▓▓▓▓▓▓▓▓▓ 100 %"),
        ("done", 100, 0.0, "Swapping faces…\n▓▓▓▓▓▓▓▓▓▓ 100 %"),
    ],
)
def test_progress_text_is_a_label_a_ten_step_bar_and_the_time_left(
    status: str, percent: int, remaining: float | None, text: str
) -> None:
    assert progress_text(status, percent, remaining) == text


# -- replies --------------------------------------------------------------------------

FAILED_TASK = Task(id="t1", status="failed", error="no face found")


@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (TaskFailedError(FAILED_TASK), "could not swap these faces (no face found)"),
        (TaskFailedError(Task(id="t1", status="error")), "could not swap these faces. Try"),
        (WaitTimeoutError("t1", 600, None), "took too long"),
        (BadRequestError("bad image", status_code=400), "could not use these photos"),
        (InsufficientBalanceError("low", status_code=402), "run out of GPTunnel credit"),
        (AuthenticationError("Unauthorized", status_code=401), "not set up right"),
        (ServerError("down", status_code=503), "busy or out of reach"),
        (APIConnectionError("reset"), "busy or out of reach"),
        (GPTunnelError("odd"), "something went wrong"),
    ],
)
def test_errors_become_replies_a_user_can_act_on(error: GPTunnelError, reply: str) -> None:
    text = replies.friendly_error(error)
    assert reply in text
    status = getattr(error, "status_code", None)
    assert status is None or str(status) not in text


# -- the conversation, through aiogram ------------------------------------------------


class FakeTelegram(BaseSession):
    """Telegram's Bot API as the bot sees it: records every method the bot calls and
    answers as Telegram would. Photos are served from ``photos`` by file id."""

    def __init__(self, photos: dict[str, bytes]) -> None:
        super().__init__()
        self.photos = photos
        self.calls: list[TelegramMethod[Any]] = []
        self.sent_photos: list[bytes] = []
        self.failing_edits = False
        self.blocked = False  # the user blocked the bot: every call is refused
        self.edited = asyncio.Event()  # set by the first edit of a message
        self._message_ids = itertools.count(1000)

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        self.calls.append(method)
        if self.blocked:
            raise TelegramForbiddenError(method, "Forbidden: bot was blocked by the user")
        if isinstance(method, EditMessageText):
            self.edited.set()
        if isinstance(method, GetFile):
            path = f"photos/{method.file_id}.jpg"
            return File(file_id=method.file_id, file_unique_id=method.file_id, file_path=path)
        if isinstance(method, EditMessageText) and self.failing_edits:
            raise TelegramBadRequest(method, "message to edit not found")
        if isinstance(method, SendPhoto):
            assert isinstance(method.photo, FSInputFile)
            self.sent_photos.append(method.photo.path.read_bytes())
        if isinstance(method, SendMessage | SendPhoto | EditMessageText):
            text = getattr(method, "text", None)
            return Message(
                message_id=getattr(method, "message_id", None) or next(self._message_ids),
                date=NOW,
                chat=CHAT,
                text=text,
            ).as_(bot)
        raise AssertionError(f"the bot called an unexpected method: {method!r}")

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes]:
        yield self.photos[url.rpartition("/")[2].removesuffix(".jpg")]

    async def close(self) -> None:
        pass

    def texts(self, kind: type[SendMessage | EditMessageText]) -> list[str]:
        return [call.text or "" for call in self.calls if isinstance(call, kind)]


@dataclass
class Chatting:
    """A user chatting with the bot: each call sends one update through the dispatcher."""

    bot: Bot
    telegram: FakeTelegram
    clock: FakeClock
    fake: FakeGPTunnel
    dispatcher: Any
    updates: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def message(self, **content: Any) -> Update:
        update_id = next(self.updates)
        return Update(
            update_id=update_id,
            message=Message(message_id=update_id, date=NOW, chat=CHAT, from_user=USER, **content),
        )

    async def send_text(self, text: str) -> None:
        await self.dispatcher.feed_update(self.bot, self.message(text=text))

    async def send_photo(self, file_id: str) -> None:
        sizes = [
            PhotoSize(file_id=f"{file_id}-thumb", file_unique_id="u1", width=90, height=90),
            PhotoSize(file_id=file_id, file_unique_id="u2", width=1280, height=1280),
        ]
        await self.dispatcher.feed_update(self.bot, self.message(photo=sizes))

    def creates(self) -> list[Any]:
        return [r.json for r in self.fake.requests if r.path.endswith("/faceswap/create")]

    def running(self) -> list[asyncio.Task[None]]:
        """The swaps running now: each runs in a task of its own, off the chat's updates."""
        return list(self.dispatcher["swaps"].values())

    async def swap(self) -> None:
        """Send the two photos, then wait for the swap they started to end."""
        await self.send_photo("person")
        await self.send_photo("face")
        await asyncio.gather(*self.running())


@pytest.fixture
async def chat(gptunnel_fake: FakeGPTunnel, clock: FakeClock) -> AsyncIterator[Chatting]:
    telegram = FakeTelegram({"person": PERSON, "face": FACE})
    bot = Bot("42:TEST", session=telegram)
    # A minute's deadline: a swap whose task never ends, should its cancel not come,
    # fails the test then, rather than polling flat out for the default ten minutes.
    async with gptunnel_fake.client(poll_policy=PollPolicy(timeout=60)) as client:
        dispatcher = create_dispatcher(client, clock=clock, sleep=clock.sleep)
        yield Chatting(bot, telegram, clock, gptunnel_fake, dispatcher)


def data_uri(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


async def test_two_photos_become_a_swap_with_a_progress_bar_and_the_result_photo(
    chat: Chatting,
) -> None:
    chat.fake.script_created(
        steps=[("queued", 0), ("running", 30), ("running", 30), ("running", 70), ("done", 100)]
    )
    await chat.swap()

    assert chat.creates() == [{"sourceImage": data_uri(PERSON), "faceImage": data_uri(FACE)}]
    assert chat.telegram.texts(SendMessage) == [replies.ASK_FOR_FACE, progress_text("idle", 0)]
    assert chat.telegram.texts(EditMessageText) == [
        progress_text("running", 30),  # percent has risen once: no time left to show yet
        # Instant waits make `remaining` a few milliseconds, shown as "about 1 s".
        progress_text("running", 70, remaining=0.0),
        progress_text("done", 100),
        replies.DONE,
    ]
    # Events came instantly, so each edit waited out the second since the one before.
    assert chat.clock.slept == [1.0, 1.0, 1.0, 1.0]
    assert chat.telegram.sent_photos == [sample_image("result.png")]


async def test_the_largest_size_of_each_photo_is_sent_to_gptunnel(chat: Chatting) -> None:
    await chat.swap()
    downloaded = [c.file_id for c in chat.telegram.calls if isinstance(c, GetFile)]
    assert downloaded == ["person", "face"]


async def test_a_failed_task_becomes_a_friendly_reply(chat: Chatting) -> None:
    chat.fake.script_created(steps=[("running", 20), ("failed", 20)], error="no face found")
    await chat.swap()

    assert chat.telegram.texts(EditMessageText)[-1] == replies.FAILED
    assert chat.telegram.texts(SendMessage)[-1] == replies.friendly_error(
        TaskFailedError(Task(id="x", status="failed", error="no face found"))
    )
    assert chat.telegram.sent_photos == []


async def test_an_empty_balance_becomes_a_friendly_reply(chat: Chatting) -> None:
    chat.fake.fail_next(402, path="faceswap/create")
    await chat.swap()

    assert "run out of GPTunnel credit" in chat.telegram.texts(SendMessage)[-1]
    assert chat.telegram.sent_photos == []


async def test_a_progress_message_that_cannot_be_edited_does_not_stop_the_swap(
    chat: Chatting,
) -> None:
    chat.telegram.failing_edits = True
    await chat.swap()
    assert chat.telegram.sent_photos == [sample_image("result.png")]


async def start_a_swap_that_never_ends(chat: Chatting) -> asyncio.Task[None]:
    """Send the two photos of a swap whose task runs until cancelled, and return once its
    wait has read the task and shown it in the progress message."""
    chat.fake.script_created(steps=[("running", 10)])
    await chat.send_photo("person")
    await chat.send_photo("face")
    await chat.telegram.edited.wait()
    [swap] = chat.running()
    return swap


async def test_cancel_stops_the_running_swap_while_its_wait_goes_on(chat: Chatting) -> None:
    swap = await start_a_swap_that_never_ends(chat)
    await chat.send_text("/cancel")  # read at once: the swap does not hold the chat

    assert chat.telegram.texts(SendMessage)[-1] == replies.CANCELLED
    with pytest.raises(asyncio.CancelledError):
        await swap
    assert chat.running() == []
    assert chat.telegram.texts(EditMessageText)[-1] == replies.CANCELLED_PROGRESS
    assert chat.telegram.sent_photos == []


async def test_a_second_swap_waits_for_the_first(chat: Chatting) -> None:
    swap = await start_a_swap_that_never_ends(chat)
    await chat.send_photo("person")
    await chat.send_photo("face")

    assert chat.telegram.texts(SendMessage)[-1] == replies.BUSY
    assert len(chat.creates()) == 1
    assert chat.running() == [swap]
    await chat.send_text("/cancel")
    with pytest.raises(asyncio.CancelledError):
        await swap


async def test_cancel_with_no_swap_running_says_so(chat: Chatting) -> None:
    await chat.send_photo("person")
    await chat.send_text("/cancel")
    await chat.send_photo("face")  # the person was forgotten: this is a person again

    assert chat.telegram.texts(SendMessage) == [
        replies.ASK_FOR_FACE,
        replies.NOTHING_TO_CANCEL,
        replies.ASK_FOR_FACE,
    ]
    assert chat.creates() == []


async def test_a_user_who_blocks_the_bot_ends_the_swap_and_its_wait(chat: Chatting) -> None:
    steps = [("running", percent) for percent in range(10, 100)]
    chat.fake.script_created(steps=steps)  # a change on every read, each one an edit
    await chat.send_photo("person")
    await chat.send_photo("face")
    await chat.telegram.edited.wait()
    [swap] = chat.running()
    chat.telegram.blocked = True

    await swap  # ends without an error: there is no one left to tell
    assert chat.running() == []
    reads = [r for r in chat.fake.requests if r.path.endswith("/faceswap/result")]
    assert len(reads) < len(steps)  # the wait was closed long before the task ended
    assert chat.telegram.sent_photos == []


async def test_shutting_down_stops_every_running_swap(chat: Chatting) -> None:
    swap = await start_a_swap_that_never_ends(chat)
    await chat.dispatcher.emit_shutdown(bot=chat.bot, **chat.dispatcher.workflow_data)

    assert swap.cancelled()
    assert chat.running() == []
    assert chat.telegram.texts(EditMessageText)[-1] == replies.CANCELLED_PROGRESS


async def test_the_bot_says_which_photo_it_waits_for(chat: Chatting) -> None:
    await chat.send_text("hello")
    await chat.send_photo("person")
    await chat.send_text("what now?")
    await chat.send_text("/start")  # starts over: the next photo is the person again
    await chat.send_photo("person")

    assert chat.telegram.texts(SendMessage) == [
        replies.GREETING,
        replies.ASK_FOR_FACE,
        replies.ASK_FOR_FACE,
        replies.GREETING,
        replies.ASK_FOR_FACE,
    ]
    assert chat.creates() == []


# -- starting the bot -------------------------------------------------------------------


def run_bot(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}
    environment.update(env, GPTUNNEL_API_KEY="k")
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "examples.faceswap_bot"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).parent.parent,
        timeout=60,
    )


def test_without_a_token_the_bot_says_so_before_importing_aiogram() -> None:
    done = run_bot()
    assert done.returncode == 2
    assert "BOT_TOKEN" in done.stderr
    assert "| aiogram" not in done.stderr  # -X importtime lists every module imported


def test_a_malformed_token_is_one_line_not_a_traceback() -> None:
    done = run_bot(BOT_TOKEN="not-a-token")
    assert done.returncode == 1
    assert "BOT_TOKEN is not a bot token" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_network_is_one_line_not_a_traceback() -> None:
    # a well-formed token, and a Bot API server nobody listens on
    done = run_bot(
        BOT_TOKEN="123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghi", BOT_API_URL="http://127.0.0.1:1"
    )
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 1
    assert "cannot reach Telegram" in done.stderr


def test_without_aiogram_the_bot_says_how_to_install_it() -> None:
    blocked = "import sys; sys.modules['aiogram'] = None; "
    run = "from examples.faceswap_bot.__main__ import main; sys.exit(main())"
    environment = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}
    environment.update(BOT_TOKEN="123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghi")
    done = subprocess.run(
        [sys.executable, "-c", blocked + run],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).parent.parent,
        timeout=60,
    )
    assert done.returncode == 2
    assert "pip install -e '.[examples]'" in done.stderr
    assert "Traceback" not in done.stderr
