"""The emulator's default key masks nothing but itself: the SDK masks any 8-character
run of the client's key in error texts, so a default key sharing a word with the SDK's
own texts or GPTunnel's name would turn those into ``***`` in every emulator test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gptunnel_async
from gptunnel_async import GPTunnelError, NotFoundError, TaskFailedError
from gptunnel_async._sansio.text import mask_for
from gptunnel_async.testing import DEFAULT_API_KEY, FakeGPTunnel

PACKAGE = Path(gptunnel_async.__file__).parent


def _package_texts() -> list[str]:
    """Every string literal of the package's modules."""
    texts = []
    for module in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    return texts


def test_the_default_key_shows_in_no_text_of_the_package() -> None:
    shows = mask_for(DEFAULT_API_KEY).shows
    masked = [text for text in _package_texts() if text != DEFAULT_API_KEY and shows(text)]
    assert masked == []


@pytest.mark.parametrize(
    "text",
    ["GPTunnel", "https://gptunnel.ru/v1", "GPTUNNEL_API_KEY", "gptunnel-async emulator"],
)
def test_the_default_key_leaves_the_service_s_names_alone(text: str) -> None:
    assert mask_for(DEFAULT_API_KEY)(text) == text


async def test_errors_against_the_default_key_read_as_written(tmp_path: Path) -> None:
    async with FakeGPTunnel() as fake, fake.client() as client:
        failing = fake.fail_task("GPTunnel worker crashed", steps=[("running", 20)])
        with pytest.raises(TaskFailedError) as failed:
            await client.wait_for_result(failing)
        done = await client.wait_for_result(fake.script_task(steps=[("done", 100)]))
        fake.fail_next(404, server="storage")
        with pytest.raises(GPTunnelError) as gone:
            await client.download_result(done, tmp_path)
    assert failed.value.task.error == "GPTunnel worker crashed"
    assert "GPTunnel worker crashed" in str(failed.value)
    assert isinstance(gone.value, NotFoundError)
    assert "GPTunnel keeps results" in str(gone.value)
