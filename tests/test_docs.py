"""docs/families.md: every complete example runs against the emulator and says what it
should, and the code it shows from the package (marked not to run) is the package's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from gptunnel_async import families
from gptunnel_async.models import MediaTask, Task
from gptunnel_async.testing import _endpoints, instant_waits

FAMILIES = Path(__file__).parent.parent / "docs" / "families.md"


def runnable_examples() -> dict[str, str]:
    """Each section's complete script (one that ends in ``asyncio.run(main())``)."""
    examples = {}
    for section in re.split(r"^## ", FAMILIES.read_text(), flags=re.M)[1:]:
        title = section.splitlines()[0]
        for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
            if "asyncio.run(main())" in block:
                examples[title] = block
    return examples


EXPECTED = {
    "Face swap": ["done 100%", "saved swapped.png"],
    "Background removal": ["processing 50%", "done 100%", "@BGRemover http://127.0.0.1:"],
    "Midjourney": ["50% preview: http://127.0.0.1:", "actions: upsamle_1", "from "],
    "Media": ["done http://127.0.0.1:", "blocked: 1001 Content blocked"],
    "Balance": ["fake-org: 100.00 (credit limit 0.00)", "top up first: Organization balance"],
}


def test_every_family_section_has_a_runnable_example() -> None:
    assert set(runnable_examples()) == set(EXPECTED)


@pytest.mark.parametrize("section", sorted(EXPECTED))
def test_the_example_runs_and_prints_what_it_should(
    section: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with instant_waits():
        exec(compile(runnable_examples()[section], f"families.md: {section}", "exec"), {})
    printed = capsys.readouterr().out
    for expected in EXPECTED[section]:
        assert expected in printed


def skipped_blocks() -> list[str]:
    """The Python blocks of families.md marked ``<!-- skip: next -->``."""
    return re.findall(
        r"<!-- skip: next -->\s*```python\n(.*?)```", FAMILIES.read_text(), flags=re.S
    )


def test_the_family_declaration_shown_is_the_package_s() -> None:
    [shown] = [block for block in skipped_blocks() if "class BgRemover" in block]
    namespace = dict(vars(families))
    exec(compile(shown, "families.md: BgRemover", "exec"), namespace)
    assert namespace["BgRemover"].family == families.BgRemover.family


SAMPLE_TASKS = [
    Task(id="t", status="done", type=kind)
    for kind in ("@FaceSwap", "@BGRemover", "imagine", "upsample", "@Media")
] + [MediaTask(id="m", status="done", model="suno")]


def same_endpoint(shown: Any, real: Any) -> bool:
    """Equal, reading a ``ReadTask``'s ``owns`` (a function) by the tasks it picks."""
    if type(shown) is not type(real):
        return False
    if isinstance(shown, _endpoints.ReadTask):
        picks = [(shown.owns(task), real.owns(task)) for task in SAMPLE_TASKS]
        return all(a == b for a, b in picks) and attrs.evolve(shown, owns=real.owns) == real
    return bool(shown == real)


def test_the_endpoints_shown_are_entries_of_the_emulator_s_table() -> None:
    [shown] = [block for block in skipped_blocks() if block.startswith("ENDPOINTS = (")]
    namespace = dict(vars(_endpoints))
    exec(compile(shown, "families.md: ENDPOINTS", "exec"), namespace)
    entries = [entry for entry in namespace["ENDPOINTS"] if entry is not Ellipsis]
    assert entries
    for entry in entries:
        assert any(same_endpoint(entry, real) for real in _endpoints.ENDPOINTS), entry


def test_the_webhook_example_prints_what_webhooks_md_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = (FAMILIES.parent / "webhooks.md").read_text()
    [example] = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "main()" in b]
    [said] = re.findall(r"It prints `([^`]+)`", text)
    exec(compile(example, "webhooks.md: Example", "exec"), {})
    assert capsys.readouterr().out.strip() == said
