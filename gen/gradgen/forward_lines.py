"""The forward values a backward function reads, and the lines that recompute them.

``F_backward`` recomputes what its adjoints read (``F_value_and_grad`` and ``F_forward``
compute the whole forward pass); the cache of a forward/backward pair is the same set.
A temporary read only by the one stage that consumes it is written inline there, so the
recomputed forward reads like the user's own lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from gradgen.expr import (
    RULE,
    USER,
    Attribute,
    Call,
    Const,
    Expr,
    Func,
    Name,
    children,
    names_in,
    substitute,
    unwrap,
)
from gradgen.helpers import HELPER_SHAPE_READS
from gradgen.ir import AdjointStatement, ForwardBranch, ForwardLine, ForwardLoop
from gradgen.naming import forward_function_name
from gradgen.rules import SHAPE_ATTRIBUTE, SHAPE_READS
from gradgen.stages import Stage, StagedFunction


def names_read(adjoints: tuple[AdjointStatement, ...]) -> set[str]:
    """Every name the adjoint statements read (forward values, parameters, gradients),
    those in loops too."""
    found = set()
    for a in adjoints:
        found.update(names_in(a.expr))
        found.update(m for part in a.index for m in names_in(part))
        for block in a.blocks:
            found.update(names_read(block))
    return found


def read_whole(adjoints: tuple[AdjointStatement, ...]) -> set[str]:
    """The names the adjoint statements read for more than their shape and dtype: all but
    those only ever passed as ``like`` (``_unbroadcast(g, x)``, ``np.zeros_like(x)``,
    ``x.shape``), for which a cache may hold ``_like(x)``."""
    found: set[str] = set()
    for a in adjoints:
        for part in (a.expr, *a.index):
            _read_whole(part, found)
        for block in a.blocks:
            found |= read_whole(block)
    return found


def _read_whole(expr: Expr, found: set[str]) -> None:
    if isinstance(expr, Name):
        found.add(expr.id)
        return
    if (
        isinstance(expr, Attribute)
        and expr.name == SHAPE_ATTRIBUTE
        and isinstance(unwrap(expr.value), Name)
    ):
        return
    if isinstance(expr, Call):
        func = expr.func
        if func.lib == "helper":
            shape_only = HELPER_SHAPE_READS.get(func.name, ())
        else:
            shape_only = SHAPE_READS.get((func.lib or "", func.name), ())
        for position, argument in enumerate(expr.args):
            if not (position in shape_only and isinstance(unwrap(argument), Name)):
                _read_whole(argument, found)
        for _, value in expr.kwargs:
            _read_whole(value, found)
        return
    for child in children(expr):
        _read_whole(child, found)


def shape_only(
    candidates: Iterable[str], backwards: Iterable[tuple[AdjointStatement, ...]]
) -> frozenset[str]:
    """The ``candidates`` (cached values) that no backward of ``backwards`` reads whole."""
    whole: set[str] = set()
    for adjoints in backwards:
        whole |= read_whole(adjoints)
    return frozenset(name for name in candidates if name not in whole)


def kept_by_loops(adjoints: tuple[AdjointStatement, ...]) -> dict[str, tuple[str, ...]]:
    """For each loop the adjoints walk back through (by the name of its list of steps),
    the values of a step its body reads."""
    found: dict[str, tuple[str, ...]] = {}
    for a in adjoints:
        if a.loop is not None:
            found[a.target] = a.loop.kept
        for block in a.blocks:
            found.update(kept_by_loops(block))
    return found


def every_kept(
    adjoints: Iterable[tuple[AdjointStatement, ...]],
) -> dict[str, tuple[str, ...]]:
    """What each loop keeps of a step for several backwards reading one forward's cache
    (``F_forward`` shared by the backwards its callers call): every value any of them
    reads, in the order first read."""
    found: dict[str, tuple[str, ...]] = {}
    for statements in adjoints:
        for loop, kept in kept_by_loops(statements).items():
            found[loop] = tuple(dict.fromkeys((*found.get(loop, ()), *kept)))
    return found


def with_steps_kept(
    adjoints: tuple[AdjointStatement, ...], kept: Mapping[str, tuple[str, ...]]
) -> tuple[AdjointStatement, ...]:
    """``adjoints`` with each loop unpacking a step as ``kept`` says (``every_kept``): what
    the shared forward appends, whether this backward reads it or not."""
    result = []
    for statement in adjoints:
        if statement.loop is not None:
            loop = statement.loop
            body = with_steps_kept(loop.body, kept)
            steps = kept.get(statement.target, loop.kept)
            statement = replace(statement, loop=replace(loop, body=body, kept=steps))
        if statement.branch is not None:
            sides = statement.branch
            branch = replace(
                sides,
                then=with_steps_kept(sides.then, kept),
                orelse=with_steps_kept(sides.orelse, kept),
            )
            statement = replace(statement, branch=branch)
        result.append(statement)
    return tuple(result)


def forward_lines(
    function: StagedFunction,
    wanted: set[str],
    kept: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[ForwardLine, ...]:
    """The lines computing the forward values named in ``wanted``, and what they need;
    ``kept``: what each loop keeps of its steps, for the backward to walk back through.

    A temporary read only by the one stage that consumes it is written inline there, so the
    recomputed forward reads like the user's own lines.
    """
    lines = _lines(function.stages, wanted, kept or {})
    fixed = wanted | {p.name for p in function.parameters}
    return tuple(_reuse_names(lines, fixed, dict(function.versions)))


def _reuse_names(
    lines: list[ForwardLine], fixed: set[str], versions: Mapping[str, str]
) -> list[ForwardLine]:
    """Of the values the user's code calls by one name (``h``, then ``h_2``, ...), those no
    later line reads any more and nothing after the lines reads are bound to that name
    again, as the user's code does: the memory of a value done with is freed, not held to
    the end of the function. Only plain lines of the top level are renamed; a value a
    loop or an ``if`` reads keeps its name, as does what ``fixed`` names (read after the
    lines: by the adjoints, returned, cached; the parameters)."""
    reads = [_names_of(line) for line in lines]
    last_read: dict[str, int] = {}
    for position, names in enumerate(reads):
        for name in names:
            last_read[name] = position
    for line, names in zip(lines, reads, strict=True):
        if not _is_plain(line):
            fixed = fixed | names
    renamed: dict[str, str] = {}
    holder: dict[str, str] = {}  # a name as written -> the value it holds now
    found: list[ForwardLine] = []
    for position, line in enumerate(lines):
        if renamed and _is_plain(line):
            written: dict[str, Expr] = {k: Name(v) for k, v in renamed.items()}
            line = replace(line, expr=substitute(line.expr, written))
        user = versions.get(line.target)
        if (
            user is not None
            and _is_plain(line)
            and line.target not in fixed
            and user not in fixed
            and last_read.get(holder.get(user, user), -1) <= position
        ):
            renamed[line.target] = user
            holder[user] = line.target
            line = replace(line, target=user)
        else:
            holder.update((target, target) for target in line.targets)
        found.append(line)
    return found


def _lines(
    stages: tuple[Stage, ...], wanted: set[str], kept: Mapping[str, tuple[str, ...]]
) -> list[ForwardLine]:
    by_target = {t: s for s in stages for t in bound_by(s)}
    read = {n for n in wanted if n in by_target}
    needed: set[str] = set()
    demanded = set(wanted)  # what is read: of an 'if', its sides compute only that
    pending = sorted(read)
    # A raise (and the 'if' or loop it is in) runs whatever is read: the backward raises
    # where the forward would, for the same arguments.
    raising = [stage for stage in stages if _raises(stage)]
    for stage in raising:
        pending.extend(n for n in stage.reads if n in by_target)
    while pending:
        name = pending.pop()
        demanded.add(name)
        if name in needed:
            continue
        needed.add(name)
        pending.extend(n for n in by_target[name].reads if n in by_target)
        needed.update(bound_by(by_target[name]))
    uses: Counter[str] = Counter()
    forced = {id(stage) for stage in raising}
    kept_stages = [s for s in stages if id(s) in forced or any(t in needed for t in bound_by(s))]
    for stage in kept_stages:
        for read_name in stage.reads:
            uses[read_name] += 1
    inline = {
        stage.target
        for stage in kept_stages
        if stage.temporary
        and stage.call is None
        and not stage.results
        and stage.target not in read
        and uses[stage.target] == 1
    }
    expanded: dict[str, Expr] = {}
    lines = []
    for stage in kept_stages:
        expr = substitute(stage.expr, {n: expanded[n] for n in _inlined_operands(stage, inline)})
        if stage.target in inline:
            expanded[stage.target] = expr
        elif stage.loop is not None:
            lines.append(_loop_line(stage, expr, demanded, kept))
        elif stage.branch is not None:
            lines.append(_branch_line(stage, expr, demanded, kept))
        elif stage.call is not None and stage.call.rule:
            # p = norm_cdf(d1): a user rule's function, as the user wrote it
            assert isinstance(expr, Call)
            forward = Call(Func(RULE, stage.call.function, stage.call.function), expr.args)
            lines.append(ForwardLine(stage.target, forward, bound_by(stage)))
        elif stage.raises:
            lines.append(ForwardLine(stage.target, expr, raises=True))
        elif stage.call is not None:
            # h, h_cache = affine_forward(x, w, b): the value, and what its backward reads
            assert isinstance(expr, Call)
            name = forward_function_name(stage.call.function)
            forward = Call(Func(USER, name, name), expr.args)
            lines.append(ForwardLine(stage.target, forward, bound_by(stage)))
        else:
            names = stage.item or stage.results  # W, b = layers[i]; sign, logdet = ...
            unpacks = bool(stage.item or stage.results)  # (a,) = np.split(x, 1) too
            lines.append(ForwardLine(stage.target, expr, names, unpacks=unpacks))
    return lines


def _is_plain(line: ForwardLine) -> bool:
    """``target = expr``, nothing more."""
    return (
        line.loop is None
        and line.branch is None
        and not line.names
        and not line.raises
        and not line.unpacks
    )


def _names_of(item: object) -> set[str]:
    """Every name a forward line mentions, in the lines inside it too (what a loop keeps,
    starts from and hands on): all it may read."""
    if isinstance(item, ForwardLine) and _is_plain(item):
        return set(names_in(item.expr))
    if isinstance(item, str):
        return {item}
    if isinstance(item, (tuple, list)):
        return set().union(*(_names_of(part) for part in item))
    if isinstance(item, (Name, Const, Call, Attribute)) or type(item).__module__ == "gradgen.expr":
        return set(names_in(item))  # type: ignore[arg-type]
    if hasattr(item, "__dataclass_fields__"):
        return set().union(*(_names_of(getattr(item, f)) for f in item.__dataclass_fields__))
    return set()


def _loop_line(
    stage: Stage, iterable: Expr, wanted: set[str], kept: Mapping[str, tuple[str, ...]]
) -> ForwardLine:
    """The loop, each step computing what is carried on, appended, or kept for the backward;
    a list it fills only where it is read (``wanted``)."""
    loop = stage.loop
    assert loop is not None
    keep = kept.get(stage.target)
    collected = [c for c in loop.collected if c.name in wanted]
    wanted = set(keep or ())
    wanted.update(n for carry in loop.carried for n in names_in(carry.last))
    wanted.update(n for c in collected for item in c.items for n in names_in(item))
    wanted.update(n for c in collected for i in c.indexes for p in i for n in names_in(p))
    body = _lines(loop.body, wanted, kept)
    return ForwardLine(
        stage.target,
        iterable,
        stage.targets,
        ForwardLoop(
            loop.variable,
            tuple(body),
            keep,
            tuple((c.name, c.initial) for c in loop.carried),
            tuple((c.name, c.last) for c in loop.carried),
            tuple(collected),
        ),
    )


def _branch_line(
    stage: Stage, test: Expr, wanted: set[str], kept: Mapping[str, tuple[str, ...]]
) -> ForwardLine:
    """The ``if``: each side's lines for what is wanted, then the values joined after it,
    then None for what is wanted that only the other side binds."""
    branch = stage.branch
    assert branch is not None
    joins = [join for join in branch.joins if join.name in wanted]
    sides: list[list[ForwardLine]] = []
    for stages, values in (
        (branch.then, [j.then for j in joins]),
        (branch.orelse, [j.orelse for j in joins]),
    ):
        inside = wanted | {n for value in values for n in names_in(value)}
        lines = _lines(stages, inside, kept)
        pairs = zip(joins, values, strict=True)
        lines += [ForwardLine(j.name, value) for j, value in pairs if value != Name(j.name)]
        sides.append(lines)
    bound = [[t for line in side for t in line.targets] for side in sides]
    for side, other in ((0, 1), (1, 0)):
        if any(line.raises for line in sides[side]):
            continue  # nothing after it runs
        missing = [n for n in bound[other] if n not in bound[side]]
        sides[side] += [ForwardLine(name, Const("None")) for name in missing]
    names = tuple(dict.fromkeys([*bound[0], *bound[1]]))
    return ForwardLine(
        stage.target, test, names, branch=ForwardBranch(tuple(sides[0]), tuple(sides[1]))
    )


def _raises(stage: Stage) -> bool:
    """Does ``stage`` raise, or hold a stage that does (in a side of an ``if``, in a loop)?"""
    if stage.branch is not None:
        return any(_raises(s) for s in (*stage.branch.then, *stage.branch.orelse))
    if stage.loop is not None:
        return any(_raises(s) for s in stage.loop.body)
    return stage.raises


def bound_by(stage: Stage) -> tuple[str, ...]:
    """What the forward line of ``stage`` binds: a call's values and its cache too; an
    ``if``, what either side binds."""
    if stage.branch is not None:
        inside = [bound_by(s) for s in (*stage.branch.then, *stage.branch.orelse)]
        return tuple(dict.fromkeys([*(j.name for j in stage.branch.joins), *sum(inside, ())]))
    if stage.loop is not None:
        # Its variable too: read after the loop, it is the last step's (for t in ...: then
        # x * t), and only the loop binds it.
        variable = (stage.loop.variable,) if stage.loop.variable else ()
        return (*stage.targets, *variable)
    if stage.call is not None:
        cache = (stage.call.cache,) if stage.call.cache else ()
        return (*stage.call.results, *cache)
    return stage.item or stage.results or (stage.target,)


def _inlined_operands(stage: Stage, inline: set[str]) -> list[str]:
    return [name for name in stage.reads if name in inline]
