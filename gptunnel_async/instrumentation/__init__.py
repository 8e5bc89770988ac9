"""See what the SDK does: hooks called on each request, retry, progress event and wait.

Like stamina's instrumentation: a [Hook][gptunnel_async.instrumentation.Hook] gets
a small frozen record for each thing that happens, with the task id, the family, the
status and the durations, never the key. The default hook logs (a WARNING per retry);
``set_hooks`` replaces the list. Ready integrations, each in its own extra and imported
only when you import it:

- ``gptunnel_async.instrumentation.prometheus.PrometheusHook`` (``pip install
  'gptunnel-async[prometheus]'``): counters and histograms with prometheus-client.
- ``gptunnel_async.instrumentation.otel.OpenTelemetryHook`` (``pip install
  'gptunnel-async[otel]'``): a span per wait with a child span per read.

```python
from gptunnel_async.instrumentation import Hook, LoggingHook, RetryDetails, set_hooks


class CountRateLimits(Hook):
    def __init__(self) -> None:
        self.seen = 0

    def on_retry(self, details: RetryDetails) -> None:
        if details.status_code == 429:
            self.seen += 1


set_hooks([LoggingHook(), CountRateLimits()])
```
"""

from ._hooks import (
    Hook,
    LoggingHook,
    ProgressDetails,
    RequestDetails,
    RetryDetails,
    WaitFinished,
    WaitOutcome,
    WaitStarted,
    get_hooks,
    set_hooks,
)

__all__ = [
    "Hook",
    "LoggingHook",
    "ProgressDetails",
    "RequestDetails",
    "RetryDetails",
    "WaitFinished",
    "WaitOutcome",
    "WaitStarted",
    "get_hooks",
    "set_hooks",
]
