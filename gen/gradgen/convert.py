"""libcst expressions to ``expr`` nodes, refusing what gradgen cannot differentiate.

The same converter reads user code, rule forms and adjoint templates; what a name means is
left to a ``Resolver`` so each caller decides (a variable, a module constant, a function).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import libcst as cst

from gradgen.expr import (
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Func,
    Group,
    Sequence_,
    Slice,
    Subscript,
    UnaryOp,
    normalize_number,
)

_BINARY = {
    cst.Add: "+",
    cst.Subtract: "-",
    cst.Multiply: "*",
    cst.Divide: "/",
    cst.FloorDivide: "//",
    cst.Modulo: "%",
    cst.Power: "**",
    cst.MatrixMultiply: "@",
}
_UNARY = {cst.Minus: "-", cst.Plus: "+"}
_COMPARE = {
    cst.LessThan: "<",
    cst.LessThanEqual: "<=",
    cst.GreaterThan: ">",
    cst.GreaterThanEqual: ">=",
    cst.Equal: "==",
    cst.NotEqual: "!=",
}

# Why each kind of expression is refused, in the user's terms.
_REFUSED_EXPRESSIONS: dict[type[cst.CSTNode], str] = {
    cst.Lambda: "lambdas are not supported: write the computation out as statements",
    cst.ListComp: "comprehensions are not supported: gradgen differentiates straight-line code",
    cst.SetComp: "comprehensions are not supported: gradgen differentiates straight-line code",
    cst.DictComp: "comprehensions are not supported: gradgen differentiates straight-line code",
    cst.GeneratorExp: "generator expressions are not supported: gradgen differentiates "
    "straight-line code",
    cst.IfExp: "a conditional expression is not supported here: bind it to a name in a "
    "statement of its own (y = a if c else b)",
    cst.BooleanOperation: "'and'/'or' are not supported: they choose a value by a condition",
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

    def is_value_name(self, name: str) -> bool:
        """Does ``name`` hold a value (so ``name.attr`` is an attribute of a value)?"""

    def attribute(self, node: cst.Attribute, value: Expr, name: str) -> Expr | None:
        """``value.name`` on a value (``x.T``, ``x.shape``); None after refusing it."""

    def method(self, node: cst.Attribute, name: str) -> Func | None:
        """The function a method call ``value.name(...)`` stands for; None after refusing."""

    def value(self, node: cst.Name | cst.Attribute, dotted: str) -> Expr | None:
        """A variable or constant for a name or dotted name; None after refusing it."""

    def function(self, node: cst.BaseExpression, dotted: str | None) -> Func | None:
        """The function a call calls; None after refusing it."""

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        """Record that ``node`` cannot be differentiated, and why."""


@runtime_checkable
class LeafReader(Protocol):
    """A resolver that reads entries of structured parameters (``params["W1"]``)."""

    def leaf(self, node: cst.Subscript) -> Expr | None:
        """The leaf ``node`` reads (``structure.py``), or None: an ordinary subscript."""


@runtime_checkable
class ConditionalReader(Protocol):
    """A resolver that has bound conditional expressions to names (``a if c else b`` read
    as an ``if`` statement before the one it is in)."""

    def conditional(self, node: cst.IfExp) -> Expr | None:
        """The name ``node``'s value is bound to, or None: not bound."""


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
    if getattr(node, "lpar", None) and not isinstance(node, cst.Tuple):  # a tuple's own parens
        expr = Group(expr, origin=node)
    return expr


def _convert_bare(node: cst.BaseExpression, resolver: Resolver) -> Expr:
    if isinstance(node, (cst.Name, cst.Attribute)):
        dotted = dotted_name(node)
        if isinstance(node, cst.Attribute) and _on_value(node, dotted, resolver):
            value = convert(node.value, resolver)
            return resolver.attribute(node, value, node.attr.value) or PLACEHOLDER
        assert dotted is not None
        return resolver.value(node, dotted) or PLACEHOLDER
    if isinstance(node, cst.Subscript):
        leaf = resolver.leaf(node) if isinstance(resolver, LeafReader) else None
        return leaf or _convert_subscript(node, resolver)
    if isinstance(node, (cst.Tuple, cst.List)):
        items = []
        for element in node.elements:
            if isinstance(element, cst.StarredElement):
                resolver.refuse(element, "unpacking with * is not supported")
                continue
            items.append(convert(element.value, resolver))
        brackets = "()" if isinstance(node, cst.Tuple) else "[]"
        return Sequence_(tuple(items), brackets, origin=node)
    if isinstance(node, cst.Integer):
        value_i = int(node.value.replace("_", ""), 0)
        return Const(normalize_number(node.value), value_i, origin=node)
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
    if isinstance(node, cst.IfExp) and isinstance(resolver, ConditionalReader):
        bound = resolver.conditional(node)
        if bound is not None:
            return bound
    if isinstance(node, cst.Comparison):
        target = node.comparisons[0]
        compare = _COMPARE.get(type(target.operator))
        if len(node.comparisons) > 1:
            resolver.refuse(node, "chained comparisons are not supported: compare once")
            return PLACEHOLDER
        if compare is None:
            resolver.refuse(node, "only <, <=, >, >=, == and != comparisons are supported")
            return PLACEHOLDER
        return Compare(
            compare,
            convert(node.left, resolver),
            convert(target.comparator, resolver),
            origin=node,
        )
    message = _REFUSED_EXPRESSIONS.get(type(node), f"{type(node).__name__} is not supported")
    resolver.refuse(node, message)
    return PLACEHOLDER


_BOOLEAN = {cst.And: "and", cst.Or: "or"}
_IDENTITY = {cst.Is: "is", cst.IsNot: "is not", cst.In: "in", cst.NotIn: "not in"}


def convert_condition(node: cst.BaseExpression, resolver: Resolver) -> Expr:
    """The test of an ``if``: an expression, where ``not``, ``and``, ``or``, ``is``, ``in``
    and strings may appear too (it chooses statements, it is never differentiated)."""
    expr = _convert_condition_bare(node, resolver)
    if getattr(node, "lpar", None) and not isinstance(node, cst.Tuple):
        expr = Group(expr, origin=node)
    return expr


def _convert_condition_bare(node: cst.BaseExpression, resolver: Resolver) -> Expr:
    if isinstance(node, cst.BooleanOperation):
        op = _BOOLEAN[type(node.operator)]
        left = convert_condition(node.left, resolver)
        return BinOp(op, left, convert_condition(node.right, resolver), origin=node)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        return UnaryOp("not", convert_condition(node.expression, resolver), origin=node)
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        return Const(cst.Module([]).code_for_node(node), origin=node)
    if isinstance(node, (cst.Tuple, cst.List)) and not any(
        isinstance(e, cst.StarredElement) for e in node.elements
    ):
        # what ``in`` looks in: mode in ("relu", "tanh"), strings among the items
        items = tuple(convert_condition(e.value, resolver) for e in node.elements)
        brackets = "()" if isinstance(node, cst.Tuple) else "[]"
        return Sequence_(items, brackets, origin=node)
    if isinstance(node, cst.Comparison) and len(node.comparisons) == 1:
        target = node.comparisons[0]
        spelled = _COMPARE.get(type(target.operator)) or _IDENTITY.get(type(target.operator))
        if spelled is not None:
            left = convert_condition(node.left, resolver)
            right = convert_condition(target.comparator, resolver)
            return Compare(spelled, left, right, origin=node)
    return _convert_bare(node, resolver)


def _operator_symbol(node: cst.BinaryOperation) -> str:
    # The operator's own spelling, taken from the source text of the operation.
    return cst.Module([]).code_for_node(node.operator).strip()


def _on_value(node: cst.Attribute, dotted: str | None, resolver: Resolver) -> bool:
    """Is ``node`` an attribute of a value (``x.T``) rather than of a module (``np.pi``)?"""
    return dotted is None or resolver.is_value_name(dotted.split(".")[0])


def _convert_call(node: cst.Call, resolver: Resolver) -> Expr:
    dotted = dotted_name(node.func)
    args: list[Expr] = []
    if isinstance(node.func, cst.Attribute) and _on_value(node.func, dotted, resolver):
        args.append(convert(node.func.value, resolver))
        func = resolver.method(node.func, node.func.attr.value)
    elif dotted is None:
        convert(node.func, resolver)  # refuses the callee with its own reason (a lambda, ...)
        return PLACEHOLDER
    else:
        func = resolver.function(node.func, dotted)
    kwargs: list[tuple[str, Expr]] = []
    for arg in node.args:
        if arg.star == "*" and not kwargs:
            args.append(UnaryOp("*", convert(arg.value, resolver), origin=arg))
        elif arg.star:
            resolver.refuse(arg, "unpacking arguments with * or ** is not supported")
        elif arg.keyword is not None:
            kwargs.append((arg.keyword.value, _convert_argument(arg.value, resolver)))
        elif kwargs:
            resolver.refuse(arg, "a positional argument after a keyword argument")
        else:
            args.append(_convert_argument(arg.value, resolver))
    if func is None:
        return PLACEHOLDER
    # An argument unpacked (np.random.rand(*x.shape)) is UnaryOp("*"): parse.py refuses it
    # anywhere but in a random draw's shape (parse._refuse_unpacked_arguments).
    return Call(func, tuple(args), tuple(kwargs), origin=node)


def _convert_argument(node: cst.BaseExpression, resolver: Resolver) -> Expr:
    """An argument of a call: an expression, or a string written out, which chooses what
    the function computes (``ord="fro"``, the subscripts of ``np.einsum("ij,jk->ik", a,
    b)``): a constant with no gradient. Anywhere else a string is refused."""
    if (
        isinstance(node, cst.SimpleString)
        and not node.lpar
        and isinstance(node.evaluated_value, str)
    ):
        value = node.evaluated_value
        plain = value.isprintable() and not any(c in value for c in "\"'\\")
        # in double quotes, as black writes it
        text = f'"{value}"' if plain else cst.Module([]).code_for_node(node)
        return Const(text, origin=node)
    return convert(node, resolver)


def _convert_subscript(node: cst.Subscript, resolver: Resolver) -> Expr:
    value = convert(node.value, resolver)
    index: list[Expr] = []
    for element in node.slice:
        part = element.slice
        if isinstance(part, cst.Slice):
            bounds = [
                None if b is None else convert(b, resolver)
                for b in (part.lower, part.upper, part.step)
            ]
            index.append(Slice(bounds[0], bounds[1], bounds[2], origin=part))
        elif isinstance(part, cst.Index) and isinstance(part.value, cst.Ellipsis):
            index.append(Const("...", origin=part.value))
        elif isinstance(part, cst.Index):
            index.append(convert(part.value, resolver))
    return Subscript(value, tuple(index), origin=node)
