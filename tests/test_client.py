"""The client's configuration, session ownership and request shape."""

from __future__ import annotations

import gc
import os
import re
import warnings

import aiohttp
import pytest
from aioresponses import aioresponses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from gptunnel_async import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GPTunnelClient,
    InsufficientBalanceError,
    ResponseDecodeError,
    Task,
    UsageError,
)

from .conftest import API_KEY, ScriptedAPI, task_json

BASE = "https://gptunnel.ru/v1"
RESULT_URL = re.compile(r"^https://gptunnel\.ru/v1/faceswap/result\?.*$")


# -- configuration ------------------------------------------------------------------


def test_missing_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="GPTUNNEL_API_KEY"):
        GPTunnelClient()


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTUNNEL_API_KEY", "env-key")
    monkeypatch.setenv("GPTUNNEL_BASE_URL", "http://127.0.0.1:9/v2/")
    client = GPTunnelClient()
    assert client.base_url == "http://127.0.0.1:9/v2"


def test_default_base_url_is_the_documented_one() -> None:
    assert GPTunnelClient(api_key="k").base_url == BASE


@pytest.mark.parametrize(
    "key",
    [
        "",
        "sk7q\nX-Injected: 1",
        "sk7q\r\n",
        " sk7q",
        "sk7q ",
        "sk\x007q",
        "sk\t7q",
        "sk7q\x85X-Injected: 1",  # NEL, a C1 control some parsers take for a line break
        "sk7q\u2028more",  # LINE SEPARATOR
        "sk7q-ключ",
    ],
)
def test_unusable_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        GPTunnelClient(api_key=key)
    assert "sk" not in str(caught.value)


WRAPPED_KEYS = {
    "Bearer sk7q-secret": "starts with 'Bearer ': GPTunnel takes the bare key",
    "bearer sk7q-secret": "starts with 'Bearer ': GPTunnel takes the bare key",
    "BEARER sk7q-secret": "starts with 'Bearer ': GPTunnel takes the bare key",
    '"sk7q-secret"': "wrapped in quotes",
    "'sk7q-secret'": "wrapped in quotes",
}


@pytest.mark.parametrize("key", sorted(WRAPPED_KEYS))
@pytest.mark.parametrize("given", ["api_key=", "GPTUNNEL_API_KEY"])
def test_a_key_with_a_bearer_prefix_or_quotes_is_refused_saying_so(
    key: str, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPTUNNEL_API_KEY", key)
    with pytest.raises(ConfigurationError) as caught:
        GPTunnelClient(api_key=key) if given == "api_key=" else GPTunnelClient()
    assert WRAPPED_KEYS[key] in str(caught.value)
    assert "sk7q" not in str(caught.value)


@pytest.mark.parametrize("key", ["Bearer", "bearer-sk7q", "sk7q'", "'sk7q", '"', "sk'7q'"])
def test_a_key_that_only_looks_wrapped_is_taken(key: str) -> None:
    assert GPTunnelClient(api_key=key)  # no prefix and space, no pair of quotes around it


@pytest.mark.parametrize(
    "url",
    [
        "ftp://gptunnel.ru/v1",
        "gptunnel.ru/v1",
        "https://gptunnel.ru/v1?x=1",
        "https://gptunnel.ru/v1#frag",
        "https://user:pw@gptunnel.ru/v1",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "https://gptunnel.ru:99999/v1",
        "https://[::1/v1",
    ],
)
def test_unusable_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        GPTunnelClient(api_key="k", base_url=url)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"timeout": True},
        {"timeout": "30"},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"session": object()},
        {"poll_policy": {"initial": 1}},
    ],
)
def test_nonsense_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        GPTunnelClient(api_key="k", **options)  # type: ignore[arg-type]


def test_repr_never_shows_the_key() -> None:
    client = GPTunnelClient(api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(client)
    assert "sk-very-secret" not in repr(client.faceswap)
    assert "sk-very-secret" not in str(vars(client))


@pytest.mark.parametrize("task_id", ["", "   ", "\n", "\t\r\n ", None, 123, b"task", "bad\ud800id"])
async def test_unusable_task_ids_fail_before_any_request(
    task_id: str, mocked: aioresponses
) -> None:
    async with GPTunnelClient(api_key="k") as client:
        with pytest.raises(ValueError, match="task_id"):
            await client.get_result(task_id)
        with pytest.raises(ValueError, match="task_id"):
            client.wait_for_result(task_id)
    assert mocked.requests == {}


# -- request shape ------------------------------------------------------------------


async def test_get_result_sends_bare_key_and_task_id_as_query(mocked: aioresponses) -> None:
    task_id = "65819c485337280001a609e7"
    mocked.get(RESULT_URL, payload=task_json(status="done", percent=100, id=task_id))
    async with GPTunnelClient(api_key="sk-abc") as client:
        task = await client.get_result(task_id)
    assert task.is_done
    [(method, url)] = mocked.requests
    assert method == "GET"
    assert url.path == "/v1/faceswap/result"
    assert url.query["taskId"] == "65819c485337280001a609e7"
    [call] = mocked.requests[(method, url)]
    assert call.kwargs["headers"]["Authorization"] == "sk-abc"
    assert call.kwargs["allow_redirects"] is False


async def test_each_task_id_reaches_the_server_as_sent_however_many_are_read(
    api: ScriptedAPI,
) -> None:
    """Hundreds of reads of different ids, reserved characters among them: each asks for
    its own task."""
    api.script(task_json())
    reserved = ["a b", "a&taskId=b", "a/b?c#d", "50%", "é+ü", "x"]
    many = [f"task-{n}" for n in range(300)]
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url) as client:
        for task_id in [*reserved, *many, *reserved]:
            await client.get_result(task_id)
    sent = [request["query"] for request in api.requests]
    assert sent == [{"taskId": task_id} for task_id in [*reserved, *many, *reserved]]


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, {"error": {"message": "'taskId' is a required property"}}, BadRequestError),
        (401, {"error": {"message": "Unauthorized"}}, AuthenticationError),
        (402, "{error: not json", InsufficientBalanceError),
    ],
)
async def test_client_errors_raise_their_class_after_one_request(
    status: int, body: object, cls: type[Exception], mocked: aioresponses
) -> None:
    if isinstance(body, str):
        mocked.get(RESULT_URL, status=status, body=body)
    else:
        mocked.get(RESULT_URL, status=status, payload=body)
    async with GPTunnelClient(api_key="k") as client:
        with pytest.raises(cls):
            await client.get_result("t")
    assert sum(len(calls) for calls in mocked.requests.values()) == 1


async def test_a_2xx_body_that_is_not_a_task_raises_at_once(mocked: aioresponses) -> None:
    mocked.get(RESULT_URL, body="<html>maintenance</html>", content_type="text/html")
    async with GPTunnelClient(api_key="k") as client:
        with pytest.raises(ResponseDecodeError) as caught:
            await client.get_result("t")
    assert caught.value.status_code == 200
    assert "maintenance" in caught.value.body
    assert sum(len(calls) for calls in mocked.requests.values()) == 1


@pytest.mark.parametrize(
    "task_id", ["a&b=c", "x#frag", "../../balance", "what?now", "with space", "задача", "1+1"]
)
async def test_odd_task_ids_arrive_intact_as_one_query_value(
    task_id: str, client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.script(task_json(status="done", percent=100))
    await client.get_result(task_id)
    [request] = api.requests
    assert request["path"] == "/v1/faceswap/result"
    assert request["query"] == {"taskId": task_id}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    task_id=st.text(st.characters(exclude_categories=["Cs"]), min_size=1).filter(
        lambda text: text.strip() == text and text and text.isprintable()
    )
)
async def test_any_usable_task_id_arrives_intact_as_one_query_value(
    task_id: str, client: GPTunnelClient, api: ScriptedAPI
) -> None:
    api.requests.clear()
    api.script(task_json(status="done", percent=100))
    await client.get_result(task_id)
    [request] = api.requests
    assert request["path"] == "/v1/faceswap/result"
    assert request["query"] == {"taskId": task_id}


# -- session ownership ----------------------------------------------------------------


async def test_borrowed_session_is_used_and_never_closed(api: ScriptedAPI) -> None:
    api.script(task_json(status="done", percent=100))
    async with aiohttp.ClientSession() as session:
        async with GPTunnelClient(api_key="k", base_url=api.base_url, session=session) as client:
            assert isinstance(await client.get_result("t"), Task)
        assert client.closed
        assert not session.closed


async def test_owned_session_is_created_lazily_and_closed(api: ScriptedAPI) -> None:
    api.script(task_json(status="done", percent=100))
    client = GPTunnelClient(api_key="k", base_url=api.base_url)
    assert client._session is None
    await client.get_result("t")
    session = client._session
    assert session is not None
    await client.close()
    assert session.closed
    await client.close()  # idempotent


async def test_a_client_dropped_unclosed_names_itself_in_a_warning_and_a_log_line(
    api: ScriptedAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's own report names an anonymous ClientSession: in a bot that has several,
    whose it is was anyone's guess."""
    api.script(task_json(status="done", percent=100))
    clients = [GPTunnelClient(api_key=API_KEY, base_url=api.base_url)]
    await clients[0].get_result("t")
    session = clients[0]._session
    assert session is not None
    with pytest.warns(ResourceWarning) as caught:
        _drop(clients)
    await session.close()  # the test's own: the client is gone
    [ours] = [str(w.message) for w in caught if "GPTunnelClient" in str(w.message)]
    assert ours.startswith(f"unclosed GPTunnelClient(base_url='{api.base_url}'): use `async with")
    [line] = [r for r in caplog.records if r.name == "gptunnel_async"]
    assert (line.levelname, line.getMessage()) == ("ERROR", ours)
    assert API_KEY not in ours


@pytest.mark.parametrize("how", ["closed", "never sent", "borrowed session"])
async def test_a_client_with_nothing_left_open_drops_silently(
    api: ScriptedAPI, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.script(task_json(status="done", percent=100))
    async with aiohttp.ClientSession() as borrowed:
        session = borrowed if how == "borrowed session" else None
        clients = [GPTunnelClient(api_key=API_KEY, base_url=api.base_url, session=session)]
        if how != "never sent":
            await clients[0].get_result("t")
        if how == "closed":
            await clients[0].close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning from the drop fails the test
            _drop(clients)
    assert [r for r in caplog.records if r.name == "gptunnel_async"] == []


async def test_a_forked_child_s_copy_of_a_client_drops_silently(
    api: ScriptedAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """The session belongs to the parent, which closes it: the child's copy (a worker
    of a pre-forking server that never used the client) is not unclosed."""
    api.script(task_json(status="done", percent=100))
    clients = [GPTunnelClient(api_key=API_KEY, base_url=api.base_url)]
    await clients[0].get_result("t")
    session = clients[0]._session  # the parent's, still open, closed by the parent below
    assert session is not None
    clients[0]._session_pid = -1  # as the copy in a child sees it: the parent's session
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _drop(clients)
    await session.close()
    assert [r for r in caplog.records if r.name == "gptunnel_async"] == []


def test_an_unclosed_client_s_log_line_comes_even_where_its_warning_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Session:
        closed = False

    client = GPTunnelClient(api_key=API_KEY, base_url="http://127.0.0.1:9/v1")
    client._session = Session()  # type: ignore[assignment]
    client._session_pid = os.getpid()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(ResourceWarning):
            client.__del__()
    client._session = None
    [line] = [r.getMessage() for r in caplog.records if r.name == "gptunnel_async"]
    assert line.startswith("unclosed GPTunnelClient(base_url='http://127.0.0.1:9/v1')")


def _drop(clients: list[GPTunnelClient]) -> None:
    """Drop the last references to ``clients`` and collect them (a client is in a
    reference cycle: its transport calls back into it)."""
    clients.clear()
    gc.collect()


async def test_a_closed_client_refuses_requests_clearly(api: ScriptedAPI) -> None:
    client = GPTunnelClient(api_key="k", base_url=api.base_url)
    await client.close()
    with pytest.raises(UsageError, match="closed"):
        await client.get_result("t")
    with pytest.raises(UsageError, match="closed"):
        await client.wait_for_result("t")
    with pytest.raises(UsageError):
        async with client:
            pass
    assert api.requests == []


async def test_a_closed_borrowed_session_is_a_usage_error(api: ScriptedAPI) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    client = GPTunnelClient(api_key="k", base_url=api.base_url, session=session)
    with pytest.raises(UsageError, match="session"):
        await client.get_result("t")


async def test_requests_go_only_to_the_base_url_origin(api: ScriptedAPI) -> None:
    api.script(task_json(status="done", percent=100))
    async with GPTunnelClient(api_key=API_KEY, base_url=api.base_url) as client:
        await client.get_result("t")
    assert URL(api.base_url).origin() == URL(api.origin).origin()
    assert api.requests[0]["headers"]["Authorization"] == API_KEY


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    lead=st.sampled_from(["", " ", "\t", "\n", "\r\n ", "\x00", "\x1f "]),
    scheme=st.sampled_from(["https", "http", "htps", "ftp", "file", "", "HTTPS", "ht tps"]),
    slashes=st.sampled_from(["//", "/", "", "\\\\", "///"]),
    user=st.sampled_from(["", "u:", "user:"]),
    host=st.sampled_from(["h", "gptunnel.ru", "a..b", "h:99999", "[::1", "xn--", ""]),
    where=st.sampled_from(["userinfo", "path"]),
)
def test_a_refused_base_url_never_quotes_its_credentials_or_the_key(
    lead: str, scheme: str, slashes: str, user: str, host: str, where: str
) -> None:
    key = "sk-base-url-secret-0123456789"
    password = "pw-not-to-be-shown-123"
    head = lead + (f"{scheme}:" if scheme else "")
    if where == "userinfo":
        url = f"{head}{slashes}{user}{password}@{host}/v1"
    else:
        url = f"{head}{slashes}{host}/{key}/v1"
    refusal: ConfigurationError | None = None
    try:
        GPTunnelClient(api_key=key, base_url=url)
    except ConfigurationError as exc:
        refusal = exc
    shown = "" if refusal is None else str(refusal)
    assert password not in shown
    assert key not in shown
    assert refusal is None or refusal.__context__ is None
