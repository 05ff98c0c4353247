"""The generated text, exactly, for the cases in tests/cases; and that it is right."""

from __future__ import annotations

import math
import random
from pathlib import Path

import black
import pytest

import gradgen
from golden import case_paths, options, read_case, update_requested, write_case


@pytest.mark.parametrize("path", case_paths(), ids=lambda p: p.stem)
def test_generated_text_matches_the_golden_file(path: Path) -> None:
    source, expected = read_case(path)
    actual = gradgen.generate(source, f"{path.stem}.py", **options(source))
    if update_requested():
        write_case(path, source.rstrip("\n") + "\n", actual)
        expected = actual
    assert expected, f"{path.name} has no '# output' section: run with GRADGEN_UPDATE_GOLDEN=1"
    assert actual == expected


@pytest.mark.parametrize("path", case_paths(), ids=lambda p: p.stem)
def test_golden_output_is_black_stable_and_compiles(path: Path) -> None:
    _, expected = read_case(path)
    compile(expected, path.name, "exec")
    assert black.format_str(expected, mode=black.Mode()) == expected


def _finite_difference(f, args: list[float], index: int, h: float = 1e-6) -> float:
    plus, minus = list(args), list(args)
    plus[index] += h
    minus[index] -= h
    return (f(*plus) - f(*minus)) / (2 * h)


@pytest.mark.parametrize("path", case_paths(), ids=lambda p: p.stem)
def test_golden_gradients_match_finite_differences(path: Path) -> None:
    source, expected = read_case(path)
    forward: dict[str, object] = {}
    backward: dict[str, object] = {}
    exec(compile(source, path.name, "exec"), forward)
    exec(compile(expected, f"{path.stem}_backward.py", "exec"), backward)
    rng = random.Random(path.stem)
    # Each forward function's F_backward (a callee's backwards from a cache are checked
    # through their callers').
    names = [f"{n}_backward" for n in forward if callable(backward.get(f"{n}_backward"))]
    assert names
    for name in names:
        f = forward[name.removesuffix("_backward")]
        grad = backward[name]
        arity = f.__code__.co_argcount  # type: ignore[attr-defined]
        for _ in range(3):
            args = [rng.uniform(0.6, 1.4) for _ in range(arity)]
            result = grad(*args)  # type: ignore[operator]
            grads = result if isinstance(result, tuple) else (result,)
            assert len(grads) == arity
            for i in range(arity):
                expected_i = _finite_difference(f, args, i)
                assert math.isclose(grads[i], expected_i, rel_tol=1e-5, abs_tol=1e-7), (
                    name,
                    i,
                    args,
                )
