"""Module data: values a forward module computes when it runs (``inputs = load()``) are
constants for gradients; the decorator reads them from the module, a generated file imports
them from the forward module by its name."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import gradgen
from cli_project import Run, write
from gradgen.api import module_name
from gradgen.errors import GradgenError
from test_rules import numeric_gradient, run_module

FIT = """\
import numpy as np

import gradgen

inputs = np.linspace(-1.0, 1.0, 60).reshape(20, 3)
targets = inputs @ np.array([1.0, -2.0, 0.5]) + 0.1
N = len(targets)


@gradgen.differentiable
def loss(w, b):
    pred = inputs @ w + b
    err = pred - targets
    return np.sum(err * err) / N
"""


def _numeric(f: Callable[..., float], w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    eps = 1e-6
    dw = np.array([(f(w + eps * e, b) - f(w - eps * e, b)) / (2 * eps) for e in np.eye(3)])
    return dw, (f(w, b + eps) - f(w, b - eps)) / (2 * eps)


def _import(root: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return importlib.import_module(name)


@pytest.fixture
def forget_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield None
    for name in set(sys.modules) - before:
        if name.startswith(("project_examples", "project_generated")):
            sys.modules.pop(name, None)


def test_the_command_line_imports_module_data_from_the_forward_module(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch, forget_modules: None
) -> None:
    write(project / "project_examples/__init__.py", "")
    write(project / "project_examples/fit.py", FIT)
    status, _, err = run("project_examples/fit.py", "-o", "project_generated/fit.py")
    assert status == 0, err
    text = (project / "project_generated/fit.py").read_text()
    assert "from project_examples.fit import N, inputs, targets" in text
    write(project / "project_generated/__init__.py", "")
    forward = _import(project, "project_examples.fit", monkeypatch)
    backward = _import(project, "project_generated.fit", monkeypatch)
    w, b = np.array([0.3, 0.2, -0.1]), 0.4
    dw, db = backward.loss_backward(w, b)
    num_w, num_b = _numeric(forward.loss, w, b)
    np.testing.assert_allclose(dw, num_w, rtol=1e-6, atol=1e-8)
    assert db == pytest.approx(num_b, rel=1e-6)
    # The decorator reads the same data from the module itself.
    dw2, db2 = forward.loss.backward(w, b)
    np.testing.assert_allclose(dw2, dw, rtol=1e-12)
    assert db2 == pytest.approx(db, rel=1e-12)


def test_module_data_without_a_module_name_is_refused_where_it_is_read() -> None:
    with pytest.raises(GradgenError) as caught:
        gradgen.generate(FIT, "fit.py\n")
    diagnostic = caught.value.diagnostics[0]
    assert "'inputs' is module data" in diagnostic.message
    assert (diagnostic.line, diagnostic.column) == (12, 12)


def test_module_data_has_no_gradient_and_an_unknown_shape(
    load: Callable[[str], ModuleType],
) -> None:
    module = load(
        """\
        import numpy as np

        import gradgen

        scale = np.full(3, 2.0)


        @gradgen.differentiable
        def f(x):
            return np.sum(x * scale)
        """
    )
    # x is a number here, scale an array: the gradient is summed back to a number.
    assert module.f.backward(1.5) == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("examples/fit.py", "examples.fit"),
        ("fit.py", "fit"),
        ("pkg/__init__.py", "pkg"),
        ("/abs/fit.py", None),
        ("../fit.py", None),
        ("try/fit.py", None),
        ("my-examples/fit.py", None),
        ("notes.txt", None),
    ],
    ids=lambda v: str(v),
)
def test_module_names_of_paths(path: str, name: str | None) -> None:
    assert module_name(path) == name


def test_attributes_and_methods_of_module_data(project: Path, run: Run) -> None:
    """``LABELS.shape[0]``, ``W0.T``, ``LABELS.reshape(3, 1)``, ``LABELS.astype(int)``: module
    data is a value like any other; ``ROWS, COLS = 3, 3`` are constants, copied."""
    write(
        project / "md.py",
        "import numpy as np\n\nLABELS = np.array([0, 1, 2])\nW0 = np.ones((3, 3))\n"
        "ROWS, COLS = 3, 3\n\n\n"
        "def f(x):\n    return np.sum(x[np.arange(ROWS), LABELS.astype(int)])\n\n\n"
        "def h(x):\n    return np.sum(x * LABELS.reshape(3, 1))\n\n\n"
        "def k(x):\n    return np.sum(x) * LABELS.shape[0] + np.sum(W0.T * x) + COLS\n",
    )
    status, out, err = run("md.py")
    assert status == 0, err
    # f's backward reads ROWS (its index); k's only adds COLS, which no backward reads
    assert "\nROWS = 3\n" in out and "COLS =" not in out
    status, out, err = run("md.py", "--value-and-grad")
    assert status == 0, err
    assert "from md import LABELS, W0\n" in out
    assert "\nROWS = 3\n" in out and "\nCOLS = 3\n" in out
    sys.path.insert(0, str(project))
    try:
        forward = importlib.import_module("md")
        namespace = run_module(out, "md_backward.py")
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("md", None)
    x = np.random.default_rng(0).normal(size=(3, 3))
    for name in ("f", "h", "k"):
        gradient = namespace[f"{name}_backward"](x)
        expected = numeric_gradient(getattr(forward, name), {"x": x}, "x")
        np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-8)


def test_functions_run_at_import_or_without_parameters_are_not_forward_functions(
    project: Path, run: Run
) -> None:
    """``X, y = load()`` makes data when the module runs, and ``main()`` has no gradient to
    give: generating every function leaves them out (named, they are differentiated, and
    refused here for what they do); calls under the main guard do not count."""
    write(
        project / "fit.py",
        "import numpy as np\n\n\ndef load():\n    rng = np.random.default_rng(0)\n"
        "    X = rng.normal(size=(20, 3))\n    return X, X @ np.array([1.0, -2.0, 0.5])\n\n\n"
        "X, y = load()\n\n\ndef loss(w):\n    r = X @ w - y\n    return np.mean(r * r)\n\n\n"
        "def main():\n    print(loss(np.zeros(3)))\n\n\n"
        'if __name__ == "__main__":\n    main()\n    loss(np.ones(3))\n',
    )
    status, out, err = run("fit.py")
    assert status == 0, err
    defined = re.findall(r"^def (\w+)\(", out, re.MULTILINE)
    assert [d for d in defined if not d.startswith("_")] == ["loss_backward"]


def test_the_throwaway_name_may_be_unpacked_twice(project: Path, run: Run) -> None:
    write(
        project / "us.py",
        "import numpy as np\n\n\ndef split(y):\n    return y * 2.0, y * 3.0, np.sin(y)\n\n\n"
        "def f(y):\n    a, _, _ = split(y)\n    return np.sum(a * a)\n",
    )
    status, out, err = run("us.py")
    assert status == 0, err
    namespace = run_module(out, "us_backward.py")
    y = np.array([0.3, -1.2])
    np.testing.assert_allclose(namespace["f_backward"](y), 8.0 * y)
