"""What the fleet saves: wait states, records and outcomes, all surviving JSON."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from gptunnel_async import PollPolicy
from gptunnel_async._sansio.waiting import WaitState
from gptunnel_async.fleet import _decode
from gptunnel_async.fleet._records import Outcome, WatchRecord
from gptunnel_async.models import Task, converter

from .conftest import task_json

POLICY = PollPolicy(initial=1.0, multiplier=2.0, max_interval=8.0, jitter=0.2, timeout=None)


def test_a_saved_wait_state_decides_as_the_one_that_never_left_the_process() -> None:
    live = WaitState.start("t-1", POLICY, 0.0, random.Random(3))
    moved = live
    reads = [(0.0, 0), (1.0, 0), (3.0, 10), (7.0, 30), (11.0, 50), (15.0, 70)]
    for now, percent in reads:
        task = Task(id="t-1", status="running", percent=percent)
        live, expected = live.observe(task, now)
        moved = WaitState.from_json(json.loads(json.dumps(moved.to_json())))
        moved, decision = moved.observe(task, now)
        assert decision == expected
    assert moved == live


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


@given(metadata=json_values)
def test_records_and_outcomes_survive_json(metadata: object) -> None:
    record = WatchRecord("media", metadata, 60.0, 1e9)
    assert _decode.record(record.dumps(), 1e9) == record
    task = converter.structure(task_json(status="done", percent=100), Task)
    for kind in ("done", "failed"):
        outcome = Outcome(kind, task)  # type: ignore[arg-type]
        assert _decode.outcome(outcome.dumps()) == outcome
    assert _decode.outcome(Outcome("expired", None, 5.0).dumps()) == Outcome("expired", None, 5.0)
