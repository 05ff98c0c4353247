"""The forward function as naming a wrong line needs it: gradgen's staged form and the names
of its gradients (from the compile), where each of its statements is in the file, and the
namespace its expressions run in."""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradgen.errors import GradgenError

if TYPE_CHECKING:
    from gradgen.ir import BackwardFunction
    from gradgen.stages import StagedFunction


@dataclass
class ForwardInfo:
    """What naming a wrong line needs: gradgen's staged form of the forward function and the
    name of each variable's gradient in gradgen's backward, where each of its statements is
    in the file, and the namespace its expressions run in."""

    staged: StagedFunction
    gradients: dict[str, str]  # variable -> its gradient's name (``dx``, ``d_x``, ...)
    filename: str
    def_line: int
    def_text: str
    lines: list[int]  # per statement of ``staged.statements``
    texts: list[str]  # the statement as written, on one line
    targets: list[str | None]  # the name it assigns (None: the return)
    globals: dict[str, Any]


def forward_info(
    backward: BackwardFunction,
    source: str,
    filename: str,
    globals_: dict[str, Any],
    line_offset: int = 0,
) -> ForwardInfo | None:
    """Positions of the statements of ``backward``'s forward function in ``source`` (whose
    line 1 is line ``line_offset + 1`` of ``filename``)."""
    staged = backward.staged
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == staged.name]
    if not found:
        return None
    function = found[-1]
    lines, texts, targets = [], [], []
    for position, statement in enumerate(function.body):
        if isinstance(statement, ast.Pass):
            continue
        is_docstring = (
            position == 0
            and isinstance(statement, ast.Expr)
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str)
        )
        if is_docstring:
            continue
        segment = ast.get_source_segment(source, statement) or ""
        lines.append(statement.lineno + line_offset)
        texts.append(" ".join(segment.split()))
        target: str | None = None
        if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
            target = statement.targets[0].id
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            target = statement.target.id
        targets.append(target)
    if len(lines) < len(staged.statements):
        return None
    def_segment = source.splitlines()[function.lineno - 1].strip()
    return ForwardInfo(
        staged,
        dict(backward.gradient_of),
        filename,
        function.lineno + line_offset,
        def_segment,
        lines,
        texts,
        targets,
        globals_,
    )


def function_info(
    f: Callable[..., Any], backward: BackwardFunction | None = None
) -> ForwardInfo | None:
    """``f``'s staged form and statement lines, read from its source as the decorator does
    (a function nested in another reads its own lines): from ``backward`` when the compile
    that made it is at hand, else compiled now; None when that is not possible."""
    code = getattr(f, "__code__", None)
    if code is None:
        return None
    try:
        lines, first = inspect.getsourcelines(f)
    except (OSError, TypeError):
        return None
    if backward is None:
        try:
            from gradgen.decorator import compile_function

            # Compiled as `gradgen` compiles it, under the same guard; no text is made.
            backward = compile_function(f, text="none").backward(f.__name__)
        except (ImportError, OSError, TypeError, GradgenError):
            return None  # no generator here (libcst), no source, or gradgen refuses f
    if backward is None:
        return None
    snippet = textwrap.dedent("".join(lines))
    return forward_info(backward, snippet, code.co_filename, f.__globals__, first - 1)
