"""Random draws inside a forward function (README, "Random draws").

A draw (``np.random.randn(3)``, ``rs.randn(3)``, ``rng.random(x.shape)``, ``random.gauss``)
is a value with no gradient, drawn once where the forward runs once: ``F_value_and_grad``,
a pair's ``F_forward`` (its ``F_backward(dout, cache)`` reads the drawn values from the
cache), the decorator's ``value_and_grad``. The recomputing ``F_backward`` would draw other
numbers: it is not generated, and the decorator's ``f.backward`` raises, located at the draw.

Gradients are checked against central differences in float64 with the randomness fixed:
every generator (numpy's global one, the standard library's, the module's generator
objects, and a fresh seeded generator for a parameter) is put back to one state before each
evaluation of the forward, so each one draws the same numbers.
"""

from __future__ import annotations

import importlib
import itertools
import random
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy
import pytest

import gradgen
from gradgen.api import Options, compile_source
from gradgen.cli import main
from test_rules import numeric_gradient

RTOL = 1e-5
ATOL = 1e-8


class Seeded:
    """An argument that is a generator: a fresh ``numpy.random.default_rng(seed)`` at each
    evaluation, so every evaluation draws the same numbers."""

    def __init__(self, seed: int) -> None:
        self.seed = seed


@dataclass(frozen=True)
class Spelling:
    """A forward module that draws, its function ``f``, and the shapes of its arguments
    (``()``: a Python float; a ``Seeded``: a generator)."""

    source: str
    args: dict[str, tuple[int, ...] | Seeded]


NUMPY = "import numpy as np\n\n\n"
SPELLINGS: dict[str, Spelling] = {
    "np.random.randn": Spelling(
        NUMPY + "def f(x, w):\n    return np.sum(np.tanh(x * w + np.random.randn(3)))\n",
        {"x": (3,), "w": (3,)},
    ),
    "np.random.normal-keywords": Spelling(
        NUMPY + "def f(x):\n"
        "    noise = np.random.normal(0.0, 0.5, size=x.shape)\n"
        "    return np.sum((x + noise) ** 2)\n",
        {"x": (2, 3)},
    ),
    "from-numpy.random-import": Spelling(
        "import numpy as np\nfrom numpy.random import randn\n\n\n"
        "def f(x):\n    return np.sum(np.exp(x * randn(4)))\n",
        {"x": (4,)},
    ),
    "from-numpy.random-import-as": Spelling(
        "import numpy as np\nfrom numpy.random import standard_normal as noise\n\n\n"
        "def f(x):\n    return np.sum(np.sin(x) * noise((2, 3)))\n",
        {"x": (2, 3)},
    ),
    "import-numpy.random-as-npr": Spelling(
        "import numpy as np\nimport numpy.random as npr\n\n\n"
        "def f(x):\n    return np.sum(x**2 * npr.rand(3))\n",
        {"x": (3,)},
    ),
    "from-numpy-import-random": Spelling(
        "import numpy as np\nfrom numpy import random as npr\n\n\n"
        "def f(x):\n    return np.sum(x * npr.uniform(-1.0, 1.0, 3))\n",
        {"x": (3,)},
    ),
    "stdlib-random.gauss-scalar": Spelling(
        "import math\nimport random\n\n\n"
        "def f(x, y):\n    e = random.gauss(0.0, 1.0)\n    return math.sin(x * y) + e * x\n",
        {"x": (), "y": ()},
    ),
    "from-random-import-uniform": Spelling(
        "import math\nfrom random import uniform\n\n\n"
        "def f(x):\n    return math.exp(x * uniform(0.5, 1.5))\n",
        {"x": ()},
    ),
    "module-RandomState.randn": Spelling(
        "import numpy as np\nimport numpy.random as npr\n\nrs = npr.RandomState(0)\n\n\n"
        "def f(mu, log_sigma):\n"
        "    z = mu + np.exp(log_sigma) * rs.randn(3)\n"
        "    return np.sum(z**2)\n",
        {"mu": (3,), "log_sigma": (3,)},
    ),
    "module-default_rng.standard_normal": Spelling(
        NUMPY + "rng = np.random.default_rng(0)\n\n\n"
        "def f(x):\n    return np.sum(np.tanh(x + rng.standard_normal(x.shape)))\n",
        {"x": (2, 2)},
    ),
    "module-random.Random.gauss": Spelling(
        "import math\nimport random\n\nr = random.Random(0)\n\n\n"
        "def f(x):\n    return math.cos(x) * r.gauss(1.0, 0.1)\n",
        {"x": ()},
    ),
    "parameter-rng.random-dropout": Spelling(
        NUMPY + "def f(x, p, rng):\n"
        "    mask = rng.random(x.shape) < p\n"
        "    return np.sum((x * mask / p) ** 2)\n",
        {"x": (4, 3), "p": (), "rng": Seeded(5)},
    ),
    "parameter-rng.normal-keywords": Spelling(
        NUMPY + "def f(rng, x):\n    return np.sum(x * rng.normal(size=x.shape) ** 2)\n",
        {"rng": Seeded(6), "x": (3,)},
    ),
    "drawn-index": Spelling(
        NUMPY + "def f(x, rng):\n"
        "    rows = rng.integers(0, 3, size=5)\n"
        "    return np.sum(x[rows] ** 2)\n",
        {"x": (3, 2), "rng": Seeded(7)},
    ),
    "two-draws-alike-are-two-values": Spelling(
        NUMPY + "def f(x):\n    return np.sum(x * (np.random.randn(3) * np.random.randn(3)))\n",
        {"x": (3,)},
    ),
    "draw-in-a-comparison": Spelling(
        NUMPY + "def f(x):\n    return np.sum(x * (np.random.rand(3) < 0.5) + x**2)\n",
        {"x": (3,)},
    ),
    "draw-returned-with-a-value": Spelling(
        NUMPY + "def f(x):\n    return x * np.random.randn(2, 3)\n",
        {"x": (2, 3)},
    ),
    # CS231n's dropout: the shape unpacked into the draw's arguments.
    "shape-unpacked-into-rand": Spelling(
        NUMPY + "def f(x, p):\n    mask = (np.random.rand(*x.shape) < p) / p\n"
        "    return np.sum((x * mask) ** 2)\n",
        {"x": (4, 3), "p": ()},
    ),
    "nested-draw-argument": Spelling(
        NUMPY + "def f(x):\n    return np.sum(x * np.random.normal(np.random.rand(), 1.0, 3))\n",
        {"x": (3,)},
    ),
}
IDS = list(SPELLINGS)


# --- running a forward module and its generated backward -------------------------------------

_modules = itertools.count()


@pytest.fixture
def module_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``module_of(source) -> name``: ``source`` written to a file and importable by
    ``name`` (the generated module imports module data from it)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"gradgen_draws_{next(_modules)}"
        names.append(name)
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def generate(source: str, module: str, pairs: bool = False) -> str:
    return compile_source(source, f"{module}.py", Options(pairs=pairs, forward_module=module)).text


def run_generated(text: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(text, name, "exec"), namespace)
    return namespace


def restorer(module: ModuleType) -> Callable[[], None]:
    """A function putting every generator back as it is now: numpy's global one, the
    standard library's, and the module's own generator objects."""
    numpy_state = numpy.random.get_state()
    stdlib_state = random.getstate()
    saved: list[tuple[Any, Any]] = []
    for value in vars(module).values():
        if isinstance(value, numpy.random.RandomState):
            saved.append((value, value.get_state()))
        elif isinstance(value, numpy.random.Generator):
            saved.append((value, value.bit_generator.state))
        elif isinstance(value, random.Random) and value is not random._inst:  # type: ignore[attr-defined]
            saved.append((value, value.getstate()))

    def restore() -> None:
        numpy.random.set_state(numpy_state)
        random.setstate(stdlib_state)
        for generator, state in saved:
            if isinstance(generator, numpy.random.RandomState):
                generator.set_state(state)
            elif isinstance(generator, numpy.random.Generator):
                generator.bit_generator.state = state
            else:
                generator.setstate(state)

    return restore


def arguments(spelling: Spelling, seed: str) -> dict[str, Any]:
    generator = numpy.random.default_rng(list(seed.encode()))
    args: dict[str, Any] = {}
    for name, shape in spelling.args.items():
        if isinstance(shape, Seeded):
            args[name] = shape
        elif shape == ():
            args[name] = float(generator.uniform(0.3, 0.9))
        else:
            args[name] = generator.normal(size=shape)
    return args


def live(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments of one evaluation: a fresh generator for each ``Seeded`` one."""
    return {
        n: numpy.random.default_rng(v.seed) if isinstance(v, Seeded) else v for n, v in args.items()
    }


def differentiated(spelling: Spelling) -> list[str]:
    return [n for n, shape in spelling.args.items() if not isinstance(shape, Seeded)]


def weighted(value: Any, upstream: Any) -> float:
    return float(numpy.sum(numpy.asarray(value) * upstream))


def check_against_central_differences(
    f: Callable[..., Any],
    value_and_grad: Callable[..., tuple[Any, Any]],
    spelling: Spelling,
    restore: Callable[[], None],
    seed: str = "a",
) -> None:
    """``value_and_grad`` (called as ``value_and_grad(args, upstream)``) against central
    differences of ``f``, every generator put back before each evaluation."""
    args = arguments(spelling, seed)
    restore()
    probe = f(**live(args))
    upstream: Any = 0.7 if numpy.ndim(probe) == 0 else numpy.full(numpy.shape(probe), 0.7)
    restore()
    value, gradients = value_and_grad(live(args), upstream)
    numpy.testing.assert_allclose(value, probe, rtol=0, atol=0, err_msg="the value")
    parameters = list(spelling.args)
    gradients = gradients if isinstance(gradients, tuple) else (gradients,)
    returned = dict(zip(parameters, gradients, strict=True))

    def loss(**values: Any) -> float:
        restore()
        return weighted(f(**live(values)), upstream)

    for name in differentiated(spelling):
        numpy.testing.assert_allclose(
            returned[name],
            numeric_gradient(loss, args, name),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"d{name}",
        )
    for name in spelling.args:
        if name not in differentiated(spelling):
            assert returned[name] is None, f"the generator {name} is data: its gradient is None"


def upstream_keyword(text: str, function: str) -> str:
    """The name of the upstream parameter of ``function`` in the generated ``text``."""
    line = next(line for line in text.splitlines() if line.startswith(f"def {function}("))
    return line.split(", ")[-1].split("=")[0].removeprefix("*").strip("): ")


# --- every spelling: value_and_grad, pairs ----------------------------------------------------


@pytest.mark.parametrize("spelling", [SPELLINGS[i] for i in IDS], ids=IDS)
def test_value_and_grad_matches_central_differences_with_the_draws_fixed(
    spelling: Spelling, module_of: Callable[[str], str]
) -> None:
    name = module_of(spelling.source)
    forward = importlib.import_module(name)
    text = generate(spelling.source, name)
    assert "def f_backward(" not in text, "a recomputing backward would draw again"
    assert "# No f_backward: f draws random numbers" in text
    backward = run_generated(text, f"{name}_backward.py")
    upstream = upstream_keyword(text, "f_value_and_grad")

    def value_and_grad(args: dict[str, Any], dout: Any) -> tuple[Any, Any]:
        return backward["f_value_and_grad"](**args, **{upstream: dout})  # type: ignore[no-any-return]

    check_against_central_differences(forward.f, value_and_grad, spelling, restorer(forward))


@pytest.mark.parametrize("spelling", [SPELLINGS[i] for i in IDS], ids=IDS)
def test_pairs_backward_reads_the_drawn_values_from_the_cache(
    spelling: Spelling, module_of: Callable[[str], str]
) -> None:
    name = module_of(spelling.source)
    forward = importlib.import_module(name)
    text = generate(spelling.source, name, pairs=True)
    backward = run_generated(text, f"{name}_backward.py")
    restore = restorer(forward)

    def value_and_grad(args: dict[str, Any], dout: Any) -> tuple[Any, Any]:
        value, cache = backward["f_forward"](**args)
        # The backward draws nothing: every generator is left as it is, and it gives the
        # same gradients twice.
        before = numpy.random.get_state()[1].copy()
        first = backward["f_backward"](dout, cache)
        second = backward["f_backward"](dout, cache)
        numpy.testing.assert_array_equal(numpy.random.get_state()[1], before)
        for a, b in zip(
            first if isinstance(first, tuple) else (first,),
            second if isinstance(second, tuple) else (second,),
            strict=True,
        ):
            if a is None:
                assert b is None
            else:
                numpy.testing.assert_array_equal(a, b)
        return value, first

    check_against_central_differences(forward.f, value_and_grad, spelling, restore)
    assert "# No f_backward" not in text


def test_the_pair_backward_recomputes_no_draw() -> None:
    """In pairs mode F_backward only unpacks its cache: the draw is a cached value."""
    source = NUMPY + "def f(x):\n    e = np.random.randn(3)\n    return np.sum(np.exp(x) * e)\n"
    text = gradgen.generate(source, "m.py", pairs=True)
    backward = text[text.index("def f_backward(") :]
    code = [line for line in backward.splitlines() if not line.strip().startswith("#")]
    assert not any("np.random" in line for line in code), backward
    assert "    e, out_exp, out_mul = cache" in backward


# --- a caller of a drawing function -----------------------------------------------------------

CALLER = """\
import numpy as np
import numpy.random as npr

rs = npr.RandomState(3)


def noise(shape):
    return rs.randn(shape)


def affine(x, w, b):
    return x @ w + b


def f(x, w, b):
    h = np.tanh(affine(x, w, b) + 0.1 * noise(2))
    return np.sum(h**2)
"""
CALLER_SPELLING = Spelling(CALLER, {"x": (3, 4), "w": (4, 2), "b": (2,)})


def test_a_caller_of_a_drawing_function_has_no_recomputing_backward(
    module_of: Callable[[str], str],
) -> None:
    name = module_of(CALLER)
    forward = importlib.import_module(name)
    text = generate(CALLER, name)
    assert "def f_backward(" not in text
    assert "def noise_backward(" not in text
    assert "def affine_backward(" in text  # a function that does not draw keeps its own
    assert "# No f_backward: f calls noise, which draws random numbers (rs.randn)" in text
    assert "noise_forward(2)" in text  # the callee's forward draws, once
    backward = run_generated(text, f"{name}_backward.py")

    def value_and_grad(args: dict[str, Any], dout: Any) -> tuple[Any, Any]:
        return backward["f_value_and_grad"](**args, dout=dout)  # type: ignore[no-any-return]

    check_against_central_differences(forward.f, value_and_grad, CALLER_SPELLING, restorer(forward))


def test_a_caller_of_a_drawing_function_in_pairs(module_of: Callable[[str], str]) -> None:
    name = module_of(CALLER)
    forward = importlib.import_module(name)
    backward = run_generated(generate(CALLER, name, pairs=True), f"{name}_backward.py")

    def value_and_grad(args: dict[str, Any], dout: Any) -> tuple[Any, Any]:
        value, cache = backward["f_forward"](**args)
        return value, backward["f_backward"](dout, cache)

    check_against_central_differences(forward.f, value_and_grad, CALLER_SPELLING, restorer(forward))


# --- the decorator ------------------------------------------------------------------------------

DECORATED = """\
import numpy as np

import gradgen


@gradgen.differentiable
def f(x, w):
    z = x * w + np.random.randn(3)
    return np.sum(np.tanh(z))


def noise():
    return np.random.standard_normal(3)


@gradgen.differentiable
def g(x):
    return np.sum(x * noise())


@gradgen.differentiable(pairs=True)
def dropout(x, p, rng):
    mask = rng.random(x.shape) < p
    return np.sum((x * mask / p) ** 2)
"""


def test_decorator_backward_raises_located_at_the_draw(
    load: Callable[[str], ModuleType],
) -> None:
    module = load(DECORATED)
    with pytest.raises(gradgen.GradgenError) as caught:
        module.f.backward(numpy.ones(3), numpy.ones(3))
    message = str(caught.value)
    filename = module.__file__
    assert message.startswith(f"{filename}:8:17: error: f draws random numbers (np.random.randn)")
    assert (
        "a backward that recomputes the forward would draw different ones; use "
        "f.value_and_grad(...) (or pairs=True: f.forward then f.backward(dout, cache))"
    ) in message
    assert "z = x * w + np.random.randn(3)" in message  # the line, with a caret under it


def test_decorator_backward_of_a_caller_points_at_the_callee_draw(
    load: Callable[[str], ModuleType],
) -> None:
    module = load(DECORATED)
    with pytest.raises(gradgen.GradgenError, match=r":13:12: error: g calls noise, which draws"):
        module.g.backward(numpy.ones(3))


def test_decorator_value_and_grad_is_right(load: Callable[[str], ModuleType]) -> None:
    module = load(DECORATED)
    spelling = Spelling(DECORATED, {"x": (3,), "w": (3,)})

    def value_and_grad(args: dict[str, Any], dout: Any) -> tuple[Any, Any]:
        return module.f.value_and_grad(**args, dout=dout)  # type: ignore[no-any-return]

    check_against_central_differences(module.f, value_and_grad, spelling, restorer(module))


def test_decorator_pairs_are_right(load: Callable[[str], ModuleType]) -> None:
    module = load(DECORATED)
    spelling = Spelling(DECORATED, {"x": (4, 2), "p": (), "rng": Seeded(11)})

    def value_and_grad(args: dict[str, Any], dout: Any) -> tuple[Any, Any]:
        value, cache = module.dropout.forward(**args)
        return value, module.dropout.backward(dout, cache)

    check_against_central_differences(module.dropout, value_and_grad, spelling, restorer(module))


# --- refusals: a gradient that would flow into a draw's arguments -----------------------------

REFUSALS = [
    pytest.param(
        "mu, sigma",
        "z = np.random.normal(mu, sigma)",
        9,
        "'np.random.normal' draws random numbers, and no gradient flows through a draw: its "
        "argument 'mu' needs a gradient here; draw noise that does not depend on the "
        "parameters and transform it (reparameterize: mu + sigma * rng.standard_normal(shape) "
        "for rng.normal(mu, sigma, shape))",
        id="np.random.normal-of-a-parameter",
    ),
    pytest.param(
        "mu, rng",
        "z = rng.normal(loc=mu * 2.0, size=3)",
        9,
        "'.normal' draws random numbers, and no gradient flows through a draw: its argument "
        "'loc=mu * 2.0' needs a gradient here, from 'mu'",
        id="generator-keyword-computed-from-a-parameter",
    ),
    pytest.param(
        "mu, sigma",
        "z = mu + rs.normal(0.0, sigma, 3)",
        14,
        "its argument 'sigma' needs a gradient here",
        id="module-generator-scale-of-a-parameter",
    ),
    pytest.param(
        "mu, sigma",
        "y = mu * np.random.randn(3)\n    z = y + np.random.normal(y, 1.0)",
        (8, 13),
        "its argument 'y' needs a gradient here, from 'mu'",
        id="an-argument-computed-from-a-draw-and-a-parameter",
    ),
    pytest.param(
        "mu, n",
        "z = mu + np.random.poisson(mu, size=n)",
        14,
        "'np.random.poisson' draws random numbers, and no gradient flows through a draw: its "
        "argument 'mu' needs a gradient here",
        id="a-discrete-distribution-of-a-parameter",
    ),
]


@pytest.mark.parametrize(("parameters", "body", "column", "words"), REFUSALS)
def test_a_gradient_into_a_draw_is_refused_and_nothing_is_written(
    parameters: str,
    body: str,
    column: int | tuple[int, int],
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    source = (
        "import numpy as np\n\nrs = np.random.RandomState(0)\n\n\n"
        f"def f({parameters}):\n    {body}\n    return np.sum(z)\n"
    )
    (tmp_path / "bad.py").write_text(source, encoding="utf-8")
    status = main(["bad.py", "-o", "out.py"])
    out, err = capsys.readouterr()
    assert status == 123
    assert not (tmp_path / "out.py").exists()
    assert out == ""
    line, column = column if isinstance(column, tuple) else (7, column)
    assert f"bad.py:{line}:{column}: error: " in err
    assert words in " ".join(err.split())
    assert "Traceback" not in err


def test_a_parameter_outside_wrt_may_feed_a_draw() -> None:
    """``mu`` is data when the gradient is asked for ``x`` only: its draw is a constant."""
    source = NUMPY + "def f(x, mu):\n    return np.sum(x * np.random.normal(mu, 1.0))\n"
    text = gradgen.generate(source, "m.py", wrt={"f": ["x"]})
    assert "def f_value_and_grad(x, mu, dout=1.0):" in text


OTHER_REFUSALS = [
    pytest.param(
        "g = np.random.default_rng(0)\n    z = g.normal(size=3)",
        "'np.random.default_rng' does not draw random numbers",
        id="a-generator-made-inside",
    ),
    pytest.param(
        "z = np.random.default_rng(0).normal(size=3)",
        "'np.random.default_rng' does not draw random numbers",
        id="a-generator-made-and-drawn-from",
    ),
    pytest.param(
        "g = rng\n    z = g.normal(size=3)  # line 6",
        "'.normal()' draws random numbers from a generator gradgen cannot see",
        id="a-generator-renamed",
    ),
    pytest.param("z = rng.shuffle(x)", "the method '.shuffle()'", id="shuffle-changes-in-place"),
    pytest.param(
        "z = np.random.seed(0)", "'np.random.seed' does not draw random numbers", id="seed"
    ),
    pytest.param("z, b = np.random.randn(2)", "unpacking works on a call", id="unpacking-a-draw"),
    pytest.param(
        "z = np.maximum(*x)",
        "unpacking arguments with * is supported in the shape of a random draw only",
        id="unpacked-operands",
    ),
    pytest.param(
        "z = np.random.normal(*x)",
        "unpacking arguments with * is supported in the shape of a random draw only",
        id="unpacked-distribution-parameters",
    ),
]


@pytest.mark.parametrize(("body", "words"), OTHER_REFUSALS)
def test_what_is_not_a_draw_is_refused(body: str, words: str) -> None:
    source = NUMPY + f"def f(x, rng):\n    {body}\n    return np.sum(x * z)\n"
    with pytest.raises(gradgen.GradgenError) as caught:
        gradgen.generate(source, "bad.py")
    assert words in " ".join(str(caught.value).split())
    line = 6 if "# line 6" in body else 5
    assert str(caught.value).startswith(f"bad.py:{line}:")


# --- the command line and gradgen check ---------------------------------------------------------


def test_the_command_line_writes_value_and_grad_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No note on standard error: the generated file says why F_backward is absent."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(SPELLINGS["np.random.randn"].source, encoding="utf-8")
    assert main(["m.py", "-o", "m_backward.py"]) == 0
    err = capsys.readouterr().err
    assert "error" not in err and "warning" not in err and "note" not in err
    text = (tmp_path / "m_backward.py").read_text(encoding="utf-8")
    assert "def f_value_and_grad(" in text and "def f_backward(" not in text


def test_gradgen_check_skips_a_drawing_function_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    source = SPELLINGS["np.random.randn"].source + "\n\ndef plain(x):\n    return np.sum(x**2)\n"
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    status = main(["check", "m.py"])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert "skip (draws)" in out
    assert "f: note: not checked: f draws random numbers (np.random.randn)" in out
    assert "FAIL" not in out
    assert "plain     x" in out


def test_gradgen_check_of_only_drawing_functions_checks_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(SPELLINGS["np.random.randn"].source, encoding="utf-8")
    assert main(["check", "m.py"]) == 0
    assert "no gradient checked" in capsys.readouterr().out


def test_same_input_same_output() -> None:
    source = CALLER.replace("rs.randn", "np.random.randn")
    assert gradgen.generate(source, "m.py") == gradgen.generate(source, "m.py")


SIZES = [
    pytest.param("rs.randn(n)", id="randn-of-a-parameter"),
    pytest.param("rs.normal(0.0, 1.0, n)", id="normal-size-positional"),
    pytest.param("rs.uniform(size=n)", id="uniform-size-keyword"),
    pytest.param("rs.randint(0, n, size=n)", id="randint-bounds"),
    pytest.param("np.random.standard_normal((n, 2))", id="standard_normal-shape"),
]


@pytest.mark.parametrize("draw", SIZES)
def test_a_parameter_that_sizes_a_draw_is_data(draw: str) -> None:
    """``def noise(n): return rs.randn(n)``: ``n`` says how many numbers are drawn; no
    gradient is asked of it (its gradient is None), nothing is refused."""
    source = (
        "import numpy as np\n\nrs = np.random.RandomState(0)\n\n\n"
        f"def noise(n):\n    return {draw}\n\n\n"
        "def f(x, n):\n    return np.sum(x * noise(n))\n"
    )
    text = compile_source(source, "m.py", Options(forward_module="m")).text
    assert "return out, None" in text or "return eps, None" in text or ", None)" in text
