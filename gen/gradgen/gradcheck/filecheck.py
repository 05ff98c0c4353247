"""Checking the functions of a forward file: the file and its backward run as modules, and
each function checked at arguments drawn for it."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import traceback
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.gradcheck.forward import ForwardInfo, forward_info
from gradgen.gradcheck.inputs import (
    Dims,
    ParameterSpec,
    dimension_names,
    draw_arguments,
    parameter_specs,
    redrawn,
    shape_text,
    shape_variants,
    unshaped,
    with_shapes,
)
from gradgen.gradcheck.instrument import Backward, backward_from_module
from gradgen.gradcheck.results import FunctionReport, GradientCheck
from gradgen.gradcheck.run import Case, random_upstream, run_case

if TYPE_CHECKING:
    from gradgen.emit import Tie
    from gradgen.ir import BackwardFunction


_FLAT_ATTEMPTS = 5  # draws of values while some gradient is zero everywhere


def load_forward(path: Path) -> dict[str, Any]:
    """Run the forward file as a module (its folder first on ``sys.path``, as for a
    script) and return its namespace. gradgen's own staleness warnings are not the
    check's business and are silenced."""
    tag = zlib.crc32(str(path.resolve()).encode())
    name = f"_gradgen_check_{tag:08x}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module  # dataclasses and the decorator look their module up
    try:
        with warnings.catch_warnings():
            from gradgen.decorator import StaleBackwardWarning

            warnings.simplefilter("ignore", StaleBackwardWarning)
            spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
        if folder in sys.path:
            sys.path.remove(folder)
    return vars(module)


def run_module(text: str, filename: str, path: Path | None) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "_gradgen_check_backward"}
    if path is not None:
        namespace["__file__"] = str(path)
    exec(compile(text, filename, "exec"), namespace)
    return namespace


def last_line(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()


def check_function(
    backward: BackwardFunction,
    source: str,
    shown: str,
    forward_namespace: dict[str, Any],
    backward_namespace: dict[str, Any],
    backward_text: str,
    backward_name: str,
    shapes: dict[str, Dims],
    ints: dict[str, int | str | None],
    args: argparse.Namespace,
    array_code: bool = False,
    ties: Sequence[Tie | None] | None = None,
) -> FunctionReport:
    """Check one function at arguments drawn for it: for its parameters with no shape given
    in ``array_code`` (a module that imports numpy), at numbers and at small arrays of a
    few shapes (``shape_variants``), stopping at the first that fails. ``ties``: what each
    statement of ``F_backward`` writes, when it is gradgen's own (``Compiled.ties``)."""
    name = backward.staged.name
    report = FunctionReport(name)
    forward = forward_namespace.get(name)
    if not callable(forward):
        report.error = f"the module defines no function '{name}' when run"
        return report
    wrapped = backward_from_module(
        backward_text, backward_name, backward_namespace, f"{name}_backward", ties
    )
    if wrapped is None:
        report.error = f"{backward_name} defines no {name}_backward"
        return report
    pair_forward = backward_namespace.get(f"{name}_forward")
    if callable(pair_forward):
        wrapped.pair_forward = pair_forward
    specs = parameter_specs(backward, source, shapes, ints)
    fixed = {
        k: int(v[0]) for k, v in shapes.items() if len(v) == 1 and k not in {s.name for s in specs}
    }
    rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
    info = forward_info(backward, source, shown, forward.__globals__)
    check = _Check(name, forward, wrapped, info, rng, args.rtol, args.atol)
    variants = shape_variants(specs, array_code)
    runs: list[FunctionReport] = []
    problems: list[str] = []  # why the forward did not run, per variant skipped
    for overrides in variants:
        variant = with_shapes(specs, overrides)
        found = draw_arguments(forward, variant, fixed, rng)
        if isinstance(found, str):  # the forward does not take these shapes: not a failure
            problems.append(found)
            continue
        values, sizes = found
        if not runs:
            report.sizes = {k: v for k, v in sizes.items() if k in dimension_names(specs)}
            fixed = {**fixed, **sizes}  # the other shapes are tried at the same sizes
        runs.append(check.run(variant, values, sizes, backward.gradients))
        if not runs[-1].passed:
            break
    report.notes += [f"{s.name}: {s.note}" for s in specs if s.note]
    if not runs:
        shape_list = ", ".join(f"{s.name}: {s.dims}" for s in specs if s.dims)
        report.error = (
            f"{name} does not run on random arguments ({problems[0]}); give shapes with "
            "--shapes (x=2,3 or N=4)" + (f" [annotations: {shape_list}]" if shape_list else "")
        )
        return report
    _merge(report, runs, several=len(variants) > 1)
    report.notes += _numbers_only_note(name, specs, runs, array_code, problems)
    return report


@dataclass
class _Check:
    """What checking one function at any arguments needs."""

    name: str
    forward: Callable[..., Any]
    backward: Backward
    info: ForwardInfo | None
    rng: Any
    rtol: float
    atol: float

    def run(
        self,
        specs: list[ParameterSpec],
        values: list[Any],
        sizes: dict[str, int],
        slots: tuple[str, ...],
    ) -> FunctionReport:
        """The check at ``values`` (drawn for ``specs``); while some gradient is zero
        everywhere there (every ReLU or margin inactive), which checks nothing, other values
        are drawn, on the same sizes."""
        report = FunctionReport(self.name)
        gradient_of = dict(zip((s.name for s in specs), slots, strict=True))
        index = frozenset(s.name for s in specs if s.integer)
        parameters = tuple(s.name for s in specs)
        for attempt in range(_FLAT_ATTEMPTS):
            with np.errstate(all="ignore"):
                value = self.forward(*values)
            upstream = random_upstream(value, self.rng)
            case = Case(self.name, self.forward, parameters, values, upstream, self.backward, index)
            case.info = self.info
            report.gradients, report.culprit, report.error = [], None, None
            run_case(case, self.rtol, self.atol, report)
            flat = [
                g.parameter
                for g in report.gradients
                if g.flat and gradient_of[g.parameter] != "0.0"
            ]
            if not report.passed or not flat:
                break
            if attempt + 1 == _FLAT_ATTEMPTS:
                report.notes.append(
                    f"central differences of {', '.join(flat)} are zero everywhere at the "
                    "drawn arguments, so that check says little; try another --seed"
                )
                break
            values = redrawn(self.forward, specs, sizes, self.rng) or values
        report.shapes = {
            s.name: shape_text(v, s.integer) for s, v in zip(specs, values, strict=True)
        }
        return report


def _merge(report: FunctionReport, runs: list[FunctionReport], several: bool) -> None:
    """The checks at each set of shapes tried, as one report: per parameter the shapes
    tried, the failing check if any (else the worst); the failure, where it happened."""
    last = runs[-1]
    checks: dict[str, list[GradientCheck]] = {}
    for run in runs:
        for check in run.gradients:
            checks.setdefault(check.parameter, []).append(check)
    report.gradients = [
        next((c for c in found if not c.passed), max(found, key=lambda c: c.max_rel_error))
        for found in checks.values()
    ]
    report.error, report.culprit = last.error, last.culprit
    for parameter in last.shapes:
        tried = dict.fromkeys(run.shapes[parameter] for run in runs)
        report.shapes[parameter] = ", ".join(tried)
    for run in runs:
        report.notes += [n for n in run.notes if n not in report.notes]
    if several and not last.passed:
        report.failed_at = ", ".join(f"{k}: {v}" for k, v in last.shapes.items())


def _numbers_only_note(
    name: str,
    specs: list[ParameterSpec],
    runs: list[FunctionReport],
    array_code: bool,
    problems: list[str],
) -> list[str]:
    """Where parameters with no shape given were tried as numbers only: that, why, and how
    to give them shapes."""
    numbers = [p for p in unshaped(specs) if all(run.shapes[p] == "scalar" for run in runs)]
    if not numbers:
        return []
    if not array_code:
        why = "the module does not import numpy"
    else:  # every set of shapes with one of them an array was skipped
        why = f"{name} raises on arrays: {problems[-1]}" if problems else "arrays were not tried"
    return [
        f"only numbers were tried for {', '.join(numbers)} ({why}); to check arrays, give "
        'shapes: annotations such as x: "N, D", or --shapes x=2,3'
    ]
