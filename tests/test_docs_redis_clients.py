"""Every Redis client the docs and examples make for the fleet has a ``socket_timeout``,
as "Redis setup" in docs/fleet.md asks: one copied without it waits for a Redis that
stopped answering for as long as the operating system lets a connection hang."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_CALL = re.compile(r"Redis\.from_url\((?P<arguments>[^)]*)\)")


def _shown_files() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "examples").rglob("*.py")),
    ]


def test_every_redis_client_shown_has_a_socket_timeout() -> None:
    without = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _shown_files()
        for match in _CALL.finditer(path.read_text(encoding="utf-8"))
        if "socket_timeout" not in match["arguments"]
    ]
    assert not without, "\n".join(without)
