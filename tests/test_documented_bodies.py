"""The documentation's example bodies (``tests/fixtures/documented``) against the SDK and
the emulator: the SDK reads each as documented, and the emulator answers the same shape
in the same situation, so emulator and docs cannot drift apart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gptunnel_async import (
    AuthenticationError,
    BadRequestError,
    Balance,
    InsufficientBalanceError,
    NotFoundError,
    Usage,
)
from gptunnel_async._sansio.responses import (
    decode_balance,
    decode_media_task,
    decode_task,
    error_from_response,
)
from gptunnel_async.families import MidjourneyAction
from gptunnel_async.testing import FakeGPTunnel, sample_image

DOCUMENTED = Path(__file__).parent / "fixtures" / "documented"


def documented(name: str) -> Any:
    return json.loads((DOCUMENTED / f"{name}.json").read_text())


def raw(name: str) -> bytes:
    return (DOCUMENTED / f"{name}.json").read_bytes()


def shape(value: Any) -> Any:
    """What a body looks like, values aside: key sets, JSON kinds, a list's first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def assert_same_shape(ours: Any, docs: Any, where: str = "body") -> None:
    """``ours`` has every key of ``docs`` and no other, each of the same kind; a ``null``
    on either side stands for a value the example did not show."""
    if isinstance(docs, dict):
        assert isinstance(ours, dict), f"{where}: {ours!r} is not an object"
        assert set(ours) == set(docs), f"{where}: keys {sorted(ours)} != {sorted(docs)}"
        for key in docs:
            assert_same_shape(ours[key], docs[key], f"{where}.{key}")
    elif isinstance(docs, list) and docs and ours:
        assert isinstance(ours, list), f"{where}: {ours!r} is not a list"
        assert_same_shape(ours[0], docs[0], f"{where}[0]")
    elif "null" not in (shape(docs), shape(ours)):
        assert shape(ours) == shape(docs), f"{where}: {ours!r} is not like {docs!r}"


# -- the SDK reads every documented body --------------------------------------------------


def test_the_documented_face_swap_is_a_done_task() -> None:
    task = decode_task(raw("faceswap_result"))
    assert (task.type, task.status, task.percent, task.is_done) == ("@FaceSwap", "done", 100, True)
    assert task.usage == Usage()


def test_the_documented_imagine_answer_carries_its_cost() -> None:
    task = decode_task(raw("midjourney_imagine"))
    assert (task.type, task.status, task.actions) == ("imagine", "idle", ())
    assert task.usage == Usage(completion_cost=18, total_cost=18)


def test_the_documented_grid_keeps_its_actions_as_printed() -> None:
    task = decode_task(raw("midjourney_result"))
    assert task.actions == tuple(documented("midjourney_result")["actions"])
    assert MidjourneyAction.offered_by(task) == (
        *(MidjourneyAction.upsample(n) for n in range(1, 5)),
        MidjourneyAction.REROLL,
        MidjourneyAction.VARIATION_1,
        MidjourneyAction.VARIATION_2,
        MidjourneyAction.VARIATION_4,
    )


def test_the_documented_media_bodies_decode() -> None:
    created = decode_media_task(raw("media_create"))
    assert (created.status, created.created_at, created.is_done) == ("idle", 1753268420, False)
    song = decode_media_task(raw("media_result_suno"))
    assert song.is_done and len(song.clips) == 2
    assert [clip.status for clip in song.clips] == ["succeeded", "succeeded"]
    assert song.urls == ("https://cdn.example/clip-1.mp3", "https://cdn.example/clip-2.mp3")
    with pytest.raises(BadRequestError) as caught:
        decode_media_task(raw("media_validation_error"))
    assert (caught.value.code, caught.value.param) == ("3", "model")


def test_the_documented_balance_and_errors_decode() -> None:
    balance = decode_balance(raw("balance"))
    assert balance == Balance(
        org_id="00000000-0000-0000-0000-000000000000", balance=-51.54397, credit_limit=15000
    )
    for status, cls in ((400, BadRequestError), (401, AuthenticationError)):
        error = error_from_response(status, {}, raw(f"error_{status}"))
        assert (
            isinstance(error, cls) and error.type == documented(f"error_{status}")["error"]["type"]
        )
    assert isinstance(error_from_response(402, {}, raw("error_402")), InsufficientBalanceError)


AS_PRINTED = {
    "balance": (
        b'{"orgId": "00000000-0000-0000-0000-000000000000", "object": "balance",\n'
        b'  "balance": -51.54397, "creditLimit": 15000,\n}'
    ),
    "error_401": (
        b'{"error": {"message": "Unauthorized", "type": "unauthorized_request_error",'
        b' "param": null, "code": null,}}'
    ),
}
"""Two answers as GPTunnel's docs print them, with their trailing comma (the fixtures
are the same bodies made valid)."""


async def test_the_bodies_the_docs_print_with_a_trailing_comma_read_as_meant(
    fake: FakeGPTunnel,
) -> None:
    """Sent as printed, the balance was a ResponseDecodeError ("the answer is not JSON")
    and the 401 an AuthenticationError with no ``type``, its raw JSON for a message."""
    fake.fail_next(200, body=AS_PRINTED["balance"], path="balance")
    fake.fail_next(401, body=AS_PRINTED["error_401"], path="faceswap/result")
    async with fake.client() as client:
        assert await client.balance() == decode_balance(raw("balance"))
        with pytest.raises(AuthenticationError) as caught:
            await client.faceswap.result("task-1")
    assert caught.value.type == "unauthorized_request_error"
    assert str(caught.value).startswith("401 unauthorized_request_error: Unauthorized (")


# -- the emulator answers the same shapes ---------------------------------------------------


Call = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
async def call(fake: FakeGPTunnel) -> AsyncIterator[Call]:
    async with aiohttp.ClientSession() as http:

        async def send(method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
            headers = {"Authorization": key or fake.api_key}
            url = f"{fake.base_url}/{path}"
            async with http.request(method, url, headers=headers, **kwargs) as response:
                return response.status, await response.json(content_type=None)

        yield send


async def test_the_emulators_face_swap_looks_as_documented(fake: FakeGPTunnel, call: Call) -> None:
    task_id = fake.script_task(steps=[("done", 100)])
    status, body = await call("GET", "faceswap/result", params={"taskId": task_id})
    assert status == 200
    assert_same_shape(body, documented("faceswap_result"))


async def test_the_emulators_midjourney_looks_as_documented(fake: FakeGPTunnel, call: Call) -> None:
    status, created = await call("POST", "midjourney/imagine", json={"prompt": "a red fox"})
    assert status == 200
    assert_same_shape(created, documented("midjourney_imagine"))
    assert created["usage"] == documented("midjourney_imagine")["usage"]
    grid = fake.script_task(steps=[("done", 100)], type="imagine")
    _, done = await call("GET", "midjourney/result", params={"taskId": grid})
    assert_same_shape(done, documented("midjourney_result"))
    assert set(done["actions"]) == set(documented("midjourney_result")["actions"]) | {"variation_3"}


def image_url_shape(url: str) -> tuple[str, str, str]:
    """A Midjourney result URL as the docs show it: ``<result host>/task/image/<id>?cache=N``."""
    parsed = URL(url)
    return str(parsed.origin()), parsed.path.rsplit("/", 1)[0], ",".join(parsed.query)


async def test_the_emulators_midjourney_results_look_like_the_documented_ones(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    """A result host apart from the API's origin, the documented path and query, and a
    file that downloads from there."""
    documented_url = documented("midjourney_result")["result"]
    grid = fake.script_task(steps=[("running", 40), ("done", 100)], type="imagine")
    async with fake.client() as client:
        running = await client.midjourney.result(grid)
        done = await client.midjourney.result(grid)
        assert done.result is not None and running.result is not None
        path = await client.download_result(done, tmp_path)
        preview = await client.download_result(running.result, tmp_path / "preview.png")
    origin, folder, query = image_url_shape(done.result)
    assert (folder, query) == image_url_shape(documented_url)[1:] == ("/task/image", "cache")
    assert URL(done.result).path == f"/task/image/{grid}"
    assert URL(done.result).query["cache"] == "100"
    assert URL(running.result).query["cache"] == "40"
    assert origin == fake.storage_url != str(URL(fake.base_url).origin())
    assert path.name == f"{grid}.png"  # no media name in the URL: the id, typed by storage
    assert path.read_bytes() == preview.read_bytes() == sample_image("result.png")
    assert {r.path for r in fake.storage_requests} == {f"/task/image/{grid}"}


async def test_the_emulator_serves_no_image_of_a_task_it_does_not_have(
    fake: FakeGPTunnel, tmp_path: Path
) -> None:
    async with fake.client() as client:
        with pytest.raises(NotFoundError):
            await client.download_result(f"{fake.storage_url}/task/image/nope?cache=100", tmp_path)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_emulators_media_looks_as_documented(
    fake: FakeGPTunnel, call: Call, method: str
) -> None:
    payload = {"model": "suno", "prompt": "A jingle about an AI integrator"}
    _, created = await call("POST", "media/create", json=payload)
    assert_same_shape(created, documented("media_create"))
    assert created["input"] == payload
    song = fake.script_task(steps=[("done", 100)], model="suno")
    where = {"params" if method == "GET" else "json": {"task_id": song}}
    _, done = await call(method, "media/result", **where)
    docs = documented("media_result_suno")
    # beside the documented keys the emulator says which model, when, and what it cost
    assert_same_shape({key: done[key] for key in docs}, docs)
    assert set(done) - set(docs) <= {"model", "created_at", "cost"}
    _, refused = await call("POST", "media/create", json={})
    assert_same_shape(refused, documented("media_validation_error"))


async def test_the_emulators_balance_and_errors_look_as_documented(
    fake: FakeGPTunnel, call: Call
) -> None:
    status, balance = await call("GET", "balance")
    assert status == 200
    assert_same_shape(balance, documented("balance"))
    status, missing = await call("GET", "faceswap/result")
    expected = documented("error_400")["error"] | {"param": "taskId"}  # the emulator names it
    assert (status, missing) == (400, {"error": expected})
    status, unauthorized = await call("GET", "balance", key="wrong")
    assert (status, unauthorized) == (401, documented("error_401"))
    fake.set_balance(0)
    status, broke = await call("POST", "midjourney/imagine", json={"prompt": "a fox"})
    assert (status, broke) == (402, documented("error_402"))


def test_every_documented_body_is_checked() -> None:
    names = {path.stem for path in DOCUMENTED.glob("*.json")}
    source = Path(__file__).read_text()
    assert names and all(f'"{name}"' in source for name in names)
