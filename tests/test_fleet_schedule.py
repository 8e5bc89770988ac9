"""A watched task's saved pacing: it decides as a live wait would, and survives JSON."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import PollPolicy
from gptunnel_async._polling import Pacing
from gptunnel_async.fleet._records import Outcome, WatchRecord
from gptunnel_async.fleet._schedule import Schedule
from gptunnel_async.models import Task, converter

from .conftest import task_json

POLICY = PollPolicy(initial=1.0, multiplier=2.0, max_interval=8.0, jitter=0.0)


def test_saved_pacing_continues_where_another_process_left_it() -> None:
    live = Pacing(POLICY, random.Random(0))
    saved = Schedule()
    reads = [(0.0, 0), (1.0, 0), (3.0, 10), (7.0, 30), (11.0, 50), (15.0, 70)]
    for now, percent in reads:
        expected = live.next_wait(now, percent)
        delay, saved, _ = Schedule.loads(saved.dumps()).next_read(POLICY, now, "running", percent)
        assert delay == pytest.approx(expected)


@pytest.mark.parametrize(
    ("seen", "reads", "changes"),
    [
        ([("queued", 0), ("queued", 0), ("running", 40)], 3, [True, False, True]),
        ([("running", 40), ("running", 30)], 2, [True, False]),  # percent never falls
        ([("running", 40), (None, None), ("running", 40)], 3, [True, False, False]),
    ],
)
def test_progress_is_reported_only_when_status_or_percent_changes(
    seen: list[tuple[str | None, int | None]], reads: int, changes: list[bool]
) -> None:
    saved, reported = Schedule(), []
    for n, (status, percent) in enumerate(seen[:reads]):
        _, saved, changed = saved.next_read(POLICY, float(n), status, percent)
        reported.append(changed)
    assert reported == changes


@given(
    growth=st.none() | st.floats(min_value=0.01, max_value=1e4),
    rise=st.none() | st.tuples(st.floats(min_value=0, max_value=1e9), st.integers(0, 100)),
    status=st.none() | st.text(max_size=20),
    percent=st.integers(0, 100),
)
def test_a_schedule_survives_json(
    growth: float | None, rise: tuple[float, int] | None, status: str | None, percent: int
) -> None:
    schedule = Schedule(growth, rise, status, percent)
    assert Schedule.loads(schedule.dumps()) == schedule


@given(
    metadata=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=10,
    )
)
def test_records_and_outcomes_survive_json(metadata: object) -> None:
    record = WatchRecord("media", metadata, 60.0, 1e9)
    assert WatchRecord.loads(record.dumps(), 1e9) == record

    task = converter.structure(task_json(status="done", percent=100), Task)
    for kind in ("done", "failed"):
        outcome = Outcome(kind, task)  # type: ignore[arg-type]
        assert Outcome.loads(outcome.dumps()) == outcome
    assert Outcome.loads(Outcome("expired", None, 5.0).dumps()) == Outcome("expired", None, 5.0)
