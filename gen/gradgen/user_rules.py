"""What forward code writes to give gradgen a rule of its own: ``@gradgen.backward_of``.

A *user rule* is a function whose backward the user writes: one gradgen cannot see into
(a library function with no rule, a C extension) or should not (a fused
softmax-cross-entropy, whose backward is one line). gradgen reads the rule from the text,
never running it: the forward function's body is taken as it is, and callers' backwards call
the function given here, ``F_backward(<F's parameters>, <one upstream per result>)``,
returning one gradient per parameter (a tuple when there are several; ``None`` for a
parameter with no gradient). In plain Python the decorator only records the pair.

    def norm_cdf(x):
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    @gradgen.backward_of(norm_cdf)
    def norm_cdf_backward(x, dout):
        return dout * math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

B = TypeVar("B", bound=Callable[..., Any])


def backward_of(forward: Callable[..., Any]) -> Callable[[B], B]:
    """Declare the decorated function the backward of ``forward`` (see the module's
    docstring); returns it unchanged, and sets ``forward.backward`` to it. Its parameters
    must be ``forward``'s, in order, then one upstream gradient per value ``forward``
    returns."""

    def declare(backward: B) -> B:
        _check_parameters(forward, backward)
        # A builtin takes no attributes: the pair is still recorded where gradgen reads it.
        with contextlib.suppress(AttributeError):
            forward.backward = backward  # type: ignore[attr-defined]
        return backward

    return declare


def _check_parameters(forward: Callable[..., Any], backward: Callable[..., Any]) -> None:
    try:
        wanted = list(inspect.signature(forward).parameters)
        given = list(inspect.signature(backward).parameters)
    except (TypeError, ValueError):
        return  # no signature to compare (a builtin): gradgen's reading checks the text
    if given[: len(wanted)] != wanted or len(given) == len(wanted):
        name = getattr(forward, "__name__", "the forward")
        raise TypeError(
            f"the backward of {name} must take its parameters ({', '.join(wanted)}), then one "
            f"upstream gradient per result; got ({', '.join(given)})"
        )
