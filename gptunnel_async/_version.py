"""The installed distribution's version, read from package metadata on first use:
``importlib.metadata`` is a noticeable part of the import time, and only a client's
User-Agent and ``--version`` need it."""

import functools


@functools.cache
def version() -> str:
    """The installed version of gptunnel-async, or ``0+unknown`` in a never-installed tree."""
    from importlib import metadata

    try:
        return metadata.version("gptunnel-async")
    except metadata.PackageNotFoundError:
        return "0+unknown"
