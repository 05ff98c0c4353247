"""Training: ``F_value_and_grad`` (value and gradients in one pass) and forward/backward pairs
(``F_forward`` -> ``(value, cache)``, ``F_backward(d<out>, cache)``) through ``generate``, the
CLI (``--pairs``), the configuration (``pairs = true``) and the decorator (``pairs=True``).
"""

from __future__ import annotations

import ast
import functools
import math
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy
import pytest

import gradgen
from gradgen.cli import main
from test_layers import FUNCTION_IDS, FUNCTIONS, draw, forward_of, modules, run

STAGED = (Path(__file__).resolve().parent.parent / "examples" / "staged.py").read_text()


def upstream_for(value: Any, name: str) -> Any:
    """A random upstream gradient of the result's shape (None: the default, a scalar)."""
    if numpy.ndim(value) == 0:
        return None
    return numpy.random.default_rng(len(name)).normal(size=numpy.shape(value))


def with_upstream(args: dict[str, Any], upstream: Any) -> list[Any]:
    return [*args.values()] if upstream is None else [*args.values(), upstream]


def assert_same(left: Any, right: Any) -> None:
    left = left if isinstance(left, tuple) else (left,)
    right = right if isinstance(right, tuple) else (right,)
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        if a is None or b is None:
            assert a is b
        else:
            numpy.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def paired(stem: str) -> dict[str, Any]:
    """The zoo module ``stem`` generated with ``pairs=True``, run."""
    source = (Path(__file__).resolve().parent.parent / "examples" / f"{stem}.py").read_text()
    return run(
        gradgen.generate(source, f"{stem}.py", pairs=True, value_and_grad=True), f"{stem}_pairs.py"
    )


# --- value and gradients in one pass ----------------------------------------------------------


@functools.cache
def with_value_and_grad(stem: str) -> dict[str, Any]:
    """The zoo module ``stem`` generated with ``value_and_grad=True`` (the committed file,
    generated with the defaults, has no F_value_and_grad), run."""
    source = (Path(__file__).resolve().parent.parent / "examples" / f"{stem}.py").read_text()
    return run(gradgen.generate(source, f"{stem}.py", value_and_grad=True), f"{stem}_vg.py")


@pytest.mark.parametrize(("module", "name"), FUNCTIONS, ids=FUNCTION_IDS)
def test_value_and_grad_equals_the_separate_calls(module: str, name: str) -> None:
    args = draw(name, "value")
    kept = {k: numpy.copy(v) for k, v in args.items()}
    backward_module = with_value_and_grad(module)
    expected_value = forward_of(module, name)(**args)
    upstream = upstream_for(expected_value, name)
    value, grads = backward_module[f"{name}_value_and_grad"](*with_upstream(args, upstream))
    numpy.testing.assert_allclose(value, expected_value, rtol=1e-12)
    assert_same(grads, backward_module[f"{name}_backward"](*with_upstream(args, upstream)))
    for key, before in kept.items():
        numpy.testing.assert_array_equal(args[key], before, err_msg=f"{key} modified")


@pytest.mark.parametrize(("module", "name"), FUNCTIONS, ids=FUNCTION_IDS)
def test_pair_agrees_with_the_recomputing_backward(module: str, name: str) -> None:
    args = draw(name, "pair")
    pair = paired(module)
    value, cache = pair[f"{name}_forward"](**args)
    numpy.testing.assert_allclose(value, forward_of(module, name)(**args), rtol=1e-12)
    upstream = upstream_for(value, name)
    recomputed = modules(module, "annotated")[1][f"{name}_backward"]
    from_cache = pair[f"{name}_backward"](1.0 if upstream is None else upstream, cache)
    assert_same(from_cache, recomputed(*with_upstream(args, upstream)))
    # and the pair's value_and_grad is the two calls
    value_2, grads = pair[f"{name}_value_and_grad"](*with_upstream(args, upstream))
    numpy.testing.assert_allclose(value_2, value, rtol=1e-12)
    assert_same(grads, from_cache)


def function_source(text: str, name: str) -> ast.FunctionDef:
    (node,) = [n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)]
    return node if node.name == name else pytest.fail(name)


def functions_of(text: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)}


def assigned(function: ast.FunctionDef) -> list[str]:
    return [
        target.id
        for statement in function.body
        if isinstance(statement, (ast.Assign, ast.AugAssign))
        for target in (
            statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        )
        if isinstance(target, ast.Name)
    ]


def test_value_and_grad_computes_each_forward_value_once() -> None:
    generated = functions_of(gradgen.generate(STAGED, "staged.py", value_and_grad=True))
    names = assigned(generated["f_value_and_grad"])
    forward = ["sigy", "num", "sigx", "xpy", "xpysqr", "den", "invden", "f"]
    assert names[: len(forward)] == forward
    assert not set(forward) & set(names[len(forward) :]), names  # nothing computed twice
    # the backward alone does not compute the result it is not asked for
    assert "f" not in assigned(generated["f_backward"])


def test_value_and_grad_of_the_seed_example() -> None:
    namespace = run(gradgen.generate(STAGED, "staged.py", value_and_grad=True), "staged_gen.py")
    forward = run(STAGED, "staged.py")["f"]
    value, (dx, dy) = namespace["f_value_and_grad"](3.0, -4.0)
    assert value == forward(3.0, -4.0)
    assert (dx, dy) == namespace["f_backward"](3.0, -4.0)
    value, grads = namespace["f_value_and_grad"](3.0, -4.0, 2.0)
    assert grads == namespace["f_backward"](3.0, -4.0, 2.0)


# --- the cache holds exactly what the backward reads ------------------------------------------


def test_the_cache_of_the_seed_example_is_what_its_backward_reads() -> None:
    """The seed's hand-written backward reads sigy, num, sigx, xpy, den and invden: not x,
    y, xpysqr or f."""
    text = gradgen.generate(STAGED, "staged.py", pairs=True)
    namespace = run(text, "staged_pairs.py")
    value, cache = namespace["f_forward"](3.0, -4.0)
    sigy = 1.0 / (1 + math.exp(4.0))
    sigx = 1.0 / (1 + math.exp(-3.0))
    num, xpy = 3.0 + sigy, -1.0
    den = sigx + xpy**2
    assert cache == (sigy, num, sigx, xpy, den, 1.0 / den)
    assert value == num / den
    assert '"""f and the cache its backward reads: (sigy, num, sigx, xpy, den, invden)."""' in text
    backward = functions_of(text)["f_backward"]
    assert [a.arg for a in backward.args.args] == ["df", "cache"]
    assert namespace["f_backward"](1.0, cache) == pytest.approx(
        run(gradgen.generate(STAGED, "staged.py"), "staged_gen.py")["f_backward"](3.0, -4.0),
        rel=1e-15,
    )


def test_dead_and_result_only_values_are_not_cached() -> None:
    source = textwrap.dedent(
        """
        import numpy as np


        def f(x, w):
            unused = x * 3.0
            h = x @ w
            a = np.tanh(h)
            total = np.sum(a)
            return total * 2.0
        """
    )
    text = gradgen.generate(source, "f.py", pairs=True)
    forward = functions_of(text)["f_forward"]
    assert "unused" not in assigned(forward)
    # tanh's adjoint reads its output a; the matmul's read x and w; h and total are not read
    assert forward.body[-1].value is not None
    cache = forward.body[-1].value.elts[1]  # type: ignore[attr-defined]
    assert [e.id for e in cache.elts] == ["x", "w", "a"]
    namespace = run(text, "f_pairs.py")
    x, w = numpy.ones((2, 3)) * 0.1, numpy.ones((3, 4)) * 0.2
    value, cached = namespace["f_forward"](x, w)
    assert value == pytest.approx(2.0 * numpy.sum(numpy.tanh(x @ w)))
    assert len(cached) == 3 and cached[0] is x and cached[1] is w


def test_one_value_cached_is_a_one_tuple() -> None:
    text = gradgen.generate("import math\n\n\ndef f(x):\n    return math.exp(x)\n", pairs=True)
    namespace = run(text, "f_pairs.py")
    value, cache = namespace["f_forward"](0.5)
    assert cache == (value,)
    assert namespace["f_backward"](2.0, cache) == pytest.approx(2.0 * math.exp(0.5))
    assert "(out,) = cache" in text


# --- the three ways in ------------------------------------------------------------------------


def test_cli_pairs_flag_writes_the_pair_and_says_so_in_the_header(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text(STAGED)
    out = tmp_path / "f_backward.py"
    assert main([str(tmp_path / "f.py"), "-o", str(out), "--pairs", "-q"]) == 0
    text = out.read_text()
    assert "def f_forward(x, y):" in text and "def f_backward(df, cache):" in text
    command = next(line for line in text.splitlines() if line.startswith("# Command:"))
    assert command.endswith("--pairs")
    # --check with the same options is clean, without --pairs it is stale
    assert main([str(tmp_path / "f.py"), "-o", str(out), "--pairs", "--check", "-q"]) == 0
    assert main([str(tmp_path / "f.py"), "-o", str(out), "--check", "-q"]) == 1


def test_config_pairs_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(STAGED)
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.gradgen.files]]\nforward = "models"\nbackward = "generated"\npairs = true\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["-q"]) == 0
    text = (tmp_path / "generated" / "net.py").read_text()
    assert "def f_forward(x, y):" in text
    assert "# Command: gradgen models/net.py -o generated/net.py --pairs" in text
    assert main(["--check", "-q"]) == 0


def test_config_pairs_must_be_a_boolean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.gradgen.files]]\nforward = "models"\nbackward = "generated"\npairs = "yes"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["-q"]) == 2


DECORATED = """
import numpy as np
import gradgen


@gradgen.differentiable(pairs=True)
def affine(x, w, b):
    return x @ w + b


@gradgen.differentiable
def loss(x, w):
    h = np.tanh(x @ w)
    return np.sum(h * h)
"""


def load_module(tmp_path: Path, text: str, name: str = "layers_mod") -> Any:
    import importlib.util
    import sys

    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_decorator_attaches_value_and_grad_and_pairs(tmp_path: Path) -> None:
    module = load_module(tmp_path, DECORATED)
    rng = numpy.random.default_rng(0)
    x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=2)
    out, cache = module.affine.forward(x, w, b)
    numpy.testing.assert_allclose(out, x @ w + b)
    dout = rng.normal(size=(3, 2))
    dx, dw, db = module.affine.backward(dout, cache)
    numpy.testing.assert_allclose(dx, dout @ w.T)
    numpy.testing.assert_allclose(dw, x.T @ dout)
    numpy.testing.assert_allclose(db, dout.sum(axis=0))
    value, (dx2, dw2) = module.loss.value_and_grad(x, w)
    assert value == pytest.approx(module.loss(x, w))
    assert_same((dx2, dw2), module.loss.backward(x, w))
    assert not hasattr(module.loss, "forward")


def test_decorator_with_pairs_ignores_a_committed_file_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.gradgen.files]]\nforward = "models"\nbackward = "generated"\n'
    )
    source = DECORATED.replace("@gradgen.differentiable\n", "")
    (tmp_path / "models" / "layers_pairs_mod.py").write_text(textwrap.dedent(source))
    monkeypatch.chdir(tmp_path)
    assert main(["-q"]) == 0  # written without --pairs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = load_module(tmp_path / "models", source, "layers_pairs_mod")
    messages = [
        str(w.message) for w in caught if issubclass(w.category, gradgen.StaleBackwardWarning)
    ]
    assert len(messages) == 1 and "--pairs" in messages[0], messages
    _out, cache = module.affine.forward(numpy.ones((1, 2)), numpy.ones((2, 3)), numpy.zeros(3))
    assert len(module.affine.backward(numpy.ones((1, 3)), cache)) == 3


# --- the training example: two layers chained by hand --------------------------------------


def load_training_example() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "train_two_layer.py"
    spec = importlib.util.spec_from_file_location("_gradgen_train_two_layer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skip-file: no committed file is looked for
        spec.loader.exec_module(module)
    return module


def test_training_example_learns_the_spirals() -> None:
    example = load_training_example()
    losses, accuracy = example.train(steps=400)
    assert losses[-1] < 0.25 * losses[0], losses[::50]
    assert accuracy > 0.9


def test_layers_chained_by_hand_give_the_network_gradient() -> None:
    """The pairs chained as in the example give the gradient of the whole network's loss."""
    example = load_training_example()
    rng = numpy.random.default_rng(3)
    X, y = rng.normal(size=(5, 2)), numpy.array([0, 2, 1, 1, 0])
    W1, b1 = rng.normal(size=(2, 4)), rng.normal(size=4)
    W2, b2 = rng.normal(size=(4, 3)), rng.normal(size=3)

    def network_loss(W1: Any) -> float:
        h = numpy.maximum(0, X @ W1 + b1) @ W2 + b2
        return float(example.softmax_loss(h, y))

    h, c1 = example.affine.forward(X, W1, b1)
    a, c2 = example.relu.forward(h)
    scores, c3 = example.affine.forward(a, W2, b2)
    _, c4 = example.softmax_loss.forward(scores, y)
    dscores, dy = example.softmax_loss.backward(1.0, c4)
    assert dy is None
    da, _, _ = example.affine.backward(dscores, c3)
    _, dW1, _ = example.affine.backward(example.relu.backward(da, c2), c1)
    expected = numpy.zeros_like(W1)
    for index in numpy.ndindex(W1.shape):
        plus, minus = W1.copy(), W1.copy()
        plus[index] += 1e-6
        minus[index] -= 1e-6
        expected[index] = (network_loss(plus) - network_loss(minus)) / 2e-6
    numpy.testing.assert_allclose(dW1, expected, rtol=1e-5, atol=1e-8)


def test_a_skip_file_script_is_not_a_forward_file(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.py").write_text(STAGED)
    (tmp_path / "src" / "train.py").write_text(
        "# gradgen: skip-file\nfor i in range(3):\n    pass\n"
    )
    assert main([str(tmp_path / "src"), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f.py"]
