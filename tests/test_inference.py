"""What gradgen knows of types and shapes as a reader would, and the code it writes with it.

Each case is a forward function written the way its author would write it, the helpers the
backward must not call (the shapes are evident, so a careful person would not check them at
run time), what it must write instead, and arguments at which its gradients are checked
against central differences (shapes, ownership, arguments left alone: ``test_arrays.check``).
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy
import pytest

import gradgen
from test_arrays import check

RNG = numpy.random.default_rng(20261206)


def normal(*shape: int) -> Any:
    return RNG.uniform(0.3, 1.5, size=shape) * RNG.choice([-1.0, 1.0], size=shape)


# id, forward (after `import math` and `import numpy as np`), not in the backward, in it, args
CASES: list[tuple[str, str, tuple[str, ...], tuple[str, ...], dict[str, Any]]] = [
    (
        "math-takes-numbers",
        """
        def f(x, y):
            s = 1.0 / (1 + math.exp(-y))
            return (x + s) / (math.exp(x) + 1.0)
        """,
        ("_unbroadcast", "_everywhere", "np."),
        ("dx = ",),
        {"x": 0.7, "y": -0.4},
    ),
    (
        "number-default",
        """
        def f(x: "N, D", gamma: "D", beta: "D", eps=1e-5):
            mu = np.mean(x, axis=1, keepdims=True)
            xmu = x - mu
            var = np.mean(xmu**2, axis=1, keepdims=True)
            xhat = xmu / np.sqrt(var + eps)
            return np.sum((gamma * xhat + beta) ** 2)
        """,
        ("_unbroadcast", "_everywhere"),
        (".sum(axis=0)",),
        {"x": normal(4, 3), "gamma": normal(3), "beta": normal(3), "eps": 1e-5},
    ),
    (
        "slices-between-dimensions",
        """
        def f(a: "N, 4H", h: "N, H"):
            H = h.shape[1]
            i = 1.0 / (1.0 + np.exp(-a[:, :H]))
            f = 1.0 / (1.0 + np.exp(-a[:, H : 2 * H]))
            o = np.tanh(a[:, 2 * H : 3 * H])
            g = np.tanh(a[:, 3 * H :])
            return np.sum(f * h + i * g + o)
        """,
        ("_unbroadcast", "_everywhere"),
        ("da[:, H : 2 * H] += ",),
        {"a": normal(2, 8), "h": normal(2, 2)},
    ),
    (
        "slice-from-the-end",
        """
        def f(x: "N, 5", w: "3"):
            return np.sum(x[:, -3:] * w)
        """,
        ("_unbroadcast", "_everywhere"),
        ("dw = ",),
        {"x": normal(2, 5), "w": normal(3)},
    ),
    (
        "stack-concatenate-reshape",
        """
        def f(x: "N, D", y: "N, D", b: "2D", c: "N, D"):
            s = np.stack([x, y])
            t = np.concatenate([x, y], axis=1)
            r = t.reshape(x.shape[0], -1)
            return np.sum(s * c) + np.sum(r * b)
        """,
        ("_unbroadcast", "_everywhere"),
        ("db = (r * ", "dc = (s * "),
        {"x": normal(3, 2), "y": normal(3, 2), "b": normal(4), "c": normal(3, 2)},
    ),
    (
        "flattened-layer",
        """
        def f(x: "N, C, H, W", w: "C*H*W, M", b: "M"):
            N = x.shape[0]
            return np.sum(np.maximum(0, x.reshape(N, -1) @ w + b))
        """,
        ("_unbroadcast", "_everywhere", "_matmul"),
        ("db = ",),
        {"x": normal(2, 2, 1, 3), "w": normal(6, 4), "b": normal(4)},
    ),
    (
        "mask-from-the-value",
        """
        def f(x, w):
            h = x * w
            mask = h > 0
            r = h * mask
            return np.sum(r * r)
        """,
        ("_unbroadcast(mask * dr",),
        ("dh = mask * dr",),
        {"x": normal(3, 2), "w": normal(2)},
    ),
    (
        "softmax-sums-back-along-its-axis",
        """
        def f(scores):
            exps = np.exp(scores)
            probs = exps / np.sum(exps, axis=1, keepdims=True)
            return np.sum(probs * probs[:, :1])
        """,
        ("_unbroadcast(-(exps",),
        (".sum(axis=1, keepdims=True)",),
        {"scores": normal(3, 4)},
    ),
    (
        "batchnorm-means-over-the-batch",
        """
        def f(x, gamma, beta, eps=1e-5):
            N = x.shape[0]
            mu = 1.0 / N * np.sum(x, axis=0)
            xmu = x - mu
            var = 1.0 / N * np.sum(xmu**2, axis=0)
            xhat = xmu / np.sqrt(var + eps)
            return np.sum((gamma * xhat + beta) ** 2)
        """,
        ("_keepdims(", "_unbroadcast(dxmu"),
        ("dmu = -dxmu.sum(axis=0)",),
        {"x": normal(4, 3), "gamma": normal(3), "beta": normal(3), "eps": 1e-5},
    ),
    (
        "a-number-of-a-known-length-vector",
        """
        def f(w: "3", x):
            return math.tanh(w[0] * x + w[1]) * w[2]
        """,
        ("_unbroadcast",),
        (),
        {"w": normal(3), "x": 0.4},
    ),
]


@pytest.mark.parametrize(
    ("source", "absent", "present", "args"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_what_a_reader_knows_the_backward_knows(
    source: str, absent: tuple[str, ...], present: tuple[str, ...], args: dict[str, Any]
) -> None:
    text = "import math\n\nimport numpy as np\n\n\n" + textwrap.dedent(source).lstrip("\n")
    generated = gradgen.generate(text, "forward.py")
    backward = generated[generated.index("_backward(") :]
    backward = backward[: backward.find("\ndef ", 1)]
    for word in absent:
        assert word not in backward, f"{word!r} in:\n{backward}"
    for word in present:
        assert word in backward, f"{word!r} not in:\n{backward}"
    check(text, args)


def test_a_rebound_name_has_one_gradient_name_and_frees_what_it_held() -> None:
    """``h = m + a`` seven times: one ``dh`` rebound, as by hand, and the forward values the
    backward does not read are bound to the user's names again (their memory freed)."""
    rounds = "    t = np.tanh(h)\n    e = np.exp(t)\n    m = e * b\n    h = m + a\n" * 4
    text = f"import numpy as np\n\n\ndef f(a, b):\n    h = a\n{rounds}    return h\n"
    generated = gradgen.generate(text, "chain.py")
    backward = generated[generated.index("def f_backward") :]
    backward = backward[: backward.find("\ndef ", 1)]
    assert "dh_" not in backward and "dm_" not in backward, backward
    assert backward.count("    dh = ") == 4, backward  # the upstream's spread, then 3 rounds
    assert "m_2 = " not in backward and backward.count("    m = ") == 4, backward
    check(text, {"a": normal(5), "b": normal(5)}, upstream=normal(5))


# Found by the property tests: ``out_sum_2`` is bound on two sides (``out_sum - x``, and a
# number); x was taken for a number and the backward raised on its shapes.
A_PROGRAM_OF_THE_PROPERTY_TESTS = """\
import numpy as np
import scipy.special
import scipy.stats


def f(x, y, z, w, flag=True, mode='b'):
    a = np.std(np.arccos(np.negative(w) / (1 + np.negative(w) * np.negative(w))), AXES)
    s = np.tanh(w)
    h = (1 + s * s) ** s
    if flag:
        out = np.multiply(np.expm1(np.zeros_like(h)), w)
        dout = scipy.special.ive(2, 1 + out * out)
    elif np.sum(h) > 0.5:
        out_sum = scipy.stats.norm.sf(z, s, 1 + x * x)
        out_sum -= x
    else:
        if mode not in ["b"]:
            x = np.hypot(x, 2)
            dx = z - z
            out_sum = scipy.stats.norm.logcdf(2.0 / x, np.square(h), x)
        else:
            out_sum = a * a
            h_exp = np.squeeze(y, 0)
            out_sum = scipy.stats.norm.isf(out_sum, h_exp, 1 + (y > -0.4) * (y > -0.4))
            out = h_exp + h_exp
        out_sum = np.positive(np.ndim(h))
    t = x @ a
    return h % np.sum(t)
""".replace("AXES", "axis=(0, -2), ddof=1")


def test_a_name_both_sides_bind_found_by_the_property_tests() -> None:
    args = {
        "x": normal(3, 4),
        "y": numpy.array([[2, -1, 1, 1]]),
        "z": normal(3, 1),
        "w": normal(2, 3, 4),
        "flag": True,
        "mode": "b",
    }
    check(
        A_PROGRAM_OF_THE_PROPERTY_TESTS,
        args,
        labels=("y", "z", "flag", "mode"),
    )
