"""Every spelling of every rule in ``gradgen.rules.RULES``, checked against finite differences.

The sample points come from ``tests/rule_points.py``: scalar rules have points
(``RULE_POINTS``), array rules have cases (``ARRAY_CASES``). A rule in neither table fails
``test_every_rule_has_sample_points``, so a new rule cannot go untested.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import textwrap
import zlib
from collections.abc import Callable
from typing import Any

import black
import numpy
import pytest

import gradgen
from gradgen.api import backward_functions
from gradgen.parse import parse_module
from gradgen.rules import METHODS, RULES
from rule_points import ARRAY_CASES, RULE_POINTS, ArrayCase

RTOL = 1e-6
ATOL = 1e-8

# --- helpers ------------------------------------------------------------------------------


def forward_module(
    form: str, inputs: tuple[str, ...], *, assign: bool, alias: bool, scipy: str = "import"
) -> str:
    """``def f(<inputs>)`` returning ``form``, directly or through ``out = <form>``; a
    scipy form spelled ``scipy.special.expit`` under ``import scipy.special`` (``scipy``
    "import"), ``expit`` under ``from scipy.special import expit`` and ``norm.logpdf`` under
    ``from scipy.stats import norm`` ("from"), or ``sc.expit``, ``st.norm.logpdf`` ("alias")."""
    imports = "import math\nimport numpy as np\n" if alias else "import math\nimport numpy\n"
    if alias:
        form = form.replace("numpy.", "np.")
    if "scipy." in form:
        imports += _scipy_imports(form, scipy)
        form = _scipy_spelled(form, scipy)
    params = ", ".join(inputs)
    body = f"    out = {form}\n    return out\n" if assign else f"    return {form}\n"
    return f"{imports}\n\ndef f({params}):\n{body}"


SCIPY_CALL = re.compile(r"scipy\.(special|stats)\.(\w+)")


def _scipy_imports(form: str, spelling: str) -> str:
    modules = sorted({m.group(1) for m in SCIPY_CALL.finditer(form)})
    if spelling == "import":
        return "".join(f"import scipy.{module}\n" for module in modules)
    if spelling == "alias":
        aliases = {"special": "sc", "stats": "st"}
        return "".join(f"import scipy.{module} as {aliases[module]}\n" for module in modules)
    names = sorted({(m.group(1), m.group(2)) for m in SCIPY_CALL.finditer(form)})
    return "".join(f"from scipy.{module} import {name}\n" for module, name in names)


def _scipy_spelled(form: str, spelling: str) -> str:
    if spelling == "import":
        return form
    if spelling == "alias":
        return form.replace("scipy.special.", "sc.").replace("scipy.stats.", "st.")
    return form.replace("scipy.special.", "").replace("scipy.stats.", "")


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
    scalar, array = set(RULE_POINTS), set(ARRAY_CASES)
    missing = sorted(rules - scalar - array)
    both = sorted(scalar & array)
    stale = sorted((scalar | array) - rules)
    empty = sorted(name for name, rows in [*RULE_POINTS.items(), *ARRAY_CASES.items()] if not rows)
    assert not (missing or both or stale or empty), (
        f"rules in neither RULE_POINTS nor ARRAY_CASES of tests/rule_points.py: {missing}; "
        f"rules in both tables: {both}; rows for rules that no longer exist: {stale}; "
        f"rows without any point or case: {empty}"
    )


def test_sample_points_have_one_value_per_input() -> None:
    for r in RULES:
        for point in RULE_POINTS.get(r.name, []):
            assert len(point) == len(r.inputs), f"{r.name}: {point} does not match {r.inputs}"


# --- every form, every point, against finite differences ----------------------------------

VARIANTS: dict[str, dict[str, Any]] = {
    "return": {"assign": False, "alias": False},  # return <form>
    "assign": {"assign": True, "alias": False},  # out = <form>; return out
    "np-alias": {"assign": False, "alias": True},  # numpy spelled np
    "np-alias-assign": {"assign": True, "alias": True},
    "scipy-from": {"assign": False, "alias": False, "scipy": "from"},  # from scipy.x import f
    "scipy-alias": {"assign": True, "alias": True, "scipy": "alias"},  # sc.f, st.norm.f
}


def _variants_for(form: str) -> list[str]:
    if "scipy." in form:
        return ["return", "assign", "scipy-from", "scipy-alias"]
    if "numpy." in form:
        return ["return", "assign", "np-alias", "np-alias-assign"]
    return ["return", "assign"]


SCALAR_RULES = [r for r in RULES if r.name in RULE_POINTS]

FORM_CASES = [
    pytest.param(r, form, variant, id=f"{r.name}-{form}-{variant}")
    for r in SCALAR_RULES
    for form in r.form_texts
    for variant in _variants_for(form)
]

POINT_CASES = [
    pytest.param(r, form, variant, point, id=f"{r.name}-{form}-p{i}-{variant}")
    for r in SCALAR_RULES
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


# --- array rules: every case of ARRAY_CASES against finite differences ----------------------
#
# Each case runs four ways: parameters unannotated (gradgen undoes broadcasting at run time
# with its ``_unbroadcast`` helper) or annotated with their shapes (``x: "3, 4"``: written out),
# and the output weighted by a fixed random array C inside the function
# (``return np.sum((<expr>) * C)``, so the upstream gradient of <expr> is not all ones) or
# returned as it is, with an explicit random upstream gradient passed to the backward.

ARRAY_H = 1e-6


def array_values(case: ArrayCase) -> dict[str, Any]:
    """The case's arguments: random float64 arrays (seeded by the expression), magnitudes in
    [0.2, 2] so that no value is near the 0 of a mask; then the labels, as given."""
    rng = numpy.random.default_rng(zlib.crc32(case.expr.encode()))
    values: dict[str, Any] = {}
    for name, shape in case.shapes.items():
        values[name] = rng.uniform(0.2, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    for name, label in case.labels.items():
        values[name] = numpy.array(label)
    return values


def random_like(shape: tuple[int, ...], seed: str) -> Any:
    """A fixed random array of ``shape`` (a float for a scalar)."""
    rng = numpy.random.default_rng(zlib.crc32(seed.encode()))
    return float(rng.normal()) if shape == () else rng.normal(size=shape)


def dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(d) for d in shape) if shape else "()"


def array_module(
    case: ArrayCase, shapes: dict[str, tuple[int, ...]], *, weighted: bool, annotated: bool
) -> str:
    """``def f(<parameters>)`` returning the case's expression, or ``np.sum((expr) * C)``."""
    params = [f'{n}: "{dims(s)}"' if annotated else n for n, s in shapes.items()]
    body = f"np.sum(({case.expr}) * C)" if weighted else case.expr
    imports = "import numpy as np\n" + scipy_imports(case.expr)
    return f"{imports}\n\ndef f({', '.join(params)}):\n    return {body}\n"


# The names array cases spell scipy with, and how a module imports each.
SCIPY_NAMES = {
    "scipy": "import scipy.linalg\nimport scipy.signal\nimport scipy.special\nimport scipy.stats\n",
    "sc": "import scipy.special as sc\n",
    "sl": "import scipy.linalg as sl\n",
    "signal": "from scipy import signal\n",
    "norm": "from scipy.stats import norm\n",
    **{
        name: f"from scipy.stats import {name}\n"
        for name in ("multivariate_normal", "t", "gamma", "poisson", "dirichlet", "chi2")
    },
    **{
        name: f"from scipy.special import {name}\n"
        for name in ("logsumexp", "softmax", "log_softmax", "expit", "xlogy")
    },
}


def scipy_imports(expr: str) -> str:
    """The imports of the scipy names ``expr`` reads (an attribute is no name of its own)."""
    return "".join(
        line for name, line in SCIPY_NAMES.items() if re.search(rf"(?<![\w.]){name}\b", expr)
    )


def scipy_namespace(expr: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(scipy_imports(expr), namespace)
    return namespace


def numeric_gradient(loss: Callable[..., float], args: dict[str, Any], name: str) -> Any:
    """Central differences of ``loss`` with respect to argument ``name``, entry by entry."""
    base = numpy.asarray(args[name], dtype=numpy.float64)
    grad = numpy.zeros(base.shape)
    for index in numpy.ndindex(base.shape):
        value = float(base[index])
        h = ARRAY_H * max(1.0, abs(value))
        up, down = base.copy(), base.copy()
        up[index] = value + h
        down[index] = value - h
        if base.ndim == 0:  # a Python float parameter stays a float
            up, down = float(up), float(down)
        high = loss(**{**args, name: up})
        low = loss(**{**args, name: down})
        grad[index] = (high - low) / ((value + h) - (value - h))
    return grad


def owned_arrays(gradients: dict[str, Any], others: dict[str, Any], generated: str) -> None:
    """Each returned gradient is the caller's own: no memory shared with an argument, the
    upstream gradient or another returned gradient, and writable."""
    arrays = {n: g for n, g in gradients.items() if isinstance(g, numpy.ndarray)}
    for name, grad in arrays.items():
        assert grad.flags.writeable, f"d{name} is read-only\n{generated}"
        for other, value in others.items():
            if isinstance(value, numpy.ndarray):
                assert not numpy.shares_memory(grad, value), (
                    f"d{name} shares memory with {other}\n{generated}"
                )
        for other, value in arrays.items():
            if other != name:
                assert not numpy.shares_memory(grad, value), (
                    f"d{name} shares memory with d{other}\n{generated}"
                )


def check_array_case(case: ArrayCase, *, weighted: bool, annotated: bool) -> None:
    values = array_values(case)
    # the expression's own value
    expr_value = eval(case.expr, {"np": numpy, **scipy_namespace(case.expr)}, dict(values))
    out_shape = numpy.shape(expr_value)
    shapes = {name: numpy.shape(value) for name, value in values.items()}
    if weighted:
        values["C"] = random_like(out_shape, "C " + case.expr)
        shapes["C"] = out_shape
    source = array_module(case, shapes, weighted=weighted, annotated=annotated)
    forward, backward, generated = forward_and_backward(source)
    context = f"\nforward:\n{source}\ngenerated:\n{generated}"
    assert black.format_str(generated, mode=black.Mode()) == generated
    assert "numpy." not in generated, f"the module spells numpy np{context}"

    upstream = None if weighted else random_like(out_shape, "G " + case.expr)
    if weighted:

        def loss(**args: Any) -> float:
            return float(forward(**args))

    else:

        def loss(**args: Any) -> float:
            return float(numpy.sum(forward(**args) * upstream))

    before = {name: numpy.copy(value) for name, value in values.items()}
    upstream_before = numpy.copy(upstream)
    signature = inspect.signature(backward)
    upstream_param = list(signature.parameters.values())[-1]
    if weighted:
        assert upstream_param.default == 1.0, context  # the result is a scalar
        result = backward(*values.values())
    else:
        if annotated and case.explicit and out_shape != ():
            # A result known to be an array has no default upstream gradient to forget.
            assert upstream_param.default is inspect.Parameter.empty, context
        result = backward(*values.values(), upstream)
    gradients = dict(zip(values, as_tuple(result, len(values)), strict=True))

    for name, value in values.items():
        numpy.testing.assert_array_equal(value, before[name], err_msg=f"{name} modified{context}")
    if not weighted:
        numpy.testing.assert_array_equal(
            upstream, upstream_before, err_msg=f"upstream gradient modified{context}"
        )
    for name in case.labels:
        assert gradients[name] is None, f"label {name}: {gradients[name]!r}{context}"
    for name in values:
        if name in case.labels:
            continue
        grad = gradients[name]
        assert numpy.shape(grad) == shapes[name], (
            f"d{name} has shape {numpy.shape(grad)}, {name} has {shapes[name]}{context}"
        )
        assert numpy.asarray(grad).dtype == numpy.float64, f"d{name}: {grad!r}{context}"
        numpy.testing.assert_allclose(
            grad,
            numeric_gradient(loss, values, name),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"d{name}{context}",
        )
    arguments = dict(values)
    if upstream is not None:
        arguments["the upstream gradient"] = upstream
    owned_arrays(gradients, arguments, context)
    if annotated and case.explicit:
        assert "_unbroadcast" not in generated, f"shapes are all known{context}"
        assert "\ndef _" not in generated, f"shapes are all known: no helper needed{context}"


def _case_id(rule: str, case: ArrayCase) -> str:
    """``sum-np.sum(x, axis=0)``; with the shapes when another case has the same expression."""
    twins = [c for c in ARRAY_CASES[rule] if c.expr == case.expr]
    if len(twins) == 1:
        return f"{rule}-{case.expr}"
    values = array_values(case)
    shapes = ",".join(
        f"{n}{'x'.join(map(str, numpy.shape(v))) or '-0d'}" for n, v in values.items()
    )
    return f"{rule}-{case.expr}-{shapes}"


ARRAY_CASE_PARAMS = [
    pytest.param(case, id=_case_id(rule, case))
    for rule, cases in ARRAY_CASES.items()
    for case in cases
]
ARRAY_WAYS = [
    pytest.param(weighted, annotated, id=f"{'C' if weighted else 'upstream'}-{a_id}")
    for weighted in (True, False)
    for annotated, a_id in ((False, "plain"), (True, "annotated"))
]


@pytest.mark.parametrize(("weighted", "annotated"), ARRAY_WAYS)
@pytest.mark.parametrize("case", ARRAY_CASE_PARAMS)
def test_array_rule_gradient_matches_finite_differences(case, weighted, annotated) -> None:
    check_array_case(case, weighted=weighted, annotated=annotated)


@pytest.mark.parametrize("rule_name", list(ARRAY_CASES))
def test_array_cases_use_their_rule(rule_name: str) -> None:
    """Every case of a rule is differentiated by that rule (not by another one)."""
    for case in ARRAY_CASES[rule_name]:
        params = ", ".join([*case.shapes, *case.labels])
        imports = "import numpy as np\n" + scipy_imports(case.expr)
        source = f"{imports}\n\ndef f({params}):\n    return {case.expr}\n"
        (backward,) = backward_functions(parse_module(source, "forward.py"))
        used = {s.rule.name for s in backward.staged.stages if s.rule is not None}
        assert rule_name in used, f"{case.expr}: staged with {sorted(used)}"


def _spellings(form: str) -> list[str]:
    """How a case spells a form: ``np.sum(`` and ``.sum(`` for ``numpy.sum(x, ...)``."""
    if form.startswith("numpy."):
        name = form[len("numpy.") : form.index("(")]
        found = [f"np.{name}("]
        methods = {function: method for method, function in METHODS.items()}
        if name in methods:
            found.append(f".{methods[name]}(")
        return found
    if form.startswith("scipy."):  # spelled in any of the ways the module imports it
        return [form[form.rindex(".", 0, form.index("(")) + 1 : form.index("(") + 1]]
    return {"x @ y": [" @ "], "x.T": [".T"], "x[i]": ["["]}[form]


@pytest.mark.parametrize("rule_name", list(ARRAY_CASES))
def test_array_cases_cover_every_spelling(rule_name: str) -> None:
    """Each form of an array rule, and its method spelling, appears in some case."""
    (rule,) = [r for r in RULES if r.name == rule_name]
    exprs = [case.expr for case in ARRAY_CASES[rule_name]]
    for form in rule.form_texts:
        for spelling in _spellings(form):
            assert any(spelling in e for e in exprs), f"{rule_name}: no case spells {spelling}"
    methods = {"matmul": ("np.matmul(",), "dot": ("np.dot(", ".dot(")}
    for other in methods.get(rule_name, ()):
        assert any(other in e for e in exprs), f"{rule_name}: no case spells {other}"


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
    # fmax/fmin: a tie goes to the first, as for max/min; a nan loses to a number, as numpy
    # takes the number
    pytest.param("numpy.fmax(x, y)", ("x", "y"), (2.0, 2.0), (1.0, 0.0), id="fmax-tie"),
    pytest.param("numpy.fmin(x, y)", ("x", "y"), (2.0, 2.0), (1.0, 0.0), id="fmin-tie"),
    pytest.param("numpy.fmax(x, y)", ("x", "y"), (math.nan, 1.0), (0.0, 1.0), id="fmax-x-nan"),
    pytest.param("numpy.fmax(x, y)", ("x", "y"), (1.0, math.nan), (1.0, 0.0), id="fmax-y-nan"),
    pytest.param("numpy.fmin(x, y)", ("x", "y"), (math.nan, 1.0), (0.0, 1.0), id="fmin-x-nan"),
    pytest.param("numpy.fmin(x, y)", ("x", "y"), (1.0, math.nan), (1.0, 0.0), id="fmin-y-nan"),
    # sinc is smooth at 0, its derivative 0 there (no 0 / 0)
    pytest.param("numpy.sinc(x)", ("x",), (0.0,), 0.0, id="sinc-at-zero"),
    # nan_to_num: what was not a number gets none
    pytest.param("numpy.nan_to_num(x)", ("x",), (math.nan,), 0.0, id="nan_to_num-nan"),
    pytest.param("numpy.nan_to_num(x)", ("x",), (math.inf,), 0.0, id="nan_to_num-inf"),
    pytest.param("numpy.nan_to_num(x)", ("x",), (-2.0,), 1.0, id="nan_to_num-number"),
]


@pytest.mark.parametrize(("form", "inputs", "point", "expected"), TIE_CASES)
def test_tie_and_kink_gradients_are_exact(form, inputs, point, expected) -> None:
    source = forward_module(form, inputs, assign=True, alias=False)
    _, backward, generated = forward_and_backward(source)
    actual = backward(*point)
    actual = tuple(float(a) for a in actual) if isinstance(actual, tuple) else float(actual)
    assert actual == expected, generated


# --- operations with several results, unpacked -------------------------------------------------

SEVERAL_RESULTS = [
    pytest.param(
        """
        import numpy as np

        def f(a, x):
            sign, logdet = np.linalg.slogdet(a @ a.T + 2 * np.eye(3))
            return logdet * np.sum(x) + sign
        """,
        {"a": (3, 4), "x": (2,)},
        id="slogdet-unpacked",
    ),
    pytest.param(
        """
        import numpy as np

        def f(a):
            w, v = np.linalg.eigh(a @ a.T + 2 * np.eye(3))
            return np.sum(w * w) + np.sum(v[:, 0] ** 2 * np.arange(3.0)) + np.sum(v[0] ** 3)
        """,
        {"a": (3, 4)},
        id="eigh-both-results",
    ),
    pytest.param(
        """
        import numpy as np

        def f(a):
            w, v = np.linalg.eigh(a @ a.T + 2 * np.eye(3))
            return np.sum(v * v * np.arange(3.0))
        """,
        {"a": (3, 4)},
        id="eigh-vectors-only",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x):
            a, b = np.split(x, 2)
            return np.sum(a * a) + 3.0 * np.sum(b)
        """,
        {"x": (4,)},
        id="split-unpacked",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x, w):
            a, b, c = np.split(x, [2, 5], axis=1)
            return np.sum(a * w) + np.sum(np.tanh(c))
        """,
        {"x": (3, 7), "w": (3, 2)},
        id="split-indices-a-piece-unread",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x):
            parts = np.array_split(x, 3)
            return np.sum(parts[1] * parts[2]) + np.sum(parts[0] ** 3) + np.sum(parts[-1])
        """,
        {"x": (7,)},
        id="array_split-bound-to-a-list",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x):
            parts = np.hsplit(x, 2)
            left, right = parts
            return np.sum(np.stack(parts) ** 2) + np.sum(left * right * len(parts))
        """,
        {"x": (3, 4)},
        id="hsplit-list-stacked-and-unpacked",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x):
            top, bottom = np.vsplit(x, 2)
            front, back = np.dsplit(x[:, :, None] * x[:, None, :], [2])
            return np.sum(top * bottom) + np.sum(front ** 2) - np.sum(np.sin(back))
        """,
        {"x": (4, 3)},
        id="vsplit-dsplit",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x):
            a, b = np.split(x, 2)
            total = 0.0
            for t in range(3):
                a = a * b + t
                total = total + np.sum(a)
            return total
        """,
        {"x": (4,)},
        id="split-pieces-in-a-loop",
    ),
    pytest.param(
        """
        import numpy as np

        def f(x):
            sign, logdet = np.linalg.slogdet(np.eye(3) * 2.0)
            a, b = np.split(np.arange(4.0), 2)
            parts = np.split(np.arange(6.0), 3)
            return np.sum(x) * logdet * sign + np.sum(x[:2] * b * parts[2])
        """,
        {"x": (3,)},
        # bound by a stage of their own all the same (the results were never bound: a
        # NameError in the backward)
        id="several-results-of-data",
    ),
]


@pytest.mark.parametrize(("source", "shapes"), SEVERAL_RESULTS)
def test_several_results_unpacked_match_finite_differences(source: str, shapes: dict) -> None:
    forward, backward, generated = forward_and_backward(module(source))
    rng = numpy.random.default_rng(7)
    args = {name: rng.uniform(0.2, 2.0, size=shape) for name, shape in shapes.items()}
    gradients = as_tuple(backward(**args), len(args))
    for name, grad in zip(args, gradients, strict=True):
        expected = numeric_gradient(lambda **a: float(forward(**a)), args, name)
        numpy.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL, err_msg=generated)


def test_a_split_gradient_is_the_pieces_gradients_joined_with_zeros_for_the_others() -> None:
    """np.split's adjoint as a person writes it: the pieces' gradients joined back along the
    axis, zeros of a piece's shape where no gradient reaches it; the joined array is the
    backward's own, so a later contribution is added into it in place."""
    source = module(
        """
        import numpy as np

        def f(x, w):
            s = np.sum(x * x)
            a, b, c = np.split(x, [2, 5], axis=1)
            return np.sum(a * w) + np.sum(np.tanh(c)) + s
        """
    )
    forward, backward, generated = forward_and_backward(source)
    assert "dx = np.concatenate([da, np.zeros_like(b), dc], axis=1)" in generated
    assert "dx += " in generated and "dx = dx + " not in generated
    rng = numpy.random.default_rng(3)
    args = {"x": rng.normal(size=(3, 7)), "w": rng.normal(size=(3, 2))}
    gradients = as_tuple(backward(**args), 2)
    for name, grad in zip(args, gradients, strict=True):
        expected = numeric_gradient(lambda **a: float(forward(**a)), args, name)
        numpy.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL, err_msg=generated)


@pytest.mark.parametrize("annotation", ["", ': "()"'], ids=["unknown-shape", "known-number"])
def test_multivariate_normal_with_a_number_for_cov_fails_when_run(annotation: str) -> None:
    """scipy reads a number cov as cov * I; the backward takes a matrix or a diagonal (1-D)
    and says so when it meets a number, never giving a wrong gradient."""
    source = (
        "import numpy as np\nfrom scipy.stats import multivariate_normal\n\n\n"
        f"def f(x, m, s{annotation}):\n"
        "    return multivariate_normal.logpdf(x, m, s * s + 0.5)\n"
    )
    _, backward, _ = forward_and_backward(source)
    x, m = numpy.array([[0.3, -0.5], [1.2, 0.1]]), numpy.array([0.2, -0.1])
    with pytest.raises(ValueError, match="cov as a matrix or its diagonal"):
        backward(x, m, 0.7, numpy.ones(2))


def test_lowering_tries_every_form_an_expression_may_match() -> None:
    # The stager tries only the forms whose top (a call of which function, which operator)
    # is the expression's: a form that matches must never be left out, nor the order change.
    from gradgen import stages
    from gradgen.expr import Const, Name

    expressions = [form for _, form in stages._PRIORITY] + [Name("x"), Const("2.0", 2.0)]
    for expr in expressions:
        every = [(r.name, f) for r, f in stages._PRIORITY if stages._match(f, expr, {})]
        tried = [(r.name, f) for r, f in stages._candidates(expr) if stages._match(f, expr, {})]
        assert tried == every, expr
