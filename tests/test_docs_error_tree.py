"""The error trees of the README and of docs/errors.md name every error the SDK raises,
each under its own base class, so that a reader choosing an ``except`` clause from them
misses none (the fleet's and the webhooks' errors were left out once)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gptunnel_async.errors as errors_module
from gptunnel_async.errors import GPTunnelError

ROOT = Path(__file__).resolve().parent.parent
_BRANCH = re.compile(r"^(?P<indent>[│ ]*)[├└]── (?P<name>\w+)")


def _error_classes() -> dict[str, type[GPTunnelError]]:
    """Every public error class of ``gptunnel_async.errors``, where the SDK defines them."""
    return {
        name: value
        for name, value in vars(errors_module).items()
        if isinstance(value, type) and issubclass(value, GPTunnelError) and not name.startswith("_")
    }


def _tree(path: Path) -> dict[str, str]:
    """The tree drawn in ``path``'s text block that starts with ``GPTunnelError``: each
    class's name mapped to its parent's."""
    text = path.read_text(encoding="utf-8")
    block = re.search(r"```text\nGPTunnelError\n(.*?)```", text, re.DOTALL)
    assert block is not None, f"{path.name} draws no error tree"
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = [(-1, "GPTunnelError")]
    for line in block.group(1).splitlines():
        match = _BRANCH.match(line)
        assert match is not None, f"{path.name}: not a branch of the tree: {line!r}"
        depth = len(match["indent"])
        while stack[-1][0] >= depth:
            stack.pop()
        parents[match["name"]] = stack[-1][1]
        stack.append((depth, match["name"]))
    return parents


@pytest.mark.parametrize("document", ["README.md", "docs/errors.md"])
def test_the_error_tree_names_every_error_under_its_base(document: str) -> None:
    classes = _error_classes()
    tree = _tree(ROOT / document)
    missing = sorted(set(classes) - set(tree) - {"GPTunnelError"})
    assert not missing, f"{document}'s error tree leaves out {', '.join(missing)}"
    for name, parent in tree.items():
        assert name in classes, f"{document} names {name}, which the SDK does not define"
        assert classes[name].__bases__[0] is classes[parent], (name, parent)
