"""Arrays: the traps of a backward pass over numpy values.

- aliasing: ``+=`` writes into an array in place, so a gradient shared with the caller's
  upstream gradient, with another gradient or with a view must never be written into, and a
  returned gradient must be an array the caller owns;
- broadcasting: every gradient has exactly the shape of its operand;
- dtypes: float32 in, float32 out;
- kinks and ties: ReLU at 0, ``np.max`` ties, ``abs`` at 0 give the documented sub-gradient.

Each function is generated twice where it makes sense: parameters unannotated (the generated
code undoes broadcasting at run time with ``_unbroadcast``) and annotated with their shapes.
"""

from __future__ import annotations

import textwrap
import zlib
from typing import Any

import numpy
import pytest

from test_rules import ATOL, RTOL, as_tuple, forward_and_backward, numeric_gradient, owned_arrays


def module(text: str) -> str:
    return "import numpy as np\n\n\n" + textwrap.dedent(text).lstrip("\n")


def rng(seed: str) -> numpy.random.Generator:
    return numpy.random.default_rng(zlib.crc32(seed.encode()))


def away_from_zero(generator: numpy.random.Generator, shape: tuple[int, ...]) -> Any:
    return generator.uniform(0.2, 2.0, size=shape) * generator.choice([-1.0, 1.0], size=shape)


def check(
    source: str,
    args: dict[str, Any],
    upstream: Any = None,
    *,
    owned: bool = True,
    labels: tuple[str, ...] = (),
) -> tuple[Any, ...]:
    """Run the backward of ``f`` in ``source`` at ``args`` (with ``upstream``, or its default)
    and check: arguments and upstream unmodified; ``labels`` (used only in masks or as
    indices) get None; every other gradient has the operand's shape, equals central finite
    differences and (if ``owned``) is the caller's own: sharing no memory with an argument,
    the upstream gradient or another gradient. Returns the gradients."""
    forward, backward, generated = forward_and_backward(source)
    context = f"\nforward:\n{source}\ngenerated:\n{generated}"
    before = {n: numpy.copy(v) for n, v in args.items()}
    upstream_before = numpy.copy(upstream)
    call = [*args.values()] if upstream is None else [*args.values(), upstream]
    gradients = dict(zip(args, as_tuple(backward(*call), len(args)), strict=True))
    for name, value in args.items():
        numpy.testing.assert_array_equal(value, before[name], err_msg=f"{name} modified{context}")
    if upstream is not None:
        numpy.testing.assert_array_equal(
            upstream, upstream_before, err_msg=f"upstream modified{context}"
        )

    def loss(**values: Any) -> float:
        out = forward(**values)
        return float(numpy.sum(out if upstream is None else out * upstream))

    for name, value in args.items():
        grad = gradients[name]
        if name in labels:
            assert grad is None, f"d{name} = {grad!r}, not None{context}"
            continue
        assert numpy.shape(grad) == numpy.shape(value), (
            f"d{name} has shape {numpy.shape(grad)}, {name} has {numpy.shape(value)}{context}"
        )
        numpy.testing.assert_allclose(
            grad, numeric_gradient(loss, args, name), rtol=RTOL, atol=ATOL, err_msg=context
        )
    others = dict(args)
    if upstream is not None:
        others["the upstream gradient"] = upstream
    if owned:
        owned_arrays(gradients, others, context)
    return tuple(gradients.values())


# --- (a) fan-out: the add gate hands one object to both of its inputs ------------------------

FAN_OUT = """
def f(x{x}, y{y}):
    s = x + y
    t = s * x
    u = t + y
    return u
"""


@pytest.mark.parametrize(
    ("x_shape", "y_shape"),
    [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4))],
    ids=["same-shapes", "row-broadcast", "outer-broadcast"],
)
@pytest.mark.parametrize("annotated", [False, True], ids=["plain", "annotated"])
def test_add_gate_fan_out(x_shape, y_shape, annotated) -> None:
    def note(shape: tuple[int, ...]) -> str:
        return f': "{", ".join(map(str, shape))}"' if annotated else ""

    source = module(FAN_OUT.format(x=note(x_shape), y=note(y_shape)))
    generator = rng(f"fan-out {x_shape} {y_shape}")
    x, y = away_from_zero(generator, x_shape), away_from_zero(generator, y_shape)
    upstream = generator.normal(size=numpy.broadcast_shapes(x_shape, y_shape))
    dx, dy = check(source, {"x": x, "y": y}, upstream)
    # and by hand: u = (x + y) * x + y
    numpy.testing.assert_allclose(dx, summed_to((2 * x + y) * upstream, x_shape), rtol=1e-12)
    numpy.testing.assert_allclose(dy, summed_to((x + 1) * upstream, y_shape), rtol=1e-12)


def summed_to(grad: Any, shape: tuple[int, ...]) -> Any:
    """``grad`` summed over the axes numpy broadcast an operand of ``shape`` along."""
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True)


def test_add_gate_gives_each_input_its_own_array() -> None:
    """``x + y``: the gradient of each input is the upstream gradient, as a value; the
    caller may write into dx without changing dy or its own upstream gradient."""
    source = module("def f(x, y):\n    return x + y\n")
    upstream = rng("add").normal(size=(3, 4))
    kept = upstream.copy()
    _, backward, generated = forward_and_backward(source)
    dx, dy = backward(numpy.ones((3, 4)), numpy.ones((3, 4)), upstream)
    dx += 1.0
    numpy.testing.assert_array_equal(upstream, kept, err_msg=generated)
    numpy.testing.assert_array_equal(dy, kept, err_msg=generated)


# --- (b) the output is a parameter passed through --------------------------------------------

PASS_THROUGH = [
    pytest.param("def f(x):\n    return x + 0.0\n", id="x-plus-zero"),
    pytest.param("def f(x):\n    h = x\n    return h * 1.0\n", id="alias-times-one"),
    pytest.param("def f(x):\n    return +x\n", id="unary-plus"),
    pytest.param("def f(x):\n    return x.astype(float)\n", id="astype"),
    pytest.param('def f(x: "3, 4"):\n    return x * 1.0\n', id="annotated-times-one"),
    pytest.param("def f(x):\n    h = x\n    return h * 1.0 + x\n", id="passed-through-twice"),
    pytest.param("def f(x):\n    return x + x[0]\n", id="then-scattered-into"),
    pytest.param("def f(x):\n    return x[0] + x\n", id="scattered-into-after"),
    pytest.param("def f(x):\n    return np.where(x > 0, x, 0.0) + x\n", id="where-and-itself"),
]


@pytest.mark.parametrize("text", PASS_THROUGH)
def test_passed_through_upstream_is_never_handed_back(text: str) -> None:
    """The gradient returned is not the caller's upstream object: writing into it later
    (an optimiser's in-place update, gradient clipping) must not change the upstream."""
    source = module(text)
    x = away_from_zero(rng(text), (3, 4))
    upstream = rng("G " + text).normal(size=(3, 4))
    kept = upstream.copy()
    (dx,) = check(source, {"x": x}, upstream)
    assert dx is not upstream
    dx *= 0.0  # the caller uses its gradient in place
    numpy.testing.assert_array_equal(upstream, kept)


# --- (c) a gradient that is a view of the upstream, then accumulated into ---------------------

VIEWS = [
    pytest.param("def f(x):\n    return x.T + x.T\n", (3, 4), id="two-transposes"),
    pytest.param(
        "def f(x):\n    a = x.T\n    b = a.T\n    return b + x\n", (3, 4), id="transpose-twice"
    ),
    pytest.param('def f(x: "3, 3"):\n    return x - x.T\n', (3, 3), id="minus-own-transpose"),
    pytest.param("def f(x):\n    return x.T - x.T * 2.0\n", (3, 4), id="transpose-minus"),
    pytest.param(
        "def f(x):\n    a = x.reshape(12)\n    return a + x.reshape(-1)\n", (3, 4), id="reshapes"
    ),
    pytest.param(
        "def f(x):\n    a = x.reshape(12)\n    return a + x.reshape(-1) * a\n",
        (3, 4),
        id="reshape-fan-out",
    ),
    pytest.param(
        "def f(x):\n    a = np.transpose(x, (1, 0, 2))\n    return a + a[0]\n",
        (2, 3, 4),
        id="transpose-then-scatter",
    ),
    pytest.param(
        "def f(x):\n    a = np.expand_dims(x, 0)\n    return a + a * a\n", (3, 4), id="expand-dims"
    ),
    pytest.param(
        "def f(x):\n    a = x.T\n    a2 = a + 0.0\n    return a2[1:] + a[:3]\n",
        (3, 4),
        id="view-then-slices",
    ),
]


@pytest.mark.parametrize(("text", "shape"), VIEWS)
def test_view_of_upstream_accumulated_into(text: str, shape: tuple[int, ...]) -> None:
    source = module(text)
    generator = rng(text)
    x = away_from_zero(generator, shape)
    forward = forward_and_backward(source)[0]
    upstream = generator.normal(size=numpy.shape(forward(x)))
    (dx,) = check(source, {"x": x}, upstream)
    assert dx.flags.writeable


def test_sum_gradient_view_accumulated_into() -> None:
    """``np.sum`` hands back a broadcast view of its upstream gradient (read-only, every entry
    the same memory): adding to it must make a new array."""
    source = module(
        """
        def f(x):
            a = np.sum(x, axis=0)
            b = np.mean(x, axis=1, keepdims=True)
            return np.sum(a * a) + np.sum(b) + np.sum(x)
        """
    )
    x = away_from_zero(rng("sum view"), (3, 4))
    (dx,) = check(source, {"x": x})
    assert dx.flags.writeable


# A gradient shared by two operands (the add gate), or a view, then written into at an index:
# the write must go to a copy.
SHARED_THEN_SCATTERED = [
    pytest.param("s = x + y\n    return s[0] + s + x", id="sum-indexed-and-whole"),
    pytest.param("s = x + y\n    return s[:, 0] + y[:, 1]", id="shared-then-y-scattered"),
    pytest.param("s = x + y\n    return s[:, 0] + x[:, 1] + y[:, 2]", id="both-scattered"),
    pytest.param("s = x + y\n    t = s.T\n    return t[0] + s[0, :3] + y.T[1]", id="transposes"),
    pytest.param("return x[0] + y[0] + x[1] + y", id="several-scatters"),
    pytest.param("a = np.stack([x, y])\n    return a[0] * a[1] + a[0]", id="stack"),
    pytest.param("a = np.concatenate([x, y])\n    return a[0] + a[3] + x[0]", id="concatenate"),
    pytest.param("a = np.sum(x, axis=0)\n    return a[0] + a + y[0]", id="sum-view"),
    pytest.param("a = x + x\n    return a[1:] * a[:-1] + y[1:]", id="overlapping-slices"),
]


@pytest.mark.parametrize("annotated", [False, True], ids=["plain", "annotated"])
@pytest.mark.parametrize("body", SHARED_THEN_SCATTERED)
def test_shared_gradient_then_scattered_into(body: str, annotated: bool) -> None:
    params = 'x: "3, 4", y: "3, 4"' if annotated else "x, y"
    source = module(f"def f({params}):\n    {body}\n")
    generator = rng(body)
    args = {"x": away_from_zero(generator, (3, 4)), "y": away_from_zero(generator, (3, 4))}
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    upstream = generator.normal(size=numpy.shape(namespace["f"](**args)))
    check(source, args, upstream)


# A value with no axes (a numpy scalar: np.amax of all entries) indexed after arithmetic gave
# its gradient: that gradient is a numpy scalar, which takes no item assignment.
INDEXED_NUMBERS = [
    pytest.param("t = z[None]\n    return np.sum(t * z)", id="index-after-a-product"),
    pytest.param("return np.sum(z[None] * z + z[...] + z[None, None])", id="several-indices"),
    pytest.param("t = z * z\n    return np.sum(t[None] + z[()] * t)", id="index-of-a-product"),
]


@pytest.mark.parametrize("annotated", [False, True], ids=["plain", "annotated"])
@pytest.mark.parametrize("body", INDEXED_NUMBERS)
def test_a_numpy_scalar_indexed_after_arithmetic(body: str, annotated: bool) -> None:
    params = 'x: "3, 1"' if annotated else "x"
    source = module(f"def f({params}):\n    z = np.amax(x, None)\n    {body}\n")
    check(source, {"x": away_from_zero(rng(body), (3, 1))})


# --- (d) broadcasting: gradients have the operand's shape exactly ----------------------------

BROADCASTS = [
    pytest.param("x + b", {"x": (3, 4), "b": (4,)}, id="ND-plus-D"),
    pytest.param("x - b", {"x": (3, 4), "b": (4,)}, id="ND-minus-D"),
    pytest.param("b - x", {"x": (3, 4), "b": (4,)}, id="D-minus-ND"),
    pytest.param("x * b", {"x": (3, 4), "b": (4,)}, id="ND-times-D"),
    pytest.param("x / b", {"x": (3, 4), "b": (4,)}, id="ND-over-D"),
    pytest.param("u * v", {"u": (3, 1), "v": (1, 4)}, id="N1-times-1D"),
    pytest.param("u - v", {"u": (3, 1), "v": (1, 4)}, id="N1-minus-1D"),
    pytest.param("u + v", {"u": (3, 1), "v": (4,)}, id="N1-plus-D"),
    pytest.param("x * b", {"x": (2, 3, 4), "b": (3, 1)}, id="3D-times-N1"),
    pytest.param("np.maximum(x, b)", {"x": (3, 4), "b": (4,)}, id="maximum-ND-D"),
    pytest.param("np.where(x > 0, x, b)", {"x": (3, 4), "b": (4,)}, id="where-ND-D"),
    pytest.param("a * x", {"a": (), "x": (3, 4)}, id="scalar-times-array"),
    pytest.param("x / a - a", {"a": (), "x": (3, 4)}, id="array-over-scalar"),
    pytest.param("x ** 2 * a", {"a": (), "x": (3, 4)}, id="square-times-scalar"),
    pytest.param("np.exp(x) ** b", {"x": (3, 4), "b": (4,)}, id="power-ND-D"),
    pytest.param(
        "np.where(x > 0, a, b)", {"x": (3, 4), "a": (), "b": (4,)}, id="where-mask-widest"
    ),
    pytest.param("np.where(x > 0, x, b)", {"x": (3, 4), "b": (3, 1)}, id="where-ND-N1"),
    pytest.param("x - np.mean(x, axis=1, keepdims=True)", {"x": (3, 4)}, id="minus-keepdims-mean"),
    pytest.param("x / np.sum(x * x, axis=0, keepdims=True)", {"x": (3, 4)}, id="over-keepdims-sum"),
    pytest.param(
        "np.exp(x - np.max(x, axis=1, keepdims=True))", {"x": (3, 4)}, id="softmax-numerator"
    ),
    pytest.param("(x - np.mean(x, axis=0)) / np.std(x, axis=0)", {"x": (3, 4)}, id="standardise"),
    pytest.param("x @ w + b", {"x": (3, 4), "w": (4, 2), "b": (2,)}, id="affine"),
    pytest.param(
        "np.maximum(0, x @ w + b) * c", {"x": (3, 4), "w": (4, 2), "b": (2,), "c": ()}, id="relu"
    ),
]


@pytest.mark.parametrize(
    "constants", ["np.zeros(3) + 1.0", "np.arange(1.0, 4.0)", "np.ones((2, 3)) * 2.0"]
)
def test_an_array_of_constants_times_a_number_gives_a_number(constants: str) -> None:
    # An array made of constants is no number: the gradient of `a` in `w * a` is summed.
    source = module(f"def f(a):\n    w = {constants}\n    return w * a\n")
    shape = numpy.shape(eval(constants, {"np": numpy}))
    (da,) = check(source, {"a": 1.5}, rng(constants).normal(size=shape), owned=False)
    assert numpy.ndim(da) == 0


@pytest.mark.parametrize("annotated", [False, True], ids=["plain", "annotated"])
@pytest.mark.parametrize(("expr", "shapes"), BROADCASTS)
def test_broadcast_gradients_have_the_operand_shape(expr, shapes, annotated) -> None:
    def note(name: str, shape: tuple[int, ...]) -> str:
        if not annotated:
            return name
        return f"{name}: float" if shape == () else f'{name}: "{", ".join(map(str, shape))}"'

    params = ", ".join(note(n, s) for n, s in shapes.items())
    source = module(f"def f({params}):\n    return {expr}\n")
    generator = rng(expr)
    args: dict[str, Any] = {}
    for name, shape in shapes.items():
        value = away_from_zero(generator, shape)
        args[name] = float(value) if shape == () else value
    out = eval(expr, {"np": numpy}, dict(args))
    upstream = generator.normal(size=numpy.shape(out))
    # Whether a gradient may be the upstream object itself is tested above (pass-through).
    labels = ("x",) if expr.startswith("np.where(x > 0, a") else ()  # only in the mask
    gradients = check(source, args, upstream, owned=False, labels=labels)
    if annotated:
        generated = forward_and_backward(source)[2]
        assert "_unbroadcast" not in generated, generated
    for (name, shape), grad in zip(shapes.items(), gradients, strict=True):
        if name in labels:
            continue
        if shape == ():
            assert numpy.ndim(grad) == 0, f"d{name} = {grad!r}"
        else:
            assert isinstance(grad, numpy.ndarray) and grad.shape == shape


# --- (e) float32 in, float32 out ---------------------------------------------------------------

FLOAT32 = [
    pytest.param("x * y + x", {"x": (3, 4), "y": (3, 4)}, id="elementwise"),
    pytest.param("np.tanh(x) * np.exp(y)", {"x": (3, 4), "y": (4,)}, id="elementwise-broadcast"),
    pytest.param("x @ y", {"x": (3, 4), "y": (4, 2)}, id="matmul"),
    pytest.param("x @ y", {"x": (4,), "y": (4, 2)}, id="matmul-1d"),
    pytest.param("np.sum(x * y, axis=0)", {"x": (3, 4), "y": (3, 4)}, id="sum-axis"),
    pytest.param("np.sum(x * y)", {"x": (3, 4), "y": (3, 4)}, id="sum"),
    pytest.param("np.mean(x, axis=1) * y", {"x": (3, 4), "y": (3,)}, id="mean-axis"),
    pytest.param("np.mean(x) * y", {"x": (3, 4), "y": (3,)}, id="mean"),
    pytest.param("x[:, 1:3] * y", {"x": (3, 4), "y": (3, 2)}, id="index-slice"),
    pytest.param("x[np.arange(3), y]", {"x": (3, 4)}, id="index-labels"),
    pytest.param("np.where(x > 0, x, y)", {"x": (3, 4), "y": (3, 4)}, id="where"),
    pytest.param("np.maximum(0, x) * y", {"x": (3, 4), "y": (3, 4)}, id="relu"),
]


@pytest.mark.parametrize("annotated", [False, True], ids=["plain", "annotated"])
@pytest.mark.parametrize(("expr", "shapes"), FLOAT32)
def test_float32_inputs_give_float32_gradients(expr, shapes, annotated) -> None:
    labels = "y" in expr and "y" not in shapes
    names = [*shapes, "y"] if labels else list(shapes)
    params = []
    for name in names:
        shape = shapes.get(name, (3,))
        params.append(f'{name}: "{", ".join(map(str, shape))}"' if annotated else name)
    source = module(f"def f({', '.join(params)}):\n    return {expr}\n")
    generator = rng(expr)
    args: dict[str, Any] = {
        name: away_from_zero(generator, shape).astype(numpy.float32)
        for name, shape in shapes.items()
    }
    if labels:
        args["y"] = numpy.array([1, 1, 3])
    out = eval(expr, {"np": numpy}, dict(args))
    assert numpy.asarray(out).dtype == numpy.float32
    upstream = numpy.asarray(generator.normal(size=numpy.shape(out)), dtype=numpy.float32)
    _, backward, generated = forward_and_backward(source)
    gradients = as_tuple(backward(*args.values(), upstream), len(args))
    # the same in float64, to compare the values with
    wide = {n: v.astype(numpy.float64) if v.dtype == numpy.float32 else v for n, v in args.items()}
    references = as_tuple(backward(*wide.values(), upstream.astype(numpy.float64)), len(args))
    for name, grad, reference in zip(args, gradients, references, strict=True):
        if name == "y" and labels:
            assert grad is None
            continue
        assert numpy.asarray(grad).dtype == numpy.float32, f"d{name}: {grad!r}\n{generated}"
        assert numpy.shape(grad) == numpy.shape(args[name])
        numpy.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-6, err_msg=generated)


@pytest.mark.parametrize("expr", ["np.sum(x)", "np.mean(x)", "x.max()", "np.sum(x * x)"], ids=str)
def test_float32_scalar_result_with_the_default_upstream(expr: str) -> None:
    """A scalar result: the upstream gradient defaults to 1.0 (a Python float), which must not
    turn float32 gradients into float64."""
    source = module(f"def f(x):\n    return {expr}\n")
    _, backward, generated = forward_and_backward(source)
    x = away_from_zero(rng(expr), (3, 4)).astype(numpy.float32)
    dx = backward(x)
    assert dx.dtype == numpy.float32, f"dx is {dx.dtype}\n{generated}"


# --- (f) kinks and ties, exactly ------------------------------------------------------------


def backward_of(text: str):
    return forward_and_backward(module(text))[1]


def test_relu_at_exactly_zero_gives_zero() -> None:
    backward = backward_of("def f(x):\n    return np.maximum(0, x)\n")
    x = numpy.array([-1.0, 0.0, -0.0, 2.0])
    upstream = numpy.array([5.0, 7.0, 11.0, 13.0])
    numpy.testing.assert_array_equal(backward(x, upstream), [0.0, 0.0, 0.0, 13.0])


def test_relu_written_x_first_sends_a_tie_to_x() -> None:
    """``np.maximum(x, 0)``: the documented tie rule gives the first argument the gradient."""
    backward = backward_of("def f(x):\n    return np.maximum(x, 0.0)\n")
    x = numpy.array([-1.0, 0.0, 2.0])
    numpy.testing.assert_array_equal(backward(x, numpy.ones(3)), [0.0, 1.0, 1.0])


@pytest.mark.parametrize(
    ("expr", "x", "expected"),
    [
        pytest.param(
            "np.max(x)",
            [[1.0, 3.0, 3.0], [2.0, 3.0, 0.0]],
            [[0, 1 / 3, 1 / 3], [0, 1 / 3, 0]],
            id="max-all-three-way",
        ),
        pytest.param(
            "np.amax(x)", [[1.0, 3.0], [3.0, 0.0]], [[0, 0.5], [0.5, 0]], id="amax-two-way"
        ),
        pytest.param("x.max()", [[2.0, 2.0], [2.0, 2.0]], [[0.25] * 2] * 2, id="max-all-equal"),
        pytest.param(
            "np.min(x)", [[1.0, -3.0], [-3.0, 0.0]], [[0, 0.5], [0.5, 0]], id="min-two-way"
        ),
        pytest.param("x.min()", [[0.0, 0.0, 1.0]], [[0.5, 0.5, 0.0]], id="min-method"),
    ],
)
def test_extreme_ties_share_the_gradient_equally(expr, x, expected) -> None:
    backward = backward_of(f"def f(x):\n    return {expr}\n")
    result = backward(numpy.array(x))
    numpy.testing.assert_allclose(result, expected, rtol=1e-15)
    numpy.testing.assert_allclose(backward(numpy.array(x), 3.0), 3 * numpy.array(expected))


@pytest.mark.parametrize(
    ("expr", "x", "upstream", "expected"),
    [
        pytest.param(
            "np.max(x, axis=1)",
            [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]],
            [6.0, 9.0],
            [[0.0, 3.0, 3.0], [3.0, 3.0, 3.0]],
            id="max-axis-1",
        ),
        pytest.param(
            "x.max(axis=0, keepdims=True)",
            [[1.0, 3.0], [1.0, 2.0]],
            [[4.0, 5.0]],
            [[2.0, 5.0], [2.0, 0.0]],
            id="max-axis-0-keepdims",
        ),
        pytest.param(
            "np.amin(x, axis=-1)",
            [[1.0, 1.0, 3.0], [0.0, 2.0, 5.0]],
            [4.0, 7.0],
            [[2.0, 2.0, 0.0], [7.0, 0.0, 0.0]],
            id="amin-last-axis",
        ),
    ],
)
def test_extreme_ties_along_an_axis(expr, x, upstream, expected) -> None:
    backward = backward_of(f"def f(x):\n    return {expr}\n")
    upstream = numpy.array(upstream)
    kept = upstream.copy()
    numpy.testing.assert_allclose(backward(numpy.array(x), upstream), expected, rtol=1e-15)
    numpy.testing.assert_array_equal(upstream, kept)


@pytest.mark.parametrize("spelling", ["abs(x)", "np.abs(x)", "np.absolute(x)"])
def test_abs_at_zero_gives_zero(spelling: str) -> None:
    backward = backward_of(f"def f(x):\n    return {spelling}\n")
    x = numpy.array([-2.0, 0.0, -0.0, 3.0])
    numpy.testing.assert_array_equal(backward(x, numpy.full(4, 5.0)), [-5.0, 0.0, 0.0, 5.0])


# --- a clip bound that is a parameter -----------------------------------------------------------


def test_clip_bound_parameter_is_differentiated() -> None:
    """``np.clip(x, lo, 0.5)`` depends on ``lo`` where x is below it: the backward gives that
    gradient (None would say "no dependence")."""
    source = module("def f(x, lo):\n    return np.sum(np.clip(x, lo, 0.5))\n")
    _, backward, generated = forward_and_backward(source)
    x = numpy.array([-1.0, -0.1, 0.3, 0.9])
    _, dlo = backward(x, -0.4)
    assert dlo is not None and float(dlo) == 1.0, f"dlo = {dlo!r}\n{generated}"


# --- np.dot above 2-D is not matrix multiplication ---------------------------------------------


def test_dot_of_stacked_arrays_is_refused_at_run_time_not_differentiated_wrongly() -> None:
    """np.dot(a, b) with a 3-D operand sums over other axes than @ does: the generated
    backward (ranks unknown) raises instead of returning the gradient of a matmul."""
    backward = forward_and_backward(module("def f(t, w):\n    return np.dot(t, w)\n"))[1]
    t, w = numpy.ones((2, 3, 4)), numpy.ones((4, 2))
    with pytest.raises(ValueError, match=r"np\.dot is differentiated for 1-D and 2-D"):
        backward(t, w, numpy.ones((2, 3, 2)))


# --- np.where: the branch not taken must not turn a gradient into NaN -------------------------

HAZARDS = [
    pytest.param("np.where(x > 0, np.sqrt(x), 0.0) * y", id="sqrt-at-zero"),
    pytest.param("np.where(x != 0, y / x, 1.0)", id="division-by-zero"),
    pytest.param("np.where(x > 0, np.log(x) * y, 0.0)", id="log-times-y"),
    pytest.param("np.where(x <= 0, 0.0, np.sqrt(x) ** 3 + y)", id="else-branch"),
    pytest.param("np.where(x > 0, np.log(np.sqrt(x)), y)", id="chain-of-two"),
]


@pytest.mark.parametrize("annotated", [False, True], ids=["plain", "annotated"])
@pytest.mark.parametrize("expr", HAZARDS)
def test_where_branch_not_taken_gives_no_nan(expr: str, annotated: bool) -> None:
    """At x <= 0 the taken branch is constant (or y): its gradient is finite, though the
    other branch's derivative is infinite or NaN there."""
    params = 'x: "5", y: "5"' if annotated else "x, y"
    source = module(f"def f({params}):\n    return np.sum({expr})\n")
    forward, backward, generated = forward_and_backward(source)
    x = numpy.array([-1.0, 0.0, 0.0, 0.25, 4.0])
    y = numpy.array([0.5, -2.0, 3.0, 1.5, -0.7])
    with numpy.errstate(all="ignore"):  # the forward itself evaluates both branches
        dx, dy = backward(x, y)
    assert numpy.all(numpy.isfinite(dx)) and numpy.all(numpy.isfinite(dy)), generated
    # away from x == 0 the gradients are the true ones
    inside = [0, 3, 4]

    def at(**values: Any) -> float:
        with numpy.errstate(all="ignore"):
            return float(forward(**values))

    args = {"x": x, "y": y}
    for name, grad in (("x", dx), ("y", dy)):
        expected = numeric_gradient(at, args, name)
        numpy.testing.assert_allclose(grad[inside], expected[inside], rtol=1e-6, err_msg=generated)


# --- integer-array indexing: += where no entry can repeat, np.add.at otherwise --------------


def test_arange_rows_with_one_label_each_scatter_with_plain_indexing() -> None:
    source = module('def f(x: "3, 4", y: "3"):\n    return x[np.arange(3), y] * 2.0\n')
    _, backward, generated = forward_and_backward(source)
    assert "dx[np.arange(3), y] +=" in generated and "add.at" not in generated, generated
    x, y = numpy.ones((3, 4)), numpy.array([1, 1, 3])
    upstream = numpy.array([1.0, 2.0, 3.0])
    dx, dy = backward(x, y, upstream)
    expected = numpy.zeros((3, 4))
    expected[[0, 1, 2], [1, 1, 3]] = [2.0, 4.0, 6.0]
    numpy.testing.assert_array_equal(dx, expected)
    assert dy is None


def test_arange_broadcast_against_a_2d_index_repeats_entries() -> None:
    """``x[np.arange(3), y]`` with ``y`` of shape (2, 3) picks row i twice: the gradient
    must add both, which only np.add.at does."""
    source = module('def f(x: "3, 4", y: "2, 3"):\n    return np.sum(x[np.arange(3), y])\n')
    _, backward, generated = forward_and_backward(source)
    assert "add.at" in generated, generated
    y = numpy.array([[1, 1, 3], [1, 0, 3]])
    dx, _ = backward(numpy.ones((3, 4)), y)
    expected = numpy.zeros((3, 4))
    numpy.add.at(expected, (numpy.arange(3), y), 1.0)
    numpy.testing.assert_array_equal(dx, expected)
    assert dx[0, 1] == 2.0 and dx[2, 3] == 2.0


# --- found trying gradgen as a new user -------------------------------------------------------


def test_upstream_after_a_defaulted_parameter_is_keyword_only() -> None:
    """Passed by position, the upstream gradient would silently become p."""
    _, backward, generated = forward_and_backward(
        module("def f(x, mask, p=0.5):\n    return x * mask / p\n")
    )
    assert "def f_backward(x, mask, p=0.5, *, dout=1.0):" in generated
    x, mask = numpy.ones((2, 3)), numpy.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    upstream = numpy.full((2, 3), 3.0)
    dx, dmask, dp = backward(x, mask, 0.25, dout=upstream)
    numpy.testing.assert_array_equal(dx, mask * 3.0 / 0.25)
    numpy.testing.assert_array_equal(dmask, x * 3.0 / 0.25)
    assert dp == pytest.approx(-numpy.sum(x * mask * 3.0) / 0.25**2)
    with pytest.raises(TypeError):
        backward(x, mask, 0.25, upstream)


@pytest.mark.parametrize(
    ("text", "shapes"),
    [
        pytest.param(
            "def f(x, gamma, beta):\n    return gamma * x + beta\n",
            {"x": (4, 3), "gamma": (3,), "beta": (3,)},
            id="scale-shift",
        ),
        pytest.param(
            "def f(x, w, b):\n    return x @ w + b\n",
            {"x": (4, 3), "w": (3, 2), "b": (2,)},
            id="affine",
        ),
        pytest.param(
            "def f(x, w, b):\n    h = np.tanh(x)\n    return h * w - b\n",
            {"x": (4, 3), "w": (3,), "b": (4, 1)},
            id="tanh",
        ),
    ],
)
def test_unknown_array_result_with_the_default_upstream_is_the_gradient_of_the_sum(
    text: str, shapes: dict[str, tuple[int, ...]]
) -> None:
    """Unannotated, the result may be an array: the default 1.0 means 1.0 for every entry."""
    forward, backward, generated = forward_and_backward(module(text))
    generator = rng(text)
    args = {name: generator.normal(size=shape) for name, shape in shapes.items()}
    gradients = as_tuple(backward(*args.values()), len(args))

    def total(**values: Any) -> float:
        return float(numpy.sum(forward(**values)))

    for name, grad in zip(args, gradients, strict=True):
        numpy.testing.assert_allclose(
            grad, numeric_gradient(total, args, name), rtol=RTOL, atol=ATOL, err_msg=generated
        )


def test_integer_array_input_gets_a_float_gradient() -> None:
    _, backward, generated = forward_and_backward(module("def f(x):\n    return np.mean(x)\n"))
    numpy.testing.assert_array_equal(backward(numpy.arange(4)), [0.25] * 4, err_msg=generated)
    _, backward, _ = forward_and_backward(module("def f(x):\n    return np.sum(x)\n"))
    assert backward(numpy.arange(4), 0.5).dtype == numpy.float64


INTEGER_SCATTERS = [
    pytest.param("np.sum(x[idx] * 0.5)", [0.5, 0, 0.5], id="integer-index"),
    pytest.param("np.sum(x[:2] * 0.5)", [0.5, 0.5, 0], id="slice"),
    pytest.param("np.sum(x[x > 1] * 0.5)", [0, 0.5, 0.5], id="mask"),
    pytest.param("np.sum((2 * x)[idx] * 0.5)", [1, 0, 1], id="index-of-an-integer-intermediate"),
]


@pytest.mark.parametrize(("expr", "expected"), INTEGER_SCATTERS)
def test_integer_array_indexed_gets_a_float_gradient(expr: str, expected: list[float]) -> None:
    """The gradient of an index starts as zeros like the indexed value: of an integer array,
    integer zeros truncated what was added (np.add.at) or raised (+=)."""
    source = module(f"def f(x, idx):\n    return {expr}\n")
    _, backward, generated = forward_and_backward(source)
    x, idx = numpy.array([1, 2, 3]), numpy.array([0, 2])
    dx, _ = backward(x, idx)
    assert dx.dtype == numpy.float64, generated
    numpy.testing.assert_array_equal(dx, expected, err_msg=generated)
    dx32, _ = backward(x.astype(numpy.float32), idx)
    assert dx32.dtype == numpy.float32, generated


def test_power_with_a_variable_exponent_at_zero() -> None:
    """d(x**p)/dp = x**p log x tends to 0 at x == 0: no NaN, no math domain error."""
    backward = forward_and_backward(module("def f(x, p):\n    return np.sum(np.abs(x) ** p)\n"))[1]
    with numpy.errstate(all="raise"):
        _, dp = backward(numpy.array([0.0, 1.0, 2.0]), 3.0)
    assert dp == pytest.approx(8 * numpy.log(2.0))
    scalar = forward_and_backward("def f(x, p):\n    return x ** p\n")[1]
    assert scalar(0.0, 2.0) == (0.0, 0.0)


def test_returning_a_parameter_itself() -> None:
    backward = forward_and_backward(module("def f(x, y):\n    return y\n"))[1]
    y, upstream = numpy.ones(3), numpy.full(3, 2.0)
    dx, dy = backward(numpy.zeros(3), y, upstream)
    assert dx == 0.0 and dy is not upstream
    numpy.testing.assert_array_equal(dy, upstream)


def test_a_rebound_parameter_returned_leaves_its_name_to_its_gradient() -> None:
    """``x = x @ W + b; return x``: the upstream is ``dout`` and the parameter's gradient is
    ``dx``, not an upstream ``dx`` beside a gradient ``d_x``."""
    source = module("def layer(x, W, b):\n    x = x @ W + b\n    return x\n")
    generated = forward_and_backward(source, "layer")[2]
    assert "def layer_backward(x, W, b, dout=1.0):" in generated
    assert "return dx, dW, db" in generated


# Lists written out as operands: numpy makes them arrays, of the shape their nesting gives
# (they were taken for numbers, so the gradient of what they broadcast against was not
# summed back: the backward raised, or gave a number's gradient an array's shape).
LIST_OPERANDS = [
    "m = np.maximum([0.0, 2.0, 1.0, 5.0], np.exp(w))\n    return np.sum(m * m)",
    "r = x * [[1.0], [2.0]] + np.minimum([[1.0], [3.0]], np.exp(w))\n    return np.sum(r * r)",
    "s = np.tanh(x) + [0.5, 1.5, -0.5]\n    return s * w",
]


@pytest.mark.parametrize("body", LIST_OPERANDS)
def test_a_list_written_out_as_an_operand_is_an_array(body: str) -> None:
    import gradgen
    from test_rules import run_module

    source = f"import numpy as np\n\n\ndef f(w: float, x: '3'):\n    {body}\n"
    forward = run_module(source, "lists.py")["f"]
    backward = run_module(gradgen.generate(source, "lists.py"), "lists_backward.py")
    rng = numpy.random.default_rng(zlib.crc32(body.encode()))
    w, x = float(rng.uniform(0.2, 0.8)), rng.normal(size=3)
    out = forward(w, x)
    upstream = rng.normal(size=numpy.shape(out)) if numpy.ndim(out) else 1.3
    dw, dx = backward["f_backward"](w, x, upstream)

    def loss(w: float, x: Any) -> float:
        return float(numpy.sum(forward(w, x) * upstream))

    unread = dx is None or (isinstance(dx, float) and dx == 0.0)  # x is not read
    assert numpy.ndim(dw) == 0 and (unread or numpy.shape(dx) == (3,))
    expected_w = (loss(w + 1e-6, x) - loss(w - 1e-6, x)) / 2e-6
    assert numpy.isclose(dw, expected_w, rtol=RTOL, atol=ATOL)
    for i in range(3):
        step = 1e-6 * numpy.eye(3)[i]
        expected = (loss(w, x + step) - loss(w, x - step)) / 2e-6
        got = 0.0 if unread else dx[i]
        assert numpy.isclose(got, expected, rtol=RTOL, atol=ATOL)
