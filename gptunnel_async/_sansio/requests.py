"""What to send: a request's method, URL, headers and body, built without I/O.

The API key goes into the headers of requests to ``base_url``'s origin and of no
other: a result URL on a storage host, or a redirect elsewhere, never carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs
from yarl import URL

from .._in_process import InProcessOnly

__all__ = [
    "ACCEPTED_ENCODINGS",
    "UNDOABLE_CODINGS",
    "Request",
    "RequestBuilder",
    "content_codings",
    "plain_transfer",
]

ACCEPTED_ENCODINGS: Final = "gzip, deflate"
"""The content codings asked for: those the transport undoes itself (it has aiohttp
leave every coding alone)."""

UNDOABLE_CODINGS: Final = frozenset({"gzip", "x-gzip", "deflate"})
"""The content codings the transport undoes itself, one at a time (``x-gzip`` is
``gzip``, RFC 9110 section 8.4.1.3)."""


def content_codings(values: Iterable[str]) -> tuple[str, ...]:
    """The content codings a body went through, in the order they were applied, from
    its ``Content-Encoding`` header lines ``values`` (several lines are one
    comma-separated list, RFC 9110 section 5.3): each lower-cased, ``identity`` and
    empty entries dropped. ``()`` means the body is as it was sent: no coding."""
    return tuple(
        coding
        for value in values
        for coding in (part.strip(" \t").lower() for part in value.split(","))
        if coding not in ("", "identity")
    )


def plain_transfer(values: Sequence[str]) -> bool:
    """Whether a body sent under the ``Transfer-Encoding`` header lines ``values`` is as
    it was sent once aiohttp has undone its framing, whichever of its two parsers reads
    it: no line; ``chunked`` alone, in any case and spacing, said once or more (a proxy
    that repeats the line: it is undone once), ending the first line (which aiohttp's
    Python parser reads alone) and the last (which its C parser reads); or ``identity``
    alone (the body runs to the connection's end). Any other value may leave the body
    coded (``gzip, chunked``: a coding the request's ``TE`` never asked for, which
    aiohttp does not undo) or its chunk framing in it (``chunked,`` or ``chunked,
    identity``, which aiohttp does not read as chunked; ``identity`` then ``chunked``
    on two lines, which one of its parsers does not)."""
    if not values:
        return True
    lines = [[item.strip(" \t").lower() for item in value.split(",")] for value in values]
    items = {item for line in lines for item in line} - {""}
    if items <= {"identity"}:
        return True
    return items == {"chunked"} and lines[0][-1] == lines[-1][-1] == "chunked"


@attrs.frozen(getstate_setstate=False)  # InProcessOnly's refusal, not attrs' state
class Request(InProcessOnly):
    """One HTTP request, ready to send.

    Attributes:
        method: ``"GET"`` or ``"POST"``.
        url: the absolute URL, query included.
        headers: the headers to send; the key among them only on the API's origin,
            and never in the ``repr``.
        json: the body, sent as JSON, or ``None`` for none.
        idempotent: sending it twice does no harm. ``False`` for a request that
            starts a paid task: it is sent again only when the server surely did
            nothing.
        on_api: ``url`` is on ``base_url``'s origin (the rate budget applies).
        streamed: the body may be large and is read in chunks (a download): only each
            read of the socket has a timeout, not the whole exchange.
    """

    method: str
    url: URL
    headers: Mapping[str, str] = attrs.field(repr=False)
    json: Any = attrs.field(default=None, repr=False)
    idempotent: bool = True
    on_api: bool = True
    streamed: bool = False

    @property
    def label(self) -> str:
        """What the request is, for logs and error texts: the method and the path (and
        the host, off the API), never the query."""
        where = self.url.path if self.on_api else f"{self.url.host}{self.url.path}"
        return f"{self.method} {where}"


class RequestBuilder(InProcessOnly):
    """Builds the requests of one client: API calls under ``base_url`` and fetches of
    other URLs, each with the headers its origin may see.

    Args:
        base_url: the API's root, without a trailing slash.
        api_key: sent as ``Authorization`` to ``base_url``'s origin only.
        user_agent: the ``User-Agent`` of every request.
    """

    def __init__(self, base_url: str, api_key: str, user_agent: str) -> None:
        self.base_url = base_url
        self.origin = URL(base_url).origin()
        self._api_headers: Final = {
            "Authorization": api_key,
            "Accept": "application/json",
            "Accept-Encoding": ACCEPTED_ENCODINGS,
            "User-Agent": user_agent,
        }
        self._anonymous_headers: Final = {
            "Accept-Encoding": ACCEPTED_ENCODINGS,
            "User-Agent": user_agent,
        }

    def __repr__(self) -> str:
        return f"<RequestBuilder {self.base_url}>"

    def api(
        self,
        method: str,
        path: str,
        *,
        query: tuple[tuple[str, str], ...] = (),
        json: Any = None,
        idempotent: bool = True,
    ) -> Request:
        """A request to ``path`` under ``base_url``.

        ``query`` holds the URL's query parameters, each name once; their values are
        encoded, never spliced into the URL.
        """
        url = URL(f"{self.base_url}/{path.lstrip('/')}")
        if query:
            url = url.with_query(dict(query))  # yarl is quicker with a dict
        return Request(method, url, self._api_headers, json, idempotent)

    def fetch(self, url: URL) -> Request:
        """A GET of any absolute URL (a result file, or a hop of its redirects), streamed,
        never with the key: a result URL comes from the server's answer, so the key there
        would let whoever wrote it choose an authenticated request and have its answer
        saved as "the result". Results on the API's own origin (Midjourney's
        ``/task/image/<id>``) are public links too; those count against the rate budget."""
        return Request(
            "GET",
            url,
            self._anonymous_headers,
            on_api=url.origin() == self.origin,
            streamed=True,
        )
