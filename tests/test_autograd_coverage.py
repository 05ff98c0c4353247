"""The measuring stick of issue 13: ``benchmarks/autograd_coverage.py`` and its data file,
autograd's differentiable functions (``benchmarks/autograd_functions.toml``).

Nothing here depends on how many rules exist beyond today's floor: the functions gradgen
covers today must stay covered, and a function it does not cover today is reported missing
until a rule claims it, then covered.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from gradgen.rules import known_functions

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "autograd_coverage.py"

# What the report counted when this test was written (28ee9f8's rules): it may only grow.
COVERED_TODAY = 187

# Functions gradgen covered then, by a rule of the table: they must stay covered.
COVERED = [
    "numpy.exp",
    "numpy.log",
    "numpy.tanh",
    "numpy.sum",
    "numpy.mean",
    "numpy.matmul",
    "numpy.dot",
    "numpy.concatenate",
    "numpy.where",
    "numpy.clip",
    "numpy.maximum",
    "numpy.add",
    "numpy.transpose",
    "numpy.ndarray.__getitem__",
    # added since, with the shape rules of the last steps
    "numpy.row_stack",
    "numpy.rot90",
    "numpy.append",
    "numpy.linspace",
    "numpy.gradient",
    "numpy.select",
    # scipy.linalg, np.linalg.svd and scipy.signal, since i13-linalg
    "numpy.linalg.svd",
    "scipy.linalg.sqrtm",
    "scipy.linalg.solve_triangular",
    "scipy.linalg.solve_banded",
    "scipy.linalg.solve_sylvester",
    "scipy.signal.convolve",
]

# Functions it did not cover then: missing until a rule claims them, covered after.
NOT_YET = ["scipy.special.gammaln", "numpy.linalg.det", "scipy.stats.norm.logpdf", "numpy.cumsum"]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autograd_coverage", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ac = _load()


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return {r.entry.name: r for r in ac.check_all(ac.load_entries())}


def test_the_data_file_parses_and_every_entry_is_complete() -> None:
    entries = ac.load_entries()
    assert len(entries) > 200
    assert {e.gradient for e in entries} == set(ac.GRADIENTS)
    for e in entries:
        assert e.group and e.gradient in ac.GRADIENTS, e.name
        assert e.gradient == "real" or e.note, e.name
        calls = [p for p in e.probes if ac.PLACEHOLDER.search(p)]
        # every probe can be written: a call needs an import style, and names a parameter
        assert not calls or ac.import_styles(e.name), e.name
        for probe in e.probes:
            assert any(p in probe for p in ac.PARAMETERS[: len(e.shapes)]), (e.name, probe)
    assert len({e.name for e in entries}) == len(entries)


def test_spellings_are_named_as_the_rules_name_libraries() -> None:
    entries = {e.name: e for e in ac.load_entries()}
    assert entries["numpy.arctan2"].key == ("numpy", "arctan2")
    assert entries["numpy.linalg.slogdet"].key == ("numpy.linalg", "slogdet")
    assert entries["scipy.special.logsumexp"].key == ("scipy.special", "logsumexp")
    assert entries["scipy.stats.norm.logpdf"].key == ("scipy.stats.norm", "logpdf")
    assert ("from scipy.stats import norm", "norm.logpdf") in ac.import_styles(
        "scipy.stats.norm.logpdf"
    )
    assert ("from scipy import special", "special.gammaln") in ac.import_styles(
        "scipy.special.gammaln"
    )
    assert ac.import_styles("numpy.linalg.det") == [("", "np.linalg.det")]


def test_every_probe_runs_to_a_finite_number() -> None:
    """A probe that does not run would make a function look wrong once it has a rule."""
    for e in ac.load_entries():
        if e.gradient == "none":  # removed from numpy/scipy, complex, a draw
            continue
        for probe in e.probes:
            calls = ac.PLACEHOLDER.search(probe)
            for import_line, callee in ac.import_styles(e.name) if calls else [("", "")]:
                namespace: dict[str, Any] = {}
                exec(ac.probe_source(e, probe, import_line, callee), namespace)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # np.row_stack
                    value = namespace["probe"](*ac.arguments(e))
                assert np.ndim(value) == 0 and np.isfinite(value), (e.name, probe, callee)


def test_a_probe_is_a_forward_gradgen_reads() -> None:
    entry = {e.name: e for e in ac.load_entries()}["numpy.arctan2"]
    source = ac.probe_source(entry, "FN(x, y)", "", "np.arctan2")
    assert 'def probe(x: "3", y: "3"):' in source
    assert "out = np.arctan2(x, y)" in source
    compile(source, "probe.py", "exec")


def test_functions_covered_today_are_reported_covered(results: dict[str, Any]) -> None:
    for name in COVERED:
        assert results[name].status == "covered", (name, results[name].reasons)


# Covered since the pieces of a split have a rule (several results, as many as the sections
# say): every probe of each, unpacked and taken by place.
SPLITS = ["numpy.split", "numpy.array_split", "numpy.hsplit", "numpy.vsplit", "numpy.dsplit"]


def test_the_splits_are_covered(results: dict[str, Any]) -> None:
    for name in SPLITS:
        assert results[name].status == "covered", (name, results[name].reasons)
    entries = {e.name: e for e in ac.load_entries()}
    for name in SPLITS:
        entry = entries[name]
        for probe in entry.probes:
            callee = ac.import_styles(name)[0][1]
            source = ac.probe_source(entry, probe, "", callee)
            assert ac.check_probe(entry, source) == ("covered", ""), (name, probe)


def test_the_covered_count_does_not_fall(results: dict[str, Any]) -> None:
    totals = ac.totals(list(results.values()))
    assert totals.covered >= COVERED_TODAY
    assert 0 < totals.real <= len(results)


def test_functions_not_covered_today_are_missing_until_a_rule_claims_them(
    results: dict[str, Any],
) -> None:
    known = known_functions()
    for name in NOT_YET:
        result = results[name]
        if result.entry.key in known:
            assert result.status == "covered", (name, result.reasons)
        else:
            assert result.status == "missing", (name, result.status, result.reasons)


def test_only_real_gradients_count(results: dict[str, Any]) -> None:
    rows = list(results.values())
    totals = ac.totals(rows)
    assert totals.real == sum(r.entry.gradient == "real" for r in rows)
    assert totals.covered == sum(r.entry.gradient == "real" and r.status == "covered" for r in rows)


def test_a_wrong_backward_is_not_covered(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {e.name: e for e in ac.load_entries()}["numpy.exp"]
    source = ac.probe_source(entry, "FN(x)", "", "np.exp")
    assert ac.check_probe(entry, source) == ("covered", "")
    wrong = "import numpy as np\n\n\ndef probe_backward(x, dout=1.0):\n    return 0 * x\n"
    monkeypatch.setattr(ac.gradgen, "generate", lambda *args, **kwargs: wrong)
    status, why = ac.check_probe(entry, source)
    assert status == "wrong" and "AssertionError" in why


def test_the_report_prints_groups_totals_and_missing(
    results: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ac, "check_all", lambda entries: list(results.values()))
    assert ac.main([]) == 0
    text = capsys.readouterr().out
    totals = ac.totals(list(results.values()))
    assert f"covered: {totals.covered} of the {totals.real} functions" in text
    for group in ("elementwise", "reduction", "linalg", "special", "stats", "total"):
        assert f"\n{group} " in text
    assert ac.main(["--min", "0"]) == 0
    assert ac.main(["--min", "100.5"]) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[function]]\nname = "numpy.exp"\ngroup = "elementwise"\ngradient = "maybe"\n',
            "gradient",
        ),
        ('[[function]]\nname = "numpy.sign"\ngroup = "elementwise"\ngradient = "zero"\n', "note"),
        ('[[function]]\nname = "numpy.exp"\ngradient = "real"\n', "group"),
        (
            '[[function]]\nname = "numpy.exp"\ngroup = "e"\ngradient = "real"\nshape = ["3"]\n',
            "unknown",
        ),
        ('[[function]]\nname = "numpy.exp"\ngroup = "e"\ngradient = "real"\n' * 2, "twice"),
    ],
)
def test_a_malformed_data_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "functions.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ac.DataError, match=message):
        ac.load_entries(path)
