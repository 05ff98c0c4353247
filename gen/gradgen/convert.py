"""libcst expressions to ``expr`` nodes, refusing what gradgen cannot differentiate.

The same converter reads user code, rule forms and adjoint templates; what a name means is
left to a ``Resolver`` so each caller decides (a variable, a module constant, a function).
"""

from __future__ import annotations

from typing import Protocol

import libcst as cst

from gradgen.expr import BinOp, Call, Compare, Const, Expr, Func, Group, UnaryOp, normalize_number

_BINARY = {
    cst.Add: "+",
    cst.Subtract: "-",
    cst.Multiply: "*",
    cst.Divide: "/",
    cst.Power: "**",
}
_UNARY = {cst.Minus: "-", cst.Plus: "+"}
_COMPARE = {
    cst.LessThan: "<",
    cst.LessThanEqual: "<=",
    cst.GreaterThan: ">",
    cst.GreaterThanEqual: ">=",
}

# Why each kind of expression is refused, in the user's terms.
_REFUSED_EXPRESSIONS: dict[type[cst.CSTNode], str] = {
    cst.Lambda: "lambdas are not supported: write the computation out as statements",
    cst.ListComp: "comprehensions are not supported: gradgen differentiates straight-line code",
    cst.SetComp: "comprehensions are not supported: gradgen differentiates straight-line code",
    cst.DictComp: "comprehensions are not supported: gradgen differentiates straight-line code",
    cst.GeneratorExp: "generator expressions are not supported: gradgen differentiates "
    "straight-line code",
    cst.IfExp: "conditional expressions are not supported: the gradient would depend on "
    "the branch taken; use max()/min() or abs() where they express it",
    cst.BooleanOperation: "'and'/'or' are not supported: they choose a value by a condition",
    cst.Comparison: "comparisons are not supported here: their result has no gradient",
    cst.Subscript: "indexing is not supported yet",
    cst.Tuple: "tuples are not supported: assign each value to its own name",
    cst.List: "lists are not supported: assign each value to its own name",
    cst.Set: "sets are not supported",
    cst.Dict: "dicts are not supported",
    cst.SimpleString: "strings have no gradient",
    cst.ConcatenatedString: "strings have no gradient",
    cst.FormattedString: "strings have no gradient",
    cst.NamedExpr: "assignment expressions (:=) are not supported: use a separate statement",
    cst.Await: "'await' is not supported: gradgen differentiates plain functions",
    cst.Yield: "'yield' is not supported: gradgen differentiates plain functions",
    cst.Ellipsis: "'...' has no gradient",
    cst.Imaginary: "complex numbers are not supported",
    cst.StarredElement: "unpacking with * is not supported",
}


class Resolver(Protocol):
    """What names mean where an expression is read."""

    def value(self, node: cst.Name | cst.Attribute, dotted: str) -> Expr | None:
        """A variable or constant for a name or dotted name; None after refusing it."""

    def function(self, node: cst.BaseExpression, dotted: str | None) -> Func | None:
        """The function a call calls; None after refusing it."""

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        """Record that ``node`` cannot be differentiated, and why."""


PLACEHOLDER = Const("0", 0)  # stands in for a refused subexpression so conversion goes on


def dotted_name(node: cst.BaseExpression) -> str | None:
    """``"np.linalg.norm"`` for a chain of names and attributes, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted_name(node.value)
        return None if head is None else f"{head}.{node.attr.value}"
    return None


def convert(node: cst.BaseExpression, resolver: Resolver) -> Expr:
    """``node`` as an ``Expr``; refused parts are reported and replaced by a placeholder."""
    expr = _convert_bare(node, resolver)
    if getattr(node, "lpar", None):
        expr = Group(expr, origin=node)
    return expr


def _convert_bare(node: cst.BaseExpression, resolver: Resolver) -> Expr:
    if isinstance(node, (cst.Name, cst.Attribute)):
        dotted = dotted_name(node)
        if dotted is None:
            resolver.refuse(node, "attribute access is not supported here")
            return PLACEHOLDER
        return resolver.value(node, dotted) or PLACEHOLDER
    if isinstance(node, cst.Integer):
        value = int(node.value.replace("_", ""), 0)
        return Const(normalize_number(node.value), value, origin=node)
    if isinstance(node, cst.Float):
        value_f = float(node.value.replace("_", ""))
        return Const(normalize_number(node.value), value_f, origin=node)
    if isinstance(node, cst.BinaryOperation):
        op = _BINARY.get(type(node.operator))
        if op is None:
            symbol = _operator_symbol(node)
            resolver.refuse(node.operator, f"the operator '{symbol}' is not supported")
            return PLACEHOLDER
        left = convert(node.left, resolver)
        right = convert(node.right, resolver)
        return BinOp(op, left, right, origin=node)
    if isinstance(node, cst.UnaryOperation):
        op = _UNARY.get(type(node.operator))
        if op is None:
            resolver.refuse(node, "this unary operator is not supported")
            return PLACEHOLDER
        return UnaryOp(op, convert(node.expression, resolver), origin=node)
    if isinstance(node, cst.Call):
        return _convert_call(node, resolver)
    if isinstance(node, cst.Comparison) and len(node.comparisons) == 1:
        target = node.comparisons[0]
        compare = _COMPARE.get(type(target.operator))
        if compare is not None and isinstance(resolver, ComparisonsAllowed):
            return Compare(
                compare,
                convert(node.left, resolver),
                convert(target.comparator, resolver),
                origin=node,
            )
    message = _REFUSED_EXPRESSIONS.get(type(node), f"{type(node).__name__} is not supported")
    resolver.refuse(node, message)
    return PLACEHOLDER


def _operator_symbol(node: cst.BinaryOperation) -> str:
    # The operator's own spelling, taken from the source text of the operation.
    return cst.Module([]).code_for_node(node.operator).strip()


def _convert_call(node: cst.Call, resolver: Resolver) -> Expr:
    dotted = dotted_name(node.func)
    if dotted is None:
        convert(node.func, resolver)  # refuses the callee with its own reason (a lambda, ...)
        return PLACEHOLDER
    func = resolver.function(node.func, dotted)
    args: list[Expr] = []
    for arg in node.args:
        if arg.keyword is not None:
            resolver.refuse(arg, "keyword arguments are not supported yet")
        elif arg.star:
            resolver.refuse(arg, "unpacking arguments with * or ** is not supported")
        else:
            args.append(convert(arg.value, resolver))
    if func is None:
        return PLACEHOLDER
    return Call(func, tuple(args), origin=node)


class ComparisonsAllowed:
    """Marker base for resolvers that read comparisons (adjoint templates build masks)."""
