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
``MM``. SVG is markup, so an answer that says it is ``image/svg+xml`` is not sniffed.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "EMPTY",
    "SNIFF_BYTES",
    "declares_media",
    "document_kind",
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
_JSON_START: Final = re.compile(rb"\{[ \t\r\n]*[\"}]")


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


def sniffed_kind(head: bytes) -> str | None:
    """What the first bytes of a body show it is when they are no media file: HTML
    (``<!DOCTYPE html``, ``<html``, ``<head``, ``<body``), XML (``<?xml``), other
    markup (``<`` and a letter, ``<!--``), or a JSON object (``{`` then ``"`` or ``}``),
    after any ASCII whitespace and a UTF-8 byte-order mark; or nothing but those
    (:data:`EMPTY`); ``None`` for anything else (every binary media format)."""
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
