"""Shapes of the forward values, where the code makes them evident.

A shape is a tuple of dimensions (names or numbers, from annotations such as ``x: "N, D"``),
``()`` for a number, or None where it is not evident. Each rule says the shape of its result
(``Rule.shape``); values with no gradient get theirs from the rules module's tables
(``len(x)`` is a number, ``np.zeros_like(x)`` has x's shape). The reverse pass reads shapes to
write the backward as by hand: ``dx = dh @ w.T`` where the ranks are known, ``_unbroadcast``
where a broadcast cannot be ruled out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

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
    Slice,
    Subscript,
    UnaryOp,
    is_constant,
    literal_value,
    unwrap,
    walk,
)
from gradgen.parse import Parameter
from gradgen.rules import (
    ARRAY_MAKERS,
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_MASKS,
    IDENTITY,
    INDEX,
    NUMBER_ATTRIBUTES,
    NUMBER_VALUED,
    REDUCED_SHAPE,
    REVERSED,
    SHAPE_ATTRIBUTE,
    SHAPE_OF_FIRST,
    STEPS,
    AdjointContext,
    is_opaque,
    is_reshape,
)
from gradgen.shapes import SCALAR, Shape
from gradgen.stages import Stage, StagedFunction, all_stages

Shapes = dict[str, Shape | None]
# The names bound to a dimension of a known shape (``N = x.shape[0]``, ``H = 3``), so that an
# array made at them (``np.zeros((N, T, H))``) has a known shape too.
Dimensions = dict[str, shapes.Dim]


class ResultShapes(Protocol):
    """The shapes of what a function of the module returns, given its arguments' shapes."""

    def result_shapes(
        self, function: str, arguments: tuple[Shape | None, ...]
    ) -> tuple[Shape | None, ...]: ...


def infer_shapes(
    function: StagedFunction,
    callees: ResultShapes | None = None,
    parameters: Mapping[str, Shape | None] | None = None,
) -> Shapes:
    """The shape of every value where the code makes it evident; all scalars in a module
    that does not use numpy. A call's results have the shapes ``callees`` infer from its
    arguments' (unknown without them); ``parameters`` replaces the parameters' own
    (annotated) shapes: the arguments' of a call being looked into."""
    if not function.array_mode:
        names = [p.name for p in function.parameters]
        for stage in function.all_stages:
            names += stage.targets
            if stage.loop is not None and stage.loop.variable:
                names.append(stage.loop.variable)
        return dict.fromkeys(names, SCALAR)
    if parameters is None:
        parameters = {
            p.name: p.shape if p.name in function.passed_values else _parameter_shape(p)
            for p in function.parameters
        }
    steps = frozenset(s.loop.variable for s in function.all_stages if s.loop is not None)
    given = dict(parameters)
    while True:
        known: Shapes = dict(given)
        _infer_stages(function.stages, known, callees, steps, {})
        # What the code says of a parameter by its uses (``math.exp(-x)``: x is a number)
        # holds for every value it takes: with it, the values computed from it may be known.
        found = {
            name: SCALAR
            for name in numbers_by_use(function, known)
            if name in given and given[name] is None
        }
        if not found:
            return known
        given.update(found)


def _bound_once(stages: list[Stage]) -> set[str]:
    """The names one stage binds (the sides of an ``if`` may each bind the same name)."""
    counts: dict[str, int] = {}
    for stage in stages:
        for target in stage.targets:
            counts[target] = counts.get(target, 0) + 1
    return {name for name, count in counts.items() if count == 1}


def _parameter_shape(parameter: Parameter) -> Shape | None:
    """A parameter's annotated shape; a parameter defaulting to a number (``eps=1e-5``) is a
    number, as a reader takes it (documented: pass an array for it and annotate it)."""
    if parameter.shape is not None:
        return parameter.shape
    default = None if parameter.default is None else literal_value(parameter.default)
    if isinstance(default, int | float) and not isinstance(default, bool):
        return SCALAR
    return None


def numbers_by_use(function: StagedFunction, known: Shapes) -> set[str]:
    """The values the code uses as numbers: what a ``math`` function is given (it takes
    numbers only), and the inputs of an elementwise operation whose result is a number
    (numpy's broadcast of shapes gives ``()`` only from ``()``), back to the values they
    came from, through a loop's steps and an ``if``'s sides."""
    numbers = {name for name, shape in known.items() if shape == SCALAR}
    stages = list(function.all_stages)
    once = _bound_once(stages)
    changed = True
    while changed:
        changed = False
        for stage in reversed(stages):
            taken: list[Expr] = []
            if stage.rule is not None and stage.rule.elementwise:
                # (a name the sides of an 'if' both bind may be a number on one side only)
                if stage.library == "math" or (stage.target in numbers and stage.target in once):
                    taken = list(stage.operands)
            elif stage.loop is not None:
                taken = [
                    e
                    for carry in stage.loop.carried
                    if carry.name in numbers
                    for e in (carry.initial, carry.last)
                ]
            elif stage.branch is not None:
                taken = [
                    e
                    for join in stage.branch.joins
                    if join.name in numbers
                    for e in (join.then, join.orelse)
                ]
            for expr in taken:
                expr = unwrap(expr)
                if isinstance(expr, Name) and expr.id not in numbers:
                    numbers.add(expr.id)
                    changed = True
    return numbers


def _infer_stages(
    stages: tuple[Stage, ...],
    known: Shapes,
    callees: ResultShapes | None,
    steps: frozenset[str],
    dimensions: Dimensions,
) -> None:
    """``steps``: the loops' variables (whole numbers, from ``range``)."""
    for stage in stages:
        for target in stage.targets:  # bound again: a dimension no more, unless found below
            dimensions.pop(target, None)
        if stage.loop is not None:
            _infer_loop(stage, known, callees, steps, dimensions)
        elif stage.branch is not None:
            _infer_stages(stage.branch.then, known, callees, steps, dimensions)
            # A name both sides bind (``o_2``) has a shape only where they agree on it.
            sides = {t: known.get(t) for s in all_stages(stage.branch.then) for t in s.targets}
            _infer_stages(stage.branch.orelse, known, callees, steps, dimensions)
            for side in all_stages(stage.branch.orelse):
                for target in side.targets:
                    if target in sides and sides[target] != known.get(target):
                        known[target] = None
            known[stage.target] = None
            for join in stage.branch.joins:
                then = expression_shape(join.then, known)
                known[join.name] = then if then == expression_shape(join.orelse, known) else None
        elif stage.call is not None:
            arguments = tuple(expression_shape(o, known) for o in stage.operands)
            results: tuple[Shape | None, ...] = (None,) * len(stage.targets)
            if callees is not None:
                results = callees.result_shapes(stage.call.function, arguments)
            known.update(zip(stage.targets, results, strict=True))
        elif stage.rule is None:
            known[stage.target] = _made_shape(stage.expr, dimensions, known)
            if known[stage.target] is None:
                known[stage.target] = expression_shape(stage.expr, known)
            dimension = _dimension(stage.expr, known, dimensions)
            if dimension is not None:
                dimensions[stage.target] = dimension
        elif stage.results:  # several results: the rule says each one's shape
            assert stage.rule is not None
            found: tuple[Shape | None, ...] = (None,) * len(stage.results)
            if stage.rule.result_shapes is not None:
                found = stage.rule.result_shapes(stage_context(stage, known, dimensions))
            if len(found) != len(stage.results):  # pieces a refusal left uncounted
                found = (None,) * len(stage.results)
            known.update(zip(stage.results, found, strict=True))
        elif _calls_math(stage.expr):  # the math module gives numbers only
            known[stage.target] = SCALAR
        elif _reshapes(stage):
            known[stage.target] = _reshaped(stage, known, dimensions)
        elif stage.rule is INDEX:
            known[stage.target] = _index_shape(stage, known, steps, dimensions)
        elif stage.rule.shape is not None:
            known[stage.target] = stage.rule.shape(stage_context(stage, known, dimensions))
        else:
            known[stage.target] = None


def _reshapes(stage: Stage) -> bool:
    """``np.reshape(x, shape)`` or ``x.reshape(...)`` (not the other forms of its rule)."""
    return is_reshape(stage.rule, unwrap(stage.expr))


def _reshaped(stage: Stage, known: Shapes, dimensions: Dimensions) -> Shape | None:
    """The shape ``x.reshape(N, -1)`` gives, where x's is known and each dimension asked
    for is one (a name bound to one, ``x.shape[0]``, a whole number): a ``-1`` is what is
    left of x's dimensions once the others are taken out of them."""
    source = expression_shape(stage.operands[0], known)
    given = unwrap(dict(stage.nondiff)["shape"])
    parts = given.items if isinstance(given, Sequence_) else (given,)
    if source is None:
        return None
    asked: list[shapes.Dim | None] = []
    for part in parts:
        if literal_value(part) == -1:
            asked.append(None)
            continue
        dim = _dimension(part, known, dimensions)
        if dim is None:
            return None
        asked.append(dim)
    if asked.count(None) > 1:
        return None
    left = list(source)
    for dim in asked:
        if dim is not None and dim in left:
            left.remove(dim)
        elif dim is not None and dim != 1:
            return None if None in asked else tuple(d for d in asked if d is not None)
    if None not in asked:
        return tuple(d for d in asked if d is not None)
    numbers = math.prod(d for d in left if isinstance(d, int))
    named = [d for d in left if not isinstance(d, int)]
    if not named:
        rest: shapes.Dim = numbers
    elif len(named) == 1:
        combined = shapes.combine((numbers, named[0]))
        if combined is None:
            return None
        rest = combined
    else:  # a product of names, written as an annotation writes it ("C*H*W")
        rest = "*".join([*([str(numbers)] if numbers != 1 else []), *map(str, named)])
    return tuple(rest if d is None else d for d in asked)


def _calls_math(expr: Expr) -> bool:
    expr = unwrap(expr)
    return isinstance(expr, Call) and expr.func.lib == "math"


def _index_shape(
    stage: Stage, known: Shapes, steps: frozenset[str], dimensions: Dimensions
) -> Shape | None:
    """``x[:, t, :]``, ``x[t]``, ``x[0]``, ``b[None, :]``, ``a[:, H:2 * H]``: a whole slice
    keeps its axis, a slice between dimensions (names bound to known ones, whole numbers,
    sums and multiples of them) has their difference for length, a loop's step or a whole
    number written out takes one away, ``None`` adds one of length 1. Anything else (a
    slice with a step, an array of indices, ``...``, a number that may be a flag) leaves
    the shape unknown."""
    shape = expression_shape(stage.operands[0], known)
    index = unwrap(dict(stage.nondiff)["i"])
    parts = index.items if isinstance(index, Sequence_) and index.brackets == "()" else (index,)
    new_axes = sum(_new_axis(part) for part in parts)
    if shape is None or len(parts) - new_axes > len(shape):
        return None
    kept: list[shapes.Dim] = []
    axis = 0  # of x, the next one a part of the index reads
    for part in map(unwrap, parts):
        if _new_axis(part):
            kept.append(1)
            continue
        dim, axis = shape[axis], axis + 1
        if isinstance(part, Slice) and part.lower is part.upper is part.step is None:
            kept.append(dim)
        elif isinstance(part, Slice):
            length = _slice_length(part, dim, known, dimensions)
            if length is None:
                return None
            kept.append(length)
        elif not (
            (isinstance(part, Name) and part.id in steps) or type(literal_value(part)) is int
        ):
            return None
    return (*kept, *shape[axis:])


def _new_axis(part: Expr) -> bool:
    """``None`` or ``np.newaxis`` in an index: a new axis of length 1."""
    part = unwrap(part)
    return literal_value(part) is None or (
        isinstance(part, Const) and part.text.endswith(".newaxis")
    )


def _infer_loop(
    stage: Stage,
    known: Shapes,
    callees: ResultShapes | None,
    steps: frozenset[str],
    dimensions: Dimensions,
) -> None:
    """A carried value has its starting shape where every step keeps it; a filled list has
    the shape of its items stacked (``_list_shape``); what the steps keep has none."""
    loop = stage.loop
    assert loop is not None
    if loop.variable:  # a while loop has none
        known[loop.variable] = SCALAR
    known[stage.target] = None
    for carry in loop.carried:
        known[carry.name] = expression_shape(carry.initial, known)
    for _ in range(len(loop.carried) + 1):
        _infer_stages(loop.body, known, callees, steps, dimensions)
        changed = False
        for carry in loop.carried:
            if known[carry.name] is not None and (
                expression_shape(carry.last, known) != known[carry.name]
            ):
                known[carry.name] = None
                changed = True
        if not changed:
            break
    for collected in loop.collected:
        if collected.made is not None:  # filled in place: the array made for it keeps its shape
            made = collected.made
            known[collected.name] = _made_shape(made, dimensions)
            if known[collected.name] is None:
                known[collected.name] = expression_shape(made, known)
        else:
            known[collected.name] = _list_shape(stage, collected.name, collected.items, known)


def _slice_length(
    part: Slice, dim: shapes.Dim, known: Shapes, dimensions: Dimensions
) -> shapes.Dim | None:
    """The length of ``lower:upper`` along an axis of length ``dim`` (no step), where
    both bounds are dimensions (a negative whole number counts from the end)."""
    if part.step is not None and literal_value(part.step) != 1:
        return None
    bounds: list[shapes.Dim] = []
    for bound, default in ((part.upper, dim), (part.lower, 0)):
        if bound is None:
            bounds.append(default)
            continue
        found = _dimension(bound, known, dimensions, signed=True)
        if found is None:
            return None
        if isinstance(found, int) and found < 0:
            found = shapes.combine((1, dim), (1, found))  # from the end
            if found is None:
                return None
        bounds.append(found)
    return shapes.combine((1, bounds[0]), (-1, bounds[1]))


def _dimension(
    expr: Expr, known: Shapes, dimensions: Dimensions | None = None, signed: bool = False
) -> shapes.Dim | None:
    """The dimension a number is, where evident: ``x.shape[1]`` of a known shape, a whole
    number written out, a name bound to a dimension, sums and whole multiples of those
    (``2 * H``, ``H + 1``); with ``signed``, a negative whole number too (a slice's bound
    from the end)."""
    expr = unwrap(expr)
    number = literal_value(expr)
    if isinstance(number, int) and not isinstance(number, bool):
        return number if number >= 0 or signed else None
    if isinstance(expr, Name) and dimensions is not None and expr.id in dimensions:
        return dimensions[expr.id]
    if isinstance(expr, UnaryOp) and expr.op == "-":
        inner = _dimension(expr.operand, known, dimensions)
        return -inner if signed and isinstance(inner, int) else None
    if isinstance(expr, BinOp) and expr.op in ("+", "-", "*"):
        left = _dimension(expr.left, known, dimensions)
        right = _dimension(expr.right, known, dimensions)
        if left is None or right is None:
            return None
        if expr.op == "*":
            if isinstance(left, int):
                return shapes.combine((left, right))
            return shapes.combine((right, left)) if isinstance(right, int) else None
        return shapes.combine((1, left), (1 if expr.op == "+" else -1, right))
    if not (
        isinstance(expr, Subscript)
        and isinstance(expr.value, Attribute)
        and expr.value.name == SHAPE_ATTRIBUTE
        and len(expr.index) == 1
    ):
        return None
    shape = expression_shape(expr.value.value, known)
    axis = literal_value(expr.index[0])
    if shape is None or type(axis) is not int or not -len(shape) <= axis < len(shape):
        return None
    return shape[axis]


def _made_shape(expr: Expr, dimensions: Dimensions, known: Shapes | None = None) -> Shape | None:
    """The shape of ``np.zeros((N, T, H))`` (``ones``, ``empty``; a tuple or one number),
    where each dimension is written out or a name bound to a known one."""
    expr = unwrap(expr)
    if isinstance(expr, Call) and (expr.func.lib, expr.func.name) == IDENTITY:
        # np.eye(N): an N x N matrix (with N alone)
        if len(expr.args) == 1 and not expr.kwargs:
            side = _made_shape(Call(Func("numpy", "zeros", None), expr.args), dimensions, known)
            return None if side is None or len(side) != 1 else (side[0], side[0])
        return None
    if not (
        isinstance(expr, Call)
        and (expr.func.lib, expr.func.name) in ARRAY_MAKERS
        and not expr.func.name.endswith("_like")
    ):
        return None
    given = expr.args[0] if expr.args else dict(expr.kwargs).get("shape")
    given = None if given is None else unwrap(given)
    parts = given.items if isinstance(given, Sequence_) else (given,)
    found: list[shapes.Dim] = []
    for part in parts:
        part = None if part is None else unwrap(part)
        number = NOT_LITERAL if part is None else literal_value(part)
        dim = None if part is None else _dimension(part, known or {}, dimensions)
        if isinstance(number, int) and not isinstance(number, bool):
            found.append(number)
        elif dim is not None:
            found.append(dim)
        else:
            return None
    return tuple(found)


def _list_shape(stage: Stage, name: str, items: tuple[Expr, ...], known: Shapes) -> Shape | None:
    """A filled list as the array ``np.stack(hs)`` makes of it: its length (a number where
    the steps are written out, else a dimension of its own, ``len(hs)``) then its items'
    shape, where every item has one and the same. None otherwise."""
    found = {expression_shape(item, known) for item in items}
    if len(found) != 1 or None in found:
        return None
    item = found.pop()
    assert item is not None
    steps = _number_of_steps(stage.expr)
    length: shapes.Dim = f"len({name})" if steps is None else steps * len(items)
    return (length, *item)


def _number_of_steps(over: Expr) -> int | None:
    """How many steps ``range(...)`` (or ``reversed(range(...))``) makes, where written out."""
    over = unwrap(over)
    if isinstance(over, Call) and (over.func.lib, over.func.name) == REVERSED and over.args:
        over = unwrap(over.args[0])
    if not (isinstance(over, Call) and (over.func.lib, over.func.name) == STEPS):
        return None
    bounds = [literal_value(arg) for arg in over.args]
    numbers = [bound for bound in bounds if type(bound) is int]
    if not 1 <= len(numbers) == len(bounds) <= 3 or 0 in numbers[2:]:
        return None
    return len(range(*numbers))


# What a value's shape is made of, where it is not known: the shapes numpy broadcast
# together to give it, each a parameter's or another value's of no evident shape
# (``("?", name)``), or a known shape (``("=", shape)``); a number adds none. Broadcasting
# is associative, commutative and idempotent, so two values made of the same shapes have
# the same shape: ``h = x * w`` and ``h > 0`` alike, ``m = e * b`` and ``m + a`` too when
# ``e`` came from ``a`` elementwise.
Alike = dict[str, frozenset[object]]


@dataclass(frozen=True)
class Reduced:
    """``r = np.max(x, axis=1, keepdims=True)``: r broadcasts into x's shape (``within``,
    x's ``Alike`` set), and a gradient of x's shape sums back to r's over ``axis``."""

    within: frozenset[object]
    axis: object  # the literal axis: an int, a tuple of them, or None (every axis)
    keepdims: bool = True  # False: leading axes only (axis 0, (0, 1)), which numpy adds back


@dataclass(frozen=True)
class ShapeRelations:
    """What the code shows of shapes it does not make evident: which values have the same
    shape (``alike``), which are reductions kept broadcastable (``reduced``)."""

    alike: Alike
    reduced: dict[str, Reduced]

    def same(self, first: str, second: str) -> bool:
        made = self.alike.get(first)
        return made is not None and made == self.alike.get(second)


def alike_shapes(function: StagedFunction, known: Shapes) -> ShapeRelations:
    """Of each value, the shapes it was broadcast from (see ``Alike``): two values with the
    same set have the same shape, evident or not. A reduction with ``keepdims=True`` adds
    nothing to what it is broadcast with when that holds the shape it was reduced from
    (``scores - np.max(scores, axis=1, keepdims=True)`` has the shape of ``scores``)."""
    found: Alike = {}
    reduced: dict[str, Reduced] = {}

    def base(name: str) -> frozenset[object]:
        shape = known.get(name)
        if shape == SCALAR:
            return frozenset()
        return frozenset({("=", shape) if shape is not None else ("?", name)})

    def union(operands: list[Expr]) -> frozenset[object] | None:
        parts = [of(o) for o in operands]
        total: frozenset[object] = frozenset()
        for position, (operand, part) in enumerate(zip(operands, parts, strict=True)):
            if part is None:
                return None
            plain = unwrap(operand)
            if isinstance(plain, Name) and plain.id in reduced:
                others = [p for k, p in enumerate(parts) if k != position and p is not None]
                if reduced[plain.id].within <= frozenset().union(*others):
                    continue  # it broadcasts into the others, adding no axis or length
            total |= part
        return total

    def of(expr: Expr) -> frozenset[object] | None:
        expr = unwrap(expr)
        if isinstance(expr, Name) and expr.id in found:
            return found[expr.id]
        if isinstance(expr, Name) and expr.id in several:
            return None  # bound on each side of an 'if': of which, it cannot say
        if isinstance(expr, (BinOp, Compare)) and not (isinstance(expr, BinOp) and expr.op == "@"):
            left, right = of(expr.left), of(expr.right)
            return None if left is None or right is None else left | right
        if isinstance(expr, UnaryOp):
            return of(expr.operand)
        shape = expression_shape(expr, known)
        if shape is None:
            return None
        return frozenset() if shape == SCALAR else frozenset({("=", shape)})

    for parameter in function.parameters:
        found[parameter.name] = base(parameter.name)
    stages = list(function.all_stages)
    once = _bound_once(stages)
    several = {t for stage in stages for t in stage.targets} - once
    for stage in stages:
        made: frozenset[object] | None = None
        rule = stage.rule
        if rule is not None and not stage.results and rule.elementwise:
            values = dict(zip(rule.inputs, stage.operands, strict=False))
            values.update(stage.nondiff)
            if rule.variadic or not rule.keeps_shape:
                made = union([*stage.operands, *(v for _, v in stage.nondiff)])
            elif "x" in values:
                made = of(values["x"])
        elif (
            rule is None
            and stage.loop is None
            and stage.branch is None
            and stage.call is None
            and not stage.opaque
            and not stage.item
        ):
            made = of(stage.expr)
        if rule is not None and rule.shape is REDUCED_SHAPE and "x" in rule.inputs:
            keepdims = literal_value(dict(stage.nondiff).get("keepdims", Const("False")))
            source = of(stage.operands[rule.inputs.index("x")])
            axis = literal_value(dict(stage.nondiff).get("axis", Const("None")))
            # Without keepdims, a reduction over leading axes broadcasts back too.
            leading = _leading(axis)
            if (
                source is not None
                and _is_axis(axis)
                and stage.target in once
                and (keepdims is True or (keepdims is False and leading))
            ):
                reduced[stage.target] = Reduced(source, axis, keepdims is True)
        elif made is not None and stage.target in once:
            # A reduction times a number (the mean 1.0 / N * np.sum(x, axis=0)) is one too.
            carried = [
                unwrap(o)
                for o in stage.operands
                if isinstance(unwrap(o), Name) and of(o) != frozenset()
            ]
            if (
                len(carried) == 1
                and isinstance(carried[0], Name)
                and carried[0].id in reduced
                and made == of(carried[0])
            ):
                reduced[stage.target] = reduced[carried[0].id]
        if made is not None and known.get(stage.target) is None and stage.target in once:
            found[stage.target] = made
        for target in (*stage.targets, *_loop_names(stage)):
            if target not in several:
                found.setdefault(target, base(target))
    return ShapeRelations(found, reduced)


def _leading(axis: object) -> bool:
    """Is ``axis`` the first axes: 0, or (0, 1, ...)?"""
    if axis == 0 and type(axis) is int:
        return True
    return isinstance(axis, tuple) and list(axis) == list(range(len(axis))) and bool(axis)


def _is_axis(axis: object) -> bool:
    """A literal axis argument: None, a whole number, or a tuple of them."""
    if axis is None or type(axis) is int:
        return True
    return isinstance(axis, tuple) and all(type(a) is int for a in axis)


def _loop_names(stage: Stage) -> list[str]:
    if stage.loop is None:
        return []
    names = [carry.name for carry in stage.loop.carried]
    names += [collected.name for collected in stage.loop.collected]
    return [*names, stage.loop.variable] if stage.loop.variable else names


def floating_values(function: StagedFunction) -> set[str]:
    """The values known to be floating point: results of operations that always give floats
    (``np.exp``, ``/``, ``np.mean``: ``Rule.floating``), of operations with a float input
    (numpy promotes), and floats written out. A parameter may be an integer array."""
    floating: set[str] = set()
    for stage in function.all_stages:
        if stage.rule is not None and (
            stage.rule.floating or any(_is_float(o, floating) for o in stage.operands)
        ):
            floating.update(stage.targets)
    return floating


def _is_float(expr: Expr, floating: set[str]) -> bool:
    expr = unwrap(expr)
    if isinstance(expr, Name):
        return expr.id in floating
    return isinstance(expr, Const) and isinstance(expr.value, float)


def expression_shape(expr: Expr, known: Shapes) -> Shape | None:
    """The shape of ``expr``, a value with no gradient or an adjoint, where evident."""
    expr = unwrap(expr)
    if isinstance(expr, Sequence_):
        return _literal_shape(expr)  # [0.0, 2.0] as an operand: numpy makes it an array
    if is_constant(expr) and not any(_may_make_an_array(node) for node in walk(expr)):
        return SCALAR  # a number, a module constant
    if isinstance(expr, Name):
        return known.get(expr.id)
    if isinstance(expr, BinOp) and expr.op == "@":  # not elementwise: numpy's matmul rules
        left, right = (expression_shape(e, known) for e in (expr.left, expr.right))
        return shapes.matmul(left, right)
    if isinstance(expr, (BinOp, Compare)):
        return shapes.broadcast(
            expression_shape(expr.left, known), expression_shape(expr.right, known)
        )
    if isinstance(expr, UnaryOp):
        return expression_shape(expr.operand, known)
    if (
        isinstance(expr, Subscript)
        and isinstance(expr.value, Attribute)
        and expr.value.name == SHAPE_ATTRIBUTE
    ):
        return SCALAR  # x.shape[0]: a number
    if isinstance(expr, Attribute) and expr.name in NUMBER_ATTRIBUTES:
        return SCALAR
    if isinstance(expr, Call) and not is_opaque(expr.func):  # a function of the table
        function = (expr.func.lib, expr.func.name)
        if function in NUMBER_VALUED:
            return SCALAR
        if expr.func.name in SHAPE_OF_FIRST and expr.args:
            if isinstance(unwrap(expr.args[0]), Sequence_):
                return None  # np.array([1.0, 2.0]): an array, not a number
            return expression_shape(expr.args[0], known)
        if expr.func.name in ELEMENTWISE_MASKS:
            return shapes.broadcast(*(expression_shape(a, known) for a in expr.args))
        if function == IDENTITY:
            return _made_shape(expr, {}, known)
        if function in ELEMENTWISE_FUNCTIONS and not expr.kwargs:
            return shapes.broadcast(*(expression_shape(a, known) for a in expr.args))
    return None


def _literal_shape(expr: Sequence_) -> Shape | None:
    """The shape numpy gives a list (or tuple) written out: its length, then its items'
    common shape (``[[0.0, 2.0], [1.0, 5.0]]``: (2, 2)); None where they differ, or where
    an item is not a number or such a list."""
    inner: set[Shape | None] = set()
    for item in expr.items:
        item = unwrap(item)
        if isinstance(item, Sequence_):
            inner.add(_literal_shape(item))
        elif is_constant(item) and not any(_may_make_an_array(n) for n in walk(item)):
            inner.add(SCALAR)
        else:
            return None
    items: Shape | None = inner.pop() if len(inner) == 1 else SCALAR if not inner else None
    return None if items is None else (len(expr.items), *items)


def _may_make_an_array(expr: Expr) -> bool:
    """Is ``expr`` a call that may give an array of constants (``np.zeros(3)``,
    ``np.array([0, 1])``), unlike ``math.sqrt(2)`` or ``len``?"""
    return isinstance(expr, Call) and expr.func.lib not in ("math", "builtins")


def _dimensions_value(value: Expr, dimensions: Dimensions) -> object:
    """The literal value of ``value``, with the names of known dimensions read as them."""
    written = literal_value(value)
    value = unwrap(value)
    if written is not NOT_LITERAL or not isinstance(value, Sequence_ | Name):
        return written
    items = value.items if isinstance(value, Sequence_) else (value,)
    found: list[object] = []
    for item in items:
        item = unwrap(item)
        found.append(dimensions.get(item.id) if isinstance(item, Name) else literal_value(item))
    if any(f is None or f is NOT_LITERAL for f in found):
        return NOT_LITERAL
    return tuple(found) if isinstance(value, Sequence_) else found[0]


def stage_context(
    stage: Stage, known: Shapes, dimensions: Dimensions | None = None
) -> AdjointContext:
    """What the stage's rule may look at to choose a template or a shape: the literal
    values of its arguments and the shapes of its inputs and result. With ``dimensions``
    (for a shape, never for a template, which writes the names), an argument of names
    bound to known dimensions reads as those: ``(HH, WW)`` after ``HH, WW = w.shape[2:]``."""
    assert stage.rule is not None
    names = (
        [f"x{j}" for j in range(len(stage.operands))] if stage.rule.variadic else stage.rule.inputs
    )
    operand_shapes = {
        name: expression_shape(operand, known)
        for name, operand in zip(names, stage.operands, strict=True)
    }
    for name, value in stage.nondiff:
        operand_shapes.setdefault(name, expression_shape(value, known))
    operand_shapes["out"] = known.get(stage.target)
    literals = {name: _dimensions_value(value, dimensions or {}) for name, value in stage.nondiff}
    # Literal operands too: np.clip(x, None, 1.0) has no lower bound.
    literals.update(
        (name, literal_value(operand))
        for name, operand in zip(names, stage.operands, strict=True)
        if literal_value(operand) is not NOT_LITERAL
    )
    return AdjointContext(literals, operand_shapes)
