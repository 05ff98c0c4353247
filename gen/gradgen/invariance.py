"""Shifts with no gradient: ``x - c`` feeding only functions that do not change with ``c``.

A softmax or a log-sum-exp written for numerical stability subtracts a shift first::

    shift = np.max(scores, axis=1, keepdims=True)
    exps = np.exp(scores - shift)
    probs = exps / np.sum(exps, axis=1, keepdims=True)

``probs`` is the same whatever ``shift`` is, so the gradient flowing back into ``shift``
is exactly zero; differentiating np.max to pass that zero on is work for nothing (and
rounding noise). This module proves such identities and marks the operand of the shift
(``Stage.stopped``): the reverse pass then hands it no gradient, as if the user had
written ``gradgen.stop_gradient(shift)`` there. What ``c`` is does not matter (a max, a
mean, a parameter): only that the results are invariant to it.

The proof. Take a value ``c`` added to or subtracted from others (``x - c``, ``c + y``:
its *shift edges*) and perturb it there by ``d``, an array of c's shape (the values that
compute c and its other uses are left as they are). Every value then depends on ``d`` in
one of the ways of ``Tag``: not at all; ``v0 + k * d`` (additive); ``v0 * exp(k * d)``
(multiplicative); or some other way (unknown). The rules of the algebra (``_apply``):
``exp`` makes additive multiplicative and ``log`` the reverse; a sum, mean, max or min
over axes along which ``d`` is constant keeps the tag (a sum of an additive one does not:
it adds ``d`` as many times as there are entries); a softmax along such axes is
invariant; a difference of two additive ones with one ``k``, a ratio of two multiplicative
ones, is invariant, where ``d`` lies in both the same way. Where every result of the
function is invariant, the gradient reaching ``c`` through those edges adds up to zero,
and the reverse pass leaves them out. Leaving them out changes no other gradient: that
zero would have been multiplied into the gradients of what computes ``c``, and the other
uses of ``c`` pass theirs on as before. Each set of edges proved has a zero sum on its
own, so any number of them can be left out together.

Where ``d`` lies in a value (``Layout``) is read from shapes where ``infer.py`` knows
them, else from what the code shows: ``c = np.max(x, axis=1, keepdims=True)`` has x's
rank and is constant along axis 1, whatever x's shape; ``np.max(x)`` is a number.
Anything the algebra cannot follow (an index, a reshape, a product with an array, a
call, a loop, an ``if``) is unknown, and the edges keep their gradient: slow, never
wrong. Only the function's top-level statements are looked at, only the edges of values
that reach an exp, a softmax or a logsumexp (where d can cancel), and only as much as a
budget linear in the function's size allows (a chain of a thousand additions makes
every value a candidate).

How each operation passes a tag on is a fact about the operation: ``rules.SHIFTS``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Literal

from gradgen.expr import NOT_LITERAL, Expr, Name, literal_value
from gradgen.infer import Shapes, expression_shape
from gradgen.rules import SHIFTS, Shift
from gradgen.shapes import SCALAR
from gradgen.stages import Stage, StagedFunction

# The reductions along whose reduced axes a constant d comes out unchanged: for each, the
# tags it keeps (a max of v0 + k*d is max(v0) + k*d; a sum of it is not, a sum of v0 *
# exp(k*d) is exp(k*d) * sum(v0)).
_REDUCTIONS: dict[Shift, frozenset[str]] = {
    Shift.SUM: frozenset({"multiplicative"}),
    Shift.MEAN: frozenset({"additive", "multiplicative"}),
    Shift.LOGSUMEXP: frozenset({"additive"}),
}
# Where d can cancel: multiplicative (exp), or invariant to it (a softmax).
_EXPONENTIALS = frozenset({Shift.EXP, Shift.NORMALIZE, Shift.LOGSUMEXP})
_SHIFTING = frozenset({Shift.ADD, Shift.SUBTRACT})
# Subsets of a value's shift edges tried together, where there are up to so many edges
# (the tries grow as 2 ** edges); up to the other, all of them, then each alone; more, all.
_SUBSETS_UP_TO = 4
_SINGLES_UP_TO = 16
# The stages all the tries of a function may visit: so many per stage, and a few more.
_BUDGET_PER_STAGE = 32
_BUDGET = 4096


@dataclass(frozen=True)
class Layout:
    """Where ``d`` (of c's shape) lies in a value, broadcast into it as numpy does.

    - ``number``: d has one entry (c is a number, or all its dimensions are 1);
    - ``end``: d aligned at the value's last axis (numpy broadcasting), of rank ``rank``
      (None: unknown); ``ones`` its axes of size 1, counted from the end (-1, -2);
    - ``start``: d of the value's own rank (its axes are the value's), ``ones`` its axes
      of size 1 counted from the start; ``base``: a value of d's rank (c's operand in
      ``c = np.max(x, axis=1, keepdims=True)``), while no axis has been reduced away.

    d is constant along the axes in ``ones`` (and, ``end``, along those left of it)."""

    kind: Literal["number", "end", "start"]
    ones: frozenset[int] = frozenset()
    rank: int | None = None
    base: str | None = None

    def lines_up_with(self, other: Layout) -> bool:
        """Does d lie in both values alike (so that their combination cancels it)? Of one
        c, the axes of size 1 say where the others are (each of c's other axes once, in
        order), so the same ``ones`` of the same kind is the same layout."""
        if self.kind != other.kind or self.ones != other.ones:
            return False
        return self.kind != "end" or self.rank == other.rank


NUMBER = Layout("number")


@dataclass(frozen=True)
class Tag:
    """How a value depends on d: ``v0 + k * d`` (``additive``) or ``v0 * exp(k * d)``
    (``multiplicative``), with d laid out in it as ``layout`` says."""

    kind: Literal["additive", "multiplicative"]
    k: Fraction
    layout: Layout


class _Unknown:
    """A value that depends on d some other way."""


UNKNOWN = _Unknown()
# None: the value does not depend on d (or only through values with no gradient).
Dependence = Tag | _Unknown | None


def stop_invariant_shifts(function: StagedFunction, known: Shapes) -> StagedFunction:
    """``function`` with the shift edges whose gradient is proved zero marked on their
    stages (``Stage.stopped``): the operand positions that get no gradient."""
    stages = function.stages
    exponentiated = _reaching_exponentials(stages)
    proof = _Proof(function, known, _needed(function))
    stopped: dict[int, set[int]] = {}
    for shift, edges in _shift_edges(stages).items():
        # d cancels through an exponential (exp, a softmax, logsumexp) or not at all here:
        # the edges of a value that reaches none are not tried (a long sum stays linear).
        useful = {(i, p) for i, p in edges if stages[i].target in exponentiated}
        if not useful:
            continue
        start = _start_layout(shift, function, known)
        if start is None:
            continue
        for chosen in _trials(edges):
            # Sets proved are disjoint: each adds up to zero, so their union does; two
            # overlapping ones need not ({a, b} and {a, c}: b and c are each -a).
            if useful.isdisjoint(chosen) or any(p in stopped.get(i, ()) for i, p in chosen):
                continue
            if proof.invariant(start, set(chosen)):
                for index, position in chosen:
                    stopped.setdefault(index, set()).add(position)
    if not stopped:
        return function
    marked = tuple(
        replace(stage, stopped=tuple(sorted(stopped[i]))) if i in stopped else stage
        for i, stage in enumerate(stages)
    )
    return replace(function, stages=marked)


def without_stops(function: StagedFunction) -> StagedFunction:
    """``function`` as staged, every shift differentiated (what ``stop_invariant_shifts``
    marked unmarked)."""
    if not any(stage.stopped for stage in function.stages):
        return function
    stages = tuple(replace(stage, stopped=()) for stage in function.stages)
    return replace(function, stages=stages)


def _reaching_exponentials(stages: tuple[Stage, ...]) -> set[str]:
    """The values some exponential-like stage (exp, softmax, log_softmax, logsumexp) of
    the top level is computed from."""
    found: set[str] = set()
    for stage in reversed(stages):
        if _algebra(stage) in _EXPONENTIALS or (stage.rule is not None and stage.target in found):
            found.update(o.id for o in stage.operands if isinstance(o, Name))
    return found


def _needed(function: StagedFunction) -> set[str]:
    """The values a gradient of a result could flow back into (through anything but a
    value with no gradient: a mask, a shape): where d must not be unknown."""
    needed = {r.id for r in function.results if isinstance(r, Name)}
    for stage in reversed(function.stages):
        if not any(t in needed for t in stage.targets):
            continue
        if stage.rule is not None:
            needed.update(o.id for o in stage.operands if isinstance(o, Name))
        elif _unfollowed(stage):  # a call, a loop, an if: all it reads
            needed.update(stage.reads)
    return needed


def _algebra(stage: Stage) -> Shift | None:
    """How ``stage`` passes a shift on (``rules.SHIFTS``); None: it makes it unknown."""
    return None if stage.rule is None else SHIFTS.get(stage.rule.name)


def _shift_edges(stages: tuple[Stage, ...]) -> dict[str, list[tuple[int, int]]]:
    """Each value added or subtracted at the top level, and where: (stage index, operand
    position), in order."""
    found: dict[str, list[tuple[int, int]]] = {}
    for index, stage in enumerate(stages):
        if _algebra(stage) in _SHIFTING:
            for position, operand in enumerate(stage.operands):
                if isinstance(operand, Name):
                    found.setdefault(operand.id, []).append((index, position))
    return found


def _trials(edges: list[tuple[int, int]]) -> Iterator[tuple[tuple[int, int], ...]]:
    """The sets of edges to try, largest first (``c + log(sum(exp(x - c)))`` needs both of
    its edges together); in order, so the result is the same every time."""
    if len(edges) <= _SUBSETS_UP_TO:
        for size in range(len(edges), 0, -1):
            yield from itertools.combinations(edges, size)
        return
    yield tuple(edges)
    if len(edges) <= _SINGLES_UP_TO:
        yield from ((edge,) for edge in edges)


def _start_layout(shift: str, function: StagedFunction, known: Shapes) -> Layout | None:
    """Where d lies in ``shift`` itself: from its shape, or from the reduction with
    keepdims=True that made it; None where neither says."""
    shape = known.get(shift)
    if shape is not None:
        return _from_shape(len(shape), frozenset(i for i, d in enumerate(shape) if d == 1))
    stage = next((s for s in function.stages if s.targets == (shift,)), None)
    if stage is None or _algebra(stage) not in _REDUCTIONS:
        return None
    literals = {name: literal_value(value) for name, value in stage.nondiff}
    axis, keepdims = literals.get("axis"), literals.get("keepdims")
    if axis is None:  # all axes: a number, or all its dimensions 1
        return NUMBER if isinstance(keepdims, bool) else None
    axes = _axes(axis)
    if keepdims is not True or axes is None:
        return None
    if all(a >= 0 for a in axes):
        operand = stage.operands[0]
        base = operand.id if isinstance(operand, Name) else None
        return Layout("start", frozenset(axes), base=base)
    if all(a < 0 for a in axes):
        return Layout("end", frozenset(axes))
    return None


def _from_shape(rank: int, ones: frozenset[int]) -> Layout:
    """The layout of d in a value of known rank whose axes ``ones`` (from the start) have
    size 1 in d."""
    if len(ones) == rank:
        return NUMBER
    return Layout("end", frozenset(a - rank for a in ones), rank)


def _axes(axis: object) -> tuple[int, ...] | None:
    """A literal axis or tuple of axes, as a tuple; None for anything else."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    if all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        return tuple(a for a in axes if isinstance(a, int))
    return None


class _Proof:
    """Tries sets of shift edges of one function, within a budget of stages visited."""

    def __init__(self, function: StagedFunction, known: Shapes, needed: set[str]) -> None:
        self.function = function
        self.known = known
        self.needed = needed
        # What a function's trials may visit in all: linear in its size, so a long chain of
        # additions (each value a candidate whose tags run to the end) stays fast. Beyond
        # it nothing more is proved: the shifts left keep their gradient (slow, right).
        self.budget = _BUDGET_PER_STAGE * len(function.stages) + _BUDGET

    def invariant(self, start: Layout, edges: set[tuple[int, int]]) -> bool:
        """Are all the function's results the same whatever d is added to the shift at
        ``edges`` (and is there something to leave out: d cancelled where a gradient
        flows)?"""
        function, known = self.function, self.known
        tags: dict[str, Dependence] = {}
        live: set[str] = set()  # the values tagged (Tag): what may still cancel
        cancelled = False
        first = min(index for index, _ in edges)
        for index, stage in enumerate(function.stages[first:], start=first):
            self.budget -= 1
            if self.budget < 0:
                return False
            dependences: list[Dependence] = []
            for position, operand in enumerate(stage.operands):
                if (index, position) in edges:
                    dependences.append(Tag("additive", Fraction(1), start))  # c + d
                elif isinstance(operand, Name):
                    dependences.append(tags.get(operand.id))
                else:
                    dependences.append(None)
            if all(d is None for d in dependences) and (
                stage.rule is not None or all(tags.get(n) is None for n in stage.reads)
            ):
                continue  # nothing it reads moves with d (a rule's other arguments: no gradient)
            result = _apply(stage, dependences, known)
            if result is None and stage.rule is not None:
                cancelled = True  # d cancelled where a gradient flows (not in a mask)
            for target in stage.targets:
                if result is UNKNOWN and target in self.needed:
                    return False  # moves with d some other way, and a gradient flows back
                tags[target] = _normalized(result, known.get(target))
                if isinstance(tags[target], Tag):
                    live.add(target)
                else:
                    live.discard(target)
            if not live and not cancelled:
                return False  # nothing left that could cancel: d is lost or unknown
        return cancelled and all(
            tags.get(r.id) is None for r in function.results if isinstance(r, Name)
        )


def _normalized(dependence: Dependence, shape: tuple[object, ...] | None) -> Dependence:
    """``dependence`` with its layout read against the value's shape, where known: d of
    the value's own rank is aligned at its end too; d of size 1 along all its axes is a
    number."""
    if not isinstance(dependence, Tag):
        return dependence
    layout = dependence.layout
    if layout.kind == "start" and shape is not None:
        return replace(dependence, layout=_from_shape(len(shape), layout.ones))
    if layout.kind == "end" and layout.rank is not None and len(layout.ones) == layout.rank:
        return replace(dependence, layout=NUMBER)
    return dependence


def _apply(stage: Stage, dependences: Sequence[Dependence], known: Shapes) -> Dependence:
    """How ``stage``'s result depends on d, given how its operands do."""
    if stage.rule is None:
        # a value with no gradient (a mask, a shape, gradgen.stop_gradient) moves with d
        # in steps at most: its gradient is zero
        return UNKNOWN if _unfollowed(stage) else None
    algebra = _algebra(stage)
    if algebra is None or any(isinstance(d, _Unknown) for d in dependences):
        return UNKNOWN
    if all(d is None for d in dependences):
        return None
    if algebra in (Shift.ADD, Shift.SUBTRACT, Shift.MULTIPLY, Shift.DIVIDE):
        return _binary(algebra, stage, dependences, known)
    first = dependences[0]
    if not isinstance(first, Tag) or any(d is not None for d in dependences[1:]):
        return UNKNOWN  # an exponent, logsumexp's weights b that move with d
    literals = {n: literal_value(v) for n, v in stage.nondiff}
    if algebra is Shift.LOGSUMEXP and _written_weights(stage):
        return UNKNOWN
    if algebra is Shift.POWER:  # (v0 * exp(k*d)) ** p is v0 ** p * exp(p*k*d)
        power = literal_value(stage.operands[1])
        if first.kind == "additive" or not _is_number(power):
            return UNKNOWN
        assert isinstance(power, (int, float))
        return _tagged("multiplicative", first.k * Fraction(power), first.layout)
    return _unary(algebra, first, literals, known.get(_name(stage.operands[0])))


def _unfollowed(stage: Stage) -> bool:
    """Is ``stage`` one with no rule that a gradient may flow through (a call of the
    module's functions, a loop, an ``if``, an opaque call): what the algebra does not
    look into?"""
    if stage.opaque or stage.draw or stage.call is not None or stage.loop is not None:
        return True
    return stage.branch is not None or bool(stage.item) or stage.raises


def _is_number(value: object) -> bool:
    """A finite number written out (not True, not np.inf: no Fraction of it)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _written_weights(stage: Stage) -> bool:
    """logsumexp given weights ``b`` (anything but None)."""
    weights = stage.operands[1] if len(stage.operands) > 1 else None
    return weights is not None and literal_value(weights) is not None


def _name(operand: Expr) -> str:
    return operand.id if isinstance(operand, Name) else ""


def _unary(
    algebra: Shift, tag: Tag, literals: dict[str, object], shape: tuple[object, ...] | None
) -> Dependence:
    additive = tag.kind == "additive"
    if algebra is Shift.NEGATE:
        return replace(tag, k=-tag.k) if additive else tag  # -(v0 * e) is (-v0) * e
    if algebra is Shift.KEEP:
        return tag
    if algebra is Shift.EXP:
        return Tag("multiplicative", tag.k, tag.layout) if additive else UNKNOWN
    if algebra is Shift.LOG:
        return UNKNOWN if additive else Tag("additive", tag.k, tag.layout)
    if algebra is Shift.SQUARE and not additive:
        return replace(tag, k=2 * tag.k)
    if algebra is Shift.SQRT and not additive:
        return replace(tag, k=tag.k / 2)
    if algebra in _REDUCTIONS:
        if tag.kind not in _REDUCTIONS[algebra]:
            return UNKNOWN
        layout = _reduced(tag.layout, literals.get("axis"), literals.get("keepdims"), shape)
        return UNKNOWN if layout is None else replace(tag, layout=layout)
    if algebra is Shift.NORMALIZE and additive:
        # softmax(x + d) is softmax(x) where d is constant along the axis
        layout = _reduced(tag.layout, literals.get("axis"), True, shape)
        return None if layout is not None else UNKNOWN
    return UNKNOWN


def _binary(
    algebra: Shift, stage: Stage, dependences: Sequence[Dependence], known: Shapes
) -> Dependence:
    """x + y, x - y, x * y, x / y of operands that may depend on d."""
    left, right = dependences
    shifting = algebra in _SHIFTING
    if isinstance(left, Tag) and isinstance(right, Tag):
        if not left.layout.lines_up_with(right.layout):
            return UNKNOWN
        layout = _merged(left.layout, right.layout)
        if left.kind == right.kind == "additive" and shifting:
            k = left.k + right.k if algebra is Shift.ADD else left.k - right.k
            return _tagged("additive", k, layout)
        if left.kind == right.kind == "multiplicative" and shifting:
            # v0 * exp(k*d) + w0 * exp(k*d): the denominator of a softmax written out
            return Tag("multiplicative", left.k, layout) if left.k == right.k else UNKNOWN
        if left.kind == right.kind == "multiplicative":
            k = left.k + right.k if algebra is Shift.MULTIPLY else left.k - right.k
            return _tagged("multiplicative", k, layout)
        return UNKNOWN
    position = 0 if isinstance(left, Tag) else 1
    tag = left if isinstance(left, Tag) else right
    assert isinstance(tag, Tag)
    other = stage.operands[1 - position]
    if not _broadcasts_alike(tag.layout, other, known):
        return UNKNOWN
    if shifting:
        if tag.kind != "additive":
            return UNKNOWN
        return replace(tag, k=-tag.k) if algebra is Shift.SUBTRACT and position == 1 else tag
    if tag.kind == "multiplicative":
        if algebra is Shift.DIVIDE and position == 1:
            return replace(tag, k=-tag.k)  # y / (v0 * e): (y / v0) * exp(-k * d)
        return tag
    # (v0 + k*d) * a and (v0 + k*d) / a for a number a written out: additive still.
    factor = literal_value(other)
    if not _is_number(factor):
        return UNKNOWN
    assert isinstance(factor, (int, float))
    if algebra is Shift.MULTIPLY:
        return _tagged("additive", tag.k * Fraction(factor), tag.layout)
    if position == 0 and factor != 0:
        return _tagged("additive", tag.k / Fraction(factor), tag.layout)
    return UNKNOWN


def _tagged(kind: Literal["additive", "multiplicative"], k: Fraction, layout: Layout) -> Dependence:
    return None if k == 0 else Tag(kind, k, layout)


def _merged(left: Layout, right: Layout) -> Layout:
    """The layout of a combination of two values where d lies alike: its base is kept
    where both have it."""
    return left if left.base == right.base else replace(left, base=None)


def _broadcasts_alike(layout: Layout, other: Expr, known: Shapes) -> bool:
    """Does d stay where ``layout`` says in the value combined elementwise with ``other``
    (which does not depend on d)? numpy aligns shapes at their last axes, so a layout
    counted from the end or a number holds whatever ``other`` is; one counted from the
    start only when ``other`` has no more axes: a number, or the base."""
    if layout.kind != "start":
        return True
    if isinstance(other, Name) and other.id == layout.base:
        return True
    return expression_shape(other, known) == SCALAR


def _reduced(
    layout: Layout, axis: object, keepdims: object, shape: tuple[object, ...] | None
) -> Layout | None:
    """The layout of d in a reduction over ``axis`` of a value of ``shape`` (None:
    unknown), where d is constant along those axes; None where it may not be."""
    if not isinstance(keepdims, bool):
        return None
    if layout.kind == "number":
        return layout
    if axis is None or axis is NOT_LITERAL:
        return None  # over every axis, along some of which d may vary
    axes = _axes(axis)
    if axes is None:
        return None
    rank = len(shape) if shape is not None else None
    if layout.kind == "start":
        if rank is not None:
            axes = tuple(a % rank if rank else a for a in axes)
        if not all(a >= 0 and a in layout.ones for a in axes):
            return None
        if keepdims:
            return layout
        ones = frozenset(o - sum(1 for a in axes if a < o) for o in layout.ones - set(axes))
        return Layout("start", ones)
    if rank is not None:
        axes = tuple(a - rank if a >= 0 else a for a in axes)
    if not all(a < 0 for a in axes):
        return None
    inside = [a for a in axes if a in layout.ones]
    beyond = [a for a in axes if layout.rank is not None and -a > layout.rank]
    if len(inside) + len(beyond) != len(axes):
        return None
    if keepdims:
        return layout
    ones = frozenset(o + sum(1 for a in inside if a > o) for o in layout.ones - set(inside))
    new_rank = None if layout.rank is None else layout.rank - len(inside)
    if new_rank is not None and len(ones) == new_rank:
        return NUMBER
    return Layout("end", ones, new_rank)
