"""The plain script example: wait with ``async for``, print each change, save the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.wait_and_save import main, wait_and_save
from gptunnel_async.testing import FakeGPTunnel, sample_image

STEPS = [("queued", 0), ("running", 40), ("running", 40), ("done", 100)]


@pytest.fixture
def configured(gptunnel_fake: FakeGPTunnel, monkeypatch: pytest.MonkeyPatch) -> FakeGPTunnel:
    """The emulator, with the environment pointing the script's client at it."""
    monkeypatch.setenv("GPTUNNEL_API_KEY", gptunnel_fake.api_key)
    monkeypatch.setenv("GPTUNNEL_BASE_URL", gptunnel_fake.base_url)
    return gptunnel_fake


async def test_each_change_is_printed_and_the_result_saved(
    gptunnel_fake: FakeGPTunnel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = gptunnel_fake.script_task(steps=STEPS)
    async with gptunnel_fake.client() as client:
        path = await wait_and_save(client, task_id, tmp_path / "swap.png")

    assert path.read_bytes() == sample_image("result.png")
    lines = [line.split()[1:] for line in capsys.readouterr().out.splitlines()]
    assert lines == [["queued", "0", "%"], ["running", "40", "%"], ["done", "100", "%"]]


def test_the_command_waits_for_a_task_with_the_key_from_the_environment(
    configured: FakeGPTunnel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = configured.script_task(steps=STEPS)

    assert main([task_id, "--out", str(tmp_path)]) == 0

    [saved] = tmp_path.iterdir()
    assert capsys.readouterr().out.endswith(f"saved {saved}\n")


def test_a_failed_task_is_reported_with_exit_status_1(
    configured: FakeGPTunnel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_id = configured.fail_task("no face found")

    assert main([task_id, "--out", str(tmp_path)]) == 1

    assert "no face found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_needs_a_task_id_or_the_emulator() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_with_the_emulator_it_runs_a_face_swap_from_start_to_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = tmp_path / "result.png"
    assert main(["--emulator", "--out", str(result)]) == 0

    out = capsys.readouterr().out
    assert out.startswith("created face swap ")
    assert "done       100 %" in out
    assert result.read_bytes() == sample_image("result.png")
