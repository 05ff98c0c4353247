"""THE tests' table: sample points for every rule of ``gradgen/rules.py``.

Adding a rule to ``gen/gradgen/rules.py`` needs a row here too: ``test_rules.py`` fails while
a rule has no sample points, and checks every spelling (form) of every rule against finite
differences at each of its points.

A point gives one value per input, in ``rule.inputs`` order. Points lie inside the rule's
domain and away from kinks and ties (the behaviour at a kink is tested separately, exactly),
so that central finite differences are accurate there.
"""

from __future__ import annotations

RULE_POINTS: dict[str, list[tuple[float, ...]]] = {
    # fused gates
    "sigmoid": [(0.3,), (-1.7,), (2.4,), (0.0,)],
    # arithmetic operators
    "add": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],
    "sub": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],
    "mul": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],
    "div": [(1.5, -2.25), (-0.75, 3.0), (0.2, 0.7)],  # y != 0
    "pow": [(1.3, 2.0), (0.6, -1.5), (2.2, 0.5), (1.7, 3.3)],  # x > 0
    "neg": [(1.25,), (-0.4,), (3.0,)],
    "pos": [(1.25,), (-0.4,), (3.0,)],
    # exponentials and logarithms
    "exp": [(0.3,), (-1.2,), (2.0,)],
    "expm1": [(0.3,), (-1.2,), (1e-3,)],
    "log": [(0.4,), (1.7,), (12.5,)],  # x > 0
    "log_base": [(0.4, 2.0), (7.5, 10.0), (3.1, 0.5), (1.7, 2.718281828459045)],  # b != 1
    "log1p": [(0.4,), (-0.6,), (5.0,)],  # x > -1
    "log2": [(0.4,), (1.7,), (12.5,)],
    "log10": [(0.4,), (1.7,), (12.5,)],
    "sqrt": [(0.25,), (2.0,), (9.5,)],  # x > 0
    "square": [(1.5,), (-0.7,), (3.2,)],
    # trigonometric and hyperbolic
    "sin": [(0.3,), (-1.2,), (2.5,)],
    "cos": [(0.3,), (-1.2,), (2.5,)],
    "tan": [(0.3,), (-1.0,), (1.2,)],  # away from pi/2
    "tanh": [(0.3,), (-1.2,), (2.0,)],
    # piecewise: never at a kink or a tie
    "abs": [(1.5,), (-0.7,), (3.0,)],
    "max": [(1.5, -0.5), (-0.5, 1.5), (2.0, 1.0), (-3.0, -1.0)],
    "min": [(1.5, -0.5), (-0.5, 1.5), (2.0, 1.0), (-3.0, -1.0)],
}
