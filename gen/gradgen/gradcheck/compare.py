"""Comparing numbers: a gradient against central differences, under the tolerances
``rtol`` and ``atol``, and the central differences themselves.

An entry passes when ``|backward - numeric| <= max(rtol * max(|backward|, |numeric|),
atol)``; the "max rel. error" is ``|backward - numeric| / max(|backward|, |numeric|, atol /
rtol)``, so a gradient passes exactly when it is at most ``rtol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]


STEP = 1e-6  # the finite-difference step, relative to the entry's magnitude
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-8


@dataclass(frozen=True)
class Comparison:
    passed: bool
    max_rel: float
    max_abs: float
    worst: tuple[int, ...]
    expected: float
    actual: float
    problem: str = ""  # a shape or type mismatch, said in words


def compare(actual: Any, expected: Any, rtol: float, atol: float) -> Comparison:
    """``actual`` (from a backward) against ``expected`` (central differences)."""
    numeric = np.asarray(expected, dtype=np.float64)
    if actual is None:
        return Comparison(False, np.inf, np.inf, (), 0.0, np.nan, "the backward gives None")
    try:
        given = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        return Comparison(False, np.inf, np.inf, (), 0.0, np.nan, f"not a number: {actual!r}")
    if given.shape != numeric.shape:
        # The contract's 0.0 for a parameter the result does not depend on stands for zeros.
        if given.ndim == 0 and float(given) == 0.0:
            given = np.zeros(numeric.shape)
        else:
            problem = f"shape {given.shape}, but the parameter has shape {numeric.shape}"
            return Comparison(False, np.inf, np.inf, (), 0.0, np.nan, problem)
    if numeric.size == 0:
        return Comparison(True, 0.0, 0.0, (), 0.0, 0.0)
    difference = np.abs(given - numeric)
    floor = atol / rtol
    scale = np.maximum(np.maximum(np.abs(given), np.abs(numeric)), floor)
    with np.errstate(all="ignore"):
        relative = np.where(difference == 0, 0.0, difference / np.where(scale == 0, 1, scale))
    relative = np.where(np.isnan(relative), np.inf, relative)
    worst = np.unravel_index(int(np.argmax(relative)), relative.shape)
    index = tuple(int(i) for i in worst)
    max_rel = float(relative[index])
    passed = bool(max_rel <= rtol) and bool(np.all(np.isfinite(given)))
    return Comparison(
        passed,
        max_rel,
        float(np.nanmax(difference)) if np.any(~np.isnan(difference)) else np.inf,
        index,
        float(numeric[index]),
        float(given[index]),
    )


def scalar_loss(upstream: Any, value: Any) -> float:
    """``sum(upstream * value)``: the scalar whose gradient a backward returns (for several
    values, with one upstream each: the sum of those sums)."""
    if isinstance(value, tuple) and isinstance(upstream, tuple):
        return sum(scalar_loss(u, v) for u, v in zip(upstream, value, strict=True))
    return float(np.sum(np.asarray(upstream, dtype=np.float64) * np.asarray(value)))


def _with_entry(base: Any, index: tuple[int, ...], value: float) -> Any:
    """``base`` with one entry set to ``value``; a Python float stays a Python float."""
    if isinstance(base, np.ndarray):
        changed = base.copy()
        changed[index] = value
        return changed
    if isinstance(base, np.floating):
        return type(base)(value)
    return float(value)


def central_differences(evaluate: Callable[[Any], float], base: Any) -> Any:
    """``d evaluate / d base``, entry by entry, by central differences."""
    array = np.asarray(base, dtype=np.float64)
    gradient = np.zeros(array.shape)
    for index in np.ndindex(array.shape):
        value = float(array[index])
        step = STEP * max(1.0, abs(value))
        up, down = value + step, value - step
        plus = evaluate(_with_entry(base, index, up))
        minus = evaluate(_with_entry(base, index, down))
        gradient[index] = (plus - minus) / (up - down)
    return gradient
