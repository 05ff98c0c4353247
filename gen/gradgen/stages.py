"""Forward functions to stages: one operation of the rules table per stage, single assignment.

Each statement becomes one stage when it is a single operation (``num = x + sigy``) and
several when it is compound (``a = math.tanh(x * y + 1.0) / (1.0 + z**2)`` gets temporaries
``a_mul``, ``a_add``, ...). Fused gates such as the sigmoid written out stay one stage.
A rebound name gets a new name per binding (``h``, ``h_2``), so every stage's value stays
available to the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from gradgen.expr import (
    NOT_LITERAL,
    RULE,
    USER,
    Attribute,
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Group,
    Name,
    Sequence_,
    Slice,
    Subscript,
    UnaryOp,
    children,
    is_constant,
    literal_value,
    map_children,
    names_in,
    replace_nodes,
    substitute,
    unwrap,
    walk,
)
from gradgen.naming import Namer, piece_name, rebinding_name, temporary_name
from gradgen.parse import (
    Append,
    Assignment,
    Branch,
    ForwardFunction,
    Item,
    Loop,
    Parameter,
    Statement,
)
from gradgen.rules import (
    ARRAY_MAKERS,
    LENGTH,
    LIST_RULES,
    NO_GRADIENT_OPERATORS,
    NONDIFFERENTIABLE_ATTRIBUTES,
    STOP_GRADIENT,
    Rule,
    canonical_call,
    draw_parameters,
    form_library,
    is_draw,
    is_opaque,
    result_count,
    rule_literals,
    rules_by_priority,
    several_results,
    without_gradient,
    written_arguments,
)
from gradgen.structure import Structured

_PRIORITY = rules_by_priority()


def _head(expr: Expr, pattern: bool) -> tuple[object, ...] | None:
    """What ``_match`` compares first, at the top of a pattern and of an expression (None: a
    pattern that may match anything, a variable or a constant)."""
    expr = unwrap(expr)
    if isinstance(expr, (Name, Const)):
        return None if pattern else (type(expr),)
    if isinstance(expr, Attribute):
        return (Attribute, expr.name)
    if isinstance(expr, Call):
        return (Call, expr.func.lib, expr.func.name)
    operands = _operands(expr)
    return (type(expr), None if operands is None else operands[0])


# The rows and forms by what the top of an expression must be for them to match, each list
# in priority order with the forms that match anything: lowering a long function tried
# every form of the table on every expression.
_BY_HEAD: dict[tuple[object, ...] | None, list[tuple[Rule, Expr]]] = {}


def _candidates(expr: Expr) -> list[tuple[Rule, Expr]]:
    """The forms of ``_PRIORITY`` that ``expr`` may match, in its order."""
    head = _head(expr, pattern=False)
    found = _BY_HEAD.get(head)
    if found is None:
        found = _BY_HEAD[head] = [
            (rule, form) for rule, form in _PRIORITY if _head(form, pattern=True) in (None, head)
        ]
    return found


@dataclass(frozen=True)
class Signature:
    """What a caller needs to know of a function of the module it calls."""

    parameters: tuple[Parameter, ...]
    results: int  # how many values it returns
    rule: bool = False  # a user rule: its backward is the user's, called with its arguments
    names: tuple[str | None, ...] = ()  # the names it returns, where ``return`` names them
    structured: tuple[str, ...] = ()  # its parameters that are dicts or lists of arrays
    # its parameters a loop goes over the items of (for W, b in layers:): lists of gradients
    sequences: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallSite:
    """A stage that calls a function of the module: its backward is the callee's backward."""

    function: str  # the callee
    parameters: tuple[str, ...]  # the callee's parameters, aligned with the stage's operands
    results: tuple[str, ...]  # the names the callee's results are bound to (target first)
    cache: str  # the name of what the callee's forward hands its backward ("": a user rule)
    rule: bool = False  # a user rule (``gradgen.backward_of``): no cache, the user's backward


@dataclass(frozen=True)
class Carry:
    """A variable a loop carries from step to step (``h = f(h)``)."""

    name: str  # the loop's name for it: each step's value in, after the loop the last one
    initial: Expr  # its value before the loop: a Name, or a constant
    last: Expr  # its value at the end of a step: a Name, or a constant


@dataclass(frozen=True)
class Collected:
    """What a loop fills: a list (``hs = []`` before it, ``hs.append(h)`` in it), or an
    array made for it (``hs = np.zeros((N, T, H))`` before it, ``hs[:, t, :] = h`` in it:
    ``made`` is how, ``indexes`` where each step writes each item)."""

    name: str
    items: tuple[Expr, ...]  # what one step appends or writes, in order: Names or constants
    made: Expr | None = None  # an array: what makes it (np.zeros(...)); None: a list
    indexes: tuple[tuple[Expr, ...], ...] = ()  # an array: the entries each item is written to


@dataclass(frozen=True)
class Join:
    """A name an ``if`` binds: after it, ``then`` where its test held, else ``orelse``."""

    name: str
    then: Expr
    orelse: Expr


@dataclass(frozen=True)
class BranchSite:
    """A stage that is an ``if``: the stages of each side, and the names joined after it.
    The stage's ``expr`` is the test (no gradient), computed again wherever it is read."""

    then: tuple[Stage, ...]
    orelse: tuple[Stage, ...]
    joins: tuple[Join, ...]


@dataclass(frozen=True)
class LoopSite:
    """A stage that is a ``for`` loop over numbers: its body is stages of their own, run
    once per step. The stage binds ``target``, the list of what each step keeps for the
    backward, and the carried variables and filled lists as they are after the loop."""

    variable: str  # the loop variable (a number each step)
    body: tuple[Stage, ...]
    carried: tuple[Carry, ...]
    collected: tuple[Collected, ...]


@dataclass(frozen=True)
class Stage:
    """``target = expr``: one operation, its inputs (``operands``) and where it came from."""

    target: str
    rule: Rule | None  # None: a value with no gradient (a constant, a shape, a mask)
    operands: tuple[Expr, ...]  # aligned with ``rule.inputs``: a Name or a value with no gradient
    expr: Expr  # the forward computation, as the user spelled it, over the operands
    library: str  # where template helpers (log, cos) come from: "math" or "numpy"
    statement: int  # index into ``StagedFunction.statements``
    temporary: bool  # a subexpression split off by gradgen, not a user variable
    # The rule's other form variables (axis, a condition, an index), as written.
    nondiff: tuple[tuple[str, Expr], ...] = ()
    call: CallSite | None = None  # a call of a function of the module (``rule`` is None)
    # A call of a function the table knows nothing of (rules.is_opaque), with rule None: its
    # operands are the variables a gradient could flow in from (``gradient_names``); none
    # can flow through it (reverse.opaque_refusals refuses it where one would have to).
    opaque: bool = False
    # A random draw (``rs.randn(3)``, rules.is_draw): opaque too (no gradient flows through
    # it), and never computed again: a function with one has no recomputing backward.
    draw: bool = False
    # A loop (``expr`` is what it iterates over; ``operands`` every value from outside it
    # that its body reads or starts from).
    loop: LoopSite | None = None
    branch: BranchSite | None = None  # an ``if`` (``expr`` its test)
    # ``W, b = layers[i]``: the names an item of a list parameter is unpacked into (``expr``
    # reads it; ``operands`` is the list). Its adjoint sets the item of the list's gradient.
    item: tuple[str, ...] = ()
    # ``raise ValueError(...)`` ending a side of an ``if`` (``expr`` is what it raises, a
    # Const of its text): it binds nothing, has no adjoint, and the backward raises it
    # again where the forward would.
    raises: bool = False
    # An operation with several results (``sign, logdet = np.linalg.slogdet(a)``, its rule's
    # ``results``): the names they are bound to, ``target`` first.
    results: tuple[str, ...] = ()
    # The positions of operands no gradient flows back into, though they have one: the
    # shift ``c`` of ``x - c`` where the results are proved invariant to it (invariance.py),
    # as if it were ``gradgen.stop_gradient(c)`` there.
    stopped: tuple[int, ...] = ()

    @property
    def reads(self) -> list[str]:
        """Every variable the forward computation reads."""
        if self.loop is not None or self.branch is not None:
            read = [*names_in(self.expr), *(n for o in self.operands for n in names_in(o))]
            return list(dict.fromkeys(read))
        return names_in(self.expr)

    @property
    def targets(self) -> tuple[str, ...]:
        """Every name the stage binds (a call's several results, a loop's carried values)."""
        if self.loop is not None:
            return (
                self.target,
                *(c.name for c in self.loop.carried),
                *(c.name for c in self.loop.collected),
            )
        if self.branch is not None:
            return (self.target, *(j.name for j in self.branch.joins))
        if self.item:
            return self.item
        if self.results:
            return self.results
        return self.call.results if self.call is not None else (self.target,)


def all_stages(stages: tuple[Stage, ...] | list[Stage]) -> list[Stage]:
    """Every stage, those in loops and branches too (a loop or an ``if`` before its
    stages), in order."""
    found: list[Stage] = []
    for stage in stages:
        found.append(stage)
        if stage.loop is not None:
            found += all_stages(stage.loop.body)
        if stage.branch is not None:
            found += all_stages(stage.branch.then) + all_stages(stage.branch.orelse)
    return found


def step_stages(stages: tuple[Stage, ...]) -> list[Stage]:
    """The stages run in one step of a loop whose body is ``stages``: those in its ``if``
    statements too, not those of the loops inside it."""
    found: list[Stage] = []
    for stage in stages:
        found.append(stage)
        if stage.branch is not None:
            found += step_stages(stage.branch.then) + step_stages(stage.branch.orelse)
    return found


@dataclass(frozen=True)
class StagedFunction:
    name: str
    parameters: tuple[Parameter, ...]
    stages: tuple[Stage, ...]
    statements: tuple[str, ...]  # the user's statements, rendered, for comments
    results: tuple[Expr, ...]  # each a Name (single-assignment) or a constant
    result_bases: tuple[str, ...]  # the user's name for each result, or "out"
    used_globals: frozenset[str]
    namer: Namer
    array_mode: bool  # the module uses numpy: values may be arrays of any shape
    # Module data it reads (``inputs = load()`` at module level), and where first.
    data: tuple[tuple[str, object], ...] = ()
    # Parameters that are dicts or lists of arrays: ``parameters`` holds their leaves in
    # their place (structure.py); ``signature`` is the parameters as the user wrote them.
    structured: tuple[Structured, ...] = ()
    signature: tuple[Parameter, ...] = ()
    # Each later binding of a user's name and that name (``h_2`` -> ``h``): the values the
    # user's code calls by one name, one after the other.
    versions: tuple[tuple[str, str], ...] = ()
    # Parameters with a number for default that a call of the module passes something
    # else than a constant: not taken for numbers by their default (infer.py).
    passed_values: frozenset[str] = frozenset()

    @property
    def arguments(self) -> tuple[Parameter, ...]:
        """The parameters as the user wrote them: what the generated functions take."""
        return self.signature or self.parameters

    @property
    def result(self) -> Expr:
        """What the function returns: its one result, or the tuple of several."""
        if len(self.results) == 1:
            return self.results[0]
        return Sequence_(self.results, "()")

    @property
    def all_stages(self) -> list[Stage]:
        """Every stage, those in loop bodies too, in order."""
        return all_stages(self.stages)

    def stage_of(self, name: str) -> Stage | None:
        """The stage that binds ``name``, if any."""
        return next((s for s in self.all_stages if name in s.targets), None)

    @property
    def first_draw(self) -> Stage | None:
        """The first stage that draws random numbers, if any (not counting the draws of the
        functions it calls)."""
        return next((s for s in self.all_stages if s.draw), None)


Refuse = Callable[[object, str], None]


def stage_function(
    function: ForwardFunction,
    reserved: set[str],
    default_library: str,
    refuse: Refuse,
    signatures: Mapping[str, Signature] | None = None,
) -> StagedFunction:
    """Split ``function`` into stages; problems go to ``refuse(origin_node, message)``.

    ``default_library`` serves the helpers of operator rules (``log`` for ``x ** y``);
    ``signatures`` are those of the module's functions it calls.
    """
    namer = Namer(reserved)
    for parameter in function.parameters:
        namer.take(parameter.name)
    for statement in _all_statements(function.body):
        for name in _names_bound(statement):
            namer.take(name)
    builder = _Builder(namer, default_library, refuse, signatures or {})
    current: dict[str, Expr] = {p.name: Name(p.name) for p in function.parameters}
    parameters = {p.name for p in function.parameters}
    statements: list[str] = []
    block = _Block(builder, current, statements, parameters)
    block.stage_all(function.body)
    results: list[Expr] = []
    bases: list[str] = []
    parameters = {p.name for p in function.parameters}
    block.refuse_loop_locals(function.results[0], None)
    passed_on = _several_returned(function, current, builder)
    if len(function.results) > 1 or passed_on:
        # `return h, c` is a statement of its own: the upstreams are taken in under it.
        statements.append(function.result_text)
    if passed_on:
        # `return f(x)` of a function returning several values returns them all.
        call, count = passed_on
        # Named as the callee names them (``return mu, logvar``), where free.
        names = builder.signatures[call.func.name].names
        bases = [(names[k] if k < len(names) else None) or f"out{k + 1}" for k in range(count)]
        targets = tuple(namer.fresh(base) for base in bases)
        builder.lower_call(call, targets, bases[0], len(statements) - 1, top=True)
        results = [Name(t) for t in targets]
        bases = list(targets)
    for position, result in enumerate(() if passed_on else function.results):
        block.refuse_loop_locals(result, None)
        result = substitute(result, current)
        plain_result = unwrap(result)
        # The upstream gradient is named after the result (``dloss``), unless the result is
        # a parameter rebound (``x = x @ w; return x``), whose gradient ``dx`` names already.
        # Several results unnamed: out1, out2 (their upstreams dout1, dout2, as the
        # upstreams of a user rule's backward are named).
        unnamed = "out" if len(function.results) == 1 else f"out{position + 1}"
        result_base = function.result_names[position] or unnamed
        if result_base in parameters and plain_result != Name(result_base):
            result_base = unnamed
        drawn = has_draw(plain_result)
        inactive = is_inactive(plain_result)
        # A call of the module's functions in a value with no gradient (return g(x) > 0) is
        # a stage of its own too: the generated module runs it through the callee's F_forward.
        called = inactive and bool(_lowered_alone_inside(plain_result))
        if not isinstance(plain_result, Name) and (drawn or called or not inactive):
            if len(function.results) == 1:
                statements.append(function.result_text)
            target = namer.fresh("out")
            if drawn or called:
                # A draw is a stage of its own, even in a value with no gradient: the
                # backward must read the numbers drawn, never draw again. So is a call.
                drawn_result: dict[str, Expr] = {}
                _assign(result, "out", target, len(statements) - 1, drawn_result, builder)
                plain_result = unwrap(drawn_result["out"])
            else:
                builder.lower(result, target, "out", len(statements) - 1, top=True)
                plain_result = Name(target)
        results.append(plain_result)
        bases.append(result_base)
    return StagedFunction(
        name=function.name,
        parameters=function.parameters,
        stages=tuple(builder.stages),
        statements=tuple(statements),
        results=tuple(results),
        result_bases=tuple(bases),
        used_globals=function.used_globals,
        namer=namer,
        array_mode=default_library == "numpy",
        data=function.data,
        structured=function.structured,
        signature=function.signature,
        versions=tuple(builder.versions.items()),
    )


_EMPTY_LIST = Sequence_((), "[]")
# What a filled list is read by: its items stacked, joined or added up.
_LIST_READERS = {("numpy", "stack"), ("numpy", "concatenate"), ("builtins", "sum")}


def _sole_binding(side: tuple[Stage, ...], value: Expr, values: list[Expr]) -> Stage | None:
    """The stage of ``side`` that binds ``value``, where the join may take its name: an
    operation of the side itself that nothing else reads (no stage of the side, no other
    joined value)."""
    if not isinstance(value, Name) or values.count(value) != 1:
        return None
    stage = next((s for s in side if value.id in _own_targets(s)), None)
    if stage is None or stage.temporary or stage.draw:
        return None
    if stage.call is not None or stage.loop is not None:
        return None
    if any(value.id in s.reads for s in all_stages(side)):
        return None
    return stage


def _own_targets(stage: Stage) -> tuple[str, ...]:
    """What a side's stage binds that a join may take the name of: an operation's target,
    or the joined names of an ``if`` in the side (an ``elif``)."""
    if stage.branch is not None:
        return tuple(join.name for join in stage.branch.joins)
    return (stage.target,)


def unwrap_name(value: Expr) -> str:
    assert isinstance(value, Name)
    return value.id


def _renamed(stage: Stage, old: str, new: str) -> Stage:
    """``stage`` binding ``new`` where it bound ``old``: an operation's target, or the join
    of an ``if`` (with each of its sides' bindings of it, which the join took the name of)."""
    if stage.branch is None:
        return replace(stage, target=new) if stage.target == old else stage
    site = stage.branch
    names = {old: Name(new)}
    joins = tuple(
        Join(
            new if j.name == old else j.name, substitute(j.then, names), substitute(j.orelse, names)
        )
        for j in site.joins
    )
    then = tuple(_renamed(s, old, new) for s in site.then)
    orelse = tuple(_renamed(s, old, new) for s in site.orelse)
    return replace(stage, branch=BranchSite(then, orelse, joins))


def _all_statements(body: tuple[Statement, ...]) -> list[Statement]:
    found: list[Statement] = []
    for statement in body:
        found.append(statement)
        if isinstance(statement, Loop):
            found += _all_statements(statement.body)
        elif isinstance(statement, Branch):
            found += _all_statements(statement.body) + _all_statements(statement.orelse)
    return found


def _names_bound(statement: Statement) -> tuple[str, ...]:
    if isinstance(statement, Loop):
        return (statement.target,)
    if isinstance(statement, Branch):
        return ()
    if isinstance(statement, Append):
        return ()
    return statement.names  # an assignment's, or an item's (W, b = layers[i])


class _Block:
    """Stages the statements of a function body, and of the loops in it, in order."""

    def __init__(
        self,
        builder: _Builder,
        current: dict[str, Expr],
        statements: list[str],
        parameters: set[str],
    ) -> None:
        self.builder = builder
        self.current = current  # each user name -> the stage name (or constant) it holds
        self.statements = statements  # the user's statements, rendered, for comments
        self.parameters = parameters
        self.bound: set[str] = set(current)
        self.lists: dict[str, list[Expr]] = {}  # lists being filled by the loop staged now
        # Arrays being filled by the loop staged now: the stage that made each one (taken
        # out of the stages: the loop makes it), and where each item is written.
        self.arrays: dict[str, tuple[Stage, list[tuple[Expr, ...]]]] = {}
        self.loop_variable = ""  # the stage name of the innermost loop's variable
        self.refused_arrays: set[str] = set()  # arrays written into, refused once already
        # Names bound only inside a loop or one branch of an 'if' -> why they cannot be read.
        self.loop_locals: dict[str, str] = {}
        self.branch_depth = 0  # inside how many 'if' statements

    def bind(self, user_name: str) -> str:
        """The stage name of a new binding of ``user_name``."""
        if user_name in self.bound:
            name = rebinding_name(self.builder.namer, user_name)
            self.builder.versions[name] = user_name
            return name
        self.bound.add(user_name)
        return user_name

    def refuse_loop_locals(self, expr: Expr, origin: object) -> bool:
        """Refuse a read, after a loop, of a name only the loop's body binds."""
        for name in names_in(expr):
            if name in self.loop_locals:
                self.builder.refuse(getattr(expr, "origin", None) or origin, self.loop_locals[name])
                return True
        return False

    def stage_all(self, body: tuple[Statement, ...]) -> None:
        for statement in body:
            if isinstance(statement, Loop):
                self.stage_loop(statement)
            elif isinstance(statement, Branch):
                self.stage_branch(statement)
            elif isinstance(statement, Append):
                self.stage_append(statement)
            elif isinstance(statement, Item):
                self.stage_item(statement)
            else:
                self.stage_assignment(statement)

    def stage_item(self, item: Item) -> None:
        """``W, b = layers[i]``: one stage binding each name (``Stage.item``)."""
        builder, current = self.builder, self.current
        index = len(self.statements)
        self.statements.append(item.text)
        names = tuple(self.bind(name) for name in item.names)
        for user, name in zip(item.names, names, strict=True):
            current[user] = Name(name)
            self.loop_locals.pop(user, None)
        read = substitute(item.value, current)
        builder.stages.append(
            Stage(
                names[0],
                None,
                (Name(item.sequence),),
                read,
                builder.default_library,
                index,
                False,
                item=names,
            )
        )

    def stage_assignment(self, assignment: Assignment) -> None:
        builder, current = self.builder, self.current
        index = len(self.statements)
        self.statements.append(assignment.text)
        if self.refuse_loop_locals(assignment.value, assignment.origin):
            return
        for name in names_in(assignment.value):
            if name in self.lists:
                builder.refuse(
                    assignment.origin or getattr(assignment.value, "origin", None),
                    f"'{name}' is read in the loop that fills it: read it after the loop",
                )
                return
        for name in assignment.names:
            self.loop_locals.pop(name, None)
        if assignment.targets:
            _unpack(assignment, index, current, self.bind, builder)
            return
        if unwrap(assignment.value) == _EMPTY_LIST:
            # A list a loop fills: bound by that loop (its stage makes it).
            current[assignment.target] = _EMPTY_LIST
            return
        if assignment.augmented and builder.default_library == "numpy":
            _refuse_shared_update(assignment, current, self.parameters, builder, builder.refuse)
            value_now = unwrap(current[assignment.target])
            if isinstance(value_now, Name) and value_now.id in builder.carried_from:
                builder.updates.append((assignment, value_now.id))
        value = substitute(assignment.value, current)
        if isinstance(unwrap(value), Name):
            # `h = x` only names a value again (the gradient flows to x unchanged): no
            # name of its own, which the next real binding of h can take.
            current[assignment.target] = unwrap(value)
            return
        target = self.bind(assignment.target)
        _assign(value, assignment.target, target, index, current, builder)

    def stage_append(self, append: Append) -> None:
        builder = self.builder
        index = len(self.statements)
        self.statements.append(append.text)
        name = append.target
        if name in self.refused_arrays:
            return
        if self.branch_depth:
            what = f"'{name}.append'" if append.index is None else f"'{append.text}'"
            builder.refuse(
                append.origin,
                f"{what} inside an 'if' is not supported: fill in every step (the value "
                "chosen by the 'if')",
            )
            return
        if append.index is not None and name not in self.arrays:
            builder.refuse(
                append.origin,
                f"'{append.text}' writes into an array gradgen can follow only inside a loop, "
                f"into an array made just before that loop ({name} = np.zeros(...)) and read "
                "after it",
            )
            return
        if name not in self.lists or (append.index is None and name in self.arrays):
            builder.refuse(
                append.origin,
                f"'{name}.append' fills a list gradgen can follow only inside a "
                f"loop, with '{name} = []' just before that loop",
            )
            return
        if self.refuse_loop_locals(append.value, append.origin):
            return
        for read in names_in(append.value):
            if read in self.lists:
                builder.refuse(
                    append.origin,
                    f"'{read}' is read in the loop that fills it: read it after the loop",
                )
                return
        value = substitute(append.value, self.current)
        if append.index is not None:
            written = tuple(substitute(part, self.current) for part in append.index)
            earlier = self.arrays[name][1]
            if Name(self.loop_variable) not in written or not all(
                _apart(written, other) for other in earlier
            ):
                # Each step writes its own entries, so no entry is written twice: what is
                # written there is all its gradient gets.
                builder.refuse(
                    append.origin,
                    f"'{append.text}' may write an entry twice: write once per step, with "
                    "the step's variable as one index (hs[:, t, :] = h)",
                )
                return
            self.arrays[name][1].append(written)
        item = builder.lower(value, "", f"{name}_item", index, top=False)
        self.lists[name].append(item)

    def filling(self, name: str, origin: object) -> Stage | None:
        """The stage that made the array ``name`` a loop writes into, taken out of the
        stages (the loop makes it); None after refusing an array gradgen cannot follow: one
        not made just before the loop by np.zeros/np.ones/np.empty (or their ``_like``),
        the caller's, or one read before the loop fills it."""
        builder = self.builder
        held = unwrap(self.current.get(name, Name("")))
        if isinstance(held, Name) and held.id in self.parameters:
            builder.refuse(
                origin,
                f"the loop writes into '{name}', the caller's array: the forward must not "
                f"change its arguments; fill an array of its own ({name}_2 = "
                f"np.zeros_like({name})) and read that",
            )
            return None
        made = next(
            (s for s in builder.stages if isinstance(held, Name) and s.target == held.id), None
        )
        if made is None or not _makes_an_array(made):
            builder.refuse(
                origin,
                f"the loop writes into '{name}': gradgen fills an array made for it just "
                f"before the loop, by np.zeros, np.ones or np.empty (or their _like)",
            )
            return None
        if any(made.target in stage.reads for stage in all_stages(builder.stages)):
            builder.refuse(
                origin,
                f"'{name}' is read before the loop fills it: read it after the loop",
            )
            return None
        builder.stages.remove(made)
        return made

    def stage_branch(self, branch: Branch) -> None:
        """``if test:``: each side's stages apart; a name either side binds is joined after
        it (``h_3`` is ``h_2`` where the test held, else ``h``)."""
        builder, current = self.builder, self.current
        index = len(self.statements)
        self.statements.append(branch.text)
        if self.refuse_loop_locals(branch.test, branch.origin):
            return
        test = builder.lower_calls_inside(substitute(branch.test, current), "taken", index)
        test = builder.extract_draws(test, "taken", index)
        before = dict(current)
        sides: list[tuple[tuple[Stage, ...], dict[str, Expr]]] = []
        bound_sides: list[set[str]] = []
        outer_stages = builder.stages
        builder.enclosing.append(outer_stages)
        hidden = dict(self.loop_locals)
        self.branch_depth += 1
        for statements, raised in zip((branch.body, branch.orelse), branch.raises, strict=True):
            builder.stages = []
            self.current = dict(before)
            self.stage_all(statements)
            if raised is not None:
                raising = Stage(
                    builder.namer.fresh("raised"),
                    None,
                    (),
                    Const(raised),
                    builder.default_library,
                    index,
                    False,
                    raises=True,
                )
                builder.stages.append(raising)
            sides.append((tuple(builder.stages), self.current))
            bound_sides.append({n for s in _all_statements(statements) for n in _names_bound(s)})
            # What one side binds, the other cannot read.
            for name in bound_sides[-1] - set(before):
                self.loop_locals.setdefault(
                    name,
                    f"'{name}' is bound only in the other branch of '{branch.text}': bind it "
                    "before the 'if' too",
                )
        builder.stages = outer_stages
        builder.enclosing.pop()
        self.branch_depth -= 1
        self.loop_locals = hidden
        self.current = current
        (then, then_values), (orelse, else_values) = sides
        joins: list[tuple[str, Expr, Expr]] = []  # user name, its value on each side
        for name in dict.fromkeys([*sorted(bound_sides[0]), *sorted(bound_sides[1])]):
            if name in before or (name in then_values and name in else_values):
                then_value = then_values.get(name, before.get(name))
                else_value = else_values.get(name, before.get(name))
                if then_value is None or else_value is None:
                    continue
                if then_value == else_value:
                    current[name] = then_value
                    continue
                joins.append((name, then_value, else_value))
                self.loop_locals.pop(name, None)
            else:
                self.loop_locals[name] = (
                    f"'{name}' is bound only in one branch of '{branch.text}': bind it in "
                    "both, or before the 'if'"
                )
                current.pop(name, None)
        then, orelse, joined = self.joined(then, orelse, joins)
        for (name, _, _), join in zip(joins, joined, strict=True):
            current[name] = Name(join.name)
        inner = {t for stage in all_stages([*then, *orelse]) for t in stage.targets}
        for stage in all_stages([*then, *orelse]):
            if stage.loop is not None:
                inner.add(stage.loop.variable)
        outer_reads = [n for s in all_stages([*then, *orelse]) for n in s.reads if n not in inner]
        for join in joined:
            for value in (join.then, join.orelse):
                outer_reads += [n for n in names_in(value) if n not in inner]
        operands = tuple(Name(n) for n in dict.fromkeys(outer_reads))
        target = builder.namer.fresh("taken")
        site = BranchSite(then, orelse, tuple(joined))
        builder.stages.append(
            Stage(target, None, operands, test, builder.default_library, index, False, branch=site)
        )

    def joined(
        self,
        then: tuple[Stage, ...],
        orelse: tuple[Stage, ...],
        joins: list[tuple[str, Expr, Expr]],
    ) -> tuple[tuple[Stage, ...], tuple[Stage, ...], list[Join]]:
        """The joins of an ``if``, named as a person would: where a side's last binding of
        the name is read by nothing else in that side, it binds the joined name itself
        (``h_2 = h * 2`` in one side, ``h_2 = h`` in the other), else a new name does."""
        values = [value for _, *pair in joins for value in pair]
        result = []
        for name, then_value, else_value in joins:
            self.refuse_joined_pieces(name, (then_value, else_value), "bound in a side of an if")
            own = [
                _sole_binding(side, value, values)
                for side, value in ((then, then_value), (orelse, else_value))
            ]
            if own[0] is not None:
                joined = unwrap_name(then_value)
            elif own[1] is not None:
                joined = unwrap_name(else_value)
            else:
                joined = self.bind(name)
            if own[0] is not None and own[1] is not None:
                renamed = _renamed(own[1], unwrap_name(else_value), joined)
                orelse = tuple(renamed if s is own[1] else s for s in orelse)
                else_value = Name(joined)
            result.append(Join(joined, then_value, else_value))
        return then, orelse, result

    def refuse_joined_pieces(self, name: str, values: tuple[Expr, ...], how: str) -> None:
        """A list of pieces (``parts = np.split(x, 2)``) is a list written out, which no
        join of an ``if`` or carried value of a loop holds: refused where it is made."""
        for value in values:
            listed = unwrap(value)
            if isinstance(listed, Sequence_) and self.builder.are_pieces(listed):
                self.builder.refuse(
                    listed.origin,
                    f"'{name}', a list of pieces, is {how}: gradgen does not carry a list of "
                    "pieces across an if or the steps of a loop; unpack them into names "
                    f"(a, b = ...) and rebind those",
                )
                return

    def stage_loop(self, loop: Loop) -> None:
        builder, current = self.builder, self.current
        index = len(self.statements)
        self.statements.append(loop.text)
        repeats_while = loop.target == ""  # ``while test:``, the test read at each step
        iterable = substitute(loop.iterable, current)
        if not repeats_while and not is_inactive(iterable):
            builder.refuse(
                getattr(loop.iterable, "origin", None) or loop.origin,
                "the number of steps must not depend on a value with a gradient",
            )
            return
        if not repeats_while:
            iterable = builder.lower_calls_inside(iterable, loop.target, index)
        assigned = [n for s in _all_statements(loop.body) for n in _names_bound(s)]
        appended = {s.target for s in _all_statements(loop.body) if isinstance(s, Append)}
        outer_lists = self.lists
        outer_depth, self.branch_depth = self.branch_depth, 0
        for name in sorted(appended & set(outer_lists)):
            builder.refuse(
                loop.origin,
                f"'{name}' is filled by an inner loop but made before the outer one: make "
                f"it ('{name} = []') just before the loop that appends to it",
            )
        self.lists = {
            name: [] for name in appended if unwrap(current.get(name, Name(""))) == _EMPTY_LIST
        }
        outer_arrays, self.arrays = self.arrays, {}
        outer_variable = self.loop_variable
        writes = [s for s in loop.body if isinstance(s, Append) and s.index is not None]
        for name in dict.fromkeys(s.target for s in writes):
            if name in outer_arrays or name in self.refused_arrays:
                continue  # refused below, as a list filled by an inner loop; or refused
            first = next(s for s in writes if s.target == name)
            made = self.filling(name, first.origin or loop.origin)
            if made is not None:
                self.arrays[name] = (made, [])
                self.lists[name] = []
            else:
                self.refused_arrays.add(name)
        inner_loops = tuple(s for s in loop.body if isinstance(s, Loop))
        for inner_write in _all_statements(inner_loops):
            if not (isinstance(inner_write, Append) and inner_write.index is not None):
                continue
            name = inner_write.target
            made_outside = name not in assigned  # made before this loop, not in its steps
            if made_outside and name not in self.refused_arrays and name not in self.arrays:
                self.refused_arrays.add(name)
                builder.refuse(
                    inner_write.origin or loop.origin,
                    f"'{name}' is written into by an inner loop: gradgen fills an array in "
                    "one loop, the one just after the array is made (nested loops: write "
                    "each step's row into an array the inner loop fills, then that row)",
                )
        # Each variable the body rebinds that is bound before the loop is carried: the
        # loop's own name for it holds each step's value in, and the last step's value out.
        carried: dict[str, tuple[str, Expr]] = {}
        for name in dict.fromkeys(assigned):
            if name in current and name != loop.target and name not in self.lists:
                carried[name] = (self.bind(name), current[name])
                current[name] = Name(carried[name][0])
        if repeats_while:
            # The test reads what the step starts from: the loop's names for what it carries.
            iterable = substitute(loop.iterable, current)
            variable = ""
        else:
            variable = self.bind(loop.target)
            current[loop.target] = Name(variable)
            self.loop_locals.pop(loop.target, None)  # bound again, by the loop, at every step
        self.loop_variable = variable
        for phi, initial in carried.values():
            start = Stage(phi, None, (), initial, builder.default_library, index, False)
            builder.carried_from[phi] = start
        outer_stages = builder.stages
        builder.enclosing.append(outer_stages)
        builder.stages = []
        updates = len(builder.updates)
        self.stage_all(loop.body)
        body = tuple(builder.stages)
        builder.stages = outer_stages
        builder.enclosing.pop()
        # An update in place of a carried value at a step's start writes into what the
        # previous step ended with: refused where that may be the caller's array too.
        every = builder.every_stage() | {t: s for s in all_stages(body) for t in s.targets}
        for assignment, phi in builder.updates[updates:]:
            ends = [current[user] for user, (start, _) in carried.items() if start == phi]
            shared = sorted(_storages(ends[0], every) & self.parameters) if ends else []
            if shared:
                name = assignment.target
                op = assignment.text.split(" ", 2)[1]
                builder.refuse(
                    assignment.origin,
                    f"'{name} {op}' writes, in the next step, into the caller's array "
                    f"'{shared[0]}' (what '{name}' is at the end of a step): write "
                    f"{name} = {name} {op[:-1]} ...",
                )
        for name, (_, initial) in carried.items():
            self.refuse_joined_pieces(name, (initial, current[name]), "rebound by a loop")
        carries = tuple(
            Carry(phi, initial, current[name]) for name, (phi, initial) in carried.items()
        )
        collected = []
        for name, items in self.lists.items():
            if name in self.arrays:
                # Filled where it was made: it keeps the name of the stage that made it.
                made, indexes = self.arrays[name]
                if items:
                    collected.append(
                        Collected(made.target, tuple(items), made.expr, tuple(indexes))
                    )
                    current[name] = Name(made.target)
                else:
                    builder.stages.append(made)  # refused: put back for the messages
            elif items:
                collected.append(Collected(self.bind(name), tuple(items)))
                current[name] = Name(collected[-1].name)
                builder.lists.add(collected[-1].name)
        self.lists = outer_lists
        self.arrays, self.loop_variable = outer_arrays, outer_variable
        self.branch_depth = outer_depth
        for name in dict.fromkeys(assigned):
            if name not in carried and name not in self.lists:
                self.loop_locals[name] = (
                    f"'{name}' is bound only inside the loop '{loop.text}': bind it before "
                    "the loop too (to the value it has when the loop runs no step)"
                )
                current.pop(name, None)
        for name in carried:
            current[name] = Name(carried[name][0])
        site = LoopSite(variable, body, carries, tuple(collected))
        inner = {variable, *(c.name for c in carries)}
        for stage in all_stages(body):
            inner.update(stage.targets)
            if stage.loop is not None:
                inner.add(stage.loop.variable)
        outer_reads = [n for s in all_stages(body) for n in s.reads if n not in inner]
        outer_reads += [n for c in carries for n in names_in(c.last) if n not in inner]
        outer_reads += [n for c in carries for n in names_in(c.initial)]
        # What a step appends may be a value from outside (hs.append(s), s = 0.0 before it)
        outer_reads += [
            n for c in collected for i in c.items for n in names_in(i) if n not in inner
        ]
        # What makes an array filled, and where it is written (np.zeros((N, T, H)): N)
        filled = [c.made for c in collected if c.made is not None]
        filled += [part for c in collected for index in c.indexes for part in index]
        outer_reads += [n for e in filled for n in names_in(e) if n not in inner]
        operands = tuple(Name(n) for n in dict.fromkeys(outer_reads))
        target = builder.namer.fresh(f"{variable}_steps" if variable else "steps")
        builder.stages.append(
            Stage(
                target,
                None,
                operands,
                iterable,
                builder.default_library,
                index,
                False,
                loop=site,
            )
        )


_LIST_USE = (
    "a list a loop filled is read whole, by np.stack(hs, axis=...), "
    "np.concatenate(hs, axis=...) or sum(hs)"
)


def _apart(index: tuple[Expr, ...], other: tuple[Expr, ...]) -> bool:
    """Do two writes of one step write different entries: different integers at one
    position (``hs[t, 0]`` and ``hs[t, 1]``)?"""
    pairs = [(unwrap(a), unwrap(b)) for a, b in zip(index, other, strict=False)]
    return any(
        isinstance(a, Const)
        and isinstance(b, Const)
        and _integer(a)
        and a.value != b.value
        and _integer(b)
        for a, b in pairs
    )


def _integer(const: Const) -> bool:
    return isinstance(const.value, int) and not isinstance(const.value, bool)


def _makes_an_array(stage: Stage) -> bool:
    """Does ``stage`` make a new array of constants (np.zeros((N, H)), np.ones_like(x))?"""
    made = unwrap(stage.expr)
    return (
        isinstance(made, Call)
        and (made.func.lib, made.func.name) in ARRAY_MAKERS
        and stage.call is None
        and stage.loop is None
        and stage.branch is None
        and not stage.draw
    )


def _reads_list(call: Call, lists: set[str]) -> bool:
    first = unwrap(call.args[0])
    return isinstance(first, Name) and first.id in lists


def _spelling(call: Expr) -> str:
    """How the user's code names the function ``call`` calls (np.linalg.slogdet)."""
    if isinstance(call, Call):
        return call.func.spelling or call.func.name
    return "it"


def _is_stop_gradient(expr: Expr) -> bool:
    return (
        isinstance(expr, Call)
        and (expr.func.lib, expr.func.name) == STOP_GRADIENT
        and len(expr.args) == 1
        and not expr.kwargs
    )


def _several_returned(
    function: ForwardFunction, current: dict[str, Expr], builder: _Builder
) -> tuple[Call, int] | None:
    """``return f(x)`` where ``f`` returns several values: the call and how many."""
    if len(function.results) != 1:
        return None
    plain = unwrap(substitute(function.results[0], current))
    if not (isinstance(plain, Call) and plain.func.lib in (USER, RULE)):
        return None
    count = builder.signatures[plain.func.name].results
    return (plain, count) if count > 1 else None


def _assign(
    value: Expr,
    user_name: str,
    target: str,
    index: int,
    current: dict[str, Expr],
    builder: _Builder,
) -> None:
    """The stages of ``user_name = value`` (``value`` over stage names), bound to ``target``."""
    value = builder.extract_draws(value, user_name, index)
    plain = builder.taken_piece(unwrap(value))
    several = several_results(plain) if isinstance(plain, Call) else None
    count = result_count(several, plain) if several is not None else None
    if several is not None and several.pieces is not None and count is not None:
        # parts = np.split(x, 3): the pieces bound to names of their own (parts0, ...), which
        # parts[0] reads (and np.stack(parts), a, b, c = parts: the list written out)
        pieces = tuple(piece_name(builder.namer, user_name, k) for k in range(count))
        builder.pieces.add(pieces)
        origin = getattr(plain, "origin", None)
        current[user_name] = Sequence_(tuple(Name(p) for p in pieces), "[]", origin)
        builder.lower(plain, pieces[0], user_name, index, top=True, results=pieces)
        return
    if isinstance(plain, Name):
        # `h = x` only names a value again; the gradient flows to x unchanged.
        current[user_name] = plain
        return
    current[user_name] = Name(target)
    if isinstance(plain, Call) and is_draw(plain.func):
        builder.draw(plain, target, user_name, index, top=True)
        return
    if is_inactive(plain) and not _is_stop_gradient(plain):
        plain = builder.lower_calls_inside(plain, user_name, index)
        operands = tuple(Name(n) for n in names_in(plain))
        builder.stages.append(
            Stage(target, None, operands, plain, builder.default_library, index, False)
        )
        return
    builder.lower(value, target, user_name, index, top=True)


_UNPACKABLE = (
    "unpacking works on a call of a function of this module (h, c = step(x)), a tuple "
    "written out (a, b = x, y) and values with no gradient (N, D = x.shape)"
)


def _unpack(
    assignment: Assignment,
    index: int,
    current: dict[str, Expr],
    bind: Callable[[str], str],
    builder: _Builder,
) -> None:
    """The stages of ``a, b = value``."""
    names = assignment.names
    value = substitute(assignment.value, current)
    if not isinstance(unwrap(value), Sequence_):  # a tuple's items are assigned one by one
        value = builder.extract_draws(value, names[0], index)
    plain = unwrap(value)
    if isinstance(plain, Sequence_):
        if len(plain.items) != len(names):
            builder.refuse(
                assignment.origin,
                f"{len(names)} names but {len(plain.items)} values: the counts must match",
            )
            return
        # Every value is read before any name is bound: ``a, b = b, a`` swaps.
        for name, item in zip(names, plain.items, strict=True):
            _assign(item, name, bind(name), index, current, builder)
        return
    if isinstance(plain, Call) and plain.func.lib == USER:
        if not builder.check_result_count(plain, len(names), assignment.origin):
            return
        targets = tuple(bind(name) for name in names)
        for name, target in zip(names, targets, strict=True):
            current[name] = Name(target)
        builder.lower_call(plain, targets, names[0], index, top=True)
        return
    several = several_results(plain) if isinstance(plain, Call) else None
    if several is not None:
        # sign, logdet = np.linalg.slogdet(a): one stage binding both (a, b = np.split(x, 2)
        # too: as many as the sections say, refused where it is lowered if not written out)
        count = result_count(several, plain)
        if count is not None and count != len(names):
            listed = f" ({', '.join(several.results)})" if several.results else ""
            builder.refuse(
                assignment.origin,
                f"{len(names)} names, but '{_spelling(plain)}' returns {count} values{listed}",
            )
            for name in names:
                current[name] = Const("0", 0)
            return
        targets = tuple(bind(name) for name in names)
        for name, target in zip(names, targets, strict=True):
            current[name] = Name(target)
        builder.lower(plain, targets[0], names[0], index, top=True, results=targets)
        return
    if is_inactive(plain):
        # N, D = x.shape: each name is an entry of a value with no gradient. A call inside
        # it (N, D = g(x).shape) is made once, before the value is split into its entries.
        plain = builder.lower_calls_inside(plain, names[0], index)
        for position, name in enumerate(names):
            entry = Subscript(plain, (Const(str(position), position),))
            _assign(entry, name, bind(name), index, current, builder)
        return
    message = _UNPACKABLE
    if isinstance(plain, Call) and is_opaque(plain.func) and not is_draw(plain.func):
        # q, r = np.linalg.qr(a): a function of a library the table does not know
        message = (
            f"'{_spelling(plain)}' is not an operation gradgen can differentiate; {_UNPACKABLE}"
        )
    builder.refuse(getattr(plain, "origin", None) or assignment.origin, message)
    for name in names:
        current[name] = Const("0", 0)


def _refuse_shared_update(
    assignment: Assignment,
    current: Mapping[str, Expr],
    parameters: set[str],
    builder: _Builder,
    refuse: Refuse,
) -> None:
    """``h += x`` on an array writes into ``h``'s memory; gradgen writes ``h = h + x``,
    which is the same only where nothing else shares that memory. Refused where something
    may: a parameter (the forward would change the caller's array), or another variable
    that is ``h``, a view of it, or what a call returned given it."""
    name = assignment.target
    stages = builder.every_stage()
    storage = _storages(current[name], stages)
    op = assignment.text.split(" ", 2)[1]
    written = f"{name} = {name} {op[:-1]} ..."
    for parameter in sorted(storage & parameters):
        how = "" if parameter == name else f" ('{name}' is '{parameter}' or a view of it)"
        refuse(
            assignment.origin,
            f"'{name} {op}' writes into the caller's array '{parameter}'{how}: write {written}",
        )
        return
    for other, value in current.items():
        if other != name and storage & _storages(value, stages):
            refuse(
                assignment.origin,
                f"'{name} {op}' changes '{name}' in place, and '{other}' may share its memory "
                f"(a view, the same array, or a call given it): write {written}",
            )
            return


def _storages(expr: Expr, stages: Mapping[str, Stage]) -> set[str]:
    """The names of the arrays whose memory ``expr``'s value may be (a view, a rename, or
    what a call returned given them count as sharing); empty for a constant."""
    found: set[str] = set()
    pending = [expr]
    while pending:
        value = unwrap(pending.pop())
        if not isinstance(value, Name):
            continue
        if value.id in found:
            continue
        found.add(value.id)
        stage = stages.get(value.id)
        if stage is None:
            continue  # a parameter
        if stage.call is not None or stage.opaque:
            pending.extend(stage.operands)  # it may hand back what it was given
        elif stage.rule is not None and stage.rule.view:
            pending.extend(stage.operands)
        elif stage.rule is None and isinstance(unwrap(stage.expr), Name):
            pending.append(stage.expr)  # a rename
    return found


class _Builder:
    def __init__(
        self,
        namer: Namer,
        default_library: str,
        refuse: Refuse,
        signatures: Mapping[str, Signature],
    ) -> None:
        self.namer = namer
        self.default_library = default_library
        self.refuse = refuse
        self.signatures = signatures
        self.stages: list[Stage] = []
        self.lists: set[str] = set()  # the lists loops filled (``hs`` of ``hs.append(h)``)
        self.lists_read: set[str] = set()
        self.passed_lists: set[str] = set()  # lists passed to a loop over their items
        # The names the pieces of each ``parts = np.split(x, 3)`` are bound to.
        self.pieces: set[tuple[str, ...]] = set()
        # The stages of the blocks around the loop being staged, and each carried value's
        # start as a rename: what an in-place update checks for shared memory.
        self.enclosing: list[list[Stage]] = []
        self.carried_from: dict[str, Stage] = {}
        self.updates: list[tuple[Assignment, str]] = []  # h += x on a carried value
        self.versions: dict[str, str] = {}  # h_2 -> h: a later binding of a user's name

    def every_stage(self) -> dict[str, Stage]:
        """Each name bound so far, in this block and those around it, and its stage."""
        found = dict(self.carried_from)
        for block in [*self.enclosing, self.stages]:
            found.update((t, s) for stage in block for s in all_stages([stage]) for t in s.targets)
        return found

    def check_result_count(self, call: Call, count: int, origin: object = None) -> bool:
        """Does the function ``call`` calls return ``count`` values? Refuses if not."""
        signature = self.signatures.get(call.func.name)
        if signature is None or signature.results == count:
            return True
        returned = f"returns {signature.results} values"
        if signature.results == 1:
            returned = "returns one value"
        if count == 1:
            message = (
                f"'{call.func.name}' {returned}: unpack them into names "
                f"({', '.join(f'r{i + 1}' for i in range(signature.results))} = "
                f"{call.func.name}(...))"
            )
        else:
            message = f"{count} names, but '{call.func.name}' {returned}"
        self.refuse(origin or call.origin, message)
        return False

    def stopped(self, call: Call, target: str, user_target: str, statement: int, top: bool) -> Expr:
        """``gradgen.stop_gradient(v)``: ``v`` computed in stages of its own (so its shape
        is known, as any value's), then a stage with no gradient passing it on."""
        (argument,) = call.args
        name = target if top else temporary_name(self.namer, user_target, "stopped")
        operand = self.lower(argument, name, user_target, statement, top=False)
        expr = Call(call.func, (operand,), origin=call.origin)
        self.stages.append(Stage(name, None, (), expr, self.default_library, statement, not top))
        return Name(name)

    def lower_call(
        self, call: Call, targets: tuple[str, ...], user_target: str, statement: int, top: bool
    ) -> Expr:
        """The stage of a call of a function of the module, bound to ``targets``."""
        # Every function a call names was read (or is a user rule): never a silent zero.
        signature = self.signatures[call.func.name]
        if signature.structured:
            self.refuse(
                call.origin,
                f"'{call.func.name}' takes a dict or list of arrays "
                f"('{signature.structured[0]}'): calls of such functions are not supported "
                "yet; give it the arrays as parameters of their own",
            )
            return Const("0", 0)
        arguments = self.bind_arguments(call, signature)
        if arguments is None:
            return Const("0", 0)
        for parameter, value in zip(signature.parameters, arguments, strict=True):
            if parameter.name not in signature.sequences:
                continue
            # Its gradient is a list the callee hands back: one such read makes it whole;
            # two would be added as lists are (joined), not item by item.
            names = names_in(value)
            if names and names[0] in self.passed_lists:
                self.refuse(
                    call.origin,
                    f"'{names[0]}' is passed a second time to a function that loops over its "
                    f"items ('{call.func.name}'): pass a list of layers to one such call",
                )
                return Const("0", 0)
            self.passed_lists.update(names)
        operands = tuple(
            self.lower(value, targets[0], user_target, statement, top=False) for value in arguments
        )
        cache = "" if signature.rule else self.namer.fresh(f"{targets[0]}_cache")
        parameters = tuple(p.name for p in signature.parameters)
        site = CallSite(call.func.name, parameters, targets, cache, signature.rule)
        expr = Call(call.func, operands, origin=call.origin)
        self.stages.append(
            Stage(
                targets[0],
                None,
                operands,
                expr,
                self.default_library,
                statement,
                not top,
                call=site,
            )
        )
        return Name(targets[0])

    def bind_arguments(self, call: Call, signature: Signature) -> list[Expr] | None:
        """The call's arguments in the order of the callee's parameters (defaults filled)."""
        parameters = signature.parameters
        name = call.func.name
        if len(call.args) > len(parameters):
            self.refuse(
                call.origin,
                f"'{name}' takes {len(parameters)} arguments but {len(call.args)} are given",
            )
            return None
        given: dict[str, Expr] = {p.name: a for p, a in zip(parameters, call.args, strict=False)}
        for keyword, value in call.kwargs:
            if keyword not in {p.name for p in parameters}:
                self.refuse(call.origin, f"'{name}' has no parameter '{keyword}'")
                return None
            if keyword in given:
                self.refuse(call.origin, f"'{name}' is given '{keyword}' twice")
                return None
            given[keyword] = value
        arguments = []
        for parameter in parameters:
            if parameter.name in given:
                arguments.append(given[parameter.name])
            elif parameter.default is not None:
                arguments.append(parameter.default)
            else:
                self.refuse(call.origin, f"'{name}' is missing its argument '{parameter.name}'")
                return None
        return arguments

    def lower(
        self,
        expr: Expr,
        target: str,
        user_target: str,
        statement: int,
        top: bool,
        results: tuple[str, ...] = (),
    ) -> Expr:
        """Stages computing ``expr``; returns the operand that holds its value. ``results``:
        the names of the several results of the operation ``expr`` is (unpacked)."""
        plain = self.taken_piece(unwrap(expr))
        if isinstance(plain, Call) and _is_stop_gradient(plain):
            return self.stopped(plain, target, user_target, statement, top)
        if isinstance(plain, Sequence_) and self.are_pieces(plain):
            # `return parts`, `np.sum(parts)` of parts = np.split(x, 2): where the list is
            # made (the names it is read by are gone once substituted)
            self.refuse(
                plain.origin,
                f"the pieces made here are read as a list (to compute '{user_target}'): "
                "read them by place "
                "(parts[0]), unpack them (a, b = parts) or join them (np.stack(parts), "
                "np.concatenate(parts)); gradgen reads a list of pieces no other way",
            )
            return Const("0", 0)
        if isinstance(plain, Name):
            # `(h) * c`: the operand is the variable itself, parentheses aside; a Group
            # around it would not be taken for a variable, and its gradient lost.
            if plain.id in self.lists:
                self.refuse(plain.origin or getattr(expr, "origin", None), _LIST_USE)
                return Const("0", 0)
            return plain
        if isinstance(plain, Call) and plain.args and _reads_list(plain, self.lists):
            if (plain.func.lib, plain.func.name) == LENGTH:
                return plain  # how many items: a number, read as written (no gradient)
            return self.list_read(plain, target, user_target, statement, top)
        if is_inactive(plain) and not results:
            # (several results are bound by a stage of their own, with a gradient or not:
            # sign, logdet = np.linalg.slogdet(A) of data)
            return self.lower_calls_inside(expr, user_target, statement)
        if isinstance(plain, Call) and plain.func.lib == USER:
            if not self.check_result_count(plain, 1):
                return Const("0", 0)
            name = target if top else temporary_name(self.namer, user_target, plain.func.name)
            return self.lower_call(plain, (name,), user_target, statement, top)
        if isinstance(plain, Call) and is_draw(plain.func):
            return self.draw(plain, target, user_target, statement, top)
        if isinstance(plain, Call) and is_opaque(plain.func):
            return self.opaque(plain, target, user_target, statement, top)
        if isinstance(plain, Subscript):
            taken = self.taken_result(plain, target, user_target, statement, top)
            if taken is not None:
                return taken
        try:
            canonical = canonical_call(plain) if isinstance(plain, Call) else plain
        except ValueError as problem:
            self.refuse(getattr(plain, "origin", None), str(problem))
            return Const("0", 0)
        unlisted: Rule | None = None  # a variadic rule given no list written out
        for rule, form in _candidates(canonical):
            bindings: dict[str, Expr] = {}
            if not _match(form, canonical, bindings):
                continue
            if rule.variadic and not isinstance(unwrap(bindings[rule.inputs[0]]), Sequence_):
                unlisted = unlisted or rule  # np.array(x) is another row's
                continue
            if rule.applies_when is not None and not rule.applies_when(
                rule_literals(rule, bindings)
            ):
                continue  # np.linalg.svd(x, compute_uv=False) is another row's
            nondiff = tuple((n, bindings[n]) for n in rule.nondiff)
            for variable, value in nondiff:
                if variable in rule.literal and literal_value(value) is NOT_LITERAL:
                    self.refuse(
                        getattr(value, "origin", None) or getattr(plain, "origin", None),
                        f"'{variable}' must be a literal here (a number, a tuple of numbers, "
                        "a string, True, False or None): the backward is written for it",
                    )
            wrong = rule.check(rule_literals(rule, bindings)) if rule.check else None
            if wrong is None and rule.refuse_when is not None:
                wrong = rule.refuse_when(bindings)
            if rule.results and len(results) != len(rule.results):
                listed = ", ".join(rule.results)
                wrong = (
                    f"'{_spelling(plain)}' returns {len(rule.results)} values ({listed}): "
                    f"unpack them ({listed} = ...) or take one ([{len(rule.results) - 1}])"
                )
            count = rule.result_count(rule_literals(rule, bindings))
            if wrong is None and rule.pieces is not None and count not in (None, len(results)):
                listed = ", ".join(f"p{k}" for k in range(count or 0))
                wrong = (
                    f"'{_spelling(plain)}' returns {count} pieces: unpack them ({listed} "
                    f"= ...), take one ([0] to [{(count or 0) - 1}]), or bind them to a name "
                    "and take them by place (parts[0])"
                )
            if wrong is not None:
                self.refuse(getattr(plain, "origin", None), wrong)
                return Const("0", 0)
            if results:
                name = results[0]
            else:
                name = target if top else temporary_name(self.namer, user_target, rule.name)
            inputs = [bindings[i] for i in rule.inputs]
            lowered = inputs
            if rule.variadic:
                items = unwrap(inputs[0])
                assert isinstance(items, Sequence_) and isinstance(plain, Call)
                inputs = list(items.items)
                # np.array([[c, -s], [s, c]]): each row a call of its own, as if written
                # np.array([np.array([c, -s]), np.array([s, c])])
                lowered = [
                    Call(plain.func, (item,), (), origin=getattr(item, "origin", None))
                    if rule.nests and isinstance(unwrap(item), Sequence_)
                    else item
                    for item in inputs
                ]
            operands = tuple(
                self.lower(value, name, user_target, statement, top=False) for value in lowered
            )
            # An axis, a condition or an index is computed as written: a call inside it
            # (np.where(g(x) > 0, ...)) is a stage of its own all the same.
            called = {
                id(call): self.lower(call, name, user_target, statement, top=False)
                for _, value in nondiff
                for call in _lowered_alone_inside(value)
            }
            nondiff = tuple((n, replace_nodes(value, called)) for n, value in nondiff)
            computed = replace_nodes(
                plain,
                {id(value): op for value, op in zip(inputs, operands, strict=True)} | called,
            )
            library = form_library(form) or self.default_library
            self.stages.append(
                Stage(
                    name,
                    rule,
                    operands,
                    computed,
                    library,
                    statement,
                    not top,
                    nondiff,
                    results=results,
                )
            )
            return Name(name)
        if unlisted is not None:
            self.refuse(
                getattr(plain, "origin", None),
                f"'{unlisted.name}' needs a list or tuple written out: [a, b, ...]",
            )
            return Const("0", 0)
        self.refuse(getattr(plain, "origin", None), _no_rule_message(plain))
        return Const("0", 0)

    def are_pieces(self, listed: Sequence_) -> bool:
        """Is ``listed`` the list of pieces of a ``parts = np.split(x, 3)``?"""
        if not all(isinstance(item, Name) for item in listed.items):
            return False
        return tuple(item.id for item in listed.items) in self.pieces  # type: ignore[union-attr]

    def taken_piece(self, expr: Expr) -> Expr:
        """``parts[1]`` of ``parts = np.split(x, 3)`` (the pieces' list written out, read
        by a whole number written out): the piece's name; ``expr`` itself otherwise."""
        if not isinstance(expr, Subscript):
            return expr
        listed = unwrap(expr.value)
        if not isinstance(listed, Sequence_):
            return expr
        if not self.are_pieces(listed):
            return expr
        count = len(listed.items)
        position = literal_value(expr.index[0]) if len(expr.index) == 1 else None
        if type(position) is not int or not -count <= position < count:
            self.refuse(
                expr.origin,
                f"take one of the {count} pieces by a whole number written out ([0] to "
                f"[{count - 1}]), or unpack them",
            )
            return Const("0", 0)
        return listed.items[position]

    def taken_result(
        self, index: Subscript, target: str, user_target: str, statement: int, top: bool
    ) -> Expr | None:
        """``np.linalg.slogdet(a)[1]``: one of an operation's several results, all bound to
        names of their own (the one taken to ``target`` at the top of a statement); None
        where ``index`` is not of such a call."""
        call = unwrap(index.value)
        several = several_results(call) if isinstance(call, Call) else None
        if several is None:
            return None
        position = literal_value(index.index[0]) if len(index.index) == 1 else None
        count = result_count(several, call)
        if count is None:  # sections not written out: refused where the call is lowered
            self.lower(call, target, user_target, statement, top=False, results=(target,))
            return Const("0", 0)
        if type(position) is not int or not -count <= position < count:
            self.refuse(
                index.origin,
                f"take one of the {count} results of '{_spelling(call)}' by a whole number "
                f"written out ([0] to [{count - 1}]), or unpack them",
            )
            return Const("0", 0)
        results = several.results or tuple(several.name for _ in range(count))
        names = tuple(
            target
            if top and place == position % count
            else temporary_name(self.namer, user_target, result)
            for place, result in enumerate(results)
        )
        self.lower(call, names[0], user_target, statement, top=False, results=names)
        return Name(names[position])

    def list_read(
        self, call: Call, target: str, user_target: str, statement: int, top: bool
    ) -> Expr:
        """``np.stack(hs, axis=1)`` of a list a loop filled: one stage over the list."""
        rule = LIST_RULES.get((call.func.lib or "", call.func.name))
        if rule is None:
            self.refuse(call.origin, _LIST_USE)
            return Const("0", 0)
        try:
            canonical = canonical_call(call)
        except ValueError as problem:
            self.refuse(call.origin, str(problem))
            return Const("0", 0)
        bindings: dict[str, Expr] = {}
        if not _match(rule.forms[0], canonical, bindings):
            self.refuse(call.origin, _LIST_USE)
            return Const("0", 0)
        nondiff = tuple((n, bindings[n]) for n in rule.nondiff)
        for variable, value in nondiff:
            if not isinstance(literal_value(value), int):
                self.refuse(
                    getattr(value, "origin", None) or call.origin,
                    f"'{variable}' must be a whole number written out here: the backward "
                    "is written for it",
                )
                return Const("0", 0)
        name = target if top else temporary_name(self.namer, user_target, rule.name)
        operand = unwrap(bindings["xs"])
        assert isinstance(operand, Name)
        if operand.id in self.lists_read:
            # Its gradient is a list taken back item by item: one reader only.
            self.refuse(call.origin, f"'{operand.id}' is read twice: read the list once")
            return Const("0", 0)
        self.lists_read.add(operand.id)
        library = form_library(rule.forms[0]) or self.default_library
        self.stages.append(
            Stage(name, rule, (operand,), call, library, statement, not top, nondiff)
        )
        return Name(name)

    def extract_draws(self, expr: Expr, user_target: str, statement: int) -> Expr:
        """``expr`` with every draw inside it a stage of its own (innermost first), read by
        name: written inline, a draw would be drawn again wherever its value is read (an
        adjoint, a recomputed line), and two alike would be taken for one value. A draw
        that is ``expr`` itself is left for the caller to bind."""

        def visit(node: Expr, top: bool) -> Expr:
            if not has_draw(node):
                return node
            inside = top and isinstance(node, Group)
            node = map_children(node, lambda child: visit(child, inside))
            if not top and isinstance(node, Call) and is_draw(node.func):
                return self.draw(node, "", user_target, statement, top=False)
            return node

        return visit(expr, True)

    def lower_calls_inside(self, expr: Expr, user_target: str, statement: int) -> Expr:
        """``expr``, a value computed as written (one with no gradient, an opaque call, a
        draw's size), with every call of the module's functions and every draw inside it a
        stage of its own, read by name. Written inline, such a call would be written in the
        generated module as a call of the forward function, which the module does not
        define; as a stage, it runs through the callee's F_forward like any other call. No
        gradient flows through it here, so the backward of the callee is not called."""
        found = _lowered_alone_inside(expr)
        if not found:
            return expr
        lowered = {
            id(call): self.lower(call, "", user_target, statement, top=False) for call in found
        }
        return replace_nodes(expr, lowered)

    def draw(self, call: Call, target: str, user_target: str, statement: int, top: bool) -> Name:
        """A stage drawing random numbers: a value with no gradient, like an opaque call
        (refused where a gradient would have to flow into its arguments)."""
        name = target if top else temporary_name(self.namer, user_target, call.func.name)
        call = self.extract_draws(call, user_target, statement)  # type: ignore[assignment]
        assert isinstance(call, Call)
        # Distribution parameters that compute something (``sigma * 2``, a call of the
        # module's functions) are stages of their own, as any operation's operands are; a
        # size, a shape or a tuple is written as it is.
        generator = call.args[: len(call.args) + len(call.kwargs) - len(written_arguments(call))]
        parameters = set(draw_parameters(call))
        written = list(written_arguments(call))
        for position, value in enumerate(written):
            if position in parameters and not isinstance(unwrap(value), Sequence_):
                written[position] = self.lower(value, name, user_target, statement, top=False)
            else:  # a size (g(x).shape), a tuple: as written, a call in it lowered all the same
                written[position] = self.lower_calls_inside(value, user_target, statement)
        positional = len(written) - len(call.kwargs)
        kwargs = tuple(
            (key, value) for (key, _), value in zip(call.kwargs, written[positional:], strict=True)
        )
        drawn = Call(call.func, (*generator, *written[:positional]), kwargs, origin=call.origin)
        # Only its distribution parameters (``loc`` of ``normal``, not a size) could take a
        # gradient: a gradient that would have to flow there is refused.
        operands = tuple(
            Name(n)
            for n in dict.fromkeys(
                found
                for position in draw_parameters(drawn)
                for found in gradient_names(written[position])
            )
        )
        self.stages.append(
            Stage(
                name,
                None,
                operands,
                drawn,
                self.default_library,
                statement,
                not top,
                opaque=True,
                draw=True,
            )
        )
        return Name(name)

    def opaque(self, call: Call, target: str, user_target: str, statement: int, top: bool) -> Expr:
        """A stage computing ``call``, a function with no rule, as written."""
        name = target if top else temporary_name(self.namer, user_target, call.func.name)
        lowered = self.lower_calls_inside(call, user_target, statement)
        assert isinstance(lowered, Call)
        call = lowered
        operands = tuple(Name(n) for n in gradient_names(call))
        library = self.default_library
        self.stages.append(
            Stage(name, None, operands, call, library, statement, not top, opaque=True)
        )
        return Name(name)


def is_inactive(expr: Expr) -> bool:
    """True when no gradient can flow through ``expr`` whatever its variables hold: a
    constant, a comparison (a mask), a shape, a call of a function with no gradient."""
    # Operator chains are followed with a stack, not recursion, and each leaf is looked at
    # once: `lower` asks this of every level of a deeply nested expression, which must not
    # cost the depth squared (or cubed) nor the stack.
    pending = [expr]
    while pending:
        node = unwrap(pending.pop())
        if isinstance(node, BinOp) and node.op in NO_GRADIENT_OPERATORS:
            continue  # x // y: whole numbers, piecewise constant, like a comparison
        if isinstance(node, (BinOp, UnaryOp)):
            # Inactive when every operand is (a constant operation's operands are constant).
            pending.extend(children(node))
        elif isinstance(node, Subscript):
            pending.append(node.value)  # indexing something with no gradient: none either
        elif isinstance(node, Call) and is_draw(node.func):
            return False  # a stage of its own, never written inline (extract_draws)
        elif isinstance(node, Call) and is_opaque(node.func):
            pending.extend(children(node))  # a function with no rule, of such values: none
        elif not isinstance(node, Compare) and not _inactive_leaf(node):
            return False
    return True


def _lowered_alone_inside(expr: Expr) -> list[Call]:
    """The calls inside ``expr`` that are stages of their own wherever they are (a call of
    the module's functions or of a user rule, a draw), outermost only (the stage of one
    lowers what its arguments hold), left to right."""
    found: list[Call] = []
    pending = [expr]
    while pending:  # a stack, not recursion: expressions may nest a thousand deep
        node = pending.pop()
        if isinstance(node, Call) and (node.func.lib == USER or is_draw(node.func)):
            found.append(node)
            continue
        pending.extend(reversed(children(node)))
    return found


def has_draw(expr: Expr) -> bool:
    """Does ``expr`` draw random numbers anywhere inside?"""
    return any(isinstance(node, Call) and is_draw(node.func) for node in walk(expr))


def gradient_names(expr: Expr) -> list[str]:
    """The variables a gradient could flow into ``expr`` from: those it reads outside its
    parts with no gradient (not x in ``x.shape[0]``, nor an index)."""
    found: dict[str, None] = {}
    pending = [expr]
    while pending:
        node = unwrap(pending.pop())
        if isinstance(node, Name):
            found.setdefault(node.id)
        elif isinstance(node, Subscript):
            pending.append(node.value)
        elif not is_inactive(node):
            pending.extend(reversed(children(node)))
    return list(found)


def _inactive_leaf(expr: Expr) -> bool:
    if isinstance(expr, Call) and expr.func.lib in (USER, RULE):
        # A call of the module's functions is a stage of its own even with constant
        # arguments: the generated module runs it through the callee's F_forward.
        return False
    if is_constant(expr):
        return True
    if isinstance(expr, Call):
        return without_gradient(expr)
    if isinstance(expr, Attribute):
        return expr.name in NONDIFFERENTIABLE_ATTRIBUTES
    return False


def _no_rule_message(expr: Expr) -> str:
    if isinstance(expr, Call):
        count = len(expr.args)
        plural = "argument" if count == 1 else "arguments"
        return f"'{expr.func.spelling}' with {count} {plural} is not supported"
    return "gradgen has no rule for this expression"


def _match(pattern: Expr, expr: Expr, bindings: dict[str, Expr]) -> bool:
    """Does ``expr`` have the shape of ``pattern``? Pattern variables bind subexpressions."""
    pattern = unwrap(pattern)
    plain = unwrap(expr)
    if isinstance(pattern, Name):
        bound = bindings.get(pattern.id)
        if bound is None:
            bindings[pattern.id] = expr
            return True
        return _same(bound, expr)
    if isinstance(pattern, Const):
        return isinstance(plain, Const) and plain.value is not None and plain.value == pattern.value
    if type(pattern) is not type(plain):
        return False
    if isinstance(pattern, Attribute):
        assert isinstance(plain, Attribute)
        return pattern.name == plain.name and _match(pattern.value, plain.value, bindings)
    if isinstance(pattern, Subscript):
        # `x[i]`: i stands for the whole index, whatever its parts.
        assert isinstance(plain, Subscript)
        index_variable = unwrap(pattern.index[0])
        assert isinstance(index_variable, Name)
        bindings[index_variable.id] = Sequence_(plain.index)
        return _match(pattern.value, plain.value, bindings)
    if isinstance(pattern, Call):
        assert isinstance(plain, Call)
        same_function = (pattern.func.lib, pattern.func.name) == (plain.func.lib, plain.func.name)
        if not same_function:
            return False
        starred = pattern.args[-1] if pattern.args else None
        if isinstance(starred, UnaryOp) and starred.op == "*":
            # ``numpy.einsum(subscripts, *x)``: x stands for the arguments after the others
            # (one at least), as a tuple of them, which a variadic rule's x is.
            fixed = len(pattern.args) - 1
            if len(plain.args) <= fixed or not _match(
                starred.operand, Sequence_(plain.args[fixed:]), bindings
            ):
                return False
            pairs = zip(pattern.args[:fixed], plain.args[:fixed], strict=True)
            return all(_match(p, e, bindings) for p, e in pairs)
        if len(pattern.args) != len(plain.args):
            return False
        pairs = zip(pattern.args, plain.args, strict=True)
        return all(_match(p, e, bindings) for p, e in pairs)
    children_p = _operands(pattern)
    children_e = _operands(plain)
    if children_p is None or children_e is None or children_p[0] != children_e[0]:
        return False
    trial = dict(bindings)
    if all(_match(p, e, trial) for p, e in zip(children_p[1], children_e[1], strict=True)):
        bindings.update(trial)
        return True
    if children_p[0] in ("+", "*") and len(children_e[1]) == 2:
        # Addition and multiplication commute: `exp(-x) + 1` is the sigmoid's `1 + exp(-x)`.
        trial = dict(bindings)
        swapped = (children_e[1][1], children_e[1][0])
        if all(_match(p, e, trial) for p, e in zip(children_p[1], swapped, strict=True)):
            bindings.update(trial)
            return True
    return False


def _operands(expr: Expr) -> tuple[str, tuple[Expr, ...]] | None:
    if isinstance(expr, (BinOp, Compare)):
        return expr.op, (expr.left, expr.right)
    if isinstance(expr, UnaryOp):
        return "unary" + expr.op, (expr.operand,)
    return None


def _same(a: Expr, b: Expr) -> bool:
    """Do ``a`` and ``b`` compute the same thing, parentheses aside?"""
    # A pattern variable seen twice (`x * x`) is compared with what it bound: side by side
    # with a stack, stopping at the first difference, so a deep operand costs no recursion
    # and, compared with a small one, next to nothing.
    pending = [(a, b)]
    while pending:
        left, right = pending.pop()
        left, right = unwrap(left), unwrap(right)
        if _shallow(left) != _shallow(right):
            return False
        if isinstance(left, Call) and left.func.lib in (USER, RULE):
            return False  # each call of the module's functions is a stage of its own
        pending.extend(zip(children(left), children(right), strict=True))
    return True


def _shallow(expr: Expr) -> tuple[object, ...]:
    """Everything ``expr`` holds except its subexpressions (and where it came from)."""
    if isinstance(expr, Name):
        return (Name, expr.id)
    if isinstance(expr, Const):
        return (Const, expr.text, expr.value)
    if isinstance(expr, Call):
        return (Call, expr.func, len(expr.args), tuple(key for key, _ in expr.kwargs))
    if isinstance(expr, Attribute):
        return (Attribute, expr.name)
    if isinstance(expr, Slice):
        return (Slice, expr.lower is None, expr.upper is None, expr.step is None)
    if isinstance(expr, Subscript):
        return (Subscript, len(expr.index))
    if isinstance(expr, Sequence_):
        return (Sequence_, expr.brackets, len(expr.items))
    if isinstance(expr, (BinOp, UnaryOp, Compare)):
        return (type(expr), expr.op)
    return (type(expr),)
