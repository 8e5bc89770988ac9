"""The ``gptunnel-async`` command line: read a task, wait for one, or run the offline demo.

Exit codes: 0 done, 1 the task failed, 2 usage or configuration, 3 the wait timed
out, 4 an API or network error (130 when interrupted). The API key comes from
``--api-key`` or ``GPTUNNEL_API_KEY`` and is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from ._checks import describe, positive_number
from ._client import GPTunnelClient
from ._polling import PollPolicy
from ._sansio.text import mask_for
from ._sentinel import NOT_GIVEN, NotGiven
from ._version import version
from .errors import GPTunnelError, TaskFailedError, WaitTimeoutError

if TYPE_CHECKING:
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


def _client(args: argparse.Namespace) -> GPTunnelClient:
    return GPTunnelClient(api_key=args.api_key, base_url=args.base_url)


async def _result(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as client:
        task = await client.get_result(args.task_id)
    out.task(task)
    return EXIT_TASK_FAILED if task.is_failed else EXIT_DONE


async def _wait(args: argparse.Namespace, out: Output) -> int:
    timeout = NOT_GIVEN if args.timeout is None else args.timeout
    async with _client(args) as client:
        return await _wait_and_save(client, args.task_id, out, save=args.save, timeout=timeout)


async def _wait_and_save(
    client: GPTunnelClient,
    task_id: str,
    out: Output,
    *,
    save: Path | None,
    timeout: float | NotGiven | None = NOT_GIVEN,
) -> int:
    waiter = client.wait_for_result(task_id, timeout=timeout)
    with out.progress(task_id) as show:
        async for event in waiter:
            show(event)
    task = event.task  # a wait that ends without raising ends with its done event
    out.done(task)
    if save is not None:
        out.saved(await client.download_result(task, save))
    return EXIT_DONE


async def _demo(args: argparse.Namespace, out: Output) -> int:
    from .testing import FakeGPTunnel, sample_image

    async with FakeGPTunnel() as fake:
        fake.script_created(duration=DEMO_SECONDS)
        out.note(f"Started an emulated GPTunnel at {fake.base_url}: no key, no network.")
        async with fake.client(poll_policy=DEMO_POLICY) as client:
            task = await client.faceswap.create(
                sample_image("source.png"), sample_image("face.png")
            )
            out.note(f"Created face swap {task.id} from the two sample images.")
            return await _wait_and_save(
                client, task.id, out, save=Path.cwd().resolve() / DEMO_RESULT
            )


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
    """The words ``arg`` (and the word ``following`` it) make secret."""
    name, has_value, value = arg.partition("=")
    if name.startswith("-") and (name not in known or name == "--api-key"):
        return [value] if has_value else list(following)
    return [arg] if arg not in known and len(arg) >= LONG_WORD else []


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

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        given = sys.argv[1:] if args is None else args
        self._secrets = _secrets_in(given, _known_words(self))
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        for secret in self._secrets:
            message = mask_for(secret)(message)
        super().error(message)


def _seconds(text: str) -> float:
    try:
        return positive_number("seconds", float(text))
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
        "3 timeout, 4 API or network error",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _add_connection_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, command: Command, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, allow_abbrev=False)
        sub.set_defaults(run=command)
        return sub

    result = add("result", _result, "read a face-swap task's state once")
    result.add_argument("task_id", metavar="TASK_ID")
    result.add_argument("--json", action="store_true", help="print the task object as JSON")
    _add_connection_options(result, argparse.SUPPRESS)

    wait = add("wait", _wait, "wait for a face-swap task, showing its progress")
    wait.add_argument("task_id", metavar="TASK_ID")
    wait.add_argument(
        "--timeout", type=_seconds, metavar="S", help="give up after S seconds (default: 600)"
    )
    wait.add_argument(
        "--save", type=Path, metavar="PATH", help="download the result to PATH (file or folder)"
    )
    wait.add_argument("--json", action="store_true", help="print events as JSON lines")
    _add_connection_options(wait, argparse.SUPPRESS)

    demo = add("demo", _demo, "swap two sample faces on a built-in emulator: no key, no network")
    demo.set_defaults(json=False)
    return parser


# -- entry point --------------------------------------------------------------------


async def _run(args: argparse.Namespace, out: Output) -> int:
    command: Command = args.run
    try:
        return await command(args, out)
    except (GPTunnelError, ValueError) as exc:
        code = exit_code_for(exc)
        out.error(exc, code)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments; ``sys.argv[1:]`` by default.

    Returns:
        The exit code: 0 done, 1 task failed, 2 usage or configuration, 3 timeout,
        4 API or network error, 130 interrupted.
    """
    args = _build_parser().parse_args(argv)
    try:
        from ._cli_output import choose_output
    except ImportError as exc:
        if not (exc.name or "").startswith("rich"):
            raise
        print(
            "gptunnel-async: the command line needs rich; "
            "install it with: pip install 'gptunnel-async[cli]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args, choose_output(as_json=args.json)))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
