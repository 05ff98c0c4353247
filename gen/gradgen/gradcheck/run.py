"""One check: a function, its arguments and its backward; every gradient compared with
central differences and, when one is wrong, the forward line it comes from named."""

from __future__ import annotations

import ast
import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.gradcheck.compare import central_differences, compare, scalar_loss
from gradgen.gradcheck.forward import ForwardInfo
from gradgen.gradcheck.instrument import Backward
from gradgen.gradcheck.locate import locate, raised_at
from gradgen.gradcheck.results import FunctionReport, GradientCheck


@dataclass
class Case:
    """A function, its arguments and its backward, ready to be checked."""

    name: str
    forward: Callable[..., Any]
    parameters: tuple[str, ...]
    args: list[Any]
    upstream: Any
    backward: Backward
    index: frozenset[str] = frozenset()  # parameters with no gradient (integer labels)
    wrt: tuple[str, ...] | None = None  # what the backward returns gradients for
    info: ForwardInfo | None = None
    # Reads the forward's staged form when a failure needs it: a passing check of a
    # function with a backward imports no libcst.
    info_factory: Callable[[], ForwardInfo | None] | None = None

    def forward_info(self) -> ForwardInfo | None:
        if self.info is None and self.info_factory is not None:
            self.info, self.info_factory = self.info_factory(), None
        return self.info


def run_case(case: Case, rtol: float, atol: float, report: FunctionReport) -> FunctionReport:
    """Compare every gradient of ``case`` with central differences; name the wrong line."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _run_case_quietly(case, rtol, atol, report)


def _run_case_quietly(
    case: Case, rtol: float, atol: float, report: FunctionReport
) -> FunctionReport:
    try:
        value = case.forward(*case.args)
    except Exception as error:
        report.error = f"{case.name} raised {type(error).__name__}: {error}"
        return report
    try:
        raw = case.backward.call(case.args, case.upstream)
    except Exception as error:
        report.error = f"its backward raised {type(error).__name__}: {error}"
        report.culprit = raised_at(error, case.backward, case.forward_info())
        report.refusal = refusal(error, case.backward)
        return report
    wanted = case.wrt if case.wrt is not None else case.parameters
    if len(wanted) == 1 and not isinstance(raw, tuple):
        raw = (raw,)
    if not isinstance(raw, tuple) or len(raw) != len(wanted):
        count = len(raw) if isinstance(raw, tuple) else 1
        report.error = (
            f"its backward returns {count} gradient(s) for {len(wanted)} parameter(s) "
            f"({', '.join(wanted)})"
        )
        return report
    returned = dict(zip(wanted, raw, strict=True))
    position = {name: k for k, name in enumerate(case.parameters)}
    checks: dict[str, GradientCheck] = {}
    for parameter in wanted:
        gradient = returned[parameter]
        if parameter in case.index:
            skipped = "no gradient (the backward gives None: used only as an index or a shape)"
            if gradient is not None:
                skipped += f" (the backward gives {type(gradient).__name__})"
            checks[parameter] = GradientCheck(parameter, "skip", note=skipped)
            continue
        k = position[parameter]

        def loss(v: Any, k: int = k) -> float:
            args = list(case.args)
            args[k] = v
            return scalar_loss(case.upstream, case.forward(*args))

        try:
            numeric = central_differences(loss, case.args[k])
        except Exception as error:
            report.error = f"central differences of {parameter} failed: {error!r}"
            return report
        comparison = compare(gradient, numeric, rtol, atol)
        checks[parameter] = GradientCheck(
            parameter,
            "pass" if comparison.passed else "FAIL",
            comparison.max_rel,
            comparison.max_abs,
            comparison.worst,
            comparison.expected,
            comparison.actual,
            comparison.problem,
            flat=bool(np.size(numeric)) and not np.any(numeric),
        )
    report.gradients = [checks[p] for p in wanted]
    info = case.forward_info() if not report.passed else None
    if info is not None:
        # The forward's staged form is there, so is gradgen's generator (and libcst): its
        # guard (a large stack) lets the stages of a deep expression be rendered and re-run.
        from gradgen.api import with_headroom

        try:
            culprit, note = with_headroom(
                lambda: locate(
                    info,
                    case.parameters,
                    case.args,
                    case.upstream,
                    value,
                    checks,
                    case.backward,
                    rtol,
                    atol,
                )
            )
        except Exception as error:  # naming the line is a help; never hide the failure
            culprit, note = None, f"naming the wrong line failed: {error!r}"
        report.culprit = culprit
        if culprit is None and note:
            report.notes.append(f"no line named: {note}")
    return report


@functools.cache
def _refusals() -> frozenset[tuple[str, str]]:
    """gradgen's documented refusals at run time, as ``(helper, message)``: every
    ``raise ValueError("gradgen: ...")`` of a helper a generated module defines for itself
    (``gradgen.helpers``), such as ``_dot_ranks``'s for ``np.dot`` of a number or of arrays
    above 2-D. They are read from the helpers' source, so that a new one counts, and a
    changed message is not missed."""
    from gradgen.helpers import HELPERS

    found: set[tuple[str, str]] = set()
    for name, source in HELPERS.items():
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            call = node.exc
            if not (isinstance(call.func, ast.Name) and call.func.id == "ValueError"):
                continue
            if call.args and isinstance(call.args[0], ast.Constant):
                message = call.args[0].value
                if isinstance(message, str) and message.startswith("gradgen: "):
                    found.add((name, message))
    return frozenset(found)


def refusal(error: BaseException, backward: Backward) -> str | None:
    """``error`` as ``"ValueError: gradgen: ..."`` when it is one of gradgen's documented
    refusals (``_refusals``) raised by the helper of the backward's own module that defines
    it; else None. Anything else a backward raises, including a ValueError with the same
    words raised from elsewhere, is not a refusal."""
    if type(error) is not ValueError or len(error.args) != 1:
        return None
    traceback = error.__traceback__
    if traceback is None:
        return None
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    code = traceback.tb_frame.f_code
    if (code.co_name, error.args[0]) not in _refusals():
        return None
    if backward.filename and code.co_filename != backward.filename:
        return None
    return f"ValueError: {error.args[0]}"


class Upstreams(tuple[Any, ...]):
    """The upstream gradients of a function returning several values, one per value."""


def random_upstream(value: Any, rng: Any) -> Any:
    """A random upstream gradient (never 1.0, so a forgotten ``* dout`` shows); for a
    function returning several values, one each (``Upstreams``)."""
    if isinstance(value, tuple):
        return Upstreams(random_upstream(part, rng) for part in value)
    if np.ndim(value) == 0:
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5))
    return rng.standard_normal(np.shape(value))
