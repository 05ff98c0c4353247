"""Checking the functions of a forward file: the file and its backward run as modules, and
each function checked at arguments drawn for it."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import traceback
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.gradcheck.forward import forward_info
from gradgen.gradcheck.inputs import (
    Dims,
    dimension_names,
    draw_arguments,
    parameter_specs,
    redrawn,
    shape_text,
)
from gradgen.gradcheck.instrument import backward_from_module
from gradgen.gradcheck.results import FunctionReport
from gradgen.gradcheck.run import Case, random_upstream, run_case

if TYPE_CHECKING:
    from gradgen.reverse import BackwardFunction


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
) -> FunctionReport:
    name = backward.staged.name
    report = FunctionReport(name)
    forward = forward_namespace.get(name)
    if not callable(forward):
        report.error = f"the module defines no function '{name}' when run"
        return report
    wrapped = backward_from_module(
        backward_text, backward_name, backward_namespace, f"{name}_backward"
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
    found = draw_arguments(forward, specs, fixed, rng)
    if isinstance(found, str):
        shape_list = ", ".join(f"{s.name}: {s.dims}" for s in specs if s.dims)
        report.error = (
            f"{name} does not run on random arguments ({found}); give shapes with --shapes "
            "(x=2,3 or N=4)" + (f" [annotations: {shape_list}]" if shape_list else "")
        )
        return report
    values, sizes = found
    report.sizes = {k: v for k, v in sizes.items() if k in dimension_names(specs)}
    report.notes += [f"{s.name}: {s.note}" for s in specs if s.note]
    info = forward_info(backward, source, shown, forward.__globals__)
    slots = dict(zip((s.name for s in specs), backward.gradients, strict=True))
    for attempt in range(_FLAT_ATTEMPTS):
        with np.errstate(all="ignore"):
            value = forward(*values)
        upstream = random_upstream(value, rng)
        index = frozenset(s.name for s in specs if s.integer)
        parameters = tuple(s.name for s in specs)
        case = Case(name, forward, parameters, values, upstream, wrapped, index, info=info)
        report.gradients, report.culprit, report.error = [], None, None
        run_case(case, args.rtol, args.atol, report)
        # A gradient that is zero everywhere at these arguments (every ReLU or margin
        # inactive) checks nothing: other values are drawn, on the same sizes.
        flat = [g.parameter for g in report.gradients if g.flat and slots[g.parameter] != "0.0"]
        if not report.passed or not flat:
            break
        if attempt + 1 == _FLAT_ATTEMPTS:
            report.notes.append(
                f"central differences of {', '.join(flat)} are zero everywhere at the drawn "
                "arguments, so that check says little; try another --seed"
            )
            break
        values = redrawn(forward, specs, sizes, rng) or values
    report.shapes = {s.name: shape_text(v, s.integer) for s, v in zip(specs, values, strict=True)}
    return report
