"""The layer zoo: CS231n-style numpy layers in examples/ and their generated backward files.

Every top-level function of the zoo's example modules (found by parsing them, so a new
function cannot go untested) is called through its generated backward in ``generated/``,
and through the backward gradgen writes for the same module with every annotation removed
(shapes then unknown: ``_unbroadcast`` and the matmul helpers at run time), with random
float64 arguments of small random shapes, and each gradient is checked against
central finite differences of ``sum(forward(...) * upstream)`` (a random upstream gradient
for array results, the default for scalar losses). The backward must not modify its
arguments or the upstream gradient, must give None for labels (used only as indices) and
must hand back gradients of the operands' shapes that the caller owns.
"""

from __future__ import annotations

import ast
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy
import pytest

import gradgen
from test_rules import numeric_gradient

ROOT = Path(__file__).resolve().parent.parent
ZOO = ("layers_basic", "losses", "normalization", "recurrent", "attention")

RTOL = 1e-5
ATOL = 1e-8


# --- what each parameter is --------------------------------------------------------------------


@dataclass(frozen=True)
class Array:
    """A float array of random entries; ``dims`` name the axes (sizes drawn per test)."""

    dims: tuple[str, ...]
    positive: bool = False  # entries in [0.5, 1.5]: a scale, a variance


@dataclass(frozen=True)
class Labels:
    """Integer class labels, one per row, in ``range(classes)``: an index, no gradient."""

    rows: str
    classes: str


@dataclass(frozen=True)
class Mask:
    """A 0/1 float array (a dropout mask): 1 where a unit is kept."""

    dims: tuple[str, ...]


@dataclass(frozen=True)
class Scalar:
    """A Python float in [low, high]."""

    low: float
    high: float


Spec = Array | Labels | Mask | Scalar

GRU_WEIGHTS = {
    f"{kind}{gate}": spec
    for gate in "zrn"
    for kind, spec in (
        ("W", Array(("D", "H"))),
        ("U", Array(("H", "H"))),
        ("b", Array(("H",))),
    )
}

SPECS: dict[str, dict[str, Spec]] = {
    # layers_basic
    "affine": {"x": Array(("N", "D")), "w": Array(("D", "M")), "b": Array(("M",))},
    "relu": {"x": Array(("N", "D"))},
    "sigmoid": {"x": Array(("N", "D"))},
    "tanh": {"x": Array(("N", "D"))},
    "affine_relu": {"x": Array(("N", "D")), "w": Array(("D", "M")), "b": Array(("M",))},
    # losses
    "softmax_loss": {"x": Array(("N", "C")), "y": Labels("N", "C")},
    "svm_loss": {"x": Array(("N", "C")), "y": Labels("N", "C")},
    "two_layer_net_loss": {
        "X": Array(("N", "D")),
        "y": Labels("N", "C"),
        "W1": Array(("D", "H")),
        "b1": Array(("H",)),
        "W2": Array(("H", "C")),
        "b2": Array(("C",)),
        "reg": Scalar(0.1, 1.0),
    },
    # normalization
    "batchnorm_train": {
        "x": Array(("N", "D")),
        "gamma": Array(("D",), positive=True),
        "beta": Array(("D",)),
    },
    "layernorm": {
        "x": Array(("N", "D")),
        "gamma": Array(("D",), positive=True),
        "beta": Array(("D",)),
    },
    "dropout": {"x": Array(("N", "D")), "mask": Mask(("N", "D")), "p": Scalar(0.3, 0.8)},
    # recurrent
    "rnn_step": {
        "x": Array(("N", "D")),
        "prev_h": Array(("N", "H")),
        "Wx": Array(("D", "H")),
        "Wh": Array(("H", "H")),
        "b": Array(("H",)),
    },
    "lstm_step": {
        "x": Array(("N", "D")),
        "prev_h": Array(("N", "H")),
        "prev_c": Array(("N", "H")),
        "Wx": Array(("D", "G")),
        "Wh": Array(("H", "G")),
        "b": Array(("G",)),
    },
    "gru_step": {"x": Array(("N", "D")), "prev_h": Array(("N", "H")), **GRU_WEIGHTS},
    # attention
    "attention": {"q": Array(("T", "D")), "k": Array(("T", "D")), "v": Array(("T", "D"))},
    "attention_loss": {
        "q": Array(("T", "D")),
        "k": Array(("T", "D")),
        "v": Array(("T", "D")),
        "target": Array(("T", "D")),
    },
}


# --- loading and drawing -----------------------------------------------------------------------


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_gradgen_{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def discover() -> list[tuple[str, str]]:
    """(module, function) for every top-level function of the zoo's example modules."""
    found = []
    for stem in ZOO:
        tree = ast.parse((ROOT / "examples" / f"{stem}.py").read_text(encoding="utf-8"))
        found += [(stem, node.name) for node in tree.body if isinstance(node, ast.FunctionDef)]
    return found


FUNCTIONS = discover()
FUNCTION_IDS = [name for _, name in FUNCTIONS]
VARIANTS = ["annotated", "unannotated"]


def unannotated(source: str) -> str:
    """``source`` with every parameter annotation removed."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            node.annotation = None
    return ast.unparse(tree) + "\n"


def run(text: str, filename: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": filename}
    exec(compile(text, filename, "exec"), namespace)
    return namespace


def modules(stem: str, variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The forward and backward namespaces of ``examples/<stem>.py``: the committed pair, or
    the forward without annotations and the backward gradgen writes for it now."""
    if (stem, variant) not in _LOADED:
        if variant == "annotated":
            forward = vars(load(ROOT / "examples" / f"{stem}.py"))
            backward = vars(load(ROOT / "generated" / f"{stem}.py"))
        else:
            source = unannotated((ROOT / "examples" / f"{stem}.py").read_text(encoding="utf-8"))
            forward = run(source, f"{stem}_unannotated.py")
            backward = run(gradgen.generate(source, f"{stem}_unannotated.py"), f"{stem}_gen.py")
        _LOADED[stem, variant] = (forward, backward)
    return _LOADED[stem, variant]


_LOADED: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}


def rng(seed: str) -> numpy.random.Generator:
    return numpy.random.default_rng(zlib.crc32(seed.encode()))


def draw(name: str, seed: str = "") -> dict[str, Any]:
    """Random float64 arguments of ``name``, of small random shapes, deterministic."""
    generator = rng(f"{name} {seed}")
    sizes: dict[str, int] = {d: int(generator.integers(2, 5)) for d in "NDMCHT"}
    sizes["G"] = 4 * sizes["H"]  # the LSTM's four gates side by side
    args: dict[str, Any] = {}
    for param, spec in SPECS[name].items():
        if isinstance(spec, Array):
            shape = tuple(sizes[d] for d in spec.dims)
            if spec.positive:
                args[param] = generator.uniform(0.5, 1.5, size=shape)
            else:
                args[param] = generator.normal(size=shape)
        elif isinstance(spec, Labels):
            args[param] = generator.integers(0, sizes[spec.classes], size=sizes[spec.rows])
        elif isinstance(spec, Mask):
            shape = tuple(sizes[d] for d in spec.dims)
            args[param] = (generator.random(shape) < 0.6).astype(numpy.float64)
        else:
            args[param] = float(generator.uniform(spec.low, spec.high))
    return args


def forward_of(module: str, name: str, variant: str = "annotated") -> Any:
    return modules(module, variant)[0][name]


def backward_of(module: str, name: str, variant: str = "annotated") -> Any:
    return modules(module, variant)[1][f"{name}_backward"]


def as_tuple(gradients: Any, count: int) -> tuple[Any, ...]:
    """One gradient per parameter: a one-parameter backward returns the bare gradient."""
    if count == 1:
        assert not isinstance(gradients, tuple), f"expected a bare gradient, got {gradients!r}"
        return (gradients,)
    assert isinstance(gradients, tuple) and len(gradients) == count, gradients
    return gradients


# --- the tests -----------------------------------------------------------------------------------


def test_every_zoo_function_has_a_spec() -> None:
    names = [name for _, name in FUNCTIONS]
    assert sorted(names) == sorted(SPECS), "add the new function's parameters to SPECS"
    for module, name in FUNCTIONS:
        params = list(forward_of(module, name).__code__.co_varnames)
        assert params[: len(SPECS[name])] == list(SPECS[name]), name


@pytest.mark.parametrize("seed", ["a", "b"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("module", "name"), FUNCTIONS, ids=FUNCTION_IDS)
def test_gradients_match_finite_differences(
    module: str, name: str, variant: str, seed: str
) -> None:
    forward, backward = forward_of(module, name, variant), backward_of(module, name, variant)
    specs = SPECS[name]
    args = draw(name, seed)
    before = {n: numpy.copy(v) for n, v in args.items()}
    out = forward(**args)
    scalar = numpy.ndim(out) == 0
    if scalar:
        upstream = None
        gradients = as_tuple(backward(*args.values()), len(args))
        scaled = as_tuple(backward(*args.values(), 2.5), len(args))  # an explicit upstream
        for param, grad, grad_scaled in zip(args, gradients, scaled, strict=True):
            if not isinstance(specs[param], Labels):
                numpy.testing.assert_allclose(grad_scaled, 2.5 * grad, rtol=1e-12, atol=1e-15)
    else:
        upstream = rng(f"upstream {name} {seed}").normal(size=numpy.shape(out))
        kept = upstream.copy()
        gradients = as_tuple(backward(*args.values(), upstream), len(args))
        numpy.testing.assert_array_equal(upstream, kept, err_msg="upstream modified")
    for param, value in args.items():
        numpy.testing.assert_array_equal(value, before[param], err_msg=f"{param} modified")

    def loss(**values: Any) -> float:
        result = forward(**values)
        return float(numpy.sum(result if upstream is None else result * upstream))

    for (param, value), grad in zip(args.items(), gradients, strict=True):
        if isinstance(specs[param], Labels):
            assert grad is None, f"d{param} = {grad!r}: labels have no gradient"
            continue
        assert numpy.shape(grad) == numpy.shape(value), f"d{param}: {numpy.shape(grad)}"
        numpy.testing.assert_allclose(
            grad,
            numeric_gradient(loss, args, param),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"d{param} of {name}",
        )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("module", "name"), FUNCTIONS, ids=FUNCTION_IDS)
def test_gradients_are_the_callers_own(module: str, name: str, variant: str) -> None:
    """No gradient shares memory with an argument, the upstream gradient or another
    gradient, so the caller may update it in place."""
    args = draw(name, "own")
    out = forward_of(module, name, variant)(**args)
    call = list(args.values())
    if numpy.ndim(out) != 0:
        call.append(rng(f"own {name}").normal(size=numpy.shape(out)))
    gradients = as_tuple(backward_of(module, name, variant)(*call), len(args))
    named = dict(zip([*args, "the upstream gradient"], call, strict=False))
    arrays = {
        f"d{n}": g for n, g in zip(args, gradients, strict=True) if isinstance(g, numpy.ndarray)
    }
    for grad_name, grad in arrays.items():
        assert grad.flags.writeable, f"{grad_name} is read-only"
        for other, value in named.items():
            if isinstance(value, numpy.ndarray):
                assert not numpy.shares_memory(grad, value), f"{grad_name} shares {other}"
        for other, value in arrays.items():
            if other != grad_name:
                assert not numpy.shares_memory(grad, value), f"{grad_name} shares {other}"


def test_labels_at_repeated_classes() -> None:
    """Every example of the minibatch has the same label: the scatter must add up."""
    args = draw("softmax_loss", "repeated")
    args["y"] = numpy.zeros_like(args["y"])
    dx, dy = backward_of("losses", "softmax_loss")(**args)
    assert dy is None
    x, y = args["x"], args["y"]
    probs = numpy.exp(x - x.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[numpy.arange(len(y)), y] -= 1.0
    numpy.testing.assert_allclose(dx, probs / len(y), rtol=1e-12, atol=1e-15)


def test_batchnorm_matches_the_compact_formula() -> None:
    """The staged backward equals the one-line batchnorm gradient of the derivation."""
    args = draw("batchnorm_train", "compact")
    x, gamma = args["x"], args["gamma"]
    dout = rng("batchnorm dout").normal(size=x.shape)
    dx, dgamma, dbeta = backward_of("normalization", "batchnorm_train")(**args, dout=dout)
    n = x.shape[0]
    xhat = (x - x.mean(axis=0)) / numpy.sqrt(x.var(axis=0) + 1e-5)
    dxhat = dout * gamma
    expected = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (
        n * numpy.sqrt(x.var(axis=0) + 1e-5)
    )
    numpy.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(dgamma, (dout * xhat).sum(axis=0), rtol=1e-12)
    numpy.testing.assert_allclose(dbeta, dout.sum(axis=0), rtol=1e-12)


# --- float32 in, float32 out -------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("module", "name"), FUNCTIONS, ids=FUNCTION_IDS)
def test_float32_inputs_give_float32_gradients(module: str, name: str, variant: str) -> None:
    """float32 arguments (labels stay integers, Python floats stay floats) give float32
    gradients, equal to the float64 ones to float32 precision."""
    wide = draw(name, "float32")
    narrow = {
        n: v.astype(numpy.float32) if isinstance(v, numpy.ndarray) and v.dtype.kind == "f" else v
        for n, v in wide.items()
    }
    out = forward_of(module, name, variant)(**narrow)
    assert numpy.asarray(out).dtype == numpy.float32, "the forward itself widens"
    backward = backward_of(module, name, variant)
    if numpy.ndim(out) == 0:
        gradients = as_tuple(backward(*narrow.values()), len(narrow))
        references = as_tuple(backward(*wide.values()), len(wide))
    else:
        upstream = rng(f"float32 {name}").normal(size=numpy.shape(out))
        gradients = as_tuple(
            backward(*narrow.values(), upstream.astype(numpy.float32)), len(narrow)
        )
        references = as_tuple(backward(*wide.values(), upstream), len(wide))
    for (param, value), grad, reference in zip(narrow.items(), gradients, references, strict=True):
        spec = SPECS[name][param]
        if isinstance(spec, Labels):
            assert grad is None
        elif isinstance(spec, Scalar):  # a Python float parameter: its gradient is a scalar
            assert numpy.ndim(grad) == 0
        else:
            assert numpy.asarray(grad).dtype == numpy.float32, f"d{param} is {grad.dtype}"
            assert numpy.shape(grad) == numpy.shape(value)
            numpy.testing.assert_allclose(grad, reference, rtol=1e-3, atol=1e-4)
