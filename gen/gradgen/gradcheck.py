"""The numerical gradient check: a backward pass against central differences of its forward.

``gradgen check FORWARD.py`` generates the backward of every function of ``FORWARD.py`` (or
takes a hand-written or hand-edited one with ``--backward``), draws random float64
arguments and a random upstream gradient (never 1.0, so a forgotten ``* dout`` shows), and
compares each returned gradient with central differences of ``sum(upstream * F(...))``
(step ``1e-6``, scaled by the entry's magnitude). Unlike plain
``gradgen``, which only reads its input, the check **runs the forward code**: it loads the
forward file as a module (its top level runs, as on import) and calls the functions.

Arguments. A parameter annotated with a shape (``x: "N, D"``) gets an array of that shape;
each dimension name gets a small size (2 to 5, distinct, the same for every parameter of
the function), so that a transposed or mis-broadcast gradient cannot fit by accident.
``float`` or no annotation means a Python float. A parameter the backward gives ``None``
(used only as an index, like labels ``y``) gets random integers in ``0 .. smallest size -
1``. ``--shapes x=2,3`` or ``--shapes N=4`` and ``--ints y=3`` override all of this. When
the forward raises on the drawn sizes (``a[:, 3 * H :]`` needs ``G == 4 * H``), sizes where
one dimension is 1 to 4 times another are tried too; when it gives NaN or infinity (a log of
a negative number), other values are drawn, positive ones last. When some gradient is zero
everywhere at the drawn values (every ReLU inactive), which checks nothing, other values are
drawn, and the report says so if that persists.

Which line is wrong. A wrong gradient of a parameter is reported with the forward line
whose backward statements introduced the error. The backward is run instrumented: every
gradient it writes (``d<var>``) is copied after each statement. Then, walking from the result
back (last forward statement first), the adjoint of each user-named variable ``v`` is
compared with central differences of the result with respect to ``v`` (the forward
statements after ``v`` re-run from gradgen's staged form with ``v`` perturbed). The first
variable whose adjoint disagrees, while the adjoints of everything computed from it agree,
got its error from the backward of a statement that *reads* it: that statement's adjoint
rule produced the wrong value, so that is the line reported::

    forward.py:9: the adjoint of 'h' disagrees (max rel. error 0.3): out = h * w

When several statements read ``v``, each one's share of ``dv`` (central differences of that
statement alone, weighted by the adjoint of what it computes) is compared with what its
backward added to ``dv``: the writes under its ``# backprop`` comment, or, in a backward
without those comments, any single write. The last statement whose share is not what the
backward added is reported; when that cannot be told, every reading line is listed.

Tolerances. An entry passes when ``|backward - numeric| <= max(rtol * max(|backward|,
|numeric|), atol)``; the "max rel. error" shown is ``|backward - numeric| / max(|backward|,
|numeric|, atol / rtol)``, so a gradient passes exactly when it is at most ``rtol``.

Exit status: 0 every gradient matches, 1 some gradient does not (or the check could not
run the function), 2 usage error, 123 gradgen refuses the forward file.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import linecache
import sys
import textwrap
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, TracebackType
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.errors import GradgenError
from gradgen.shapes import parse_annotation

if TYPE_CHECKING:
    from gradgen.reverse import BackwardFunction
    from gradgen.stages import StagedFunction

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 123

STEP = 1e-6  # the finite-difference step, relative to the entry's magnitude
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-8

_SIZES = (2, 3, 4, 5)  # sizes of named dimensions: small, and never 1 (1 broadcasts)
_VALUE_ATTEMPTS = 8  # draws of values per set of sizes before trying other sizes
_POSITIVE_AFTER = 4  # draws after which values are drawn positive (logs, square roots)
_MULTIPLES = (1, 2, 3, 4)  # other sizes tried: one dimension k times another
_FLAT_ATTEMPTS = 5  # draws of values while some gradient is zero everywhere
_RECORD = "__gradcheck_record__"
_FACTORY = "__gradcheck_factory__"

Dims = tuple[int | str, ...]


class UsageError(Exception):
    """A command line the check cannot run (exit status 2)."""


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientCheck:
    """One parameter's gradient against central differences.

    ``status`` is "pass", "FAIL" or "skip" (a parameter with no gradient, such as labels).
    At ``worst_index`` the backward gave ``actual`` where central differences give
    ``expected``.
    """

    parameter: str
    status: str
    max_rel_error: float = 0.0
    max_abs_error: float = 0.0
    worst_index: tuple[int, ...] = ()
    expected: float = 0.0
    actual: float = 0.0
    note: str = ""
    flat: bool = False  # central differences are zero everywhere: the check says little

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"

    def describe(self) -> str:
        """One line on what went wrong, or why the parameter was skipped."""
        if self.status == "skip":
            return f"{self.parameter}: {self.note}"
        if self.note and not np.isfinite(self.max_abs_error):
            return f"d{self.parameter}: {self.note}"  # no numbers to compare: None, a shape
        where = f" at index {self.worst_index}" if self.worst_index else ""
        return (
            f"d{self.parameter}: max abs. error {self.max_abs_error:.3g}, max rel. error "
            f"{self.max_rel_error:.3g}{where}: the backward gives {self.actual:.6g}, central "
            f"differences {self.expected:.6g}"
        )


@dataclass(frozen=True)
class Culprit:
    """The forward line whose backward statements introduced the first wrong adjoint."""

    filename: str
    line: int
    message: str  # "the adjoint of 'h' disagrees (max rel. error 0.3)"
    source: str  # the forward statement at ``line``, on one line
    variable: str = ""
    notes: tuple[str, ...] = ()  # other lines that may be at fault, rendered

    def render(self) -> str:
        """``FILE:LINE: MESSAGE: SOURCE``, then a note per other suspect line."""
        return "\n".join(
            [f"{self.filename}:{self.line}: {self.message}: {self.source}", *self.notes]
        )


@dataclass
class FunctionReport:
    """The check of one forward function."""

    function: str
    gradients: list[GradientCheck] = field(default_factory=list)
    culprit: Culprit | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, str] = field(default_factory=dict)  # parameter -> "(3, 2)", "scalar"
    error: str | None = None  # the check could not run: why
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and all(g.passed for g in self.gradients)

    def message(self, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> str:
        """What failed, for an assertion message: every wrong gradient, then the line."""
        if self.error is not None:
            return f"cannot check the gradients of {self.function}: {self.error}"
        lines = [
            f"the gradients of {self.function} do not match central differences "
            f"(rtol={rtol:g}, atol={atol:g}):"
        ]
        lines += [f"  {g.describe()}" for g in self.gradients if not g.passed]
        if self.culprit is not None:
            lines.append(f"first disagreeing forward line: {self.culprit.render()}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --- comparing numbers ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Comparison:
    passed: bool
    max_rel: float
    max_abs: float
    worst: tuple[int, ...]
    expected: float
    actual: float
    problem: str = ""  # a shape or type mismatch, said in words


def _compare(actual: Any, expected: Any, rtol: float, atol: float) -> _Comparison:
    """``actual`` (from a backward) against ``expected`` (central differences)."""
    numeric = np.asarray(expected, dtype=np.float64)
    if actual is None:
        return _Comparison(False, np.inf, np.inf, (), 0.0, np.nan, "the backward gives None")
    try:
        given = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        return _Comparison(False, np.inf, np.inf, (), 0.0, np.nan, f"not a number: {actual!r}")
    if given.shape != numeric.shape:
        # The contract's 0.0 for a parameter the result does not depend on stands for zeros.
        if given.ndim == 0 and float(given) == 0.0:
            given = np.zeros(numeric.shape)
        else:
            problem = f"shape {given.shape}, but the parameter has shape {numeric.shape}"
            return _Comparison(False, np.inf, np.inf, (), 0.0, np.nan, problem)
    if numeric.size == 0:
        return _Comparison(True, 0.0, 0.0, (), 0.0, 0.0)
    difference = np.abs(given - numeric)
    floor = atol / rtol
    scale = np.maximum(np.maximum(np.abs(given), np.abs(numeric)), floor)
    with np.errstate(all="ignore"):
        relative = np.where(difference == 0, 0.0, difference / np.where(scale == 0, 1, scale))
    relative = np.where(np.isnan(relative), np.inf, relative)
    worst = np.unravel_index(int(np.argmax(relative)), relative.shape)
    index = tuple(int(i) for i in worst)
    max_rel = float(relative[index])
    passed = bool(max_rel <= rtol) and bool(np.all(np.isfinite(given)))
    return _Comparison(
        passed,
        max_rel,
        float(np.nanmax(difference)) if np.any(~np.isnan(difference)) else np.inf,
        index,
        float(numeric[index]),
        float(given[index]),
    )


def _loss(upstream: Any, value: Any) -> float:
    """``sum(upstream * value)``: the scalar whose gradient a backward returns."""
    return float(np.sum(np.asarray(upstream, dtype=np.float64) * np.asarray(value)))


def _with_entry(base: Any, index: tuple[int, ...], value: float) -> Any:
    """``base`` with one entry set to ``value``; a Python float stays a Python float."""
    if isinstance(base, np.ndarray):
        changed = base.copy()
        changed[index] = value
        return changed
    if isinstance(base, np.floating):
        return type(base)(value)
    return float(value)


def _central_differences(evaluate: Callable[[Any], float], base: Any) -> Any:
    """``d evaluate / d base``, entry by entry, by central differences."""
    array = np.asarray(base, dtype=np.float64)
    gradient = np.zeros(array.shape)
    for index in np.ndindex(array.shape):
        value = float(array[index])
        step = STEP * max(1.0, abs(value))
        up, down = value + step, value - step
        plus = evaluate(_with_entry(base, index, up))
        minus = evaluate(_with_entry(base, index, down))
        gradient[index] = (plus - minus) / (up - down)
    return gradient


def _snapshot(value: Any) -> Any:
    """A copy of a gradient as it is now: later in-place writes must not change it."""
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


# --- the backward, instrumented ---------------------------------------------------------------


@dataclass
class _Backward:
    """A backward function, and what its instrumented copy recorded on its last call.

    ``records`` holds ``(line, name, value)`` for each gradient-like name (``d...``) written
    by a statement of the function body, copied right after that statement; ``groups`` maps
    a line of the body to the ``# backprop ...`` comment above it, as ``(comment line,
    text)``.
    """

    function: Callable[..., Any]
    filename: str = ""
    records: list[tuple[int, str, Any]] = field(default_factory=list)
    groups: dict[int, tuple[int, str]] = field(default_factory=dict)
    instrumented: bool = False
    pair_forward: Callable[..., Any] | None = None  # F_forward -> (value, cache): pairs
    returned_names: tuple[str, ...] | None = None  # names in its return statement

    def call(self, args: Sequence[Any], upstream: Any) -> Any:
        """The gradients at ``args`` for the upstream gradient ``upstream``."""
        self.records.clear()
        if self.pair_forward is not None:
            _, cache = self.pair_forward(*args)
            return self.function(upstream, cache)
        parameters = list(inspect.signature(self.function).parameters.values())
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


def _instrumented(
    node: ast.FunctionDef, filename: str, globals_: dict[str, Any], source_lines: Sequence[str]
) -> _Backward | None:
    """A copy of the function ``node`` that records its gradients after each statement.

    The copy is built inside a factory function whose parameter is the recorder, so that
    nothing is added to the namespace it runs in (which may be the user's own module).
    ``node``'s line numbers are those of ``source_lines`` (1-based), and stay so.
    """
    backward = _Backward(function=lambda *a: None, filename=filename)
    body: list[ast.stmt] = []
    for statement in node.body:
        body.append(statement)
        if isinstance(statement, ast.Return):
            continue
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
    backward.groups = _comment_groups(source_lines, node.lineno, node.end_lineno or node.lineno)
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


def _backward_from_module(
    text: str, filename: str, namespace: dict[str, Any], name: str
) -> _Backward | None:
    """``name`` from a module already run into ``namespace``: instrumented when its source
    can be read, else as it is; None when the module does not define it."""
    function = namespace.get(name)
    if not callable(function):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = _instrumented(node, filename, namespace, text.splitlines())
            if found is not None:
                return found
    return _Backward(function=function, filename=filename)


def _backward_from_function(function: Callable[..., Any]) -> _Backward:
    """``function`` instrumented from its source (a generated backward registered with
    linecache, or a committed file), run in its own globals; as it is when that fails."""
    plain = _Backward(function=function)
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
    instrumented = _instrumented(node, code.co_filename, function.__globals__, file_lines)
    return instrumented if instrumented is not None else plain


# --- the forward, for naming lines --------------------------------------------------------------


@dataclass
class _ForwardInfo:
    """What naming a wrong line needs: gradgen's staged form of the forward function, where
    each of its statements is in the file, and the namespace its expressions run in."""

    staged: StagedFunction
    filename: str
    def_line: int
    def_text: str
    lines: list[int]  # per statement of ``staged.statements``
    texts: list[str]  # the statement as written, on one line
    targets: list[str | None]  # the name it assigns (None: the return)
    globals: dict[str, Any]


def _forward_info(
    backward: BackwardFunction,
    source: str,
    filename: str,
    globals_: dict[str, Any],
    line_offset: int = 0,
) -> _ForwardInfo | None:
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
    return _ForwardInfo(
        staged,
        filename,
        function.lineno + line_offset,
        def_segment,
        lines,
        texts,
        targets,
        globals_,
    )


class _Replay:
    """The forward function re-run stage by stage, from gradgen's staged form: every
    intermediate value by name, and the rest of the function re-run from any of them."""

    def __init__(self, info: _ForwardInfo, parameters: Sequence[str], args: Sequence[Any]):
        from gradgen.expr import render

        self.info = info
        self.stages = info.staged.stages
        self.codes: list[CodeType] = [
            compile(render(stage.expr), f"<gradgen check: {stage.target}>", "eval")
            for stage in self.stages
        ]
        self.env: dict[str, Any] = dict(zip(parameters, args, strict=True))
        self.run(self.env, 0, len(self.stages))

    def run(self, env: dict[str, Any], start: int, stop: int) -> None:
        with np.errstate(all="ignore"):
            for position in range(start, stop):
                env[self.stages[position].target] = eval(
                    self.codes[position], self.info.globals, env
                )

    def result_after(self, position: int, value: Any, result: str, variable: str) -> Any:
        """The result with ``variable`` (stage ``position``'s target, or a parameter at
        position -1) replaced by ``value``, and every stage after it re-run."""
        env = dict(self.env)
        env[variable] = value
        self.run(env, position + 1, len(self.stages))
        return env[result]


def _gradient_name(variable: str, taken: set[str], written: dict[str, Any]) -> str | None:
    """The name of ``variable``'s gradient in the backward: ``d<var>``, or the name gradgen
    gives when the forward already uses that one (``d_<var>``, ...)."""
    candidates = [f"d{variable}", f"d_{variable}"]
    candidates += [f"d_{variable}_{n}" for n in range(2, 10)]
    generated = next((c for c in candidates if c not in taken), None)
    for name in (generated, f"d{variable}"):
        if name is not None and name in written:
            return name
    return None


def _locate(
    info: _ForwardInfo,
    parameters: Sequence[str],
    args: Sequence[Any],
    upstream: Any,
    value: Any,
    gradients: dict[str, GradientCheck],
    backward: _Backward,
    rtol: float,
    atol: float,
) -> tuple[Culprit | None, str | None]:
    """The forward line whose backward introduced the first wrong adjoint, or a note on
    why it cannot be named (see the module's docstring for the rule)."""
    staged = info.staged
    if not backward.instrumented:
        return None, "the backward's source could not be read, so no line can be named"
    try:
        replay = _Replay(info, parameters, args)
    except Exception as error:  # the staged form runs the user's expressions
        return None, f"re-running the forward stage by stage failed: {error!r}"
    result = getattr(staged.result, "id", None)
    if result is None or result not in replay.env:
        return None, "the function returns a constant"
    if not _close(replay.env[result], value):
        return None, "re-running the forward stage by stage does not give its value"

    written = backward.final_values()
    taken = set(parameters) | {s.target for s in staged.stages} | set(staged.used_globals)
    taken |= {t for t in info.targets if t is not None}

    def loss_after(position: int, variable: str) -> Callable[[Any], float]:
        # position -1 (a parameter): every stage is re-run.
        return lambda v: _loss(upstream, replay.result_after(position, v, result, variable))

    # Variables in forward order: the parameters, then the user's named values (not the
    # temporaries gradgen splits off, nor the result, whose adjoint is the upstream).
    order: list[tuple[str, int]] = [(p, -1) for p in parameters]
    order += [
        (stage.target, k)
        for k, stage in enumerate(staged.stages)
        if not stage.temporary and stage.target != result
    ]
    adjoint_of: dict[str, Any] = {result: upstream}
    names: dict[str, str] = {}
    wrong: tuple[str, int, _Comparison] | None = None
    for variable, position in reversed(order):
        name = _gradient_name(variable, taken, written)
        if name is None:
            continue
        if position < 0 and (variable not in gradients or gradients[variable].status == "skip"):
            continue
        names[variable] = name
        adjoint_of[variable] = written[name]
        numeric = _central_differences(loss_after(position, variable), replay.env[variable])
        comparison = _compare(written[name], numeric, rtol, atol)
        if not comparison.passed:
            wrong = (variable, position, comparison)
            break
        if position < 0 and not gradients[variable].passed:
            # Its adjoint is right, yet the backward returns something else for it.
            return _returned_wrong(info, variable, name, gradients[variable]), None
    if wrong is None:
        return None, "every adjoint the backward computes agrees with central differences"
    variable, position, comparison = wrong
    readers = sorted(
        {
            stage.statement
            for stage in staged.stages[position + 1 :]
            if stage.rule is not None and variable in stage.reads
        },
        reverse=True,
    )
    if not readers:
        return None, f"no statement reads '{variable}'"
    proven = _narrow(
        info, replay, backward, variable, names[variable], readers, adjoint_of, rtol, atol
    )
    shown = _shown_name(info, variable, position)
    message = f"the adjoint of {shown} disagrees (max rel. error {comparison.max_rel:.2g})"
    # One reader, or the one whose own contribution is wrong; else every reader is listed.
    first = proven if proven is not None else readers[0]
    others = [] if proven is not None else readers[1:]
    notes = tuple(
        f"{info.filename}:{info.lines[s]}: note: {shown} is also read here: {info.texts[s]}"
        for s in others
    )
    culprit = Culprit(info.filename, info.lines[first], message, info.texts[first], variable, notes)
    return culprit, None


def _close(a: Any, b: Any) -> bool:
    try:
        return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12))
    except (TypeError, ValueError):
        return False


def _shown_name(info: _ForwardInfo, variable: str, position: int) -> str:
    """``'h'``, or ``'h' (as bound at line 7)`` for gradgen's ``h_2``."""
    if position < 0:
        return f"'{variable}'"
    statement = info.staged.stages[position].statement
    user = info.targets[statement] if statement < len(info.targets) else None
    if user is None or user == variable:
        return f"'{variable}'"
    return f"'{user}' (as bound at line {info.lines[statement]})"


def _returned_wrong(info: _ForwardInfo, parameter: str, name: str, check: GradientCheck) -> Culprit:
    message = (
        f"the backward returns a wrong gradient for '{parameter}' (max rel. error "
        f"{check.max_rel_error:.2g}) though its adjoint {name} is right: check its return"
    )
    return Culprit(info.filename, info.def_line, message, info.def_text, parameter)


def _narrow(
    info: _ForwardInfo,
    replay: _Replay,
    backward: _Backward,
    variable: str,
    name: str,
    readers: list[int],
    adjoint_of: dict[str, Any],
    rtol: float,
    atol: float,
) -> int | None:
    """Of the statements reading ``variable`` (last first), the one whose backward put a
    wrong share into ``name`` (the variable's gradient); None when that cannot be told.

    A statement's share is central differences of that statement alone, weighted by the
    (right) adjoint of what it computes. What the backward put in is read from the values
    recorded after each write to ``name``: grouped by the ``# backprop`` comment above each
    write when there are such comments (the last statement whose share disagrees is the
    one); otherwise, a statement whose share some single write added is accounted for, and
    when exactly one is not, it is the one.
    """
    if len(readers) == 1:
        return readers[0]
    added: list[tuple[int, Any]] = []  # (line, what that write added)
    previous: Any = 0.0
    for line, recorded, value in backward.records:
        if recorded != name:
            continue
        try:
            delta = np.asarray(value, dtype=np.float64) - np.asarray(previous, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        added.append((line, delta))
        previous = value
    stages = info.staged.stages
    shares: dict[int, Any] = {}
    for statement in readers:
        own = [k for k, s in enumerate(stages) if s.statement == statement]
        top = [k for k in own if not stages[k].temporary]
        if not top or stages[top[-1]].target not in adjoint_of:
            return None  # a share that cannot be computed: nothing can be concluded
        output = stages[top[-1]].target

        def alone(value: Any, own: list[int] = own, output: str = output) -> float:
            env = dict(replay.env)
            env[variable] = value
            with np.errstate(all="ignore"):
                for k in own:
                    env[stages[k].target] = eval(replay.codes[k], info.globals, env)
            return _loss(adjoint_of[output], env[output])

        shares[statement] = _central_differences(alone, replay.env[variable])
    statement_of = _statement_of_lines(info, backward)
    if statement_of:
        grouped: dict[int, Any] = {}
        for line, delta in added:
            if line in statement_of:
                grouped[statement_of[line]] = grouped.get(statement_of[line], 0.0) + delta
        for statement in readers:
            given = grouped.get(statement, np.zeros(np.shape(shares[statement])))
            if not _compare(given, shares[statement], rtol, atol).passed:
                return statement
        return None
    unexplained = [
        statement
        for statement in readers
        if np.any(shares[statement])
        and not any(_compare(delta, shares[statement], rtol, atol).passed for _, delta in added)
    ]
    return unexplained[0] if len(unexplained) == 1 else None


def _statement_of_lines(info: _ForwardInfo, backward: _Backward) -> dict[int, int]:
    """Backward line -> index of the forward statement its ``# backprop`` comment quotes.

    gradgen writes the groups last statement first; where two statements read alike
    (``h = h * h`` twice), the comment is taken for the latest one not yet passed.
    """
    rendered = [_shorten(text) for text in info.staged.statements]
    by_comment: dict[int, int] = {}
    below = len(rendered)
    for comment_line, text in sorted(set(backward.groups.values())):
        matches = [i for i, r in enumerate(rendered) if r == text]
        if not matches:
            continue
        earlier = [i for i in matches if i < below]
        chosen = max(earlier) if earlier else max(matches)
        by_comment[comment_line] = chosen
        below = chosen
    return {
        line: by_comment[comment]
        for line, (comment, _) in backward.groups.items()
        if comment in by_comment
    }


def _shorten(text: str) -> str:
    """A statement as gradgen quotes it in a ``# backprop`` comment (emit.py's width)."""
    width = 76
    return text if len(text) <= width else text[: width - 4].rstrip() + " ..."


def _raised_at(
    error: BaseException, backward: _Backward, info: _ForwardInfo | None
) -> Culprit | None:
    """The forward line whose backward statements raised ``error``, when that is known."""
    if info is None or not backward.groups:
        return None
    tb: TracebackType | None = error.__traceback__
    line = None
    while tb is not None:  # the innermost frame in the backward function's own lines
        if tb.tb_frame.f_code.co_filename == backward.filename and tb.tb_lineno in backward.groups:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None or line not in backward.groups:
        return None
    statement = _statement_of_lines(info, backward).get(line)
    if statement is None:
        return None
    message = f"the backward of this line raised {type(error).__name__}: {error}"
    return Culprit(info.filename, info.lines[statement], message, info.texts[statement])


# --- one check ------------------------------------------------------------------------------------


@dataclass
class _Case:
    """A function, its arguments and its backward, ready to be checked."""

    name: str
    forward: Callable[..., Any]
    parameters: tuple[str, ...]
    args: list[Any]
    upstream: Any
    backward: _Backward
    index: frozenset[str] = frozenset()  # parameters with no gradient (integer labels)
    wrt: tuple[str, ...] | None = None  # what the backward returns gradients for
    info: _ForwardInfo | None = None
    # Reads the forward's staged form when a failure needs it: a passing check of a
    # function with a backward imports no libcst.
    info_factory: Callable[[], _ForwardInfo | None] | None = None

    def forward_info(self) -> _ForwardInfo | None:
        if self.info is None and self.info_factory is not None:
            self.info, self.info_factory = self.info_factory(), None
        return self.info


def _run_case(case: _Case, rtol: float, atol: float, report: FunctionReport) -> FunctionReport:
    """Compare every gradient of ``case`` with central differences; name the wrong line."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _run_case_quietly(case, rtol, atol, report)


def _run_case_quietly(
    case: _Case, rtol: float, atol: float, report: FunctionReport
) -> FunctionReport:
    try:
        value = case.forward(*case.args)
    except Exception as error:
        report.error = f"{case.name} raised {type(error).__name__}: {error}"
        return report
    try:
        raw = case.backward.call(case.args, case.upstream)
    except Exception as error:
        report.error = f"its backward raised {type(error).__name__}: {error}"
        report.culprit = _raised_at(error, case.backward, case.forward_info())
        return report
    wanted = case.wrt if case.wrt is not None else case.parameters
    if len(wanted) == 1 and not isinstance(raw, tuple):
        raw = (raw,)
    if not isinstance(raw, tuple) or len(raw) != len(wanted):
        count = len(raw) if isinstance(raw, tuple) else 1
        report.error = (
            f"its backward returns {count} gradient(s) for {len(wanted)} parameter(s) "
            f"({', '.join(wanted)})"
        )
        return report
    returned = dict(zip(wanted, raw, strict=True))
    position = {name: k for k, name in enumerate(case.parameters)}
    checks: dict[str, GradientCheck] = {}
    for parameter in wanted:
        gradient = returned[parameter]
        if parameter in case.index:
            skipped = "no gradient (the backward gives None: used only as an index or a shape)"
            if gradient is not None:
                skipped += f" (the backward gives {type(gradient).__name__})"
            checks[parameter] = GradientCheck(parameter, "skip", note=skipped)
            continue
        k = position[parameter]

        def loss(v: Any, k: int = k) -> float:
            args = list(case.args)
            args[k] = v
            return _loss(case.upstream, case.forward(*args))

        try:
            numeric = _central_differences(loss, case.args[k])
        except Exception as error:
            report.error = f"central differences of {parameter} failed: {error!r}"
            return report
        comparison = _compare(gradient, numeric, rtol, atol)
        checks[parameter] = GradientCheck(
            parameter,
            "pass" if comparison.passed else "FAIL",
            comparison.max_rel,
            comparison.max_abs,
            comparison.worst,
            comparison.expected,
            comparison.actual,
            comparison.problem,
            flat=bool(np.size(numeric)) and not np.any(numeric),
        )
    report.gradients = [checks[p] for p in wanted]
    info = case.forward_info() if not report.passed else None
    if info is not None:
        try:
            culprit, note = _locate(
                info,
                case.parameters,
                case.args,
                case.upstream,
                value,
                checks,
                case.backward,
                rtol,
                atol,
            )
        except Exception as error:  # naming the line is a help; never hide the failure
            culprit, note = None, f"naming the wrong line failed: {error!r}"
        report.culprit = culprit
        if culprit is None and note:
            report.notes.append(f"no line named: {note}")
    return report


def _random_upstream(value: Any, rng: Any) -> Any:
    """A random upstream gradient (never 1.0, so a forgotten ``* dout`` shows)."""
    if np.ndim(value) == 0:
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5))
    return rng.standard_normal(np.shape(value))


# --- checking a Python function (gradgen.testing) ------------------------------------------------


def check_callable(
    f: Callable[..., Any],
    args: Sequence[Any],
    *,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    upstream: Any = None,
    backward: Callable[..., Any] | None = None,
) -> FunctionReport:
    """Check ``f``'s backward at ``args`` against central differences of ``f``.

    The backward is ``backward`` when given, else ``f.backward`` (``@gradgen.differentiable``;
    with ``pairs=True``, ``f.forward`` makes the cache), else generated from ``f``'s source
    now. ``upstream`` defaults to a random one of the result's shape. Arguments the backward
    gives ``None`` for (labels) are not differentiated; float arrays are widened to float64
    so that central differences are accurate. Needs libcst only to generate a backward or
    to name the wrong line of a failing one.
    """
    if np is None:
        raise ImportError("gradgen's gradient check needs numpy")
    name = getattr(f, "__name__", repr(f))
    report = FunctionReport(name)
    try:
        bound = inspect.signature(f).bind(*args)
    except TypeError as error:
        report.error = f"the arguments do not fit {name}: {error}"
        return report
    bound.apply_defaults()
    parameters = tuple(bound.arguments)
    values = [_widened(v) for v in bound.arguments.values()]
    if not rtol > 0 or not atol >= 0:
        raise ValueError(f"need rtol > 0 and atol >= 0, not rtol={rtol}, atol={atol}")
    if backward is None:
        backward = getattr(f, "backward", None)
    if backward is None:
        from gradgen.decorator import backward_source

        backward = _exec_generated(f, backward_source(f))
    wrapped = _backward_from_function(backward)
    pair_forward = getattr(f, "forward", None)
    names = list(inspect.signature(backward).parameters)
    if callable(pair_forward) and len(names) == 2 and names[1] == "cache":
        wrapped.pair_forward = pair_forward
    with np.errstate(all="ignore"):
        value = f(*values)
    if upstream is None:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        upstream = _random_upstream(value, rng)
    case = _Case(name, f, parameters, values, upstream, wrapped)
    case.wrt = _returned_parameters(wrapped, parameters)
    with np.errstate(all="ignore"):
        try:
            raw = wrapped.call(values, upstream)
        except Exception:
            raw = None
    wanted = case.wrt if case.wrt is not None else parameters
    if isinstance(raw, tuple) and len(raw) == len(wanted):
        case.index = frozenset(p for p, g in zip(wanted, raw, strict=True) if g is None)
    elif len(wanted) == 1 and raw is None:
        case.index = frozenset(wanted)
    # A float argument is differentiated even when the backward gives it None: that fails.
    case.index = frozenset(p for p in case.index if not _is_float(values[parameters.index(p)]))
    case.info_factory = lambda: _function_info(f)
    return _run_case(case, rtol, atol, report)


def _widened(value: Any) -> Any:
    """Float arrays as float64 (central differences in float32 are noise); the rest as is."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != np.float64:
        return value.astype(np.float64)
    return value


def _is_float(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) or (
        isinstance(value, np.ndarray) and value.dtype.kind == "f"
    )


def _exec_generated(f: Callable[..., Any], source: str) -> Callable[..., Any]:
    """The backward function of ``source`` (generated from ``f``), run in ``f``'s globals
    under a filename linecache knows, so its source can be read back and instrumented."""
    filename = f"<gradgen check: backward of {f.__module__}.{f.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), f.__globals__, namespace)
    function: Callable[..., Any] = namespace[f"{f.__name__}_backward"]
    return function


def _returned_parameters(
    backward: _Backward, parameters: tuple[str, ...]
) -> tuple[str, ...] | None:
    """The parameters a backward with ``wrt`` returns gradients for, read from the names
    it returns (``dW1, db1``); None when it returns one per parameter."""
    names = backward.returned_names
    if names is None or len(names) == len(parameters) or len(parameters) <= 1:
        return None
    mapped = []
    for name in names:
        match = [p for p in parameters if name in (f"d{p}", f"d_{p}")]
        if len(match) != 1:
            return None
        mapped.append(match[0])
    return tuple(mapped)


def _function_info(f: Callable[..., Any]) -> _ForwardInfo | None:
    """``f``'s staged form and statement lines, read from its source as the decorator does
    (a function nested in another reads its own lines); None when that is not possible."""
    try:
        import libcst as cst

        from gradgen.api import backward_functions
        from gradgen.parse import ParsedModule, parse_module
    except ImportError:
        return None
    code = getattr(f, "__code__", None)
    if code is None:
        return None
    try:
        lines, first = inspect.getsourcelines(f)
        module_text = "".join(linecache.getlines(code.co_filename, f.__globals__))
        snippet = textwrap.dedent("".join(lines))
        context = parse_module(module_text, code.co_filename).context
        parsed = ParsedModule(code.co_filename, module_text, cst.parse_module(snippet), context, [])
        parsed.functions = [s for s in parsed.module.body if isinstance(s, cst.FunctionDef)]
        parsed.line_offset = first - 1
        found = backward_functions(parsed, only=f.__name__)
    except (OSError, TypeError, GradgenError, cst.ParserSyntaxError):
        return None
    return _forward_info(found[0], snippet, code.co_filename, f.__globals__, first - 1)


# --- the command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``gradgen check`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="gradgen check",
        description="Check the backward of each function of FORWARD.py against central "
        "differences, at random float64 arguments. Unlike plain gradgen, this RUNS the "
        "forward code (the file is loaded as a module and its functions are called).",
        epilog="Exit status: 0 every gradient matches, 1 some gradient does not (or a "
        "function could not be checked), 2 usage error, 123 gradgen refuses the file. "
        "Give FORWARD.py before options that take several values.",
    )
    parser.add_argument("forward", metavar="FORWARD.py", help="the forward file")
    parser.add_argument(
        "--function",
        action="append",
        metavar="F",
        help="check only this function (repeatable); default: every function",
    )
    parser.add_argument(
        "--shapes",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME=DIMS",
        help="the shape of a parameter (x=2,3; x=N,4; x= for a float) or the size of a "
        "dimension name of the annotations (N=4); default: from the annotations",
    )
    parser.add_argument(
        "--ints",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME[=HIGH]",
        help="fill this parameter with random integers in 0..HIGH-1 (a number or a dimension "
        "name; default: the smallest size), not differentiated; parameters the backward "
        "gives None (labels) are integers already",
    )
    parser.add_argument(
        "--backward",
        metavar="PATH",
        help="check the F_backward functions of this module (hand-written or hand-edited) "
        "instead of generating them",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--rtol",
        type=_positive_float,
        default=DEFAULT_RTOL,
        help=f"relative tolerance (default: {DEFAULT_RTOL:g})",
    )
    parser.add_argument(
        "--atol",
        type=_non_negative_float,
        default=DEFAULT_ATOL,
        help=f"absolute tolerance, for values near 0 (default: {DEFAULT_ATOL:g})",
    )
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def parse_shapes(specs: Sequence[str]) -> dict[str, Dims]:
    """``["x=2,3", "N=4", "s="]`` -> ``{"x": (2, 3), "N": (4,), "s": ()}``; entries are
    positive sizes or dimension names. Raises ``UsageError``."""
    shapes: dict[str, Dims] = {}
    for spec in specs:
        name, equals, text = spec.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise UsageError(f"--shapes {spec!r}: give NAME=DIMS, such as x=2,3 or N=4")
        words = text.strip().strip("()").replace(",", " ").split()
        dims: list[int | str] = []
        for word in words:
            if word.isdigit() and int(word) > 0:
                dims.append(int(word))
            elif word.isidentifier():
                dims.append(word)
            else:
                raise UsageError(f"--shapes {spec!r}: {word!r} is not a positive size or a name")
        shapes[name] = tuple(dims)
    return shapes


def parse_ints(specs: Sequence[str]) -> dict[str, int | str | None]:
    """``["y", "z=3", "k=C"]`` -> ``{"y": None, "z": 3, "k": "C"}``. Raises ``UsageError``."""
    ints: dict[str, int | str | None] = {}
    for spec in specs:
        name, equals, text = spec.partition("=")
        name, text = name.strip(), text.strip()
        if not name.isidentifier() or (equals and not text):
            raise UsageError(f"--ints {spec!r}: give NAME or NAME=HIGH")
        if not equals:
            ints[name] = None
        elif text.isdigit() and int(text) > 0:
            ints[name] = int(text)
        elif text.isidentifier():
            ints[name] = text
        else:
            raise UsageError(f"--ints {spec!r}: HIGH must be a positive number or a dimension")
    return ints


@dataclass(frozen=True)
class _Spec:
    """How to draw one parameter."""

    name: str
    dims: Dims | None  # None: a Python float
    integer: bool = False
    high: int | str | None = None  # integers: exclusive bound (None: the smallest size)
    default: float | None = None  # a number default: used for a scalar parameter
    note: str = ""


def _annotations(source: str, function: str) -> dict[str, tuple[Dims | None, str]]:
    """Parameter -> (shape from its annotation, or None; a warning, or "")."""
    found: dict[str, tuple[Dims | None, str]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.FunctionDef) and node.name == function):
            continue
        for arg in node.args.args:
            annotation = arg.annotation
            dims: Dims | None = None
            note = ""
            if isinstance(annotation, ast.Name) and annotation.id in ("float", "int"):
                dims = ()
            elif isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                dims = parse_annotation(annotation.value)
                if dims is None:
                    note = f"annotation {annotation.value!r} is not a shape: drawn as a float"
            found[arg.arg] = (dims, note)
    return found


def _specs(
    backward: BackwardFunction,
    source: str,
    shapes: dict[str, Dims],
    ints: dict[str, int | str | None],
) -> list[_Spec]:
    """How to draw each parameter of ``backward``'s forward function."""
    from gradgen.expr import literal_value

    annotated = _annotations(source, backward.staged.name)
    specs = []
    for parameter, gradient in zip(backward.staged.parameters, backward.gradients, strict=True):
        dims, note = annotated.get(parameter.name, (None, ""))
        if parameter.name in shapes:
            dims, note = shapes[parameter.name], ""
        integer = gradient == "None" or parameter.name in ints
        default = literal_value(parameter.default) if parameter.default is not None else None
        number = float(default) if isinstance(default, (int, float)) else None
        specs.append(_Spec(parameter.name, dims, integer, ints.get(parameter.name), number, note))
    return specs


def _symbols(specs: Sequence[_Spec]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        for dim in (*(spec.dims or ()), spec.high):
            if isinstance(dim, str) and dim not in names:
                names.append(dim)
    return names


def _size_candidates(
    symbols: Sequence[str], fixed: dict[str, int], rng: Any
) -> Iterator[dict[str, int]]:
    """Sizes for the dimension names: distinct small ones first, then, for forwards that
    need a relation between them (an LSTM's ``G == 4 * H``), one name k times another."""
    free = [s for s in symbols if s not in fixed]
    pool = list(_SIZES) + list(range(len(_SIZES) + 2, len(free) + 2))
    drawn = [int(pool[i]) for i in rng.permutation(len(pool))[: len(free)]]
    base = {**fixed, **dict(zip(free, drawn, strict=True))}
    yield base
    for multiple in _MULTIPLES:
        for name in free:
            for other in symbols:
                if other != name:
                    yield {**base, name: multiple * base[other]}


def _draw(specs: Sequence[_Spec], sizes: dict[str, int], rng: Any, positive: bool) -> list[Any]:
    """Random arguments: float64 arrays and Python floats, integers for indices."""

    def size(dim: int | str) -> int:
        return dim if isinstance(dim, int) else sizes[dim]

    array_dims = [size(d) for s in specs if not s.integer for d in (s.dims or ())]
    smallest = min(array_dims, default=min(sizes.values(), default=2))
    values: list[Any] = []
    for spec in specs:
        shape = tuple(size(d) for d in spec.dims) if spec.dims else ()
        if spec.integer:
            high = size(spec.high) if spec.high is not None else max(smallest, 1)
            drawn = rng.integers(0, high, size=shape)
            values.append(int(drawn) if not shape else drawn)
        elif not shape:
            if spec.default is not None:
                values.append(spec.default)
            elif positive:
                values.append(float(rng.uniform(0.5, 1.5)))
            else:
                values.append(float(rng.standard_normal()))
        elif positive:
            values.append(rng.uniform(0.5, 1.5, size=shape))
        else:
            values.append(rng.standard_normal(shape))
    return values


def _finite(value: Any) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def _arguments(
    forward: Callable[..., Any],
    specs: Sequence[_Spec],
    fixed: dict[str, int],
    rng: Any,
) -> tuple[list[Any], dict[str, int]] | str:
    """Arguments on which ``forward`` runs and gives finite values, and the sizes used; or
    why none were found."""
    first_problem = ""
    symbols = _symbols(specs)
    for tried, sizes in enumerate(_size_candidates(symbols, fixed, rng)):
        for attempt in range(_VALUE_ATTEMPTS if tried == 0 else 2):
            # Positive values last: they keep logs and square roots defined.
            positive = attempt >= _POSITIVE_AFTER if tried == 0 else attempt == 1
            values = _draw(specs, sizes, rng, positive)
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    result = forward(*values)
            except Exception as error:
                first_problem = first_problem or f"{type(error).__name__}: {error}"
                continue
            if _finite(result):
                return values, sizes
            first_problem = first_problem or "the result is not finite (NaN or infinity)"
    return first_problem


def _redrawn(
    forward: Callable[..., Any], specs: Sequence[_Spec], sizes: dict[str, int], rng: Any
) -> list[Any] | None:
    """Other arguments of the same sizes on which ``forward`` gives finite values."""
    for attempt in range(_VALUE_ATTEMPTS):
        values = _draw(specs, sizes, rng, positive=attempt >= _POSITIVE_AFTER)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                if _finite(forward(*values)):
                    return values
            except Exception:  # the user's forward, at values it may not take
                continue
    return None


def _shape_text(value: Any, integer: bool) -> str:
    if np.ndim(value) == 0:
        return "int" if integer else "scalar"
    text = str(tuple(np.shape(value)))
    return f"int {text}" if integer else text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gradgen check`` with ``argv`` (the arguments after ``check``; default:
    ``sys.argv[2:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as exit_:  # -h and usage errors
        return int(exit_.code or 0)
    if np is None:
        print("gradgen check: error: the gradient check needs numpy", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _check_file(args)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"gradgen check: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _check_file(args: argparse.Namespace) -> int:
    from gradgen.api import backward_functions, generate
    from gradgen.emit import emit_module
    from gradgen.files import read_source
    from gradgen.format import format_module
    from gradgen.parse import parse_module

    path = Path(args.forward)
    shown = args.forward
    if not path.is_file():
        raise UsageError(f"{shown}: no such file")
    shapes = parse_shapes(args.shapes)
    ints = parse_ints(args.ints)
    foreign = Path(args.backward) if args.backward is not None else None
    if foreign is not None and not foreign.is_file():
        raise UsageError(f"--backward {args.backward}: no such file")
    try:
        source = read_source(path)
        parsed = parse_module(source, shown)
        defined = [f.name.value for f in parsed.functions]
        for name in args.function or ():
            if name not in defined:
                known = ", ".join(defined) or "none"
                raise UsageError(f"{shown} defines no function '{name}' (it defines: {known})")
        if args.function:
            backwards = [
                b for n in dict.fromkeys(args.function) for b in backward_functions(parsed, only=n)
            ]
        else:
            backwards = backward_functions(parsed)
        if args.function:
            # Only these functions: another one of the file may be refused.
            header = [f"# gradgen check: from {shown}"]
            generated = format_module(emit_module(backwards, parsed.context, header))
        else:
            generated = generate(source, shown)  # what `gradgen FORWARD.py` writes
    except GradgenError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"{shown}: error: cannot read: {error.strerror or error}", file=sys.stderr)
        return EXIT_REFUSED
    _check_names(backwards, source, shapes, ints)

    if foreign is not None:
        backward_name = str(foreign)
        try:
            backward_text = foreign.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"--backward {foreign}: cannot read: {error}") from None
    else:
        backward_name = f"<gradgen check: backward of {shown}>"
        backward_text = generated
        lines = generated.splitlines(keepends=True)
        linecache.cache[backward_name] = (len(generated), None, lines, backward_name)
    print(f"gradgen check {shown} (seed {args.seed}, rtol {args.rtol:g}, atol {args.atol:g})")
    try:
        forward_namespace = _load_forward(path)
    except Exception as error:
        print(f"{shown}: error: loading it raised {_last_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    try:
        backward_namespace = _run_module(backward_text, backward_name, foreign)
    except Exception as error:
        print(f"{backward_name}: error: running it raised {_last_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    reports = [
        _check_one(
            b,
            source,
            shown,
            forward_namespace,
            backward_namespace,
            backward_text,
            backward_name,
            shapes,
            ints,
            args,
        )
        for b in backwards
    ]
    _print_reports(reports)
    return EXIT_OK if all(r.passed for r in reports) else EXIT_FAILED


def _check_names(
    backwards: Sequence[BackwardFunction],
    source: str,
    shapes: dict[str, Dims],
    ints: dict[str, int | str | None],
) -> None:
    """Every name of --shapes and --ints is a parameter or a dimension of some function."""
    parameters: set[str] = set()
    dimensions: set[str] = set()
    for backward in backwards:
        for name, (dims, _) in _annotations(source, backward.staged.name).items():
            parameters.add(name)
            dimensions.update(d for d in dims or () if isinstance(d, str))
        parameters.update(p.name for p in backward.staged.parameters)
    for dims in shapes.values():
        dimensions.update(d for d in dims if isinstance(d, str))
    for name, dims in shapes.items():
        if name in parameters:
            continue
        if name not in dimensions:
            raise UsageError(
                f"--shapes names '{name}', neither a parameter nor a dimension name of the "
                "functions checked"
            )
        if len(dims) != 1 or not isinstance(dims[0], int):
            raise UsageError(f"--shapes {name}=...: a dimension takes one size, such as {name}=4")
    for name, high in ints.items():
        if name not in parameters:
            raise UsageError(f"--ints names '{name}', not a parameter of the functions checked")
        if isinstance(high, str) and high not in dimensions:
            raise UsageError(f"--ints {name}={high}: '{high}' is not a dimension name")


def _load_forward(path: Path) -> dict[str, Any]:
    """Run the forward file as a module (its folder first on ``sys.path``, as for a
    script) and return its namespace. gradgen's own staleness warnings are not the
    check's business and are silenced."""
    tag = zlib.crc32(str(path.resolve()).encode())
    name = f"_gradgen_check_{tag:08x}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module  # dataclasses and the decorator look their module up
    try:
        with warnings.catch_warnings():
            from gradgen.decorator import StaleBackwardWarning

            warnings.simplefilter("ignore", StaleBackwardWarning)
            spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
        if folder in sys.path:
            sys.path.remove(folder)
    return vars(module)


def _run_module(text: str, filename: str, path: Path | None) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "_gradgen_check_backward"}
    if path is not None:
        namespace["__file__"] = str(path)
    exec(compile(text, filename, "exec"), namespace)
    return namespace


def _last_line(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()


def _check_one(
    backward: BackwardFunction,
    source: str,
    shown: str,
    forward_namespace: dict[str, Any],
    backward_namespace: dict[str, Any],
    backward_text: str,
    backward_name: str,
    shapes: dict[str, Dims],
    ints: dict[str, int | str | None],
    args: argparse.Namespace,
) -> FunctionReport:
    name = backward.staged.name
    report = FunctionReport(name)
    forward = forward_namespace.get(name)
    if not callable(forward):
        report.error = f"the module defines no function '{name}' when run"
        return report
    wrapped = _backward_from_module(
        backward_text, backward_name, backward_namespace, f"{name}_backward"
    )
    if wrapped is None:
        report.error = f"{backward_name} defines no {name}_backward"
        return report
    pair_forward = backward_namespace.get(f"{name}_forward")
    if callable(pair_forward):
        wrapped.pair_forward = pair_forward
    specs = _specs(backward, source, shapes, ints)
    fixed = {
        k: int(v[0]) for k, v in shapes.items() if len(v) == 1 and k not in {s.name for s in specs}
    }
    rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
    found = _arguments(forward, specs, fixed, rng)
    if isinstance(found, str):
        shape_list = ", ".join(f"{s.name}: {s.dims}" for s in specs if s.dims)
        report.error = (
            f"{name} does not run on random arguments ({found}); give shapes with --shapes "
            "(x=2,3 or N=4)" + (f" [annotations: {shape_list}]" if shape_list else "")
        )
        return report
    values, sizes = found
    report.sizes = {k: v for k, v in sizes.items() if k in _symbols(specs)}
    report.notes += [f"{s.name}: {s.note}" for s in specs if s.note]
    info = _forward_info(backward, source, shown, forward.__globals__)
    slots = dict(zip((s.name for s in specs), backward.gradients, strict=True))
    for attempt in range(_FLAT_ATTEMPTS):
        with np.errstate(all="ignore"):
            value = forward(*values)
        upstream = _random_upstream(value, rng)
        index = frozenset(s.name for s in specs if s.integer)
        parameters = tuple(s.name for s in specs)
        case = _Case(name, forward, parameters, values, upstream, wrapped, index, info=info)
        report.gradients, report.culprit, report.error = [], None, None
        _run_case(case, args.rtol, args.atol, report)
        # A gradient that is zero everywhere at these arguments (every ReLU or margin
        # inactive) checks nothing: other values are drawn, on the same sizes.
        flat = [g.parameter for g in report.gradients if g.flat and slots[g.parameter] != "0.0"]
        if not report.passed or not flat:
            break
        if attempt + 1 == _FLAT_ATTEMPTS:
            report.notes.append(
                f"central differences of {', '.join(flat)} are zero everywhere at the drawn "
                "arguments, so that check says little; try another --seed"
            )
            break
        values = _redrawn(forward, specs, sizes, rng) or values
    report.shapes = {s.name: _shape_text(v, s.integer) for s, v in zip(specs, values, strict=True)}
    return report


def _print_reports(reports: Sequence[FunctionReport]) -> None:
    """The table (function, parameter, shape, max rel. error, result), then the details of
    each failure and the line it comes from."""
    for report in reports:
        if report.sizes:
            sizes = ", ".join(f"{k}={v}" for k, v in report.sizes.items())
            print(f"{report.function}: sizes {sizes}")
    rows = [("function", "parameter", "shape", "max rel. error", "result")]
    for report in reports:
        if report.error is not None:
            rows.append((report.function, "-", "-", "-", "ERROR"))
            continue
        for check in report.gradients:
            error = "-" if check.status == "skip" else f"{check.max_rel_error:.1e}"
            result = "skip (None)" if check.status == "skip" else check.status
            shape = report.shapes.get(check.parameter, "")
            rows.append((report.function, check.parameter, shape, error, result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    checked = [g for r in reports for g in r.gradients if g.status != "skip"]
    failed = [g for g in checked if not g.passed]
    for report in reports:
        if report.passed:
            if report.notes:
                print()
            for note in report.notes:
                print(f"{report.function}: note: {note}")
            continue
        print()
        if report.error is not None:
            print(f"{report.function}: error: {report.error}")
        for check in report.gradients:
            if not check.passed:
                print(f"{report.function}: {check.describe()}")
        if report.culprit is not None:
            print(report.culprit.render())
        for note in report.notes:
            print(f"{report.function}: note: {note}")
    errors = sum(r.error is not None for r in reports)
    print()
    if not failed and not errors:
        print(f"all {len(checked)} gradients match central differences")
    else:
        parts = []
        if failed:
            parts.append(f"{len(failed)} of {len(checked)} gradients do not match")
        if errors:
            parts.append(f"{errors} function(s) could not be checked")
        print("; ".join(parts))
