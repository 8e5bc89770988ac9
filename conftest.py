"""Run the Python code blocks of the README, the docs and the package's docstrings as
tests, so that no example the docs show can rot.

Each file is one namespace whose blocks run in order, on one event loop, with
top-level ``await``, ``async for`` and ``async with`` allowed. Before its first block:

- a running ``FakeGPTunnel`` plays GPTunnel: ``GPTUNNEL_API_KEY`` and
  ``GPTUNNEL_BASE_URL`` point at it, ``fake`` is it, and the SDK's pauses are instant;
- the current folder is a new temporary one holding the sample images ``source.png``
  and ``face.png``;
- ``client`` is a ``GPTunnelClient`` for the emulator, and ``task_id`` a task there
  that reads ``queued``, then ``running`` 40 %, then ``done``.

A block that defines ``test_*`` functions also runs them, as pytest would, with a fresh
emulator as ``gptunnel_fake``, a temporary folder as ``tmp_path`` and a
``monkeypatch``. A block that must not run follows ``<!-- skip: next -->``; setup that
readers need not see goes in an ``<!-- invisible-code-block: python -->`` comment.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from gptunnel_async.testing import FakeGPTunnel, instant_waits, sample_image

_STACK = "__docs_harness_stack__"
_RUNNER = "__docs_harness_runner__"


def _setup(namespace: dict[str, Any]) -> None:
    stack = contextlib.ExitStack()
    namespace[_STACK] = stack
    fake = stack.enter_context(FakeGPTunnel())
    stack.enter_context(instant_waits())
    monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
    monkeypatch.setenv("GPTUNNEL_API_KEY", fake.api_key)
    monkeypatch.setenv("GPTUNNEL_BASE_URL", fake.base_url)
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    for name in ("source.png", "face.png"):
        (folder / name).write_bytes(sample_image(name))
    monkeypatch.chdir(folder)
    runner = stack.enter_context(asyncio.Runner())
    namespace[_RUNNER] = runner
    client = fake.client()
    stack.callback(runner.run, client.close())
    namespace.update(
        fake=fake,
        client=client,
        task_id=fake.script_task(steps=[("queued", 0), ("running", 40), ("done", 100)]),
    )


def _teardown(namespace: dict[str, Any]) -> None:
    namespace[_STACK].close()


@contextlib.contextmanager
def _fixtures(names: list[str]) -> Iterator[list[Any]]:
    """The values of the pytest-like fixtures a test function in the docs asks for."""
    with contextlib.ExitStack() as stack:
        makers: dict[str, Callable[[], Any]] = {
            "gptunnel_fake": lambda: stack.enter_context(FakeGPTunnel()),
            "tmp_path": lambda: Path(stack.enter_context(tempfile.TemporaryDirectory())),
            "monkeypatch": lambda: stack.enter_context(pytest.MonkeyPatch.context()),
        }
        unknown = [name for name in names if name not in makers]
        if unknown:
            raise LookupError(f"the docs harness has no fixture {', '.join(unknown)}")
        yield [makers[name]() for name in names]


def _evaluate(example: Example) -> None:
    """Run one block, awaiting it if it awaits, then any test functions it defined."""
    namespace = example.namespace
    runner: asyncio.Runner = namespace[_RUNNER]
    before = dict(namespace)
    source = "\n" * (example.line + example.parsed.line_offset) + example.parsed
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(source, example.path, "exec", flags=flags, dont_inherit=True)
    outcome = eval(code, namespace)
    if inspect.iscoroutine(outcome):
        runner.run(outcome)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and inspect.isfunction(value) and before.get(name) is not value:
            with _fixtures(list(inspect.signature(value).parameters)) as arguments:
                result = value(*arguments)
                if inspect.iscoroutine(result):
                    runner.run(result)


pytest_collect_file = Sybil(
    [CodeBlockParser(language="python", evaluator=_evaluate), SkipParser()],
    patterns=[
        "README.md",
        "docs/*.md",
        "docs/*/*.md",
        "gptunnel_async/*.py",
        "gptunnel_async/*/*.py",
    ],
    setup=_setup,
    teardown=_teardown,
).pytest()
