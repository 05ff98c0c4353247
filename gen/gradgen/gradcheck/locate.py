"""Naming the disagreeing forward line: the adjoints the instrumented backward recorded,
walked from the result back, against central differences of the forward re-run stage by
stage (the rule is in ``gradgen.gradcheck``'s docstring); and the line whose backward
raised."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import CodeType, TracebackType
from typing import Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.gradcheck.compare import Comparison, central_differences, compare, scalar_loss
from gradgen.gradcheck.forward import ForwardInfo
from gradgen.gradcheck.instrument import Backward
from gradgen.gradcheck.results import Culprit, GradientCheck


class _Replay:
    """The forward function re-run stage by stage, from gradgen's staged form: every
    intermediate value by name, and the rest of the function re-run from any of them."""

    def __init__(self, info: ForwardInfo, parameters: Sequence[str], args: Sequence[Any]):
        from gradgen.expr import render

        self.info = info
        self.stages = info.staged.stages
        self.codes: list[CodeType] = [
            compile(render(stage.expr), f"<gradgen check: {stage.target}>", "eval")
            for stage in self.stages
        ]
        self.env: dict[str, Any] = dict(zip(parameters, args, strict=True))
        self.run(self.env, 0, len(self.stages))

    def run(self, env: dict[str, Any], start: int, stop: int) -> None:
        with np.errstate(all="ignore"):
            for position in range(start, stop):
                stage = self.stages[position]
                value = eval(self.codes[position], self.info.globals, env)
                if len(stage.targets) > 1:  # a call of a function returning several values
                    env.update(zip(stage.targets, value, strict=True))
                else:
                    env[stage.target] = value

    def result_after(self, position: int, value: Any, result: str, variable: str) -> Any:
        """The result with ``variable`` (stage ``position``'s target, or a parameter at
        position -1) replaced by ``value``, and every stage after it re-run."""
        env = dict(self.env)
        env[variable] = value
        self.run(env, position + 1, len(self.stages))
        return env[result]


def _gradient_name(
    info: ForwardInfo, backward: Backward, variable: str, written: dict[str, Any]
) -> str | None:
    """The name of ``variable``'s gradient in the backward, when the backward writes it:
    the name gradgen gave it (the compile's); in a backward gradgen did not write, the name
    a hand-written one uses when it is not that one (``d<var>``)."""
    names = [info.gradients.get(variable)]
    if backward.tied is None:
        names.append(f"d{variable}")
    return next((name for name in names if name is not None and name in written), None)


def _value_of(backward: Backward, name: str, statement: int, final: Any) -> Any:
    """The gradient ``name`` holds for the value forward statement ``statement`` binds: in
    gradgen's own backward, where one name serves each value a user's name held in turn
    (``dh`` for ``h_2``, then for ``h``), its value after the last statement of a later
    forward statement that wrote it; else (or for a parameter) its final value."""
    if backward.tied is None or statement < 0:
        return final
    found = final
    for line, written, value in backward.records:
        tied = backward.tied.get(line)
        if written == name and tied is not None and tied > statement:
            found = value
    return found


def locate(
    info: ForwardInfo,
    parameters: Sequence[str],
    args: Sequence[Any],
    upstream: Any,
    value: Any,
    gradients: dict[str, GradientCheck],
    backward: Backward,
    rtol: float,
    atol: float,
) -> tuple[Culprit | None, str | None]:
    """The forward line whose backward introduced the first wrong adjoint, or a note on
    why it cannot be named (see ``gradgen.gradcheck``'s docstring for the rule)."""
    staged = info.staged
    if not backward.instrumented:
        return None, "the backward's source could not be read, so no line can be named"
    try:
        replay = _Replay(info, parameters, args)
    except Exception as error:  # the staged form runs the user's expressions
        return None, f"re-running the forward stage by stage failed: {error!r}"
    if len(staged.results) > 1:
        return None, "the function returns several values: no single line is named"
    result = getattr(staged.result, "id", None)
    if result is None or result not in replay.env:
        return None, "the function returns a constant"
    if not _close(replay.env[result], value):
        return None, "re-running the forward stage by stage does not give its value"

    written = backward.final_values()

    def loss_after(position: int, variable: str) -> Callable[[Any], float]:
        # position -1 (a parameter): every stage is re-run.
        return lambda v: scalar_loss(upstream, replay.result_after(position, v, result, variable))

    # Variables in forward order: the parameters, then the user's named values (not the
    # temporaries gradgen splits off, nor the result, whose adjoint is the upstream).
    order: list[tuple[str, int]] = [(p, -1) for p in parameters]
    order += [
        (stage.target, k)
        for k, stage in enumerate(staged.stages)
        if not stage.temporary and stage.target != result
    ]
    adjoint_of: dict[str, Any] = {result: upstream}
    names: dict[str, str] = {}
    wrong: tuple[str, int, Comparison] | None = None
    for variable, position in reversed(order):
        name = _gradient_name(info, backward, variable, written)
        if name is None:
            continue
        if position < 0 and (variable not in gradients or gradients[variable].status == "skip"):
            continue
        names[variable] = name
        statement = staged.stages[position].statement if position >= 0 else -1
        adjoint_of[variable] = _value_of(backward, name, statement, written[name])
        numeric = central_differences(loss_after(position, variable), replay.env[variable])
        comparison = compare(adjoint_of[variable], numeric, rtol, atol)
        if not comparison.passed:
            wrong = (variable, position, comparison)
            break
        if position < 0 and not gradients[variable].passed:
            # Its adjoint is right, yet the backward returns something else for it.
            return _returned_wrong(info, variable, name, gradients[variable]), None
    if wrong is None:
        return None, "every adjoint the backward computes agrees with central differences"
    variable, position, comparison = wrong
    readers = sorted(
        {
            stage.statement
            for stage in staged.stages[position + 1 :]
            if (stage.rule is not None or stage.call is not None) and variable in stage.reads
        },
        reverse=True,
    )
    if not readers:
        return None, f"no statement reads '{variable}'"
    proven = _narrow(
        info, replay, backward, variable, names[variable], readers, adjoint_of, rtol, atol
    )
    shown = _shown_name(info, variable, position)
    message = f"the adjoint of {shown} disagrees (max rel. error {comparison.max_rel:.2g})"
    # One reader, or the one whose own contribution is wrong; else every reader is listed.
    first = proven if proven is not None else readers[0]
    others = [] if proven is not None else readers[1:]
    notes = tuple(
        f"{info.filename}:{info.lines[s]}: note: {shown} is also read here: {info.texts[s]}"
        for s in others
    )
    culprit = Culprit(info.filename, info.lines[first], message, info.texts[first], variable, notes)
    return culprit, None


def _close(a: Any, b: Any) -> bool:
    try:
        return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12))
    except (TypeError, ValueError):
        return False


def _shown_name(info: ForwardInfo, variable: str, position: int) -> str:
    """``'h'``, or ``'h' (as bound at line 7)`` for gradgen's ``h_2``."""
    if position < 0:
        return f"'{variable}'"
    statement = info.staged.stages[position].statement
    user = info.targets[statement] if statement < len(info.targets) else None
    if user is None or user == variable:
        return f"'{variable}'"
    return f"'{user}' (as bound at line {info.lines[statement]})"


def _returned_wrong(info: ForwardInfo, parameter: str, name: str, check: GradientCheck) -> Culprit:
    message = (
        f"the backward returns a wrong gradient for '{parameter}' (max rel. error "
        f"{check.max_rel_error:.2g}) though its adjoint {name} is right: check its return"
    )
    return Culprit(info.filename, info.def_line, message, info.def_text, parameter)


def _narrow(
    info: ForwardInfo,
    replay: _Replay,
    backward: Backward,
    variable: str,
    name: str,
    readers: list[int],
    adjoint_of: dict[str, Any],
    rtol: float,
    atol: float,
) -> int | None:
    """Of the statements reading ``variable`` (last first), the one whose backward put a
    wrong share into ``name`` (the variable's gradient); None when that cannot be told.

    A statement's share is central differences of that statement alone, weighted by the
    (right) adjoint of what it computes. What the backward put in is read from the values
    recorded after each write to ``name``: grouped by the forward statement each write comes
    from, as the compile says for gradgen's own backward or the ``# backprop`` comment above
    it says in another (the last statement whose share disagrees is the one); otherwise, a
    statement whose share some single write added is accounted for, and when exactly one is
    not, it is the one.
    """
    if len(readers) == 1:
        return readers[0]
    added: list[tuple[int, Any]] = []  # (line, what that write added)
    previous: Any = 0.0
    for line, recorded, value in backward.records:
        if recorded != name:
            continue
        try:
            delta = np.asarray(value, dtype=np.float64) - np.asarray(previous, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        added.append((line, delta))
        previous = value
    stages = info.staged.stages
    shares: dict[int, Any] = {}
    for statement in readers:
        own = [k for k, s in enumerate(stages) if s.statement == statement]
        top = [k for k in own if not stages[k].temporary]
        if not top or stages[top[-1]].target not in adjoint_of:
            return None  # a share that cannot be computed: nothing can be concluded
        output = stages[top[-1]].target

        def alone(value: Any, own: list[int] = own, output: str = output) -> float:
            env = dict(replay.env)
            env[variable] = value
            with np.errstate(all="ignore"):
                for k in own:
                    env[stages[k].target] = eval(replay.codes[k], info.globals, env)
            return scalar_loss(adjoint_of[output], env[output])

        shares[statement] = central_differences(alone, replay.env[variable])
    statement_of = _statement_of_lines(info, backward)
    if statement_of or backward.tied is not None:
        grouped: dict[int, Any] = {}
        for line, delta in added:
            if line in statement_of:
                grouped[statement_of[line]] = grouped.get(statement_of[line], 0.0) + delta
        for statement in readers:
            given = grouped.get(statement, np.zeros(np.shape(shares[statement])))
            if not compare(given, shares[statement], rtol, atol).passed:
                return statement
        return None
    unexplained = [
        statement
        for statement in readers
        if np.any(shares[statement])
        and not any(compare(delta, shares[statement], rtol, atol).passed for _, delta in added)
    ]
    return unexplained[0] if len(unexplained) == 1 else None


def _statement_of_lines(info: ForwardInfo, backward: Backward) -> dict[int, int]:
    """Backward line -> index of the forward statement it comes from: in gradgen's own
    backward, as the compile tied it; in another, the statement its ``# backprop`` comment
    quotes.

    gradgen writes the groups last statement first; where two statements read alike
    (``h = h * h`` twice), the comment is taken for the latest one not yet passed.
    """
    if backward.tied is not None:
        return backward.tied
    rendered = [_shorten(text) for text in info.staged.statements]
    by_comment: dict[int, int] = {}
    below = len(rendered)
    for comment_line, text in sorted(set(backward.groups.values())):
        matches = [i for i, r in enumerate(rendered) if r == text]
        if not matches:
            continue
        earlier = [i for i in matches if i < below]
        chosen = max(earlier) if earlier else max(matches)
        by_comment[comment_line] = chosen
        below = chosen
    return {
        line: by_comment[comment]
        for line, (comment, _) in backward.groups.items()
        if comment in by_comment
    }


def _shorten(text: str) -> str:
    """A statement as gradgen quotes it in a ``# backprop`` comment (emit.py's width)."""
    width = 76
    return text if len(text) <= width else text[: width - 4].rstrip() + " ..."


def raised_at(error: BaseException, backward: Backward, info: ForwardInfo | None) -> Culprit | None:
    """The forward line whose backward statements raised ``error``, when that is known."""
    if info is None:
        return None
    statement_of = _statement_of_lines(info, backward)
    tb: TracebackType | None = error.__traceback__
    statement = None
    while tb is not None:  # the innermost frame in the backward function's own lines
        if tb.tb_frame.f_code.co_filename == backward.filename and tb.tb_lineno in statement_of:
            statement = statement_of[tb.tb_lineno]
        tb = tb.tb_next
    if statement is None:
        return None
    message = f"the backward of this line raised {type(error).__name__}: {error}"
    return Culprit(info.filename, info.lines[statement], message, info.texts[statement])
