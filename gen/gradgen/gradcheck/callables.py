"""Checking a Python function at given arguments (``gradgen.testing``): its backward is
given, its ``f.backward``, or generated from its source now."""

from __future__ import annotations

import inspect
import linecache
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.gradcheck.compare import DEFAULT_ATOL, DEFAULT_RTOL
from gradgen.gradcheck.forward import function_info
from gradgen.gradcheck.instrument import Backward, backward_from_function
from gradgen.gradcheck.results import FunctionReport
from gradgen.gradcheck.run import Case, random_upstream, run_case
from gradgen.gradcheck.structured import FlatBackward, flattening
from gradgen.naming import backward_function_name

if TYPE_CHECKING:
    from gradgen.api import Compiled


def check_callable(
    f: Callable[..., Any],
    args: Sequence[Any],
    *,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    upstream: Any = None,
    backward: Callable[..., Any] | None = None,
) -> FunctionReport:
    """Check ``f``'s backward at ``args`` against central differences of ``f``.

    The backward is ``backward`` when given, else ``f.backward`` (``@gradgen.differentiable``;
    with ``pairs=True``, ``f.forward`` makes the cache), else generated from ``f``'s source
    now. ``upstream`` defaults to a random one of the result's shape. Arguments the backward
    gives ``None`` for (labels) are not differentiated; float arrays are widened to float64
    so that central differences are accurate. Needs libcst only to generate a backward or
    to name the wrong line of a failing one.
    """
    if np is None:
        raise ImportError("gradgen's gradient check needs numpy")
    name = getattr(f, "__name__", repr(f))
    report = FunctionReport(name)
    try:
        bound = inspect.signature(f).bind(*args)
    except TypeError as error:
        report.error = f"the arguments do not fit {name}: {error}"
        return report
    bound.apply_defaults()
    parameters = tuple(bound.arguments)
    values = [_widened(v) for v in bound.arguments.values()]
    if not rtol > 0 or not atol >= 0:
        raise ValueError(f"need rtol > 0 and atol >= 0, not rtol={rtol}, atol={atol}")
    if backward is None:
        backward = getattr(f, "backward", None)
    compiled: Compiled | None
    if backward is None:
        from gradgen.decorator import compile_function

        compiled = compile_function(f)
        backward = _exec_generated(f, compiled.text)
    else:
        # One the decorator generated in memory: its compile is at hand. Any other (a
        # committed file, a hand-written one) is read as it is.
        from gradgen.decorator import compiled_for

        compiled = compiled_for(backward)
    # What gradgen knows of the backward checked, when it wrote it: its gradient names,
    # what each statement writes, the parameters it returns gradients for.
    generated = compiled.backward(name) if compiled is not None else None
    ties = compiled.ties.get(backward_function_name(name)) if compiled is not None else None
    wrapped = backward_from_function(backward, ties)
    pair_forward = getattr(f, "forward", None)
    names = list(inspect.signature(backward).parameters)
    if callable(pair_forward) and len(names) >= 2 and names[-1] == "cache":
        wrapped.pair_forward = pair_forward
    with np.errstate(all="ignore"):
        value = f(*values)
    if upstream is None:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        upstream = random_upstream(value, rng)
    case = Case(name, f, parameters, values, upstream, wrapped)
    if generated is not None:
        case.wrt = generated.wrt
        if generated.staged.structured:
            from gradgen.structure import user_names  # reads libcst: only when generating

            case.wrt = tuple(user_names(generated.wrt or parameters, generated.staged.structured))
    else:
        case.wrt = _returned_parameters(wrapped, parameters)
    layout = flattening(parameters, values)
    if layout is not None:
        # Dicts, lists or tuples of arrays: checked leaf by leaf (gradcheck.structured).
        wanted_user = case.wrt or _returned_with_containers(wrapped, parameters, values)

        def flatten(
            raw: Any, wanted: tuple[str, ...] = wanted_user, given: list[Any] = values
        ) -> tuple[Any, ...]:
            return layout.flatten(raw, wanted, given)

        def flat_forward(*flat: Any) -> Any:
            return f(*layout.rebuild(flat))

        flat_values = layout.values(values)
        case = Case(
            name,
            flat_forward,
            layout.names,
            flat_values,
            upstream,
            FlatBackward.around(wrapped, lambda flat: layout.rebuild(flat), flatten),
            wrt=layout.flat_names(wanted_user),
        )
        parameters, values = case.parameters, flat_values
    with np.errstate(all="ignore"):
        try:
            raw = case.backward.call(values, upstream)
        except Exception:
            raw = None
    wanted = case.wrt if case.wrt is not None else parameters
    if isinstance(raw, tuple) and len(raw) == len(wanted):
        case.index = frozenset(p for p, g in zip(wanted, raw, strict=True) if g is None)
    elif len(wanted) == 1 and raw is None:
        case.index = frozenset(wanted)
    # A float argument is differentiated even when the backward gives it None: that fails.
    case.index = frozenset(p for p in case.index if not _is_float(values[parameters.index(p)]))
    if layout is None:  # lines are named in the forward's own parameters, not its leaves
        case.info_factory = lambda: function_info(f, generated)
    return run_case(case, rtol, atol, report)


def _widened(value: Any) -> Any:
    """Float arrays as float64 (central differences in float32 are noise); the rest as is."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != np.float64:
        return value.astype(np.float64)
    return value


def _is_float(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) or (
        isinstance(value, np.ndarray) and value.dtype.kind == "f"
    )


def _exec_generated(f: Callable[..., Any], source: str) -> Callable[..., Any]:
    """The backward function of ``source`` (generated from ``f``), run in ``f``'s globals
    under a filename linecache knows, so its source can be read back and instrumented."""
    filename = f"<gradgen check: backward of {f.__module__}.{f.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    from gradgen.decorator import ModuleNamespace

    # The generated functions call one another (a callee's F_forward): one namespace.
    namespace = ModuleNamespace(f.__globals__)
    exec(compile(source, filename, "exec"), namespace)
    function: Callable[..., Any] = namespace[f"{f.__name__}_backward"]
    return function


def _returned_parameters(backward: Backward, parameters: tuple[str, ...]) -> tuple[str, ...] | None:
    """The parameters a backward gradgen did not write (for this check) returns gradients
    for, read from the names it returns (``dW1, db1``); None when it returns one per
    parameter."""
    names = backward.returned_names
    if names is None or len(names) == len(parameters) or len(parameters) <= 1:
        return None
    mapped = []
    for name in names:
        match = [p for p in parameters if name in (f"d{p}", f"d_{p}")]
        if len(match) != 1:
            return None
        mapped.append(match[0])
    return tuple(mapped)


def _returned_with_containers(
    backward: Backward, parameters: tuple[str, ...], values: list[Any]
) -> tuple[str, ...]:
    """The parameters a backward gradgen did not write (for this check) returns gradients
    for, when some are containers: read from its return statement, a name ``dX`` standing
    for ``X`` and a dict or list written out for the next container parameter (a committed
    ``return {"W1": dW1, ...}`` under ``wrt = params``); all of them when that does not
    add up."""
    names = backward.returned_names
    if names is None or len(names) == len(parameters):
        return parameters
    containers = [
        p for p, v in zip(parameters, values, strict=True) if isinstance(v, (dict, list, tuple))
    ]
    mapped: list[str] = []
    for name in names:
        match = [p for p in parameters if name in (f"d{p}", f"d_{p}")]
        if name == "" and containers:
            mapped.append(containers.pop(0))
        elif len(match) == 1:
            mapped.append(match[0])
        else:
            return parameters
    return tuple(mapped)
