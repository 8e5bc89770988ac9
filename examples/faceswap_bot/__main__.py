"""Run the bot: ``BOT_TOKEN=... python -m examples.faceswap_bot [--emulator]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os

from aiogram import Bot

from gptunnel_async import GPTunnelClient

from ..emulated import emulated_client
from .bot import create_dispatcher


async def run(token: str, *, emulator: bool) -> None:
    """Poll Telegram for updates until interrupted.

    Args:
        token: the bot's token, from BotFather.
        emulator: swap faces on the GPTunnel emulator instead of GPTunnel.
    """
    connect: contextlib.AbstractAsyncContextManager[GPTunnelClient]
    connect = emulated_client() if emulator else GPTunnelClient()
    async with connect as gptunnel, Bot(token) as bot:
        await create_dispatcher(gptunnel).start_polling(bot)


def main() -> None:
    """Read the options and the ``BOT_TOKEN`` environment variable, and run the bot."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.faceswap_bot", description="A Telegram bot that swaps faces."
    )
    parser.add_argument("--emulator", action="store_true", help="use the GPTunnel emulator")
    args = parser.parse_args()
    token = os.environ.get("BOT_TOKEN")
    if not token:
        parser.error("set BOT_TOKEN to the bot's token from BotFather")
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run(token, emulator=args.emulator))


if __name__ == "__main__":
    main()
