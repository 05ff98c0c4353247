"""Functions with no file behind them: defined in a notebook cell, at IPython's prompt, or
by ``exec`` of text registered with ``linecache``.

gradgen reads a function's text, never runs it, and takes the imports and constants its
code uses from the text of its module. For a function in a file that is the file. A notebook
cell holds only part of its module: the imports are in the first cell, the constants and the
functions it calls in others, and the kernel keeps each cell's text apart. So for such a
function gradgen reads the cell's text followed by lines that bind each name the cell's code
reads and does not bind, as the function's globals bind it when the decorator runs, which is
how Python itself resolves the name:

- a module: ``import numpy as np``, under its real name (``import scipy.special as sp``);
- a function of a library: ``from scipy.special import expit as sigmoid``, from the shortest
  public module that holds it (so the rules table knows it as it knows the file's imports);
- a function defined in the same globals (an earlier cell): its own text, whose free names
  are bound the same way, and the text of its ``@gradgen.backward_of`` rule if it has one;
- anything else (a number, an array, a random generator): module data, constant for
  gradients and of no assumed shape, read from the globals when the backward runs, as the
  forward reads it. A number is data, not a constant copied into the backward: a notebook
  rebinds names, and a copied value would then differ from the one the forward reads.

The lines appended after the cell keep the cell's own line numbers; refusals located in a
function taken from another cell are reported in that cell (``relocated``).
"""

from __future__ import annotations

import inspect
import linecache
import symtable
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

# Where a line of the text gradgen reads comes from, when not from the cell itself: the
# file, its line, and the line's text (shown under a refusal).
Origin = tuple[str, int, str]

# The right-hand side that makes a name module data (any call is: the module computes it).
DATA_VALUE = "__gradgen_module_data__()"


@dataclass
class CellText:
    """The text gradgen reads for a function with no file: the cell's, then bindings."""

    text: str
    relocated: dict[int, Origin] = field(default_factory=dict)  # line of ``text`` -> origin


def with_free_names(func: Callable[..., Any], cell: str) -> CellText:
    """``cell`` (the text of ``func``'s cell), followed by lines binding the names its code
    reads and does not bind, resolved in ``func``'s globals (see the module's docstring)."""
    namespace: dict[str, Any] = func.__globals__
    code = func.__code__
    # A binding is located at the function (its first line), whose name it resolves.
    first = code.co_firstlineno
    here = (code.co_filename, first, linecache.getline(code.co_filename, first, namespace))
    result = CellText(cell if not cell or cell.endswith("\n") else cell + "\n")
    bound = _bound_names(cell)
    pending = sorted(_free_names(cell) - bound)
    # The lines each name adds, and where each of them comes from. All are at the top level,
    # where their order does not matter to gradgen (nor to a function reading its globals).
    added: list[tuple[list[str], list[Origin]]] = []
    while pending:
        name = pending.pop(0)
        if name in bound or name not in namespace:
            continue  # a builtin, or undefined: gradgen says so where it is read
        bound.add(name)
        value = namespace[name]
        pieces = _function_pieces(name, value, namespace)
        if pieces is not None:
            for lines, (filename, start) in pieces:
                text = "".join(lines)
                where = [(filename, start + i, line) for i, line in enumerate(lines)]
                added.append((lines, where))
                bound |= _bound_names(text)
                pending.extend(sorted(_free_names(text) - bound))
            continue
        line = _binding(name, value)
        added.append(([line + "\n"], [here]))
    if not added:
        return result
    parts = [result.text]
    line_number = result.text.count("\n") + 1
    for lines, origins in added:
        for piece, origin in zip(lines, origins, strict=True):
            parts.append(piece if piece.endswith("\n") else piece + "\n")
            result.relocated[line_number] = origin
            line_number += 1
    result.text = "".join(parts)
    return result


def _function_pieces(
    name: str, value: Any, namespace: dict[str, Any]
) -> list[tuple[list[str], tuple[str, int]]] | None:
    """The texts (lines, and where they start) of a function defined in ``namespace`` (an
    earlier cell) under its own ``name``, and of its ``@gradgen.backward_of`` rule; None
    for any other value."""
    if not inspect.isfunction(value) or value.__globals__ is not namespace:
        return None
    if value.__name__ != name:
        return None  # bound under another name: its text would define another
    pieces: list[tuple[list[str], tuple[str, int]]] = []
    for function in (value, getattr(value, "backward", None)):
        if not inspect.isfunction(function) or function.__globals__ is not namespace:
            continue  # f.backward of @differentiable runs in a namespace of its own
        try:
            lines, first = inspect.getsourcelines(function)
        except (OSError, TypeError):
            return None if function is value else pieces
        if not lines or lines[0][:1].isspace():
            return None if function is value else pieces  # not at its cell's top level
        pieces.append((lines, (function.__code__.co_filename, first)))
    return pieces


def _binding(name: str, value: Any) -> str:
    """The line that binds ``name`` to ``value`` in the text gradgen reads."""
    if isinstance(value, ModuleType):
        module = value.__name__
        return f"import {module}" if module == name else f"import {module} as {name}"
    found = _public_home(value)
    if found is not None:
        module, attr = found
        return f"from {module} import {attr}" + ("" if attr == name else f" as {name}")
    return f"{name} = {DATA_VALUE}"


def _public_home(value: Any) -> tuple[str, str] | None:
    """The shortest public module holding ``value`` under its own name, and that name:
    ``("numpy", "exp")`` for ``np.exp``, ``("scipy.special", "expit")``; None for a value
    that is no library's function or class (data)."""
    attr = getattr(value, "__name__", None)
    if not callable(value) or not isinstance(attr, str) or not attr.isidentifier():
        return None
    declared = getattr(value, "__module__", None)
    candidates: Iterable[str]
    if isinstance(declared, str) and declared not in ("__main__", "builtins"):
        parts = declared.split(".")
        candidates = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    else:  # numpy's and scipy's ufuncs say no module: look where they are imported
        candidates = list(sys.modules)
    found = [
        module
        for module in candidates
        if not any(part.startswith("_") for part in module.split("."))
        and module != "__main__"
        and _holds(sys.modules.get(module), attr, value)
    ]
    if not found:
        return None
    return min(found, key=lambda m: (m.count("."), len(m), m)), attr


def _holds(module: ModuleType | None, attr: str, value: Any) -> bool:
    try:
        return module is not None and vars(module).get(attr) is value
    except TypeError:  # a module-like object with no __dict__
        return False


def _free_names(text: str) -> set[str]:
    """The global names ``text``'s code reads: at its top level, or in its functions
    without binding them there."""
    try:
        table = symtable.symtable(text, "<cell>", "exec")
    except (SyntaxError, ValueError):
        return set()  # gradgen's own reading says what is wrong with it
    found = {s.get_name() for s in table.get_symbols() if s.is_referenced() and not s.is_local()}
    pending = list(table.get_children())
    while pending:
        scope = pending.pop()
        found |= {s.get_name() for s in scope.get_symbols() if s.is_referenced() and s.is_global()}
        pending.extend(scope.get_children())
    return found


def _bound_names(text: str) -> set[str]:
    """The names ``text`` binds at its top level."""
    try:
        table = symtable.symtable(text, "<cell>", "exec")
    except (SyntaxError, ValueError):
        return set()
    return {s.get_name() for s in table.get_symbols() if s.is_local()}
