"""Shared fixtures: ``project`` and ``run`` for the command-line tests (``cli_project.py``),
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

import os
from pathlib import Path

import pytest

from cli_project import Run, make_project, make_runner


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_project(tmp_path, monkeypatch)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return make_runner(capsys)


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
