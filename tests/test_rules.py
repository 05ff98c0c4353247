"""Every spelling of every rule in ``gradgen.rules.RULES``, checked against finite differences.

The sample points come from ``tests/rule_points.py``: a rule without points fails
``test_every_rule_has_sample_points``, so a new rule cannot go untested.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Callable
from typing import Any

import black
import numpy
import pytest

import gradgen
from gradgen.rules import RULES
from rule_points import RULE_POINTS

RTOL = 1e-6
ATOL = 1e-8

# --- helpers ------------------------------------------------------------------------------


def forward_module(form: str, inputs: tuple[str, ...], *, assign: bool, alias: bool) -> str:
    """``def f(<inputs>)`` returning ``form``, directly or through ``out = <form>``."""
    imports = "import math\nimport numpy as np\n" if alias else "import math\nimport numpy\n"
    if alias:
        form = form.replace("numpy.", "np.")
    params = ", ".join(inputs)
    body = f"    out = {form}\n    return out\n" if assign else f"    return {form}\n"
    return f"{imports}\n\ndef f({params}):\n{body}"


def run_module(text: str, filename: str = "<module>") -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(text, filename, "exec"), namespace)
    return namespace


def forward_and_backward(
    source: str, name: str = "f"
) -> tuple[Callable[..., Any], Callable[..., Any], str]:
    """The forward function, its generated backward, and the generated text."""
    generated = gradgen.generate(source, "forward.py")
    forward = run_module(source, "forward.py")[name]
    backward = run_module(generated, "generated.py")[f"{name}_backward"]
    return forward, backward, generated


def as_tuple(gradients: Any, count: int) -> tuple[Any, ...]:
    """The backward's result as one gradient per parameter, checking its shape."""
    if count == 1:
        assert not isinstance(gradients, tuple), (
            f"one parameter: expected a bare value, got {gradients!r}"
        )
        return (gradients,)
    assert isinstance(gradients, tuple), f"{count} parameters: expected a tuple, got {gradients!r}"
    assert len(gradients) == count
    return gradients


def finite_differences(f: Callable[..., Any], point: tuple[float, ...]) -> list[float]:
    """Central differences of ``f`` at ``point``, in float64, one per parameter."""
    result = []
    for i, value in enumerate(point):
        h = 1e-6 * max(1.0, abs(value))
        up = list(point)
        down = list(point)
        up[i] = value + h
        down[i] = value - h
        result.append(float((f(*up) - f(*down)) / ((value + h) - (value - h))))
    return result


def assert_gradients_match(source: str, point: tuple[float, ...], name: str = "f") -> None:
    forward, backward, generated = forward_and_backward(source, name)
    gradients = as_tuple(backward(*point), len(point))
    expected = finite_differences(forward, point)
    numpy.testing.assert_allclose(
        [float(g) for g in gradients],
        expected,
        rtol=RTOL,
        atol=ATOL,
        err_msg=f"at {point}; generated code:\n{generated}",
    )


# --- the table covers the rules -----------------------------------------------------------


def test_every_rule_has_sample_points() -> None:
    rules = {r.name for r in RULES}
    missing = sorted(rules - set(RULE_POINTS))
    stale = sorted(set(RULE_POINTS) - rules)
    assert set(RULE_POINTS) == rules, (
        f"rules without sample points in tests/rule_points.py: {missing}; "
        f"points for rules that no longer exist: {stale}"
    )


def test_sample_points_have_one_value_per_input() -> None:
    for r in RULES:
        for point in RULE_POINTS.get(r.name, []):
            assert len(point) == len(r.inputs), f"{r.name}: {point} does not match {r.inputs}"


# --- every form, every point, against finite differences ----------------------------------

VARIANTS = {
    "return": {"assign": False, "alias": False},  # return <form>
    "assign": {"assign": True, "alias": False},  # out = <form>; return out
    "np-alias": {"assign": False, "alias": True},  # numpy spelled np
    "np-alias-assign": {"assign": True, "alias": True},
}


def _variants_for(form: str) -> list[str]:
    if "numpy." in form:
        return list(VARIANTS)
    return ["return", "assign"]


FORM_CASES = [
    pytest.param(r, form, variant, id=f"{r.name}-{form}-{variant}")
    for r in RULES
    for form in r.form_texts
    for variant in _variants_for(form)
]

POINT_CASES = [
    pytest.param(r, form, variant, point, id=f"{r.name}-{form}-p{i}-{variant}")
    for r in RULES
    for form in r.form_texts
    for i, point in enumerate(RULE_POINTS.get(r.name, []))
    for variant in _variants_for(form)
]


@pytest.mark.parametrize(("rule", "form", "variant", "point"), POINT_CASES)
def test_rule_gradient_matches_finite_differences(rule, form, variant, point) -> None:
    source = forward_module(form, rule.inputs, **VARIANTS[variant])
    assert_gradients_match(source, point)


@pytest.mark.parametrize(("rule", "form", "variant"), FORM_CASES)
def test_rule_output_compiles_and_is_black_stable(rule, form, variant) -> None:
    source = forward_module(form, rule.inputs, **VARIANTS[variant])
    out = gradgen.generate(source, "forward.py")
    compile(out, "generated.py", "exec")
    assert black.format_str(out, mode=black.Mode()) == out
    if VARIANTS[variant]["alias"]:
        # The module spells numpy `np`: so does the generated code.
        assert "numpy." not in out, out


@pytest.mark.parametrize(("rule", "form", "variant"), FORM_CASES)
def test_backward_signature_has_the_upstream_gradient(rule, form, variant) -> None:
    source = forward_module(form, rule.inputs, **VARIANTS[variant])
    _, backward, _ = forward_and_backward(source)
    params = inspect.signature(backward).parameters
    assert list(params) == [*rule.inputs, "dout"]
    assert params["dout"].default == 1.0


def test_upstream_gradient_scales_the_result() -> None:
    source = forward_module("math.exp(x) * y", ("x", "y"), assign=True, alias=False)
    _, backward, _ = forward_and_backward(source)
    one = backward(0.5, 3.0)
    three = backward(0.5, 3.0, dout=3.0)
    numpy.testing.assert_allclose(three, [3 * g for g in one], rtol=1e-15)


# --- the shape of the result ----------------------------------------------------------------


def test_one_parameter_gives_a_bare_number() -> None:
    _, backward, generated = forward_and_backward(
        "import math\n\n\ndef f(x):\n    return math.sin(x)\n"
    )
    result = backward(0.4)
    assert not isinstance(result, tuple), generated
    assert isinstance(result, float)
    assert result == pytest.approx(math.cos(0.4), rel=1e-15)


def test_one_parameter_squared_gives_a_bare_number() -> None:
    _, backward, _ = forward_and_backward("def f(x):\n    y = x * x\n    return y\n")
    assert backward(1.5) == 3.0


def test_several_parameters_give_a_tuple_in_parameter_order() -> None:
    _, backward, _ = forward_and_backward("def f(a, b, c):\n    return a * 2.0 + b * 3.0 - c\n")
    assert backward(1.0, 1.0, 1.0) == (2.0, 3.0, -1.0)


def test_unused_parameter_gets_exactly_zero() -> None:
    _, backward, generated = forward_and_backward(
        "def f(x, unused, y):\n    z = x * y\n    return z\n"
    )
    dx, dunused, dy = backward(2.0, 5.0, 3.0)
    assert (dx, dy) == (3.0, 2.0)
    assert dunused == 0.0 and isinstance(dunused, float), generated


# --- compound expressions built from the forms -----------------------------------------------


def module(text: str) -> str:
    """A forward module written indented inside the table."""
    return textwrap.dedent(text).lstrip("\n")


# (forward module, point): each checked against finite differences.
COMPOUND_CASES = [
    pytest.param(
        """
        import math

        def f(x, y, z):
            a = math.tanh(x * y + 1.0) / (1.0 + z**2)
            return a
        """,
        (0.3, -0.8, 1.4),
        id="tanh-over-square",
    ),
    pytest.param(
        """
        import math

        def f(x, y):
            h = x * y
            h = h * 2
            h = math.exp(h) + h
            return h
        """,
        (0.3, -0.7),
        id="rebinding-h-twice",
    ),
    pytest.param(
        """
        def f(x, y):
            x = x + 1
            z = x * x * y
            return z
        """,
        (0.6, 1.9),
        id="rebinding-a-parameter",
    ),
    pytest.param(
        """
        import math

        def f(x, y):
            x = x * 2
            x = x + y
            out = x * math.cos(x)
            return out
        """,
        (0.6, -0.2),
        id="rebinding-a-parameter-twice",
    ),
    pytest.param(
        """
        import math

        def f(x, y):
            a = math.sin(x)
            b = a * y
            c = a + 2.0
            d = math.exp(a)
            e = b * c + d
            return e
        """,
        (0.5, 1.3),
        id="fan-out-to-three-statements",
    ),
    pytest.param(
        """
        def f(x):
            return x * x
        """,
        (1.7,),
        id="x-times-x",
    ),
    pytest.param(
        """
        def f(x):
            y = x * x * x
            return y
        """,
        (-1.3,),
        id="x-times-x-times-x",
    ),
    pytest.param(
        """
        def f(x, unused, y):
            z = x * y + y
            return z
        """,
        (0.4, 8.0, -1.1),
        id="unused-parameter",
    ),
    pytest.param(
        """
        import math

        def f(x):
            a = math.pi * x**2 + math.e * x - math.tau
            return a
        """,
        (0.8,),
        id="math-constants",
    ),
    pytest.param(
        """
        import math

        EPS = 1e-5

        def f(x, y):
            a = math.log(x * x + EPS) * y
            return a
        """,
        (0.3, 2.5),
        id="module-constant",
    ),
    pytest.param(
        """
        import math

        EPS = 1e-5
        SCALE = 2 * EPS + math.pi

        def f(x):
            a = math.sqrt(x + EPS) * SCALE
            return a
        """,
        (0.9,),
        id="module-constant-from-constants",
    ),
    pytest.param(
        """
        import math

        def f(x):
            s = 1 / (math.exp(-x) + 1)
            return s
        """,
        (0.7,),
        id="sigmoid-written-exp-first",
    ),
    pytest.param(
        """
        import math

        def f(w, x):
            s = 1.0 / (1.0 + math.exp(-(w * x)))
            return s
        """,
        (0.7, -1.9),
        id="sigmoid-of-a-product",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x, y):
            a = np.tanh(x) * np.exp(y) + np.sqrt(x * x + y * y)
            return a
        """,
        (0.4, -0.3),
        id="numpy-alias",
    ),
    pytest.param(
        """
        from math import exp, log

        def f(x, y):
            a = exp(x) * log(y)
            return a
        """,
        (0.4, 2.3),
        id="from-math-import",
    ),
    pytest.param(
        """
        def f(x, y, z):
            a = max(x, y) * abs(z - x) + min(x**2, y)
            return a
        """,
        (0.5, 1.5, -2.0),
        id="piecewise-mix",
    ),
    pytest.param(
        """
        import math

        def f(x, y, z):
            return (x + y) * math.sqrt(z)
        """,
        (0.5, 1.5, 2.0),
        id="return-expression",
    ),
    pytest.param(
        """
        def f(x, y, z):
            a = (x * y) ** (z + 1)
            return a
        """,
        (0.5, 1.5, 0.7),
        id="power-of-expressions",
    ),
    pytest.param(
        """
        import math

        def f(x, y, b):
            a = math.log(x * y, b + 1)
            return a
        """,
        (0.5, 3.0, 2.5),
        id="log-base-of-expressions",
    ),
    pytest.param(
        """
        def f(x, y, z):
            a = x / y / z - x - y - z
            return a
        """,
        (0.5, 1.5, -2.0),
        id="left-associative-chains",
    ),
    pytest.param(
        """
        def f(x, y):
            a = -x * -y - -(x - y) ** 2 + +x
            return a
        """,
        (0.5, 1.5),
        id="unary-operators",
    ),
    pytest.param(
        """
        import math

        def f(x, y):
            h = x
            a = h * y + math.cos(h)
            return a
        """,
        (0.5, 1.5),
        id="plain-alias-of-a-parameter",
    ),
    pytest.param(
        """
        import math

        def f(x, y):
            a = math.tan(x) + math.expm1(y) + math.log1p(x * y)
            b = math.log2(a) - math.log10(a * 3)
            c = math.pow(b + 2, x) * math.fabs(y - 3)
            return c
        """,
        (0.4, 0.9),
        id="many-library-functions",
    ),
    pytest.param(
        """
        import numpy

        def f(x, y):
            a = numpy.square(x) + numpy.power(y, 3) * numpy.maximum(x, y)
            b = numpy.minimum(a, 2.0) * numpy.absolute(x - y) / numpy.log(y)
            return b
        """,
        (0.4, 1.9),
        id="numpy-functions",
    ),
    pytest.param(
        """
        import math

        def f(x, y):
            a = x * y
            b = a + a
            c = b * a - math.exp(b)
            return c
        """,
        (0.3, -0.4),
        id="diamond",
    ),
]


@pytest.mark.parametrize(("source", "point"), COMPOUND_CASES)
def test_compound_expression_matches_finite_differences(source: str, point) -> None:
    assert_gradients_match(module(source), point)


@pytest.mark.parametrize(("source", "point"), COMPOUND_CASES)
def test_compound_output_is_black_stable(source: str, point) -> None:
    out = gradgen.generate(module(source), "forward.py")
    ast.parse(out)
    assert black.format_str(out, mode=black.Mode()) == out


# --- ties and kinks: the sub-gradient rules.py documents, exactly -----------------------------

TIE_CASES = [
    # max/min: a tie sends the whole gradient to the first argument.
    pytest.param("max(x, y)", ("x", "y"), (2.0, 2.0), (1.0, 0.0), id="max-tie"),
    pytest.param("max(x, y)", ("x", "y"), (-0.5, -0.5), (1.0, 0.0), id="max-tie-negative"),
    pytest.param("numpy.maximum(x, y)", ("x", "y"), (2.0, 2.0), (1.0, 0.0), id="np-maximum-tie"),
    pytest.param("min(x, y)", ("x", "y"), (2.0, 2.0), (1.0, 0.0), id="min-tie"),
    pytest.param("min(x, y)", ("x", "y"), (-0.5, -0.5), (1.0, 0.0), id="min-tie-negative"),
    pytest.param("numpy.minimum(x, y)", ("x", "y"), (2.0, 2.0), (1.0, 0.0), id="np-minimum-tie"),
    # away from the tie, the winner takes all
    pytest.param("max(x, y)", ("x", "y"), (3.0, 2.0), (1.0, 0.0), id="max-x-wins"),
    pytest.param("max(x, y)", ("x", "y"), (1.0, 2.0), (0.0, 1.0), id="max-y-wins"),
    pytest.param("min(x, y)", ("x", "y"), (3.0, 2.0), (0.0, 1.0), id="min-y-wins"),
    pytest.param("min(x, y)", ("x", "y"), (1.0, 2.0), (1.0, 0.0), id="min-x-wins"),
    # abs: 0 at 0
    pytest.param("abs(x)", ("x",), (0.0,), 0.0, id="abs-at-zero"),
    pytest.param("math.fabs(x)", ("x",), (0.0,), 0.0, id="fabs-at-zero"),
    pytest.param("numpy.abs(x)", ("x",), (0.0,), 0.0, id="np-abs-at-zero"),
    pytest.param("numpy.absolute(x)", ("x",), (0.0,), 0.0, id="np-absolute-at-zero"),
    pytest.param("abs(x)", ("x",), (-0.0,), 0.0, id="abs-at-minus-zero"),
    pytest.param("abs(x)", ("x",), (2.0,), 1.0, id="abs-positive"),
    pytest.param("abs(x)", ("x",), (-2.0,), -1.0, id="abs-negative"),
]


@pytest.mark.parametrize(("form", "inputs", "point", "expected"), TIE_CASES)
def test_tie_and_kink_gradients_are_exact(form, inputs, point, expected) -> None:
    source = forward_module(form, inputs, assign=True, alias=False)
    _, backward, generated = forward_and_backward(source)
    actual = backward(*point)
    actual = tuple(float(a) for a in actual) if isinstance(actual, tuple) else float(actual)
    assert actual == expected, generated
