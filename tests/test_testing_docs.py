"""docs/testing.md tells the truth about the emulator: every route it answers is in its
table, and each known way it departs from GPTunnel's docs is listed where users look."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gptunnel_async.testing import FakeGPTunnel
from gptunnel_async.testing._control import script_from_spec
from gptunnel_async.testing._endpoints import ENDPOINTS

TESTING = Path(__file__).parent.parent / "docs" / "testing.md"

DEPARTURES = "Where the emulator differs from GPTunnel"


def section(title: str) -> str:
    """The text of the ``## title`` section."""
    sections = re.split(r"^## ", TESTING.read_text(), flags=re.M)
    [found] = [text for text in sections if text.startswith(title)]
    return found


def table_rows() -> list[str]:
    answers = section("What the emulator answers")
    return [line for line in answers.splitlines() if line.startswith("|")]


def departures() -> str:
    answers = section("What the emulator answers")
    assert DEPARTURES in answers
    return answers.partition(DEPARTURES)[2]


@pytest.mark.parametrize("path", sorted({endpoint.path for endpoint in ENDPOINTS}))
def test_every_route_the_emulator_answers_is_in_its_table(path: str) -> None:
    """A row names it in full (``/v1/bgremover/create``) or, beside its family's prefix,
    by its last part (``/v1/midjourney/imagine``, `` `reroll` ``)."""
    family, _, name = path.rpartition("/")
    assert any(
        f"/v1/{path}" in row or (family and f"/v1/{family}/" in row and f"`{name}`" in row)
        for row in table_rows()
    )


@pytest.mark.parametrize(
    "said",
    [
        'fake.fail_next(402, path="faceswap/result")',  # a read's 402: never on its own
        '`ar` `"21:9"` and `"9:21"` are taken for every media model',
        "`bgremover/create`",  # undocumented create bodies: any JSON object
        "offers `variation_3`",  # the documented grid has variation_4 twice, no 3
        "413",  # bodies past two of the SDK's largest images
    ],
)
def test_each_known_departure_from_gptunnel_is_listed(said: str) -> None:
    assert said in departures()


def documented_keys(route: str) -> set[str]:
    """The keys of the JSON object the answer cell of ``route``'s row shows."""
    [row] = [row for row in table_rows() if row.startswith(f"| `{route}")]
    answer = row.split(" | ")[1]
    shown = re.search(r"`(\{.*?\})`", answer)
    assert shown, row
    keys_only = re.sub(r':\s*("[^"]*"|\w+)', "", shown.group(1))  # "status": "idle"
    return set(re.findall(r'"(\w+)"', keys_only))


async def answers(fake: FakeGPTunnel) -> dict[str, list[dict[str, Any]]]:
    """What the emulator answers on each route the table shows a body for."""
    steps = {"done": [("done", 100)], "running": [("running", 0)]}
    media = [
        fake.script_task(steps=steps["done"], model="flux-pro"),
        fake.script_task(steps=steps["done"], model="suno"),
        fake.script_task(steps=steps["running"], model="flux-pro"),
        fake.fail_task("blocked", model="flux-pro"),
    ]
    async with aiohttp.ClientSession(headers={"Authorization": fake.api_key}) as session:

        async def answer(method: str, path: str, **options: Any) -> dict[str, Any]:
            async with session.request(method, f"{fake.base_url}/{path}", **options) as got:
                body: dict[str, Any] = await got.json()
                return body

        return {
            "POST /v1/media/create": [
                await answer("POST", "media/create", json={"model": "suno", "prompt": "x"})
            ],
            "GET /v1/media/result": [
                await answer("GET", "media/result", params={"task_id": task_id})
                for task_id in media
            ],
            "GET /v1/balance": [await answer("GET", "balance")],
        }


async def test_the_bodies_in_the_table_are_those_the_emulator_answers() -> None:
    async with FakeGPTunnel() as fake:
        seen = await answers(fake)
    for route, bodies in seen.items():
        assert documented_keys(route) == set().union(*bodies), route


async def test_each_task_of_the_tasks_file_looks_as_its_type_says() -> None:
    """The tasks file's ``grid`` is a Midjourney grid: a preview while it runs, its
    actions once done (a ``type`` GPTunnel does not use would give neither)."""
    [tasks_file] = re.findall(r"```json\n(.*?)```", TESTING.read_text(), flags=re.S)
    typed = [spec for spec in json.loads(tasks_file)["tasks"] if "type" in spec]
    assert typed
    async with FakeGPTunnel() as fake, fake.client() as client:
        for spec in typed:
            steps = [["running", 50], ["done", 100]]
            fields = {key: value for key, value in spec.items() if key != "duration"}
            task_id = script_from_spec(fake, {**fields, "steps": steps})
            running = await client.midjourney.result(task_id)
            done = await client.midjourney.result(task_id)
            assert running.result and done.actions, spec
