"""``gptunnel-async emulator``: the emulator as a server, for bots in any language and for
trying the command line, until Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import attrs

from ..errors import ConfigurationError
from ._control import created_from_spec, fault_from_spec, script_from_spec
from ._fake import FakeGPTunnel

__all__ = ["EmulatorOptions", "serve"]


@attrs.frozen
class EmulatorOptions:
    """What ``gptunnel-async emulator`` was asked for."""

    host: str
    port: int
    storage_port: int
    api_key: str
    tasks_file: Path | None = None
    tasks: Sequence[dict[str, Any]] = ()
    faults: Sequence[dict[str, Any]] = ()
    created_duration: float | None = None
    as_json: bool = False


MAX_TASKS_FILE: Final = 10 * 2**20
"""The largest tasks file read, in bytes: far more than any script of tasks needs."""


_TASKS_FILE_FIELDS: Final = frozenset({"tasks", "faults", "created"})
"""The fields a tasks file may have."""


def _tasks_file(path: Path) -> dict[str, Any]:
    """The tasks file's JSON object, its ``tasks`` and ``faults`` lists if it has them.

    Raises:
        ConfigurationError: it is too big, not JSON in UTF-8, nested too deeply for
            Python's parser, or not such an object (one with a field other than
            ``tasks``, ``faults`` and ``created`` among them).
    """
    with path.open("rb") as file:  # /dev/zero must not fill the memory
        text = file.read(MAX_TASKS_FILE + 1)
    if len(text) > MAX_TASKS_FILE:
        raise ConfigurationError(f"the tasks file is over {MAX_TASKS_FILE // 2**20} MiB")
    try:
        document = json.loads(text.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
        raise ConfigurationError(f"the tasks file is not JSON in UTF-8: {exc}") from None
    except RecursionError:  # Python's parser runs out of stack, as the control endpoints'
        raise ConfigurationError("the tasks file's JSON is nested too deeply") from None
    if not isinstance(document, dict):
        raise ConfigurationError('the tasks file holds a JSON object: {"tasks": [...]}')
    unknown = sorted(set(document) - _TASKS_FILE_FIELDS)
    if unknown:  # a misspelt "faults" was ignored: its faults never came
        raise ConfigurationError(
            f"the tasks file has unknown fields {unknown}; known: {sorted(_TASKS_FILE_FIELDS)}"
        )
    if not all(isinstance(document.get(key, []), list) for key in ("tasks", "faults")):
        raise ConfigurationError('the tasks file\'s "tasks" and "faults" are lists')
    return document


def _load(fake: FakeGPTunnel, options: EmulatorOptions) -> list[str]:
    """Script what the options and the tasks file ask for; the ids of the tasks."""
    specs: list[Any] = []
    if options.tasks_file is not None:
        document = _tasks_file(options.tasks_file)
        specs += document.get("tasks", [])
        for fault in document.get("faults", []):
            fault_from_spec(fake, fault)
        if "created" in document:
            created_from_spec(fake, document["created"])
    if options.created_duration is not None:
        fake.script_created(duration=options.created_duration)
    specs += options.tasks
    for fault in options.faults:
        fault_from_spec(fake, fault)
    return [script_from_spec(fake, spec) for spec in specs]


def _announce(
    fake: FakeGPTunnel, task_ids: list[str], options: EmulatorOptions, out: TextIO
) -> None:
    where = {
        "base_url": fake.base_url,
        "api_key": fake.api_key,
        "storage_url": fake.storage_url,
        "control_url": fake.control_url,
        "tasks": task_ids,
    }
    if options.as_json:
        out.write(json.dumps({"event": "listening", **where}) + "\n")
    else:
        settings = f"GPTUNNEL_BASE_URL={fake.base_url} GPTUNNEL_API_KEY={shlex.quote(fake.api_key)}"
        out.write(
            f"GPTunnel emulator: API {fake.base_url} (key {fake.api_key!r})\n"
            f"  storage   {fake.storage_url}\n"
            f"  control   {fake.control_url}/requests, /tasks, /faults\n"
            f"  tasks     {', '.join(task_ids) or '(none yet)'}\n"
            f"Point the SDK, the command line or a bot at it with:\n"
            f"  export {settings}\n"
            "Ctrl-C stops it.\n"
        )
    out.flush()


async def serve(options: EmulatorOptions, out: TextIO = sys.stdout) -> int:
    """Run the emulator until SIGINT or SIGTERM; 0 once it has stopped cleanly.

    Raises:
        ConfigurationError: a task, fault or tasks file that is not one.
        OSError: the port is taken, or the tasks file cannot be read.
    """
    fake = FakeGPTunnel(
        api_key=options.api_key,
        host=options.host,
        port=options.port,
        storage_port=options.storage_port,
    )
    async with fake:
        task_ids = _load(fake, options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows' loops
                loop.add_signal_handler(signum, stop.set)
        _announce(fake, task_ids, options, out)
        await stop.wait()
    if options.as_json:
        out.write(json.dumps({"event": "stopped"}) + "\n")
        out.flush()
    return 0
