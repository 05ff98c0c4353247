"""The backward, instrumented: a copy of a backward function that records every gradient it
writes, after each statement, and the forward statement each statement comes from. What
naming the wrong forward line reads.

For gradgen's own backward, what each statement writes and where it comes from are the
compile's (``Compiled.ties``, one per statement of the function body, in order). A
backward given to the check (hand-written or hand-edited) is read as it is: the names it
writes that look like gradients (``d...``), and the ``# backprop`` comment each statement is
under.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from gradgen.emit import Tie

_RECORD = "__gradcheck_record__"
_FACTORY = "__gradcheck_factory__"


def _snapshot(value: Any) -> Any:
    """A copy of a gradient as it is now: later in-place writes must not change it."""
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


@dataclass
class Backward:
    """A backward function, and what its instrumented copy recorded on its last call.

    ``records`` holds ``(line, name, value)`` for each gradient written by a statement of
    the function body (the compile's names, or for a backward gradgen did not write, the
    names that look like gradients: ``d...``), copied right after that statement. ``tied``
    maps each line of a statement of gradgen's own backward to the forward statement it
    comes from (an index into ``StagedFunction.statements``); for another backward
    ``groups`` maps a line of the body to the ``# backprop ...`` comment above it, as
    ``(comment line, text)``.
    """

    function: Callable[..., Any]
    filename: str = ""
    records: list[tuple[int, str, Any]] = field(default_factory=list)
    groups: dict[int, tuple[int, str]] = field(default_factory=dict)
    tied: dict[int, int] | None = None  # gradgen's own backward: line -> forward statement
    instrumented: bool = False
    pair_forward: Callable[..., Any] | None = None  # F_forward -> (value, cache): pairs
    returned_names: tuple[str, ...] | None = None  # names in its return statement

    def call(self, args: Sequence[Any], upstream: Any) -> Any:
        """The gradients at ``args`` for the upstream gradient ``upstream`` (a tuple of
        them, ``run.Upstreams``, for a function returning several values)."""
        self.records.clear()
        several = isinstance(upstream, tuple)
        upstreams = tuple(upstream) if several else (upstream,)
        if self.pair_forward is not None:
            *_, cache = self.pair_forward(*args)
            return self.function(*upstreams, cache)
        parameters = list(inspect.signature(self.function).parameters.values())
        if several:
            # Several upstreams: the last parameters, keyword-only, by name.
            names = [p.name for p in parameters[-len(upstreams) :]]
            return self.function(*args, **dict(zip(names, upstreams, strict=True)))
        last = parameters[-1] if parameters else None
        if last is not None and last.kind in (last.POSITIONAL_OR_KEYWORD, last.KEYWORD_ONLY):
            # By name: after parameters with defaults the upstream gradient is keyword-only.
            return self.function(*args, **{last.name: upstream})
        return self.function(*args, upstream)

    def final_values(self) -> dict[str, Any]:
        """Each recorded name's value after the last statement that wrote it."""
        return {name: value for _, name, value in self.records}


def _written_names(statement: ast.stmt) -> set[str]:
    """Names a statement may write: assigned, augmented, written into by item or by a call
    (``np.add.at(dx, ...)``, ``dx.fill(0)``)."""
    names: set[str] = set()
    for node in ast.walk(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.AugAssign, ast.Assign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                while isinstance(target, (ast.Subscript, ast.Attribute)):
                    target = target.value
                if isinstance(target, ast.Name):
                    names.add(target.id)
        elif isinstance(node, ast.Call):
            if node.args and isinstance(node.args[0], ast.Name):
                names.add(node.args[0].id)
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                names.add(node.func.value.id)
    return names


def _statement_ties(
    node: ast.FunctionDef, ties: Sequence[Tie | None] | None
) -> dict[int, Tie | None] | None:
    """Each statement of ``node``'s body (by position) -> its tie, when ``ties`` are the
    compile's ties of this very function (one per statement after the docstring)."""
    if ties is None:
        return None
    statements = node.body
    if statements and _is_docstring(statements[0]):
        statements = statements[1:]
    if len(statements) != len(ties):
        return None  # not the function these ties describe: read as any backward
    first = len(node.body) - len(statements)
    return {first + k: tie for k, tie in enumerate(ties)}


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _instrumented(
    node: ast.FunctionDef,
    filename: str,
    globals_: dict[str, Any],
    source_lines: Sequence[str],
    ties: Sequence[Tie | None] | None = None,
) -> Backward | None:
    """A copy of the function ``node`` that records its gradients after each statement.

    The copy is built inside a factory function whose parameter is the recorder, so that
    nothing is added to the namespace it runs in (which may be the user's own module).
    ``node``'s line numbers are those of ``source_lines`` (1-based), and stay so. ``ties``:
    what each statement of the body writes, when ``node`` is gradgen's own backward.
    """
    backward = Backward(function=lambda *a: None, filename=filename)
    tie_of = _statement_ties(node, ties)
    tied: dict[int, int] = {}
    body: list[ast.stmt] = []
    for position, statement in enumerate(node.body):
        body.append(statement)
        if isinstance(statement, ast.Return):
            continue
        if tie_of is not None:
            tie = tie_of.get(position)
            if tie is None:
                continue
            last = statement.end_lineno or statement.lineno
            tied.update(dict.fromkeys(range(statement.lineno, last + 1), tie.statement))
            names = [tie.gradient]
        else:
            names = sorted(n for n in _written_names(statement) if n.startswith("d"))
        if not names:
            continue
        call = ast.Call(
            func=ast.Name(_RECORD, ast.Load()),
            args=[
                ast.Constant(statement.lineno),
                ast.Tuple([ast.Constant(n) for n in names], ast.Load()),
                ast.Call(ast.Name("locals", ast.Load()), [], []),
            ],
            keywords=[],
        )
        body.append(ast.copy_location(ast.Expr(call), statement))
    returns = [s for s in node.body if isinstance(s, ast.Return) and s.value is not None]
    if returns:
        value = returns[-1].value
        items = value.elts if isinstance(value, ast.Tuple) else [value]
        backward.returned_names = tuple(i.id if isinstance(i, ast.Name) else "" for i in items)
    copy = ast.FunctionDef(**{f: getattr(node, f) for f in node._fields})
    copy.body = body
    copy.decorator_list = []
    ast.copy_location(copy, node)
    factory = ast.parse(f"def {_FACTORY}({_RECORD}):\n    pass\n").body[0]
    assert isinstance(factory, ast.FunctionDef)
    ast.increment_lineno(factory, node.lineno - 1)  # before the copy goes in: it keeps its lines
    factory.body = [copy, ast.Return(ast.Name(node.name, ast.Load()))]
    module = ast.fix_missing_locations(ast.Module(body=[factory], type_ignores=[]))
    try:
        code = compile(module, filename, "exec")
    except (SyntaxError, ValueError, TypeError):
        return None
    namespace: dict[str, Any] = {}
    exec(code, globals_, namespace)

    def record(line: int, names: tuple[str, ...], values: dict[str, Any]) -> None:
        for name in names:
            if name in values and values[name] is not None:
                backward.records.append((line, name, _snapshot(values[name])))

    backward.function = namespace[_FACTORY](record)
    backward.instrumented = True
    if tie_of is not None:
        backward.tied = tied
    else:
        last = node.end_lineno or node.lineno
        backward.groups = _comment_groups(source_lines, node.lineno, last)
    return backward


def _comment_groups(lines: Sequence[str], first: int, last: int) -> dict[int, tuple[int, str]]:
    """Line -> the ``# backprop STATEMENT`` comment above it, within lines first..last."""
    groups: dict[int, tuple[int, str]] = {}
    current: tuple[int, str] | None = None
    for number in range(first, min(last, len(lines)) + 1):
        text = lines[number - 1].strip()
        if text.startswith("# backprop "):
            current = (number, text.removeprefix("# backprop ").strip())
        elif current is not None and text and not text.startswith("#"):
            groups[number] = current
    return groups


def backward_from_module(
    text: str,
    filename: str,
    namespace: dict[str, Any],
    name: str,
    ties: Sequence[Tie | None] | None = None,
) -> Backward | None:
    """``name`` from a module already run into ``namespace``: instrumented when its source
    can be read, else as it is; None when the module does not define it. ``ties``: what
    each statement of ``name`` writes, when the module is gradgen's own."""
    function = namespace.get(name)
    if not callable(function):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = _instrumented(node, filename, namespace, text.splitlines(), ties)
            if found is not None:
                return found
    return Backward(function=function, filename=filename)


def backward_from_function(
    function: Callable[..., Any], ties: Sequence[Tie | None] | None = None
) -> Backward:
    """``function`` instrumented from its source (a generated backward registered with
    linecache, or a committed file), run in its own globals; as it is when that fails.
    ``ties``: what each of its statements writes, when it is gradgen's own backward."""
    plain = Backward(function=function)
    code = getattr(function, "__code__", None)
    if code is None or code.co_freevars:
        return plain  # a closure: its free variables cannot be given to a copy
    try:
        lines, first = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return plain
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef):
        return plain
    node = tree.body[0]
    ast.increment_lineno(node, first - 1)
    file_lines = linecache.getlines(code.co_filename, function.__globals__)
    instrumented = _instrumented(node, code.co_filename, function.__globals__, file_lines, ties)
    return instrumented if instrumented is not None else plain
