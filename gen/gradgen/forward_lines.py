"""The forward values a backward function reads, and the lines that recompute them.

``F_backward`` recomputes what its adjoints read (``F_value_and_grad`` and ``F_forward``
compute the whole forward pass); the cache of a forward/backward pair is the same set.
A temporary read only by the one stage that consumes it is written inline there, so the
recomputed forward reads like the user's own lines.
"""

from __future__ import annotations

from collections import Counter

from gradgen.expr import RULE, USER, Call, Expr, Func, names_in, substitute
from gradgen.ir import AdjointStatement, ForwardLine
from gradgen.naming import forward_function_name
from gradgen.stages import Stage, StagedFunction


def names_read(adjoints: tuple[AdjointStatement, ...]) -> set[str]:
    """Every name the adjoint statements read (forward values, parameters, gradients)."""
    return {
        n
        for a in adjoints
        for n in [*names_in(a.expr), *(m for part in a.index for m in names_in(part))]
    }


def forward_lines(function: StagedFunction, wanted: set[str]) -> tuple[ForwardLine, ...]:
    """The lines computing the forward values named in ``wanted``, and what they need.

    A temporary read only by the one stage that consumes it is written inline there, so the
    recomputed forward reads like the user's own lines.
    """
    by_target = {t: s for s in function.stages for t in _bound(s)}
    read = {n for n in wanted if n in by_target}
    needed: set[str] = set()
    pending = sorted(read)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending.extend(n for n in by_target[name].reads if n in by_target)
        needed.update(_bound(by_target[name]))
    uses: Counter[str] = Counter()
    stages = [s for s in function.stages if any(t in needed for t in _bound(s))]
    for stage in stages:
        for read_name in stage.reads:
            uses[read_name] += 1
    inline = {
        stage.target
        for stage in stages
        if stage.temporary
        and stage.call is None
        and stage.target not in read
        and uses[stage.target] == 1
    }
    expanded: dict[str, Expr] = {}
    lines = []
    for stage in stages:
        expr = substitute(stage.expr, {n: expanded[n] for n in _inlined_operands(stage, inline)})
        if stage.target in inline:
            expanded[stage.target] = expr
        elif stage.call is not None and stage.call.rule:
            # p = norm_cdf(d1): a user rule's function, as the user wrote it
            assert isinstance(expr, Call)
            forward = Call(Func(RULE, stage.call.function, stage.call.function), expr.args)
            lines.append(ForwardLine(stage.target, forward, _bound(stage)))
        elif stage.call is not None:
            # h, h_cache = affine_forward(x, w, b): the value, and what its backward reads
            assert isinstance(expr, Call)
            name = forward_function_name(stage.call.function)
            forward = Call(Func(USER, name, name), expr.args)
            lines.append(ForwardLine(stage.target, forward, _bound(stage)))
        else:
            lines.append(ForwardLine(stage.target, expr))
    return tuple(lines)


def _bound(stage: Stage) -> tuple[str, ...]:
    """What the forward line of ``stage`` binds: a call's values and its cache too."""
    if stage.call is not None:
        cache = (stage.call.cache,) if stage.call.cache else ()
        return (*stage.call.results, *cache)
    return (stage.target,)


def _inlined_operands(stage: Stage, inline: set[str]) -> list[str]:
    return [name for name in stage.reads if name in inline]
