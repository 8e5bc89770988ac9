"""docs/testing.md tells the truth about the emulator: every route it answers is in its
table, and each known way it departs from GPTunnel's docs is listed where users look."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
