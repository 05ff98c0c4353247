"""examples/ and generated/: the committed backward files are current and right.

Three kinds of example are checked against central differences in float64. Scalar ones
(every parameter a number) generically, below. The layer zoo (one function per layer) in
``tests/test_layers.py``. The programs (functions calling one another, several results,
user rules, constants: ``PROGRAMS``) here, through every route a user takes: the committed
file the command line wrote, ``@gradgen.differentiable`` (running the committed file, and
generating in memory where no file is mapped), ``gradgen.testing.assert_gradients_match`` on
the plain function, and ``gradgen check``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import math
import random
import re
import shutil
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy
import pytest

import gradgen
from gradgen.cli import main
from gradgen.config import is_skipped, load_config
from gradgen.testing import assert_gradients_match
from review_project import functions
from test_layers import ZOO, Array, Labels, Scalar
from test_rules import numeric_gradient

ROOT = Path(__file__).resolve().parent.parent
# Forward files: a script marked "# gradgen: skip-file" (the training example) is not one.
EXAMPLES = [p for p in sorted((ROOT / "examples").glob("*.py")) if not is_skipped(p)]

RTOL = 1e-5
ATOL = 1e-8


@dataclass(frozen=True)
class Counts:
    """Observed counts (0, 1, 2, ...) as floats, one per row: data, never differentiated."""

    rows: str


@dataclass(frozen=True)
class Choice:
    """A flag or a string an ``if`` tests: drawn as its first value (the default); the other
    values are checked by ``test_every_side_of_the_branch_examples``. No gradient."""

    values: tuple[bool | str, ...]


Spec = Array | Labels | Scalar | Counts | Choice

AFFINE: dict[str, Spec] = {"x": Array(("N", "D")), "w": Array(("D", "M")), "b": Array(("M",))}
LSTM_WEIGHTS: dict[str, Spec] = {
    "Wx": Array(("D", "4H")),
    "Wh": Array(("H", "4H")),
    "b": Array(("4H",)),
}

# The programs: each function's parameters (in order), by example module.
PROGRAMS: dict[str, dict[str, dict[str, Spec]]] = {
    "layer_utils": {
        "affine": AFFINE,
        "relu": {"x": Array(("N", "D"))},
        "batchnorm": {
            "x": Array(("N", "D")),
            "gamma": Array(("D",), positive=True),
            "beta": Array(("D",)),
        },
        "affine_relu": AFFINE,
        "affine_bn_relu": {
            **AFFINE,
            "gamma": Array(("M",), positive=True),
            "beta": Array(("M",)),
        },
    },
    "two_layer_composed": {
        "affine": AFFINE,
        "relu": {"x": Array(("N", "M"))},
        "softmax_loss": {"scores": Array(("N", "C")), "y": Labels("N", "C")},
        "two_layer_loss": {
            "X": Array(("N", "D")),
            "y": Labels("N", "C"),
            "W1": Array(("D", "H")),
            "b1": Array(("H",)),
            "W2": Array(("H", "C")),
            "b2": Array(("C",)),
        },
    },
    "lstm_step": {
        "sigmoid": {"x": Array(("N", "H"))},
        "lstm_step": {
            "x": Array(("N", "D")),
            "prev_h": Array(("N", "H")),
            "prev_c": Array(("N", "H")),
            **LSTM_WEIGHTS,
        },
        "lstm_two_steps": {
            "x1": Array(("N", "D")),
            "x2": Array(("N", "D")),
            "h0": Array(("N", "H")),
            "c0": Array(("N", "H")),
            **LSTM_WEIGHTS,
            "target": Array(("N", "H")),
        },
    },
    "sequences": {
        "rnn_step": {
            "x": Array(("N", "D")),
            "prev_h": Array(("N", "H")),
            "Wx": Array(("D", "H")),
            "Wh": Array(("H", "H")),
            "b": Array(("H",)),
        },
        "rnn": {
            "x": Array(("N", "T", "D")),
            "h0": Array(("N", "H")),
            "Wx": Array(("D", "H")),
            "Wh": Array(("H", "H")),
            "b": Array(("H",)),
        },
        "rnn_filled": {
            "x": Array(("N", "T", "D")),
            "h0": Array(("N", "H")),
            "Wx": Array(("D", "H")),
            "Wh": Array(("H", "H")),
            "b": Array(("H",)),
        },
        "lstm_step": {
            "x": Array(("N", "D")),
            "prev_h": Array(("N", "H")),
            "prev_c": Array(("N", "H")),
            **LSTM_WEIGHTS,
        },
        "lstm": {"x": Array(("N", "T", "D")), "h0": Array(("N", "H")), **LSTM_WEIGHTS},
    },
    "branches": {
        "dense": {
            "x": Array(("N", "D")),
            "W": Array(("D", "H")),
            "b": Array(("H",)),
            "use_bias": Choice((True, False)),
            "activation": Choice(("tanh", "relu", "linear")),
        },
        "huber": {
            "prediction": Scalar(-3.0, 3.0),
            "target": Scalar(-3.0, 3.0),
            "delta": Scalar(0.5, 1.5),
        },
    },
    "black_scholes": {
        "norm_cdf": {"x": Scalar(-2.0, 2.0)},
        "call_price": {
            "S": Scalar(80.0, 120.0),
            "K": Scalar(90.0, 110.0),
            "T": Scalar(0.25, 2.0),
            "r": Scalar(0.0, 0.08),
            "sigma": Scalar(0.1, 0.5),
        },
    },
    "three_layer_net": {
        "three_layer_loss": {
            "X": Array(("N", "D")),
            "y": Labels("N", "C"),
            "W1": Array(("D", "H")),
            "b1": Array(("H",)),
            "W2": Array(("H", "M")),
            "b2": Array(("M",)),
            "W3": Array(("M", "C")),
            "b3": Array(("C",)),
        },
    },
    "poisson_regression": {
        "poisson_nll": {"beta": Array(("D",)), "X": Array(("N", "D")), "y": Counts("N")},
    },
    "fused_softmax": {
        "softmax_cross_entropy": {"scores": Array(("N", "C")), "y": Labels("N", "C")},
        "linear_classifier_loss": {
            "W": Array(("D", "C")),
            "X": Array(("N", "D")),
            "y": Labels("N", "C"),
            "reg": Scalar(0.1, 1.0),
        },
    },
    "convolution": {
        "conv_forward": {
            "x": Array(("N", "C", "H", "W")),
            "w": Array(("F", "C", "3", "3")),
            "b": Array(("F",)),
        },
        "max_pool_forward": {"x": Array(("N", "C", "H", "W"))},
        "conv_relu_pool": {
            "x": Array(("N", "C", "H", "W")),
            "w": Array(("F", "C", "3", "3")),
            "b": Array(("F",)),
        },
    },
    "gaussian_process": {
        name: {
            "log_length": Scalar(-0.5, 0.5),
            "log_signal": Scalar(-0.5, 0.5),
            "log_noise": Scalar(-1.0, 0.0),
            "X": Array(("N", "D")),
            "y": Array(("N",)),
        }
        for name in ("gp_nll", "gp_nll_slogdet")
    },
    "distributions": {
        "call_price": {
            "S": Scalar(80.0, 120.0),
            "K": Scalar(90.0, 110.0),
            "T": Scalar(0.25, 2.0),
            "r": Scalar(0.0, 0.08),
            "sigma": Scalar(0.1, 0.5),
        },
        "negative_binomial_nll": {
            "log_mu": Array(("N",)),
            "log_r": Scalar(-0.5, 1.0),
            "y": Array(("N",), positive=True),
        },
        "gaussian_nll": {
            "x": Array(("N",)),
            "mu": Scalar(-1.0, 1.0),
            "log_sigma": Scalar(-0.5, 0.5),
        },
        "mixture_nll": {"x": Array(("N",)), "means": Array(("K",)), "log_weights": Array(("K",))},
    },
    "similarity": {
        "cosine_similarity": {"a": Array(("D",)), "b": Array(("D",))},
        "pairwise_cosine": {"A": Array(("N", "D")), "B": Array(("M", "D"))},
        "rotate": {"points": Array(("N", "2")), "theta": Scalar(-3.0, 3.0)},
    },
}

# Examples that draw random numbers: checked with the draws fixed (below).
DRAWING = {"vae_elbo"}
# The rest are scalar: every parameter a number, the forward defined on [-1.5, 1.5].
# Parameters that are dicts or lists of arrays: tests/test_structured_params.py checks them.
STRUCTURED = {"two_layer_params"}
SCALAR_EXAMPLES = [
    p
    for p in EXAMPLES
    if p.stem not in ZOO
    and p.stem not in PROGRAMS
    and p.stem not in DRAWING
    and p.stem not in STRUCTURED
]

CONFIG = load_config(ROOT / "pyproject.toml")


def load(path: Path) -> ModuleType:
    """Run ``path`` as a module, its folder first on ``sys.path`` as for a script (an
    example may import another: ``from layer_utils import affine``)."""
    spec = importlib.util.spec_from_file_location(f"_gradgen_{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


# --- the committed files are current -----------------------------------------------------------


def test_generated_folder_is_current(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What CI runs: a bare ``gradgen --check`` reads ``[tool.gradgen]``, so each file is
    generated as its mapping says (poisson_regression.py with its own ``wrt``)."""
    monkeypatch.chdir(ROOT)
    status = main(["--check"])
    diff = capsys.readouterr().out
    assert status == 0, f"generated/ is stale; run: gradgen\n{diff}"


def test_every_example_has_its_generated_file() -> None:
    generated = {p.name for p in (ROOT / "generated").glob("*.py")}
    assert generated == {p.name for p in EXAMPLES}


# --- scalar examples -----------------------------------------------------------------------------


def forward_backwards(forward: ModuleType, backward: ModuleType) -> list[str]:
    """``F_backward`` of each function ``F`` of the forward module (a callee's backwards from
    a cache, ``F_cached_backward``, are checked through their callers'; a user rule's
    ``F_backward`` is the one the user wrote, copied)."""
    return [
        f"{name}_backward"
        for name, value in vars(forward).items()
        if inspect.isfunction(value) and callable(getattr(backward, f"{name}_backward", None))
    ]


@pytest.mark.parametrize("path", SCALAR_EXAMPLES, ids=lambda p: p.stem)
def test_example_gradients_match_finite_differences(path: Path) -> None:
    forward = load(path)
    backward = load(ROOT / "generated" / path.name)
    rng = random.Random(path.stem)
    upstreams = random.Random(f"upstream {path.stem}")
    names = forward_backwards(forward, backward)
    assert names
    for name in names:
        f = getattr(forward, name.removesuffix("_backward"))
        arity = f.__code__.co_argcount
        # The upstream gradient, by its name (keyword-only after a parameter with a default).
        upstream_name = list(inspect.signature(getattr(backward, name)).parameters)[arity]
        for _ in range(5):
            args = [rng.uniform(-1.5, 1.5) for _ in range(arity)]
            upstream = upstreams.uniform(0.5, 1.5)
            grads = getattr(backward, name)(*args, **{upstream_name: upstream})
            grads = grads if isinstance(grads, tuple) else (grads,)
            for i in range(arity):
                plus, minus = list(args), list(args)
                plus[i] += 1e-6
                minus[i] -= 1e-6
                numeric = upstream * (f(*plus) - f(*minus)) / 2e-6
                assert math.isclose(grads[i], numeric, rel_tol=1e-5, abs_tol=1e-7)


def test_seed_numbers_add_mul() -> None:
    backward = load(ROOT / "generated" / "add_mul.py")
    assert backward.f_backward(-2.0, 5.0, -4.0) == (-4.0, -4.0, 3.0)


def test_seed_numbers_gates() -> None:
    backward = load(ROOT / "generated" / "gates.py")
    assert backward.circuit_backward(3.0, -4.0, 2.0, -1.0) == (-8.0, 6.0, 2.0, 0.0)


# --- programs: what each function is, and its arguments ----------------------------------------


def read_module(stem: str) -> tuple[list[str], dict[str, str], set[str]]:
    """The forward functions of ``examples/<stem>.py`` (a user rule's forward included, the
    backward the user wrote for it not), its user rules (forward -> backward), and the
    functions that call another function of the module that is not a user rule."""
    tree = ast.parse((ROOT / "examples" / f"{stem}.py").read_text(encoding="utf-8"))
    defined = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    rules = {
        decorator.args[0].id: node.name
        for node in defined
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call)
        and ast.unparse(decorator.func).endswith("backward_of")
        and isinstance(decorator.args[0], ast.Name)
    }
    forwards = [node.name for node in defined if node.name not in rules.values()]
    callers = {
        node.name
        for node in defined
        for call in ast.walk(node)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id in forwards
        and call.func.id not in rules
    }
    return forwards, rules, callers


MODULES = {stem: read_module(stem) for stem in PROGRAMS}
FUNCTIONS = [(stem, name) for stem, (forwards, _, _) in MODULES.items() for name in forwards]
FUNCTION_IDS = [f"{stem}.{name}" for stem, name in FUNCTIONS]


def mapped_wrt(stem: str, name: str) -> tuple[str, ...] | None:
    """The parameters ``[tool.gradgen]`` generates ``name``'s gradients for (None: all)."""
    assert CONFIG is not None
    path = (ROOT / "examples" / f"{stem}.py").resolve()
    for mapping in CONFIG.mappings:
        if mapping.backward_for(path) is not None and mapping.wrt and name in mapping.wrt:
            return tuple(mapping.wrt[name])
    return None


def draw(stem: str, name: str, seed: str) -> dict[str, Any]:
    """Random float64 arguments of ``name``, of small random shapes, deterministic."""
    generator = numpy.random.default_rng(zlib.crc32(f"{stem} {name} {seed}".encode()))
    sizes = {d: int(generator.integers(2, 5)) for d in "NDMCHTWFK"}
    sizes["4H"] = 4 * sizes["H"]  # the LSTM's four gates side by side
    args: dict[str, Any] = {}
    for param, spec in PROGRAMS[stem][name].items():
        if isinstance(spec, Array):
            # a dimension named, or written out ("3": a 3 x 3 filter, "2": points in a plane)
            shape = tuple(int(d) if d.isdigit() else sizes[d] for d in spec.dims)
            if spec.positive:
                args[param] = generator.uniform(0.5, 1.5, size=shape)
            else:
                args[param] = generator.normal(size=shape)
        elif isinstance(spec, Labels):
            args[param] = generator.integers(0, sizes[spec.classes], size=sizes[spec.rows])
        elif isinstance(spec, Counts):
            args[param] = generator.poisson(1.5, size=sizes[spec.rows]).astype(numpy.float64)
        elif isinstance(spec, Choice):
            args[param] = spec.values[0]
        else:
            args[param] = float(generator.uniform(spec.low, spec.high))
    return args


def random_upstream(value: Any, generator: numpy.random.Generator) -> Any:
    """One upstream gradient per result, never 1.0 (a forgotten ``* dout`` shows)."""
    if isinstance(value, tuple):
        return tuple(random_upstream(part, generator) for part in value)
    if numpy.ndim(value) == 0:
        return float(generator.uniform(0.5, 1.5))
    return generator.normal(size=numpy.shape(value))


def weighted_sum(result: Any, upstream: Any) -> float:
    """The loss whose gradients a backward given ``upstream`` computes."""
    if isinstance(result, tuple):
        return sum(weighted_sum(r, u) for r, u in zip(result, upstream, strict=True))
    return float(numpy.sum(result * upstream))


def copies(values: dict[str, Any]) -> dict[str, Any]:
    return {n: numpy.copy(v) for n, v in values.items()}


# --- programs: the committed file, as the command line wrote it --------------------------------


def test_every_program_function_has_a_spec() -> None:
    for stem, (forwards, _, _) in MODULES.items():
        assert forwards == list(PROGRAMS[stem]), f"examples/{stem}.py: update PROGRAMS"
        module = load(ROOT / "examples" / f"{stem}.py")
        for name in forwards:
            parameters = list(inspect.signature(getattr(module, name)).parameters)
            assert parameters == list(PROGRAMS[stem][name]), f"{stem}.{name}"


# Seed "b" turns every unit of affine_relu off (a draw checking nothing): not used.
@pytest.mark.parametrize("seed", ["a", "c"])
@pytest.mark.parametrize(("stem", "name"), FUNCTIONS, ids=FUNCTION_IDS)
def test_committed_backward_matches_central_differences(stem: str, name: str, seed: str) -> None:
    """``F_backward`` of ``generated/<stem>.py``, given one upstream per result (by name: a
    function of several results takes them keyword-only), against central differences of
    the forward; it changes no argument and no upstream, and gives None for labels."""
    check_committed(stem, name, draw(stem, name, seed), seed)


# Each side of each branch of examples/branches.py, by the arguments that take it (the
# draw takes the first: use_bias, tanh, and a residual that may fall anywhere).
SIDES = [
    pytest.param("dense", {"use_bias": False}, id="dense-no-bias"),
    pytest.param("dense", {"activation": "relu"}, id="dense-relu"),
    pytest.param("dense", {"activation": "linear", "use_bias": False}, id="dense-linear"),
    pytest.param("huber", {"prediction": 2.5, "target": 0.5, "delta": 1.0}, id="huber-above"),
    pytest.param("huber", {"prediction": -2.5, "target": 0.5, "delta": 1.0}, id="huber-below"),
    pytest.param("huber", {"prediction": 0.75, "target": 0.5, "delta": 1.0}, id="huber-within"),
]


@pytest.mark.parametrize(("name", "values"), SIDES)
def test_every_side_of_the_branch_examples(name: str, values: dict[str, Any]) -> None:
    check_committed("branches", name, {**draw("branches", name, "a"), **values}, "a")


def check_committed(stem: str, name: str, args: dict[str, Any], seed: str) -> None:
    """The committed ``F_backward`` of ``stem.name`` at ``args`` against central differences,
    with a random upstream drawn from ``seed``."""
    f = getattr(load(ROOT / "examples" / f"{stem}.py"), name)
    backward = getattr(load(ROOT / "generated" / f"{stem}.py"), f"{name}_backward")
    before = copies(args)
    upstream = random_upstream(f(**args), numpy.random.default_rng(zlib.crc32(seed.encode())))
    upstreams = upstream if isinstance(upstream, tuple) else (upstream,)
    upstream_names = list(inspect.signature(backward).parameters)[len(args) :]
    kept = [numpy.copy(u) for u in upstreams]

    gradients = backward(*args.values(), **dict(zip(upstream_names, upstreams, strict=True)))

    wanted = mapped_wrt(stem, name) or tuple(args)
    if len(wanted) == 1:
        assert not isinstance(gradients, tuple), "one gradient: handed back bare"
        gradients = (gradients,)
    assert len(gradients) == len(wanted)
    unchanged = [
        *zip(args.values(), before.values(), strict=True),
        *zip(upstreams, kept, strict=True),
    ]
    for value, old in unchanged:
        numpy.testing.assert_array_equal(value, old, err_msg="an argument or upstream changed")

    # A draw where every ReLU is off checks nothing: some gradient must be nonzero.
    assert any(numpy.any(g) for g in gradients if g is not None), "every gradient is zero"

    def loss(**values: Any) -> float:
        return weighted_sum(f(**values), upstream)

    for param, grad in zip(wanted, gradients, strict=True):
        if isinstance(PROGRAMS[stem][name][param], (Labels, Choice)):
            assert grad is None, f"d{param} = {grad!r}: labels and flags have no gradient"
            continue
        assert numpy.shape(grad) == numpy.shape(args[param]), f"d{param}: {numpy.shape(grad)}"
        numpy.testing.assert_allclose(
            grad,
            numeric_gradient(loss, args, param),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"d{param} of {stem}.{name}",
        )


# --- programs: @gradgen.differentiable and gradgen.testing ------------------------------------


def routes() -> list[Any]:
    """(module, function, route) for each way a user checks a function."""
    cases = []
    for stem, name in FUNCTIONS:
        _, rules, _callers = MODULES[stem]
        ident = f"{stem}.{name}"
        if name in rules:  # the backward the user wrote, against its forward
            cases.append(pytest.param(stem, name, "rule", id=f"{ident}-rule"))
            continue
        cases.append(pytest.param(stem, name, "committed", id=f"{ident}-committed"))
        cases.append(pytest.param(stem, name, "in memory", id=f"{ident}-in-memory"))
        if mapped_wrt(stem, name) is not None:
            continue  # assert_gradients_match takes no wrt: the plain function is refused
        cases.append(pytest.param(stem, name, "plain", id=f"{ident}-plain"))
    return cases


@pytest.mark.usefixtures("fresh_gradgen_state")
@pytest.mark.parametrize(("stem", "name", "route"), routes())
def test_gradients_match_through_the_decorator_and_testing(
    stem: str, name: str, route: str, tmp_path: Path
) -> None:
    """``committed``: ``@gradgen.differentiable`` (strict) runs ``generated/<stem>.py``, the
    file the project maps the example to. ``in memory``: the same example in a folder no
    ``[tool.gradgen]`` maps, so the decorator generates the backward when it is applied
    (with the mapping's ``wrt``, if any). ``plain``: ``assert_gradients_match`` generates
    it for the undecorated function. ``rule``: the backward the user wrote."""
    path = ROOT / "examples" / f"{stem}.py"
    if route == "in memory":
        for example in EXAMPLES:  # with the forward modules it imports functions from
            shutil.copy(example, tmp_path / example.name)
        path = tmp_path / path.name
    module = load(path)
    f = getattr(module, name)
    args = draw(stem, name, route)
    if route == "rule":
        assert_gradients_match(f, *args.values(), backward=getattr(module, MODULES[stem][1][name]))
        return
    if route == "committed":
        f = gradgen.differentiable(f, strict=True)
        ran = inspect.getsourcefile(f.backward)  # type: ignore[attr-defined]
        assert ran is not None and Path(ran).resolve() == ROOT / "generated" / path.name
    elif route == "in memory":
        f = gradgen.differentiable(f, wrt=mapped_wrt(stem, name))
        assert f.backward.__code__.co_filename.startswith("<gradgen")  # type: ignore[attr-defined]
    assert_gradients_match(f, *args.values(), rtol=RTOL, atol=ATOL)


# --- programs: gradgen check --------------------------------------------------------------------

CHECK_CASES = [pytest.param(stem, [], id=stem) for stem in PROGRAMS] + [
    # The sizes gradgen check draws take 4H as a name of its own, not 4 times H; an LSTM's
    # own shapes are given here (a dimension such as 4H cannot be given a size by name).
    pytest.param(
        "lstm_step", ["--shapes", "H=3", "Wx=D,12", "Wh=H,12", "b=12"], id="lstm_step-4H=12"
    ),
]


@pytest.mark.parametrize(("stem", "options"), CHECK_CASES)
def test_gradgen_check_passes(
    stem: str,
    options: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``gradgen check examples/<stem>.py`` checks every function, a user rule's backward
    against its forward too, each as the project's mapping says (poisson_nll: beta only),
    and each gradient matches (labels are skipped: None)."""
    monkeypatch.chdir(ROOT)
    status = main(["check", f"examples/{stem}.py", *options])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    rows = re.findall(r"^(\w+) +(\w+) +.+ +(pass|FAIL|skip \(None\))$", out, re.MULTILINE)
    assert sorted({function for function, _, _ in rows}) == sorted(PROGRAMS[stem]), out
    assert all(result in ("pass", "skip (None)") for _, _, result in rows), out


# --- programs: the committed files read as by hand ----------------------------------------------


def test_composed_two_layer_net_needs_no_unbroadcast() -> None:
    text = (ROOT / "generated" / "two_layer_composed.py").read_text(encoding="utf-8")
    assert "_unbroadcast" not in text


def test_linear_classifier_backward_does_not_rerun_the_fused_loss() -> None:
    text = (ROOT / "generated" / "fused_softmax.py").read_text(encoding="utf-8")
    backward = functions(text)["linear_classifier_loss_backward"]
    code = [line for line in backward.splitlines() if not line.strip().startswith("#")]
    assert not any("softmax_cross_entropy(" in line for line in code), backward
    assert "_everywhere" not in backward


# --- the example that draws: value_and_grad with the draws fixed --------------------------------


@pytest.fixture
def vae_elbo(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``examples.vae_elbo`` imported by its module name, as its generated module imports
    its generator ``rs`` from it: one generator for both, reseeded before each forward."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield importlib.import_module("examples.vae_elbo")
    for name in ("examples.vae_elbo", "examples"):
        sys.modules.pop(name, None)


def elbo_arguments(seed: int) -> dict[str, Any]:
    generator = numpy.random.default_rng(seed)
    return {
        "mu": generator.normal(size=3),
        "log_sigma": generator.normal(scale=0.3, size=3),
        "X": generator.normal(size=(5, 3)),
        "y": generator.normal(size=5),
    }


@pytest.mark.usefixtures("fresh_gradgen_state")  # the committed module imports this rs
@pytest.mark.parametrize("route", ["committed", "decorator", "pairs-in-memory"])
@pytest.mark.parametrize("seed", [1, 2])
def test_vae_elbo_gradients_match_central_differences_with_the_draws_fixed(
    vae_elbo: ModuleType, route: str, seed: int
) -> None:
    """``negative_elbo_value_and_grad`` of ``generated/vae_elbo.py`` (and through the
    decorator, and as a pair generated in memory) against central differences of the
    forward, ``rs`` reseeded before every evaluation, so each draws the same noise."""
    f = vae_elbo.negative_elbo
    if route == "committed":
        backward = load(ROOT / "generated" / "vae_elbo.py")
        assert not hasattr(backward, "negative_elbo_backward")
        value_and_grad = backward.negative_elbo_value_and_grad
    elif route == "decorator":
        decorated = gradgen.differentiable(f, strict=True)
        value_and_grad = decorated.value_and_grad  # type: ignore[attr-defined]
        with pytest.raises(gradgen.GradgenError, match=r"vae_elbo.py:32:11: error: negative_elbo"):
            decorated.backward(*elbo_arguments(seed).values())  # type: ignore[attr-defined]
    else:
        paired = gradgen.differentiable(f, pairs=True, wrt=("mu", "log_sigma"))

        def value_and_grad(*args: Any, dout: float) -> tuple[Any, Any]:
            value, cache = paired.forward(*args)  # type: ignore[attr-defined]
            return value, paired.backward(dout, cache)  # type: ignore[attr-defined]

    args = elbo_arguments(seed)
    vae_elbo.rs.seed(seed)
    value, (dmu, dlog_sigma) = value_and_grad(*args.values(), dout=0.8)
    vae_elbo.rs.seed(seed)
    assert value == f(**args)

    def loss(**values: Any) -> float:
        vae_elbo.rs.seed(seed)
        return 0.8 * float(f(**values))

    for name, grad in (("mu", dmu), ("log_sigma", dlog_sigma)):
        numpy.testing.assert_allclose(
            grad, numeric_gradient(loss, args, name), rtol=RTOL, atol=ATOL, err_msg=f"d{name}"
        )


def test_gradgen_check_skips_the_drawing_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The functions that do not draw are checked; the one that draws is skipped, saying why
    (central differences would draw other noise at each run): no false failure."""
    monkeypatch.chdir(ROOT)
    status = main(["check", "examples/vae_elbo.py"])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert re.search(r"^negative_elbo +mu +- +skip \(draws\)$", out, re.MULTILINE), out
    assert re.search(r"^log_joint +z .* pass$", out, re.MULTILINE), out
    assert "negative_elbo: note: not checked: negative_elbo draws random numbers (rs.randn)" in out


# Calls of the run-time shape helpers in each committed backward (outside the helpers'
# own definitions). Each one left is where a careful person would check shapes at run time
# too: an array's shape the annotations leave open (convolution's windows, an LSTM's gates
# of a width G not written as 4H, a loop over layers of different shapes, a draw). The
# count may only go down; lower it here when it does.
RUN_TIME_SHAPE_CHECKS = {
    "convolution": 3,
    "losses": 3,
    "recurrent": 5,
    "sequences": 8,
    "two_layer_params": 4,
    "vae_elbo": 2,
}


def _shape_checks(path: Path) -> int:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sum(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("_unbroadcast", "_everywhere")
        for function in tree.body
        if isinstance(function, ast.FunctionDef) and not function.name.startswith("_")
        for node in ast.walk(function)
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_shapes_are_checked_at_run_time_only_where_the_code_leaves_them_open(path: Path) -> None:
    count = _shape_checks(ROOT / "generated" / path.name)
    expected = RUN_TIME_SHAPE_CHECKS.get(path.stem, 0)
    assert count <= expected, f"{path.name}: {count} _unbroadcast/_everywhere calls, was {expected}"
    assert count == expected, f"{path.name}: {count} calls, fewer than {expected}: lower the table"
