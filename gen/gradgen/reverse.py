"""Stages to the backward pass: the adjoint statements, and the forward values they read.

The reverse pass is a short loop over the stages, last first: each stage that lies on a path
from a parameter to the result hands every such input its adjoint from the rules table. The
first contribution to a gradient is written with ``=``, later ones with ``+=``.

Under ``np.where(c, a, b)`` the branch not taken may hold values where a derivative is
infinite (``np.where(x > 0, np.sqrt(x), 0)`` at ``x == 0``): its gradient is 0 there, but
0 * inf is NaN. So a gradient that is np.where's masked upstream, and only that, stays
masked down the chain of elementwise stages that computed the branch: each adjoint reading
a forward value is written ``np.where(c, adjoint, 0)`` (``np.where(g != 0, adjoint, 0)``
where the shapes do not show that ``c`` lines up with it), and a finite true gradient never
turns into NaN.

Every later contribution is written ``+=`` here; ``ownership.py`` then decides where writing
in place is safe and spells the others ``dx = dx + ...``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gradgen import shapes
from gradgen.expr import (
    NOT_LITERAL,
    Attribute,
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Func,
    Name,
    Sequence_,
    Subscript,
    UnaryOp,
    children,
    is_constant,
    literal_value,
    map_funcs,
    names_in,
    number,
    simplify,
    substitute,
    unwrap,
)
from gradgen.ir import AdjointStatement, BackwardFunction, ForwardLine, Kind
from gradgen.naming import gradient_name
from gradgen.ownership import protect_shared
from gradgen.rules import ELEMENTWISE_MASKS, SCATTER, SHAPE_OF_FIRST, AdjointContext
from gradgen.shapes import SCALAR, Shape
from gradgen.stages import Stage, StagedFunction


def reverse(function: StagedFunction, wrt: tuple[str, ...] | None = None) -> BackwardFunction:
    """The backward pass of ``function``: gradients with respect to every parameter, or to
    the parameters ``wrt`` names (in that order), computing nothing only the others need."""
    namer = function.namer
    result = function.result
    upstream = gradient_name(namer, function.result_base)
    relevant = _relevant(function, wrt)
    known = infer_shapes(function)
    gradient: dict[str, str] = {}
    statements: list[AdjointStatement | None] = []  # None: a statement dropped later
    if isinstance(result, Name) and result.id in relevant:
        gradient[result.id] = upstream

    temporaries = {s.target for s in function.stages if s.temporary}
    # Gradients zero outside np.where's branch: variable -> (condition, branch, shape).
    masks: dict[str, _Mask | None] = {}
    # Gradients that are a smaller value spread over an array (a total's np.full_like, a
    # reduction's np.broadcast_to), with the index of their statement: variable -> (index,
    # the value before spreading).
    spreads: dict[str, tuple[int, Expr]] = {}
    if (
        function.array_mode
        and isinstance(result, Name)
        and result.id in relevant
        and known.get(result.id) is None
    ):
        # The result's shape is not evident, so it may be an array: a number upstream (the
        # default 1.0) stands for that gradient in every entry, the gradient of the sum.
        # Where the last stage broadcasts it anyway, the spread is dropped again below.
        statement = next(
            (s.statement for s in function.stages if s.target == result.id),
            len(function.statements),
        )
        # The helper adds np.zeros_like(out) to a number (so float32 stays float32 with the
        # Python float 1.0) and passes an array of out's shape through.
        helper = Func("helper", "_everywhere", "_everywhere")
        everywhere = Call(helper, (Name(upstream), result))
        spreads[result.id] = (len(statements), Name(upstream))
        statements.append(AdjointStatement(upstream, Kind.ASSIGN, everywhere, statement))

    def contribute(variable: str, adjoint: Expr, statement: int, mask: _Mask | None = None) -> None:
        # Only a gradient with exactly one contribution, a masked one, is masked.
        masks[variable] = mask if variable not in gradient else None
        spreads.pop(variable, None)
        if isinstance(adjoint, Call) and adjoint.func.name == SCATTER:
            _, index, value = adjoint.args
            assert isinstance(index, Sequence_)
            if variable not in gradient:
                gradient[variable] = gradient_name(namer, variable)
                zeros = Call(Func("numpy", "zeros_like", None), (Name(variable),))
                first = AdjointStatement(gradient[variable], Kind.ASSIGN, zeros, statement)
                statements.append(first)
            distinct = _selects_distinct(index.items, known)
            statements.append(
                AdjointStatement(
                    gradient[variable], Kind.SCATTER, value, statement, index.items, distinct
                )
            )
        elif variable not in gradient:
            if variable in temporaries and isinstance(adjoint, Name):
                # A temporary's gradient that is another gradient unchanged needs no copy
                # statement: use that gradient's name.
                gradient[variable] = adjoint.id
                return
            gradient[variable] = gradient_name(namer, variable)
            if isinstance(adjoint, Call) and adjoint.func.name in ("full_like", "broadcast_to"):
                spread = adjoint.args[1 if adjoint.func.name == "full_like" else 0]
                if _is_leading_expand(spread):  # a new leading axis broadcasts by itself
                    assert isinstance(spread, Call)
                    spread = spread.args[0]
                spreads[variable] = (len(statements), spread)
            statements.append(AdjointStatement(gradient[variable], Kind.ASSIGN, adjoint, statement))
        else:
            # Added to a gradient that has the variable's whole shape, numpy broadcasts: a
            # total's spread needs no array of its own (`dx += dsums`).
            if isinstance(adjoint, Call) and adjoint.func.name in ("broadcast_to", "full_like"):
                adjoint = adjoint.args[0 if adjoint.func.name == "broadcast_to" else 1]
                if _is_leading_expand(adjoint):  # a new leading axis broadcasts by itself
                    assert isinstance(adjoint, Call)
                    adjoint = adjoint.args[0]
            statements.append(AdjointStatement(gradient[variable], Kind.ADD, adjoint, statement))

    for stage in reversed(function.stages):
        if stage.rule is None or stage.target not in relevant:
            continue
        g: Expr = Name(gradient[stage.target])
        spread = spreads.get(stage.target)
        if spread is not None and _spread_fits(stage, spread[1], relevant, known):
            # The number itself times the local gradients already has the operand's shape:
            # `(2 * W1) * dreg` rather than `(2 * W1) * np.full_like(W1 * W1, dreg)`.
            statements[spread[0]] = None
            g = spread[1]
        for position, operand in enumerate(stage.operands):
            if not (isinstance(operand, Name) and operand.id in relevant):
                continue
            adjoint = _adjoint(stage, position, g, known)
            mask = _operand_mask(stage, position, masks.get(stage.target), known)
            if mask is not None and stage.rule.selects_by is None:  # a selection masks itself
                adjoint = _masked(adjoint, mask, g)
            # The other operands, and values such as np.where's condition: any can be wider.
            others = [o for o in stage.operands if o != operand]
            others += [value for _, value in stage.nondiff]
            # Against scalars only, numpy broadcasts nothing: the gradient has the shape.
            if (
                stage.rule.broadcasts
                and function.array_mode
                and not all(_expression_shape(o, known) == SCALAR for o in others)
            ):
                adjoint = _unbroadcast(adjoint, operand, known.get(operand.id), known[stage.target])
            contribute(operand.id, adjoint, stage.statement, mask)

    influences = _influences(function)
    wanted = wrt if wrt is not None else tuple(p.name for p in function.parameters)
    gradients = tuple(
        gradient.get(name, "None" if name in influences else "0.0") for name in wanted
    )
    returned = {
        g: known.get(name)
        for name, g in zip(wanted, gradients, strict=True)
        if g in gradient.values()
    }
    kept = [s for s in statements if s is not None]
    adjoints = protect_shared(kept, upstream, returned, numbers=not function.array_mode)
    read = _names_read(adjoints)
    forward = _forward_lines(function, read)
    full_forward = _forward_lines(function, read | set(names_in(function.result)))
    defined = [p.name for p in function.parameters] + [line.target for line in full_forward]
    cache = tuple(name for name in defined if name in read)
    # The default upstream 1.0 suits a scalar result. A result known to be an array needs
    # its upstream gradient (an array of its shape), so there is no default to forget.
    array_result = isinstance(result, Name) and bool(known.get(result.id))
    default = None if array_result else "1.0"
    return BackwardFunction(
        function, upstream, default, forward, adjoints, gradients, wrt, full_forward, cache
    )


def _selects_distinct(index: tuple[Expr, ...], known: dict[str, Shape | None]) -> bool:
    """Does integer-array ``index`` select each entry at most once? Provably so when one of
    its arrays is ``np.arange(...)`` and the others are numbers or 1-D arrays: the rows
    differ (``probs[np.arange(N), y]``), so fancy ``+=`` needs no ``np.add.at``."""
    has_arange = False
    for part in index:
        if isinstance(part, Call) and part.func.name == "arange":
            has_arange = True
        elif isinstance(literal_value(part), int):
            continue
        elif not (isinstance(part, Name) and len(known.get(part.id) or (0, 0)) <= 1):
            return False
    return has_arange


def _reads_entries(expr: Expr, names: set[str]) -> bool:
    """Does ``expr`` read one of ``names`` as an array, entry by entry (``x`` in ``g / x``,
    ``cos(x)``), not only an attribute of it (``x.dtype``)?"""
    if isinstance(expr, Name):
        return expr.id in names
    if isinstance(expr, Attribute):
        return False
    return any(_reads_entries(child, names) for child in children(expr))


def _is_leading_expand(expr: Expr) -> bool:
    """``np.expand_dims(e, 0)``: a leading axis, which numpy broadcasting adds anyway."""
    if not (isinstance(expr, Call) and expr.func.name == "expand_dims"):
        return False
    axis = expr.args[1] if len(expr.args) > 1 else dict(expr.kwargs).get("axis")
    return axis is not None and literal_value(axis) == 0


def _adjoint(stage: Stage, position: int, g: Expr, known: dict[str, Shape | None]) -> Expr:
    """The adjoint ``stage`` gives its operand at ``position`` when its gradient is ``g``."""
    assert stage.rule is not None
    context = _context(stage, known)
    values = _template_values(stage)
    values["g"] = g
    if stage.rule.variadic:
        values["x"] = stage.operands[position]
        literals = {**context.literals, "position": position}
        template = stage.rule.adjoint(0, AdjointContext(literals, context.shapes))
    else:
        template = stage.rule.adjoint(position, context)
    return _with_library(simplify(substitute(template, values)), stage.library)


def _spread_fits(
    stage: Stage, number: Expr, relevant: set[str], known: dict[str, Shape | None]
) -> bool:
    """Can the value a gradient spreads stand for it in ``stage``'s adjoints? Yes when the
    stage is elementwise and every adjoint, with g a number, has the stage's known shape
    (numpy broadcasting then spreads it), or when the stage is an index (adding into the
    indexed entries broadcasts too)."""
    assert stage.rule is not None
    if stage.target in names_in(number):
        return False
    if any(isinstance(s, str) and SCATTER in s for s in stage.rule.adjoint_sources):
        return True
    relevant_positions = [
        position
        for position, operand in enumerate(stage.operands)
        if isinstance(operand, Name) and operand.id in relevant
    ]
    shape = known.get(stage.target)
    if not shape and stage.rule.keeps_shape:
        # Shape unknown, but the same as the input's: an adjoint that reads the input or
        # the result entry by entry has it too (``g / x``), one that does not is a number.
        reads = {stage.target, *(o.id for o in stage.operands if isinstance(o, Name))}
        return all(
            _reads_entries(_adjoint(stage, position, Const("1.0", 1.0), known), reads)
            for position in relevant_positions
        )
    if not shape or not stage.rule.elementwise:
        return False
    return all(
        _expression_shape(_adjoint(stage, position, Const("1.0", 1.0), known), known) == shape
        for position, operand in enumerate(stage.operands)
        if isinstance(operand, Name) and operand.id in relevant
    )


@dataclass(frozen=True)
class _Mask:
    """A gradient that is zero where ``condition`` is not ``branch``; with no condition
    (shapes unknown), zero wherever the gradient is."""

    condition: Expr | None
    branch: bool
    shape: Shape | None


def _operand_mask(
    stage: Stage, position: int, target_mask: _Mask | None, known: dict[str, Shape | None]
) -> _Mask | None:
    """The mask of the adjoint ``stage`` gives its operand at ``position``: np.where's own,
    or the target's passed down an elementwise stage between arrays of one known shape."""
    assert stage.rule is not None
    operand = stage.operands[position]
    if not isinstance(operand, Name):
        return None
    shape = known.get(stage.target)
    lined_up = bool(shape) and known.get(operand.id) == shape  # same known array shape
    if stage.rule.selects_by is not None:
        condition = dict(stage.nondiff)[stage.rule.selects_by]
        if lined_up and _expression_shape(condition, known) == shape:
            return _Mask(condition, position == 0, shape)
        return _Mask(None, True, None)
    if target_mask is None or not stage.rule.elementwise:
        return None
    if target_mask.condition is not None and not (lined_up and target_mask.shape == shape):
        return _Mask(None, True, None)  # the condition may not line up with this operand
    return target_mask


def _masked(adjoint: Expr, mask: _Mask, g: Expr) -> Expr:
    """``adjoint`` zeroed outside the mask, unless it reads no forward value (``g``,
    ``-g``: zero stays zero)."""
    if set(names_in(adjoint)) <= set(names_in(g)):
        return adjoint
    if mask.condition is None:
        nonzero = Compare("!=", g, number(0))
        return Call(Func("numpy", "where", None), (nonzero, adjoint, number(0)))
    branches = (adjoint, number(0)) if mask.branch else (number(0), adjoint)
    return Call(Func("numpy", "where", None), (mask.condition, *branches))


def _template_values(stage: Stage) -> dict[str, Expr]:
    """What the names of a rule's templates stand for at this stage."""
    assert stage.rule is not None
    values: dict[str, Expr] = {}
    if stage.rule.variadic:
        values.update({f"x{j}": operand for j, operand in enumerate(stage.operands)})
    else:
        values.update(zip(stage.rule.inputs, stage.operands, strict=True))
    values.update(stage.nondiff)
    values["out"] = Name(stage.target)
    return values


def infer_shapes(function: StagedFunction) -> dict[str, Shape | None]:
    """The shape of every value where the code makes it evident; all scalars in a module
    that does not use numpy."""
    if not function.array_mode:
        names = [p.name for p in function.parameters] + [s.target for s in function.stages]
        return dict.fromkeys(names, SCALAR)
    known: dict[str, Shape | None] = {p.name: p.shape for p in function.parameters}
    for stage in function.stages:
        if stage.rule is None:
            known[stage.target] = _expression_shape(stage.expr, known)
        elif stage.rule.shape is not None:
            known[stage.target] = stage.rule.shape(_context(stage, known))
        else:
            known[stage.target] = None
    return known


def _expression_shape(expr: Expr, known: dict[str, Shape | None]) -> Shape | None:
    expr = unwrap(expr)
    if is_constant(expr):
        return SCALAR
    if isinstance(expr, Name):
        return known.get(expr.id)
    if isinstance(expr, (BinOp, Compare)):
        return shapes.broadcast(
            _expression_shape(expr.left, known), _expression_shape(expr.right, known)
        )
    if isinstance(expr, UnaryOp):
        return _expression_shape(expr.operand, known)
    if (
        isinstance(expr, Subscript)
        and isinstance(expr.value, Attribute)
        and expr.value.name == "shape"
    ):
        return SCALAR  # x.shape[0]: a number
    if isinstance(expr, Attribute) and expr.name in ("size", "ndim"):
        return SCALAR
    if isinstance(expr, Call) and expr.func.name in ("len", "size", "ndim"):
        return SCALAR
    if isinstance(expr, Call) and expr.func.name in SHAPE_OF_FIRST and expr.args:
        return _expression_shape(expr.args[0], known)
    if isinstance(expr, Call) and expr.func.name in ELEMENTWISE_MASKS:
        return shapes.broadcast(*(_expression_shape(a, known) for a in expr.args))
    return None


def _context(stage: Stage, known: dict[str, Shape | None]) -> AdjointContext:
    assert stage.rule is not None
    names = (
        [f"x{j}" for j in range(len(stage.operands))] if stage.rule.variadic else stage.rule.inputs
    )
    operand_shapes = {
        name: _expression_shape(operand, known)
        for name, operand in zip(names, stage.operands, strict=True)
    }
    for name, value in stage.nondiff:
        operand_shapes.setdefault(name, _expression_shape(value, known))
    operand_shapes["out"] = known.get(stage.target)
    literals = {name: literal_value(value) for name, value in stage.nondiff}
    # Literal operands too: np.clip(x, None, 1.0) has no lower bound.
    literals.update(
        (name, literal_value(operand))
        for name, operand in zip(names, stage.operands, strict=True)
        if literal_value(operand) is not NOT_LITERAL
    )
    return AdjointContext(literals, operand_shapes)


def _unbroadcast(adjoint: Expr, operand: Name, shape: Shape | None, out: Shape | None) -> Expr:
    """The adjoint summed back to the operand's shape, where numpy broadcast it."""
    if shape is not None and shape == out:
        return adjoint
    if shape is None or out is None or len(shape) > len(out):
        return Call(Func("helper", "_unbroadcast", "_unbroadcast"), (adjoint, operand))
    if isinstance(adjoint, UnaryOp) and adjoint.op == "-":
        # Sum, then negate the (smaller) sum.
        return UnaryOp("-", _unbroadcast(adjoint.operand, operand, shape, out))
    if shape == SCALAR:
        return Call(Func("numpy", "sum", None), (adjoint,))
    leading, kept = shapes.unbroadcast_axes(shape, out)
    for axes, keepdims in ((leading, False), (kept, True)):
        if not axes:
            continue
        axis = number(axes[0]) if len(axes) == 1 else Sequence_(tuple(number(a) for a in axes))
        kwargs: tuple[tuple[str, Expr], ...] = (("axis", axis),)
        if keepdims:
            kwargs += (("keepdims", Const("True")),)
        adjoint = Call(Func("numpy", "sum", ".sum"), (adjoint,), kwargs)
    return adjoint


def _with_library(expr: Expr, library: str) -> Expr:
    """Point the template's helpers (``log``, ``cos``) at the stage's library."""

    def resolve(func: Func) -> Func:
        if func.lib is None and func.name != SCATTER:
            return Func(library, func.name, None)
        return func

    return map_funcs(expr, resolve)


def _relevant(function: StagedFunction, wrt: tuple[str, ...] | None) -> set[str]:
    """Variables on a path from a parameter (of ``wrt``) to the result: only these get
    gradients."""
    active = set(wrt) if wrt is not None else {p.name for p in function.parameters}
    for stage in function.stages:
        if stage.rule is not None and any(
            isinstance(o, Name) and o.id in active for o in stage.operands
        ):
            active.add(stage.target)
    needed: set[str] = set()
    if isinstance(function.result, Name):
        needed.add(function.result.id)
    for stage in reversed(function.stages):
        if stage.target in needed and stage.rule is not None:
            needed.update(o.id for o in stage.operands if isinstance(o, Name))
    return active & needed


def _influences(function: StagedFunction) -> set[str]:
    """Variables the result depends on in any way, with or without a gradient."""
    found = set(names_in(function.result))
    for stage in reversed(function.stages):
        if stage.target in found:
            found.update(stage.reads)
    return found


def _names_read(adjoints: tuple[AdjointStatement, ...]) -> set[str]:
    """Every name the adjoint statements read (forward values, parameters, gradients)."""
    return {
        n
        for a in adjoints
        for n in [*names_in(a.expr), *(m for part in a.index for m in names_in(part))]
    }


def _forward_lines(function: StagedFunction, wanted: set[str]) -> tuple[ForwardLine, ...]:
    """The lines computing the forward values named in ``wanted``, and what they need.

    A temporary read only by the one stage that consumes it is written inline there, so the
    recomputed forward reads like the user's own lines.
    """
    by_target = {s.target: s for s in function.stages}
    read = {n for n in wanted if n in by_target}
    needed: set[str] = set()
    pending = sorted(read)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending.extend(n for n in by_target[name].reads if n in by_target)
    uses: Counter[str] = Counter()
    for name in needed:
        for read_name in by_target[name].reads:
            uses[read_name] += 1
    inline = {
        name
        for name in needed
        if by_target[name].temporary and name not in read and uses[name] == 1
    }
    expanded: dict[str, Expr] = {}
    lines = []
    for stage in function.stages:
        if stage.target not in needed:
            continue
        expr = substitute(stage.expr, {n: expanded[n] for n in _inlined_operands(stage, inline)})
        if stage.target in inline:
            expanded[stage.target] = expr
        else:
            lines.append(ForwardLine(stage.target, expr))
    return tuple(lines)


def _inlined_operands(stage: Stage, inline: set[str]) -> list[str]:
    return [name for name in stage.reads if name in inline]
