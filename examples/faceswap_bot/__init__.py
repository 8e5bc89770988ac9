"""A Telegram bot (aiogram 3) that swaps faces: send it two photos, watch a progress bar,
get the result.

    pip install 'gptunnel-async[examples]'
    BOT_TOKEN=... GPTUNNEL_API_KEY=... python -m examples.faceswap_bot
    BOT_TOKEN=... python -m examples.faceswap_bot --emulator   # GPTunnel emulated

- :mod:`.progress`: the progress bar's text, and edits throttled as Telegram requires;
- :mod:`.replies`: what the bot says, errors included;
- :mod:`.bot`: the conversation, on aiogram's dispatcher.
"""
