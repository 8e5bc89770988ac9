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
    """A base that makes ``pickle.dumps``, ``copy.copy``, ``copy.deepcopy`` (and any
    serializer that asks for ``__reduce_ex__`` or ``__getstate__``) raise
    :class:`UsageError`; ``_instead`` says what to do instead. A serializer that walks
    ``vars()`` by itself is not stopped: do not hand it these objects."""

    __slots__ = ()
    _instead: ClassVar[str] = NEW_CLIENT
    _holds: ClassVar[str] = "the API key"

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise self._refusal()

    def __getstate__(self) -> NoReturn:  # for serializers that ask for it directly
        raise self._refusal()

    def _refusal(self) -> Exception:
        from .errors import UsageError  # not at the top: errors -> _sansio.text -> here

        return UsageError(
            f"{type(self).__name__} objects hold {self._holds} and cannot be pickled or copied: "
            f"{self._instead}"
        )
