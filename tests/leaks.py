"""A guard that fails any test which leaves an aiohttp session or connector unclosed.

aiohttp reports an unclosed session or connector when the object is garbage-collected,
by two routes: a ``ResourceWarning`` (which ``filterwarnings = error`` turns into an
exception that ``__del__`` can only print), and the event loop's exception handler, which
asyncio logs. Neither fails a test on its own, and an object caught in a reference cycle is
collected later, during another test or never. So the guard watches both routes while a
test runs and collects garbage when it ends, whatever the warning filters say.
"""

from __future__ import annotations

import gc
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Final, Self

import pytest

__all__ = ["LeakWatch", "no_unclosed_aiohttp"]

MARKERS: Final = ("Unclosed client session", "Unclosed connector")


def _is_leak(text: str) -> bool:
    return text.startswith(MARKERS)


class _LeakLog(logging.Handler):
    """Hears asyncio's log of the loop exception handler's unclosed-resource reports."""

    def __init__(self, found: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        if _is_leak(record.getMessage()):
            self.found.append(record.getMessage())


class LeakWatch:
    """Collects the unclosed aiohttp sessions and connectors reported while it is active."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self._log = _LeakLog(self.found)
        self._previous_hook: Callable[[Any], Any] = sys.unraisablehook

    def __enter__(self) -> Self:
        logging.getLogger("asyncio").addHandler(self._log)
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.unraisablehook = self._previous_hook
        logging.getLogger("asyncio").removeHandler(self._log)

    def _unraisable(self, unraisable: Any) -> None:
        if _is_leak(str(unraisable.exc_value)):
            self.found.append(str(unraisable.exc_value))
        self._previous_hook(unraisable)

    def collect(self) -> list[str]:
        """Collect garbage now and return every leak reported so far, once each.

        What survives is then frozen out of later collections, which keeps a full
        collection after every test cheap: it only scans what the next test creates.
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        gc.freeze()
        self.found.extend(str(w.message) for w in caught if _is_leak(str(w.message)))
        return list(dict.fromkeys(self.found))


@pytest.fixture(autouse=True)
def no_unclosed_aiohttp() -> Iterator[None]:
    """Fail the test (at teardown) if it left an aiohttp session or connector unclosed."""
    with LeakWatch() as watch:
        yield
        leaks = watch.collect()
    if leaks:
        pytest.fail("unclosed aiohttp resources:\n" + "\n".join(leaks), pytrace=False)
