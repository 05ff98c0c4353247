"""gradgen: readable backward code, generated from staged forward code.

>>> import gradgen
>>> print(gradgen.generate("def f(x, y):\n    return x * y\n"))  # doctest: +SKIP
"""

from collections.abc import Mapping, Sequence
from typing import TypeVar

from gradgen.decorator import StaleBackwardError, StaleBackwardWarning, differentiable
from gradgen.display import show
from gradgen.errors import GradgenError
from gradgen.user_rules import backward_of

__all__ = [
    "GradgenError",
    "StaleBackwardError",
    "StaleBackwardWarning",
    "backward_of",
    "differentiable",
    "generate",
    "show",
    "stop_gradient",
]
__version__ = "0.1.0"

_Value = TypeVar("_Value")


def stop_gradient(value: _Value) -> _Value:
    """``value`` itself, marked as a constant for gradients: no gradient flows through it.

    When it runs it is the identity. gradgen reads the mark: the value gets no adjoint, and
    the generated code, which does not import gradgen, computes the value without the call.
    Use it where a value is mathematically gradient-free, such as the max-shift of a softmax
    (``m = gradgen.stop_gradient(np.max(x, axis=1, keepdims=True))``), or to treat a value
    as data. Central differences of the forward see through it: where the value does
    change the result, the gradient check disagrees with the backward, as it should.
    """
    return value


def generate(
    source: str,
    filename: str = "<string>",
    *,
    command: str | None = None,
    wrt: Mapping[str, Sequence[str]] | None = None,
    pairs: bool = False,
    value_and_grad: bool = False,
) -> str:
    """The backward module for every top-level function of ``source`` (see
    ``gradgen.api.generate``); raises ``GradgenError`` naming every problem."""
    # Imported here so that `import gradgen` stays cheap for modules whose committed
    # backward files are current: the generator needs libcst and black.
    from gradgen.api import generate as generate_module

    return generate_module(
        source, filename, command=command, wrt=wrt, pairs=pairs, value_and_grad=value_and_grad
    )
