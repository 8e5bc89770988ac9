"""``gptunnel-async fleet status``: its defaults are shown, an empty fleet is pointed out,
and a Redis it cannot reach is named (never with its password)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gptunnel_async.cli import main
from gptunnel_async.fleet import RedisBudget, RedisStore, Watcher
from gptunnel_async.testing import FakeGPTunnel


async def _one_task_watched(fake: FakeGPTunnel, redis: Redis, name: str) -> None:
    """The fleet ``name`` holds one task, watched and running."""
    async with fake.client() as client:
        await Watcher(client, RedisStore(redis, name=name)).watch(
            fake.script_task(steps=[("running", 1)])
        )


async def test_a_fleet_name_with_nothing_stored_is_pointed_out(
    fake: FakeGPTunnel, redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _one_task_watched(fake, redis, "bot")
    code = await asyncio.to_thread(main, ["fleet", "status", "--redis", redis_url])
    assert code == 0
    warned = capsys.readouterr().err
    assert "nothing is stored for the fleet 'default'" in warned
    assert "--name" in warned
    code = await asyncio.to_thread(main, ["fleet", "status", "--redis", redis_url, "--name", "bot"])
    assert code == 0
    assert "nothing is stored" not in capsys.readouterr().err


async def test_an_idle_fleet_is_not_taken_for_a_wrong_name(
    fake: FakeGPTunnel, redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake.client() as client:
        store = RedisStore(redis, name="idle")
        async with Watcher(client, store, handler=lambda delivery: None):
            await store.take("w", 1, 0.0, 60.0)  # a worker with a handler has looked
    command = ["fleet", "status", "--redis", redis_url, "--name", "idle", "--json"]
    code = await asyncio.to_thread(main, command)
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["watched"] == 0  # nothing counted, no budget ...
    assert "nothing is stored" not in captured.err  # ... yet the fleet is there


async def test_a_budget_name_with_no_state_is_pointed_out(
    fake: FakeGPTunnel, redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped ``--budget`` showed ``rate -`` and nothing else."""
    await _one_task_watched(fake, redis, "bot")
    await RedisBudget(redis, requests_per_second=5, name="shared").acquire()
    command = ["fleet", "status", "--redis", redis_url, "--name", "bot", "--json"]
    for budget, warned in [("shared", False), ("shraed", True)]:
        assert await asyncio.to_thread(main, [*command, "--budget", budget]) == 0
        captured = capsys.readouterr()
        assert (json.loads(captured.out)["rate"] is None) is warned
        assert ("no request budget named 'shraed'" in captured.err) is warned
        assert "nothing is stored" not in captured.err


def test_an_unreachable_redis_is_named_without_its_password(
    unused_tcp_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://user:hunter2-secret@127.0.0.1:{unused_tcp_port}/3"
    assert main(["fleet", "status", "--redis", url]) == 4
    error = capsys.readouterr().err
    assert f"redis://127.0.0.1:{unused_tcp_port}/3" in error
    assert "--redis" in error
    assert f"connecting to 127.0.0.1:{unused_tcp_port}" in error  # the reason, not a type
    assert "hunter2" not in error and "user" not in error


def test_an_unreachable_redis_socket_is_named_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``unix://`` URL with a user and password: naming it without them raised yarl's
    ``ValueError``, so the command reported a usage error ("password replacement is not
    allowed for relative URLs") instead of the store it could not reach."""
    url = f"unix://user:hunter2-secret@{tmp_path}/none.sock?password=hunter2-secret"
    assert main(["fleet", "status", "--redis", url]) == 4
    error = capsys.readouterr().err
    assert "the store failed" in error and "none.sock" in error and "--redis" in error
    assert "hunter2" not in error


def test_the_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fleet", "--help"])
    shown = capsys.readouterr().out
    assert "redis://localhost:6379/0" in shown
    assert "(default: default)" in shown


@pytest.mark.parametrize("score", ["-inf", "+inf"])
async def test_status_json_stays_strict_json_whatever_scores_someone_else_wrote(
    redis: Redis, redis_url: str, capsys: pytest.CaptureFixture[str], score: str
) -> None:
    await redis.zadd(RedisStore(redis).due_key, {"someone-elses": float(score)})
    code = await asyncio.to_thread(main, ["fleet", "status", "--redis", redis_url, "--json"])
    assert code == 0
    line = capsys.readouterr().out

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    status = json.loads(line, parse_constant=refuse)  # Infinity and NaN are no JSON
    assert status["watched"] == 1
    assert status["oldest_overdue_s"] == (None if score == "-inf" else 0.0)


async def test_the_redis_url_comes_from_the_environment_without_redis(
    fake: FakeGPTunnel,
    redis: Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A URL with a password on the command line shows in the process list and the
    shell's history: ``$GPTUNNEL_REDIS_URL`` keeps it out of both, and ``--redis``
    still wins over it."""
    async with fake.client() as client:
        await Watcher(client, RedisStore(redis, name="env")).watch(
            fake.script_task(steps=[("running", 1)])
        )
    monkeypatch.setenv("GPTUNNEL_REDIS_URL", redis_url)
    command = ["fleet", "status", "--name", "env", "--json"]
    assert await asyncio.to_thread(main, command) == 0
    assert json.loads(capsys.readouterr().out)["watched"] == 1


def test_an_unreachable_redis_from_the_environment_is_named_so(
    unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "GPTUNNEL_REDIS_URL", f"redis://:hunter2-secret@127.0.0.1:{unused_tcp_port}/0"
    )
    assert main(["fleet", "status"]) == 4
    error = capsys.readouterr().err
    assert f"redis://127.0.0.1:{unused_tcp_port}/0 (GPTUNNEL_REDIS_URL)" in error
    assert "hunter2" not in error
    assert main(["fleet", "status", "--redis", f"redis://127.0.0.1:{unused_tcp_port}/1"]) == 4
    assert f"redis://127.0.0.1:{unused_tcp_port}/1 (--redis)" in capsys.readouterr().err


def test_without_redis_nor_the_environment_the_default_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GPTUNNEL_REDIS_URL", raising=False)
    with pytest.raises(SystemExit):
        main(["fleet", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "$GPTUNNEL_REDIS_URL, else redis://localhost:6379/0" in shown
