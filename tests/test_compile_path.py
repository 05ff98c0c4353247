"""One compile path: ``gradgen``, ``gradgen --check``/``--diff``, ``gradgen check``, the
decorator and ``gradgen.testing`` each compile through ``gradgen.api.compile_source`` once,
under one guard (deep expressions, internal errors), and the gradient check reads what
gradgen knew (each gradient's name, what each statement of the backward writes and which
forward statement it comes from) from the result, not from the generated text.
"""

from __future__ import annotations

import ast
import gc
import importlib
import itertools
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import gradgen
import gradgen.api
import gradgen.emit
import gradgen.program
from cli_project import GOOD, Run, write
from gradgen.api import Compiled, FunctionSource, Options, compile_source
from gradgen.config import find_config, is_skipped
from gradgen.emit import Tie
from gradgen.errors import GradgenError, InternalError
from gradgen.ir import BackwardFunction, Kind
from gradgen.naming import (
    backward_function_name,
    forward_function_name,
    value_and_grad_function_name,
)
from gradgen.parse import MAX_NESTING
from gradgen.program import FunctionBackwards
from gradgen.testing import assert_gradients_match

ROOT = Path(__file__).resolve().parent.parent
_modules = itertools.count()


@pytest.fixture
def load(project: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """``load(source) -> module``, imported from a file of the project of its own (the
    decorator and the check read the source; no ``[tool.gradgen]``: generated in memory)."""
    monkeypatch.syspath_prepend(str(project))

    def load_(source: str) -> ModuleType:
        name = f"compile_path_module_{next(_modules)}"
        write(project / f"{name}.py", textwrap.dedent(source))
        importlib.invalidate_caches()
        return importlib.import_module(name)

    return load_


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[Options]:
    """The options of every compile from here on: each one, whatever the entry point, is a
    call of the one function behind ``compile_source``."""
    calls: list[Options] = []
    real = gradgen.api._compile

    def counted(source: str | FunctionSource, filename: str, options: Options) -> Compiled:
        calls.append(options)
        return real(source, filename, options)

    monkeypatch.setattr(gradgen.api, "_compile", counted)
    return calls


DECORATED = """\
import math

import gradgen


@gradgen.differentiable
def f(x, y):
    a = x * y
    b = math.sin(a)
    return a + b
"""

PLAIN = """\
import math


def f(x, y):
    a = x * y
    b = math.sin(a)
    return a + b


def f_wrong(x, y, dout=1.0):
    a = x * y
    da = (1.0 + math.cos(a)) * dout
    dx = 2.0 * y * da
    dy = x * da
    return dx, dy
"""


# --- every entry point compiles once -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["f.py"], id="stdout"),
        pytest.param(["f.py", "-o", "out.py"], id="file"),
        pytest.param(["--check", "f.py", "-o", "out.py"], id="check"),
        pytest.param(["--diff", "f.py", "-o", "out.py"], id="diff"),
        pytest.param(["check", "f.py"], id="gradgen-check"),
        pytest.param(["check", "f.py", "--function", "f"], id="gradgen-check-function"),
    ],
)
def test_the_command_line_compiles_once(
    project: Path, run: Run, compiles: list[Options], argv: list[str]
) -> None:
    write(project / "f.py", GOOD)
    status, _, err = run(*argv)
    assert status in (0, 1), err  # 1: --check of an output not written yet
    assert len(compiles) == 1


def test_the_decorator_compiles_once(
    load: Callable[[str], ModuleType], compiles: list[Options]
) -> None:
    module = load(DECORATED)
    assert len(compiles) == 1
    assert compiles[0].text == "functions"
    assert_gradients_match(module.f, 0.3, -0.7)  # its compile is the decorator's
    assert len(compiles) == 1


def test_testing_compiles_once(load: Callable[[str], ModuleType], compiles: list[Options]) -> None:
    module = load(PLAIN)
    assert_gradients_match(module.f, 0.3, -0.7)  # generated now
    assert len(compiles) == 1
    # A failing hand-written backward: f compiled (no text) to name the line.
    with pytest.raises(AssertionError, match="the adjoint of 'x' disagrees"):
        assert_gradients_match(module.f, 0.3, -0.7, backward=module.f_wrong)
    assert [options.text for options in compiles] == ["functions", "none"]


# --- the same guard everywhere -----------------------------------------------------------------


def _boom(*args: object, **kwargs: object) -> Any:
    raise ValueError("boom")


BOOM = "internal error: ValueError: boom; please report"


def test_an_internal_error_is_reported_alike_by_every_entry_point(
    project: Path, run: Run, load: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project / "f.py", GOOD)
    plain = load(PLAIN)
    monkeypatch.setattr(gradgen.program, "stage_function", _boom)
    assert run("f.py") == (123, "", f"f.py: {BOOM}\n")
    assert run("check", "f.py") == (123, "", f"f.py: {BOOM}\n")
    for call in (
        lambda: load(DECORATED),
        lambda: assert_gradients_match(plain.f, 0.3, -0.7),
        lambda: gradgen.generate(GOOD, "f.py"),
    ):
        with pytest.raises(InternalError) as info:
            call()
        assert str(info.value) == BOOM
        assert isinstance(info.value.__cause__, ValueError)  # the traceback shows where


def test_a_too_deep_expression_is_refused_alike_by_every_entry_point(
    project: Path, run: Run, load: Callable[[str], ModuleType]
) -> None:
    deep = " + ".join(["x"] * (MAX_NESTING + 1))
    source = f"import gradgen\n\n\n@gradgen.differentiable\ndef f(x):\n    return {deep}\n"
    write(project / "deep.py", source)
    status, _, refusal = run("deep.py")
    assert status == 123
    assert refusal.startswith("deep.py:6:12: error: expression nested too deeply"), refusal
    assert run("check", "deep.py") == (123, "", refusal)
    with pytest.raises(GradgenError) as decorated:
        load(source)
    plain = load(f"def f(x):\n    return {deep}\n")
    with pytest.raises(GradgenError) as tested:
        assert_gradients_match(plain.f, 0.5)
    for error in (decorated.value, tested.value):
        assert [d.message for d in error.diagnostics] == [
            refusal.split("error: ")[1].split("\n")[0]
        ]
    assert (decorated.value.diagnostics[0].line, decorated.value.diagnostics[0].column) == (6, 12)


# --- the check reads what gradgen knew ---------------------------------------------------------

# The gradient of x cannot be dx (a variable of f) and the one of _x cannot be d_x (x's):
# a reader of the generated text guessing names from the variables would take x's gradient
# for _x's.
AMBIGUOUS = """\
def f(x, _x):
    dx = x * _x
    y = dx * x
    return y
"""


def test_the_check_reads_gradient_names_from_the_compile(project: Path, run: Run) -> None:
    write(project / "amb.py", AMBIGUOUS)
    generated = gradgen.generate(AMBIGUOUS, "amb.py")
    assert "return d_x, d__x" in generated
    # x's share from `y = dx * x` doubled: the adjoint of x is wrong, the one of _x is right.
    wrong = generated.replace("    d_x = dx * dy\n", "    d_x = 2.0 * dx * dy\n")
    assert wrong != generated
    write(project / "wrong.py", wrong)
    status, out, _ = run("check", "amb.py", "--backward", "wrong.py")
    assert status == 1
    assert "amb.py:3: the adjoint of 'x' disagrees" in out, out
    assert "'_x' disagrees" not in out


def test_testing_reads_gradient_names_from_the_compile(load: Callable[[str], ModuleType]) -> None:
    wrong = (
        "def f_wrong(x, _x, dy=1.0):\n    dx = x * _x\n    ddx = x * dy\n"
        "    d_x = 2.0 * dx * dy\n    d_x += _x * ddx\n    d__x = x * ddx\n    return d_x, d__x\n"
    )
    module = load(AMBIGUOUS + "\n\n" + wrong)
    with pytest.raises(AssertionError) as info:
        assert_gradients_match(module.f, 0.3, -0.7, backward=module.f_wrong)
    assert f"{module.__file__}:3: the adjoint of 'x' disagrees" in str(info.value)


STAGED = """\
import math


def f(x, y):
    sigy = 1.0 / (1.0 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1.0 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    h = num * invden
    return h
"""


@pytest.fixture
def gradgen_bug(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, tuple[int, ...]], None]:
    """``gradgen_bug(change, statements)``: from now on gradgen writes the adjoint lines of
    these forward statements (indices) into dx with ``change`` appended, and quotes no
    statement in its ``# backprop`` comments: only the compile says where a line comes from."""

    def inject(change: str, statements: tuple[int, ...]) -> None:
        real = gradgen.emit._adjoint_line

        def buggy(adjoint: Any, helpers: Any) -> str:
            line = real(adjoint, helpers)
            return line + change if (adjoint.target, adjoint.statement) in wrong else line

        wrong = {("dx", s) for s in statements}
        monkeypatch.setattr(gradgen.emit, "_adjoint_line", buggy)
        monkeypatch.setattr(gradgen.emit, "_shorten", lambda text: "a quote of nothing")

    return inject


def test_a_wrong_generated_backward_is_named_from_the_compile(
    project: Path, run: Run, gradgen_bug: Callable[[str, tuple[int, ...]], None]
) -> None:
    # Two of the three statements reading x get a wrong share: the comments would leave
    # three suspects; what the compile says of each statement names the last wrong one.
    write(project / "staged.py", STAGED)
    gradgen_bug(" * 2.0", (1, 3))
    status, out, _ = run("check", "staged.py")
    assert status == 1
    assert "staged.py:8: the adjoint of 'x' disagrees" in out, out
    assert "also read here" not in out


def test_a_generated_backward_that_raises_is_named_from_the_compile(
    project: Path, run: Run, gradgen_bug: Callable[[str, tuple[int, ...]], None]
) -> None:
    write(project / "staged.py", STAGED)
    gradgen_bug(" * missing_name", (1,))
    status, out, _ = run("check", "staged.py")
    assert status == 1
    assert "staged.py:6: the backward of this line raised NameError" in out, out


def test_testing_names_a_wrong_decorated_backward_from_the_compile(
    load: Callable[[str], ModuleType], gradgen_bug: Callable[[str, tuple[int, ...]], None]
) -> None:
    gradgen_bug(" * 2.0", (1, 3))
    decorated = STAGED.replace(
        "\n\ndef f(", "\nimport gradgen\n\n\n@gradgen.differentiable\ndef f("
    )
    module = load(decorated)
    with pytest.raises(AssertionError) as info:
        assert_gradients_match(module.f, 0.3, -0.7)
    line = decorated.splitlines().index("    xpy = x + y") + 1
    assert f"{module.__file__}:{line}: the adjoint of 'x' disagrees" in str(info.value)
    assert "also read here" not in str(info.value)
    plain = load(STAGED)  # generated now, by gradgen.testing
    with pytest.raises(AssertionError) as info:
        assert_gradients_match(plain.f, 0.3, -0.7)
    assert f"{plain.__file__}:8: the adjoint of 'x' disagrees" in str(info.value)


# --- the ties are right ------------------------------------------------------------------------


def _written(statement: ast.stmt) -> str | None:
    """The gradient an adjoint statement writes, as gradgen spells the statement kinds."""
    if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
        return statement.targets[0].id
    if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Tuple):
        # dx, dw = f_cached_backward(dh, cache): tied to the first gradient it binds
        names = [e.id for e in statement.targets[0].elts if isinstance(e, ast.Name)]
        return next((n for n in names if n != "_"), None)
    if isinstance(statement, ast.AugAssign):
        target = statement.target
        while isinstance(target, ast.Subscript):
            target = target.value
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        first = statement.value.args[0] if statement.value.args else None  # np.add.at(dx, ...)
        return first.id if isinstance(first, ast.Name) else None
    return None


def _bodies(text: str) -> Iterator[tuple[str, list[ast.stmt]]]:
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            yield node.name, node.body[1:]  # after the docstring


EXAMPLES = [p for p in sorted((ROOT / "examples").glob("*.py")) if not is_skipped(p)]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("pairs", [False, True], ids=["plain", "pairs"])
def test_ties_are_one_per_statement_and_name_what_it_writes(example: Path, pairs: bool) -> None:
    # The check trusts them for gradgen's own backward (a count that does not match makes it
    # read the backward as any other): they must describe the text exactly.
    source = example.read_text(encoding="utf-8")
    wrt = _configured_wrt(example)  # as the project generates it (poisson_regression: beta)
    # By its path: an example may import functions from another beside it; the module
    # data an example reads (a generator) is imported from its module.
    module = f"examples.{example.stem}"
    compiled = compile_source(
        source,
        str(example),
        Options(pairs=pairs, wrt=wrt, forward_module=module, value_and_grad=True),
    )
    # The decorator's text: each function alone, the imports and helpers it needs inside.
    alone = [
        compile_source(
            FunctionSource(source, name, _function_lines(source, name), _first_line(source, name)),
            str(example),
            Options(pairs=pairs, text="functions", wrt=wrt, value_and_grad=True),
        )
        for name in (b.staged.name for b in compiled.backwards)
    ]
    if "\ndef _" in compiled.text:  # helpers: each function alone defines them inside
        assert any("\n    def _" in result.text for result in alone)
    for result in (compiled, *alone):
        # A user rule's functions are copied as the user wrote them: no ties.
        copied = {n for rule in result.program.rules for n in (rule.forward, rule.backward)}
        bodies = {n: b for n, b in _bodies(result.text) if n not in copied}
        assert set(result.ties) == set(bodies)
        # Per function: its public functions, and for a function others call its F_forward
        # (the pair's own with --pairs) and the backwards from its cache that callers call.
        expected = 0
        for function in result.program.functions:
            if function.public is not None:
                # A function that draws has no recomputing F_backward (pairs aside).
                expected += 3 if pairs else (1 if function.draws is not None else 2)
            if function.called and not (pairs and function.public is not None):
                expected += 1
            expected += len(function.cached)
        assert len(bodies) == expected
        of_name = {
            generated: backward
            for function in result.program.functions
            for backward, names in _generated(function)
            for generated in names
        }
        for name, body in bodies.items():
            ties = result.ties[name]
            assert len(ties) == len(body), name
            for statement, tie in zip(body, ties, strict=True):
                if tie is not None:
                    assert isinstance(tie, Tie)
                    assert _written(statement) == tie.gradient, ast.unparse(statement)
            gradients = {t.gradient for t in ties if t is not None}
            backward = of_name.get(name)
            if backward is None:  # a callee's F_forward: no gradient written
                assert not gradients, name
                continue
            assert gradients <= {g for _, g in backward.gradient_of} | _call_targets(backward), name


def _configured_wrt(example: Path) -> dict[str, list[str]] | None:
    """The ``wrt`` of the project's mapping that generates ``example``."""
    config = find_config(ROOT)
    assert config is not None
    return next((m.wrt for m in config.mappings if m.backward_for(example) is not None), None)


def _call_targets(backward: BackwardFunction) -> set[str]:
    """The names a call of a callee's backward binds (a contribution added afterwards)."""
    return {t for a in backward.adjoints for t in a.bound if a.kind is Kind.CALL}


def _generated(function: FunctionBackwards) -> list[tuple[BackwardFunction, set[str]]]:
    found = []
    if function.public is not None:
        found.append((function.public, _generated_names(function.public)))
    found += [(backward, {name}) for name, backward in function.cached]
    return found


def _generated_names(backward: BackwardFunction) -> set[str]:
    name = backward.staged.name
    return {
        backward_function_name(name),
        value_and_grad_function_name(name),
        forward_function_name(name),
    }


def _function_lines(source: str, name: str) -> str:
    node = next(n for n in ast.parse(source).body if getattr(n, "name", None) == name)
    assert isinstance(node, ast.FunctionDef)
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    return "".join(source.splitlines(keepends=True)[start - 1 : node.end_lineno])


def _first_line(source: str, name: str) -> int:
    node = next(n for n in ast.parse(source).body if getattr(n, "name", None) == name)
    assert isinstance(node, ast.FunctionDef)
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


def test_a_compile_leaves_the_cycle_collector_as_it_found_it() -> None:
    # Paused while a compile runs (it only slows a long function down), never left off.
    assert gc.isenabled()
    gradgen.generate(GOOD, "f.py")
    assert gc.isenabled()
    with pytest.raises(GradgenError):
        gradgen.generate("def f(x):\n    return x +\n", "bad.py")
    assert gc.isenabled()
    gc.disable()
    try:
        gradgen.generate(GOOD, "f.py")
        assert not gc.isenabled()
    finally:
        gc.enable()
