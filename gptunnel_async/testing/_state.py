"""The emulator's memory: tasks, the balance, queued faults and the request logs, behind
one lock.

The servers may run on another thread than the test that scripts them, so every read
and change goes through ``EmulatorState`` and its lock.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs
from multidict import CIMultiDictProxy

from ..errors import ConfigurationError
from ..models import Balance, MediaTask, Task, Usage
from ._scripts import DEFAULT_CREATED_SCRIPT, LOOKS, EmulatedTask, Look, MediaOutput, TaskScript

__all__ = [
    "DEFAULT_BALANCE",
    "MAX_LOGGED_BYTES",
    "MAX_LOGGED_REQUESTS",
    "MAX_QUEUED_FAULTS",
    "MAX_TASKS",
    "EmulatorState",
    "Fault",
    "RecordedRequest",
    "Server",
]

DEFAULT_BALANCE: Final = Balance(org_id="fake-org", balance=100.0, credit_limit=0.0)
"""The emulator's balance until a test sets another."""

Server: TypeAlias = Literal["api", "storage", "webhook"]
"""Where a request goes: the emulator's API, its storage that serves results, or (sent by
the emulator) a task's webhook."""


@attrs.frozen
class RecordedRequest:
    """One request that reached the emulator, as it arrived.

    Attributes:
        method: the HTTP method.
        path: the full URL path, e.g. ``/v1/faceswap/result``.
        query: the decoded query.
        headers: the request headers (case-insensitive).
        body: the raw body.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes = b""

    @property
    def size(self) -> int:
        """Roughly how many bytes it holds: its body, path, query and headers."""
        texts = [self.path, *self.query.keys(), *self.query.values()]
        texts += [*self.headers.keys(), *self.headers.values()]
        return len(self.body) + sum(map(len, texts))

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when it is empty, not JSON, or nested
        deeper than ``MAX_JSON_DEPTH`` (which the endpoints then refuse as input, not
        with a crash's 500: Python's parser, or the answer that echoes the body, would
        run out of stack)."""
        try:
            parsed = json.loads(self.body) if self.body else None
        except (ValueError, RecursionError):
            return None
        return None if _deeper_than(parsed, MAX_JSON_DEPTH) else parsed


MAX_LOGGED_REQUESTS: Final = 10_000
"""Each server's request log keeps at most this many requests, the latest."""

MAX_LOGGED_BYTES: Final = 64 * 2**20
"""64 MiB: and at most this much of their bodies and headers (the latest request is
always kept, whatever its size). Past either bound the oldest are forgotten: an emulator
on a port that anyone can reach, without the key too, must not be grown without bound."""

MAX_TASKS: Final = 50_000
"""At most this many tasks are held (a few KiB each): past it a create through the API
is answered 503 (media: code 6, heavy load), and scripting one is a
``ConfigurationError``. Creates cost nothing with the public default key."""

MAX_QUEUED_FAULTS: Final = 1_000
"""At most this many faults wait in the queue: every request looks through them all."""

MAX_JSON_DEPTH: Final = 200
"""The deepest nesting of a request body the emulator reads, in levels of objects and
lists: far past any body GPTunnel documents, well short of Python's recursion limit."""


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value``'s objects and lists nest more than ``limit`` levels (walked
    without recursion, so any depth the parser gave is measured)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)
    return False


@attrs.define
class Fault:
    """A queued misbehaviour: pause ``delay`` seconds, then drop, answer ``status``, or
    carry on normally. Used by the next ``remaining`` matching requests (``None``: all).
    """

    server: Server
    path: str | None
    remaining: int | None
    delay: float = 0.0
    drop: bool = False
    status: int | None = None
    retry_after: str | None = None
    body: Any = None

    def matches(self, server: Server, path: str) -> bool:
        """Whether this fault applies to a request for ``path`` on ``server``."""
        return self.server == server and self.path in (None, path)


class EmulatorState:
    """Tasks, faults and logs of one emulator; every method is safe from any thread."""

    def __init__(self, api_key: str, result_image: bytes) -> None:
        self.api_key = api_key
        self.result_image = result_image
        self.storage_url = ""
        self._lock = threading.Lock()
        self._tasks: dict[str, EmulatedTask] = {}
        self._faults: list[Fault] = []
        self._logs: dict[Server, deque[RecordedRequest]] = {
            "api": deque(),
            "storage": deque(),
            "webhook": deque(),
        }
        self._logged_bytes: dict[Server, int] = dict.fromkeys(self._logs, 0)
        self._webhooks_due: set[str] = set()
        self._created_script = DEFAULT_CREATED_SCRIPT
        self._created_output: dict[str, Any] = {}
        self._done_at_create = False
        self._balance = DEFAULT_BALANCE

    # -- the balance ----------------------------------------------------------------

    @property
    def balance(self) -> Balance:
        """What ``/balance`` answers; creates are refused (402) once it and the credit
        limit are used up."""
        with self._lock:
            return self._balance

    @balance.setter
    def balance(self, value: Balance) -> None:
        with self._lock:
            self._balance = value

    def can_pay(self) -> bool:
        """Whether a create may start a task: some balance or credit is left."""
        balance = self.balance
        return balance.balance + balance.credit_limit > 0

    def has_room(self) -> bool:
        """Whether another task fits: fewer than :data:`MAX_TASKS` are held."""
        with self._lock:
            return len(self._tasks) < MAX_TASKS

    # -- tasks ----------------------------------------------------------------------

    def add_task(
        self,
        script: TaskScript | None = None,
        *,
        task_id: str | None = None,
        type: str,
        parent_id: str | None = None,
        model: str | None = None,
        webhook: str | None = None,
        output: MediaOutput | None = None,
        created: bool = True,
    ) -> EmulatedTask:
        """A new task following ``script`` (default: the created-task script).

        Its family's :data:`LOOKS` entry (by ``type``) gives its actions, previews and
        cost; ``parent_id``, ``model``, ``webhook`` and ``output`` (default: the
        created-task one, for the model) are as on :class:`EmulatedTask`. A task
        ``created`` through the API runs from now; one scripted ahead, from its first read.
        """
        look = LOOKS.get(type, Look())
        with self._lock:
            if output is None:
                output = (
                    MediaOutput()
                    if model is None
                    else MediaOutput.build(model, **self._created_output)
                )
            new_id = task_id if task_id is not None else secrets.token_hex(12)
            if new_id in self._tasks:
                raise ConfigurationError(f"the emulator already has a task {new_id!r}")
            if len(self._tasks) >= MAX_TASKS:
                raise ConfigurationError(f"the emulator holds at most {MAX_TASKS} tasks")
            result_url, image = self._result_urls(new_id, look)
            task = EmulatedTask(
                id=new_id,
                type=type,
                script=script or self._created_script,
                started=time.monotonic() if created else None,
                result_url=result_url,
                parent_id=parent_id,
                actions=look.actions,
                image_url=image,
                model=model,
                webhook=webhook,
                output=output,
                created_at=int(time.time()),
                usage=Usage(completion_cost=look.cost, total_cost=look.cost),
                done_at_create=self._done_at_create if script is None else False,
            )
            self._tasks[new_id] = task
            if webhook is not None:
                self._webhooks_due.add(new_id)
            return task

    def _result_urls(self, task_id: str, look: Look) -> tuple[str, str | None]:
        """A new task's result URL, and a Midjourney task's image URL (without its query).

        Midjourney's images live on a result host of their own, one URL per task (the
        docs: ``https://gptunnel.ru/task/image/<id>?cache=100``); other families' files
        are objects in a storage bucket.
        """
        if look.previews:
            image = f"{self.storage_url}/task/image/{task_id}"
            return f"{image}?cache=100", image
        return f"{self.storage_url}/results/{task_id}_result.png", None

    def set_created_script(
        self,
        script: TaskScript,
        *,
        output: Mapping[str, Any] | None = None,
        done_at_create: bool = False,
    ) -> None:
        """The script of every task created through the API from now on; ``output``
        holds :meth:`MediaOutput.build`'s options for media tasks' results, and
        ``done_at_create`` makes the create answer already final."""
        with self._lock:
            self._created_script = script
            self._created_output = dict(output or {})
            self._done_at_create = done_at_create

    def read_task(self, task_id: str) -> Task | MediaTask | None:
        """A task's state, counting the read; ``None`` if there is no such task."""
        with self._lock:
            task = self._tasks.get(task_id)
            return None if task is None else task.read(time.monotonic())

    def peek_task(self, task_id: str) -> Task | MediaTask | None:
        """A task's state without counting a read; ``None`` if there is no such task."""
        with self._lock:
            task = self._tasks.get(task_id)
            return None if task is None else task.snapshot(time.monotonic())

    def ended_with_webhook(self) -> list[tuple[str, Task | MediaTask]]:
        """``(webhook URL, final state)`` of each task with a webhook that has ended since
        the last call: each is handed out once."""
        now = time.monotonic()
        ended = []
        with self._lock:
            for task_id in list(self._webhooks_due):
                task = self._tasks[task_id]
                state = task.snapshot(now)
                if state.is_done or state.is_failed:
                    self._webhooks_due.discard(task_id)
                    assert task.webhook is not None
                    ended.append((task.webhook, state))
        return ended

    def task_image(self, task_id: str) -> bytes | None:
        """The image at ``task/image/<task_id>`` (Midjourney's result host): the task's
        image once its ``result`` shows one (intermediate or final), whatever ``cache``."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.image_url is None:
                return None
            state = task.snapshot(time.monotonic())
        return self.result_image if isinstance(state, Task) and state.result else None

    def result_file(self, name: str) -> bytes | None:
        """The file at storage path ``results/<name>``: ``<id>_result.png`` once that task
        is done, a media task's clips (``<id>_clip<n>.mp3`` and their cover images) once
        they show."""
        task_id, _, _ = name.rpartition("_")
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            state = task.snapshot(time.monotonic())
        if isinstance(state, MediaTask):
            shown = [*state.urls, *(clip.image_url for clip in state.clips)]
        else:
            shown = [state.result] if state.is_done else []
        wanted = f"/results/{name}"
        return self.result_image if any(url and url.endswith(wanted) for url in shown) else None

    # -- faults ---------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Queue ``fault`` behind the ones already queued.

        Raises:
            ConfigurationError: :data:`MAX_QUEUED_FAULTS` are queued already (each
                request looks through them all).
        """
        with self._lock:
            if len(self._faults) >= MAX_QUEUED_FAULTS:
                raise ConfigurationError(
                    f"the emulator holds at most {MAX_QUEUED_FAULTS} queued faults; "
                    "clear_faults() forgets them, and times= makes one fault serve many requests"
                )
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._faults.clear()

    def take_fault(self, server: Server, path: str) -> Fault | None:
        """The first queued fault for this request, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(server, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
            return None

    # -- request logs ---------------------------------------------------------------

    def record(self, server: Server, request: RecordedRequest) -> None:
        """Log a request that reached ``server``, forgetting the oldest past
        :data:`MAX_LOGGED_REQUESTS` or :data:`MAX_LOGGED_BYTES`."""
        with self._lock:
            log = self._logs[server]
            log.append(request)
            self._logged_bytes[server] += request.size
            while len(log) > 1 and (
                len(log) > MAX_LOGGED_REQUESTS or self._logged_bytes[server] > MAX_LOGGED_BYTES
            ):
                self._logged_bytes[server] -= log.popleft().size

    def log(self, server: Server) -> list[RecordedRequest]:
        """A copy of ``server``'s request log, oldest first."""
        with self._lock:
            return list(self._logs[server])
