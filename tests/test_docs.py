"""docs/families.md: every complete example runs against the emulator and says what it should."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gptunnel_async.testing import instant_waits

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
