"""The server-sent events example, through aiohttp's test client against the emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from examples.sse_service import create_app
from gptunnel_async.testing import FakeGPTunnel, sample_image

from .conftest import HANG_GUARD


@pytest.fixture
async def service(gptunnel_fake: FakeGPTunnel) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(gptunnel_fake.client))) as client:
        yield client


def photos(source: bytes = sample_image("source.png")) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("source", source, filename="me.png")
    form.add_field("face", sample_image("face.png"), filename="face.png")
    return form


def parse(stream: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` for each server-sent event in ``stream``."""
    events = []
    for block in stream.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def start(service: TestClient[Any, Any]) -> dict[str, Any]:
    response = await service.post("/swaps", data=photos())
    assert response.status == 201
    body: dict[str, Any] = await response.json()
    return body


async def events_of(service: TestClient[Any, Any], url: str) -> list[tuple[str, dict[str, Any]]]:
    response = await service.get(url)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    return parse(await response.text())


async def test_progress_streams_to_the_browser_then_the_result(
    service: TestClient[Any, Any], gptunnel_fake: FakeGPTunnel
) -> None:
    gptunnel_fake.script_created(
        steps=[("queued", 0), ("running", 40), ("running", 40), ("running", 80), ("done", 100)]
    )
    started = await start(service)
    assert started["events"] == f"/swaps/{started['id']}/events"

    events = await events_of(service, started["events"])

    progress = [(data["status"], data["percent"]) for name, data in events if name == "progress"]
    assert progress == [("queued", 0), ("running", 40), ("running", 80), ("done", 100)]
    elapsed = [data["elapsed"] for name, data in events if name == "progress"]
    assert all(value == round(value, 2) for value in elapsed)  # as the docs show it: 2.01
    assert events[-1] == ("done", {"result": gptunnel_fake.task(started["id"]).result})


async def test_the_page_offers_a_form_and_listens_for_events(
    service: TestClient[Any, Any],
) -> None:
    response = await service.get("/")
    page = await response.text()
    assert response.content_type == "text/html"
    assert 'name="source"' in page and 'name="face"' in page
    assert "new EventSource(" in page


async def test_a_failed_task_ends_the_stream_with_its_reason(
    service: TestClient[Any, Any], gptunnel_fake: FakeGPTunnel
) -> None:
    gptunnel_fake.script_created(steps=[("running", 30), ("failed", 30)], error="no face found")
    started = await start(service)
    events = await events_of(service, started["events"])
    assert events[-1] == ("failed", {"error": "no face found"})


async def test_an_unknown_task_ends_the_stream_at_once(service: TestClient[Any, Any]) -> None:
    events = await events_of(service, "/swaps/nope/events")
    assert events == [("failed", {"error": "there is no such face swap"})]


async def test_a_form_without_both_images_is_refused(service: TestClient[Any, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("source", sample_image("source.png"), filename="me.png")
    response = await service.post("/swaps", data=form)
    assert response.status == 400
    assert "face" in (await response.json())["error"]


async def test_a_file_that_is_not_an_image_is_refused_before_gptunnel(
    service: TestClient[Any, Any], gptunnel_fake: FakeGPTunnel
) -> None:
    response = await service.post("/swaps", data=photos(source=b"%PDF-1.7"))
    assert response.status == 400
    assert "PNG, JPEG or WEBP" in (await response.json())["error"]
    assert gptunnel_fake.requests == []


async def test_gptunnel_refusing_the_task_is_a_bad_gateway(
    service: TestClient[Any, Any], gptunnel_fake: FakeGPTunnel
) -> None:
    gptunnel_fake.fail_next(402, path="faceswap/create")
    response = await service.post("/swaps", data=photos())
    assert response.status == 502
    assert "try again later" in (await response.json())["error"]


async def test_a_browser_that_goes_away_stops_the_wait(
    service: TestClient[Any, Any], gptunnel_fake: FakeGPTunnel
) -> None:
    task_id = gptunnel_fake.script_task(steps=[("running", 10)])  # never finishes
    response = await service.get(f"/swaps/{task_id}/events")
    assert (await response.content.readuntil(b"\n\n")).startswith(b"event: progress")
    response.close()

    async def reads() -> int:
        await asyncio.sleep(0.05)
        return len(gptunnel_fake.requests)

    # The emulator's waits are instant: a wait that went on would read without end, and
    # the hang guard would fail the test; one that stopped leaves the count still.
    async with asyncio.timeout(HANG_GUARD):
        settled = await reads()
        while (latest := await reads()) != settled:
            settled = latest
