"""A plain ``with`` on one of the SDK's async context managers says to write ``async
with``: Python's own ``TypeError`` before 3.14 ("object does not support the context
manager protocol") does not, and it is not a ``GPTunnelError``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import UsageError

__all__ = ["AsyncWithOnly"]


class AsyncWithOnly:
    """A base for classes entered with ``async with`` only. ``with`` on one raises
    :class:`UsageError`, before anything is opened, so the object stays usable.

    Type checkers do not see the refusal: ``mypy`` still reports the ``with``
    (``"__enter__" missing``) before the code runs."""

    __slots__ = ()

    if not TYPE_CHECKING:

        def __enter__(self) -> Any:
            name = type(self).__name__
            raise UsageError(
                f"{name} is an async context manager: use `async with`, not `with` "
                "(inside an `async def`)"
            )

        def __exit__(self, *exc_info: object) -> None:
            """Never runs (``__enter__`` raised); ``with`` looks it up before calling
            ``__enter__``, so without it Python's ``TypeError`` would come instead."""
