"""gradgen: readable backward code, generated from staged forward code.

>>> import gradgen
>>> print(gradgen.generate("def f(x, y):\n    return x * y\n"))  # doctest: +SKIP
"""

from gradgen.api import generate
from gradgen.decorator import StaleBackwardError, StaleBackwardWarning, differentiable
from gradgen.errors import GradgenError

__all__ = [
    "GradgenError",
    "StaleBackwardError",
    "StaleBackwardWarning",
    "differentiable",
    "generate",
]
__version__ = "0.1.0"
