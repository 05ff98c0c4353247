"""The backward function as data: what the reverse pass builds and the emitter writes out.

A backward function is the forward values it reads (``ForwardLine``, recomputed or taken
from a cache) followed by adjoint statements (``AdjointStatement``) in reverse order of the
forward statements they differentiate. Every statement names the forward statement it came
from, so the emitter can quote it and the gradient check can name the line that disagrees.

The statement kinds are an Enum: the emitter handles each one, and mypy checks that it
handles all of them (``assert_never``), so a new kind cannot be forgotten there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gradgen.expr import Expr
from gradgen.stages import Collected, StagedFunction


class Kind(enum.Enum):
    """What an adjoint statement does to its target."""

    ASSIGN = "="  # target = expr: binds a value (maybe shared: see ownership.py)
    ADD = "+="  # target += expr: writes into target's array (only one the backward owns)
    SUBTRACT = "-="  # target -= expr: likewise
    ADD_NEW = "= +"  # target = target + expr: a new object; the old one is left alone
    COPY = "copy"  # target = target.copy(): from here on target is an array of its own
    SCATTER = "scatter"  # add expr into target at index (``dx[i] += g`` or ``np.add.at``)
    # target[index] = expr: a list's item (``dlayers[i] = [dW, db]``); the values it holds
    # are handed back with it
    SET_ITEM = "set item"
    # targets = expr: a callee's backward binds several new gradients, each an array of
    # its own (a backward hands back gradients its caller owns)
    CALL = "call"
    # for each step kept in ``expr`` (the forward's list), last step first: the ``loop``'s
    # body of statements; it writes into the gradients ``loop.accumulated`` (arrays of this
    # backward's own) and rebinds ``loop.carried``
    LOOP = "loop"
    # ``if expr:`` the ``branch``'s statements for where the forward's test held, else the
    # others: both sides bind the same gradients of the values from before the ``if``
    BRANCH = "if"


@dataclass(frozen=True)
class AdjointLoop:
    """The body of a ``Kind.LOOP`` statement and what it reads of each step."""

    variable: str  # the forward's loop variable
    kept: tuple[str, ...]  # the values of each step the body reads, after the variable
    body: tuple[AdjointStatement, ...]
    carried: tuple[str, ...]  # gradients handed from step to step (rebound every step)
    accumulated: tuple[str, ...]  # gradients every step adds into, in place


@dataclass(frozen=True)
class AdjointBranch:
    """The sides of a ``Kind.BRANCH`` statement: the adjoints of each side of the ``if``."""

    then: tuple[AdjointStatement, ...]
    orelse: tuple[AdjointStatement, ...]


@dataclass(frozen=True)
class AdjointStatement:
    """One backward statement of kind ``kind``; ``index`` is where a scatter adds."""

    target: str
    kind: Kind
    expr: Expr
    statement: int  # the user statement this differentiates
    index: tuple[Expr, ...] = ()
    distinct: bool = False  # a scatter whose index selects no entry twice: ``+=`` adds right
    targets: tuple[str, ...] = ()  # CALL: every name bound, ``target`` first
    loop: AdjointLoop | None = None  # LOOP: the statements of a step
    branch: AdjointBranch | None = None  # BRANCH: the statements of each side

    @property
    def bound(self) -> tuple[str, ...]:
        """Every name the statement binds or writes."""
        return self.targets or (self.target,)

    @property
    def blocks(self) -> tuple[tuple[AdjointStatement, ...], ...]:
        """The statements inside this one: a loop's body, an ``if``'s sides."""
        if self.loop is not None:
            return (self.loop.body,)
        if self.branch is not None:
            return (self.branch.then, self.branch.orelse)
        return ()


@dataclass(frozen=True)
class ForwardLine:
    """A forward value the backward pass reads, recomputed as ``target = expr`` (or
    ``h, c, h_cache = f_forward(...)``: ``targets`` names each value a call binds)."""

    target: str
    expr: Expr
    names: tuple[str, ...] = ()  # a call's values and its cache, ``target`` first
    loop: ForwardLoop | None = None  # a loop: ``target`` is the list of what steps keep
    branch: ForwardBranch | None = None  # an ``if``: ``expr`` is its test
    raises: bool = False  # ``raise expr``: it binds nothing
    # An item of a list a loop goes over (``W, b = layers[i]``), or the results of an
    # operation with several: unpacked into ``names``, one name too (``(W,) = layers[i]``
    # for ``for (W,) in layers:``, ``(a,) = np.split(x, 1)``).
    unpacks: bool = False

    @property
    def targets(self) -> tuple[str, ...]:
        """Every name the line binds."""
        if self.raises:
            return ()
        if self.branch is not None:
            return self.names  # an 'if' raising where the forward would binds none
        return self.names or (self.target,)


@dataclass(frozen=True)
class ForwardLoop:
    """A loop of the forward, recomputed: ``for variable in expr:`` the ``body`` lines, each
    step's ``kept`` values appended to the list, then the carried values handed on."""

    variable: str
    body: tuple[ForwardLine, ...]
    kept: tuple[str, ...] | None  # None: the steps are not kept (no backward reads them)
    starts: tuple[tuple[str, Expr], ...]  # carried value -> its value before the loop
    ends: tuple[tuple[str, Expr], ...]  # carried value -> its value at the end of a step
    collected: tuple[Collected, ...]  # what each step appends to a list or writes into an array


@dataclass(frozen=True)
class ForwardBranch:
    """An ``if`` of the forward, recomputed: the lines of each side, each side ending with
    the values joined after it (``h_3 = h_2``) and None for what only the other side
    computes and the backward reads (a cache or a loop's steps hold every name)."""

    then: tuple[ForwardLine, ...]
    orelse: tuple[ForwardLine, ...]


@dataclass(frozen=True)
class BackwardFunction:
    """The backward of one staged function, ready to be written out."""

    staged: StagedFunction
    upstreams: tuple[str, ...]  # the upstream gradient parameters, one per result ("df")
    upstream_default: str | None  # "1.0" for a scalar result, "None" for several, or required
    forward: tuple[ForwardLine, ...]
    adjoints: tuple[AdjointStatement, ...]
    gradients: tuple[str, ...]  # per parameter: a gradient name, "0.0" or "None"
    wrt: tuple[str, ...] | None = None  # the parameters the gradients are for; None: all
    # The whole forward pass that computes the result and what the adjoints read (for
    # F_value_and_grad and F_forward), and the names the adjoints read: the cache a
    # forward/backward pair hands over, parameters first, then values in forward order.
    full_forward: tuple[ForwardLine, ...] = ()
    cache: tuple[str, ...] = ()
    # Variable (parameter, stage target, the result) -> the name of its gradient in the
    # backward, for the gradient check to read rather than guess.
    gradient_of: tuple[tuple[str, str], ...] = ()
    # The backwards of the module's functions this one calls: (function, with respect to).
    calls: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The parameters the result has a gradient with respect to, whatever ``wrt`` asks for
    # (None: not worked out): the others are data (labels, indices), for the gradient check.
    differentiable: frozenset[str] | None = None
    # The values of the cache the adjoints read for their shape and dtype alone: the cache
    # holds ``_like(value)`` for them, not their memory.
    like: frozenset[str] = frozenset()

    def parameter_gradients(self) -> tuple[str, ...]:
        """Per parameter of the forward, in order, what this backward returns for it: a
        gradient's name, "0.0", "None", or "" for a parameter outside ``wrt``."""
        if self.wrt is None:
            return self.gradients
        given = dict(zip(self.wrt, self.gradients, strict=True))
        return tuple(given.get(p.name, "") for p in self.staged.parameters)

    def data_parameters(self) -> frozenset[str]:
        """The parameters the result has no gradient with respect to, though it reads them
        (labels, indices): "None" among the gradients, or, outside ``wrt``, not among the
        ``differentiable`` ones."""
        differentiable = self.differentiable
        pairs = zip(self.staged.parameters, self.parameter_gradients(), strict=True)
        return frozenset(
            parameter.name
            for parameter, gradient in pairs
            if gradient == "None"
            or (
                gradient == ""
                and differentiable is not None
                and parameter.name not in differentiable
            )
        )

    @property
    def upstream(self) -> str:
        """The upstream gradient parameter of a function with one result."""
        return self.upstreams[0]
