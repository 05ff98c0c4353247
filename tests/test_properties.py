"""Property-based tests: random staged programs, built from the rules table, differentiated.

``tests/program_strategy.py`` builds random, well-conditioned forward functions from
``gradgen.rules.RULES`` itself (every form of every rule, with generators for the literal
arguments keyed by the rules' nondiff names): scalar code (``import math``, Python floats)
and array code (``import numpy as np``, float64 arrays broadcasting between (N, D), (D,),
(N, 1), (1, D) and numbers, reductions over axes, matrix products, masks and np.where,
indexing, reshapes), with fan-out, rebinding (``h = h * 2``), aliases (``h = x``), tuple
unpacking (``a, b = b, a``) and nested expressions, returning one value or several
(``return h, c``), parameters annotated with their shapes or not. One program in
``MODULES`` is a module: ``f`` calls 1 to 3 other functions of it (built the same way,
calling each other up to 3 deep, defined before or after their callers), in statements and
nested in expressions, by keyword or position, with defaults left out or given, the same
argument twice, a weight used by two calls, helpers returning several values unpacked (``u,
v = g(x)``) with some left unread. One program in ``LOOPS`` has a ``for`` loop of 1 to 4
steps (``for t in range(3)``, ``reversed(range(n))`` with ``n`` an integer parameter,
``range(1, 5, 2)``, ``range(len(xs))``, ``range(xs.shape[1])``), sometimes with a loop
nested in it, whose statements are built like the others (calls, in-place updates of fresh
values, unpacking too) and carry values from step to step (``h = np.tanh(h * w + xs[t])``:
a value bound before the loop rebound from itself through a bounded function or a small
factor, or an accumulator ``s = 0.0``), read a parameter with an axis of steps at its step
(``xs[t]``, ``xs[:, t]``), index values and compute with the loop's variable, and append to
a list made empty before the loop, read whole after it (``np.stack(hs, axis=1)``,
``np.concatenate``, ``sum(hs)``) or write at their step into an array made for the loop
(``rows[t] = h``, ``rows[:, t] = v``, ``np.zeros``/``np.ones``/``np.empty`` or their
``_like``), read after it, as the values a loop binds sometimes are (the last step's); some
loops are ``while <test of a carried value> and n < K:`` with the test kept away from its
threshold, and helpers have loops too; some go over the items of a list parameter
(``for W, bias in layers:``, ``for (W,) in layers:``, ``for W in weights:``, ``for i, (W,
bias) in enumerate(layers):``: tuples of 1 to 3 arrays, or arrays, numbers in scalar code;
read besides by ``len(layers)`` only), annotated as ``gradgen check`` reads it
(``layers: [("4, 4", "4"), ("4, 4", "4")]``) or not; every step is checked as the first is
(domains, bounds, kinks and ties), and a carried value keeps its shape.
``test_programs_have_loops`` checks that the programs have them. One program in
``BRANCHES`` has ``if``/``elif``/``else`` statements (at the top, in its loop, nested, in a
helper, with a loop in a side) on a flag parameter (``flag: bool``), a string parameter
(``mode == "a"``, ``mode in ("a", "b")``), the loop's step (``t > 0``) or a value
(``np.sum(h) > 0.5``, ``x < 0.0``, kept away from its threshold), or ``and``/``or`` of
two; a side rebinds values from before the ``if`` or leaves them as they were, binds new
names in every side or in some only (not read after the ``if`` then). Such a program is
checked at every combination of its flags' values (``Program.variants``: each side of each
test on a flag), generated once; ``test_programs_have_branches`` checks that the programs
have them.

For each program:

- ``gradgen.generate`` accepts it, and gives the same bytes when run again;
- ``f_backward`` and ``f_value_and_grad`` give the gradients of central finite differences
  (a five-point stencil in float64) of ``sum(f(...) * upstream)`` (with several results, the
  sum over them, each with an upstream of its own given by keyword: ``f_backward(*args,
  du=..., dv=...)``; a None upstream, passed or left out, counts as zero), one per parameter,
  in order, of the parameter's shape (``None`` or ``0.0`` only where the result does not move
  with the parameter), and ``f_value_and_grad`` gives ``f``'s value(s) and the same gradients;
- a list parameter's gradient is gradgen's structure (a list of ``[dW, db]`` lists, one per
  item, None for an array the result does not move with; for ``for W in weights:`` an
  array, one row per item), each leaf (``layers[0][1]``) against central differences of
  that leaf;
- neither writes into an argument (a list's arrays too) or an upstream gradient, and (array
  code, or a list's) no returned gradient (nor leaf of a list's) shares memory with an
  argument, an upstream gradient, a value or another gradient;
- with ``pairs=True`` (always for a module or several results, one in ``PAIRS`` of the
  others): ``f_forward(*args)`` gives ``(*values, cache)`` and ``f_backward(*upstreams,
  cache)`` the gradients of the recomputing backward, twice from the same cache, which it does
  not write into (nor into an argument or upstream), owning what it returns (no memory shared
  with the cache either).

A failure prints the program (with its arguments). Where finite differences themselves are
unreliable at a drawn point (two step sizes disagree), the example is discarded, not failed.

How many programs: the hypothesis profiles in ``tests/conftest.py`` (``ci`` by default;
``pytest tests/test_properties.py --hypothesis-profile=thorough`` for thousands).

Gradgen bugs the programs found are in ``FIXED_BUGS`` (fixed; each reproduction is kept as a
regression test) or, while open, in ``KNOWN_BUGS``: the strategy leaves out the programs each
open one excludes (or, for a bug it cannot tell in advance, the test discards a program whose
check fails with the bug's symptom, counted in the statistics), and
``test_known_bug_still_reproduces`` fails (strict xfail) once it is fixed, so that its entry
moves to ``FIXED_BUGS``.
"""

from __future__ import annotations

import collections
import copy
import inspect
import itertools
import random
import re
import sys
import tempfile
import types
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import event, given, reject, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gradgen  # noqa: E402
from gradgen.api import Options, compile_source  # noqa: E402
from gradgen.rules import RULES  # noqa: E402
from program_strategy import (  # noqa: E402
    DRAW_SPELLINGS,
    FORMS,
    HELPER_NAMES,
    ITEM_LOOP,
    NONDIFF_GENERATORS,
    SCALAR_FORMS,
    SHIFT_USES,
    STRUCTURED_FORMS,
    Application,
    Form,
    HypothesisChooser,
    Items,
    MissingGenerator,
    Program,
    RandomChooser,
    Unfit,
    build_program,
    drawing_source,
    features,
    literal,
    memo_key,
    programs,
    structured_program,
)
from test_rules import as_tuple, owned_arrays, run_module  # noqa: E402

RTOL = 1e-6
ATOL = 1e-6  # times the largest gradient entry (at least 1)
STEP = 1e-4  # relative step of the finite differences


# --- known gradgen bugs: programs the strategy leaves out until they are fixed -----------------


@dataclass(frozen=True)
class KnownBug:
    """A gradgen bug the property tests found.

    ``forward`` and ``args`` reproduce it (``upstream``: the upstream gradient, or None for
    the default); ``excludes`` says which applications of a form the strategy must not build
    while it is open. Remove the entry once the bug is fixed: ``test_known_bug_still_reproduces``
    fails then."""

    name: str
    symptom: str
    forward: str
    args: Callable[[], dict[str, Any]]
    upstream: Callable[[], Any]
    excludes: Callable[[Application], bool]
    raises: type[Exception]  # what checking the reproduction raises while the bug is open
    # For a bug the strategy cannot tell from an application of a form (it depends on how a
    # module's functions call each other): whether the failure of a program's check is this
    # bug's symptom. Such a program is discarded while the bug is open (the statistics count
    # them), not failed.
    recognizes: Callable[[str], bool] | None = None


def _negative_axes(app: Application) -> bool:
    axes = literal(app.nondiff.get("axes"))
    return app.rule == "transpose" and isinstance(axes, tuple) and any(a < 0 for a in axes)


def _python_number(app: Application, rules: tuple[str, ...]) -> bool:
    # numpy's own scalars (np.float64, from np.sum) have .shape and .dtype; a float does not
    return app.rule in rules and type(app.inputs.get("x")) is float


def _module(body: str, params: str = "x") -> str:
    return f"import numpy as np\n\n\ndef f({params}):\n    return {body}\n"


# Bugs the programs found, now fixed: each reproduction stays as a regression test, and the
# strategy builds the programs they excluded again.
FIXED_BUGS: list[KnownBug] = [
    KnownBug(
        name="transpose-negative-axes",
        symptom="np.transpose(x, axes) with a negative axis: the gradient is transposed by the "
        "wrong permutation (wrong values, or the wrong shape)",
        forward=_module("np.transpose(x, (0, -1, 1))"),
        args=lambda: {"x": numpy.arange(24.0).reshape(2, 3, 4)},
        upstream=lambda: numpy.ones((2, 4, 3)),
        excludes=_negative_axes,
        raises=AssertionError,
    ),
    KnownBug(
        name="concatenate-axis-none",
        symptom="np.concatenate(xs, axis=None) (numpy flattens): the backward raises TypeError "
        "(x.shape[None])",
        forward=_module("np.concatenate([x, x], axis=None)"),
        args=lambda: {"x": numpy.ones((2, 3))},
        upstream=lambda: numpy.ones(12),
        excludes=lambda app: app.rule == "concatenate" and app.nondiff.get("axis") == "None",
        raises=TypeError,
    ),
    KnownBug(
        name="extreme-of-a-python-float",
        symptom="np.max / np.min of a Python float (a float parameter, a math.* result): the "
        "backward raises AttributeError ('float' object has no attribute 'dtype')",
        forward=_module("np.max(a)", "a: float"),
        args=lambda: {"a": 0.7},
        upstream=lambda: None,
        excludes=lambda app: _python_number(app, ("amax", "amin")),
        raises=AttributeError,
    ),
    KnownBug(
        name="reshape-of-a-python-float",
        symptom="np.reshape / np.expand_dims / np.squeeze / np.ravel of a Python float: the "
        "backward raises AttributeError ('float' object has no attribute 'shape')",
        forward=_module("np.sum(np.expand_dims(a, 0))", "a: float"),
        args=lambda: {"a": 0.7},
        upstream=lambda: None,
        excludes=lambda app: _python_number(app, ("reshape", "ravel")),
        raises=AttributeError,
    ),
    KnownBug(
        name="astype-with-a-number-upstream",
        symptom="x.astype(...) whose result is a number (a loss) called with the default "
        "upstream 1.0 (or any Python float): the backward raises AttributeError ('float' "
        "object has no attribute 'astype'), from the adjoint g.astype(x.dtype)",
        forward=_module("np.sum(x * x).astype(np.float64)"),
        args=lambda: {"x": numpy.array([0.5, -1.5, 2.0])},
        upstream=lambda: None,
        excludes=lambda app: app.rule == "astype" and numpy.ndim(app.value) == 0,
        raises=AttributeError,
    ),
    KnownBug(
        name="astype-int-by-keyword",
        symptom="x.astype(dtype=int) (dtype by keyword) is differentiated as if the cast kept "
        "the values: the gradient flows through the cast to whole numbers (x.astype(int) "
        "correctly gives none)",
        forward=_module("np.sum(x.astype(dtype=int) * x)"),
        args=lambda: {"x": numpy.array([0.5, 1.5, 2.5])},
        upstream=lambda: None,
        excludes=lambda app: app.rule == "astype" and "dtype=" in app.text,
        raises=AssertionError,
    ),
    KnownBug(
        name="mask-over-array",
        symptom="a mask divided by an array, (x > 0) / y: the backward raises TypeError (numpy "
        "bool negative) from the adjoint (-x / y**2) * g of the divisor",
        forward=_module("np.sum((x > 0) / y)", "x, y"),
        args=lambda: {"x": numpy.array([1.0, -1.0]), "y": numpy.array([2.0, 4.0])},
        upstream=lambda: None,
        excludes=lambda app: app.rule == "div" and numpy.asarray(app.inputs["x"]).dtype == bool,
        raises=TypeError,
    ),
    KnownBug(
        name="float-call-drops-the-gradient",
        symptom="float(x) is in the table's NONDIFFERENTIABLE functions (with int and len), "
        "but it is the identity on a number: the gradient through it is silently dropped "
        "(a parameter read only through float(x) gets None)",
        forward="import math\n\n\ndef f(x):\n    return float(x) * x\n",
        args=lambda: {"x": 1.5},
        upstream=lambda: None,
        excludes=lambda app: app.rule == "builtins.float",
        raises=AssertionError,
    ),
    KnownBug(
        name="concatenate-a-list-or-tuple",
        symptom="np.concatenate with an item that is not an array (a literal list [0.0, 1.0], "
        "a tuple np.shape(y)) before a differentiated item: the backward raises "
        "AttributeError ('list' object has no attribute 'shape'), reading the item's .shape "
        "to find where the next item starts",
        forward=_module("np.sum(np.sin(np.concatenate([[0.0, 1.0], x])))"),
        args=lambda: {"x": numpy.array([0.5, 1.5, 2.5])},
        upstream=lambda: None,
        excludes=lambda app: (
            app.rule == "concatenate"
            and any(not isinstance(v, numpy.ndarray) for v in app.inputs["x"])
        ),
        raises=AttributeError,
    ),
]

# Found by comparing gradgen with another AD system on random programs: accumulating in
# place into a gradient that a view of another gradient still shared.
_SHARED_BY_A_VIEW = """import numpy as np


def f(v, u, w):
    lin = w.reshape(-1, 5)
    q = u.T
    z2 = v.reshape(-1, 3)
    acc3 = v.reshape(15, -1)
    var5 = v + q.reshape(3, 5)
    n = np.sum(lin, axis=1, keepdims=True)
    res = np.sum(n) + 0.1 * np.mean(lin) + np.mean(z2) + np.sum(acc3) - 3 * np.sum(var5)
    return res
"""
_SHARED_BY_A_BROADCAST = """import numpy as np


def f(z, s, beta):
    lin = z ** -1.5
    u0 = s + np.maximum(0.75, s)
    z1 = np.abs(lin * beta)
    u0 = u0 - 2.5
    acc = np.log(z1)
    e = np.max(acc)
    sq = u0 @ np.transpose(acc)
    acc4 = sq.reshape(1, -1)
    mid = acc4 - acc4
    var5 = np.sqrt(1.0 + np.exp(mid))
    pre = var5 / (3.0 + e ** 2)
    mid8 = np.sum(pre, axis=0, keepdims=True) - np.abs(e)
    g9 = var5 + mid8
    out = np.sum(g9)
    return out
"""
FIXED_BUGS += [
    KnownBug(
        name="accumulate-into-a-gradient-a-reshape-shares",
        symptom="dv = _unbroadcast(dvar5, v) and dq, a reshape of the same object, then dv += "
        "...: du (the transpose of dq) changed with it (-1.9333 where -3 is right)",
        forward=_SHARED_BY_A_VIEW,
        args=lambda: {
            "v": numpy.linspace(-1.0, 1.0, 15).reshape(3, 5),
            "u": numpy.linspace(0.5, 2.0, 15).reshape(3, 5),
            "w": numpy.linspace(-2.0, 2.0, 5),
        },
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
    KnownBug(
        name="accumulate-into-a-gradient-a-broadcast-shares",
        symptom="dvar5 and dmid8 both dg9, dpre a broadcast view of it, then dvar5 += ... "
        "changed dpre before it was read (dz 11.5123 where 11.1374 is right)",
        forward=_SHARED_BY_A_BROADCAST,
        args=lambda: {
            "z": numpy.array([[0.785], [0.632]]),
            "s": numpy.array(
                [[0.68, 1.233, 1.094, 0.698, 1.656], [1.864, 0.972, 1.651, 1.554, 1.647]]
            ),
            "beta": numpy.array([[0.877, 1.144, 1.154, 1.629, 0.56]]),
        },
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
]

FIXED_BUGS.append(
    KnownBug(
        name="whole-number-base-to-a-mask-power",
        symptom="np.power(b, m) with b a whole number (max(3, x) is the int 3) and m a mask: "
        "the backward raised 'Integers to negative integer powers are not allowed' from the "
        "base's adjoint m * b ** (m - 1)",
        forward=_module("np.sum(np.power(np.sum(max(3, x)), y > 0.3) * x)", "x, y"),
        args=lambda: {"x": 1.35, "y": numpy.array([[-0.27, 0.5], [1.2, -1.0]])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    )
)

FIXED_BUGS.append(
    KnownBug(
        name="astype-of-an-integer-array",
        symptom="x.astype(float) of an integer array: the adjoint numpy.array(g, dtype=x.dtype) "
        "cast the gradient to integers (0.5 became 0)",
        forward=_module("np.sum(x.astype(float) * 0.5)"),
        args=lambda: {"x": numpy.array([1, 2, 2])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    )
)
FIXED_BUGS.append(
    KnownBug(
        name="astype-under-a-total",
        symptom="np.sum(x.astype(dtype=float)): an astype adjoint reading x (not only x.dtype) "
        "stopped the total's number from spreading, and dx came back with shape ()",
        forward=_module("np.sum(x.astype(dtype=float))"),
        args=lambda: {"x": numpy.ones((3, 4), dtype=int)},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    )
)

# Not bugs: what the README says gradgen does not differentiate, left out of the programs.
UNSUPPORTED: list[Callable[[Application], bool]] = [
    # "np.dot is differentiated for 1-D and 2-D operands, where it is @; above that it is not
    # matrix multiplication, and its generated backward raises": so does a number operand
    # (np.dot(x, 2.0) is x * 2.0), with the same message.
    lambda app: app.rule == "dot" and any(numpy.ndim(v) not in (1, 2) for v in app.inputs.values()),
    # Python's max() and min() are for numbers (README: "builtin max/min of two values"): of
    # arrays they return one of them, whose shape then depends on the values; np.maximum
    # and np.minimum are the array spellings.
    lambda app: (
        app.rule in ("max", "min")
        and app.text.startswith(("max(", "min("))
        and any(numpy.ndim(v) > 0 for v in app.inputs.values())
    ),
]

# Found by the programs of several functions, fixed since: each reproduction is kept.
FIXED_BUGS += [
    KnownBug(
        name="callee-with-no-gradient-to-give",
        symptom="a call whose value has no gradient (the callee's result does not depend on "
        "the arguments that carry one): the caller's backward ran unit_forward, which the "
        "generated module did not define (NameError)",
        forward=(
            "import numpy as np\n\n\ndef unit(x):\n    return x.shape[0] * 2.0\n\n\n"
            "def f(x):\n    return x / unit(x)\n"
        ),
        args=lambda: {"x": numpy.array([0.5, 1.5, 2.5])},
        upstream=lambda: numpy.ones(3),
        excludes=lambda app: False,
        raises=AssertionError,
    ),
    KnownBug(
        name="call-of-constants",
        symptom="cell(2.0), a call whose arguments are all constants, was written in the "
        "backward as a call of the forward function cell, which the generated module did not "
        "define (NameError)",
        forward=(
            "def cell(a):\n    return a * a\n\n\ndef f(x):\n    return x * cell(2.0) + cell(x)\n"
        ),
        args=lambda: {"x": 0.7},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
]

# Open bugs: the strategy leaves out what each excludes until it is fixed (move it to
# FIXED_BUGS then: its strict xfail below fails once the reproduction passes).
KNOWN_BUGS: list[KnownBug] = []


def _undefined(names: str) -> Callable[[str], bool]:
    """Recognizes a generated module calling a function (``names``, a pattern) it does not
    define."""
    expression = re.compile(rf"raised NameError\(\"name '(?:{names})' is not defined")
    return lambda failure: expression.search(failure.partition("\n")[0]) is not None


FIXED_BUGS.append(
    KnownBug(
        name="a-call-times-itself",
        symptom="g(x) * g(x) (the square of a call, spelled as a product): matched as x * x, "
        "the backward computed g(x) once with g_forward, and f_value_and_grad multiplied it by "
        "g(x), a call of the forward function, which the generated module does not define "
        "(NameError); each call is now a stage of its own",
        forward=(
            "import numpy as np\n\n\ndef g(x):\n    return np.sin(x)\n\n\n"
            "def f(x):\n    return g(x) * g(x)\n"
        ),
        args=lambda: {"x": numpy.array([0.5, 1.5, 2.5])},
        upstream=lambda: numpy.ones(3),
        excludes=lambda app: False,
        raises=AssertionError,
        recognizes=_undefined("|".join(HELPER_NAMES)),
    )
)
FIXED_BUGS += [
    KnownBug(
        name="call-inside-a-value-with-no-gradient",
        symptom="(+layer(x, 2)).astype(int) (found with structured parameters): the call of "
        "layer inside a value with no gradient was no stage of its own, so the backward "
        "recomputed layer(x, 2), a call of the forward function, which the generated module "
        "does not define (NameError); a call in a value with no gradient, an opaque call, "
        "np.where's condition or an index is now a stage of its own, run through F_forward",
        forward=(
            "import numpy as np\n\n\ndef layer(x, k):\n    return x * k\n\n\n"
            "def f(x):\n    s = (+layer(x, 2)).astype(int)\n    return np.sum(x * s)\n"
        ),
        args=lambda: {"x": numpy.array([0.3, 1.1, 1.7])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
    KnownBug(
        name="call-inside-an-opaque-call",
        symptom="scipy.special.gammaln(g(2.0)): the call of g stayed inside the opaque call, "
        "which the backward computes as written, so it called the forward function g, which "
        "the generated module does not define (NameError)",
        forward=(
            "import numpy as np\nimport scipy.special\n\n\ndef g(x):\n    return x * x + 1.0"
            "\n\n\ndef f(x):\n    return np.sum(x * scipy.special.gammaln(g(2.0)))\n"
        ),
        args=lambda: {"x": numpy.array([0.3, 1.1, 1.7])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
]
# Found by the thorough profile: returned gradients that shared memory, or a backward that
# raised, where a gradient of a number was a 0-d array or of booleans.
FIXED_BUGS += [
    KnownBug(
        name="gradients-of-numbers-share-a-0d-array",
        symptom="dx = ds; dw = ds after s = x + w, with x and w floats but ds a 0-d array "
        "(np.where's adjoint): the two returned gradients were one object, as the ownership "
        "pass took every gradient of a number for an immutable number",
        forward=(
            "import numpy as np\n\n\ndef f(x: float, w: float):\n    s = x + w\n"
            "    return np.where(s > 0.3, s, s * s)\n"
        ),
        args=lambda: {"x": -1.0560584492199097, "w": -0.47247154007068665},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
    KnownBug(
        name="index-of-a-numpy-scalar",
        symptom="z = np.amax(z, None), a numpy scalar, indexed (z[None]) in a helper that also "
        "multiplies by it: the backward raised TypeError ('numpy.float64' object does not "
        "support item assignment), scattering dx[None] += dt into dx, the number the product's "
        "adjoint gave",
        forward=(
            "import numpy as np\n\n\ndef unit(x):\n    t = x[None]\n    return t * x\n\n\n"
            'def f(z: "3, 1"):\n    z = np.amax(z, None)\n    return np.sum(unit(z))\n'
        ),
        args=lambda: {"z": numpy.array([[0.3], [1.7], [-0.4]])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
    KnownBug(
        name="dirichlet-x-one-row-short",
        symptom="scipy.stats.dirichlet.logpdf(x, alpha) with x one row short of alpha (scipy "
        "appends the row 1 - sum(x)): the backward raised ValueError (operands could not be "
        "broadcast), from (alpha - 1) / x and log(x) of the short x",
        forward=(
            "import numpy as np\nimport scipy.stats\n\n\n"
            "def f(x, alpha):\n    return scipy.stats.dirichlet.logpdf(x, alpha)\n"
        ),
        args=lambda: {"x": numpy.array([0.2, 0.3, 0.1]), "alpha": numpy.array([1.5, 2, 0.7, 3])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
    KnownBug(
        name="pad-a-mask-with-a-differentiable-constant",
        symptom="np.pad(h > 0.3, 1, constant_values=x): numpy casts x to the mask's bool, a "
        "step with no gradient; the backward gave dx the sum of the padded upstream",
        forward=_module("np.pad(y > 0.3, pad_width=1, constant_values=x)", "x, y"),
        args=lambda: {"x": 1.4, "y": numpy.array([0.1, 0.5, 0.9])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
    ),
]
KNOWN_BUGS.append(
    KnownBug(
        name="power-of-a-tuple",
        symptom="np.shape(x) ** y or y ** np.shape(x), np.minimum(np.shape(x), y) (numpy takes "
        "the tuple for an array): the backward raises TypeError, from the adjoints' abs(x), "
        "y - 1.0 and x > y on the tuple",
        forward=_module("np.sum(np.shape(x) ** y)", "x, y"),
        args=lambda: {"x": numpy.ones(2), "y": numpy.array([0.5, 1.5])},
        upstream=lambda: None,
        excludes=lambda app: False,
        raises=AssertionError,
        recognizes=lambda failure: (
            re.search(
                r"raised TypeError\(\"(bad operand type for abs\(\): 'tuple'|unsupported "
                r"operand type\(s\) for (-|\*\* or pow\(\)): 'tuple' and '(float|int)'|"
                r"'[<>]=?' not supported between "
                r"instances of ('tuple' and|'float' and 'tuple'))",
                failure.partition("\n")[0],
            )
            is not None
        ),
    )
)

EXCLUSIONS = [*(bug.excludes for bug in KNOWN_BUGS), *UNSUPPORTED]


# --- finite differences -------------------------------------------------------------------------


# A place in an argument: () for an array or a number, (k, j) for the j-th array of the
# k-th item of a list of tuples (``layers[k][j]``), (k,) for the k-th of a list of arrays.
Place = tuple[int, ...]


def _leaves(value: Any) -> dict[Place, Any]:
    """An argument's arrays (or numbers) by their places: a list parameter's, or itself."""
    if not isinstance(value, list):
        return {(): value}
    found: dict[Place, Any] = {}
    for k, item in enumerate(value):
        if isinstance(item, tuple):
            found.update({(k, j): leaf for j, leaf in enumerate(item)})
        else:
            found[(k,)] = item
    return found


def _place_text(place: Place) -> str:
    return "".join(f"[{k}]" for k in place)


def _moved(
    args: dict[str, Any], name: str, index: tuple[int, ...], value: float, place: Place = ()
) -> Any:
    """The arguments with entry ``index`` of ``name`` (of its leaf at ``place``) set to
    ``value``; the other leaves of a list the same objects."""
    leaf = _leaves(args[name])[place]
    moved = numpy.array(leaf, dtype=numpy.float64)
    moved[index] = value
    # a number stays a Python float, an array an array
    new = moved if isinstance(leaf, numpy.ndarray) else float(moved)
    if not place:
        return {**args, name: new}
    items = list(args[name])
    if len(place) == 1:
        items[place[0]] = new
    else:
        item = list(items[place[0]])
        item[place[1]] = new
        items[place[0]] = tuple(item)
    return {**args, name: items}


def _numeric_leaf(
    loss: Callable[..., float], args: dict[str, Any], name: str, place: Place, step: float
) -> Any:
    """Five-point central differences of ``loss`` for the leaf of ``name`` at ``place``."""
    base = numpy.asarray(_leaves(args[name])[place], dtype=numpy.float64)
    grad = numpy.zeros(base.shape)
    for index in numpy.ndindex(base.shape):
        value = float(base[index])
        h = step * max(1.0, abs(value))
        h = (value + h) - value  # a step the floats represent exactly
        f = [loss(**_moved(args, name, index, value + k * h, place)) for k in (-2, -1, 1, 2)]
        grad[index] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    return grad


def numeric_gradients(
    loss: Callable[..., float], args: dict[str, Any], names: list[str], step: float
) -> dict[str, Any]:
    """Five-point central differences of ``loss`` for each parameter in ``names``; for a
    list parameter, for each of its leaves, by place (``_leaves``)."""
    result: dict[str, Any] = {}
    for name in names:
        grads = {
            place: _numeric_leaf(loss, args, name, place, step) for place in _leaves(args[name])
        }
        result[name] = grads if isinstance(args[name], list) else grads[()]
    return result


def _tolerance(expected: Any) -> float:
    return ATOL * max(1.0, float(numpy.max(numpy.abs(expected), initial=0.0)))


def _close(actual: Any, expected: Any) -> bool:
    actual = numpy.asarray(actual, dtype=numpy.float64)
    return bool(
        numpy.all(numpy.abs(actual - expected) <= _tolerance(expected) + RTOL * numpy.abs(expected))
    )


# --- the check ----------------------------------------------------------------------------------


def _copy(value: Any) -> Any:
    return numpy.copy(value) if isinstance(value, numpy.ndarray) else copy.deepcopy(value)


def _unchanged(before: Any, after: Any, what: str, context: str) -> None:
    assert type(before) is type(after), f"{what} changed type{context}"
    numpy.testing.assert_array_equal(after, before, err_msg=f"{what} was modified{context}")


def _snapshot(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return type(value)(_snapshot(v) for v in value)
    return _copy(value)


def _unchanged_tree(before: Any, after: Any, what: str, context: str) -> None:
    if isinstance(before, (tuple, list)):
        assert type(before) is type(after) and len(before) == len(after), f"{what}{context}"
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            _unchanged_tree(b, a, f"{what}[{i}]", context)
    elif isinstance(before, (numpy.ndarray, numpy.generic, float, int)):
        _unchanged(before, after, what, context)
    else:
        assert before == after, f"{what} was modified{context}"


def _arrays(value: Any, what: str) -> dict[str, Any]:
    """The arrays in ``value`` (nested tuples and lists), named by where they are."""
    if isinstance(value, (tuple, list)):
        found: dict[str, Any] = {}
        for i, item in enumerate(value):
            found.update(_arrays(item, f"{what}[{i}]"))
        return found
    return {what: value} if isinstance(value, numpy.ndarray) else {}


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    """The arrays of ``values`` (a list parameter's or its gradient's leaves too), named by
    where they are (``layers[0][1]``)."""
    return {k: v for name, value in values.items() for k, v in _arrays(value, name).items()}


def _same_gradients(actual: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    for name, grad in expected.items():
        _same_tree(actual[name], grad, f"d{name}", what)


def _same_tree(other: Any, grad: Any, name: str, what: str) -> None:
    """``other`` is ``grad`` (a list parameter's: leaf by leaf, of the same structure)."""
    if isinstance(grad, list) or isinstance(other, list):
        assert type(other) is type(grad) and len(other) == len(grad), f"{name}{what}"
        for i, (one, two) in enumerate(zip(other, grad, strict=True)):
            _same_tree(one, two, f"{name}[{i}]", what)
        return
    if grad is None or other is None:
        assert grad is None and other is None, f"None from one function only: {name}{what}"
        return
    assert numpy.shape(other) == numpy.shape(grad), f"shape of {name}{what}"
    numpy.testing.assert_allclose(
        other,
        grad,
        rtol=1e-12,
        atol=1e-12 * max(1.0, float(numpy.max(numpy.abs(grad), initial=0.0))),
        err_msg=f"{name}{what}",
    )


def _assert_close_gradient(
    grad: Any,
    expected: Any,
    loss: Callable[..., float],
    args: dict[str, Any],
    name: str,
    where: str,
    place: Place = (),
) -> None:
    """``grad`` against central differences (of ``name``'s leaf at ``place``); where they
    disagree, a second step size tells a wrong gradient from unreliable differences (the
    program is discarded, counted)."""
    if _close(grad, expected):
        return
    again = _numeric_leaf(loss, args, name, place, STEP / 4)
    if not _close(again, expected):
        event("discarded: finite differences disagree between step sizes")
        reject()
    numpy.testing.assert_allclose(
        grad, expected, rtol=RTOL, atol=_tolerance(expected), err_msg=f"gradient {where}"
    )


def check_program(program: Program, annotated: bool, pairs: bool = True) -> None:
    """Generates ``program``'s backward (and pairs) once, and checks it at every combination
    of the values of its flags (``Program.variants``: every side of its ``if``s)."""
    source = program.source(annotated)
    context = f"\nforward:\n{source}\narguments: {program!r}"
    if len(program.variants) > 1:
        context += f"\nchecked at: {', '.join(map(repr, program.variants))}"
    generated = gradgen.generate(source, "forward.py", value_and_grad=True)
    context += f"\ngenerated:\n{generated}"
    assert gradgen.generate(source, "forward.py", value_and_grad=True) == generated, (
        f"not byte-identical{context}"
    )
    forward = run_module(source, "forward.py")["f"]
    module = run_module(generated, "generated.py")
    paired = None
    if pairs:
        paired = gradgen.generate(source, "forward.py", pairs=True, value_and_grad=True)
        pair_module = run_module(paired, "pairs.py")
    for variant in program.variants:
        at = program.at(variant)
        where = context if len(program.variants) == 1 else f"\nat {variant!r}:{context}"
        if at.raising:
            check_raises(at, forward, module, pair_module if paired is not None else None, where)
            continue
        gradients, expected_values = check_backward(at, forward, module, where)
        if paired is not None:
            check_pairs(
                at,
                pair_module,
                f"{where}\ngenerated with pairs=True:\n{paired}",
                gradients,
                expected_values,
            )
    if program.helpers and zlib.crc32(source.encode()) % 2:
        check_split(program, annotated, context)


def check_raises(
    program: Program,
    forward: Callable[..., Any],
    module: dict[str, Any],
    pairs: dict[str, Any] | None,
    context: str,
) -> None:
    """At flags that take a side that raises (``RAISED``), the forward raises; so do
    ``f_backward`` and ``f_value_and_grad`` (whatever the upstream: the forward's part comes
    first) and, with pairs, ``f_forward``, the same exception, and none writes into an
    argument."""
    names = [n for n, _ in program.params]
    functions = [("f", forward), ("f_backward", module["f_backward"])]
    functions.append(("f_value_and_grad", module["f_value_and_grad"]))
    if pairs is not None:
        functions.append(("f_forward (pairs)", pairs["f_forward"]))
    for what, function in functions:
        args = {n: _copy(v) for n, v in program.args.items()}
        signature = inspect.signature(function).parameters
        upstream = {
            p.name: 1.0
            for p in signature.values()
            if p.name not in names and p.default is inspect.Parameter.empty
        }
        try:
            function(**args, **upstream)
        except ValueError as error:
            assert "not for these flags" in str(error), f"{what} raised {error!r}{context}"
        else:
            raise AssertionError(f"{what} did not raise{context}")
        for name in names:
            _unchanged_tree(program.args[name], args[name], f"argument {name} of {what}", context)


def check_backward(
    program: Program, forward: Callable[..., Any], module: dict[str, Any], context: str
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """``f_backward`` and ``f_value_and_grad`` at ``program``'s arguments: the gradients of
    central differences, arguments and upstreams untouched, gradients owned. Returns the
    gradients and ``f``'s value(s)."""
    backward, value_and_grad = module["f_backward"], module["f_value_and_grad"]
    names = [n for n, _ in program.params]
    count = len(program.results) if program.several else 1
    signature = list(inspect.signature(backward).parameters.values())
    positional = [p.name for p in signature if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = [p.name for p in signature if p.kind is p.KEYWORD_ONLY]
    defaulted = any(d is not None for d in program.defaults.values())
    if program.several:
        # F_backward(<params>, *, du=None, dv=None): one upstream per result, None for zero
        assert positional == names, context
        assert len(keywords) == count and all(k.startswith("d") for k in keywords), context
        assert all(p.default is None for p in signature if p.kind is p.KEYWORD_ONLY), context
    elif defaulted:
        # F_backward(<params>, flag=True, *, dout=1.0): the upstream after the defaults
        assert positional == names, context
        assert len(keywords) == 1 and keywords[0].startswith("d"), context
    else:
        assert positional[:-1] == names and positional[-1].startswith("d"), context
        assert not keywords, context

    args = {n: _copy(v) for n, v in program.args.items()}
    upstreams = [_copy(u) for u in (program.upstreams if program.several else [program.upstream])]
    if program.several:
        call: list[Any] = [*args.values()]
        by_keyword = {
            k: u
            for k, u, left_out in zip(keywords, upstreams, program.omitted, strict=True)
            if not left_out
        }
    else:
        call = [*args.values()] if upstreams[0] is None else [*args.values(), upstreams[0]]
        by_keyword = {}
        if defaulted and upstreams[0] is not None:
            call, by_keyword = [*args.values()], {keywords[0]: upstreams[0]}

    try:
        result = backward(*call, **by_keyword)
        value, result_2 = value_and_grad(*call, **by_keyword)
    except Exception as error:  # the program, not only the traceback into generated code
        raise AssertionError(f"the backward raised {error!r}{context}") from error
    for name in names:
        _unchanged_tree(program.args[name], args[name], f"argument {name}", context)
    given = program.upstreams if program.several else [program.upstream]
    for position, (before, after) in enumerate(zip(given, upstreams, strict=True)):
        if before is not None:
            _unchanged(before, after, f"upstream gradient {position}", context)
    gradients = dict(zip(names, as_tuple(result, len(names)), strict=True))
    gradients_2 = dict(zip(names, as_tuple(result_2, len(names)), strict=True))

    expected_value = forward(**{n: _copy(v) for n, v in program.args.items()})
    values = as_tuple(value, count) if count > 1 else (value,)
    expected_values = as_tuple(expected_value, count) if count > 1 else (expected_value,)
    for got, expected_one in zip(values, expected_values, strict=True):
        numpy.testing.assert_allclose(
            got, expected_one, rtol=1e-12, atol=1e-12, err_msg=f"f_value_and_grad's value{context}"
        )
        assert numpy.shape(got) == numpy.shape(expected_one), context

    # The loss: each result times its upstream (a None upstream: zero; one result's: 1.0)
    weights = given if program.several else [1.0 if given[0] is None else given[0]]

    def loss(**arguments: Any) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", "`row_stack`", DeprecationWarning)
            with numpy.errstate(all="raise"):
                out = forward(**arguments)
                outs = out if program.several else (out,)
                return sum(
                    (
                        float(numpy.sum(o * w))
                        for o, w in zip(outs, weights, strict=True)
                        if w is not None
                    ),
                    0.0,
                )

    differentiable = [n for n in names if n not in program.labels]
    try:
        expected = numeric_gradients(loss, program.args, differentiable, STEP)
    except (ArithmeticError, ValueError, TypeError, RuntimeWarning) as error:
        # TypeError: an integer parameter that is a shape too (np.ones(x)) moved off integers
        event("discarded: finite differences leave the domain")
        reject()
        raise AssertionError from error  # unreachable: reject() raises

    lists = {one.iterable: one for items in program.item_lists for one in items.lists()}
    for name in names:
        grad, grad_2 = gradients[name], gradients_2[name]
        where = f"d{name}{context}"
        if name in lists:
            check_list_gradient(
                lists[name], (grad, grad_2), expected[name], loss, program.args, context
            )
            continue
        if grad is None or grad_2 is None:
            assert grad is None and grad_2 is None, f"None from one function only: {where}"
        else:
            numpy.testing.assert_array_equal(grad_2, grad, err_msg=f"two answers for {where}")
        if name in program.labels:
            assert grad is None or (isinstance(grad, float) and grad == 0.0), where
            continue
        shape = numpy.shape(program.args[name])
        if grad is None or (isinstance(grad, float) and grad == 0.0 and shape != ()):
            # "does not depend on it" (0.0) or "only without a gradient" (None): the result
            # must not move with it
            assert _close(0.0, expected[name]), f"{grad!r}, but it moves the result: {where}"
            continue
        assert numpy.shape(grad) == shape, f"shape {numpy.shape(grad)}, not {shape}: {where}"
        assert numpy.asarray(grad).dtype == numpy.float64, f"dtype of {where}"
        _assert_close_gradient(grad, expected[name], loss, program.args, name, where)

    others: dict[str, Any] = {**_flat(args), **_arrays(upstreams, "the upstream gradients")}
    if program.mode == "array" or program.item_lists:
        owned_arrays(_flat(gradients), others, context)
        owned_arrays(_flat(gradients_2), {**others, **_arrays(list(values), "the value")}, context)
    return gradients, expected_values


def check_list_gradient(
    items: Items,
    grads: tuple[Any, Any],
    expected: dict[Place, Any],
    loss: Callable[..., float],
    args: dict[str, Any],
    context: str = "",
) -> None:
    """The gradient of a list parameter a loop goes over the items of (``f_backward``'s
    and ``f_value_and_grad``'s, the same), leaf by leaf against central differences:
    None (or 0.0) where no leaf moves the result; otherwise, items that are tuples
    (``for W, bias in layers:``) give a list of lists, one per item, each with its arrays'
    gradients in order (None for one the result does not move with: unread); items that
    are arrays (``for W in weights:``) give an array, one row per item (as an array's rows
    do)."""
    name = items.iterable
    where = f"d{name}{context}"
    both = [_gradient_leaves(items, grad, where) for grad in grads]
    if both[0] is None or both[1] is None:
        assert both[0] is None and both[1] is None, f"None from one function only: {where}"
        moved = [p for p, e in expected.items() if not _close(0.0, e)]
        assert not moved, (
            f"{grads[0]!r}, but {name}{_place_text(moved[0])} moves the result: {where}"
        )
        return
    leaves, again = both
    for place, leaf in leaves.items():
        there = f"d{name}{_place_text(place)}{context}"
        other = again[place]
        if leaf is None or other is None:
            assert leaf is None and other is None, f"None from one function only: {there}"
        else:
            numpy.testing.assert_array_equal(other, leaf, err_msg=f"two answers for {there}")
        dims = numpy.shape(_leaves(args[name])[place])
        if leaf is None or (isinstance(leaf, float) and leaf == 0.0 and dims != ()):
            assert _close(0.0, expected[place]), f"{leaf!r}, but it moves the result: {there}"
            continue
        assert numpy.shape(leaf) == dims, f"shape {numpy.shape(leaf)}, not {dims}: {there}"
        assert numpy.asarray(leaf).dtype == numpy.float64, f"dtype of {there}"
        _assert_close_gradient(leaf, expected[place], loss, args, name, there, place)


def _gradient_leaves(items: Items, grad: Any, where: str) -> dict[Place, Any] | None:
    """A list parameter's gradient by the places of its leaves (``check_list_gradient``
    says what it is); None for None or 0.0."""
    if grad is None or (isinstance(grad, float) and grad == 0.0):
        return None
    count = len(items.values)
    if not items.tupled:
        dims = (count, *items.shapes[0])
        assert isinstance(grad, numpy.ndarray) and grad.shape == dims, (
            f"not an array of shape {dims} (one row per item): {grad!r} {where}"
        )
        return {(k,): grad[k] for k in range(count)}
    assert isinstance(grad, list) and len(grad) == count, f"not a list of {count}: {where}"
    found: dict[Place, Any] = {}
    for k, item in enumerate(grad):
        width = len(items.targets)
        assert isinstance(item, list) and len(item) == width, (
            f"item {k}: not a list of {width}: {where}"
        )
        found.update({(k, j): leaf for j, leaf in enumerate(item)})
    return found


def check_split(program: Program, annotated: bool, context: str) -> None:
    """The helpers moved to a module of their own (``from helpers import ...``): every
    function generated for ``f`` and what it calls is the one the single module gives
    for ``f`` alone, byte for byte (a linked function is differentiated as one of the
    module's own). For ``f`` alone: generating every function of the module, a helper's
    own backward may call a backward of another helper that ``f`` needs none of, whose
    reads then join that helper's cache, and so its ``F_forward``."""
    source = program.source(annotated)
    generated = compile_source(source, "forward.py", Options(only=("f",))).text
    helpers, forward = program.split_sources(annotated)
    with tempfile.TemporaryDirectory(prefix="gradgen-split-") as folder:
        (Path(folder) / "helpers.py").write_text(helpers, encoding="utf-8")
        path = Path(folder) / "forward.py"
        path.write_text(forward, encoding="utf-8")
        split = compile_source(forward, str(path)).text
    where = f"{context}\nsplit into helpers.py:\n{helpers}\nforward.py:\n{forward}\n{split}"
    whole = _function_texts(generated)
    parts = _function_texts(split)
    assert "f_backward" in parts, where
    for name, text in parts.items():
        assert whole.get(name) == text, f"{name} differs{where}"


def _function_texts(text: str) -> dict[str, str]:
    """Each top-level ``def`` of a generated module, by name."""
    found: dict[str, str] = {}
    for chunk in re.split(r"\n(?=def )", text):
        if chunk.startswith("def "):
            found[chunk[4 : chunk.index("(")]] = chunk.rstrip("\n")
    return found


def check_pairs(
    program: Program,
    module: dict[str, Any],
    context: str,
    gradients: dict[str, Any],
    expected_values: tuple[Any, ...],
) -> None:
    """With ``pairs=True``: ``f_forward(*args)`` gives ``(*values, cache)``, and
    ``f_backward(*upstreams, cache)`` the gradients the recomputing backward gives, without
    writing into the cache (it can be called again), an argument or an upstream, and owning
    what it returns; ``f_value_and_grad`` is the two."""
    names = [n for n, _ in program.params]
    count = len(expected_values)
    args = {n: _copy(v) for n, v in program.args.items()}
    given = program.upstreams if program.several else [program.upstream]
    upstreams = [_copy(u) for u in given]
    if not program.several and upstreams[0] is None:
        upstreams = [1.0]  # the pair's backward has no default upstream
    try:
        *values, cache = module["f_forward"](*args.values())
        kept = _snapshot(cache)
        result = module["f_backward"](*upstreams, cache)
        _unchanged_tree(kept, cache, "the cache", context)
        again = module["f_backward"](*upstreams, cache)
    except Exception as error:
        raise AssertionError(f"the pair raised {error!r}{context}") from error
    assert len(values) == count, context
    for got, expected_one in zip(values, expected_values, strict=True):
        numpy.testing.assert_allclose(
            got, expected_one, rtol=1e-12, atol=1e-12, err_msg=f"f_forward's value{context}"
        )
    for name in names:
        _unchanged_tree(program.args[name], args[name], f"argument {name}", context)
    for position, (before, after) in enumerate(zip(given, upstreams, strict=True)):
        if before is not None:
            _unchanged(before, after, f"upstream gradient {position}", context)
    from_cache = dict(zip(names, as_tuple(result, len(names)), strict=True))
    _same_gradients(from_cache, gradients, f" from the cache (pairs=True){context}")
    _same_gradients(
        dict(zip(names, as_tuple(again, len(names)), strict=True)),
        gradients,
        f" from the cache, called again (pairs=True){context}",
    )
    if program.mode == "array" or program.item_lists:
        others = {
            **_flat(args),
            **_arrays(upstreams, "the upstream gradients"),
            **_arrays(values, "the value"),
            **_arrays(cache, "the cache"),
        }
        owned_arrays(_flat(from_cache), others, context)


# --- the properties ----------------------------------------------------------------------------


def _pairs(program: Program, data: st.DataObject) -> bool:
    """Whether to check the program's forward/backward pair too (``pairs=True``): always for
    a module or several results, one in PAIRS of the others (the pairs of one function and
    one result are older, and generating them again costs as much as the rest)."""
    if program.helpers or program.several:
        return True
    return data.draw(st.integers(0, PAIRS - 1), label="pairs") == PAIRS - 1  # 0: simplest


def _events(program: Program, annotated: bool, pairs: bool) -> None:
    for rule in program.rules:
        event(f"rule {rule}")
    for feature in features(program):
        event(f"program: {feature}")
    event(f"program: {'a module' if program.helpers else 'one function'}")
    event(f"program: {len(program.results) if program.several else 1} results")
    event("annotated" if annotated else "plain")
    if program.item_lists:
        event(f"program: a list parameter, {'annotated' if annotated else 'plain'}")
    if pairs:
        event("pairs checked")


def _form_id(form: Form) -> str:
    return f"{form.rule.name}:{form.text}"


# One property test per form of the table and mode: each form heads its programs (the first
# statement applies it), the other statements draw from the whole table. A form that computes
# on numbers is tested in scalar code and in array code; numpy forms in array code.
#
# One program in MODULES is a module (f calls 1 to 3 other functions of it, built the same
# way, which may call each other), one in SEVERAL returns several values, and one in PAIRS of
# the others has its pairs checked too. A module costs about three programs of one function
# to generate and check, the pairs half of one: the thorough profile (many programs per form)
# draws them often; the ci profile (5 per form, the same on every run) rarely, to keep its
# time.
_THOROUGH = settings.default.max_examples >= 50
MODULES = 4 if _THOROUGH else 16
SEVERAL = 5 if _THOROUGH else 16
PAIRS = 4 if _THOROUGH else 16
# One program in LOOPS has a loop (program_strategy.build_program), in both profiles: a
# loop costs little more than the statements it holds.
LOOPS = 3
# One program in BRANCHES has ``if`` statements (program_strategy.build_program), in both
# profiles: checked at every combination of its flags' values (two or three runs).
BRANCHES = 3


@pytest.mark.parametrize("form", SCALAR_FORMS, ids=_form_id)
@given(data=st.data())
def test_scalar_programs(form: Form, data: st.DataObject) -> None:
    program = data.draw(
        programs("scalar", EXCLUSIONS, form, MODULES, SEVERAL, LOOPS, BRANCHES), label="program"
    )
    annotated = data.draw(st.booleans(), label="annotated")
    pairs = _pairs(program, data)
    _events(program, annotated, pairs)
    check_unless_known(program, annotated, pairs)


@pytest.mark.parametrize("form", FORMS, ids=_form_id)
@given(data=st.data())
def test_array_programs(form: Form, data: st.DataObject) -> None:
    program = data.draw(
        programs("array", EXCLUSIONS, form, MODULES, SEVERAL, LOOPS, BRANCHES),
        label="program",
    )
    annotated = data.draw(st.booleans(), label="annotated")
    pairs = _pairs(program, data)
    _events(program, annotated, pairs)
    check_unless_known(program, annotated, pairs)


def check_unless_known(program: Program, annotated: bool, pairs: bool) -> None:
    """``check_program``; a program that fails with the symptom of an open bug the strategy
    cannot leave out in advance (``KnownBug.recognizes``) is discarded, counted."""
    try:
        check_program(program, annotated, pairs)
    except AssertionError as error:
        for bug in KNOWN_BUGS:
            if bug.recognizes is not None and bug.recognizes(str(error)):
                event(f"discarded: known bug {bug.name}")
                reject()
        raise


# --- programs that draw random numbers ----------------------------------------------------------

_drawing_modules = itertools.count()


def _restorer(module: types.ModuleType) -> Callable[[], None]:
    """Puts numpy's and the standard library's global generators, and the module's ``RS``,
    back as they are now: each forward then draws the same numbers."""
    numpy_state, stdlib_state = numpy.random.get_state(), random.getstate()
    generator = getattr(module, "RS", None)
    if isinstance(generator, numpy.random.RandomState):
        state: Any = generator.get_state()
    elif isinstance(generator, numpy.random.Generator):
        state = generator.bit_generator.state
    elif isinstance(generator, random.Random):
        state = generator.getstate()

    def restore() -> None:
        numpy.random.set_state(numpy_state)
        random.setstate(stdlib_state)
        if isinstance(generator, numpy.random.RandomState):
            generator.set_state(state)
        elif isinstance(generator, numpy.random.Generator):
            generator.bit_generator.state = state
        elif isinstance(generator, random.Random):
            generator.setstate(state)

    return restore


def check_drawing_program(program: Program, annotated: bool, spelling: str) -> None:
    """``program`` with its result multiplied by a draw: no recomputing ``f_backward``;
    ``f_value_and_grad`` and the pair give the value the forward gives and the gradients of
    central differences, the generators put back before every run of the forward."""
    source = drawing_source(program, annotated, spelling)
    name = f"gradgen_drawing_program_{next(_drawing_modules)}"
    module = types.ModuleType(name)
    sys.modules[name] = module  # the generated module imports RS from it
    try:
        exec(compile(source, "forward.py", "exec"), module.__dict__)
        options = Options(forward_module=name)
        generated = compile_source(source, "forward.py", options).text
        context = f"\nforward:\n{source}\narguments: {program!r}\ngenerated:\n{generated}"
        again = compile_source(source, "forward.py", options).text
        assert again == generated, f"not byte-identical{context}"
        assert "def f_backward(" not in generated, context
        assert "# No f_backward: f draws random numbers" in generated, context
        paired = compile_source(source, "forward.py", Options(forward_module=name, pairs=True))
        context += f"\ngenerated with pairs=True:\n{paired.text}"
        value_and_grad = run_module(generated, "generated.py")["f_value_and_grad"]
        pair = run_module(paired.text, "pairs.py")
        restore = _restorer(module)
        forward = module.f
        names = [n for n, _ in program.params]
        upstream = [] if program.upstream is None else [_copy(program.upstream)]
        weight = 1.0 if program.upstream is None else program.upstream

        restore()
        expected_value = forward(**{n: _copy(v) for n, v in program.args.items()})
        try:
            restore()
            value, result = value_and_grad(*[_copy(v) for v in program.args.values()], *upstream)
            restore()
            *values, cache = pair["f_forward"](*[_copy(v) for v in program.args.values()])
            from_cache = pair["f_backward"](*(upstream or [1.0]), cache)
        except Exception as error:
            raise AssertionError(f"the backward raised {error!r}{context}") from error
        for got in (value, values[0]):
            numpy.testing.assert_allclose(
                got, expected_value, rtol=1e-12, atol=1e-12, err_msg=f"the value{context}"
            )
        gradients = dict(zip(names, as_tuple(result, len(names)), strict=True))
        _same_gradients(
            dict(zip(names, as_tuple(from_cache, len(names)), strict=True)),
            gradients,
            f" from the cache (pairs=True){context}",
        )

        def loss(**arguments: Any) -> float:
            restore()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                warnings.filterwarnings("ignore", "`row_stack`", DeprecationWarning)
                with numpy.errstate(all="raise"):
                    return float(numpy.sum(forward(**arguments) * weight))

        differentiable = [n for n in names if n not in program.labels]
        try:
            expected = numeric_gradients(loss, program.args, differentiable, STEP)
        except (ArithmeticError, ValueError, TypeError, RuntimeWarning):
            event("discarded: finite differences leave the domain")
            reject()
        lists = {one.iterable: one for items in program.item_lists for one in items.lists()}
        for parameter in differentiable:
            grad = gradients[parameter]
            where = f"d{parameter}{context}"
            if parameter in lists:
                twice = (grad, grad)  # the pair's gradients are the same (above)
                check_list_gradient(
                    lists[parameter], twice, expected[parameter], loss, program.args, context
                )
                continue
            shape = numpy.shape(program.args[parameter])
            if grad is None or (isinstance(grad, float) and grad == 0.0 and shape != ()):
                assert _close(0.0, expected[parameter]), f"{grad!r}, but it moves: {where}"
                continue
            _assert_close_gradient(grad, expected[parameter], loss, program.args, parameter, where)
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("spelling", list(DRAW_SPELLINGS))
@given(data=st.data())
def test_programs_with_draws(spelling: str, data: st.DataObject) -> None:
    """Programs of the table (one function or a module), their result multiplied by a draw
    from a seeded generator (``program_strategy.DRAW_SPELLINGS``)."""
    mode = DRAW_SPELLINGS[spelling][0]
    focus = data.draw(st.sampled_from(SCALAR_FORMS if mode == "scalar" else FORMS), label="form")
    program = data.draw(programs(mode, EXCLUSIONS, focus, MODULES, 0, LOOPS), label="program")
    if mode == "array" and not program.numpy_import:
        reject()  # the draw spells numpy: a module that does not import it cannot
    annotated = data.draw(st.booleans(), label="annotated")
    event(f"program: {'a module' if program.helpers else 'one function'}")
    try:
        check_drawing_program(program, annotated, spelling)
    except AssertionError as error:
        for bug in KNOWN_BUGS:
            if bug.recognizes is not None and bug.recognizes(str(error)):
                event(f"discarded: known bug {bug.name}")
                reject()
        raise


# --- structured parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("form", STRUCTURED_FORMS)
@given(data=st.data())
def test_structured_parameter_programs(form: str, data: st.DataObject) -> None:
    """Array programs (modules too) with some of f's parameters passed inside a dict or a
    list, read by ``form``: checked (flat) against central differences, then the
    structured program's gradients, leaf by leaf, against the flat ones."""
    program = data.draw(programs("array", EXCLUSIONS, None, MODULES, 0, LOOPS), label="program")
    annotated = data.draw(st.booleans(), label="annotated")
    try:
        structured = structured_program(HypothesisChooser(data.draw), program, annotated, form)
    except Unfit:
        reject()
    event(f"structured: {structured.form}, {len(structured.wrapped)} wrapped")
    try:
        check_program(program, annotated, pairs=False)
    except AssertionError as error:
        for bug in KNOWN_BUGS:
            if bug.recognizes is not None and bug.recognizes(str(error)):
                reject()
        raise
    check_structured(structured, annotated)


def check_structured(structured: Any, annotated: bool) -> None:
    """The structured program's gradients equal the flat program's (already checked against
    central differences), leaf by leaf, in the container's structure; each is owned; pairs
    give the same."""
    from gradgen.gradcheck.structured import MISSING, flattening, lookup

    program = structured.program
    flat_source = program.source(annotated)
    context = f"\nflat:\n{flat_source}\nstructured:\n{structured.source}\n{program!r}"
    text = gradgen.generate(structured.source, "structured.py")
    context += f"\ngenerated:\n{text}"
    assert gradgen.generate(structured.source, "structured.py") == text, context
    flat = run_module(gradgen.generate(flat_source, "flat.py"), "flat.py")["f_backward"]
    names = [n for n, _ in program.params]
    upstream = [] if program.upstream is None else [_copy(program.upstream)]
    expected = as_tuple(flat(*[_copy(v) for v in program.args.values()], *upstream), len(names))
    wanted = dict(zip(names, expected, strict=True))
    args = [_copy(a) for a in structured.args]
    kept = copy.deepcopy(structured.args)
    user = [n for n in names if n not in structured.wrapped] + ["params"]
    for pairs in (False, True):
        module = run_module(
            gradgen.generate(structured.source, "structured.py", pairs=pairs), "structured.py"
        )
        if pairs:
            _, cache = module["f_forward"](*args)
            up = upstream[0] if upstream else 1.0
            grads = as_tuple(module["f_backward"](up, cache), len(user))
        else:
            grads = as_tuple(module["f_backward"](*args, *upstream), len(user))
        given_ = dict(zip(user, grads, strict=True))
        container = given_["params"]
        kind = dict if structured.form.startswith("dict") else list
        if container == 0.0 and structured.form == "dict-inline":
            # No key read: an unused parameter, whose gradient is 0.0 (the contract).
            container = {}
        assert isinstance(container, kind), f"{type(container)}{context}"
        if structured.form == "nested-unpack":
            assert all(isinstance(g, list) for g in container), context
        leaves: dict[str, Any] = {}
        for name in names:
            if name in structured.wrapped:
                got = lookup(container, structured.paths[name])
                if got is MISSING:  # no entry: a key never read, whose gradient is zero
                    got = 0.0
            else:
                got = given_[name]
            leaves[name] = got
            _same_gradient(got, wanted[name], f"d{name} (pairs={pairs}){context}")
        layout = flattening(user, args)
        assert layout is not None
        others = dict(zip(layout.names, layout.values(args), strict=True))
        owned_arrays(leaves, others, text)
    for now, before in zip(args, kept, strict=True):
        numpy.testing.assert_equal(now, before, err_msg=f"an argument changed{context}")


def _same_gradient(got: Any, expected: Any, context: str) -> None:
    if expected is None or (isinstance(expected, float) and expected == 0.0 and got is None):
        assert got is None or not numpy.any(got), context
        return
    if isinstance(expected, float) and not numpy.ndim(got):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), context
        return
    numpy.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=context)


# --- the strategy covers the table -------------------------------------------------------------


def test_every_nondiff_name_has_a_generator() -> None:
    """A rule's literal arguments (axis, keepdims, indices, ...) are drawn by generators keyed
    by name: a new name needs a generator in ``NONDIFF_GENERATORS``, or the rule would not be
    fuzzed."""
    missing = sorted({(r.name, n) for r in RULES for n in r.nondiff if n not in NONDIFF_GENERATORS})
    assert not missing, (
        f"(rule, nondiff name) pairs without a generator in tests/program_strategy.py: {missing}"
    )


@pytest.mark.parametrize("form", FORMS, ids=_form_id)
def test_every_form_is_generated(form: Form) -> None:
    """Every spelling of every rule can be built into a program (in scalar code if it computes
    on numbers, else in array code), known bugs left out: a rule the strategy cannot build (or
    an exclusion that leaves none of its programs) fails here."""
    mode = "scalar" if form in SCALAR_FORMS else "array"
    for seed in range(300):
        try:
            program = build_program(RandomChooser(seed), mode, EXCLUSIONS, focus=form)
        except MissingGenerator:
            raise
        except Unfit:
            continue
        if form.rule.name in program.rules:
            return
    pytest.fail(f"no {mode} program applies {form.text} (rule {form.rule.name})")


# What the loops of the programs must exercise: a strategy that stopped building one of them
# (or loops at all) fails here, not silently.
LOOP_FEATURES = (
    "loop",
    "nested loop",
    "loop: reversed(range(...))",
    "loop: range with a start (and a step)",
    "loop: range(n) of a parameter",
    "loop: range over a length (len(xs), xs.shape[k])",
    "loop: a sequence read at its step (xs[t])",
    "loop: a value indexed by the loop's variable",
    "loop: its variable as a number",
    "loop: several values carried",
    "loop: a list appended to",
    "loop: in-place update",
    "loop: a call of a helper",
    "loop: a value bound in it read after it (its last step's)",
    "loop: a step ended early (if t == 2: continue)",
    "loop: while",
    "loop: while <test> and n < K",
    "nested loop: while",
    "loop: a list appended to in a while loop",
    "loop: an array filled (hs[t] = h)",
    "loop: an array filled at a later axis (hs[:, t] = v)",
    "loop: an array filled twice a step (hs[t, 0], hs[t, 1])",
    "loop: an array made by zeros",
    "loop: an array made by ones",
    "loop: an array made by empty",
    "loop: an array made by a _like (np.zeros_like(x))",
    "a helper with a loop",
    "a helper with a loop called with different arguments varying",
    ITEM_LOOP,
    f"{ITEM_LOOP}, with a tuple target",
    f"{ITEM_LOOP}, a tuple of one",
    f"{ITEM_LOOP}, one array per item",
    f"{ITEM_LOOP}, numbered by enumerate",
    f"{ITEM_LOOP}, zip of lists",
    f"{ITEM_LOOP}, zip of lists, numbered",
    f"{ITEM_LOOP}, numbered from a start",
    f"{ITEM_LOOP}, zip checking the lengths",
    f"{ITEM_LOOP}, an item's array read after it",
    f"{ITEM_LOOP}, of numbers",
    f"{ITEM_LOOP}, an item's array unread",
    f"{ITEM_LOOP}, an item's array rebound",
    f"{ITEM_LOOP}, its len() read",
    f"{ITEM_LOOP}, a helper called with an item's array",
    f"{ITEM_LOOP}, a list appended to",
    f"{ITEM_LOOP}, a loop nested in it",
    f"{ITEM_LOOP}, several values carried",
)


def test_programs_have_loops() -> None:
    """About one program in ``LOOPS`` has a ``for`` loop (some nested, reading a sequence at
    its step, filling a list read after it by np.stack, np.concatenate or sum, or an array
    made for it by np.zeros, np.ones, np.empty or their ``_like``) or a ``while`` loop
    stopped by a test of a carried value and a counter, in scalar and in array code, in
    ``f`` and in the functions it calls (one called with different arguments carrying
    gradients), or a ``for`` loop over the items of a list parameter (tuples, tuples of
    one, arrays, numbers): 300 programs, built the way the property tests build theirs,
    and up to 300 more while a construct is missing (the rarest come once in a few hundred
    programs, and which programs a seed gives changes with any change of the strategy)."""
    found: collections.Counter[str] = collections.Counter()
    built = {"scalar": 0, "array": 0}
    looped = {"scalar": 0, "array": 0}
    for seed in range(600):
        if seed >= 300 and all(found[feature] for feature in LOOP_FEATURES):
            break
        mode = "scalar" if seed % 3 == 0 else "array"
        try:
            program = build_program(RandomChooser(seed), mode, EXCLUSIONS, modules=4, loops=LOOPS)
        except Unfit:
            continue
        built[mode] += 1
        looped[mode] += "\n    for " in program.source(annotated=False)
        found.update(features(program))
    for mode in built:
        assert looped[mode] >= built[mode] / (2 * LOOPS), f"{looped} of {built} with a loop"
    missing = [feature for feature in LOOP_FEATURES if not found[feature]]
    assert not missing, f"no program has: {missing}"
    read = [f for f in found if f.startswith("loop: a list read by ")]
    assert {f.split()[-1].rpartition(".")[2] for f in read} >= {"stack", "concatenate", "sum"}, read


# What the branches of the programs must exercise: a strategy that stopped building one of
# them (or branches at all) fails here, not silently.
BRANCH_FEATURES = (
    "branch: at the top",
    "branch: in a loop",
    "branch: nested",
    "branch: in a helper",
    "branch: elif",
    "branch: else",
    "branch: no else",
    "branch: on a flag",
    "branch: on a string",
    "branch: on a string (in)",
    "branch: on the loop's step",
    "branch: on a value",
    "branch: on and/or",
    "branch: a loop in a side",
    "branch: a new name bound in every side",
    "branch: a value from before left as it was by a side",
    "branch: in-place update in a side",
    "branch: a call of a helper in a side",
    "branch: a conditional expression",
    "branch: a return in each side",
    "branch: a side that raises",
    f"{ITEM_LOOP}, an if in it",
)


def test_programs_have_branches() -> None:
    """About one program in ``BRANCHES`` has ``if`` statements (at the top, in a loop,
    nested, in a helper; on a flag, a string, the loop's step, a value; with ``elif`` and
    ``else``; in a loop over the items of a list), in scalar and in array code, and a
    program whose tests read flags is checked at every combination of their values: 300
    programs, built the way the property tests build theirs, and up to 300 more while a
    construct is missing (as ``test_programs_have_loops``)."""
    found: collections.Counter[str] = collections.Counter()
    built = {"scalar": 0, "array": 0}
    branched = {"scalar": 0, "array": 0}
    for seed in range(600):
        if seed >= 300 and all(found[feature] for feature in BRANCH_FEATURES):
            break
        mode = "scalar" if seed % 3 == 0 else "array"
        try:
            program = build_program(
                RandomChooser(seed), mode, EXCLUSIONS, modules=4, loops=LOOPS, branches=BRANCHES
            )
        except Unfit:
            continue
        built[mode] += 1
        source = program.source(annotated=False)
        branched[mode] += bool(re.search(r"^ +if ", source, re.MULTILINE))
        found.update(features(program))
        # a flag read as a name (np.pad's keyword mode= is not one)
        read = program.main().source(False)
        flags = {n for n in ("flag", "mode") if re.search(rf"\b{n}\b(?!=)", read)}
        combinations = 1
        for name in flags:
            combinations *= 2 if name == "flag" else 3
            assert program.defaults.keys() >= {name} and name in program.labels, source
        assert len(program.variants) == combinations, (program.variants, source)
        for name in flags:  # every value of every flag is checked
            values = {v[name] for v in program.variants}
            assert values == ({True, False} if name == "flag" else {"a", "b", "c"}), source
    for mode in built:
        assert branched[mode] >= built[mode] / (2 * BRANCHES), f"{branched} of {built} branch"
    missing = [feature for feature in BRANCH_FEATURES if not found[feature]]
    assert not missing, f"no program has: {missing}"


def test_scalar_programs_in_numpy_modules_are_scalar_code() -> None:
    """Some scalar programs import numpy too (``Program.scalar_with_numpy``), and of those,
    gradgen proves some functions' values all numbers (math functions take numbers only)
    and compiles them to scalar code: the property tests check that path against central
    differences as any other. 150 programs, built as the property tests build theirs."""
    with_numpy = proven = 0
    for seed in range(0, 450, 3):
        try:
            program = build_program(RandomChooser(seed), "scalar", EXCLUSIONS, modules=4)
        except Unfit:
            continue
        source = program.source(annotated=False)
        if "import numpy" not in source:
            continue
        with_numpy += 1
        try:
            compiled = compile_source(source, "forward.py", Options())
        except gradgen.GradgenError:
            continue
        proven += any(not staged.array_mode for staged in compiled.staged)
    assert with_numpy >= 20, with_numpy
    assert proven >= 5, (proven, with_numpy)


def test_programs_have_shifts() -> None:
    """Array programs shift values (``c = np.max(h, axis=1, keepdims=True)``, a min, a mean,
    of the value or of another of its shape, or over all axes) and compute from ``h - c``
    every kind of ``SHIFT_USES``: softmax, log-softmax and log-sum-exp forms, whose shift
    gradgen leaves out where it can tell (``Stage.stopped``), and uses that are not
    invariant to it, whose shift it keeps: 300 programs, built the way the property tests
    build theirs (about one in six has a shift), and up to 300 more while a kind is
    missing."""
    kinds = {
        f"shift: {kind}" + ("" if invariant else " (not invariant)")
        for kind, invariant, _ in SHIFT_USES
    }
    found: collections.Counter[str] = collections.Counter()
    left_out = kept = 0
    for seed in range(600):
        if seed >= 300 and kinds <= set(found) and left_out and kept:
            break
        try:
            program = build_program(
                RandomChooser(seed), "array", EXCLUSIONS, modules=4, loops=LOOPS
            )
        except Unfit:
            continue
        shifts = [r for r in program.rules if r.startswith("shift: ")]
        if not shifts:
            continue
        found.update(shifts)
        compiled = compile_source(program.source(annotated=seed % 2 == 0))
        staged = [f.staged for f in compiled.program.functions]
        if any(stage.stopped for function in staged for stage in function.stages):
            left_out += 1
        if any(r.endswith("(not invariant)") for r in shifts):
            kept += 1
    missing = sorted(kinds - set(found))
    assert not missing, f"no program has: {missing}"
    assert left_out >= 10 and kept >= 5, (left_out, kept)


def test_list_parameters_are_annotated_as_gradgen_check_reads_them() -> None:
    """In an annotated program, a list parameter a loop goes over the items of is annotated
    with the shapes of its items' arrays (``layers: [("4, 4", "4"), ("4, 4", "4")]``,
    ``weights: ["3, 4", "3, 4"]``): those ``gradgen check`` draws them at (``item_shapes``);
    in a plain one it is not. gradgen generates both."""
    from gradgen.gradcheck.inputs import item_shapes

    seen: collections.Counter[tuple[bool, bool | str]] = collections.Counter()
    for seed in range(300):
        mode = "scalar" if seed % 3 == 0 else "array"
        try:
            program = build_program(RandomChooser(seed), mode, EXCLUSIONS, loops=LOOPS)
        except Unfit:
            continue
        for items in program.item_lists:
            for annotated in (False, True):
                source = program.source(annotated)
                gradgen.generate(source, "forward.py")  # a refusal raises
                for one in items.lists():
                    read = item_shapes(source, "f").get(one.iterable)
                    expected = [one.shapes] * len(one.values) if annotated else None
                    assert read == expected, source
                seen[(annotated, "zip" if items.zipped else items.tupled)] += 1
        if len(seen) == 6:
            return
    pytest.fail(f"not every kind of list parameter, annotated and plain: {seen}")


def test_a_conditional_expression_binds_its_value_once() -> None:
    """The check of ``y = math.tanh(y) if x > 1.0 else math.log(y, math.exp(y))`` (in a
    helper, at a call's arguments) runs its side's checks, not its side: the thorough
    profile built a forward that raised, its check having run the side (rebinding ``y``),
    then the line, which read that ``y`` (the log of another value than the forward's)."""
    import math

    from program_strategy import Branch, Builder, _execute

    b = Builder(RandomChooser(0), "scalar")
    b.bind("x", -1.4)
    b.bind("y", 1.6)
    sides = [(["y = math.tanh(y)"], [()]), (["y = math.log(y, math.exp(y))"], [()])]
    check = Branch([lambda b: bool(b.env["x"] > 1.0)], sides, expression=True)
    check(b)
    _execute(b, "y = math.tanh(y) if x > 1.0 else math.log(y, math.exp(y))")
    assert b.env["y"] == pytest.approx(math.log(1.6, math.exp(1.6)))


def test_a_helper_tells_numpy_booleans_from_python_booleans() -> None:
    """A helper's results are memoized by its arguments: numpy's booleans (``x > 0.0`` of a
    numpy number) and Python's compute differently (``np.True_ - np.False_`` raises), so a
    call with one must not reuse the result of a call with the other. The thorough profile
    built ``g(x < 0.0, x > 0.0)`` with ``g`` computing ``s - y``, called with Python booleans
    and then numpy ones: a forward that raised, reported as a backward that raised."""
    assert memo_key(True) != memo_key(numpy.True_)
    assert memo_key(1.0) != memo_key(numpy.float64(1.0))
    assert memo_key(numpy.array(True)) != memo_key(numpy.True_)
    assert memo_key(numpy.True_) == memo_key(numpy.bool_(1))


# --- known bugs still reproduce -----------------------------------------------------------------


# Defined only while a bug is open: over an empty list it would be a test that cannot fail.
if KNOWN_BUGS:

    @pytest.mark.parametrize(
        "bug",
        [
            pytest.param(b, marks=pytest.mark.xfail(strict=True, raises=b.raises, reason=b.symptom))
            for b in KNOWN_BUGS
        ],
        ids=lambda b: b.name,
    )
    def test_known_bug_still_reproduces(bug: KnownBug) -> None:
        """Passes (so fails: strict xfail) once the bug is fixed: then move it to FIXED_BUGS."""
        try:
            check_reproduction(bug)
        except AssertionError as error:
            if bug.recognizes is not None and not bug.recognizes(str(error)):
                pytest.fail(f"{bug.name} fails otherwise than its symptom says: {error}")
            raise


@pytest.mark.parametrize("bug", FIXED_BUGS, ids=lambda b: b.name)
def test_fixed_bug_stays_fixed(bug: KnownBug) -> None:
    check_reproduction(bug)


def check_reproduction(bug: KnownBug) -> None:
    """The backward of the bug's forward at its arguments: right, unmodifying, owned."""
    args = bug.args()
    upstream = bug.upstream()
    names = list(args)
    shapes = {n: tuple(numpy.shape(v)) for n, v in args.items()}
    program = Program(
        mode="array" if "numpy" in bug.forward else "scalar",
        alias="np",
        params=list(shapes.items()),
        labels=(),
        body=[],
        result="",
        args=args,
        upstream=upstream,
        out_shape=(),
        verbatim=bug.forward,
    )
    assert names
    check_program(program, annotated=False)
