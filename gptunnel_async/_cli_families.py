"""The command line's family commands: reading and waiting for any family's task
(``--family``), the balance, and create-and-wait in one go for the documented create
calls (``faceswap``, ``imagine``, ``media``).

They report through the same outputs as ``result`` and ``wait`` (progress bar, plain
lines or ``--json`` lines) and end with the same exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._checks import describe
from ._cli_json import json_line
from ._client import GPTunnelClient
from ._download import DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_MAX_BYTES, files_to_save
from ._polling import PollPolicy
from ._sansio.numbers import argument_decimal
from ._sansio.responses import TASK_FAMILIES
from ._sentinel import NOT_GIVEN
from .families import TaskResource
from .models import MediaTask, Task

if TYPE_CHECKING:
    from ._cli_output import Output

__all__ = ["FAMILIES", "add_family_commands", "resource", "save_result", "wait_options"]

FAMILIES: Final = TASK_FAMILIES
"""The families ``--family`` names; ``faceswap`` is the default."""

Add = Callable[..., argparse.ArgumentParser]
"""The CLI's way to add a subcommand: ``add(name, command, help)``."""

Created = Callable[[GPTunnelClient, argparse.Namespace], Any]
"""A create call for the arguments, awaited for the new task."""


def resource(client: GPTunnelClient, family: str) -> TaskResource[Any]:
    """The client's namespace for ``family`` (one of :data:`FAMILIES`)."""
    found: TaskResource[Any] = getattr(client, family)
    return found


async def save_result(
    client: GPTunnelClient,
    task: Task | MediaTask,
    save: str | os.PathLike[str],
    saved: Callable[[Path], None],
) -> None:
    """Save a done task's result: its one file to ``save`` (a file or a folder). A task
    with several (music clips) goes into folder ``save`` under the URLs' names, or,
    when ``save`` names a file, to ``<stem>-<n><suffix>`` beside it: how many files a
    model gives is known only once it is done, and a paid result is never dropped for it.
    ``saved`` is told each path as soon as its file is written: when a later file
    fails, the ones before it are kept, and the output has said where."""
    files = files_to_save(task)  # at most MAX_RESULT_FILES, as download_results saves
    if len(files) == 1:
        saved(await client.download_result(task, save))
    elif _is_folder(save):
        every = client._results_saved(task, save, DEFAULT_MAX_BYTES, DEFAULT_DOWNLOAD_TIMEOUT)
        async with contextlib.aclosing(every) as paths:
            async for path in paths:
                saved(path)
    else:
        path = Path(save)
        for number in range(len(files)):
            name = path.with_name(f"{path.stem}-{number}{path.suffix}")
            saved(await client.download_result(task, name, clip=number))


def _is_folder(path: str | os.PathLike[str]) -> bool:
    return os.path.isdir(path)  # one stat of a local folder: not worth a thread


async def _balance(args: argparse.Namespace, out: Output) -> int:
    from .cli import EXIT_DONE, make_client

    async with make_client(args) as client:
        balance = await client.balance(use_wallet_balance=args.wallet)
    record = {
        "org_id": balance.org_id,
        "balance": balance.balance,
        "credit_limit": balance.credit_limit,
    }
    if args.json:
        print(json_line({"event": "balance", **record}), end="", flush=True)
    else:
        out.note(f"organisation  {balance.org_id}")
        out.note(f"balance       {balance.balance:.2f}")
        out.note(f"credit limit  {balance.credit_limit:.2f}")
    return EXIT_DONE


def _create_and_wait(family: str, created: Created) -> Callable[..., Any]:
    """A command that starts a task with ``created`` and waits for it like ``wait``."""

    async def command(args: argparse.Namespace, out: Output) -> int:
        from ._download import check_destination
        from .cli import make_client, timeout_of, wait_and_save

        if args.save is not None:
            check_destination(args.save, "--save")  # before the paid task, not after it
        async with make_client(args) as client:
            task = await created(client, args)
            args.waiting_for = (task.id, family)  # for the hint of a wait cut short
            out.created(family, task)
            return await wait_and_save(
                client, task.id, out, save=args.save, timeout=timeout_of(args), family=family
            )

    return command


def reading_every(text: str) -> PollPolicy:
    """``--max-interval S``: the default policy, with no pause between two reads longer
    than ``S`` seconds (and the first pause no longer either)."""
    defaults = PollPolicy()
    try:
        seconds = argument_decimal(text)
        if seconds is None:
            raise ValueError("not a decimal number")
        return PollPolicy(initial=min(defaults.initial, seconds), max_interval=seconds)
    except ValueError:  # ConfigurationError included
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds from 0.01 to 86400, got {describe(text)}"
        ) from None


NO_DEADLINE: Final = "none"
"""``--timeout none``: the wait has no deadline, as ``timeout=None`` in Python."""


def deadline(seconds: Callable[[str], float]) -> Callable[[str], float | None]:
    """``--timeout``'s type: ``seconds`` of a deadline, or ``None`` for
    :data:`NO_DEADLINE` (any case)."""

    def parse(text: str) -> float | None:
        if text.strip().lower() == NO_DEADLINE:
            return None
        try:
            return seconds(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (or {NO_DEADLINE}: no deadline)") from None

    return parse


def wait_options(parser: argparse.ArgumentParser, seconds: Callable[[str], float]) -> None:
    """The options of every command that waits: ``--timeout`` (left out: ``NOT_GIVEN``,
    the policy's deadline), ``--max-interval``, ``--save``, ``--json``."""
    parser.add_argument(
        "--timeout",
        type=deadline(seconds),
        default=NOT_GIVEN,
        metavar="S",
        help=f"give up after S seconds (default: 600; {NO_DEADLINE}: wait as long as the "
        "task runs)",
    )
    parser.add_argument(
        "--max-interval",
        dest="poll_policy",
        type=reading_every,
        metavar="S",
        help="read the task at least every S seconds (default: 10; shorter sees the end "
        "sooner and costs more requests)",
    )
    parser.add_argument(
        "--save",
        metavar="PATH",
        help="download the result to PATH (a file, or a folder: an existing one, or PATH/)",
    )
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")


def add_family_commands(
    add: Add,
    seconds: Callable[[str], float],
    connection_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``balance``, ``faceswap``, ``imagine`` and ``media`` to the CLI."""
    balance = add("balance", _balance, "show the organisation's balance and credit limit")
    balance.add_argument("--wallet", action="store_true", help="read the personal wallet")
    balance.add_argument("--json", action="store_true", help="print one JSON object")
    connection_options(balance)

    swap = add(
        "faceswap",
        _create_and_wait(
            "faceswap", lambda client, args: client.faceswap.create(args.source, args.face)
        ),
        "swap a face and wait for the result (images: URLs or files)",
    )
    swap.add_argument("source", metavar="SOURCE", help="the person: a URL or an image file")
    swap.add_argument("face", metavar="FACE", help="the face to put on them")
    wait_options(swap, seconds)
    connection_options(swap)

    imagine = add(
        "imagine",
        _create_and_wait("midjourney", lambda client, args: client.midjourney.imagine(args.prompt)),
        "draw a Midjourney grid from a prompt and wait for it",
    )
    imagine.add_argument("prompt", metavar="PROMPT")
    wait_options(imagine, seconds)
    connection_options(imagine)

    media = add(
        "media",
        _create_and_wait(
            "media",
            lambda client, args: client.media.create(
                args.model, args.prompt, images=args.image or None, ar=args.ar
            ),
        ),
        "generate with a media model (images, video, music) and wait for it",
    )
    media.add_argument("model", metavar="MODEL", help="the model's id, e.g. suno or flux-pro")
    media.add_argument("prompt", metavar="PROMPT")
    media.add_argument(
        "--image",
        action="append",
        metavar="URL",
        help="a reference image's public link (repeat for several)",
    )
    media.add_argument("--ar", metavar="RATIO", help="the aspect ratio, e.g. 16:9")
    wait_options(media, seconds)
    connection_options(media)
