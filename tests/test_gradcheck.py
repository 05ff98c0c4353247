"""The gradient check: ``gradgen check FORWARD.py`` (``gradgen.gradcheck.main``) and
``gradgen.testing.assert_gradients_match``.

Each command runs on copies in ``tmp_path``. A hand-broken backward is made the way a person
would break it: generate the backward of a forward file, change one statement of
``F_backward``, and check with ``--backward``; the check must fail and name the forward line
whose backward the changed statement belongs to.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import gradgen
from gradgen import gradcheck
from gradgen.cli import main as gradgen_main
from gradgen.config import is_skipped
from gradgen.parse import MAX_NESTING
from gradgen.testing import assert_gradients_match

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [p for p in sorted((ROOT / "examples").glob("*.py")) if not is_skipped(p)]
ROW = re.compile(
    r"^(?P<function>\w+) +(?P<parameter>\w+) +(?P<shape>.+?) +(?P<error>\S+) +"
    r"(?P<result>pass|FAIL|skip \(None\))$",
    re.MULTILINE,
)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv) -> (status, stdout, stderr)`` of ``gradgen check``; never a traceback."""

    def run_(*argv: str | Path) -> tuple[int, str, str]:
        status = gradcheck.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return status, out, err

    return run_


def copy_example(tmp_path: Path, stem: str) -> Path:
    path = tmp_path / f"{stem}.py"
    shutil.copy(ROOT / "examples" / f"{stem}.py", path)
    return path


def line_of(path: Path, statement: str) -> int:
    """The first 1-based line of ``path`` whose text starts with ``statement``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [n for n, line in enumerate(lines, 1) if line.strip().startswith(statement)]
    assert found, statement
    return found[0]


def broken(forward: Path, function: str, old: str, new: str, *, comments: bool = True) -> Path:
    """The backward gradgen writes for ``forward``, with the first line of
    ``{function}_backward`` that starts with ``old`` replaced by ``new`` (and, unless
    ``comments``, its ``# backprop`` comments removed): a hand-edited backward file."""
    lines = gradgen.generate(forward.read_text(encoding="utf-8"), forward.name).splitlines()
    start = lines.index(next(s for s in lines if s.startswith(f"def {function}_backward(")))
    end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("def ")), None)
    body = range(start, end or len(lines))
    target = next(k for k in body if lines[k].strip().startswith(old))
    indent = lines[target][: len(lines[target]) - len(lines[target].lstrip())]
    lines[target] = indent + new
    if not comments:
        lines = [s for s in lines if not s.strip().startswith("# backprop")]
    path = forward.with_name(f"{forward.stem}_backward_edited.py")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- the examples pass ---------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes(example: Path, run: Run) -> None:
    # In place: the project's mapping says what each is differentiated with respect to
    # (poisson_regression: beta), as `gradgen` generates it.
    status, out, err = run(example)
    assert status == 0, out + err
    rows = ROW.findall(out)
    assert rows, out
    assert all(row[4] in ("pass", "skip (None)") for row in rows), out
    assert "match central differences" in out or "matches central differences" in out


def test_every_function_and_parameter_is_in_the_table(tmp_path: Path, run: Run) -> None:
    path = copy_example(tmp_path, "losses")
    status, out, _ = run(path)
    assert status == 0
    rows = {(m["function"], m["parameter"]): m for m in ROW.finditer(out)}
    assert set(rows) >= {("softmax_loss", "x"), ("two_layer_net_loss", "reg")}
    # Labels are used only as indices: integers in range, not differentiated.
    label = rows["softmax_loss", "y"]
    assert label["result"] == "skip (None)"
    assert label["shape"].startswith("int (")
    assert rows["two_layer_net_loss", "reg"]["shape"] == "scalar"
    sizes = re.search(r"^softmax_loss: sizes N=(\d), C=(\d)$", out, re.MULTILINE)
    assert sizes is not None, out
    n, c = map(int, sizes.groups())
    assert rows["softmax_loss", "x"]["shape"] == f"({n}, {c})"


def test_lstm_gets_sizes_where_its_gates_fit(tmp_path: Path, run: Run) -> None:
    # a[:, 3 * H :] and the products after it only fit when G == 4 * H.
    status, out, _ = run(copy_example(tmp_path, "recurrent"), "--function", "lstm_step")
    assert status == 0, out
    sizes = dict(re.findall(r"(\w)=(\d+)", out.splitlines()[1]))
    assert int(sizes["G"]) == 4 * int(sizes["H"]), out


# --- a broken backward fails, at the right line --------------------------------------------------


def test_broken_adjoint_names_the_line_that_reads_the_variable(tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "staged")
    edited = broken(forward, "f", "dden =", "dden = (-1.0 / den) * dinvden")
    status, out, _ = run(forward, "--backward", edited)
    assert status == 1
    assert re.search(r"^f +x +scalar +\S+ +FAIL$", out, re.MULTILINE), out
    line = line_of(forward, "invden = 1.0 / den")
    assert f"{forward}:{line}: the adjoint of 'den' disagrees" in out
    assert out.count(f"{forward}:") == 1, out  # one line named, no other suspects


def test_forgotten_upstream_factor_is_caught(tmp_path: Path, run: Run) -> None:
    # With the upstream gradient 1.0 this change would be invisible: the check draws one.
    forward = copy_example(tmp_path, "staged")
    edited = broken(forward, "f", "dinvden =", "dinvden = num")
    status, out, _ = run(forward, "--backward", edited)
    assert status == 1
    line = line_of(forward, "f = num * invden")
    assert f"{forward}:{line}: the adjoint of 'invden' disagrees" in out


@pytest.mark.parametrize("comments", [True, False], ids=["comments", "no-comments"])
def test_of_several_readers_the_wrong_one_is_named(
    tmp_path: Path, run: Run, comments: bool
) -> None:
    # x is read by three statements; only the backward of `num = x + sigy` is changed.
    forward = copy_example(tmp_path, "staged")
    edited = broken(forward, "f", "dx += dnum", "dx += 2 * dnum", comments=comments)
    status, out, _ = run(forward, "--backward", edited)
    assert status == 1
    assert re.search(r"^f +y +scalar +\S+ +pass$", out, re.MULTILINE), out
    line = line_of(forward, "num = x + sigy")
    assert f"{forward}:{line}: the adjoint of 'x' disagrees" in out
    assert "also read here" not in out


def test_broken_array_backward(tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "normalization")
    lines = gradgen.generate(forward.read_text(encoding="utf-8")).splitlines()
    statement = next(s.strip() for s in lines if s.strip().startswith("divar = "))
    edited = broken(forward, "batchnorm_train", "divar =", f"{statement} * 1.5")
    status, out, _ = run(forward, "--backward", edited, "--function", "batchnorm_train")
    assert status == 1
    assert re.search(r"^batchnorm_train +x +\(\d, \d\) +\S+ +FAIL$", out, re.MULTILINE), out
    assert re.search(r"dx: max abs\. error \S+, max rel\. error \S+ at index \(\d, \d\)", out)
    line = line_of(forward, "xhat = xmu * ivar")
    assert f"{forward}:{line}: the adjoint of 'ivar' disagrees" in out


def test_rebound_name_is_shown_as_written(tmp_path: Path, run: Run) -> None:
    # compound.py binds h twice; gradgen calls the second binding h_2.
    forward = copy_example(tmp_path, "compound")
    lines = gradgen.generate(forward.read_text(encoding="utf-8")).splitlines()
    statement = next(s.strip() for s in lines if s.strip().startswith("dh_2 = "))
    edited = broken(forward, "layer", "dh_2 =", f"{statement} * 3")
    status, out, _ = run(forward, "--backward", edited)
    assert status == 1
    line = line_of(forward, "return np.sqrt(h + 1.0)")
    second = line_of(forward, "h = h * h")
    assert f"{forward}:{line}: the adjoint of 'h' (as bound at line {second}) disagrees" in out


def test_wrong_return_is_named(tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "staged")
    edited = broken(forward, "f", "return dx, dy", "return dy, dx")
    status, out, _ = run(forward, "--backward", edited)
    assert status == 1
    assert "the backward returns a wrong gradient for" in out
    assert f"{forward}:{line_of(forward, 'def f(')}:" in out


def test_backward_that_raises_is_named(tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "staged")
    edited = broken(forward, "f", "dden =", "dden = (-1.0 / den**2) * dinvden_typo")
    status, out, _ = run(forward, "--backward", edited)
    assert status == 1
    assert "ERROR" in out
    line = line_of(forward, "invden = 1.0 / den")
    assert f"{forward}:{line}: the backward of this line raised NameError" in out


def test_pairs_backward_is_checked_through_its_cache(tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "layers_basic")
    backward = tmp_path / "pairs.py"
    backward.write_text(gradgen.generate(forward.read_text(encoding="utf-8"), pairs=True))
    status, out, _ = run(forward, "--backward", backward)
    assert status == 0, out


def test_backward_without_the_function_fails(tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "staged")
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    status, out, _ = run(forward, "--backward", empty)
    assert status == 1
    assert "defines no f_backward" in out


# --- drawing arguments ---------------------------------------------------------------------------


def test_shapes_parsing() -> None:
    assert gradcheck.parse_shapes(["x=2,3", "N=4", "s=", "t=()", "u=N, 5"]) == {
        "x": (2, 3),
        "N": (4,),
        "s": (),
        "t": (),
        "u": ("N", 5),
    }
    for bad in ["x", "x=0", "x=2,-3", "1x=2", "x=2.5"]:
        with pytest.raises(gradcheck.UsageError):
            gradcheck.parse_shapes([bad])
    assert gradcheck.parse_ints(["y", "z=3", "k=C"]) == {"y": None, "z": 3, "k": "C"}
    with pytest.raises(gradcheck.UsageError):
        gradcheck.parse_ints(["y=0"])


def test_shapes_set_dimension_sizes_and_parameter_shapes(tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "layers_basic")
    status, out, _ = run(forward, "--function", "affine", "--shapes", "N=4", "D=3", "b=M")
    assert status == 0, out
    rows = {m["parameter"]: m["shape"] for m in ROW.finditer(out)}
    assert rows["x"] == "(4, 3)"
    assert rows["w"].startswith("(3, ")
    assert re.search(r"^affine: sizes N=4, D=3, M=\d$", out, re.MULTILINE), out


def test_shapes_override_annotations(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "f.py"
    forward.write_text("import numpy as np\n\n\ndef f(x, s):\n    return np.sum(x * x) * s\n")
    status, out, _ = run(forward, "--shapes", "x=2,5")
    assert status == 0, out
    rows = {m["parameter"]: m["shape"] for m in ROW.finditer(out)}
    # x as given; s, unannotated in array code, as a number and as arrays too.
    assert rows == {"x": "(2, 5)", "s": "scalar, (3,), (2, 3)"}


def test_ints_option(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "pick.py"
    forward.write_text(
        'import numpy as np\n\n\ndef pick(x: "N, C", k):\n    row = x[k]\n'
        "    return np.sum(row * row)\n"
    )
    # k's gradient slot is None: an integer already; --ints bounds it.
    status, out, _ = run(forward, "--ints", "k=N")
    assert status == 0, out
    rows = {m["parameter"]: m for m in ROW.finditer(out)}
    assert rows["k"]["result"] == "skip (None)"
    assert rows["k"]["shape"] == "int"


def test_values_are_drawn_where_the_forward_is_defined(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "domain.py"
    forward.write_text(
        "import math\n\n\ndef f(x, y):\n    r = math.sqrt(x)\n    return math.log(y) * r\n"
    )
    status, out, _ = run(forward)
    assert status == 0, out


def test_forward_that_never_runs_is_an_error(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "mismatch.py"
    forward.write_text(
        'import numpy as np\n\n\ndef f(x: "N, 3", w: "4"):\n    return np.sum(x @ w)\n'
    )
    status, out, _ = run(forward)
    assert status == 1
    assert "does not run on random arguments" in out
    assert "--shapes" in out


def test_a_gradient_zero_everywhere_is_reported(tmp_path: Path, run: Run) -> None:
    # Far past the kink of every ReLU, central differences are 0 whatever the backward says:
    # the check must say that it proved little.
    forward = tmp_path / "dead.py"
    forward.write_text(
        'import numpy as np\n\n\ndef f(x: "N"):\n    h = np.maximum(0, x - 50.0)\n'
        "    return np.sum(h)\n"
    )
    status, out, _ = run(forward)
    assert status == 0
    assert "zero everywhere" in out


# --- unannotated parameters of array code: numbers and small arrays ----------------------------

NUMPY = "import numpy as np\n\n\n"
ONLY_NUMBERS = "only numbers were tried for"
NUMBERS_ONLY = "only: "  # "a was checked as a number only: ...", "... as numbers only: ..."


@pytest.mark.parametrize(
    ("source", "options", "shapes", "note"),
    [
        pytest.param(
            NUMPY + "def f(a, b):\n    return np.sum(a * np.exp(b))\n",
            [],
            {"a": "scalar, (3,), (2, 3)", "b": "scalar, (3,), (2, 3)"},
            "",
            id="array-code-numbers-and-arrays",
        ),
        pytest.param(
            NUMPY + "def f(x):\n    return np.sum(np.tanh(x), axis=-1)\n",
            [],
            {"x": "scalar, (3,), (2, 3)"},
            "",
            id="a-reduction-over-an-axis-of-a-number",
        ),
        pytest.param(
            NUMPY + "def f(a):\n    return np.sum(a[0] * a)\n",
            [],
            {"a": "(3,), (2, 3)"},
            "",
            id="forward-of-arrays-only",
        ),
        pytest.param(
            "import math\n\n\ndef f(a, b):\n    return a * math.exp(b)\n",
            [],
            {"a": "scalar", "b": "scalar"},
            f"f: note: {ONLY_NUMBERS} a, b (f is scalar code: the module does not import numpy",
            id="math-module",
        ),
        pytest.param(
            "import math\n\nimport numpy as np\n\n\ndef f(a, b):\n"
            "    return math.exp(a) * math.exp(b)\n",
            [],
            {"a": "scalar", "b": "scalar"},
            f"f: note: {ONLY_NUMBERS} a, b (f is scalar code: the module does not import numpy, "
            "or its code uses them as numbers)",
            id="forward-of-numbers-only",
        ),
        pytest.param(
            NUMPY + 'def f(a: "3", b):\n    return np.sum(a * b)\n',
            [],
            {"a": "(3,)", "b": "scalar, (3,), (2, 3)"},
            "",
            id="annotation-used-as-given",
        ),
        pytest.param(
            NUMPY + "def f(a, b):\n    return np.sum(a * b)\n",
            ["--shapes", "a=2,3", "b="],
            {"a": "(2, 3)", "b": "scalar"},
            "",
            id="shapes-option-used-as-given",
        ),
    ],
)
def test_shapes_tried_for_unannotated_parameters(
    source: str, options: list[str], shapes: dict[str, str], note: str, tmp_path: Path, run: Run
) -> None:
    forward = tmp_path / "forward.py"
    forward.write_text(source)
    status, out, _ = run(forward, *options)
    assert status == 0, out
    assert {m["parameter"]: m["shape"] for m in ROW.finditer(out)} == shapes, out
    if note:
        assert note in out, out
        assert 'annotations such as x: "N, D", or --shapes x=2,3' in out, out
    else:
        assert ONLY_NUMBERS not in out and NUMBERS_ONLY not in out, out
    if "numpy" in source and "scalar code" not in note:  # arrays were tried
        assert ONLY_NUMBERS not in out, out


SCALAR_MINDED_FORWARD = """\
from numpy import exp, mean


def f(a, b):
    c = a * exp(b)
    return mean(c)
"""

# The backward of f as if a and b were numbers: right for numbers, and for arrays of one
# shape, but da and db are not summed back where a number was broadcast against an array.
SCALAR_MINDED_BACKWARD = """\
import numpy
from numpy import exp


def f_backward(a, b, dout=1.0):
    c_exp = exp(b)
    c = a * c_exp
    dc = numpy.full_like(c, dout / numpy.size(c))
    da = c_exp * dc
    dc_exp = a * dc
    db = c_exp * dc_exp
    return da, db
"""


def test_a_broadcasting_bug_is_caught(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "forward.py"
    forward.write_text(SCALAR_MINDED_FORWARD)
    backward = tmp_path / "backward.py"
    backward.write_text(SCALAR_MINDED_BACKWARD)
    status, out, _ = run(forward, "--backward", backward)
    assert status == 1, out
    assert re.search(r"^f +a +scalar, \(3,\), \(2, 3\) +inf +FAIL$", out, re.MULTILINE), out
    assert "f: with a: scalar, b: (3,)\n" in out
    assert "f: da: shape (3,), but the parameter has shape ()" in out


def test_shapes_tried_are_the_same_for_a_seed(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "forward.py"
    forward.write_text(NUMPY + "def f(a, b, c):\n    return np.sum(a * np.tanh(b) - c)\n")
    first = run(forward, "--seed", "7")
    assert first[0] == 0, first[1]
    assert run(forward, "--seed", "7") == first


# --- shapes that do not fit: skipped, and said so plainly ----------------------------------------

# A user's softmax: of a number it is the constant 1, so the gradient is zero at the numbers
# tried; at the arrays tried it is not.
SOFTMAX = (
    NUMPY
    + """\
def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
"""
)

# A user's 2-D affine layer: no shapes the check guesses fit it (x.shape of a number, dot
# products that do not align), and at x: (3,), w: scalar, b: (3,) the forward runs, but
# np.dot of a number is not differentiated: its backward refuses.
AFFINE = (
    NUMPY
    + """\
def affine_forward(x, w, b):
    N = x.shape[0]
    out = x.reshape(N, -1).dot(w) + b
    return out
"""
)

ZERO_EVERYWHERE = "zero everywhere"


@pytest.mark.parametrize("seed", ["0", "1", "2"])
def test_a_gradient_zero_at_some_shapes_only_is_not_zero_everywhere(
    seed: str, tmp_path: Path, run: Run
) -> None:
    forward = tmp_path / "softmax.py"
    forward.write_text(SOFTMAX)
    status, out, _ = run(forward, "--seed", seed)
    assert status == 0, out
    assert {m["parameter"]: m["shape"] for m in ROW.finditer(out)} == {
        "x": "scalar, (3,), (2, 3)"
    }, out
    assert ZERO_EVERYWHERE not in out and "--seed" not in out, out


def test_a_gradient_zero_at_every_shape_tried_is_reported(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "dead.py"
    forward.write_text(NUMPY + "def f(x):\n    return np.sum(np.maximum(0, x - 50.0))\n")
    status, out, _ = run(forward)
    assert status == 0, out
    assert (
        "f: note: central differences of x are zero everywhere at the drawn arguments at every "
        "shape tried, so that check says little; try another --seed"
    ) in out, out


def test_no_shapes_tried_fit_is_said_plainly(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "affine.py"
    forward.write_text(AFFINE)
    status, out, _ = run(forward)
    assert status == 1, out
    assert re.search(r"^affine_forward +- +- +- +ERROR$", out, re.MULTILINE), out
    error = next(s for s in out.splitlines() if s.startswith("affine_forward: error: "))
    assert error.startswith(
        "affine_forward: error: none of the 9 sets of shapes tried for x, w, b (numbers, (3,) "
        "and (2, 3) arrays, and mixes of them) fits affine_forward, so nothing was checked: "
        "at 8 sets affine_forward does not run (AttributeError: 'float' object has no "
        "attribute 'shape'; "
    ), out
    assert (
        "and at 1 set (x: (3,), w: scalar, b: (3,)) it runs, but its backward refuses "
        "(ValueError: gradgen: np.dot is differentiated for 1-D and 2-D arrays; use @); give "
        'shapes: annotations such as x: "N, D", or --shapes x=2,3'
    ) in error, out
    # Nothing contradicts it: no failure at some shapes, no "only numbers" note.
    assert "with x:" not in out and "note:" not in out, out
    # Given, the shapes fit.
    status, out, _ = run(forward, "--shapes", "x=4,3", "w=3,2", "b=2")
    assert status == 0, out


def test_a_backward_refusal_at_shapes_guessed_is_skipped(tmp_path: Path, run: Run) -> None:
    # np.dot of a number (the numbers tried, and a number among vectors) is refused; the
    # shapes where both are arrays are checked.
    forward = tmp_path / "dot.py"
    forward.write_text(NUMPY + "def f(a, b):\n    return np.sum(np.dot(a, b))\n")
    status, out, _ = run(forward)
    assert status == 0, out
    assert {m["parameter"]: m["shape"] for m in ROW.finditer(out)} == {
        "a": "(3,), (2, 3)",
        "b": "(3,)",
    }, out
    assert "note:" not in out, out


@pytest.mark.parametrize(
    ("signature", "options"),
    [
        pytest.param('def f(a: "3", b: float):', [], id="annotations"),
        pytest.param("def f(a, b):", ["--shapes", "a=3", "b="], id="shapes-option"),
    ],
)
def test_a_backward_refusal_at_shapes_given_is_an_error(
    signature: str, options: list[str], tmp_path: Path, run: Run
) -> None:
    forward = tmp_path / "dot.py"
    forward.write_text(NUMPY + f"{signature}\n    return np.sum(np.dot(a, b))\n")
    status, out, _ = run(forward, *options)
    assert status == 1, out
    assert "f: error: its backward raised ValueError: gradgen: np.dot is differentiated" in out
    assert f"{forward}:5: the backward of this line raised ValueError" in out, out


IMPOSTOR_BACKWARD = """\
import numpy as np


def f_backward(a, b, dout=1.0):
    if np.ndim(b) == 0:
        raise ValueError("gradgen: np.dot is differentiated for 1-D and 2-D arrays; use @")
    return dout * b, dout * a
"""

REFUSING_BACKWARD = """\
import numpy as np


def _dot_ranks(x, y):
    if not (1 <= np.ndim(x) <= 2 and 1 <= np.ndim(y) <= 2):
        raise ValueError("gradgen: np.dot is differentiated for 1-D and 2-D arrays; use @")


def _sum_to(grad, like):
    return np.sum(grad, axis=tuple(range(np.ndim(grad) - np.ndim(like))))


def f_backward(a, b, dout=1.0):
    _dot_ranks(a, b)
    return _sum_to(dout * b, a), _sum_to(dout * a, b)
"""


@pytest.mark.parametrize(
    ("backward", "status"),
    [
        pytest.param(IMPOSTOR_BACKWARD, 1, id="same-words-raised-elsewhere-is-an-error"),
        pytest.param(REFUSING_BACKWARD, 0, id="the-helper-refusing-is-skipped"),
    ],
)
def test_only_gradgens_refusal_is_skipped(
    backward: str, status: int, tmp_path: Path, run: Run
) -> None:
    forward = tmp_path / "forward.py"
    forward.write_text(NUMPY + "def f(a, b):\n    return a * b\n")
    path = tmp_path / "backward.py"
    path.write_text(backward)
    found, out, _ = run(forward, "--backward", path)
    assert found == status, out
    if status:
        assert "f: error: its backward raised ValueError: gradgen: np.dot" in out, out
        assert "f: with a: scalar, b: scalar" in out, out
    else:
        assert {m["parameter"]: m["shape"] for m in ROW.finditer(out)} == {
            "a": "(3,), (2, 3)",
            "b": "(3,), (2, 3)",
        }, out


def test_refusal_is_the_helpers_raise_only() -> None:
    from gradgen.gradcheck.instrument import Backward
    from gradgen.gradcheck.run import refusal

    namespace: dict[str, object] = {}
    exec(compile(gradgen.generate(AFFINE), "<affine backward>", "exec"), namespace)
    backward = namespace["affine_forward_backward"]
    assert callable(backward)
    x, b = np.ones(3), np.ones(3)
    with pytest.raises(ValueError, match=r"gradgen: np\.dot") as raised:
        backward(x, 2.0, b, np.ones((3, 3)))
    message = "ValueError: gradgen: np.dot is differentiated for 1-D and 2-D arrays; use @"
    assert refusal(raised.value, Backward(backward, "<affine backward>")) == message
    # From another module, or another function, it is no refusal.
    assert refusal(raised.value, Backward(backward, "<another module>")) is None
    try:
        raise ValueError(str(raised.value))
    except ValueError as elsewhere:
        assert refusal(elsewhere, Backward(backward, __file__)) is None


def test_a_check_that_stops_early_says_why_only_numbers_were_checked(
    tmp_path: Path, run: Run
) -> None:
    forward = tmp_path / "forward.py"
    forward.write_text(NUMPY + "def f(a):\n    return np.sum(a * a)\n")
    backward = tmp_path / "backward.py"
    backward.write_text("def f_backward(a, dout=1.0):\n    return 2.5 * a * dout\n")
    status, out, _ = run(forward, "--backward", backward)
    assert status == 1, out
    assert (
        "f: note: a was checked as a number only: the check stops at the first shapes that "
        "fail, before it was tried as an array"
    ) in out, out


@pytest.mark.parametrize("source", [SOFTMAX, AFFINE], ids=["softmax", "affine"])
def test_skipped_shapes_are_the_same_for_a_seed(source: str, tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "forward.py"
    forward.write_text(source)
    first = run(forward, "--seed", "3")
    assert run(forward, "--seed", "3") == first


# --- deep expressions: the check takes what gradgen takes ----------------------------------------

DEEP_TERMS = 600


@pytest.mark.parametrize(
    ("expression", "status"),
    [
        pytest.param(" + ".join(["x"] * DEEP_TERMS), 0, id="sum-of-600-terms"),
        pytest.param(
            " + ".join(f"x * {k}.0" for k in range(1, DEEP_TERMS + 1)), 0, id="weighted-600-terms"
        ),
        pytest.param(" + ".join(["x"] * (MAX_NESTING + 1)), 123, id="too-deep-refused"),
    ],
)
def test_check_takes_a_deep_expression_as_gradgen_does(
    expression: str,
    status: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.py").write_text(f"def f(x):\n    return {expression}\n")
    assert gradgen_main(["deep.py"]) == status
    generated = capsys.readouterr()
    assert gradgen_main(["check", "deep.py"]) == status
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if status == 0:
        assert "the gradient matches central differences" in out, out + err
    else:
        assert err.startswith("deep.py:2:12: error: expression nested too deeply"), err
        assert err == generated.err  # refused as gradgen refuses it


def test_wrong_backward_of_a_deep_expression_is_named(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "deep.py"
    forward.write_text(f"def f(x):\n    return {' + '.join(['x'] * DEEP_TERMS)}\n")
    backward = tmp_path / "wrong.py"
    backward.write_text(
        f"def f_backward(x, dout=1.0):\n    dx = {DEEP_TERMS - 1}.0 * dout\n    return dx\n"
    )
    status, out, _ = run(forward, "--backward", backward)
    assert status == 1, out
    assert f"{forward}:2: the adjoint of 'x' disagrees" in out, out


# --- forward files in packages --------------------------------------------------------------------

LAYERS = "import numpy as np\n\n\ndef affine(x, w, b):\n    return x @ w + b\n"
PACKAGE_SHAPES = ["--shapes", "x=3,4", "w=4,2", "b=2"]


def package_project(root: Path, imports: str, init: str = "") -> Path:
    """A src layout, ``src/nets/{__init__,layers,model}.py``, ``model_loss`` calling
    ``affine`` as ``imports`` brings it in (and reading module data); ``model.py``."""
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    package = root / "src" / "nets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(init)
    (package / "layers.py").write_text(LAYERS)
    call = "layers.affine" if "import layers" in imports else "affine"
    model = package / "model.py"
    model.write_text(
        f"import numpy as np\n\n{imports}\n\nSCALE = 0.5\nprint('loading', __name__)\n\n\n"
        f"def model_loss(x, w, b):\n    return np.sum({call}(x, w, b) ** 2) * SCALE\n"
    )
    return model


def package_modules() -> set[str]:
    return {name for name in sys.modules if name == "nets" or name.startswith("nets.")}


@pytest.mark.parametrize(
    "imports",
    [
        "from .layers import affine",
        "from . import layers",
        "from layers import affine",  # the folder is first on sys.path, as for a script
    ],
)
def test_a_module_of_a_package_runs_as_one(
    imports: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    package_project(tmp_path, imports)
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    try:
        status, out, err = run("src/nets/model.py", "--function", "model_loss", *PACKAGE_SHAPES)
        assert status == 0, out + err
        assert "all 3 gradients match" in out
        assert "loading nets.model" in out  # its name in its package, as Python imports it
        assert not package_modules()  # the package is not left imported
    finally:
        for name in set(sys.modules) - before:  # the plain sibling import stays, as for a script
            del sys.modules[name]


def test_the_package_is_imported_once_and_put_back_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    """A package of that name imported already (another copy, an installed one) does not
    answer the relative imports, and is there again afterwards; a package whose
    ``__init__.py`` imports the module runs it once."""
    model = package_project(tmp_path, "from .layers import affine", init="from .model import *\n")
    elsewhere = ModuleType("nets")
    elsewhere.__path__ = [str(tmp_path / "elsewhere")]
    monkeypatch.setitem(sys.modules, "nets", elsewhere)
    status, out, err = run(model, *PACKAGE_SHAPES)
    assert status == 0, out + err
    assert out.count("loading nets.model") == 1
    assert sys.modules["nets"] is elsewhere
    assert package_modules() == {"nets"}


def test_a_package_init_runs_as_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    model = package_project(tmp_path, "from .layers import affine")
    init = model.with_name("__init__.py")
    init.write_text(
        model.read_text().replace("model_loss", "package_loss").replace("nets.model", "nets")
    )
    monkeypatch.chdir(tmp_path)
    status, out, err = run("src/nets/__init__.py", *PACKAGE_SHAPES)
    assert status == 0, out + err
    assert "all 3 gradients match" in out
    assert not package_modules()


def test_a_package_that_fails_to_import_is_reported(tmp_path: Path, run: Run) -> None:
    model = package_project(tmp_path, "from .layers import affine", init="import no_such_module\n")
    status, _, err = run(model, *PACKAGE_SHAPES)
    assert status == 1
    assert f"{model}: error: loading it raised ModuleNotFoundError" in err
    assert not package_modules()


# --- usage and refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--no-such-option"],
        ["{dir}/missing.py"],
        ["{forward}", "--function", "nope"],
        ["{forward}", "--shapes", "x"],
        ["{forward}", "--shapes", "Q=3"],
        ["{forward}", "--ints", "nope"],
        ["{forward}", "--rtol", "0"],
        ["{forward}", "--backward", "{dir}/missing.py"],
    ],
    ids=[
        "no-file",
        "unknown-option",
        "missing-file",
        "unknown-function",
        "bad-shapes",
        "unknown-shape-name",
        "unknown-ints-name",
        "zero-rtol",
        "missing-backward",
    ],
)
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path, run: Run) -> None:
    forward = copy_example(tmp_path, "staged")
    status, out, err = run(*[a.format(dir=tmp_path, forward=forward) for a in argv])
    assert status == 2
    assert "usage: gradgen check" in err
    assert "gradient" not in out


def test_refused_file_exits_123_with_diagnostics(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "bad.py"
    forward.write_text("def f(x):\n    y = 0.0\n    while True:\n        y = y + x\n    return y\n")
    status, out, err = run(forward)
    assert status == 123
    assert f"{forward}:3:11: error: this 'while' never ends" in err
    assert "        while True:\n              ^" in err
    assert out == ""


def test_help_exits_0(run: Run) -> None:
    status, out, _ = run("--help")
    assert status == 0
    assert "RUNS the forward code" in " ".join(out.split())


def test_cli_dispatches_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forward = copy_example(tmp_path, "add_mul")
    assert gradgen_main(["check", str(forward)]) == 0
    assert "all 3 gradients match" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_check_subcommand_wins_over_a_path_named_check(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = copy_example(tmp_path, "add_mul")
    if kind == "folder":
        (tmp_path / "check").mkdir()
        shutil.copy(forward, tmp_path / "check" / "add_mul.py")
    else:
        shutil.copy(forward, tmp_path / "check")

    assert gradgen_main(["check", "add_mul.py"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("gradgen check add_mul.py (seed 0"), out + err
    assert "all 3 gradients match" in out

    # The path is spelled as a path.
    if kind == "folder":
        assert gradgen_main(["./check", "-o", "out", "-q"]) == 0
        assert "def f_backward(" in (tmp_path / "out" / "add_mul.py").read_text()
    else:
        assert gradgen_main(["./check"]) == 0
        assert "def f_backward(" in capsys.readouterr().out


# --- assert_gradients_match ----------------------------------------------------------------------

_modules = itertools.count()


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """``load(source) -> module``, from a file of its own (the decorator reads source)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def load_(source: str) -> ModuleType:
        name = f"gradcheck_module_{next(_modules)}"
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load_


MODULE = """\
import math

import numpy as np

import gradgen


@gradgen.differentiable
def f(x, y):
    q = x + y
    h = math.tanh(q)
    return h * y


@gradgen.differentiable
def layer(x: "N, D", w: "D, M", b: "M"):
    z = x @ w + b
    a = np.tanh(z)
    return a


def plain(x: "N, C", y: "N"):
    N = x.shape[0]
    picked = x[np.arange(N), y]
    return np.sum(picked * picked)


@gradgen.differentiable(pairs=True)
def paired(x: "N, D", w: "D"):
    z = x @ w
    return np.sum(z * z)


def f_backward_wrong(x, y, dout=1.0):
    q = x + y
    h = math.tanh(q)
    dh = y * dout
    dy = h * dout
    dq = (1 - h) * dh
    dx = dq
    dy += dq
    return dx, dy


def f_backward_without_upstream(x, y, dout=1.0):
    q = x + y
    h = math.tanh(q)
    dq = (1 - h**2) * y
    return dq, dq + h
"""


def test_assert_gradients_match_passes(load: Callable[[str], ModuleType]) -> None:
    module = load(MODULE)
    rng = np.random.default_rng(0)
    assert_gradients_match(module.f, 0.3, -0.7)
    x, w, b = rng.normal(size=(3, 2)), rng.normal(size=(2, 4)), rng.normal(size=4)
    assert_gradients_match(module.layer, x, w, b)
    assert_gradients_match(module.layer, x, w, b, upstream=rng.normal(size=(3, 4)))
    assert_gradients_match(module.layer, x.astype(np.float32), w, b)  # compared in float64
    # A plain function: its backward is generated now; labels get no gradient.
    assert_gradients_match(module.plain, rng.normal(size=(3, 4)), np.array([0, 3, 3]))
    assert_gradients_match(module.paired, x, rng.normal(size=2))


def test_assert_gradients_match_names_what_is_wrong(load: Callable[[str], ModuleType]) -> None:
    module = load(MODULE)
    with pytest.raises(AssertionError) as info:
        assert_gradients_match(module.f, 0.3, -0.7, backward=module.f_backward_wrong)
    message = str(info.value)
    assert "the gradients of f do not match central differences" in message
    assert re.search(r"dx: max abs\. error \S+, max rel\. error \S+: the backward gives", message)
    assert "central differences" in message
    assert module.__file__ is not None
    path = Path(module.__file__)
    line = line_of(path, "h = math.tanh(q)")
    assert f"{path}:{line}: the adjoint of 'q' disagrees" in message


def test_assert_gradients_match_catches_a_missing_upstream(
    load: Callable[[str], ModuleType],
) -> None:
    module = load(MODULE)
    # Right at the upstream 1.0 only.
    assert_gradients_match(
        module.f, 0.3, -0.7, backward=module.f_backward_without_upstream, upstream=1.0
    )
    with pytest.raises(AssertionError):
        assert_gradients_match(module.f, 0.3, -0.7, backward=module.f_backward_without_upstream)


def test_assert_gradients_match_reports_the_worst_entry(load: Callable[[str], ModuleType]) -> None:
    module = load(MODULE)

    def wrong(x, w, b, dout):  # type: ignore[no-untyped-def]
        dx, dw, db = module.layer.backward(x, w, b, dout)
        dw = dw.copy()
        dw[1, 2] += 0.5
        return dx, dw, db

    rng = np.random.default_rng(1)
    args = rng.normal(size=(3, 2)), rng.normal(size=(2, 4)), rng.normal(size=4)
    with pytest.raises(AssertionError) as info:
        assert_gradients_match(module.layer, *args, backward=wrong)
    message = str(info.value)
    assert "dw: max abs. error 0.5" in message
    assert "at index (1, 2)" in message
    assert "dx:" not in message and "db:" not in message


def test_assert_gradients_match_takes_a_deep_expression(
    load: Callable[[str], ModuleType],
) -> None:
    module = load(
        f"def f(x):\n    return {' + '.join(['x'] * DEEP_TERMS)}\n\n\n"
        f"def wrong(x, dout=1.0):\n    dx = {DEEP_TERMS - 1}.0 * dout\n    return dx\n"
    )
    assert_gradients_match(module.f, 0.5)  # its backward generated now
    with pytest.raises(AssertionError) as info:
        assert_gradients_match(module.f, 0.5, backward=module.wrong)
    assert f"{module.__file__}:2: the adjoint of 'x' disagrees" in str(info.value)


def test_assert_gradients_match_hides_its_frames() -> None:
    assert "__tracebackhide__" in assert_gradients_match.__code__.co_varnames


def test_testing_needs_no_generator_for_a_function_with_a_backward(tmp_path: Path) -> None:
    """Checking a function that has its backward imports neither libcst nor black, and
    works (without naming lines) where they cannot be imported."""
    script = textwrap.dedent("""
        import sys
        from gradgen.testing import assert_gradients_match

        def f(x, y):
            return x * y * y

        def backward(x, y, dout=1.0):
            return y * y * dout, 2 * x * y * dout

        f.backward = backward
        assert_gradients_match(f, 0.5, -1.5)
        print("light:", "libcst" not in sys.modules and "black" not in sys.modules)
        sys.modules["libcst"] = None  # importing it now raises ImportError
        sys.modules["black"] = None
        f.backward = lambda x, y, dout=1.0: (y * dout, x * dout)
        try:
            assert_gradients_match(f, 0.5, -1.5)
        except AssertionError as error:
            print("caught:", str(error).splitlines()[0])
        """)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "light: True" in completed.stdout
    assert "caught: the gradients of f do not match" in completed.stdout


def test_every_side_of_a_branch_on_a_flag_or_a_string_is_checked(tmp_path: Path, run: Run) -> None:
    """A backward wrong only where ``use_bias`` is False fails the check, which tries the
    flag both ways and the string at each value it is compared with."""
    forward = copy_example(tmp_path, "branches")
    status, out, _ = run(forward, "--function", "dense")
    assert status == 0, out
    assert "True, False" in out
    assert "'tanh', 'relu'" in out
    edited = broken(forward, "dense", "db = np.zeros_like", "db = np.ones_like(b)")
    status, out, _ = run(forward, "--backward", edited, "--function", "dense")
    assert status == 1, out
    assert "use_bias: False" in out


def test_a_parameter_tested_against_none_and_the_else_of_a_string_are_checked(
    tmp_path: Path, run: Run
) -> None:
    """``mask=None`` tested with ``is not None`` is checked drawn and as None; a string is
    also checked at one equal to none it is compared with (the ``else`` side)."""
    forward = tmp_path / "optional.py"
    forward.write_text(
        "import numpy as np\n\n\n"
        'def f(x: "3", mask: "3" = None, mode: str = "a"):\n'
        "    h = np.tanh(x)\n    if mask is not None:\n        h = h * mask\n"
        '    if mode == "a":\n        h = h * 2.0\n    else:\n        h = h * 3.0\n'
        "    return np.sum(h)\n",
        encoding="utf-8",
    )
    status, out, _ = run(forward)
    assert status == 0, out
    assert "(3,), None" in out
    assert "'a', 'other'" in out


def test_a_list_of_layers_is_checked_array_by_array(tmp_path: Path, run: Run) -> None:
    """``for W, b in layers:`` with ``layers: [("D, H", "H"), ...]``: each layer's arrays
    are drawn at their shapes and checked; a backward wrong in one layer's bias fails."""
    forward = copy_example(tmp_path, "two_layer_params")
    status, out, _ = run(forward, "--function", "mlp_over_layers")
    assert status == 0, out
    assert "layers[1][1]" in out
    edited = broken(
        forward, "mlp_over_layers", "dlayers[i] = [dW, db]", "dlayers[i] = [dW, 2.0 * db]"
    )
    status, out, _ = run(forward, "--backward", edited, "--function", "mlp_over_layers")
    assert status == 1, out
    assert "layers[0][1]" in out and "FAIL" in out


def test_a_list_of_layers_with_no_shapes_asks_for_them(tmp_path: Path, run: Run) -> None:
    forward = tmp_path / "layers.py"
    forward.write_text(
        "import numpy as np\n\n\ndef net(x, layers):\n    h = x\n"
        "    for W, b in layers:\n        h = np.tanh(h @ W + b)\n    return np.sum(h)\n",
        encoding="utf-8",
    )
    status, out, _ = run(forward)
    assert status == 1, out
    assert 'layers: [("D, H", "H"), ("H, C", "C")]' in out


def test_dimensions_made_of_names_are_sized_from_them(tmp_path: Path, run: Run) -> None:
    """``C*H*W`` is the product of C, H and W, and ``4H`` four times H: drawn apart, the
    forward would not run on the arguments (or, worse, run on shapes that disagree)."""
    forward = tmp_path / "fc.py"
    forward.write_text(
        "import numpy as np\n\n\n"
        'def fc(x: "N, C, H, W", w: "C*H*W, K", g: "N, 4K"):\n'
        "    N = x.shape[0]\n"
        "    s = x.reshape(N, -1) @ w\n"
        "    K = w.shape[1]\n"
        "    return np.sum(np.maximum(s, 0) ** 2 * g[:, 3 * K :])\n"
    )
    status, out, _ = run(forward)
    assert status == 0, out
    assert "all 3 gradients match" in out, out
