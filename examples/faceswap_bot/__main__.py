"""Run the bot: ``BOT_TOKEN=... python -m examples.faceswap_bot [--emulator]``
(``BOT_API_URL=...`` for a local Bot API server instead of Telegram's).

The token is checked before aiogram is imported (which takes seconds), and a missing
aiogram, a malformed token, a token Telegram refuses or no network end with one line,
not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys

from gptunnel_async import GPTunnelClient

from ..emulated import emulated_client


async def run(token: str, *, emulator: bool, api_url: str | None = None) -> None:
    """Poll Telegram for updates until interrupted.

    Args:
        token: the bot's token, from BotFather.
        emulator: swap faces on the GPTunnel emulator instead of GPTunnel.
        api_url: a local Bot API server's root, instead of Telegram's.
    """
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from .bot import create_dispatcher

    session = None if api_url is None else AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    bot = Bot(token, session=session)  # checks the token's form: TokenValidationError
    connect: contextlib.AbstractAsyncContextManager[GPTunnelClient]
    connect = emulated_client() if emulator else GPTunnelClient()
    async with connect as gptunnel, bot:
        await bot.get_me()  # checks the token with Telegram, and the network, at once
        await create_dispatcher(gptunnel).start_polling(bot)


def failure(exc: Exception) -> str | None:
    """One line for a failure the user can fix (the token, the network), else ``None``."""
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError
    from aiogram.utils.token import TokenValidationError

    if isinstance(exc, TokenValidationError):
        return "BOT_TOKEN is not a bot token (BotFather gives one like 123456:ABC-DEF...)"
    if isinstance(exc, TelegramUnauthorizedError):
        return "Telegram refused BOT_TOKEN: check it with BotFather"
    if isinstance(exc, TelegramNetworkError | OSError):
        return f"cannot reach Telegram: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Read the options and the ``BOT_TOKEN`` environment variable, and run the bot.

    Returns:
        0 when stopped with Ctrl-C, 1 for a bad token or no network.
    """
    parser = argparse.ArgumentParser(
        prog="python -m examples.faceswap_bot", description="A Telegram bot that swaps faces."
    )
    parser.add_argument("--emulator", action="store_true", help="use the GPTunnel emulator")
    args = parser.parse_args(argv)
    token = os.environ.get("BOT_TOKEN", "").strip()
    if not token:
        parser.error("set BOT_TOKEN to the bot's token from BotFather")
    try:
        import aiogram  # noqa: F401  (here, after the token, as it takes seconds)
    except ImportError:
        parser.error("the bot needs aiogram 3: pip install -e '.[examples]'")
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(run(token, emulator=args.emulator, api_url=os.environ.get("BOT_API_URL")))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        message = failure(exc)
        if message is None:
            raise
        print(f"faceswap_bot: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
