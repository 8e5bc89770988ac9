"""The leak guard of tests/leaks.py trips: a test run that leaves an aiohttp session or
connector unclosed fails, whichever way aiohttp reports it and whatever the warning filters.

The guard is exercised in a separate pytest process, so the leaks it must catch cannot
disturb this run (whose own guard would rightly catch them too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LEAKY_TESTS = """
import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


async def test_leaks_a_session() -> None:
    aiohttp.ClientSession()  # freed at once: reported while the test runs


@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_leaks_a_session_quietly() -> None:
    aiohttp.ClientSession()  # no warning: only the loop's exception handler reports it


async def test_leaks_a_session_in_a_cycle() -> None:
    box = [aiohttp.ClientSession()]
    box.append(box)  # only garbage collection frees it, after the test


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_leaks_a_used_connector() -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    async with TestServer(app) as server:
        session = aiohttp.ClientSession()
        async with session.get(server.make_url("/")) as response:
            await response.read()


async def test_closes_what_it_opens() -> None:
    async with aiohttp.ClientSession():
        pass
"""

SETTINGS = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def test_every_kind_of_leak_fails_its_test_and_a_clean_test_passes(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(SETTINGS)
    (tmp_path / "conftest.py").write_text(
        "from tests.leaks import no_unclosed_aiohttp as no_unclosed_aiohttp\n"
    )
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    environment = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_leaky.py"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = [line for line in run.stdout.splitlines() if "test_leaky.py::" in line]
    assert run.returncode == 1, run.stdout
    for name in ("session", "session_quietly", "session_in_a_cycle", "used_connector"):
        line = f"ERROR test_leaky.py::test_leaks_a_{name} - Failed: unclosed aiohttp resources"
        assert any(entry.startswith(line) for entry in summary), run.stdout
    assert "PASSED test_leaky.py::test_closes_what_it_opens" in summary
    assert "Unclosed connector" in run.stdout
