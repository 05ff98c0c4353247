"""What the tests of reviewed, committed backward files share: a project mapping
``models/`` to ``generated/`` in ``pyproject.toml``, its forward files, and helpers to
import, edit and compare files. The ``fresh_gradgen_state`` fixture is in ``conftest.py``.
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import gradgen

REPO = Path(__file__).resolve().parent.parent

PYPROJECT = """\
[project]
name = "demo"

[[tool.gradgen.files]]
forward = "models"
backward = "generated"
"""

NET = """\
import math

import gradgen


@gradgen.differentiable
def f(x, y):
    a = x * y
    b = math.tanh(a)  # squash
    return a + b * x


@gradgen.differentiable
def g(x):
    return math.exp(x) * x * 2.0
"""

# Edits that change what f and g compute (so a stale backward gives wrong gradients).
EDIT_F = ("return a + b * x\n", "return a + b * x * 3.0\n")
EDIT_G = ("* x * 2.0\n", "* x * 5.0\n")

LAYER = """\
def h(x):
    return x * x * 3.0
"""

OTHER = """\
def k(x, y):
    return x * y + y
"""


_counter = itertools.count()


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as a module under a name no other import uses."""
    name = f"gradgen_review_{next(_counter)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_recording_warnings(path: Path) -> tuple[ModuleType, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = import_file(path)
    return module, list(caught)


def stale_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, gradgen.StaleBackwardWarning)]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, (old, text)
    path.write_text(text.replace(old, new), encoding="utf-8")
    # A later mtime, so nothing keyed on (size, mtime) can mistake the new text for the old.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def make_project(root: Path) -> Path:
    """``models/net.py`` and ``models/sub/layer.py`` mapped to ``generated/``."""
    write(root / "pyproject.toml", PYPROJECT)
    write(root / "models" / "net.py", NET)
    write(root / "models" / "sub" / "layer.py", LAYER)
    return root


def expected_output(root: Path, forward: str, backward: str) -> str:
    text = (root / forward).read_text(encoding="utf-8")
    return gradgen.generate(text, forward, command=f"gradgen {forward} -o {backward}")


def central_differences(
    f: Callable[..., float], args: tuple[float, ...], h: float = 1e-6
) -> tuple[float, ...]:
    grads = []
    for i in range(len(args)):
        up, down = list(args), list(args)
        up[i] += h
        down[i] -= h
        grads.append((f(*up) - f(*down)) / (2 * h))
    return tuple(grads)


def assert_gradients(f: Callable[..., float], args: tuple[float, ...]) -> None:
    expected = central_differences(f, args)
    actual = f.backward(*args)  # type: ignore[attr-defined]
    if len(args) == 1:
        assert not isinstance(actual, tuple), "one parameter: a bare gradient"
        actual = (actual,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-8), (actual, expected)


def changed_lines(old: str, new: str) -> list[str]:
    """The ``-`` and ``+`` lines of a unified diff of ``old`` and ``new`` (headers excluded)."""
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    return [
        line for line in diff if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]


def header(text: str) -> list[str]:
    """The comment block a generated file starts with."""
    return list(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines()))


def functions(text: str) -> dict[str, str]:
    """Each top-level ``def`` of generated ``text`` with its body, by name."""
    blocks: dict[str, str] = {}
    for chunk in re.split(r"^(?=def )", text, flags=re.MULTILINE)[1:]:
        name = re.match(r"def (\w+)", chunk)
        assert name is not None
        blocks[name.group(1)] = chunk.rstrip()
    return blocks
