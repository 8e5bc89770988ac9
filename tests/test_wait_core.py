"""The wait core, decision by decision: outcomes in, decisions out; no sockets, no clocks.

Each row of a table is a wait: the outcomes fed to it (a task, or an error) at the
times given, and the decision expected after each one. A reader learns the policy here.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GPTunnelError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    PollPolicy,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    Task,
    TaskFailedError,
    TLSError,
    UsageError,
    WaitTimeoutError,
)
from gptunnel_async._sansio.pacing import (
    MAX_POLL_INTERVAL,
    MIN_POLL_INTERVAL,
    Pace,
    draw,
    next_pause,
)
from gptunnel_async._sansio.responses import error_from_response
from gptunnel_async._sansio.retries import RETRY_AFTER_CAP
from gptunnel_async._sansio.waiting import (
    Decision,
    Fail,
    Finish,
    ProgressEvent,
    ReadAt,
    TimeOut,
    WaitState,
    last_read_lead,
)

EXACT = PollPolicy(initial=1.0, multiplier=2.0, max_interval=8.0, jitter=0.0, timeout=100.0)
"""Plain doubling from 1 s to 8 s, no jitter, a 100 s deadline: every decision is exact."""

BACKOFF = PollPolicy(
    initial=1.0, multiplier=2.0, max_interval=8.0, jitter=0.0, timeout=100.0, strategy="exponential"
)


def task(status: str = "running", percent: int = 0, **fields: Any) -> Task:
    return Task(id="t-1", status=status, percent=percent, **fields)


def event(
    at: float,
    status: str,
    percent: int,
    seen: Task | None = None,
    remaining: float | None = None,
) -> ProgressEvent[Task]:
    """The event a read at ``at`` (the wait began at 0) emits; ``done`` has 0 s left."""
    left = 0.0 if status == "done" else remaining
    return ProgressEvent("t-1", status, percent, seen or task(status, percent), at, left)


Outcome = Task | GPTunnelError


def run(policy: PollPolicy, outcomes: list[tuple[float, Outcome]]) -> list[Decision[Task]]:
    """Feed ``outcomes`` to a wait begun at 0; the decision after each."""
    state = WaitState.start("t-1", policy, 0.0, random.Random(0))
    decisions: list[Decision[Task]] = []
    for now, outcome in outcomes:
        if isinstance(outcome, Task):
            state, decision = state.observe(outcome, now)
        else:
            state, decision = state.failed(outcome, now)
        decisions.append(decision)
    return decisions


def server_error(status: int = 503, retry_after: float | None = None) -> ServerError:
    return ServerError("busy", status_code=status, retry_after=retry_after)


RUNNING_10 = task("running", 10)
FAILED = task("failed", 30, error="bad face")
DONE = task("done", 100, result="https://storage.example/r.png")

# -- what a read means ----------------------------------------------------------------

READS: list[Any] = [
    pytest.param(
        [(0.0, RUNNING_10)],
        [ReadAt(1.0, event(0.0, "running", 10))],
        id="the first read always emits, then paces",
    ),
    pytest.param(
        [(0.0, task("idle")), (1.0, task("idle")), (3.0, task("running"))],
        [ReadAt(1.0, event(0.0, "idle", 0)), ReadAt(3.0), ReadAt(7.0, event(3.0, "running", 0))],
        id="an event only when (status, percent) changes",
    ),
    pytest.param(
        [(0.0, task("running", 40)), (1.0, task("running", 20))],
        [ReadAt(1.0, event(0.0, "running", 40)), ReadAt(3.0)],
        id="percent never goes backwards, so a fall is no change",
    ),
    pytest.param(
        [(0.0, task("running", 40)), (1.0, task("queued", 20))],
        [
            ReadAt(1.0, event(0.0, "running", 40)),
            ReadAt(3.0, event(1.0, "queued", 40, task("queued", 20))),
        ],
        id="a new status with a lower percent keeps the highest percent",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (1.0, DONE)],
        [ReadAt(1.0, event(0.0, "running", 10)), Finish(event(1.0, "done", 100, DONE))],
        id="done finishes with its event, the last",
    ),
    pytest.param(
        [(0.0, DONE)],
        [Finish(event(0.0, "done", 100, DONE))],
        id="done on the first read is one event",
    ),
    pytest.param(
        [(0.0, task("whatever-new"))],
        [ReadAt(1.0, event(0.0, "whatever-new", 0))],
        id="an unknown status keeps polling",
    ),
]


@pytest.mark.parametrize(("outcomes", "expected"), READS)
def test_reads_and_their_decisions(
    outcomes: list[tuple[float, Outcome]], expected: list[Decision[Task]]
) -> None:
    assert run(EXACT, outcomes) == expected


@pytest.mark.parametrize("status", ["failed", "error", "fail", "cancelled", "canceled"])
def test_a_failed_task_fails_the_wait_and_emits_nothing(status: str) -> None:
    failed = task(status, 30, error="bad face")
    [_, decision] = run(EXACT, [(0.0, RUNNING_10), (1.0, failed)])
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, TaskFailedError)
    assert decision.error.task is failed
    assert "bad face" in str(decision.error)


# -- what a failed read means ---------------------------------------------------------

RIDDEN_THROUGH: list[Any] = [
    pytest.param(server_error(500), id="500"),
    pytest.param(server_error(502), id="502"),
    pytest.param(server_error(503), id="503"),
    pytest.param(server_error(504), id="504"),
    pytest.param(APITimeoutError("slow", status_code=408), id="408"),
    pytest.param(RateLimitError("slow down", status_code=429), id="429"),
    pytest.param(APIConnectionError("reset"), id="network"),
    pytest.param(ResponseDecodeError("<html>proxy</html>"), id="not a task"),
]


@pytest.mark.parametrize("error", RIDDEN_THROUGH)
def test_transient_errors_read_again_at_the_next_backoff_step(error: GPTunnelError) -> None:
    decisions = run(EXACT, [(0.0, RUNNING_10), (1.0, error), (3.0, error), (7.0, RUNNING_10)])
    assert decisions[1:] == [ReadAt(3.0), ReadAt(7.0), ReadAt(15.0)]


ENDING: list[Any] = [
    pytest.param(BadRequestError("no", status_code=400), id="400"),
    pytest.param(AuthenticationError("no", status_code=401), id="401"),
    pytest.param(InsufficientBalanceError("no", status_code=402), id="402"),
    pytest.param(PermissionDeniedError("no", status_code=403), id="403"),
    pytest.param(NotFoundError("no", status_code=404), id="404"),
    pytest.param(TLSError("certificate verify failed"), id="TLS"),
    pytest.param(UsageError("the client is closed"), id="closed client"),
]


@pytest.mark.parametrize("error", ENDING)
def test_errors_that_cannot_heal_end_the_wait_at_once(error: GPTunnelError) -> None:
    assert run(EXACT, [(0.0, RUNNING_10), (1.0, error)])[1] == Fail(error)


@pytest.mark.parametrize(
    ("retry_after", "due"),
    [
        pytest.param(None, 3.0, id="no hint: the backoff"),
        pytest.param(0.5, 3.0, id="a shorter hint: the backoff"),
        pytest.param(30.0, 31.0, id="a longer hint is honoured"),
        pytest.param(1e9, 1.0 + RETRY_AFTER_CAP, id="a huge hint is capped"),
    ],
)
def test_retry_after_stretches_the_next_read(retry_after: float | None, due: float) -> None:
    rate_limited = RateLimitError("slow", status_code=429, retry_after=retry_after)
    policy = PollPolicy(initial=1.0, multiplier=2.0, max_interval=8.0, jitter=0.0, timeout=None)
    assert run(policy, [(0.0, RUNNING_10), (1.0, rate_limited)])[1] == ReadAt(due)


# -- the deadline ---------------------------------------------------------------------

DEADLINES: list[Any] = [
    pytest.param(
        [(0.0, RUNNING_10), (99.0, RUNNING_10)],
        [ReadAt(1.0, event(0.0, "running", 10)), TimeOut(100.0)],
        id="a read due past the deadline becomes a time-out at the deadline",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (99.0, task("running", 50))],
        [ReadAt(1.0, event(0.0, "running", 10)), TimeOut(100.0, event(99.0, "running", 50))],
        id="the event of the last read still comes first",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (98.5, server_error())],
        [ReadAt(1.0, event(0.0, "running", 10)), TimeOut(100.0)],
        id="a transient error near the deadline times out",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (120.0, DONE)],
        [ReadAt(1.0, event(0.0, "running", 10)), Finish(event(120.0, "done", 100, DONE))],
        id="a done task read late is still the result",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (120.0, FAILED)],
        [ReadAt(1.0, event(0.0, "running", 10)), Fail(TaskFailedError(FAILED))],
        id="a failed task read late is still a failure",
    ),
]


def _same(left: Decision[Task], right: Decision[Task]) -> bool:
    """Decisions alike; errors (which compare by identity) by type and text."""
    if isinstance(left, Fail) and isinstance(right, Fail):
        return type(left.error) is type(right.error) and str(left.error) == str(right.error)
    return left == right


def assert_decides(
    policy: PollPolicy, outcomes: list[tuple[float, Outcome]], expected: list[Decision[Task]]
) -> None:
    """The decisions after ``outcomes`` are ``expected``, one for one."""
    decisions = run(policy, outcomes)
    assert all(_same(got, want) for got, want in zip(decisions, expected, strict=True))


@pytest.mark.parametrize(("outcomes", "expected"), DEADLINES)
def test_the_deadline(
    outcomes: list[tuple[float, Outcome]], expected: list[Decision[Task]]
) -> None:
    assert_decides(EXACT, outcomes, expected)


EVERY_3S = PollPolicy(
    initial=3.0, multiplier=1.0, max_interval=3.0, jitter=0.0, timeout=5.0, strategy="exponential"
)
"""A read every 3 s and a 5 s deadline: the read after the one at 3 s would come at 6 s."""

LAST_READS: list[Any] = [
    pytest.param(
        [(0.0, RUNNING_10), (3.0, RUNNING_10)],
        [ReadAt(3.0, event(0.0, "running", 10)), ReadAt(4.5)],
        id="a read due past the deadline comes a tenth of the timeout before it instead",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (3.0, RUNNING_10), (4.5, RUNNING_10)],
        [ReadAt(3.0, event(0.0, "running", 10)), ReadAt(4.5), TimeOut(5.0)],
        id="only one last read: after it, the time-out at the deadline",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (3.0, RUNNING_10), (4.5, DONE)],
        [
            ReadAt(3.0, event(0.0, "running", 10)),
            ReadAt(4.5),
            Finish(event(4.5, "done", 100, DONE)),
        ],
        id="the last read sees a task done since the read before it",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (1.9, RUNNING_10)],
        [ReadAt(3.0, event(0.0, "running", 10)), ReadAt(4.5)],
        id="a read due within the lead before the deadline comes at its start instead",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (4.1, RUNNING_10)],
        [ReadAt(3.0, event(0.0, "running", 10)), TimeOut(5.0)],
        id="no last read sooner than its lead after a read",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (3.0, server_error(retry_after=1.0))],
        [ReadAt(3.0, event(0.0, "running", 10)), ReadAt(4.5)],
        id="a Retry-After that ends before the last read lets it be made",
    ),
    pytest.param(
        [(0.0, RUNNING_10), (3.0, server_error(retry_after=2.0))],
        [ReadAt(3.0, event(0.0, "running", 10)), TimeOut(5.0)],
        id="no last read before the server's Retry-After has passed",
    ),
]


@pytest.mark.parametrize(("outcomes", "expected"), LAST_READS)
def test_a_last_read_before_the_deadline(
    outcomes: list[tuple[float, Outcome]], expected: list[Decision[Task]]
) -> None:
    assert_decides(EVERY_3S, outcomes, expected)


@pytest.mark.parametrize(("timeout", "lead"), [(0.3, 0.03), (5.0, 0.5), (10.0, 1.0), (600.0, 1.0)])
def test_the_last_read_comes_a_tenth_of_the_timeout_and_at_most_a_second_early(
    timeout: float, lead: float
) -> None:
    assert last_read_lead(timeout) == pytest.approx(lead)


@pytest.mark.parametrize(
    ("now", "expired"), [(0.0, False), (99.999, False), (100.0, True), (1e6, True)]
)
def test_no_read_starts_once_the_deadline_has_come(now: float, expired: bool) -> None:
    assert WaitState.start("t-1", EXACT, 0.0).expired(now) is expired


@settings(max_examples=300)
@given(
    started=st.floats(-1e9, 1e9),
    timeout=st.floats(1e-300, 1.0),
    outcome=st.sampled_from([RUNNING_10, server_error()]),
)
def test_a_read_is_never_decided_at_or_past_the_deadline(
    started: float, timeout: float, outcome: Outcome
) -> None:
    """With a timeout below the clock's precision (1e-9 s on a wall clock's 1.7e9), the
    last read's lead was lost in rounding and a read was set at the deadline itself."""
    policy = PollPolicy(initial=1.0, max_interval=10.0, jitter=0.0, timeout=timeout)
    state = WaitState.start("t-1", policy, started)
    state, decision = _feed(state, started, outcome)
    assert state.deadline is not None
    if isinstance(decision, ReadAt):
        assert decision.at < state.deadline
    else:
        assert isinstance(decision, TimeOut)


@settings(max_examples=300)
@given(
    timeout=st.floats(1e-4, 0.3),
    initial=st.floats(MIN_POLL_INTERVAL, 0.05),
    lates=st.lists(st.floats(0.0, 0.02), max_size=10),
    outcome=st.sampled_from([RUNNING_10, server_error()]),
)
def test_no_read_near_the_deadline_comes_sooner_than_the_floor(
    timeout: float, initial: float, lates: list[float], outcome: Outcome
) -> None:
    """A timeout under a tenth of a second has a last read's lead under 10 ms: that read
    came as little as the lead after the one before (7 ms after the first read, with a
    timeout of 7.8 ms), sooner than the floor every pause keeps."""
    policy = PollPolicy(initial=initial, max_interval=0.05, jitter=0.0, timeout=timeout)
    state, now = WaitState.start("t-1", policy, 0.0), 0.0
    for late in [0.0, *lates]:
        state, decision = _feed(state, now, outcome)
        if not isinstance(decision, ReadAt):
            return
        assert decision.at - now >= MIN_POLL_INTERVAL - 1e-12
        now = decision.at + late


def test_a_wait_too_short_for_a_last_read_after_the_first_times_out() -> None:
    policy = PollPolicy(initial=0.03125, max_interval=0.05, jitter=0.0, timeout=0.0078125)
    state = WaitState.start("t-1", policy, 0.0)
    _, decision = state.observe(RUNNING_10, 0.0)
    assert isinstance(decision, TimeOut) and decision.at == 0.0078125


def test_without_a_deadline_nothing_times_out() -> None:
    forever = PollPolicy(initial=1.0, multiplier=2.0, max_interval=8.0, jitter=0.0, timeout=None)
    state = WaitState.start("t-1", forever, 0.0)
    assert state.deadline is None
    assert not state.expired(1e12)
    assert run(forever, [(0.0, RUNNING_10), (1e9, RUNNING_10)])[1] == ReadAt(1e9 + 2.0)


def test_the_time_out_error_names_the_wait_and_its_last_task() -> None:
    error = WaitTimeoutError("t-1", 100.0, task("running", 42))
    made = WaitState.start("t-1", EXACT, 5.0).timed_out(task("running", 42))
    assert (made.task_id, made.timeout, str(made)) == (error.task_id, 100.0, str(error))
    assert WaitState.start("t-1", EXACT, 5.0).timed_out(None).task is None


# -- pacing ---------------------------------------------------------------------------


def test_exponential_pacing_doubles_to_the_cap_and_stays() -> None:
    still = task("running", 10)
    times = [0.0, 1.0, 3.0, 7.0, 15.0, 23.0]
    decisions = run(BACKOFF, [(now, still) for now in times])
    assert [d.at for d in decisions if isinstance(d, ReadAt)] == [1.0, 3.0, 7.0, 15.0, 23.0, 31.0]


@settings(max_examples=300)
@given(
    initial=st.floats(MIN_POLL_INTERVAL, 5.0),
    jitter=st.floats(0.0, 0.999),
    percents=st.lists(st.integers(0, 100), max_size=30),
    gaps=st.lists(st.floats(0.0, 50.0), min_size=30, max_size=30),
    seed=st.integers(0, 2**64 - 1),
)
def test_no_pause_is_shorter_than_the_floor(
    initial: float, jitter: float, percents: list[int], gaps: list[float], seed: int
) -> None:
    policy = PollPolicy(initial=initial, max_interval=initial, jitter=jitter)
    pace, now, highest = Pace.start(policy), 0.0, 0
    for seen, gap in zip(percents, gaps, strict=False):
        now += gap
        highest = max(highest, seen)
        pace, pause = next_pause(policy, pace, now, highest, seed)
        assert MIN_POLL_INTERVAL <= pause <= policy.max_interval * (1 + jitter)


@pytest.mark.parametrize("tiny", [1e-300, 5e-324, 0.001, 0.00999])
@pytest.mark.parametrize("field", ["initial", "max_interval"])
def test_intervals_under_ten_milliseconds_are_refused(field: str, tiny: float) -> None:
    with pytest.raises(ConfigurationError, match=field):
        PollPolicy(**{field: tiny})


@pytest.mark.parametrize("field", ["initial", "max_interval"])
def test_intervals_over_a_day_are_refused(field: str) -> None:
    """A pause of 1e308 s, jittered, was infinite: no timer holds it, no JSON writes it."""
    with pytest.raises(ConfigurationError, match=field):
        PollPolicy(**{field: MAX_POLL_INTERVAL * 1.001, "max_interval": MAX_POLL_INTERVAL * 1.001})
    policy = PollPolicy(initial=MAX_POLL_INTERVAL, max_interval=MAX_POLL_INTERVAL)
    assert policy.max_interval == 86400


def test_ten_milliseconds_is_allowed() -> None:
    policy = PollPolicy(initial=MIN_POLL_INTERVAL, max_interval=MIN_POLL_INTERVAL)
    assert policy.initial == MIN_POLL_INTERVAL == 0.01


@given(seed=st.integers(0, 2**64 - 1), index=st.integers(0, 10**9))
def test_draws_are_uniform_numbers_that_depend_on_seed_and_index_only(
    seed: int, index: int
) -> None:
    value = draw(seed, index)
    assert 0.0 <= value < 1.0
    assert draw(seed, index) == value


def test_the_same_random_source_makes_the_same_wait() -> None:
    jittery = PollPolicy(jitter=0.5)
    outcomes = [(float(t), task("running", 3 * t)) for t in range(0, 40, 3)]

    def decisions(seed: int) -> list[Decision[Task]]:
        state = WaitState.start("t-1", jittery, 0.0, random.Random(seed))
        made = []
        for now, seen in outcomes:
            state, decision = state.observe(seen, now)
            made.append(decision)
        return made

    assert decisions(7) == decisions(7)
    assert decisions(7) != decisions(8)


# -- saving and resuming --------------------------------------------------------------

_outcomes = st.lists(
    st.tuples(
        st.floats(0.0, 30.0),
        st.one_of(
            st.builds(task, st.sampled_from(["idle", "queued", "running"]), st.integers(0, 99)),
            st.builds(server_error, st.sampled_from([500, 503]), st.none() | st.floats(0, 90)),
            st.builds(ResponseDecodeError, st.just("not a task")),
        ),
    ),
    max_size=25,
)
_policies = st.builds(
    PollPolicy,
    initial=st.floats(MIN_POLL_INTERVAL, 2.0),
    multiplier=st.floats(1.0, 3.0),
    max_interval=st.floats(2.0, 20.0),
    jitter=st.floats(0.0, 0.9),
    timeout=st.none() | st.floats(1.0, 10_000.0),
    strategy=st.sampled_from(["predictive", "exponential"]),
)


def _feed(state: WaitState, now: float, outcome: Outcome) -> tuple[WaitState, Decision[Task]]:
    if isinstance(outcome, Task):
        return state.observe(outcome, now)
    return state.failed(outcome, now)


@settings(max_examples=300)
@given(
    policy=_policies,
    started=st.floats(-1e9, 2e9),
    seed=st.integers(0, 2**32),
    before=_outcomes,
    after=_outcomes,
)
def test_a_saved_state_resumes_with_the_same_decisions(
    policy: PollPolicy,
    started: float,
    seed: int,
    before: list[tuple[float, Outcome]],
    after: list[tuple[float, Outcome]],
) -> None:
    state, now = WaitState.start("t-1", policy, started, random.Random(seed)), started
    for gap, outcome in before:
        now += gap
        state, _ = _feed(state, now, outcome)
    saved = json.dumps(state.to_json())  # plain JSON: it could go to any store
    resumed = WaitState.from_json(json.loads(saved))
    assert resumed == state
    for gap, outcome in after:
        now += gap
        state, here = _feed(state, now, outcome)
        resumed, there = _feed(resumed, now, outcome)
        assert _same(here, there)
    assert resumed == state


@settings(max_examples=300)
@given(
    policy=_policies,
    started=st.floats(0.0, 2e9),
    before=_outcomes,
    offset=st.floats(-1e9, 1e9) | st.sampled_from([-3600.0, -1e-6, 1e-6, 3600.0]),
    after=_outcomes,
)
def test_a_state_resumed_on_another_clock_still_paces_within_its_policy(
    policy: PollPolicy,
    started: float,
    before: list[tuple[float, Outcome]],
    offset: float,
    after: list[tuple[float, Outcome]],
) -> None:
    """A state resumed on a clock ``offset`` from the one it was saved on (another
    process's clock, or a step of the fleet's, Redis's ``TIME``): each read still comes
    10 ms to ``max_interval`` (or a ``Retry-After``) after the one before, and each
    event's ``elapsed`` and ``remaining`` are finite and not negative (``elapsed`` was
    negative on a clock behind the saved start)."""
    state, now = WaitState.start("t-1", policy, started, random.Random(0)), started
    for gap, outcome in before:
        now += gap
        state, _ = _feed(state, now, outcome)
    state, now = WaitState.from_json(json.loads(json.dumps(state.to_json()))), now + offset
    longest = max(policy.max_interval * (1 + policy.jitter), RETRY_AFTER_CAP)
    rounding = 1e-6  # a time of 3e9 s is a float to within 5e-7 s
    for gap, outcome in after:
        now += gap
        state, decision = _feed(state, now, outcome)
        if isinstance(decision, ReadAt):
            assert MIN_POLL_INTERVAL - rounding <= decision.at - now <= longest + rounding
        event = getattr(decision, "event", None)
        if event is not None:
            assert 0 <= event.elapsed < math.inf
            assert event.remaining is None or 0 <= event.remaining < math.inf


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )
)
def test_anything_else_is_refused_as_a_saved_state(data: Any) -> None:
    with pytest.raises(ConfigurationError):
        WaitState.from_json(data)


@pytest.mark.parametrize(
    "change",
    [
        {"format": 99},
        {"policy": {"initial": 1e-300}},
        {"policy": {"strategy": "psychic"}},
        {"seed": "many"},
        {"pace": None},
    ],
)
def test_a_tampered_state_is_refused(change: dict[str, Any]) -> None:
    data = WaitState.start("t-1", EXACT, 0.0).to_json()
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigurationError):
        WaitState.from_json(data)


def _risen_state() -> WaitState:
    """A state that has seen percent rise: its line fit holds reads."""
    state = WaitState.start("t-1", EXACT, 0.0)
    for now, percent in [(0.0, 0), (1.0, 10), (3.0, 20), (7.0, 35)]:
        state, _ = state.observe(task("running", percent), now)
    assert state.pace.fit is not None and state.pace.fit.n == 3
    return state


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        data = data[key]
    data[leaf] = value


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("percent", 10**6),  # events said 1000000 %
        ("percent", -1),
        ("reads", -5),
        ("seed", -1),
        ("seed", 2**64),
        ("started_at", 1e300),
        ("due_at", -1e13),
        ("pace.top", 101),
        ("pace.hold", -2),
        ("pace.backoff.growth", 1e6),  # the next read came after 1,030,405 s
        ("pace.backoff.growth", 0.5),  # below the policy's initial
        ("pace.backoff.steps", -1),
        ("pace.backoff.due", 1e308),
        ("pace.fit.n", 10**400),  # observe() raised a bare OverflowError
        ("pace.fit.n", 5),  # more reads in the fit than the wait made
        ("pace.fit.base", 101),
        ("pace.fit.origin", 1e308),
    ],
    ids=lambda value: repr(value)[:20],
)
def test_a_saved_state_with_values_no_wait_has_is_refused(path: str, value: Any) -> None:
    data = json.loads(json.dumps(_risen_state().to_json()))
    _set(data, path, value)
    with pytest.raises(ConfigurationError, match="no wait has"):
        WaitState.from_json(data)


def _fields_in(data: dict[str, Any], path: str = "") -> list[tuple[str, Any]]:
    """Every field of a saved state's JSON, nested ones too, as ``(path, value)``."""
    found = []
    for key, value in data.items():
        if key != "format":
            found.append((f"{path}{key}", value))
            if isinstance(value, dict):
                found.extend(_fields_in(value, f"{path}{key}."))
    return found


_SAVED = json.loads(json.dumps(_risen_state().to_json()))
_FIELDS = _fields_in(_SAVED)

_OF_ANOTHER_TYPE: dict[type, list[Any]] = {
    int: [None, True, "35", 35.0, 35.4, [], {}],
    float: [None, False, "1.5", "inf", [], {}],
    str: [None, 5, True, [], {}],
    bool: [None, 0, 1, "true", [], {}],
    dict: [None, "{}", [], 0],
}
"""For a saved field of each JSON type, values of another type: ``to_json`` never
writes one there (a float field may hold an int: JSON writers drop a ``.0``)."""


_OPTIONAL = frozenset({"policy.timeout", "status", "pace.backoff.due", "pace.fit"})
"""The fields a wait may save as ``null`` (no deadline, no read yet, no line yet)."""


def _removed(path: str) -> dict[str, Any]:
    data = json.loads(json.dumps(_SAVED))
    *parents, leaf = path.split(".")
    parent = data
    for key in parents:
        parent = parent[key]
    del parent[leaf]
    return data


@pytest.mark.parametrize("path", [path for path, _ in _FIELDS])
def test_a_saved_state_missing_any_field_is_refused(path: str) -> None:
    """A state cut short lost a field: it was loaded with the default (a percent of 0,
    the default policy, no line fit) and the resumed wait went on without it."""
    with pytest.raises(ConfigurationError, match="lacks"):
        WaitState.from_json(_removed(path))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (path, wrong)
        for path, saved in _FIELDS
        for wrong in _OF_ANOTHER_TYPE[type(saved)]
        if not (wrong is None and path in _OPTIONAL)
    ],
    ids=lambda value: repr(value)[:20],
)
def test_a_saved_field_of_another_type_is_refused(path: str, value: Any) -> None:
    """A ``null``, ``"35"``, ``35.4`` or ``true`` where the state saved a number (or a
    number where it saved text) was read as one (a start time of 0, a rounded percent)."""
    data = json.loads(json.dumps(_SAVED))
    _set(data, path, value)
    with pytest.raises(ConfigurationError, match="not a saved wait state: "):
        WaitState.from_json(data)


@pytest.mark.parametrize("saved_format", [True, 1.0, "1"])
def test_a_format_that_only_equals_this_one_is_refused(saved_format: Any) -> None:
    data = json.loads(json.dumps(_SAVED)) | {"format": saved_format}
    with pytest.raises(ConfigurationError, match="of format 1"):
        WaitState.from_json(data)


_HOSTILE_NUMBERS = st.sampled_from(
    [10**400, -(10**400), 1e308, -1e308, 1e-308, -1, 0, 0.5, 101, 10**6, 2**53, 2**64]
)


def _numbers_in(data: Any, path: str = "") -> list[str]:
    """The paths of the numbers in a saved state's JSON (``pace.fit.n`` ...)."""
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in _numbers_in(value, f"{path}{key}.")]
    is_number = isinstance(data, int | float) and not isinstance(data, bool)
    return [path.rstrip(".")] if is_number and path != "format." else []


@settings(max_examples=400)
@given(
    outcomes=_outcomes,
    data=st.data(),
)
def test_a_saved_state_it_loads_never_breaks_the_wait_that_resumes_it(
    outcomes: list[tuple[float, Outcome]], data: st.DataObject
) -> None:
    """Whatever number of a saved state is edited: refused with ConfigurationError, or
    the resumed wait decides as a wait does (percent 0 to 100, finite times, strict
    JSON again) and raises nothing."""
    state, now = _risen_state(), 7.0
    saved = json.loads(json.dumps(state.to_json()))
    path = data.draw(st.sampled_from(_numbers_in(saved)), label="path")
    _set(saved, path, data.draw(_HOSTILE_NUMBERS, label="value"))
    try:
        resumed = WaitState.from_json(saved)
    except ConfigurationError:
        return
    for gap, outcome in outcomes:
        now += gap
        resumed, decision = _feed(resumed, now, outcome)
        assert 0 <= resumed.percent <= 100
        json.dumps(resumed.to_json(), allow_nan=False)  # strict JSON: no inf, no NaN
        if isinstance(decision, ReadAt | TimeOut):
            assert decision.at - now <= 2 * resumed.policy.max_interval + RETRY_AFTER_CAP
            if decision.event is not None:
                assert 0 <= decision.event.percent <= 100
                remaining = decision.event.remaining
                assert remaining is None or 0 <= remaining < float("inf")


# -- predictive pacing and the time left ------------------------------------------------


def drive(policy: PollPolicy, progress: Any, duration: float) -> list[tuple[float, Decision[Task]]]:
    """Wait for a task that is done at ``duration`` and shows ``progress(t)`` before:
    each read happens when the core says; returns (read time, decision) pairs."""
    state, now, made = WaitState.start("t-1", policy, 0.0, random.Random(0)), 0.0, []
    while True:
        seen = task("done", 100) if now >= duration else task("running", int(progress(now)))
        state, decision = state.observe(seen, now)
        made.append((now, decision))
        if not isinstance(decision, ReadAt):
            return made
        now = decision.at


STEADY = PollPolicy(jitter=0.0, timeout=None)


@pytest.mark.parametrize("duration", [5.0, 30.0, 120.0, 600.0])
def test_a_steady_rise_is_read_soon_after_it_finishes(duration: float) -> None:
    made = drive(STEADY, lambda t: 100 * t / duration, duration)
    backoff = drive(attrs.evolve(STEADY, strategy="exponential"), lambda t: 0, duration)
    reads, finished_at = len(made), made[-1][0]
    assert isinstance(made[-1][1], Finish)
    assert 0 <= finished_at - duration <= 1.0  # backoff alone is up to 10 s late
    assert reads <= len(backoff)


def test_far_from_the_finish_reads_come_every_max_interval() -> None:
    made = drive(STEADY, lambda t: t / 6, 600.0)  # 1 % every 6 s
    pauses = [after.at - now for now, after in made[:-1] if isinstance(after, ReadAt)]
    middle = pauses[8:-3]
    assert middle and all(pause == pytest.approx(STEADY.max_interval) for pause in middle)


@settings(max_examples=500)
@given(
    reads=st.lists(
        st.tuples(
            st.sampled_from([0.0, -1.0, 1e-9]) | st.floats(-60.0, 60.0),  # back, the same
            st.sampled_from([0, 99, 100]) | st.integers(0, 100),  # down, 100 then back
        ),
        max_size=30,
    ),
    started=st.sampled_from([0.0, 1.7e9]),
)
def test_the_time_left_is_finite_and_not_negative_whatever_the_reads(
    reads: list[tuple[float, int]], started: float
) -> None:
    """Percent falling, jumping to 100 and back, two reads at one time, a clock that
    goes backwards: ``remaining`` is ``None`` or a finite number of seconds >= 0."""
    state, now = WaitState.start("t-1", STEADY, started, random.Random(0)), started
    for gap, percent in reads:
        now += gap
        state, decision = state.observe(task("running", percent), now)
        event = getattr(decision, "event", None)
        if event is not None and event.remaining is not None:
            assert 0 <= event.remaining < math.inf


def test_the_time_left_comes_with_each_event_once_percent_has_risen_twice() -> None:
    made = drive(STEADY, lambda t: 100 * t / 120, 120.0)
    events = [d.event for _, d in made if isinstance(d, ReadAt | Finish) and d.event]
    assert events[0].remaining is None  # one read: nothing to go by
    later = [e for e in events if e.percent >= 10 and not e.is_done]
    assert later
    for event in later:
        assert event.remaining is not None
        assert event.remaining == pytest.approx(120.0 - event.elapsed, abs=2.0)
    assert events[-1].remaining == 0.0


def test_a_task_stuck_near_the_end_falls_back_to_backoff_once_overdue() -> None:
    made = drive(STEADY, lambda t: min(99, 10 * t), 100.0)  # 99 % after 10 s, then stuck
    backoff = drive(attrs.evolve(STEADY, strategy="exponential"), lambda t: 0, 100.0)
    assert len(made) <= len(backoff)
    assert made[-1][0] <= backoff[-1][0]  # and done is seen no later
    stuck = [d.event for now, d in made if now > 30 and isinstance(d, ReadAt) and d.event]
    assert all(event.remaining is None for event in stuck)


def test_the_exponential_strategy_ignores_the_prediction_but_reports_it() -> None:
    plain = attrs.evolve(STEADY, strategy="exponential")
    made = drive(plain, lambda t: 100 * t / 120, 120.0)
    assert [now for now, _ in made] == [now for now, _ in drive(plain, lambda t: 0, 120.0)]
    remaining = [d.event.remaining for _, d in made if isinstance(d, ReadAt) and d.event]
    assert remaining[-1] is not None


@pytest.mark.parametrize(
    ("max_interval", "reads", "stuck_at_12"),
    [(10.0, 5, 10.0), (2.0, 12, 2.0)],
)
def test_a_20_s_task_gives_the_events_docs_waiting_md_counts(
    max_interval: float, reads: int, stuck_at_12: float
) -> None:
    """docs/waiting.md (throttle): a steady 20 s task, read by the default policy and by
    ``PollPolicy(max_interval=2.0)``: each read an event, evenly spaced with the latter."""
    made = drive(attrs.evolve(STEADY, max_interval=max_interval), lambda t: 5 * t, 20.0)
    events = [(now, d.event) for now, d in made if isinstance(d, ReadAt | Finish) and d.event]
    assert len(made) == len(events) == reads
    [since] = [now for now, event in events if event.percent == 12]
    later = [now for now, event in events if now > since]
    assert later[0] - since == pytest.approx(stuck_at_12)


def waiting_md_row(starts: str) -> str:
    """The row of docs/waiting.md's decision table that starts ``| starts``."""
    text = (Path(__file__).parent.parent / "docs" / "waiting.md").read_text()
    [row] = [line for line in text.splitlines() if line.startswith(f"| {starts}")]
    return row


def statuses_in(row: str) -> list[int]:
    return [int(status) for status in re.findall(r"\b([1-5]\d\d)\b", row.split(" | ")[0])]


def ended(status: int) -> bool:
    """Whether a read failed with ``status`` ends the wait (else it reads again)."""
    error = error_from_response(status, {}, b"")
    decision = run(EXACT, [(0.0, RUNNING_10), (1.0, error)])[1]
    assert isinstance(decision, Fail | ReadAt)
    return isinstance(decision, Fail)


def test_the_statuses_waiting_md_says_a_wait_rides_through_are_those_it_does() -> None:
    said = statuses_in(waiting_md_row("failed with a network error"))
    riding = [status for status in range(100, 600) if not ended(status)]
    assert said == riding


def test_the_statuses_waiting_md_says_end_a_wait_do() -> None:
    said = statuses_in(waiting_md_row("failed with 400"))
    assert said and all(ended(status) for status in said)


@settings(max_examples=300)
@given(
    policy=_policies,
    timeout=st.floats(1.0, 30.0),
    seed=st.integers(0, 2**32),
    outcomes=_outcomes,
)
def test_a_read_has_the_lead_to_be_answered_if_it_can(
    policy: PollPolicy, timeout: float, seed: int, outcomes: list[tuple[float, Outcome]]
) -> None:
    """A read paced within the last read's lead before the deadline (up to a second)
    was made there, with too little time left for its answer (a millisecond, in one
    timed-out wait in five of a minute): its request was sent, and the wait timed out
    without its answer, a task done since the read before it reported unfinished."""
    policy = attrs.evolve(policy, timeout=timeout)
    state = WaitState.start("t-1", policy, 0.0, random.Random(seed))
    now = 0.0
    for gap, outcome in outcomes:
        now += gap / 100  # each read made when it was due, answered in up to 0.3 s
        if state.expired(now):
            break
        state, decision = _feed(state, now, outcome)
        if isinstance(decision, ReadAt) and state.deadline is not None:
            lead = last_read_lead(policy.timeout or 0.0)
            hint = getattr(outcome, "retry_after", None) or 0.0
            last = state.deadline - lead
            no_room = now + max(lead, min(hint, RETRY_AFTER_CAP)) > last
            assert decision.at <= last or no_room
        if isinstance(decision, ReadAt):
            now = max(now, decision.at)
