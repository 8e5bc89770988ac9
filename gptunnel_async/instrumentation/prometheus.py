"""Prometheus metrics for the SDK: counters and histograms with prometheus-client.

Needs ``pip install 'gptunnel-async[prometheus]'``; nothing here is imported unless you
import this module.

```python
from gptunnel_async.instrumentation import LoggingHook, set_hooks
from gptunnel_async.instrumentation.prometheus import PrometheusHook

set_hooks([LoggingHook(), PrometheusHook()])  # then serve prometheus_client's registry
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from .. import _checks
from ..errors import ConfigurationError
from ._hooks import Hook, ProgressDetails, RequestDetails, RetryDetails, WaitFinished

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ["REQUEST_BUCKETS", "WAIT_BUCKETS", "PrometheusHook"]

REQUEST_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: a read takes tens of milliseconds; the request timeout is 30 s by default."""

WAIT_BUCKETS: Final = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Seconds: a face swap takes seconds, media and Midjourney minutes; waits end by 600 s."""


class PrometheusHook(Hook):
    """Counts and times requests, retries, progress events and waits.

    Metrics (``namespace`` is ``gptunnel`` by default):

    - ``gptunnel_requests_total{family, method, status}``: requests to the API;
      ``status`` is the HTTP status, or ``"error"`` when no answer came.
    - ``gptunnel_request_duration_seconds{family, method}``: their durations.
    - ``gptunnel_retries_total{family, scope, reason}``: retries; ``scope`` is
      ``request`` or ``wait``, ``reason`` the status (``"429"``, ``"503"`` ...) or the
      error class without one (``"APIConnectionError"`` ...).
    - ``gptunnel_progress_events_total{family}``: progress events.
    - ``gptunnel_waits_total{family, outcome}``: finished waits, by outcome (``done``,
      ``failed``, ``timeout``, ``error``, ``cancelled``).
    - ``gptunnel_wait_duration_seconds{family, outcome}``: how long waits took.
    - ``gptunnel_wait_reads{family}``: how many reads each wait made.

    Args:
        registry: where the metrics are registered; prometheus-client's default one
            unless given (tests pass a fresh ``CollectorRegistry``).
        namespace: the metrics' name prefix.

    Raises:
        ConfigurationError: the registry holds a metric of one of these names already
            (another ``PrometheusHook`` of the same namespace): none is registered then.
            Or ``registry`` cannot register metrics, or ``namespace`` is not a string.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "gptunnel"
    ) -> None:
        registry = _registry(registry)
        _checks.optional(_checks.instance_of(str), "namespace", namespace)
        # Made unregistered, then registered all or none.
        self.requests = Counter(
            "requests",
            "Requests to the API.",
            ["family", "method", "status"],
            namespace=namespace,
            registry=None,
        )
        self.request_duration = Histogram(
            "request_duration_seconds",
            "Durations of requests to the API.",
            ["family", "method"],
            buckets=REQUEST_BUCKETS,
            namespace=namespace,
            registry=None,
        )
        self.retries = Counter(
            "retries",
            "Retries of requests and of waits' reads.",
            ["family", "scope", "reason"],
            namespace=namespace,
            registry=None,
        )
        self.progress_events = Counter(
            "progress_events",
            "Progress events of waits.",
            ["family"],
            namespace=namespace,
            registry=None,
        )
        self.waits = Counter(
            "waits",
            "Finished waits.",
            ["family", "outcome"],
            namespace=namespace,
            registry=None,
        )
        self.wait_duration = Histogram(
            "wait_duration_seconds",
            "Durations of finished waits.",
            ["family", "outcome"],
            buckets=WAIT_BUCKETS,
            namespace=namespace,
            registry=None,
        )
        self.wait_reads = Histogram(
            "wait_reads",
            "Reads each finished wait made.",
            ["family"],
            buckets=(1, 2, 5, 10, 20, 50, 100),
            namespace=namespace,
            registry=None,
        )
        _register_all(
            registry,
            namespace,
            [
                self.requests,
                self.request_duration,
                self.retries,
                self.progress_events,
                self.waits,
                self.wait_duration,
                self.wait_reads,
            ],
        )

    def on_request(self, details: RequestDetails) -> None:
        status = "error" if details.status_code is None else str(details.status_code)
        self.requests.labels(details.family, details.method, status).inc()
        self.request_duration.labels(details.family, details.method).observe(details.duration)

    def on_retry(self, details: RetryDetails) -> None:
        code = details.status_code
        reason = type(details.error).__name__ if code is None else str(code)
        self.retries.labels(details.family, details.scope, reason).inc()

    def on_progress(self, details: ProgressDetails) -> None:
        self.progress_events.labels(details.family).inc()

    def on_wait_finished(self, details: WaitFinished) -> None:
        self.waits.labels(details.family, details.outcome).inc()
        self.wait_duration.labels(details.family, details.outcome).observe(details.duration)
        self.wait_reads.labels(details.family).observe(details.reads)


def _registry(registry: object) -> CollectorRegistry:
    """``registry``, or prometheus-client's default one for ``None``; something that
    cannot register metrics is ``ConfigurationError`` (it was an ``AttributeError`` from
    inside prometheus-client)."""
    if registry is None:
        return REGISTRY
    if not all(callable(getattr(registry, name, None)) for name in ("register", "unregister")):
        raise ConfigurationError(
            f"registry must be a prometheus_client CollectorRegistry, got "
            f"{_checks.describe(registry)}"
        )
    return registry  # type: ignore[return-value]  # one in all but name


def _register_all(registry: CollectorRegistry, namespace: str, metrics: list[Collector]) -> None:
    """Register every metric, or none: a name the registry holds already undoes those
    registered so far and raises ``ConfigurationError``."""
    done: list[Collector] = []
    try:
        for metric in metrics:
            registry.register(metric)
            done.append(metric)
    except ValueError as exc:  # prometheus-client's "Duplicated timeseries"
        for metric in done:
            registry.unregister(metric)
        raise ConfigurationError(
            f"this registry already holds metrics named {namespace}_* ({exc}); make one "
            f"PrometheusHook per registry and namespace and keep it (a second set_hooks "
            f"call can pass the same one), or give this one registry=CollectorRegistry() "
            f"or another namespace="
        ) from None
