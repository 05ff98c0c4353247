"""``gradgen.expr.render`` writes what black writes, and ``simplify`` keeps values.

gradgen does not run black on generated lines that are short enough (``format.py``), so for
those lines the renderer alone must produce black's spacing and parentheses. Random
expression trees (seeded, so every run checks the same trees) are rendered, given to black,
and evaluated, both as the rendered text and directly from the tree. Random subscripts,
their slices bounded by names, constants, attributes, calls and operations, are given to
black too.
"""

from __future__ import annotations

import ast
import math
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import black
import numpy
import pytest

import gradgen
from gradgen.emit import FunctionText, ModuleText
from gradgen.expr import (
    Attribute,
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Func,
    Group,
    Name,
    Slice,
    Subscript,
    UnaryOp,
    number,
    render,
    simplify,
    walk,
)
from gradgen.format import INDENT, format_module
from gradgen.helpers import HELPERS, helper_source
from test_rules import ATOL, RTOL, numeric_gradient, run_module

MODE = black.Mode()
SHORT = 80  # lines shorter than this are left to the renderer alone

# --- building blocks ---------------------------------------------------------------------------

NAME_VALUES = {"x": 0.7, "y": 1.3, "z": 2.1, "g": 0.4}
NUMBERS: list[int | float] = [0, 1, 2, 3, 10, 0.5, 1.5, 2.0, 1e-05, -1, -2, -0.5, -3.25]
DOTTED = {"math.pi": math.pi, "math.e": math.e, "math.tau": math.tau}
FUNCTIONS: dict[str, tuple[Func, int, Callable[..., Any]]] = {
    "math.exp": (Func("math", "exp", "math.exp"), 1, math.exp),
    "math.log": (Func("math", "log", "math.log"), 1, math.log),
    "math.sqrt": (Func("math", "sqrt", "math.sqrt"), 1, math.sqrt),
    "math.tanh": (Func("math", "tanh", "math.tanh"), 1, math.tanh),
    "math.cos": (Func("math", "cos", "math.cos"), 1, math.cos),
    "math.pow": (Func("math", "pow", "math.pow"), 2, math.pow),
    "abs": (Func("builtins", "abs", "abs"), 1, abs),
    "max": (Func("builtins", "max", "max"), 2, max),
    "min": (Func("builtins", "min", "min"), 2, min),
}
IMPLEMENTATIONS = {(f.lib, f.name): impl for f, _, impl in FUNCTIONS.values()}
BINARY_OPS = ["+", "-", "*", "/", "**"]
COMPARE_OPS = ["<", "<=", ">", ">="]

x, y, z, g = Name("x"), Name("y"), Name("z"), Name("g")


def num(value: int | float) -> Const:
    return Const(repr(value), value)


def call(name: str, *args: Expr) -> Call:
    return Call(FUNCTIONS[name][0], args)


def line_of(expr: Expr) -> str:
    return f"x = {render(expr)}"


def black_line(line: str) -> str:
    return black.format_str(line + "\n", mode=MODE).rstrip("\n")


# --- random trees --------------------------------------------------------------------------------


def random_leaf(rng: random.Random) -> Expr:
    kind = rng.random()
    if kind < 0.5:
        return Name(rng.choice(list(NAME_VALUES)))
    if kind < 0.85:
        return num(rng.choice(NUMBERS))
    return Const(rng.choice(list(DOTTED)))


def random_tree(rng: random.Random, depth: int) -> Expr:
    if depth <= 0 or rng.random() < 0.2:
        return random_leaf(rng)
    kind = rng.choice(["binop"] * 5 + ["unary", "unary", "call", "group", "compare"])
    if kind == "binop":
        op = rng.choice(BINARY_OPS)
        return BinOp(op, random_tree(rng, depth - 1), random_tree(rng, depth - 1))
    if kind == "unary":
        return UnaryOp(rng.choice("-+"), random_tree(rng, depth - 1))
    if kind == "call":
        func, arity, _ = FUNCTIONS[rng.choice(list(FUNCTIONS))]
        return Call(func, tuple(random_tree(rng, depth - 1) for _ in range(arity)))
    if kind == "group":
        return Group(random_tree(rng, depth - 1))
    # a comparison, as the adjoint templates use them: a mask inside arithmetic
    compare = Compare(
        rng.choice(COMPARE_OPS), random_tree(rng, depth - 2), random_tree(rng, depth - 2)
    )
    other = random_tree(rng, depth - 1)
    op = rng.choice(["+", "-", "*", "/"])
    return BinOp(op, compare, other) if rng.random() < 0.5 else BinOp(op, other, compare)


def tree_for_seed(seed: int) -> Expr:
    tree = random_tree(random.Random(seed), depth=rng_depth(seed))
    # gradgen never renders a parenthesized right-hand side (black would drop the
    # parentheses): the stages unwrap it.
    while isinstance(tree, Group):
        tree = tree.inner
    return tree


def rng_depth(seed: int) -> int:
    return 2 + seed % 4


# --- an evaluator that does not go through the renderer ----------------------------------------


class NotComputable(Exception):
    """The tree's value is an error, complex, or too large to compute quickly."""


def evaluate(expr: Expr) -> Any:
    try:
        value = _evaluate(expr)
    except (ArithmeticError, ValueError) as error:
        raise NotComputable from error
    if isinstance(value, complex):
        raise NotComputable
    return value


def _evaluate(expr: Expr) -> Any:
    if isinstance(expr, Name):
        return NAME_VALUES[expr.id]
    if isinstance(expr, Const):
        return expr.value if expr.value is not None else DOTTED[expr.text]
    if isinstance(expr, Group):
        return _evaluate(expr.inner)
    if isinstance(expr, UnaryOp):
        operand = _checked(_evaluate(expr.operand))
        return -operand if expr.op == "-" else +operand
    if isinstance(expr, Call):
        args = [_checked(_evaluate(a)) for a in expr.args]
        return _checked(IMPLEMENTATIONS[(expr.func.lib, expr.func.name)](*args))
    left = _checked(_evaluate(expr.left))
    right = _checked(_evaluate(expr.right))
    if isinstance(expr, Compare):
        return {
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[expr.op]
    if expr.op == "+":
        return _checked(left + right)
    if expr.op == "-":
        return _checked(left - right)
    if expr.op == "*":
        return _checked(left * right)
    if expr.op == "/":
        return _checked(left / right)
    if isinstance(left, int) and isinstance(right, int) and abs(right) > 64:
        raise NotComputable  # an exact integer power this large takes long to compute
    return _checked(left**right)


def _checked(value: Any) -> Any:
    if isinstance(value, complex):
        raise NotComputable
    if isinstance(value, int) and abs(value) > 10**300:
        raise NotComputable
    return value


def evaluate_text(text: str) -> Any:
    code = compile(ast.parse(text, mode="eval"), "<render>", "eval")
    return eval(code, {"math": math}, dict(NAME_VALUES))


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


# --- render: black's text, the tree's value ------------------------------------------------------

RENDER_SEEDS = range(400)


@pytest.mark.parametrize("seed", RENDER_SEEDS, ids=lambda s: f"tree-{s}")
def test_random_tree_renders_as_black_writes_it(seed: int) -> None:
    line = line_of(tree_for_seed(seed))
    if len(line) >= SHORT:
        return  # format.py sends long lines through black
    assert black_line(line) == line


@pytest.mark.parametrize("seed", RENDER_SEEDS, ids=lambda s: f"tree-{s}")
def test_random_tree_renders_to_its_value(seed: int) -> None:
    tree = tree_for_seed(seed)
    try:
        expected = evaluate(tree)
    except NotComputable:
        return
    text = render(tree)
    actual = evaluate_text(text)
    assert same_value(actual, expected), f"{text} is {actual!r}; the tree's value is {expected!r}"


def test_random_trees_cover_every_kind_of_node() -> None:
    kinds: Counter[str] = Counter()
    short = computable = 0
    for seed in RENDER_SEEDS:
        tree = tree_for_seed(seed)
        short += len(line_of(tree)) < SHORT
        try:
            evaluate(tree)
            computable += 1
        except NotComputable:
            pass
        for node in walk(tree):
            kinds[type(node).__name__ + getattr(node, "op", "")] += 1
            if isinstance(node, Const):
                kinds["negative" if node.text.startswith("-") else "constant"] += 1
    assert short >= 200, f"only {short} short lines"
    assert computable >= 200, f"only {computable} trees with a value"
    expected = ["Name", "constant", "negative", "Call", "Group", "UnaryOp-", "UnaryOp+"]
    expected += [f"BinOp{op}" for op in BINARY_OPS] + [f"Compare{op}" for op in COMPARE_OPS]
    assert all(kinds[k] >= 5 for k in expected), kinds


# Hand-picked cases: what black writes, checked both against black and the renderer.
RENDER_CASES = [
    pytest.param(BinOp("**", x, num(2)), "x**2", id="power-hugs-simple-operands"),
    pytest.param(
        BinOp("**", Const("math.pi"), num(2)), "math.pi**2", id="power-of-dotted-constant"
    ),
    pytest.param(BinOp("**", call("math.exp", x), num(2)), "math.exp(x) ** 2", id="power-of-call"),
    pytest.param(BinOp("**", x, call("math.exp", y)), "x ** math.exp(y)", id="power-to-call"),
    pytest.param(BinOp("**", x, num(-2)), "x**-2", id="power-to-negative-number"),
    pytest.param(BinOp("**", x, UnaryOp("-", y)), "x**-y", id="power-to-minus-name"),
    pytest.param(BinOp("**", x, UnaryOp("+", y)), "x**+y", id="power-to-plus-name"),
    pytest.param(
        BinOp("**", x, UnaryOp("-", UnaryOp("-", y))), "x ** --y", id="power-to-double-minus"
    ),
    pytest.param(
        BinOp("**", num(2), UnaryOp("-", num(-2))), "2 ** --2", id="power-to-minus-negative-number"
    ),
    pytest.param(BinOp("**", x, BinOp("**", y, z)), "x**y**z", id="power-right-nested"),
    pytest.param(BinOp("**", BinOp("**", x, y), z), "(x**y) ** z", id="power-left-nested"),
    pytest.param(BinOp("**", UnaryOp("-", x), num(2)), "(-x) ** 2", id="power-of-minus-name"),
    pytest.param(BinOp("**", num(-2), x), "(-2) ** x", id="power-of-negative-number"),
    pytest.param(UnaryOp("-", BinOp("**", x, num(2))), "-(x**2)", id="minus-of-power"),
    pytest.param(UnaryOp("-", UnaryOp("-", x)), "--x", id="double-minus"),
    pytest.param(BinOp("**", BinOp("+", x, y), num(2)), "(x + y) ** 2", id="power-of-sum"),
    pytest.param(BinOp("-", x, BinOp("-", y, z)), "x - (y - z)", id="right-operand-of-minus"),
    pytest.param(BinOp("-", BinOp("-", x, y), z), "x - y - z", id="left-associative-minus"),
    pytest.param(BinOp("/", x, BinOp("*", y, z)), "x / (y * z)", id="right-operand-of-divide"),
    pytest.param(BinOp("-", x, num(-2)), "x - -2", id="minus-negative-number"),
    pytest.param(BinOp("*", Compare(">", x, num(0)), g), "(x > 0) * g", id="mask-times-gradient"),
    pytest.param(
        BinOp("-", BinOp("*", Compare(">", x, num(0)), g), BinOp("*", Compare("<", x, num(0)), g)),
        "(x > 0) * g - (x < 0) * g",
        id="abs-adjoint",
    ),
    pytest.param(
        BinOp("*", Group(BinOp("*", num(2), x)), g), "(2 * x) * g", id="template-parentheses-kept"
    ),
    pytest.param(
        BinOp("/", num(1), Group(BinOp("+", num(1), call("math.exp", UnaryOp("-", x))))),
        "1 / (1 + math.exp(-x))",
        id="sigmoid",
    ),
    pytest.param(call("max", x, BinOp("*", y, num(2))), "max(x, y * 2)", id="call-arguments"),
]


# Slices: black spaces a slice's colons like a binary operator when a bound is an operation,
# an attribute, a call or a subscript, and writes them bare around names and numbers, with
# or without a sign or parentheses. A module constant (``D``) is a name.
D, N = Const("D"), Const("N")
params = Name("params")


def sliced(*index: Expr) -> Subscript:
    return Subscript(params, index)


SLICE_CASES = [
    pytest.param(sliced(Slice(None, D, None)), "params[:D]", id="slice-to-module-constant"),
    pytest.param(sliced(Slice(D, N, None)), "params[D:N]", id="slice-between-module-constants"),
    pytest.param(
        sliced(Slice(UnaryOp("-", D), None, None)), "params[-D:]", id="slice-minus-constant"
    ),
    pytest.param(sliced(Slice(None, None, D)), "params[::D]", id="slice-step-module-constant"),
    pytest.param(sliced(Slice(Const("None"), D, None)), "params[None:D]", id="slice-from-none"),
    pytest.param(
        sliced(Slice(None, UnaryOp("+", x), None)), "params[:+x]", id="slice-to-plus-name"
    ),
    pytest.param(
        sliced(Slice(Group(x), None, None)), "params[(x):]", id="slice-from-parenthesized"
    ),
    pytest.param(
        sliced(Slice(None, None, None), Slice(D, None, None)),
        "params[:, D:]",
        id="slice-second-axis",
    ),
]


@pytest.mark.parametrize(("expr", "expected"), RENDER_CASES + SLICE_CASES)
def test_render_case(expr: Expr, expected: str) -> None:
    assert black_line(f"x = {expected}") == f"x = {expected}", "the table is not black's text"
    assert render(expr) == expected


# Forward lines whose exponent is an inlined temporary reach the renderer's ``**`` cases.
GENERATED_POWER_CASES = [
    pytest.param("a = 2 ** +y", id="power-to-plus"),
    pytest.param("a = 2 ** --y", id="power-to-double-minus"),
    pytest.param("a = 2 ** -(-y)", id="power-to-minus-parenthesized-minus"),
    pytest.param("a = 2 ** y ** 3", id="power-right-nested"),
    pytest.param("a = 2 ** -y", id="power-to-minus"),
    pytest.param("a = math.e ** (y * 2)", id="power-to-product"),
    # the pow adjoint folds `1e20 - 1` into a number: `x**1e+20` where black writes `x**1e20`
    pytest.param("a = y ** 1e20", id="power-to-large-float"),
]


@pytest.mark.parametrize("statement", GENERATED_POWER_CASES)
def test_generated_power_line_is_black_stable(statement: str) -> None:
    source = f"import math\n\n\ndef f(y):\n    {statement}\n    return a\n"
    out = gradgen.generate(source)
    assert black.format_str(out, mode=MODE) == out


# --- slices: random bounds --------------------------------------------------------------------
# The trees above hold no subscripts; these put slices whose bounds are names, module
# constants, numbers, attributes, calls, unary and binary operations and subscripts into
# subscripts, on their own or as operands.

SLICE_SEEDS = range(2000, 2400)
BOUND_KINDS = ["name", "constant", "number", "dotted", "attribute"]  # also leaves
BOUND_KINDS += ["shape", "call", "unary", "binary", "subscript", "group"]
LEAF_KINDS = BOUND_KINDS[:5]


def random_bound(rng: random.Random, depth: int) -> tuple[Expr, list[str]]:
    """A slice bound and the kinds of bound it is built of."""
    kind = rng.choice(BOUND_KINDS if depth > 0 else LEAF_KINDS)
    inner: list[str] = []
    bound: Expr
    if kind == "name":
        bound = Name(rng.choice(list(NAME_VALUES)))
    elif kind == "constant":
        bound = Const(rng.choice(["D", "N", "None"]))  # as parse.py reads a module constant
    elif kind == "number":
        bound = num(rng.choice(NUMBERS))
    elif kind == "dotted":
        bound = Const(rng.choice(list(DOTTED)))
    elif kind == "attribute":
        bound = Attribute(Name("x"), rng.choice(["size", "ndim"]))
    elif kind == "shape":
        bound = Subscript(Attribute(Name("x"), "shape"), (num(rng.choice([0, 1, -1])),))
    elif kind == "call":
        bound = Call(Func("builtins", "len", "len"), (Name(rng.choice(list(NAME_VALUES))),))
    elif kind == "unary":
        operand, inner = random_bound(rng, depth - 1)
        bound = UnaryOp(rng.choice("-+"), operand)
    elif kind == "binary":
        left, inner = random_bound(rng, depth - 1)
        right, more = random_bound(rng, depth - 1)
        bound, inner = BinOp(rng.choice(BINARY_OPS), left, right), inner + more
    elif kind == "subscript":
        index, inner = random_index(rng, depth - 1)
        bound = Subscript(Name("y"), (index,))
    else:
        operand, inner = random_bound(rng, depth - 1)
        bound = Group(operand)
    return bound, [kind, *inner]


def random_index(rng: random.Random, depth: int) -> tuple[Expr, list[str]]:
    """A slice (each bound present or not) or, now and then, a plain index; with the kinds
    of the slice's bounds (a plain index counts none)."""
    if rng.random() < 0.2:
        return random_bound(rng, depth)[0], []
    kinds: list[str] = []
    parts: list[Expr | None] = []
    for chance in (0.6, 0.6, 0.3):
        if rng.random() < chance:
            bound, inner = random_bound(rng, depth)
            parts.append(bound)
            kinds += inner
        else:
            parts.append(None)
    return Slice(*parts), kinds


def random_sliced_expression(seed: int) -> tuple[Expr, list[str]]:
    """``params[...]`` with one to three indices, alone or as an operand."""
    rng = random.Random(seed)
    kinds: list[str] = []
    index = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        part, inner = random_index(rng, depth=rng.choice([0, 1, 1, 2]))
        index.append(part)
        kinds += inner
    expr: Expr = Subscript(params, tuple(index))
    placement = rng.random()
    if placement < 0.2:
        expr = BinOp(rng.choice(BINARY_OPS), expr, random_tree(rng, 1))
    elif placement < 0.35:
        expr = BinOp(rng.choice(BINARY_OPS), random_tree(rng, 1), expr)
    return expr, kinds


def test_random_slices_render_as_black_writes_them() -> None:
    """Every short line among the random sliced expressions is black's text; the seeds
    cover every kind of bound, and slices black spaces as well as slices it does not."""
    kinds: Counter[str] = Counter()
    spaced = bare = 0
    wrong = []
    for seed in SLICE_SEEDS:
        expr, used = random_sliced_expression(seed)
        line = line_of(expr)
        if len(line) >= SHORT:
            continue  # format.py sends long lines through black
        kinds.update(used)
        spaced += " :" in line or ": " in line
        bare += ":" in line.replace(" :", "").replace(": ", "")
        expected = black_line(line)
        if expected != line:
            wrong.append(f"seed {seed}: rendered {line!r}, black writes {expected!r}")
    assert all(kinds[k] >= 20 for k in BOUND_KINDS), kinds
    assert spaced >= 50 and bare >= 50, (spaced, bare)
    assert not wrong, f"{len(wrong)} lines black writes differently:\n" + "\n".join(wrong)


UNPACK_PARAMS = """\
import numpy as np

D = 2


def loss(params, x):
    w = params[:D]
    b = params[D]
    pred = x @ w + b
    return np.sum(pred**2)
"""


def test_unpack_params_with_module_constant_bound(project: Path, run) -> None:
    """The ``unpack_params`` pattern: ``params[:D]`` with ``D`` a module constant. The
    renderer wrote ``params[: D]``, black's check before writing refused it (an internal
    error, exit 123, nothing written)."""
    (project / "model.py").write_text(UNPACK_PARAMS)
    status, _, err = run("model.py", "-o", "model_backward.py")
    assert status == 0, err
    generated = (project / "model_backward.py").read_text()
    assert "w = params[:D]" in generated
    forward = run_module(UNPACK_PARAMS)["loss"]
    backward = run_module(generated)["loss_backward"]
    generator = numpy.random.default_rng(7)
    args = {"params": generator.normal(size=3), "x": generator.normal(size=(5, 2))}
    gradients = backward(*args.values())
    for name, gradient in zip(args, gradients, strict=True):
        expected = numeric_gradient(lambda **v: float(forward(**v)), args, name)
        numpy.testing.assert_allclose(gradient, expected, rtol=RTOL, atol=ATOL)


# --- numbers computed at generation time ----------------------------------------------------------

FOLDED_NUMBERS = [2, -3, 0.5, -0.25, 1e-05, 1e-07, 1e15, 1e16, 1e20, 1.5e300, 12345678.0]


@pytest.mark.parametrize("value", FOLDED_NUMBERS, ids=repr)
def test_number_is_spelled_as_black_spells_it(value: int | float) -> None:
    text = render(number(value))
    assert black_line(f"x = {text}") == f"x = {text}"
    assert ast.literal_eval(text) == value


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(BinOp("-", num(1e16), num(1)), "1e16", id="1e16-minus-1"),
        pytest.param(BinOp("*", num(1e10), num(1e10)), "1e20", id="1e10-times-1e10"),
    ],
)
def test_folded_large_float_is_spelled_as_black_spells_it(expr: Expr, expected: str) -> None:
    assert render(simplify(expr)) == expected


# --- simplify ------------------------------------------------------------------------------------

SIMPLIFY_CASES = [
    pytest.param(BinOp("*", num(1), x), "x", id="one-times-x"),
    pytest.param(BinOp("*", x, num(1)), "x", id="x-times-one"),
    pytest.param(BinOp("*", num(1.0), x), "x", id="one-point-zero-times-x"),
    pytest.param(BinOp("**", x, num(1)), "x", id="x-to-the-one"),
    pytest.param(BinOp("+", x, num(0)), "x", id="x-plus-zero"),
    pytest.param(BinOp("+", num(0), x), "x", id="zero-plus-x"),
    pytest.param(BinOp("-", x, num(0)), "x", id="x-minus-zero"),
    pytest.param(BinOp("/", x, num(1)), "x", id="x-over-one"),
    pytest.param(BinOp("-", num(2), num(1)), "1", id="two-minus-one"),
    pytest.param(BinOp("+", BinOp("*", num(2), num(3)), x), "6 + x", id="fold-inside"),
    pytest.param(UnaryOp("-", UnaryOp("-", x)), "x", id="minus-minus-x"),
    pytest.param(UnaryOp("+", x), "x", id="plus-x"),
    pytest.param(UnaryOp("-", num(2)), "-2", id="minus-two"),
    pytest.param(BinOp("*", num(-1), x), "-x", id="minus-one-times-x"),
    pytest.param(BinOp("*", x, num(-1)), "-x", id="x-times-minus-one"),
    pytest.param(BinOp("**", x, BinOp("-", num(2), num(1))), "x", id="x-to-the-two-minus-one"),
    pytest.param(
        BinOp("*", BinOp("*", num(2), BinOp("**", x, BinOp("-", num(2), num(1)))), g),
        "2 * x * g",
        id="pow-adjoint-of-square",
    ),
    pytest.param(
        BinOp("*", Group(BinOp("*", num(2), x)), g), "(2 * x) * g", id="keeps-template-parentheses"
    ),
    pytest.param(BinOp("*", Group(x), g), "x * g", id="drops-parentheses-around-a-name"),
    pytest.param(BinOp("*", x, y), "x * y", id="nothing-to-do"),
]


@pytest.mark.parametrize(("expr", "expected"), SIMPLIFY_CASES)
def test_simplify_case(expr: Expr, expected: str) -> None:
    assert render(simplify(expr)) == expected


def test_simplify_folds_to_a_number() -> None:
    folded = simplify(BinOp("-", num(2), num(1)))
    assert isinstance(folded, Const) and folded.value == 1


SIMPLIFY_SEEDS = range(1000, 1300)


@pytest.mark.parametrize("seed", SIMPLIFY_SEEDS, ids=lambda s: f"tree-{s}")
def test_simplify_keeps_the_value(seed: int) -> None:
    tree = tree_for_seed(seed)
    simplified = simplify(tree)
    try:
        expected = evaluate(tree)
    except NotComputable:
        return
    text = render(simplified)
    actual = evaluate_text(text)
    assert same_value(actual, expected), (
        f"{render(tree)} is {expected!r}; simplified to {text}, which is {actual!r}"
    )


@pytest.mark.parametrize("seed", SIMPLIFY_SEEDS, ids=lambda s: f"tree-{s}")
def test_simplified_tree_renders_as_black_writes_it(seed: int) -> None:
    line = line_of(simplify(tree_for_seed(seed)))
    if len(line) >= SHORT:
        return
    assert black_line(line) == line


@pytest.mark.parametrize("name", sorted(HELPERS))
def test_a_helper_defined_in_a_function_is_written_as_it_is(name: str) -> None:
    """A function generated alone (the decorator's) defines the helpers it calls in its own
    body, indented: a long line there (the middle of a docstring) is not given to black one
    by one, which cannot read it (np.einsum's helper failed so, an internal error)."""
    lines = helper_source(name, {"numpy": "np", "math": "math"})
    body = ["import numpy as np", "import math", *lines, "return 1.0"]
    signature = "def f_backward(x):"
    function = FunctionText("f_backward", signature, "Doc.", body, verbatim=len(body) - 1)
    text = format_module(ModuleText([], [], [function]))
    compile(text, "generated.py", "exec")
    assert all(f"{INDENT}{line}".rstrip() in text for line in lines)
