"""The worked examples of the CS231n backprop notes, with the notes' own numbers.

The notes' fourth example, the gradient of a matrix product (``D = W.dot(X)``), needs array
support, which gradgen does not have yet; it gets a test when that support lands.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from typing import Any

import numpy
import pytest

import gradgen

# --- helpers ------------------------------------------------------------------------------


def run_module(text: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(text, "<module>", "exec"), namespace)
    return namespace


def forward_and_backward(source: str) -> tuple[Callable[..., Any], Callable[..., Any], str]:
    generated = gradgen.generate(source, "seed.py")
    return run_module(source)["f"], run_module(generated)["f_backward"], generated


def finite_differences(f: Callable[..., Any], point: tuple[float, ...]) -> list[float]:
    result = []
    for i, value in enumerate(point):
        h = 1e-6 * max(1.0, abs(value))
        up, down = list(point), list(point)
        up[i], down[i] = value + h, value - h
        result.append((f(*up) - f(*down)) / ((value + h) - (value - h)))
    return result


def function_node(text: str, name: str) -> ast.FunctionDef:
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"no function {name} in:\n{text}")


# --- f(x, y, z) = (x + y) * z ------------------------------------------------------------------

SIMPLE = """\
def f(x, y, z):
    q = x + y
    f = q * z
    return f
"""


def test_simple_expression_value_and_exact_gradients() -> None:
    forward, backward, generated = forward_and_backward(SIMPLE)
    assert forward(-2, 5, -4) == -12
    assert backward(-2.0, 5.0, -4.0) == (-4.0, -4.0, 3.0), generated


def test_simple_expression_upstream_gradient_is_named_after_the_result() -> None:
    generated = gradgen.generate(SIMPLE)
    assert "def f_backward(x, y, z, df=1.0):" in generated


# --- the 2-D sigmoid neuron ---------------------------------------------------------------------

NEURON = """\
import math


def f(w0, w1, w2, x0, x1):
    f = 1 / (1 + math.exp(-(w0*x0 + w1*x1 + w2)))
    return f
"""
W = [2.0, -3.0, -3.0]
X = [-1.0, -2.0]


def test_neuron_forward_matches_the_notes() -> None:
    forward, _, _ = forward_and_backward(NEURON)
    dot = W[0] * X[0] + W[1] * X[1] + W[2]
    assert dot == 1.0
    f = forward(*W, *X)
    assert round(f, 2) == 0.73
    assert round((1 - f) * f, 1) == 0.2  # ddot, the gradient on the dot product


def test_neuron_gradients_match_the_notes_to_two_decimals() -> None:
    _, backward, generated = forward_and_backward(NEURON)
    dw0, dw1, dw2, dx0, dx1 = backward(*W, *X)
    assert [round(g, 2) for g in (dw0, dw1, dw2)] == [-0.2, -0.39, 0.2], generated
    assert [round(g, 2) for g in (dx0, dx1)] == [0.39, -0.59], generated


def test_neuron_gradients_match_finite_differences() -> None:
    forward, backward, generated = forward_and_backward(NEURON)
    point = (*W, *X)
    numpy.testing.assert_allclose(
        backward(*point),
        finite_differences(forward, point),
        rtol=1e-7,
        atol=1e-10,
        err_msg=generated,
    )


def test_neuron_gradients_are_the_closed_form() -> None:
    # ddot = (1 - f) * f; dw = [x0, x1, 1] * ddot; dx = [w0, w1] * ddot
    _, backward, _ = forward_and_backward(NEURON)
    f = 1 / (1 + math.exp(-1.0))
    ddot = (1 - f) * f
    expected = [X[0] * ddot, X[1] * ddot, ddot, W[0] * ddot, W[1] * ddot]
    numpy.testing.assert_allclose(backward(*W, *X), expected, rtol=1e-15)


# --- the staged example ------------------------------------------------------------------------

STAGED = """\
import math
def f(x, y):
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    f = num * invden
    return f
"""

# The notes' hand-written backward, one statement per row: the gradient written, and the
# forward statement it backpropagates (the generated code quotes it in a comment above).
SEED_BACKWARD = [
    ("dnum", "f = num * invden"),
    ("dinvden", "f = num * invden"),
    ("dden", "invden = 1.0 / den"),
    ("dsigx", "den = sigx + xpysqr"),
    ("dxpysqr", "den = sigx + xpysqr"),
    ("dxpy", "xpysqr = xpy**2"),
    ("dx", "xpy = x + y"),
    ("dy", "xpy = x + y"),
    ("dx", "sigx = 1.0 / (1 + math.exp(-x))"),
    ("dx", "num = x + sigy"),
    ("dsigy", "num = x + sigy"),
    ("dy", "sigy = 1.0 / (1 + math.exp(-y))"),
]
INTERMEDIATES = ["sigy", "num", "sigx", "xpy", "xpysqr", "den", "invden"]


# The same function in a module that also imports numpy: its values are still numbers (math
# takes numbers only), so its backward is still the notes' code, with no array machinery.
HEADERS = {"math": "", "math and numpy": "import numpy as np\n"}


@pytest.fixture(scope="module", params=list(HEADERS))
def staged_module(request: pytest.FixtureRequest) -> str:
    return gradgen.generate(HEADERS[request.param] + STAGED, "staged.py")


@pytest.fixture(scope="module")
def staged_backward(staged_module: str) -> str:
    """The generated module up to the end of ``f_backward``."""
    function = function_node(staged_module, "f_backward")
    return "\n".join(staged_module.splitlines()[: function.end_lineno]) + "\n"


def test_staged_example_matches_finite_differences(staged_backward: str) -> None:
    forward = run_module(STAGED)["f"]
    backward = run_module(staged_backward)["f_backward"]
    point = (3.0, -4.0)
    numpy.testing.assert_allclose(
        backward(*point),
        finite_differences(forward, point),
        rtol=1e-6,
        atol=1e-10,
        err_msg=staged_backward,
    )


def _assigned_name(statement: ast.stmt) -> str | None:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id
    return None


def _split_body(text: str) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """``f_backward``'s (recomputed forward, adjoint) statements: the adjoints start at the
    first ``# backprop`` comment; the docstring and the return are left out."""
    function = function_node(text, "f_backward")
    lines = text.splitlines()
    first_comment = next(
        number
        for number in range(function.lineno, function.end_lineno or len(lines))
        if lines[number - 1].strip().startswith("# backprop ")
    )
    body = [
        s
        for s in function.body
        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        and not isinstance(s, ast.Return)
    ]
    return (
        [s for s in body if s.lineno < first_comment],
        [s for s in body if s.lineno > first_comment],
    )


def test_staged_recomputes_the_intermediates_but_not_the_output(staged_backward: str) -> None:
    forward, _ = _split_body(staged_backward)
    recomputed = [_assigned_name(s) for s in forward]
    assert recomputed == INTERMEDIATES, staged_backward
    assert not re.search(r"^\s*f = ", staged_backward, re.MULTILINE), staged_backward


def test_staged_adjoints_match_the_seed_one_for_one(staged_backward: str) -> None:
    _, adjoints = _split_body(staged_backward)
    targets = [_assigned_name(s) for s in adjoints]
    assert targets == [target for target, _ in SEED_BACKWARD], staged_backward
    assert len(adjoints) == 12


def test_staged_first_write_assigns_later_writes_accumulate(staged_backward: str) -> None:
    _, adjoints = _split_body(staged_backward)
    written: set[str] = set()
    for statement in adjoints:
        name = _assigned_name(statement)
        line = ast.unparse(statement)
        if name not in written:
            assert isinstance(statement, ast.Assign), f"first write of {name}: {line}"
            assert name not in {
                n.id for n in ast.walk(statement.value) if isinstance(n, ast.Name)
            }, line
        elif isinstance(statement, ast.Assign):
            # `dx = dx + ...` (a fresh sum, when dx shares its object)
            value = statement.value
            assert isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Sub)), line
            assert isinstance(value.left, ast.Name) and value.left.id == name, line
        else:
            assert isinstance(statement, ast.AugAssign), line
            assert isinstance(statement.op, (ast.Add, ast.Sub)), line
        written.add(name)


def test_staged_each_adjoint_is_under_its_backprop_comment(staged_backward: str) -> None:
    function = function_node(staged_backward, "f_backward")
    _, adjoints = _split_body(staged_backward)
    lines = staged_backward.splitlines()
    for statement, (target, forward_statement) in zip(adjoints, SEED_BACKWARD, strict=True):
        above = lines[function.lineno : statement.lineno - 1]
        comments = [line.strip() for line in above if line.strip().startswith("# backprop ")]
        assert f"# backprop {forward_statement}" in comments, (
            f"{target} (line {statement.lineno}) has no '# backprop {forward_statement}' above it"
        )
        # and it is the nearest one: the statement belongs to that forward statement's group
        assert comments[-1] == f"# backprop {forward_statement}", (
            f"{target} (line {statement.lineno}) is under {comments[-1]!r}"
        )


def test_staged_comments_quote_the_forward_statements_in_reverse_order(
    staged_backward: str,
) -> None:
    comments = [
        line.strip()[len("# backprop ") :]
        for line in staged_backward.splitlines()
        if line.strip().startswith("# backprop ")
    ]
    forward_statements = [line.strip() for line in STAGED.splitlines()[2:-1]]
    assert comments == forward_statements[::-1]
