"""A module's functions as one program: who calls whom, and which backwards each call needs.

A forward function may call other functions of its module (``h = relu(affine(x, w, b))``).
Each callee is differentiated once, on its own, and its caller's backward calls the callee's
backward, as the CS231n layers do (``affine_relu_backward`` calling ``affine_backward`` with
the caches): the caller's forward pass runs ``affine_forward``, which returns the value and
the cache of what the backward reads, and its reverse pass hands that cache to
``affine_cached_backward``. No forward value is computed twice.

A call needs only the gradients of the arguments that carry one: ``affine(X, W1, b1)`` with
data ``X`` calls a backward with respect to ``(w, b)`` alone, so the composed program does
the work the same code written flat would do, no more. Each (callee, gradients) pair is one
generated function; all of a callee's backwards read one cache, made by one ``F_forward``.

Recursion (a function calling itself, directly or not) is refused: the backward of a call
is generated from the callee's text, which must be differentiated first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import libcst as cst

from gradgen.expr import RULE, USER, Call, Name, is_constant, names_in, render, unwrap, walk
from gradgen.forward_lines import every_kept, forward_lines, shape_only, with_steps_kept
from gradgen.helpers import HELPERS
from gradgen.infer import infer_shapes
from gradgen.invariance import stop_invariant_shifts
from gradgen.ir import BackwardFunction, ForwardLine
from gradgen.naming import Namer, cached_backward_name, forward_function_name
from gradgen.parse import (
    ForwardFunction,
    Item,
    Loop,
    ModuleContext,
    ParsedModule,
    is_array_code,
    not_forward,
    read_functions,
)
from gradgen.parse_rules import UserRule, read_rules
from gradgen.reverse import array_test_refusals, opaque_refusals, relevant_values, reverse
from gradgen.shapes import SCALAR, Shape
from gradgen.stages import Signature, StagedFunction, stage_function


@dataclass(frozen=True)
class DrawSite:
    """Where a function draws random numbers: in its own code, or in a function it calls
    (at any depth). Such a function has no backward that recomputes its forward."""

    function: str  # the function whose code draws
    spelling: str  # the draw, as written: "np.random.randn", "rs.randn", "rng.random"
    node: object  # the draw's libcst node, for a located message

    def reason(self, name: str) -> str:
        """``f draws random numbers (rs.randn)``, or ``f calls g, which draws ...``."""
        if self.function == name:
            return f"{name} draws random numbers ({self.spelling})"
        return f"{name} calls {self.function}, which draws random numbers ({self.spelling})"


@dataclass(frozen=True)
class FunctionBackwards:
    """Everything the generated module holds for one forward function."""

    staged: StagedFunction
    public: BackwardFunction | None  # F_backward as asked for; None: only called by others
    # The backwards its callers call, each reading the cache ``F_forward`` makes: (name,
    # backward), one per set of gradients a call needs.
    cached: tuple[tuple[str, BackwardFunction], ...] = ()
    forward: tuple[ForwardLine, ...] = ()  # F_forward's lines, when ``called``
    cache: tuple[str, ...] = ()  # what F_forward hands to every cached backward
    like: frozenset[str] = frozenset()  # of the cache, what every backward reads the shape of
    called: bool = False  # called by another function: the module defines F_forward
    # Where it draws random numbers, if it does: F_backward that recomputes the forward is
    # not generated (it would draw other numbers); F_value_and_grad and pairs are.
    draws: DrawSite | None = None


@dataclass(frozen=True)
class Program:
    """The functions of a module to generate, callees included, and the user rules they
    call (copied into the generated module)."""

    functions: tuple[FunctionBackwards, ...]
    rules: tuple[UserRule, ...] = ()
    # The imports and constants of every module the functions come from (the module's
    # own, and those of the forward modules it imports functions from).
    context: ModuleContext = field(default_factory=ModuleContext)
    # The functions from other forward modules: name -> (that module, its file relative to
    # the importing file's folder), for the header's digests.
    origins: Mapping[str, tuple[ParsedModule, str]] = field(default_factory=dict)


def compile_program(
    parsed: ParsedModule,
    only: Sequence[str] | None,
    wrt: Mapping[str, Sequence[str]] | None,
    pairs: bool,
) -> Program:
    """The backwards of the module's functions (or of ``only``, and what they call, in
    this module or in the forward modules it imports functions from)."""
    rules = _all_rules(parsed)
    requested = _read(parsed, only, rules)
    functions, modules = _with_callees(parsed, requested, rules)
    order = _callees_first(parsed, functions)
    chosen = _chosen_wrt(parsed, requested, wrt)
    context = _program_context(parsed, functions, modules)
    staged = _stage(parsed, context, functions, order, rules)
    nodes = {name: f.node.name for name, f in functions.items()}
    program = _Program(staged, chosen, pairs, rules, parsed, nodes)
    built = program.build([f.name for f in requested])
    _refuse_hidden_functions(parsed, built, functions, program)
    called = {s.call.function for f in built for s in f.staged.all_stages if s.call is not None}
    origins = {
        name: (module, _origin(parsed, module))
        for name, module in modules.items()
        if module is not parsed and name in staged
    }
    used_rules = tuple(r for name, r in rules.items() if name in called)
    for rule in used_rules:
        if rule.forward in modules and modules[rule.forward] is not parsed:
            origins[rule.forward] = (modules[rule.forward], _origin(parsed, modules[rule.forward]))
    return Program(tuple(built), used_rules, context, origins)


def _all_rules(parsed: ParsedModule) -> dict[str, UserRule]:
    """The user rules of the module and of the forward modules it imports from."""
    rules: dict[str, UserRule] = {}
    for module in parsed.imported_modules():
        for name, rule in read_rules(module).items():
            rules.setdefault(name, rule)
        module.raise_problems()
    return rules


def _origin(parsed: ParsedModule, module: ParsedModule) -> str:
    return next(
        linked.origin
        for importer in parsed.imported_modules()
        for linked in importer.linked.values()
        if linked.module is module
    )


def _read(
    parsed: ParsedModule, only: Sequence[str] | None, rules: Mapping[str, UserRule]
) -> list[ForwardFunction]:
    if only is None:
        # A rule's functions are not differentiated: its backward is the user's. Nor are
        # the functions the module runs when imported (a data loader) or that take no
        # parameter (a script's main).
        skip = set(rules) | {rule.backward for rule in rules.values()} | not_forward(parsed)
        return read_functions(parsed, skip=skip)
    return [f for name in dict.fromkeys(only) for f in read_functions(parsed, name)]


def _with_callees(
    parsed: ParsedModule, requested: list[ForwardFunction], rules: Mapping[str, UserRule]
) -> tuple[dict[str, ForwardFunction], dict[str, ParsedModule]]:
    """``requested`` and every function they call, at any depth (user rules aside), and
    the module that defines each (this one, or one it imports functions from)."""
    functions = {f.name: f for f in requested}
    modules = {f.name: parsed for f in requested}
    pending = [(name, parsed) for f in requested for name in f.calls]
    while pending:
        name, caller = pending.pop()
        module = caller.defining_module(name)
        assert module is not None, name  # the parser made it a call only if it is defined
        if name in modules and modules[name] is not module:
            parsed.refuse(
                _import_of(caller, name),
                f"two functions named '{name}' are called ({modules[name].filename} and "
                f"{module.filename}): the generated module names its functions after "
                "them; rename one",
            )
            continue
        if name in functions or name in rules:
            continue
        (callee,) = read_functions(module, name)
        if module is not parsed:
            for data, node in callee.data:
                module.refuse(
                    node,
                    f"'{data}' is module data of {module.filename}, read by '{name}', which "
                    f"{parsed.filename} calls: gradgen imports module data only from the "
                    "module it generates from; pass the value in as a parameter",
                )
            module.raise_problems()
        functions[name] = callee
        modules[name] = module
        pending.extend((called, module) for called in callee.calls)
    parsed.raise_problems()
    for name, rule in rules.items():
        modules.setdefault(name, _module_of_rule(parsed, rule))
    return functions, modules


def _module_of_rule(parsed: ParsedModule, rule: UserRule) -> ParsedModule:
    for module in parsed.imported_modules():
        if any(f is rule.forward_node for f in module.functions):
            return module
    return parsed


def _import_of(module: ParsedModule, name: str) -> cst.CSTNode:
    """Where ``module`` binds the function ``name`` it calls: its import, or its def."""
    for linked in module.linked.values():
        if linked.name == name:
            return linked.node
    return next((f.name for f in module.functions if f.name.value == name), module.module)


def _program_context(
    parsed: ParsedModule,
    functions: Mapping[str, ForwardFunction],
    modules: Mapping[str, ParsedModule],
) -> ModuleContext:
    """The imports and constants the generated module may need: the module's own, then
    those of each other module a function comes from. One name bound to two different
    things is refused: the generated module has one namespace."""
    context = parsed.context
    others = list({id(m): m for m in modules.values() if m is not parsed}.values())
    if not others:
        return context
    merged = replace(
        context,
        imports=dict(context.imports),
        constants=dict(context.constants),
        other_names=set(context.other_names),
    )
    for module in others:
        where = _import_of(parsed, next(n for n, m in modules.items() if m is module))
        for name, binding in module.context.imports.items():
            if merged.imports.setdefault(name, binding) != binding:
                parsed.refuse(
                    where,
                    f"'{name}' is '{binding.statement()}' in {module.filename} and "
                    f"'{merged.imports[name].statement()}' here: the generated module holds "
                    "both modules' functions, so a name must mean one thing",
                )
        for name, value in module.context.constants.items():
            if merged.constants.setdefault(name, value) != value:
                parsed.refuse(
                    where,
                    f"the constant '{name}' has one value in {module.filename} and another "
                    "here: the generated module holds both modules' functions, so a name "
                    "must mean one thing",
                )
    parsed.raise_problems()
    return merged


def _callees_first(parsed: ParsedModule, functions: dict[str, ForwardFunction]) -> list[str]:
    """The functions in an order where each comes after the functions it calls; refuses
    recursion, naming the cycle."""
    order: list[str] = []
    state: dict[str, str] = {}  # "open" while its callees are visited, then "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = [*path[path.index(name) :], name]
            message = "recursion is not supported: " + " calls ".join(f"'{n}'" for n in cycle)
            parsed.refuse(functions[name].node.name, message)
            return
        state[name] = "open"
        for callee in functions[name].calls:
            if callee in functions:  # a user rule's function is not read: no recursion
                visit(callee, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in functions:
        visit(name, [])
    parsed.raise_problems()
    return order


def _chosen_wrt(
    parsed: ParsedModule,
    requested: list[ForwardFunction],
    wrt: Mapping[str, Sequence[str]] | None,
) -> dict[str, tuple[str, ...] | None]:
    chosen: dict[str, tuple[str, ...] | None] = {}
    for function in requested:
        names = None if wrt is None else wrt.get(function.name, wrt.get("*"))
        parameters = [p.name for p in function.signature or function.parameters]
        for name in names or ():
            if name not in parameters:
                message = f"wrt names '{name}', which is not a parameter of '{function.name}'"
                parsed.refuse(function.node.name, message)
        # A structured parameter stands for all its leaves (structure.py).
        leaves = {s.name: tuple(leaf.name for leaf in s.leaves) for s in function.structured}
        chosen[function.name] = (
            None if names is None else tuple(n for name in names for n in leaves.get(name, (name,)))
        )
    return chosen


def _stage(
    parsed: ParsedModule,
    context: ModuleContext,
    functions: dict[str, ForwardFunction],
    order: list[str],
    rules: Mapping[str, UserRule],
) -> dict[str, StagedFunction]:
    # Any form of numpy import makes the module array code (`from numpy import exp` binds no
    # alias, yet its values are arrays), and so does array syntax (`x @ w`, `x.sum()`).
    listed = list(functions.values())
    default_library = "numpy" if is_array_code(context, listed) else "math"
    reserved = set(context.imports) | set(context.constants)
    reserved |= {"math", "numpy"} | context.data
    # The generated functions a caller calls are module names too.
    for name in functions:
        reserved |= {forward_function_name(name), cached_backward_name(name, (), (), True)}
        reserved.add(cached_backward_name(name, (), (), False))
    signatures: dict[str, Signature] = {}
    for name, rule in rules.items():
        signatures[name] = Signature(rule.parameters, rule.results, rule=True)
        reserved |= {name, rule.backward}
    for name in order:  # callees first: `return f(x)` returns as many values as f
        function = functions[name]
        count, names = len(function.results), function.result_names
        returned = unwrap(function.results[0])
        if (
            count == 1
            and isinstance(returned, Call)
            and returned.func.lib in (USER, RULE)
            and returned.func.name in signatures
        ):
            count = signatures[returned.func.name].results
            names = signatures[returned.func.name].names
        structured = tuple(s.name for s in function.structured)
        sequences = tuple(
            loop.body[0].sequence
            for loop in function.body
            if isinstance(loop, Loop) and loop.body and isinstance(loop.body[0], Item)
        )
        signatures[name] = Signature(
            function.parameters, count, names=names, structured=structured, sequences=sequences
        )
    staged: dict[str, StagedFunction] = {}
    for name in order:
        function = functions[name]

        def refuse(node: object, message: str, fallback: object = function.node) -> None:
            parsed.refuse(node or fallback, message)  # type: ignore[arg-type]

        staged[name] = stage_function(function, reserved, default_library, refuse, signatures)
        result = staged[name]
        defined = {p.name for p in result.parameters} | {
            t for s in result.all_stages for t in s.targets
        }
        for clash in sorted(defined & set(HELPERS)):
            message = (
                f"'{clash}' is the name of a helper the generated code defines: rename the variable"
            )
            parsed.refuse(function.node.name, message)
    parsed.raise_problems()
    return staged


class _Program:
    """The reverse passes of the program, callees before callers (``Callees`` for each)."""

    def __init__(
        self,
        staged: dict[str, StagedFunction],
        chosen: dict[str, tuple[str, ...] | None],
        pairs: bool,
        rules: Mapping[str, UserRule],
        parsed: ParsedModule,
        nodes: Mapping[str, cst.CSTNode],
    ) -> None:
        self.parsed = parsed
        self.nodes = nodes  # where a refusal with no place of its own points: the def
        # A number for default makes a parameter a number, unless a call passes it a value.
        passed: dict[str, set[str]] = {}
        for function in staged.values():
            for stage in function.all_stages:
                if stage.call is not None and not stage.call.rule:
                    passed.setdefault(stage.call.function, set()).update(
                        parameter
                        for parameter, operand in zip(
                            stage.call.parameters, stage.operands, strict=False
                        )
                        if not is_constant(unwrap(operand))
                    )
        staged = {
            name: replace(function, passed_values=frozenset(passed.get(name, ())))
            for name, function in staged.items()
        }
        self.staged = dict(staged)  # its shifts marked below
        self.chosen = chosen
        self.pairs = pairs
        self.rules = rules
        self._differentiable: dict[str, frozenset[str]] = {
            name: frozenset(p.name for p in rule.parameters) - rule.no_gradient
            for name, rule in rules.items()
        }
        self._result_shapes: dict[
            tuple[str, tuple[Shape | None, ...]], tuple[Shape | None, ...]
        ] = {}
        for name, function in staged.items():  # callees first: staged is in that order
            # Shifts the results are invariant to get no gradient (invariance.py); shapes
            # through calls read the callees, done before.
            known = infer_shapes(function, self)
            # A function of numbers alone is scalar code, whatever the module imports:
            # no helpers, no zeros of an array's shape, += on its own numbers.
            if function.array_mode and _all_numbers(function, known):
                function = replace(function, array_mode=False)
            function = stop_invariant_shifts(function, known)
            self.staged[name] = function
            # The parameters a gradient reaches the result from (through a call of a
            # function with no rule too: such a backward is refused where it is needed).
            relevant = relevant_values(function, None, self)
            self._differentiable[name] = frozenset(
                p.name for p in function.parameters if p.name in relevant
            )
        self.draws: dict[str, DrawSite | None] = {}
        for name, function in self.staged.items():  # callees first
            self.draws[name] = _draw_site(function, self.draws)
        self.variants: dict[tuple[str, tuple[str, ...]], BackwardFunction] = {}

    def differentiable(self, function: str) -> frozenset[str]:
        return self._differentiable[function]

    def result_shapes(
        self, function: str, arguments: tuple[Shape | None, ...]
    ) -> tuple[Shape | None, ...]:
        """What ``function`` returns has the shapes its code gives it for arguments of
        these shapes (only the caller's facts: a callee's annotations are its own names)."""
        if function in self.rules:  # what the forward's annotation says (-> float)
            rule = self.rules[function]
            return (rule.shape,) if rule.results == 1 else (None,) * rule.results
        key = (function, arguments)
        if key not in self._result_shapes:
            staged = self.staged[function]
            parameters = dict(zip((p.name for p in staged.parameters), arguments, strict=True))
            known = infer_shapes(staged, self, parameters)
            self._result_shapes[key] = tuple(
                known.get(r.id) if isinstance(r, Name) else SCALAR for r in staged.results
            )
        return self._result_shapes[key]

    def backward_name(self, function: str, wrt: tuple[str, ...]) -> str:
        if function in self.rules:
            return self.rules[function].backward
        parameters = tuple(p.name for p in self.staged[function].parameters)
        # In pairs mode the public F_backward(dout, cache) serves calls for all parameters,
        # unless it was asked for fewer.
        public_all = self.chosen.get(function) in (None, parameters)
        return cached_backward_name(function, wrt, parameters, self.pairs and public_all)

    def reverse(self, name: str, wrt: tuple[str, ...] | None) -> BackwardFunction:
        """The backward of ``name`` with respect to ``wrt``; refused (raising) where a
        gradient would have to flow through a call of a function with no rule."""
        function = self.staged[name]
        for node, message in opaque_refusals(function, wrt, self) + array_test_refusals(
            function, self
        ):
            self.parsed.refuse(node or self.nodes[name], message)  # type: ignore[arg-type]
        self.parsed.raise_problems()
        return reverse(function, wrt, self)

    def build(self, requested: list[str]) -> list[FunctionBackwards]:
        for name in requested:  # every refusal of the functions asked for, at once
            function = self.staged[name]
            refusals = opaque_refusals(function, self.chosen[name], self)
            for node, message in refusals + array_test_refusals(function, self):
                self.parsed.refuse(node or self.nodes[name], message)  # type: ignore[arg-type]
        self.parsed.raise_problems()
        public = {
            name: replace(
                reverse(self.staged[name], self.chosen[name], self),
                differentiable=self._differentiable[name],
            )
            for name in requested
        }
        pending = [call for backward in public.values() for call in backward.calls]
        while pending:
            key = pending.pop()
            if key in self.variants:
                continue
            name, wrt = key
            self.variants[key] = self.reverse(name, wrt)
            pending.extend(self.variants[key].calls)
        order = list(requested) + [n for n in self.staged if n not in public]
        # Every function called runs through its F_forward (its value, and a cache even if
        # no call needs its backward).
        called = {
            s.call.function
            for f in self.staged.values()
            for s in f.all_stages
            if s.call is not None and not s.call.rule
        }
        return [
            self._function(name, public.get(name), name in called)
            for name in order
            if name in public or name in called
        ]

    def _function(
        self, name: str, public: BackwardFunction | None, called: bool
    ) -> FunctionBackwards:
        staged = self.staged[name]
        position = {p.name: i for i, p in enumerate(staged.parameters)}
        variants = sorted(
            (
                (wrt, backward)
                for (callee, wrt), backward in self.variants.items()
                if callee == name
            ),
            key=lambda item: (-len(item[0]), [position[p] for p in item[0]]),
        )
        draws = self.draws[name]
        if not variants and not called:
            return FunctionBackwards(staged, public, draws=draws)
        sharing = [backward for _, backward in variants]
        if public is not None and self.pairs:
            sharing.append(public)
        read = {name for backward in sharing for name in backward.cache}
        # Each loop keeps, step by step, what any of the backwards reading the cache reads.
        kept = every_kept(backward.adjoints for backward in sharing)
        lines = forward_lines(staged, read | set(names_in(staged.result)), kept)
        defined = [p.name for p in staged.parameters]
        defined += [target for line in lines for target in line.targets]
        cache = tuple(n for n in defined if n in read)
        # What every backward reading it reads the shape of alone (and is no number).
        maybe_like = [n for n in cache if any(n in backward.like for backward in sharing)]
        like = shape_only(maybe_like, (backward.adjoints for backward in sharing))

        def sharing_cache(backward: BackwardFunction) -> BackwardFunction:
            adjoints = with_steps_kept(backward.adjoints, kept)
            return replace(backward, cache=cache, full_forward=lines, adjoints=adjoints, like=like)

        if public is not None and self.pairs:
            public = sharing_cache(public)
        cached = []
        for wrt, backward in variants:
            name_of = self.backward_name(name, wrt)
            if (
                public is not None
                and self.pairs
                and name_of == cached_backward_name(name, (), (), True)
            ):
                continue  # the public F_backward(dout, cache) is this very function
            cached.append((name_of, sharing_cache(backward)))
        return FunctionBackwards(staged, public, tuple(cached), lines, cache, like, called, draws)


def _draw_site(function: StagedFunction, known: Mapping[str, DrawSite | None]) -> DrawSite | None:
    """Where ``function`` draws random numbers: its first draw, or the first function it
    calls that draws (``known``: the functions it calls, already looked at)."""
    for stage in function.all_stages:
        if stage.draw:
            assert isinstance(stage.expr, Call)
            spelling = stage.expr.func.spelling or stage.expr.func.name
            if spelling.startswith("."):
                spelling = render(stage.expr.args[0]) + spelling
            return DrawSite(function.name, spelling, stage.expr.origin)
        if stage.call is not None and not stage.call.rule:
            site = known.get(stage.call.function)
            if site is not None:
                return site
    return None


def _all_numbers(function: StagedFunction, known: Mapping[str, Shape | None]) -> bool:
    """Is every value of ``function`` (its parameters, what each stage binds, its loops'
    variables) known to be a number, and computed without numpy or scipy (whose functions
    may give a 0-d array, even a read-only view, for a number)?"""
    names = [p.name for p in function.parameters]
    for stage in function.all_stages:
        if any(
            isinstance(node, Call) and node.func.lib not in (None, "math", "builtins")
            for node in walk(stage.expr)
        ):
            return False
        names += stage.targets
        if stage.loop is not None and stage.loop.variable:
            names.append(stage.loop.variable)
    return all(known.get(name) == SCALAR for name in names)


def rule_backward(rule: UserRule, array_mode: bool) -> BackwardFunction:
    """A user rule's backward as the gradient check reads one: its forward's parameters,
    the gradients it returns (``None`` where it says so), its upstream parameters."""
    parameters = tuple(p.name for p in rule.parameters)
    upstreams = tuple(p.name.value for p in rule.backward_node.params.params)[len(parameters) :]
    staged = StagedFunction(
        name=rule.forward,
        parameters=rule.parameters,
        stages=(),
        statements=(),
        results=tuple(Name(u) for u in upstreams),
        result_bases=upstreams,
        used_globals=rule.used_globals,
        namer=Namer(),
        array_mode=array_mode,
    )
    gradients = tuple("None" if p in rule.no_gradient else f"d{p}" for p in parameters)
    default = None if rule.results == 1 else "None"
    return BackwardFunction(staged, upstreams, default, (), (), gradients)


def _refuse_hidden_functions(
    parsed: ParsedModule,
    built: list[FunctionBackwards],
    functions: dict[str, ForwardFunction],
    program: _Program,
) -> None:
    """A variable named like a generated function that its backward calls would hide it
    (``relu_forward = relu(x)``): refused, as a variable named like a helper is."""
    for function in built:
        staged = function.staged
        called: set[str] = set()
        for stage in staged.all_stages:
            if stage.call is None:
                continue
            if stage.call.rule:
                called |= {stage.call.function, program.rules[stage.call.function].backward}
            else:
                called.add(forward_function_name(stage.call.function))
        backwards = [function.public, *(b for _, b in function.cached)]
        for backward in backwards:
            if backward is not None:
                called |= {program.backward_name(f, wrt) for f, wrt in backward.calls}
        variables = {p.name for p in staged.parameters}
        variables |= {t for s in staged.all_stages for t in s.targets}
        for clash in sorted(called & variables):
            parsed.refuse(
                functions[staged.name].node.name,
                f"'{clash}' is the name of a function the generated code defines and calls "
                "here: rename the variable",
            )
    parsed.raise_problems()
