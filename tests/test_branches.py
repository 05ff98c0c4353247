"""Branches in the forward: ``if``/``elif``/``else`` on flags and on values (issue 12).

Each accepted program is run on both sides of each of its tests (the flags given, the data
drawn where the test reads it), and its generated backward (plain, with pairs, through the
decorator) is checked against central differences; the backward's text is checked where
its shape is the point (the test computed again, one gradient name on both sides, zeros on
the side that gives a value nothing); each refused branch is located where it is written.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

import numpy
import pytest

import gradgen
from test_loops import assert_refused_at, assert_source_refused_at
from test_programs import assert_close, draw, expected_gradients
from test_rules import run_module

BIAS = """\
import numpy as np


def f(x: "N, D", W: "D, H", b: "H", use_bias: bool = True):
    out = x @ W
    if use_bias:
        out = out + b
    h = np.tanh(out)
    return np.sum(h * h)
"""

SIGN = """\
def f(x, y, s):
    if s > 0:
        z = x * y
        w = z * z
    else:
        w = y * y + x
    return w * x
"""

ACTIVATION = """\
import numpy as np


def f(x: "4", w: "4", mode: str = "relu"):
    h = x * w
    if mode == "relu":
        a = np.maximum(h, 0.0)
    elif mode == "tanh":
        a = np.tanh(h)
    else:
        a = h
    return np.sum(a * a)
"""

FIRST_STEP = """\
import numpy as np


def f(x: "T, 3", W: "3, 3", h0: "3"):
    h = h0
    for t in range(x.shape[0]):
        if t > 0:
            h = np.tanh(h @ W + x[t])
        else:
            h = np.tanh(x[t] + h0)
    return np.sum(h)
"""

DATA_TEST_IN_LOOP = """\
import numpy as np


def f(x: "3", w: "3"):
    h = x
    for t in range(4):
        if np.sum(h) > 0:
            h = np.sin(h * w)
        else:
            h = h * 0.5 + w
    return np.sum(h * h)
"""

HELPER_IN_SIDE = """\
import numpy as np


def affine(x: "N, D", W: "D, H", b: "H"):
    out = x @ W + b
    return out, np.sum(out)


def f(x: "N, D", W: "D, H", b: "H", skip: bool = False):
    h = x @ W
    if not skip:
        h, total = affine(x, W, b)
        h = h * total
    return np.sum(np.tanh(h))
"""

NESTED = """\
def f(x, y, a, b):
    z = x * y
    if a > 0:
        if b > 0:
            z = z * x
        else:
            z = z + y * y
        u = z * 2.0
    else:
        u = x - y
    return u * z
"""

UPDATE_IN_SIDE = """\
import numpy as np


def f(x: "3", w: "3", scale: bool = True):
    h = x * w
    if scale and np.sum(x) > -100.0:
        h *= w
    loss = np.sum(h)
    if scale is not None:
        loss += np.sum(w * w)
    return loss
"""

LOOP_IN_SIDE = """\
import numpy as np


def f(x: "3", w: "3", steps: int = 3):
    h = x
    if steps > 0:
        for t in range(steps):
            h = np.tanh(h * w)
    else:
        h = h * w
    return np.sum(h)
"""

ONE_SIDE_READS_PARAMETER = """\
def f(x, y, c):
    if c > 0:
        r = x * x
    else:
        r = 2.0 * c
    return r + y
"""

CONDITIONAL_EXPRESSIONS = """\
import numpy as np


def f(x: "3", w: "3", train: bool = True, mode: str = "a"):
    h = x * w if train else 0.5 * x
    scale = 2.0 * (1.0 if train else -1.0)
    z = np.tanh(h) if mode == "a" else np.exp(w) if mode == "b" else h * w
    total = np.sum(z * scale)
    for t in range(2):
        total = total + np.sum(w * w) if t > 0 else total * 2.0
    return total if train else -total
"""

LARGER = """\
def f(a, b):
    m = a if a > b else b
    return m * m + (a * b if m > 0 else a - b)
"""

EARLY_RETURNS = """\
import numpy as np


def f(x: "3", w: "3", kind: str = "relu"):
    h = x * w
    if kind == "relu":
        return np.sum(np.maximum(h, 0.0))
    elif kind == "sigmoid":
        s = 1 / (1 + np.exp(-h))
        if np.sum(s) > 100.0:
            return np.sum(s)
        return np.sum(s * w)
    h = h * h
    return np.sum(h * x)
"""

EARLY_RETURNS_SEVERAL = """\
def g(x, y, c):
    if c > 0:
        return x * y, x
    z = x + y
    return z, z * y


def f(x, y, c):
    a, b = g(x, y, c)
    return a * b + a
"""

# Found while adding branches to the property tests: ``in`` a tuple of strings was refused
# ("strings have no gradient"), its items read as values rather than as a test's.
MODE_IN_A_TUPLE = """\
import numpy as np


def f(x: "3", w: "3", mode: str = "a"):
    h = x * w
    if mode in ("a", "b"):
        h = np.tanh(h)
    elif mode not in ["c"]:
        h = h * 2.0
    return np.sum(h * x)
"""

# Found by the property tests with branches: a loop's variable binding again a name one side
# of an earlier 'if' bound was refused when the loop read it ("bound only in one branch").
LOOP_VARIABLE_AFTER_ONE_SIDE = """\
import numpy as np


def f(x: "3", w: "3", flag: bool = True):
    h = x * w
    if flag:
        t = h * 2.0
        h = h + t
    for t in range(2):
        h = np.tanh(h * w + t)
    return np.sum(h)
"""

# Found by the property tests with branches: a value from before the 'if' that only loops
# inside its sides read (as what they carry from) lost its gradient there (internal error
# KeyError: 'h').
LOOPS_IN_BOTH_SIDES = """\
def f(x, mode: str = "a"):
    t = x * x
    h = t * 2.0
    if mode == "b":
        for i in range(3):
            h = h * x
    else:
        for i in range(2):
            t = h * h
            h = h * x
    return t - x
"""

# Found by the property tests with branches: the forward of a called function (g_forward)
# with a loop in it kept nothing of the loop's steps (no t_steps), which its backward walks
# back through (UnboundLocalError, or NameError without the 'if').
LOOP_IN_A_CALLEE = """\
import numpy as np


def g(x, squash):
    if squash:
        for t in range(3):
            x = np.tanh(x) * 0.5
    return x * x


def f(x: "3", w: "3", squash: bool = True):
    return np.sum(g(x * w, squash) * w)
"""

# Found by the property tests with branches: a gradient of a number a loop carried, handed
# back in array code (numpy imported), was copied by dx.copy(), which a Python float has not
# (AttributeError); np.copy takes both.
NUMBER_CARRIED_IN_ARRAY_CODE = """\
import math
import numpy as np


def f(x, flag: bool = True):
    s = 0.0
    for t in range(2):
        x = s + x
    if flag:
        x = x * 0.5
    return math.exp(x)
"""

# Found by the property tests with branches: the gradient of a value read, inside the sides,
# only by loops (as what they carry from) was dropped: dx None, a wrong gradient.
CARRIED_FROM_IN_EACH_SIDE = """\
import math


def f(x, w, s):
    if s > 0:
        for t in range(2):
            x = math.tanh(x * w)
    else:
        for t in range(1):
            x = x * w - x
    return x * w
"""

RAISES_IN_A_SIDE = """\
import numpy as np


def f(x, w, activation="relu"):
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    z = x * w
    if activation == "relu":
        out = np.maximum(z, 0.0)
    elif activation == "sigmoid":
        out = 1 / (1 + np.exp(-z))
    else:
        raise ValueError(f"unknown activation {activation!r}")
    return np.sum(out * z)
"""

RETURNS_OR_RAISES = """\
import numpy as np


def f(x, w, kind="tanh"):
    h = x * w
    if kind == "tanh":
        return np.tanh(h)
    elif kind == "square":
        return h * h
    raise NotImplementedError(kind)
"""

RAISES_IN_A_LOOP = """\
import numpy as np


def f(x, w, steps: int = 3):
    h = x
    for t in range(steps):
        if t >= 10:
            raise RuntimeError("at most 10 steps")
        h = np.tanh(h * w)
    return h
"""

# id: (source, the drawn parameters' shapes, the others as given: one run per mapping)
ACCEPTED: dict[str, tuple[str, dict[str, tuple[int, ...]], list[dict[str, Any]]]] = {
    "flag-bias": (
        BIAS,
        {"x": (2, 3), "W": (3, 4), "b": (4,)},
        [{"use_bias": True}, {"use_bias": False}],
    ),
    "sign-of-a-value": (SIGN, {"x": (), "y": ()}, [{"s": 1.0}, {"s": -1.0}]),
    "elif-on-a-string": (
        ACTIVATION,
        {"x": (4,), "w": (4,)},
        [{"mode": "relu"}, {"mode": "tanh"}, {"mode": "linear"}],
    ),
    "first-step-in-loop": (FIRST_STEP, {"x": (3, 3), "W": (3, 3), "h0": (3,)}, [{}]),
    "data-test-in-loop": (DATA_TEST_IN_LOOP, {"x": (3,), "w": (3,)}, [{}]),
    "helper-in-one-side": (
        HELPER_IN_SIDE,
        {"x": (2, 3), "W": (3, 2), "b": (2,)},
        [{"skip": False}, {"skip": True}],
    ),
    "nested": (
        NESTED,
        {"x": (), "y": ()},
        [{"a": 1.0, "b": 1.0}, {"a": 1.0, "b": -1.0}, {"a": -1.0, "b": 1.0}],
    ),
    "update-in-one-side": (UPDATE_IN_SIDE, {"x": (3,), "w": (3,)}, [{"scale": True}, {}]),
    "loop-in-one-side": (LOOP_IN_SIDE, {"x": (3,), "w": (3,)}, [{"steps": 2}, {"steps": 0}]),
    "one-side-reads-a-parameter": (
        ONE_SIDE_READS_PARAMETER,
        {"x": (), "y": ()},
        [{"c": 1.0}, {"c": -1.0}],
    ),
    "conditional-expressions": (
        CONDITIONAL_EXPRESSIONS,
        {"x": (3,), "w": (3,)},
        [{}, {"train": False}, {"mode": "b"}, {"mode": "c", "train": False}],
    ),
    "conditional-expression-on-values": (LARGER, {"a": (), "b": ()}, [{}]),
    "returns-in-sides": (
        EARLY_RETURNS,
        {"x": (3,), "w": (3,)},
        [{}, {"kind": "sigmoid"}, {"kind": "linear"}],
    ),
    "returns-of-several-values-in-sides": (
        EARLY_RETURNS_SEVERAL,
        {"x": (), "y": ()},
        [{"c": 1.0}, {"c": -1.0}],
    ),
    "in-a-tuple-of-strings": (
        MODE_IN_A_TUPLE,
        {"x": (3,), "w": (3,)},
        [{"mode": "a"}, {"mode": "b"}, {"mode": "c"}, {"mode": "d"}],
    ),
    "loop-variable-after-one-side": (
        LOOP_VARIABLE_AFTER_ONE_SIDE,
        {"x": (3,), "w": (3,)},
        [{"flag": True}, {"flag": False}],
    ),
    "loops-in-both-sides": (LOOPS_IN_BOTH_SIDES, {"x": ()}, [{"mode": "a"}, {"mode": "b"}]),
    "number-carried-in-array-code": (
        NUMBER_CARRIED_IN_ARRAY_CODE,
        {"x": ()},
        [{"flag": True}, {"flag": False}],
    ),
    "carried-from-in-each-side": (
        CARRIED_FROM_IN_EACH_SIDE,
        {"x": (), "w": ()},
        [{"s": 1.0}, {"s": -1.0}],
    ),
    "loop-in-a-callee": (
        LOOP_IN_A_CALLEE,
        {"x": (3,), "w": (3,)},
        [{"squash": True}, {"squash": False}],
    ),
    # A side that raises makes the 'if' a guard: the other side's statements follow it.
    "raises-in-a-side": (
        RAISES_IN_A_SIDE,
        {"x": (4,), "w": (4,)},
        [{}, {"activation": "sigmoid"}],
    ),
    "returns-or-raises": (RETURNS_OR_RAISES, {"x": (3,), "w": (3,)}, [{}, {"kind": "square"}]),
    "raises-in-a-loop": (RAISES_IN_A_LOOP, {"x": (3,), "w": (3,)}, [{}, {"steps": 0}]),
}

RUNS = [(case, run) for case, (_, _, given) in ACCEPTED.items() for run in range(len(given))]


def _parameters(source: str) -> list[str]:
    function = next(
        n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "f"
    )
    return [a.arg for a in function.args.args]


def _check(
    case: str, run: int, backward: Any, forward: Any, pairs: Any = None, upstream_name: str = ""
) -> None:
    source, shapes, given = ACCEPTED[case]
    args = draw(shapes, f"branches {case}")
    fixed = given[run]
    out = forward(**args, **fixed)
    upstream = draw({"out": numpy.shape(out)}, f"upstream {case}")["out"]
    copies = {n: numpy.copy(v) for n, v in args.items()}
    if pairs is not None:
        value, cache = pairs(**copies, **fixed)
        numpy.testing.assert_allclose(value, out)
        got = backward(upstream, cache)
    else:
        got = backward(**copies, **fixed, **{upstream_name: upstream})
    for name, value in args.items():
        numpy.testing.assert_array_equal(copies[name], value, err_msg=f"{name} changed")
    got = got if isinstance(got, tuple) else (got,)
    by_name = dict(zip(_parameters(source), got, strict=True))
    expected = expected_gradients(lambda **a: forward(**a, **fixed), args, list(shapes), upstream)
    assert_close({n: by_name[n] for n in shapes}, expected, f" ({case}, {fixed})")


def _upstream_name(text: str) -> str:
    backward = next(
        n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == "f_backward"
    )
    return (
        backward.args.kwonlyargs[-1].arg if backward.args.kwonlyargs else backward.args.args[-1].arg
    )


@pytest.mark.parametrize(("case", "run"), RUNS, ids=[f"{c}-{r}" for c, r in RUNS])
def test_branches_match_central_differences(case: str, run: int) -> None:
    source = ACCEPTED[case][0]
    text = gradgen.generate(source, "branches.py")
    forward = run_module(source, "branches.py")["f"]
    namespace = run_module(text, "branches_backward.py")
    _check(case, run, namespace["f_backward"], forward, upstream_name=_upstream_name(text))


@pytest.mark.parametrize(("case", "run"), RUNS, ids=[f"{c}-{r}" for c, r in RUNS])
def test_branches_with_pairs(case: str, run: int) -> None:
    source = ACCEPTED[case][0]
    text = gradgen.generate(source, "branches.py", pairs=True)
    forward = run_module(source, "branches.py")["f"]
    namespace = run_module(text, "branches_pairs.py")
    _check(case, run, namespace["f_backward"], forward, pairs=namespace["f_forward"])


@pytest.mark.parametrize("case", ["flag-bias", "data-test-in-loop", "raises-in-a-side"])
def test_branches_decorated(load: Any, case: str) -> None:
    source, shapes, given = ACCEPTED[case]
    source = source.replace("import numpy as np\n", "import numpy as np\nimport gradgen\n")
    source = source.replace("\ndef f(", "\n@gradgen.differentiable\ndef f(")
    f = load(source).f
    for fixed in given:
        args = draw(shapes, f"branches decorated {case}")
        got = f.backward(**args, **fixed)
        got = got if isinstance(got, tuple) else (got,)
        by_name = dict(zip(_parameters(source), got, strict=True))
        expected = expected_gradients(functools.partial(f, **fixed), args, list(shapes))
        assert_close({n: by_name[n] for n in shapes}, expected, f" ({case}, decorated)")


def _backward_text(source: str) -> str:
    text = gradgen.generate(source, "branches.py")
    backward = text[text.index("def f_backward") :]
    return backward.split("\ndef ", 1)[0]


def test_the_backward_takes_the_side_the_forward_took() -> None:
    backward = _backward_text(BIAS)
    # The forward's 'if' and the backward's, on the same test; the joined value is named
    # once (no renaming line on the side that binds it).
    assert backward.count("    if use_bias:\n") == 2
    assert "        out_2 = out + b\n    else:\n        out_2 = out\n" in backward
    # b's gradient has one name on both sides: zeros where the forward did not read b.
    assert "        db = dout_2.sum(axis=0)\n" in backward
    assert "        db = np.zeros_like(b" in backward


def test_a_value_both_sides_bind_keeps_its_name() -> None:
    backward = _backward_text(SIGN)
    assert "        w = z * z\n    else:\n        w = y * y + x\n" in backward
    assert "w_2" not in backward and "w_3" not in backward


def test_branches_are_deterministic() -> None:
    for source, _, _ in ACCEPTED.values():
        assert gradgen.generate(source, "b.py") == gradgen.generate(source, "b.py")


# id: (function body, line and column of the error (the def is line 4), the message's words)
REFUSED: dict[str, tuple[str, tuple[int, int], str]] = {
    "bound-in-one-side-read-after": (
        "if x[0] > 0:\n        z = x * 2\n    x = z",
        (7, 9),
        "only in one branch",
    ),
    "bound-in-the-other-side": (
        "if x[0] > 0:\n        z = x * 2\n    else:\n        y = z",
        (8, 13),
        "only in the other branch",
    ),
    "append-in-a-side": (
        "hs = []\n    for i in range(2):\n        if i > 0:\n            hs.append(x)\n"
        "    x = np.stack(hs)",
        (8, 13),
        "inside an 'if'",
    ),
    "return-in-a-loop-in-a-side": (
        "if x[0] > 0:\n        for i in range(2):\n            return x",
        (7, 13),
        "'return' inside a loop is not supported",
    ),
    "while-test-of-nothing-it-changes": (
        "while x[0] > 0:\n        y = x * 0.5",
        (5, 11),
        "this 'while' never ends",
    ),
    "returns-of-different-numbers-of-values": (
        "if x[0] > 0:\n        return x, x",
        (7, 5),
        "the same number of values",
    ),
    "code-after-a-return-in-a-side": (
        "if x[0] > 0:\n        return x\n        y = x",
        (7, 9),
        "code after 'return' never runs",
    ),
    "array-test": (
        "if x > 0:\n        x = x * 2",
        (5, 8),
        "the test of this if is an array of shape (3,): an if takes one side for the whole "
        "array; choose per entry with np.where(cond, a, b)",
    ),
    "array-test-in-a-loop": (
        "for t in range(2):\n        if x * t < 1:\n            x = x * 2",
        (6, 12),
        "np.where",
    ),
    "raise-outside-an-if": ("raise ValueError('no')", (5, 5), "last statement of a side"),
    "bare-raise": ("if x[0] > 0:\n        raise", (6, 9), "a bare 'raise'"),
    "raise-reading-a-local": (
        "y = x * 2\n    if x[0] > 0:\n        raise ValueError(y)",
        (7, 9),
        "this 'raise' reads 'y'",
    ),
    "statements-before-a-raise": (
        "if x[0] > 0:\n        y = x * 2\n        raise ValueError('no')",
        (6, 9),
        "may hold the 'raise' only",
    ),
    "every-side-raises": (
        "if x[0] > 0:\n        raise ValueError('a')\n    else:\n        raise ValueError('b')",
        (5, 5),
        "every side of this 'if' raises",
    ),
    "code-after-a-raise": (
        "if x[0] > 0:\n        raise ValueError('a')\n        y = x",
        (7, 9),
        "code after 'raise' never runs",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_branches_are_located(case: str) -> None:
    body, (line, column), words = REFUSED[case]
    assert_refused_at(body, line, column, words)


def test_a_conditional_expression_reads_as_an_if() -> None:
    """``m = a if a > b else b`` is the ``if`` a person would write, binding ``m`` on each
    side; one inside a larger expression binds a name of its own first (``scale_if``)."""
    backward = gradgen.generate(LARGER, "b.py")
    assert "    if a > b:\n        m = a\n    else:\n        m = b\n" in backward
    text = gradgen.generate(CONDITIONAL_EXPRESSIONS, "b.py")
    assert "    if train:\n        scale_if = 1.0\n    else:\n        scale_if = -1.0\n" in text
    assert "scale = 2.0 * scale_if" in text


def test_a_side_that_does_not_return_while_another_does_is_refused() -> None:
    source = "def f(x, c):\n    if c > 0:\n        return x * 2.0\n    y = x\n"
    assert_source_refused_at(source, 2, 5, "ends without 'return' while another returns")


def test_an_elif_chain_reads_as_one() -> None:
    """``if``/``elif``/``else`` binding one name: the backward's forward part and its
    adjoints are the same chain, the name bound on each side with no renaming line."""
    backward = gradgen.generate(ACTIVATION, "b.py")
    assert (
        '    if mode == "relu":\n        a = np.maximum(h, 0.0)\n    elif mode == "tanh":\n'
        "        a = np.tanh(h)\n    else:\n        a = h\n"
    ) in backward
    assert '    elif mode == "tanh":\n        # backprop a = np.tanh(h)\n' in backward
    assert "a_2" not in backward and "da_2" not in backward


OPTIONAL_MASK = """\
import numpy as np


def f(x: "3", mask: "3" = None):
    h = np.tanh(x)
    if mask is not None:
        h = h * mask
    return np.sum(h * h)
"""


@pytest.mark.parametrize("masked", [True, False])
def test_a_test_of_an_array_against_none_is_one_decision(masked: bool) -> None:
    """``mask is not None`` on an array of known shape gives one truth value: not refused
    as an array test (it was, taken for an elementwise comparison)."""
    text = gradgen.generate(OPTIONAL_MASK, "optional.py")
    backward = run_module(text, "optional_backward.py")["f_backward"]
    forward = run_module(OPTIONAL_MASK, "optional.py")["f"]
    args = draw({"x": (3,), "mask": (3,)}, "optional mask")
    if not masked:
        args["mask"] = None
    drawn = ["x", "mask"] if masked else ["x"]
    got = backward(**args)
    expected = expected_gradients(forward, args, drawn, None)
    assert_close(dict(zip(drawn, got, strict=False)), expected, f" (masked={masked})")


def test_a_side_that_raises_is_raised_again_by_the_backward() -> None:
    """The backward raises what the forward raises, where it would: a guard (``if
    activation not in ...: raise``) before the other side's statements, written as a
    person would (``!=``, not ``not ... ==``)."""
    text = gradgen.generate(RAISES_IN_A_SIDE, "b.py")
    assert '    if x.ndim != 1:\n        raise ValueError(f"x must be 1-D' in text
    assert '        if activation != "sigmoid":\n            raise ValueError(' in text
    backward = run_module(text, "b_backward.py")["f_backward"]
    x = numpy.ones(3)
    with pytest.raises(ValueError, match="unknown activation 'elu'"):
        backward(x, x, "elu", dout=1.0)
    with pytest.raises(ValueError, match="must be 1-D"):
        backward(numpy.ones((2, 2)), x, dout=1.0)
    pairs = run_module(gradgen.generate(RAISES_IN_A_SIDE, "b.py", pairs=True), "bp.py")
    with pytest.raises(ValueError, match="unknown activation"):
        pairs["f_forward"](x, x, "elu")
