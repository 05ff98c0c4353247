"""Checking the functions of a forward file: the file and its backward run as modules, and
each function checked at arguments drawn for it."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import sys
import traceback
import types
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

from gradgen.files import package_of
from gradgen.gradcheck.forward import ForwardInfo, forward_info
from gradgen.gradcheck.inputs import (
    MATRIX,
    VECTOR,
    Dims,
    ParameterSpec,
    choice_settings,
    dimension_names,
    draw_arguments,
    item_shapes,
    looped_lists,
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
from gradgen.gradcheck.structured import FlatBackward, static_flatten, static_forward

if TYPE_CHECKING:
    from gradgen.emit import Tie
    from gradgen.ir import BackwardFunction


_FLAT_ATTEMPTS = 5  # draws of values while some gradient is zero everywhere


def _takes_cache(function: Any) -> bool:
    try:
        names = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return False
    return bool(names) and names[-1] == "cache"


def forward_module_name(path: Path) -> str:
    """The name the check runs the forward file under (the generated text imports the
    module's data from it)."""
    tag = zlib.crc32(str(path.resolve()).encode())
    return f"_gradgen_check_{tag:08x}_{path.stem}"


def load_forward(path: Path) -> dict[str, Any]:
    """Run the forward file as a module and return its namespace. Its folder is first on
    ``sys.path``, as for a script, so that ``from layers import affine`` finds the file
    beside it. A file inside a package (``src/nets/model.py`` under
    ``src/nets/__init__.py``) runs as the module of its package Python would import
    (``nets.model``): the package's root folder next on ``sys.path``, the parent package
    imported first, so that relative imports (``from .layers import affine``) work. The
    package and its modules are not left in ``sys.modules`` afterwards (any that were there
    before are put back): the caller's process keeps the package it had, if any.
    gradgen's own staleness warnings are not the check's business and are silenced."""
    from gradgen.decorator import StaleBackwardWarning  # before sys.modules is touched

    package = package_of(path)
    folders = [str(path.resolve().parent)]
    if package is not None:
        folders.append(str(package.root))
    name = package.name if package is not None else forward_module_name(path)
    # The package as it is in sys.modules now (another copy, or an installed one of the
    # same name) would answer the relative imports: it is set aside meanwhile.
    top = package.top if package is not None else name
    saved = {k: m for k, m in sys.modules.items() if k == top or k.startswith(f"{top}.")}
    for key in saved:
        del sys.modules[key]
    for position, folder in enumerate(folders):
        sys.path.insert(position, folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StaleBackwardWarning)
            return vars(_run_as(path, name))
    finally:
        for key in [k for k in sys.modules if k == top or k.startswith(f"{top}.")]:
            del sys.modules[key]
        sys.modules.update(saved)
        for folder in folders:
            if folder in sys.path:
                sys.path.remove(folder)


def _run_as(path: Path, name: str) -> types.ModuleType:
    """The file ``path`` run as the module ``name``; its parent package (if any) imported
    first. The caller puts ``name`` and its package back as they were in ``sys.modules``."""
    parent = name.rpartition(".")[0]
    if parent:
        importlib.invalidate_caches()  # files written since the last import are seen
        importlib.import_module(parent)
        loaded = sys.modules.get(name)
        if loaded is not None and _same_file(getattr(loaded, "__file__", None), path):
            return loaded  # the package's __init__.py imported it already: run it once
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and the decorator look their module up
    spec.loader.exec_module(module)
    return module


def _same_file(file: str | None, path: Path) -> bool:
    try:
        return file is not None and Path(file).samefile(path)
    except OSError:
        return False


def run_module(
    text: str,
    filename: str,
    path: Path | None,
    forward: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the backward module's text; ``forward`` (its name and namespace) is importable
    meanwhile, for the module data the text imports from it."""
    namespace: dict[str, Any] = {"__name__": "_gradgen_check_backward"}
    if path is not None:
        namespace["__file__"] = str(path)
    if forward is None:
        exec(compile(text, filename, "exec"), namespace)
        return namespace
    name, values = forward
    module = types.ModuleType(name)
    module.__dict__.update(values)
    sys.modules[name] = module
    try:
        exec(compile(text, filename, "exec"), namespace)
    finally:
        sys.modules.pop(name, None)
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
    backward_function: str | None = None,
) -> FunctionReport:
    """Check one function at arguments drawn for it: for its parameters with no shape given
    in ``array_code`` (a module that imports numpy), at numbers and at small arrays of a
    few shapes (``shape_variants``), stopping at the first that fails. ``ties``: what each
    statement of ``F_backward`` writes, when it is gradgen's own (``Compiled.ties``).

    Shapes the check guesses (for parameters with no shape given) may not fit the function:
    such a set of shapes is skipped, not failed, when the forward raises on it (or never
    gives finite values), or when the forward runs but the backward raises one of gradgen's
    documented refusals (``run.refusal``: ``np.dot`` of a number, or above 2-D). Anything
    else the backward raises is an error of the backward, whatever the shapes. Where every
    shape is given (annotations, ``--shapes``, number defaults) nothing is skipped: a
    refusal there is an error, as is a forward that never runs."""
    name = backward.staged.name
    report = FunctionReport(name)
    forward = forward_namespace.get(name)
    if not callable(forward):
        report.error = f"the module defines no function '{name}' when run"
        return report
    # F_backward, or the backward a user rule names (``gradgen.backward_of``)
    backward_function = backward_function or f"{name}_backward"
    wrapped = backward_from_module(
        backward_text, backward_name, backward_namespace, backward_function, ties
    )
    if wrapped is None:
        report.error = f"{backward_name} defines no {backward_function}"
        return report
    pair_forward = backward_namespace.get(f"{name}_forward")
    if callable(pair_forward) and _takes_cache(wrapped.function):
        # A pair (``--pairs``): F_backward(d<out>, cache). A module without pairs has
        # F_forward too when other functions call F, but its F_backward recomputes.
        wrapped.pair_forward = pair_forward
    info = forward_info(backward, source, shown, forward.__globals__)
    if backward.staged.structured:
        forward, wrapped = _by_leaves(backward, forward, wrapped)
    specs = parameter_specs(backward, source, shapes, ints)
    slots = backward.parameter_gradients()
    items = item_shapes(source, name)
    unknown = [p for p in looped_lists(source, name) if p not in items]
    if unknown:
        report.error = (
            f"{name} loops over the items of {unknown[0]}, whose shapes only an annotation "
            f'can give: {unknown[0]}: [("D, H", "H"), ("H, C", "C")] (one tuple of shapes per '
            "item)"
        )
        return report
    if items:
        forward, wrapped, specs, slots = _by_items(backward, forward, wrapped, specs, items)
    fixed = {
        k: int(v[0]) for k, v in shapes.items() if len(v) == 1 and k not in {s.name for s in specs}
    }
    rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
    check = _Check(name, forward, wrapped, info, rng, args.rtol, args.atol, backward.wrt)
    variants = shape_variants(specs, array_code)
    guessed = array_code and bool(unshaped(specs))  # shapes (numbers too) are guessed
    trials: list[_Trial] = []
    sized = False
    # Each set of shapes at each setting of the flags and strings branched on (the default
    # first): every side of an ``if`` on a parameter is checked.
    plans = [
        (overrides, setting)
        for overrides in variants
        for setting in choice_settings(with_shapes(specs, overrides))
    ]
    for overrides, variant in plans:
        trial = _Trial(overrides)
        trials.append(trial)
        found = draw_arguments(forward, variant, fixed, rng)
        if isinstance(found, str):  # the forward does not take these shapes: not a failure
            trial.problem = found
            continue
        values, sizes = found
        if not sized:
            fixed, sized = {**fixed, **sizes}, True  # the other shapes: at the same sizes
        run, flat = check.run(variant, values, sizes, slots)
        if guessed and run.refusal is not None:
            trial.refusal = run.refusal
            continue
        trial.report, trial.flat = run, flat
        if not report.sizes:
            report.sizes = {k: v for k, v in sizes.items() if k in dimension_names(specs)}
        if not run.passed:
            break
    report.notes += [f"{s.name}: {s.note}" for s in specs if s.note]
    runs = [t.report for t in trials if t.report is not None]
    if not runs:
        report.error = _nothing_ran(name, specs, trials, guessed)
        return report
    _merge(report, trials, several=len(plans) > 1)
    report.notes += _numbers_only_note(name, specs, trials, array_code, len(plans))
    return report


def _by_leaves(
    backward: BackwardFunction, forward: Callable[..., Any], wrapped: Backward
) -> tuple[Callable[..., Any], Backward]:
    """A function with dicts or lists of arrays as parameters, checked as its leaves (the
    staged parameters, ``gradgen.structure``): the forward and the backward take the
    leaves and build the containers; the backward's gradients are read back per leaf."""
    staged = backward.staged
    leaves = [p.name for p in staged.parameters]
    from gradgen.structure import user_names  # reads libcst: only when generating

    rebuild = static_forward(staged.structured, [p.name for p in staged.arguments], leaves)
    wanted = user_names(backward.wrt or tuple(leaves), staged.structured)
    flat = FlatBackward.around(wrapped, rebuild, static_flatten(staged.structured, wanted))

    def by_leaves(*values: Any) -> Any:
        return forward(*rebuild(values))

    return by_leaves, flat


def _by_items(
    backward: BackwardFunction,
    forward: Callable[..., Any],
    wrapped: Backward,
    specs: list[ParameterSpec],
    items: dict[str, list[tuple[Dims, ...]]],
) -> tuple[Callable[..., Any], Backward, list[ParameterSpec], tuple[str, ...]]:
    """A function with a list a loop goes over the items of (``for W, b in layers:``),
    checked as the arrays of its items (``layers[0][0]``, ...), at the shapes its annotation
    gives them: the forward and the backward take those arrays and build the list, and the
    list of the items' gradients is read back per array."""
    from gradgen.structure import Leaf, Structured

    lists = [
        Structured(
            name,
            tuple(
                Leaf(f"{name}[{k}][{j}]", (k, j), dims)
                for k, item in enumerate(shapes)
                for j, dims in enumerate(item)
            ),
        )
        for name, shapes in items.items()
    ]
    leaves = {s.name: s.leaves for s in lists}
    arguments = [p.name for p in backward.staged.arguments]
    flat = [x for n in arguments for x in ([f.name for f in leaves[n]] if n in leaves else [n])]
    rebuild = static_forward(lists, arguments, flat)
    wanted = backward.wrt or tuple(arguments)
    flat_backward = FlatBackward.around(wrapped, rebuild, static_flatten(lists, wanted))

    def by_items(*values: Any) -> Any:
        return forward(*rebuild(values))

    expanded: list[ParameterSpec] = []
    expanded_slots: list[str] = []
    for spec, slot in zip(specs, backward.parameter_gradients(), strict=True):
        if spec.name not in leaves:
            expanded.append(spec)
            expanded_slots.append(slot)
            continue
        for leaf in leaves[spec.name]:
            expanded.append(ParameterSpec(leaf.name, leaf.shape))
            expanded_slots.append(slot)
    return by_items, flat_backward, expanded, tuple(expanded_slots)


@dataclass
class _Trial:
    """One set of shapes tried: the shapes guessed (``shape_variants``), and the check at
    them, or why they were skipped."""

    overrides: dict[str, Dims]
    report: FunctionReport | None = None
    problem: str = ""  # skipped: the forward raises ("TypeError: ..."), or is not finite
    refusal: str = ""  # skipped: the backward refuses ("ValueError: gradgen: ...")
    flat: tuple[str, ...] = ()  # parameters whose check matched but says little (_Check.run)

    def why_skipped(self, name: str) -> str:
        if self.refusal:
            return f"{name} runs, but its backward refuses ({self.refusal})"
        return f"{name} does not run ({self.problem})"


_SHAPES_ADVICE = 'give shapes: annotations such as x: "N, D", or --shapes x=2,3'


def _nothing_ran(
    name: str, specs: Sequence[ParameterSpec], trials: Sequence[_Trial], guessed: bool
) -> str:
    """Why ``name`` could not be checked at all: every set of shapes was skipped."""
    if not guessed:
        shape_list = ", ".join(f"{s.name}: {s.dims}" for s in specs if s.dims)
        return (
            f"{name} does not run on random arguments ({trials[0].problem}); give shapes with "
            "--shapes (x=2,3 or N=4)" + (f" [annotations: {shape_list}]" if shape_list else "")
        )
    free = unshaped(specs)
    given = [s.name for s in specs if s.dims is not None and s.name not in free]
    raised = [t for t in trials if not t.refusal]
    refused = [t for t in trials if t.refusal]
    why = []
    if raised:
        problems = list(dict.fromkeys(t.problem for t in raised))
        shown = "; ".join(problems[:_REASONS_SHOWN])
        if len(problems) > _REASONS_SHOWN:
            shown += "; ..."
        why.append(f"at {_count(len(raised))} {name} does not run ({shown})")
    if refused:
        first = refused[0]
        at = ", ".join(f"{p}: {_dims_text(first.overrides.get(p, ()))}" for p in free)
        at = at if len(refused) == 1 else f"first {at}"
        why.append(
            f"at {_count(len(refused))} ({at}) it runs, but its backward refuses ({first.refusal})"
        )
    kinds = f"numbers, {VECTOR} and {MATRIX} arrays"
    kinds += ", and mixes of them" if len(free) > 1 else ""
    kinds += f", with the shapes given for {', '.join(given)}" if given else ""
    return (
        f"none of the {len(trials)} sets of shapes tried for {', '.join(free)} ({kinds}) fits "
        f"{name}, so nothing was checked: {', and '.join(why)}; {_SHAPES_ADVICE}"
    )


def _count(sets: int) -> str:
    return "1 set" if sets == 1 else f"{sets} sets"


def _dims_text(dims: Dims) -> str:
    return str(dims) if dims else "scalar"


_REASONS_SHOWN = 3  # distinct errors of the forward shown, when nothing could be checked


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
    wrt: tuple[str, ...] | None = None  # the parameters the backward gives gradients for

    def run(
        self,
        specs: list[ParameterSpec],
        values: list[Any],
        sizes: dict[str, int],
        slots: tuple[str, ...],
    ) -> tuple[FunctionReport, tuple[str, ...]]:
        """The check at ``values`` (drawn for ``specs``); while some gradient is zero
        everywhere there (every ReLU or margin inactive), which checks nothing, other values
        are drawn, on the same sizes. Also the parameters whose gradient matched but whose
        central differences are zero everywhere at the last values drawn (not those the
        result does not depend on, whose gradient is 0.0): ``_merge`` notes them if they
        were so at every set of shapes tried."""
        report = FunctionReport(self.name)
        gradient_of = dict(zip((s.name for s in specs), slots, strict=True))
        # no gradient: integers, and the flags, strings and Nones tried
        index = frozenset(s.name for s in specs if s.integer or s.choices or s.none)
        parameters = tuple(s.name for s in specs)
        flat: list[str] = []
        for attempt in range(_FLAT_ATTEMPTS):
            with np.errstate(all="ignore"):
                value = self.forward(*values)
            upstream = random_upstream(value, self.rng)
            case = Case(self.name, self.forward, parameters, values, upstream, self.backward, index)
            case.wrt = self.wrt
            case.info = self.info
            report.gradients, report.culprit, report.error = [], None, None
            report.refusal = None
            run_case(case, self.rtol, self.atol, report)
            flat = [
                g.parameter
                for g in report.gradients
                if g.flat and g.passed and gradient_of[g.parameter] != "0.0"
            ]
            if not report.passed or not flat or attempt + 1 == _FLAT_ATTEMPTS:
                break
            values = redrawn(self.forward, specs, sizes, self.rng) or values
        report.shapes = {
            s.name: shape_text(v, s.integer) for s, v in zip(specs, values, strict=True)
        }
        return report, tuple(flat)


def _merge(report: FunctionReport, trials: list[_Trial], several: bool) -> None:
    """The checks at each set of shapes tried, as one report: per parameter the shapes
    tried, the failing check if any (else the worst); the failure, where it happened; the
    notes of each, and a note on the parameters whose central differences were zero
    everywhere at every set of shapes where they were checked. A gradient zero at one set
    of shapes only (the softmax of a number is 1) is no sign of arguments badly drawn."""
    ran = [t for t in trials if t.report is not None]
    runs = [t.report for t in ran if t.report is not None]
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
    flat = []
    for parameter in checks:
        checked = [
            t
            for t in ran
            if t.report is not None
            and any(c.parameter == parameter and c.status != "skip" for c in t.report.gradients)
        ]
        if checked and all(parameter in t.flat for t in checked):
            flat.append(parameter)
    if flat:
        where = " at every shape tried" if len(runs) > 1 else ""
        report.notes.append(
            f"central differences of {', '.join(flat)} are zero everywhere at the drawn "
            f"arguments{where}, so that check says little; try another --seed"
        )
    if several and not last.passed:
        report.failed_at = ", ".join(f"{k}: {v}" for k, v in last.shapes.items())


def _numbers_only_note(
    name: str,
    specs: list[ParameterSpec],
    trials: list[_Trial],
    array_code: bool,
    planned: int,
) -> list[str]:
    """Where parameters with no shape given were checked as numbers only: that, why, and
    how to give them shapes. ``planned``: how many sets of shapes there were to try (the
    check stops at the first that fails)."""
    runs = [t.report for t in trials if t.report is not None]
    numbers = [p for p in unshaped(specs) if all(run.shapes[p] == "scalar" for run in runs)]
    if not numbers:
        return []
    them = ", ".join(numbers)
    if not array_code:
        return [
            f"only numbers were tried for {them} ({name} is scalar code: the module does not "
            f"import numpy, or its code uses them as numbers); to check "
            f"arrays, {_SHAPES_ADVICE}"
        ]
    # Arrays were to be tried for each of them: skipped, or not reached.
    skipped = [
        t for t in trials if t.report is None and any(t.overrides.get(p, ()) for p in numbers)
    ]
    one = "it" if len(numbers) == 1 else "one of them"
    checked = f"{them} were checked as numbers only"
    if len(numbers) == 1:
        checked = f"{them} was checked as a number only"
    stopped = "the check stops at the first shapes that fail"
    if not skipped:
        return [f"{checked}: {stopped}, before {one} was tried as an array"]
    why = f"with {one} an array, {skipped[0].why_skipped(name)}"
    if len(trials) < planned:
        why += f", and {stopped}"
    return [f"{checked}: {why}; to check arrays, {_SHAPES_ADVICE}"]
