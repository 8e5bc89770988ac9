"""``python -m gptunnel_async``: the same as the ``gptunnel-async`` command."""

from .cli import main

raise SystemExit(main())
