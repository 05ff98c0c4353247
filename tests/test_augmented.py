"""Augmented assignment in the forward: ``h += x``, ``loss += term``, ``out *= mask``.

On a Python number it rebinds; on a numpy array it writes into the array, which gradgen
writes out as ``h = h + x``: the same wherever nothing else shares ``h``'s memory. So it is
accepted on values the forward computed (``out = x @ w; out += b``) and refused, where it is
written, when ``h`` is the caller's array or a view of it, or when another variable may
share its memory. Gradients are checked against central differences in float64, through
``gradgen.generate`` and the decorator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import pytest

import gradgen
from cli_project import Run, snapshot, write
from test_programs import DIAGNOSTIC, assert_close, draw, expected_gradients
from test_rules import run_module

ACCEPTED: dict[str, tuple[str, dict[str, tuple[int, ...]]]] = {
    # id: (the function's body, its parameters' shapes)
    "bias-added-in-place": (
        "out = x @ w\n    out += b\n    return np.sum(out * out)",
        {"x": (4, 3), "w": (3, 2), "b": (2,)},
    ),
    "loss-accumulated": (
        "loss = 0.0\n    loss += np.sum(x * x)\n    loss += 0.5 * np.sum(w * w)\n"
        "    loss *= 2.0\n    return loss",
        {"x": (4, 3), "w": (3, 2)},
    ),
    "every-operator": (
        "h = x * 2.0\n    h += x\n    h -= 0.5 * x\n    h *= x\n    h /= 3.0\n    h **= 2\n"
        "    return np.sum(h)",
        {"x": (3, 2)},
    ),
    "matmul-in-place": (
        "h = x * 1.5\n    h @= w\n    return np.sum(np.tanh(h))",
        {"x": (3, 3), "w": (3, 3)},
    ),
    "rebound-then-updated": (
        "h = np.tanh(x)\n    g = h * 2.0\n    h = g + 1.0\n    h += x\n    return np.sum(h * g)",
        {"x": (2, 3)},
    ),
    "scalar-parameter": ("t = s\n    t += 1.0\n    t *= s\n    return t", {"s": ()}),
}


def _source(body: str, shapes: dict[str, tuple[int, ...]], decorated: bool = False) -> str:
    decorator = "@gradgen.differentiable\n" if decorated else ""
    return (
        f"import numpy as np\nimport gradgen\n\n\n{decorator}"
        f"def f({', '.join(shapes)}):\n    {body}\n"
    )


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted_updates_match_central_differences(case: str) -> None:
    body, shapes = ACCEPTED[case]
    source = _source(body, shapes)
    if all(shape == () for shape in shapes.values()):
        source = source.replace("import numpy as np\n", "")  # scalar code
    text = gradgen.generate(source, "aug.py")
    forward = run_module(source, "aug.py")["f"]
    backward = run_module(text, "aug_backward.py")["f_backward"]
    args = draw(shapes, f"augmented {case}")
    got = backward(**{n: numpy.copy(v) for n, v in args.items()})
    got = got if isinstance(got, tuple) else (got,)
    assert_close(
        dict(zip(shapes, got, strict=True)),
        expected_gradients(forward, args, list(shapes)),
        f" ({case})",
    )


@pytest.mark.parametrize("case", ["bias-added-in-place", "every-operator"])
def test_accepted_updates_decorated(load: Any, case: str) -> None:
    body, shapes = ACCEPTED[case]
    f = load(_source(body, shapes, decorated=True)).f
    args = draw(shapes, f"augmented decorated {case}")
    got = f.backward(**args)
    got = got if isinstance(got, tuple) else (got,)
    assert_close(
        dict(zip(shapes, got, strict=True)), expected_gradients(f, args, list(shapes)), f" ({case})"
    )


REFUSED: dict[str, tuple[str, int, str]] = {
    # id: (body, the line refused (the def is line 5), the message's words)
    "the-parameter": ("x += 1.0\n    return np.sum(x)", 6, "writes into the caller's array 'x'"),
    "a-rename-of-it": ("h = x\n    h *= 2.0\n    return np.sum(h)", 7, "'h' is 'x' or a view"),
    "a-transpose-of-it": (
        "h = x.T\n    h += 1.0\n    return np.sum(h)",
        7,
        "the caller's array 'x'",
    ),
    "a-row-of-it": ("h = x[0]\n    h += 1.0\n    return np.sum(h)", 7, "the caller's array 'x'"),
    "a-view-read-later": (
        "h = x * 2.0\n    v = h.reshape(-1)\n    h += 1.0\n    return np.sum(h) + np.sum(v)",
        8,
        "'v' may share its memory",
    ),
    "a-second-name": (
        "h = x * 2.0\n    g = h\n    h += 1.0\n    return np.sum(h * g)",
        8,
        "'g' may share its memory",
    ),
    "what-a-helper-returned": (
        "h = same(x)\n    h += 1.0\n    return np.sum(h)",
        7,
        "the caller's array 'x'",
    ),
    "an-element": ("h = x * 2.0\n    h[0] += 1.0\n    return np.sum(h)", 7, "to an element"),
    "left-shift": ("h = x * 2.0\n    h <<= 2\n    return np.sum(h)", 7, "'<<='"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_updates_are_located_and_write_nothing(project: Path, run: Run, case: str) -> None:
    body, line, words = REFUSED[case]
    source = f"import numpy as np\n\n\ndef same(a):\n    return a\n\n\ndef f(x):\n    {body}\n"
    line += 3  # the helper's lines
    write(project / "aug.py", source)
    before = snapshot(project)
    status, _, err = run("aug.py", "-o", "aug_backward.py")
    assert status == 123, err
    first = next(m for m in map(DIAGNOSTIC.match, err.splitlines()) if m is not None)
    assert int(first["line"]) == line, err
    assert words in first["message"], err
    assert snapshot(project) == before
