"""Every public name says what it is, and every public callable documents its arguments
and what it returns, in the Google style that the API reference is generated from.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import gptunnel_async
from gptunnel_async import GPTunnelClient, cli, errors, families, models, testing, webhooks

MODULES: tuple[ModuleType, ...] = (
    gptunnel_async,
    models,
    errors,
    families,
    testing,
    cli,
    webhooks,
)
SECTION = re.compile(r"^(\w[\w ]*):\s*$")
ENTRY = re.compile(r"^\s+(\**\w+)(?: \(.*?\))?:")


def _sections(doc: str) -> dict[str, set[str]]:
    """The Google-style sections of ``doc`` and the names each one lists."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in inspect.cleandoc(doc).splitlines():
        if match := SECTION.match(line):
            current = sections.setdefault(match[1], set())
        elif current is not None and (entry := ENTRY.match(line)):
            current.add(entry[1].lstrip("*"))
        elif line and not line[0].isspace():
            current = None
    return sections


def _is_ours(obj: Any) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("gptunnel_async")


def _public_classes() -> Iterator[type]:
    """Classes exported by the public modules, and those of the client's attributes
    (``client.faceswap``...), which users reach without importing them."""
    seen: set[type] = set()
    exported = [getattr(module, name) for module in MODULES for name in module.__all__]
    client = GPTunnelClient(api_key="key")
    reachable = [type(value) for name, value in vars(client).items() if not name.startswith("_")]
    for cls in [*exported, *reachable]:
        if inspect.isclass(cls) and _is_ours(cls) and cls not in seen:
            seen.add(cls)
            yield cls


def _public_callables() -> Iterator[tuple[str, Any]]:
    """``(qualified name, function or property)`` for every public function and member."""
    for module in MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value) and _is_ours(value):
                yield f"{module.__name__}.{name}", value
    for cls in _public_classes():
        for klass in cls.__mro__:
            if not _is_ours(klass):
                continue
            for name, member in vars(klass).items():
                if name.startswith("_"):
                    continue
                if inspect.isfunction(member) or isinstance(member, property | classmethod):
                    yield f"{cls.__name__}.{name}", member


CLASSES = sorted(_public_classes(), key=lambda cls: cls.__name__)
CALLABLES = sorted(dict(_public_callables()).items())


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_public_class_documents_what_it_takes(cls: type) -> None:
    doc = cls.__doc__ or ""
    assert doc.strip(), f"{cls.__name__} has no docstring"
    sections = _sections(doc)
    documented = sections.get("Args", set()) | sections.get("Attributes", set())
    if attrs.has(cls):
        wanted = {field.name for field in attrs.fields(cls)}
    elif "__init__" not in vars(cls) or getattr(cls, "_is_protocol", False):
        wanted = set()
    else:
        parameters = inspect.signature(vars(cls)["__init__"]).parameters
        wanted = {name for name in parameters if name != "self"}
    assert wanted <= documented, f"{cls.__name__} does not document {wanted - documented}"


@pytest.mark.parametrize(("name", "member"), CALLABLES, ids=[name for name, _ in CALLABLES])
def test_every_public_callable_documents_its_arguments_and_result(name: str, member: Any) -> None:
    function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    doc = function.__doc__ or ""
    assert doc.strip(), f"{name} has no docstring"
    if isinstance(member, property):
        return
    sections = _sections(doc)
    parameters = set(inspect.signature(function).parameters) - {"self", "cls"}
    missing = parameters - sections.get("Args", set())
    assert not missing, f"{name} does not document {missing} under Args:"
    returns = inspect.signature(function).return_annotation
    if returns not in ("None", None, inspect.Signature.empty, "NoReturn"):
        assert {"Returns", "Yields"} & set(sections), f"{name} has no Returns: section"


def _documented_assignments() -> dict[str, bool]:
    """For each module-level assignment in the package: is a string literal next to it?"""
    found: dict[str, bool] = {}
    for path in Path(gptunnel_async.__file__).parent.rglob("*.py"):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for statement, following in zip(body, [*body[1:], None], strict=True):
            targets = (
                statement.targets
                if isinstance(statement, ast.Assign)
                else [statement.target]
                if isinstance(statement, ast.AnnAssign)
                else []
            )
            documented = isinstance(following, ast.Expr) and isinstance(
                following.value, ast.Constant
            )
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = found.get(target.id, False) or documented
    return found


DATA = sorted(
    {
        name
        for module in MODULES
        for name in module.__all__
        if not name.startswith("__")
        and not inspect.isclass(getattr(module, name))
        and not inspect.isfunction(getattr(module, name))
    }
)


@pytest.mark.parametrize("name", DATA)
def test_every_public_constant_has_a_docstring(name: str) -> None:
    assert _documented_assignments().get(name), f"{name} has no docstring after it"
