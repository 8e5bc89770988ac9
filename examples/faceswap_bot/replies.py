"""What the bot says: prompts, the final states of the progress message, and errors
turned into words a user can act on.
"""

from __future__ import annotations

from gptunnel_async import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GPTunnelError,
    InsufficientBalanceError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    WaitTimeoutError,
)

GREETING = "Send me a photo of a person, then a photo of the face to put on them."
ASK_FOR_FACE = "Now send a photo of the face to put on them."
DONE = "Done ✅"
FAILED = "Failed ❌"
RESULT_CAPTION = "Here you are."
BUSY = "I am still swapping your last photos: wait for them, or send /cancel to stop."
CANCELLED = "Stopped. Send me a photo of a person to start again."
CANCELLED_PROGRESS = "Cancelled ✖"
NOTHING_TO_CANCEL = "No swap is running. " + GREETING


def friendly_error(exc: GPTunnelError) -> str:
    """A reply that tells the user what went wrong and what they can do about it.

    Args:
        exc: the error that ended the face swap.

    Returns:
        One or two sentences, free of status codes and stack traces.
    """
    if isinstance(exc, TaskFailedError):
        reason = f" ({exc.task.error})" if exc.task.error else ""
        return (
            f"Sorry, GPTunnel could not swap these faces{reason}. "
            "Try photos with one clear, front-facing face each."
        )
    if isinstance(exc, WaitTimeoutError):
        return "Sorry, that took too long and I gave up. Please try again later."
    if isinstance(exc, BadRequestError | ConfigurationError):
        return "Sorry, GPTunnel could not use these photos. Please send other ones."
    if isinstance(exc, InsufficientBalanceError):
        return "Sorry, this bot has run out of GPTunnel credit. Please tell its owner."
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return "Sorry, this bot is not set up right. Please tell its owner."
    if isinstance(exc, RateLimitError | ServerError | APIConnectionError):
        return "GPTunnel is busy or out of reach right now. Please try again in a minute."
    return "Sorry, something went wrong. Please try again."
