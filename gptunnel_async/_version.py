"""The installed distribution's version, read once from package metadata."""

from importlib import metadata

try:
    VERSION = metadata.version("gptunnel-async")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
