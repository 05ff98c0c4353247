"""Stages to the backward pass: the adjoint statements, and the forward values they read.

The reverse pass (``_ReversePass``) walks the stages last first: each stage that lies on a
path from a parameter to the result hands every such input its adjoint from the rules table.
The first contribution to a gradient is written with ``=``, later ones with ``+=``; then
``ownership.py`` decides where writing in place is safe and spells the others
``dx = dx + ...``. Shapes come from ``infer.py``.

Three kinds of adjoint come from the table (``rules.Adjoint``): an expression; a *spread*, a
smaller value (a total's number, a reduction's gradient) spread over the input's shape, used
unspread wherever numpy broadcasting spreads it anyway (``dx += dmu``, ``(2 * W1) * dreg``);
and a *scatter*, a value added into a zero gradient at an index.

Under ``np.where(c, a, b)`` the branch not taken may hold values where a derivative is
infinite (``np.where(x > 0, np.sqrt(x), 0)`` at ``x == 0``): its gradient is 0 there, but
0 * inf is NaN. So a gradient that is np.where's masked upstream, and only that, stays
masked down the chain of elementwise stages that computed the branch: each adjoint reading
a forward value is written ``np.where(c, adjoint, 0)`` (``np.where(g != 0, adjoint, 0)``
where the shapes do not show that ``c`` lines up with it), and a finite true gradient never
turns into NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, overload

import libcst as cst

from gradgen import shapes
from gradgen.expr import (
    RULE,
    USER,
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
    children,
    literal_value,
    map_children,
    map_funcs,
    names_in,
    number,
    render,
    simplify,
    substitute,
    unwrap,
    walk,
)
from gradgen.forward_lines import bound_by, forward_lines, kept_by_loops, names_read, shape_only
from gradgen.infer import (
    Shapes,
    alike_shapes,
    expression_shape,
    floating_values,
    infer_shapes,
    stage_context,
)
from gradgen.invariance import without_stops
from gradgen.ir import AdjointBranch, AdjointLoop, AdjointStatement, BackwardFunction, Kind
from gradgen.naming import gradient_name
from gradgen.ownership import protect_shared
from gradgen.rules import (
    ARRAY_MAKERS,
    DISTINCT_ENTRIES,
    LENGTH,
    OPERATION_LIBRARIES,
    Adjoint,
    AdjointContext,
    ScatterAdjoint,
    SpreadAdjoint,
    draw_parameters,
    is_opaque,
    written_arguments,
)
from gradgen.shapes import SCALAR, Dim, Shape
from gradgen.stages import Stage, StagedFunction, all_stages, gradient_names


class Callees(Protocol):
    """What the reverse pass of a caller needs to know of the functions it calls."""

    def differentiable(self, function: str) -> frozenset[str]:
        """The parameters of ``function`` its result has a gradient with respect to."""

    def backward_name(self, function: str, wrt: tuple[str, ...]) -> str:
        """The name of ``function``'s backward, from its cache, with respect to ``wrt``."""

    def result_shapes(
        self, function: str, arguments: tuple[Shape | None, ...]
    ) -> tuple[Shape | None, ...]:
        """The shapes of ``function``'s results, given its arguments' shapes."""


class _NoCallees:
    def differentiable(self, function: str) -> frozenset[str]:
        raise AssertionError(f"a call of '{function}' with no callees given")

    def result_shapes(
        self, function: str, arguments: tuple[Shape | None, ...]
    ) -> tuple[Shape | None, ...]:
        raise AssertionError(f"a call of '{function}' with no callees given")

    def backward_name(self, function: str, wrt: tuple[str, ...]) -> str:
        raise AssertionError(f"a call of '{function}' with no callees given")


def reverse(
    function: StagedFunction,
    wrt: tuple[str, ...] | None = None,
    callees: Callees | None = None,
) -> BackwardFunction:
    """The backward pass of ``function``: gradients with respect to every parameter, or to
    the parameters ``wrt`` names (in that order), computing nothing only the others need.
    ``callees`` knows the functions of the module that ``function`` calls."""
    return _ReversePass(function, wrt, callees or _NoCallees()).run()


@dataclass
class _Spread:
    """A gradient that is a smaller value spread over an array: the index of the statement
    that spreads it (dropped where ``value`` can stand for it) and that value."""

    statement: int
    value: Expr


class _ReversePass:
    """One backward pass. Its state, built stage by stage, last stage first:

    - ``gradient``: the name of each variable's gradient so far (first contribution made);
    - ``statements``: the adjoint statements in order (None: a spread dropped again);
    - ``masks``: gradients zero outside np.where's branch (see the module docstring);
    - ``spreads``: gradients that are a smaller value spread over an array.
    """

    def __init__(
        self, function: StagedFunction, wrt: tuple[str, ...] | None, callees: Callees
    ) -> None:
        self.function = function
        self.wrt = wrt
        self.callees = callees
        # A pass names its gradients afresh: one function may be reversed several times
        # (with respect to different parameters), each backward named like the others.
        self.namer = function.namer.copy()
        self.upstreams = tuple(gradient_name(self.namer, base) for base in function.result_bases)
        self.relevant = relevant_values(function, wrt, callees)
        # The backwards of callees this one calls: (function, gradients with respect to).
        self.calls: dict[tuple[str, tuple[str, ...]], None] = {}
        self.known = infer_shapes(function, callees)
        self.floating = floating_values(function)
        self.relations = alike_shapes(function, self.known)
        # The user's name of each value of the function's top level (not in a loop or an
        # 'if'): a gradient named after it (``dh``) is bound again for each earlier value
        # the name held, once the later one's is read no more, as by hand: the arrays of
        # gradients done with are freed, not kept to the end.
        self.user_name = {
            stage.target: dict(function.versions).get(stage.target, stage.target)
            for stage in function.stages
            if _plain(stage) and not stage.temporary
        }
        self.user_name.update((p.name, p.name) for p in function.parameters)
        # The value a user's name held before each one (h before h_2), and the later values
        # whose own statement reads that one (``h = h * h``): their gradients live at once,
        # so the later one keeps a name of its own (dh_2) and the earlier one has ``dh``.
        self.previous: dict[str, str] = {}
        held: dict[str, str] = {p.name: p.name for p in function.parameters}
        read_by: dict[int, set[str]] = {}
        statement_of: dict[str, int] = {}
        for stage in function.stages:
            read_by.setdefault(stage.statement, set()).update(stage.reads)
            user = self.user_name.get(stage.target)
            if user is None:
                continue
            if user in held:
                self.previous[stage.target] = held[user]
            held[user] = stage.target
            statement_of[stage.target] = stage.statement
        self.overlapping = {
            later
            for later, earlier in self.previous.items()
            if earlier in read_by.get(statement_of[later], set())
        }
        self.released: dict[str, str] = {}  # user's name -> its gradient's name, free again
        # A gradient's name -> the values whose gradient it is now (a temporary's gradient
        # may be another's, unchanged), and of a name made of a user's name, that name.
        self.holders: dict[str, set[str]] = {}
        self.canonical: dict[str, str] = {}
        self.temporaries = {s.target for s in function.all_stages if s.temporary}
        # The lists whose items loops read (for W, b in layers:): their gradients are lists.
        self.sequences = {
            o.id for s in function.all_stages if s.item for o in s.operands if isinstance(o, Name)
        }
        self.gradient: dict[str, str] = {}
        self.statements: list[AdjointStatement | None] = []
        self.masks: dict[str, _Mask | None] = {}
        self.spreads: dict[str, _Spread] = {}
        # A loop's carried value: the gradient it starts with in a step is named as the one
        # the step hands on (``dh``), so the loop needs no renaming line.
        self.forced: dict[str, str] = {}
        # Values from before an ``if`` being differentiated: each side binds their gradients
        # under the same names, never as another gradient's name.
        self.pinned: set[str] = set()

    def run(self) -> BackwardFunction:
        function, known = self.function, self.known
        if len(function.results) == 1:
            result = function.results[0]
            if isinstance(result, Name) and result.id in self.relevant:
                self.gradient[result.id] = self.upstreams[0]
                self.holders[self.upstreams[0]] = {result.id}
                if self.upstreams[0] == f"d{self.user_name.get(result.id)}":
                    self.canonical[self.upstreams[0]] = self.user_name[result.id]
                if (
                    function.array_mode
                    and known.get(result.id) is None
                    and not self.has_axes(result.id)
                ):
                    self.spread_upstream(result, self.upstreams[0])
        else:
            self.several_upstreams()
        self.reverse_stages(function.stages)
        return self.backward_function()

    def same_shape(self, first: str, second: str) -> bool:
        """Do ``first`` and ``second`` have the same shape, evident or not: broadcast from
        the same shapes (``infer.Alike``)?"""
        return self.relations.same(first, second)

    def same_shape_or_known(self, first: str, second: str) -> bool:
        """The same shape: known equal, or broadcast from the same shapes."""
        shape = self.known.get(first)
        return (shape is not None and shape == self.known.get(second)) or self.same_shape(
            first, second
        )

    def summed_back(self, adjoint: Expr, operand: Name, result: str) -> Expr:
        """``adjoint`` (of ``result``'s shape) summed back to the shape of ``operand``,
        which numpy broadcast to it: over the axes it was reduced along, where it is a
        reduction kept broadcastable of a value of ``result``'s shape; else as the shapes
        say (``_unbroadcast`` where they are not known)."""
        reduced = self.relations.reduced.get(operand.id)
        if isinstance(adjoint, UnaryOp) and adjoint.op == "-" and reduced is not None:
            return UnaryOp("-", self.summed_back(adjoint.operand, operand, result))  # sum first
        if reduced is not None and reduced.within == self.relations.alike.get(result):
            kwargs: tuple[tuple[str, Expr], ...] = (
                (("keepdims", Const("True")),) if reduced.keepdims else ()
            )
            axis = reduced.axis
            if isinstance(axis, int):
                kwargs = (("axis", number(axis)), *kwargs)
            elif isinstance(axis, tuple):
                kwargs = (("axis", Sequence_(tuple(number(a) for a in axis), "()")), *kwargs)
            return Call(Func("numpy", "sum", ".sum"), (adjoint,), kwargs)
        return _unbroadcast(adjoint, operand, self.known.get(operand.id), self.known.get(result))

    def has_axes(self, variable: str) -> bool:
        """Is ``variable`` known to be an array with axes: of a known shape, or made by an
        operation whose result always has some (``np.stack``), whatever its shape?"""
        if self.known.get(variable):
            return True
        # (a piece of np.split is one of its stage's several results)
        stage = next((s for s in self.function.stages if variable in s.targets), None)
        return stage is not None and stage.rule is not None and stage.rule.axes

    def reverse_stages(self, stages: tuple[Stage, ...]) -> None:
        for stage in reversed(stages):
            if stage.opaque and stage.target in self.relevant:
                raise AssertionError(f"'{stage.target}' needs a gradient: refuse it before")
            if stage.loop is not None and any(t in self.relevant for t in stage.targets):
                self.differentiate_loop(stage)
            elif stage.branch is not None and any(t in self.relevant for t in stage.targets):
                self.differentiate_branch(stage)
            elif stage.call is not None and any(t in self.relevant for t in stage.targets):
                self.differentiate_call(stage)
            elif stage.item and any(t in self.relevant for t in stage.item):
                self.differentiate_item(stage)
            elif stage.rule is not None and any(t in self.relevant for t in stage.targets):
                self.differentiate(stage)
                self.release(stage)

    def new_gradient(self, variable: str) -> str:
        """The name of ``variable``'s gradient, at its first contribution: ``dh`` for every
        value the user's ``h`` holds (see ``user_name``) where it is free."""
        name = self.forced.get(variable)
        user = self.user_name.get(variable)
        if name is None and variable in self.overlapping:
            user = None  # the classic name: dh_2
        if name is None and user is not None and variable not in self.pinned:
            wanted = f"d{user}"
            if self.released.get(user) == wanted:
                name = self.released.pop(user)
            elif not self.namer.is_taken(wanted):
                self.namer.take(wanted)
                name = wanted
            elif wanted in self.canonical:  # in use still: the next one of its kind (db_2)
                name = self.namer.fresh(wanted)
        name = name or gradient_name(self.namer, variable)
        self.gradient[variable] = name
        self.holders[name] = {variable}
        if user is not None and name == f"d{user}":
            self.canonical[name] = user
        return name

    def release(self, stage: Stage) -> None:
        """``stage`` is differentiated: its value's gradient is read no more (nothing before
        it in the forward can read the value), so its name may serve an earlier value."""
        name = self.gradient.get(stage.target)
        holders = self.holders.get(name or "")
        if name is None or holders is None:
            return
        holders.discard(stage.target)
        if not holders and name in self.canonical:
            self.released[self.canonical[name]] = name

    def zeros(self, variable: str) -> Expr:
        """A zero gradient for ``variable``: an array of its shape, or the number 0.0; for a
        list of items a loop reads (``for W, b in layers:``), a list of Nones to set."""
        if variable in self.sequences:
            length = Call(Func(*LENGTH, LENGTH[1]), (Name(variable),))
            return BinOp("*", Sequence_((Const("None"),), "[]"), length)
        if not self.function.array_mode or self.known.get(variable) == SCALAR:
            return Const("0.0", 0.0)
        return self.array_zeros(variable)

    def array_zeros(self, variable: str) -> Expr:
        """``numpy.zeros_like(variable)``, in the floating type numpy gives it where it may
        be integers (float64 for integers, float32 stays): an integer array would truncate
        what is added into it. Of a parameter of no known shape, that type is read from it
        made an array: its argument may be a list (``for W in weights:`` over a list of
        arrays), which ``numpy.result_type`` takes for a description of a type."""
        zeros = Call(Func("numpy", "zeros_like", None), (Name(variable),))
        if variable in self.floating:
            return zeros
        typed: Expr = Name(variable)
        parameters = {p.name for p in self.function.parameters}
        if variable in parameters and self.known.get(variable) is None:
            typed = Call(Func("numpy", "asarray", None), (typed,))
        dtype = Call(Func("numpy", "result_type", None), (typed, Const("1.0", 1.0)))
        return Call(zeros.func, zeros.args, (("dtype", dtype),))

    def differentiate_loop(self, stage: Stage) -> None:
        """``for t, ... in reversed(t_steps):`` the body's adjoints, last step first.

        Each step starts with the gradient of what it handed on (``dh``), adds into the
        gradients of the values from outside the loop it read (zeros before the loop), and
        leaves ``dh`` the gradient of what it started from; after the loop, that flows to
        the value the loop started from."""
        loop = stage.loop
        assert loop is not None
        relevant = self.relevant
        statement = stage.statement
        carried = [c for c in loop.carried if c.name in relevant]
        for carry in carried:
            if carry.name not in self.gradient:
                name = self.new_gradient(carry.name)
                self.statements.append(
                    AdjointStatement(name, Kind.ASSIGN, self.zeros(carry.name), statement)
                )
            self.masks[carry.name] = None
            self.spreads.pop(carry.name, None)
        inner = {loop.variable, *(c.name for c in loop.carried)}
        for inside in all_stages(loop.body):
            inner.update(inside.targets)
        read_inside = _differentiated_reads(loop.body)
        read_inside += [n for c in carried for n in _name_of(c.last)]
        read_inside += [n for c in loop.collected for item in c.items for n in _name_of(item)]
        # and what nested loops append: terms.append(z) in an inner loop adds into dz too
        nested = [inside.loop for inside in all_stages(loop.body) if inside.loop is not None]
        read_inside += [
            n for s in nested for c in s.collected for i in c.items for n in _name_of(i)
        ]
        accumulated = [
            name for name in dict.fromkeys(read_inside) if name not in inner and name in relevant
        ]
        for name in accumulated:
            if name not in self.gradient:
                gradient = self.new_gradient(name)
                self.statements.append(
                    AdjointStatement(gradient, Kind.ASSIGN, self.zeros(name), statement)
                )
            self.masks[name] = None
            self.spreads.pop(name, None)
        outer_statements, outer_gradient = self.statements, dict(self.gradient)
        outer_masks, outer_spreads = dict(self.masks), dict(self.spreads)
        self.statements = []
        # What each step handed on: its gradient, under a name of its own, goes to the
        # value the step ended with.
        handed: list[tuple[str, str]] = []
        for carry in carried:
            given = self.gradient.pop(carry.name)
            self.forced[carry.name] = given
            if carry.last == Name(carry.name):
                self.gradient[carry.name] = given  # not changed by the step
                continue
            if not (isinstance(carry.last, Name) and carry.last.id in relevant):
                continue
            last = carry.last.id
            if last in inner and last not in self.gradient and last not in self.forced:
                self.new_gradient(last)
                self.statements.append(
                    AdjointStatement(self.gradient[last], Kind.ASSIGN, Name(given), statement)
                )
            else:
                temporary = self.namer.fresh(f"{given}_step")
                self.statements.append(
                    AdjointStatement(temporary, Kind.ASSIGN, Name(given), statement)
                )
                handed.append((last, temporary))
        for last, temporary in handed:
            self.contribute(last, Name(temporary), statement, None)
        for collected in loop.collected:
            if collected.name not in self.gradient:
                continue
            items = self.gradient[collected.name]
            if collected.made is not None:
                # An array filled once per entry (stages): each item's gradient is the
                # filled array's at the entries it was written to (a view, never written).
                self.spreads.pop(collected.name, None)
                for item, index in zip(collected.items, collected.indexes, strict=True):
                    if isinstance(item, Name) and item.id in relevant:
                        entries: Expr = Subscript(Name(items), index)
                        if self.function.array_mode:
                            entries = _item_gradient(
                                entries,
                                item,
                                self.known.get(item.id),
                                self.known.get(collected.name),
                                index,
                            )
                        self.contribute(item.id, entries, statement, None)
                continue
            for item in reversed(collected.items):
                taken = Call(Func("builtins", "pop", ".pop"), (Name(items),))
                if isinstance(item, Name) and item.id in relevant:
                    self.contribute(item.id, taken, statement, None)
                else:
                    self.statements.append(AdjointStatement("_", Kind.ASSIGN, taken, statement))
        self.reverse_stages(loop.body)
        for carry in carried:
            if carry.name not in self.gradient:
                name = self.new_gradient(carry.name)
                self.statements.append(
                    AdjointStatement(name, Kind.ASSIGN, self.zeros(carry.name), statement)
                )
            assert self.gradient[carry.name] == self.forced[carry.name]
        body = [s for s in self.statements if s is not None]
        self.statements = outer_statements
        self.gradient, self.masks, self.spreads = outer_gradient, outer_masks, outer_spreads
        for carry in carried:
            self.gradient[carry.name] = self.forced[carry.name]
        adjoint_loop = AdjointLoop(
            loop.variable,
            (),
            tuple(body),
            tuple(self.forced[c.name] for c in carried),
            # a list of items' gradients is set item by item, never added into
            tuple(self.gradient[name] for name in accumulated if name not in self.sequences),
        )
        self.statements.append(
            AdjointStatement(
                stage.target, Kind.LOOP, Name(stage.target), statement, loop=adjoint_loop
            )
        )
        for carry in carried:
            if isinstance(carry.initial, Name) and carry.initial.id in relevant:
                self.contribute(carry.initial.id, Name(self.forced[carry.name]), statement, None)

    def differentiate_branch(self, stage: Stage) -> None:
        """``if test:`` the adjoints of the side the forward took, ``else:`` the other's.

        Each side hands the gradient of a joined value to what that side joined, then runs
        its stages backward. A gradient of a value from before the ``if`` has one name in
        both sides; a side that gives it nothing binds it to zeros when the other side
        started it."""
        site = stage.branch
        assert site is not None
        statement, relevant = stage.statement, self.relevant
        inside = all_stages([*site.then, *site.orelse])
        inner = {t for s in inside for t in s.targets}
        inner.update(s.loop.variable for s in inside if s.loop is not None)
        outer = {n for n in _differentiated_reads((*site.then, *site.orelse)) if n not in inner}
        for join in site.joins:
            outer.update(n for value in (join.then, join.orelse) for n in _name_of(value))
        outer = (outer - inner) & relevant
        added_pins = outer - self.pinned
        self.pinned |= added_pins
        added_forced: list[str] = []
        before_statements, before_gradient = self.statements, dict(self.gradient)
        before_masks, before_spreads = dict(self.masks), dict(self.spreads)
        sides: list[tuple[list[AdjointStatement | None], dict[str, str]]] = []
        for stages, joined in (
            (site.then, [(j.name, j.then) for j in site.joins]),
            (site.orelse, [(j.name, j.orelse) for j in site.joins]),
        ):
            self.statements, self.gradient = [], dict(before_gradient)
            self.masks, self.spreads = dict(before_masks), {}
            for name, value in joined:
                if value == Name(name):
                    continue  # the side's own stage binds the joined value
                if name in before_gradient and isinstance(value, Name) and value.id in relevant:
                    self.contribute(value.id, Name(before_gradient[name]), statement, None)
            self.reverse_stages(stages)
            sides.append((self.statements, self.gradient))
            for name in outer:
                if name in self.gradient and name not in self.forced:
                    self.forced[name] = self.gradient[name]
                    added_forced.append(name)
        self.statements = before_statements
        self.gradient = dict(before_gradient)
        self.masks, self.spreads = before_masks, before_spreads
        written = {t for side, _ in sides for s in side if s is not None for t in _written(s)}
        touched = {
            name
            for _, gradient in sides
            for name in gradient
            if name in outer and (name not in before_gradient or gradient[name] in written)
        }
        for name in sorted(touched):
            names = {gradient[name] for _, gradient in sides if name in gradient}
            names.add(self.forced.get(name) or before_gradient.get(name) or next(iter(names)))
            if len(names) != 1:
                raise AssertionError(f"the sides name the gradient of '{name}' apart: {names}")
            gradient_name = names.pop()
            for side_statements, gradient in sides:
                if name not in gradient:
                    zeros = self.zeros(name)
                    side_statements.append(
                        AdjointStatement(gradient_name, Kind.ASSIGN, zeros, statement)
                    )
            self.gradient[name] = gradient_name
            self.masks[name] = None
            self.spreads.pop(name, None)
        for name in added_forced:
            del self.forced[name]
        self.pinned -= added_pins
        then, orelse = ([s for s in side if s is not None] for side, _ in sides)
        if not then and not orelse:
            return
        branch = AdjointBranch(tuple(then), tuple(orelse))
        self.statements.append(
            AdjointStatement(stage.target, Kind.BRANCH, stage.expr, statement, branch=branch)
        )

    def several_upstreams(self) -> None:
        """One upstream gradient per result, each None where that result does not reach
        the loss: zeros then (an array of the result's shape, or 0.0 for a number)."""
        function = self.function
        for result, upstream in zip(function.results, self.upstreams, strict=True):
            if not (isinstance(result, Name) and result.id in self.relevant):
                continue
            statement = len(function.statements) - 1  # `return h, c`
            if function.array_mode:
                given = Call(Func("helper", "_upstream", "_upstream"), (Name(upstream), result))
            else:
                given = Call(Func("helper", "_or_zero", "_or_zero"), (Name(upstream),))
            self.statements.append(AdjointStatement(upstream, Kind.ASSIGN, given, statement))
            if result.id in self.gradient:
                # The same value returned twice: both upstreams add up.
                self.contribute(result.id, Name(upstream), statement, None)
            else:
                self.gradient[result.id] = upstream

    def differentiate_item(self, stage: Stage) -> None:
        """``dlayers[i] = [dW, db]``: the gradients of a step's item (None where one has
        none), set in the list parameter's gradient (made before the loop, ``zeros``)."""
        (sequence,) = (o.id for o in stage.operands if isinstance(o, Name))
        if sequence not in self.relevant or sequence not in self.gradient:
            return
        read = unwrap(stage.expr)
        assert isinstance(read, Subscript)
        parts = tuple(
            Name(self.gradient[name]) if name in self.gradient else Const("None")
            for name in stage.item
        )
        self.statements.append(
            AdjointStatement(
                self.gradient[sequence],
                Kind.SET_ITEM,
                Sequence_(parts, "[]"),
                stage.statement,
                read.index,
            )
        )

    def differentiate_call(self, stage: Stage) -> None:
        """``dx, dw = f_backward(dh, h_cache)``: the callee's backward, from its cache, for
        the arguments that need a gradient; a second contribution is added after."""
        site = stage.call
        assert site is not None
        differentiable = self.callees.differentiable(site.function)
        positions = [
            position
            for position, (parameter, operand) in enumerate(
                zip(site.parameters, stage.operands, strict=True)
            )
            if parameter in differentiable
            and isinstance(operand, Name)
            and operand.id in self.relevant
        ]
        if not positions:
            return
        upstreams: list[Expr] = []
        for result in site.results:
            if result in self.gradient:
                upstreams.append(Name(self.gradient[result]))
            elif not site.rule:
                # A value that does not reach the loss: gradgen's backward takes None.
                upstreams.append(Const("None"))
            elif self.function.array_mode:
                upstreams.append(Call(Func("numpy", "zeros_like", None), (Name(result),)))
            else:
                upstreams.append(Const("0.0", 0.0))
        wrt = tuple(site.parameters[p] for p in positions)
        name = self.callees.backward_name(site.function, wrt)
        if site.rule:
            # The user's backward takes the arguments, then the upstreams, and returns a
            # gradient for every parameter: those not needed here are bound to `_`.
            call = Call(Func(RULE, name, name), (*stage.operands, *upstreams))
            returned = list(range(len(site.parameters)))
        else:
            self.calls[(site.function, wrt)] = None
            call = Call(Func(USER, name, name), (*upstreams, Name(site.cache)))
            returned = positions
        targets: list[str] = []
        later: list[tuple[str, str]] = []
        for position in returned:
            if position not in positions:
                targets.append("_")
                continue
            operand = stage.operands[position]
            assert isinstance(operand, Name)
            variable = operand.id
            if variable in self.gradient:
                # Its contribution is bound to a name of its own, then added.
                temporary = self.namer.fresh(f"d{variable}_{site.function}")
                targets.append(temporary)
                later.append((variable, temporary))
            else:
                self.new_gradient(variable)
                self.masks[variable] = None
                self.spreads.pop(variable, None)
                targets.append(self.gradient[variable])
        self.statements.append(
            AdjointStatement(
                next(t for t in targets if t != "_"),
                Kind.CALL,
                call,
                stage.statement,
                targets=tuple(targets),
            )
        )
        for variable, temporary in later:
            self.contribute(variable, Name(temporary), stage.statement, None)

    def spread_upstream(self, result: Name, upstream: str) -> None:
        """The result's shape is not evident, so it may be an array: a number upstream (the
        default 1.0) stands for that gradient in every entry, the gradient of the sum. Where
        the last stage broadcasts it anyway, the spread is dropped again."""
        function = self.function
        statement = next(
            (s.statement for s in function.stages if s.target == result.id),
            len(function.statements),
        )
        # The helper adds np.zeros_like(out) to a number (so float32 stays float32 with the
        # Python float 1.0) and passes an array of out's shape through.
        helper = Func("helper", "_everywhere", "_everywhere")
        everywhere = Call(helper, (Name(upstream), result))
        self.spreads[result.id] = _Spread(len(self.statements), Name(upstream))
        self.statements.append(AdjointStatement(upstream, Kind.ASSIGN, everywhere, statement))

    def differentiate(self, stage: Stage) -> None:
        """The adjoints of ``stage`` for each of its operands that needs a gradient."""
        assert stage.rule is not None
        if stage.results:
            self.differentiate_results(stage)
            return
        known = self.known
        g: Expr = Name(self.gradient[stage.target])
        spread = self.spreads.get(stage.target)
        if spread is not None and stage.target in names_in(spread.value):
            # The count a mean divides by may read the result's size: an input's of the
            # same shape has it too (``x`` of ``np.log(x)``, ``xmu`` of ``xmu**2``).
            alike = next(
                (
                    o
                    for o in stage.operands
                    if isinstance(o, Name)
                    and (stage.rule.keeps_shape or stage.rule.elementwise)
                    and self.same_shape_or_known(o.id, stage.target)
                ),
                None,
            )
            if alike is not None:
                spread = replace(spread, value=substitute(spread.value, {stage.target: alike}))
        # (Not of an elementwise operation of several inputs: a spread value broadcast
        # there costs numpy the temporary it reuses with the view, a memory peak.)
        if spread is not None and _spread_fits(stage, spread.value, self.relevant, known):
            # The number itself times the local gradients already has the operand's shape:
            # `(2 * W1) * dreg` rather than `(2 * W1) * np.full_like(W1 * W1, dreg)`.
            self.statements[spread.statement] = None
            g = spread.value
        for position, operand in enumerate(stage.operands):
            if not (isinstance(operand, Name) and operand.id in self.relevant):
                continue
            if position in stage.stopped:
                continue  # a shift the results are invariant to: its gradient is zero
            adjoint = _adjoint(stage, position, g, known)
            mask = _operand_mask(stage, position, self.masks.get(stage.target), known)
            if isinstance(adjoint, (SpreadAdjoint, ScatterAdjoint)):
                self.contribute(operand.id, adjoint, stage.statement, mask)
                continue
            if mask is not None and stage.rule.selects_by is None:  # a selection masks itself
                adjoint = _masked(adjoint, mask, g)
            # The other operands, and values such as np.where's condition: any can be wider.
            others = [o for o in stage.operands if o != operand]
            others += [value for _, value in stage.nondiff]
            # Against scalars only, numpy broadcasts nothing: the gradient has the shape.
            if (
                stage.rule.broadcasts
                and self.function.array_mode
                and not all(expression_shape(o, known) == SCALAR for o in others)
                and not self.same_shape(operand.id, stage.target)
            ):
                adjoint = self.summed_back(adjoint, operand, stage.target)
            self.contribute(operand.id, adjoint, stage.statement, mask)

    def differentiate_results(self, stage: Stage) -> None:
        """An operation with several results: each operand's gradient is a term per result
        that has a gradient, added up (slogdet's sign gives none); of pieces (np.split),
        one adjoint joining all the pieces' gradients."""
        assert stage.rule is not None
        if stage.rule.pieces is not None:
            self.differentiate_pieces(stage)
            return
        for which, result in enumerate(stage.results):
            if result not in self.gradient:
                continue  # it does not reach the loss
            g = Name(self.gradient[result])
            for position, operand in enumerate(stage.operands):
                if not (isinstance(operand, Name) and operand.id in self.relevant):
                    continue
                adjoint = _adjoint(stage, position, g, self.known, which)
                if adjoint is not None:
                    self.contribute(operand.id, adjoint, stage.statement, None)

    def differentiate_pieces(self, stage: Stage) -> None:
        """``a, b = np.split(x, 2)``: x's gradient is the pieces' gradients joined back
        (``np.concatenate([da, np.zeros_like(b)])``), zeros for a piece none reaches."""
        assert stage.rule is not None
        reached = tuple(result in self.gradient for result in stage.results)
        if not any(reached):
            return
        context = stage_context(stage, self.known)
        literals = {**context.literals, "reached": reached}
        values = _template_values(stage)
        for k, result in enumerate(stage.results):
            values[f"out{k}"] = Name(result)
            if result in self.gradient:
                values[f"g{k}"] = Name(self.gradient[result])
        for position, operand in enumerate(stage.operands):
            if not (isinstance(operand, Name) and operand.id in self.relevant):
                continue
            template = stage.rule.adjoint(position, AdjointContext(literals, context.shapes))
            assert template is not None
            assert not isinstance(template, (SpreadAdjoint, ScatterAdjoint))
            adjoint = _with_library(simplify(substitute(template, values)), stage.library)
            self.contribute(operand.id, adjoint, stage.statement, None)

    def contribute(
        self, variable: str, adjoint: Adjoint, statement: int, mask: _Mask | None
    ) -> None:
        """Add ``adjoint`` to ``variable``'s gradient: ``=`` first, ``+=`` after."""
        # Only a gradient with exactly one contribution, a masked one, is masked.
        first = variable not in self.gradient
        self.masks[variable] = mask if first else None
        self.spreads.pop(variable, None)
        if isinstance(adjoint, ScatterAdjoint):
            self.scatter(variable, adjoint, statement)
            return
        if (
            first
            and variable in self.temporaries
            and isinstance(adjoint, Name)
            and variable not in self.forced
            and variable not in self.pinned
        ):
            # A temporary's gradient that is another gradient unchanged needs no copy
            # statement: use that gradient's name.
            self.gradient[variable] = adjoint.id
            self.holders.setdefault(adjoint.id, set()).add(variable)
            return
        if (
            first
            and isinstance(adjoint, Name)
            and variable not in self.forced
            and variable not in self.pinned
            and self.user_name.get(variable) is not None
            and any(self.previous.get(h) == variable for h in self.holders.get(adjoint.id, ()))
        ):
            # ``scores = scores - shift``: the earlier value's gradient is the later one's,
            # under the same name (``dscores``), which the stage's other adjoints read first.
            self.gradient[variable] = adjoint.id
            self.holders.setdefault(adjoint.id, set()).add(variable)
            return
        if first:
            self.new_gradient(variable)
        target = self.gradient[variable]
        if isinstance(adjoint, SpreadAdjoint):
            if first:
                self.spreads[variable] = _Spread(len(self.statements), adjoint.value)
                adjoint = adjoint.full
            else:
                # Added to a gradient that has the variable's whole shape, numpy broadcasts:
                # a total's spread needs no array of its own (`dx += dsums`).
                adjoint = adjoint.value
        kind = Kind.ASSIGN if first else Kind.ADD
        self.statements.append(AdjointStatement(target, kind, adjoint, statement))

    def scatter(self, variable: str, adjoint: ScatterAdjoint, statement: int) -> None:
        """Add into ``variable``'s gradient at the adjoint's index (zeros first)."""
        if variable not in self.gradient:
            target = self.new_gradient(variable)
            zeros = self.array_zeros(variable)
            self.statements.append(AdjointStatement(target, Kind.ASSIGN, zeros, statement))
        elif not self.known.get(variable):
            # A value with no axes (or none known) may have a gradient that is a number:
            # arithmetic on 0-d values gives numpy scalars, which take no item assignment.
            # np.asarray makes it a 0-d array (an array is passed through, no copy).
            target = self.gradient[variable]
            asarray = Call(Func("numpy", "asarray", None), (Name(target),))
            self.statements.append(AdjointStatement(target, Kind.ASSIGN, asarray, statement))
        index = adjoint.index
        parts = index.items if isinstance(index, Sequence_) else (index,)
        distinct = _selects_distinct(parts, self.known)
        self.statements.append(
            AdjointStatement(
                self.gradient[variable], Kind.SCATTER, adjoint.value, statement, parts, distinct
            )
        )

    def backward_function(self) -> BackwardFunction:
        """The statements made safe, the gradients returned, the forward values read."""
        function, known, gradient = self.function, self.known, self.gradient
        influences = _influences(function)
        # A parameter reaching the result through shifts proved invariant alone has the
        # gradient 0.0 (the result does not move with it), not None (data, a label).
        if any(stage.stopped for stage in function.stages):
            influences -= relevant_values(without_stops(function), self.wrt, self.callees)
        wanted = self.wrt if self.wrt is not None else tuple(p.name for p in function.parameters)
        gradients = tuple(
            gradient.get(name, "None" if name in influences else "0.0") for name in wanted
        )
        returned = {
            g: known.get(name)
            for name, g in zip(wanted, gradients, strict=True)
            if g in gradient.values() and name not in self.sequences  # a list: its own
        }
        kept = _reading_forward_values([s for s in self.statements if s is not None], self.function)
        adjoints = protect_shared(kept, self.upstreams, returned, numbers=not function.array_mode)
        adjoints = _with_kept(adjoints, {s.target: s for s in function.all_stages})
        read = names_read(adjoints)
        steps_kept = kept_by_loops(adjoints)
        forward = forward_lines(function, read, steps_kept)
        full_forward = forward_lines(function, read | set(names_in(function.result)), steps_kept)
        defined = [p.name for p in function.parameters]
        defined += [target for line in full_forward for target in line.targets]
        cache = tuple(name for name in defined if name in read)
        # Of a forward value read for its shape alone, the cache keeps no more: where it may
        # be an array (a parameter is the caller's anyway; a number holds no memory).
        parameters = {p.name for p in function.parameters}
        arrays = [n for n in cache if n not in parameters and known.get(n) != SCALAR]
        like = shape_only(arrays, [adjoints])
        # The default upstream 1.0 suits a scalar result. A result known to be an array needs
        # its upstream gradient (an array of its shape), so there is no default to forget.
        # Several results: None, that result does not reach the loss.
        result = function.results[0]
        array_result = isinstance(result, Name) and self.has_axes(result.id)
        default = None if array_result else "1.0"
        if len(function.results) > 1:
            default = "None"
        return BackwardFunction(
            function,
            self.upstreams,
            default,
            forward,
            adjoints,
            gradients,
            self.wrt,
            full_forward,
            cache,
            tuple(gradient.items()),
            tuple(self.calls),
            like=like,
        )


def _with_kept(
    statements: tuple[AdjointStatement, ...], stages: dict[str, Stage]
) -> tuple[AdjointStatement, ...]:
    """Each loop's statements with the values of a step its body reads (``kept``): what the
    forward keeps for it, step by step."""
    result = []
    for statement in statements:
        if statement.branch is not None:
            sides = statement.branch
            then, orelse = _with_kept(sides.then, stages), _with_kept(sides.orelse, stages)
            statement = replace(statement, branch=AdjointBranch(then, orelse))
        if statement.loop is not None:
            body = _with_kept(statement.loop.body, stages)
            loop = stages[statement.target].loop
            assert loop is not None
            read = _read_by_a_step(body)
            step_values = [c.name for c in loop.carried]
            for inside in loop.body:
                step_values += bound_by(inside)
            kept = tuple(n for n in dict.fromkeys(step_values) if n in read)
            statement = replace(statement, loop=replace(statement.loop, body=body, kept=kept))
        result.append(statement)
    return tuple(result)


def _read_by_a_step(body: tuple[AdjointStatement, ...]) -> set[str]:
    """The names a step's adjoints read, but those a loop inside reads of its own steps
    (its variable, what it keeps), which its own list of steps holds."""
    found: set[str] = set()
    for statement in body:
        found.update(names_in(statement.expr))
        found.update(m for part in statement.index for m in names_in(part))
        if statement.loop is not None:
            own = {statement.loop.variable, *statement.loop.kept}
            found |= _read_by_a_step(statement.loop.body) - own
            continue
        for block in statement.blocks:
            found |= _read_by_a_step(block)
    return found


def _selects_distinct(index: tuple[Expr, ...], known: Shapes) -> bool:
    """Does integer-array ``index`` select each entry at most once? Provably so when one of
    its arrays is ``np.arange(...)`` and the others are numbers or 1-D arrays: the rows
    differ (``probs[np.arange(N), y]``), so fancy ``+=`` needs no ``np.add.at``. So does
    basic indexing by numbers and slices (``x[:, t, :]`` with ``t`` a loop's number)."""
    if all(_basic_part(part, known) for part in index):
        return True
    has_arange = False
    for part in index:
        if isinstance(part, Call) and (part.func.lib, part.func.name) in DISTINCT_ENTRIES:
            has_arange = True
        elif isinstance(literal_value(part), int):
            continue
        elif not (isinstance(part, Name) and len(known.get(part.id) or (0, 0)) <= 1):
            return False
    return has_arange


def _basic_part(part: Expr, known: Shapes) -> bool:
    """A slice, a whole number written out, or a variable known to be a number."""
    if isinstance(part, Slice):
        return True
    if isinstance(part, Name):
        return known.get(part.id) == SCALAR
    value = literal_value(part)
    return isinstance(value, int) and not isinstance(value, bool)


def _reads_entries(expr: Expr, names: set[str]) -> bool:
    """Does ``expr`` read one of ``names`` as an array, entry by entry (``x`` in ``g / x``,
    ``cos(x)``), not only an attribute of it (``x.dtype``)?"""
    if isinstance(expr, Name):
        return expr.id in names
    if isinstance(expr, Attribute):
        return False
    return any(_reads_entries(child, names) for child in children(expr))


@overload
def _adjoint(stage: Stage, position: int, g: Expr, known: Shapes) -> Adjoint: ...


@overload
def _adjoint(
    stage: Stage, position: int, g: Expr, known: Shapes, result: int
) -> Adjoint | None: ...


def _adjoint(
    stage: Stage, position: int, g: Expr, known: Shapes, result: int | None = None
) -> Adjoint | None:
    """The adjoint ``stage`` gives its operand at ``position`` when its gradient is ``g``
    (of its result ``result``, where it has several: None if that one gives none)."""
    assert stage.rule is not None
    context = stage_context(stage, known)
    values = _template_values(stage, result or 0)
    values["g"] = g
    if stage.rule.variadic:
        values["x"] = stage.operands[position]
        literals = {**context.literals, "position": position}
        template = stage.rule.adjoint(0, AdjointContext(literals, context.shapes))
    else:
        template = stage.rule.adjoint(position, context, result or 0)
    if template is None:
        assert result is not None, stage.rule.name
        return None

    def fill(expr: Expr) -> Expr:
        return _with_library(simplify(substitute(expr, values)), stage.library)

    if isinstance(template, SpreadAdjoint):
        return SpreadAdjoint(fill(template.full), fill(template.value))
    if isinstance(template, ScatterAdjoint):
        # the index as the user wrote it: the parts of the subscript, never rewritten
        return ScatterAdjoint(substitute(template.index, values), fill(template.value))
    return fill(template)


def _plain_adjoint(stage: Stage, position: int, g: Expr, known: Shapes) -> Expr:
    """The adjoint of an elementwise stage: always an expression."""
    adjoint = _adjoint(stage, position, g, known)
    assert not isinstance(adjoint, (SpreadAdjoint, ScatterAdjoint))
    return adjoint


def _spread_fits(stage: Stage, number: Expr, relevant: set[str], known: Shapes) -> bool:
    """Can the value a gradient spreads stand for it in ``stage``'s adjoints? Yes when the
    stage is elementwise and every adjoint, with g a number, has the stage's known shape
    (numpy broadcasting then spreads it), or when the stage is an index (adding into the
    indexed entries broadcasts too)."""
    assert stage.rule is not None
    if stage.target in names_in(number):
        return False
    if stage.rule.scatters:
        return True
    relevant_positions = [
        position
        for position, operand in enumerate(stage.operands)
        if isinstance(operand, Name) and operand.id in relevant and position not in stage.stopped
    ]
    shape = known.get(stage.target)
    if not shape and stage.rule.keeps_shape:
        # Shape unknown, but the same as the input's: an adjoint that reads the input or
        # the result entry by entry has it too (``g / x``), one that does not is a number.
        reads = {stage.target, *(o.id for o in stage.operands if isinstance(o, Name))}
        return all(
            _reads_entries(_plain_adjoint(stage, position, Const("1.0", 1.0), known), reads)
            for position in relevant_positions
        )
    if not shape or not stage.rule.elementwise:
        return False
    return all(
        expression_shape(_plain_adjoint(stage, position, Const("1.0", 1.0), known), known) == shape
        for position in relevant_positions
    )


@dataclass(frozen=True)
class _Mask:
    """A gradient that is zero where ``condition`` is not ``branch``; with no condition
    (shapes unknown), zero wherever the gradient is."""

    condition: Expr | None
    branch: bool
    shape: Shape | None


def _operand_mask(
    stage: Stage, position: int, target_mask: _Mask | None, known: Shapes
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
        if lined_up and expression_shape(condition, known) == shape:
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


def _template_values(stage: Stage, result: int = 0) -> dict[str, Expr]:
    """What the names of a rule's templates stand for at this stage (``out``: its result
    ``result``, where it has several, each also read by its name)."""
    assert stage.rule is not None
    values: dict[str, Expr] = {}
    if stage.rule.variadic:
        values.update({f"x{j}": operand for j, operand in enumerate(stage.operands)})
    else:
        values.update(zip(stage.rule.inputs, stage.operands, strict=True))
    values.update(stage.nondiff)
    values.update((n, Name(t)) for n, t in zip(stage.rule.results, stage.results, strict=False))
    values["out"] = Name(stage.results[result] if stage.results else stage.target)
    return values


def _entries_shape(filled: Shape | None, index: tuple[Expr, ...]) -> Shape | None:
    """The shape of ``filled[index]``, an index of numbers (the step's variable, a
    constant) and whole slices (``:``), where the filled array's shape is known."""
    if filled is None or len(index) > len(filled):
        return None
    kept: list[Dim] = []
    for size, part in zip(filled, index, strict=False):
        if isinstance(part, Slice):
            if part.lower is not None or part.upper is not None or part.step is not None:
                return None
            kept.append(size)
        elif not isinstance(part, (Name, Const)):
            return None
    return (*kept, *filled[len(index) :])


def _item_gradient(
    entries: Expr, item: Name, shape: Shape | None, filled: Shape | None, index: tuple[Expr, ...]
) -> Expr:
    """The gradient of ``item``, written into ``filled[index]`` whose gradient is
    ``entries``: numpy broadcasts the item over the entries (``hs[t] = w``, ``w`` a number:
    summed back) and drops its leading 1s (``hs[t] = v``, ``v`` of shape (1, D): reshaped)."""
    written = _entries_shape(filled, index)
    if shape is not None and written is not None and len(shape) <= len(written):
        return _unbroadcast(entries, item, shape, written)
    return Call(Func("helper", "_item_gradient", "_item_gradient"), (entries, item))


def _reading_forward_values(
    statements: list[AdjointStatement], function: StagedFunction
) -> list[AdjointStatement]:
    """The statements reading the forward's values where they compute one again: an
    expression the function's top level computes (``np.cos(theta)`` of ``c =
    np.cos(theta)``) is read by its name, and a value computed twice (``0.5 * reg`` in two
    terms) by its first name. Only the function's top level (not in a loop's step or an
    ``if``'s side), and only operations with no draw, call or effect."""
    computed: dict[Expr, str] = {}
    same: dict[str, Expr] = {}
    for stage in function.stages:
        if not (_plain(stage) or _computed_as_written(stage)):
            continue
        plain = unwrap(stage.expr)
        if isinstance(plain, (Name, Const)) or (
            isinstance(plain, Call) and (plain.func.lib, plain.func.name) in ARRAY_MAKERS
        ):
            continue  # an array made afresh (zeros to add into) is meant to be new
        key = _normal(stage.expr)
        if key in computed:
            same[stage.target] = Name(computed[key])
        else:
            computed[key] = stage.target
    if not computed:
        return statements

    def read(expr: Expr) -> Expr:
        if not isinstance(expr, (Name, Const)):
            name = computed.get(_normal(expr))
            if name is not None:
                return Name(name)
        if isinstance(expr, Name):
            return same.get(expr.id, expr)
        return map_children(expr, read)

    return [
        s
        if s.kind in (Kind.LOOP, Kind.BRANCH)
        else replace(s, expr=read(s.expr), index=tuple(read(i) for i in s.index))
        for s in statements
    ]


def _computed_as_written(stage: Stage) -> bool:
    """A value with no gradient computed from others (a mask ``h > 0``), no draw, call or
    opaque function in it."""
    return (
        stage.rule is None
        and stage.loop is None
        and stage.branch is None
        and stage.call is None
        and not stage.opaque
        and not stage.draw
        and not stage.item
        and not stage.raises
        and not stage.results
        and not any(isinstance(n, Call) and is_opaque(n.func) for n in walk(stage.expr))
    )


def _normal(expr: Expr) -> Expr:
    """``expr`` without what does not change its value: parentheses, how a function is
    spelled (``x.sum()`` and ``np.sum(x)``)."""
    expr = unwrap(expr)
    if isinstance(expr, Call):
        expr = replace(expr, func=Func(expr.func.lib, expr.func.name, None))
    return map_children(expr, _normal)


def _plain(stage: Stage) -> bool:
    """One operation binding one value: no loop, ``if``, call, item or several results."""
    return (
        stage.rule is not None
        and not stage.results
        and stage.loop is None
        and stage.branch is None
        and stage.call is None
        and not stage.item
    )


def _unbroadcast(adjoint: Expr, operand: Name, shape: Shape | None, out: Shape | None) -> Expr:
    """The adjoint summed back to the operand's shape, where numpy broadcast it."""
    if shape is not None and shape == out:
        return adjoint
    if shape == SCALAR:  # all of it, whatever its shape: not read, not recomputed
        return Call(Func("numpy", "sum", None), (adjoint,))
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
        if func.lib is None:
            return Func(library, func.name, None)
        return func

    return map_funcs(expr, resolve)


def relevant_values(
    function: StagedFunction, wrt: tuple[str, ...] | None, callees: Callees
) -> set[str]:
    """Variables on a path from a parameter (of ``wrt``) to the result: only these get
    gradients."""
    active = set(wrt) if wrt is not None else {p.name for p in function.parameters}
    _spread_active(function.stages, active, callees)
    return active & _needed_values(function, callees)


def _needed_values(function: StagedFunction, callees: Callees) -> set[str]:
    """Variables a gradient of the result would flow back into, from any parameter."""
    needed: set[str] = {result.id for result in function.results if isinstance(result, Name)}
    _spread_needed(function.stages, needed, callees)
    return needed


def _spread_active(stages: tuple[Stage, ...], active: set[str], callees: Callees) -> None:
    """Add to ``active`` what a gradient reaches from it, stage by stage."""
    for stage in stages:
        if stage.loop is not None:
            loop = stage.loop
            while True:  # a step's result is the next step's start: until nothing changes
                before = len(active)
                for carry in loop.carried:
                    if _reads_any(carry.initial, active) or _reads_any(carry.last, active):
                        active.add(carry.name)
                _spread_active(loop.body, active, callees)
                for collected in loop.collected:
                    if any(_reads_any(item, active) for item in collected.items):
                        active.add(collected.name)
                if len(active) == before:
                    break
        elif stage.branch is not None:
            _spread_active(stage.branch.then, active, callees)
            _spread_active(stage.branch.orelse, active, callees)
            for join in stage.branch.joins:
                if _reads_any(join.then, active) or _reads_any(join.orelse, active):
                    active.add(join.name)
        elif stage.call is not None:
            # Through the parameters the callee's result has a gradient with respect to.
            differentiable = callees.differentiable(stage.call.function)
            if any(
                isinstance(o, Name) and o.id in active and parameter in differentiable
                for parameter, o in zip(stage.call.parameters, stage.operands, strict=True)
            ):
                active.update(stage.targets)
        elif stage.item and any(isinstance(o, Name) and o.id in active for o in stage.operands):
            active.update(stage.item)
        # An opaque call is active too: where it is also needed, it is refused.
        elif (stage.rule is not None or stage.opaque) and any(
            isinstance(o, Name) and o.id in active for o in stage.operands
        ):
            # Of several results, those a gradient flows back from (not slogdet's sign).
            rule = stage.rule
            active.update(
                t
                for i, t in enumerate(stage.targets)
                if rule is None or not stage.results or rule.passes_gradient(i)
            )


def _spread_needed(stages: tuple[Stage, ...], needed: set[str], callees: Callees) -> None:
    """Add to ``needed`` what the values in it are computed from, last stage first."""
    for stage in reversed(stages):
        if stage.loop is not None:
            loop = stage.loop
            while True:
                before = len(needed)
                for collected in loop.collected:
                    if collected.name in needed:
                        needed.update(n for item in collected.items for n in _name_of(item))
                for carry in loop.carried:
                    if carry.name in needed:
                        needed.update([*_name_of(carry.initial), *_name_of(carry.last)])
                _spread_needed(loop.body, needed, callees)
                if len(needed) == before:
                    break
        elif stage.branch is not None:
            for join in stage.branch.joins:
                if join.name in needed:
                    needed.update([*_name_of(join.then), *_name_of(join.orelse)])
            _spread_needed(stage.branch.then, needed, callees)
            _spread_needed(stage.branch.orelse, needed, callees)
        elif stage.call is not None and any(t in needed for t in stage.targets):
            differentiable = callees.differentiable(stage.call.function)
            needed.update(
                o.id
                for parameter, o in zip(stage.call.parameters, stage.operands, strict=True)
                if isinstance(o, Name) and parameter in differentiable
            )
        elif stage.item and any(t in needed for t in stage.item):
            needed.update(o.id for o in stage.operands if isinstance(o, Name))
        elif stage.results and stage.rule is not None:
            # Through the results a gradient flows back from (not slogdet's sign).
            if any(
                t in needed and stage.rule.passes_gradient(i) for i, t in enumerate(stage.results)
            ):
                needed.update(o.id for o in stage.operands if isinstance(o, Name))
        elif stage.target in needed and (stage.rule is not None or stage.opaque):
            # Through an opaque call too: a value reaching the result only through one
            # needs a gradient all the same, which ``opaque_refusals`` refuses. Not
            # through a shift proved to have none (``Stage.stopped``).
            needed.update(
                o.id
                for position, o in enumerate(stage.operands)
                if isinstance(o, Name) and position not in stage.stopped
            )


def _written(statement: AdjointStatement) -> list[str]:
    """The gradients ``statement`` binds or writes into, inside its loop or sides too."""
    return [
        *statement.bound,
        *(t for block in statement.blocks for s in block for t in _written(s)),
    ]


def _differentiated_reads(stages: tuple[Stage, ...]) -> list[str]:
    """The names that ``stages`` (those in loops and branches too) hand gradients to: the
    operands of operations and calls, the values an ``if`` joins, the values a loop starts
    its carried variables from and ends a step with, and the items it appends."""
    found: list[str] = []
    for stage in all_stages(stages):
        if stage.rule is not None or stage.call is not None or stage.item:
            found += [o.id for o in stage.operands if isinstance(o, Name)]
        if stage.loop is not None:
            for carry in stage.loop.carried:
                found += [*_name_of(carry.initial), *_name_of(carry.last)]
            found += [n for c in stage.loop.collected for i in c.items for n in _name_of(i)]
        if stage.branch is not None:
            for join in stage.branch.joins:
                found += [*_name_of(join.then), *_name_of(join.orelse)]
    return list(dict.fromkeys(found))


def _reads_any(expr: Expr, names: set[str]) -> bool:
    return isinstance(expr, Name) and expr.id in names


def _name_of(expr: Expr) -> list[str]:
    """A carried or collected value's variable, if it is one (not a constant)."""
    return [expr.id] if isinstance(expr, Name) else []


def opaque_refusals(
    function: StagedFunction, wrt: tuple[str, ...] | None, callees: Callees
) -> list[tuple[object, str]]:
    """Where a gradient would have to flow through a call of a function gradgen has no rule
    for: the call's node (its ``origin``) and why, for each such call. Elsewhere such a call
    is a constant for gradients, computed as written."""
    relevant = relevant_values(function, wrt, callees)
    differentiated = wrt if wrt is not None else tuple(p.name for p in function.parameters)
    # The differentiated parameters each active value's gradient would flow to.
    sources: dict[str, set[str]] = {name: {name} for name in differentiated}
    refusals: dict[int, tuple[object, str]] = {}
    _trace_sources(function.stages, sources, relevant, refusals)
    needed = _needed_values(function, callees)
    for stage in all_stages(function.stages):
        if stage.rule is not None and stage.rule.no_rule_for and stage.target in needed:
            refusal = _no_rule_refusal(stage, sources)
            if refusal is not None:
                refusals[id(stage)] = refusal
    refusals.update(_shape_refusals(function, relevant, callees))
    return list(refusals.values())


def _shape_refusals(
    function: StagedFunction, relevant: set[str], callees: Callees
) -> dict[int, tuple[object, str]]:
    """Operations a gradient flows through with shapes (or literals) their rule has no
    correct gradient for (``Rule.refuse_shapes``: np.linalg.svd's u of full_matrices=True
    of a matrix not square), each refused at its call."""
    stages = [s for s in all_stages(function.stages) if s.rule is not None and s.rule.refuse_shapes]
    if not stages:
        return {}
    known = infer_shapes(function, callees)
    found: dict[int, tuple[object, str]] = {}
    for stage in stages:
        assert stage.rule is not None and stage.rule.refuse_shapes is not None
        if stage.results:
            flowing = frozenset(
                name
                for name, target in zip(stage.rule.results, stage.results, strict=True)
                if target in relevant
            )
        else:
            flowing = frozenset({"out"}) if stage.target in relevant else frozenset()
        if not flowing:
            continue
        message = stage.rule.refuse_shapes(stage_context(stage, known), flowing)
        if message is not None:
            found[id(stage)] = (getattr(stage.expr, "origin", None), message)
    return found


def _no_rule_refusal(stage: Stage, sources: dict[str, set[str]]) -> tuple[object, str] | None:
    """``gammainc(a, x)`` where ``a`` needs a gradient: the function is smooth in ``a``, but
    gradgen has no gradient for it, and dropping it would be a silently wrong gradient."""
    assert stage.rule is not None
    bound = dict(stage.nondiff)
    for variable in stage.rule.no_rule_for:
        value = bound[variable]
        parameters = sorted(set().union(*(sources.get(n, ()) for n in gradient_names(value))))
        if not parameters:
            continue
        node = getattr(value, "origin", None)
        written = (
            " ".join(cst.Module([]).code_for_node(node).split())
            if isinstance(node, cst.CSTNode)
            else render(value)
        )
        origin = "" if parameters == [written] else f", from {_listed(parameters)}"
        function = stage.expr.func.spelling if isinstance(stage.expr, Call) else stage.rule.name
        others = _listed(list(stage.rule.inputs))
        message = (
            f"gradgen has no gradient of '{function}' with respect to its argument "
            f"'{variable}' (only with respect to {others}), and '{written}' needs one "
            f"here{origin}; pass a value that does not depend on the differentiated "
            "parameters (leave a parameter that is data out of wrt), or give the function "
            "a rule with @gradgen.backward_of"
        )
        return (node or getattr(stage.expr, "origin", None), message)
    return None


def array_test_refusals(function: StagedFunction, callees: Callees) -> list[tuple[object, str]]:
    """The tests of ``if`` statements known to be arrays (``if x > 0:`` with ``x: "N"``):
    Python takes the truth of an array only when it has one entry, so such a test is no
    decision per entry; ``np.where`` is. Where the shape is unknown, the test runs as
    written (numpy raises on an array of several entries, in the forward and the backward
    alike)."""
    known = infer_shapes(function, callees)
    refusals: list[tuple[object, str]] = []
    for stage in all_stages(function.stages):
        if stage.branch is None:
            continue
        shape = _test_shape(stage.expr, known)
        if shape and any(dim != 1 for dim in shape):
            message = (
                f"the test of this if is an array of shape {_shape_text(shape)}: an "
                "if takes one side for the whole array; choose per entry with "
                "np.where(cond, a, b), or test a number (np.all(...), np.sum(...) > 0)"
            )
            refusals.append((stage.expr.origin, message))
    return refusals


def _test_shape(test: Expr, known: Shapes) -> Shape | None:
    """The shape of an ``if``'s test where evident: ``is``, ``is not``, ``in`` and ``not in``
    give one truth value whatever they compare; ``and``, ``or`` and ``not`` take the truth
    of their operands."""
    test = unwrap(test)
    if isinstance(test, Compare) and test.op in _IDENTITY_TESTS:
        return SCALAR
    if isinstance(test, BinOp) and test.op in ("and", "or"):
        return shapes.broadcast(_test_shape(test.left, known), _test_shape(test.right, known))
    if isinstance(test, UnaryOp) and test.op == "not":
        return _test_shape(test.operand, known)
    return expression_shape(test, known)


_IDENTITY_TESTS = frozenset(("is", "is not", "in", "not in"))


def _shape_text(shape: tuple[object, ...]) -> str:
    """``(N,)``, ``(N, D)``: a shape as numpy prints one."""
    return f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(map(str, shape))})"


def _trace_sources(
    stages: tuple[Stage, ...],
    sources: dict[str, set[str]],
    relevant: set[str],
    refusals: dict[int, tuple[object, str]],
) -> None:
    """The differentiated parameters each value's gradient would flow to, stage by stage,
    and the opaque calls a gradient would have to flow through."""
    for stage in stages:
        if stage.loop is not None:
            loop = stage.loop
            while True:
                before = sum(len(found) for found in sources.values())
                for carry in loop.carried:
                    flowing = set(sources.get(carry.name, set()))
                    for value in (carry.initial, carry.last):
                        for n in _name_of(value):
                            flowing |= sources.get(n, set())
                    sources[carry.name] = flowing
                _trace_sources(loop.body, sources, relevant, refusals)
                for collected in loop.collected:
                    sources[collected.name] = set().union(
                        *(sources.get(n, set()) for item in collected.items for n in _name_of(item))
                    )
                if sum(len(found) for found in sources.values()) == before:
                    break
            continue
        if stage.branch is not None:
            _trace_sources(stage.branch.then, sources, relevant, refusals)
            _trace_sources(stage.branch.orelse, sources, relevant, refusals)
            for join in stage.branch.joins:
                sources[join.name] = set().union(
                    *(sources.get(n, set()) for v in (join.then, join.orelse) for n in _name_of(v))
                )
            continue
        if stage.rule is None and not stage.opaque and stage.call is None:
            continue
        reached = [sources.get(o.id, set()) for o in stage.operands if isinstance(o, Name)]
        for target in stage.targets:
            sources[target] = set().union(*reached)
        if stage.opaque and stage.target in relevant:
            assert isinstance(stage.expr, Call)
            message = (_draw_message if stage.draw else _opaque_message)(stage.expr, sources)
            refusals[id(stage)] = (stage.expr.origin, message)


def _draw_message(call: Call, sources: dict[str, set[str]]) -> str:
    """``'np.random.normal' draws random numbers, and no gradient flows through a draw:
    its argument 'mu' needs a gradient here; ...``, pointing at the reparameterization."""
    arguments = written_arguments(call)
    position, parameters = next(
        (position, found)
        for position in draw_parameters(call)
        if (
            found := sorted(
                set().union(*(sources.get(n, ()) for n in gradient_names(arguments[position])))
            )
        )
    )
    written = _written_argument(call, position, skip=len(call.args) - len(arguments))
    origin = "" if parameters == [written] else f", from {_listed(parameters)}"
    return (
        f"'{call.func.spelling}' draws random numbers, and no gradient flows through a "
        f"draw: its argument '{written}' needs a gradient here{origin}; draw noise that "
        "does not depend on the parameters and transform it (reparameterize: "
        "mu + sigma * rng.standard_normal(shape) for rng.normal(mu, sigma, shape))"
    )


def _listed(parameters: list[str]) -> str:
    quoted = [f"'{p}'" for p in parameters]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _opaque_message(call: Call, sources: dict[str, set[str]]) -> str:
    """``'gammaln' is not an operation ...; its argument 'y + 1' needs a gradient here, from
    'y' (...)``: the first argument a gradient would flow through, as the user wrote it."""
    arguments = [*call.args, *(value for _, value in call.kwargs)]
    position, parameters = next(
        (position, found)
        for position, value in enumerate(arguments)
        if (found := sorted(set().union(*(sources.get(n, ()) for n in gradient_names(value)))))
    )
    written = _written_argument(call, position)
    origin = ""
    if parameters != [written]:
        quoted = [f"'{p}'" for p in parameters]
        listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
        origin = f", from {listed}"
    library = (call.func.lib or "").partition(".")[0]
    if library in OPERATION_LIBRARIES:
        what = f"'{call.func.spelling}' is not an operation gradgen can differentiate"
    else:
        # `from layers import affine` where no layers.py was found: naming the module.
        what = (
            f"'{call.func.spelling}' is a function of the module '{call.func.lib}', which "
            "gradgen cannot see into: it reads the forward modules it finds as files beside "
            "the file it is given (or under the current folder), and found none for it"
        )
    return (
        f"{what}; its argument '{written}' needs a gradient here{origin} (leave a parameter "
        "that is data out of wrt, or give the function a rule with @gradgen.backward_of)"
    )


def _written_argument(call: Call, position: int, skip: int = 0) -> str:
    """The argument at ``position`` (positional ones, then keywords) as the user wrote it,
    on one line; ``skip``: the arguments of ``call`` the user did not write in the
    parentheses (the generator a method is called on)."""
    node = call.origin
    if isinstance(node, cst.Call) and position < len(node.args):
        argument = node.args[position]
        text = cst.Module([]).code_for_node(argument.value)
        if argument.keyword is not None:
            text = f"{argument.keyword.value}={text}"
        return " ".join(text.split())
    arguments = [*call.args, *(value for _, value in call.kwargs)]
    return render(arguments[position + skip])


def _influences(function: StagedFunction) -> set[str]:
    """Variables the result depends on in any way, with or without a gradient."""
    found = set(names_in(function.result))
    for stage in reversed(function.all_stages):  # a loop reads all its body reads
        if any(target in found for target in stage.targets):
            found.update(stage.reads)
    return found
