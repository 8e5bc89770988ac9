"""Runnable examples, each able to run against the GPTunnel emulator (``--emulator``).

From the repository's root:

- ``python -m examples.wait_and_save --emulator``: a script that waits with
  ``async for`` and saves the result;
- ``python -m examples.sse_service --emulator``: a web service that streams progress to
  the browser as server-sent events;
- ``BOT_TOKEN=... python -m examples.faceswap_bot --emulator``: a Telegram bot that
  swaps faces with a progress bar (needs ``pip install 'gptunnel-async[examples]'``).
"""
