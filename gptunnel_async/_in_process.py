"""Objects that hold the API key, or a webhook's secret token, stay in their process.

``pickle`` would write the key into its bytes (a task queue's broker, a process pool's
pipe, a cache), and ``copy`` goes through the same protocol; so a client, what it makes
(a family, a wait) and what holds a secret refuse both, with a ``UsageError`` that says
what to hand over instead. Models, events, policies and errors hold no key and pickle.
"""

from __future__ import annotations

from typing import ClassVar, Final, NoReturn, SupportsIndex

__all__ = ["InProcessOnly"]

NEW_CLIENT: Final = (
    "make a GPTunnelClient in the other process (its key from that process's "
    "environment) and hand over task ids"
)


class InProcessOnly:
    """A base that makes ``pickle.dumps``, ``copy.copy`` and ``copy.deepcopy`` raise
    :class:`UsageError`; ``_instead`` says what to do instead."""

    __slots__ = ()
    _instead: ClassVar[str] = NEW_CLIENT
    _holds: ClassVar[str] = "the API key"

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        from .errors import UsageError  # not at the top: errors -> _sansio.text -> here

        raise UsageError(
            f"{type(self).__name__} objects hold {self._holds} and cannot be pickled or copied: "
            f"{self._instead}"
        )
