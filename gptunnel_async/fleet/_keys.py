"""Redis key names: every key of one fleet shares one hash tag, so a Redis Cluster keeps
them in one slot and each Lua script may touch all of them."""

from __future__ import annotations

from .._checks import text, utf8_text
from ..errors import ConfigurationError

__all__ = ["fleet_key"]


def fleet_key(prefix: str, name: str, part: str) -> str:
    """``"{prefix}:{{{name}}}:{part}"``; ``name`` is the hash tag, so it holds no braces.

    Raises:
        ConfigurationError: ``prefix`` or ``name`` is empty or holds what UTF-8 cannot
            encode, or ``name`` holds a brace.
    """
    if not text("name", name) or "{" in name or "}" in name:
        raise ConfigurationError(f"name must be a non-empty string without braces, got {name!r}")
    if not text("prefix", prefix):
        raise ConfigurationError(f"prefix must be a non-empty string, got {prefix!r}")
    return f"{utf8_text('prefix', prefix)}:{{{utf8_text('name', name)}}}:{part}"
