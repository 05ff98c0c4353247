"""The design holds: every fact about an operation lives in its rule.

No module but ``rules.py`` compares a value with the name of an operation (``func.name ==
"arange"``, ``name in ("full_like", "broadcast_to")``): such a comparison is a fact about an
operation found outside its rule, and adding or changing an operation would need edits in
several modules. The check reads the package's source as text and Python syntax.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gradgen.rules import (
    METHODS,
    NONDIFFERENTIABLE,
    RULES,
    SIGNATURES,
    TEMPLATE_ALIASING,
    known_functions,
)

PACKAGE = Path(__file__).resolve().parent.parent / "gen" / "gradgen"

# Names of types, which are also operations (``float(x)``, ``np.array``): outside the rules
# module they are read as annotations (``x: float``, ``x: "array"``) and dtypes, not as calls.
TYPE_NAMES = frozenset({"float", "int", "bool", "array"})
# Methods of lists, which are also numpy functions (``np.append``): parse.py reads
# ``hs.append(h)`` in a loop as a list filled, never as the numpy function.
LIST_METHODS = frozenset({"append"})


def operation_names() -> frozenset[str]:
    """Every name by which the table knows an operation or a function with no gradient."""
    names = {r.name for r in RULES}
    names |= {name for _, name in known_functions()}
    names |= {name for _, name in NONDIFFERENTIABLE}
    names |= set(METHODS) | set(METHODS.values()) | {name for _, name in SIGNATURES}
    names |= set(TEMPLATE_ALIASING)  # the functions adjoint templates call
    return frozenset(names - TYPE_NAMES - LIST_METHODS)


def _strings_compared(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, string) for each string literal compared with ``==``, ``!=``, ``in`` or
    ``not in`` (alone or in a tuple, list or set display)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for operand in [node.left, *node.comparators]:
            items = (
                operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            )
            for item in items:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    found.append((node.lineno, item.value))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "rules.py")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_operation_name_is_compared_outside_the_rules_module(path: Path) -> None:
    names = operation_names()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    compared = [f"line {line}: {text!r}" for line, text in _strings_compared(tree) if text in names]
    assert not compared, f"{path.name} compares operation names: {compared}"


def test_the_check_sees_a_comparison() -> None:
    """The check above finds what it looks for (it would pass on any file otherwise)."""
    tree = ast.parse('if call.func.name in ("full_like", "broadcast_to"): pass\nx == "arange"')
    assert [text for _, text in _strings_compared(tree)] == [
        "full_like",
        "broadcast_to",
        "arange",
    ]
    assert {"full_like", "arange", "sum", "reshape", "exp"} <= operation_names()
