"""Calls into other forward modules: ``from layers import affine`` in ``model.py``.

gradgen reads ``layers.py`` (it runs nothing), differentiates the functions the model calls
as if they were the model's own, and writes their backwards into the model's generated
module, which imports nothing of ``layers``. Each import form is checked against central
differences in float64 through the command line and the decorator; the header's digests
make the model's file stale when ``layers.py`` changes; refusals in the imported module are
reported in its file, and nothing is written.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

import gradgen
from cli_project import Run, snapshot, write
from test_programs import DIAGNOSTIC, assert_close, draw, expected_gradients
from test_rules import run_module

LAYERS = """\
import numpy as np

EPS = 1e-5


def affine(x, w, b):
    out = x @ w + b
    return out


def relu(x):
    return np.maximum(0, x)


def affine_relu(x, w, b):
    return relu(affine(x, w, b))


def normalize(x):
    mu = np.mean(x, axis=0)
    var = np.var(x, axis=0)
    return (x - mu) / np.sqrt(var + EPS)
"""

# The model's body, written with each way of importing the layers. ``{affine}`` and
# ``{affine_relu}`` are how the import form spells a call.
BODY = """

def loss(X, W1, b1, W2, b2):
    h = {affine_relu}({normalize}(X), W1, b1)
    s = {affine}(h, W2, b2)
    return np.sum(s * s)
"""

IMPORT_FORMS: dict[str, tuple[str, str, dict[str, str]]] = {
    # id: (where the layers live, the import lines, how calls are spelled)
    "from-import": (
        "layers.py",
        "from layers import affine, affine_relu, normalize",
        {"affine": "affine", "affine_relu": "affine_relu", "normalize": "normalize"},
    ),
    "aliases": (
        "layers.py",
        "from layers import affine as dense, affine_relu as block, normalize as norm",
        {"affine": "dense", "affine_relu": "block", "normalize": "norm"},
    ),
    "module-import": (
        "layers.py",
        "import layers",
        {
            "affine": "layers.affine",
            "affine_relu": "layers.affine_relu",
            "normalize": "layers.normalize",
        },
    ),
    "module-import-as": (
        "layers.py",
        "import layers as L",
        {"affine": "L.affine", "affine_relu": "L.affine_relu", "normalize": "L.normalize"},
    ),
    "relative": (
        "pkg/layers.py",
        "from .layers import affine, affine_relu, normalize",
        {"affine": "affine", "affine_relu": "affine_relu", "normalize": "normalize"},
    ),
    "relative-module": (
        "pkg/layers.py",
        "from . import layers",
        {
            "affine": "layers.affine",
            "affine_relu": "layers.affine_relu",
            "normalize": "layers.normalize",
        },
    ),
    "package-path": (
        "nets/layers.py",
        "from nets.layers import affine, affine_relu, normalize",
        {"affine": "affine", "affine_relu": "affine_relu", "normalize": "normalize"},
    ),
}

SHAPES = {"X": (5, 3), "W1": (3, 4), "b1": (4,), "W2": (4, 2), "b2": (2,)}
WEIGHTS = ["W1", "b1", "W2", "b2"]


def model_source(form: str) -> str:
    _, imports, spelled = IMPORT_FORMS[form]
    return f"import numpy as np\n{imports}\n\n" + BODY.format(**spelled)


def model_path(form: str) -> str:
    """Where the model lives: beside the layers, or (package-path) at the project root."""
    layers = IMPORT_FORMS[form][0]
    if form == "package-path":
        return "model.py"
    return str(Path(layers).parent / "model.py")


@pytest.fixture
def on_path(project: Path) -> Iterator[Path]:
    """The project folder first on ``sys.path`` (to run the forward modules), the modules
    imported from it forgotten afterwards."""
    sys.path.insert(0, str(project))
    before = set(sys.modules)
    yield project
    sys.path.remove(str(project))
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("layers", "pkg", "nets", "model", "gradgen_model"):
            del sys.modules[name]


def forward_loss(project: Path, form: str) -> Any:
    """The model's ``loss``, run as Python runs it."""
    path = model_path(form)
    module_name = path.removesuffix(".py").replace("/", ".")
    if form not in ("relative", "relative-module", "package-path"):
        sys.path.insert(0, str(project / Path(path).parent))
        module_name = "model"
    importlib.invalidate_caches()
    return importlib.import_module(module_name).loss


@pytest.mark.parametrize("form", list(IMPORT_FORMS))
def test_each_import_form_from_the_command_line(on_path: Path, run: Run, form: str) -> None:
    project = on_path
    layers_file, _, _ = IMPORT_FORMS[form]
    write(project / layers_file, LAYERS)
    if layers_file.startswith(("pkg/", "nets/")):
        write(project / Path(layers_file).parent / "__init__.py", "")
    write(project / model_path(form), model_source(form))
    status, _, err = run(model_path(form), "-o", "model_backward.py")
    assert status == 0, err
    text = (project / "model_backward.py").read_text(encoding="utf-8")
    assert "layers" not in text.split("\n\n\n", 1)[1].split("def ", 1)[0], "imports the layers"
    namespace = run_module(text, "model_backward.py")
    args = draw(SHAPES, f"cross-module {form}")
    gradients = dict(zip(["X", *WEIGHTS], namespace["loss_backward"](**args), strict=True))
    expected = expected_gradients(forward_loss(project, form), args, ["X", *WEIGHTS])
    assert_close(gradients, expected, f" ({form})")


def test_the_header_names_the_file_each_function_comes_from(project: Path, run: Run) -> None:
    write(project / "layers.py", LAYERS)
    write(project / "model.py", model_source("from-import"))
    status, out, err = run("model.py")
    assert status == 0, err
    digests = [line for line in out.splitlines() if line.startswith("#   ")]
    assert digests[0].startswith("#   loss: ")
    calls = digests[0].split("(calls ")[1].rstrip(")").split(", ")
    assert sorted(calls) == ["affine", "affine_relu", "normalize", "relu"]
    assert sorted(line.split(":")[0].strip("# ") for line in digests[1:]) == [
        "affine",
        "affine_relu",
        "normalize",
        "relu",
    ]
    assert all(" from layers.py" in line for line in digests[1:]), digests
    # The imported module's constant is the generated module's, as the forward's are.
    assert "\nEPS = 1e-5\n" in out


def test_editing_the_imported_module_makes_the_callers_file_stale(project: Path, run: Run) -> None:
    write(project / "layers.py", LAYERS)
    write(project / "model.py", model_source("from-import"))
    assert run("model.py", "-o", "model_backward.py")[0] == 0
    assert run("--check", "model.py", "-o", "model_backward.py")[0] == 0
    write(project / "layers.py", LAYERS.replace("EPS = 1e-5", "EPS = 1e-3"))
    status, out, err = run("--check", "model.py", "-o", "model_backward.py")
    assert status == 1, out + err
    write(project / "layers.py", LAYERS.replace("return relu(", "return 2 * relu("))
    status, out, err = run("--check", "model.py", "-o", "model_backward.py")
    assert status == 1, out + err


def test_the_decorator_differentiates_a_function_calling_another_modules(
    on_path: Path,
) -> None:
    project = on_path
    write(
        project / "layers.py",
        LAYERS.replace("import numpy as np", "import numpy as xp").replace("np.", "xp."),
    )
    source = model_source("from-import").replace(
        "\n\ndef loss", "\nimport gradgen\n\n\n@gradgen.differentiable\ndef loss"
    )
    write(project / "gradgen_model_decorated.py", source)
    importlib.invalidate_caches()
    loss = importlib.import_module("gradgen_model_decorated").loss
    args = draw(SHAPES, "cross-module decorated")
    gradients = dict(zip(["X", *WEIGHTS], loss.backward(**args), strict=True))
    assert_close(gradients, expected_gradients(loss, args, ["X", *WEIGHTS]), " (decorated)")
    # The layers' own numpy alias is imported with the functions that use it.
    assert "import numpy as xp" in loss.backward_source


def test_a_committed_file_goes_stale_when_the_imported_module_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradgen import decorator
    from gradgen.cli import main

    monkeypatch.setattr(decorator, "_CONFIGS", {})
    monkeypatch.setattr(decorator, "_COMMITTED", {})
    monkeypatch.setattr(decorator, "_WARNED", set())
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    root = tmp_path
    write(
        root / "pyproject.toml",
        '[project]\nname = "demo"\n\n[[tool.gradgen.files]]\nforward = "src"\nbackward = "gen"\n',
    )
    write(root / "src" / "layers.py", LAYERS)
    source = model_source("from-import").replace(
        "\n\ndef loss", "\nimport gradgen\n\n\n@gradgen.differentiable\ndef loss"
    )
    write(root / "src" / "gradgen_model_committed.py", source)
    monkeypatch.chdir(root)
    assert main([]) == 0
    monkeypatch.syspath_prepend(str(root / "src"))

    def load() -> tuple[Any, list[str]]:
        for name in ("gradgen_model_committed", "layers"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module("gradgen_model_committed")
        return module.loss, [str(w.message) for w in caught]

    loss, caught = load()
    assert caught == []
    assert (
        Path(loss.backward.__code__.co_filename).resolve()
        == (root / "gen" / "gradgen_model_committed.py").resolve()
    )
    write(
        root / "src" / "layers.py",
        LAYERS.replace("EPS = 1e-5", "EPS = 1e-3").replace(
            "    return (x - mu)", "    y = x - mu\n    return y"
        ),
    )
    loss, caught = load()
    assert any("stale" in message for message in caught), caught
    assert loss.backward.__code__.co_filename.startswith("<gradgen")


# --- refusals: located in the file they are in, nothing written ------------------------------

REFUSALS: dict[str, tuple[dict[str, str], str, str]] = {
    # id: (files, the file and line refused, the message's start)
    "unsupported-line-in-layers": (
        {
            "layers.py": "def f(x):\n    while x:\n        pass\n    return x\n",
            "model.py": "from layers import f\n\n\ndef loss(x):\n    return f(x) * 2.0\n",
        },
        "layers.py:2",
        "this 'while' never ends",
    ),
    "module-data-in-layers": (
        {
            "layers.py": "import numpy as np\n\nW = np.ones(3)\n\n\ndef f(x):\n    return x * W\n",
            "model.py": "from layers import f\n\n\ndef loss(x):\n    return f(x) * 2.0\n",
        },
        "layers.py:7",
        "'W' is module data of layers.py",
    ),
    "two-functions-one-name": (
        {
            "layers.py": "def f(x):\n    return x * 2.0\n",
            "model.py": (
                "from layers import f as g\n\n\ndef f(x):\n    return x * 3.0\n\n\n"
                "def loss(x):\n    return f(x) + g(x)\n"
            ),
        },
        "model.py:9",
        "'g' is 'f' of layers.py, and another function called here is named 'f' too",
    ),
    "constant-with-two-values": (
        {
            "layers.py": "C = 2.0\n\n\ndef f(x):\n    return x * C\n",
            "model.py": "from layers import f\n\nC = 3.0\n\n\ndef loss(x):\n    return f(x) * C\n",
        },
        "model.py:1",
        "the constant 'C' has one value in layers.py and another here",
    ),
    "recursion-across-modules": (
        {
            "layers.py": "from model import loss\n\n\ndef f(x):\n    return loss(x) * 2.0\n",
            "model.py": "from layers import f\n\n\ndef loss(x):\n    return f(x) * 2.0\n",
        },
        "model.py:4",
        "recursion is not supported",
    ),
    "syntax-error-in-layers": (
        {
            "layers.py": "def f(x):\n    return x *\n",
            "model.py": "from layers import f\n\n\ndef loss(x):\n    return f(x) * 2.0\n",
        },
        "layers.py:2",
        "",
    ),
    "module-not-found": (
        {"model.py": "from mylayers import f\n\n\ndef loss(x):\n    return f(x) * 2.0\n"},
        "model.py:5",
        "'f' is a function of the module 'mylayers', which gradgen cannot see into",
    ),
    "relative-module-not-found": (
        {"model.py": "from .mylayers import f\n\n\ndef loss(x):\n    return f(x) * 2.0\n"},
        "model.py:5",
        "'f' is imported from '.mylayers'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_located_and_write_nothing(project: Path, run: Run, case: str) -> None:
    files, where, message = REFUSALS[case]
    for name, text in files.items():
        write(project / name, text)
    before = snapshot(project)
    status, _, err = run("model.py", "-o", "model_backward.py")
    assert status == 123, err
    found = [m for m in map(DIAGNOSTIC.match, err.splitlines()) if m is not None]
    assert found, err
    first = found[0]
    assert f"{first['file']}:{first['line']}" == where, err
    assert first["message"].startswith(message) or message in first["message"], err
    assert snapshot(project) == before


def test_a_call_into_a_module_without_gradient_flowing_is_still_a_constant(
    project: Path, run: Run
) -> None:
    """Only a module gradgen can read is linked: a call into another with no gradient to
    pass stays a value computed as written (``gammaln(y + 1)`` of data ``y``)."""
    write(
        project / "model.py",
        "import numpy as np\nfrom scipy.special import gammaln\n\n\n"
        "def nll(beta, y):\n    return np.sum(beta * y - gammaln(y + 1))\n",
    )
    status, out, err = run("model.py", "--wrt", "nll=beta")
    assert status == 0, err
    assert "from scipy.special import gammaln" in out


def test_a_linked_function_computes_what_the_inlined_one_would(on_path: Path, run: Run) -> None:
    """The model's backward runs each layer's forward once per call, as the same code
    written in one module does."""
    project = on_path
    write(project / "layers.py", LAYERS)
    write(project / "model.py", model_source("from-import"))
    write(
        project / "flat.py",
        LAYERS + BODY.format(affine="affine", affine_relu="affine_relu", normalize="normalize"),
    )
    assert run("model.py", "-o", "model_backward.py")[0] == 0
    assert run("flat.py", "-o", "flat_backward.py")[0] == 0
    linked = (project / "model_backward.py").read_text(encoding="utf-8")
    flat = (project / "flat_backward.py").read_text(encoding="utf-8")
    # The same functions, the header and the flat module's unused backwards aside.
    linked_functions = set(_functions(linked))
    flat_functions = set(_functions(flat))
    assert linked_functions <= flat_functions
    for name in linked_functions:
        assert _functions(linked)[name] == _functions(flat)[name], name
    numpy_args = draw(SHAPES, "linked vs flat")
    a = run_module(linked, "model_backward.py")["loss_backward"](**numpy_args)
    b = run_module(flat, "flat_backward.py")["loss_backward"](**numpy_args)
    for x, y in zip(a, b, strict=True):
        numpy.testing.assert_array_equal(x, y)
    assert gradgen  # imported for the decorator tests


def _functions(text: str) -> dict[str, str]:
    from review_project import functions

    return functions(text)


def test_an_imported_module_whose_functions_are_not_called_is_not_read(
    project: Path, run: Run
) -> None:
    """``from data import load`` next to a loss that never calls ``load``: ``data.py`` may be
    anything (here, not even Python)."""
    write(project / "data.py", "def load(:\n")
    write(
        project / "model.py",
        "import numpy as np\nfrom data import load\n\n\ndef f(x):\n    return np.sum(x * x)\n",
    )
    status, _, err = run("model.py", "-o", "model_backward.py")
    assert status == 0, err


@pytest.mark.parametrize("where", ["subfolder", "elsewhere"])
def test_a_sibling_module_is_found_whatever_the_working_folder(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The forward file's own folder is searched, wherever gradgen runs; a refusal in the
    imported module is shown the way the forward file is (relative to the project)."""
    write(
        project / "x2" / "lay.py",
        "import numpy as np\n\n\ndef affine(x, w, b):\n    return x @ w + b\n",
    )
    write(
        project / "x2" / "top.py",
        "from lay import affine\n\n\ndef f(x, w, b):\n    return affine(x, w, b) * 2.0\n",
    )
    if where == "subfolder":
        monkeypatch.chdir(project / "x2")
        status, out, err = run("top.py")
    else:
        monkeypatch.chdir(project.parent)
        status, out, err = run(project / "x2" / "top.py")
    assert status == 0, err
    assert "def affine_forward(" in out
    write(
        project / "x2" / "lay.py",
        "def affine(x, w, b):\n    while x:\n        pass\n    return x\n",
    )
    status, _, err = run("top.py" if where == "subfolder" else project / "x2" / "top.py")
    assert status == 123
    (first,) = [m for m in map(DIAGNOSTIC.match, err.splitlines()) if m is not None]
    assert first["file"] == "x2/lay.py", err


def test_a_src_layout_package(project: Path, run: Run) -> None:
    """``src/nets/model.py`` importing ``from nets.layers import affine`` (the package's
    absolute name) and reading module data: the layers are found under the package's root
    (``src``), and the data is imported by the module's package name, ``nets.model``."""
    write(project / "src" / "nets" / "__init__.py", "")
    write(project / "src" / "nets" / "layers.py", "def affine(x, w, b):\n    return x @ w + b\n")
    write(
        project / "src" / "nets" / "model.py",
        "import numpy as np\nfrom nets.layers import affine\n\nW0 = np.ones(2)\n\n\n"
        "def loss(x, w, b):\n    return np.sum(affine(x, w, b) * W0)\n",
    )
    status, out, err = run("src/nets/model.py")
    assert status == 0, err
    assert "from nets.model import W0\n" in out
    assert "def affine_forward(" in out


@pytest.mark.parametrize(
    ("imports", "calls"),
    [
        ("from mypkg import layers", "layers.scale"),
        ("import mypkg.layers", "mypkg.layers.scale"),
        ("import mypkg.layers as L", "L.scale"),
        ("from mypkg.layers import scale", "scale"),
    ],
    ids=["from-package-import-module", "import-dotted", "import-dotted-as", "from-dotted"],
)
def test_a_module_of_a_package_however_imported(
    project: Path, run: Run, imports: str, calls: str
) -> None:
    write(project / "mypkg" / "__init__.py", "")
    write(project / "mypkg" / "layers.py", "def scale(x, w):\n    return x * w\n")
    write(project / "use.py", f"{imports}\n\n\ndef f(x, w):\n    return {calls}(x, w) * 3.0\n")
    status, out, err = run("use.py")
    assert status == 0, err
    namespace = run_module(out, "use_backward.py")
    assert namespace["f_backward"](2.0, 5.0) == (15.0, 6.0)
