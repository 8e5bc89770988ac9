"""Server text fit for exception messages, log lines and reprs: the key masked, the length
bounded.

A server may echo the API key back in any field, and not always as it was sent. A
:class:`SecretMask` finds the key in these *harmless variations* of its text, and only
these:

- any case (``KEY``, ``key``, ``Key``);
- percent-encoding of any of its characters (``%41`` or ``%4a``), and ``+`` for a space
  (so a space and a ``+`` are not told apart);
- JSON and JavaScript escapes (``\\u0041``, ``\\x41``, ``\\/``, ``\\"``, ``\\\\``);
- HTML character references, as browsers read them: numeric with or without the
  ``;`` and with any number of leading zeros (``&#65;``, ``&#x41``, ``&#00065;``), and
  every named reference to an ASCII character (``&amp;``, ``&lowbar;``, ``&period;``);
- what a reader takes for its characters: compatibility forms (full-width letters and
  digits, mathematical bold, ligatures read as their letters), accented forms
  (combining and enclosing marks are ignored), and invisible characters anywhere inside
  it (format characters: zero-width spaces and joiners, soft hyphens, the BOM, tags;
  fillers drawn as nothing);
- any surrounding text at all (whitespace, quotes, ``Bearer``), since it is found
  wherever it stands;
- any part of it, once it is :data:`MIN_RUN` characters long: a prefix left by a server
  that truncates, a suffix, a middle. A key shorter than that (a test key, never one of
  GPTunnel's) is masked where it stands as a word of its own, not inside other words.

A key that itself holds what reads as an encoded character (``%41``, ``\\/``,
``&amp;``) is looked for both as it is and decoded, since its echo as is reads decoded.

Any mix of these is found too (``%2Fabc\\u0044ef`` in ANY case; a full-width letter
percent-encoded as its UTF-8 bytes, or JSON-escaped as a surrogate pair; ``&shy;``
between two characters). Encodings applied twice over, base64 and other transforms are
not harmless variations: they are not looked for; nor are letters of other scripts
that look alike (a Cyrillic ``a``, U+0430, for a Latin one), HTML's names for look-alike letters
(``&Aopf;``), or a key cut into pieces shorter than :data:`MIN_RUN`.
Each found run is replaced by ``***``.
"""

from __future__ import annotations

import functools
import html
import html.entities
import re
import unicodedata
from collections.abc import Callable
from typing import Final

from .._in_process import InProcessOnly

__all__ = [
    "MASK",
    "MIN_RUN",
    "SecretMask",
    "body_text",
    "clip",
    "excerpt",
    "mask_for",
    "printable",
    "shorten",
]

MASK: Final = "***"
"""What a found key (or piece of it) is replaced with."""

MIN_RUN: Final = 8
"""The shortest piece of the key that is masked on its own: 8 characters of a random key
say next to nothing about the rest, while shorter runs would mask ordinary words."""

SHORT_TEXT: Final = 200
"""The default bound of one server text in a message or a log line, in characters."""

_PRECISE: Final = 64 * 1024
"""Texts are masked character by character up to this length; beyond it, the rest of a
text that holds a piece of the key is masked as a whole."""

_BLANKS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Letters and symbols drawn as nothing (the Hangul fillers, the blank braille pattern),
which make "invisible" names: read as nothing too, like :data:`_INVISIBLE`'s."""

_INVISIBLE: Final = frozenset({"Mn", "Me", "Cf", "Cn"})
"""Unicode categories read as nothing: combining marks (the accent of ``ś`` once it is
decomposed, an enclosing circle), format characters (zero-width spaces and joiners, the
soft hyphen), and code points this Python's Unicode tables do not assign yet: a later
version may make them combining marks or format characters (Unicode 15.0 made 42 of
them so, U+1E08F among them, which Python 3.11's Unicode 14.0 leaves unassigned), and a
key with one after each character was masked on Python 3.13 and shown on 3.11. Read
as nothing on every version, they mask alike everywhere."""


def _compared(char: str) -> str:
    """One character as it is compared: its compatibility form without combining marks
    (a full-width ``s``, U+FF53, and ``ś`` read as ``s``; a ligature as its letters),
    lower case, and a space as ``+`` (which is what form encoding makes of it); ``""``
    for an invisible one (see :data:`_INVISIBLE` and :data:`_BLANKS`)."""
    if not char.isascii():
        char = "".join(
            c
            for c in unicodedata.normalize("NFKD", char)
            if unicodedata.category(c) not in _INVISIBLE and c not in _BLANKS
        )
    return char.lower().replace(" ", "+")


_ENTITIES: Final = sorted(
    (
        name
        for name, text in html.entities.html5.items()
        if len(text) == 1 and (text.isascii() or not _compared(text))
    ),
    key=len,
    reverse=True,
)
"""HTML's named references to an ASCII character or to one read as nothing (``lowbar;``,
``amp``, ``shy;``, ``ZeroWidthSpace;``), the longest first so that the regular
expression takes ``&amp;`` whole rather than ``&amp``. The references to look-alike
letters (``&Aopf;``, ``&fflig;``: some 500 names) are left out: tried at every ``&``
of every answer, they doubled the quick look's cost for a disguise nobody meets."""

_ESCAPE: Final = re.compile(
    r"%[cCdD][0-9a-fA-F]%[89abAB][0-9a-fA-F]"  # a character's UTF-8 bytes, percent-encoded
    r"|%[eE][0-9a-fA-F](?:%[89abAB][0-9a-fA-F]){2}"
    r"|%[fF][0-4](?:%[89abAB][0-9a-fA-F]){3}"
    r"|%[0-9A-Fa-f]{2}"
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # a surrogate pair
    r"|\\u[0-9A-Fa-f]{4}"
    r"|\\x[0-9A-Fa-f]{2}"
    r"|\\[/\"\\]"
    r"|&#[0-9]{1,32};?"
    r"|&#[xX][0-9A-Fa-f]{1,32};?"
    r"|&(?:" + "|".join(map(re.escape, _ENTITIES)) + ")"
)
"""One encoded character, in any of the harmless variations."""

_TOKEN: Final = re.compile(_ESCAPE.pattern + r"|.", re.DOTALL)
"""One character of text, encoded or not."""


def _decoded(token: str) -> str:
    """The character an encoded token stands for (the token itself if it is one)."""
    if len(token) == 1:
        return token
    if token[0] == "%":
        raw = bytes.fromhex(token.replace("%", ""))
        return raw.decode("utf-8", "replace") if len(raw) > 1 else chr(raw[0])
    if token[0] == "\\":
        if token[1] not in "ux":
            return token[1]
        units = [int(token[at : at + 4], 16) for at in range(2, len(token), 6)]
        if len(units) == 2:  # a surrogate pair: the one character beyond U+FFFF it spells
            return chr(0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00))
        return chr(units[0])
    return html.unescape(token)  # numeric (any code point) or named


def _decoded_text(text: str) -> str:
    """``text`` with every encoded character decoded. Every encoding :data:`_ESCAPE`
    matches starts with ``%``, ``\\`` or ``&``: a text without them holds none."""
    if "%" in text or "\\" in text or "&" in text:  # no any(): part of 1.3 % of a read
        return _ESCAPE.sub(lambda match: _decoded(match.group()), text)
    return text


def _canonical(text: str) -> str:
    """``text`` with every encoded character decoded, in compatibility form, without
    any character outside ASCII, lower case and a space as ``+``, then, if it holds an
    encoded character, the same of ``text`` as it is, after a NUL: where the quick look
    searches. It holds every run of ASCII characters that :func:`_compared` reads in
    ``text`` (the key is ASCII), decoded or as it is (what reads as an encoded
    character may be the key's first characters: ``%ab`` before a key ``abc...``,
    ``&#x`` before a hex key), and more: its length may differ from ``text``'s."""
    decoded = _decoded_text(text)
    if decoded is text:  # nothing encoded (re.sub gives the text itself back)
        return _folded(text)
    return f"{_folded(decoded)}\0{_folded(text)}"


def _folded(decoded: str) -> str:
    """``decoded`` in compatibility form, without any character outside ASCII, lower
    case and a space as ``+``."""
    if not decoded.isascii():  # rare in an answer: the usual one costs this test only
        folded = unicodedata.normalize("NFKD", decoded).encode("ascii", "ignore")
        decoded = folded.decode("ascii")
    return decoded.lower().replace(" ", "+")


class SecretMask(InProcessOnly):
    """Finds a secret in text, in every harmless variation (see the module's docstring),
    and masks it.

    Args:
        secret: the text to hide, such as the API key.
    """

    __slots__ = ("_forms", "_probes")
    _holds = "a secret"
    _instead = "make one from the secret where it is needed (mask_for)"

    def __init__(self, secret: str) -> None:
        # The key as sent, and the key as it reads once its own ``%41``, ``\\/`` or
        # ``&amp;``-looking parts are decoded: an echo of it as is decodes to the second.
        forms = {"".join(map(_compared, secret)), "".join(map(_compared, _decoded_text(secret)))}
        short = len(secret) < MIN_RUN  # a test key: masked as a word only (see _Form.mark)
        self._forms = tuple(_Form(key, whole_words=short) for key in sorted(forms) if key)
        self._probes = tuple({probe for form in self._forms for probe in form.probes})

    def __repr__(self) -> str:
        return "SecretMask(***)"

    def might_hold(self, text: str | bytes) -> bool:
        """A quick first look: ``False`` means ``text`` surely holds no piece of the secret.

        Args:
            text: the text to look at; bytes are read as :func:`body_text` reads them.

        Returns:
            Whether :meth:`__call__` may change ``text``.
        """
        if isinstance(text, bytes):
            text = body_text(text)
        canonical = _canonical(text)
        for probe in self._probes:  # noqa: SIM110  (no any(): part of 1.3 % of a read)
            if probe in canonical:
                return True
        return False

    def shows(self, text: str) -> bool:
        """Whether ``text`` shows the secret, in any variation :meth:`__call__` masks."""
        return self(text) != text

    def __call__(self, text: str) -> str:
        """``text`` with every run of the secret, in any harmless variation, as ``***``."""
        if not self._forms or not self.might_hold(text):
            return text
        if len(text) > _PRECISE:  # character by character costs too much beyond this
            head, rest = text[:_PRECISE], text[_PRECISE:]
            return self(head) + (MASK if self.might_hold(rest) else rest)
        return self._masked_precisely(text)

    def _masked_precisely(self, text: str) -> str:
        """``text`` masked character by character: each token of it decoded, compared,
        and, where it holds encoded characters, each character as it is too (what reads
        as one, ``%ab``, may be the first characters of the key ``abc...``)."""
        tokens = [match.group() for match in _TOKEN.finditer(text)]
        hidden = self._hidden(tokens)
        if len(tokens) < len(text):  # some encoded: also as it is, character by character
            by_character = [flag for token, flag in zip(tokens, hidden, strict=True) for _ in token]
            as_is = self._hidden(list(text))
            tokens = list(text)
            hidden = [a or b for a, b in zip(by_character, as_is, strict=True)]
        if not any(hidden):
            return text
        return "".join(_runs_masked(tokens, hidden))

    def _hidden(self, tokens: list[str]) -> list[bool]:
        """Which of ``tokens`` (decoded, compared) a run of the secret covers."""
        compared = [_compared(_decoded(token)) for token in tokens]
        plain = "".join(compared)  # what each token reads as: none, one or a few characters
        hidden = [False] * len(plain)
        for form in self._forms:
            form.mark(plain, hidden)
        return _hidden_tokens(compared, hidden)


class _Form:
    """One form of the secret (compared as :func:`_compared` says): its runs, and the
    pieces the quick first look searches for."""

    __slots__ = ("probes", "run", "runs", "whole_words")

    def __init__(self, key: str, *, whole_words: bool) -> None:
        self.whole_words = whole_words
        self.run = min(MIN_RUN, len(key))
        self.runs = frozenset(
            key[start : start + self.run] for start in range(len(key) - self.run + 1)
        )
        # Any run of ``run`` characters of the key holds one of these ``size``-long
        # pieces, taken every ``run - size + 1`` characters: a quick, sound first look
        # (fewer pieces to look for on every read than one every ``size`` characters).
        size = max(1, (self.run + 1) // 2)
        step = self.run - size + 1
        probes = [key[start : start + size] for start in range(0, len(key) - size + 1, step)]
        if (len(key) - size) % step:  # the last piece, so the key's end is covered
            probes.append(key[-size:])
        self.probes = tuple(probes)

    def mark(self, plain: str, hidden: list[bool]) -> None:
        """Set ``hidden`` over every run of this form in ``plain`` (decoded, compared).

        A secret shorter than :data:`MIN_RUN` is hidden only where it stands as a word
        of its own: hidden inside words, a test key such as ``"e"`` or ``"demo"`` would
        rewrite every status and id (``don***``)."""
        size = self.run
        for start in range(len(plain) - size + 1):
            if plain[start : start + size] not in self.runs:
                continue
            if self.whole_words and not _stands_alone(plain, start, start + size):
                continue
            hidden[start : start + size] = [True] * size


def _stands_alone(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` has no letter or digit right before or after it."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or after.isalnum())


def _hidden_tokens(compared: list[str], hidden: list[bool]) -> list[bool]:
    """Which tokens are hidden, from ``hidden`` over the characters they read as
    (``compared``, a token's own, in order): a token with a hidden character, and the
    invisible tokens next to it (its combining marks, zero-width spaces between the
    key's characters), so that a run is masked whole."""
    owners = [index for index, chars in enumerate(compared) for _ in chars]
    tokens = [False] * len(compared)
    for position, secret in enumerate(hidden):
        if secret:
            tokens[owners[position]] = True
    _spread_over_invisible(tokens, compared, range(len(compared)))
    _spread_over_invisible(tokens, compared, range(len(compared) - 1, -1, -1))
    return tokens


def _spread_over_invisible(tokens: list[bool], compared: list[str], order: range) -> None:
    """Hide each invisible token (one that reads as nothing) that follows, in ``order``,
    a hidden visible one with only invisible ones between."""
    after_hidden = False
    for index in order:
        if compared[index]:
            after_hidden = tokens[index]
        elif after_hidden:
            tokens[index] = True


def _runs_masked(tokens: list[str], hidden: list[bool]) -> list[str]:
    """``tokens`` with each run of hidden ones replaced by one :data:`MASK`."""
    shown: list[str] = []
    for token, secret in zip(tokens, hidden, strict=True):
        if not secret:
            shown.append(token)
        elif not shown or shown[-1] is not MASK:
            shown.append(MASK)
    return shown


def body_text(data: bytes) -> str:
    """``data`` (a body the server sent) as text to look for the key in and to show:
    its bytes without NULs, read as UTF-8.

    JSON in UTF-16 or UTF-32 (which ``json.loads`` also reads) has NUL bytes beside
    each ASCII character, so a key it echoes would hide from a mask between them; UTF-8
    JSON has none (control characters are escaped). Without its NULs, every run of
    ASCII characters in any of them, the key's, reads whole. Reading a body with a NUL
    in its encoding as JSON sniffs it would not do: a body that is no JSON and starts
    with a NUL byte would read as UTF-16, its key turned into other characters, which
    re-encoded give it back. Other characters of UTF-16 and UTF-32 text read garbled,
    which only such rare bodies' error texts show."""
    return data.replace(b"\0", b"").decode("utf-8", "replace")


@functools.lru_cache(maxsize=16)
def mask_for(secret: str) -> SecretMask:
    """The :class:`SecretMask` of ``secret``, built once: a client masks with the same key."""
    return SecretMask(secret)


_FORMAT_CHARACTERS: Final = (
    # Unicode's "Cf" (format) characters: invisible, yet they reorder text (bidirectional
    # marks and overrides), hide inside a word (zero-width spaces and joiners, the soft
    # hyphen, the BOM) or carry text no reader sees (the tag block). Listed rather than
    # derived from unicodedata at import, which would read all 1.1 million code points;
    # a test checks the list against the running Python's unicodedata.
    0x00AD,
    *range(0x0600, 0x0606),
    0x061C,
    0x06DD,
    0x070F,
    *range(0x0890, 0x0892),
    0x08E2,
    0x180E,
    *range(0x200B, 0x2010),
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2065),
    *range(0x2066, 0x2070),
    0xFEFF,
    *range(0xFFF9, 0xFFFC),
    0x110BD,
    0x110CD,
    *range(0x13430, 0x13440),
    *range(0x1BCA0, 0x1BCA4),
    *range(0x1D173, 0x1D17B),
    0xE0001,
    *range(0xE0020, 0xE0080),
)


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_UNPRINTABLE: Final = {
    code: _escape(code)
    for code in (
        *range(0x20),  # C0 controls: ESC starts terminal escapes (colours, titles, links)
        0x7F,
        *range(0x80, 0xA0),  # C1 controls: CSI and OSC in one character
        *_FORMAT_CHARACTERS,
        *range(0xFE00, 0xFE10),  # variation selectors: invisible, they can spell hidden text
        *range(0xE0100, 0xE01F0),
        *map(ord, _BLANKS),  # letters drawn as nothing
        0x2028,  # line and paragraph separators, where str.splitlines() and log readers
        0x2029,  # start a new line
        *range(0xD800, 0xE000),  # lone surrogates (a JSON "\\udfff"): no encoding can write one
    )
}
"""Characters shown escaped (``\\x1b``) rather than sent to a terminal or a log."""


def printable(text: str) -> str:
    """``text`` with control characters, invisible characters (bidirectional overrides,
    zero-width spaces, tags, variation selectors, fillers) and lone surrogates escaped (``\\x1b``,
    ``\\u200b``, ``\\udfff``), so server text can neither drive a terminal, forge a log
    line, hide text from its reader, nor fail to be written out."""
    return text.translate(_UNPRINTABLE)


def shorten(text: str, limit: int = SHORT_TEXT) -> str:
    """``text`` on one line, printable (see :func:`printable`) and at most ``limit``
    characters, with ``…`` where it was cut."""
    if len(text) > 4 * limit:  # flattening megabytes to keep a few hundred characters
        text = text[: 4 * limit]
        flat = printable(" ".join(text.split()))
        return flat[: limit - 1] + "…"
    flat = printable(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def clip(text: object, limit: int = SHORT_TEXT) -> str:
    """``str(text)`` bounded to ``limit`` characters, for a value in a message; an object
    whose ``str()`` fails shows as ``<unprintable Type>`` (as ``traceback`` shows one), so
    that a log line or a message about it never raises."""
    try:
        shown = text if isinstance(text, str) else str(text)
    except Exception:  # any failure of a foreign __str__
        shown = f"<unprintable {type(text).__qualname__}>"
    return shorten(shown, limit)


def excerpt(
    text: str | bytes,
    secret: str | None,
    limit: int = SHORT_TEXT,
    *,
    masked: Callable[[str], str] | None = None,
) -> str:
    """Server text fit for a message or a log line: the key masked, then shortened.

    Only the start of a long text is masked (enough to fill ``limit`` even if every
    character of it were encoded), then it is cut: a key cut through at the end leaves
    fewer than :data:`MIN_RUN` of its characters, which is what masking promises.
    """
    if isinstance(text, bytes):
        text = body_text(text[: 16 * limit + 1024])
    head = text[: 16 * limit + 1024]
    mask = masked or (mask_for(secret) if secret else None)
    return shorten(mask(head) if mask else head, limit)
