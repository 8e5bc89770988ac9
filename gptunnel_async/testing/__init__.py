"""Test your code without the real GPTunnel: an emulator on loopback, and instant waits.

```python
from gptunnel_async.testing import FakeGPTunnel, instant_waits


async def test_my_bot() -> None:
    async with FakeGPTunnel() as fake:
        task_id = fake.script_task(steps=[("queued", 0), ("running", 40), ("done", 100)])
        with instant_waits():
            async with fake.client() as client:
                task = await client.wait_for_result(task_id)
        assert task.is_done
```

With pytest, the ``gptunnel_fake`` fixture does that setup for you.
"""

from ._fake import DEFAULT_API_KEY, FakeGPTunnel, UnknownTaskError
from ._samples import SAMPLE_NAMES, sample_image
from ._scripts import Step
from ._state import RecordedRequest
from ._waits import instant_waits, instant_waits_enabled, set_instant_waits

__all__ = [
    "DEFAULT_API_KEY",
    "SAMPLE_NAMES",
    "FakeGPTunnel",
    "RecordedRequest",
    "Step",
    "UnknownTaskError",
    "instant_waits",
    "instant_waits_enabled",
    "sample_image",
    "set_instant_waits",
]
