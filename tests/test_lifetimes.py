"""How long each family's result files live, as code: the families declare it, the
fleet's waits follow it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gptunnel_async import ConfigurationError, GPTunnelClient
from gptunnel_async.families import BgRemover, FaceSwap, Media, Midjourney, TaskResource
from gptunnel_async.fleet import FAMILIES, RESULT_LIFETIME, MemoryStore, Watcher
from gptunnel_async.testing import FakeGPTunnel

LIFETIMES = {
    # documented on docs.gptunnel.ru/faceswap/result: "may be deleted 3 days after"
    FaceSwap: timedelta(days=3),
    # the docs are silent: the SDK keeps the face swap's 3 days
    BgRemover: timedelta(days=3),
    Midjourney: timedelta(days=3),
    # suno's 48 hours are documented; image links reported to last 24 hours: the shorter
    Media: timedelta(hours=24),
}


@pytest.mark.parametrize(("family", "lifetime"), LIFETIMES.items())
def test_each_family_declares_its_result_lifetime(
    family: type[TaskResource[object]], lifetime: timedelta
) -> None:
    assert family.family.result_lifetime == lifetime


def test_the_fleets_longest_wait_is_the_longest_lifetime_of_any_family() -> None:
    assert max(LIFETIMES.values()).total_seconds() == RESULT_LIFETIME


class RecordingStore(MemoryStore):
    """A memory store that notes the deadline each registration asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: dict[str, float] = {}

    async def watch(self, task_id: str, record: str, timeout: float) -> bool:
        self.timeouts[task_id] = timeout
        return await super().watch(task_id, record, timeout)


@pytest.fixture
async def client() -> AsyncIterator[GPTunnelClient]:
    async with FakeGPTunnel() as fake, fake.client() as opened:
        yield opened


async def test_a_watch_lives_as_long_as_its_familys_results_by_default(
    client: GPTunnelClient,
) -> None:
    store = RecordingStore()
    watcher = Watcher(client, store)
    for name in FAMILIES:
        await watcher.watch(f"t-{name}", family=name)
    assert store.timeouts == {
        f"t-{name}": getattr(client, name).result_lifetime.total_seconds() for name in FAMILIES
    }
    assert store.timeouts["t-media"] == 24 * 3600
    assert store.timeouts["t-faceswap"] == 3 * 24 * 3600


async def test_a_watch_may_not_outlive_its_familys_results(client: GPTunnelClient) -> None:
    store = RecordingStore()
    watcher = Watcher(client, store)
    with pytest.raises(ConfigurationError, match=r"at most 86400s for media"):
        await watcher.watch("t-1", family="media", timeout=25 * 3600)
    assert await watcher.watch("t-2", family="media", timeout=24 * 3600)
    assert await watcher.watch("t-3", family="faceswap", timeout=3 * 24 * 3600)
    assert store.timeouts == {"t-2": 24 * 3600, "t-3": 3 * 24 * 3600}


def test_a_client_tells_each_familys_lifetime(client: GPTunnelClient) -> None:
    assert client.media.result_lifetime == timedelta(hours=24)
    assert client.faceswap.result_lifetime == timedelta(days=3)
