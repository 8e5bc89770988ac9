"""No function of the SDK, its examples or its benchmarks is above radon's grade B
(cyclomatic complexity 10): a function that needs more mixes concerns, and its
decisions go into pure code of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from radon.complexity import cc_rank, cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).parent.parent
CHECKED = ("gptunnel_async", "examples", "benchmarks")


def blocks(found: list[Function | Class]) -> Iterator[Function | Class]:
    """Every function, method, class and closure in what radon found, nested ones too."""
    for block in found:
        yield block
        if isinstance(block, Class):
            yield from blocks(list(block.methods) + list(block.inner_classes))
        else:
            yield from blocks(list(block.closures))


def test_the_checker_sees_nested_functions() -> None:
    source = "def outer():\n    def inner(x):\n" + "".join(
        f"        if x == {n}:\n            return {n}\n" for n in range(11)
    )
    graded = {block.name: cc_rank(block.complexity) for block in blocks(cc_visit(source))}
    assert graded == {"outer": "A", "inner": "C"}


def test_no_function_is_above_grade_b() -> None:
    above = [
        f"{path.relative_to(ROOT)}:{block.lineno} {block.name} {cc_rank(block.complexity)}"
        f" ({block.complexity})"
        for folder in CHECKED
        for path in sorted((ROOT / folder).rglob("*.py"))
        for block in blocks(cc_visit(path.read_text()))
        if cc_rank(block.complexity) not in ("A", "B")
    ]
    assert above == []
