"""Shared fixtures: ``project`` and ``run`` for the command-line tests (``cli_project.py``),
``fresh_gradgen_state`` for the tests of committed backward files, ``load`` for the
decorator's (a module written to a file and imported),
and the hypothesis settings profiles for the property tests (``tests/test_properties.py``).

The property tests are parametrized by the forms of the rules table (about 90 tests, one per
form and mode), so ``max_examples`` counts programs *per form*:

- ``ci``, the default: 5 programs per form, a few hundred in all, derandomized (the same
  programs on every run) and without the example database, so CI is deterministic; about
  half a minute.
- ``thorough``: 110 programs per form, over 10,000 in all, new ones on every run:
  ``pytest tests/test_properties.py --hypothesis-profile=thorough``
  (or ``HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py``).
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cli_project import Run, make_project, make_runner
from gradgen import decorator


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_project(tmp_path, monkeypatch)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return make_runner(capsys)


_loaded = itertools.count()


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """``load(source) -> module``: write ``source`` to a fresh file and import it (so that
    the decorator reads a real file), forgetting the module afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def load_(source: str) -> ModuleType:
        name = f"gradgen_loaded_{next(_loaded)}"
        names.append(name)
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return importlib.import_module(name)

    yield load_
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def fresh_gradgen_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Empty decorator caches, no GRADGEN_STRICT, no .pyc files that could go stale: for the
    tests of committed backward files (``review_project.py``), which use it module-wide."""
    monkeypatch.setattr(decorator, "_CONFIGS", {})
    monkeypatch.setattr(decorator, "_COMMITTED", {})
    monkeypatch.setattr(decorator, "_WARNED", set())
    monkeypatch.delenv(decorator.STRICT_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("_gradgen_reviewed_", "gradgen_review_")):
            del sys.modules[name]


try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is in the "test" extra; without it the property tests skip
    pass
else:
    # Building a program evaluates it, and checking it generates its backward twice: slow
    # examples and filtered draws are expected.
    _SUPPRESS = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
    settings.register_profile(
        "ci",
        max_examples=5,  # per form of the rules table and mode
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=_SUPPRESS,
        print_blob=True,
    )
    settings.register_profile(
        "thorough",
        max_examples=110,  # per form of the rules table and mode: 97 forms, 10,670 programs
        deadline=None,
        suppress_health_check=_SUPPRESS,
        print_blob=True,
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
