"""gptunnel-async: an asyncio SDK for GPTunnel's task API.

Read a task's state, wait for it with backoff and a deadline while progress events
arrive, and save its result:

```python
async with GPTunnelClient() as client:
    task = await client.wait_for_result(task_id)
    await client.download_result(task, "result.png")
```
"""

from typing import TYPE_CHECKING

from ._client import GPTunnelClient
from ._images import ImageInput
from ._many import AsCompleted
from ._polling import PollPolicy, ProgressCallback, ProgressEvent, TaskWaiter
from ._sentinel import NOT_GIVEN, NotGiven
from ._throttle import throttle
from ._version import version
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentPolicyError,
    DownloadError,
    GPTunnelError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    TaskFailedError,
    TLSError,
    UsageError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from .models import Balance, MediaClip, MediaTask, Task, TaskLike, Usage, ValidationIssue

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsCompleted",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "ConfigurationError",
    "ContentPolicyError",
    "DownloadError",
    "GPTunnelClient",
    "GPTunnelError",
    "ImageInput",
    "InsufficientBalanceError",
    "MediaClip",
    "MediaTask",
    "NotFoundError",
    "NotGiven",
    "PermissionDeniedError",
    "PollPolicy",
    "ProgressCallback",
    "ProgressEvent",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "TLSError",
    "Task",
    "TaskFailedError",
    "TaskLike",
    "TaskWaiter",
    "Usage",
    "UsageError",
    "ValidationIssue",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "__version__",
    "throttle",
]

if TYPE_CHECKING:
    __version__: str
else:

    def __getattr__(name: str) -> str:
        """``__version__``, read from package metadata when first asked for."""
        if name == "__version__":
            return version()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
