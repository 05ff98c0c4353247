"""Constants for gradients: a call gradgen has no rule for is computed as written and refused
only where a gradient would have to flow through it."""

from __future__ import annotations

import textwrap
import zlib
from collections.abc import Callable
from typing import Any

import numpy
import pytest

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


def rng(seed: str) -> numpy.random.Generator:
    return numpy.random.default_rng(zlib.crc32(seed.encode()))


def generated(source: str, wrt: dict[str, list[str]] | None = None) -> str:
    return compile_source(source, "forward.py", Options(wrt=wrt)).text


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


def test_poisson_regression_without_wrt_is_refused_at_the_call() -> None:
    # The refusal needs no scipy: gradgen reads the source and runs nothing.
    with pytest.raises(GradgenError) as caught:
        generated(POISSON)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.line, diagnostic.column) == (7, 43)
    assert diagnostic.message == (
        "'gammaln' is not an operation gradgen can differentiate; its argument 'y + 1' needs "
        "a gradient here, from 'y' (leave a parameter that is data out of wrt)"
    )
    assert caught.value.render().startswith("forward.py:7:43: error: 'gammaln' is not")


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


def test_random_draws_are_still_refused() -> None:
    source = "import numpy as np\n\n\ndef f(x):\n    return x * np.random.randn(3)\n"
    with pytest.raises(GradgenError, match="random numbers are not supported"):
        generated(source)
