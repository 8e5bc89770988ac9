"""Whether a result download's ``200`` answer is a document rather than a media file:
pure rules, no I/O.

A storage host or a proxy in front of it may answer ``200 OK`` with an error page (an
expired or refused link, a login page, a CDN's "access denied") instead of the file:
HTML, a JSON error object, S3's or Azure's ``<?xml ...><Error><Code>AccessDenied``.
Saved as the result (``result.png``), it is a broken picture with no error to tell
why. Every file GPTunnel's models make is an image, audio or video, so such an answer
is refused when the download promises one (see :func:`refused_type` and
:func:`refused_start`).

An empty body is no media file either (a host that answers 200 and then nothing). No
image, audio or video format starts with ``<``, ``{`` or blank space: PNG with ``\\x89PNG``,
JPEG ``\\xff\\xd8``, GIF ``GIF8``, WebP, WAV and AVI ``RIFF``, MP4, MOV, M4A, HEIC and
AVIF a box length then ``ftyp``, MP3 ``ID3`` or a frame sync ``\\xff``, Ogg ``OggS``,
FLAC ``fLaC``, WebM and MKV ``\\x1a\\x45\\xdf\\xa3``, BMP ``BM``, TIFF ``II*`` or
``MM``. Those starts (:func:`media_start`) are the file whatever ``Content-Type`` a host labels them
with. SVG is markup, so an answer that says it is ``image/svg+xml`` is not sniffed.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

__all__ = [
    "EMPTY",
    "SNIFF_BYTES",
    "declares_media",
    "document_kind",
    "media_start",
    "media_type_of",
    "refused_start",
    "refused_type",
    "sniffed_kind",
]

SNIFF_BYTES: Final = 512
"""The bytes of a body read before it is judged: room for leading whitespace and a
byte-order mark before the first ``<`` or ``{``."""

HTML: Final = "an HTML page"
JSON: Final = "a JSON document"
XML: Final = "an XML document"
MARKUP: Final = "markup (HTML or XML)"
TEXT: Final = "text"
EMPTY: Final = "empty (no bytes, or blank space only)"
_DOCUMENTS: Final = frozenset({HTML, JSON, XML, MARKUP})

_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
_JSON_TYPES: Final = frozenset({"application/json", "text/json"})
_XML_TYPES: Final = frozenset({"application/xml", "text/xml"})
_MEDIA_TOP_TYPES: Final = frozenset({"image", "audio", "video"})
_SVG: Final = "image/svg+xml"

_LEADING: Final = b" \t\r\n\f"
_BOM: Final = b"\xef\xbb\xbf"
_HTML_START: Final = re.compile(rb"<(?:!doctype\s+html|html|head|body)[\s>/]", re.IGNORECASE)
_XML_START: Final = re.compile(rb"<\?xml[\s?]", re.IGNORECASE)
_MARKUP_START: Final = re.compile(rb"<(?:[A-Za-z]|!--|!doctype)", re.IGNORECASE)
_JSON_START: Final = re.compile(rb"\{[ \t\r\n]*[\"}]|\[[ \t\r\n]*[\"{\[\]]")
_WIDE_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
"""The byte-order marks of UTF-32 and UTF-16 text, longest first (UTF-32 LE's starts
with UTF-16 LE's), and the codec of the text after each."""
_MEDIA_MAGIC: Final = re.compile(
    rb"\x89PNG|\xff\xd8\xff|GIF8[79]a|RIFF....(?:WEBP|WAVE|AVI )|....(?:ftyp|moov|mdat|wide|free)"
    rb"|ID3[\x02-\x04]\x00|OggS\x00|fLaC|\x1a\x45\xdf\xa3|BM....\x00\x00\x00\x00|II\*\x00|MM\x00\*"
    rb"|\xff[\xe0-\xff][\x00-\x3b\x40-\x7b\x80-\xbb\xc0-\xfb]",
    re.DOTALL,
)
"""The first bytes of the binary image, audio and video formats results come in
(PNG, JPEG, GIF, WebP, WAV, AVI, the ISO boxes of MP4, MOV, M4A, HEIC and AVIF (an
``ftyp``, or an older QuickTime file's ``moov``, ``mdat``, ``wide`` or ``free``), MP3's
tags, Ogg, FLAC, WebM and MKV, BMP, TIFF) and an MPEG audio frame's header (MP3 or
AAC: eleven set bits, then a third byte whose sample rate is not the reserved ``11``)."""


def media_type_of(content_type: str | None) -> str | None:
    """The media type a ``Content-Type`` header names, lower case, without parameters
    (``"Text/HTML; charset=utf-8"`` gives ``"text/html"``); ``None`` for no header, an
    empty one, or one that is not ASCII."""
    if content_type is None:
        return None
    media_type = content_type.partition(";")[0].strip(" \t")
    if not media_type or not media_type.isascii():
        return None
    return media_type.lower()


def document_kind(content_type: str | None) -> str | None:
    """What a ``Content-Type`` says the body is when it is a document, not a media file:
    HTML, JSON (``application/json``, ``application/problem+json`` and every
    ``application/*+json``), XML (``application/xml``, ``text/xml``, every
    ``application/*+xml``) or other text (any ``text/*``); ``None`` for any other type
    or no usable header."""
    media_type = media_type_of(content_type)
    if media_type is None:
        return None
    top, _, sub = media_type.partition("/")
    if media_type in _HTML_TYPES:
        return HTML
    if media_type in _JSON_TYPES or (top == "application" and sub.endswith("+json")):
        return JSON
    if media_type in _XML_TYPES or (top == "application" and sub.endswith("+xml")):
        return XML
    return TEXT if top == "text" else None


def declares_media(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` says the body is an image, audio or video file in a
    binary format (``image/*``, ``audio/*``, ``video/*``, but not ``image/svg+xml``)."""
    media_type = media_type_of(content_type)
    if media_type is None or media_type == _SVG:
        return False
    return media_type.partition("/")[0] in _MEDIA_TOP_TYPES


def media_start(head: bytes) -> bool:
    """Whether ``head``, a body's first bytes, starts a binary image, audio or video
    file of a format results come in (PNG, JPEG, GIF, WebP, WAV, AVI, MP4, MOV, M4A,
    HEIC, AVIF, MP3, AAC, Ogg, FLAC, WebM, MKV, BMP, TIFF): such a body is the file,
    whatever ``Content-Type`` a misconfigured host labels it with."""
    return _MEDIA_MAGIC.match(head) is not None


def _wide_kind(head: bytes) -> str | None:
    """What ``head`` is when it starts with UTF-32's or UTF-16's byte-order mark and the
    text after it, decoded (a character cut off at its end aside), is markup or JSON
    (:func:`sniffed_kind`); else ``None``."""
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            decoder = codecs.getincrementaldecoder(encoding)()
            try:
                text = decoder.decode(head[len(bom) :], final=False)
            except UnicodeDecodeError:
                return None
            kind = sniffed_kind(text.encode())
            return kind if kind in _DOCUMENTS else None
    return None


def sniffed_kind(head: bytes) -> str | None:
    """What the first bytes of a body show it is when they are no media file: HTML
    (``<!DOCTYPE html``, ``<html``, ``<head``, ``<body``), XML (``<?xml``), other
    markup (``<`` and a letter, ``<!--``), a JSON object or array (``{`` then ``"`` or
    ``}``, ``[`` then ``"``, ``{``, ``[`` or ``]``), after any ASCII whitespace and a
    byte-order mark (UTF-8's; or UTF-16's or UTF-32's, when the text after it decoded
    is one of those: ``\\xff\\xfe`` may also start an MPEG audio frame); or
    nothing but blank space (:data:`EMPTY`); ``None`` for anything else (every
    binary media format, :func:`media_start`)."""
    if kind := _wide_kind(head):
        return kind
    if media_start(head):
        return None
    start = head.lstrip(_LEADING)
    if start.startswith(_BOM):
        start = start[len(_BOM) :].lstrip(_LEADING)
    if not start:
        return EMPTY
    if _HTML_START.match(start):
        return HTML
    if _XML_START.match(start):
        return XML
    if _MARKUP_START.match(start):
        return MARKUP
    if _JSON_START.match(start):
        return JSON
    return None


def refused_type(content_type: str | None, media: bool) -> str | None:
    """Before the body is read: what the answer is, if its ``Content-Type`` names a
    document (:func:`document_kind`) where the download promises a media file
    (``media``); else ``None``, and the answer may be saved."""
    return document_kind(content_type) if media else None


def refused_start(content_type: str | None, head: bytes, media: bool) -> str | None:
    """Once the first :data:`SNIFF_BYTES` bytes (or the whole body, if shorter) are in:
    what the answer is, if they start a document (:func:`sniffed_kind`) where the
    download promises a media file (``media``) or the ``Content-Type`` says it is one
    (:func:`declares_media`); ``None`` otherwise, as for an ``image/svg+xml`` answer
    (markup by nature) and for any body of a download that promises no media type."""
    if media_type_of(content_type) == _SVG:
        return None
    if not (media or declares_media(content_type)):
        return None
    return sniffed_kind(head)
