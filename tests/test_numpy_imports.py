"""A module that imports numpy, in any form, is array code.

Array code undoes broadcasting in the backward and never writes into an array it does not
own; scalar code does neither. Deciding by ``import numpy [as np]`` alone took a module that
wrote ``from numpy import exp, mean`` for scalar code: with ``a`` a number and ``b`` an
array, ``da`` came back with ``b``'s shape, and a VAE's KL term raised ``output array is
read-only``. Every form is checked against central differences (float64), with arrays of
different shapes and with a number broadcast against an array, through ``gradgen.generate``
and through ``@gradgen.differentiable``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy
import pytest

import gradgen
from test_arrays import away_from_zero, check, rng
from test_rules import numeric_gradient

# Each form of import, and how the forward spells numpy's exp and mean with it. Where the
# import gives no way to call them (gradgen differentiates nothing of numpy.linalg, and reads
# no name a star import binds), the forward uses methods.
FUNCTIONS = """
def f(a, b):
    c = a * {exp}(b)
    return {mean}(c)
"""
METHODS = """
def f(a, b):
    c = a * (b * b)
    return c.mean()
"""
FORMS = [
    pytest.param("import numpy", FUNCTIONS.format(exp="numpy.exp", mean="numpy.mean"), id="import"),
    pytest.param("import numpy as np", FUNCTIONS.format(exp="np.exp", mean="np.mean"), id="as-np"),
    pytest.param(
        "from numpy import exp, mean", FUNCTIONS.format(exp="exp", mean="mean"), id="from"
    ),
    pytest.param(
        "from numpy import exp as e, mean as m", FUNCTIONS.format(exp="e", mean="m"), id="from-as"
    ),
    pytest.param(
        "import numpy.linalg",
        FUNCTIONS.format(exp="numpy.exp", mean="numpy.mean"),
        id="import-submodule",
    ),
    pytest.param("import numpy.linalg as la", METHODS, id="import-submodule-as"),
    pytest.param("from numpy.linalg import norm", METHODS, id="from-submodule"),
    pytest.param("from numpy import *", METHODS, id="star"),
]

# (a's shape, b's shape); () is a Python float.
SHAPES = [
    pytest.param((), (4, 3), id="number-and-array"),
    pytest.param((3,), (4, 3), id="row-and-matrix"),
    pytest.param((4, 1), (4, 3), id="column-and-matrix"),
]


def forward_module(imports: str, body: str) -> str:
    return f"{imports}\n\n{body}"


def value(shape: tuple[int, ...], seed: str) -> Any:
    if not shape:
        return float(away_from_zero(rng(seed), (1,))[0])
    return away_from_zero(rng(seed), shape) * 0.5  # exp stays moderate


@pytest.mark.parametrize(("a_shape", "b_shape"), SHAPES)
@pytest.mark.parametrize(("imports", "body"), FORMS)
def test_every_form_of_numpy_import_is_array_code(
    imports: str, body: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]
) -> None:
    """Each gradient has its operand's shape and equals central differences; the generated
    module imports only names it reads."""
    source = forward_module(imports, body)
    a = value(a_shape, f"a {imports} {a_shape}")
    b = value(b_shape, f"b {imports} {b_shape}")
    check(source, {"a": a, "b": b})
    assert_imports_only_what_it_reads(gradgen.generate(source))


def assert_imports_only_what_it_reads(generated: str) -> None:
    """Every name the generated module imports is read by it, and it has no star import:
    the forward's own imports only where the backward calls them, ``import numpy`` for the
    helpers and gradient templates when the forward gives numpy no name of its own."""
    tree = ast.parse(generated)
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    unused = {name: line for name, line in imported_names(tree).items() if name not in read}
    assert not unused, f"imported but never read: {unused}\n{generated}"


def imported_names(tree: ast.Module) -> dict[str, str]:
    """The names the module's imports bind (``*`` for a star import), with the statement."""
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                names[bound] = ast.unparse(node)
    return names


KL = """\
from numpy import exp, mean, sum


def f(mu, logvar):
    kl = -0.5 * sum(logvar - exp(logvar) - mu**2 + 1, axis=1)
    return mean(kl)
"""


def test_vae_kl_term_with_from_imports() -> None:
    """The KL term of a VAE, numpy's functions imported by name: its backward used to add
    into the read-only broadcast of the upstream gradient."""
    mu = value((5, 3), "kl mu")
    logvar = value((5, 3), "kl logvar")
    check(KL, {"mu": mu, "logvar": logvar})


# --- the decorator reads the same module context -------------------------------------------


DECORATED = """\
import gradgen
from numpy import exp, mean


@gradgen.differentiable
def f(a, b):
    c = a * exp(b)
    return mean(c)
"""


@pytest.mark.parametrize(("a_shape", "b_shape"), SHAPES)
def test_decorated_function_in_module_with_from_imports(
    load: Callable[[str], ModuleType], a_shape: tuple[int, ...], b_shape: tuple[int, ...]
) -> None:
    f = load(DECORATED).f
    args = {"a": value(a_shape, f"decorated a {a_shape}"), "b": value(b_shape, "decorated b")}
    da, db = f.backward(*args.values())

    def loss(**values: Any) -> float:
        return float(f(**values))

    for name, gradient in zip(args, (da, db), strict=True):
        assert numpy.shape(gradient) == numpy.shape(args[name]), (name, f.backward_source)
        numpy.testing.assert_allclose(
            gradient, numeric_gradient(loss, args, name), rtol=1e-6, atol=1e-8
        )


# --- array syntax without a numpy import ----------------------------------------------------

# Values written with syntax only arrays have are arrays, whatever the module imports: scalar
# code gave both inputs of the add gate one object and added into it (db came back [[5, -1]]
# for [3, 0]), and never summed b's gradient back to b's shape.
ARRAY_SYNTAX = [
    pytest.param(
        "def f(x, W, b):\n    h = x @ W\n    a = h * b\n    s = h + b\n    return (s * a).sum()\n",
        {"x": (1, 2), "W": (2, 2), "b": (2,)},
        id="matmul-and-a-method",
    ),
    pytest.param(
        "def f(x, y):\n    s = x + y\n    return (s * x.T).mean()\n",
        {"x": (3, 3), "y": (3,)},
        id="transpose-attribute",
    ),
    pytest.param(
        "def f(x, y):\n    s = x + y\n    return s[0] * s[1]\n",
        {"x": (2, 3), "y": (3,)},
        id="indexing",
    ),
]


@pytest.mark.parametrize(("source", "shapes"), ARRAY_SYNTAX)
def test_array_syntax_makes_array_code_without_a_numpy_import(
    source: str, shapes: dict[str, tuple[int, ...]]
) -> None:
    values = {name: value(shape, f"syntax {name} {source}") for name, shape in shapes.items()}
    check(source, values)
    assert "_unbroadcast" in gradgen.generate(source) or all(
        shape == shapes["x"] for shape in shapes.values()
    )


def test_a_module_of_numbers_stays_scalar_code() -> None:
    """The notes' staged code, no import and no array syntax, keeps its ``+=`` on numbers."""
    source = "def f(x, y):\n    s = x + y\n    p = x * y\n    return s * p\n"
    generated = gradgen.generate(source)
    assert "_unbroadcast" not in generated and "numpy" not in generated
    assert "dx += " in generated
