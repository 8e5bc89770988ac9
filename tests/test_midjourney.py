"""Midjourney as documented: task types, actions as the service spells them (and helpers
that know the ``upsamle`` typo), the cost in the create answer, variation's ``image`` or
``mode`` by parent, inpaint's mask checks; and the typed low-level call for the
endpoints the docs list without describing (``bgremover/create``, ``outpaint``, ``pan``,
``upscale``, ``reroll``)."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptunnel_async import (
    BadRequestError,
    ConfigurationError,
    ServerError,
    Task,
    TaskFailedError,
    Usage,
)
from gptunnel_async._images import check_mask
from gptunnel_async._png import PngError, read_png
from gptunnel_async.families import MidjourneyAction, _endpoint_path
from gptunnel_async.testing import FakeGPTunnel, sample_image

from .pngs import mask, png

# -- actions ---------------------------------------------------------------------------


def test_action_helpers_know_the_services_spelling() -> None:
    assert MidjourneyAction.upsample(2) == "upsamle_2"
    assert MidjourneyAction.upsample(2) is MidjourneyAction.UPSAMPLE_2
    assert MidjourneyAction.variation(4) == "variation_4"
    with pytest.raises(ConfigurationError, match="1 to 4"):
        MidjourneyAction.upsample(5)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("upsamle_1", MidjourneyAction.UPSAMPLE_1),
        ("upsample_1", MidjourneyAction.UPSAMPLE_1),
        (" Upsample_3 ", MidjourneyAction.UPSAMPLE_3),
        ("reroll", MidjourneyAction.REROLL),
        ("high_variation", MidjourneyAction.HIGH_VARIATION),
        ("zoom_out_2x", None),
    ],
)
def test_raw_actions_parse_in_either_spelling(raw: str, parsed: MidjourneyAction | None) -> None:
    assert MidjourneyAction.parse(raw) is parsed


def test_a_tasks_actions_stay_raw_and_read_as_members() -> None:
    documented = ["upsamle_1", "upsamle_2", "reroll", "variation_4", "variation_4", "pan_left"]
    task = Task(id="g", status="done", actions=tuple(documented))
    assert task.actions == tuple(documented)
    assert MidjourneyAction.UPSAMPLE_2 in task.actions
    assert MidjourneyAction.offered_by(task) == (
        MidjourneyAction.UPSAMPLE_1,
        MidjourneyAction.UPSAMPLE_2,
        MidjourneyAction.REROLL,
        MidjourneyAction.VARIATION_4,
    )


# -- the emulator's Midjourney ------------------------------------------------------------


async def test_imagine_answers_its_type_and_cost_at_create_time(fake: FakeGPTunnel) -> None:
    async with fake.client() as client:
        grid = await client.midjourney.imagine("a red fox")
    assert (grid.type, grid.status, grid.actions) == ("imagine", "idle", ())
    assert grid.usage == Usage(completion_cost=18, total_cost=18)


async def test_a_grid_offers_the_documented_actions_and_each_follow_up_has_its_type(
    fake: FakeGPTunnel, instant: None
) -> None:
    async with fake.client() as client:
        grid = await client.midjourney.imagine_and_wait("a red fox", timeout=30)
        offered = MidjourneyAction.offered_by(grid)
        upsampled = await client.midjourney.upsample(grid.id, 2)
        upsampled = await client.midjourney.wait_for_result(upsampled.id, timeout=30)
        strong = await client.midjourney.variation(upsampled.id, mode="high")
        of_grid = await client.midjourney.variation(grid.id, image=3)
    assert MidjourneyAction.UPSAMPLE_2 in offered and MidjourneyAction.REROLL in offered
    assert (upsampled.type, upsampled.usage) == ("upsample", Usage())  # free on MJ 5+
    assert upsampled.actions == ("high_variation", "low_variation")
    assert (strong.type, strong.parent_id) == ("variation", upsampled.id)
    assert (of_grid.type, of_grid.parent_id) == ("variation", grid.id)
    sent = [request.json for request in fake.requests if request.path.endswith("variation")]
    assert sent == [{"taskId": upsampled.id, "mode": "high"}, {"taskId": grid.id, "image": 3}]


async def test_a_variation_the_parent_does_not_offer_is_refused(
    fake: FakeGPTunnel, instant: None
) -> None:
    fake.script_task(steps=[("done", 100)], task_id="U", type="upsample")
    async with fake.client() as client:
        with pytest.raises(BadRequestError) as caught:
            await client.midjourney.variation("U", image=2)
    assert caught.value.param == "mode"


async def test_the_emulator_says_a_follow_up_came_before_its_parent_was_done(
    fake: FakeGPTunnel,
) -> None:
    """Upsampling a grid still drawing said only "the task does not offer the action
    'upsamle_2'", which named no cause: a bot's test had forgotten to wait for the grid."""
    async with fake.client() as client:
        grid = await client.midjourney.imagine("a red fox")
        with pytest.raises(BadRequestError) as too_soon:
            await client.midjourney.upsample(grid.id, 2)
        assert "it is 'idle', and a task offers its actions once it is done" in str(too_soon.value)
    fake.script_task(steps=[("done", 100)], task_id="U", type="upsample")
    async with fake.client() as client:
        with pytest.raises(BadRequestError) as not_offered:  # done: no such action
            await client.midjourney.variation("U", image=2)
    assert "once it is done" not in str(not_offered.value)


async def test_inpaint_sends_a_checked_mask_as_plain_base64(
    fake: FakeGPTunnel, instant: None, tmp_path: Path
) -> None:
    path = tmp_path / "mask.png"
    path.write_bytes(mask())
    fake.script_task(steps=[("done", 100)], task_id="G", type="imagine")
    async with fake.client() as client:
        task = await client.midjourney.inpaint("G", path, "a hat", size=(32, 32))
        done = await client.midjourney.wait_for_result(task.id, timeout=30)
    assert fake.requests[0].json == {
        "taskId": "G",
        "prompt": "a hat",
        "mask": base64.b64encode(mask()).decode(),
    }
    assert (done.type, done.parent_id) == ("inpaint", "G")


# -- mask checks ---------------------------------------------------------------------------


def test_a_mask_of_another_tone_size_or_kind_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigurationError, match=r"black and white only.*1 other colour"):
        check_mask(mask(grey_pixel=True))
    with pytest.raises(ConfigurationError, match=r"is 16x32 pixels.*32x32"):
        check_mask(mask(16, 32), (32, 32))
    with pytest.raises(ConfigurationError, match="not a PNG"):
        check_mask(b"\xff\xd8\xff\xe0 a jpeg")
    with pytest.raises(ConfigurationError, match="other colour"):
        check_mask(sample_image("face.png"))


def test_an_interlaced_mask_is_checked_for_size_only() -> None:
    rows = [[(128,)] * 4] * 4
    assert check_mask(png(rows, interlaced=True), (4, 4))
    with pytest.raises(ConfigurationError, match="4x4 pixels"):
        check_mask(png(rows, interlaced=True), (8, 8))


def test_a_damaged_png_is_refused_not_crashed_on() -> None:
    good = mask()
    for cut in (20, 40, len(good) - 20):
        with pytest.raises(ConfigurationError, match="black-and-white PNG"):
            check_mask(good[:cut])


colour_types = st.sampled_from(
    [(0, depth) for depth in (1, 2, 4, 8, 16)]
    + [(2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8), (4, 8), (6, 8)]
)


@st.composite
def images(draw: st.DrawFn) -> tuple[bytes, set[tuple[int, int, int]], tuple[int, int]]:
    """A PNG of any kind, with the colours it uses."""
    colour_type, depth = draw(colour_types)
    width, height = draw(st.integers(1, 9)), draw(st.integers(1, 6))
    top = (1 << min(depth, 8)) - 1
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    palette = (
        draw(st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=top + 1, max_size=top + 1))
        if colour_type == 3
        else []
    )
    rows = draw(
        st.lists(
            st.lists(st.tuples(*[st.integers(0, top)] * channels), min_size=width, max_size=width),
            min_size=height,
            max_size=height,
        )
    )
    filters = draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))
    scale = 255 // top
    colours: set[tuple[int, int, int]] = set()
    for row in rows:
        for pixel in row:
            if colour_type == 3:
                colours.add(palette[pixel[0]])
            elif channels >= 3:
                colours.add((pixel[0] * scale, pixel[1] * scale, pixel[2] * scale))
            else:
                colours.add((pixel[0] * scale,) * 3)  # type: ignore[arg-type]
    data = png(rows, colour_type=colour_type, depth=depth, filters=filters, palette=palette)
    return data, colours, (width, height)


@settings(max_examples=300)
@given(images())
def test_any_png_reads_with_its_size_and_colours(
    image: tuple[bytes, set[tuple[int, int, int]], tuple[int, int]],
) -> None:
    data, colours, size = image
    read = read_png(data)
    assert (read.width, read.height) == size
    assert read.colours is not None
    if len(colours) <= 2:
        assert read.colours == colours
    else:  # reading stops once a third colour shows
        assert len(read.colours) > 2 and read.colours <= colours


@given(st.binary(max_size=200))
def test_any_bytes_are_a_png_or_a_png_error(data: bytes) -> None:
    with contextlib.suppress(PngError):
        read_png(b"\x89PNG\r\n\x1a\n" + data)


# -- the low-level call -----------------------------------------------------------------------


async def test_create_task_starts_an_undescribed_endpoint_and_is_waited_on(
    fake: FakeGPTunnel, instant: None
) -> None:
    async with fake.client() as client:
        removal = await client.bgremover.create_task(
            "bgremover/create", {"image": "https://a/b.png"}
        )
        done = await client.bgremover.wait_for_result(removal.id, timeout=30)
        grid = await client.midjourney.imagine_and_wait("a red fox", timeout=30)
        rerolled = await client.midjourney.create_task("/midjourney/reroll/", {"taskId": grid.id})
    assert isinstance(removal, Task) and (removal.status, removal.type) == ("idle", "@BGRemover")
    assert done.is_done and done.result
    assert (rerolled.type, rerolled.parent_id) == ("reroll", grid.id)
    assert [r.path for r in fake.requests if r.method == "POST"] == [
        "/v1/bgremover/create",
        "/v1/midjourney/imagine",
        "/v1/midjourney/reroll",
    ]


@pytest.mark.parametrize("path", ["midjourney/outpaint", "midjourney/pan", "midjourney/upscale"])
async def test_the_emulator_takes_the_undescribed_midjourney_endpoints(
    fake: FakeGPTunnel, path: str
) -> None:
    fake.script_task(steps=[("done", 100)], task_id="G", type="imagine")
    async with fake.client() as client:
        task = await client.midjourney.create_task(path, {"taskId": "G", "direction": "left"})
    assert (task.type, task.parent_id) == (path.rpartition("/")[2], "G")
    assert fake.requests[0].json == {"taskId": "G", "direction": "left"}


async def test_create_task_is_never_resent_after_a_server_error(
    fake: FakeGPTunnel, instant: None
) -> None:
    fake.fail_next(500, path="midjourney/reroll")
    async with fake.client() as client:
        with pytest.raises(ServerError):
            await client.midjourney.create_task("midjourney/reroll", {"taskId": "G"})
    assert len(fake.requests) == 1


async def test_create_task_is_resent_after_a_refusal_that_did_nothing(
    fake: FakeGPTunnel, instant: None
) -> None:
    fake.fail_next(503, times=2, path="bgremover/create")
    async with fake.client() as client:
        task = await client.bgremover.create_task("bgremover/create", {"image": "https://a/b"})
    assert task.status == "idle" and len(fake.requests) == 3


async def test_a_task_from_create_task_fails_like_any_other(
    fake: FakeGPTunnel, instant: None
) -> None:
    fake.script_created(steps=[("processing", 10), ("failed", 10)], error="no background found")
    async with fake.client() as client:
        task = await client.bgremover.create_task("bgremover/create", {"image": "https://a/b"})
        with pytest.raises(TaskFailedError, match="no background found"):
            await client.bgremover.wait_for_result(task.id, timeout=30)


def test_endpoint_paths_are_plain_relative_paths() -> None:
    assert _endpoint_path("/midjourney/pan/") == "midjourney/pan"
    for bad in ("", "/", "midjourney//pan", "midjourney/../balance", "a b", 7):
        with pytest.raises(ConfigurationError):
            _endpoint_path(bad)


async def test_a_path_that_repeats_the_base_urls_end_is_refused_before_any_request(
    fake: FakeGPTunnel,
) -> None:
    async with fake.client() as client:
        for path in ("v1/bgremover/create", "/v1/bgremover/create/"):
            with pytest.raises(ConfigurationError, match="give 'bgremover/create', not"):
                await client.bgremover.create_task(path, {"image": "https://a/b"})
    assert fake.requests == []  # before, a request to /v1/v1/bgremover/create: a 404


def test_only_the_base_urls_own_last_segment_is_refused() -> None:
    assert _endpoint_path("v1/pan", "https://gptunnel.ru") == "v1/pan"  # no path to repeat
    assert _endpoint_path("v1", "https://gptunnel.ru/v1") == "v1"  # nothing after it
    assert _endpoint_path("v2/pan", "https://gptunnel.ru/v1") == "v2/pan"
    with pytest.raises(ConfigurationError, match="ends in /api already"):
        _endpoint_path("api/midjourney/pan", "http://127.0.0.1:8080/proxy/api")
