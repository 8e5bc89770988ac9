"""The pytest plugin, registered through the ``pytest11`` entry point.

Fixtures:

- ``gptunnel_instant_waits``: SDK backoffs and poll intervals are instant in the test.
- ``gptunnel_hooks``: the instrumentation hooks set during the test (an app's startup
  calling ``set_hooks``) are put back as they were after it, so they do not report
  the next tests' waits.
- ``gptunnel_fake``: a running [FakeGPTunnel][gptunnel_async.testing.FakeGPTunnel], with
  instant waits on and the hooks put back after the test. It serves from a background
  thread, so it is a plain fixture that sync tests and async ones (pytest-asyncio in
  either mode) can use alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..instrumentation import get_hooks, set_hooks
from ._fake import FakeGPTunnel
from ._waits import instant_waits


@pytest.fixture
def gptunnel_instant_waits() -> Iterator[None]:
    """Make every SDK pause instant for the test; the previous setting returns after."""
    with instant_waits():
        yield


@pytest.fixture
def gptunnel_hooks() -> Iterator[None]:
    """Put the instrumentation hooks back as they were before the test, after it."""
    before = get_hooks()
    try:
        yield
    finally:
        set_hooks(before)


@pytest.fixture
def gptunnel_fake(gptunnel_instant_waits: None, gptunnel_hooks: None) -> Iterator[FakeGPTunnel]:
    """A running GPTunnel emulator; build clients with ``gptunnel_fake.client()``."""
    with FakeGPTunnel() as fake:
        yield fake
