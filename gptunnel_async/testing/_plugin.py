"""The pytest plugin, registered through the ``pytest11`` entry point.

Fixtures:

- ``gptunnel_instant_waits``: SDK backoffs and poll intervals are instant in the test.
- ``gptunnel_fake``: a running [FakeGPTunnel][gptunnel_async.testing.FakeGPTunnel], with
  instant waits on. It serves from a background thread, so it is a plain fixture that
  sync tests and async ones (pytest-asyncio in either mode) can use alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._fake import FakeGPTunnel
from ._waits import instant_waits


@pytest.fixture
def gptunnel_instant_waits() -> Iterator[None]:
    """Make every SDK pause instant for the test; the previous setting returns after."""
    with instant_waits():
        yield


@pytest.fixture
def gptunnel_fake(gptunnel_instant_waits: None) -> Iterator[FakeGPTunnel]:
    """A running GPTunnel emulator; build clients with ``gptunnel_fake.client()``."""
    with FakeGPTunnel() as fake:
        yield fake
