"""The forward values a backward function reads, and the lines that recompute them.

``F_backward`` recomputes what its adjoints read (``F_value_and_grad`` and ``F_forward``
compute the whole forward pass); the cache of a forward/backward pair is the same set.
A temporary read only by the one stage that consumes it is written inline there, so the
recomputed forward reads like the user's own lines.
"""

from __future__ import annotations

from collections import Counter

from gradgen.expr import Expr, names_in, substitute
from gradgen.ir import AdjointStatement, ForwardLine
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
