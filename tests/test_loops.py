"""Loops in the forward: ``for t in range(...)`` over straight-line bodies (issue 12).

Each accepted program's generated backward is checked against central differences, through
``gradgen.generate`` and through the decorator; the shape of the RNN's backward (a reversed
loop calling the step's cached backward, ``+=`` into the weights' gradients) is checked as
text; each refused loop is located where it is written.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import zlib
from pathlib import Path
from typing import Any

import numpy
import pytest

import gradgen
from gradgen.format import check_module
from gradgen.testing import assert_gradients_match
from test_programs import assert_close, draw, expected_gradients
from test_rules import numeric_gradient, run_module

RNN = """\
import numpy as np


def rnn_step(x: "N, D", prev_h: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h


def f(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    T = x.shape[1]
    h = h0
    hs = []
    for t in range(T):
        h = rnn_step(x[:, t, :], h, Wx, Wh, b)
        hs.append(h)
    out = np.stack(hs, axis=1)
    return out
"""

EULER = """\
def f(x0, v0, k, c):
    x = x0
    v = v0
    dt = 0.01
    for step in range(200):
        a = -k * x - c * v
        x = x + dt * v
        v = v + dt * a
    return 0.5 * v * v + 0.5 * k * x * x
"""

# A step whose backward reads so many values that the reversed loop's first line
# (``for t, h_2, first_long_name_mul, ... in reversed(t_steps):``) is longer than black's
# line length: black was given the line alone, with no body, and gradgen raised an
# internal error (found by the property tests' loops).
LONG_HEADER = """\
import numpy as np


def f(x, w):
    h = x
    for t in range(3):
        first_long_name = np.sin(h * w)
        second_long_name = np.cos(first_long_name * w)
        third_long_name = np.tanh(second_long_name * h)
        h = np.exp(third_long_name * 0.1) * first_long_name
    return np.sum(h)
"""

# In a nested loop's backward, the comment quoting a long statement is indented past black's
# line length: black was given the comment alone, as a statement (internal error; found by
# the property tests' loops).
LONG_COMMENT = """\
import numpy as np


def f(x, w):
    h = x
    for t in range(2):
        for j in range(2):
            h = np.tanh(h * w + np.sin(w * 0.5) * np.cos(h * 0.25) + np.exp(w * 0.1) * 0.5)
    return np.sum(h)
"""

# id: (source, the parameters' shapes)
# The RNN of the CS231n assignment as its forward is written there: the hidden states
# written into an array made for them.
RNN_FILLED = """\
import numpy as np


def rnn_step(x: "N, D", prev_h: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h


def f(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    N, T, D = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H))
    prev_h = h0
    for t in range(T):
        next_h = rnn_step(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = next_h
        prev_h = next_h
    return h
"""

ACCEPTED: dict[str, tuple[str, dict[str, tuple[int, ...]]]] = {
    "rnn-filled-array": (
        RNN_FILLED,
        {"x": (2, 3, 4), "h0": (2, 5), "Wx": (4, 5), "Wh": (5, 5), "b": (5,)},
    ),
    "filled-backwards-two-arrays": (
        "import numpy as np\n\n\ndef f(x: 'T, D', w: 'D'):\n    out = np.empty_like(x)\n"
        "    acc = np.zeros((x.shape[0],))\n    s = 0.0\n"
        "    for t in reversed(range(x.shape[0])):\n        s = s + np.sum(x[t] * w)\n"
        "        out[t] = np.tanh(x[t] * w) * s\n        acc[t] = s\n"
        "    return np.sum(out * out) + np.sum(acc * acc)\n",
        {"x": (4, 3), "w": (3,)},
    ),
    "filled-entries-apart-in-a-step": (
        "import numpy as np\n\n\ndef f(x: 'T, D', w: 'D'):\n"
        "    hs = np.zeros((x.shape[0], 2))\n    for t in range(x.shape[0]):\n"
        "        hs[t, 0] = np.sum(x[t] * w)\n        hs[t, 1] = w[0]\n"
        "    return np.sum(hs * hs)\n",
        {"x": (3, 4), "w": (4,)},
    ),
    "filled-rows-of-filled-rows": (
        "import numpy as np\n\n\ndef f(x: 'T, D', w: 'D'):\n    T = x.shape[0]\n"
        "    hs = np.zeros((T, T))\n    for t in range(T):\n        row = np.zeros(T)\n"
        "        for u in range(T):\n            row[u] = np.sum(x[t] * x[u] * w)\n"
        "        hs[t] = row\n    return np.sum(hs * hs)\n",
        {"x": (3, 2), "w": (2,)},
    ),
    "mean-of-a-list-by-its-length": (
        "import numpy as np\n\n\ndef f(x: 'T', alpha: '1'):\n    m = x[0]\n    losses = []\n"
        "    for t in range(1, len(x)):\n        m = alpha * m + (1 - alpha) * x[t]\n"
        "        losses.append((x[t] - m) ** 2)\n    return np.sum(sum(losses) / len(losses))\n",
        {"x": (5,), "alpha": (1,)},
    ),
    "while-newton": (
        "def f(a):\n    x = a\n    err = 1.0\n    while err > 1e-12:\n"
        "        x_new = 0.5 * (x + a / x)\n        err = abs(x_new - x)\n        x = x_new\n"
        "    return x * a\n",
        {"a": ()},
    ),
    "while-on-arrays-with-a-count": (
        "import numpy as np\n\n\ndef f(x: '3', w: '3'):\n    h = x\n    n = 0\n"
        "    total = 0.0\n    while np.sum(h * h) > 0.01 and n < 50:\n"
        "        h = np.tanh(h) * (0.5 + 0.1 * w)\n        total = total + np.sum(h)\n"
        "        n = n + 1\n    return total + np.sum(h * w)\n",
        {"x": (3,), "w": (3,)},
    ),
    "while-that-runs-no-step": (
        "def f(x, y):\n    h = x\n    while h > 1e9:\n        h = h * y\n    return h * y\n",
        {"x": (), "y": ()},
    ),
    "last-value-of-a-loop": (
        "import numpy as np\n\n\ndef f(x: '3', w: '3'):\n    for i in range(3):\n"
        "        z = np.tanh(x * w * i)\n        x = x + z\n    return np.sum(z * x)\n",
        {"x": (3,), "w": (3,)},
    ),
    "filled-partly-read-whole": (
        "import numpy as np\n\n\ndef f(x: 'T, D', w: 'D'):\n    hs = np.ones_like(x)\n"
        "    for t in range(1, x.shape[0], 2):\n        hs[t, :] = x[t] * w\n"
        "    return np.sum(np.tanh(hs) * x)\n",
        {"x": (5, 3), "w": (3,)},
    ),
    "rnn-over-time": (RNN, {"x": (2, 3, 4), "h0": (2, 5), "Wx": (4, 5), "Wh": (5, 5), "b": (5,)}),
    "euler-scalar": (EULER, {"x0": (), "v0": (), "k": (), "c": ()}),
    "loss-summed-in-loop": (
        "import numpy as np\n\n\ndef f(x: 'N, D', W: 'D, D', b: 'D', y: 'N, D'):\n"
        "    h = x\n    loss = 0.0\n    for i in range(3):\n"
        "        h = np.tanh(h @ W + b)\n        loss = loss + np.sum(h * h) * 0.1\n"
        "    loss += np.sum((h - y) ** 2)\n    return loss\n",
        {"x": (3, 4), "W": (4, 4), "b": (4,), "y": (3, 4)},
    ),
    "power-iteration": (
        "import numpy as np\n\n\ndef f(A: 'n, n', v0: 'n'):\n    v = v0\n"
        "    for i in range(4):\n        w = A @ v\n        v = w / np.sqrt(np.sum(w * w))\n"
        "    return v @ A @ v\n",
        {"A": (3, 3), "v0": (3,)},
    ),
    "nested-loops": (
        "import numpy as np\n\n\ndef f(x: '3', w: '3'):\n    total = 0.0\n"
        "    for i in range(2):\n        h = x * w\n        for j in range(3):\n"
        "            h = np.sin(h) + w\n            total = total + np.sum(h)\n"
        "    return total\n",
        {"x": (3,), "w": (3,)},
    ),
    "concatenate-appended": (
        "import numpy as np\n\n\ndef f(x: '4', w: '4'):\n    hs = []\n"
        "    for t in range(4):\n        hs.append(x[t] * w)\n"
        "    return np.sum(np.concatenate(hs, axis=0) ** 2)\n",
        {"x": (4,), "w": (4,)},
    ),
    "sum-with-start-stop-step": (
        "import numpy as np\n\n\ndef f(x: '4', w: '4'):\n    terms = []\n"
        "    for t in range(1, 6, 2):\n        terms.append(np.sin(x * t) * w)\n"
        "    total = sum(terms)\n    return np.sum(total * total)\n",
        {"x": (4,), "w": (4,)},
    ),
    "reversed-range-appends-carried-value": (
        "import numpy as np\n\n\ndef f(x: '3', w: '3'):\n    h = x\n    hs = []\n"
        "    for t in reversed(range(3)):\n        hs.append(h)\n        h = np.tanh(h * w + t)\n"
        "    return np.sum(np.stack(hs, axis=0) * 2.0) + np.sum(h)\n",
        {"x": (3,), "w": (3,)},
    ),
    "swap-carried": (
        "def f(a, b):\n    for i in range(3):\n        a, b = b, a * b + 0.5\n"
        "    return a * 2.0 + b\n",
        {"a": (), "b": ()},
    ),
    "update-in-place-in-loop": (
        "import numpy as np\n\n\ndef f(x: '3', w: '3'):\n    h = x * 1.0\n"
        "    for i in range(3):\n        h += w * h\n    return np.sum(h)\n",
        {"x": (3,), "w": (3,)},
    ),
    "long-reversed-loop-header": (LONG_HEADER, {"x": (3,), "w": (3,)}),
    "long-comment-in-a-nested-loop": (LONG_COMMENT, {"x": (3,), "w": (3,)}),
    "return-carried-value": (
        "def f(x):\n    for t in range(2):\n        x = x * x\n    return x\n",
        {"x": ()},
    ),
    # What a step appends is a value from before the loop, with no gradient: the backward's
    # forward recomputed the loop without it (NameError; found by the property tests).
    "append-a-value-from-before-the-loop": (
        "import numpy as np\n\n\ndef f(x: '3'):\n    s = 0.0\n    hs = []\n"
        "    for t in range(2):\n        hs.append(s)\n        x = x * 0.5\n"
        "    return x + sum(hs)\n",
        {"x": (3,)},
    ),
    # sum's adjoint is a list holding one gradient, [da] * len(hs), which dx (da too) was
    # then added into in place, step after step: dy came out 4 cos(y) where 3 cos(y) is
    # right (found by the property tests' loops).
    "sum-of-a-value-read-after-too": (
        "import numpy as np\n\n\ndef f(y: '3'):\n    x = np.sin(y)\n    hs = []\n"
        "    for t in range(2):\n        hs.append(x)\n    a = sum(hs) + x\n"
        "    return np.sum(a)\n",
        {"y": (3,)},
    ),
    "stack-of-a-value-read-after-too": (
        "import numpy as np\n\n\ndef f(y: '3'):\n    x = np.sin(y)\n    hs = []\n"
        "    for t in range(3):\n        hs.append(x)\n"
        "    a = np.sum(np.stack(hs), axis=0) + x\n    return np.sum(a * a)\n",
        {"y": (3,)},
    ),
    # A number carried by a loop, its parameter not annotated, in a module that imports
    # numpy: the gradient handed back was copied with dx.copy(), which a float has not
    # (found by the thorough profile with loops).
    "number-carried-unannotated": (
        "import math\nimport numpy as np\n\n\ndef f(x):\n    for t in range(2):\n"
        "        x = math.tanh(x)\n    return math.sqrt(x + 2.0)\n",
        {"x": ()},
    ),
    # An outside value appended in an inner loop: its gradient was zeros made in each
    # outer step, never handed back (None; found by the thorough profile with loops).
    "appended-in-an-inner-loop": (
        "import numpy as np\n\n\ndef f(x: '2', z: '2'):\n    hs = []\n"
        "    for t in range(2):\n        terms = []\n        for i in range(2):\n"
        "            terms.append(z)\n        a = np.stack(terms) + x\n        hs.append(a)\n"
        "    h = np.stack(hs)\n    return np.sum(h * h)\n",
        {"x": (2,), "z": (2,)},
    ),
    # A number the loop adds into (da), the upstream of a number before it: copied first
    # with da.copy(), which a float has not (found by the thorough profile with loops).
    "number-added-into-in-a-loop": (
        "import math\nimport numpy as np\n\n\ndef f(x: float):\n    a = math.sin(x)\n"
        "    s = math.cos(x)\n    for i in range(2):\n        s = s + a\n    return a + s\n",
        {"x": ()},
    ),
    # A number carried by the outer loop, appended in the inner one, which adds into its
    # gradient: copied first with dx_3.copy() (found by the thorough profile with loops).
    "number-carried-and-appended-in-an-inner-loop": (
        "import math\nimport numpy as np\n\n\ndef f(x: float, z: float):\n"
        "    for t in range(2):\n        x = math.sin(x)\n        hs = []\n"
        "        for i in range(1):\n            hs.append(x)\n            z = math.sin(z * z)\n"
        "    return x + z\n",
        {"x": (), "z": ()},
    ),
    # A module without numpy whose only array syntax counts a loop's steps (x.shape[0]):
    # taken for code on numbers, the gradients were not summed back to their shapes (found
    # by the thorough profile with loops).
    "array-syntax-only-in-a-range": (
        "import math\n\n\ndef f(x, y):\n    h = 0.0\n    for t in range(x.shape[0]):\n"
        "        h = math.sin(h + y)\n    return x * h\n",
        {"x": (3, 4), "y": ()},
    ),
    # An item numpy spreads over the entries it is written to (a number into a row) or
    # whose leading 1s it drops ((1, 3) into (3,)): its gradient was the entries' as they
    # are (a (3,) added into a number: ValueError; into (1, 3) through _unbroadcast: the
    # wrong sums; found writing the property tests' filled arrays).
    "filled-with-a-number-spread-over-a-row": (
        "import numpy as np\n\n\ndef f(x, w):\n    hs = np.zeros((3, 3))\n"
        "    for t in range(3):\n        hs[t] = w * t\n    return np.sum(hs * x)\n",
        {"x": (3,), "w": ()},
    ),
    "filled-with-leading-ones-dropped": (
        "import numpy as np\n\n\ndef f(x: '3', w: '1, 3'):\n    hs = np.zeros((3, 2, 3))\n"
        "    for t in range(3):\n        hs[t, 1] = w * t\n        hs[t, 0] = x\n"
        "    return np.sum(hs * x)\n",
        {"x": (3,), "w": (1, 3)},
    ),
    # A filled array has the shape of the array made for it (np.zeros((1, 5, 4)), the
    # dimensions written out or N = x.shape[0] of an annotated x), not of its items stacked:
    # read with a value of (1, 4) it was taken for (4, 1, 4), and the value's gradient summed
    # over the wrong axis (found by the property tests).
    "filled-array-read-with-a-broadcast-value": (
        "import numpy as np\n\n\ndef f(w: '1, 4'):\n    a = np.sin(w)\n"
        "    t = np.sum(a, keepdims=True)\n    rows = np.zeros((1, 5, 4))\n"
        "    for i in range(1, 5):\n        rows[:, i] = a\n        a = a - t\n"
        "    return a * rows\n",
        {"w": (1, 4)},
    ),
    "filled-array-at-dimensions-of-a-parameter": (
        "import numpy as np\n\n\ndef f(x: 'N, T', w: '1, T'):\n    N, T = x.shape\n"
        "    hs = np.zeros((N, T, T))\n    h = w\n    for t in range(T):\n"
        "        h = np.tanh(h * x[:, t : t + 1])\n        hs[:, t] = h\n"
        "    return hs * w\n",
        {"x": (3, 4), "w": (1, 4)},
    ),
    # A loop's variable read after it is the last step's: the loop was dropped from the
    # backward where nothing else of it was read (NameError), and a nested loop's variable
    # carried as an outer loop's last value too.
    "variable-read-after-a-loop": (
        "import math\n\n\ndef f(x: float):\n    for t in range(1, 3):\n        h = x * 2\n"
        "    return x * t\n",
        {"x": ()},
    ),
    "nested-variable-read-after-a-while-loop": (
        "import math\n\n\ndef f(x: float):\n    n = 0\n    while n < 2 and x < 2.35:\n"
        "        for t in range(1, 3):\n            h = x * 2\n"
        "        x = 1 / (1 + math.exp(-x))\n        n = n + 1\n    return x * t\n",
        {"x": ()},
    ),
    # zip(xs, ys): over the shortest's length, each step reading each one's row.
    "zip-of-two-arrays": (
        "import numpy as np\n\n\ndef f(w, xs, ys):\n    total = 0.0\n"
        "    for x, y in zip(xs, ys):\n        total = total + (np.dot(w, x) - y) ** 2\n"
        "    return total\n",
        {"w": (3,), "xs": (4, 3), "ys": (4,)},
    ),
    "zip-of-arrays-of-two-lengths": (
        "import numpy as np\n\n\ndef f(w, xs, ys):\n    total = 0.0\n"
        "    for x, y in zip(xs, ys):\n        total = total + np.tanh(w * x) * y\n"
        "    return total\n",
        {"w": (3,), "xs": (2, 3), "ys": (5, 3)},
    ),
    "enumerate-zip": (
        "import numpy as np\n\n\ndef f(w, xs, ys):\n    total = 0.0\n"
        "    for t, (x, y) in enumerate(zip(xs, ys)):\n"
        "        total = total + (t + 1) * np.tanh(w * x) * y\n"
        "    return total\n",
        {"w": (3,), "xs": (4, 3), "ys": (3, 3)},
    ),
    "enumerate-zip-from-one": (
        "import numpy as np\n\n\ndef f(w, xs, ys):\n    total = 0.0\n"
        "    for t, (x, y) in enumerate(zip(xs, ys, strict=False), start=1):\n"
        "        total = total + t * np.tanh(w * x) * y\n"
        "    return total\n",
        {"w": (3,), "xs": (4, 3), "ys": (3, 3)},
    ),
    "enumerate-from-minus-one": (
        "import numpy as np\n\n\ndef f(w, xs):\n    total = 0.0\n"
        "    for t, x in enumerate(xs, -1):\n        total = total + t * np.sum(np.sin(w * x))\n"
        "    return total\n",
        {"w": (3,), "xs": (3, 3)},
    ),
    "zip-strict": (
        "import numpy as np\n\n\ndef f(w, xs, ys):\n    total = 0.0\n"
        "    for x, y in zip(xs, ys, strict=True):\n        total = total + np.tanh(w * x) * y\n"
        "    return total\n",
        {"w": (3,), "xs": (4, 3), "ys": (4, 3)},
    ),
    "enumerate-rows": (
        "import numpy as np\n\n\ndef f(w, xs):\n    total = 0.0\n"
        "    for t, x in enumerate(xs):\n        total = total + t * np.sum(np.sin(w * x))\n"
        "    return total\n",
        {"w": (3,), "xs": (3, 3)},
    ),
    # continue ends a step: what follows the 'if' goes on in its other side (CS231n's
    # svm_loss_naive: if j == y[i]: continue).
    "continue-in-an-if": (
        "import numpy as np\n\n\ndef f(x, w):\n    total = 0.0\n    for t in range(4):\n"
        "        if t == 2:\n            continue\n        h = np.tanh(x * w * t)\n"
        "        if t == 3:\n            if np.sum(h) > -100.0:\n                continue\n"
        "        total = total + np.sum(h * h)\n    return total\n",
        {"x": (3,), "w": (3,)},
    ),
    "continue-in-a-while-loop": (
        "import numpy as np\n\n\ndef f(x, w):\n    n = 0\n    h = x\n    while n < 3:\n"
        "        n = n + 1\n        if n == 2:\n            h = h * w\n            continue\n"
        "        h = np.sin(h + w)\n    return h\n",
        {"x": (3,), "w": (3,)},
    ),
    # A product of arrays with no gradient, (x > 1.0) @ (y > x), a number, was given the
    # shape of its operands broadcast, (4,), as if @ were elementwise: carried through a
    # loop and stacked, its gradients were summed over an axis they do not have (AxisError),
    # or wrong (found by the property tests' thorough profile).
    "product-of-masks-carried-and-stacked": (
        "import math\nimport numpy as np\n\n\ndef f(x: '4', y: float):\n"
        "    z = y + (x > 1.0) @ (y > x)\n    t = 1 / (1 + math.exp(-z))\n    hs = []\n"
        "    for i in range(2):\n        hs.append(t)\n        t = 1 / (1 + math.exp(-(t + t)))\n"
        "    return np.sum(np.stack(hs, -1) + t) + np.sum(x * t)\n",
        {"x": (4,), "y": ()},
    ),
    "zero-steps": (
        "import numpy as np\n\n\ndef f(x: '3', w: '3'):\n    h = x\n"
        "    for t in range(0):\n        h = h * w\n    return np.sum(h * w)\n",
        {"x": (3,), "w": (3,)},
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_loops_match_central_differences(case: str) -> None:
    source, shapes = ACCEPTED[case]
    text = gradgen.generate(source, "loops.py")
    forward = run_module(source, "loops.py")["f"]
    backward = run_module(text, "loops_backward.py")["f_backward"]
    args = draw(shapes, f"loops {case}")
    out = forward(**args)
    upstream = draw({"out": numpy.shape(out)}, f"upstream {case}")["out"]
    given = {n: numpy.copy(v) for n, v in args.items()}
    # The upstream, named after the result (dout, dh), follows the forward's parameters.
    names = list(inspect.signature(backward).parameters)
    extra = names[len(inspect.signature(forward).parameters) :]
    got = backward(**given, **({extra[0]: numpy.copy(upstream)} if extra else {}))
    got = got if isinstance(got, tuple) else (got,)
    for name, value in args.items():
        numpy.testing.assert_array_equal(given[name], value, err_msg=f"{name} changed")
    expected = expected_gradients(forward, args, list(shapes), upstream if extra else None)
    assert_close(dict(zip(shapes, got, strict=True)), expected, f" ({case})")


@pytest.mark.parametrize("case", ["rnn-over-time", "loss-summed-in-loop", "rnn-filled-array"])
def test_loops_decorated(load: Any, case: str) -> None:
    source, shapes = ACCEPTED[case]
    source = source.replace("import numpy as np\n", "import numpy as np\nimport gradgen\n")
    source = source.replace("\ndef f(", "\n@gradgen.differentiable\ndef f(")
    f = load(source).f
    args = draw(shapes, f"loops decorated {case}")
    out = f(**args)
    upstream = numpy.ones_like(out) if numpy.ndim(out) else 1.0
    # the upstream is named after the result (dout, dh): passed after the arguments
    got = f.backward(*args.values(), *((upstream,) if numpy.ndim(out) else ()))
    assert_close(
        dict(zip(shapes, got, strict=True)),
        expected_gradients(f, args, list(shapes)),
        f" ({case}, decorated)",
    )


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_value_and_grad_gives_the_forwards_value(case: str) -> None:
    """The value is taken before the reversed loop rebinds what the steps kept: ``return
    x`` of a carried x gave the value x had before the first step (``for t, x_2 in
    reversed(t_steps):``; found by the property tests' loops)."""
    source, shapes = ACCEPTED[case]
    namespace = run_module(
        gradgen.generate(source, "loops.py", value_and_grad=True), "loops_value.py"
    )
    args = draw(shapes, f"loops value {case}")
    want = run_module(source, "loops.py")["f"](**args)
    value_and_grad = namespace["f_value_and_grad"]
    upstream = list(inspect.signature(value_and_grad).parameters.values())[-1]
    if upstream.default is inspect.Parameter.empty:
        args[upstream.name] = numpy.ones_like(want)  # a result known to be an array
    value, _ = value_and_grad(**args)
    numpy.testing.assert_allclose(value, want, rtol=1e-12)


def test_value_and_grad_gives_every_carried_value() -> None:
    source = (
        "import numpy as np\n\n\ndef f(x):\n    h = x\n    for t in range(2):\n"
        "        h = np.sin(h)\n    return h, x\n"
    )
    namespace = run_module(
        gradgen.generate(source, "several.py", value_and_grad=True), "several_value.py"
    )
    (h, x), dx = namespace["f_value_and_grad"](0.5, dh=1.0)
    assert (h, x) == (numpy.sin(numpy.sin(0.5)), 0.5)
    assert dx == pytest.approx(numpy.cos(numpy.sin(0.5)) * numpy.cos(0.5))


@pytest.mark.parametrize(
    "bound", ["len(params['xs'])", "params['xs'].shape[0]", "reversed(range(len(params['xs'])))"]
)
def test_a_loop_over_the_length_of_a_structured_parameter(bound: str) -> None:
    """What a loop goes over reads a leaf of a dict parameter: the fence read
    ``range(len(params['xs']))`` as a subscript by a string ('strings have no gradient';
    found by the property tests' loops with structured parameters)."""
    iterable = bound if bound.startswith("reversed") else f"range({bound})"
    source = (
        f"import numpy as np\n\n\ndef f(x: '3', params):\n    h = x\n"
        f"    for t in {iterable}:\n        h = np.tanh(h * params['xs'][t] + 0.1)\n"
        "    return np.sum(h)\n"
    )
    text = gradgen.generate(source, "structured_loop.py")
    backward = run_module(text, "structured_loop_backward.py")["f_backward"]
    forward = run_module(source, "structured_loop.py")["f"]
    args = draw({"x": (3,), "xs": (2, 3)}, f"structured loop {bound}")
    dx, dparams = backward(args["x"], {"xs": args["xs"]})
    expected = expected_gradients(lambda x, xs: forward(x, {"xs": xs}), args, ["x", "xs"])
    assert_close({"x": dx, "xs": dparams["xs"]}, expected, f" ({bound})")


@pytest.mark.parametrize(
    "body",
    [
        "y = params[0]['y']\n    for t in range(2):\n        y = np.sin(y) * x",
        "y = x\n    for t in range(2):\n        y = np.sin(y) * params[0]['y']",
        "y = x\n    hs = []\n    for t in range(2):\n        y = np.sin(y)\n"
        "        hs.append(params[0]['y'])\n    y = y * sum(hs)",
    ],
    ids=["carried-from-a-leaf", "leaf-read-in-a-step", "leaf-appended"],
)
def test_a_leaf_read_only_by_a_loop_is_bound(body: str) -> None:
    """A leaf of a structured parameter that only a loop reads (what a carried value starts
    from, a step's operand, an item appended) is bound at the top of the backward: it was
    not (NameError: params_0_y; found by the property tests' loops with structured
    parameters)."""
    source = f"import numpy as np\n\n\ndef f(x: '3', params):\n    {body}\n    return np.sum(y)\n"
    text = gradgen.generate(source, "leaf_loop.py")
    backward = run_module(text, "leaf_loop_backward.py")["f_backward"]
    forward = run_module(source, "leaf_loop.py")["f"]
    args = draw({"x": (3,), "y": (3,)}, f"leaf loop {body}")
    dx, dparams = backward(args["x"], [{"y": args["y"]}])
    expected = expected_gradients(lambda x, y: forward(x, [{"y": y}]), args, ["x", "y"])
    assert_close({"x": dx, "y": dparams[0]["y"]}, expected, f" ({body})")


def test_rnn_backward_is_a_reversed_loop_over_the_step_backward() -> None:
    text = gradgen.generate(RNN, "rnn.py")
    backward = text[text.index("def f_backward") :]
    backward = backward.split("\ndef ", 1)[0]
    assert "for t in range(T):" in backward
    assert "in reversed(t_steps):" in backward
    assert "rnn_step_cached_backward(" in backward
    for gradient in ("dWx", "dWh", "db"):
        assert f"    {gradient} += {gradient}_rnn_step" in backward
    assert "dx[:, t, :] += " in backward  # basic indexing: no np.add.at


def test_a_long_reversed_loop_header_is_formatted_by_black() -> None:
    text = gradgen.generate(LONG_HEADER, "long.py")
    check_module(text, "long_backward.py")  # compiles, and black leaves it as it is
    assert "    ) in reversed(t_steps):\n" in text


def test_a_long_comment_in_a_nested_loop_is_left_as_it_is() -> None:
    text = gradgen.generate(LONG_COMMENT, "comment.py")
    check_module(text, "comment_backward.py")
    assert "            # backprop h = np.tanh(h * w + np.sin(w * 0.5)" in text


@pytest.mark.parametrize("function", ["f", "f_backward", "f_value_and_grad"])
def test_zip_strict_of_different_lengths_raises_as_zip_does(function: str) -> None:
    source, _ = ACCEPTED["zip-strict"]
    namespace = {
        **run_module(source, "loops.py"),
        **run_module(gradgen.generate(source, value_and_grad=True), "b.py"),
    }
    w, xs, ys = numpy.ones(3), numpy.ones((4, 3)), numpy.ones((3, 3))
    with pytest.raises(ValueError, match="zip"):
        namespace[function](w, xs, ys)


def test_loops_are_deterministic() -> None:
    first = gradgen.generate(RNN, "rnn.py")
    assert gradgen.generate(RNN, "rnn.py") == first


@pytest.mark.parametrize(
    "case", ["loss-summed-in-loop", "filled-backwards-two-arrays", "while-on-arrays-with-a-count"]
)
def test_pairs_keep_the_steps_in_the_cache(case: str) -> None:
    source, shapes = ACCEPTED[case]
    text = gradgen.generate(source, "loops.py", pairs=True)
    namespace = run_module(text, "loops_pairs.py")
    forward = run_module(source, "loops.py")["f"]
    args = draw(shapes, "loops pairs")
    value, cache = namespace["f_forward"](**args)
    assert value == pytest.approx(forward(**args))
    got = namespace["f_backward"](1.0, cache)
    again = namespace["f_backward"](1.0, cache)  # the cache is read, never used up
    assert_close(
        dict(zip(shapes, got, strict=True)),
        expected_gradients(forward, args, list(shapes)),
        " (pairs)",
    )
    for first, second in zip(got, again, strict=True):
        numpy.testing.assert_array_equal(first, second)


# id: (function body, line and column of the error (the def is line 4), the message's words)
REFUSED: dict[str, tuple[str, tuple[int, int], str]] = {
    "for-else": (
        "for i in range(3):\n        x = x * 2\n    else:\n        pass",
        (7, 5),
        "for ... else",
    ),
    "break": ("for i in range(3):\n        break", (6, 9), "'break' is not supported"),
    "code-after-continue": (
        "for i in range(3):\n        continue\n        x = x * 2",
        (7, 9),
        "code after 'continue' never runs",
    ),
    "return-in-loop": ("for i in range(3):\n        return x", (6, 9), "'return' inside a loop"),
    "append-outside-loop": ("hs = []\n    hs.append(x)", (6, 5), "only inside a loop"),
    "list-read-in-its-loop": (
        "hs = []\n    for i in range(3):\n        hs.append(x)\n        y = np.stack(hs)",
        (8, 13),
        "read in the loop that fills it",
    ),
    "loop-local-read-after-a-nested-loop": (
        "for i in range(3):\n        for j in range(2):\n            z = x * j\n        x = z",
        (8, 13),
        "only inside the loop",
    ),
    "list-read-twice": (
        "hs = []\n    for i in range(3):\n        hs.append(x * i)\n    x = np.stack(hs) + sum(hs)",
        (8, 24),
        "read twice",
    ),
    "list-filled-by-inner-loop": (
        "hs = []\n    for i in range(2):\n        for j in range(2):\n            hs.append(x)\n"
        "    x = np.stack(hs)",
        (7, 9),
        "inner loop",
    ),
    "update-of-a-parameter-carried": (
        "h = x\n    for i in range(3):\n        h += x * 2.0",
        (7, 9),
        "caller's array 'x'",
    ),
    "update-of-a-view-the-step-ends-with": (
        "h = x * 1.0\n    for i in range(3):\n        h += x\n        h = x[:]",
        (7, 9),
        "in the next step",
    ),
    "over-array-items": ("for v in x:\n        x = x * v", (5, 14), "range(len(xs))"),
    "while-else": (
        "while x[0] > 1.0:\n        x = x * 0.5\n    else:\n        pass",
        (7, 5),
        "'while ... else'",
    ),
    "break-in-while": (
        "while x[0] > 1.0:\n        x = x * 0.5\n        break",
        (7, 9),
        "'break' is not supported",
    ),
    "write-outside-a-loop": ("h = np.zeros(3)\n    h[0] = x[0]", (6, 5), "only inside a loop"),
    "write-into-a-parameter": (
        "for i in range(3):\n        x[i] = x[i] * 2.0",
        (6, 9),
        "the caller's array",
    ),
    "write-into-a-computed-array": (
        "h = x * 2.0\n    for i in range(3):\n        h[i] = x[i]\n    x = h",
        (7, 9),
        "np.zeros, np.ones or np.empty",
    ),
    "write-twice-into-an-entry": (
        "h = np.zeros(3)\n    for i in range(3):\n        h[0] = x[i]\n    x = h",
        (7, 9),
        "may write an entry twice",
    ),
    "filled-array-read-in-its-loop": (
        "h = np.zeros(3)\n    for i in range(3):\n        h[i] = x[i] + h[i - 1]\n    x = h",
        (7, 9),
        "read in the loop that fills it",
    ),
    "filled-array-read-before-its-loop": (
        "h = np.zeros(3)\n    x = x + h\n    for i in range(3):\n        h[i] = x[i]\n    x = h",
        (8, 9),
        "read before the loop fills it",
    ),
    "write-in-an-if": (
        "h = np.zeros(3)\n    for i in range(3):\n        if i > 0:\n            h[i] = x[i]\n"
        "    x = h",
        (8, 13),
        "inside an 'if'",
    ),
    "write-by-an-inner-loop": (
        "h = np.zeros((3, 3))\n    for i in range(3):\n        for j in range(3):\n"
        "            h[i, j] = x[i] * x[j]\n    x = h[0]",
        (8, 13),
        "written into by an inner loop",
    ),
}


def assert_refused_at(body: str, line: int, column: int, words: str) -> None:
    """``body`` in ``def f(x: '3')`` (line 4) is refused at ``line``:``column``, saying
    ``words``."""
    source = f"import numpy as np\n\n\ndef f(x: '3'):\n    {body}\n    return np.sum(x)\n"
    assert_source_refused_at(source, line, column, words)


def assert_source_refused_at(source: str, line: int, column: int, words: str) -> None:
    """``source`` is refused, first at ``line``:``column``, saying ``words``."""
    with pytest.raises(gradgen.GradgenError) as caught:
        gradgen.generate(source, "bad.py")
    diagnostic = caught.value.diagnostics[0]
    assert words in diagnostic.message, diagnostic.message
    assert (diagnostic.line, diagnostic.column) == (line, column), diagnostic.message


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_loops_are_located(case: str) -> None:
    body, (line, column), words = REFUSED[case]
    assert_refused_at(body, line, column, words)


def test_a_while_test_calling_a_function_of_the_module_is_refused() -> None:
    source = (
        "def g(x):\n    return x * x\n\n\ndef f(x):\n    while g(x) > 1.0:\n"
        "        x = x * 0.5\n    return x\n"
    )
    assert_source_refused_at(source, 6, 11, "in a 'while' test is not supported")


# A loop in a function others call: its F_forward keeps the steps the backwards its callers
# call read, each w.r.t. other parameters (the steps were not kept at all: NameError,
# found trying programs as a user would).
CALLEE_WITH_A_LOOP = """\
import numpy as np


def unroll(x, w):
    h = x
    for t in range(3):
        h = np.tanh(h * w) + x * w
    return h


def by_x(x: "3", w: "3"):
    return np.sum(unroll(x, np.ones(3)) * w)


def by_w(x: "3", w: "3"):
    return np.sum(unroll(np.ones(3), w) * x)
"""


@pytest.mark.parametrize("pairs", [False, True], ids=["recompute", "pairs"])
@pytest.mark.parametrize("caller", ["by_x", "by_w"])
def test_a_loop_in_a_called_function_keeps_what_each_callers_backward_reads(
    caller: str, pairs: bool
) -> None:
    text = gradgen.generate(CALLEE_WITH_A_LOOP, "callee.py", pairs=pairs)
    namespace = run_module(text, "callee_backward.py")
    forward = run_module(CALLEE_WITH_A_LOOP, "callee.py")[caller]
    shapes = {"x": (3,), "w": (3,)}
    args = draw(shapes, f"callee {caller}")
    if pairs:
        _, cache = namespace[f"{caller}_forward"](**args)
        got = namespace[f"{caller}_backward"](1.0, cache)
    else:
        got = namespace[f"{caller}_backward"](**args)
    expected = expected_gradients(forward, args, list(shapes))
    assert_close(dict(zip(shapes, got, strict=True)), expected, f" ({caller}, pairs={pairs})")


def test_a_cache_keeps_only_the_shape_of_what_the_backward_reads_for_its_shape() -> None:
    """``lstm_step``'s backward reads ``a`` only through ``np.zeros_like(a)`` (its gradient
    is scattered into by slices) and ``next_c_mul`` only through ``_unbroadcast``: the cache
    ``lstm_step_forward`` makes holds ``_like(a)``, a read-only view of one number of a's
    shape and dtype, not a copy of the N x 4H array kept for every step of the LSTM. The
    gradients through those stand-ins match central differences, and float32 stays float32
    (a stand-in of the wrong dtype would give zeros of another one)."""
    path = Path(__file__).resolve().parent.parent / "examples" / "sequences.py"
    source = path.read_text(encoding="utf-8")
    generated = gradgen.generate(source, "sequences.py")
    assert "_like(a)," in generated
    namespace = run_module(generated, "sequences_like.py")
    forward = run_module(source, "sequences.py")
    rng = numpy.random.default_rng(7)
    N, T, D, H = 3, 4, 5, 2
    args = (
        rng.standard_normal((N, T, D)),
        rng.standard_normal((N, H)),
        0.5 * rng.standard_normal((D, 4 * H)),
        0.5 * rng.standard_normal((H, 4 * H)),
        rng.standard_normal(4 * H),
    )
    dout = rng.standard_normal((N, T, H))
    assert_gradients_match(
        forward["lstm"], *args, upstream=dout, backward=namespace["lstm_backward"]
    )
    for dtype in (numpy.float64, numpy.float32):
        x, h0, Wx, Wh, b = (arg.astype(dtype) for arg in args)
        _, _, cache = namespace["lstm_step_forward"](x[:, 0, :], h0, 0 * h0, Wx, Wh, b)
        stand_ins = [
            value
            for value in cache
            if isinstance(value, numpy.ndarray) and value.size > 1 and not any(value.strides)
        ]
        assert (N, 4 * H) in [value.shape for value in stand_ins]
        assert all(not v.flags.writeable and v.dtype == dtype for v in stand_ins)
        gradients = namespace["lstm_backward"](x, h0, Wx, Wh, b, dout.astype(dtype))
        assert [g.dtype for g in gradients] == [dtype] * 5


# --- loops over the items of a list parameter (for W, b in layers:) ---------------------------

LIST_LOOPS = {
    "mlp": """\
import numpy as np


def f(x, layers):
    h = x
    for W, b in layers:
        h = np.maximum(h @ W + b, 0.0)
    return np.sum(h * h)
""",
    "regularized-tanh": """\
import numpy as np


def f(x, layers, reg=0.1):
    h = x
    loss = 0.0
    for W, b in layers:
        h = np.tanh(h @ W + b)
        loss = loss + reg * np.sum(W * W)
    return loss + np.sum(h * h)
""",
    # enumerate's number is the loop's (each layer's activation but the last's).
    "enumerate-relu-but-the-last": """\
import numpy as np


def f(x, layers):
    h = x
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return np.sum(h * h)
""",
    "helper-per-layer": """\
import numpy as np


def affine(x, W, b):
    return x @ W + b


def f(x, layers):
    h = x
    for W, b in layers:
        h = np.tanh(affine(h, W, b))
    return np.sum(h)
""",
    "weight-read-twice": """\
import numpy as np


def f(x, layers):
    h = x
    for W, b in layers:
        h = np.tanh(h @ W + b)
        h = h @ W.T
    return np.sum(h * h)
""",
    "last-value-passed-to-a-helper": """\
import numpy as np


def predict(layers, inputs):
    for W, b in layers:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return outputs


def f(x, layers):
    return np.sum(predict(layers, x) ** 2)
""",
    "bias-unused": """\
import numpy as np


def f(x, layers):
    h = x
    for W, b in layers:
        h = np.sin(h @ W)
    return np.sum(h)
""",
    # Items that are tuples of one array (for (W,) in layers:): the backward's forward
    # bound W to the tuple itself (W = layers[i]), and dW came back of shape (1, 3, 4),
    # through a broadcast the forward never made (found by the property tests' loops over
    # the items of lists).
    "tuple-of-one": """\
import numpy as np


def f(x, layers):
    h = x
    for (W,) in layers:
        h = np.tanh(h @ W)
    return np.sum(h * h)
""",
    # Items that are arrays of one shape (for W in layers:, its gradient an array, as an
    # array's rows'): the zeros of the gradient took their dtype from
    # np.result_type(layers, 1.0), which reads a list as the description of a dtype
    # (TypeError; found by the property tests' loops over the items of lists).
    "list-of-arrays": """\
import numpy as np


def f(x, layers):
    h = x
    for W in layers:
        h = np.tanh(h @ W)
    return np.sum(h * h)
""",
}


def _layers(seed: str) -> tuple[Any, list[Any]]:
    """An input and three layers (W, b): of sizes 3 -> 4 -> 2 -> 3, or 3 -> 3 where a case
    multiplies by a weight and its transpose or its layers are arrays of one shape (W);
    (W,) where they are tuples of one."""
    rng = numpy.random.default_rng(zlib.crc32(seed.encode()))
    sizes = [3, 3, 3, 3] if "twice" in seed or "arrays" in seed else [3, 4, 2, 3]
    layers: list[Any] = [
        (0.5 * rng.standard_normal((m, n)), rng.standard_normal(n))
        for m, n in itertools.pairwise(sizes)
    ]
    if "arrays" in seed:
        layers = [W for W, _ in layers]
    elif "tuple-of-one" in seed:
        layers = [(W,) for W, _ in layers]
    return rng.standard_normal((2, 3)), layers


def _places(layers: list[Any]) -> dict[str, tuple[int, ...]]:
    """Each array of each layer by its name (``layers[0][1]``) and place in the list."""
    if not isinstance(layers[0], tuple):
        return {f"layers[{k}]": (k,) for k in range(len(layers))}
    return {f"layers[{k}][{j}]": (k, j) for k, item in enumerate(layers) for j in range(len(item))}


def _list_gradients(forward: Any, x: Any, layers: list[Any]) -> dict[str, Any]:
    """Central differences for x and each array of each layer (``layers[0][1]``, ...)."""
    places = _places(layers)
    args: dict[str, Any] = {"x": x}
    for name, place in places.items():
        args[name] = layers[place[0]] if len(place) == 1 else layers[place[0]][place[1]]

    def loss(**a: Any) -> float:
        if len(places) == len(layers) and not isinstance(layers[0], tuple):
            rebuilt: list[Any] = [a[name] for name in places]
        else:
            rebuilt = [
                tuple(a[f"layers[{k}][{j}]"] for j in range(len(item)))
                for k, item in enumerate(layers)
            ]
        return float(forward(a["x"], rebuilt))

    return {name: numeric_gradient(loss, args, name) for name in args}


def _check_list_gradients(case: str, dx: Any, dlayers: Any, x: Any, layers: Any) -> None:
    """Items that are tuples (``for W, b in layers:``) get a list of lists of their arrays'
    gradients (None for one unread); items that are arrays (``for W in layers:``) an
    array, one row per item, as an array's rows do."""
    forward = run_module(LIST_LOOPS[case], "lists.py")["f"]
    expected = _list_gradients(forward, x, layers)
    got = {"x": dx}
    if isinstance(layers[0], tuple):
        assert isinstance(dlayers, list) and len(dlayers) == len(layers)
        for k, item in enumerate(dlayers):
            assert isinstance(item, list) and len(item) == len(layers[k]), item
            for j, grad in enumerate(item):
                got[f"layers[{k}][{j}]"] = 0.0 * layers[k][j] if grad is None else grad
        returned = [dx, *(g for i in dlayers for g in i)]
    else:
        assert isinstance(dlayers, numpy.ndarray) and len(dlayers) == len(layers)
        got.update({f"layers[{k}]": dlayers[k] for k in range(len(layers))})
        returned = [dx, dlayers]
    assert_close(got, expected, f" ({case})")
    for first, second in itertools.combinations(returned, 2):
        if first is not None and second is not None:
            assert not numpy.shares_memory(first, second), "two gradients share memory"


@pytest.mark.parametrize("case", list(LIST_LOOPS))
def test_a_loop_over_a_list_of_layers_matches_central_differences(case: str) -> None:
    text = gradgen.generate(LIST_LOOPS[case], "lists.py")
    backward = run_module(text, "lists_backward.py")["f_backward"]
    x, layers = _layers(case)
    kept = copy.deepcopy(layers)
    dx, dlayers = backward(x, layers)[:2]  # and the other parameters' (reg)
    for layer, before in zip(layers, kept, strict=True):
        assert type(layer) is type(before)
        arrays, olds = (v if isinstance(v, tuple) else (v,) for v in (layer, before))
        for array, old in zip(arrays, olds, strict=True):
            numpy.testing.assert_array_equal(array, old, err_msg="a layer changed")
    _check_list_gradients(case, dx, dlayers, x, layers)


@pytest.mark.parametrize("case", ["mlp", "helper-per-layer"])
def test_a_loop_over_a_list_of_layers_with_pairs(case: str) -> None:
    namespace = run_module(gradgen.generate(LIST_LOOPS[case], "lists.py", pairs=True), "lp.py")
    x, layers = _layers(f"pairs {case}")
    value, cache = namespace["f_forward"](x, layers)
    assert value == pytest.approx(run_module(LIST_LOOPS[case], "lists.py")["f"](x, layers))
    dx, dlayers = namespace["f_backward"](1.0, cache)[:2]
    _check_list_gradients(case, dx, dlayers, x, layers)


def test_a_loop_over_a_list_of_layers_decorated(load: Any) -> None:
    source = LIST_LOOPS["regularized-tanh"].replace(
        "import numpy as np\n", "import numpy as np\nimport gradgen\n"
    )
    f = load(source.replace("\ndef f(", "\n@gradgen.differentiable\ndef f(")).f
    x, layers = _layers("decorated")
    value, (dx, dlayers, _) = f.value_and_grad(x, layers)
    assert value == pytest.approx(f(x, layers))
    _check_list_gradients("regularized-tanh", dx, dlayers, x, layers)


def test_a_loop_over_a_list_of_layers_reads_as_written() -> None:
    """The backward's forward part unpacks each layer as the loop did, and the reversed loop
    sets each layer's gradients into a list of the layers' gradients."""
    text = gradgen.generate(LIST_LOOPS["mlp"], "lists.py")
    assert "    for i in range(len(layers)):\n        W, b = layers[i]\n" in text
    assert "    dlayers = [None] * len(layers)\n" in text
    assert "        dlayers[i] = [dW, db]\n" in text


LIST_LOOP_REFUSALS = {
    "inside-another-loop": (
        "    for epoch in range(2):\n        for W, b in layers:\n            h = h @ W + b\n",
        (7, 9),
        "a loop over 'layers' inside another loop",
    ),
    "a-second-time": (
        "    for W, b in layers:\n        h = h @ W + b\n    for W, b in layers:\n"
        "        h = h + b\n",
        (8, 5),
        "a loop over 'layers' a second time",
    ),
    "read-besides": (
        "    for W, b in layers:\n        h = h @ W + b\n    h = h + np.sum(layers[0][1])\n",
        (6, 5),
        "is read besides by this loop",
    ),
    "enumerated-inside-another-loop": (
        "    for epoch in range(2):\n        for i, (W, b) in enumerate(layers):\n"
        "            h = h @ W + b\n",
        (7, 9),
        "a loop over 'layers' inside another loop",
    ),
    "zip-of-lists-of-tuples": (
        "    for (W, b), (V, c) in zip(layers, layers):\n        h = h @ W + b\n",
        (6, 10),
        "zip over lists of tuples is not supported",
    ),
    "enumerate-from-a-value": (
        "    for i, (W, b) in enumerate(layers, len(layers)):\n        h = h @ W + b\n",
        (6, 9),
        "enumerate(layers) or zip(xs, ys) of parameters",
    ),
}


@pytest.mark.parametrize("case", list(LIST_LOOP_REFUSALS))
def test_a_list_read_other_than_by_one_loop_over_it_is_refused(case: str) -> None:
    """Each step sets its item's gradient: a second read of an item would overwrite it."""
    body, (line, column), words = LIST_LOOP_REFUSALS[case]
    source = f"import numpy as np\n\n\ndef f(x, layers):\n    h = x\n{body}    return np.sum(h)\n"
    assert_source_refused_at(source, line, column, words)


def test_a_list_passed_twice_to_a_loop_over_its_items_is_refused() -> None:
    """Its gradient is the list the callee hands back: two would be joined, not added."""
    source = LIST_LOOPS["last-value-passed-to-a-helper"].replace(
        "    return np.sum(predict(layers, x) ** 2)\n",
        "    return np.sum(predict(layers, x) ** 2) + np.sum(predict(layers, x * 2.0))\n",
    )
    assert_source_refused_at(source, 12, 53, "is passed a second time")


def test_a_value_bound_in_a_loop_and_read_after_it_is_the_last_steps() -> None:
    """``return outputs`` after ``for W, b in layers: outputs = ...``: bound to None before
    the loop, carried, the last step's value after it (as Python has it)."""
    text = gradgen.generate(LIST_LOOPS["last-value-passed-to-a-helper"], "lists.py")
    assert "    outputs = None\n" in text


def test_a_name_bound_again_after_a_loop_is_not_its_last_value() -> None:
    """``t = np.stack(hs)`` after a loop over ``t`` reads none of the loop's ``t``: nothing
    is carried for it (it was, from a loop the backward dropped: a NameError)."""
    source = (
        "import numpy as np\n\n\ndef f(x: '2'):\n    hs = []\n    for t in range(2):\n"
        "        for t in range(1, 2):\n            h = x * 2\n        hs.append(x * t)\n"
        "    t = np.stack(hs)\n    return t * x\n"
    )
    text = gradgen.generate(source, "loops.py")
    assert "t = None" not in text
    backward = run_module(text, "loops_backward.py")["f_backward"]
    x = numpy.array([0.5, -1.5])
    numpy.testing.assert_allclose(backward(x, numpy.ones((2, 2))), 2 * numpy.array([2.0, 2.0]) * x)
