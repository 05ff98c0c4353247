"""What gradgen refuses, where, and why: each construct at its own line and column."""

from __future__ import annotations

import textwrap

import pytest

import gradgen
from gradgen.api import Options, compile_source
from gradgen.errors import GradgenError


def refusal(source: str) -> GradgenError:
    with pytest.raises(GradgenError) as caught:
        gradgen.generate(textwrap.dedent(source), "bad.py")
    return caught.value


# (id, function body line, column of the caret in that line, words the message must contain)
BODY_REFUSALS = [
    ("for-over-values", "for v in x:\n        x = x * v", 14, "range(len(xs))"),
    ("for-unpacking", "for i, v in range(3):\n        x = x * v", 9, "several names"),
    ("for-over-dict", "for k in range(3, step=1):\n        x = x * 2", 14, "range(len(xs))"),
    ("while-true", "while True:\n        x = x * 2", 11, "this 'while' never ends"),
    ("return-in-loop", "for i in range(2): return -x", 24, "'return' inside a loop"),
    ("try", "try:\n        x = x\n    except Exception:\n        pass", 5, "'try'"),
    ("with", "with open('f') as h:\n        pass", 5, "'with'"),
    ("nested-def", "def g(y):\n        return y", 5, "nested functions"),
    ("class", "class C:\n        pass", 5, "classes inside functions"),
    ("global", "global G", 5, "'global'"),
    ("nonlocal-del", "del x", 5, "'del'"),
    ("import", "import math", 5, "imports inside functions"),
    ("raise", "raise ValueError()", 5, "'raise'"),
    ("assert", "assert x > 0", 5, "'assert'"),
    ("augmented-parameter", "x += 1", 5, "writes into the caller's array 'x'"),
    ("augmented-element", "x[0] += 1", 5, "augmented assignment to an element"),
    ("augmented-shift", "x <<= 2", 7, "the operator '<<='"),
    ("starred-target", "a, *b = x, x", 8, "starred unpacking"),
    ("unpacking-count", "a, b = x, x, x", 5, "2 names but 3 values"),
    ("chained", "a = b = x", 5, "chained assignment"),
    ("attribute-target", "x.y = 1", 5, "assignment to an attribute"),
    ("subscript-target", "x[0] = 1", 5, "can follow only inside a loop"),
    ("expression-statement", "print(x)", 5, "expression statements"),
    ("unknown-call", "y = foo(x)", 9, "undefined name 'foo'"),
    ("builtin-call", "y = print(x)", 9, "'print' is not an operation"),
    ("chained-comparison", "y = 0 < x < 1", 9, "chained comparisons"),
    ("unknown-attribute", "y = x.real", 11, "the attribute '.real'"),
    ("unknown-method", "y = x.searchsorted(x)", 11, "the method '.searchsorted()'"),
    ("keyword-argument", "y = max(x, x, default=1.0)", 9, "takes no keyword arguments"),
    ("unknown-keyword", "y = np.sum(x, where=x)", 9, "has no argument 'where'"),
    ("variable-axis", "y = np.sum(x, axis=x)", 9, "'axis' must be a literal"),
    # np.average's fourth positional argument is 'returned' (a tuple), not keepdims
    ("average-returned", "y = np.average(x, 0, x, True)", 9, "at most 3 arguments by position"),
    ("average-returned-keyword", "y = np.average(x, returned=True)", 9, "no argument 'returned'"),
    ("variable-diff-count", "y = np.diff(x, n=x.shape[0])", 22, "'n' must be a literal"),
    ("pad-reflect", "y = np.pad(x, 1, mode='reflect')", 9, "mode 'constant'"),
    ("pad-edge", "y = np.pad(x, 1, 'edge')", 9, "mode 'constant'"),
    ("gradient-spacing", "y = np.gradient(x, 0.5)", 9, "at most 1 arguments by position"),
    ("gradient-edge-order", "y = np.gradient(x, edge_order=2)", 9, "edge_order=1 only"),
    ("gradient-axes", "y = np.gradient(x, axis=(0, 1))", 9, "along one axis"),
    ("linspace-retstep", "y = np.linspace(x, x, 5, retstep=True)", 9, "no argument 'retstep'"),
    ("linspace-dtype", "y = np.linspace(x, x, 5, dtype=float)", 9, "no argument 'dtype'"),
    ("append-variable-axis", "y = np.append(x, x, axis=x.ndim)", 30, "'axis' must be a literal"),
    ("lambda", "y = (lambda t: t)(x)", 10, "lambdas"),
    ("comprehension", "y = [t for t in x]", 9, "comprehensions"),
    (
        "conditional-expression-in-a-range",
        "for t in range(2 if x > 0 else 3):\n        x = x * 2",
        20,
        "bind it to a name in a statement of its own",
    ),
    ("boolean-operator", "y = x and x", 9, "'and'/'or'"),
    ("left-shift", "y = x << 2", 11, "'<<'"),
    ("bit-or", "y = x | 2", 11, "'|'"),
    ("bit-not", "y = ~x", 9, "unary operator"),
    ("string", "y = 'x'", 9, "strings"),
    ("complex", "y = x * 1j", 13, "complex numbers"),
    ("three-argument-max", "y = max(x, x, x)", 9, "'max' with 3 arguments"),
    (
        "unknown-function-of-a-parameter",
        "x = math.ulp(x)",
        9,
        "'math.ulp' is not an operation gradgen can differentiate; its argument 'x' needs a "
        "gradient here (leave a parameter that is data out of wrt, or give the function a rule "
        "with @gradgen.backward_of)",
    ),
    (
        "unknown-function-of-a-value",
        "x = np.linalg.eig(x * 2)",
        9,
        "'np.linalg.eig' is not an operation gradgen can differentiate; its argument "
        "'x * 2' needs a gradient here, from 'x'",
    ),
    (
        "unknown-function-inside",
        "x = x + math.ulp(np.sum(x, axis=0))",
        13,
        "'math.ulp' is not an operation gradgen can differentiate; its argument "
        "'np.sum(x, axis=0)' needs a gradient here, from 'x'",
    ),
    (
        "unknown-function-keyword",
        "x = np.require(1.0, dtype=x) * x",
        9,
        "its argument 'dtype=x' needs a gradient here, from 'x'",
    ),
    ("random-generator-made-inside", "y = np.random.default_rng(0)", 9, "does not draw random"),
    (
        "random-draw-of-a-parameter",
        "x = np.random.normal(x, 1.0)",
        9,
        "'np.random.normal' draws random numbers, and no gradient flows through a draw: its "
        "argument 'x' needs a gradient here",
    ),
    ("walrus", "y = (z := x)", 10, "assignment expressions"),
    ("undefined-name", "y = x * q", 13, "undefined name 'q'"),
    ("used-before-assignment", "y = z * x\n    z = x", 9, "'z' is used before it is assigned"),
    ("module-as-value", "y = x * math", 13, "module 'math' is not a value"),
    ("computed-global", "y = x * TABLE", 13, "is module data (computed when the module runs)"),
    ("computed-function", "y = TABLE(x)", 9, "not a function defined with 'def'"),
    ("unpacking-one-result", "a, b = helper(x)", 5, "2 names, but 'helper' returns one value"),
    ("unknown-keyword-of-user-function", "y = helper(x, s=1)", 9, "no parameter 's'"),
    ("yield", "y = yield x", 9, "'yield'"),
    (
        "several-results-bound-to-one-name",
        "y = np.linalg.slogdet(x)",
        9,
        "'np.linalg.slogdet' returns 2 values (sign, logdet): unpack them (sign, logdet = ...) "
        "or take one ([1])",
    ),
    ("several-results-count", "a, b, c = np.linalg.eigh(x)", 5, "3 names, but 'np.linalg.eigh'"),
    ("several-results-taken-by-a-value", "y = np.linalg.slogdet(x)[len(x)]", 9, "take one of"),
    ("several-results-out-of-range", "y = np.linalg.eigh(x)[2]", 9, "([0] to [1])"),
    # Pieces of a split: as many as the literal sections say
    ("split-count", "a, b = np.split(x, 3)", 5, "2 names, but 'np.split' returns 3 values"),
    ("split-sections-not-literal", "a, b = np.split(x, len(x))", 24, "must be a literal"),
    ("split-no-pieces", "a, b = np.array_split(x, 0)", 12, "a whole number of pieces"),
    ("split-sections-fraction", "a, b = np.split(x, [1.5])", 12, "a whole number of pieces"),
    ("split-axis-none", "a, b = np.split(x, [1], axis=None)", 12, "one whole number"),
    ("split-taken-out-of-range", "y = np.hsplit(x, 2)[2]", 9, "([0] to [1])"),
    ("split-read-whole", "parts = np.split(x, 2)\n    x = np.sum(parts)", 13, "read as a list"),
    (
        "split-list-rebound-in-a-loop",
        "parts = np.split(x, 2)\n    for t in range(2):\n        parts = np.split(parts[0], 2)",
        13,
        "'parts', a list of pieces, is rebound by a loop",
    ),
    ("split-loop", "for p in np.split(x, 4):\n        x = x * p", 14, "pieces of a split"),
    ("einsum-operand-count", "y = np.einsum('ij,jk', x)", 9, "name 2 operands, not 1"),
    ("einsum-ellipsis-inside", "y = np.einsum('i...j', x)", 9, "only at the start"),
    ("einsum-result-label", "y = np.einsum('ij->k', x)", 9, "a label of the result"),
    ("einsum-keyword", "y = np.einsum('ij', x, out=x)", 9, "no keyword arguments"),
    ("matrix-power-negative", "y = np.linalg.matrix_power(x, -1)", 9, "n >= 1"),
    ("tensordot-axes", "y = np.tensordot(x, x, axes=x)", 9, "'axes' must be a literal"),
    # QR's and least squares' gradients: not in the table (see README's operations)
    ("qr-unpacked", "q, r = np.linalg.qr(x)", 12, "'np.linalg.qr' is not an operation"),
    ("lstsq-taken", "x = np.linalg.lstsq(x, x)[0]", 9, "'np.linalg.lstsq' is not an operation"),
    # svd's u and vh of full_matrices=True (the default) of a matrix not known to be square
    ("svd-full-u", "x = np.linalg.svd(x)[0]", 9, "write full_matrices=False"),
    ("svd-full-vh", "x = np.linalg.svd(x, True)[2]", 9, "write full_matrices=False"),
    ("svd-hermitian", "x = np.linalg.svd(x, hermitian=True)[1]", 9, "hermitian=False"),
    ("svd-variable-compute-uv", "x = np.linalg.svd(x, compute_uv=x)", 9, "must be a literal"),
    ("svd-unpacked-values", "u, s, vh = np.linalg.svd(x, compute_uv=False)", 16, "unpack"),
]


@pytest.mark.parametrize(
    ("body", "column", "words"),
    [pytest.param(b, c, w, id=i) for i, b, c, w in BODY_REFUSALS],
)
def test_refused_in_a_function_body(body: str, column: int, words: str) -> None:
    source = (
        "import math\nimport numpy as np\n\nTABLE = np.ones(3)\n\n\n"
        "def helper(t):\n    return t\n\n\n"
        f"def f(x):\n    {body}\n    return x\n"
    )
    with pytest.raises(GradgenError) as caught:
        gradgen.generate(source, "bad.py")
    diagnostic = caught.value.diagnostics[0]
    assert words in diagnostic.message
    assert (diagnostic.line, diagnostic.column) == (12, column)
    assert diagnostic.source_line.strip() == body.splitlines()[0].strip()
    rendered = caught.value.render()
    assert rendered.startswith(f"bad.py:12:{column}: error: ")
    assert rendered.splitlines()[2].index("^") == 4 + column - 1


FUNCTION_REFUSALS = [
    ("no-return", "def f(x):\n    y = x\n", 1, 5, "has no return statement"),
    ("bare-return", "def f(x):\n    return\n", 2, 5, "'return' needs a value"),
    ("one-tuple-return", "def f(x):\n    return x,\n", 2, 12, "one-element tuple"),
    ("code-after-return", "def f(x):\n    return x\n    y = x\n", 3, 5, "after 'return'"),
    ("star-args", "def f(*xs):\n    return 1.0\n", 1, 7, "*args"),
    ("keyword-only", "def f(x, *, y):\n    return x\n", 1, 13, "keyword-only"),
    ("async", "async def f(x):\n    return x\n", 1, 1, "async functions"),
    ("other-decorator", "@staticmethod\ndef f(x):\n    return x\n", 1, 1, "decorator"),
    ("defined-twice", "def f(x):\n    return x\n\n\ndef f(x):\n    return x\n", 5, 5, "twice"),
    ("non-constant-default", "def f(x, y=z):\n    return x\n", 1, 12, "undefined name"),
    ("no-function", "X = 1\n", 1, 1, "no function to differentiate"),
    ("empty-file", "", 1, 1, "no function to differentiate"),
    ("syntax-error", "def f(x):\n    return (x\n", 2, 12, "invalid syntax"),
    (
        "gradient-through-a-library-function",
        "from scipy.special import dawsn\n\n\ndef f(y):\n    return 2.0 * dawsn(y + 1)\n",
        5,
        18,
        "'dawsn' is not an operation gradgen can differentiate; its argument 'y + 1' needs "
        "a gradient here, from 'y' (leave a parameter that is data out of wrt, or give the "
        "function a rule with @gradgen.backward_of)",
    ),
    (
        "gradient-through-an-argument-gradgen-has-no-rule-for",
        "import scipy.special\n\n\ndef f(x, alpha):\n"
        "    return scipy.special.gammainc(alpha * 2, x)\n",
        5,
        35,
        "gradgen has no gradient of 'scipy.special.gammainc' with respect to its argument "
        "'a' (only with respect to 'x'), and 'alpha * 2' needs one here, from 'alpha'",
    ),
    (
        "split-piece-taken-by-a-value",
        "import numpy as np\n\n\ndef f(x, i):\n    parts = np.split(x, 2)\n"
        "    return np.sum(parts[i])\n",
        6,
        19,
        "take one of the 2 pieces by a whole number written out ([0] to [1])",
    ),
    (
        "split-list-bound-in-a-side",
        "import numpy as np\n\n\ndef f(x, c):\n    if c > 0:\n        parts = np.split(x, 2)\n"
        "    else:\n        parts = np.split(-x, 2)\n    return np.sum(parts[0])\n",
        6,
        17,
        "'parts', a list of pieces, is bound in a side of an if",
    ),
    (
        "gradient-through-an-order-gradgen-has-no-rule-for",
        "import scipy.special as sc\n\n\ndef f(x, order):\n    return sc.jn(order + 1, x)\n",
        5,
        18,
        "gradgen has no gradient of 'sc.jn' with respect to its argument 'n' (only with "
        "respect to 'x'), and 'order + 1' needs one here, from 'order'",
    ),
    (
        "gradient-through-the-second-of-two-arguments-with-no-rule",
        "import scipy.special as sc\n\n\ndef f(x, b):\n    return sc.betainc(2.0, b + 1, x)\n",
        5,
        28,
        "gradgen has no gradient of 'sc.betainc' with respect to its argument 'b' (only with "
        "respect to 'x'), and 'b + 1' needs one here, from 'b'",
    ),
    (
        "gradient-through-a-cdf-shape-gradgen-has-no-rule-for",
        "import scipy.stats\n\n\ndef f(x, nu):\n    return scipy.stats.t.cdf(x, nu + 1)\n",
        5,
        33,
        "gradgen has no gradient of 'scipy.stats.t.cdf' with respect to its argument 'df' "
        "(only with respect to 'x', 'loc' and 'scale'), and 'nu + 1' needs one here, from 'nu'",
    ),
    (
        "stop-gradient-of-two-values",
        "import gradgen\n\n\ndef f(x):\n    return x * gradgen.stop_gradient(x, 1)\n",
        5,
        16,
        "'gradgen.stop_gradient' with 2 arguments is not supported",
    ),
    (
        "svd-full-u-of-a-matrix-not-square",
        'import numpy as np\n\n\ndef f(x: "3, 4"):\n'
        "    u, s, vh = np.linalg.svd(x)\n    return u\n",
        5,
        16,
        "with full_matrices=True (numpy's default), u and vh get columns that x does not "
        "determine; write full_matrices=False",
    ),
    (
        "solve-triangular-of-a-stack",
        "import scipy.linalg\n\n\n"
        'def f(a: "2, 3, 3", b: "2, 3, 4"):\n    return scipy.linalg.solve_triangular(a, b)\n',
        5,
        12,
        "written for one matrix a (2-D), and a has 3 axes here",
    ),
    (
        "solve-triangular-of-stacked-right-sides",
        "import scipy.linalg\n\n\n"
        'def f(a: "3, 3", b: "2, 3, 4"):\n    return scipy.linalg.solve_triangular(a, b)\n',
        5,
        12,
        "b a vector or a matrix (1-D or 2-D), and b has 3 axes here",
    ),
    (
        "solve-banded-of-a-stack",
        "import scipy.linalg\n\n\n"
        'def f(ab: "2, 3, 4", b: "4"):\n    return scipy.linalg.solve_banded((1, 1), ab, b)\n',
        5,
        12,
        "one banded matrix ab (2-D), and ab has 3 axes here",
    ),
    (
        "solve-banded-bands-variable",
        "import scipy.linalg\n\n\n"
        "def f(ab, b):\n    return scipy.linalg.solve_banded((1, len(b)), ab, b)\n",
        5,
        12,
        "l_and_u written out as a pair of whole numbers",
    ),
    (
        "solve-sylvester-of-a-number",
        "import scipy.linalg\n\n\n"
        'def f(a: "3, 3", b: "3, 3", q: float):\n'
        "    return scipy.linalg.solve_sylvester(a, b, q)\n",
        5,
        12,
        "written for matrices (or stacks of them), and q has 0 axes here",
    ),
    (
        "sqrtm-of-a-number",
        "import scipy.linalg\n\n\ndef f(x: float):\n    return scipy.linalg.sqrtm(x)\n",
        5,
        12,
        "written for matrices (or stacks of them), and x has 0 axes here",
    ),
    (
        "solve-triangular-trans-unknown",
        "import scipy.linalg\n\n\n"
        "def f(a, b):\n    return scipy.linalg.solve_triangular(a, b, trans='X')\n",
        5,
        12,
        "trans written out as 0, 1, 2, 'N', 'T' or 'C'",
    ),
    (
        "convolve-mode",
        "import scipy.signal\n\n\n"
        "def f(a, b):\n    return scipy.signal.convolve(a, b, mode='wrap')\n",
        5,
        12,
        "'full', 'valid' or 'same'",
    ),
    (
        "other-gradgen-function",
        "import gradgen\n\n\ndef f(x):\n    return x * gradgen.generate(x)\n",
        5,
        16,
        "'gradgen.generate' is not an operation gradgen can differentiate",
    ),
]


@pytest.mark.parametrize(
    ("source", "line", "column", "words"),
    [pytest.param(s, ln, c, w, id=i) for i, s, ln, c, w in FUNCTION_REFUSALS],
)
def test_refused_function_or_file(source: str, line: int, column: int, words: str) -> None:
    error = refusal(source)
    diagnostic = error.diagnostics[0]
    assert words in diagnostic.message
    assert (diagnostic.line, diagnostic.column) == (line, column)


def test_every_problem_in_the_file_is_reported_in_one_run() -> None:
    error = refusal(
        """\
        def f(x):
            while True:
                x = x * 2
            y = foo(x)
            return y << 2


        def g(x):
            return x | 2
        """
    )
    assert [(d.line, d.column) for d in error.diagnostics] == [(2, 11), (4, 9), (5, 14), (9, 14)]
    assert len(error.render().splitlines()) == 3 * 4


def test_non_utf8_bytes_are_refused_with_their_position() -> None:
    from gradgen.parse import decode

    with pytest.raises(GradgenError) as caught:
        decode(b"def f(x):\n    return x  # caf\xe9\n", "latin.py")
    diagnostic = caught.value.diagnostics[0]
    assert (diagnostic.line, diagnostic.column) == (2, 20)
    assert "UTF-8" in diagnostic.message


def test_refusal_is_a_syntax_error_with_location() -> None:
    error = refusal("def f(x):\n    y = x << 2\n    return y\n")
    assert isinstance(error, SyntaxError)
    assert (error.filename, error.lineno, error.offset) == ("bad.py", 2, 11)


def test_a_variable_named_like_a_generated_helper_is_refused() -> None:
    """The backward defines _unbroadcast; a forward value of that name would hide it."""
    source = (
        "import numpy as np\n\n\ndef f(x):\n    _unbroadcast = x + 1\n    return _unbroadcast * x\n"
    )
    with pytest.raises(gradgen.GradgenError, match="'_unbroadcast' is the name of a helper"):
        gradgen.generate(source, "f.py")


def test_a_problem_met_twice_is_reported_once() -> None:
    """A name bound in one side of an ``if`` and returned is met by the statement and by
    the result (and a function is staged for each caller): one line."""
    source = (
        "import numpy as np\n\n\ndef g(x, c):\n    if c > 0:\n        z = x * 2.0\n    return z\n"
    )
    error = refusal(source)
    assert [(d.line, d.column) for d in error.diagnostics] == [(7, 12)], error.render()


def test_an_argument_with_no_rule_is_accepted_where_it_needs_no_gradient() -> None:
    """gammainc's a is accepted where it is data (left out of wrt): x's gradient alone."""
    source = (
        "import scipy.special\n\n\n"
        "def f(x, alpha):\n    return scipy.special.gammainc(alpha * 2, x)\n"
    )
    text = compile_source(source, "forward.py", Options(wrt={"f": ("x",)})).text
    assert "dalpha" not in text and "dx = " in text


def test_svd_u_of_full_matrices_is_accepted_where_a_is_known_square_or_only_s_flows() -> None:
    """full_matrices=True's u and vh are the reduced ones of a square matrix; s needs none."""
    square = 'import numpy as np\n\n\ndef f(x: "3, 3"):\n    return np.linalg.svd(x)[0]\n'
    assert "_svd_du(" in compile_source(square, "forward.py", Options()).text
    wide = "import numpy as np\n\n\ndef f(x):\n    return np.linalg.svd(x)[1]\n"
    assert "_svd_du(" not in compile_source(wide, "forward.py", Options()).text
