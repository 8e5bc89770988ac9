"""The pytest plugin users get from the ``pytest11`` entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from gptunnel_async.testing import FakeGPTunnel, instant_waits_enabled

pytest_plugins = ["pytester"]

USER_TESTS = """
    import asyncio

    import pytest

    from gptunnel_async import TaskFailedError
    from gptunnel_async.instrumentation import Hook, LoggingHook, get_hooks, set_hooks
    from gptunnel_async.testing import instant_waits_enabled


    {marker}
    async def test_a_scripted_wait(gptunnel_fake):
        # Ten reads at 0 %: the default pacing would pause for over 35 s in all.
        task_id = gptunnel_fake.script_task(steps=[*[("queued", 0)] * 10, ("done", 100)])
        async with asyncio.timeout(30), gptunnel_fake.client() as client:
            task = await client.wait_for_result(task_id)
        assert task.is_done


    {marker}
    async def test_a_failed_task(gptunnel_fake):
        task_id = gptunnel_fake.fail_task("no face found")
        async with gptunnel_fake.client() as client:
            with pytest.raises(TaskFailedError, match="no face found"):
                await client.wait_for_result(task_id)


    def test_sync_tests_get_it_too(gptunnel_fake):
        assert gptunnel_fake.base_url.endswith("/v1")
        assert instant_waits_enabled()


    def test_instant_waits_alone(gptunnel_instant_waits):
        assert instant_waits_enabled()


    def test_waits_are_real_without_the_fixtures():
        assert not instant_waits_enabled()


    class Counting(Hook):
        def on_wait_started(self, details):
            pass


    def test_an_app_sets_its_hooks(gptunnel_fake):
        set_hooks([LoggingHook(), Counting()])  # as an app's startup does


    def test_the_next_test_has_the_hooks_of_before():
        assert [type(hook) for hook in get_hooks()] == [LoggingHook]


    def test_hooks_alone(gptunnel_hooks):
        set_hooks([])


    def test_and_again():
        assert [type(hook) for hook in get_hooks()] == [LoggingHook]
"""


def test_the_plugin_is_registered_as_an_entry_point() -> None:
    plugins = metadata.entry_points(group="pytest11")
    [entry] = [ep for ep in plugins if ep.value == "gptunnel_async.testing._plugin"]
    assert entry.name == "gptunnel_async"


@pytest.mark.parametrize(
    ("mode", "marker"), [("auto", ""), ("strict", "@pytest.mark.asyncio")], ids=["auto", "strict"]
)
def test_users_get_the_fixtures_in_either_asyncio_mode(
    pytester: pytest.Pytester, mode: str, marker: str
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(textwrap.dedent(USER_TESTS).format(marker=marker))
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=9)
    assert not instant_waits_enabled()


def test_the_fixture_yields_a_running_emulator(gptunnel_fake: FakeGPTunnel) -> None:
    assert isinstance(gptunnel_fake, FakeGPTunnel)
    assert gptunnel_fake.base_url.startswith("http://127.0.0.1:")
    assert instant_waits_enabled()


def test_importing_the_package_does_not_import_pytest() -> None:
    code = (
        "import sys, gptunnel_async, gptunnel_async.testing, gptunnel_async.cli; "
        "assert 'pytest' not in sys.modules, 'pytest was imported'; "
        "assert 'rich' not in sys.modules, 'rich was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
