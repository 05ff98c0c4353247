"""Gradient assertions for tests: a backward against central differences of its forward.

>>> import gradgen
>>> from gradgen.testing import assert_gradients_match
>>> @gradgen.differentiable
... def f(x, y):
...     q = x + y
...     return q * y
>>> assert_gradients_match(f, 1.5, -0.5)  # doctest: +SKIP

On a mismatch the ``AssertionError`` names each wrong gradient (the worst entry, the
backward's value and the central difference there, the largest absolute and relative
errors) and, when it can be found, the first forward line whose backward disagrees (see
``gradgen.gradcheck`` for how). pytest hides this module's frames in the traceback.

Importing this module needs numpy but not libcst: checking a function that already has
``f.backward`` generates nothing. libcst is imported only to generate a backward for a plain
function, or to name the wrong line of a failing check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradgen import gradcheck
from gradgen.gradcheck.results import FunctionReport

__all__ = ["FunctionReport", "assert_gradients_match", "check_gradients"]


def assert_gradients_match(
    f: Callable[..., Any],
    *args: Any,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    upstream: Any = None,
    backward: Callable[..., Any] | None = None,
) -> None:
    """Assert that the backward of ``f`` gives, at ``args``, the gradients that central
    differences of ``f`` give.

    ``f`` is a forward function: decorated with ``@gradgen.differentiable`` (its
    ``f.backward`` is checked; with ``pairs=True``, through ``f.forward``'s cache) or plain
    (its backward is generated from its source now). ``backward`` checks another backward
    instead, such as a hand-written one: it takes ``f``'s parameters and the upstream
    gradient, like ``F_backward``. ``upstream`` is the upstream gradient (default: a fixed
    random one of the result's shape, never 1.0, so that a forgotten ``* dout`` shows).
    Arguments whose gradient the backward gives as ``None`` (integer labels) are not
    differentiated; float arrays are compared in float64.

    An entry matches when ``|backward - numeric| <= max(rtol * max(|backward|, |numeric|),
    atol)``.
    """
    __tracebackhide__ = True
    report = check_gradients(f, *args, rtol=rtol, atol=atol, upstream=upstream, backward=backward)
    if not report.passed:
        raise AssertionError(report.message(rtol, atol))


def check_gradients(
    f: Callable[..., Any],
    *args: Any,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    upstream: Any = None,
    backward: Callable[..., Any] | None = None,
) -> FunctionReport:
    """The check ``assert_gradients_match`` makes, returned instead of asserted: its
    ``passed``, its table (``print(report)``, or displayed as a table in a notebook) and
    its ``message()`` naming each wrong gradient and the first disagreeing line."""
    return gradcheck.check_callable(
        f, args, rtol=rtol, atol=atol, upstream=upstream, backward=backward
    )
