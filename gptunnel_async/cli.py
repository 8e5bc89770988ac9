"""The ``gptunnel-async`` command line: read a task, wait for one, or run the offline demo.

Exit codes: 0 done, 1 the task failed, 2 usage or configuration, 3 the wait timed
out, 4 an API or network error (74 when the output cannot be written, 130 when
interrupted, 141 when the output was closed, 143 when stopped by SIGTERM).
The API key comes from ``--api-key`` or ``GPTUNNEL_API_KEY`` and is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import io
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar, cast

from yarl import URL

from . import _timing
from ._checks import describe, positive_number, task_id_problem, without_userinfo
from ._checks import port as check_port
from ._cli_families import FAMILIES, add_family_commands, resource, save_result, wait_options
from ._cli_json import json_line
from ._client import GPTunnelClient
from ._download import check_destination
from ._polling import PollPolicy
from ._sansio.numbers import argument_decimal, digits
from ._sansio.retries import is_transient
from ._sansio.text import mask_for, printable
from ._sentinel import NOT_GIVEN, NotGiven
from ._version import version
from .errors import (
    API_UNREACHED,
    APIConnectionError,
    ConfigurationError,
    DownloadError,
    GPTunnelError,
    NotFoundError,
    StoreUnavailableError,
    TaskFailedError,
    TLSError,
    WaitTimeoutError,
)
from .models import MediaTask, Task

T = TypeVar("T")

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._cli_output import Output

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_DONE",
    "EXIT_TASK_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "exit_code_for",
    "main",
]

EXIT_DONE: Final = 0
"""The task is done (for ``result``: it was read and has not failed)."""
EXIT_TASK_FAILED: Final = 1
"""The task failed."""
EXIT_USAGE: Final = 2
"""Bad arguments or configuration: no key, a bad base URL, a blank task id, no rich."""
EXIT_TIMEOUT: Final = 3
"""The wait passed its deadline."""
EXIT_API_ERROR: Final = 4
"""An API or network error: 401, 402, 404, a server or connection failure, a download."""
EXIT_INTERRUPTED: Final = 130
"""Ctrl-C (SIGINT): 128 + its signal number, as shells report it."""
EXIT_TERMINATED: Final = 143
"""SIGTERM (a supervisor's stop: systemd, ``docker stop``): 128 + its signal number."""
EXIT_OUTPUT_CLOSED: Final = 141
"""The output was closed before the command ended (``... | head -1``): 128 + SIGPIPE,
what a shell reports for a program that a closed pipe ends."""
EXIT_OUTPUT_FAILED: Final = 74
"""The output could not be written (a full disk, an I/O error): ``EX_IOERR`` of
``sysexits.h``."""

REDIS_URL_VARIABLE: Final = "GPTUNNEL_REDIS_URL"
"""The environment variable ``fleet status`` reads its Redis URL from without ``--redis``."""

DEFAULT_REDIS_URL: Final = "redis://localhost:6379/0"
"""The Redis ``fleet status`` reads without ``--redis`` or ``$GPTUNNEL_REDIS_URL``."""

DEMO_SECONDS: Final = 2.0
"""How long the demo's emulated face swap takes: long enough to watch the bar move."""

DEMO_POLICY: Final = PollPolicy(initial=0.2, multiplier=1.0, max_interval=0.2, timeout=30.0)
"""The emulator answers at once, so the demo polls often to show every step."""

DEMO_RESULT: Final = "gptunnel-demo-result.png"

Command = Callable[[argparse.Namespace, "Output"], Awaitable[int]]


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an error that ended a command.

    Args:
        exc: the error.

    Returns:
        1 for a failed task, 3 for a timeout, 2 for bad usage or configuration, and
        4 for any other API or network error.
    """
    if isinstance(exc, TaskFailedError):
        return EXIT_TASK_FAILED
    if isinstance(exc, WaitTimeoutError):
        return EXIT_TIMEOUT
    if isinstance(exc, ValueError):  # ConfigurationError included
        return EXIT_USAGE
    return EXIT_API_ERROR


# -- commands -----------------------------------------------------------------------


def make_client(args: argparse.Namespace) -> GPTunnelClient:
    """The client the command's ``--api-key`` and ``--base-url`` describe."""
    if not (args.api_key if args.api_key is not None else os.environ.get("GPTUNNEL_API_KEY")):
        raise ConfigurationError(
            "no API key: pass --api-key KEY or set the GPTUNNEL_API_KEY environment variable"
        )
    return GPTunnelClient(
        api_key=args.api_key,
        base_url=args.base_url,
        poll_policy=getattr(args, "poll_policy", None),  # --max-interval, where a command has it
    )


def timeout_of(args: argparse.Namespace) -> float | NotGiven | None:
    """The wait's deadline from ``--timeout`` (``None``: none), or the policy's own."""
    timeout: float | NotGiven | None = args.timeout
    return timeout


async def _reach(client: GPTunnelClient, task_id: str, family: str, timeout: float | None) -> Any:
    """Read the task once before waiting for it. A wait rides through network failures
    until its deadline, which is right once the API has answered; but a first read that
    cannot reach the API at all (after the client's retries) is an error, exit 4. The
    read counts against the wait's deadline, ``timeout`` seconds from now.

    Returns:
        The task as read, or ``None`` if the API answered with a transient error.

    Raises:
        WaitTimeoutError: the deadline passed during the read (and its retries); its
            ``last_error`` is the failed attempt the client was about to retry, if any.
    """
    bounded = asyncio.timeout(timeout)
    retried_before = _timing.failed_attempt.get()
    try:
        async with bounded:
            return await resource(client, family).result(task_id)
    except GPTunnelError as exc:
        if isinstance(exc, APIConnectionError) or not is_transient(exc):
            raise
        return None
    except TimeoutError:
        if bounded.expired():
            failed = _timing.failed_since(retried_before)
            raise WaitTimeoutError(task_id, timeout or 0.0, None, failed) from failed
        raise


async def _result(args: argparse.Namespace, out: Output) -> int:
    async with make_client(args) as client:
        task = await resource(client, args.family).result(args.task_id)
    out.task(task)
    return EXIT_TASK_FAILED if task.is_failed else EXIT_DONE


async def _wait(args: argparse.Namespace, out: Output) -> int:
    if args.save is not None:
        check_destination(args.save, "--save")  # before the wait, not after it
    args.waiting_for = (args.task_id, args.family)
    async with make_client(args) as client:
        timeout = resource(client, args.family)._wait_policy(None, timeout_of(args), None).timeout
        started = asyncio.get_running_loop().time()
        first = await _reach(client, args.task_id, args.family, timeout)
        waited = asyncio.get_running_loop().time() - started
        left = None if timeout is None else max(timeout - waited, 0.001)  # a timeout is > 0
        try:
            return await wait_and_save(
                client,
                args.task_id,
                out,
                save=args.save,
                timeout=left,
                first=first,
                family=args.family,
            )
        except WaitTimeoutError as exc:  # said of the whole deadline, first read and all
            raise WaitTimeoutError(args.task_id, timeout or 0.0, exc.task, exc.last_error) from (
                exc.last_error
            )


async def wait_and_save(
    client: GPTunnelClient,
    task_id: str,
    out: Output,
    *,
    save: str | os.PathLike[str] | None,
    timeout: float | NotGiven | None = NOT_GIVEN,
    first: Task | MediaTask | None = None,
    family: str = "faceswap",
) -> int:
    """Wait for a task of ``family``, showing each change (``first``, a state read just
    before, is the wait's first read: no second request for it), then save its
    result(s) to ``save``."""
    family_resource = resource(client, family)
    read: Callable[[], Awaitable[Any]] = family_resource._reader(task_id)
    if first is not None:
        read = _first_then(first, read)
    policy = family_resource._wait_policy(None, timeout, None)
    waiter = family_resource._waiter(task_id, read, policy, None)
    with out.progress(task_id) as show:
        async for event in waiter:
            show(event)
    task = event.task  # a wait that ends without raising ends with its done event
    out.done(task)
    if save is not None:
        # Each path as soon as it is saved (absolute: a program reading it may run
        # elsewhere), so a later file's failure does not hide where the others went.
        try:
            await save_result(client, task, save, lambda path: out.saved(path.absolute()))
        except ConfigurationError as exc:
            # ``save`` was checked before the wait: what fails now (its folder removed
            # or made a file meanwhile) is a failed download, exit 4, not a usage error.
            raise DownloadError(f"the result could not be saved: {exc}") from exc
    return EXIT_DONE


def _first_then(first: T, read: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """A wait's read that returns ``first`` (a state already read) once, then reads."""
    pending = [first]

    async def fetch() -> T:
        return pending.pop() if pending else await read()

    return fetch


async def _demo(args: argparse.Namespace, out: Output) -> int:
    from .testing import FakeGPTunnel, sample_image
    from .testing._pictures import face_swap_picture

    result = demo_destination()
    async with FakeGPTunnel(result_image=face_swap_picture()) as fake:
        fake.script_created(duration=DEMO_SECONDS)
        out.note(f"Started an emulated GPTunnel at {fake.base_url}: no key, no network.")
        async with fake.client(poll_policy=DEMO_POLICY) as client:
            task = await client.faceswap.create(
                sample_image("source.png"), sample_image("face.png")
            )
            out.note(f"Created face swap {task.id} from the two sample images.")
            code = await wait_and_save(client, task.id, out, save=result)
            out.note(
                "The emulator swaps nothing: its result is a placeholder picture of what a "
                "face swap does (person + face -> result), drawn from the sample images."
            )
            return code


def demo_destination() -> Path:
    """Where the demo saves its result: :data:`DEMO_RESULT` in the current folder,
    checked before the demo starts (see ``check_destination``).

    Raises:
        ConfigurationError: the current folder is gone (removed under the shell) or
            takes no new file (read-only, not the user's), said in one line with
            what to do, rather than a write error after the demo ran.
    """
    advice = f"the demo saves {DEMO_RESULT} in the current folder: run it in one you can write to"
    try:
        folder = Path.cwd().resolve()
    except OSError as exc:  # the folder was removed: getcwd() fails
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(
            f"the current folder cannot be found ({reason}); {advice}"
        ) from None
    try:
        check_destination(folder / DEMO_RESULT, "the demo's result")
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}; {advice}") from None
    return folder / DEMO_RESULT


async def _emulator(args: argparse.Namespace, out: Output) -> int:
    from .testing import DEFAULT_API_KEY
    from .testing._server import EmulatorOptions, serve

    options = EmulatorOptions(
        host=args.host,
        port=args.port,
        storage_port=args.storage_port,
        # An empty --api-key is refused as one, not taken for the default key.
        api_key=DEFAULT_API_KEY if getattr(args, "api_key", None) is None else args.api_key,
        tasks_file=args.tasks,
        tasks=args.task,
        faults=args.fail_next,
        created_duration=args.created_duration,
        as_json=args.json,
    )
    try:
        return await serve(options)
    except OSError as exc:  # a port in use, a tasks file that cannot be read
        tip = "; pass another --port, or --port 0 for any free one" if _in_use(exc) else ""
        raise ConfigurationError(f"the emulator cannot start: {exc}{tip}") from None


def _in_use(exc: OSError) -> bool:
    """Whether ``exc`` is a port already taken (asyncio may wrap it, errno and all)."""
    return exc.errno == errno.EADDRINUSE or "address already in use" in str(exc).lower()


def _task_spec(text: str) -> dict[str, Any]:
    """``ID=SECONDS`` (done after that long from its first read) or ``ID=SECONDS:ERROR``
    (failed then), as a task spec.

    Raises:
        ValueError: the text is not one.
    """
    task_id, equals, rest = text.partition("=")
    seconds, colon, error = rest.partition(":")
    if not (task_id and equals and seconds):
        raise ValueError(f"a task is ID=SECONDS or ID=SECONDS:ERROR, got {text!r}")
    duration = argument_decimal(seconds)
    if duration is None:
        raise ValueError(f"a task's SECONDS is a number, got {seconds!r} in {text!r}")
    spec: dict[str, Any] = {"id": task_id, "duration": duration}
    if colon:
        spec["error"] = error or "the task failed"
    return spec


def _fault_spec(text: str) -> dict[str, Any]:
    """``STATUS`` or ``STATUSxTIMES`` (``503x2``): the next requests answer that status.

    Raises:
        ValueError: the text is not one.
    """
    status, _, times = text.lower().partition("x")
    code, count = digits(status), digits(times) if times else 1
    if code is None or count is None:
        raise ValueError(f"a fault is STATUS or STATUSxN (e.g. 503x2), got {text!r}")
    return {"kind": "fail", "status": code, "times": count}


def _spec(parse: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """An argparse type from a spec parser: its ``ValueError`` becomes a usage error."""

    def parse_argument(text: str) -> dict[str, Any]:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_argument


def _port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        return check_port("the port", digits(text))
    except ValueError:  # not 1*DIGIT (None), or out of range: ConfigurationError both
        raise argparse.ArgumentTypeError(
            f"a port is a whole number from 0 (any free one) to 65535, got {text!r:.40}"
        ) from None


def _add_emulator(add: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    emulator = add(
        "emulator",
        _emulator,
        "run the GPTunnel emulator as a server, for bots in any language: Ctrl-C stops it",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    emulator.add_argument(
        "--port", type=_port_number, default=8080, help="API port (default: 8080; 0: any free one)"
    )
    emulator.add_argument(
        "--storage-port",
        type=_port_number,
        default=0,
        help="storage port (default: any free one)",
    )
    emulator.add_argument(
        "--api-key", default=argparse.SUPPRESS, metavar="KEY", help="the key it accepts"
    )
    emulator.add_argument("--tasks", type=Path, metavar="FILE", help="tasks and faults (JSON)")
    emulator.add_argument(
        "--task",
        type=_spec(_task_spec),
        action="append",
        default=[],
        metavar="ID=S[:ERROR]",
        help="a task done S seconds after its first read (failed, with ERROR)",
    )
    emulator.add_argument(
        "--fail-next",
        type=_spec(_fault_spec),
        action="append",
        default=[],
        metavar="STATUS[xN]",
        help="answer the next N requests (default 1) with STATUS",
    )
    emulator.add_argument(
        "--created-duration",
        type=_seconds,
        metavar="S",
        help="tasks created through the API take S seconds",
    )
    emulator.add_argument("--json", action="store_true", help="print where it listens as JSON")


def _redis_shown(url: str) -> str:
    """A Redis URL fit to print: scheme, host, port and database (a socket's path),
    never a user or password (nor a query, which may hold ``password=``)."""
    try:
        return str(URL(url).with_user(None).with_password(None).with_query(None))
    except ValueError:  # yarl will not rebuild a URL without a host (unix://user:pw@/path)
        return without_userinfo(url).partition("?")[0]


async def _fleet_known(redis: Redis, name: str) -> bool:
    """Whether Redis holds anything of the fleet ``name``: its finished-task stream (made
    by the first worker with a handler, and kept) or its schedule. An idle fleet counts
    nothing, yet it is there."""
    from .fleet import RedisStore
    from .fleet._errors import store_call

    store = RedisStore(redis, name=name)
    async with store_call("looking for the fleet"):
        return bool(await redis.exists(store.stream_key, store.due_key, store.dead_key))


def _fleet_redis_url(args: argparse.Namespace) -> tuple[str, str]:
    """The fleet's Redis URL and where it came from: ``--redis``, else the environment
    (where a password stays out of the process list and the shell's history), else the
    default."""
    if args.redis is not None:
        return args.redis, "--redis"
    from_environment = os.environ.get(REDIS_URL_VARIABLE)
    if from_environment:
        return from_environment, REDIS_URL_VARIABLE
    return DEFAULT_REDIS_URL, "the default --redis"


def _fleet_warning(
    args: argparse.Namespace, where: str, known: bool, rate: float | None
) -> str | None:
    """What ``fleet status`` warns of, if anything: a ``--name`` under which nothing is
    stored, or a ``--budget`` given by name that has no state (a budget's state lasts
    ten minutes past its last request, so it may only be idle)."""
    if not known and rate is None:
        return (
            f"nothing is stored for the fleet {args.name!r} at {where}: "
            "is --name the name its RedisStore was given?"
        )
    if args.budget is not None and rate is None:
        return (
            f"no request budget named {args.budget!r} at {where} has made a request in the "
            "last ten minutes: is --budget the name its RedisBudget was given?"
        )
    return None


async def _fleet_status(args: argparse.Namespace, out: Output) -> int:
    try:
        from redis.asyncio import Redis
    except ImportError:
        raise ConfigurationError(
            "fleet status needs redis-py: pip install 'redis>=5.0.1'"
        ) from None
    from .fleet import fleet_status

    url, source = _fleet_redis_url(args)
    redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        status = await fleet_status(redis, name=args.name, budget=args.budget)
        known = await _fleet_known(redis, args.name)
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(f"{_redis_shown(url)} ({source}): {exc}") from None
    finally:
        await redis.aclose()
    warning = _fleet_warning(args, _redis_shown(url), known, status.rate)
    if warning:
        print(f"warning: {printable(warning)}", file=sys.stderr)
    rows = {
        "watched": status.watched,
        "due": status.due,
        "leased": status.leased,
        "finished_unhandled": status.finished_unhandled,
        "oldest_overdue_s": round(status.oldest_overdue, 3),
        "rate": None if status.rate is None else round(status.rate, 3),
        "dead_letters": status.dead_letters,
    }
    if args.json:
        print(json_line(rows), end="")
    else:
        for key, value in rows.items():
            out.note(f"{key.replace('_', ' '):<22}{'-' if value is None else value}")
    return EXIT_DONE


# -- arguments ----------------------------------------------------------------------


LONG_WORD: Final = 16
"""An unknown word of the command line this long or longer is hidden in argument errors:
it may be a key typed in the wrong place."""


def _secrets_in(args: Sequence[str], known: frozenset[str]) -> list[str]:
    """What an argument error must not repeat: the value of ``--api-key``, the value of
    any option argparse does not know (a mistyped ``--api_key KEY``), any other unknown
    word of :data:`LONG_WORD` characters or more, and ``$GPTUNNEL_API_KEY``."""
    found = [os.environ.get("GPTUNNEL_API_KEY", "")]
    for index, arg in enumerate(args):
        found += _hidden_by(arg, args[index + 1 : index + 2], known)
    return [secret for secret in found if secret]


def _hidden_by(arg: str, following: Sequence[str], known: frozenset[str]) -> list[str]:
    """The words ``arg`` (and the word ``following`` it) make secret: of a known option
    given as ``--option=VALUE``, the value only, as if it followed the option (hiding
    the whole word hid the option's name in its own error: ``argument ***``)."""
    name, has_value, value = arg.partition("=")
    if name.startswith("-") and (name not in known or name == "--api-key"):
        return [value] if has_value else list(following)
    word = value if has_value and name in known else arg
    return [word] if word not in known and len(word) >= LONG_WORD else []


def _known_words(parser: argparse.ArgumentParser) -> frozenset[str]:
    """Every option string and command name of ``parser`` and its subcommands."""
    words: set[str] = set()
    for action in parser._actions:
        words.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.add(name)
                words |= _known_words(sub)
    return frozenset(words)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose error messages never repeat an API key from the command line or
    the environment, even one typed in the wrong place."""

    _secrets: Sequence[str] = ()
    _given: Sequence[str] = ()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = sys.argv[1:] if args is None else args
        self._secrets = _secrets_in(given, _known_words(self))
        self._given = list(given)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        message += _misplaced_options(self, self._given)
        for secret in self._secrets:
            message = mask_for(secret)(message)
        super().error(message)


def _commands(parser: argparse.ArgumentParser) -> Mapping[str, argparse.ArgumentParser]:
    """``parser``'s subcommands by name (none for a subcommand's own parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return cast("Mapping[str, argparse.ArgumentParser]", action.choices)
    return {}


def _misplaced_options(parser: argparse.ArgumentParser, given: Sequence[str]) -> str:
    """A hint for options of a command given before its name (``--json imagine``), which
    argparse calls unrecognized (or, when one takes a value, calls that value an invalid
    command): ``""`` if there are none."""
    commands = _commands(parser)
    at = next((i for i, word in enumerate(given) if word in commands), None)
    if at is None:
        return ""
    own = {option for action in parser._actions for option in action.option_strings}
    theirs = _known_words(commands[given[at]]) - own
    early = [word.partition("=")[0] for word in given[:at]]
    misplaced = ", ".join(dict.fromkeys(word for word in early if word in theirs))
    if not misplaced:
        return ""
    return f" ({misplaced}: an option of {given[at]!r}; put it after the command name)"


def _task_id(text: str) -> str:
    """A ``TASK_ID`` argument, checked as the SDK checks one, in the command's words."""
    problem = task_id_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"the task id {problem}")
    return text


def _seconds(text: str) -> float:
    try:
        return positive_number("seconds", argument_decimal(text))
    except ValueError:  # ConfigurationError included
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds > 0, got {describe(text)}"
        ) from None


def _add_connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--api-key",
        default=default,
        metavar="KEY",
        help="the API key (default: $GPTUNNEL_API_KEY); never printed",
    )
    parser.add_argument(
        "--base-url",
        default=default,
        metavar="URL",
        help="the API root (default: $GPTUNNEL_BASE_URL, else https://gptunnel.ru/v1)",
    )


def _build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gptunnel-async``."""
    parser = _ArgumentParser(
        prog="gptunnel-async",
        description="Read and wait for GPTunnel tasks, or watch the SDK work offline (demo).",
        epilog="exit codes: 0 done, 1 task failed, 2 usage or configuration, "
        "3 timeout, 4 API or network error, 74 output failed, 130 interrupted, 141 output closed, "
        "143 terminated",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _add_connection_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, command: Command, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, allow_abbrev=False)
        sub.set_defaults(run=command)
        return sub

    family: dict[str, Any] = {
        "choices": FAMILIES,
        "default": "faceswap",
        "help": "the task's family (default: faceswap)",
    }
    result = add("result", _result, "read a task's state once")
    result.add_argument("task_id", metavar="TASK_ID", type=_task_id)
    result.add_argument("--family", **family)
    result.add_argument("--json", action="store_true", help="print the task object as JSON")
    _add_connection_options(result, argparse.SUPPRESS)

    wait = add("wait", _wait, "wait for a task, showing its progress")
    wait.add_argument("task_id", metavar="TASK_ID", type=_task_id)
    wait.add_argument("--family", **family)
    wait_options(wait, _seconds)
    _add_connection_options(wait, argparse.SUPPRESS)

    fleet = add("fleet", _fleet_status, "what a fleet of workers on Redis is doing")
    fleet.add_argument("action", choices=["status"], help="status: counts and the rate")
    fleet.add_argument(
        "--redis",
        metavar="URL",
        help=f"the fleet's Redis (default: ${REDIS_URL_VARIABLE}, else {DEFAULT_REDIS_URL}); "
        f"a URL with a password is better in ${REDIS_URL_VARIABLE}, out of the process list",
    )
    fleet.add_argument(
        "--name", default="default", help="the fleet's RedisStore name (default: %(default)s)"
    )
    fleet.add_argument("--budget", help="the RedisBudget's name (default: --name)")
    fleet.add_argument("--json", action="store_true", help="print one JSON object")

    add_family_commands(add, _seconds, lambda sub: _add_connection_options(sub, argparse.SUPPRESS))

    demo = add("demo", _demo, "swap two sample faces on a built-in emulator: no key, no network")
    demo.set_defaults(json=False)
    _add_emulator(add)
    return parser


# -- entry point --------------------------------------------------------------------


async def _run(args: argparse.Namespace, out: Output, termination: _Termination) -> int:
    command: Command = args.run
    try:
        with termination:
            return await command(args, out)
    except (GPTunnelError, ValueError) as exc:
        code = exit_code_for(exc)
        hint = _hint(exc, args)
        with contextlib.suppress(OSError):  # an output that fails keeps the command's code
            out.error(exc, code, hint)
        return code


class _Termination:
    """While entered, SIGTERM cancels the running command as Ctrl-C does, so that it
    ends with its last record (``cancelled`` in ``--json``) and exit code 143 rather
    than mid-write; a command that handles SIGTERM itself (the emulator) replaces it.
    ``received`` tells the cancellation apart from Ctrl-C's, also when both come."""

    def __init__(self) -> None:
        self.received = False

    def __enter__(self) -> None:
        command = asyncio.current_task()

        def on_sigterm() -> None:
            self.received = True
            if command is not None:
                command.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows' loops
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


def resume_hint(args: argparse.Namespace) -> str | None:
    """For a command that stopped waiting (its deadline, Ctrl-C, SIGTERM): the task goes
    on at GPTunnel, paid for, so the command that waits for it again (``None`` if the
    command was waiting for no task). The words are quoted for a POSIX shell; a
    ``--base-url`` or ``--save`` the output would show escaped, or that holds the API key
    (a key in the base URL's path), is left out and named after the command instead."""
    waiting_for: tuple[str, str] | None = getattr(args, "waiting_for", None)
    if waiting_for is None:
        return None
    task_id, family = waiting_for
    shown, withheld = _hint_options(args)
    family_words = [] if family == "faceswap" else ["--family", family]
    # the id after "--": an id such as "--help" or "-1" is no option
    base_url, save = shown
    words = ["gptunnel-async", "wait", base_url, *family_words, save, "--", task_id]
    words = [word for word in words if word]
    hint = f"the task goes on at GPTunnel; wait for it again with: {shlex.join(words)}"
    return f"{hint} (with your {' and '.join(withheld)})" if withheld else hint


def _hint_options(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The hint's ``--base-url`` and ``--save`` words, each ``""`` if not shown
    (``--base-url`` only if given as an option, never credentials: else the pasted
    command reads ``$GPTUNNEL_BASE_URL``, or GPTunnel's; each one word, even if it starts
    with "-"), and the options left out."""
    key = getattr(args, "api_key", None) or os.environ.get("GPTUNNEL_API_KEY")
    given = {
        "--base-url": getattr(args, "base_url", None),
        "--save": None if args.save is None else os.fspath(args.save),
    }
    shown = [f"{option}={value}" if _fit(value, key) else "" for option, value in given.items()]
    withheld = [option for option, value in given.items() if value and not _fit(value, key)]
    return shown, withheld


def _fit(value: str | None, key: str | None) -> bool:
    """Whether ``value`` is given and can be shown as it is: nothing the output escapes,
    no key."""
    if not value:
        return False
    return printable(value) == value and (not key or mask_for(key)(value) == value)


NO_CONNECTION: Final = (
    "base_url is --base-url here (default: $GPTUNNEL_BASE_URL); a server to try it "
    "against: gptunnel-async emulator"
)
"""The hint after an API request that could not connect at all, whose error already
says to check ``base_url`` (:data:`~gptunnel_async.errors.API_UNREACHED`): what that
is on the command line."""


NO_TLS: Final = (
    "check the scheme of --base-url (https:// against a server that speaks plain http "
    "fails so) and the server's certificate"
)


def _hint(exc: BaseException, args: argparse.Namespace) -> str | None:
    """What to try after ``exc``: an API host that could not be connected to at all
    (refused, a name that does not resolve) may be the wrong one, and one that TLS
    failed with may speak plain http; see also :func:`_family_hint`. A result
    download's host is the storage's, not ``--base-url``'s: its error gets no hint. A
    wait that timed out says how to wait again (:func:`resume_hint`), unless none of
    its reads got the task and the last one's failure has a hint of its own: with a
    wrong ``--base-url``, no task may be going on at all."""
    if isinstance(exc, WaitTimeoutError):
        # A wait none of whose reads reached the API: there may be no task going on.
        failed = exc.last_error if exc.task is None else None
        return (failed and _hint(failed, args)) or resume_hint(args)
    if isinstance(exc, TLSError):
        return NO_TLS
    if isinstance(exc, APIConnectionError) and API_UNREACHED in str(exc):
        return NO_CONNECTION
    return _family_hint(exc, args)


def _family_hint(exc: BaseException, args: argparse.Namespace) -> str | None:
    """A task the API does not know may be another family's (each family has its own
    endpoint, and an id of one is not found on another). Only for the API's own "not
    found" (a JSON error, media's code 4): a 404 without one is a path the API lacks,
    which the error's text already points at (``base_url``)."""
    family = getattr(args, "family", None)
    if not isinstance(exc, NotFoundError) or family is None:
        return None
    if exc.type is None or exc.type == "method_not_found":
        return None
    others = "|".join(name for name in FAMILIES if name != family)
    # The error's own text asks whether the task is another family's (with_family_hint).
    return f"for a task of another family, pass --family {others}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments; ``sys.argv[1:]`` by default.

    Returns:
        The exit code: 0 done, 1 task failed, 2 usage or configuration, 3 timeout,
        4 API or network error, 74 the output could not be written, 130 interrupted, 141
        the output was closed, 143 stopped by SIGTERM.
    """
    parser = _build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # a first try: show what there is
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        from ._cli_output import choose_output
    except ImportError as exc:
        if not (exc.name or "").startswith("rich"):
            raise
        print(
            "gptunnel-async: the command line needs rich; install it with: pip install 'rich>=13'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _prepare_streams()
    return _run_and_report(args, choose_output(as_json=args.json))


def _run_and_report(args: argparse.Namespace, out: Output) -> int:
    """Run the command; its exit code, also when its output cannot be written."""
    termination = _Termination()
    try:
        code = asyncio.run(_run(args, out, termination))
        sys.stdout.flush()  # here, where a failing output can still be told apart
        return code
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM (or both)
        code = EXIT_TERMINATED if termination.received else EXIT_INTERRUPTED
        waiting_for = getattr(args, "waiting_for", None)
        task_id = waiting_for[0] if waiting_for else getattr(args, "task_id", None)
        with contextlib.suppress(OSError):
            out.interrupted(task_id, code, resume_hint(args))
        return code
    except BrokenPipeError:
        _discard_output()
        return EXIT_OUTPUT_CLOSED
    except OSError as exc:  # the SDK's own I/O raises typed errors: this is the output's
        _discard_output()
        with contextlib.suppress(OSError):
            print(f"error: the output could not be written: {printable(str(exc))}", file=sys.stderr)
        return EXIT_OUTPUT_FAILED


def _prepare_streams() -> None:
    """stdout and stderr write a character their encoding lacks as ``\\udfff`` rather
    than fail (a server's text must not end a command; stderr does this already); one
    that was closed (``>&-``) writes to the null device."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
        elif isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _discard_output() -> None:
    """Point stdout at the null device: what is still buffered would fail again when
    Python exits (the recipe of the ``signal`` module's docs on SIGPIPE)."""
    with contextlib.suppress(OSError, ValueError):  # a stdout without a file descriptor
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
