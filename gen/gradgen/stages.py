"""Forward functions to stages: one operation of the rules table per stage, single assignment.

Each statement becomes one stage when it is a single operation (``num = x + sigy``) and
several when it is compound (``a = math.tanh(x * y + 1.0) / (1.0 + z**2)`` gets temporaries
``a_mul``, ``a_add``, ...). Fused gates such as the sigmoid written out stay one stage.
A rebound name gets a new name per binding (``h``, ``h_2``), so every stage's value stays
available to the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gradgen.expr import (
    NOT_LITERAL,
    Attribute,
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Name,
    Sequence_,
    Slice,
    Subscript,
    UnaryOp,
    children,
    is_constant,
    literal_value,
    names_in,
    replace_nodes,
    substitute,
    unwrap,
)
from gradgen.naming import Namer, rebinding_name, temporary_name
from gradgen.parse import ForwardFunction, Parameter
from gradgen.rules import (
    NONDIFFERENTIABLE_ATTRIBUTES,
    Rule,
    canonical_call,
    form_library,
    is_opaque,
    rules_by_priority,
    without_gradient,
)

_PRIORITY = rules_by_priority()


@dataclass(frozen=True)
class Stage:
    """``target = expr``: one operation, its inputs (``operands``) and where it came from."""

    target: str
    rule: Rule | None  # None: a value with no gradient (a constant, a shape, a mask)
    operands: tuple[Expr, ...]  # aligned with ``rule.inputs``: a Name or a value with no gradient
    expr: Expr  # the forward computation, as the user spelled it, over the operands
    library: str  # where template helpers (log, cos) come from: "math" or "numpy"
    statement: int  # index into ``StagedFunction.statements``
    temporary: bool  # a subexpression split off by gradgen, not a user variable
    # The rule's other form variables (axis, a condition, an index), as written.
    nondiff: tuple[tuple[str, Expr], ...] = ()
    # A call of a function the table knows nothing of (rules.is_opaque), with rule None: its
    # operands are the variables a gradient could flow in from (``gradient_names``); none
    # can flow through it (reverse.opaque_refusals refuses it where one would have to).
    opaque: bool = False

    @property
    def reads(self) -> list[str]:
        """Every variable the forward computation reads."""
        return names_in(self.expr)


@dataclass(frozen=True)
class StagedFunction:
    name: str
    parameters: tuple[Parameter, ...]
    stages: tuple[Stage, ...]
    statements: tuple[str, ...]  # the user's statements, rendered, for comments
    result: Expr  # a Name (single-assignment) or a constant
    result_base: str  # the user's name for the result, or "out"
    used_globals: frozenset[str]
    namer: Namer
    array_mode: bool  # the module uses numpy: values may be arrays of any shape


Refuse = Callable[[object, str], None]


def stage_function(
    function: ForwardFunction, reserved: set[str], default_library: str, refuse: Refuse
) -> StagedFunction:
    """Split ``function`` into stages; problems go to ``refuse(origin_node, message)``.

    ``default_library`` serves the helpers of operator rules (``log`` for ``x ** y``).
    """
    namer = Namer(reserved)
    for parameter in function.parameters:
        namer.take(parameter.name)
    for assignment in function.body:
        namer.take(assignment.target)
    builder = _Builder(namer, default_library, refuse)
    current: dict[str, Expr] = {p.name: Name(p.name) for p in function.parameters}
    bound: set[str] = set(current)
    statements: list[str] = []
    for assignment in function.body:
        index = len(statements)
        statements.append(assignment.text)
        value = substitute(assignment.value, current)
        if assignment.target in bound:
            target = rebinding_name(namer, assignment.target)
        else:
            target = assignment.target
            bound.add(target)
        plain = unwrap(value)
        if isinstance(plain, Name):
            # `h = x` only names a value again; the gradient flows to x unchanged.
            current[assignment.target] = plain
            continue
        current[assignment.target] = Name(target)
        if is_inactive(plain):
            operands = tuple(Name(n) for n in names_in(plain))
            builder.stages.append(
                Stage(target, None, operands, plain, default_library, index, False)
            )
            continue
        builder.lower(value, target, assignment.target, index, top=True)
    result = substitute(function.result, current)
    plain_result = unwrap(result)
    # The upstream gradient is named after the result (``dloss``), unless the result is a
    # parameter rebound (``x = x @ w; return x``), whose gradient ``dx`` names already.
    parameters = {p.name for p in function.parameters}
    result_base = function.result_name or "out"
    if result_base in parameters and plain_result != Name(result_base):
        result_base = "out"
    if not isinstance(plain_result, Name) and not is_inactive(plain_result):
        index = len(statements)
        statements.append(function.result_text)
        target = namer.fresh("out")
        builder.lower(result, target, "out", index, top=True)
        plain_result = Name(target)
    return StagedFunction(
        name=function.name,
        parameters=function.parameters,
        stages=tuple(builder.stages),
        statements=tuple(statements),
        result=plain_result,
        result_base=result_base,
        used_globals=function.used_globals,
        namer=namer,
        array_mode=default_library == "numpy",
    )


class _Builder:
    def __init__(self, namer: Namer, default_library: str, refuse: Refuse) -> None:
        self.namer = namer
        self.default_library = default_library
        self.refuse = refuse
        self.stages: list[Stage] = []

    def lower(self, expr: Expr, target: str, user_target: str, statement: int, top: bool) -> Expr:
        """Stages computing ``expr``; returns the operand that holds its value."""
        plain = unwrap(expr)
        if isinstance(plain, Name) or is_inactive(plain):
            return expr
        if isinstance(plain, Call) and is_opaque(plain.func):
            return self.opaque(plain, target, user_target, statement, top)
        try:
            canonical = canonical_call(plain) if isinstance(plain, Call) else plain
        except ValueError as problem:
            self.refuse(getattr(plain, "origin", None), str(problem))
            return Const("0", 0)
        for rule, form in _PRIORITY:
            bindings: dict[str, Expr] = {}
            if not _match(form, canonical, bindings):
                continue
            nondiff = tuple((n, bindings[n]) for n in rule.nondiff)
            for variable, value in nondiff:
                if variable in rule.literal and literal_value(value) is NOT_LITERAL:
                    self.refuse(
                        getattr(value, "origin", None) or getattr(plain, "origin", None),
                        f"'{variable}' must be a literal here (a number, a tuple of numbers, "
                        "True, False or None): the backward is written for it",
                    )
            name = target if top else temporary_name(self.namer, user_target, rule.name)
            inputs = [bindings[i] for i in rule.inputs]
            if rule.variadic:
                items = unwrap(inputs[0])
                if not isinstance(items, Sequence_):
                    self.refuse(
                        getattr(plain, "origin", None),
                        f"'{rule.name}' needs a list or tuple written out: [a, b, ...]",
                    )
                    return Const("0", 0)
                inputs = list(items.items)
            operands = tuple(
                self.lower(value, name, user_target, statement, top=False) for value in inputs
            )
            computed = replace_nodes(
                plain, {id(value): op for value, op in zip(inputs, operands, strict=True)}
            )
            library = form_library(form) or self.default_library
            self.stages.append(
                Stage(name, rule, operands, computed, library, statement, not top, nondiff)
            )
            return Name(name)
        self.refuse(getattr(plain, "origin", None), _no_rule_message(plain))
        return Const("0", 0)

    def opaque(self, call: Call, target: str, user_target: str, statement: int, top: bool) -> Expr:
        """A stage computing ``call``, a function with no rule, as written."""
        name = target if top else temporary_name(self.namer, user_target, call.func.name)
        operands = tuple(Name(n) for n in gradient_names(call))
        library = self.default_library
        self.stages.append(
            Stage(name, None, operands, call, library, statement, not top, opaque=True)
        )
        return Name(name)


def is_inactive(expr: Expr) -> bool:
    """True when no gradient can flow through ``expr`` whatever its variables hold: a
    constant, a comparison (a mask), a shape, a call of a function with no gradient."""
    # Operator chains are followed with a stack, not recursion, and each leaf is looked at
    # once: `lower` asks this of every level of a deeply nested expression, which must not
    # cost the depth squared (or cubed) nor the stack.
    pending = [expr]
    while pending:
        node = unwrap(pending.pop())
        if isinstance(node, (BinOp, UnaryOp)):
            # Inactive when every operand is (a constant operation's operands are constant).
            pending.extend(children(node))
        elif isinstance(node, Subscript):
            pending.append(node.value)  # indexing something with no gradient: none either
        elif isinstance(node, Call) and is_opaque(node.func):
            pending.extend(children(node))  # a function with no rule, of such values: none
        elif not isinstance(node, Compare) and not _inactive_leaf(node):
            return False
    return True


def gradient_names(expr: Expr) -> list[str]:
    """The variables a gradient could flow into ``expr`` from: those it reads outside its
    parts with no gradient (not x in ``x.shape[0]``, nor an index)."""
    found: dict[str, None] = {}
    pending = [expr]
    while pending:
        node = unwrap(pending.pop())
        if isinstance(node, Name):
            found.setdefault(node.id)
        elif isinstance(node, Subscript):
            pending.append(node.value)
        elif not is_inactive(node):
            pending.extend(reversed(children(node)))
    return list(found)


def _inactive_leaf(expr: Expr) -> bool:
    if is_constant(expr):
        return True
    if isinstance(expr, Call):
        return without_gradient(expr)
    if isinstance(expr, Attribute):
        return expr.name in NONDIFFERENTIABLE_ATTRIBUTES
    return False


def _no_rule_message(expr: Expr) -> str:
    if isinstance(expr, Call):
        count = len(expr.args)
        plural = "argument" if count == 1 else "arguments"
        return f"'{expr.func.spelling}' with {count} {plural} is not supported"
    return "gradgen has no rule for this expression"


def _match(pattern: Expr, expr: Expr, bindings: dict[str, Expr]) -> bool:
    """Does ``expr`` have the shape of ``pattern``? Pattern variables bind subexpressions."""
    pattern = unwrap(pattern)
    plain = unwrap(expr)
    if isinstance(pattern, Name):
        bound = bindings.get(pattern.id)
        if bound is None:
            bindings[pattern.id] = expr
            return True
        return _same(bound, expr)
    if isinstance(pattern, Const):
        return isinstance(plain, Const) and plain.value is not None and plain.value == pattern.value
    if type(pattern) is not type(plain):
        return False
    if isinstance(pattern, Attribute):
        assert isinstance(plain, Attribute)
        return pattern.name == plain.name and _match(pattern.value, plain.value, bindings)
    if isinstance(pattern, Subscript):
        # `x[i]`: i stands for the whole index, whatever its parts.
        assert isinstance(plain, Subscript)
        index_variable = unwrap(pattern.index[0])
        assert isinstance(index_variable, Name)
        bindings[index_variable.id] = Sequence_(plain.index)
        return _match(pattern.value, plain.value, bindings)
    if isinstance(pattern, Call):
        assert isinstance(plain, Call)
        same_function = (pattern.func.lib, pattern.func.name) == (plain.func.lib, plain.func.name)
        if not same_function or len(pattern.args) != len(plain.args):
            return False
        pairs = zip(pattern.args, plain.args, strict=True)
        return all(_match(p, e, bindings) for p, e in pairs)
    children_p = _operands(pattern)
    children_e = _operands(plain)
    if children_p is None or children_e is None or children_p[0] != children_e[0]:
        return False
    trial = dict(bindings)
    if all(_match(p, e, trial) for p, e in zip(children_p[1], children_e[1], strict=True)):
        bindings.update(trial)
        return True
    if children_p[0] in ("+", "*") and len(children_e[1]) == 2:
        # Addition and multiplication commute: `exp(-x) + 1` is the sigmoid's `1 + exp(-x)`.
        trial = dict(bindings)
        swapped = (children_e[1][1], children_e[1][0])
        if all(_match(p, e, trial) for p, e in zip(children_p[1], swapped, strict=True)):
            bindings.update(trial)
            return True
    return False


def _operands(expr: Expr) -> tuple[str, tuple[Expr, ...]] | None:
    if isinstance(expr, (BinOp, Compare)):
        return expr.op, (expr.left, expr.right)
    if isinstance(expr, UnaryOp):
        return "unary" + expr.op, (expr.operand,)
    return None


def _same(a: Expr, b: Expr) -> bool:
    """Do ``a`` and ``b`` compute the same thing, parentheses aside?"""
    # A pattern variable seen twice (`x * x`) is compared with what it bound: side by side
    # with a stack, stopping at the first difference, so a deep operand costs no recursion
    # and, compared with a small one, next to nothing.
    pending = [(a, b)]
    while pending:
        left, right = pending.pop()
        left, right = unwrap(left), unwrap(right)
        if _shallow(left) != _shallow(right):
            return False
        pending.extend(zip(children(left), children(right), strict=True))
    return True


def _shallow(expr: Expr) -> tuple[object, ...]:
    """Everything ``expr`` holds except its subexpressions (and where it came from)."""
    if isinstance(expr, Name):
        return (Name, expr.id)
    if isinstance(expr, Const):
        return (Const, expr.text, expr.value)
    if isinstance(expr, Call):
        return (Call, expr.func, len(expr.args), tuple(key for key, _ in expr.kwargs))
    if isinstance(expr, Attribute):
        return (Attribute, expr.name)
    if isinstance(expr, Slice):
        return (Slice, expr.lower is None, expr.upper is None, expr.step is None)
    if isinstance(expr, Subscript):
        return (Subscript, len(expr.index))
    if isinstance(expr, Sequence_):
        return (Sequence_, expr.brackets, len(expr.items))
    if isinstance(expr, (BinOp, UnaryOp, Compare)):
        return (type(expr), expr.op)
    return (type(expr),)
