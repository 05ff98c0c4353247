"""Functions with no file behind them (notebook cells): the decorator, the gradient check
and the display of the generated code.

Most tests play a notebook's cells as a kernel runs them: each cell's text registered with
``linecache`` under a name of its own (no file), run in one namespace. The last test runs
the tutorial notebook in ``examples/`` in a real Jupyter kernel.
"""

from __future__ import annotations

import json
import linecache
import warnings
from itertools import count
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import numpy as np
import pytest

import gradgen
from gradgen.testing import assert_gradients_match, check_gradients

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook_tutorial.ipynb"

_cells = count(1)


def run_cell(namespace: dict[str, Any], text: str) -> str:
    """Run ``text`` as a kernel runs a cell: its source known to linecache under a name
    that is no file. Returns that name."""
    name = f"<cell-{next(_cells)}>"
    linecache.cache[name] = (len(text), None, text.splitlines(keepends=True), name)
    exec(compile(text, name, "exec"), namespace)
    return name


def notebook() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    run_cell(namespace, "import numpy as np\nimport gradgen\n")
    return namespace


def test_names_from_earlier_cells_are_read_from_the_function_globals() -> None:
    namespace = notebook()
    run_cell(
        namespace,
        "@gradgen.differentiable\ndef f(x, w):\n    h = np.tanh(x * w)\n    return np.sum(h * h)\n",
    )
    f = namespace["f"]
    rng = np.random.default_rng(0)
    assert_gradients_match(f, rng.normal(size=3), rng.normal(size=3))
    # The generated code stands alone: it imports no gradgen runtime.
    assert "gradgen" not in f.backward_source


def test_a_function_of_an_earlier_cell_is_called_and_differentiated() -> None:
    namespace = notebook()
    run_cell(
        namespace, "from scipy.special import expit as sigmoid\nW = np.linspace(0.5, 1.5, 3)\n"
    )
    run_cell(namespace, "def gate(x):\n    return sigmoid(x) * W\n")
    run_cell(
        namespace,
        "@gradgen.differentiable\ndef loss(x):\n    h = gate(x)\n    return np.sum(h * x)\n",
    )
    loss = namespace["loss"]
    assert "gate_cached_backward" in loss.backward_source
    assert_gradients_match(loss, np.array([0.3, -1.2, 2.0]))


def test_a_rebound_number_is_read_when_the_backward_runs() -> None:
    # A number of the notebook is module data, read when the backward runs as the forward
    # reads it: a copy taken when the decorator ran would give the old gradient.
    namespace = notebook()
    run_cell(namespace, "scale = 2.0\n")
    run_cell(namespace, "@gradgen.differentiable\ndef f(x):\n    return scale * x * x\n")
    run_cell(namespace, "scale = 3.0\n")
    f = namespace["f"]
    assert f.backward(1.5) == pytest.approx(9.0)
    assert_gradients_match(f, 1.5)


def test_a_plain_function_of_a_cell_is_checked() -> None:
    namespace = notebook()
    run_cell(namespace, "def g(x, y):\n    return np.sum(np.exp(x) * y)\n")
    report = check_gradients(namespace["g"], np.ones(2), np.arange(2.0))
    assert report.passed
    assert "<table>" in report._repr_html_()
    assert "all 2 gradients match" in str(report)


def test_a_refusal_in_a_function_of_another_cell_points_at_that_cell() -> None:
    namespace = notebook()
    helper_cell = run_cell(namespace, "def helper(x):\n    print(x)\n    return x\n")
    with pytest.raises(gradgen.GradgenError) as raised:
        run_cell(namespace, "@gradgen.differentiable\ndef f(x):\n    return helper(x) * 2.0\n")
    (diagnostic,) = raised.value.diagnostics
    assert (diagnostic.filename, diagnostic.line) == (helper_cell, 2)
    assert diagnostic.source_line.strip() == "print(x)"


def test_an_undefined_name_is_refused_in_its_cell() -> None:
    namespace = notebook()
    with pytest.raises(gradgen.GradgenError) as raised:
        run_cell(namespace, "@gradgen.differentiable\ndef f(x):\n    return x * missing\n")
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.line == 3 and diagnostic.filename.startswith("<cell-")
    assert "undefined name 'missing'" in diagnostic.message


def test_no_warning_about_files_for_a_function_with_no_file() -> None:
    namespace = notebook()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_cell(
            namespace,
            "@gradgen.differentiable(strict=True)\ndef f(x):\n    return np.sum(x * x)\n",
        )
    assert namespace["f"].backward(np.ones(2)).tolist() == [2.0, 2.0]


def test_the_generated_code_is_displayed_highlighted() -> None:
    namespace = notebook()
    run_cell(namespace, "@gradgen.differentiable\ndef f(x):\n    return np.sum(x * x)\n")
    f = namespace["f"]
    shown = gradgen.show(f)
    assert str(shown) == f.backward_source
    assert shown._repr_markdown_().startswith("```python\ndef f_backward(")
    html = f.backward._repr_html_()
    assert "f_backward" in html and "<" in html
    assert "f_value_and_grad" not in f.backward._repr_markdown_()
    # The function's plain repr is Python's.
    assert repr(f.backward).startswith("<function")


def test_the_tutorial_notebook_is_committed_without_outputs() -> None:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells)


def test_the_tutorial_notebook_runs_in_a_kernel() -> None:
    notebook_node = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel is this interpreter (ipykernel's own kernel spec), started in examples/.
    client = nbclient.NotebookClient(
        notebook_node,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute(env=_kernel_environment())
    text = "\n".join(
        output.get("text", "")
        for cell in notebook_node.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )
    assert "tutorial checks passed" in text


def _kernel_environment() -> dict[str, str]:
    """The kernel imports the gradgen under test, as this process does."""
    import os

    package = str(Path(gradgen.__file__).resolve().parent.parent)
    path = os.pathsep.join([package, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


NOTEBOOK_CODE = """import numpy as np

import gradgen


@gradgen.differentiable(generated="model_backward.py")
def f(x):
    return np.sum(np.tanh(x) * x)
"""


def test_generated_names_a_reviewed_file_exported_from_the_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradgen.cli import main

    # The notebook's code exported to a file (jupyter nbconvert --to script), generated.
    (tmp_path / "model.py").write_text(NOTEBOOK_CODE, encoding="utf-8")
    assert main([str(tmp_path / "model.py"), "-o", str(tmp_path / "model_backward.py"), "-q"]) == 0
    monkeypatch.chdir(tmp_path)  # a kernel runs in the notebook's folder
    imports, function = NOTEBOOK_CODE.split("\n\n\n")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    run_cell(namespace, imports + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_cell(namespace, function)
    f = namespace["f"]
    assert f.backward.__module__.startswith("_gradgen_reviewed_")  # the reviewed code runs
    assert_gradients_match(f, np.array([0.5, -1.0]))
    # The cell changed since: the file is stale, said once, or an error when strict.
    edited = function.replace("* x)", "* x * x)")
    with pytest.warns(gradgen.StaleBackwardWarning, match="model_backward.py is stale for f"):
        run_cell(namespace, edited)
    assert not (namespace["f"].backward.__module__ or "").startswith("_gradgen_reviewed_")
    strict = edited.replace('"model_backward.py"', '"model_backward.py", strict=True')
    with pytest.raises(gradgen.StaleBackwardError, match="is stale for f"):
        run_cell(namespace, strict)
