"""Elementwise functions beyond what central differences show: the helpers the generated
code defines for derivatives the libraries lack (digamma, sinc's derivative near 0), accurate
to float64, and the functions whose values are whole numbers, which pass no gradient."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy
import pytest

import gradgen
from gradgen.helpers import HELPERS

EULER_GAMMA = 0.5772156649015329


def helper(name: str) -> Any:
    namespace: dict[str, Any] = {"math": math, "numpy": numpy}
    exec(HELPERS[name], namespace)
    return namespace[name]


DIGAMMA_POINTS = [
    *numpy.linspace(0.05, 30.0, 97),
    1e-6,
    0.5,
    1.0,
    1.4616321449683622,  # its root
    9.99,
    10.0,
    1e3,
    1e8,
    -0.5,
    -1.3,
    -2.7,
    -7.25,
    -0.999,
]


@pytest.mark.parametrize("x", DIGAMMA_POINTS)
def test_digamma_matches_scipy(x: float) -> None:
    special = pytest.importorskip("scipy.special")
    expected = float(special.digamma(x))
    assert helper("_digamma")(x) == pytest.approx(expected, rel=1e-13, abs=1e-14)


def test_digamma_known_values() -> None:
    digamma = helper("_digamma")
    assert digamma(1.0) == pytest.approx(-EULER_GAMMA, rel=1e-15)
    assert digamma(0.5) == pytest.approx(-EULER_GAMMA - 2 * math.log(2), rel=1e-15)
    assert digamma(4) == pytest.approx(-EULER_GAMMA + 1 + 1 / 2 + 1 / 3, rel=1e-15)


def _sinc_derivative_series(x: float) -> float:
    """sum over k >= 1 of (-1)^k 2k pi^2k x^(2k-1) / (2k+1)!, for |x| <= 1."""
    return math.fsum(
        (-1) ** k * 2 * k * math.pi ** (2 * k) * x ** (2 * k - 1) / math.factorial(2 * k + 1)
        for k in range(1, 40)
    )


SINC_POINTS = [0.0, 1e-300, 1e-12, -1e-8, 1e-5, 3e-3, -0.0199, 0.02, 0.0201, 0.1, -0.5, 1.0]


@pytest.mark.parametrize("x", SINC_POINTS)
def test_sinc_derivative_keeps_its_digits_near_zero(x: float) -> None:
    """(cos(pi x) - sinc(x)) / x cancels near 0: at x = 1e-8 it keeps no digit right."""
    expected = _sinc_derivative_series(x)
    actual = float(helper("_sinc_derivative")(x))
    assert actual == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_sinc_derivative_on_arrays_keeps_shape_and_float32() -> None:
    x = numpy.array([[0.0, 0.01], [0.5, -2.0]], dtype=numpy.float32)
    derivative = helper("_sinc_derivative")(x)
    assert derivative.shape == (2, 2) and derivative.dtype == numpy.float32


def gradient(source: str, *args: Any) -> Any:
    generated = gradgen.generate(textwrap.dedent(source), "forward.py")
    namespace: dict[str, Any] = {}
    exec(compile(generated, "generated.py", "exec"), namespace)
    return namespace["f_backward"](*args)


WHOLE_NUMBER_FUNCTIONS = [
    "np.sign",
    "np.floor",
    "np.ceil",
    "np.round",
    "np.around",
    "np.rint",
    "np.trunc",
    "np.fix",
]


@pytest.mark.parametrize("function", WHOLE_NUMBER_FUNCTIONS)
def test_whole_number_functions_pass_no_gradient(function: str) -> None:
    x = numpy.array([-1.7, -0.3, 0.4, 2.6])
    source = f"""
        import numpy as np


        def f(x):
            return np.sum({function}(x) * x)
        """
    expected = eval(function, {"np": numpy})(x)
    numpy.testing.assert_array_equal(gradient(source, x), expected)


@pytest.mark.parametrize("function", ["math.floor", "math.ceil", "math.trunc", "round"])
def test_whole_numbers_of_math_and_round_pass_no_gradient(function: str) -> None:
    source = f"""
        import math


        def f(x):
            return {function}(x) * x
        """
    expected = eval(function, {"math": math})(-2.6)
    assert gradient(source, -2.6) == expected


def test_floor_division_passes_no_gradient() -> None:
    source = """
        import numpy as np


        def f(x, y):
            q = x // y
            q //= 0.5
            return np.sum(q * x + x % y)
        """
    x, y = numpy.array([2.3, -1.1, 5.2]), numpy.array([0.7, 1.5, -2.0])
    dx, dy = gradient(source, x, y)
    quotient = (x // y) // 0.5
    numpy.testing.assert_allclose(dx, quotient + 1.0)
    numpy.testing.assert_allclose(dy, -(x // y))


@pytest.mark.parametrize(
    "mask",
    [
        "np.isinf(x)",
        "np.isposinf(x)",
        "np.isneginf(x)",
        "np.greater(x, 0.5)",
        "np.greater_equal(x, 0.5)",
        "np.less(x, 0.5)",
        "np.less_equal(x, 0.5)",
        "np.equal(x, 0.4)",
        "np.not_equal(x, 0.4)",
        "np.logical_xor(x > 0, x > 1)",
        "np.isclose(x, 0.4)",
    ],
)
def test_comparison_functions_pass_no_gradient(mask: str) -> None:
    x = numpy.array([-1.7, -0.3, 0.4, 2.6])
    source = f"""
        import numpy as np


        def f(x):
            return np.sum(np.where({mask}, x, 2 * x))
        """
    expected = numpy.where(eval(mask, {"np": numpy, "x": x}), 1.0, 2.0)
    numpy.testing.assert_array_equal(gradient(source, x), expected)


def test_digamma_leaves_an_array_argument_as_it_was() -> None:
    """math.lgamma takes a 0-d array; the backward must not write into it."""
    x = numpy.array(2.5)
    source = """
        import math


        def f(x):
            return math.lgamma(x) + math.gamma(x)
        """
    dx = gradient(source, x)
    assert x == 2.5
    special = pytest.importorskip("scipy.special")
    expected = special.digamma(2.5) * (1 + special.gamma(2.5))
    assert float(numpy.squeeze(dx)) == pytest.approx(expected, rel=1e-13)
