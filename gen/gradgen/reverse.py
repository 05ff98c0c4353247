"""Stages to the backward pass: the adjoint statements, and the forward values they read.

The reverse pass is a short loop over the stages, last first: each stage that lies on a path
from a parameter to the result hands every such input its adjoint from the rules table. The
first contribution to a gradient is written with ``=``, later ones with ``+=``.

``+=`` writes into the object in place when the gradient is a numpy array. So when the object
is shared, with the caller's upstream gradient or with another gradient still to be read
(the add gate passes one object to both inputs), the accumulation is written
``dx = dx + ...`` instead, which makes a new object. Nothing the caller passed in is modified.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from gradgen.expr import Expr, Func, Name, UnaryOp, map_funcs, names_in, simplify, substitute
from gradgen.naming import gradient_name
from gradgen.stages import Stage, StagedFunction


@dataclass(frozen=True)
class AdjointStatement:
    """``target <op> expr`` where op is "=", "+=", "-=", or "= target +" (a fresh sum)."""

    target: str
    op: str
    expr: Expr
    statement: int  # the user statement this differentiates


@dataclass(frozen=True)
class ForwardLine:
    """A forward value the backward pass reads, recomputed as ``target = expr``."""

    target: str
    expr: Expr


@dataclass(frozen=True)
class BackwardFunction:
    staged: StagedFunction
    upstream: str  # the upstream gradient parameter, e.g. "df"
    forward: tuple[ForwardLine, ...]
    adjoints: tuple[AdjointStatement, ...]
    gradients: tuple[str, ...]  # per parameter: a gradient name, or "0.0"


def reverse(function: StagedFunction) -> BackwardFunction:
    """The backward pass of ``function``."""
    namer = function.namer
    result = function.result
    upstream = gradient_name(namer, function.result_base)
    relevant = _relevant(function)
    gradient: dict[str, str] = {}
    statements: list[AdjointStatement] = []
    if isinstance(result, Name) and result.id in relevant:
        gradient[result.id] = upstream

    temporaries = {s.target for s in function.stages if s.temporary}
    for stage in reversed(function.stages):
        if stage.rule is None or stage.target not in relevant:
            continue
        upstream_of_stage = Name(gradient[stage.target])
        values: dict[str, Expr] = dict(zip(stage.rule.inputs, stage.operands, strict=True))
        values["out"] = Name(stage.target)
        values["g"] = upstream_of_stage
        for operand, template in zip(stage.operands, stage.rule.adjoints, strict=True):
            if not (isinstance(operand, Name) and operand.id in relevant):
                continue
            adjoint = _with_library(simplify(substitute(template, values)), stage.library)
            variable = operand.id
            if variable not in gradient:
                if variable in temporaries and isinstance(adjoint, Name):
                    # A temporary's gradient that is another gradient unchanged needs no
                    # copy statement: use that gradient's name.
                    gradient[variable] = adjoint.id
                    continue
                gradient[variable] = gradient_name(namer, variable)
                statements.append(
                    AdjointStatement(gradient[variable], "=", adjoint, stage.statement)
                )
            else:
                statements.append(
                    AdjointStatement(gradient[variable], "+=", adjoint, stage.statement)
                )

    gradients = tuple(gradient.get(p.name, "0.0") for p in function.parameters)
    adjoints = _protect_shared(statements, upstream, gradients)
    forward = _forward_lines(function, adjoints)
    return BackwardFunction(function, upstream, forward, adjoints, gradients)


def _with_library(expr: Expr, library: str) -> Expr:
    """Point the template's helpers (``log``, ``cos``) at the stage's library."""

    def resolve(func: Func) -> Func:
        return Func(library, func.name, None) if func.lib is None else func

    return map_funcs(expr, resolve)


def _relevant(function: StagedFunction) -> set[str]:
    """Variables on a path from a parameter to the result: only these get gradients."""
    active = {p.name for p in function.parameters}
    for stage in function.stages:
        if stage.rule is not None and any(
            isinstance(o, Name) and o.id in active for o in stage.operands
        ):
            active.add(stage.target)
    needed: set[str] = set()
    if isinstance(function.result, Name):
        needed.add(function.result.id)
    for stage in reversed(function.stages):
        if stage.target in needed:
            needed.update(o.id for o in stage.operands if isinstance(o, Name))
    return active & needed


def _protect_shared(
    statements: list[AdjointStatement], upstream: str, returned: tuple[str, ...]
) -> tuple[AdjointStatement, ...]:
    """Turn ``+=`` into ``dx = dx + ...`` wherever writing in place would change an object
    that is also the caller's upstream gradient or another gradient still to be read."""
    last_read: dict[str, float] = {}
    for index, statement in enumerate(statements):
        for name in names_in(statement.expr):
            last_read[name] = index
    for name in returned:
        last_read[name] = float("inf")

    caller_owned = -1
    fresh = itertools.count()
    holder: dict[str, int] = {upstream: caller_owned}  # gradient name -> object it holds
    sharing: dict[int, set[str]] = {caller_owned: {upstream}}
    result = []
    for index, statement in enumerate(statements):
        op, expr = statement.op, statement.expr
        if op == "=":
            # A bare name passes an existing object on; anything computed is a new one.
            obj = holder.get(expr.id, caller_owned) if isinstance(expr, Name) else next(fresh)
        else:
            obj = holder[statement.target]
            others = sharing.get(obj, set()) - {statement.target}
            in_place = obj != caller_owned and all(last_read.get(n, -1) <= index for n in others)
            if in_place:
                if isinstance(expr, UnaryOp) and expr.op == "-":
                    op, expr = "-=", expr.operand
                else:
                    op = "+="
            else:
                op = "= +"
                obj = next(fresh)
        previous = holder.get(statement.target)
        if previous is not None:
            sharing[previous].discard(statement.target)
        holder[statement.target] = obj
        sharing.setdefault(obj, set()).add(statement.target)
        result.append(AdjointStatement(statement.target, op, expr, statement.statement))
    return tuple(result)


def _forward_lines(
    function: StagedFunction, adjoints: tuple[AdjointStatement, ...]
) -> tuple[ForwardLine, ...]:
    """The forward values the adjoints read, and what computing them needs.

    A temporary read only by the one stage that consumes it is written inline there, so the
    recomputed forward reads like the user's own lines.
    """
    by_target = {s.target: s for s in function.stages}
    read = {n for a in adjoints for n in names_in(a.expr) if n in by_target}
    needed: set[str] = set()
    pending = sorted(read)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending.extend(
            o.id for o in by_target[name].operands if isinstance(o, Name) and o.id in by_target
        )
    uses: Counter[str] = Counter()
    for name in needed:
        for operand in by_target[name].operands:
            if isinstance(operand, Name):
                uses[operand.id] += 1
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
    return [o.id for o in stage.operands if isinstance(o, Name) and o.id in inline]
