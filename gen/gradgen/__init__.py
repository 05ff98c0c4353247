"""gradgen: readable backward code, generated from staged forward code.

>>> import gradgen
>>> print(gradgen.generate("def f(x, y):\n    return x * y\n"))  # doctest: +SKIP
"""

from collections.abc import Mapping, Sequence

from gradgen.decorator import StaleBackwardError, StaleBackwardWarning, differentiable
from gradgen.errors import GradgenError
from gradgen.user_rules import backward_of

__all__ = [
    "GradgenError",
    "StaleBackwardError",
    "StaleBackwardWarning",
    "backward_of",
    "differentiable",
    "generate",
]
__version__ = "0.1.0"


def generate(
    source: str,
    filename: str = "<string>",
    *,
    command: str | None = None,
    wrt: Mapping[str, Sequence[str]] | None = None,
    pairs: bool = False,
) -> str:
    """The backward module for every top-level function of ``source`` (see
    ``gradgen.api.generate``); raises ``GradgenError`` naming every problem."""
    # Imported here so that `import gradgen` stays cheap for modules whose committed
    # backward files are current: the generator needs libcst and black.
    from gradgen.api import generate as generate_module

    return generate_module(source, filename, command=command, wrt=wrt, pairs=pairs)
