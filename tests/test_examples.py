"""examples/ and generated/: the committed backward files are current and right."""

from __future__ import annotations

import importlib.util
import math
import random
from pathlib import Path
from types import ModuleType

import pytest

from gradgen.cli import main
from gradgen.config import is_skipped
from test_layers import ZOO

ROOT = Path(__file__).resolve().parent.parent
# Forward files: a script marked "# gradgen: skip-file" (the training example) is not one.
EXAMPLES = [p for p in sorted((ROOT / "examples").glob("*.py")) if not is_skipped(p)]
# The layer zoo takes arrays (and labels); tests/test_layers.py checks it.
SCALAR_EXAMPLES = [p for p in EXAMPLES if p.stem not in ZOO]


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_gradgen_{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_folder_is_current(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    status = main(["--check", "examples", "-o", "generated"])
    diff = capsys.readouterr().out
    assert status == 0, f"generated/ is stale; run: gradgen examples -o generated\n{diff}"


def test_every_example_has_its_generated_file() -> None:
    generated = {p.name for p in (ROOT / "generated").glob("*.py")}
    assert generated == {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", SCALAR_EXAMPLES, ids=lambda p: p.stem)
def test_example_gradients_match_finite_differences(path: Path) -> None:
    forward = load(path)
    backward = load(ROOT / "generated" / path.name)
    rng = random.Random(path.stem)
    names = [n for n in vars(backward) if n.endswith("_backward")]
    assert names
    for name in names:
        f = getattr(forward, name.removesuffix("_backward"))
        arity = f.__code__.co_argcount
        for _ in range(5):
            args = [rng.uniform(-1.5, 1.5) for _ in range(arity)]
            grads = getattr(backward, name)(*args)
            grads = grads if isinstance(grads, tuple) else (grads,)
            for i in range(arity):
                plus, minus = list(args), list(args)
                plus[i] += 1e-6
                minus[i] -= 1e-6
                numeric = (f(*plus) - f(*minus)) / 2e-6
                assert math.isclose(grads[i], numeric, rel_tol=1e-5, abs_tol=1e-7)


def test_seed_numbers_add_mul() -> None:
    backward = load(ROOT / "generated" / "add_mul.py")
    assert backward.f_backward(-2.0, 5.0, -4.0) == (-4.0, -4.0, 3.0)


def test_seed_numbers_gates() -> None:
    backward = load(ROOT / "generated" / "gates.py")
    assert backward.circuit_backward(3.0, -4.0, 2.0, -1.0) == (-8.0, 6.0, 2.0, 0.0)
