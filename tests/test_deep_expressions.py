"""Scale: deep and long expressions are handled, or refused where they are too deep, at their
line and column; a thousand functions are no problem.

Run the command line as users do: each test works in its own ``tmp_path`` holding a
``pyproject.toml`` (the project root) and runs ``gradgen.cli.main``.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

import gradgen
import gradgen.api
import gradgen.cli
import gradgen.format
from cli_project import Run, write
from gradgen.api import with_headroom
from gradgen.errors import GradgenError
from gradgen.format import check_module
from gradgen.parse import MAX_NESTING

# --- scale ---------------------------------------------------------------------------------

DEPTH = 500


def _nested(prefix: str, middle: str, suffix: str, depth: int) -> str:
    return prefix * depth + middle + suffix * depth


DEEP = [
    pytest.param(" + ".join(["x"] * DEPTH), "", id="sum-500-terms"),
    pytest.param(" - ".join(["x"] * DEPTH), "", id="difference-500-terms"),
    pytest.param(" * ".join(["x"] * DEPTH), "", id="product-500-terms"),
    pytest.param(" / ".join(["x"] * DEPTH), "", id="quotient-500-terms"),
    pytest.param(" ** ".join(["x"] * DEPTH), "", id="power-tower-500"),
    pytest.param("-" * DEPTH + "x", "", id="minus-500-deep"),
    pytest.param(
        " + ".join(f"math.tanh(x * {i}.0)" for i in range(DEPTH // 3)), "", id="sum-of-calls"
    ),
    pytest.param(_nested("(", "x", " + 1)", 199), "", id="parentheses-199-deep"),
    pytest.param(_nested("-(", "x", ")", 199), "", id="negation-199-deep"),
    pytest.param(_nested("math.tanh(", "x", ")", 199), "", id="calls-199-deep"),
    pytest.param(_nested("np.tanh(", "x", ")", 199), "numpy", id="numpy-calls-199-deep"),
    pytest.param("np.sum(x" + ".T" * DEPTH + ")", "numpy", id="attributes-500-deep"),
    pytest.param("x * (" + " + ".join(["1.0"] * DEPTH) + ")", "", id="constant-500-terms"),
    pytest.param("x * (" + " + ".join(["x"] * (DEPTH - 4)) + " > 0)", "numpy", id="mask-500-terms"),
]


@pytest.mark.parametrize("expression, library", DEEP)
def test_deep_and_long_expressions_are_handled(expression: str, library: str) -> None:
    imports = "import numpy as np\n" if library else "import math\n"
    source = f"{imports}\n\ndef f(x):\n    y = {expression}\n    return y\n"
    output = gradgen.generate(source, "deep.py")
    check_module(output, "deep_backward.py")  # compiles, and black leaves it as it is
    assert "def f_backward(x, " in output
    paired = gradgen.generate(source, "deep.py", pairs=True)
    compile(paired, "deep_backward.py", "exec")
    assert "def f_backward(dy, cache):" in paired


def test_deep_module_constant_and_default() -> None:
    source = (
        f"C = {' + '.join(['1.0'] * DEPTH)}\n\n\n"
        f"def f(x, a={'-' * DEPTH}1.0):\n    return x * C * a\n"
    )
    check_module(gradgen.generate(source, "deep.py"), "deep_backward.py")


def test_deep_expression_from_the_command_line(project: Path, run: Run) -> None:
    write(project / "deep.py", f"def f(x):\n    y = {' + '.join(['x'] * DEPTH)}\n    return y\n")
    status, _, err = run("deep.py", "-o", "out.py")
    assert status == 0, err
    assert "dx = " in (project / "out.py").read_text()


def test_deep_expression_with_a_refusal_inside_is_placed(project: Path, run: Run) -> None:
    terms = " + ".join(["x"] * (DEPTH - 1))
    write(project / "deep.py", f"def f(x):\n    y = {terms} + foo(x)\n    return y\n")
    status, _, err = run("deep.py")
    assert status == 123
    assert err.startswith(f"deep.py:2:{9 + len(terms) + 3}: error: undefined name 'foo'")


def test_more_than_200_nested_parentheses_are_refused_as_python_does(
    project: Path, run: Run
) -> None:
    # CPython cannot read this file (so it could never run it); libcst can, slowly.
    write(
        project / "deep.py",
        f"import numpy as np\n\n\ndef f(x):\n    y = {_nested('np.tanh(', 'x', ')', DEPTH)}\n"
        "    return y\n",
    )
    status, _, err = run("deep.py", "-o", "out.py")
    assert status == 123
    column = len("    y = ") + 201 * len("np.tanh(")  # the 201st opening parenthesis
    assert err.startswith(f"deep.py:5:{column}: error: invalid syntax: too many nested parentheses")
    assert not (project / "out.py").exists()


def test_too_deep_is_refused_at_the_outermost_expression(project: Path, run: Run) -> None:
    too_deep = " + ".join(["x"] * (MAX_NESTING + 1))
    just_right = " + ".join(["x"] * MAX_NESTING)
    write(
        project / "deep.py",
        "def f(xé):\n"
        "    x = xé\n"
        f"    é = {just_right}\n"
        f"    é2 = x * ({too_deep})\n"
        f"    return {'-' * (MAX_NESTING + 5)}é2\n",
    )
    status, _, err = run("deep.py", "-o", "out.py")
    assert status == 123
    message = (
        f"error: expression nested too deeply (more than {MAX_NESTING} levels): split it "
        "into several lines"
    )
    heads = [line for line in err.splitlines() if line.startswith("deep.py:")]
    assert heads == [f"deep.py:4:10: {message}", f"deep.py:5:12: {message}"]
    assert not (project / "out.py").exists()


def test_too_deep_for_python_s_own_parser_is_refused_at_its_line() -> None:
    # Ten thousand unary minus signs overflow CPython's parser stack before gradgen counts.
    source = f"def f(x):\n    y = x\n    z = {'-' * 10_000}x\n    return z\n"
    with pytest.raises(GradgenError) as caught:
        gradgen.generate(source, "deep.py")
    diagnostic = caught.value.diagnostics[0]
    assert (diagnostic.line, diagnostic.column) == (3, 5)
    assert "nested too deeply" in diagnostic.message


def test_a_thousand_functions() -> None:
    functions = [
        f"def f{i}(x, w):\n    h = math.tanh(x * w + {i}.0)\n    return h * h\n"
        for i in range(1000)
    ]
    source = "import math\n\n\n" + "\n\n".join(functions)
    output = gradgen.generate(source, "many.py")
    # Not check_module: black on all 29,000 lines takes twice as long as generating them.
    assert len(re.findall(r"^def f\d+_backward\(x, w, dout=1\.0\):$", output, re.MULTILINE)) == 1000
    namespace: dict[str, object] = {}
    exec(compile(output, "many_backward.py", "exec"), namespace)
    dx, dw = namespace["f0_backward"](0.5, 0.25)  # type: ignore[operator]
    h = math.tanh(0.5 * 0.25)
    assert dx == pytest.approx(2 * h * (1 - h * h) * 0.25)
    assert dw == pytest.approx(2 * h * (1 - h * h) * 0.5)


def test_headroom_restores_the_recursion_limit_and_passes_results_and_errors() -> None:
    limit = sys.getrecursionlimit()
    assert with_headroom(lambda: sys.getrecursionlimit()) > limit
    assert sys.getrecursionlimit() == limit

    def fail() -> None:
        raise LookupError("inside")

    with pytest.raises(LookupError, match="inside"):
        with_headroom(fail)
    assert sys.getrecursionlimit() == limit
