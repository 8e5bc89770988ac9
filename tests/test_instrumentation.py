"""Instrumentation hooks: what each request, retry, progress event and wait reports, the
default logging hook, and the Prometheus and OpenTelemetry integrations."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, Counter

from gptunnel_async import (
    ConfigurationError,
    GPTunnelClient,
    RateLimitError,
    TaskFailedError,
    WaitTimeoutError,
)
from gptunnel_async.instrumentation import (
    Hook,
    LoggingHook,
    ProgressDetails,
    RequestDetails,
    RetryDetails,
    WaitFinished,
    WaitStarted,
    get_hooks,
    set_hooks,
)
from gptunnel_async.instrumentation._hooks import LISTENING
from gptunnel_async.instrumentation.otel import OpenTelemetryHook
from gptunnel_async.instrumentation.prometheus import PrometheusHook
from gptunnel_async.testing import FakeGPTunnel, instant_waits

STEPS = [("queued", 0), ("running", 40), ("done", 100)]


class Recorder(Hook):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_request(self, details: RequestDetails) -> None:
        self.seen.append(details)

    def on_retry(self, details: RetryDetails) -> None:
        self.seen.append(details)

    def on_wait_started(self, details: WaitStarted) -> None:
        self.seen.append(details)

    def on_progress(self, details: ProgressDetails) -> None:
        self.seen.append(details)

    def on_wait_finished(self, details: WaitFinished) -> None:
        self.seen.append(details)

    def of(self, kind: type[Any]) -> list[Any]:
        return [details for details in self.seen if isinstance(details, kind)]


@pytest.fixture(autouse=True)
def restore_hooks() -> Iterator[None]:
    before = get_hooks()
    yield
    set_hooks(before)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGPTunnel]:
    with instant_waits():
        async with FakeGPTunnel() as fake:
            yield fake


@pytest.fixture
async def client(fake: FakeGPTunnel) -> AsyncIterator[GPTunnelClient]:
    async with fake.client() as client:
        yield client


@pytest.fixture
def recorder() -> Recorder:
    """A :class:`Recorder` as the only hook (``restore_hooks`` puts the others back)."""
    recording = Recorder()
    set_hooks([recording])
    return recording


def test_the_default_is_one_logging_hook() -> None:
    [hook] = get_hooks()
    assert type(hook) is LoggingHook


@pytest.mark.parametrize(
    "hooks",
    [[print], [LoggingHook(), "logging"], LoggingHook(), None, 3, [None]],
    ids=["a function", "a string among hooks", "one hook, not a list", "None", "3", "[None]"],
)
def test_only_hooks_that_are_hooks_are_taken(hooks: Any) -> None:
    before = get_hooks()
    with pytest.raises(ConfigurationError, match="Hook"):
        set_hooks(hooks)
    assert get_hooks() == before  # nothing half-set
    set_hooks([])
    assert get_hooks() == ()


async def test_a_wait_reports_its_start_reads_progress_retries_and_end(
    fake: FakeGPTunnel,
    recorder: Recorder,
) -> None:
    task_id = fake.script_task(steps=STEPS)
    fake.fail_next(503, times=1)
    async with fake.client(max_retries=0) as client:  # the wait itself reads again
        await client.wait_for_result(task_id)

    [started] = recorder.of(WaitStarted)
    assert started == WaitStarted(task_id, "faceswap", 600.0, started.wait_id)
    assert started.wait_id != 0
    requests = recorder.of(RequestDetails)
    assert [r.status_code for r in requests] == [503, 200, 200, 200]
    assert [r.error for r in requests] == ["ServerError", None, None, None]
    assert {(r.method, r.path, r.family, r.task_id) for r in requests} == {
        ("GET", "/v1/faceswap/result", "faceswap", task_id)
    }
    assert all(r.duration >= 0 and r.started_at > 0 for r in requests)
    [retry] = recorder.of(RetryDetails)
    assert (retry.scope, retry.task_id, retry.attempt, retry.status_code) == (
        "wait",
        task_id,
        1,
        503,
    )
    progress = recorder.of(ProgressDetails)
    assert [(p.status, p.percent) for p in progress] == STEPS
    [finished] = recorder.of(WaitFinished)
    assert (finished.outcome, finished.status, finished.reads, finished.error) == (
        "done",
        "done",
        4,
        None,
    )
    assert {p.wait_id for p in progress} == {finished.wait_id} == {started.wait_id}
    # the order: start, then reads and events, the end last
    assert recorder.seen[0] is started and recorder.seen[-1] is finished
    assert fake.api_key not in repr(recorder.seen)


async def test_a_failed_read_after_which_the_deadline_comes_first_is_no_retry(
    fake: FakeGPTunnel, recorder: Recorder
) -> None:
    """A Retry-After past the deadline: the wait times out, and no hook (nor the default
    WARNING, "polling again in 0.40s") promises a read that never comes."""
    task_id = fake.script_task(steps=[("running", 10)])
    fake.fail_next(429, times=1, retry_after=3600)
    async with fake.client(max_retries=0) as client:
        with instant_waits(False), pytest.raises(WaitTimeoutError) as caught:
            await client.wait_for_result(task_id, timeout=0.4)
    assert recorder.of(RetryDetails) == []
    assert [r.status_code for r in recorder.of(RequestDetails)] == [429]
    assert isinstance(caught.value.last_error, RateLimitError)
    [finished] = recorder.of(WaitFinished)
    assert (finished.outcome, finished.reads) == ("timeout", 1)


async def test_under_instant_waits_every_failed_read_read_again_is_a_retry(
    fake: FakeGPTunnel, recorder: Recorder
) -> None:
    """Reads the pacing put past the deadline are made at once under instant waits: one
    run made 9,258 requests and reported 2 retries."""
    task_id = fake.script_task(steps=[("running", 10)])
    fake.fail_next(503, times=None)
    async with fake.client(max_retries=0) as client:
        with pytest.raises(WaitTimeoutError):
            await client.wait_for_result(task_id, timeout=0.3)  # the fixture's instant waits
    reads = len(recorder.of(RequestDetails))
    assert reads > 5
    assert len(recorder.of(RetryDetails)) >= reads - 1  # all but a last one the deadline ended


async def test_a_request_retried_by_the_client_reports_each_attempt(
    fake: FakeGPTunnel, client: GPTunnelClient, recorder: Recorder
) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    fake.fail_next(429, times=2, retry_after=0)
    await client.get_result(task_id)
    assert [r.status_code for r in recorder.of(RequestDetails)] == [429, 429, 200]
    retries = recorder.of(RetryDetails)
    assert [(r.scope, r.attempt, r.status_code, r.task_id) for r in retries] == [
        ("request", 1, 429, task_id),
        ("request", 2, 429, task_id),
    ]
    assert recorder.of(WaitStarted) == []


@pytest.mark.parametrize(
    ("script", "timeout", "error", "outcome", "status"),
    [
        ("failed", None, TaskFailedError, "failed", "failed"),
        ("running", 0.3, WaitTimeoutError, "timeout", "running"),
        ("missing", None, Exception, "error", None),
    ],
)
async def test_each_way_a_wait_ends_is_reported(
    fake: FakeGPTunnel,
    client: GPTunnelClient,
    script: str,
    timeout: float | None,
    error: type[Exception],
    outcome: str,
    status: str | None,
    recorder: Recorder,
) -> None:
    task_id = {
        "failed": lambda: fake.fail_task("no face", steps=[("running", 10)]),
        "running": lambda: fake.script_task(steps=[("running", 10)]),
        "missing": lambda: "no-such-task",
    }[script]()
    with pytest.raises(error):
        await client.wait_for_result(task_id, timeout=timeout)
    [finished] = recorder.of(WaitFinished)
    assert (finished.outcome, finished.status) == (outcome, status)
    assert finished.error is not None


@pytest.mark.parametrize("mode", ["await", "iterate"])
async def test_a_wait_ended_by_its_on_progress_is_reported(
    fake: FakeGPTunnel, client: GPTunnelClient, mode: str, recorder: Recorder
) -> None:

    def refuse(_: object) -> None:
        raise LookupError("the bot's own bug")

    waiter = client.wait_for_result(fake.script_task(steps=STEPS), on_progress=refuse)

    async def drive() -> None:
        if mode == "await":
            await waiter
        else:
            async for _ in waiter:
                pass

    with pytest.raises(LookupError):
        await drive()
    [finished] = recorder.of(WaitFinished)
    assert (finished.outcome, finished.error) == ("error", "LookupError")


async def test_a_wait_left_early_is_reported_cancelled(
    fake: FakeGPTunnel, client: GPTunnelClient, recorder: Recorder
) -> None:
    task_id = fake.script_task(steps=STEPS)
    waiter = client.wait_for_result(task_id)
    async with contextlib.aclosing(waiter):
        async for _ in waiter:
            break
    [finished] = recorder.of(WaitFinished)
    assert (finished.outcome, finished.error) == ("cancelled", None)

    task = asyncio.ensure_future(client.wait_for_result(fake.script_task(steps=[("idle", 0)])))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.of(WaitFinished)[-1].outcome == "cancelled"


@pytest.mark.parametrize("leave", ["break", "raise"])
async def test_a_wait_left_without_closing_it_is_reported_when_it_is_collected(
    fake: FakeGPTunnel, client: GPTunnelClient, leave: str, recorder: Recorder
) -> None:
    for left in range(3):
        waiter = client.wait_for_result(fake.script_task(steps=STEPS))
        with contextlib.suppress(LookupError):
            async for _ in waiter:
                if leave == "raise":
                    raise LookupError("the bot's own code broke")
                break
        assert len(recorder.of(WaitFinished)) == left  # it has not ended yet
        del waiter
        gc.collect()
        await asyncio.sleep(0)  # the hooks hear of it on the loop, right after
    finished = recorder.of(WaitFinished)
    assert len(finished) == len(recorder.of(WaitStarted)) == 3
    assert {(f.outcome, f.error, f.reads) for f in finished} == {("cancelled", None, 1)}


async def test_a_wait_left_and_collected_in_another_thread_is_reported_on_its_loop(
    fake: FakeGPTunnel, client: GPTunnelClient
) -> None:
    threads: list[int] = []

    class Where(Hook):
        def on_wait_finished(self, details: WaitFinished) -> None:
            threads.append(threading.get_ident())

    set_hooks([Where()])
    waiters = [client.wait_for_result(fake.script_task(steps=STEPS))]
    async for _ in waiters[0]:
        break
    worker = threading.Thread(target=lambda: (waiters.clear(), gc.collect()))
    worker.start()
    worker.join()
    assert threads == []  # not in the thread that dropped it
    await asyncio.sleep(0)
    assert threads == [threading.get_ident()]


async def test_a_broken_hook_is_logged_and_the_wait_goes_on(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Hook):
        def on_progress(self, details: ProgressDetails) -> None:
            raise RuntimeError("metrics are down")

    recorder = Recorder()
    set_hooks([Broken(), recorder])
    with caplog.at_level(logging.ERROR, logger="gptunnel_async"):
        task = await client.wait_for_result(fake.script_task(steps=STEPS))
    assert task.is_done
    assert len(recorder.of(ProgressDetails)) == 3
    failures = [
        r for r in caplog.records if r.exc_info and "metrics are down" in str(r.exc_info[1])
    ]
    assert len(failures) == 3


HOOK_METHODS = ("on_request", "on_retry", "on_wait_started", "on_progress", "on_wait_finished")


@pytest.mark.parametrize("method", HOOK_METHODS)
async def test_a_hook_raising_cancelled_error_is_logged_and_cancels_nothing(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    """A hook that raised ``CancelledError`` (``future.result()`` on a cancelled future
    of its own) got past the hooks' ``except Exception``: the wait ended cancelled,
    though nothing cancelled it, where any other error of a hook is logged and ignored.
    A hook runs inline and awaits nothing, so no cancellation of the task reaches it:
    the error is the hook's own."""

    def cancelled(self: Hook, details: object) -> None:
        raise asyncio.CancelledError

    broken = type("Broken", (Hook,), {method: cancelled})()
    set_hooks([broken])
    fake.fail_next(503)  # a retry, for on_retry
    with caplog.at_level(logging.ERROR, logger="gptunnel_async"):
        task = await asyncio.create_task(client.wait_for_result(fake.script_task(steps=STEPS)))
    assert task.is_done
    assert any(
        isinstance(r.exc_info and r.exc_info[1], asyncio.CancelledError) for r in caplog.records
    )


async def test_the_logging_hook_says_what_failed_once(caplog: pytest.LogCaptureFixture) -> None:
    with instant_waits(), caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        async with GPTunnelClient(api_key="k", base_url="http://127.0.0.1:1/v1") as client:
            with pytest.raises(Exception, match="Cannot connect"):
                await client.get_result("t")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    for number, line in enumerate(lines, 1):
        assert line.startswith("GET /v1/faceswap/result failed: Cannot connect")
        assert line.count("/v1/faceswap/result") == 1
        assert f"; retry {number} in " in line


@pytest.mark.parametrize("status", [408, 503])
async def test_a_server_answer_retry_names_the_request_then_the_reason(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    fake.fail_next(status, times=1)
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        await client.get_result(fake.script_task(steps=[("done", 100)]))
    [line] = [record.getMessage() for record in caplog.records]
    assert line.startswith(f"GET /v1/faceswap/result failed ({status}")
    assert line.count("/v1/faceswap/result") == 1


async def test_a_server_error_retry_names_the_request_then_the_reason(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(503, times=1)
    with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
        task_id = fake.script_task(steps=[("done", 100)])
        await client.get_result(task_id)
    [line] = [record.getMessage() for record in caplog.records]
    assert line.startswith("GET /v1/faceswap/result failed (")
    assert "; retry 1 in " in line
    # of many waits at once, which one; the shape docs/reliability.md shows
    assert re.search(rf"; retry 1 in \d+\.\d\ds \(task {task_id}\)$", line)


# -- Prometheus ----------------------------------------------------------------------


async def test_prometheus_counts_and_times_requests_retries_and_waits(
    fake: FakeGPTunnel, client: GPTunnelClient
) -> None:
    registry = CollectorRegistry()
    set_hooks([PrometheusHook(registry)])
    fake.fail_next(429, times=1, retry_after=0)
    await client.wait_for_result(fake.script_task(steps=STEPS))
    with pytest.raises(TaskFailedError):
        await client.wait_for_result(fake.fail_task("no face"))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    get = {"family": "faceswap", "method": "GET"}
    assert value("gptunnel_requests_total", **get, status="429") == 1
    assert value("gptunnel_requests_total", **get, status="200") == 4
    assert value("gptunnel_request_duration_seconds_count", **get) == 5
    assert value("gptunnel_retries_total", family="faceswap", scope="request", reason="429") == 1
    assert value("gptunnel_progress_events_total", family="faceswap") == 3
    assert value("gptunnel_waits_total", family="faceswap", outcome="done") == 1
    assert value("gptunnel_waits_total", family="faceswap", outcome="failed") == 1
    assert value("gptunnel_wait_duration_seconds_count", family="faceswap", outcome="done") == 1
    assert value("gptunnel_wait_reads_sum", family="faceswap") == 4  # the retry is in a read


async def test_prometheus_counts_network_failures_as_errors() -> None:
    registry = CollectorRegistry()
    set_hooks([PrometheusHook(registry, namespace="bot")])
    with instant_waits():
        async with GPTunnelClient(
            api_key="k", base_url="http://127.0.0.1:1/v1", max_retries=1
        ) as client:
            with pytest.raises(Exception, match="Cannot connect"):
                await client.get_result("t")
    labels = {"family": "faceswap", "method": "GET", "status": "error"}
    assert registry.get_sample_value("bot_requests_total", labels) == 2
    retry = {"family": "faceswap", "scope": "request", "reason": "APIConnectionError"}
    assert registry.get_sample_value("bot_retries_total", retry) == 1


def test_a_second_prometheus_hook_on_a_registry_is_a_configuration_error() -> None:
    """It raised prometheus-client's own "Duplicated timeseries" ValueError, not a
    GPTunnelError, saying nothing of what to do (an app factory called twice)."""
    registry = CollectorRegistry()
    first = PrometheusHook(registry)
    with pytest.raises(ConfigurationError, match="one PrometheusHook per registry"):
        PrometheusHook(registry)
    PrometheusHook(registry, namespace="other")  # another namespace is another set
    first.waits.labels("faceswap", "done").inc()
    labels = {"family": "faceswap", "outcome": "done"}
    assert registry.get_sample_value("gptunnel_waits_total", labels) == 1


def test_a_prometheus_hook_registers_all_its_metrics_or_none() -> None:
    registry = CollectorRegistry()
    Counter("waits", "An application's own.", namespace="gptunnel", registry=registry)
    with pytest.raises(ConfigurationError, match="gptunnel_"):
        PrometheusHook(registry)
    # Nothing of the refused hook stayed: only the application's own metric is there.
    assert [metric.name for metric in registry.collect()] == ["gptunnel_waits"]


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"registry": "registry"}, "registry"),
        ({"registry": object()}, "registry"),
        ({"namespace": 7}, "namespace"),
        ({"namespace": b"bot"}, "namespace"),
    ],
)
def test_a_prometheus_hook_of_odd_arguments_is_a_configuration_error(
    arguments: dict[str, Any], named: str
) -> None:
    """They raised AttributeError or TypeError from inside prometheus-client."""
    arguments.setdefault("registry", CollectorRegistry())
    with pytest.raises(ConfigurationError, match=f"^{named} must be"):
        PrometheusHook(**arguments)


# -- OpenTelemetry -------------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    set_hooks([OpenTelemetryHook(provider)])
    yield exporter
    provider.shutdown()


async def test_otel_makes_a_span_per_wait_with_a_child_per_read(
    fake: FakeGPTunnel, client: GPTunnelClient, spans: InMemorySpanExporter
) -> None:
    task_id = fake.script_task(steps=STEPS)
    await client.wait_for_result(task_id)
    finished = spans.get_finished_spans()
    [wait] = [span for span in finished if span.name == "gptunnel.wait faceswap"]
    reads = [span for span in finished if span.name == "GET /v1/faceswap/result"]
    assert len(reads) == 3
    assert all(read.parent is not None for read in reads)
    assert {read.parent.span_id for read in reads if read.parent} == {wait.context.span_id}
    assert all(read.attributes["http.response.status_code"] == 200 for read in reads)
    assert wait.attributes["gptunnel.task_id"] == task_id
    assert wait.attributes["gptunnel.outcome"] == "done"
    assert wait.attributes["gptunnel.reads"] == 3
    assert [event.attributes["gptunnel.percent"] for event in wait.events] == [0, 40, 100]
    assert wait.status.status_code is StatusCode.UNSET
    assert all(
        wait.start_time <= read.start_time <= read.end_time <= wait.end_time for read in reads
    )
    assert fake.api_key not in repr(
        [attrs.asdict(s) if attrs.has(s) else s.to_json() for s in finished]
    )


async def test_otel_marks_a_failed_wait_and_a_failed_read_as_errors(
    fake: FakeGPTunnel, client: GPTunnelClient, spans: InMemorySpanExporter
) -> None:
    fake.fail_next(503, times=1)
    with pytest.raises(TaskFailedError):
        await client.wait_for_result(fake.fail_task("no face"))
    finished = spans.get_finished_spans()
    [wait] = [span for span in finished if span.name.startswith("gptunnel.wait")]
    assert wait.status.status_code is StatusCode.ERROR
    assert wait.attributes["gptunnel.outcome"] == "failed"
    [failed_read] = [s for s in finished if s.attributes.get("error.type") == "ServerError"]
    assert failed_read.status.status_code is StatusCode.ERROR
    assert failed_read.parent is not None and failed_read.parent.span_id == wait.context.span_id


async def test_otel_ends_each_of_two_overlapping_waits_on_one_task_as_it_ended(
    fake: FakeGPTunnel, client: GPTunnelClient, spans: InMemorySpanExporter
) -> None:
    task_id = fake.script_task(steps=[("running", 10)] * 6 + [("done", 100)])
    hasty = asyncio.ensure_future(client.wait_for_result(task_id, timeout=0.001))
    await asyncio.sleep(0)  # the hasty wait starts first, and ends first
    patient = asyncio.ensure_future(client.wait_for_result(task_id))
    with pytest.raises(WaitTimeoutError):
        await hasty
    await patient
    waits = [span for span in spans.get_finished_spans() if span.name.startswith("gptunnel")]
    assert [span.attributes["gptunnel.outcome"] for span in waits] == ["timeout", "done"]
    timed_out, done = waits
    assert timed_out.start_time < done.start_time  # each span is its own wait's
    assert done.events[-1].attributes["gptunnel.percent"] == 100


async def test_otel_ends_the_span_of_a_wait_left_by_break_once_it_is_collected(
    fake: FakeGPTunnel, client: GPTunnelClient, spans: InMemorySpanExporter
) -> None:
    waiter = client.wait_for_result(fake.script_task(steps=STEPS))
    async for _ in waiter:
        break
    assert not [s for s in spans.get_finished_spans() if s.name.startswith("gptunnel.wait")]
    del waiter
    gc.collect()
    await asyncio.sleep(0)
    [wait] = [s for s in spans.get_finished_spans() if s.name.startswith("gptunnel.wait")]
    assert wait.attributes["gptunnel.outcome"] == "cancelled"
    assert wait.status.status_code is StatusCode.UNSET  # leaving a wait is no error


async def test_a_huge_status_reaches_the_hooks_cut_short(
    fake: FakeGPTunnel, client: GPTunnelClient, spans: InMemorySpanExporter
) -> None:
    recorder = Recorder()
    set_hooks([*get_hooks(), recorder])
    huge = "running " + "x" * 1_000_000
    task_id = fake.script_task(steps=[(huge, 10), (huge + "!", 20), ("done", 100)])
    await client.wait_for_result(task_id)
    statuses = [p.status for p in recorder.of(ProgressDetails)]
    assert [len(status) for status in statuses[:2]] == [100, 100] and statuses[-1] == "done"
    [wait] = [s for s in spans.get_finished_spans() if s.name.startswith("gptunnel.wait")]
    assert max(len(str(e.attributes["gptunnel.status"])) for e in wait.events) == 100


async def test_a_read_outside_a_wait_is_a_span_of_its_own(
    fake: FakeGPTunnel, client: GPTunnelClient, spans: InMemorySpanExporter
) -> None:
    await client.get_result(fake.script_task(steps=[("done", 100)]))
    [read] = spans.get_finished_spans()
    assert read.parent is None


# -- nothing is imported unless used --------------------------------------------------


def test_importing_the_sdk_imports_no_integration() -> None:
    code = (
        "import sys, gptunnel_async; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'prometheus_client', 'opentelemetry', 'tenacity'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _hook_with(method: str, body: Any) -> Hook:
    """A hook whose ``method`` is ``body`` (a function of ``self`` and the details)."""
    return type("Custom", (Hook,), {method: body})()  # type: ignore[no-any-return]


async def _async_method(self: Hook, details: object) -> None:
    raise AssertionError("never run")


def _generator_method(self: Hook, details: object) -> Iterator[None]:
    yield


@pytest.mark.parametrize(
    "method", ["on_request", "on_retry", "on_wait_started", "on_progress", "on_wait_finished"]
)
@pytest.mark.parametrize(
    ("body", "said"),
    [
        (_async_method, "not async def"),
        # staticmethod: a bare partial as a class attribute warns on Python 3.13
        (staticmethod(functools.partial(_async_method, None)), "not async def"),
        (_generator_method, "generator"),
        (lambda self: None, "must take one argument"),
        (lambda self, details, more: None, "must take one argument"),
        ("a string", "must be a function"),
        (None, "must be a function"),
    ],
    ids=[
        "async def",
        "a partial of an async def",
        "a generator",
        "no details",
        "more than the details",
        "a string",
        "None",
    ],
)
def test_a_hook_method_that_would_never_run_is_refused(method: str, body: Any, said: str) -> None:
    before = get_hooks()
    hook = _hook_with(method, body)
    with pytest.raises(ConfigurationError, match=f"Custom.{method} .*{said}"):
        set_hooks([LoggingHook(), hook])
    assert get_hooks() == before  # nothing half-set
    assert LISTENING.retry == tuple(h.on_retry for h in before)


async def test_a_hook_that_returns_a_coroutine_is_logged_and_the_coroutine_closed(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[object] = []

    async def record(details: object) -> None:
        ran.append(details)

    coroutines: list[Any] = []

    class Decorated(Hook):
        # A plain method that hands back a coroutine: set_hooks cannot tell it.
        def on_progress(self, details: ProgressDetails) -> None:
            coroutines.append(record(details))
            return coroutines[-1]  # type: ignore[no-any-return]

    recorder = Recorder()
    set_hooks([Decorated(), recorder])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" RuntimeWarning would fail here
        with caplog.at_level(logging.ERROR, logger="gptunnel_async"):
            task = await client.wait_for_result(fake.script_task(steps=STEPS))
        del coroutines[:]
        gc.collect()
    assert task.is_done
    assert ran == []
    assert len(recorder.of(ProgressDetails)) == 3  # the next hook still ran each time
    said = [r.getMessage() for r in caplog.records if "rather than running" in r.getMessage()]
    assert len(said) == 3
    assert all("coroutine" in line and "not awaited" in line for line in said)


async def test_a_hook_that_returns_a_value_is_not_reported(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture
) -> None:
    class Counting(Hook):
        def __init__(self) -> None:
            self.count = 0

        def on_progress(self, details: ProgressDetails) -> None:
            self.count += 1
            return self.count  # type: ignore[return-value]  # a sloppy hook, not a bug

    hook = Counting()
    set_hooks([hook])
    with caplog.at_level(logging.ERROR, logger="gptunnel_async"):
        await client.wait_for_result(fake.script_task(steps=STEPS))
    assert hook.count == 3
    assert caplog.records == []


def _fields(record: logging.LogRecord, *names: str) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


async def test_retry_log_records_carry_structured_fields(
    fake: FakeGPTunnel, caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON log formatter gets the retry's values as fields (``record.task_id`` ...),
    not only inside the text."""
    task_id = fake.script_task(steps=[("running", 10), ("done", 100)])
    fake.fail_next(503, times=1)
    async with fake.client(max_retries=1) as client:
        with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
            await client.get_result(task_id)
        fake.fail_next(503, times=1)
        async with fake.client(max_retries=0) as no_retries:
            with caplog.at_level(logging.WARNING, logger="gptunnel_async"):
                await no_retries.wait_for_result(task_id)
    request, wait = caplog.records
    names = ("task_id", "family", "scope", "attempt", "status_code", "error_type")
    assert _fields(request, *names) == {
        "task_id": task_id,
        "family": "faceswap",
        "scope": "request",
        "attempt": 1,
        "status_code": 503,
        "error_type": "ServerError",
    }
    assert _fields(wait, *names) == {
        "task_id": task_id,
        "family": "faceswap",
        "scope": "wait",
        "attempt": 1,
        "status_code": 503,
        "error_type": "ServerError",
    }
    assert request.retry_in >= 0 and wait.retry_in >= 0  # type: ignore[attr-defined]


async def test_read_log_records_carry_structured_fields_server_text_made_safe(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = "\x1b[2Jrunning\n" + "x" * 5000
    task_id = fake.script_task(steps=[(hostile, 40), ("done", 100)])
    with caplog.at_level(logging.DEBUG, logger="gptunnel_async"):
        await client.wait_for_result(task_id)
    reads = [record for record in caplog.records if hasattr(record, "reads")]
    assert [(r.percent, r.reads) for r in reads] == [(40, 1), (100, 2)]  # type: ignore[attr-defined]
    first, last = reads
    assert first.task_id == task_id and first.family == "faceswap"  # type: ignore[attr-defined]
    assert first.next_read_in >= 0 and last.next_read_in is None  # type: ignore[attr-defined]
    assert first.status.startswith("\\x1b[2Jrunning")  # type: ignore[attr-defined]
    assert len(first.status) <= 100 and "\n" not in first.status  # type: ignore[attr-defined]
    assert last.status == "done"  # type: ignore[attr-defined]


@pytest.fixture
def app_record_factory() -> Iterator[None]:
    """An application's record factory that stamps every record with fields of its own,
    as the logging cookbook shows (a job id from a context variable, say)."""
    previous = logging.getLogRecordFactory()

    def stamped(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.task_id = "job-7"
        record.status = "app"
        return record

    logging.setLogRecordFactory(stamped)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


@pytest.mark.usefixtures("app_record_factory")
async def test_log_fields_leave_the_applications_own_attributes_and_the_wait_alone(
    fake: FakeGPTunnel, caplog: pytest.LogCaptureFixture
) -> None:
    """A record factory that sets ``task_id`` or ``status`` made ``extra=`` raise
    ``KeyError`` inside ``logging``: the wait ended with it (not a GPTunnelError). Now the
    application's attribute stays, and the SDK's other fields are still there."""
    task_id = fake.script_task(steps=[("running", 10), ("done", 100)])
    fake.fail_next(503, times=1)
    async with fake.client(max_retries=0) as client:
        with caplog.at_level(logging.DEBUG, logger="gptunnel_async"):
            done = await client.wait_for_result(task_id)
    assert done.id == task_id
    retry = next(r for r in caplog.records if r.levelno == logging.WARNING)
    reads = [r for r in caplog.records if hasattr(r, "reads")]
    assert reads and all(r.task_id == "job-7" and r.status == "app" for r in reads)  # type: ignore[attr-defined]
    assert [r.family for r in reads] == ["faceswap"] * len(reads)  # type: ignore[attr-defined]
    assert {r.funcName for r in reads} == {"_log_read"}
    assert (retry.task_id, retry.scope, retry.status_code) == ("job-7", "wait", 503)  # type: ignore[attr-defined]
    assert retry.funcName == "on_retry"


async def test_a_hook_that_returns_the_task_it_started_is_not_reported(
    fake: FakeGPTunnel, client: GPTunnelClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook handing its work to a task of its own, and returning it, was logged at
    ERROR as one whose "body did not run", while the task ran."""
    sent: list[WaitFinished] = []
    started: list[asyncio.Task[None]] = []

    async def push(details: WaitFinished) -> None:
        sent.append(details)

    class Handing(Hook):
        def on_wait_finished(self, details: WaitFinished) -> None:
            started.append(asyncio.ensure_future(push(details)))
            return started[-1]  # type: ignore[return-value]  # a sloppy hook, not a bug

    set_hooks([Handing()])
    with caplog.at_level(logging.ERROR, logger="gptunnel_async"):
        await client.wait_for_result(fake.script_task(steps=STEPS))
        await asyncio.gather(*started)
    assert len(sent) == 1
    assert caplog.records == []
