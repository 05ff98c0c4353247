"""THE table of derivative rules: one row per operation.

A row names the operation, the spellings (forms) it is recognised by in forward code, and
for each input the adjoint that input receives. In forms and templates:

- ``x``, ``y``, ``b`` are the operation's inputs, ``out`` its result, ``g`` the gradient
  flowing into ``out`` (the upstream gradient);
- ``math.f`` / ``numpy.f`` / ``abs``, ``max``, ``min`` are matched however the user's module
  spells them (``np.exp``, ``from math import exp``);
- an unqualified call in a template (``log(x)``) uses the library of the forward operation
  (``math.log`` for ``math.pow``, ``np.log`` for ``np.power``);
- parentheses in a template are kept in the output, so ``(2 * x) * g`` reads as the local
  gradient times the upstream gradient, the way the CS231n notes write it.

Rows whose form is larger (a fused gate such as the sigmoid written out) are tried before the
primitive rows they contain. Adding an operation is one row here and one row in the tests'
table (``tests/rule_points.py``); a test fails if either is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from gradgen.convert import ComparisonsAllowed, convert, dotted_name
from gradgen.expr import Call, Const, Expr, Func, Name, names_in, walk

LIBRARIES = ("math", "numpy")
BUILTINS = ("abs", "max", "min")


@dataclass(frozen=True)
class Rule:
    """One operation: how it is spelled and what each input's adjoint is."""

    name: str
    forms: tuple[Expr, ...]
    form_texts: tuple[str, ...]
    inputs: tuple[str, ...]
    adjoints: tuple[Expr, ...]  # aligned with ``inputs``
    adjoint_texts: tuple[str, ...]


class _TemplateResolver(ComparisonsAllowed):
    def value(self, node: cst.Name | cst.Attribute, dotted: str) -> Expr:
        if "." in dotted:
            return Const(dotted)
        return Name(dotted)

    def function(self, node: cst.BaseExpression, dotted: str | None) -> Func:
        if dotted is None:
            raise ValueError("a rule calls something that is not a name")
        lib, _, name = dotted.rpartition(".")
        if lib:
            if lib not in LIBRARIES:
                raise ValueError(f"unknown library {lib!r} in a rule")
            return Func(lib, name, dotted)
        if name in BUILTINS:
            return Func("builtins", name, name)
        return Func(None, name, name)  # a helper: resolved with the stage's library

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        raise ValueError(f"bad rule text: {message}")


def _parse(text: str) -> Expr:
    return convert(cst.parse_expression(text), _TemplateResolver())


def rule(name: str, *forms: str, **adjoints: str) -> Rule:
    """A row of the table: ``rule("mul", "x * y", x="y * g", y="x * g")``."""
    parsed_forms = tuple(_parse(form) for form in forms)
    inputs = tuple(adjoints)
    for form, text in zip(parsed_forms, forms, strict=True):
        if sorted(names_in(form)) != sorted(inputs):
            raise ValueError(f"rule {name}: form {text!r} must use exactly {inputs}")
    return Rule(
        name=name,
        forms=parsed_forms,
        form_texts=forms,
        inputs=inputs,
        adjoints=tuple(_parse(t) for t in adjoints.values()),
        adjoint_texts=tuple(adjoints.values()),
    )


# fmt: off
RULES: tuple[Rule, ...] = (
    # --- fused gates (tried first: their forms contain primitive forms) ----------------------
    rule("sigmoid", "1 / (1 + math.exp(-x))", "1 / (1 + numpy.exp(-x))",
         x="((1 - out) * out) * g"),

    # --- arithmetic operators --------------------------------------------------------------
    rule("add", "x + y", x="g", y="g"),
    rule("sub", "x - y", x="g", y="-g"),
    rule("mul", "x * y", x="y * g", y="x * g"),
    rule("div", "x / y", x="g / y", y="(-x / y**2) * g"),
    rule("pow", "x ** y", "math.pow(x, y)", "numpy.power(x, y)",
         x="(y * x ** (y - 1)) * g", y="(out * log(x)) * g"),
    rule("neg", "-x", x="-g"),
    rule("pos", "+x", x="g"),

    # --- exponentials and logarithms -------------------------------------------------------
    rule("exp", "math.exp(x)", "numpy.exp(x)", x="out * g"),
    rule("expm1", "math.expm1(x)", "numpy.expm1(x)", x="(out + 1) * g"),
    rule("log", "math.log(x)", "numpy.log(x)", x="g / x"),
    rule("log_base", "math.log(x, b)",
         x="g / (x * log(b))", b="(-out / (b * log(b))) * g"),
    rule("log1p", "math.log1p(x)", "numpy.log1p(x)", x="g / (1 + x)"),
    rule("log2", "math.log2(x)", "numpy.log2(x)", x="g / (x * log(2))"),
    rule("log10", "math.log10(x)", "numpy.log10(x)", x="g / (x * log(10))"),
    rule("sqrt", "math.sqrt(x)", "numpy.sqrt(x)", x="(0.5 / out) * g"),
    rule("square", "numpy.square(x)", x="(2 * x) * g"),

    # --- trigonometric and hyperbolic --------------------------------------------------------
    rule("sin", "math.sin(x)", "numpy.sin(x)", x="cos(x) * g"),
    rule("cos", "math.cos(x)", "numpy.cos(x)", x="-sin(x) * g"),
    rule("tan", "math.tan(x)", "numpy.tan(x)", x="(1 + out**2) * g"),
    rule("tanh", "math.tanh(x)", "numpy.tanh(x)", x="(1 - out**2) * g"),

    # --- piecewise: one documented sub-gradient at the kinks -------------------------------
    # abs: 0 at x == 0 (numpy's sign convention).
    rule("abs", "abs(x)", "math.fabs(x)", "numpy.abs(x)", "numpy.absolute(x)",
         x="(x > 0) * g - (x < 0) * g"),
    # max/min: the gradient goes to the winner; a tie goes to the first argument, the one
    # Python's max() and min() return.
    rule("max", "max(x, y)", "numpy.maximum(x, y)", x="(x >= y) * g", y="(x < y) * g"),
    rule("min", "min(x, y)", "numpy.minimum(x, y)", x="(x <= y) * g", y="(x > y) * g"),
)
# fmt: on

# Module attributes that are constants: no derivative, copied as written.
CONSTANTS: dict[str, tuple[str, ...]] = {
    "math": ("pi", "e", "tau", "inf"),
    "numpy": ("pi", "e", "inf", "newaxis"),
}


def _form_size(form: Expr) -> int:
    return sum(1 for _ in walk(form))


def rules_by_priority() -> tuple[tuple[Rule, Expr], ...]:
    """(rule, form) pairs, larger forms first, so fused gates win over their parts."""
    pairs = [(r, f) for r in RULES for f in r.forms]
    pairs.sort(key=lambda pair: -_form_size(pair[1]))
    return tuple(pairs)


def known_functions() -> frozenset[tuple[str, str]]:
    """Every ``(library, name)`` some form calls, e.g. ``("math", "exp")``."""
    found: set[tuple[str, str]] = set()
    for r in RULES:
        for form in r.forms:
            for node in walk(form):
                if isinstance(node, Call) and node.func.lib is not None:
                    found.add((node.func.lib, node.func.name))
    return frozenset(found)


def form_library(form: Expr) -> str | None:
    """The library a form belongs to (``"math"`` for ``math.exp(x)``), None for operators."""
    for node in walk(form):
        if isinstance(node, Call) and node.func.lib in LIBRARIES:
            return node.func.lib
    return None


def operations_table() -> str:
    """The README's table of supported operations, written from the rules themselves."""
    lines = ["| operation | spellings | adjoint of each input |", "|---|---|---|"]
    for r in RULES:
        spellings = ", ".join(f"`{t}`" for t in r.form_texts)
        adjoints = ", ".join(
            f"`d{i} += {t}`" for i, t in zip(r.inputs, r.adjoint_texts, strict=True)
        )
        lines.append(f"| {r.name} | {spellings} | {adjoints} |")
    return "\n".join(lines)


__all__ = [
    "CONSTANTS",
    "RULES",
    "Rule",
    "dotted_name",
    "form_library",
    "known_functions",
    "operations_table",
    "rule",
    "rules_by_priority",
]
