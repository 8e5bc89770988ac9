"""Soak: 1,000 concurrent waits on one client while about 20 % of the answers are faults.

Every wait must end in its task's correct outcome — the done task, or the right typed
error — none may hang, none may be lost, and nothing but a ``GPTunnelError`` may escape.
The figures are printed (``pytest -s`` or ``-rA``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any, Final

import pytest
from aiohttp import web

from gptunnel_async import (
    AuthenticationError,
    GPTunnelClient,
    GPTunnelError,
    NotFoundError,
    PollPolicy,
    Task,
    TaskFailedError,
    WaitTimeoutError,
)

from . import faults
from .conftest import API_KEY, ScriptedAPI, client_tasks, connections_in_use, task_json

pytestmark = pytest.mark.soak

WAITS: Final = 1000
FAULT_RATE: Final = 0.2
SEED: Final = 20240601

# What each task does, and how many of the waits get it.
PLANS: Final = {"done": 700, "failed": 100, "stuck": 100, "not_found": 50, "unauthorized": 50}
EXPECTED: Final[dict[str, type[object]]] = {
    "done": Task,
    "failed": TaskFailedError,
    "stuck": WaitTimeoutError,
    "not_found": NotFoundError,
    "unauthorized": AuthenticationError,
}
STEPS: Final = (("idle", 0), ("running", 35), ("running", 70), ("done", 100))

_BODY: Final = json.dumps(task_json(status="running", percent=50)).encode()
FAULTS: Final = [
    ("500", faults.answer(500, "Internal Server Error")),
    ("502 html", faults.html(502)),
    ("503", faults.answer(503, {"error": {"message": "overloaded"}})),
    ("504", faults.answer(504)),
    ("408", faults.answer(408)),
    ("429 Retry-After", faults.rate_limited("1")),
    ("reset", faults.reset()),
    ("truncated body", faults.truncated(_BODY)),
    ("not HTTP", faults.not_http()),
    ("stall", faults.stall()),
    ("stall mid-body", faults.stall_mid_body(_BODY)),
    ("200 html", faults.html(200)),
    ("200 garbage", faults.garbage(200)),
]

# Pauses are scaled down a hundredfold (the ``hundredfold`` fixture): polls every
# 10-50 ms, retry backoffs from 5 ms; deadlines and request timeouts are real seconds.
POLICY: Final = PollPolicy(initial=1.0, multiplier=1.5, max_interval=5.0, jitter=0.5, timeout=40)
STUCK_DEADLINE: Final = 1.5
REQUEST_TIMEOUT: Final = 1.0
HANG_GUARD: Final = 55.0


class TaskFarm:
    """The server side: each task follows its plan, and any answer may be a fault instead."""

    def __init__(self, plans: dict[str, str], rng: random.Random) -> None:
        self.plans = plans
        self.rng = rng
        self.reads: Counter[str] = Counter()
        self.requests = 0
        self.faults: Counter[str] = Counter()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.rng.random() < FAULT_RATE:
            name, fault = self.rng.choice(FAULTS)
            self.faults[name] += 1
            return await fault(request)
        task_id = request.query["taskId"]
        plan = self.plans[task_id]
        if plan == "not_found":
            return web.json_response({"error": {"message": "task not found"}}, status=404)
        if plan == "unauthorized":
            return web.json_response({"error": {"message": "Unauthorized"}}, status=401)
        step = self.reads[task_id]
        self.reads[task_id] += 1
        if plan == "stuck":
            return web.json_response(task_json(id=task_id, status="running", percent=50))
        if plan == "failed" and step >= 1:
            return web.json_response(task_json(id=task_id, status="failed", error="no face"))
        status, percent = STEPS[min(step, len(STEPS) - 1)]
        return web.json_response(task_json(id=task_id, status=status, percent=percent))


def outcome_is_right(plan: str, task_id: str, outcome: object) -> bool:
    """Whether a wait on a task with ``plan`` ended as it must."""
    if not isinstance(outcome, EXPECTED[plan]):
        return False
    if isinstance(outcome, Task):
        return outcome.id == task_id and outcome.is_done and outcome.percent == 100
    if isinstance(outcome, TaskFailedError | WaitTimeoutError):
        return outcome.task_id == task_id
    return True


async def test_a_thousand_concurrent_waits_through_faults_all_end_correctly(
    api: ScriptedAPI, hundredfold: None
) -> None:
    rng = random.Random(SEED)
    kinds = [plan for plan, count in PLANS.items() for _ in range(count)]
    rng.shuffle(kinds)
    plans = {f"task-{n:04d}": plan for n, plan in enumerate(kinds)}
    farm = TaskFarm(plans, rng)
    api.script(farm)

    async def wait(client: GPTunnelClient, task_id: str, n: int) -> Task:
        timeout = STUCK_DEADLINE if plans[task_id] == "stuck" else POLICY.timeout
        waiter = client.wait_for_result(task_id, timeout=timeout)
        if n % 2:
            return await waiter
        final: Task | None = None
        async for event in waiter:  # half the waits iterate their events
            final = event.task
        assert final is not None
        return final

    started = time.perf_counter()
    async with GPTunnelClient(
        api_key=API_KEY, base_url=api.base_url, timeout=REQUEST_TIMEOUT, poll_policy=POLICY
    ) as client:
        waits = [wait(client, task_id, n) for n, task_id in enumerate(plans)]
        outcomes: list[Any] = await asyncio.wait_for(
            asyncio.gather(*waits, return_exceptions=True), HANG_GUARD
        )
        assert connections_in_use(client) == 0
    elapsed = time.perf_counter() - started

    classes = Counter(type(outcome).__name__ for outcome in outcomes)
    wrong = [
        (task_id, plans[task_id], repr(outcome))
        for task_id, outcome in zip(plans, outcomes, strict=True)
        if not outcome_is_right(plans[task_id], task_id, outcome)
    ]
    print(f"\nsoak: {WAITS} concurrent waits, fault rate {FAULT_RATE:.0%}, seed {SEED}")
    print(f"  outcomes:  {dict(sorted(classes.items()))}")
    print(f"  requests:  {farm.requests} ({sum(farm.faults.values())} faults injected)")
    print(f"  faults:    {dict(sorted(farm.faults.items()))}")
    print(f"  wall time: {elapsed:.1f} s")

    assert len(outcomes) == WAITS  # none lost
    assert all(isinstance(o, Task | GPTunnelError) for o in outcomes), classes
    assert wrong == [], f"{len(wrong)} waits ended wrongly, e.g. {wrong[:3]}"
    assert classes == Counter({EXPECTED[p].__name__: n for p, n in PLANS.items()})
    assert 0.15 < sum(farm.faults.values()) / farm.requests < 0.25
    assert set(farm.faults) == {name for name, _ in FAULTS}  # every kind was injected
    assert client_tasks() == []
