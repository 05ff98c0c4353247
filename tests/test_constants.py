"""Constants for gradients: a call gradgen has no rule for is computed as written and refused
only where a gradient would have to flow through it; ``gradgen.stop_gradient`` marks a value
as constant, and the generated code computes it without the mark."""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy
import pytest

import gradgen
from gradgen.api import Options, compile_source
from gradgen.errors import GradgenError
from test_rules import ATOL, RTOL, numeric_gradient, run_module

POISSON = """\
import numpy as np
from scipy.special import gammaln


def poisson_nll(X, y, beta):
    eta = X @ beta
    return np.sum(np.exp(eta) - y * eta + gammaln(y + 1))
"""

SOFTMAX = """\
import numpy as np
{imports}


def softmax(x):
    m = {stop}(np.max(x, axis=1, keepdims=True))
    e = np.exp(x - m)
    return e / np.sum(e, axis=1, keepdims=True)
"""

# Every common way to import gradgen's mark, and how the forward then spells it.
STOP_GRADIENT_SPELLINGS = [
    pytest.param("import gradgen", "gradgen.stop_gradient", id="import-gradgen"),
    pytest.param("import gradgen as gg", "gg.stop_gradient", id="import-gradgen-as"),
    pytest.param("from gradgen import stop_gradient", "stop_gradient", id="from-gradgen"),
    pytest.param("from gradgen import stop_gradient as sg", "sg", id="from-gradgen-as"),
]


def rng(seed: str) -> numpy.random.Generator:
    return numpy.random.default_rng(zlib.crc32(seed.encode()))


def generated(source: str, wrt: dict[str, list[str]] | None = None) -> str:
    return compile_source(source, "forward.py", Options(wrt=wrt, value_and_grad=True)).text


def code_lines(text: str) -> list[str]:
    """The lines of generated ``text`` that run: no comments, no docstrings."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", '"""'))
    ]


def assert_matches_central_differences(
    forward: Callable[..., Any],
    gradients: dict[str, Any],
    args: dict[str, Any],
    upstream: Any = None,
) -> None:
    """Each of ``gradients`` has its argument's shape and equals central differences of
    ``sum(forward(**args) * upstream)``."""

    def loss(**values: Any) -> float:
        out = forward(**values)
        return float(numpy.sum(out if upstream is None else out * upstream))

    for name, grad in gradients.items():
        assert numpy.shape(grad) == numpy.shape(args[name]), name
        numeric = numeric_gradient(loss, args, name)
        numpy.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL, err_msg=name)


# --- a call with no rule, of values with no gradient ------------------------------------------


def test_poisson_regression_with_wrt_beta_matches_central_differences() -> None:
    pytest.importorskip("scipy.special")
    text = generated(POISSON, {"poisson_nll": ["beta"]})
    assert "from scipy.special import gammaln" in text.splitlines()
    forward = run_module(POISSON, "forward.py")["poisson_nll"]
    namespace = run_module(text, "generated.py")
    generator = rng("poisson")
    X = generator.normal(size=(6, 3)) * 0.5
    y = generator.integers(0, 5, size=6).astype(float)
    beta = generator.normal(size=3) * 0.5
    dbeta = namespace["poisson_nll_backward"](X, y, beta)

    def nll(beta: Any) -> float:
        return float(forward(X, y, beta))

    assert_matches_central_differences(nll, {"beta": dbeta}, {"beta": beta})
    value, dbeta_again = namespace["poisson_nll_value_and_grad"](X, y, beta)
    assert value == pytest.approx(forward(X, y, beta))
    numpy.testing.assert_array_equal(dbeta_again, dbeta)


def test_poisson_regression_without_wrt_differentiates_the_counts_through_gammaln() -> None:
    # gammaln has a rule (its derivative is digamma): without wrt, y gets its gradient too.
    text = generated(POISSON)
    forward = run_module(POISSON, "forward.py")["poisson_nll"]
    namespace = run_module(text, "generated.py")
    generator = rng("poisson counts")
    X = generator.normal(size=(6, 3)) * 0.5
    y = generator.uniform(0.5, 4.0, size=6)
    beta = generator.normal(size=3) * 0.5
    dX, dy, dbeta = namespace["poisson_nll_backward"](X, y, beta)
    assert "scipy.special.digamma(" in text, text  # imported for the backward

    def nll(X: Any, y: Any, beta: Any) -> float:
        return float(forward(X, y, beta))

    assert_matches_central_differences(
        nll, {"X": dX, "y": dy, "beta": dbeta}, {"X": X, "y": y, "beta": beta}
    )


def test_scalar_poisson_log_likelihood_with_a_math_function_gradgen_has_no_rule_for() -> None:
    source = textwrap.dedent(
        """\
        import math


        def log_likelihood(k, rate):
            return k * math.log(rate) - rate - math.lgamma(k + 1)
        """
    )
    text = generated(source, {"log_likelihood": ["rate"]})
    forward = run_module(source)["log_likelihood"]
    backward = run_module(text)["log_likelihood_backward"]
    for k, rate in [(0.0, 0.5), (3.0, 2.5), (7.0, 4.0)]:
        h = 1e-6
        numeric = (forward(k, rate + h) - forward(k, rate - h)) / (2 * h)
        assert backward(k, rate) == pytest.approx(numeric, rel=1e-6)


def test_a_call_with_no_rule_of_constants_is_an_array_of_constants() -> None:
    # np.array is no operation of the table: a constant, of a shape gradgen does not assume.
    source = (
        "import numpy as np\n\n\ndef f(x):\n    w = np.array([1.0, 2.0, 3.0])\n    return w * x\n"
    )
    forward = run_module(source)["f"]
    backward = run_module(generated(source))["f_backward"]
    upstream = numpy.array([0.5, -1.0, 2.0])
    for x in (1.5, numpy.array([0.3, 0.7, -0.2]), numpy.full((2, 1), 0.4)):
        out_upstream = numpy.broadcast_to(upstream, numpy.shape(forward(x)))
        dx = backward(x, out_upstream)
        assert_matches_central_differences(forward, {"x": dx}, {"x": x}, out_upstream)


def test_a_call_with_no_rule_off_the_gradient_path_is_not_refused() -> None:
    # gammaln(y) only chooses entries (a mask), and gammaln(len(x)) is of a number: no
    # gradient flows through either, although x and y are differentiated.
    source = textwrap.dedent(
        """\
        import numpy as np
        from scipy.special import gammaln


        def f(x, y):
            z = np.where(gammaln(y) > 0, x, 0.0)
            return np.sum(z) * gammaln(len(x))
        """
    )
    text = generated(source)
    assert "    return dx, None" in text.splitlines()  # y only chose entries: no gradient


def test_a_submodule_imported_whole_is_imported_by_the_generated_module() -> None:
    source = "import numpy as np\nimport scipy.special\n\n\ndef f(x, y):\n"
    source += "    return np.sum(x * scipy.special.gammaln(y))\n"
    text = generated(source, {"f": ["x"]})
    assert "import scipy.special" in text.splitlines()
    assert "import scipy" not in text.splitlines()  # `import scipy.special` binds it


def test_a_draw_is_a_value_with_no_gradient_and_one_of_a_parameter_is_refused() -> None:
    """Unlike a library function with no rule, a draw is never written inline: a function
    that draws has F_value_and_grad and no recomputing F_backward (tests/test_random_draws.py)."""
    source = "import numpy as np\n\n\ndef f(x):\n    return x * np.random.randn(3)\n"
    text = generated(source)
    assert "def f_value_and_grad(" in text and "def f_backward(" not in text
    source = "import numpy as np\n\n\ndef f(x):\n    return np.random.normal(x)\n"
    with pytest.raises(GradgenError, match="draws random numbers, and no gradient flows"):
        generated(source)


# --- stop_gradient ----------------------------------------------------------------------------


def test_stop_gradient_is_the_identity_when_it_runs() -> None:
    value = numpy.arange(3.0)
    assert gradgen.stop_gradient(value) is value
    assert gradgen.stop_gradient(2.5) == 2.5


@pytest.mark.parametrize(("imports", "stop"), STOP_GRADIENT_SPELLINGS)
def test_softmax_with_a_stopped_max_shift_matches_central_differences(
    imports: str, stop: str
) -> None:
    source = SOFTMAX.format(imports=imports, stop=stop)
    text = generated(source)
    code = code_lines(text)
    assert "m = np.max(x, axis=1, keepdims=True)" in [line.strip() for line in code]
    assert not [line for line in code if "gradgen" in line or "stop_gradient" in line]
    assert not [line for line in code if "dm" in line.split()]  # m gets no adjoint
    forward = run_module(source, "forward.py")["softmax"]
    backward = run_module(text, "generated.py")["softmax_backward"]
    generator = rng("softmax")
    x = generator.normal(size=(3, 4)) * 3.0
    upstream = generator.normal(size=(3, 4))
    assert_matches_central_differences(forward, {"x": backward(x, upstream)}, {"x": x}, upstream)


def test_stop_gradient_of_a_parameter_keeps_its_gradient_out(
    load: Callable[[str], ModuleType],
) -> None:
    # d/dx of x * stop_gradient(x) is the stopped value alone: x, not 2x.
    module = load(
        """\
        import gradgen


        @gradgen.differentiable
        def f(x):
            return x * gradgen.stop_gradient(x)
        """
    )
    assert module.f(3.0) == 9.0
    assert module.f.backward(3.0) == 3.0
    assert "gradgen" not in "\n".join(code_lines(module.f.backward_source))


def test_the_decorator_differentiates_a_softmax_with_a_stopped_max_shift(
    load: Callable[[str], ModuleType],
) -> None:
    module = load(
        "import gradgen\n"
        + SOFTMAX.format(imports="", stop="gradgen.stop_gradient").replace(
            "def softmax", "@gradgen.differentiable\ndef softmax"
        )
    )
    generator = rng("decorated softmax")
    x = generator.normal(size=(2, 5)) * 3.0
    upstream = generator.normal(size=(2, 5))
    dx = module.softmax.backward(x, upstream)
    assert_matches_central_differences(module.softmax, {"x": dx}, {"x": x}, upstream)


def test_a_parenthesized_variable_keeps_its_gradient() -> None:
    """``return (h) * C``: the parentheses around a variable operand once hid it from the
    reverse pass, and dx came back None (found by the property programs that draw)."""
    source = "import numpy as np\n\nC = 2.0\n\n\ndef f(x):\n    h = np.exp(x)\n    return (h) * C\n"
    namespace: dict[str, object] = {}
    exec(generated(source), namespace)
    x = numpy.array([0.1, -0.3])
    gradient = namespace["f_backward"](x, numpy.ones(2))  # type: ignore[operator]
    numpy.testing.assert_allclose(gradient, 2.0 * numpy.exp(x))
