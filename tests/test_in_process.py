"""Objects that hold the API key (or a webhook's token) refuse ``pickle`` and ``copy``
with ``UsageError``, so the key never ends up in a task queue's broker or a pool's pipe;
what the SDK hands out for keeping (tasks, events, errors, policies) pickles."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from gptunnel_async import GPTunnelClient, PollPolicy, TaskWaiter, UsageError
from gptunnel_async._sansio.text import mask_for
from gptunnel_async.fleet import MemoryStore, Watcher
from gptunnel_async.models import Task
from gptunnel_async.webhooks import WebhookReceiver

KEY = "sk-live-Qm4tXv81-in-process"
TOKEN = "webhook-token-Jd83kLq0pZ"

Make = Callable[[GPTunnelClient], Any]

HOLDERS: list[tuple[str, Make, str]] = [
    ("client", lambda client: client, "make a GPTunnelClient in the other process"),
    ("face swaps", lambda client: client.faceswap, "hand over task ids"),
    ("background removal", lambda client: client.bgremover, "hand over task ids"),
    ("midjourney", lambda client: client.midjourney, "hand over task ids"),
    ("media", lambda client: client.media, "hand over task ids"),
    ("a wait", lambda client: client.wait_for_result("t-1"), "wait for its task_id"),
    ("a media wait", lambda client: client.media.wait_for_result("t-1"), "fleet.Watcher"),
    ("as_completed", lambda client: client.as_completed(["t-1", "t-2"]), "wait for the task"),
    ("watcher", lambda client: Watcher(client, MemoryStore()), "over the same store"),
    ("transport", lambda client: client._transport, "hand over task ids"),
    ("request builder", lambda client: client._transport.requests, "hand over task ids"),
    (
        "request",
        lambda client: client._transport.requests.api("GET", "faceswap/result"),
        "hand over task ids",
    ),
    ("key mask", lambda client: mask_for(KEY), "mask_for"),
    (
        "webhook receiver",
        lambda client: WebhookReceiver("https://bot.example/hook", secret=TOKEN, api_key=KEY),
        "with the same secret=",
    ),
]


@dataclasses.dataclass
class Settings:
    """A user's object that holds a client, as dataclasses.asdict deep-copies it."""

    client: Any
    name: str = "bot"


WAYS: list[tuple[str, Callable[[Any], object]]] = [
    *[(f"pickle protocol {n}", lambda held, n=n: pickle.dumps(held, n)) for n in range(6)],
    ("__getstate__", lambda held: held.__getstate__()),
    ("copy.copy", copy.copy),
    ("copy.deepcopy", copy.deepcopy),
    ("inside a dict", lambda held: pickle.dumps({"held": [held]})),
    ("a dataclass's asdict", lambda held: dataclasses.asdict(Settings(held))),
]


@pytest.fixture
def client() -> GPTunnelClient:
    return GPTunnelClient(api_key=KEY, base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize(("what", "make", "advice"), HOLDERS, ids=[h[0] for h in HOLDERS])
@pytest.mark.parametrize(("way", "keep"), WAYS, ids=[w[0] for w in WAYS])
def test_what_holds_the_key_refuses_to_leave_the_process(
    client: GPTunnelClient, what: str, make: Make, advice: str, way: str, keep: Any
) -> None:
    held = make(client)
    if isinstance(held, TaskWaiter):  # a wait that never starts, dropped on purpose
        held.close()
    with pytest.raises(UsageError) as refused:
        keep(held)
    message = str(refused.value)
    assert f"{type(held).__name__} objects hold" in message
    assert "cannot be pickled or copied" in message
    assert advice in message
    assert KEY not in message and TOKEN not in message
    pickle.loads(pickle.dumps(refused.value))  # the refusal itself travels


def test_a_receiver_names_its_token_too(client: GPTunnelClient) -> None:
    receiver = WebhookReceiver("https://bot.example/hook", secret=TOKEN, api_key=KEY)
    with pytest.raises(UsageError, match="the API key and its webhook's secret token"):
        pickle.dumps(receiver)


KEPT: list[tuple[str, object]] = [
    ("a task", Task(id="t-1", status="done", percent=100, result="https://cdn.example/r.png")),
    ("a policy", PollPolicy(initial=0.5, timeout=30.0)),
    ("a refusal", UsageError("the client is closed")),
]


@pytest.mark.parametrize(("what", "kept"), KEPT, ids=[k[0] for k in KEPT])
def test_what_is_handed_out_for_keeping_pickles_and_copies(what: str, kept: object) -> None:
    for restored in (pickle.loads(pickle.dumps(kept)), copy.copy(kept), copy.deepcopy(kept)):
        assert type(restored) is type(kept)
        assert repr(restored) == repr(kept)
