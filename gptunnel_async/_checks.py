"""Argument checks shared by every call: each fails with ``ConfigurationError`` (a
``ValueError``) before any request is sent, so a typo never costs a paid task."""

from __future__ import annotations

from typing import Any

from yarl import URL

from .errors import ConfigurationError

__all__ = ["check_http_url", "check_task_id", "check_text"]


def check_text(name: str, value: Any) -> str:
    """``value`` if it is a non-blank string; anything else fails before any request."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_task_id(value: str) -> str:
    """``value`` if it is a usable task id; blank or non-string ids fail before any request.

    An id that is not valid Unicode (a lone surrogate) fails too: URL encoding would
    silently drop those characters and ask for another task.
    """
    check_text("task_id", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"task_id is not valid Unicode: {value!r}") from None
    return value


def check_http_url(name: str, value: Any) -> str:
    """``value`` if it is an absolute http(s) URL with a host; anything else fails before
    any request."""
    if isinstance(value, str) and value.strip() == value:
        try:
            url = URL(value)
        except ValueError:
            url = None
        if url is not None and url.scheme in ("http", "https") and url.host:
            return value
    raise ConfigurationError(f"{name} must be an absolute http(s) URL, got {value!r:.200}")
