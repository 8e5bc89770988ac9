"""A bot's own code that uses the SDK as documented passes ``mypy --strict``: callbacks
whose result the SDK ignores may return anything (aiogram's ``message.edit_text``
returns the edited ``Message``), one progress formatter serves every family, and the
docs' pytest examples, copied into a project checked that way, pass as they are."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import get_type_hints

import pytest
from mypy import api as mypy_api

from gptunnel_async import GPTunnelClient, MediaTask, ProgressEvent, Task, TaskLike
from gptunnel_async._client import ClientOptions
from gptunnel_async.testing import FakeGPTunnel

BOT = """
from __future__ import annotations

import io
from collections.abc import AsyncIterable

from aiogram import Bot
from aiogram.types import PhotoSize

from gptunnel_async import GPTunnelClient, ImageInput, ProgressEvent, TaskLike, throttle
from gptunnel_async.fleet import Delivery, MemoryStore, Watcher
from gptunnel_async.testing import FakeGPTunnel


class Message:  # what aiogram's message.edit_text returns: the message, or True
    async def edit_text(self, text: str) -> Message | bool:
        return True


def progress_text(event: ProgressEvent[TaskLike]) -> str:  # one for every family
    return f"{event.status} {event.percent} %"


def shown(event: ProgressEvent[TaskLike]) -> bool:  # a plain function with a result
    return bool(progress_text(event))


async def show(message: Message, events: AsyncIterable[ProgressEvent[TaskLike]]) -> None:
    async for event in throttle(events, every=1.0):  # any family's wait
        await message.edit_text(progress_text(event))


async def handler(client: GPTunnelClient, message: Message, task_id: str) -> None:
    await show(message, client.midjourney.wait_for_result(task_id))
    await show(message, client.media.wait_for_result(task_id))
    await client.midjourney.wait_for_result(
        task_id, on_progress=lambda event: message.edit_text(progress_text(event))
    )
    await client.bgremover.wait_for_result(task_id, on_progress=shown)
    await client.media.wait_for_result(task_id, on_progress=shown)
    await client.wait_for_result(task_id, on_progress=progress_text)
    async for event in throttle(client.media.wait_for_result(task_id), every=1.0):
        await message.edit_text(progress_text(event))
    async for done in client.midjourney.wait_for_result(task_id):
        await message.edit_text(progress_text(done))


photos: dict[int, ImageInput] = {}  # each chat's first photo, until its second comes


async def take_photo(bot: Bot, client: GPTunnelClient, chat_id: int, photo: PhotoSize) -> None:
    picture = io.BytesIO()  # as the quickstart shows: bot.download's result may be None
    await bot.download(photo, destination=picture)
    if chat_id not in photos:
        photos[chat_id] = picture
        return
    await client.faceswap.create(photos.pop(chat_id), picture)


def fleet(client: GPTunnelClient, message: Message) -> Watcher:
    def answer(delivery: Delivery) -> object:
        return message.edit_text(delivery.task_id)

    return Watcher(client, MemoryStore(), handler=answer)


def test_the_bot(gptunnel_fake: FakeGPTunnel) -> None:  # the fixture's type
    assert gptunnel_fake.base_url
"""


ROOT = Path(__file__).resolve().parent.parent


def strict_errors(tmp_path: Path, files: list[Path]) -> str:
    """What ``mypy --strict`` says of ``files``: nothing when they pass."""
    cache = str(tmp_path / "mypy-cache")
    out, err, status = mypy_api.run(
        ["--strict", "--cache-dir", cache, "--no-error-summary", *map(str, files)]
    )
    return "" if status == 0 else out + err


def test_a_bots_code_passes_mypy_strict(tmp_path: Path) -> None:
    bot = tmp_path / "bot.py"
    bot.write_text(textwrap.dedent(BOT), encoding="utf-8")
    assert strict_errors(tmp_path, [bot]) == ""


def test_the_docs_pytest_examples_pass_mypy_strict(tmp_path: Path) -> None:
    files = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
        for number, code in enumerate(blocks):
            if re.search(r"^(async )?def test_", code, re.M):  # a test to copy
                files.append(tmp_path / f"{page.stem}_{number}.py")
                files[-1].write_text(code, encoding="utf-8")
    assert len(files) >= 4  # README's, and docs/testing.md's
    assert strict_errors(tmp_path, files) == ""


class Edited:
    """What a chat's edit call gives back, which the wait ignores."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def edit_text(self, text: str) -> Edited:
        self.texts.append(text)
        return self


def text_of(event: ProgressEvent[TaskLike]) -> str:
    return f"{event.percent} %"


@pytest.mark.asyncio
async def test_callbacks_results_are_ignored_and_their_awaitables_awaited(
    gptunnel_fake: FakeGPTunnel,
) -> None:
    grid = gptunnel_fake.script_task(steps=[("running", 40), ("done", 100)], type="imagine")
    song = gptunnel_fake.script_task(steps=[("running", 0), ("done", 100)], model="suno")
    message = Edited()
    async with gptunnel_fake.client() as client:
        assert isinstance(client, GPTunnelClient)
        task = await client.midjourney.wait_for_result(
            grid, on_progress=lambda event: message.edit_text(text_of(event))
        )
        media = await client.media.wait_for_result(song, on_progress=text_of)
    assert isinstance(task, Task)
    assert isinstance(media, MediaTask)
    assert message.texts == ["40 %", "100 %"]


MISTAKES = """
from gptunnel_async.testing import FakeGPTunnel


def test_options(gptunnel_fake: FakeGPTunnel) -> None:
    gptunnel_fake.client(max_retries=0, timeout=5.0)  # right
    gptunnel_fake.client(timout=5.0)  # a misspelt option
    gptunnel_fake.client(max_retries="3")  # a wrong type
"""


def test_the_fixtures_client_options_are_type_checked(tmp_path: Path) -> None:
    mistakes = tmp_path / "mistakes.py"
    mistakes.write_text(MISTAKES, encoding="utf-8")
    said = strict_errors(tmp_path, [mistakes])
    errors = [line.split(":")[1] for line in said.splitlines() if ": error:" in line]
    assert errors == ["7", "8"], said  # the misspelt name and the wrong type
    assert '"timout"' in said


def test_the_client_options_are_the_clients_arguments() -> None:
    arguments = inspect.signature(GPTunnelClient.__init__).parameters
    assert list(ClientOptions.__annotations__) == [name for name in arguments if name != "self"]
    hints = get_type_hints(GPTunnelClient.__init__)
    assert get_type_hints(ClientOptions) == {
        name: hints[name] for name in ClientOptions.__annotations__
    }
