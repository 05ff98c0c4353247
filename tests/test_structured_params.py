"""Parameters that are dicts, lists or tuples of arrays (``gradgen.structure``).

Each way of reading one (``params["W1"]``, ``params[0]["W"]``, unpacking, nested unpacking,
inside expressions) is generated from the command line (the text written, then run) and
through ``@gradgen.differentiable``, and its gradient, in the parameter's structure, checked
against central differences in float64, leaf by leaf; with several results, with
forward/backward pairs and with ``wrt``. Every other use of a structured parameter is
refused where it is written, and nothing is written.
"""

from __future__ import annotations

import ast
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import pytest

import gradgen
from cli_project import Run, snapshot, write
from gradgen.gradcheck.structured import flattening
from gradgen.testing import assert_gradients_match
from test_programs import diagnostics
from test_rules import owned_arrays, run_module

RTOL = 1e-5
ATOL = 1e-8
H = 1e-6


def module(text: str) -> str:
    return "import numpy as np\n\n\n" + textwrap.dedent(text).lstrip("\n")


def rng(seed: str) -> numpy.random.Generator:
    return numpy.random.default_rng(zlib.crc32(seed.encode()))


def arrays(seed: str, *shapes: tuple[int, ...]) -> list[Any]:
    generator = rng(seed)
    return [generator.uniform(0.2, 2.0, size=s) * generator.choice([-1.0, 1.0], s) for s in shapes]


def loss_of(forward: Callable[..., Any], upstream: Any) -> Callable[..., float]:
    def loss(*args: Any) -> float:
        result = forward(*args)
        if isinstance(result, tuple):
            return sum(float(numpy.sum(r * u)) for r, u in zip(result, upstream, strict=True))
        return float(numpy.sum(result * upstream))

    return loss


def numeric(loss: Callable[..., float], args: list[Any], position: int, path: tuple[Any, ...]):
    """Central differences of ``loss`` with respect to the leaf at ``path`` of argument
    ``position`` (the containers rebuilt around a perturbed copy)."""
    layout = flattening([str(k) for k in range(len(args))], args)
    assert layout is not None
    flat = layout.values(args)
    index = layout.leaves.index((position, path))
    base = numpy.asarray(flat[index], dtype=numpy.float64)
    grad = numpy.zeros(base.shape)
    for entry in numpy.ndindex(base.shape):
        h = H * max(1.0, abs(float(base[entry])))
        values = []
        for sign in (1, -1):
            moved = base.copy()
            moved[entry] += sign * h
            trial = list(flat)
            trial[index] = moved
            values.append(loss(*layout.rebuild(trial)))
        grad[entry] = (values[0] - values[1]) / (2 * h)
    return grad


def entry(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def check(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    args: list[Any],
    expected: list[Any],
    upstream: Any = 1.0,
    context: str = "",
    **upstreams: Any,
) -> Any:
    """Run ``backward`` and compare every leaf of every structured gradient (and every plain
    gradient) with central differences; ``expected`` says, per argument, the structure the
    gradient must have: None (a plain array), or the container with ``...`` at each leaf."""
    if upstreams:
        grads = backward(*args, **upstreams)
        upstream = tuple(upstreams.values())
    else:
        grads = backward(*args, upstream)
    grads = grads if len(args) > 1 else (grads,)
    loss = loss_of(forward, upstream)
    for position, (grad, shape) in enumerate(zip(grads, expected, strict=True)):
        if shape is None:
            numpy.testing.assert_allclose(
                grad, numeric(loss, args, position, ()), rtol=RTOL, atol=ATOL, err_msg=context
            )
            continue
        assert _same_structure(grad, shape), f"{grad!r} is not shaped like {shape!r}{context}"
        for path in _paths(shape):
            value = entry(grad, path)
            expected_value = numeric(loss, args, position, path)
            numpy.testing.assert_allclose(
                value, expected_value, rtol=RTOL, atol=ATOL, err_msg=f"{path}{context}"
            )
    return grads


def _paths(shape: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(shape, dict):
        return [p for k, v in shape.items() for p in _paths(v, (*prefix, k))]
    if isinstance(shape, list):
        return [p for k, v in enumerate(shape) if v is not None for p in _paths(v, (*prefix, k))]
    return [prefix]


def _same_structure(value: Any, shape: Any) -> bool:
    if isinstance(shape, dict):
        return (
            isinstance(value, dict)
            and list(value) == list(shape)
            and all(_same_structure(value[k], v) for k, v in shape.items())
        )
    if isinstance(shape, list):
        return (
            isinstance(value, list)
            and len(value) == len(shape)
            and all(
                (v is None and g is None) or (v is not None and _same_structure(g, v))
                for g, v in zip(value, shape, strict=True)
            )
        )
    return isinstance(value, numpy.ndarray)


# --- every read form ------------------------------------------------------------------------

X, W1, B1, W2, B2 = arrays("shapes", (4, 3), (3, 5), (5,), (5, 2), (2,))
LEAF = ...

READS = [
    pytest.param(
        """
        def f(x, params):
            h = np.tanh(x @ params["W1"] + params["b1"])
            return np.sum(h**2)
        """,
        [X, {"W1": W1, "b1": B1}],
        [None, {"W1": LEAF, "b1": LEAF}],
        id="dict-keys-inside-an-expression",
    ),
    pytest.param(
        """
        def f(x, params):
            W1 = params["W1"]
            b = params["b1"]
            return np.sum(np.tanh(x @ W1 + b) ** 2)
        """,
        [X, {"W1": W1, "b1": B1}],
        [None, {"W1": LEAF, "b1": LEAF}],
        id="dict-keys-assigned",
    ),
    pytest.param(
        """
        def f(x, params):
            h = np.tanh(x @ params["W1"] + params["b1"])
            return np.sum(h)
        """,
        [X, {"W1": W1, "b1": B1, "W2": W2}],
        [None, {"W1": LEAF, "b1": LEAF}],
        id="dict-key-never-read-gets-no-entry",
    ),
    pytest.param(
        """
        def f(x, layers):
            W1, b1, W2, b2 = layers
            h = np.tanh(x @ W1 + b1)
            return np.sum((h @ W2 + b2) ** 2)
        """,
        [X, [W1, B1, W2, B2]],
        [None, [LEAF, LEAF, LEAF, LEAF]],
        id="unpacking",
    ),
    pytest.param(
        """
        def f(x, layers):
            (W1, b1), (W2, b2) = layers
            h = np.tanh(x @ W1 + b1)
            return np.sum((h @ W2 + b2) ** 2)
        """,
        [X, [(W1, B1), (W2, B2)]],
        [None, [[LEAF, LEAF], [LEAF, LEAF]]],
        id="nested-unpacking-of-tuples-gives-lists",
    ),
    pytest.param(
        """
        def f(x, layers):
            W, b = layers[1]
            V, c = layers[0]
            return np.sum(np.tanh(np.tanh(x @ V + c) @ W + b) ** 2)
        """,
        [X, ((W1, B1), (W2, B2))],
        [None, [[LEAF, LEAF], [LEAF, LEAF]]],
        id="unpacking-an-entry",
    ),
    pytest.param(
        """
        def f(x, layers: list):
            h = np.tanh(x @ layers[0] + layers[1])
            return np.sum(h @ layers[3])
        """,
        [X, [W1, B1, W2, W2]],
        [None, [LEAF, LEAF, None, LEAF]],
        id="constant-positions-annotated-list",
    ),
    pytest.param(
        """
        def f(x, params):
            h = np.tanh(x @ params[0]["W"] + params[0]["b"])
            return np.sum(h @ params[1]["W"])
        """,
        [X, [{"W": W1, "b": B1}, {"W": W2}]],
        [None, [{"W": LEAF, "b": LEAF}, {"W": LEAF}]],
        id="chain-position-then-key",
    ),
    pytest.param(
        """
        def f(x, params: {"layer1": ("D, H", "H")}):
            h = np.tanh(x @ params["layer1"][0] + params["layer1"][1])
            return np.sum(h * h)
        """,
        [X, {"layer1": (W1, B1)}],
        [None, {"layer1": [LEAF, LEAF]}],
        id="chain-key-then-position-annotated",
    ),
    pytest.param(
        """
        def f(x, params: {"one": ("D, H", "H"), "two": ["H, C"], "W1": "C, H"}):
            W1, b1 = params["one"]
            h = np.tanh(x @ W1 + b1) @ params["two"][0]
            return np.sum(h * params["W1"].T[0])
        """,
        [X, {"one": [W1, B1], "two": [W2], "W1": W2.T.copy()}],
        [None, {"one": [LEAF, LEAF], "two": [LEAF], "W1": LEAF}],
        id="mixed-and-a-leaf-named-like-a-local",
    ),
    pytest.param(
        """
        def f(params, scale):
            a = params["a"] * scale
            return np.sum(a * params["a"] + params["b"][:, 0])
        """,
        [{"a": W1, "b": W2}, float(B2[0])],
        [{"a": LEAF, "b": LEAF}, None],
        id="array-indexing-of-a-leaf-and-a-number-parameter",
    ),
    pytest.param(
        """
        def f(x: "D", params: {"W": "R, D"}):
            w0 = params["W"][0]
            return np.sum(x * w0 + params["W"][2] ** 2)
        """,
        [X[0].copy(), {"W": X.copy()}],
        [None, {"W": LEAF}],
        id="positions-after-an-annotated-array-index-it",
    ),
    pytest.param(
        """
        def f(x, params: dict):
            return np.sum(x * params[0] + params[1])
        """,
        [X, {0: X[1].copy(), 1: X[2].copy()}],
        [None, {0: LEAF, 1: LEAF}],
        id="integer-keys-of-a-dict-give-a-dict",
    ),
]


@pytest.mark.parametrize(("source", "args", "expected"), READS)
def test_read_form_from_the_command_line(
    project: Path, run: Run, source: str, args: list[Any], expected: list[Any]
) -> None:
    """The generated text, run on its own: gradients in the parameter's structure, each leaf
    equal to central differences, each an array of the caller's own."""
    write(project / "fwd.py", module(source))
    status, _, err = run("fwd.py", "-o", "bwd.py", "--value-and-grad")
    assert status == 0, err
    text = (project / "bwd.py").read_text()
    assert "gradgen" not in text.split("\n", 3)[-1]  # stands alone
    forward = run_module(module(source), "fwd.py")["f"]
    namespace = run_module(text, "bwd.py")
    grads = check(forward, namespace["f_backward"], args, expected, context=f"\n{text}")
    value, pair = namespace["f_value_and_grad"](*args)
    assert value == pytest.approx(forward(*args))
    for g, p in zip(grads, pair, strict=True):
        numpy.testing.assert_equal(g, p)
    leaves = {}
    for position, (g, shape) in enumerate(zip(grads, expected, strict=True)):
        for path in _paths(shape) if shape is not None else [()]:
            leaves[f"{position}{path}"] = entry(g, path)
    flat_args = flattening([str(k) for k in range(len(args))], args)
    assert flat_args is not None
    others = dict(zip(flat_args.names, flat_args.values(args), strict=True))
    owned_arrays(leaves, others, text)


@pytest.mark.parametrize(("source", "args", "expected"), READS)
def test_read_form_in_the_decorator(
    load: Callable[[str], Any], source: str, args: list[Any], expected: list[Any]
) -> None:
    loaded = load(
        "import gradgen\n" + module("@gradgen.differentiable\n" + textwrap.dedent(source))
    )
    check(loaded.f, loaded.f.backward, args, expected)
    assert_gradients_match(loaded.f, *args)


def test_pairs_keep_the_leaves_in_the_cache() -> None:
    source = module(
        """
        def loss(x, params):
            h = np.maximum(0, x @ params["W1"] + params["b1"])
            return np.sum(h @ params["W2"])
        """
    )
    text = gradgen.generate(source, "fwd.py", pairs=True, value_and_grad=True)
    namespace = run_module(text)
    forward = run_module(source)["loss"]
    args = [X, {"W1": W1, "b1": B1, "W2": W2}]
    value, cache = namespace["loss_forward"](*args)
    assert value == pytest.approx(forward(*args))
    grads = namespace["loss_backward"](0.7, cache)
    loss = loss_of(forward, 0.7)
    for key in ("W1", "b1", "W2"):
        numpy.testing.assert_allclose(
            grads[1][key], numeric(loss, args, 1, (key,)), rtol=RTOL, atol=ATOL
        )
    _, again = namespace["loss_value_and_grad"](*args, 0.7)
    numpy.testing.assert_equal(again[1]["W2"], grads[1]["W2"])


def test_several_results_and_wrt() -> None:
    source = module(
        """
        def step(x, params):
            h = np.tanh(x @ params["Wx"] + params["b"])
            c = h * params["b"]
            return h, c
        """
    )
    args = [X, {"Wx": W1, "b": B1}]
    forward = run_module(source)["step"]
    for wrt in (None, ["params"], ["params", "x"]):
        text = gradgen.generate(source, "fwd.py", wrt=None if wrt is None else {"step": wrt})
        backward = run_module(text)["step_backward"]
        up = arrays("up", (4, 5), (4, 5))
        grads = backward(*args, dh=up[0], dc=up[1])
        loss = loss_of(forward, tuple(up))
        structured = grads if wrt == ["params"] else grads[0 if wrt else 1]
        assert list(structured) == ["Wx", "b"]
        for key in ("Wx", "b"):
            numpy.testing.assert_allclose(
                structured[key], numeric(loss, args, 1, (key,)), rtol=RTOL, atol=ATOL
            )
        if wrt == ["params", "x"]:
            numpy.testing.assert_allclose(grads[1], numeric(loss, args, 0, ()), rtol=RTOL)


def test_leaves_passed_to_a_module_function() -> None:
    source = module(
        """
        def affine(x, w, b):
            return x @ w + b


        def loss(x, params):
            h = np.maximum(0, affine(x, params["W1"], params["b1"]))
            return np.sum(affine(h, params["W2"], params["b2"]) ** 2)
        """
    )
    text = gradgen.generate(source, "fwd.py")
    args = [X, {"W1": W1, "b1": B1, "W2": W2, "b2": B2}]
    forward = run_module(source)["loss"]
    check(
        forward,
        run_module(text)["loss_backward"],
        args,
        [None, dict.fromkeys(("W1", "b1", "W2", "b2"), LEAF)],
    )


def test_a_leaf_with_no_gradient_gets_what_a_parameter_gets() -> None:
    source = module(
        """
        def f(x, data):
            scores = x * data["w"]
            return np.sum(scores[np.arange(4), data["labels"]])
        """
    )
    text = gradgen.generate(source, "fwd.py")
    assert 'return dx, {"w": dw, "labels": None}' in text


def test_keys_spelled_as_python_strings() -> None:
    source = module(
        """
        def f(x, params):
            return np.sum(x * params["layer 1"] + params['b"'])
        """
    )
    text = gradgen.generate(source, "fwd.py")
    tree = ast.parse(text)
    assert tree
    grads = run_module(text)["f_backward"](X, {"layer 1": X, 'b"': X})
    assert list(grads[1]) == ["layer 1", 'b"']


def test_same_input_same_output() -> None:
    source = module(
        """
        def f(x, layers):
            (W1, b1), (W2, b2) = layers
            return np.sum(np.tanh(x @ W1 + b1) @ W2 + b2)
        """
    )
    assert gradgen.generate(source, "a.py") == gradgen.generate(source, "a.py")


# --- refusals -------------------------------------------------------------------------------

REFUSALS = [
    pytest.param(
        'def f(x, params):\n    return np.sum(x @ params["W"] + len(params))\n',
        (2, 41),
        "'params' is a structured parameter (a dict, list or tuple of arrays), passed whole "
        "to a function (len() too) here",
        id="len",
    ),
    pytest.param(
        'def f(x, params, i):\n    return np.sum(x @ params["W"] + params[i])\n',
        (2, 37),
        "'params' is a structured parameter (a dict, list or tuple of arrays), read at an "
        "index that is not a constant here",
        id="non-constant-index",
    ),
    pytest.param(
        "def f(x, params):\n    W, b = params\n    return np.sum(x @ W + b + params[-1])\n",
        (3, 31),
        "negative index",
        id="negative-index",
    ),
    pytest.param(
        'def f(x, params):\n    return np.sum(x @ params["W"] * params)\n',
        (2, 37),
        "used in arithmetic here",
        id="arithmetic",
    ),
    pytest.param(
        "def g(p):\n    return p\n\n\n"
        'def f(x, params):\n    return np.sum(x @ g(params) + params["b"])\n',
        (6, 25),
        "passed whole as an argument of 'g': pass its arrays instead",
        id="passed-whole-to-a-module-function",
    ),
    pytest.param(
        'def g(p):\n    return p["W"]\n\n\n'
        'def f(x, params):\n    return np.sum(x @ g(params["a"]))\n',
        (6, 23),
        "'g' takes a dict or list of arrays ('p'): calls of such functions are not supported",
        id="calling-a-function-with-a-structured-parameter",
    ),
    pytest.param(
        'def f(x, params):\n    params = params["W"]\n    return np.sum(x @ params)\n',
        (2, 5),
        "'params' is a structured parameter: it cannot be assigned again",
        id="rebound",
    ),
    pytest.param(
        'def f(x, params):\n    return np.sum(x @ params["W"] + params[0])\n',
        (2, 37),
        "'params' is read both by keys and by positions",
        id="keys-and-positions",
    ),
    pytest.param(
        'def f(x, params):\n    return np.sum(x @ params["W"] + params["W"]["b"])\n',
        (2, 23),
        "'params[\"W\"]' is read both as an array and as a container of arrays",
        id="leaf-and-container",
    ),
    pytest.param(
        "def f(x, params):\n    W, b = params\n    return np.sum(x @ W + b + params[2])\n",
        (3, 31),
        "'params[2]' is past the end of 'params', which is unpacked into 2 names",
        id="past-the-end",
    ),
    pytest.param(
        "def f(x, params):\n    W, *rest = params\n    return np.sum(x @ W)\n",
        (2, 8),
        "starred unpacking of 'params' is not supported",
        id="starred",
    ),
    pytest.param(
        'def f(x, params=None):\n    return np.sum(x @ params["W"])\n',
        (1, 17),
        "a structured parameter cannot have a default",
        id="default",
    ),
    pytest.param(
        'def f(x, params):\n    w0 = params["W"][0]\n    return np.sum(x * w0)\n',
        (2, 10),
        "'params[\"W\"][0]' is ambiguous: 'params[\"W\"]' may be an array ([0] a row of it) "
        'or a list of arrays. Bind the array first (W = params["W"], then W[0]), or '
        "annotate 'params' with its shapes",
        id="position-after-a-key-unannotated",
    ),
    pytest.param(
        'def f(x, params):\n    return np.sum(x * params["W"][0] + params["b"])\n',
        (2, 23),
        "'params[\"W\"][0]' is ambiguous",
        id="position-after-a-key-in-an-expression",
    ),
    pytest.param(
        "def f(x, layers: list):\n    W = layers[-1]\n    return np.sum(x * W)\n",
        (2, 9),
        "read at a negative index",
        id="negative-index-of-an-annotated-list",
    ),
    pytest.param(
        "def f(x, params: dict, k):\n    return np.sum(x * params[k])\n",
        (2, 23),
        "read at an index that is not a constant here",
        id="non-constant-index-of-an-annotated-dict",
    ),
    pytest.param(
        "def f(x, layers):\n    W, b = layers[-1]\n    return np.sum(x @ W + b)\n",
        (2, 12),
        "read at a negative index",
        id="unpacking-a-negative-index",
    ),
    pytest.param(
        'def f(x, layers):\n    W = layers[-1]["W"]\n    return np.sum(x @ W)\n',
        (2, 9),
        "read at a negative index",
        id="key-after-a-negative-index",
    ),
]


@pytest.mark.parametrize(("source", "position", "message"), REFUSALS)
def test_refused(project: Path, run: Run, source: str, position: tuple[int, int], message: str):
    """One located error saying what is supported, and nothing written."""
    source = module(source)
    write(project / "bad.py", source)
    before = snapshot(project)
    status, out, err = run("bad.py", "-o", "bad_backward.py")
    assert status == 123
    assert out == ""
    found = diagnostics(err)
    assert len(found) == 1, err
    file, line, column, text = found[0]
    assert (file, line - 3, column) == ("bad.py", *position), err
    assert message in text, err
    assert snapshot(project) == before


def test_refusal_in_the_decorator(load: Callable[[str], Any]) -> None:
    with pytest.raises(gradgen.GradgenError, match="passed whole to a function"):
        load(
            "import numpy as np\nimport gradgen\n\n\n@gradgen.differentiable\n"
            'def f(x, params):\n    return np.sum(x @ params["W"]) + len(params)\n'
        )


def test_array_indexing_stays_array_indexing() -> None:
    """Without a key, an unpacking or an annotation, ``x[0]`` indexes an array."""
    source = module("def f(x):\n    return np.sum(x[0] * x[1])\n")
    text = gradgen.generate(source, "fwd.py")
    assert "dx[0] +=" in text or "dx[0] =" in text or "dx[0]" in text


# --- gradgen check --------------------------------------------------------------------------


def test_gradgen_check_draws_structured_inputs(project: Path, run: Run) -> None:
    write(
        project / "fwd.py",
        module(
            """
            def loss(X: "N, D", params: {"W1": "D, H", "b1": "H", "W2": "H, C"}):
                h = np.maximum(0, X @ params["W1"] + params["b1"])
                return np.sum(h @ params["W2"])


            def mlp(x, layers):
                (W1, b1), (W2, b2) = layers
                return np.sum(np.tanh(x @ W1 + b1) @ W2 + b2)
            """
        ),
    )
    status, out, err = run("check", "fwd.py")
    assert status == 0, out + err
    assert "all 9 gradients match" in out, out


def test_gradgen_check_fails_a_wrong_structured_gradient(project: Path, run: Run) -> None:
    write(
        project / "fwd.py",
        module('def loss(x: "N", params: {"w": "N"}):\n    return np.sum(x * params["w"])\n'),
    )
    write(
        project / "bwd.py",
        "def loss_backward(x, params, dout=1.0):\n"
        '    return dout * params["w"], {"w": 1.01 * dout * x}\n',
    )
    status, out, _ = run("check", "fwd.py", "--backward", "bwd.py")
    assert status == 1, out
    assert "FAIL" in out


# --- the example: examples/two_layer_params.py and its committed backward ------------------

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "two_layer_params.py"


def example_arguments(name: str, seed: str) -> list[Any]:
    generator = rng(f"{name} {seed}")
    N, D, H, C = 4, 3, 5, 2
    if name == "two_layer_loss":
        params = {
            "W1": generator.normal(size=(D, H)),
            "b1": generator.normal(size=H),
            "W2": generator.normal(size=(H, C)),
            "b2": generator.normal(size=C),
        }
        return [generator.normal(size=(N, D)), generator.integers(0, C, N), params, 0.3]
    layers = [
        (generator.normal(size=(D, H)), generator.normal(size=H)),
        (generator.normal(size=(H, C)), generator.normal(size=C)),
    ]
    return [generator.normal(size=(N, D)), layers, generator.normal(size=(N, C))]


def load_file(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_structured_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.mark.parametrize("seed", ["a", "b"])
def test_example_committed_backward(seed: str) -> None:
    """The committed file (the mapping says wrt params for two_layer_loss): the dict of
    gradients, and mlp_loss's list of [dW, db] pairs, against central differences."""
    forward = load_file(EXAMPLE)
    backward = load_file(ROOT / "generated" / "two_layer_params.py")
    args = example_arguments("two_layer_loss", seed)
    grads = backward.two_layer_loss_backward(*args, dloss=0.8)
    assert list(grads) == ["W1", "b1", "W2", "b2"]
    loss = loss_of(forward.two_layer_loss, 0.8)
    for key in grads:
        numpy.testing.assert_allclose(
            grads[key], numeric(loss, args, 2, (key,)), rtol=RTOL, atol=ATOL, err_msg=key
        )
    for name in ("mlp_loss", "mlp_over_layers"):
        check(
            getattr(forward, name),
            getattr(backward, f"{name}_backward"),
            example_arguments(name, seed),
            [None, [[LEAF, LEAF], [LEAF, LEAF]], None],
            upstream=0.8,
        )


@pytest.mark.usefixtures("fresh_gradgen_state")
@pytest.mark.parametrize("name", ["two_layer_loss", "mlp_loss", "mlp_over_layers"])
def test_example_through_the_decorator_and_testing(name: str, tmp_path: Path) -> None:
    """Committed (strict: the reviewed file runs), in memory, and plain."""
    import shutil

    f = getattr(load_file(EXAMPLE), name)
    args = example_arguments(name, "decorator")
    committed = gradgen.differentiable(f, strict=True)
    assert_gradients_match(committed, *args)
    copied = Path(shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name))
    in_memory = gradgen.differentiable(getattr(load_file(copied), name))
    assert in_memory.backward.__code__.co_filename.startswith("<gradgen")
    assert_gradients_match(in_memory, *args)
    assert_gradients_match(getattr(load_file(copied), name), *args)


def test_example_gradgen_check(monkeypatch: pytest.MonkeyPatch, run: Run) -> None:
    monkeypatch.chdir(ROOT)
    status, out, err = run("check", "examples/two_layer_params.py")
    assert status == 0, out + err
    assert "FAIL" not in out and "all 16 gradients match" in out, out


def test_training_step_on_the_dict_of_gradients() -> None:
    """``for k in grads: params[k] -= lr * grads[k]`` lowers the loss."""
    forward = load_file(EXAMPLE)
    backward = load_file(ROOT / "generated" / "two_layer_params.py")
    X_, y, params, reg = example_arguments("two_layer_loss", "train")
    before = forward.two_layer_loss(X_, y, params, reg)
    for _ in range(20):
        grads = backward.two_layer_loss_backward(X_, y, params, reg)
        for key in grads:
            params[key] -= 0.1 * grads[key]
    assert forward.two_layer_loss(X_, y, params, reg) < before


# --- golden file ----------------------------------------------------------------------------

GOLDEN = Path(__file__).parent / "cases" / "structured" / "two_layer_dict.py"


def test_generated_text_matches_the_golden_file() -> None:
    """The dict-params two-layer net, with and without pairs, as gradgen writes it (update
    with GRADGEN_UPDATE_GOLDEN=1 and read the diff)."""
    from golden import read_case, update_requested, write_case

    source, expected = read_case(GOLDEN)
    actual = gradgen.generate(source, GOLDEN.name) + "\n# pairs\n\n"
    actual += gradgen.generate(source, GOLDEN.name, pairs=True)
    if update_requested():
        write_case(GOLDEN, source.rstrip("\n") + "\n", actual)
        expected = actual
    assert expected, "no '# output' section: run with GRADGEN_UPDATE_GOLDEN=1"
    assert actual == expected
