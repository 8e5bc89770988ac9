"""GPTunnel's task families: ``FaceSwap``, ``BgRemover``, ``Midjourney`` and ``Media``.

Each family is a few declarative lines on [TaskResource][gptunnel_async.families.TaskResource]:
where its tasks are read and how its answers decode (a [Family][gptunnel_async.families.Family]),
plus the create calls it has. Reading, waiting, retries and errors are shared. The client
builds one of each (``client.faceswap``, ``client.media``...); the types live here for
annotations, ``isinstance`` checks and [webhooks][gptunnel_async.webhooks]. Arguments are
checked before any request, so a typo never costs a paid task.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Concatenate, Final, Generic, Literal, ParamSpec, TypeVar, overload

import attrs

from ._checks import (
    check_task_id,
    check_text,
    describe,
    hide_webhook_token,
    instance_of,
    json_values,
    one_argument_function,
    optional,
    text,
    valid_unicode,
    webhook_token,
    webhook_url,
)
from ._images import ImageInput, ReadableBytes, check_mask, encode_image, image_link
from ._in_process import InProcessOnly
from ._many import AsCompleted, wait_many
from ._polling import PollPolicy, ProgressCallback, TaskWaiter, note_once
from ._safe_errors import made_safe, secret_arguments
from ._sansio.requests import Request
from ._sansio.responses import (
    Created,
    Decoder,
    decode_media_task,
    decode_task,
    reading,
    secret_masked,
    with_family_hint,
)
from ._sentinel import NOT_GIVEN, NotGiven
from ._timing import Wakeup
from ._transport import Transport
from .errors import ConfigurationError, GPTunnelError, NotFoundError
from .instrumentation._hooks import family_of
from .models import MediaTask, Task, TaskLike

__all__ = [
    "DEFAULT_RESULT_LIFETIME",
    "BgRemover",
    "FaceSwap",
    "Family",
    "ImageInput",
    "Media",
    "Midjourney",
    "MidjourneyAction",
    "ReadableBytes",
    "TaskResource",
]

T = TypeVar("T", bound=TaskLike)
R = TypeVar("R")
P = ParamSpec("P")
Resource = TypeVar("Resource", bound="TaskResource[Any]")


def _create_call(
    method: Callable[Concatenate[Resource, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Resource, P], Coroutine[Any, Any, R]]:
    """A create call whose refusals of its arguments never show the API key: their
    texts are masked with the client's key (an argument that holds it, passed by
    mistake, is quoted as ``***``), and they leave from a frame that holds none of the
    arguments (see ``secret_arguments``: a ``webhook`` holds its token too)."""

    @functools.wraps(method)
    async def masked(resource: Resource, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(resource, *args, **kwargs)
        except ConfigurationError as exc:  # the transport masks the API's own errors
            made_safe(exc, resource._transport.secret)
            raise

    return secret_arguments(masked)


DEFAULT_RESULT_LIFETIME: Final = timedelta(days=3)
"""How long a family's result files are assumed to live where its docs do not say: the
face swap's documented 3 days ("the result URL may be deleted 3 days after generation",
docs.gptunnel.ru/faceswap/result), the longest any family is known to keep them."""


@attrs.frozen
class Family(Generic[T]):
    """What sets one task family apart: where its tasks are read, how answers decode, and
    how long its result files live.

    Attributes:
        result_path: the read endpoint under the base URL, e.g. ``"faceswap/result"``.
        decode: turns every 2xx answer of the family (creates and reads) into its task
            model, or raises the typed error the body carries (media's ``code``).
        id_param: the query parameter that names the task: ``taskId``, or media's
            ``task_id``.
        result_lifetime: how long a done task's result URL stays downloadable after
            generation (a ``datetime.timedelta``); save the file before. Each family's
            docstring gives its source; :data:`DEFAULT_RESULT_LIFETIME` where the docs
            are silent.
    """

    result_path: str
    decode: Decoder[T]
    id_param: str = "taskId"
    result_lifetime: timedelta = DEFAULT_RESULT_LIFETIME


class _TaskRead(InProcessOnly, Generic[T]):
    """One task's read: its request, URL and all, and its decoder, built once; each call
    sends it.

    A wait keeps one for its whole life (thousands of waits keep one each), so it is a
    single small object rather than a partial around a bound method and a closure.
    """

    __slots__ = ("_decode", "_request", "_transport")

    def __init__(self, transport: Transport, request: Request, decode: Decoder[T]) -> None:
        self._transport = transport
        self._request = request
        self._decode = decode

    def __call__(self) -> Awaitable[T]:
        return self._transport.send(self._request, self._decode)


class TaskResource(InProcessOnly, Generic[T]):
    """Reading a task and waiting for it: the same for every family.

    A subclass sets ``family`` and adds the family's create calls. The client builds
    one per family; reach them as ``client.faceswap``, ``client.media`` and so on.

    Args:
        transport: the client's way to send one request.
        default_policy: the client's current default [PollPolicy][].
        wakeup: the pauses of the client's waits, which closing the client ends.
    """

    family: Family[T]

    def __init__(
        self,
        transport: Transport,
        default_policy: Callable[[], PollPolicy],
        wakeup: Wakeup | None = None,
    ) -> None:
        self._transport = transport
        self._default_policy = default_policy
        self._wakeup = wakeup

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._transport.base_url}/{self.family.result_path}>"

    @property
    def result_lifetime(self) -> timedelta:
        """How long this family's result files live after generation (the
        ``result_lifetime`` of its ``gptunnel_async.families.Family``, with its source);
        a download after that gets ``NotFoundError``."""
        return self.family.result_lifetime

    async def result(self, task_id: str) -> T:
        """Read the task's current state once, retrying transient failures.

        Args:
            task_id: the task to read.

        Returns:
            The task as it is now.

        Raises:
            ConfigurationError: ``task_id`` is empty, blank, over 256 characters, not
                valid Unicode or holds the API key (nothing is sent).
            APIError: the typed error of an answer that is not retried, or the last one
                once the client's retries have failed too.
            APIConnectionError: the network failed, after the retries.
            ResponseDecodeError: the answer is not this family's task object.
            UsageError: the client is closed.
        """
        try:
            return await self._reader(task_id)()
        except NotFoundError as exc:  # asking whether the task is another family's
            raise with_family_hint(exc, family_of(self.family.result_path))  # noqa: B904

    @secret_arguments  # the body may echo the key, and the decoders' frames hold it
    def _parse_delivery(self, body: bytes, api_key: str | None = None) -> T:
        """``body`` (a webhook delivery) as this family's task model, ``api_key`` (by
        default the client's) masked in everything made from it; its errors leave with
        no frame that held the body or the key."""
        if api_key:
            return self.family.decode(body, 200, secret=api_key)
        return self._transport.decode_delivered(body, self.family.decode)

    def _task_id(self, task_id: str) -> str:
        """``task_id``, checked (``ConfigurationError``, not showing the key if it holds
        it: see ``check_task_id``)."""
        return check_task_id(task_id, self._transport.secret)

    def _reader(self, task_id: str) -> _TaskRead[T]:
        """What reads ``task_id`` (checked first), built once for all its reads."""
        query = ((self.family.id_param, self._task_id(task_id)),)
        request = self._transport.requests.api("GET", self.family.result_path, query=query)
        return _TaskRead(self._transport, request, reading(task_id, self.family.decode))

    def wait_for_result(
        self,
        task_id: str,
        *,
        policy: PollPolicy | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[T] | None = None,
    ) -> TaskWaiter[T]:
        """Poll until the task is done: await it for the final task, or iterate its events.

        Args:
            task_id: the task to wait for.
            policy: pacing and deadline; defaults to the client's ``poll_policy``.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            A [TaskWaiter][]: await it for the done task, or iterate it for the
            [ProgressEvent][] of each change. Awaiting or iterating it raises
            ``TaskFailedError`` when the task fails, ``WaitTimeoutError`` when the
            deadline passes, and the ``APIError`` of a 400, 401, 402, 403 or 404
            ([TaskWaiter][] lists them all).

        Raises:
            ConfigurationError: ``task_id`` is empty, blank or over 256 characters, or
                ``policy`` or ``on_progress`` is not one (a callback of no argument).
        """
        read = self._reader(task_id)  # built once: a URL costs ~8 % of a read (performance.md)
        checked = self._wait_policy(policy, timeout, on_progress)
        return self._waiter(task_id, read, checked, on_progress)

    def _wait_policy(
        self,
        policy: PollPolicy | None,
        timeout: float | NotGiven | None,
        on_progress: ProgressCallback[T] | None,
    ) -> PollPolicy:
        """The policy a wait with these arguments runs under (its ``timeout`` in it),
        once each argument is checked (``ConfigurationError`` if one is not one)."""
        optional(instance_of(PollPolicy), "policy", policy)
        optional(one_argument_function, "on_progress", on_progress)
        chosen = policy or self._default_policy()
        return chosen if timeout is NOT_GIVEN else attrs.evolve(chosen, timeout=timeout)

    def _waiter(
        self,
        task_id: str,
        read: Callable[[], Awaitable[T]],
        policy: PollPolicy,
        on_progress: ProgressCallback[T] | None,
    ) -> TaskWaiter[T]:
        """A wait for ``task_id`` whose reads are ``read()`` (checked arguments)."""
        return TaskWaiter(
            task_id,
            read,
            policy=policy,
            on_progress=on_progress,
            wakeup=self._wakeup,
            family=family_of(self.family.result_path),
        )

    @overload
    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | NotGiven | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsCompleted[T]: ...

    @overload
    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | NotGiven | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[True],
    ) -> AsCompleted[T | GPTunnelError]: ...

    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[T] | None = None,
        return_exceptions: bool = False,
    ) -> AsCompleted[Any]:
        """Wait for many tasks at once; iterate to get each as it finishes.

        Args:
            task_ids: the tasks to wait for (each id is checked before any request).
            policy: pacing and deadline of each wait, as for ``wait_for_result``.
            timeout: overrides the policy's deadline, for each wait.
            on_progress: called with every wait's [ProgressEvent][]s; may be async.
            return_exceptions: yield a failure as its exception instead of raising it.

        Returns:
            An [AsCompleted][gptunnel_async.AsCompleted]: an async iterator and an async
            context manager that cancels the waits still running when it ends.

        Raises:
            ConfigurationError: ``task_ids`` is one string, or holds a blank id; or
                ``policy`` or ``on_progress`` is not one (a callback of no argument), or
                ``return_exceptions`` is not a bool.
        """
        instance_of(bool)("return_exceptions", return_exceptions)
        waiters = self._waiters(task_ids, policy, timeout, on_progress)
        return AsCompleted(waiters, return_exceptions=return_exceptions)

    @overload
    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | NotGiven | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[T]: ...

    @overload
    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = ...,
        timeout: float | NotGiven | None = ...,
        on_progress: ProgressCallback[T] | None = ...,
        return_exceptions: Literal[True],
    ) -> list[T | GPTunnelError]: ...

    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        policy: PollPolicy | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[T] | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Wait for many tasks at once; return the finished tasks in the order given.

        Args:
            task_ids: the tasks to wait for (each id is checked before any request).
            policy: pacing and deadline of each wait, as for ``wait_for_result``.
            timeout: overrides the policy's deadline, for each wait.
            on_progress: called with every wait's [ProgressEvent][]s; may be async.
            return_exceptions: put a failure's exception in its place instead of raising.

        Returns:
            The done tasks (or, with ``return_exceptions``, their errors), in the order
            of ``task_ids``.

        Raises:
            ConfigurationError: ``task_ids`` is one string, or holds a blank id; or
                ``policy`` or ``on_progress`` is not one (a callback of no argument), or
                ``return_exceptions`` is not a bool.
            GPTunnelError: without ``return_exceptions``, the first failure in the order
                given, once every wait has ended (no failure cancels another wait).
        """
        instance_of(bool)("return_exceptions", return_exceptions)
        waiters = self._waiters(task_ids, policy, timeout, on_progress)
        return await wait_many(waiters, return_exceptions=return_exceptions)

    def _waiters(
        self,
        task_ids: Iterable[str],
        policy: PollPolicy | None,
        timeout: float | NotGiven | None,
        on_progress: ProgressCallback[T] | None,
    ) -> list[TaskWaiter[T]]:
        return [
            self.wait_for_result(task_id, policy=policy, timeout=timeout, on_progress=on_progress)
            for task_id in self._task_ids(task_ids)
        ]

    def _task_ids(self, task_ids: Iterable[str]) -> list[str]:
        """``task_ids``, each checked, all before any wait starts; ``ConfigurationError``
        for one string or what is not a collection, or a bad id among them."""
        if isinstance(task_ids, str):
            raise ConfigurationError("task_ids must be a collection of ids, not one string")
        if not isinstance(task_ids, Iterable):
            raise ConfigurationError(
                f"task_ids must be a collection of ids, got {describe(task_ids)}"
            )
        return [self._task_id(task_id) for task_id in task_ids]

    @_create_call  # a webhook URL in the body holds its token
    async def create_task(self, path: str, body: Mapping[str, Any]) -> T:
        """Start a task at an endpoint the SDK does not model, and get this family's
        typed task back.

        GPTunnel's docs list endpoints whose bodies they do not describe
        (``bgremover/create``; Midjourney's ``outpaint``, ``pan``, ``upscale``,
        ``reroll``). Rather than guess their fields, the SDK lets you send the JSON you
        know works; the answer is decoded, refused and retried exactly like the modelled
        create calls (sent again only where the server surely did nothing: a 429, a
        503, media's code 6, or a connection that never opened), and the task it returns
        is waited for with ``wait_for_result`` like any other.

        Args:
            path: the endpoint under the base URL, e.g. ``"midjourney/reroll"``.
            body: the JSON object to POST, sent as given.

        Returns:
            The new task, as this family's model.

        Raises:
            ConfigurationError: a path that is not a plain relative path (``..``, a
                query, a scheme) or repeats the base URL's last segment
                (``v1/bgremover/create``), a body that is not a JSON object, or a ``webhook``
                in it that is not an absolute http(s) URL.
            ResponseDecodeError: the answer is not this family's task object, or its
                task id is unusable (the task may have started).
            APIError: the API refused the request; its class and ``param`` say why.
            APIConnectionError: the network failed.
        """
        payload = json_values("body", dict(body)) if isinstance(body, Mapping) else None
        if payload is None:
            shown = hide_webhook_token(describe(body))
            raise ConfigurationError(f"body must be a JSON object (a mapping), got {shown}")
        return await self._create(_endpoint_path(path, self._transport.base_url), payload)

    async def _create(self, path: str, payload: dict[str, Any]) -> T:
        """POST a new task; retried only where the server surely did not start one.

        Every create goes out through here: a ``webhook`` in its body (``webhook=``, a
        media option, a ``create_task`` body) is checked first, and the answer's task id
        is judged as the server's (see ``Created``).
        """
        valid_unicode(payload)
        token = None
        if payload.get("webhook") is not None:
            payload = payload | {"webhook": webhook_url("webhook", payload["webhook"])}
            token = webhook_token(payload["webhook"])
        created = await self._transport.request(
            "POST", path, Created(self.family.decode), json=payload, idempotent=False, secret=token
        )
        # The errors were masked by the transport, each attempt's before a retry logs it.
        return created if token is None else secret_masked(created, token)

    async def _until_done(
        self,
        created: Coroutine[Any, Any, T],
        policy: PollPolicy | None,
        timeout: float | NotGiven | None,
        on_progress: ProgressCallback[T] | None,
    ) -> T:
        """Await a create call, then wait for the task it started. The wait's arguments
        are checked first: a mistake in them must not cost a paid task, whose id the
        error would not carry; an error of the wait (``on_progress``'s own included)
        that does not name the task gets a note that does."""
        try:
            checked = self._wait_policy(policy, timeout, on_progress)
        except BaseException:
            created.close()  # never sent
            raise
        task = await created
        try:
            return await self._waiter(task.id, self._reader(task.id), checked, on_progress)
        except BaseException as exc:  # on_progress's own error too: the task goes on
            if getattr(exc, "task_id", None) != task.id:  # else its text names the task
                family = family_of(self.family.result_path)
                note = (
                    f"task {task.id} {_CREATED_KIND}: wait for it again with "
                    f"client.{family}.wait_for_result({task.id!r})"
                )
                note_once(exc, note, kind=_CREATED_KIND, shared=_CREATED_SHARED)
            raise


_CREATED_KIND: Final = "was created (and is paid for) before this"
_CREATED_SHARED: Final = (
    f"more than one task {_CREATED_KIND}, and this one exception object was raised "
    "again in the wait for each (a failed future the callbacks await?): wait for each "
    "again with wait_for_result(task_id)"
)
"""The note of an error that ended the waits of several created tasks."""

_PATH_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")


def _endpoint_path(path: Any, base_url: str = "") -> str:
    """``path`` if it is a relative API path of plain segments (``midjourney/pan``) that
    does not repeat the end of ``base_url`` (``v1/midjourney/pan`` under ``.../v1``)."""
    segments = text("path", path).strip("/").split("/")
    if not segments or not all(_PATH_SEGMENT.fullmatch(segment) for segment in segments):
        raise ConfigurationError(
            f"path must be an endpoint under the base URL such as 'midjourney/reroll', "
            f"got {path!r:.80}"
        )
    root = base_url.rstrip("/").rpartition("/")[2]
    if len(segments) > 1 and segments[0] == root and "/" in base_url.partition("//")[2]:
        rest = "/".join(segments[1:])
        raise ConfigurationError(
            f"path is under the base URL, which ends in /{root} already: give {rest!r}, "
            f"not {path!r:.80}"
        )
    return "/".join(segments)


_VARIATION_MODES: Final = ("high", "low")


class FaceSwap(TaskResource[Task]):
    """``/faceswap``: put the face from one image onto the person in another.

    Results live 3 days: "the result URL may be deleted 3 days after generation"
    (docs.gptunnel.ru/faceswap/result).
    """

    family = Family("faceswap/result", decode_task, result_lifetime=timedelta(days=3))

    @_create_call  # ``webhook`` holds its token
    async def create(
        self, source_image: ImageInput, face_image: ImageInput, *, webhook: str | None = None
    ) -> Task:
        """Start a face swap: put the face from ``face_image`` on the person in
        ``source_image``.

        Files and bytes are sent inline as ``data:`` URIs (PNG, JPEG or WEBP, sniffed
        from the content, up to 10 MiB); a ``data:`` URI is checked as its bytes are and
        sent so, and a URL as it is, once it is an absolute http(s) URL with a host.
        The request is retried only where the server surely did not start a task.

        Args:
            source_image: the picture whose person gets the new face: a URL, a
                ``data:`` URI, bytes, a file path or a binary file object
                (``io.BytesIO``, which aiogram's ``bot.download(photo,
                destination=buffer)`` fills, read from its current position).
            face_image: the picture the face is taken from, in any of the same forms.
            webhook: an http(s) URL the API calls when the task ends (e.g. a
                [WebhookReceiver][gptunnel_async.webhooks.WebhookReceiver]'s ``url``).

        Returns:
            The new task, ``idle``; wait for it with ``wait_for_result(task.id)``.

        Raises:
            ConfigurationError: an image is empty, unreadable, too large, or not a PNG,
                JPEG or WEBP file (a ``data:`` URI's bytes too), or a link that is not an
                absolute http(s) URL with a host; or ``webhook`` is not an absolute
                http(s) URL of printable characters, at most 2048 long.
            BadRequestError: the API refused the images.
            InsufficientBalanceError: the organisation's balance is too low.
            APIError: any other error status.
            ResponseDecodeError: the answer is not a task object, or its task id is
                unusable (blank, over 256 characters): the task may have started.
            APIConnectionError: the network failed.
        """
        payload: dict[str, Any] = {
            "sourceImage": await encode_image(source_image, "source_image"),
            "faceImage": await encode_image(face_image, "face_image"),
        }
        if webhook is not None:
            payload["webhook"] = webhook
        return await self._create("faceswap/create", payload)

    async def swap(
        self,
        source_image: ImageInput,
        face_image: ImageInput,
        *,
        policy: PollPolicy | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[Task] | None = None,
    ) -> Task:
        """Start a face swap and wait for it to finish.

        Args:
            source_image: the picture whose person gets the new face, in any form
                ``create`` takes.
            face_image: the picture the face is taken from.
            policy: pacing and deadline of the wait.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            The done task; its ``result`` is the URL of the swapped image.

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            ConfigurationError: an image is unusable.
            APIError: an error status that is not retried, or still failing after
                the retries (creating) or at the deadline (waiting).
        """
        created = self.create(source_image, face_image)  # guarded itself
        del source_image, face_image  # the key, if passed there: not this frame's locals
        return await self._until_done(created, policy, timeout, on_progress)


class BgRemover(TaskResource[Task]):
    """``/bgremover``: background removal; its tasks are read and waited for here.

    It has no ``create``: GPTunnel's docs list ``POST /bgremover/create`` but describe no
    body (its page on docs.gptunnel.ru could not be read), so start a task with
    ``create_task("bgremover/create", body)``, with the fields GPTunnel's support
    confirms, and wait for it here.

    Results are assumed to live 3 days: the docs do not say (their result page mirrors
    the face swap's), so the face swap's documented lifetime is kept.
    """

    family = Family("bgremover/result", decode_task, result_lifetime=DEFAULT_RESULT_LIFETIME)


def _image_number(value: Any) -> int:
    """Which of a Midjourney grid's four images: an int from 1 to 4."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise ConfigurationError(f"image must be an int from 1 to 4, got {value!r}")
    return value


class MidjourneyAction(enum.StrEnum):
    """What a done Midjourney task offers next, spelled as the service spells it in
    ``Task.actions`` (the upsample actions are ``upsamle_N``, sic).

    Members are strings, so ``MidjourneyAction.UPSAMPLE_2 in task.actions`` works and
    the raw values stay on the task; [parse][gptunnel_async.families.MidjourneyAction.parse]
    also reads the correct spelling, should the service ever fix it.
    """

    UPSAMPLE_1 = "upsamle_1"
    UPSAMPLE_2 = "upsamle_2"
    UPSAMPLE_3 = "upsamle_3"
    UPSAMPLE_4 = "upsamle_4"
    VARIATION_1 = "variation_1"
    VARIATION_2 = "variation_2"
    VARIATION_3 = "variation_3"
    VARIATION_4 = "variation_4"
    HIGH_VARIATION = "high_variation"
    LOW_VARIATION = "low_variation"
    REROLL = "reroll"

    @classmethod
    def upsample(cls, image: int) -> MidjourneyAction:
        """The action that upsamples image ``image`` (1 to 4) of a grid.

        Args:
            image: which of the grid's four images.

        Returns:
            ``UPSAMPLE_<image>``, whose value is ``"upsamle_<image>"``.

        Raises:
            ConfigurationError: ``image`` is not an int from 1 to 4.
        """
        return cls(f"upsamle_{_image_number(image)}")

    @classmethod
    def variation(cls, image: int) -> MidjourneyAction:
        """The action that varies image ``image`` (1 to 4) of a grid.

        Args:
            image: which of the grid's four images.

        Returns:
            ``VARIATION_<image>``.

        Raises:
            ConfigurationError: ``image`` is not an int from 1 to 4.
        """
        return cls(f"variation_{_image_number(image)}")

    @classmethod
    def parse(cls, raw: str) -> MidjourneyAction | None:
        """A raw action string as a member, in either spelling and any case.

        Args:
            raw: one entry of ``Task.actions``.

        Returns:
            The member, or ``None`` for an action this SDK does not know.
        """
        key = raw.strip().casefold().replace("upsample_", "upsamle_")
        return cls._value2member_map_.get(key)  # type: ignore[return-value]

    @classmethod
    def offered_by(cls, task: Task) -> tuple[MidjourneyAction, ...]:
        """The known actions a task offers, in its order (unknown ones left out).

        Args:
            task: a done Midjourney task.

        Returns:
            Its actions as members.
        """
        found = (cls.parse(raw) for raw in task.actions)
        return tuple(dict.fromkeys(action for action in found if action is not None))


class Midjourney(TaskResource[Task]):
    """``/midjourney``: imagine a grid of four images, then upsample, vary or inpaint one.

    While a task runs (``percent`` < 100) its ``result`` is an intermediate image; when it
    is done, ``actions`` lists what can follow and ``parent_id`` names the task it came from.

    Results are assumed to live 3 days: the docs do not say how long the images on their
    result host (``https://gptunnel.ru/task/image/<id>?cache=100``) are kept, so the face
    swap's documented lifetime is kept.
    """

    family = Family("midjourney/result", decode_task, result_lifetime=DEFAULT_RESULT_LIFETIME)

    @_create_call
    async def imagine(self, prompt: str, *, use_wallet_balance: bool = False) -> Task:
        """Start a Midjourney image grid from ``prompt``.

        Args:
            prompt: what to draw.
            use_wallet_balance: pay from the personal wallet rather than the organisation.

        Returns:
            The new task, ``idle``.

        Raises:
            ConfigurationError: the prompt is blank, or ``use_wallet_balance`` is not a
                bool (a ``"false"`` read from a setting would have paid from the wallet).
            APIError: the API refused the task, e.g. ``InsufficientBalanceError``.
            ResponseDecodeError: the answer is not a task object, or its task id is
                unusable (blank, over 256 characters): the task may have started.
            APIConnectionError: the network failed.
        """
        payload: dict[str, Any] = {"prompt": check_text("prompt", prompt)}
        if instance_of(bool)("use_wallet_balance", use_wallet_balance):
            payload["useWalletBalance"] = True
        return await self._create("midjourney/imagine", payload)

    @_create_call
    async def upsample(self, task_id: str, image: int) -> Task:
        """Start upscaling one image of a done grid.

        Args:
            task_id: the grid's task.
            image: which of its four images, 1 to 4.

        Returns:
            The new task, ``idle``; its ``parent_id`` is ``task_id``.

        Raises:
            ConfigurationError: a blank ``task_id`` or an ``image`` outside 1-4.
            NotFoundError: no such task.
            APIError: any other error status.
            ResponseDecodeError: the answer is not a task object, or its task id is
                unusable (blank, over 256 characters): the task may have started.
        """
        payload = {"taskId": self._task_id(task_id), "image": _image_number(image)}
        return await self._create("midjourney/upsample", payload)

    @_create_call
    async def variation(
        self, task_id: str, image: int | None = None, mode: str | None = None
    ) -> Task:
        """Start variations of a done task: of one image of a grid, or of an upsample.

        The docs make ``image`` the required field for a grid (its ``variation_N``
        actions) and ``mode`` the required one when the parent is an upsample task (its
        ``high_variation``/``low_variation`` actions). Only the fields given are sent.

        Args:
            task_id: the task to vary.
            image: which of a grid's four images, 1 to 4.
            mode: ``"high"`` (strong) or ``"low"`` (subtle) variation; needed for an
                upsample task.

        Returns:
            The new task, ``idle``, its cost already in ``usage``; its ``parent_id`` is
            ``task_id``.

        Raises:
            ConfigurationError: a blank ``task_id``, neither ``image`` nor ``mode``,
                an ``image`` outside 1-4, or another ``mode``.
            BadRequestError: the parent does not offer that variation.
            NotFoundError: no such task.
            APIError: any other error status.
            ResponseDecodeError: the answer is not a task object, or its task id is
                unusable (blank, over 256 characters): the task may have started.
        """
        payload: dict[str, Any] = {"taskId": self._task_id(task_id)}
        if image is None and mode is None:
            raise ConfigurationError(
                "give image=1..4 to vary one image of a grid, or mode='high'/'low' to vary "
                "an upsample task"
            )
        if image is not None:
            payload["image"] = _image_number(image)
        if mode is not None:
            if mode not in _VARIATION_MODES:
                raise ConfigurationError(f"mode must be 'high' or 'low', got {mode!r}")
            payload["mode"] = mode
        return await self._create("midjourney/variation", payload)

    @_create_call
    async def inpaint(
        self,
        task_id: str,
        mask: ImageInput,
        prompt: str | None = None,
        *,
        size: tuple[int, int] | None = None,
    ) -> Task:
        """Start redrawing the masked area of a task's image.

        The docs want ``mask`` as a base64, black-and-white PNG the size of the image it
        masks. What can be checked here is, before any request: that it is a PNG, that
        it has no colour but black and white (grey anti-aliased edges are refused), and,
        if you give ``size``, its size. It is sent as plain base64.

        Args:
            task_id: the task whose image is redrawn.
            mask: the area to redraw in white on black: PNG bytes, a file path, a
                binary file object, base64 text or a ``data:`` URI (not a link).
            prompt: what to draw there; none keeps the original prompt.
            size: the masked image's ``(width, height)`` in pixels, if known (e.g. from
                the downloaded grid); the mask must match it.

        Returns:
            The new task, ``idle``; its ``parent_id`` is ``task_id``.

        Raises:
            ConfigurationError: a blank ``task_id`` or ``prompt``, or a mask that is not
                a black-and-white PNG (of ``size``, when given); the message says which.
            BadRequestError: the API refused the mask.
            NotFoundError: no such task.
            APIError: any other error status.
            ResponseDecodeError: the answer is not a task object, or its task id is
                unusable (blank, over 256 characters): the task may have started.
        """
        payload: dict[str, Any] = {"taskId": self._task_id(task_id)}
        if prompt is not None:
            payload["prompt"] = check_text("prompt", prompt)
        payload["mask"] = await asyncio.to_thread(check_mask, mask, size)
        return await self._create("midjourney/inpaint", payload)

    async def imagine_and_wait(
        self,
        prompt: str,
        *,
        use_wallet_balance: bool = False,
        policy: PollPolicy | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[Task] | None = None,
    ) -> Task:
        """Start a Midjourney grid and wait for it to finish.

        Args:
            prompt: what to draw.
            use_wallet_balance: pay from the personal wallet rather than the organisation.
            policy: pacing and deadline of the wait.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.

        Returns:
            The done task, with its ``actions``.

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed.
            ConfigurationError: the prompt is blank.
            APIError: an error status that is not retried.
        """
        created = self.imagine(prompt, use_wallet_balance=use_wallet_balance)  # guarded itself
        del prompt  # the key, if passed there: not this frame's local
        return await self._until_done(created, policy, timeout, on_progress)


def _media_payload(
    model: str,
    prompt: str,
    images: Sequence[str] | None,
    ar: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The JSON of ``/media/create``, checked: ``None`` options are left out."""
    payload: dict[str, Any] = {
        "model": check_text("model", model),
        "prompt": check_text("prompt", prompt),
    }
    if images is not None:
        if isinstance(images, str | bytes | bytearray | memoryview) or not isinstance(
            images, Sequence
        ):
            raise ConfigurationError("images must be a list of links, even for one image")
        payload["images"] = [
            image_link(image, f"images[{index}]") for index, image in enumerate(images)
        ]
    if ar is not None:
        payload["ar"] = check_text("ar", ar)
    options = {key: value for key, value in extra.items() if value is not None}
    return payload | json_values("extra options", options)


class Media(TaskResource[MediaTask]):
    """``/media``: images, video and music from many models.

    Its tasks are [MediaTask][gptunnel_async.MediaTask]s. Errors come as HTTP 200 with
    a non-zero ``code``; they are raised as the same error classes as HTTP statuses,
    and code 6 (heavy load) is retried like a 503.

    Results are taken to live 24 hours, the shortest lifetime known for a media model:
    suno's files are "available for 48 hours" (docs.gptunnel.ru/media-api/suno), and a
    public client reports 24 hours for the image links of ``/media/generate``; the docs
    say nothing for the other models.
    """

    family = Family(
        "media/result", decode_media_task, id_param="task_id", result_lifetime=timedelta(hours=24)
    )

    @_create_call  # a ``webhook`` option holds its token
    async def create(
        self,
        /,  # so that no ``extra`` option may be named ``self``
        model: str,
        prompt: str,
        *,
        images: Sequence[str] | None = None,
        ar: str | None = None,
        **extra: Any,
    ) -> MediaTask:
        """Start a media generation.

        Args:
            model: the model's id, as GPTunnel lists it.
            prompt: what to generate.
            images: reference images as public http(s) links: the API fetches them and
                takes no uploads (no bytes, files, ``data:`` URIs or base64).
            ar: the aspect ratio, e.g. ``"16:9"``.
            extra: the model's other options, sent as given (``None`` ones left out).

        Returns:
            The new task: usually ``idle``, though some models answer ``done`` at once,
            with the result.

        Raises:
            ConfigurationError: a blank model or prompt, ``images`` that is not a list
                of http(s) links, options that are not JSON values, or a ``webhook``
                option that is not an absolute http(s) URL.
            BadRequestError: the API refused the input (code 3); its ``issues`` list
                each field at fault, and ``param`` names the first.
            ContentPolicyError: moderation blocked the prompt or an image.
            APIError: the API refused the task (media codes raise the same classes).
            ResponseDecodeError: the answer is not a task object, or its task id is
                unusable (blank, over 256 characters): the task may have started.
            APIConnectionError: the network failed.
        """
        payload = _media_payload(model, prompt, images, ar, extra)
        return await self._create("media/create", payload)

    async def generate(
        self,
        model: str,
        prompt: str,
        *,
        images: Sequence[str] | None = None,
        ar: str | None = None,
        policy: PollPolicy | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        on_progress: ProgressCallback[MediaTask] | None = None,
        **extra: Any,
    ) -> MediaTask:
        """Start a media generation and wait for it to finish.

        Args:
            model: the model's id, as GPTunnel lists it.
            prompt: what to generate.
            images: reference images as public http(s) links (see ``create``).
            ar: the aspect ratio, e.g. ``"16:9"``.
            policy: pacing and deadline of the wait.
            timeout: overrides the policy's deadline (seconds, or ``None`` for none).
            on_progress: called with each [ProgressEvent][]; may be async.
            extra: the model's other options, sent as given (``None`` ones left out).

        Returns:
            The done task, with ``url`` or its ``clips`` set. A task that says ``done``
            before its files appear (suno does) is read on until they do.

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: the deadline passed (``task`` is the last state seen,
                perhaps ``done`` with nothing to fetch yet).
            ConfigurationError: an argument is unusable.
            APIError: an error status that is not retried.
        """
        created = self.create(model, prompt, images=images, ar=ar, **extra)  # guarded itself
        # A webhook option's token, and the key if passed where an argument goes: not
        # locals of this frame while it waits.
        del model, prompt, images, ar, extra
        return await self._until_done(created, policy, timeout, on_progress)
