"""One status vocabulary for every family: case and surrounding whitespace never change
what a status means, and the model keeps the raw value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import GPTunnelClient, MediaTask, Task, TaskFailedError
from gptunnel_async._sansio.statuses import (
    FAILED_STATUSES,
    MEDIA_DONE_STATUSES,
    Stage,
    classify,
)

from .conftest import ScriptedAPI, task_json

KNOWN = {
    "done": Stage.DONE,
    "failed": Stage.FAILED,
    "error": Stage.FAILED,
    "fail": Stage.FAILED,
    "cancelled": Stage.FAILED,
    "canceled": Stage.FAILED,
    "idle": Stage.PENDING,
    "queued": Stage.PENDING,
    "processing": Stage.PENDING,
    "running": Stage.PENDING,
    "unknown": Stage.PENDING,
    "succeeded": Stage.PENDING,  # done only for media tasks
    "": Stage.PENDING,
    "done!": Stage.PENDING,
    "not done": Stage.PENDING,
}


@pytest.mark.parametrize(("status", "stage"), KNOWN.items())
def test_each_status_has_its_stage(status: str, stage: Stage) -> None:
    assert classify(status) is stage


@pytest.mark.parametrize(
    ("status", "stage"),
    [("DONE", Stage.DONE), (" Failed\n", Stage.FAILED), ("\tCANCELED ", Stage.FAILED)],
)
def test_case_and_surrounding_whitespace_do_not_matter(status: str, stage: Stage) -> None:
    assert classify(status) is stage


@pytest.mark.parametrize("status", sorted(MEDIA_DONE_STATUSES))
def test_media_tasks_have_more_ways_to_say_done(status: str) -> None:
    assert classify(status.upper(), MEDIA_DONE_STATUSES) is Stage.DONE
    assert MediaTask(id="m", status=f" {status.title()} ", url="https://s/m.png").is_done


whitespace = st.text(alphabet=" \t\r\n", max_size=3)


def spelled(word: str) -> st.SearchStrategy[str]:
    """``word`` in any mix of cases, with any whitespace around it."""
    cases = st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(word, upper, strict=True))
    )
    return st.tuples(whitespace, cases, whitespace).map("".join)


@given(st.sampled_from(sorted(KNOWN)).flatmap(lambda word: st.tuples(st.just(word), spelled(word))))
def test_any_spelling_of_a_status_means_what_the_status_means(pair: tuple[str, str]) -> None:
    word, variant = pair
    assert classify(variant) is KNOWN[word]


@given(st.text(max_size=80))
def test_any_other_text_is_pending_and_never_raises(status: str) -> None:
    key = status.strip().casefold()
    expected = (
        Stage.DONE if key == "done" else Stage.FAILED if key in FAILED_STATUSES else Stage.PENDING
    )
    assert classify(status) is expected


def test_a_long_status_is_classified_too() -> None:
    assert classify(" " * 100 + "FAILED") is Stage.FAILED
    assert classify("x" * 1_000_000) is Stage.PENDING


@pytest.mark.parametrize("status", ["FAILED", " Error ", "Cancelled"])
def test_models_keep_the_raw_status_and_read_it_by_the_vocabulary(status: str) -> None:
    task = Task(id="t", status=status)
    media = MediaTask(id="m", status=status, message="why")
    assert task.status == status and media.status == status
    assert task.is_failed and task.is_terminal and not task.is_done
    assert media.is_failed and media.error == "why"


async def test_a_failure_in_capitals_ends_a_wait_at_once(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    api.script(task_json(status="running", percent=10), task_json(status="FAILED", error="no"))
    with pytest.raises(TaskFailedError) as caught:
        await client.wait_for_result("task-1")
    assert caught.value.task.status == "FAILED"
    assert len(api.requests) == 2


async def test_done_in_capitals_ends_a_wait_with_the_task(
    api: ScriptedAPI, client: GPTunnelClient
) -> None:
    api.script(task_json(status=" Done ", percent=100))
    task = await client.wait_for_result("task-1")
    assert task.status == " Done "
    assert task.is_done
