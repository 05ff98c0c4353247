"""``cstwalk.descendants`` finds the nodes libcst's own ``children`` finds, every one.

The passes that only collect (the names a function uses, whether it holds a loop or a
conditional expression) read a node's dataclass fields instead of asking libcst, which
copies a node to list its children: a node it missed would be a name gradgen might reuse,
or a loop or conditional expression left unread.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from gradgen.cstwalk import contains, descendants

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "examples").glob("*.py")) + sorted((ROOT / "tests" / "cases").glob("*.py"))


def _by_children(node: cst.CSTNode) -> list[cst.CSTNode]:
    found, pending = [], [node]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.children)
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_descendants_are_the_nodes_children_reaches(path: Path) -> None:
    module = cst.parse_module(path.read_text(encoding="utf-8"))
    expected = _by_children(module)
    found = list(descendants(module))
    assert len(found) == len(expected)
    assert {id(n) for n in found} == {id(n) for n in expected}


def test_contains_looks_at_every_depth() -> None:
    module = cst.parse_module("def f(x):\n    return [g(a if c else b) for a in x]\n")
    assert contains(module, cst.IfExp)
    assert contains(module, (cst.While, cst.CompFor))
    assert not contains(module, (cst.For, cst.While))
