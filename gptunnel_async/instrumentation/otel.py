"""OpenTelemetry traces for the SDK: a span per wait, with a child span per read.

Needs ``pip install 'gptunnel-async[otel]'`` (opentelemetry-api; configure an SDK and
an exporter as your service does); nothing here is imported unless you import this
module.

```python
from gptunnel_async.instrumentation import LoggingHook, set_hooks
from gptunnel_async.instrumentation.otel import OpenTelemetryHook

set_hooks([LoggingHook(), OpenTelemetryHook()])
```
"""

from __future__ import annotations

from typing import Final

from opentelemetry import trace

from ._hooks import Hook, ProgressDetails, RequestDetails, WaitFinished, WaitStarted

__all__ = ["TRACER_NAME", "OpenTelemetryHook"]

TRACER_NAME: Final = "gptunnel_async"


def _nanoseconds(seconds: float) -> int:
    return int(seconds * 1e9)


class OpenTelemetryHook(Hook):
    """Traces waits and requests.

    - A wait is a span ``gptunnel.wait {family}`` from its start to its end, under the
      span current when it started, with the attributes ``gptunnel.task_id``,
      ``gptunnel.family``, ``gptunnel.outcome``, ``gptunnel.status`` and
      ``gptunnel.reads``; its status is ERROR when the task failed, the deadline passed
      or an error ended it (not when it is done, or the wait was cancelled). Each progress
      event is an event on it (``gptunnel.progress``, with the status and percent).
    - Each request is a span ``{method} {path}`` with ``http.request.method``,
      ``url.path``, ``http.response.status_code`` and ``error.type``: a child of its
      wait's span when it reads a task being waited for, else of the current span.

    Args:
        tracer_provider: where spans go; OpenTelemetry's global provider unless given.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._waits: dict[int, trace.Span] = {}
        """The open span of each wait, by its ``wait_id``."""
        self._by_task: dict[str, list[trace.Span]] = {}
        """The open spans of the waits on each task, the latest last: a request names
        its task only, and is made a child of the latest."""

    def on_wait_started(self, details: WaitStarted) -> None:
        span = self.tracer.start_span(
            f"gptunnel.wait {details.family}",
            attributes={"gptunnel.task_id": details.task_id, "gptunnel.family": details.family},
        )
        self._waits[details.wait_id] = span
        self._by_task.setdefault(details.task_id, []).append(span)

    def on_request(self, details: RequestDetails) -> None:
        waits = self._by_task.get(details.task_id or "")
        context = trace.set_span_in_context(waits[-1]) if waits else None
        start = _nanoseconds(details.started_at)
        span = self.tracer.start_span(
            f"{details.method} {details.path}",
            context=context,
            kind=trace.SpanKind.CLIENT,
            start_time=start,
            attributes={"http.request.method": details.method, "url.path": details.path},
        )
        if details.task_id is not None:
            span.set_attribute("gptunnel.task_id", details.task_id)
        if details.status_code is not None:
            span.set_attribute("http.response.status_code", details.status_code)
        if details.error is not None:
            span.set_attribute("error.type", details.error)
            span.set_status(trace.StatusCode.ERROR)
        span.end(end_time=start + _nanoseconds(details.duration))

    def on_progress(self, details: ProgressDetails) -> None:
        span = self._waits.get(details.wait_id)
        if span is not None:
            span.add_event(
                "gptunnel.progress",
                {"gptunnel.status": details.status, "gptunnel.percent": details.percent},
            )

    def on_wait_finished(self, details: WaitFinished) -> None:
        span = self._waits.pop(details.wait_id, None)
        if span is None:
            return
        waits = self._by_task[details.task_id]
        waits.remove(span)
        if not waits:
            del self._by_task[details.task_id]
        span.set_attribute("gptunnel.outcome", details.outcome)
        span.set_attribute("gptunnel.reads", details.reads)
        if details.status is not None:
            span.set_attribute("gptunnel.status", details.status)
        if details.outcome not in ("done", "cancelled"):  # a wait given up is no error
            span.set_status(trace.StatusCode.ERROR, details.error or details.outcome)
        span.end()
