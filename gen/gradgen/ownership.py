"""In-place safety: where the backward may write into a gradient, and where it must not.

``dx += e`` and ``dx[i] += e`` write into the array ``dx`` holds. That is right only when no
other live value shares that memory: the add gate hands one object to both inputs, a
reshape or transpose of a gradient is a view of it, ``_unbroadcast(g, x)`` is ``g`` itself
when the shapes agree, and the upstream gradient is the caller's. Writing into any of those
would silently change another gradient, or the caller's array.

The invariant this pass keeps, for every statement of the backward in order:

- every gradient value is described by the *storages* (allocations) it may share memory
  with, and whether it is *whole*: exactly one storage, all of it, not a view;
- a storage is either the caller's (the upstream gradient, the arguments, forward values)
  or a fresh array some statement of this backward allocated;
- a write (``+=``, ``-=``, a scatter) goes only into a whole value of a fresh storage that
  no other name still to be read (or returned) may share. Otherwise ``dx += e`` becomes
  ``dx = dx + e`` and a scatter is preceded by ``dx = dx.copy()``: a new storage, whole;
- every returned gradient is whole, of a storage of its own: not the caller's, and shared
  with no other returned gradient (a copy is made where it might be). A gradient of a
  number is exempt only where it is known to *be* a number: what arithmetic gives (``x + y``
  of numbers and 0-d arrays is an immutable number) or the caller's own. Any other
  function may hand back a 0-d array (``np.where`` of numbers does), which is as mutable as
  any array: two gradients of numbers that are one such object are copied apart.

What an expression's value may share is read from the functions it calls: a view
(``np.reshape``, ``.T``, an index) shares its base's storages; ``_unbroadcast`` is its first
argument or a new sum; arithmetic makes a new array; a function this pass knows nothing
about is assumed to share with every array it is given, so the safe spelling is the default.
A gradient is "still read" when its name is read by a later statement: a name rebound since
counts too, which may cost a copy but never a wrong value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import NoReturn

from gradgen.expr import (
    RULE,
    Attribute,
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Func,
    Group,
    Name,
    Sequence_,
    Subscript,
    UnaryOp,
    names_in,
)
from gradgen.helpers import HELPER_ALIASING
from gradgen.ir import AdjointBranch, AdjointStatement, Kind
from gradgen.rules import TEMPLATE_ALIASING, Aliasing
from gradgen.shapes import SCALAR, Shape

CALLER = 0  # the storage of everything the backward did not allocate itself


@dataclass(frozen=True)
class Value:
    """What a gradient name holds, as far as memory goes."""

    storages: frozenset[int]
    whole: bool  # all of one storage, not a view into it
    # Where it has no axes, an immutable number (a Python or numpy scalar), never a 0-d
    # array: arithmetic makes one; a function's result may be a 0-d array.
    number: bool = False
    # Where it may be a Python number or may be an array (a number a loop carried that a
    # step may make an array, an 'if' whose sides differ): copied by np.copy, never .copy().
    maybe_number: bool = False

    def shares(self, other: Value) -> bool:
        return bool(self.storages & other.storages)


# The caller's values of no axes (the upstream of a number, a float argument) are its numbers.
_CALLERS = Value(frozenset({CALLER}), whole=True, number=True)


def protect_shared(
    statements: Iterable[AdjointStatement],
    upstreams: tuple[str, ...],
    returned: dict[str, Shape | None],
    numbers: bool = False,
) -> tuple[AdjointStatement, ...]:
    """``statements`` with every write made safe, and the returned gradients the caller's own.

    ``returned`` maps the returned gradients that may be arrays to their parameters' shapes.
    With ``numbers`` (a module without numpy) every value is an immutable Python number:
    ``+=`` rebinds and harms nobody, as in the CS231n notes, and nothing is copied.
    """
    statements = list(statements)
    if numbers:
        return _as_numbers(statements)
    return _Ownership(statements, upstreams, returned).run()


def _as_numbers(statements: Iterable[AdjointStatement]) -> tuple[AdjointStatement, ...]:
    result = []
    for statement in statements:
        if statement.loop is not None:
            body = _as_numbers(statement.loop.body)
            statement = replace(statement, loop=replace(statement.loop, body=body))
        if statement.branch is not None:
            sides = statement.branch
            then, orelse = _as_numbers(sides.then), _as_numbers(sides.orelse)
            statement = replace(statement, branch=AdjointBranch(then, orelse))
        result.append(_subtract_where_negated(statement))
    return tuple(result)


def _subtract_where_negated(statement: AdjointStatement) -> AdjointStatement:
    """``dx += -e`` written ``dx -= e``."""
    expr = statement.expr
    if statement.kind is Kind.ADD and isinstance(expr, UnaryOp) and expr.op == "-":
        return replace(statement, kind=Kind.SUBTRACT, expr=expr.operand)
    return statement


class _Held(dict[str, Value]):
    """What each gradient name holds, and per storage the names that may hold it: "does
    another live name share this storage?" is asked at every ``+=``, and scanning every
    name each time made the pass quadratic in the length of a backward. Only item
    assignment changes it (the pass never deletes a name)."""

    def __init__(self, held: dict[str, Value]) -> None:
        super().__init__()
        self.holders: dict[int, set[str]] = {}
        for name, value in held.items():
            self[name] = value

    def __setitem__(self, name: str, value: Value) -> None:
        old = self.get(name)
        if old is not None:
            for storage in old.storages:
                self.holders[storage].discard(name)
        super().__setitem__(name, value)
        for storage in value.storages:
            self.holders.setdefault(storage, set()).add(name)

    def live_sharing(self, value: Value, target: str, live: Callable[[str], bool]) -> bool:
        """Does a name other than ``target`` that is ``live`` hold what may share memory with
        ``value``? A name found dead is forgotten as a holder: the pass asks at statements
        in order and a name read by none after one is read by none after a later one. (A
        chain of pass-throughs, ``dh_2 = _unbroadcast(dh_3, h_2)``, is thousands of names of
        one storage, all but the last dead: asking them all each time was quadratic.)"""
        for storage in value.storages:
            holders = self.holders.get(storage, set())
            dead: list[str] = []
            for name in holders:
                if name == target:
                    continue
                if live(name):
                    holders.difference_update(dead)
                    return True
                dead.append(name)
            holders.difference_update(dead)
        return False


class _Ownership:
    """One pass over the statements, tracking what each gradient name holds."""

    def __init__(
        self,
        statements: list[AdjointStatement],
        upstreams: tuple[str, ...],
        returned: dict[str, Shape | None],
        read_again: dict[str, float] | None = None,
    ) -> None:
        read_again = read_again or {}
        self.statements = statements
        self.returned = returned
        self.fresh = itertools.count(CALLER + 1)
        self.held = dict.fromkeys(upstreams, _CALLERS)
        self.last_read = _last_reads(statements, returned)
        self.last_read.update(read_again)
        # Storages set into a list handed back (dlayers[i] = [dW, db]): the caller's from
        # then on, never written into again.
        self.stored: set[int] = set()

    @property
    def held(self) -> _Held:
        return self._held

    @held.setter
    def held(self, held: dict[str, Value]) -> None:
        self._held = _Held(held)

    def run(self, hand_back: bool = True) -> tuple[AdjointStatement, ...]:
        result: list[AdjointStatement] = []
        for index, statement in enumerate(self.statements):
            target = statement.target
            match statement.kind:
                case Kind.ASSIGN:
                    self.held[target] = self.value_of(statement.expr)
                case Kind.ADD | Kind.SUBTRACT:  # writes into target's array
                    if self.writable(target, index):
                        statement = _subtract_where_negated(statement)
                    else:
                        statement = _into_new_object(statement)
                        self.held[target] = self.new(number=True)
                case Kind.SCATTER:  # writes into target's array at an index
                    if not self.writable(target, index):
                        copy = AdjointStatement(
                            target, Kind.COPY, Name(target), statement.statement
                        )
                        result.append(copy)
                        self.held[target] = self.new()
                case Kind.ADD_NEW | Kind.COPY:  # bind a new array, all of it
                    self.held[target] = self.new()
                case Kind.CALL:
                    for bound in statement.bound:
                        self.held[bound] = self.value_of_call(statement.expr)
                case Kind.LOOP:
                    result += self.before_loop(statement, index)
                    statement = self.loop(statement)
                case Kind.BRANCH:
                    statement = self.branch(statement, index)
                case Kind.SET_ITEM:
                    statement = self.set_item(statement, index)
                case _:
                    _unhandled(statement.kind)
            result.append(statement)
        if hand_back:
            result += self.handed_back()
        return tuple(result)

    def before_loop(self, statement: AdjointStatement, index: int) -> list[AdjointStatement]:
        """Copies that make each gradient the loop adds into writable: every step writes
        into it, so it must be an array this backward owns, shared with nothing else."""
        assert statement.loop is not None
        copies = []
        read = _names_read(statement.loop.body)  # every step: a list of gradients, dhs
        for name in statement.loop.accumulated:
            value = self.held.get(name, _CALLERS)
            others = (read - {name}) & set(self.held)
            shared = any(value.shares(self.held[other]) for other in others)
            if shared or not self.writable(name, index):
                if value.number or value.maybe_number or CALLER in value.storages:
                    # Maybe a Python number (an upstream of a number, a number carried by a
                    # loop): np.copy takes both.
                    copy = Call(Func("numpy", "copy", None), (Name(name),))
                    copies.append(AdjointStatement(name, Kind.ASSIGN, copy, statement.statement))
                else:
                    copies.append(
                        AdjointStatement(name, Kind.COPY, Name(name), statement.statement)
                    )
                self.held[name] = self.new()
        return copies

    def loop(self, statement: AdjointStatement) -> AdjointStatement:
        """The loop's body made safe, as a backward of its own run once per step: what a
        step starts with that the previous one handed on (a carried gradient) may share
        anything; what it adds into stays its own; both are read again by the next step."""
        loop = statement.loop
        assert loop is not None
        body = list(loop.body)
        # What a step reads of the gradients from before the loop (a list of them: dhs),
        # the next step reads again.
        outside = _names_read(body) - {name for s in body for name in s.bound}
        again = dict.fromkeys([*loop.carried, *loop.accumulated, *outside], float("inf"))
        inner = _Ownership(body, (), {}, again)
        inner.fresh, inner.stored = self.fresh, self.stored
        unknown = Value(frozenset({CALLER}), whole=False)
        started = {name: self.held.get(name, _CALLERS) for name in loop.carried}
        inner.held = dict(self.held) | dict.fromkeys(loop.carried, unknown)
        safe = inner.run(hand_back=False)
        rebound = set(_bound_within(safe))
        for name in rebound:
            if name in loop.carried or name not in loop.accumulated:
                self.held[name] = unknown
            elif inner.held.get(name) != self.held.get(name):
                self.held[name] = self.new()
        for name in loop.carried:
            # What it held before the loop (no step ran), or what the last step handed on:
            # a number of arithmetic where both are (math.tanh's gradient, with no .copy()).
            ends = (started[name], inner.held.get(name, unknown))
            self.held[name] = Value(
                frozenset().union(*(end.storages for end in ends)),
                whole=all(end.whole for end in ends),
                number=all(end.number for end in ends),
                maybe_number=any(end.number or end.maybe_number for end in ends),
            )
        return replace(statement, loop=replace(loop, body=safe))

    def branch(self, statement: AdjointStatement, index: int) -> AdjointStatement:
        """Each side made safe from what is held before the ``if``, knowing what is read
        after it; after it, a name holds what either side left in it (one of their
        storages: whole where both sides leave it whole)."""
        sides = statement.branch
        assert sides is not None
        again = {name: float("inf") for name, last in self.last_read.items() if last > index}
        safe: list[tuple[AdjointStatement, ...]] = []
        held: list[dict[str, Value]] = []
        for side in (sides.then, sides.orelse):
            inner = _Ownership(list(side), (), {}, again)
            inner.fresh, inner.stored = self.fresh, self.stored
            inner.held = dict(self.held)
            safe.append(inner.run(hand_back=False))
            held.append(inner.held)
        for name in set(held[0]) | set(held[1]):
            values = [h[name] for h in held if name in h]
            self.held[name] = Value(
                frozenset().union(*(v.storages for v in values)),
                whole=all(v.whole for v in values),
                number=all(v.number for v in values),
                maybe_number=any(v.number or v.maybe_number for v in values),
            )
        return replace(statement, branch=AdjointBranch(safe[0], safe[1]))

    def value_of_call(self, expr: Expr) -> Value:
        """One of the gradients a backward function hands back: gradgen's own backwards
        hand back arrays of the caller's own, each whole; a user rule's backward
        (``gradgen.backward_of``) may hand back its upstream, or a view of any argument."""
        if isinstance(expr, Call) and expr.func.lib == RULE:
            return self.value_of(expr)  # a function this pass does not know
        return self.new()

    def new(self, number: bool = False) -> Value:
        """A storage just allocated, held whole (``number``: by arithmetic, so where it has
        no axes an immutable number)."""
        return Value(frozenset({next(self.fresh)}), whole=True, number=number)

    def set_item(self, statement: AdjointStatement, index: int) -> AdjointStatement:
        """``dlayers[i] = [dW, db]``: each value handed back in the list is an array of its
        own, shared with nothing still read and with no other value handed back (a copy
        where it may be); from then on nothing writes into it."""
        expr = statement.expr
        items = expr.items if isinstance(expr, Sequence_) else (expr,)
        handed: list[Expr] = []
        for item in items:
            if isinstance(item, Name) and not self.writable(item.id, index):
                item = Call(Func("numpy", "copy", None), (item,))
            elif isinstance(item, Name):
                self.stored |= self.held.get(item.id, _CALLERS).storages
            handed.append(item)
        if isinstance(expr, Sequence_):
            return replace(statement, expr=Sequence_(tuple(handed), expr.brackets))
        return replace(statement, expr=handed[0])

    def writable(self, target: str, index: int) -> bool:
        """May statement ``index`` write into what ``target`` holds?"""
        value = self.held.get(target, _CALLERS)
        if not value.whole or CALLER in value.storages or value.storages & self.stored:
            return False
        return not self.held.live_sharing(
            value, target, lambda name: self.last_read.get(name, -1) > index
        )

    def value_of(self, expr: Expr) -> Value:
        """What memory the value of ``expr`` may share."""
        if isinstance(expr, Name):
            return self.held.get(expr.id, _CALLERS)  # an existing object, passed on
        if isinstance(expr, Group):
            return self.value_of(expr.inner)
        if isinstance(expr, Sequence_):
            # A list of gradients ([g] * len(xs), sum's adjoint) is new, its items are not:
            # what is read out of it (dhs.pop()) is one of them.
            shared = [self.value_of(item).storages for item in expr.items]
            return Value(frozenset().union(*shared), whole=False)
        if isinstance(expr, BinOp) and isinstance(expr.left, Sequence_):
            return self.value_of(expr.left)  # [g] * n: the same items again
        if isinstance(expr, (BinOp, UnaryOp, Compare, Const)):
            return self.new(number=True)  # arithmetic makes new objects
        if isinstance(expr, (Subscript, Attribute)):
            return self.view_of(expr.value)  # x[i], x.T: views (a copy for fancy indices)
        if isinstance(expr, Call):
            aliasing = _aliasing(expr.func)
            if aliasing is Aliasing.NEW:
                return self.new()
            if aliasing is Aliasing.FIRST_OR_NEW and expr.args:
                return self.value_of(expr.args[0])
            if aliasing is Aliasing.VIEW_OF_FIRST and expr.args:
                return self.view_of(expr.args[0])
        # Unknown: it may be, or view, any array it is given.
        shared = [self.value_of(part).storages for part in _array_parts(expr)]
        return Value(frozenset().union(*shared) or frozenset({CALLER}), whole=False)

    def view_of(self, expr: Expr) -> Value:
        """A view into the value of ``expr``: the same storages, never whole."""
        return Value(self.value_of(expr).storages, whole=False)

    def handed_back(self) -> list[AdjointStatement]:
        """Copies that make each returned gradient an array the caller owns alone."""
        last = self.statements[-1].statement if self.statements else 0
        copies: list[AdjointStatement] = []
        given: set[int] = set()
        for name, shape in self.returned.items():
            value = self.held.get(name, _CALLERS)
            if shape == SCALAR and value.whole and value.number:
                continue  # a number: immutable, nothing to protect
            if not value.whole or CALLER in value.storages or value.storages & given:
                if shape == SCALAR or (shape is None and (value.whole or value.maybe_number)):
                    # Maybe a Python number (the default upstream 1.0, or what a backward
                    # called gave for a number) or a 0-d array: np.copy takes both.
                    copy = Call(Func("numpy", "copy", None), (Name(name),))
                    copies.append(AdjointStatement(name, Kind.ASSIGN, copy, last))
                else:
                    copies.append(AdjointStatement(name, Kind.COPY, Name(name), last))
                value = self.new()
                self.held[name] = value
            given |= value.storages
        return copies


def _into_new_object(statement: AdjointStatement) -> AdjointStatement:
    """``dx += e`` as ``dx = dx + e``, ``dx -= e`` as ``dx = dx - e``: a new array."""
    expr = statement.expr
    if statement.kind is Kind.SUBTRACT:
        expr = UnaryOp("-", expr)
    return replace(statement, kind=Kind.ADD_NEW, expr=expr)


def _unhandled(kind: NoReturn) -> NoReturn:
    """mypy checks that every statement kind is handled above (``typing.assert_never``)."""
    raise AssertionError(f"the ownership pass does not handle {kind}")


def _aliasing(func: Func) -> Aliasing | None:
    if func.lib == "helper":
        return HELPER_ALIASING.get(func.name)
    return TEMPLATE_ALIASING.get(func.name)


def _array_parts(expr: Expr) -> list[Expr]:
    """The arguments of a call that may be arrays (all of them: positional and keyword)."""
    if isinstance(expr, Call):
        return [*expr.args, *(value for _, value in expr.kwargs)]
    return []


def _bound_within(statements: Iterable[AdjointStatement]) -> list[str]:
    """The gradients the statements bind or write, those in loops and sides too."""
    found: list[str] = []
    for statement in statements:
        if statement.kind not in (Kind.LOOP, Kind.BRANCH):
            found += statement.bound
        for block in statement.blocks:
            found += _bound_within(block)
    return found


def _names_read(statements: Iterable[AdjointStatement]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        for part in (statement.expr, *statement.index):
            found.update(names_in(part))
        for block in statement.blocks:
            found |= _names_read(block)
    return found


def _last_reads(
    statements: list[AdjointStatement], returned: dict[str, Shape | None]
) -> dict[str, float]:
    """The index of the last statement reading each name; returned names are read last."""
    last: dict[str, float] = {}
    for index, statement in enumerate(statements):
        for part in (statement.expr, *statement.index):
            for name in names_in(part):
                last[name] = index
        for block in statement.blocks:  # what a loop or a side reads, it reads there
            for name in _names_read(block):
                last[name] = index
    for name in returned:
        last[name] = float("inf")
    return last
