"""Running the examples against the GPTunnel emulator that ships with the package."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from gptunnel_async import GPTunnelClient, PollPolicy
from gptunnel_async.testing import FakeGPTunnel

EMULATOR_POLICY = PollPolicy(initial=0.5, multiplier=1.0, max_interval=0.5, timeout=60)
"""The emulator answers at once, so read it often enough to see each step."""


@contextlib.asynccontextmanager
async def emulated_client(seconds: float = 5.0) -> AsyncIterator[GPTunnelClient]:
    """A client for an emulator started alongside: no key, no network, no cost.

    Args:
        seconds: how long each face swap created through the client takes.

    Yields:
        A client whose face swaps rise steadily to ``done`` over ``seconds``.
    """
    async with FakeGPTunnel() as fake:
        fake.script_created(duration=seconds)
        async with fake.client(poll_policy=EMULATOR_POLICY) as client:
            yield client
