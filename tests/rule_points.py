"""THE tests' table: sample points for every rule of ``gradgen/rules.py``.

Adding a rule to ``gen/gradgen/rules.py`` needs a row here too: ``test_rules.py`` fails while
a rule is in neither table (or in both), and checks every rule against finite differences.

Scalar rules are in ``RULE_POINTS``: a point gives one value per input, in ``rule.inputs``
order, and every spelling (form) of the rule is checked at each point.

Array rules (reductions, shapes, indexing, ...) take literal arguments that are not
differentiated (axis, keepdims, ddof, shapes, conditions, indices), so a point is not enough:
they are in ``ARRAY_CASES``, one forward expression per case over named array parameters
with their shapes. The parameters' values are drawn at random (seeded by the expression);
``labels`` are parameters with fixed values that get no gradient (integer indices, boolean
masks).

Points and values lie inside the rule's domain and away from kinks and ties (the behaviour at
a kink is tested separately, exactly), so that central finite differences are accurate there:
random values have magnitudes between 0.2 and 2 (away from the 0 of masks and ReLUs), and
clip bounds are +-0.5 or +-0.7, reached by no value at random.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import scipy

# scipy.linalg takes stacks of matrices (batches) since scipy 1.16, which needs Python 3.11:
# the cases of stacks are tried where it does.
SCIPY_BATCHES = tuple(int(p) for p in scipy.__version__.split(".")[:2]) >= (1, 16)

RULE_POINTS: dict[str, list[tuple[float, ...]]] = {
    # fused gates
    "sigmoid": [(0.3,), (-1.7,), (2.4,), (0.0,)],
    # arithmetic operators
    "add": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],
    "sub": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],
    "mul_self": [(1.5,), (-0.75,), (0.0,), (3.2,)],
    "mul": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],
    "div": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],  # y != 0
    "pow": [(1.3, 2.0), (0.6, -1.5), (2.2, 0.5), (1.7, 3.3)],  # x > 0
    "neg": [(1.25,), (-0.4,), (3.0,)],
    "pos": [(1.25,), (-0.4,), (3.0,)],
    "float": [(1.25,), (-0.4,), (3.0,)],
    # exponentials and logarithms
    "exp": [(0.3,), (-1.2,), (2.0,)],
    "expm1": [(0.3,), (-1.2,), (1e-3,)],
    "log": [(0.4,), (1.7,), (12.5,)],  # x > 0
    "log_base": [(0.4, 2.0), (7.5, 10.0), (3.1, 0.5), (1.7, 2.718281828459045)],  # b != 1
    "log1p": [(0.4,), (-0.6,), (5.0,)],  # x > -1
    "log2": [(0.4,), (1.7,), (12.5,)],
    "log10": [(0.4,), (1.7,), (12.5,)],
    "sqrt": [(0.25,), (2.0,), (9.5,)],  # x > 0
    "square": [(1.5,), (-0.7,), (3.2,)],
    # trigonometric and hyperbolic
    "sin": [(0.3,), (-1.2,), (2.5,)],
    "cos": [(0.3,), (-1.2,), (2.5,)],
    "tan": [(0.3,), (-1.0,), (1.2,)],  # away from pi/2
    "tanh": [(0.3,), (-1.2,), (2.0,)],
    "arctan": [(0.3,), (-1.2,), (2.5,)],
    # more elementwise functions
    "arctan2": [(0.3, 1.2), (-1.2, 0.5), (2.5, -1.5), (-0.4, -2.0)],  # away from y < 0 = x
    "arcsin": [(0.3,), (-0.8,), (0.95,)],  # inside (-1, 1)
    "arccos": [(0.3,), (-0.8,), (0.95,)],
    "sinh": [(0.3,), (-1.2,), (2.5,)],
    "cosh": [(0.3,), (-1.2,), (2.5,)],
    "arcsinh": [(0.3,), (-1.2,), (4.5,)],
    "arccosh": [(1.3,), (2.0,), (7.5,)],  # x > 1
    "arctanh": [(0.3,), (-0.8,), (0.95,)],  # inside (-1, 1)
    "exp2": [(0.3,), (-1.2,), (3.5,)],
    "logaddexp": [(0.3, 1.2), (-1.2, -0.5), (30.0, -2.0), (-700.0, -701.0)],
    "logaddexp2": [(0.3, 1.2), (-1.2, -0.5), (30.0, -2.0), (-1000.0, -1001.5)],
    "hypot": [(0.3, 1.2), (-1.2, 0.5), (3.0, -4.0)],  # away from (0, 0)
    "sinc": [(0.3,), (-1.2,), (2.5,), (0.01,), (-0.019,), (0.021,), (1e-6,), (0.0,)],
    "reciprocal": [(0.3,), (-1.2,), (2.5,)],  # x != 0
    "cbrt": [(0.3,), (-1.2,), (8.0,)],  # x != 0
    "deg2rad": [(30.0,), (-120.0,), (0.5,)],
    "rad2deg": [(0.3,), (-1.2,), (2.5,)],
    "fmax": [(1.5, -0.5), (-0.5, 1.5), (2.0, 1.0), (-3.0, -1.0)],  # never a tie
    "fmin": [(1.5, -0.5), (-0.5, 1.5), (2.0, 1.0), (-3.0, -1.0)],
    "mod": [(5.3, 2.0), (-5.3, 2.0), (5.3, -2.0), (-0.7, -1.9), (0.4, 1.5)],  # x / y off whole
    "fmod": [(5.3, 2.0), (-5.3, 2.0), (5.3, -2.0), (-0.7, -1.9), (0.4, 1.5)],
    "erf": [(0.3,), (-1.2,), (2.5,)],
    "erfc": [(0.3,), (-1.2,), (2.5,)],
    "nan_to_num": [(0.3,), (-1.2,), (2.5,)],
    "lgamma": [(0.3,), (1.5,), (4.2,), (25.0,), (-0.5,), (-2.7,)],  # not 0, -1, -2, ...
    "gamma": [(0.3,), (1.5,), (4.2,), (-0.5,), (-2.7,)],
    # piecewise: never at a kink or a tie
    "abs": [(1.5,), (-0.7,), (3.0,)],
    "max": [(1.5, -0.5), (-0.5, 1.5), (2.0, 1.0), (-3.0, -1.0)],
    "min": [(1.5, -0.5), (-0.5, 1.5), (2.0, 1.0), (-3.0, -1.0)],
    # scipy.special
    "expit": [(0.3,), (-1.7,), (2.4,), (0.0,)],
    "logit": [(0.3,), (0.75,), (0.05,)],  # 0 < x < 1
    "special_erf": [(0.3,), (-1.2,), (2.0,)],
    "special_erfc": [(0.3,), (-1.2,), (2.0,)],
    "erfinv": [(0.3,), (-0.8,), (0.95,)],  # -1 < x < 1
    "gammaln": [(0.4,), (2.5,), (11.0,), (-1.5,)],  # log |gamma(x)| off the poles
    "digamma": [(0.4,), (2.5,), (11.0,), (-1.5,)],
    "special_gamma": [(0.4,), (2.5,), (4.2,), (-1.5,)],
    "rgamma": [(0.4,), (2.5,), (4.2,), (-1.5,)],
    "erfcinv": [(0.3,), (1.2,), (1.9,)],  # 0 < x < 2
    "i0": [(0.3,), (-1.2,), (2.5,), (0.0,)],
    "i1": [(0.3,), (-1.2,), (2.5,), (0.0,)],
    "j0": [(0.3,), (-1.2,), (2.5,), (7.0,)],
    "j1": [(0.3,), (-1.2,), (2.5,), (0.0,)],
    "y0": [(0.3,), (1.2,), (2.5,), (7.0,)],  # x > 0
    "y1": [(0.3,), (1.2,), (2.5,), (7.0,)],
    "beta": [(0.4, 2.5), (1.5, 1.5), (3.0, 0.7)],
    "betaln": [(0.4, 2.5), (1.5, 1.5), (3.0, 0.7)],
    "xlogy": [(1.5, 0.7), (-0.75, 3.0), (0.2, 12.0)],  # y > 0
    "xlog1py": [(1.5, 0.7), (-0.75, -0.5), (0.2, 12.0)],  # y > -1
    "entr": [(0.4,), (1.7,), (0.05,)],  # x > 0
    "ndtr": [(0.3,), (-1.7,), (2.4,)],
    "log_ndtr": [(0.3,), (-1.7,), (2.4,), (-20.0,)],  # far in the lower tail too
    # scipy.stats
    "beta_logpdf": [(0.3, 2.0, 3.0), (0.7, 0.5, 1.5), (0.5, 1.2, 0.8)],  # 0 < x < 1
    "beta_pdf": [(0.3, 2.0, 3.0), (0.7, 0.5, 1.5), (0.5, 1.2, 0.8)],
}


@dataclass(frozen=True)
class ArrayCase:
    """``expr`` over the parameters ``shapes`` names (float64 arrays drawn at random) and
    ``labels`` (fixed values, no gradient: integer indices, boolean masks)."""

    expr: str
    shapes: dict[str, tuple[int, ...]]
    labels: dict[str, list] = field(default_factory=dict)
    # With every parameter annotated, gradgen knows every shape and writes the unbroadcasting
    # out (no ``_unbroadcast`` helper). False where it cannot: results of indexing, reshapes,
    # concatenation are of unknown shape.
    explicit: bool = True


def case(expr: str, explicit: bool = True, labels: dict | None = None, **shapes) -> ArrayCase:
    return ArrayCase(expr, shapes, labels or {}, explicit)


M = (3, 4)  # a small matrix
T = (2, 3, 4)  # a small 3-D array
# A 0-d array: numpy lets sum, max and min (not mean, var or std) reduce it over axis 0 or -1,
# which leaves it as it is; its gradient must be 0-d too.
ZERO_D = ()

ARRAY_CASES: dict[str, list[ArrayCase]] = {
    # --- elementwise on arrays, with masks ------------------------------------------------
    "where": [
        case("np.where(x > 0, x, y)", x=M, y=M),
        case("np.where(m, x, y)", x=M, y=M, labels={"m": [True, False, False, True]}),
        case("np.where(m, x, y)", x=(4,), y=M, labels={"m": [[True], [False], [True]]}),
        # the condition broadcasts x and y
        case(
            "np.where(m, x, y)",
            x=(4,),
            y=(4,),
            labels={"m": [[True, False] * 2, [False] * 4, [True] * 4]},
        ),
        case("np.where(x > y, x, y)", x=M, y=(4,)),
        case("np.where(x > 0, x, 0.0)", x=M),
        case("np.where(x < 0, 1.0, x * x)", x=M),
    ],
    "clip": [
        case("np.clip(x, -0.5, 0.5)", x=M),
        case("np.clip(x, -0.5, None)", x=M),
        case("np.clip(x, None, 0.7)", x=M),
        case("np.clip(x, a_min=-0.7, a_max=0.5)", x=M),
        case("np.clip(x, min=-0.7, max=0.5)", x=M),  # numpy >= 2.1 keywords
        case("x.clip(-0.5, 0.7)", x=T),
        case("x.clip(None, -0.5)", x=M),
        # bounds that are values get gradients too, broadcast back to their shapes
        case("np.clip(x, lo, hi)", x=M, lo=(4,), hi=()),
        case("np.clip(x, lo, None)", x=(4,), lo=M),
        case("np.clip(x, -0.5, hi)", x=M, hi=(3, 1)),
    ],
    # --- scipy.special and scipy.stats ---------------------------------------------------
    # Weights and scales squared (plus 0.5): positive, as the functions need.
    # polygamma(n, x): the n-th derivative of digamma, x away from the poles (x > 0)
    "polygamma": [
        case("sc.polygamma(0, 1 + x * x)", x=M),
        case("sc.polygamma(1, 1 + x * x)", x=(4,)),
        case("sc.polygamma(2, 0.5 + x * x)", x=ZERO_D),
        case("sc.polygamma(np.arange(3)[:, None], 1 + x * x)", False, x=(4,)),
        case("sc.polygamma(np.arange(3), 1 + x * x)", False, x=ZERO_D),
    ],
    # gammainc(a, x), gammaincc(a, x): x > 0; a a number or an array with no gradient.
    "gammainc": [
        case("sc.gammainc(2.5, x * x + 0.1)", x=M),
        case("sc.gammainc(np.arange(1.0, 4.0)[:, None], x * x + 0.1)", False, x=(4,)),
    ],
    "gammaincc": [
        case("sc.gammaincc(0.7, x * x + 0.1)", x=(4,)),
        case("sc.gammaincc(np.arange(0.5, 4.0), x * x + 0.1)", False, x=M),
    ],
    # betainc(a, b, x): 0 < x < 1; a, b > 0 numbers or arrays with no gradient.
    "betainc": [
        case("sc.betainc(2.5, 0.7, 0.5 + 0.4 * np.sin(x))", x=M),
        case("sc.betainc(1.0, 3.0, 0.5 + 0.4 * np.sin(x))", x=ZERO_D),
        case("sc.betainc(np.arange(1.0, 4.0)[:, None], 0.5, 0.5 + 0.4 * np.sin(x))", False, x=(4,)),
    ],
    # multigammaln(a, d): a > (d - 1) / 2, d a whole number.
    "multigammaln": [
        case("sc.multigammaln(x * x + 1.5, 3)", x=M),
        case("sc.multigammaln(x * x + 0.3, 1)", x=(4,)),
        case("sc.multigammaln(x * x + 2.0, 4)", x=ZERO_D),
        case("sc.multigammaln(a=x * x + 1.0, d=2)", x=(4,)),
    ],
    # Bessel functions of an order with no gradient: jn (jv) and iv of any x (iv of a
    # whole order), yn and iv, ive of a fractional order for x > 0.
    "jn": [
        case("sc.jn(2, x)", x=M),
        case("sc.jn(0, 3 * x)", x=(4,)),
        case("sc.jv(np.arange(3)[:, None], x)", False, x=(4,)),
        case("sc.jv(1.5, x * x + 0.1)", x=ZERO_D),
        case("sc.jn(np.arange(3), x)", False, x=ZERO_D),
    ],
    "yn": [
        case("sc.yn(2, x * x + 0.3)", x=M),
        case("sc.yn(0, x * x + 0.3)", x=ZERO_D),
        case("sc.yn(np.arange(3), x * x + 0.3)", False, x=(4, 1)),
        # a fractional order is truncated towards 0 (with a warning): the gradient is that
        # of the whole order's function
        case("sc.yn(np.array([-1.5, -0.5, 0.5, 1.7]), x * x + 0.3)", False, x=(4,)),
    ],
    "iv": [
        case("sc.iv(1, x)", x=M),
        case("sc.iv(2.5, x * x + 0.1)", x=(4,)),
        case("sc.iv(np.arange(3)[:, None], x)", False, x=(4,)),
    ],
    "ive": [
        case("sc.ive(0, x)", x=M),
        case("sc.ive(1.5, x * x + 0.1)", x=(4,)),
        case("sc.ive(np.arange(3)[:, None], 2 * x)", False, x=(4,)),
    ],
    "logsumexp": [
        case("logsumexp(x)", x=M),
        case("logsumexp(x, axis=1)", x=M),
        case("sc.logsumexp(x, axis=0, keepdims=True)", x=M),
        case("logsumexp(x, axis=(0, 2))", x=T),
        case("logsumexp(x, -1)", x=T),
        case("logsumexp(x, keepdims=True)", x=M),
        case("logsumexp(x, axis=1, b=w * w)", x=M, w=M),
        case("scipy.special.logsumexp(x, 0, w * w, True)", x=M, w=M),
        case("logsumexp(x, b=w * w + 0.5)", x=M, w=(4,)),  # b broadcast against x
        case("logsumexp(x, axis=-1, b=w * w + 0.5)", x=(4,), w=(3, 1)),  # x against b
        case("logsumexp(x, axis=0, b=w * w + 0.5)", x=(3, 1), w=M),
        case("logsumexp(x, axis=1, b=w * w + 0.5)", x=M, w=()),
        # b has axes the sum takes away that x lacks: each of b's entries gets its own
        case("logsumexp(x, b=w * w + 0.5)", x=(4,), w=M),
        case("logsumexp(x, axis=0, b=w * w + 0.5)", x=(4,), w=(4, 1)),
        case("logsumexp(x, b=w * w + 0.5)", x=(3, 1), w=(1, 4)),
        case("logsumexp(x, keepdims=True)", x=ZERO_D),  # scipy makes it 1-D: (1,)
        case("logsumexp(x, axis=0, b=w * w + 0.5, keepdims=True)", x=ZERO_D, w=ZERO_D),
    ],
    "norm_logpdf": [
        case("norm.logpdf(x)", x=M),
        case("norm.logpdf(x, m)", x=M, m=(4,)),
        case("norm.logpdf(x, m, s * s + 0.5)", x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.logpdf(x, loc=m, scale=s * s + 0.5)", x=(4,), m=M, s=()),
        case("norm.logpdf(x, scale=s * s + 0.5)", x=M, s=M),
    ],
    "norm_pdf": [
        case("norm.pdf(x)", x=M),
        case("norm.pdf(x, m)", x=M, m=(4,)),
        case("norm.pdf(x, m, s * s + 0.5)", x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.pdf(x, loc=m, scale=s * s + 0.5)", x=(4,), m=M, s=()),
        case("norm.pdf(x, scale=s * s + 0.5)", x=M, s=M),
    ],
    "norm_cdf": [
        case("norm.cdf(x)", x=M),
        case("norm.cdf(x, m)", x=M, m=(4,)),
        case("norm.cdf(x, m, s * s + 0.5)", x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.cdf(x, loc=m, scale=s * s + 0.5)", x=(4,), m=M, s=()),
        case("norm.cdf(x, scale=s * s + 0.5)", x=M, s=M),
    ],
    "norm_logcdf": [
        case("norm.logcdf(x)", x=M),
        case("norm.logcdf(x, m)", x=M, m=(4,)),
        case("norm.logcdf(x, m, s * s + 0.5)", x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.logcdf(x, loc=m, scale=s * s + 0.5)", x=(4,), m=M, s=()),
        case("norm.logcdf(x, scale=s * s + 0.5)", x=M, s=M),
        case("norm.logcdf(x * 10)", x=M),  # far in the lower tail too
    ],
    "norm_sf": [
        case("norm.sf(x)", x=M),
        case("norm.sf(x, m, s * s + 0.5)", x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.sf(x, loc=m, scale=s * s + 0.5)", x=(4,), m=M, s=()),
    ],
    "norm_logsf": [
        case("norm.logsf(x)", x=M),
        case("norm.logsf(x, m, s * s + 0.5)", x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.logsf(x, loc=m, scale=s * s + 0.5)", x=(4,), m=M, s=()),
        case("norm.logsf(x * 10)", x=M),  # far in the upper tail too
    ],
    "t_pdf": [
        case("t.pdf(x, d * d + 1)", x=M, d=(4,)),
        case("t.pdf(x, d * d + 1, m, s * s + 0.5)", x=M, d=(), m=(4,), s=(3, 1)),
    ],
    "gamma_pdf": [
        case("gamma.pdf(x * x + 0.1, a * a + 0.5)", x=M, a=(4,)),
        case("gamma.pdf(x * x + 2.5, a * a + 0.5, 0.5 * m, s * s + 0.5)", x=M, a=(), m=(4,), s=()),
    ],
    "poisson_pmf": [
        case("poisson.pmf(k, m * m + 0.5)", m=(4,), labels={"k": [[0, 1, 2, 3], [4, 1, 0, 2]]}),
    ],
    "t_logpdf": [
        case("t.logpdf(x, d * d + 1)", x=M, d=(4,)),
        case("t.logpdf(x, d * d + 1, m, s * s + 0.5)", x=M, d=(), m=(4,), s=(3, 1)),
        case("scipy.stats.t.logpdf(x, df=d * d + 1, scale=s * s + 0.5)", x=(4,), d=M, s=()),
        case("t.logpdf(x, 3.0, loc=m)", x=M, m=M),
    ],
    # gamma's x above its loc
    "gamma_logpdf": [
        case("gamma.logpdf(x * x + 0.1, a * a + 0.5)", x=M, a=(4,)),
        case(
            "gamma.logpdf(x * x + 2.5, a * a + 0.5, 0.5 * m, s * s + 0.5)",
            x=M,
            a=(),
            m=(4,),
            s=(3, 1),
        ),
        case(
            "scipy.stats.gamma.logpdf(x * x + 0.1, a=a * a + 0.5, scale=s * s + 0.5)",
            x=(4,),
            a=M,
            s=(),
        ),
    ],
    # counts k: labels, no gradient
    "poisson_logpmf": [
        case(
            "poisson.logpmf(k, m * m + 0.5)",
            m=M,
            labels={"k": [[0, 1, 2, 3], [4, 1, 0, 2], [1, 1, 1, 5]]},
        ),
        case("poisson.logpmf(k, m * m + 0.5)", m=(4,), labels={"k": [[0, 1, 2, 3], [4, 1, 0, 2]]}),
        case("scipy.stats.poisson.logpmf(3, m * m + 0.5)", m=M),
    ],
    # quantiles: q = expit(...) inside (0, 1), away from its ends
    "norm_ppf": [
        case("norm.ppf(expit(q))", q=M),
        case("norm.ppf(expit(q), m)", q=M, m=(4,)),
        case("norm.ppf(expit(q), m, s * s + 0.5)", q=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.ppf(expit(q), loc=m, scale=s * s + 0.5)", q=(4,), m=M, s=()),
        case("norm.ppf(expit(q), scale=s * s + 0.5)", q=M, s=M),
    ],
    "norm_isf": [
        case("norm.isf(expit(q))", q=M),
        case("norm.isf(expit(q), m, s * s + 0.5)", q=M, m=(4,), s=(3, 1)),
        case("scipy.stats.norm.isf(expit(q), loc=m, scale=s * s + 0.5)", q=(4,), m=M, s=()),
        case("norm.isf(expit(q), scale=s * s + 0.5)", q=M, s=M),
    ],
    # cdfs: their shapes (df, a, b) are numbers or arrays with no gradient
    "t_cdf": [
        case("t.cdf(x, 3.0)", x=M),
        case("t.cdf(x, np.arange(2.0, 6.0), m, s * s + 0.5)", False, x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.t.cdf(x, df=2.5, scale=s * s + 0.5)", x=(4,), s=()),
        case("t.cdf(x, 3.0, loc=m)", x=M, m=M),
    ],
    "t_logcdf": [
        case("t.logcdf(x, 3.0)", x=M),
        case("t.logcdf(x, np.arange(2.0, 6.0), m, s * s + 0.5)", False, x=M, m=(4,), s=(3, 1)),
        case("scipy.stats.t.logcdf(x, df=2.5, scale=s * s + 0.5)", x=(4,), s=()),
        case("t.logcdf(x * 10, 3.0, loc=m)", x=M, m=M),  # far in the lower tail too
    ],
    "gamma_cdf": [
        case("gamma.cdf(x * x + 0.1, 2.5)", x=M),
        case(
            "gamma.cdf(x * x + 2.5, np.arange(1.0, 5.0), 0.5 * m, s * s + 0.5)",
            False,
            x=M,
            m=(4,),
            s=(3, 1),
        ),
        case("scipy.stats.gamma.cdf(x * x + 0.1, a=1.5, scale=s * s + 0.5)", x=(4,), s=()),
    ],
    "beta_cdf": [
        case("scipy.stats.beta.cdf(expit(x), 2.0, 3.0)", x=M),
        case("scipy.stats.beta.cdf(expit(x), np.arange(1.0, 5.0), b=0.7)", False, x=M),
    ],
    # chi2's x above its loc
    "chi2_logpdf": [
        case("chi2.logpdf(x * x + 0.1, d * d + 0.5)", x=M, d=(4,)),
        case(
            "chi2.logpdf(x * x + 2.5, d * d + 0.5, 0.5 * m, s * s + 0.5)",
            x=M,
            d=(),
            m=(4,),
            s=(3, 1),
        ),
        case(
            "scipy.stats.chi2.logpdf(x * x + 0.1, df=d * d + 0.5, scale=s * s + 0.5)",
            x=(4,),
            d=M,
            s=(),
        ),
    ],
    "chi2_pdf": [
        case("chi2.pdf(x * x + 0.1, d * d + 0.5)", x=M, d=(4,)),
        case("chi2.pdf(x * x + 2.5, d * d + 0.5, 0.5 * m, s * s + 0.5)", x=M, d=(), m=(4,), s=()),
    ],
    "chi2_cdf": [
        case("chi2.cdf(x * x + 0.1, 3.0)", x=M),
        case(
            "chi2.cdf(x * x + 2.5, np.arange(1.0, 5.0), 0.5 * m, s * s + 0.5)",
            False,
            x=M,
            m=(4,),
            s=(3, 1),
        ),
        case("scipy.stats.chi2.cdf(x * x + 0.1, df=2.5, scale=s * s + 0.5)", x=(4,), s=()),
    ],
    # counts k: labels, no gradient; scipy sums up to floor(k), 0 below 0
    "poisson_cdf": [
        case("poisson.cdf(k, m * m + 0.5)", m=(4,), labels={"k": [[0, 1, 2, 3], [4, 1, 0, 2]]}),
        case(
            "poisson.cdf(k, m * m + 0.5)",
            m=M,
            labels={"k": [[-1, 0, 2, 7], [4.5, 1, 0, 2], [1, 1.7, 1, 5]]},
        ),
        case("scipy.stats.poisson.cdf(2.5, m * m + 0.5)", m=M),
    ],
    # points of the simplex: softmax over the first axis, whose adjoint keeps them there
    "dirichlet_logpdf": [
        case("dirichlet.logpdf(softmax(v, axis=0), a * a + 0.5)", v=(4,), a=(4,)),
        case("dirichlet.logpdf(softmax(v, axis=0), a * a + 0.5)", v=(4, 3), a=(4,)),
        case("dirichlet.logpdf(softmax(v, axis=0), a * a + 0.5)", v=(4, 1), a=(4,)),
        # one row short of alpha: scipy appends the row 1 - sum(x)
        case("dirichlet.logpdf(0.8 * softmax(v, axis=0), a * a + 0.5)", v=(3,), a=(4,)),
        case("dirichlet.logpdf(0.8 * softmax(v, axis=0), a * a + 0.5)", v=(3, 2), a=(4,)),
        case("dirichlet.logpdf(0.8 * softmax(v, axis=0), a * a + 0.5)", False, v=(3,), a=(4,)),
    ],
    "dirichlet_pdf": [
        case("dirichlet.pdf(softmax(v, axis=0), a * a + 0.5)", v=(4,), a=(4,)),
        case("scipy.stats.dirichlet.pdf(softmax(v, axis=0), a * a + 0.5)", v=(3, 3), a=(3,)),
        case("dirichlet.pdf(softmax(v, axis=0), a * a + 0.5)", v=(4, 1), a=(4,)),
        case("dirichlet.pdf(0.8 * softmax(v, axis=0), a * a + 0.5)", v=(3, 2), a=(4,)),
        case("dirichlet.pdf(0.8 * softmax(v, axis=0), a * a + 0.5)", False, v=(3,), a=(4,)),
    ],
    # Covariances c @ c.T + I (positive definite), or not symmetric: scipy reads the lower
    # triangle, and so does the gradient.
    "multivariate_normal_logpdf": [
        case(
            "multivariate_normal.logpdf(x, m, c @ c.T + np.eye(4))",
            x=(4,),
            m=(4,),
            c=(4, 4),
            explicit=False,
        ),
        case(
            "multivariate_normal.logpdf(x, m, c @ c.T + np.eye(4))",
            x=(3, 4),
            m=(4,),
            c=(4, 4),
            explicit=False,
        ),
        case(
            "multivariate_normal.logpdf(x, m, 0.2 * c + 2 * np.eye(4))",
            x=(3, 4),
            m=(4,),
            c=(4, 4),
            explicit=False,
        ),
        case(
            "scipy.stats.multivariate_normal.logpdf(x, None, c @ c.T + np.eye(4))",
            x=(2, 4),
            c=(4, 4),
            explicit=False,
        ),
        # points in any array; a number broadcast against the mean
        case(
            "multivariate_normal.logpdf(x, m, c @ c.T + np.eye(4))",
            x=(2, 3, 4),
            m=(4,),
            c=(4, 4),
            explicit=False,
        ),
        case(
            "multivariate_normal.logpdf(x, m, c @ c.T + np.eye(4))",
            x=(),
            m=(4,),
            c=(4, 4),
            explicit=False,
        ),
        case(
            "multivariate_normal.logpdf(x, mean=m, cov=c @ c.T + np.eye(4))",
            x=(1, 4),
            m=(4,),
            c=(4, 4),
            explicit=False,
        ),
        # a 1-D cov is a diagonal (scipy's): its gradient is the diagonal's
        case("multivariate_normal.logpdf(x, m, c * c + 0.5)", x=(3, 4), m=(4,), c=(4,)),
        case("multivariate_normal.logpdf(x, m, c * c + 0.5)", x=(4,), m=(4,), c=(4,)),
    ],
    # pdf: exp of logpdf; of dimension 2 and 3 (the densities of 4 are small)
    "multivariate_normal_pdf": [
        case("multivariate_normal.pdf(x, m, c @ c.T + np.eye(2))", x=(2,), m=(2,), c=(2, 2)),
        case(
            "multivariate_normal.pdf(x, m, 0.2 * c + np.eye(3))",
            x=(4, 3),
            m=(3,),
            c=(3, 3),
            explicit=False,
        ),
        case(
            "scipy.stats.multivariate_normal.pdf(x, None, c @ c.T + np.eye(2))",
            x=(3, 2),
            c=(2, 2),
            explicit=False,
        ),
        case(
            "multivariate_normal.pdf(x, mean=m, cov=c @ c.T + np.eye(2))",
            x=(2, 3, 2),
            m=(2,),
            c=(2, 2),
            explicit=False,
        ),
        case("multivariate_normal.pdf(x, m, c * c + 0.5)", x=(3, 3), m=(3,), c=(3,)),
    ],
    # entropy: of cov alone (mean, if given, has no gradient)
    "multivariate_normal_entropy": [
        case("multivariate_normal.entropy(None, c @ c.T + np.eye(4))", c=(4, 4)),
        case(
            "scipy.stats.multivariate_normal.entropy(m, 0.2 * c + 2 * np.eye(3))",
            c=(3, 3),
            labels={"m": [0.5, -1.0, 2.0]},
        ),
        # a 1-D cov is a diagonal (with a mean to say its dimension: without, scipy reads 1)
        case(
            "multivariate_normal.entropy(m, cov=c * c + 0.5)",
            c=(4,),
            labels={"m": [0.5, -1.0, 2.0, 0.0]},
        ),
    ],
    "softmax": [
        case("softmax(x)", x=M),
        case("softmax(x, axis=1)", x=M),
        case("sc.softmax(x, axis=0)", x=T),
        case("scipy.special.softmax(x, -1)", x=T),
        case("softmax(x, axis=(0, 2))", x=T),
        # a masked gradient of the result is not masked in x's: every entry of a row counts
        case("np.where(x > 0, softmax(x, axis=1), 0.0)", x=M),
    ],
    "log_softmax": [
        case("log_softmax(x)", x=M),
        case("log_softmax(x, axis=1)", x=M),
        case("sc.log_softmax(x, axis=0)", x=T),
        case("scipy.special.log_softmax(x, -1)", x=T),
        case("log_softmax(x, axis=(0, 2))", x=T),
        case("np.where(x > 0, log_softmax(x, axis=1), 0.0)", x=M),
    ],
    # --- linear algebra -------------------------------------------------------------------
    "matmul": [
        case("x @ w", x=M, w=(4, 2)),  # 2-D @ 2-D
        case("x @ v", x=M, v=(4,)),  # 2-D @ 1-D
        case("u @ w", u=(4,), w=(4, 2)),  # 1-D @ 2-D
        case("u @ v", u=(4,), v=(4,)),  # 1-D @ 1-D
        case("np.matmul(x, w)", x=M, w=(4, 2)),
        case("np.matmul(u, w)", u=(4,), w=(4, 2)),
        case("x @ x.T", x=M),  # one operand, twice
        # stacks of matrices, broadcast against each other and against 1-D and 2-D
        case("t @ w", t=T, w=(4, 2), explicit=False),
        case("x.T @ t", x=M, t=T, explicit=False),
        case("t @ s", t=T, s=(1, 4, 3), explicit=False),
        case("t @ v", t=T, v=(4,), explicit=False),
        case("v @ s", v=(3,), s=(2, 3, 4), explicit=False),
    ],
    "dot": [
        case("np.dot(x, w)", x=M, w=(4, 2)),
        case("np.dot(u, v)", u=(4,), v=(4,)),
        case("x.dot(w)", x=M, w=(4, 2)),
        case("x.dot(v)", x=M, v=(4,)),
        case("u.dot(w)", u=(4,), w=(4, 2)),
    ],
    # --- more products and linear algebra ---------------------------------------------------
    # Square matrices are made well-conditioned by a multiple of the identity (x + 5 * I),
    # symmetric positive definite ones as x @ x.T + 3 * I.
    "einsum": [
        case("np.einsum('ij,jk->ik', x, w)", x=M, w=(4, 2)),
        case("np.einsum('ij,jk', x, w)", x=M, w=(4, 2)),  # implicit result: 'ik'
        case("np.einsum('ij,jk,kl->il', x, w, y, optimize=True)", x=M, w=(4, 2), y=(2, 3)),
        case("np.einsum('ba', x)", x=M),  # implicit: 'ab', a transpose
        case("np.einsum('ij->ji', x)", x=M),
        case("np.einsum('ij->i', x)", x=M),  # j summed in x alone: spread back
        case("np.einsum('ij->', x)", x=M),
        case("np.einsum('i,i', u, v)", u=(4,), v=(4,)),
        case("np.einsum('i,j->ij', u, v)", u=(3,), v=(4,)),
        case("np.einsum('ij,j->i', x, v)", x=M, v=(4,)),
        case("np.einsum('ij,ij->i', x, x)", x=M),  # one operand twice
        case("np.einsum('ij,jk,kl->il', x, w, y)", x=M, w=(4, 2), y=(2, 3)),
        case("np.einsum('bij,bjk->bik', t, s)", t=T, s=(2, 4, 2)),
        case("np.einsum('Ab,bA', x, y)", x=M, y=(4, 3)),  # capitals before small letters
        # traces and diagonals: a label repeated in an operand
        case("np.einsum('ii', s)", s=(3, 3)),
        case("np.einsum('ii->i', s)", s=(3, 3)),
        case("np.einsum('iij->j', t)", t=(3, 3, 2)),
        case("np.einsum('ij,jj->i', x, s)", x=M, s=(4, 4)),
        # '...': the operands' broadcast axes
        case("np.einsum('...ij,...jk->...ik', t, s)", t=T, s=(2, 4, 2)),
        case("np.einsum('...ij,jk->...ik', t, w)", t=T, w=(4, 2)),
        case("np.einsum('...ij,...jk', t, w)", t=T, w=(4, 2)),
        case("np.einsum('...ii->...i', s)", s=(2, 3, 3)),
        case("np.einsum('...ij,...jk->...ik', t, s)", t=T, s=(1, 4, 2), explicit=False),
        # numpy spreads a dimension 1 of a label over the others' (unknown to gradgen here)
        case("np.einsum('ij,ij->ij', c, x)", c=(3, 1), x=M, explicit=False),
        case("np.einsum('ij,j->i', c, v)", c=(3, 1), v=(4,), explicit=False),  # j: 1 and 4
        case("np.einsum('...ij,...j->...i', t, c)", t=(2, 3, 1), c=(1, 4), explicit=False),
    ],
    "tensordot": [
        case("np.tensordot(x, w, 1)", x=M, w=(4, 2)),
        case("np.tensordot(t, x, axes=2)", t=T, x=M),
        case("np.tensordot(t, x)", t=T, x=M),  # axes=2 by default
        case("np.tensordot(x, y, 0)", x=(2, 2), y=(3,)),  # an outer product
        case("np.tensordot(t, w, axes=([2], [0]))", t=T, w=(4, 2)),
        case("np.tensordot(t, x, axes=([0, 2], [0, 1]))", t=T, x=(2, 4)),
        case("np.tensordot(t, y, axes=([-1, 1], [0, 2]))", t=T, y=(4, 2, 3)),
        case("np.tensordot(t, w, axes=1)", t=T, w=(4, 2), explicit=False),
    ],
    "inner": [
        case("np.inner(u, v)", u=(4,), v=(4,)),
        case("np.inner(x, v)", x=M, v=(4,)),
        case("np.inner(x, y)", x=M, y=(2, 4)),
        case("np.inner(t, x)", t=T, x=M),
        case("np.inner(x, c)", x=M, c=()),  # a number: a product
        case("np.inner(c, t)", c=(), t=T),
        case("np.inner(x, t)", x=M, t=T, explicit=False),
    ],
    "vdot": [
        case("np.vdot(u, v)", u=(4,), v=(4,)),
        case("np.vdot(x, y)", x=M, y=M),
        case("np.vdot(x, y)", x=M, y=(12,)),  # both flattened
    ],
    "kron": [
        case("np.kron(u, v)", u=(2,), v=(3,)),
        case("np.kron(x, y)", x=(2, 3), y=(3, 2)),
        case("np.kron(x, v)", x=(2, 3), v=(2,), explicit=False),  # v as a row
        case("np.kron(t, x)", t=T, x=(2, 2), explicit=False),
    ],
    "cross": [
        case("np.cross(u, v)", u=(3,), v=(3,)),
        case("np.cross(x, y)", x=(4, 3), y=(4, 3)),
        case("np.cross(x, v)", x=(4, 3), v=(3,)),  # v crossed with each row
    ],
    "inv": [
        case("np.linalg.inv(s + 5 * np.eye(3))", s=(3, 3)),
        case("np.linalg.inv(x @ x.T + 3 * np.eye(3)) @ x", x=M),
        case("np.linalg.inv(t + 5 * np.eye(3))", t=(2, 3, 3)),  # a stack of matrices
    ],
    "det": [
        case("np.linalg.det(s + 5 * np.eye(3))", s=(3, 3)),
        case("np.linalg.det(x @ x.T + np.eye(3))", x=M),
        case("np.linalg.det(t + 5 * np.eye(3))", t=(2, 3, 3)),
    ],
    "solve": [
        case("np.linalg.solve(s + 5 * np.eye(3), v)", s=(3, 3), v=(3,)),
        case("np.linalg.solve(s + 5 * np.eye(3), x)", s=(3, 3), x=M),
        case("np.linalg.solve(t + 5 * np.eye(3), r)", t=(2, 3, 3), r=(2, 3, 4)),
        # b broadcast against a stack of matrices, and a vector: helpers unbroadcast
        case("np.linalg.solve(t + 5 * np.eye(3), x)", t=(2, 3, 3), x=M, explicit=False),
        case("np.linalg.solve(t + 5 * np.eye(3), v)", t=(2, 3, 3), v=(3,), explicit=False),
        case("np.linalg.solve(s + 5 * np.eye(3), r)", s=(3, 3), r=(2, 3, 4), explicit=False),
    ],
    "matrix_power": [
        case("np.linalg.matrix_power(s, 1)", s=(3, 3)),
        case("np.linalg.matrix_power(s, 2)", s=(3, 3)),
        case("np.linalg.matrix_power(s, n=3)", s=(3, 3)),
        case("np.linalg.matrix_power(t, 3)", t=(2, 3, 3)),
    ],
    "pinv": [
        case("np.linalg.pinv(x)", x=M),  # wide, of full rank
        case("np.linalg.pinv(w)", w=(4, 2)),  # tall
        case("np.linalg.pinv(s + 5 * np.eye(3))", s=(3, 3)),
        case("np.linalg.pinv(t)", t=T),
    ],
    # Several results: unpacked, or one taken by its place.
    "slogdet": [
        case("np.linalg.slogdet(s + 5 * np.eye(3))[1]", s=(3, 3)),
        case("np.linalg.slogdet(s - 5 * np.eye(3))[1]", s=(3, 3)),  # a negative determinant
        case("np.linalg.slogdet(s + 5 * np.eye(3))[-1] * x", s=(3, 3), x=M),
        case("np.linalg.slogdet(t + 5 * np.eye(3))[1]", t=(2, 3, 3)),
        # the sign passes no gradient back
        case("np.linalg.slogdet(s + 5 * np.eye(3))[0] * x + s", s=(3, 3), x=(3, 3)),
    ],
    # Distinct eigenvalues (x x^T + diag(1, 3, 5) has them well apart).
    "eigh": [
        case("np.linalg.eigh(x @ x.T + 3 * np.eye(3))[0]", x=M),
        case("np.linalg.eigh(x @ x.T + 3 * np.eye(3))[1] * x[:, :3]", x=M, explicit=False),
        # (np.diag's shape is not known to gradgen)
        case("np.linalg.eigh(x @ x.T + np.diag([1.0, 3.0, 5.0]))[0]", x=M, explicit=False),
        case("np.linalg.eigh(s + np.diag([1.0, 4.0, 8.0]))[0]", s=(3, 3), explicit=False),
        case("np.linalg.eigh(x @ x.T + np.diag([1.0, 3.0, 5.0]))[1] ** 2", x=M, explicit=False),
        case("np.linalg.eigh(s + np.diag([1.0, 4.0, 8.0]))[1] ** 2", s=(3, 3), explicit=False),
        case(
            "np.abs(np.linalg.eigh(t @ np.swapaxes(t, -1, -2) + np.diag([1.0, 3.0, 5.0]))[1])",
            t=T,
            explicit=False,
        ),
    ],
    # The gradient's steps are a helper's named lines (cases not "explicit": a helper).
    "cholesky": [
        case("np.linalg.cholesky(x @ x.T + 3 * np.eye(3))", x=M, explicit=False),
        # numpy reads the lower triangle: an upper entry has no gradient
        case("np.linalg.cholesky(s + 8 * np.eye(3))", s=(3, 3), explicit=False),
        case("np.linalg.cholesky(t @ np.swapaxes(t, -1, -2) + np.eye(3))", t=T, explicit=False),
    ],
    # np.linalg.svd: singular values distinct, none 0 (random matrices have them apart).
    "svd_values": [
        case("np.linalg.svd(x, compute_uv=False)", x=M, explicit=False),
        case("np.linalg.svd(w, full_matrices=False, compute_uv=False)", w=(4, 2), explicit=False),
        case("np.linalg.svd(t, compute_uv=False)", t=T, explicit=False),
    ],
    "svd": [
        case("np.linalg.svd(x, full_matrices=False)[1]", x=M),
        case("np.linalg.svd(x)[1]", x=M),  # u and vh square: s reads their first columns
        case("np.linalg.svd(w, full_matrices=False)[0]", w=(4, 2), explicit=False),
        case("np.linalg.svd(x, full_matrices=False)[0]", x=M, explicit=False),
        case("np.linalg.svd(x, full_matrices=False)[2]", x=M, explicit=False),
        case("np.linalg.svd(w, full_matrices=False)[2]", w=(4, 2), explicit=False),
        case("np.linalg.svd(s, False)[0] + np.linalg.svd(s, False)[2]", s=(3, 3), explicit=False),
        case("np.linalg.svd(t, full_matrices=False)[0]", t=T, explicit=False),
        case("np.linalg.svd(t, full_matrices=False)[2]", t=T, explicit=False),
        case("np.linalg.svd(t, full_matrices=False)[1]", t=T),
    ],
    # --- scipy.linalg ------------------------------------------------------------------------
    # Triangles with a large diagonal (away from singular); an upper one by default.
    "solve_triangular": [
        case("scipy.linalg.solve_triangular(s + 5 * np.eye(3), v, lower=True)", s=(3, 3), v=(3,)),
        case("sl.solve_triangular(s + 5 * np.eye(3), x)", s=(3, 3), x=M),
        case("sl.solve_triangular(s + 5 * np.eye(3), x, trans='T', lower=True)", s=(3, 3), x=M),
        case("sl.solve_triangular(s + 5 * np.eye(3), v, trans=1)", s=(3, 3), v=(3,)),
        case("sl.solve_triangular(s + 5 * np.eye(3), x, 2, True)", s=(3, 3), x=M),
        case("sl.solve_triangular(s, x, lower=True, unit_diagonal=True)", s=(3, 3), x=M),
        case("sl.solve_triangular(s, v, trans='N', unit_diagonal=True)", s=(3, 3), v=(3,)),
        case(
            "sl.solve_triangular(s + 5 * np.eye(3), x[:, :2], trans='T')",
            s=(3, 3),
            x=M,
            explicit=False,
        ),
    ],
    # Bands in scipy's storage, the diagonal's row large (away from singular); the entries
    # outside the matrix are not read: their gradient is 0.
    "solve_banded": [
        case(
            "sl.solve_banded((1, 1), ab + [[0.0], [5.0], [0.0]], v)",
            ab=(3, 4),
            v=(4,),
            explicit=False,
        ),
        case(
            "sl.solve_banded((1, 1), ab + [[0.0], [5.0], [0.0]], x)",
            ab=(3, 4),
            x=(4, 2),
            explicit=False,
        ),
        case(
            "scipy.linalg.solve_banded((0, 2), ab + [[0.0], [0.0], [5.0]], v)",
            ab=(3, 4),
            v=(4,),
            explicit=False,
        ),
        case(
            "sl.solve_banded((2, 1), ab + [[0.0], [5.0], [0.0], [0.0]], x)",
            ab=(4, 5),
            x=(5, 3),
            explicit=False,
        ),
        case("sl.solve_banded((0, 0), ab + 5, v)", ab=(1, 4), v=(4,), explicit=False),
    ],
    # A X + X B = Q with the eigenvalues of A and -B well apart.
    "solve_sylvester": [
        case(
            "sl.solve_sylvester(s + 5 * np.eye(3), r + 5 * np.eye(4), x)",
            s=(3, 3),
            r=(4, 4),
            x=M,
        ),
        case(
            "sl.solve_sylvester(s + 5 * np.eye(3), r + 5 * np.eye(3), q + 5 * np.eye(3))",
            s=(3, 3),
            r=(3, 3),
            q=(3, 3),
        ),
        *(
            [
                case(
                    "sl.solve_sylvester(t + 5 * np.eye(3), s + 5 * np.eye(3), x)",
                    t=(2, 3, 3),
                    s=(3, 3),
                    x=(2, 3, 3),
                    explicit=False,
                )
            ]
            if SCIPY_BATCHES
            else []
        ),
    ],
    # Symmetric positive definite: a real square root.
    "sqrtm": [
        case("sl.sqrtm(x @ x.T + 3 * np.eye(3))", x=M),
        case("sl.sqrtm(s @ s.T + np.eye(3)) * s", s=(3, 3)),
        *(
            [case("sl.sqrtm(t @ np.swapaxes(t, -1, -2) + np.eye(3))", t=T, explicit=False)]
            if SCIPY_BATCHES
            else []
        ),
    ],
    # --- scipy.signal ------------------------------------------------------------------------
    "convolve": [
        case("signal.convolve(u, v)", u=(5,), v=(3,), explicit=False),
        case("signal.convolve(u, v, mode='valid')", u=(5,), v=(3,), explicit=False),
        case("signal.convolve(u, v, 'valid')", u=(3,), v=(5,), explicit=False),
        case("signal.convolve(u, v, mode='same')", u=(5,), v=(4,), explicit=False),
        case("signal.convolve(u, v, mode='same')", u=(3,), v=(4,), explicit=False),
        case("scipy.signal.convolve(x, y, mode='same')", x=M, y=(2, 3), explicit=False),
        case("scipy.signal.convolve(x, y)", x=M, y=(2, 2), explicit=False),
        case("scipy.signal.convolve(x, y, mode='valid')", x=M, y=(2, 3), explicit=False),
    ],
    "correlate": [
        case("signal.correlate(u, v)", u=(5,), v=(3,), explicit=False),
        case("signal.correlate(u, v, mode='valid')", u=(5,), v=(3,), explicit=False),
        case("signal.correlate(u, v, 'valid')", u=(4,), v=(6,), explicit=False),
        case("signal.correlate(u, v, mode='same')", u=(5,), v=(4,), explicit=False),
        case("signal.correlate(u, v, mode='same')", u=(3,), v=(4,), explicit=False),
        case("scipy.signal.correlate(x, y, mode='same')", x=M, y=(2, 3), explicit=False),
        case("scipy.signal.correlate(x, y, mode='valid')", x=M, y=(2, 2), explicit=False),
    ],
    # --- reductions -------------------------------------------------------------------------
    "sum": [
        case("np.sum(x)", x=M),
        case("np.sum(x, axis=0)", x=M),
        case("np.sum(x, axis=1, keepdims=True)", x=M),
        case("np.sum(x, axis=-1)", x=M),
        case("np.sum(x, axis=(0, 2))", x=T),
        case("np.sum(x, (0, 1), keepdims=True)", x=T),
        case("np.sum(x, 0, keepdims=False)", x=M),
        case("np.sum(x, keepdims=True)", x=M),
        case("x.sum()", x=M),
        case("x.sum(axis=0)", x=M),
        case("x.sum(1)", x=T),
        case("x.sum(axis=-2, keepdims=True)", x=T),
        case("np.sum(x, axis=-1)", x=ZERO_D),
        case("np.sum(x, 0)", x=ZERO_D),
        case("np.sum(x, axis=-1, keepdims=True)", x=ZERO_D),
    ],
    "mean": [
        case("np.mean(x)", x=M),
        case("np.mean(x, axis=0)", x=M),
        case("np.mean(x, axis=-1, keepdims=True)", x=M),
        case("np.mean(x, axis=(0, 2))", x=T),
        case("np.mean(x, keepdims=True)", x=T),
        case("x.mean()", x=M),
        case("x.mean(axis=1)", x=T),
        case("x.mean(axis=(1, 2), keepdims=True)", x=T),
    ],
    "amax": [
        case("np.max(x)", x=M),
        case("np.max(x, axis=0)", x=M),
        case("np.amax(x, axis=1)", x=M),
        case("np.amax(x)", x=M),
        case("np.max(x, axis=-1, keepdims=True)", x=M),
        case("np.max(x, axis=(0, 2))", x=T),
        case("x.max()", x=M),
        case("x.max(axis=0, keepdims=True)", x=M),
        case("x.max(1)", x=T),
        case("np.max(x, axis=-1)", x=ZERO_D),
        case("np.max(x, axis=0, keepdims=True)", x=ZERO_D),
    ],
    "amin": [
        case("np.min(x)", x=M),
        case("np.min(x, axis=1)", x=M),
        case("np.amin(x, axis=0)", x=M),
        case("np.amin(x)", x=M),
        case("np.min(x, axis=(1, 2), keepdims=True)", x=T),
        case("x.min()", x=M),
        case("x.min(axis=-1)", x=T),
        case("x.min(axis=1, keepdims=True)", x=M),
        case("np.amin(x, axis=0)", x=ZERO_D),
    ],
    "var": [
        case("np.var(x)", x=M),
        case("np.var(x, ddof=1)", x=M),
        case("np.var(x, axis=0)", x=M),
        case("np.var(x, axis=1, ddof=1)", x=M),
        case("np.var(x, axis=-1, keepdims=True)", x=M),
        case("np.var(x, axis=(0, 2), ddof=1)", x=T),
        case("x.var()", x=M),
        case("x.var(axis=0, ddof=1, keepdims=True)", x=M),
    ],
    "std": [
        case("np.std(x)", x=M),
        case("np.std(x, ddof=1)", x=M),
        case("np.std(x, axis=0)", x=M),
        case("np.std(x, axis=1, ddof=1)", x=M),
        case("np.std(x, axis=-1, keepdims=True)", x=M),
        case("np.std(x, axis=(0, 1), ddof=1)", x=T),
        case("x.std()", x=M),
        case("x.std(axis=0, ddof=1, keepdims=True)", x=M),
    ],
    # --- more reductions and scans ---------------------------------------------------------
    "prod": [
        case("np.prod(x)", x=M, explicit=False),
        case("np.prod(x, axis=0)", x=M, explicit=False),
        case("np.prod(x, axis=1, keepdims=True)", x=M, explicit=False),
        case("np.prod(x, axis=(0, 2))", x=T, explicit=False),
        case("np.prod(x, axis=-1)", x=T, explicit=False),
        case("np.prod(x, keepdims=True)", x=M, explicit=False),
        case("x.prod(axis=0)", x=M, explicit=False),
        case("x.prod(1)", x=T, explicit=False),
        case("np.prod(x, 0)", x=ZERO_D, explicit=False),
        # zeros: the gradient at a zero is the product of the others, 0 elsewhere in its row
        case(
            "np.prod(np.where(m, x, 0.0), axis=1)",
            x=M,
            labels={"m": [True, False, True, True]},
            explicit=False,
        ),
        case(
            "np.prod(np.where(m, x, 0.0))",
            x=(4,),
            labels={"m": [True, False, True, True]},
            explicit=False,
        ),
        # two zeros: every gradient is 0
        case(
            "np.prod(np.where(m, x, 0.0), axis=-1)",
            x=M,
            labels={"m": [False, True, False, True]},
            explicit=False,
        ),
        case(
            "np.prod(np.where(m, x, 0.0), axis=0)",
            x=M,
            labels={"m": [[False], [True], [False]]},
            explicit=False,
        ),
    ],
    "cumsum": [
        case("np.cumsum(x)", x=M),
        case("np.cumsum(x, axis=0)", x=M),
        case("np.cumsum(x, axis=-1)", x=T),
        case("np.cumsum(x, 1)", x=T),
        case("x.cumsum(1)", x=M),
        case("x.cumsum()", x=T),
        case("x.cumsum(axis=0)", x=(4,)),
        case("np.cumsum(x, axis=0)", x=ZERO_D),  # a number: an array of one entry
        case("np.cumsum(x, -1) * y", x=ZERO_D, y=(3,), explicit=False),
    ],
    "cumprod": [
        case("np.cumprod(x)", x=M, explicit=False),
        case("np.cumprod(x, axis=0)", x=M, explicit=False),
        case("np.cumprod(x, axis=-1)", x=T, explicit=False),
        case("x.cumprod(1)", x=M, explicit=False),
        case("x.cumprod()", x=(4,), explicit=False),
        case("np.cumprod(x, axis=0)", x=ZERO_D, explicit=False),
        # zeros: still the exact gradient (no division by x)
        case(
            "np.cumprod(np.where(m, x, 0.0), axis=1)",
            x=M,
            labels={"m": [True, False, True, True]},
            explicit=False,
        ),
        case(
            "np.cumprod(np.where(m, x, 0.0))",
            x=(5,),
            labels={"m": [True, False, True, False, True]},
            explicit=False,
        ),
    ],
    "nansum": [
        case("np.nansum(x)", x=M),
        case("np.nansum(x, axis=0)", x=M),
        case("np.nansum(x, axis=(0, 2), keepdims=True)", x=T),
        # nans (where m is False) get gradient 0
        case("np.nansum(np.where(m, x, np.nan))", x=(4,), labels={"m": [True, False, True, True]}),
        case(
            "np.nansum(np.where(m, x, np.nan), axis=1)",
            x=M,
            labels={"m": [True, False, True, False]},
        ),
    ],
    "nanmean": [
        case("np.nanmean(x)", x=M),
        case("np.nanmean(x, axis=1)", x=M),
        case("np.nanmean(x, axis=-1, keepdims=True)", x=T),
        case("np.nanmean(np.where(m, x, np.nan))", x=(4,), labels={"m": [True, False, True, True]}),
        case(
            "np.nanmean(np.where(m, x, np.nan), axis=1, keepdims=True)",
            x=M,
            labels={"m": [True, False, True, False]},
        ),
    ],
    "ptp": [
        case("np.ptp(x)", x=M),
        case("np.ptp(x, axis=0)", x=M),
        case("np.ptp(x, axis=1, keepdims=True)", x=M),
        case("np.ptp(x, axis=(0, 2))", x=T),
    ],
    "trace": [
        case("np.trace(x)", x=M),
        case("np.trace(x, 1)", x=M),
        case("np.trace(x, offset=-1)", x=M),
        case("np.trace(x, axis1=1, axis2=0)", x=M),
        case("np.trace(x, 0, 1, 2)", x=T),
        case("np.trace(x, offset=1, axis1=0, axis2=-1)", x=T),
        case("x.trace()", x=(3, 3)),
        case("x.trace(1, 2, 0)", x=T),
    ],
    "diff": [
        case("np.diff(x)", x=M),
        case("np.diff(x, axis=0)", x=M),
        case("np.diff(x, 2)", x=M),
        case("np.diff(x, n=2, axis=1)", x=T),
        case("np.diff(x, n=3, axis=0)", x=(5, 2)),
    ],
    # values drawn at random: no ties
    "sort": [
        case("np.sort(x)", x=M),
        case("np.sort(x, axis=0)", x=M),
        case("np.sort(x, axis=None)", x=M),
        case("np.sort(x, axis=1)", x=T),
    ],
    "partition": [
        case("np.partition(x, 1)", x=M),
        case("np.partition(x, 2, axis=0)", x=M),
        case("np.partition(x, -1, axis=None)", x=M),
        case("np.partition(x, (0, 2), axis=1)", x=T),
    ],
    "average": [
        case("np.average(x)", x=M),
        case("np.average(x, axis=0)", x=M),
        case("np.average(x, 1, keepdims=True)", x=T),
        case("np.average(x, weights=w)", x=M, w=M),
        case("np.average(x, axis=0, weights=w)", x=M, w=M),
        case("np.average(x, 1, w)", x=M, w=(4,)),
        case("np.average(x, axis=0, weights=w, keepdims=True)", x=T, w=(2,)),
        case("np.average(x, axis=-2, weights=w)", x=T, w=(3,)),
        case("np.average(x, axis=(0, 2), weights=w)", x=T, w=T),
        case("np.average(x, axis=1, weights=w * w)", x=M, w=(4,), explicit=False),
    ],
    # norms: values drawn at random are away from 0, and no two |x|, row or column sums
    # or singular values tie
    "norm": [
        case("np.linalg.norm(v)", v=(4,)),
        case("np.linalg.norm(x)", x=M),
        case("np.linalg.norm(x)", x=T),
        case("np.linalg.norm(x, axis=1)", x=M),
        case("np.linalg.norm(x, axis=-1, keepdims=True)", x=T),
        case("np.linalg.norm(x, axis=(0, 2))", x=T),
        case("np.linalg.norm(x, axis=(1, 2), keepdims=True)", x=T),
        case("np.linalg.norm(x, keepdims=True)", x=M),
        case("np.linalg.norm(x, 'fro')", x=M),
        case("np.linalg.norm(x, ord='fro', axis=(0, 1), keepdims=True)", x=T),
        case("np.linalg.norm(v, 2)", v=(4,)),
        case("np.linalg.norm(x, ord=2, axis=0)", x=M),
        case("np.linalg.norm(v, 1)", v=(4,)),
        case("np.linalg.norm(x, ord=1, axis=1)", x=M),
        case("np.linalg.norm(v, np.inf)", v=(4,)),
        case("np.linalg.norm(x, ord=-np.inf, axis=0, keepdims=True)", x=M),
        case("np.linalg.norm(v, 3)", v=(4,)),
        case("np.linalg.norm(v, 0.5)", v=(4,)),
        case("np.linalg.norm(x, ord=1)", x=M),  # the largest column sum of |x|
        case("np.linalg.norm(x, -1)", x=M),
        case("np.linalg.norm(x, np.inf)", x=M),  # the largest row sum
        case("np.linalg.norm(x, ord=-np.inf, keepdims=True)", x=M),
        case("np.linalg.norm(x, ord=1, axis=(2, 0))", x=T),
        case("np.linalg.norm(x, np.inf, axis=(1, 2), keepdims=True)", x=T),
        case("np.linalg.norm(x, 2)", x=M, explicit=False),
        case("np.linalg.norm(x, -2)", x=M, explicit=False),
        case("np.linalg.norm(x, 'nuc')", x=M, explicit=False),
        case("np.linalg.norm(x, ord=2, axis=(2, 1))", x=T, explicit=False),
        case("np.linalg.norm(x, ord='nuc', axis=(0, 2), keepdims=True)", x=T, explicit=False),
        # a norm of a value of unknown rank: the helper decides by it when it runs
        case("np.linalg.norm(np.reshape(x, (4, 3)), 1)", x=M, explicit=False),
        case("np.linalg.norm(np.ravel(x), np.inf)", x=M, explicit=False),
        case("np.linalg.norm(np.reshape(x, (4, 3)), 2)", x=M, explicit=False),
    ],
    # --- shapes ---------------------------------------------------------------------------
    "transpose_attribute": [
        case("x.T", x=M),
        case("x.T", x=T),
        case("v.T", v=(4,)),
    ],
    "transpose": [
        case("np.transpose(x)", x=M),
        case("np.transpose(x)", x=T),
        case("np.transpose(x, (1, 2, 0))", x=T),
        case("np.transpose(x, axes=(2, 0, 1))", x=T),
        case("x.transpose()", x=M),
        case("x.transpose(1, 0, 2)", x=T),
        case("x.transpose((0, 2, 1))", x=T),
    ],
    "reshape": [
        case("np.reshape(x, (4, 3))", x=M, explicit=False),
        case("np.reshape(x, (-1,))", x=M, explicit=False),
        case("np.reshape(x, (2, -1))", x=T, explicit=False),
        case("x.reshape(2, -1)", x=T, explicit=False),  # (N, -1)
        case("x.reshape(-1, 2)", x=M, explicit=False),
        case("x.reshape((6, 2))", x=M, explicit=False),
        case("np.expand_dims(x, 0)", x=M, explicit=False),
        case("np.expand_dims(x, axis=-1)", x=M, explicit=False),
        case("np.squeeze(x)", x=(3, 1, 4), explicit=False),
        case("np.squeeze(x, axis=1)", x=(3, 1, 4), explicit=False),
    ],
    "swapaxes": [
        case("np.swapaxes(x, 0, 2)", x=T, explicit=False),
        case("x.swapaxes(-1, 1)", x=T, explicit=False),
        case("np.swapaxes(x, axis1=0, axis2=1) * y", x=M, y=(4, 3), explicit=False),
    ],
    "ravel": [
        case("np.ravel(x)", x=M, explicit=False),
        case("x.ravel()", x=T, explicit=False),
        case("x.flatten()", x=M, explicit=False),
    ],
    "outer": [
        case("np.outer(u, v)", u=(3,), v=(4,)),
        case("np.outer(x, v)", x=(2, 2), v=(3,), explicit=False),
        case("np.outer(u, x)", u=(2,), x=M, explicit=False),
    ],
    # Pieces: one taken by its place here (unpacked and bound to a list: tests/test_rules.py).
    "split": [
        case("np.split(x, 2, axis=1)[1]", x=M),
        case("np.split(x, [1, 3])[0] * 2.0 + np.split(x, [1, 3])[2]", x=(4,)),
        case("np.split(t, [1, 3], axis=-1)[1]", t=T),
        case("np.split(x, [2, 9], axis=1)[2]", x=M),  # past the end: an empty piece
        case("np.split(x, 1)[0] ** 2", x=M),
        case("np.tanh(np.split(x, [-1])[0])", x=(5,)),
    ],
    "array_split": [
        case("np.array_split(x, 3)[0] ** 2", x=(7,)),  # pieces of 3, 2, 2
        case("np.array_split(x, 3, axis=1)[2]", x=M),  # of 2, 1, 1
        case("np.array_split(x, 5)[4]", x=M),  # more pieces than rows: the last is empty
        case("np.array_split(t, [2], axis=0)[0]", t=T),
    ],
    "hsplit": [
        case("np.hsplit(x, 2)[0] ** 2", x=M),
        case("np.hsplit(u, [1])[1]", u=(4,)),  # a 1-D array is split along its first axis
        case("np.hsplit(t, 3)[2]", t=T),
    ],
    "vsplit": [
        case("np.vsplit(x, 3)[1] ** 2", x=M),
        case("np.vsplit(t, [1])[0]", t=T),
    ],
    "dsplit": [
        case("np.dsplit(t, 2)[1] ** 2", t=T),
        case("np.dsplit(t, [1, 3])[0]", t=T),
    ],
    "concatenate": [
        case("np.concatenate([x, y])", x=M, y=(2, 4), explicit=False),
        case("np.concatenate([x, y], axis=1)", x=M, y=(3, 2), explicit=False),
        case("np.concatenate((x, y, x), axis=-1)", x=M, y=(3, 2), explicit=False),
        case("np.concatenate([x, y], axis=0)", x=(4,), y=(2,), explicit=False),
    ],
    "stack": [
        case("np.stack([x, y])", x=M, y=M, explicit=False),
        case("np.stack([x, y], axis=1)", x=M, y=M, explicit=False),
        case("np.stack((x, y, x), axis=-1)", x=M, y=M, explicit=False),
    ],
    "astype": [
        case("x.astype(float)", x=M),
        case("x.astype(np.float64)", x=M),
        case("np.astype(x, np.float64)", x=M),
        # whole numbers are piecewise constant: no gradient flows through int or bool
        case("x.astype(np.float64) + x.astype(int) * y", x=M, y=M),
    ],
    # --- more shapes ----------------------------------------------------------------------
    "vstack": [
        case("np.vstack([x, y])", x=M, y=(2, 4)),
        case("np.vstack((u, x, u))", u=(4,), x=M),
        case("np.vstack([u, v])", u=(4,), v=(4,)),
        case("np.vstack([x, y])", x=M, y=(2, 4), explicit=False),
        # numpy 2 deprecates the alias (a DeprecationWarning), but still has it
        case("np.row_stack([x, y])", x=M, y=(2, 4)),
        case("np.row_stack((u, v))", u=(4,), v=(4,)),
    ],
    "hstack": [
        case("np.hstack([x, y])", x=M, y=(3, 2)),
        case("np.hstack((u, v, u))", u=(4,), v=(2,)),
        case("np.hstack([t, s])", t=T, s=(2, 1, 4)),
        case("np.hstack([u, s])", u=(2,), s=()),
    ],
    "dstack": [
        case("np.dstack([x, y])", x=M, y=M),
        case("np.dstack((t, x))", t=(3, 4, 2), x=M),
        case("np.dstack([u, v])", u=(4,), v=(4,)),
    ],
    "column_stack": [
        case("np.column_stack([u, v])", u=(3,), v=(3,)),
        case("np.column_stack((x, u))", x=M, u=(3,)),
        case("np.column_stack([u, x, u])", u=(3,), x=(3, 2)),
    ],
    "atleast_1d": [
        case("np.atleast_1d(s)", s=()),
        case("np.atleast_1d(x)", x=M),
    ],
    "atleast_2d": [
        case("np.atleast_2d(u)", u=(4,)),
        case("np.atleast_2d(s)", s=()),
        case("np.atleast_2d(x)", x=M),
    ],
    "atleast_3d": [
        case("np.atleast_3d(u)", u=(4,)),
        case("np.atleast_3d(x)", x=M),
        case("np.atleast_3d(t)", t=T),
    ],
    "flip": [
        case("np.flip(x)", x=M),
        case("np.flip(x, 0)", x=M),
        case("np.flip(x, axis=(0, 2))", x=T),
        case("np.flip(x, axis=-1)", x=T),
    ],
    "rot90": [
        case("np.rot90(x)", x=M),
        case("np.rot90(x, 2)", x=M),
        case("np.rot90(x, k=-1)", x=M),
        case("np.rot90(x, 4)", x=M),
        case("np.rot90(x, 1, axes=(1, 2))", x=T),
        case("np.rot90(x, k=3, axes=(2, 0))", x=T),
        case("np.rot90(x, -1, (-1, -3))", x=T),
    ],
    "fliplr": [case("np.fliplr(x)", x=M), case("np.fliplr(x)", x=T)],
    "flipud": [case("np.flipud(x)", x=M), case("np.flipud(u)", u=(4,))],
    "roll": [
        case("np.roll(x, 1)", x=M),
        case("np.roll(x, -2, axis=1)", x=M),
        case("np.roll(x, (1, 2), axis=(0, 2))", x=T),
        case("np.roll(x, shift=5, axis=0)", x=M),
    ],
    "tile": [
        case("np.tile(x, 2)", x=M),
        case("np.tile(x, (2, 1))", x=M),
        case("np.tile(u, (3, 2))", u=(4,)),
        case("np.tile(x, (2, 1, 3))", x=M),
        case("np.tile(x, (2,))", x=T),
    ],
    "repeat": [
        case("np.repeat(x, 2)", x=M),
        case("np.repeat(x, 3, axis=1)", x=M),
        case("np.repeat(x, [1, 0, 2], axis=0)", x=M, explicit=False),
        case("x.repeat(2, axis=-1)", x=T),
        case("np.repeat(x, 2, axis=0)", x=M, explicit=False),
    ],
    "array_append": [
        case("np.append(u, v)", u=(3,), v=(2,)),
        case("np.append(x, y)", x=M, y=(2,)),
        case("np.append(x, y, axis=0)", x=M, y=(2, 4)),
        case("np.append(x, y, axis=-1)", x=M, y=(3, 2)),
        case("np.append(t, y, 1)", t=T, y=(2, 1, 4)),
        case("np.append(x, 1.5)", x=M),
        case("np.append(s, u)", s=(), u=(3,)),
    ],
    "linspace": [
        case("np.linspace(s, t, 5)", s=(), t=()),
        case("np.linspace(s, t, num=4, endpoint=False)", s=(), t=()),
        case("np.linspace(s, t, 1)", s=(), t=()),
        case("np.linspace(s, t)", s=(), t=()),
        case("np.linspace(u, v, 3)", u=(3,), v=(3,)),
        case("np.linspace(u, t, 4, axis=1)", u=(3,), t=()),
        case("np.linspace(x, u, 3, False, axis=-1)", x=(2, 1), u=(3,)),
        case("np.linspace(0.5, t, 6)", t=()),
    ],
    "gradient": [
        case("np.gradient(u)", u=(5,)),
        case("np.gradient(u, axis=0)", u=(2,)),
        case("np.gradient(u, edge_order=1)", u=(3,)),
        case("np.gradient(x, axis=1)", x=M),
        case("np.gradient(t, axis=-2)", t=T),
        case("np.gradient(t, axis=0)", t=T),
    ],
    "broadcast_to": [
        case("np.broadcast_to(u, (3, 4))", u=(4,)),
        case("np.broadcast_to(x, (2, 3, 4))", x=(3, 1)),
        case("np.broadcast_to(x, (3, 4))", x=M),
        case("np.broadcast_to(x, (2, 3, 4))", x=(1, 4), explicit=False),
    ],
    "moveaxis": [
        case("np.moveaxis(x, 0, -1)", x=T),
        case("np.moveaxis(x, (0, 1), (2, 0))", x=T),
        case("np.moveaxis(x, source=1, destination=0)", x=M),
    ],
    "rollaxis": [
        case("np.rollaxis(x, 2)", x=T),
        case("np.rollaxis(x, 0, 3)", x=T),
        case("np.rollaxis(x, -1, 1)", x=T),
        case("np.rollaxis(x, 1, 1)", x=T),
        case("np.rollaxis(x, 2, 0)", x=T, explicit=False),
    ],
    "diag": [
        case("np.diag(u)", u=(4,)),
        case("np.diag(u, 1)", u=(3,)),
        case("np.diag(u, k=-2)", u=(3,)),
        case("np.diag(x)", x=M),
        case("np.diag(x, 1)", x=M),
        case("np.diag(x, k=-1)", x=M),
        case("np.diag(x, 2)", x=M, explicit=False),
    ],
    "diagonal": [
        case("np.diagonal(x)", x=M),
        case("np.diagonal(x, 1)", x=M),
        case("x.diagonal(offset=-1)", x=M),
        case("np.diagonal(x, 0, 1, 2)", x=T, explicit=False),
        case("np.diagonal(x, offset=1, axis1=2, axis2=0)", x=T, explicit=False),
    ],
    "triu": [
        case("np.triu(x)", x=M),
        case("np.triu(x, 1)", x=M),
        case("np.triu(x, k=-1)", x=T),
        case("np.triu(u)", u=(4,)),
        case("np.triu(u, 1)", u=(4,), explicit=False),
    ],
    "tril": [
        case("np.tril(x)", x=M),
        case("np.tril(x, -1)", x=M),
        case("np.tril(u, k=1)", u=(3,)),
    ],
    "take": [
        case("np.take(x, [0, 5, 5, 11])", x=M, explicit=False),
        case("np.take(x, i, axis=1)", x=M, labels={"i": [3, 0, 3]}),
        case("np.take(x, [[0, 1], [1, 1]], axis=0)", x=M),
        case("x.take(i, axis=-1)", x=T, labels={"i": [2, 2]}),
        case("np.take(x, 2, axis=1)", x=M),
    ],
    "take_along_axis": [
        case(
            "np.take_along_axis(x, i, axis=1)", x=M, labels={"i": [[0], [3], [3]]}, explicit=False
        ),
        case(
            "np.take_along_axis(x, i, 0)",
            x=M,
            labels={"i": [[0, 1, 2, 2], [0, 0, 1, 2]]},
            explicit=False,
        ),
        case(
            "np.take_along_axis(u, i, axis=None)", u=(4,), labels={"i": [3, 3, 0]}, explicit=False
        ),
        case("np.take_along_axis(x, i, -1)", x=M, labels={"i": [[1, 1]]}, explicit=False),
    ],
    "pad": [
        case("np.pad(x, 1)", x=M),
        case("np.pad(x, ((1, 0), (2, 3)))", x=M),
        case("np.pad(x, (2, 1), constant_values=0.5)", x=M),
        case("np.pad(x, [(0, 0), (1, 1), (2, 0)])", x=T),
        case("np.pad(x, 1, mode='constant', constant_values=c)", x=M, c=()),
        case("np.pad(x, ((1, 2), (0, 1)), constant_values=c)", x=M, c=(2,), explicit=False),
        case("np.pad(x, ((1, 2), (3, 1)), constant_values=c)", x=M, c=(2, 2), explicit=False),
        case("np.pad(u, 2, 'constant', constant_values=c)", u=(4,), c=()),
        case("np.pad(x, 1)", x=M, explicit=False),
    ],
    "sliding_window_view": [
        case("np.lib.stride_tricks.sliding_window_view(u, 3)", u=(6,), explicit=False),
        case("np.lib.stride_tricks.sliding_window_view(x, (2, 2))", x=M, explicit=False),
        case("np.lib.stride_tricks.sliding_window_view(x, 3, axis=1)", x=M, explicit=False),
        case(
            "np.lib.stride_tricks.sliding_window_view(t, (2, 3), axis=(1, 2))",
            t=(2, 4, 5),
            explicit=False,
        ),
        case(
            "np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(1, 1))",
            x=(2, 5),
            explicit=False,
        ),
    ],
    # the conditions' shape is not inferred (a list of comparisons): nor the result's
    "select": [
        case("np.select([x > 0, y > 0], [x, y])", x=M, y=M, explicit=False),
        case("np.select([x > 0], [2.0 * x], 0.5)", x=M, explicit=False),
        case("np.select((u > 0, x > 0), (u, x), 0.5)", u=(4,), x=M, explicit=False),
        case("np.select([y < 0, x > 0], [y, x])", x=M, y=(3, 1), explicit=False),
    ],
    "array": [
        case("np.array([[c, -s], [s, c]])", c=(), s=()),
        case("np.array([x, y, x])", x=M, y=M),
        case("np.asarray((u, 2 * u))", u=(4,)),
        case("np.array([[s, 1.0], [0.5, s * s]], dtype=float)", s=()),
        case("np.array([s, c])", s=(), c=(), explicit=False),
    ],
    "array_of_value": [
        case("np.array(x)", x=M),
        case("np.array(x, dtype=np.float64) + np.array(x, dtype=int) * y", x=M, y=M),
    ],
    "asarray": [
        case("np.asarray(x)", x=M),
        case("np.asarray(s)", s=()),
        case("np.asarray(x, float)", x=M),
    ],
    # --- indexing: the gradient is added back at the index --------------------------------
    "index": [
        case("x[:, :2]", x=M, explicit=False),
        case("x[1:-1]", x=M, explicit=False),
        case("x[::2, 1:3]", x=M, explicit=False),
        case("x[0]", x=M, explicit=False),
        case("x[-1, 2]", x=M, explicit=False),  # one entry: a scalar
        case("x[:, None]", x=M, explicit=False),
        case("x[..., 1]", x=T, explicit=False),
        # integer arrays: repeated indices add up
        case("x[np.arange(3), y]", x=M, labels={"y": [1, 1, 3]}, explicit=False),
        case("x[y]", x=M, labels={"y": [0, 2, 0, 0]}, explicit=False),
        case("x[:, y]", x=M, labels={"y": [3, 3, 1]}, explicit=False),
        case("x[y, 1:]", x=M, labels={"y": [2, 2]}, explicit=False),
        case("x[1:, y]", x=M, labels={"y": [0, 0]}, explicit=False),
        case("x[y, ::2]", x=M, labels={"y": [1, 1, 0]}, explicit=False),
        case("x[[0, 0, 2]]", x=M, explicit=False),  # a literal list: repeated indices too
        case("x[:, [1, 3, 1]]", x=M, explicit=False),
        # boolean masks
        case("x[x > 0]", x=M, explicit=False),
        case(
            "x[m]", x=M, labels={"m": [[True] * 4, [False] * 4, [True, False] * 2]}, explicit=False
        ),
        case("x[:, m]", x=M, labels={"m": [True, False, True, True]}, explicit=False),
    ],
    # --- a fill value spread over a shape: its gradient sums the upstream back -------------
    "full": [
        case("np.full((3, 4), x)", x=ZERO_D, explicit=False),
        case("np.full((2, 3, 4), x)", x=(4,), explicit=False),
        case("np.full((3, 4), x, dtype=np.float64)", x=(1, 4), explicit=False),
        case("np.full(x.shape, y) * x", x=M, y=ZERO_D, explicit=False),
        case("np.full(3, x)", x=ZERO_D, explicit=False),
    ],
    "full_like": [
        case("np.full_like(x, y) * x", x=M, y=ZERO_D),
        case("np.full_like(x, y)", labels={"x": [[0.5] * 4] * 3}, y=(4,)),
        case("np.full_like(x, y, dtype=float) + x", x=T, y=(3, 1)),
    ],
}
