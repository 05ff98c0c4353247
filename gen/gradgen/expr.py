"""The expression language shared by forward code, rule forms and adjoint templates.

Forward expressions are converted from libcst into these small immutable nodes once, so that
pattern matching, substitution, simplification and rendering never touch libcst again. The
renderer writes the spacing and parentheses black would write, so that short generated lines
need no trip through black (see ``format.py``).
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import libcst as cst


@dataclass(frozen=True)
class Func:
    """A function a call refers to: ``lib`` is "math", "numpy", "builtins", or None for a
    template helper (``log`` in a template means the log of the stage's own library)."""

    lib: str | None
    name: str
    spelling: str | None  # how the code names it ("np.exp", "exp"); None: not chosen yet


# ``Func.lib`` of a call to a function of the module being read (differentiated too), and
# of a call to a user rule's functions (``gradgen.backward_of``: the user's backward).
USER = "user"
RULE = "rule"


@dataclass(frozen=True)
class Name:
    """A variable (forward value or gradient)."""

    id: str
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Const:
    """A value with no derivative: a numeric literal, a module constant, ``math.pi``.

    ``value`` is set for numeric literals only, so rules can match ``1`` and fold ``2 - 1``.
    """

    text: str
    value: int | float | None = None
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    """A call. A method call ``x.sum(axis=0)`` is ``Call(Func("numpy", "sum", ".sum"), (x,),
    (("axis", 0),))``: the spelling starting with a dot says how to write it back."""

    func: Func
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...] = ()
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Attribute:
    """``value.name`` on a value: ``x.T``, ``x.shape``."""

    value: Expr
    name: str
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Slice:
    """``lower:upper:step`` inside a subscript; a missing part is None."""

    lower: Expr | None
    upper: Expr | None
    step: Expr | None
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Subscript:
    """``value[i, j]``: each index is an expression or a Slice."""

    value: Expr
    index: tuple[Expr, ...]
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Sequence_:
    """A tuple or list display: ``(N, -1)``, ``[a, b]``."""

    items: tuple[Expr, ...]
    brackets: str = "()"
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / ** @ ("and", "or" in the test of an ``if``)
    left: Expr
    right: Expr
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class UnaryOp:
    op: str  # "-" or "+" ("not" in the test of an ``if``)
    operand: Expr
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Compare:
    op: str  # one of < <= > >= == != ("is", "is not", "in", "not in" in an ``if``'s test)
    left: Expr
    right: Expr
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Group:
    """Parentheses the author wrote on purpose; kept so output reads like the input."""

    inner: Expr
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


Expr = (
    Name
    | Const
    | Call
    | BinOp
    | UnaryOp
    | Compare
    | Group
    | Attribute
    | Slice
    | Subscript
    | Sequence_
)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of ``expr``."""
    if isinstance(expr, Call):
        return expr.args + tuple(value for _, value in expr.kwargs)
    if isinstance(expr, Attribute):
        return (expr.value,)
    if isinstance(expr, Slice):
        return tuple(part for part in (expr.lower, expr.upper, expr.step) if part is not None)
    if isinstance(expr, Subscript):
        return (expr.value, *expr.index)
    if isinstance(expr, Sequence_):
        return expr.items
    if isinstance(expr, (BinOp, Compare)):
        return (expr.left, expr.right)
    if isinstance(expr, UnaryOp):
        return (expr.operand,)
    if isinstance(expr, Group):
        return (expr.inner,)
    return ()


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, parents before children."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def names_in(expr: Expr) -> list[str]:
    """The variable names ``expr`` reads, in order of first appearance."""
    seen: dict[str, None] = {}
    for node in walk(expr):
        if isinstance(node, Name):
            seen.setdefault(node.id)
    return list(seen)


def is_constant(expr: Expr) -> bool:
    """True when ``expr`` reads no variable, so it has no derivative."""
    return not any(isinstance(node, Name) for node in walk(expr))


def unwrap(expr: Expr) -> Expr:
    """``expr`` without the parentheses around it."""
    while isinstance(expr, Group):
        expr = expr.inner
    return expr


def map_children(expr: Expr, fn: Callable[[Expr], Expr]) -> Expr:
    """A copy of ``expr`` whose direct children are replaced by ``fn(child)``."""
    if isinstance(expr, Call):
        return dataclasses.replace(
            expr,
            args=tuple(fn(a) for a in expr.args),
            kwargs=tuple((key, fn(value)) for key, value in expr.kwargs),
        )
    if isinstance(expr, Attribute):
        return dataclasses.replace(expr, value=fn(expr.value))
    if isinstance(expr, Slice):
        parts = (expr.lower, expr.upper, expr.step)
        lower, upper, step = (None if p is None else fn(p) for p in parts)
        return dataclasses.replace(expr, lower=lower, upper=upper, step=step)
    if isinstance(expr, Subscript):
        return dataclasses.replace(
            expr, value=fn(expr.value), index=tuple(fn(i) for i in expr.index)
        )
    if isinstance(expr, Sequence_):
        return dataclasses.replace(expr, items=tuple(fn(i) for i in expr.items))
    if isinstance(expr, (BinOp, Compare)):
        return dataclasses.replace(expr, left=fn(expr.left), right=fn(expr.right))
    if isinstance(expr, UnaryOp):
        return dataclasses.replace(expr, operand=fn(expr.operand))
    if isinstance(expr, Group):
        return dataclasses.replace(expr, inner=fn(expr.inner))
    return expr


def substitute(expr: Expr, names: Mapping[str, Expr]) -> Expr:
    """Replace variables by expressions (template instantiation)."""
    if isinstance(expr, Name) and expr.id in names:
        return names[expr.id]
    return map_children(expr, lambda child: substitute(child, names))


def replace_nodes(expr: Expr, by_identity: Mapping[int, Expr]) -> Expr:
    """Replace the very nodes (by ``id``) listed in ``by_identity``."""
    if id(expr) in by_identity:
        return by_identity[id(expr)]
    return map_children(expr, lambda child: replace_nodes(child, by_identity))


def map_funcs(expr: Expr, fn: Callable[[Func], Func]) -> Expr:
    """Replace every called function by ``fn(func)`` (helper resolution)."""
    expr = map_children(expr, lambda child: map_funcs(child, fn))
    if isinstance(expr, Call):
        return dataclasses.replace(expr, func=fn(expr.func))
    return expr


class _NotLiteral:
    def __repr__(self) -> str:
        return "NOT_LITERAL"


NOT_LITERAL = _NotLiteral()  # what literal_value returns for an expression that is not one


def literal_value(expr: Expr) -> object:
    """The Python value of a literal (``0``, ``-1``, ``None``, ``True``, ``(0, 1)``), or
    ``NOT_LITERAL``."""
    expr = unwrap(expr)
    if isinstance(expr, Const):
        if expr.value is not None:
            return expr.value
        if expr.text[-1:] in ("'", '"'):  # a string written out ("ij,jk->ik", ord="fro")
            text = ast.literal_eval(expr.text)
            return text if isinstance(text, str) else NOT_LITERAL
        if "." in expr.text and expr.text.rpartition(".")[2] == "inf":
            return math.inf  # a library's constant (np.inf, math.inf): a module's has no dot
        return {"None": None, "True": True, "False": False}.get(expr.text, NOT_LITERAL)
    if isinstance(expr, UnaryOp) and expr.op == "-":
        inner = literal_value(expr.operand)
        return (
            -inner
            if isinstance(inner, (int, float)) and not isinstance(inner, bool)
            else NOT_LITERAL
        )
    if isinstance(expr, Sequence_):
        items = tuple(literal_value(i) for i in expr.items)
        return NOT_LITERAL if any(i is NOT_LITERAL for i in items) else items
    return NOT_LITERAL


# --- simplification -------------------------------------------------------------------------
# Only exact identities, so the result is bit-for-bit the value the template describes:
# generated code must not carry `1.0 *`, `* 1`, `+ 0` or `x ** 1` noise.


def number(value: int | float) -> Const:
    """A numeric literal for a value computed at generation time."""
    return Const(normalize_number(repr(value)), value)


def normalize_number(text: str) -> str:
    """A numeric literal spelled as black spells it (``1E5`` -> ``1e5``, ``.5`` -> ``0.5``)."""
    text = text.lower()
    if text.startswith(("0b", "0o")):
        return text
    if text.startswith("0x"):
        return "0x" + text[2:].upper()
    if "e" in text:
        before, after = text.split("e")
        sign = ""
        if after.startswith("-"):
            after, sign = after[1:], "-"
        elif after.startswith("+"):
            after = after[1:]
        return f"{_point(before)}e{sign}{after}"
    return _point(text)


def _point(text: str) -> str:
    if "." not in text:
        return text
    before, after = text.split(".")
    return f"{before or 0}.{after or 0}"


def _num(expr: Expr) -> int | float | None:
    expr = unwrap(expr)
    if isinstance(expr, Const):
        return expr.value
    return None


def simplify(expr: Expr) -> Expr:
    """Fold literal arithmetic and drop identity operations."""
    return _simplify_top(map_children(expr, simplify))


def _simplify_top(expr: Expr) -> Expr:
    # ``expr``'s children are simplified already: only the node itself is looked at, so a
    # rewrite that builds a new node (`-1 * a` -> `-a`) costs nothing more for a large `a`.
    if isinstance(expr, (Call, Subscript, Sequence_)):
        # An argument, index or item needs no parentheses of its own.
        return map_children(expr, unwrap)
    if isinstance(expr, Group):
        inner = expr.inner
        if isinstance(inner, (Name, Const, Call, Group)):
            return inner
        return expr
    if isinstance(expr, UnaryOp):
        operand = unwrap(expr.operand)
        value = _num(operand)
        if expr.op == "+":
            return expr.operand
        if value is not None:
            return number(-value)
        if isinstance(operand, UnaryOp) and operand.op == "-":
            return operand.operand
        return expr
    if isinstance(expr, BinOp):
        return _simplify_binop(expr)
    return expr


def _simplify_binop(expr: BinOp) -> Expr:
    op, left, right = expr.op, expr.left, expr.right
    a, b = _num(left), _num(right)
    if a is not None and b is not None and op in "+-*":
        return number(a + b if op == "+" else a - b if op == "-" else a * b)
    if op == "*":
        if a == 1:
            return right
        if b == 1:
            return left
        if a == -1:
            return _simplify_top(UnaryOp("-", right))
        if b == -1:
            return _simplify_top(UnaryOp("-", left))
    if op == "+":
        if a == 0:
            return right
        if b == 0:
            return left
    if op == "-" and b == 0:
        return left
    if op == "/" and b == 1:
        return left
    if op == "**" and b == 1:
        return left
    return expr


# --- rendering --------------------------------------------------------------------------------
# Python's binding strengths, weakest first; see the language reference's precedence table.
_OR = 0
_AND = 1
_NOT = 2
_COMPARE = 3
_ADD = 5
_MUL = 6
_UNARY = 7
_POW = 8
_ATOM = 10
_BINARY_PRECEDENCE = {
    "or": _OR,
    "and": _AND,
    "+": _ADD,
    "-": _ADD,
    "*": _MUL,
    "/": _MUL,
    "//": _MUL,
    "%": _MUL,
    "@": _MUL,
    "**": _POW,
}


def precedence(expr: Expr) -> int:
    if isinstance(expr, BinOp):
        return _BINARY_PRECEDENCE[expr.op]
    if isinstance(expr, UnaryOp):
        return _NOT if expr.op == "not" else _UNARY
    if isinstance(expr, Compare):
        return _COMPARE
    if isinstance(expr, Const) and expr.text.startswith("-"):
        return _UNARY
    return _ATOM


def _is_simple_power_operand(expr: Expr) -> bool:
    # black hugs `**` when the operands next to it are names, numbers or attribute chains,
    # with at most one unary sign in front.
    if isinstance(expr, UnaryOp):
        return _is_simple_atom(expr.operand) and not _is_negative_constant(expr.operand)
    return _is_simple_atom(expr)


def _is_simple_atom(expr: Expr) -> bool:
    if isinstance(expr, Name):
        return True
    if isinstance(expr, Attribute):
        return _is_simple_atom(expr.value) and not isinstance(expr.value, Const)
    if isinstance(expr, Const):
        text = expr.text.lstrip("-")
        return expr.value is not None or text.replace(".", "").replace("_", "").isidentifier()
    return False


def _is_negative_constant(expr: Expr) -> bool:
    return isinstance(expr, Const) and expr.text.startswith("-")


def render(expr: Expr) -> str:
    """Source text of ``expr`` with minimal parentheses, spaced as black spaces it."""
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Const):
        return expr.text
    if isinstance(expr, Group):
        return f"({render(expr.inner)})"
    if isinstance(expr, Call):
        return _render_call(expr)
    if isinstance(expr, Attribute):
        return f"{_primary(expr.value)}.{expr.name}"
    if isinstance(expr, Subscript):
        return f"{_primary(expr.value)}[{', '.join(_render_index(i) for i in expr.index)}]"
    if isinstance(expr, Slice):
        return _render_index(expr)
    if isinstance(expr, Sequence_):
        inner = ", ".join(render(i) for i in expr.items)
        if expr.brackets == "()" and len(expr.items) == 1:
            inner += ","
        return f"{expr.brackets[0]}{inner}{expr.brackets[1]}"
    if isinstance(expr, UnaryOp) and expr.op == "not":
        return f"not {_operand(expr.operand, _NOT, False)}"
    if isinstance(expr, UnaryOp):
        operand = expr.operand
        text = render(operand)
        # `-x**2` means `-(x**2)`; black spells it with the parentheses, and so do we.
        if precedence(operand) < _UNARY or (isinstance(operand, BinOp) and operand.op == "**"):
            text = f"({text})"
        return f"{expr.op}{text}"
    if isinstance(expr, Compare):
        # Comparisons chain (`a < b < c`), so an operand that is itself a comparison needs
        # parentheses on either side.
        left = _operand(expr.left, _COMPARE, True)
        return f"{left} {expr.op} {_operand(expr.right, _COMPARE, True)}"
    return _render_binop(expr)


def _render_call(expr: Call) -> str:
    spelling = expr.func.spelling or f"{expr.func.lib}.{expr.func.name}"
    args = list(expr.args)
    if spelling.startswith("."):
        receiver = _primary(args.pop(0))
        spelling = receiver + spelling
    parts = [render(a) for a in args] + [f"{k}={render(v)}" for k, v in expr.kwargs]
    return f"{spelling}({', '.join(parts)})"


def _primary(expr: Expr) -> str:
    """``expr`` where an attribute, call or subscript follows it (``(a + b).T``)."""
    text = render(expr)
    if precedence(expr) < _ATOM or (isinstance(expr, Const) and expr.value is not None):
        return f"({text})"
    return text


def _render_index(part: Expr) -> str:
    if not isinstance(part, Slice):
        return render(part)
    # black spaces the colons of a slice like a binary operator as soon as one bound is more
    # than a name or a number (see ``_is_simple_slice_bound``); each index of a subscript
    # is judged on its own.
    bounds = [part.lower, part.upper] + ([part.step] if part.step is not None else [])
    complex_ = any(b is not None and not _is_simple_slice_bound(b) for b in bounds)
    texts = ["" if b is None else render(b) for b in bounds]
    if not complex_:
        return ":".join(texts)
    joined = texts[0] + (" :" if texts[0] else ":")
    for position, text in enumerate(texts[1:], start=1):
        if text:
            joined += f" {text}"
        if position < len(texts) - 1:
            joined += " :" if text else ":"
    return joined


def _is_simple_slice_bound(expr: Expr) -> bool:
    """Would black keep the colons next to this bound unspaced?

    black (``Line.is_complex_subscript``) spaces them when the slice holds any operation,
    attribute access, call or subscript (a node in its ``TEST_DESCENDANTS``); a single
    token (a name, a module constant ``D``, a number, ``None``), unary signs and
    parentheses around such a token, and tuples of them are not operations to it.
    """
    if isinstance(expr, Name):
        return True
    if isinstance(expr, Const):
        # "D", "None", "1e-05", "-1"; not a dotted constant such as "math.pi"
        return expr.value is not None or "." not in expr.text
    if isinstance(expr, UnaryOp):
        return _is_simple_slice_bound(expr.operand)
    if isinstance(expr, Group):
        return _is_simple_slice_bound(expr.inner)
    if isinstance(expr, Sequence_):
        return all(_is_simple_slice_bound(item) for item in expr.items)
    return False


def _operand(expr: Expr, parent: int, is_right: bool) -> str:
    text = render(expr)
    mine = precedence(expr)
    if mine < parent or (mine == parent and is_right):
        return f"({text})"
    return text


def _render_binop(expr: BinOp) -> str:
    if expr.op == "**":
        return _render_power(expr)
    prec = _BINARY_PRECEDENCE[expr.op]
    return f"{_operand(expr.left, prec, False)} {expr.op} {_operand(expr.right, prec, True)}"


def _render_power(expr: BinOp) -> str:
    left = render(expr.left)
    left_bare = precedence(expr.left) > _POW
    if not left_bare:
        left = f"({left})"
    right = render(expr.right)
    inner = unwrap_unary(expr.right) if isinstance(expr.right, UnaryOp) else expr.right
    right_bare = precedence(inner) >= _POW or isinstance(inner, Const)
    if not right_bare:
        right = f"({right})"
    # black spaces each `**` by the operands right next to it: in `x ** y ** z` those of the
    # first are x and y.
    neighbour = expr.right
    while isinstance(neighbour, BinOp) and neighbour.op == "**" and right_bare:
        neighbour = neighbour.left
    simple = (
        left_bare
        and right_bare
        and _is_simple_power_operand(expr.left)
        and _is_simple_power_operand(neighbour)
    )
    return f"{left}**{right}" if simple else f"{left} ** {right}"


def unwrap_unary(expr: Expr) -> Expr:
    """The operand under any unary signs (used to decide parentheses after ``**``)."""
    while isinstance(expr, UnaryOp):
        expr = expr.operand
    return expr
