"""Programs: calls between the functions of one module, several results, tuple unpacking.

A forward module is a program: ``two_layer_loss`` calls ``affine``, ``relu`` and
``softmax_loss``; an LSTM step returns ``next_h, next_c`` and a caller unpacks them. Each
callee is differentiated once (``F_forward`` returning its value and a cache, backwards
reading the cache, one per set of gradients a call needs), the caller's backward calls them
in reverse order, and nothing is computed twice. Gradients are checked against central
differences in float64 (``test_rules.numeric_gradient``) through the command line (text
written, then run), ``gradgen.generate`` and ``@gradgen.differentiable``; refusals are
checked for their position and message, and for leaving nothing written.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy
import pytest

import gradgen
from cli_project import Run, snapshot, write
from review_project import changed_lines, edit, functions, header, import_file, stale_warnings
from review_project import make_project as make_reviewed_project
from test_rules import numeric_gradient, owned_arrays, run_module

RTOL = 1e-5
ATOL = 1e-8
DIAGNOSTIC = re.compile(r"^(?P<file>\S+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.*)$")


def module(text: str) -> str:
    return "import numpy as np\n\n\n" + textwrap.dedent(text).lstrip("\n")


def rng(seed: str) -> numpy.random.Generator:
    return numpy.random.default_rng(zlib.crc32(seed.encode()))


def draw(shapes: Mapping[str, tuple[int, ...]], seed: str) -> dict[str, Any]:
    """float64 arguments of ``shapes`` (a Python float for ``()``), magnitudes in [0.2, 2]."""
    generator = rng(seed)
    values: dict[str, Any] = {}
    for name, shape in shapes.items():
        value = generator.uniform(0.2, 2.0, size=shape) * generator.choice([-1.0, 1.0], shape)
        values[name] = float(value) if shape == () else value
    return values


def program(
    source: str, *, wrt: Mapping[str, list[str]] | None = None, pairs: bool = False
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The forward namespace, the generated one, and the generated text."""
    text = gradgen.generate(source, "program.py", wrt=wrt, pairs=pairs, value_and_grad=True)
    return run_module(source, "program.py"), run_module(text, "program_backward.py"), text


def weighted_sum(result: Any, upstream: Any) -> float:
    """The loss whose gradients a backward with upstream ``upstream`` computes: for several
    results, one upstream per result (None: that result does not reach the loss)."""
    if isinstance(result, tuple):
        return sum(
            weighted_sum(r, u) for r, u in zip(result, upstream, strict=True) if u is not None
        )
    return float(numpy.sum(result if upstream is None else result * upstream))


def expected_gradients(
    forward: Callable[..., Any], args: dict[str, Any], names: list[str], upstream: Any = None
) -> dict[str, Any]:
    def loss(**values: Any) -> float:
        return weighted_sum(forward(**values), upstream)

    return {name: numeric_gradient(loss, args, name) for name in names}


def as_tuple(gradients: Any, count: int) -> tuple[Any, ...]:
    if count == 1:
        assert not isinstance(gradients, tuple), gradients
        return (gradients,)
    assert isinstance(gradients, tuple) and len(gradients) == count, gradients
    return gradients


def assert_close(actual: Mapping[str, Any], expected: Mapping[str, Any], context: str) -> None:
    assert list(actual) == list(expected)
    for name, value in expected.items():
        assert actual[name] is not None, f"d{name} is None{context}"
        assert numpy.shape(actual[name]) == numpy.shape(value), f"d{name}{context}"
        numpy.testing.assert_allclose(
            actual[name], value, rtol=RTOL, atol=ATOL, err_msg=f"d{name}{context}"
        )


def source_order_calls(function: ast.FunctionDef) -> list[str]:
    """The names of the plain functions ``function`` calls, in the order they are written."""
    calls = [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    calls.sort(key=lambda node: (node.lineno, node.col_offset))
    return [node.func.id for node in calls]  # type: ignore[attr-defined]


def generated_calls(text: str, name: str) -> list[str]:
    """The generated functions (``*_forward``, ``*_backward*``) that ``name`` of ``text``
    calls, in the order they are written."""
    (node,) = [n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == name]
    return [c for c in source_order_calls(node) if c.endswith("_forward") or "_backward" in c]


def count_calls(namespace: dict[str, Any]) -> Counter[str]:
    """Wrap every generated ``*_forward`` and ``*_backward*`` function of ``namespace`` (the
    generated functions read each other from it when they run) to count its calls."""
    counts: Counter[str] = Counter()
    for name, value in list(namespace.items()):
        if callable(value) and (name.endswith("_forward") or "_backward" in name):

            def counted(*args: Any, _name: str = name, _f: Any = value, **kwargs: Any) -> Any:
                counts[_name] += 1
                return _f(*args, **kwargs)

            namespace[name] = counted
    return counts


def diagnostics(err: str) -> list[tuple[str, int, int, str]]:
    return [
        (m["file"], int(m["line"]), int(m["col"]), m["message"])
        for m in map(DIAGNOSTIC.match, err.splitlines())
        if m is not None
    ]


# --- 1. the two-layer net of the issue, composed of layer functions --------------------------

NET = """\
import numpy as np


def affine(x: "N, D", w: "D, M", b: "M"):
    out = x @ w + b
    return out


def relu(x):
    return np.maximum(0, x)


def softmax_loss(x: "N, C", y: "N"):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    N = x.shape[0]
    return -np.sum(log_probs[np.arange(N), y]) / N


def two_layer_loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C"):
    h = relu(affine(X, W1, b1))
    scores = affine(h, W2, b2)
    loss = softmax_loss(scores, y)
    return loss
"""

WEIGHTS = ["W1", "b1", "W2", "b2"]
NET_FLAGS = {
    "plain": [],
    "pairs": ["--pairs"],
    "wrt": ["--wrt", "two_layer_loss=W1,b1,W2,b2"],
    "pairs-wrt": ["--pairs", "--wrt", "two_layer_loss=W1,b1,W2,b2"],
}


def net_arguments(seed: str) -> dict[str, Any]:
    args = draw({"X": (4, 3), "W1": (3, 5), "b1": (5,), "W2": (5, 3), "b2": (3,)}, seed)
    labels = rng(f"labels {seed}").integers(0, 3, size=4)
    return {"X": args["X"], "y": labels, **{w: args[w] for w in WEIGHTS}}


def net_from_the_command_line(project: Path, run: Run, flags: list[str]) -> tuple[str, Any]:
    write(project / "net.py", NET)
    status, _, err = run("net.py", "-o", "net_backward.py", "--value-and-grad", *flags)
    assert status == 0, err
    text = (project / "net_backward.py").read_text(encoding="utf-8")
    return text, run_module(text, "net_backward.py")


@pytest.mark.parametrize("mode", list(NET_FLAGS))
def test_two_layer_net_from_the_command_line(project: Path, run: Run, mode: str) -> None:
    text, generated = net_from_the_command_line(project, run, NET_FLAGS[mode])
    forward = run_module(NET, "net.py")["two_layer_loss"]
    args = net_arguments(mode)
    wrt = WEIGHTS if "wrt" in mode else ["X", "y", *WEIGHTS]
    differentiable = [n for n in wrt if n != "y"]
    expected = expected_gradients(forward, args, differentiable)
    if "pairs" in mode:
        value, cache = generated["two_layer_loss_forward"](*args.values())
        gradients = generated["two_layer_loss_backward"](1.0, cache)
    else:
        value = forward(**args)
        gradients = generated["two_layer_loss_backward"](*args.values())
    named = dict(zip(wrt, as_tuple(gradients, len(wrt)), strict=True))
    if "y" in named:
        assert named.pop("y") is None, "labels have no gradient"
    assert_close(named, expected, f"\n{text}")
    owned_arrays(named, args, text)
    value_2, gradients_2 = generated["two_layer_loss_value_and_grad"](*args.values())
    numpy.testing.assert_allclose(value_2, forward(**args), rtol=1e-12)
    numpy.testing.assert_allclose(value, value_2, rtol=1e-12)
    for a, b in zip(as_tuple(gradients_2, len(wrt)), as_tuple(gradients, len(wrt)), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            numpy.testing.assert_allclose(a, b, rtol=1e-12)


# The caller's backward reads like CS231n's layer_utils: the callees' backwards, last call
# first, each reading the cache its forward made; with --wrt, the first layer's backward
# computes no gradient for the data X; with --pairs, the forwards run in
# two_layer_loss_forward only.
NET_CALLS = {
    "plain": {
        "two_layer_loss_backward": [
            "affine_forward",
            "relu_forward",
            "affine_forward",
            "softmax_loss_forward",
            "softmax_loss_cached_backward_wrt_x",
            "affine_cached_backward",
            "relu_cached_backward",
            "affine_cached_backward",
        ],
    },
    "wrt": {
        "two_layer_loss_backward": [
            "affine_forward",
            "relu_forward",
            "affine_forward",
            "softmax_loss_forward",
            "softmax_loss_cached_backward_wrt_x",
            "affine_cached_backward",
            "relu_cached_backward",
            "affine_cached_backward_wrt_w_b",
        ],
    },
    "pairs-wrt": {
        "two_layer_loss_forward": [
            "affine_forward",
            "relu_forward",
            "affine_forward",
            "softmax_loss_forward",
        ],
        "two_layer_loss_backward": [
            "softmax_loss_backward_wrt_x",
            "affine_backward",
            "relu_backward",
            "affine_backward_wrt_w_b",
        ],
        "two_layer_loss_value_and_grad": ["two_layer_loss_forward", "two_layer_loss_backward"],
    },
}


@pytest.mark.parametrize("mode", list(NET_CALLS))
def test_two_layer_net_calls_its_layers_backwards_in_reverse(
    project: Path, run: Run, mode: str
) -> None:
    text, _ = net_from_the_command_line(project, run, NET_FLAGS[mode])
    for function, calls in NET_CALLS[mode].items():
        assert generated_calls(text, function) == calls, f"{function}\n{text}"
    defined = [n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)]
    assert len(defined) == len(set(defined)), defined  # each callee's functions written once
    assert "def affine_forward(x, w, b):" in text
    # Digests of the callees, and which of them each caller depends on.
    assert "#   two_layer_loss: " in text
    assert re.search(r"^#   two_layer_loss: \w+ \(calls affine, relu, softmax_loss\)$", text, re.M)
    assert re.search(r"^#   affine: \w+$", text, re.M)


def test_two_layer_net_gradients_are_named_after_the_callers_variables(
    project: Path, run: Run
) -> None:
    text, _ = net_from_the_command_line(project, run, NET_FLAGS["wrt"])
    backward = functions(text)["two_layer_loss_backward"]
    assert "def two_layer_loss_backward(X, y, W1, b1, W2, b2, dloss=1.0):" in backward
    assert re.search(r"^    dscores = softmax_loss_cached_backward_wrt_x\(", backward, re.M)
    assert re.search(r"^    dh, dW2, db2 = affine_cached_backward\(dscores, ", backward, re.M)
    assert re.search(r"^    dW1, db1 = affine_cached_backward_wrt_w_b\(", backward, re.M)
    assert "dX" not in backward  # X is data here: its gradient is never computed
    assert backward.rstrip().endswith("return dW1, db1, dW2, db2")
    # Each (callee, gradients) backward is one function of the module, written once.
    assert text.count("def affine_cached_backward_wrt_w_b(dout, cache):") == 1
    assert text.count("def affine_cached_backward(dout, cache):") == 1


@pytest.mark.parametrize("mode", list(NET_FLAGS))
def test_two_layer_net_runs_each_layer_forward_once_per_call(
    project: Path, run: Run, mode: str
) -> None:
    """Counted as the generated code runs: each call site of the forward runs its callee's
    forward once, and each callee's backward once, whatever is asked."""
    _, generated = net_from_the_command_line(project, run, NET_FLAGS[mode])
    counts = count_calls(generated)
    args = net_arguments("count")
    layer_forwards = {"affine_forward": 2, "relu_forward": 1, "softmax_loss_forward": 1}

    def forwards() -> dict[str, int]:
        return {n: c for n, c in counts.items() if n.endswith("_forward") and c}

    def backwards(callee: str) -> int:
        return sum(c for n, c in counts.items() if n.startswith(f"{callee}_") and "_backward" in n)

    if "pairs" in mode:
        _, cache = generated["two_layer_loss_forward"](*args.values())
        assert forwards() == {**layer_forwards, "two_layer_loss_forward": 1}
        counts.clear()
        generated["two_layer_loss_backward"](1.0, cache)
        assert forwards() == {}, "a pair's backward reads the cache, and runs no forward"
    else:
        generated["two_layer_loss_backward"](*args.values())
        assert forwards() == layer_forwards
    assert (backwards("affine"), backwards("relu"), backwards("softmax_loss")) == (2, 1, 1)
    counts.clear()
    generated["two_layer_loss_value_and_grad"](*args.values())
    expected = (
        {**layer_forwards, "two_layer_loss_forward": 1} if "pairs" in mode else layer_forwards
    )
    assert forwards() == expected


DECORATED_NET = {
    "plain": ("@gradgen.differentiable", ["X", "y", *WEIGHTS], False),
    "call": ("@gradgen.differentiable()", ["X", "y", *WEIGHTS], False),
    "wrt": ('@gradgen.differentiable(wrt=["W1", "b1", "W2", "b2"])', WEIGHTS, False),
    "pairs": ("@gradgen.differentiable(pairs=True)", ["X", "y", *WEIGHTS], True),
}


@pytest.mark.parametrize("mode", list(DECORATED_NET))
def test_two_layer_net_decorated(load, mode: str) -> None:
    """The decorator reads the whole module: the layers, defined after the loss here, are
    found when the loss is decorated, before they are bound."""
    decorator, wrt, pairs = DECORATED_NET[mode]
    imports, rest = NET.split("\n\n\n", 1)
    layers, loss = rest.split("\n\n\ndef two_layer_loss")
    source = f"import gradgen\n{imports}\n\n\n{decorator}\ndef two_layer_loss{loss}\n\n{layers}\n"
    assert source.index("def two_layer_loss") < source.index("def affine")
    f = load(source).two_layer_loss
    args = net_arguments(f"decorated {mode}")
    if pairs:
        value, cache = f.forward(*args.values())
        numpy.testing.assert_allclose(value, f(**args), rtol=1e-12)
        gradients = f.backward(1.0, cache)
    else:
        gradients = f.backward(*args.values())
    named = dict(zip(wrt, as_tuple(gradients, len(wrt)), strict=True))
    if "y" in named:
        assert named.pop("y") is None
    expected = expected_gradients(f, args, list(named))
    assert_close(named, expected, f"\n{f.backward_source}")
    value, _ = f.value_and_grad(*args.values())
    numpy.testing.assert_allclose(value, f(**args), rtol=1e-12)
    assert "def affine_forward(" in f.backward_source


# --- 2. forms of calls ---------------------------------------------------------------------------

CALL_FORMS = [
    pytest.param(
        """
        def f(x, w, b):
            return np.sum(outer(x, w, b) ** 2)


        def outer(x, w, b):
            return middle(x @ w, b) * 0.5


        def middle(h, b):
            return np.tanh(inner(h) + b)


        def inner(h):
            return h * h - h
        """,
        {"x": (3, 4), "w": (4, 2), "b": (2,)},
        id="depth-3-callees-defined-after",
    ),
    pytest.param(
        """
        def affine(x, w, b):
            return x @ w + b


        def relu(x):
            return np.maximum(0, x)


        def f(x, w, b):
            return relu(affine(x, w, b)) * 2
        """,
        {"x": (3, 4), "w": (4, 2), "b": (2,)},
        id="nested-in-an-expression",
    ),
    pytest.param(
        """
        def f(x, y):
            return scaled(x, s=y) + scaled(s=2.0, x=y) + scaled(x) * scaled(y, 0.5, shift=x)


        def scaled(x, s=3.0, shift=0.5):
            return x * s + shift
        """,
        {"x": (3,), "y": (3,)},
        id="keywords-and-defaults",
    ),
    pytest.param(
        """
        def affine(x, w, b):
            return x @ w + b


        def f(x, w, b):
            h = np.tanh(affine(x, w, b))
            return affine(h, w, b)
        """,
        {"x": (3, 4), "w": (4, 4), "b": (4,)},
        id="shared-weights",
    ),
    pytest.param(
        """
        def mul(a, b):
            return a * np.sin(b)


        def f(x, y):
            return mul(x, x) + mul(y, x)
        """,
        {"x": (2, 3), "y": (2, 3)},
        id="same-variable-twice",
    ),
    pytest.param(
        """
        def ident(z):
            return z


        def f(x, y):
            return ident(x) * 3.0 + ident(y) + x
        """,
        {"x": (2, 3), "y": (2, 3)},
        id="callee-returns-its-parameter",
    ),
    pytest.param(
        """
        def ident(z):
            return z


        def f(x):
            return ident(ident(x))
        """,
        {"x": (2, 3)},
        id="only-identities",
    ),
    pytest.param(
        """
        def square(t):
            return t * t


        def f(x, y):
            a = square(x) + y
            b = square(a)
            return square(b) - square(y)
        """,
        {"x": (), "y": ()},
        id="python-floats",
    ),
    pytest.param(
        """
        def lin(x, w):
            return x @ w


        def f(x, w1, w2):
            return lin(x, w1) + lin(x, w2) + lin(np.tanh(x), w1)
        """,
        {"x": (3, 4), "w1": (4, 2), "w2": (4, 2)},
        id="same-callee-different-gradients",
    ),
    pytest.param(
        """
        def g(x, m):
            t = m / (np.squeeze(x) + 2.5)
            return t * (m * 2.0 - m) + abs(m)


        def f(x, w):
            a = np.exp(w)
            return g(x, a > 1.0) + g(a < 1.0, w > 0.0) * w + np.maximum(x > 0.0, x)
        """,
        {"x": (), "w": ()},
        id="numpy-booleans-as-arguments",
    ),
    pytest.param(
        """
        def g(x, m):
            t = m / (np.squeeze(x) + 2.5)
            return t * (m * 2.0 - m) + abs(m)


        def f(x, w):
            return g(x, w > 0.0) + g(x < 0.0, w > 0.0) * w
        """,
        {"x": (3,), "w": (3,)},
        id="masks-as-arguments",
    ),
]


def call_upstream(result: Any, seed: str) -> Any:
    return (
        None
        if numpy.ndim(result) == 0
        else rng(f"upstream {seed}").normal(size=numpy.shape(result))
    )


def check_call_form(source: str, shapes: dict[str, tuple[int, ...]], mode: str, seed: str) -> None:
    forward_ns, generated, text = program(module(source), pairs=mode == "pairs")
    forward = forward_ns["f"]
    args = draw(shapes, seed)
    before = {n: numpy.copy(v) for n, v in args.items()}
    result = forward(**args)
    upstream = call_upstream(result, seed)
    call = [*args.values()] if upstream is None else [*args.values(), upstream]
    if mode == "pairs":
        value, cache = generated["f_forward"](*args.values())
        numpy.testing.assert_allclose(value, result, rtol=1e-12)
        gradients = generated["f_backward"](1.0 if upstream is None else upstream, cache)
    elif mode == "value_and_grad":
        value, gradients = generated["f_value_and_grad"](*call)
        numpy.testing.assert_allclose(value, result, rtol=1e-12)
    else:
        gradients = generated["f_backward"](*call)
    named = dict(zip(args, as_tuple(gradients, len(args)), strict=True))
    context = f"\nforward:\n{source}\ngenerated:\n{text}"
    assert_close(named, expected_gradients(forward, args, list(args), upstream), context)
    for name, value in args.items():
        numpy.testing.assert_array_equal(value, before[name], err_msg=f"{name} modified")
    others = dict(args) if upstream is None else {**args, "the upstream": upstream}
    owned_arrays(named, others, text)


@pytest.mark.parametrize("mode", ["backward", "value_and_grad", "pairs"])
@pytest.mark.parametrize(("source", "shapes"), CALL_FORMS)
def test_call_forms(source: str, shapes: dict[str, tuple[int, ...]], mode: str) -> None:
    check_call_form(source, shapes, mode, seed=source)


def test_a_parameter_the_callee_does_not_use_gets_no_gradient() -> None:
    """``first(x, y)`` ignores its second parameter: the caller's dy is None or zero, and
    its dx is right."""
    source = module(
        """
        def first(a, b):
            return a * a


        def f(x, y):
            return np.sum(first(x, y) * 2.0)
        """
    )
    forward_ns, generated, text = program(source)
    args = draw({"x": (2, 3), "y": (2, 3)}, "unused")
    dx, dy = generated["f_backward"](*args.values())
    assert dy is None or not numpy.any(dy), (dy, text)
    assert_close({"x": dx}, expected_gradients(forward_ns["f"], args, ["x"]), text)
    # The callee's own backward: the unused parameter's gradient is exactly zero.
    da, db = generated["first_backward"](args["x"], args["y"], numpy.ones((2, 3)))
    assert db is None or not numpy.any(db)
    numpy.testing.assert_allclose(da, 2 * args["x"], rtol=1e-12)


LABELS = numpy.array([0, 2, 1])

DATA_CALLEES = [
    pytest.param(
        """
        def g(y):
            return y * y


        def f(x, y):
            return x * g(y)
        """,
        {"f": ["x"]},
        {"x": (3, 3), "y": (3, 3)},
        id="wrt-excludes-the-callees-argument",
    ),
    pytest.param(
        """
        def onehot(y, C):
            return np.eye(C)[y]


        def f(x, y):
            t = onehot(y, 3)
            return np.sum(x * t)
        """,
        None,
        {"x": (3, 3), "y": LABELS},
        id="labels-only",
    ),
    pytest.param(
        """
        def count(x):
            return x.shape[0]


        def f(x, y):
            return np.sum(x * y) / count(x)
        """,
        None,
        {"x": (3, 3), "y": (3, 3)},
        id="a-result-with-no-gradient",
    ),
]


@pytest.mark.parametrize(("source", "wrt", "shapes"), DATA_CALLEES)
def test_a_callee_with_no_gradient_to_give(
    source: str, wrt: dict[str, list[str]] | None, shapes: dict[str, Any]
) -> None:
    forward_ns, generated, text = program(module(source), wrt=wrt)
    args = draw({n: s for n, s in shapes.items() if isinstance(s, tuple)}, source)
    args |= {n: s for n, s in shapes.items() if not isinstance(s, tuple)}  # labels
    names = list(args) if wrt is None else wrt["f"]
    result = as_tuple(generated["f_backward"](*args.values()), len(names))
    gradients = dict(zip(names, result, strict=True))
    if gradients.get("y", 0.0) is None:
        assert args["y"] is LABELS
        del gradients["y"]
    assert_close(gradients, expected_gradients(forward_ns["f"], args, list(gradients)), text)


def test_no_gradient_for_a_callees_result_that_reaches_no_parameter() -> None:
    flat = module("def f(x, y):\n    t = np.eye(3)[y]\n    return np.sum(x * t)\n")
    assert "dt = " not in gradgen.generate(flat, "flat.py")
    composed = gradgen.generate(module(DATA_CALLEES[1].values[0]), "composed.py")
    assert "dt = " not in functions(composed)["f_backward"]


CONSTANT_CALLEE = """\
import gradgen


def c(a):
    return a * a


@gradgen.differentiable
def f(x):
    return x * c(2.0) + c(x)
"""


def test_a_callee_called_only_with_constants_decorated(load) -> None:
    f = load(CONSTANT_CALLEE).f
    x = 0.7
    numpy.testing.assert_allclose(f.backward(x), 4.0 + 2 * x, rtol=1e-12)
    value, dx = f.value_and_grad(x)
    assert (value, dx) == (f(x), f.backward(x))


def test_a_callee_called_only_with_constants_from_the_command_line(project: Path, run: Run) -> None:
    write(project / "c.py", CONSTANT_CALLEE.replace("@gradgen.differentiable\n", ""))
    assert run("c.py", "-o", "c_backward.py")[0] == 0
    generated = run_module((project / "c_backward.py").read_text(), "c_backward.py")
    numpy.testing.assert_allclose(generated["f_backward"](0.7), 4.0 + 1.4, rtol=1e-12)


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(
            "def f(x, w):\n    relu_forward = relu(x) * w\n    return np.sum(relu_forward)\n",
            id="variable",
        ),
        pytest.param(
            "def f(x, relu_cached_backward):\n    return np.sum(relu(x) * relu_cached_backward)\n",
            id="parameter",
        ),
    ],
)
def test_a_name_like_a_generated_function_is_refused_or_works(caller: str) -> None:
    source = module("def relu(x):\n    return np.maximum(0, x)\n\n\n" + caller)
    try:
        forward_ns, generated, text = program(source)
    except gradgen.GradgenError as error:
        assert "relu_" in str(error)
        return
    params = list(inspect.signature(forward_ns["f"]).parameters)
    args = draw(dict.fromkeys(params, (3,)), "clash")
    gradients = generated["f_backward"](*args.values())
    named = dict(zip(params, gradients, strict=True))
    assert_close(named, expected_gradients(forward_ns["f"], args, params), text)


# A call of the module's functions (or of a user rule) inside a value with no gradient, an
# opaque call, np.where's condition or an index is a stage of its own all the same: the
# generated backward runs it through the callee's F_forward (written inline, it would call
# the forward function by its own name, which the generated module does not define).
NO_GRADIENT_CALLS = [
    pytest.param(
        """
        def layer(x, k):
            return x * k


        def f(x):
            s = (+layer(x, 2)).astype(int)
            return np.sum(x * s)
        """,
        None,
        {"x": (3, 4)},
        id="astype-of-a-call",
    ),
    pytest.param(
        """
        import scipy.special


        def g(x):
            return x * x + 1.0


        def f(x, y):
            return np.sum(y * scipy.special.gammaln(g(x)))
        """,
        ["y"],
        {"x": (3,), "y": (3,)},
        id="in-an-opaque-call",
    ),
    pytest.param(
        """
        def g(x):
            return x * 2.0


        def f(x):
            n = g(x).shape[0]
            return np.sum(x * x) / n
        """,
        None,
        {"x": (3, 2)},
        id="shape-of-a-call",
    ),
    pytest.param(
        """
        def g(x):
            return x * 2.0


        def f(x):
            N, D = g(x).shape
            return np.sum(np.tanh(x)) / (N * D)
        """,
        None,
        {"x": (3, 2)},
        id="shape-of-a-call-unpacked",
    ),
    pytest.param(
        """
        def g(x):
            return np.sin(x)


        def f(x):
            mask = g(x) > 0
            return np.sum(np.where(mask, x * x, 2 * x))
        """,
        None,
        {"x": (2, 3)},
        id="mask-of-a-call",
    ),
    pytest.param(
        """
        def g(x):
            return np.sin(x)


        def f(x):
            return np.sum(np.where(g(x) > 0, x * x, 2 * x))
        """,
        None,
        {"x": (2, 3)},
        id="where-condition-of-a-call",
    ),
    pytest.param(
        """
        def g(x):
            return x * 2.0


        def f(x):
            return np.sum(x * np.arange(g(x).size))
        """,
        None,
        {"x": (4,)},
        id="arange-of-a-calls-size",
    ),
    pytest.param(
        """
        def g(x):
            return np.cos(x)


        def f(x):
            return np.sum(x[np.argmax(g(x))] * x)
        """,
        None,
        {"x": (4,)},
        id="index-of-a-call",
    ),
    pytest.param(
        """
        def g(x):
            return x - 0.5


        def h(x):
            return x * 3.0


        def f(x, w):
            return np.sum(w * np.sign(g(h(x))) + np.sign(g(-0.5)) * x)
        """,
        None,
        {"x": (2, 3), "w": (2, 3)},
        id="nested-and-constant-calls-in-a-sign",
    ),
    pytest.param(
        """
        def h(x):
            return x * x


        def g(x, w):
            return w * (h(x).shape[0] + 1.0)


        def f(x, w):
            return np.sum(g(x, w) * x)
        """,
        None,
        {"x": (3,), "w": (3,)},
        id="in-a-callee",
    ),
    pytest.param(
        """
        import gradgen


        def soft(x):
            return np.log1p(np.exp(x))


        @gradgen.backward_of(soft)
        def soft_backward(x, dout):
            return dout / (1.0 + np.exp(-x))


        def f(x):
            n = np.sign(soft(x) - 1.0)
            return np.sum(x * n)
        """,
        None,
        {"x": (2, 3)},
        id="user-rule-in-a-sign",
    ),
    pytest.param(
        """
        import gradgen


        def g(x):
            return np.sin(x)


        def f(x):
            n = gradgen.stop_gradient(g(x)).shape[0]
            return np.sum(np.where(gradgen.stop_gradient(g(x)) > 0, x, 2 * x)) / n
        """,
        None,
        {"x": (3,)},
        id="stop-gradient-of-a-call",
    ),
    pytest.param(
        """
        def g(x):
            return np.sin(x)


        def f(x):
            return np.sum(x * x) * (g(x) > 0)
        """,
        None,
        {"x": (3,)},
        id="mask-of-a-call-in-the-result",
    ),
]


def forward_functions_called(text: str, source: str) -> list[str]:
    """The functions of the forward module ``source`` that ``text`` calls by their own name,
    a user rule's functions aside (a generated module copies them; the decorator's code
    runs where they are defined)."""
    defined = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    rules = {
        ast.unparse(decorator.args[0])
        for node in defined
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("backward_of")
    }
    forward = {n.name for n in defined if not n.decorator_list} - rules
    calls = [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Call)]
    return [n.func.id for n in calls if isinstance(n.func, ast.Name) and n.func.id in forward]


@pytest.mark.parametrize("mode", ["backward", "value_and_grad", "pairs"])
@pytest.mark.parametrize(("source", "wrt", "shapes"), NO_GRADIENT_CALLS)
def test_a_call_inside_a_value_with_no_gradient(
    source: str, wrt: list[str] | None, shapes: dict[str, tuple[int, ...]], mode: str
) -> None:
    source = module(source)
    forward_ns, generated, text = program(
        source, wrt=None if wrt is None else {"f": wrt}, pairs=mode == "pairs"
    )
    assert forward_functions_called(text, source) == [], text
    args = draw(shapes, source)
    names = wrt or list(args)
    if mode == "pairs":
        value, cache = generated["f_forward"](*args.values())
        numpy.testing.assert_allclose(value, forward_ns["f"](**args), rtol=1e-12)
        gradients = generated["f_backward"](1.0, cache)
    elif mode == "value_and_grad":
        value, gradients = generated["f_value_and_grad"](*args.values())
        numpy.testing.assert_allclose(value, forward_ns["f"](**args), rtol=1e-12)
    else:
        gradients = generated["f_backward"](*args.values())
    named = dict(zip(names, as_tuple(gradients, len(names)), strict=True))
    assert_close(named, expected_gradients(forward_ns["f"], args, names), f"\n{text}")


@pytest.mark.parametrize(("source", "wrt", "shapes"), NO_GRADIENT_CALLS)
def test_a_call_inside_a_value_with_no_gradient_decorated(
    load, source: str, wrt: list[str] | None, shapes: dict[str, tuple[int, ...]]
) -> None:
    decorator = "@gradgen.differentiable" if wrt is None else f"@gradgen.differentiable(wrt={wrt})"
    source = module(source).replace("\ndef f(", f"\n{decorator}\ndef f(")
    f = load(f"import gradgen\n{source}").f
    assert forward_functions_called(f.backward_source, source) == [], f.backward_source
    args = draw(shapes, source)
    names = wrt or list(args)
    expected = expected_gradients(f, args, names)
    gradients = f.backward(*args.values())
    named = dict(zip(names, as_tuple(gradients, len(names)), strict=True))
    assert_close(named, expected, f"\n{f.backward_source}")
    value, gradients = f.value_and_grad(*args.values())
    numpy.testing.assert_allclose(value, f(**args), rtol=1e-12)
    named = dict(zip(names, as_tuple(gradients, len(names)), strict=True))
    assert_close(named, expected, f"\n{f.backward_source}")


# --- 3. several results ------------------------------------------------------------------------

LSTM = """\
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_step(x: "N, D", prev_h: "N, H", prev_c: "N, H", Wx: "D, G", Wh: "H, G", b: "G"):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H : 2 * H])
    o = sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c
"""

LSTM_PARAMETERS = ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]


def lstm_arguments(seed: str, dtype: Any = numpy.float64) -> dict[str, Any]:
    N, D, H = 3, 4, 2
    shapes = {"x": (N, D), "prev_h": (N, H), "prev_c": (N, H)}
    shapes |= {"Wx": (D, 4 * H), "Wh": (H, 4 * H), "b": (4 * H,)}
    generator = rng(seed)
    return {n: (0.5 * generator.normal(size=s)).astype(dtype) for n, s in shapes.items()}


def lstm_upstreams(which: str, seed: str) -> dict[str, Any]:
    """The keyword upstreams: 'h' and 'c' given, 'none' given explicitly as None."""
    generator = rng(f"upstream {seed}")
    given = {"dnext_h": generator.normal(size=(3, 2)), "dnext_c": generator.normal(size=(3, 2))}
    chosen = {}
    for key, value in given.items():
        if key[-1] in which:
            chosen[key] = value
        elif "none" in which:
            chosen[key] = None
    return chosen


@pytest.fixture(scope="module")
def lstm() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    text = gradgen.generate(LSTM, "lstm.py", value_and_grad=True)
    pairs = gradgen.generate(LSTM, "lstm.py", pairs=True)
    return (
        run_module(LSTM, "lstm.py"),
        run_module(text, "lstm_backward.py"),
        run_module(pairs, "lstm_pairs.py"),
        text,
    )


def test_lstm_step_backward_takes_one_keyword_upstream_per_result(lstm) -> None:
    _, generated, pairs, _ = lstm
    parameters = inspect.signature(generated["lstm_step_backward"]).parameters
    assert list(parameters) == [*LSTM_PARAMETERS, "dnext_h", "dnext_c"]
    for name in ("dnext_h", "dnext_c"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default is None
    assert list(inspect.signature(pairs["lstm_step_backward"]).parameters) == [
        "dnext_h",
        "dnext_c",
        "cache",
    ]


@pytest.mark.parametrize(
    "which", ["hc", "h", "c", "h-none", "c-none", "none", ""], ids=lambda w: w or "omitted"
)
def test_lstm_step_gradients_for_each_upstream(lstm, which: str) -> None:
    """An upstream omitted or None: that result does not reach the loss."""
    forward_ns, generated, pairs, text = lstm
    args = lstm_arguments(which)
    upstreams = lstm_upstreams(which, which)
    gradients = generated["lstm_step_backward"](*args.values(), **upstreams)
    named = dict(zip(LSTM_PARAMETERS, as_tuple(gradients, 6), strict=True))
    weights = (upstreams.get("dnext_h"), upstreams.get("dnext_c"))
    if all(w is None for w in weights):
        for name, grad in named.items():
            assert numpy.shape(grad) == numpy.shape(args[name])
            assert not numpy.any(grad), f"d{name} of a loss no result reaches"
    else:
        expected = expected_gradients(forward_ns["lstm_step"], args, LSTM_PARAMETERS, weights)
        assert_close(named, expected, f"\n{text}")
    owned_arrays(named, {**args, **{k: v for k, v in upstreams.items() if v is not None}}, text)
    # value_and_grad: ((next_h, next_c), gradients)
    (h, c), gradients_2 = generated["lstm_step_value_and_grad"](*args.values(), **upstreams)
    expected_h, expected_c = forward_ns["lstm_step"](**args)
    numpy.testing.assert_allclose(h, expected_h, rtol=1e-12)
    numpy.testing.assert_allclose(c, expected_c, rtol=1e-12)
    # the pair: forward -> (next_h, next_c, cache); backward(dnext_h, dnext_c, cache)
    h_2, c_2, cache = pairs["lstm_step_forward"](*args.values())
    numpy.testing.assert_allclose(h_2, expected_h, rtol=1e-12)
    numpy.testing.assert_allclose(c_2, expected_c, rtol=1e-12)
    from_cache = pairs["lstm_step_backward"](*weights, cache)
    for a, b, d in zip(gradients, gradients_2, from_cache, strict=True):
        numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        numpy.testing.assert_allclose(a, d, rtol=1e-12, atol=1e-15)


def test_lstm_step_float32_with_an_omitted_upstream(lstm) -> None:
    _, generated, _, _ = lstm
    args = lstm_arguments("float32", numpy.float32)
    gradients = generated["lstm_step_backward"](
        *args.values(), dnext_h=numpy.ones((3, 2), numpy.float32)
    )
    assert [g.dtype for g in gradients] == [numpy.float32] * 6


SEVERAL_RESULTS = [
    pytest.param(
        """
        def f(x):
            h = np.tanh(x) * x
            return h, h
        """,
        {"x": (2, 3)},
        id="same-value-twice",
    ),
    pytest.param(
        """
        def f(x, w):
            return x * w, x
        """,
        {"x": (2, 3), "w": (2, 3)},
        id="a-parameter-returned",
    ),
    pytest.param(
        """
        def f(x, w):
            a, b = x * w, np.exp(w)
            return np.sum(a), b, a
        """,
        {"x": (2, 3), "w": (2, 3)},
        id="three-results",
    ),
    pytest.param(
        """
        def two(x, w):
            return x * w, np.sin(x)


        def f(x, w):
            h, c = two(x, w)
            p, q = two(c, h)
            return q, p + h
        """,
        {"x": (2, 3), "w": (2, 3)},
        id="results-of-calls-returned",
    ),
]


@pytest.mark.parametrize("pairs", [False, True], ids=["recomputing", "pairs"])
@pytest.mark.parametrize(
    "omitted", [None, 0, 1], ids=["all-given", "first-omitted", "second-omitted"]
)
@pytest.mark.parametrize(("source", "shapes"), SEVERAL_RESULTS)
def test_several_results(
    source: str, shapes: dict[str, tuple[int, ...]], omitted: int | None, pairs: bool
) -> None:
    forward_ns, generated, text = program(module(source), pairs=pairs)
    forward = forward_ns["f"]
    args = draw(shapes, source)
    results = forward(**args)
    assert isinstance(results, tuple)
    generator = rng(f"upstreams {source}")
    upstreams = [generator.normal(size=numpy.shape(r)) for r in results]
    if omitted is not None:
        upstreams[omitted] = None
    kept = [None if u is None else u.copy() for u in upstreams]
    if pairs:
        *values, cache = generated["f_forward"](*args.values())
        for value, result in zip(values, results, strict=True):
            numpy.testing.assert_allclose(value, result, rtol=1e-12)
        gradients = generated["f_backward"](*upstreams, cache)
    else:
        signature = inspect.signature(generated["f_backward"]).parameters.values()
        keywords = [p.name for p in signature if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert len(keywords) == len(results), keywords
        given = {k: u for k, u in zip(keywords, upstreams, strict=True) if u is not None}
        gradients = generated["f_backward"](*args.values(), **given)
        value, _ = generated["f_value_and_grad"](*args.values(), **given)
        for v, r in zip(value, results, strict=True):
            numpy.testing.assert_allclose(v, r, rtol=1e-12)
    named = dict(zip(args, as_tuple(gradients, len(args)), strict=True))
    context = f"\nforward:\n{source}\ngenerated:\n{text}"
    assert_close(named, expected_gradients(forward, args, list(args), tuple(upstreams)), context)
    for u, k in zip(upstreams, kept, strict=True):
        if u is not None:
            numpy.testing.assert_array_equal(u, k, err_msg=f"upstream modified{context}")
    others = {**args, **{f"upstream {i}": u for i, u in enumerate(upstreams) if u is not None}}
    owned_arrays(named, others, text)


LSTM_CALLERS = [
    pytest.param(
        "    h, c = lstm_step(x, h0, c0, Wx, Wh, b)\n    return np.sum(h * h)\n", id="h-only"
    ),
    pytest.param(
        "    h, c = lstm_step(x, h0, c0, Wx, Wh, b)\n    return np.sum(np.tanh(c))\n", id="c-only"
    ),
    pytest.param(
        "    h, c = lstm_step(x, h0, c0, Wx, Wh, b)\n    return np.sum(h * c)\n", id="both"
    ),
    pytest.param(
        "    h1, c1 = lstm_step(x, h0, c0, Wx, Wh, b)\n"
        "    h2, c2 = lstm_step(x * 0.5, h1, c1, Wx, Wh, b)\n"
        "    return np.sum(h2 * h2) + np.sum(c1)\n",
        id="two-steps-shared-weights",
    ),
]


@pytest.mark.parametrize("pairs", [False, True], ids=["recomputing", "pairs"])
@pytest.mark.parametrize("body", LSTM_CALLERS)
def test_a_caller_unpacks_the_lstm_steps_results(body: str, pairs: bool) -> None:
    source = LSTM + "\n\ndef loss(x, h0, c0, Wx, Wh, b):\n" + body
    forward_ns, generated, text = program(source, pairs=pairs)
    args = dict(zip(["x", "h0", "c0", "Wx", "Wh", "b"], lstm_arguments(body).values(), strict=True))
    if pairs:
        value, cache = generated["loss_forward"](*args.values())
        gradients = generated["loss_backward"](1.0, cache)
    else:
        value, gradients = generated["loss_value_and_grad"](*args.values())
        recomputed = generated["loss_backward"](*args.values())
        for a, b in zip(gradients, recomputed, strict=True):
            numpy.testing.assert_allclose(a, b, rtol=1e-12)
    numpy.testing.assert_allclose(value, forward_ns["loss"](**args), rtol=1e-12)
    named = dict(zip(args, as_tuple(gradients, 6), strict=True))
    assert_close(named, expected_gradients(forward_ns["loss"], args, list(args)), f"\n{text}")
    # The step's forward runs once per call, in the caller's forward.
    assert generated_calls(text, "loss_forward" if pairs else "loss_backward").count(
        "lstm_step_forward"
    ) == body.count("lstm_step(")


# --- 4. tuple unpacking of values ----------------------------------------------------------------

UNPACKING = [
    pytest.param(
        """
        def f(x, y):
            a, b = x, y
            a, b = b, a * 2.0
            return a * 3.0 + b
        """,
        {"x": (3,), "y": (3,)},
        id="swap",
    ),
    pytest.param(
        """
        def f(x, y):
            x, y = y, x
            return x * np.exp(y)
        """,
        {"x": (3,), "y": (3,)},
        id="swap-parameters",
    ),
    pytest.param(
        """
        def f(x):
            N, D = x.shape
            return np.sum(x * x) / (N * D) + N
        """,
        {"x": (3, 4)},
        id="shape",
    ),
    pytest.param(
        """
        def f(x, y):
            s, d = x + y, x - y
            return s * d
        """,
        {"x": (), "y": ()},
        id="expressions",
    ),
]


@pytest.mark.parametrize("mode", ["backward", "value_and_grad", "pairs"])
@pytest.mark.parametrize(("source", "shapes"), UNPACKING)
def test_tuple_unpacking(source: str, shapes: dict[str, tuple[int, ...]], mode: str) -> None:
    check_call_form(source, shapes, mode, seed=source)


def test_swap_reads_the_values_before_the_assignment() -> None:
    """``a, b = b, a * 2.0`` is simultaneous: the generated forward computes 3y + 2x."""
    source = module(UNPACKING[0].values[0])
    _, generated, _ = program(source)
    value, (dx, dy) = generated["f_value_and_grad"](numpy.array([1.0]), numpy.array([10.0]), 1.0)
    numpy.testing.assert_array_equal(value, [32.0])
    numpy.testing.assert_array_equal(dx, [2.0])
    numpy.testing.assert_array_equal(dy, [3.0])


# --- 5. refusals ---------------------------------------------------------------------------------

TWO_RESULTS = "def g(a):\n    return a, a * 2.0\n\n\n"  # lines 1-4
ONE_RESULT = "def g(a, b=1.0):\n    return a * b\n\n\n"  # lines 1-4

REFUSALS = [
    pytest.param(
        "def f(x):\n    return f(x) * 2.0\n",
        (1, 5),
        "recursion is not supported: 'f' calls 'f'",
        id="direct-recursion",
    ),
    pytest.param(
        "def f(x):\n    return g(x) * 2.0\n\n\n"
        "def g(x):\n    return h(x)\n\n\n"
        "def h(x):\n    return f(x) + 1.0\n",
        (1, 5),
        "recursion is not supported: 'f' calls 'g' calls 'h' calls 'f'",
        id="mutual-recursion",
    ),
    pytest.param(
        "def f(x):\n    return g(x) * 2.0\n\n\ndef g(x):\n    return relu_(x)\n",
        (6, 12),
        "undefined name 'relu_'",
        id="unknown-function-in-a-callee",
    ),
    pytest.param(
        "def g(a, b):\n    return a * b\n\n\ndef f(x):\n    return g(x) * 2.0\n",
        (6, 12),
        "'g' is missing its argument 'b'",
        id="too-few-arguments",
    ),
    pytest.param(
        ONE_RESULT + "def f(x):\n    return g(x, x, x) * 2.0\n",
        (6, 12),
        "'g' takes 2 arguments but 3 are given",
        id="too-many-arguments",
    ),
    pytest.param(
        ONE_RESULT + "def f(x):\n    return g(x, c=x) * 2.0\n",
        (6, 12),
        "'g' has no parameter 'c'",
        id="unknown-keyword",
    ),
    pytest.param(
        "def g(a):\n    return a << 2\n\n\ndef f(x):\n    return g(x) * 2.0\n",
        (2, 14),
        "the operator '<<' is not supported",
        id="refused-callee",
    ),
    pytest.param(
        "def f(x, y):\n    a, b = x, y, x\n    return a * b\n",
        (2, 5),
        "2 names but 3 values: the counts must match",
        id="more-values-than-names",
    ),
    pytest.param(
        TWO_RESULTS + "def f(x):\n    a, b, c = g(x)\n    return a * b * c\n",
        (6, 5),
        "3 names, but 'g' returns 2 values",
        id="more-names-than-results",
    ),
    pytest.param(
        ONE_RESULT + "def f(x):\n    a, b = g(x)\n    return a * b\n",
        (6, 5),
        "2 names, but 'g' returns one value",
        id="unpacking-one-result",
    ),
    pytest.param(
        TWO_RESULTS + "def f(x):\n    return g(x) * 2.0\n",
        (6, 12),
        "'g' returns 2 values: unpack them into names (r1, r2 = g(...))",
        id="several-results-in-an-expression",
    ),
    pytest.param(
        TWO_RESULTS + "def f(x):\n    y = g(x)\n    return y\n",
        (6, 9),
        "'g' returns 2 values: unpack them into names (r1, r2 = g(...))",
        id="several-results-to-one-name",
    ),
    pytest.param(
        TWO_RESULTS + "def f(x):\n    a, *b = g(x)\n    y = a * 2\n    return y + b\n",
        (6, 8),
        "starred unpacking (*rest) is not supported: name each value",
        id="starred-unpacking-then-used",
    ),
    pytest.param(
        TWO_RESULTS + "def f(x):\n    a, b, c = g(x)\n    y = a * b\n    return y * c\n",
        (6, 5),
        "3 names, but 'g' returns 2 values",
        id="refused-unpacking-then-used",
    ),
]


@pytest.mark.parametrize(("source", "position", "message"), REFUSALS)
def test_refused_program(
    project: Path, run: Run, source: str, position: tuple[int, int], message: str
) -> None:
    """One located error, and only one: the names a refused line would have bound are not
    reported again as undefined where they are used. Nothing is written."""
    write(project / "bad.py", source)
    before = snapshot(project)
    status, out, err = run("bad.py", "-o", "bad_backward.py")
    assert status == 123
    assert out == ""
    assert diagnostics(err) == [("bad.py", *position, f"{message}")], err
    assert "undefined name 'a'" not in err
    lines = err.splitlines()
    assert lines[1] == "    " + source.splitlines()[position[0] - 1]
    assert lines[2] == "    " + " " * (position[1] - 1) + "^"
    assert snapshot(project) == before


def test_refused_program_in_the_decorator(load) -> None:
    with pytest.raises(gradgen.GradgenError, match="recursion is not supported"):
        load(
            "import gradgen\n\n\n@gradgen.differentiable\ndef f(x):\n    return g(x)\n\n\n"
            "def g(x):\n    return f(x) * 2.0\n"
        )


# --- 7. the decorator and committed backward files -----------------------------------------------

COMMITTED = """\
import numpy as np

import gradgen


@gradgen.differentiable
def loss(x, w):
    return np.sum(layer(x, w) ** 2)


def layer(x, w):
    return np.tanh(scale(x) * w)


def scale(x):
    return x * 2.0


def unrelated(x):
    return x * 3.0
"""

EDITS = [
    pytest.param(("np.tanh(scale(x) * w)", "np.sin(scale(x) * w)"), True, id="callee"),
    pytest.param(("return x * 2.0", "return x * 4.0"), True, id="callee-of-callee"),
    pytest.param(("return x * 3.0", "return x * 5.0"), False, id="unrelated-function"),
    pytest.param(("\n\ndef unrelated", "\n\nK = 1\n\n\ndef unrelated"), False, id="module-line"),
]


@pytest.mark.usefixtures("fresh_gradgen_state")
@pytest.mark.parametrize(("change", "stale"), EDITS)
def test_committed_caller_is_stale_when_a_callee_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run, change: tuple[str, str], stale: bool
) -> None:
    make_reviewed_project(tmp_path)
    forward = write(tmp_path / "models" / "net.py", COMMITTED)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    committed = tmp_path / "generated" / "net.py"
    text = committed.read_text()
    assert re.search(r"^#   loss: \w+ \(calls layer, scale\)$", text, re.M), header(text)
    backward = functions(text)["loss_backward"]
    assert backward.count("    return dx, dw") == 1
    marked = backward.replace("    return dx, dw", "    return dx + 1000.0, dw")
    committed.write_text(text.replace(backward, marked))  # the committed loss_backward, marked
    edit(forward, *change)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = import_file(forward).loss
    messages = stale_warnings(list(caught))

    args = draw({"x": (3,), "w": (3,)}, "committed")
    dx, dw = f.backward(*args.values())
    expected = expected_gradients(f, args, ["x", "w"])
    if stale:
        (message,) = messages
        assert "generated/net.py is stale for loss" in message
        assert "a function it calls changed since the file was generated" in message
        assert "1000" not in f.backward_source
        assert f.backward.__code__.co_filename.startswith("<gradgen")
        assert_close({"x": dx, "w": dw}, expected, f"\n{f.backward_source}")
    else:
        assert messages == []
        assert Path(f.backward.__code__.co_filename).resolve() == committed.resolve()
        assert_close({"x": dx - 1000.0, "w": dw}, expected, f"\n{f.backward_source}")


# --- 8. gradgen check ----------------------------------------------------------------------------

LSTM_CALLER = """

def loss(x: "N, D", h0: "N, H", c0: "N, H", Wx: "D, G", Wh: "H, G", b: "G"):
    h, c = lstm_step(x, h0, c0, Wx, Wh, b)
    return np.sum(h * c)
"""


@pytest.mark.parametrize(
    ("source", "functions_checked"),
    [
        pytest.param(NET, ["affine", "relu", "softmax_loss", "two_layer_loss"], id="composed"),
        pytest.param(LSTM + LSTM_CALLER, ["sigmoid", "lstm_step", "loss"], id="several-results"),
    ],
)
def test_gradgen_check_passes(
    project: Path, run: Run, source: str, functions_checked: list[str]
) -> None:
    write(project / "program.py", source)
    status, out, err = run("check", "program.py")
    assert status == 0, out + err
    rows = re.findall(r"^(\w+) +(\w+) +.+ +(pass|FAIL|skip \(None\))$", out, re.M)
    assert sorted({f for f, _, _ in rows}) == sorted(functions_checked), out
    assert all(result in ("pass", "skip (None)") for _, _, result in rows), out
    assert "gradients match central differences" in out


# --- 9. stable output ----------------------------------------------------------------------------

GENERATE = (
    "import sys, gradgen; "
    "sys.stdout.buffer.write(gradgen.generate(sys.stdin.read(), 'program.py').encode())"
)


def test_same_bytes_in_every_process() -> None:
    """The header lists callees and the module orders functions: no set order may leak."""
    source = NET + "\n\n" + LSTM.split("\n", 3)[3] + LSTM_CALLER
    outputs = set()
    for seed in ("0", "12345"):
        completed = subprocess.run(
            [sys.executable, "-c", GENERATE],
            input=source.encode(),
            capture_output=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
            check=True,
        )
        outputs.add(completed.stdout)
    outputs.add(gradgen.generate(source, "program.py").encode())
    assert len(outputs) == 1


def test_same_file_twice_from_the_command_line(project: Path, run: Run) -> None:
    write(project / "net.py", NET)
    assert run("net.py", "-o", "net_backward.py", "--pairs")[0] == 0
    first = (project / "net_backward.py").read_bytes()
    (project / "net_backward.py").unlink()
    assert run("net.py", "-o", "net_backward.py", "--pairs")[0] == 0
    assert (project / "net_backward.py").read_bytes() == first


@pytest.mark.parametrize("pairs", [False, True], ids=["recomputing", "pairs"])
def test_editing_one_callee_changes_only_its_functions(pairs: bool) -> None:
    old = gradgen.generate(NET, "net.py", pairs=pairs)
    edited = NET.replace("out = x @ w + b\n", "out = x @ w + b * 2.0\n")
    assert edited != NET
    new = gradgen.generate(edited, "net.py", pairs=pairs)
    before, after = functions(old), functions(new)
    assert list(before) == list(after)
    changed = [name for name in before if before[name] != after[name]]
    assert changed and all(name.startswith("affine_") for name in changed), changed
    head = [line for line in changed_lines(old, new) if line[1:].startswith("#")]
    assert [line[:12] for line in head] == ["-#   affine:", "+#   affine:"], head


def test_a_function_of_another_module_is_refused_naming_the_module() -> None:
    source = textwrap.dedent(
        """\
        import numpy as np
        from layers import affine


        def loss(x, w, b):
            h = affine(x, w, b)
            return np.sum(h * h)
        """
    )
    with pytest.raises(gradgen.GradgenError) as caught:
        gradgen.generate(source, "net.py")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.line, diagnostic.column) == (6, 9)
    assert "'affine' is a function of the module 'layers', which gradgen cannot see" in (
        diagnostic.message
    )


def test_a_function_of_another_module_computes_a_constant_where_no_gradient_flows() -> None:
    source = textwrap.dedent(
        """\
        import numpy as np
        from layers import scale_of


        def loss(x, n):
            s = scale_of(n)
            return np.sum(x * s)
        """
    )
    text = gradgen.generate(source, "net.py", wrt={"loss": ["x"]})
    assert "from layers import scale_of" in text


def test_the_upstreams_of_unnamed_results_are_numbered() -> None:
    """``return x * y, x + y``: the upstreams are ``dout1`` and ``dout2``, as a user rule's
    are, not ``dout`` and a name made unique (``d_out``)."""
    text = gradgen.generate("def pair(x, y):\n    return x * y, x + y\n", "pair.py")
    assert "def pair_backward(x, y, *, dout1=None, dout2=None):" in text
    namespace = run_module(text, "pair_backward.py")
    assert namespace["pair_backward"](2.0, 3.0, dout1=1.0, dout2=10.0) == (13.0, 12.0)
