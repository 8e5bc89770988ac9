"""``NOT_GIVEN``: marks an argument left out where ``None`` is a real value."""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["NOT_GIVEN", "NotGiven"]


class NotGiven(enum.Enum):
    """The type of [NOT_GIVEN][gptunnel_async.NOT_GIVEN]: an argument left out, where
    ``None`` means something (``timeout=None`` is "no deadline").

    Write ``timeout: float | None | NotGiven = NOT_GIVEN``: with one member, type
    checkers narrow ``timeout is NOT_GIVEN`` exactly. It is falsy, and keeps its
    identity through ``copy`` and ``pickle``.
    """

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN
"""The default of arguments whose absence means "use what is configured elsewhere",
e.g. ``wait_for_result(timeout=NOT_GIVEN)``: the policy's own deadline."""
