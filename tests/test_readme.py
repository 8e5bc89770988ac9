"""README.md is also the package index's project page, where only absolute links work:
every link is absolute, and each one into this repository names a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
REPOSITORY = "https://github.com/gptunnel-async/gptunnel-async/blob/main/"


def links(markdown: str) -> list[str]:
    """The targets of inline links and images, and of reference definitions."""
    without_code = re.sub(r"```.*?```|`[^`\n]*`", "", markdown, flags=re.S)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", without_code)
    defined = re.findall(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", without_code, flags=re.M)
    return inline + defined


def test_the_link_finder_finds_each_kind_of_link() -> None:
    text = '[a](https://x.test/a) ![b](b.png "B") `[c](c.md)`\n[d]: docs/d.md\n'
    assert links(text) == ["https://x.test/a", "b.png", "docs/d.md"]


def test_every_readme_link_is_absolute() -> None:
    relative = [
        link
        for link in links((ROOT / "README.md").read_text())
        if not re.match(r"(https?://|mailto:|#)", link)
    ]
    assert relative == []


def test_every_readme_link_into_the_repository_names_a_file_that_exists() -> None:
    paths = [
        link.removeprefix(REPOSITORY).split("#")[0]
        for link in links((ROOT / "README.md").read_text())
        if link.startswith(REPOSITORY)
    ]
    assert paths
    assert [path for path in paths if not (ROOT / path).is_file()] == []
