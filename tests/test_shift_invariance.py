"""A shift the results are invariant to gets no gradient (``invariance.py``).

``x - c`` feeding only functions invariant to ``c`` (a softmax, a log-softmax, a
log-sum-exp, however spelled) has an exactly zero gradient into ``c``: gradgen leaves that
edge out of the backward (``Stage.stopped``), as if ``c`` were ``gradgen.stop_gradient(c)``
there. Each case says which shifts are left out, as ``(value, shift)`` pairs (the stage's
name and the operand's), and every gradient is checked against central differences in
float64; in the cases where the identity must not apply (a sum of exponentials, the wrong
axis, a shift that also reaches the result another way) fewer or no shifts are left out
and the gradients, which then flow through ``c``, are still right.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy
import pytest

import gradgen
from gradgen.api import compile_source
from gradgen.rules import RULES, SHIFTS
from test_programs import as_tuple, assert_close, draw, expected_gradients, rng
from test_rules import owned_arrays, run_module

HEADER = "import math\n\nimport numpy as np\nimport scipy.special\n\nimport gradgen\n\n\n"


def stopped(source: str) -> dict[str, set[tuple[str, str]]]:
    """Per function, the shifts left out: (the stage's target, the operand's name)."""
    compiled = compile_source(source)
    found: dict[str, set[tuple[str, str]]] = {}
    for function in compiled.program.functions:
        staged = function.staged
        found[staged.name] = {
            (stage.target, stage.operands[p].id)  # type: ignore[union-attr]
            for stage in staged.stages
            for p in stage.stopped
        }
    return found


def check_gradients(source: str, shapes: dict[str, tuple[int, ...]], seed: str) -> str:
    """f's backward against central differences; the generated text."""
    text = gradgen.generate(source, "shift.py")
    forward = run_module(source, "shift.py")["f"]
    backward = run_module(text, "shift_backward.py")["f_backward"]
    args = draw(shapes, seed)
    names = list(args)
    value = forward(**args)
    upstream = rng(f"upstream {seed}").uniform(-1, 1, size=numpy.shape(value))
    gradients = dict(zip(names, as_tuple(backward(**args, dout=upstream), len(names)), strict=True))
    expected = expected_gradients(forward, args, names, upstream)
    for name, gradient in gradients.items():
        if isinstance(gradient, float) and gradient == 0.0:
            # a parameter the result does not move with gets 0.0, whatever its shape
            numpy.testing.assert_allclose(expected[name], 0.0, atol=1e-8, err_msg=name)
            gradients[name] = numpy.zeros_like(expected[name])
    assert_close(gradients, expected, f"\n{text}")
    owned_arrays(gradients, args, text)
    return text


# (id, f's body, its parameters' shapes, the shifts left out)
CASES: list[tuple[str, str, dict[str, tuple[int, ...]], set[tuple[str, str]]]] = [
    (
        "softmax",
        """
        def f(x):
            shift = np.max(x, axis=1, keepdims=True)
            exps = np.exp(x - shift)
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        {("exps_sub", "shift")},
    ),
    (
        "softmax-shifted-named",
        """
        def f(x):
            shift = np.max(x, axis=1, keepdims=True)
            shifted = x - shift
            exps = np.exp(shifted)
            probs = exps / np.sum(exps, axis=1, keepdims=True)
            return np.sum(probs * x)
        """,
        {"x": (3, 4)},
        {("shifted", "shift")},
    ),
    (
        "softmax-inline",
        """
        def f(x):
            exps = np.exp(x - np.max(x, axis=1, keepdims=True))
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        {("exps_sub", "exps_amax")},
    ),
    (
        "softmax-method-spellings",
        """
        def f(x):
            exps = np.exp(x - x.max(axis=1, keepdims=True))
            return exps / exps.sum(axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        {("exps_sub", "exps_amax")},
    ),
    (
        "softmax-rebound-in-place",
        """
        def f(x):
            scores = x * 2.0
            scores -= np.max(scores, axis=1, keepdims=True)
            exps = np.exp(scores)
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        {("scores_2", "scores_amax")},
    ),
    (
        "softmax-last-axis",
        """
        def f(x):
            exps = np.exp(x - np.max(x, axis=-1, keepdims=True))
            return exps / np.sum(exps, axis=-1, keepdims=True)
        """,
        {"x": (2, 3, 4)},
        {("exps_sub", "exps_amax")},
    ),
    (
        "softmax-annotated-shapes",
        """
        def f(x: "N, C"):
            shift = np.max(x, axis=1, keepdims=True)
            exps = np.exp(x - shift)
            return exps / np.sum(exps, axis=-1, keepdims=True)
        """,
        {"x": (3, 4)},
        {("exps_sub", "shift")},
    ),
    (
        "softmax-columns",
        """
        def f(x):
            exps = np.exp(x - np.max(x, axis=0, keepdims=True))
            return exps / np.sum(exps, axis=0, keepdims=True)
        """,
        {"x": (3, 4)},
        {("exps_sub", "exps_amax")},
    ),
    (
        "softmax-of-a-vector",
        """
        def f(x):
            exps = np.exp(x - np.max(x))
            return exps / np.sum(exps)
        """,
        {"x": (5,)},
        {("exps_sub", "exps_amax")},
    ),
    (
        "log-softmax",
        """
        def f(x):
            shifted = x - np.max(x, axis=1, keepdims=True)
            return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        """,
        {"x": (3, 4)},
        {("shifted", "shifted_amax")},
    ),
    (
        "log-sum-exp-of-a-vector",
        """
        def f(x):
            c = np.max(x)
            return c + np.log(np.sum(np.exp(x - c)))
        """,
        {"x": (5,)},
        {("out_sub", "c"), ("out", "c")},
    ),
    (
        "log-sum-exp-rows",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            return np.log(np.sum(np.exp(x - c), axis=1, keepdims=True)) + c
        """,
        {"x": (3, 4)},
        {("out_sub", "c"), ("out", "c")},
    ),
    (
        "log-sum-exp-rows-dropped-axis",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            return np.log(np.sum(np.exp(x - c), axis=1)) + c[:, 0]
        """,
        {"x": (3, 4)},
        set(),  # c[:, 0] is an index, which the algebra does not follow
    ),
    (
        "scipy-softmax",
        """
        def f(x):
            return scipy.special.softmax(x - np.max(x, axis=1, keepdims=True), axis=1)
        """,
        {"x": (3, 4)},
        {("out_sub", "out_amax")},
    ),
    (
        "scipy-log-softmax",
        """
        def f(x):
            return scipy.special.log_softmax(x - np.mean(x, axis=-1, keepdims=True), axis=-1)
        """,
        {"x": (3, 4)},
        {("out_sub", "out_mean")},
    ),
    (
        "scipy-logsumexp-plus-its-shift",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            return scipy.special.logsumexp(x - c, axis=1, keepdims=True) + c
        """,
        {"x": (3, 4)},
        {("out_sub", "c"), ("out", "c")},
    ),
    (
        "shift-by-a-mean",
        """
        def f(x):
            c = np.mean(x, axis=1, keepdims=True)
            exps = np.exp(x - c)
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        {("exps_sub", "c")},
    ),
    (
        "shift-by-a-parameter-column",
        """
        def f(x: "N, C", c: "N, 1"):
            return np.sum(scipy.special.softmax(x - c, axis=1) * x)
        """,
        {"x": (3, 4), "c": (3, 1)},
        {("out_sub", "c")},
    ),
    (
        "shift-by-a-number-parameter",
        """
        def f(x, c: float):
            return np.log(np.sum(np.exp(x - c))) + c
        """,
        {"x": (3, 4), "c": ()},
        {("out_sub", "c"), ("out", "c")},
    ),
    (
        "softmax-squared-and-tempered",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            exps = np.exp((x - c) / 2.0) ** 2
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        {("exps_sub", "c")},
    ),
    (
        "two-way-softmax-written-out",
        """
        def f(x, y):
            m = max(x, y)
            ex = math.exp(x - m)
            return ex / (ex + math.exp(y - m))
        """,
        {"x": (), "y": ()},
        # math.exp takes numbers: x, y and m are numbers (infer.numbers_by_use)
        {("ex_sub", "m"), ("out_sub", "m")},
    ),
    # --- where the identity must not apply -------------------------------------------------
    (
        "sum-of-exponentials",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            return np.sum(np.exp(x - c), axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        set(),
    ),
    (
        "normalized-along-another-axis",
        """
        def f(x):
            c = np.max(x, axis=0, keepdims=True)
            exps = np.exp(x - c)
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4)},
        set(),
    ),
    (
        "denominator-without-keepdims",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            exps = np.exp(x - c)
            return exps / np.sum(exps, axis=1)
        """,
        {"x": (4, 4)},
        set(),  # (N,) broadcast along the rows: c's rows meet the wrong columns
    ),
    (
        "shift-also-added-to-the-result",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            exps = np.exp(x - c)
            return exps / np.sum(exps, axis=1, keepdims=True) + c
        """,
        {"x": (3, 4)},
        {("exps_sub", "c")},  # the softmax's edge only: c's own term keeps its gradient
    ),
    (
        "shift-also-squared",
        """
        def f(x):
            c = np.mean(x, axis=1, keepdims=True)
            log_probs = scipy.special.log_softmax(x - c, axis=1)
            return np.sum(log_probs * x) + np.sum(c * c)
        """,
        {"x": (3, 4)},
        {("log_probs_sub", "c")},
    ),
    (
        "log-sum-exp-without-its-shift-added-back",
        """
        def f(x):
            c = np.max(x)
            return np.log(np.sum(np.exp(x - c)))
        """,
        {"x": (5,)},
        set(),
    ),
    (
        "log-sum-exp-shift-added-twice",
        """
        def f(x):
            c = np.max(x)
            return c + np.log(np.sum(np.exp(x - c))) + c
        """,
        {"x": (5,)},
        {("out_sub", "c"), ("out_add", "c")},  # one c cancels; the other keeps its gradient
    ),
    (
        "expected-shifted-value",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            exps = np.exp(x - c)
            return np.sum(exps * (x - c), axis=1) / np.sum(exps, axis=1)
        """,
        {"x": (3, 4)},
        set(),  # the mean of x - c under the softmax: moves with c
    ),
    (
        "sum-of-shifted-values",
        """
        def f(x):
            c = np.max(x, axis=1, keepdims=True)
            return np.exp(x - c) / np.exp(np.sum(x - c, axis=1, keepdims=True))
        """,
        {"x": (3, 4)},
        set(),  # a sum adds c once per entry: 4 c's against one
    ),
    (
        "shift-by-a-parameter-of-unknown-shape",
        """
        def f(x, c):
            return np.sum(scipy.special.softmax(x - c, axis=1) * x)
        """,
        {"x": (3, 4), "c": (3, 1)},
        set(),  # c may be a row: kept (slow, right)
    ),
    (
        "shift-by-a-row-parameter",
        """
        def f(x: "N, C", c: "1, C"):
            return np.sum(scipy.special.softmax(x - c, axis=1) * x)
        """,
        {"x": (3, 4), "c": (1, 4)},
        set(),
    ),
    (
        "shift-by-another-values-maximum",
        """
        def f(x, y):
            c = np.max(y, axis=1, keepdims=True)
            exps = np.exp(x - c)
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4), "y": (3, 4)},
        set(),  # x's rank is not y's as far as gradgen knows: where d lies is not known
    ),
    (
        "weighted-by-a-parameter",
        """
        def f(x, w):
            c = np.max(x, axis=1, keepdims=True)
            exps = np.exp((x - c) * w)
            return exps / np.sum(exps, axis=1, keepdims=True)
        """,
        {"x": (3, 4), "w": (3, 4)},
        set(),
    ),
    (
        "softmax-in-a-loop",
        """
        def f(x):
            for t in range(2):
                exps = np.exp(x - np.max(x, axis=1, keepdims=True))
                x = exps / np.sum(exps, axis=1, keepdims=True)
            return x
        """,
        {"x": (3, 4)},
        set(),  # only the top-level statements are looked at
    ),
]


@pytest.mark.parametrize("body, shapes, expected", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_shift_spellings(
    body: str, shapes: dict[str, tuple[int, ...]], expected: set[tuple[str, str]]
) -> None:
    source = HEADER + textwrap.dedent(body).lstrip()
    assert stopped(source)["f"] == expected
    check_gradients(source, shapes, body)


def test_a_parameter_reached_only_through_invariant_shifts_has_gradient_zero() -> None:
    """Not None, which says 'data' (a label): the result does not move with it."""
    source = HEADER + "def f(x, c: float):\n    return np.log(np.sum(np.exp(x - c))) + c\n"
    text = gradgen.generate(source, "shift.py")
    assert "return dx, 0.0\n" in text
    x = numpy.array([0.5, -1.0, 2.0])
    dx, dc = run_module(text)["f_backward"](x, 0.3)
    assert type(dc) is float and dc == 0.0
    numpy.testing.assert_allclose(dx, numpy.exp(x) / numpy.sum(numpy.exp(x)))


def test_the_shift_table_names_operations_of_the_rules_table() -> None:
    names = {rule.name for rule in RULES}
    assert set(SHIFTS) <= names, set(SHIFTS) - names


def test_a_callee_s_softmax_shift_is_left_out_through_the_call() -> None:
    source = HEADER + textwrap.dedent(
        """
        def softmax(x):
            exps = np.exp(x - np.max(x, axis=1, keepdims=True))
            return exps / np.sum(exps, axis=1, keepdims=True)


        def f(x, w):
            return np.sum(softmax(x @ w) * x[:, :2])
        """
    )
    assert stopped(source)["softmax"] == {("exps_sub", "exps_amax")}
    text = check_gradients(source, {"x": (4, 3), "w": (3, 2)}, "callee")
    assert "exps_amax ==" not in text


# --- the two-layer net as users write it: golden -----------------------------------------------

GOLDEN = Path(__file__).parent / "cases" / "shift" / "two_layer_net.py"


def test_two_layer_net_golden_text_has_no_adjoint_of_the_shift() -> None:
    """The net of issue 14, as gradgen writes its backward (update with
    GRADGEN_UPDATE_GOLDEN=1 and read the diff): ``shifted = scores - shift`` hands
    ``scores`` its gradient and ``shift`` none, and np.max is not differentiated."""
    from golden import read_case, update_requested, write_case

    source, expected = read_case(GOLDEN)
    actual = gradgen.generate(source, GOLDEN.name)
    if update_requested():
        write_case(GOLDEN, source.rstrip("\n") + "\n", actual)
        expected = actual
    assert expected, "no '# output' section: run with GRADGEN_UPDATE_GOLDEN=1"
    assert actual == expected
    assert "dshift =" not in actual and "scores == shift" not in actual


def test_two_layer_net_golden_gradients_match_central_differences() -> None:
    source, expected = read_golden()
    forward = run_module(source, GOLDEN.name)["loss"]
    backward = run_module(expected, "two_layer_net_backward.py")["loss_backward"]
    shapes = {"W1": (3, 5), "b1": (5,), "W2": (5, 4), "b2": (4,), "X": (6, 3)}
    args: dict[str, Any] = draw(shapes, "two-layer net")
    args["y"] = rng("labels").integers(0, 4, size=6)
    args["reg"] = 0.1
    order = ["W1", "b1", "W2", "b2", "X", "y", "reg"]
    args = {name: args[name] for name in order}
    gradients = dict(zip(order, backward(**args), strict=True))
    assert gradients.pop("y") is None
    differentiable = [n for n in order if n != "y"]
    assert_close(gradients, expected_gradients(forward, args, differentiable), "")


def read_golden() -> tuple[str, str]:
    from golden import read_case

    return read_case(GOLDEN)
