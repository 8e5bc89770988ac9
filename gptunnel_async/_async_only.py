"""A plain ``with`` on one of the SDK's async context managers says to write ``async
with``: Python's own ``TypeError`` before 3.14 ("object does not support the context
manager protocol") does not, and it is not a ``GPTunnelError``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import UsageError

__all__ = ["AsyncWithOnly"]


class AsyncWithOnly:
    """A base for classes entered with ``async with`` only. ``with`` on one raises
    :class:`UsageError`, before anything is opened, so the object stays usable; so does
    its ``__exit__`` called by an ``ExitStack`` it was pushed on. Having both methods,
    its instances are ``contextlib.AbstractContextManager`` ones too.

    Type checkers do not see the refusal: ``mypy`` still reports the ``with``
    (``"__enter__" missing``) before the code runs."""

    __slots__ = ()

    if not TYPE_CHECKING:

        def __enter__(self) -> Any:
            raise UsageError(
                f"{type(self).__name__} is an async context manager: use `async with`, "
                "not `with` (inside an `async def`)"
            )

        def __exit__(self, *exc_info: object) -> None:
            """Refuses too. ``with`` never calls it (``__enter__`` raised first), but
            looks it up, so without it Python's ``TypeError`` would come instead; and
            ``ExitStack.push(client)`` registers it as the exit to call, so a
            ``__exit__`` that did nothing would leave the object open without a word."""
            raise UsageError(
                f"{type(self).__name__} is an async context manager and was not closed: "
                "give it to an AsyncExitStack's push_async_exit or enter_async_context, "
                "not to push or enter_context"
            )
