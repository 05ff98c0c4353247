"""Backward functions to the lines of the generated module.

The output is a list of lines per part (header, imports and constants, each function), in
the spacing black writes; ``format.py`` puts them together. Each group of adjoint statements
is introduced by the forward statement it differentiates, quoted (``# backprop f = num *
invden``), as in the CS231n notes: a quote, unlike a line number, does not change when an
unrelated line is inserted above it, so reviews see small diffs. The comments are for
readers; tools read the same fact from ``FunctionText.ties`` (``Compiled.ties``).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn

from gradgen.expr import (
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
    literal_value,
    map_children,
    map_funcs,
    names_in,
    render,
    unwrap,
    walk,
)
from gradgen.forward_lines import names_read
from gradgen.helpers import helper_libraries, helper_source, with_needs
from gradgen.ir import AdjointStatement, BackwardFunction, ForwardLine, ForwardLoop, Kind
from gradgen.naming import (
    Namer,
    backward_function_name,
    forward_function_name,
    value_and_grad_function_name,
)
from gradgen.parse import ModuleContext, ParsedModule
from gradgen.program import FunctionBackwards, Program
from gradgen.rules import LIBRARY_MODULES, STOP_GRADIENT
from gradgen.stages import StagedFunction
from gradgen.structure import grouped, user_names

COMMENT_WIDTH = 76  # a quoted statement longer than this is shortened in its comment
# Above the forward values a backward recomputes: one fixed line, not the list of their
# names, which changed with every edit and was as long as the function on a long input.
RECOMPUTED_COMMENT = "# Recomputes the forward values the adjoints below read."


@dataclass(frozen=True)
class Tie:
    """A statement of a generated function that writes gradient ``gradient``, from the
    backward of forward statement ``statement`` (an index into ``StagedFunction.statements``):
    what the gradient check reads to name a wrong line, instead of the ``# backprop``
    comments."""

    gradient: str
    statement: int


@dataclass
class FunctionText:
    name: str  # "f_backward"
    signature: str  # "def f_backward(x, y, df=1.0):"
    docstring: str  # one line, without the quotes
    body: list[str]  # unindented; "" is a blank line
    # Per statement of the body, in order (comments and blank lines are none): what it
    # writes, when it is an adjoint statement; None for the others.
    ties: list[Tie | None] = field(default_factory=list)
    # Comment lines written above the ``def`` (without the "# "): why a function the reader
    # may look for is absent.
    comment: list[str] = field(default_factory=list)
    # How many of the body's first lines are written as they are (the imports and helpers a
    # function defines for itself, already in black's style): never given to black one by
    # one, which cannot read a line from the middle of a docstring.
    verbatim: int = 0


@dataclass
class ModuleText:
    header: list[str]
    preamble: list[str]  # imports, then module constants
    functions: list[FunctionText] = field(default_factory=list)


class _Helpers:
    """Spells template helpers (``log`` -> ``np.log``) with the module's own imports."""

    def __init__(self, context: ModuleContext) -> None:
        self.context = context
        self.added: set[str] = set()  # libraries the module must import for us
        self.used: set[str] = set()  # module names the helpers are spelled with
        self.defined: set[str] = set()  # helper functions the module must define

    def library_alias(self, library: str) -> str:
        alias = self.context.module_alias(library)
        if alias is None:
            self.added.add(library)
            alias = library
        self.used.add(alias)
        return alias

    def definitions(self) -> list[str]:
        """The source lines of the helper functions used, in a stable order."""
        lines: list[str] = []
        for name in sorted(with_needs(self.defined)):
            # A helper that needs no numpy (``_or_zero``) imports none into scalar code.
            aliases = {lib: self.library_alias(lib) for lib in helper_libraries(name)}
            lines += ["", "", *helper_source(name, aliases)]
        return lines

    def resolve(self, expr: Expr) -> Expr:
        return map_funcs(_without_stop_gradient(expr), self._spell)

    def _spell(self, func: Func) -> Func:
        if func.lib == "helper":
            self.defined.add(func.name)
            return func
        if func.spelling is not None:
            self._import_submodule(func)
            return func
        if func.lib is None:
            return func
        alias = self.context.module_alias(func.lib)
        if alias is None:
            alias = func.lib
            self.added.add(LIBRARY_MODULES.get(func.lib, func.lib))
        self.used.add(alias)
        return Func(func.lib, func.name, f"{alias}.{func.name}")

    def _import_submodule(self, func: Func) -> None:
        """``scipy.special.gammaln`` under ``import scipy.special``, which the module's imports
        record as ``import scipy``: the generated module imports ``scipy.special`` itself."""
        head = (func.spelling or "").partition(".")[0]
        binding = self.context.imports.get(head)
        if (
            func.lib is not None
            and "." in func.lib
            and func.spelling == f"{func.lib}.{func.name}"
            and binding is not None
            and binding.attr is None
            and binding.name == binding.module
        ):
            self.added.add(LIBRARY_MODULES.get(func.lib, func.lib))


def _without_stop_gradient(expr: Expr) -> Expr:
    """``expr`` with ``gradgen.stop_gradient(v)`` written ``v``: the identity when it runs,
    and the generated code stands alone, without gradgen."""
    expr = map_children(expr, _without_stop_gradient)
    if (
        isinstance(expr, Call)
        and (expr.func.lib, expr.func.name) == STOP_GRADIENT
        and len(expr.args) == 1
        and not expr.kwargs
    ):
        return expr.args[0]
    return expr


def emit_module(
    program: Program,
    parsed: ParsedModule,
    header: list[str],
    pairs: bool = False,
    forward_module: str | None = None,
    value_and_grad: bool = False,
) -> ModuleText:
    """The whole generated module: header, the imports and constants used, the helpers,
    the user rules' functions (copied), the functions (``F_value_and_grad`` too with
    ``value_and_grad``)."""
    context = program.context
    functions = list(program.functions)
    helpers = _Helpers(context)
    texts = [
        make(helpers)
        for function in functions
        for make in _function_makers(function, pairs, value_and_grad)
    ]
    used = _globals_used(program, helpers, _code_of(texts))
    definitions = helpers.definitions()
    used |= helpers.used
    preamble = _imports(used, context, helpers.added)
    data = [name for name in sorted(context.data) if name in used]
    if data and forward_module is not None:
        # Computed when the forward module runs: read from it (gradgen never runs it).
        preamble.append(f"from {forward_module} import {', '.join(data)}")
    constants = [
        f"{name} = {render(value)}" for name, value in context.constants.items() if name in used
    ]
    if constants:
        preamble += ["", *constants]
    preamble += definitions
    for rule in program.rules:
        preamble += rule.source(parsed.module)
    return ModuleText(header, preamble, texts)


def _code_of(texts: Iterable[FunctionText]) -> str:
    """The code of the functions (signatures and bodies), without their comment lines."""
    return "\n".join(
        line
        for text in texts
        for line in (text.signature, *text.body)
        if not line.lstrip().startswith("#")
    )


def _globals_used(program: Program, helpers: _Helpers, code: str | None = None) -> set[str]:
    """The module-level names (imports, constants) the generated functions read: of those
    the forward functions read, the ones ``code`` (the functions written) names, where it
    is given. A forward value no backward recomputes may be the only reader of an import
    (``from numpy import mean as m``): F_value_and_grad, when written, computes it."""
    used: set[str] = set()
    for function in program.functions:
        used |= {
            name
            for name in function.staged.used_globals
            if code is None or re.search(rf"\b{re.escape(name)}\b", code)
        }
    for rule in program.rules:
        used |= rule.used_globals
    used |= helpers.used
    return used | _constants_needed(used, program.context)


def emit_functions_only(
    program: Program, own: ModuleContext, pairs: bool = False, value_and_grad: bool = False
) -> ModuleText:
    """Just the functions, to run inside the forward's own module (the decorator).

    The module already imports what the forward uses; a library only the backward needs is
    imported inside the function, so the module's namespace is left alone. Functions of
    other forward modules (``from layers import affine``) may read names the module
    (whose imports and constants are ``own``) does not bind: those imports and constants
    come first.
    """
    context = program.context
    texts = []
    used = _globals_used(program, _Helpers(context))
    preamble = _imports(
        {n for n in used if context.imports.get(n) != own.imports.get(n)}, context, set()
    )
    preamble += [
        f"{name} = {render(value)}"
        for name, value in context.constants.items()
        if name in used and own.constants.get(name) != value
    ]
    for function in program.functions:
        for make in _function_makers(function, pairs, value_and_grad):
            helpers = _Helpers(context)
            text = make(helpers)
            local = [line for line in helpers.definitions() if line]
            local = [f"import {library}" for library in sorted(helpers.added)] + local
            text.body[:0] = local
            text.verbatim = len(local)
            # An import is a statement, a helper's def line starts one; its body is indented.
            text.ties[:0] = [None for line in local if not line.startswith(" ")]
            texts.append(text)
    return ModuleText([], preamble, texts)


def _function_makers(
    function: FunctionBackwards, pairs: bool, value_and_grad: bool
) -> list[Callable[[_Helpers], FunctionText]]:
    """What the module defines for one forward function: its public backward functions
    (``F_backward``; with ``pairs``, ``F_forward`` and ``F_backward(d<out>, cache)``; with
    ``value_and_grad``, ``F_value_and_grad`` too), then, for a function others call,
    ``F_forward`` and the backwards its callers call, reading F_forward's cache."""
    makers: list[Callable[[_Helpers], FunctionText]] = []
    public = function.public
    if public is not None and function.draws is not None and not pairs:
        # F_backward recomputes the forward, which would draw other numbers: only
        # F_value_and_grad, which draws once, is written, saying why (asked for or not:
        # it is the function's only backward).
        comment = _no_backward_comment(public, function.draws.reason(public.staged.name))
        makers.append(_commented_maker(_value_and_grad_function, public, comment))
    elif public is not None:
        makers += [_bound_maker(make, public) for make in _makers(pairs, value_and_grad)]
    if function.called:
        if not (pairs and public is not None):
            staged, lines, cache = function.staged, function.forward, function.cache
            like = function.like
            makers.append(lambda helpers: _forward_text(staged, lines, cache, helpers, like))
        for name, backward in function.cached:
            makers.append(_named_cached_maker(backward, name))
    return makers


def _bound_maker(make: _Maker, backward: BackwardFunction) -> Callable[[_Helpers], FunctionText]:
    return lambda helpers: make(backward, helpers)


def _commented_maker(
    make: _Maker, backward: BackwardFunction, comment: list[str]
) -> Callable[[_Helpers], FunctionText]:
    def made(helpers: _Helpers) -> FunctionText:
        text = make(backward, helpers)
        text.comment = comment
        return text

    return made


def _no_backward_comment(public: BackwardFunction, reason: str) -> list[str]:
    """Why ``F_backward`` is absent, and what to call instead, in comment lines."""
    name = public.staged.name
    backward = backward_function_name(name)
    text = (
        f"No {backward}: {reason}, and a backward that recomputes the forward would draw "
        f"other ones. Use {value_and_grad_function_name(name)} (or --pairs: "
        f"{forward_function_name(name)}, then {backward}({', '.join(public.upstreams)}, cache))."
    )
    return textwrap.wrap(text, COMMENT_WIDTH + 8, break_long_words=False, break_on_hyphens=False)


def _named_cached_maker(
    backward: BackwardFunction, name: str
) -> Callable[[_Helpers], FunctionText]:
    return lambda helpers: _cached_backward_function(backward, helpers, name)


_Maker = Callable[[BackwardFunction, _Helpers], FunctionText]


def _makers(pairs: bool, value_and_grad: bool) -> list[_Maker]:
    """The functions generated for one forward function: ``F_backward`` (recomputing the
    forward); with ``pairs``, ``F_forward`` returning the value and a cache, and
    ``F_backward(d<out>, cache)`` in place of the recomputing one. ``F_value_and_grad`` only
    when asked: without pairs it is F_backward's whole body again (twice the output, and
    every edit shown twice in a review), and F_backward does not call it, which would cost
    a call and compute a value to throw away."""
    makers: list[_Maker]
    if pairs:
        makers = [_forward_function, _cached_backward_function]
        return [*makers, _value_and_grad_from_pair] if value_and_grad else makers
    makers = [emit_function]
    return [*makers, _value_and_grad_function] if value_and_grad else makers


def emit_function(backward: BackwardFunction, helpers: _Helpers) -> FunctionText:
    """One backward function: recomputed forward values, adjoints in reverse, the return."""
    staged = backward.staged
    name = backward_function_name(staged.name)
    signature = f"def {name}({_parameters(backward)}):"
    recomputes = any(line.names if line.branch else line.target for line in backward.forward)
    body = [RECOMPUTED_COMMENT] if recomputes else []
    leaves = _leaf_lines(staged, backward.forward, backward.adjoints)
    body += leaves + _forward_body(backward.forward, helpers)
    if body and backward.adjoints:
        body.append("")
    body += _adjoint_body(backward, helpers)
    body.append(f"return {_gradients(_returned(backward))}")
    ties = [*_untied(leaves), *_untied_lines(backward.forward), *_adjoint_ties(backward), None]
    return FunctionText(name, signature, _docstring(backward), body, ties)


def _value_and_grad_function(backward: BackwardFunction, helpers: _Helpers) -> FunctionText:
    """``F_value_and_grad``: the forward pass once, then the backward pass reading it."""
    staged = backward.staged
    name = value_and_grad_function_name(staged.name)
    leaves = _leaf_lines(staged, backward.full_forward, backward.adjoints, staged.result)
    body = leaves + _forward_body(backward.full_forward, helpers)
    ties = [*_untied(leaves), *_untied_lines(backward.full_forward)]
    value = render(helpers.resolve(staged.result))
    if set(names_in(staged.result)) & _rebound_by_loops(backward.adjoints):
        # A reversed loop rebinds the values it kept (``for t, h_2 in reversed(t_steps):``):
        # the value is taken before it runs.
        taken = {p.name for p in staged.arguments}
        taken |= {word for line in body for word in _IDENTIFIER.findall(line)}
        kept = Namer(taken).fresh("value")
        body.append(f"{kept} = {value}")
        ties.append(None)
        value = kept
    if body and backward.adjoints:
        body.append("")
    body += _adjoint_body(backward, helpers)
    returned = _returned(backward)
    gradients = _gradients(returned)
    if len(returned) > 1:
        gradients = f"({gradients})"
    body.append(f"return {value}, {gradients}")
    signature = f"def {name}({_parameters(backward)}):"
    ties += [*_adjoint_ties(backward), None]
    return FunctionText(name, signature, _value_docstring(backward), body, ties)


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _rebound_by_loops(adjoints: Iterable[AdjointStatement]) -> set[str]:
    """The names the backward's reversed loops bind: their variables and what each step
    kept, at any depth."""
    found: set[str] = set()
    for adjoint in adjoints:
        if adjoint.loop is not None:
            found |= {adjoint.loop.variable, *adjoint.loop.kept} - {""}
            found |= _rebound_by_loops(adjoint.loop.body)
    return found


def _value_docstring(backward: BackwardFunction) -> str:
    """ "f and its gradients with respect to (x, y)." from the backward's docstring."""
    name = backward.staged.name
    docstring = _docstring(backward).replace("Gradient", f"{name} and its gradient", 1)
    docstring = docstring.replace(f"gradient of {name} ", "gradient ", 1)
    return docstring.replace(f"gradients of {name}", "gradients", 1)


def _value_and_grad_from_pair(backward: BackwardFunction, helpers: _Helpers) -> FunctionText:
    """``F_value_and_grad`` as the forward/backward pair: no adjoint written twice."""
    name = backward.staged.name
    upstreams = ", ".join(backward.upstreams)
    values = "value" if len(backward.upstreams) == 1 else _values(backward.staged)
    returned = "value" if len(backward.upstreams) == 1 else f"({values})"
    body = [
        f"{values}, cache = {forward_function_name(name)}({_call_arguments(backward)})",
        f"return {returned}, {backward_function_name(name)}({upstreams}, cache)",
    ]
    function = value_and_grad_function_name(name)
    signature = f"def {function}({_parameters(backward)}):"
    return FunctionText(function, signature, _value_docstring(backward), body, [None, None])


def _call_arguments(backward: BackwardFunction) -> str:
    """The forward's parameters passed on, in order."""
    return ", ".join(p.name for p in backward.staged.arguments)


def _forward_function(backward: BackwardFunction, helpers: _Helpers) -> FunctionText:
    """``F_forward``: the value, and the cache of what ``F_backward`` reads."""
    return _forward_text(
        backward.staged, backward.full_forward, backward.cache, helpers, backward.like
    )


def _forward_text(
    staged: StagedFunction,
    lines: tuple[ForwardLine, ...],
    cache: tuple[str, ...],
    helpers: _Helpers,
    like: frozenset[str] = frozenset(),
) -> FunctionText:
    """``F_forward``: the value (several: each), then the cache its backwards read (of a
    value in ``like``, only its shape and dtype: ``_like(a)``)."""
    params = [
        p.name if p.default is None else f"{p.name}={render(p.default)}" for p in staged.arguments
    ]
    name = forward_function_name(staged.name)
    results = Sequence_(staged.results, "()")
    leaves = _leaf_lines(staged, lines, (), results, *cache)
    body = leaves + _forward_body(lines, helpers)
    values = ", ".join(render(helpers.resolve(result)) for result in staged.results)
    stand_in = Func("helper", "_like", "_like")
    entries = tuple(
        render(helpers.resolve(Call(stand_in, (Name(n),)))) if n in like else n for n in cache
    )
    body.append(f"return {values}, {_tuple(entries)}")
    docstring = f"{staged.name} and the cache its backward reads: {_tuple(cache)}."
    if len(docstring) > 80:
        docstring = f"{staged.name} and the cache of the values its backward reads."
    ties = [*_untied(leaves), *_untied_lines(lines), None]
    return FunctionText(name, f"def {name}({', '.join(params)}):", docstring, body, ties)


def _values(staged: StagedFunction) -> str:
    """Names for the values a function returns: its own names where it has them."""
    names = []
    for position, result in enumerate(staged.results):
        names.append(result.id if isinstance(result, Name) else f"value_{position + 1}")
    if len(set(names)) != len(names):
        names = [f"value_{position + 1}" for position in range(len(names))]
    return ", ".join(names)


def _cached_backward_function(
    backward: BackwardFunction, helpers: _Helpers, name: str | None = None
) -> FunctionText:
    """``F_backward(d<out>, cache)``: the backward pass reading the forward's cache."""
    staged = backward.staged
    name = name or backward_function_name(staged.name)
    unpack = ", ".join(backward.cache) if len(backward.cache) > 1 else _tuple(backward.cache)
    body = [f"{unpack} = cache"] if backward.cache else []
    if body and backward.adjoints:
        body.append("")
    body += _adjoint_body(backward, helpers)
    body.append(f"return {_gradients(_returned(backward))}")
    signature = f"def {name}({', '.join(backward.upstreams)}, cache):"
    unpacking: list[Tie | None] = [None] if backward.cache else []
    ties = [*unpacking, *_adjoint_ties(backward), None]
    return FunctionText(name, signature, _docstring(backward), body, ties)


def _parameters(backward: BackwardFunction) -> str:
    """The forward's parameters, then the upstream gradient (keyword-only after defaults)."""
    params = [
        p.name if p.default is None else f"{p.name}={render(p.default)}"
        for p in backward.staged.arguments
    ]
    upstreams = list(backward.upstreams)
    if backward.upstream_default is not None:
        upstreams = [f"{u}={backward.upstream_default}" for u in upstreams]
    if len(upstreams) > 1 or any(p.default is not None for p in backward.staged.arguments):
        # Keyword-only: passed by position one would take the place of a defaulted parameter,
        # and several upstreams are told apart by name.
        params += ["*", *upstreams]
    else:
        params += upstreams
    return ", ".join(params)


def _leaf_lines(
    staged: StagedFunction,
    lines: Iterable[ForwardLine],
    adjoints: Iterable[AdjointStatement],
    *read: Expr | str,
) -> list[str]:
    """``W1 = params["W1"]`` for each leaf of a structured parameter that the function's
    lines, adjoints or ``read`` (a result, the names of a cache) read (structure.py)."""
    if not staged.structured:
        return []
    names: set[str] = set()
    for expr in [*_line_exprs(lines), *read]:
        names.update([expr] if isinstance(expr, str) else names_in(expr))
    names.update(names_read(tuple(adjoints)))
    return [
        f"{leaf.name} = {structured.read(leaf)}"
        for structured in staged.structured
        for leaf in structured.leaves
        if leaf.name in names
    ]


def _line_exprs(lines: Iterable[ForwardLine]) -> Iterator[Expr]:
    """What the lines compute, those inside loops and ``if`` statements too."""
    for line in lines:
        yield line.expr
        if line.loop is not None:
            yield from _line_exprs(line.loop.body)
            yield from (value for _, value in (*line.loop.starts, *line.loop.ends))
            for collected in line.loop.collected:
                yield from collected.items
                yield from (part for index in collected.indexes for part in index)
                yield from (collected.made,) if collected.made is not None else ()
        if line.branch is not None:
            yield from _line_exprs((*line.branch.then, *line.branch.orelse))


def _returned(backward: BackwardFunction) -> tuple[str, ...]:
    """What the backward returns, per parameter: a structured one's gradient in its
    structure (``{"W1": dW1, "b1": db1}``)."""
    staged = backward.staged
    names = backward.wrt if backward.wrt is not None else tuple(p.name for p in staged.parameters)
    return grouped(names, backward.gradients, staged.structured)


def _forward_body(lines: Iterable[ForwardLine], helpers: _Helpers) -> list[str]:
    body: list[str] = []
    for line in lines:
        if line.loop is not None:
            body += _forward_loop(line, line.loop, helpers)
        elif line.branch is not None:
            sides = (
                _forward_body(line.branch.then, helpers),
                _forward_body(line.branch.orelse, helpers),
            )
            body += _if_lines(helpers.resolve(line.expr), *sides)
        elif line.raises:
            body.append(f"raise {render(line.expr)}")
        else:
            targets = ", ".join(line.targets)
            if line.unpacks and len(line.targets) == 1:
                targets = f"({targets},)"  # for (W,) in layers:, (a,) = np.split(x, 1)
            body.append(f"{targets} = {render(helpers.resolve(line.expr))}")
    return body


def _forward_loop(line: ForwardLine, loop: ForwardLoop, helpers: _Helpers) -> list[str]:
    """The loop: what it carries set before it, then each step's lines, what the step
    appends and keeps for the backward, and what it hands on to the next step."""
    lines = [f"{name} = {render(helpers.resolve(start))}" for name, start in loop.starts]
    for collected in loop.collected:  # a list, or an array made for the loop to fill
        made = "[]" if collected.made is None else render(helpers.resolve(collected.made))
        lines.append(f"{collected.name} = {made}")
    if loop.kept is not None:
        lines.append(f"{line.target} = []")
    if loop.variable:
        lines.append(f"for {loop.variable} in {render(helpers.resolve(line.expr))}:")
    else:  # a while loop: its test, read before each step
        lines.append(f"while {render(helpers.resolve(line.expr))}:")
    step = _forward_body(loop.body, helpers)
    for collected in loop.collected:
        name = collected.name
        if collected.made is None:
            step += [f"{name}.append({render(helpers.resolve(i))})" for i in collected.items]
            continue
        for item, index in zip(collected.items, collected.indexes, strict=True):
            entries = render(helpers.resolve(Subscript(Name(name), index)))
            step.append(f"{entries} = {render(helpers.resolve(item))}")
    if loop.kept is not None:
        step.append(f"{line.target}.append({_step_values(loop.variable, loop.kept)})")
    ends = [(name, value) for name, value in loop.ends if value != Name(name)]
    if ends:
        names = ", ".join(name for name, _ in ends)
        values = ", ".join(render(helpers.resolve(value)) for _, value in ends)
        step.append(f"{names} = {values}")
    return lines + _indented(step or ["pass"])


def _if_lines(test: Expr, then: list[str], orelse: list[str]) -> list[str]:
    """``if test:`` then ``else:``, either side left out where it has no lines."""
    if not then:
        return [f"if {render(_negated(test))}:", *_indented(orelse)] if orelse else []
    lines = [f"if {render(test)}:", *_indented(then)]
    chained = _sole_if(orelse)
    if chained:  # else: if ...: read as the elif the user wrote
        lines += [f"el{chained[0]}", *chained[1:]]
    elif orelse:
        lines += ["else:", *_indented(orelse)]
    return lines


# The comparisons whose negation is another comparison, whatever the values (not so < and
# >=: both are False for a NaN).
_NEGATED = {"==": "!=", "!=": "==", "in": "not in", "not in": "in", "is": "is not"}
_NEGATED["is not"] = "is"


def _negated(test: Expr) -> Expr:
    """``not test`` as a person writes it: ``mode != "a"``, ``flag`` for ``not not flag``."""
    test = unwrap(test)
    if isinstance(test, Compare) and test.op in _NEGATED:
        return Compare(_NEGATED[test.op], test.left, test.right)
    if isinstance(test, UnaryOp) and test.op == "not":
        return test.operand
    return UnaryOp("not", test)


def _sole_if(lines: list[str]) -> list[str]:
    """``lines`` when they are one ``if`` statement and nothing else (under the comment
    quoting it, which the ``elif`` line says again), else []."""
    body = lines[1:] if lines and lines[0].startswith("# backprop if ") else lines
    if not body or not body[0].startswith("if "):
        return []
    if all(line.startswith((INDENT, "else:", "elif ")) or not line for line in body[1:]):
        return body
    return []


def _step_values(variable: str, kept: tuple[str, ...]) -> str:
    """What a step keeps: its loop variable, and the values its backward reads (a while
    loop has no variable: where it keeps nothing, None, so the steps are counted)."""
    values = [n for n in (variable, *kept) if n]
    if not values:
        return "None"
    return values[0] if len(values) == 1 else f"({', '.join(values)})"


INDENT = "    "


def _indented(lines: list[str]) -> list[str]:
    return [f"{INDENT}{line}" if line else line for line in lines]


def _adjoint_body(backward: BackwardFunction, helpers: _Helpers) -> list[str]:
    """The adjoint statements, each group under the forward statement it differentiates."""
    return _adjoint_lines(backward.adjoints, backward.staged.statements, helpers)


def _adjoint_lines(
    adjoints: Iterable[AdjointStatement],
    statements: tuple[str, ...],
    helpers: _Helpers,
    current: int | None = None,
) -> list[str]:
    """The statements, under a comment quoting each forward statement they come from
    (``current``: the statement quoted just above them)."""
    body: list[str] = []
    for adjoint in adjoints:
        if adjoint.statement != current:
            current = adjoint.statement
            # `return x` is no statement of its own: the copy of an upstream handed back
            quoted = statements[current] if current < len(statements) else "return"
            body.append(f"# backprop {_shorten(quoted)}")
        if adjoint.loop is not None:
            loop = adjoint.loop
            steps = render(helpers.resolve(adjoint.expr))
            kept = ", ".join(n for n in (loop.variable, *loop.kept) if n) or "_"
            body.append(f"for {kept} in reversed({steps}):")
            body += _indented(_adjoint_lines(loop.body, statements, helpers) or ["pass"])
            current = None  # the lines after the loop are under their comment again
            continue
        if adjoint.branch is not None:
            # What a side hands to the values it joined is under the 'if' quoted above.
            then = _adjoint_lines(adjoint.branch.then, statements, helpers, current)
            orelse = _adjoint_lines(adjoint.branch.orelse, statements, helpers, current)
            body += _if_lines(helpers.resolve(adjoint.expr), then, orelse)
            current = None
            continue
        body.append(_adjoint_line(adjoint, helpers))
    return body


def _adjoint_ties(backward: BackwardFunction) -> list[Tie | None]:
    """The ties of the adjoint statements, one per statement, as ``_adjoint_body`` writes
    them (a loop or an ``if`` is one statement: it writes several gradients, none tied)."""
    return [
        None if adjoint.blocks else Tie(adjoint.target, adjoint.statement)
        for adjoint in backward.adjoints
    ]


def _untied_lines(lines: Iterable[ForwardLine]) -> list[Tie | None]:
    """None for each statement the forward lines are written as (a loop: what it starts
    from, its lists, then the loop itself)."""
    count = 0
    for line in lines:
        count += 1
        if line.loop is not None:
            count += len(line.loop.starts) + len(line.loop.collected)
            count += line.loop.kept is not None
    return [None] * count


def _untied(statements: Iterable[object]) -> list[Tie | None]:
    """None for each of ``statements`` (forward values, the unpacking of a cache)."""
    return [None for _ in statements]


def _tuple(names: tuple[str, ...]) -> str:
    if len(names) == 1:
        return f"({names[0]},)"
    return f"({', '.join(names)})"


def _adjoint_line(adjoint: AdjointStatement, helpers: _Helpers) -> str:
    expr = helpers.resolve(adjoint.expr)
    target = adjoint.target
    match adjoint.kind:
        case Kind.ASSIGN | Kind.ADD | Kind.SUBTRACT:
            return f"{target} {adjoint.kind.value} {render(expr)}"
        case Kind.ADD_NEW:
            if isinstance(expr, UnaryOp) and expr.op == "-":
                total = BinOp("-", Name(target), expr.operand)
            else:
                total = BinOp("+", Name(target), expr)
            return f"{target} = {render(total)}"
        case Kind.COPY:
            return f"{target} = {target}.copy()"
        case Kind.CALL:
            return f"{', '.join(adjoint.bound)} = {render(expr)}"
        case Kind.SCATTER:
            return _scatter_line(target, adjoint.index, expr, helpers, adjoint.distinct)
        case Kind.SET_ITEM:
            entry = render(Subscript(Name(target), adjoint.index))
            return f"{entry} = {render(helpers.resolve(expr))}"
        case Kind.LOOP | Kind.BRANCH:
            raise AssertionError("a loop or an 'if' is written by _adjoint_lines")
        case _:
            _unhandled(adjoint.kind)


def _unhandled(kind: NoReturn) -> NoReturn:
    """mypy checks that no statement kind reaches here (``typing.assert_never``, 3.11+)."""
    raise AssertionError(f"the emitter does not handle {kind}")


def _scatter_line(
    target: str, index: tuple[Expr, ...], value: Expr, helpers: _Helpers, distinct: bool
) -> str:
    """Add ``value`` into ``target`` at ``index``: ``dx[:, :5] += g`` for slices and numbers,
    and for arrays that provably select no entry twice; otherwise ``np.add.at``, so that
    repeated indices add up."""
    index = tuple(helpers.resolve(part) for part in index)
    if distinct or all(_is_basic_index(part) for part in index):
        return f"{render(Subscript(Name(target), index))} += {render(value)}"
    parts = tuple(_as_slice_call(part) for part in index)
    where = parts[0] if len(parts) == 1 else Sequence_(parts)
    alias = helpers.library_alias("numpy")
    return f"{alias}.add.at({target}, {render(where)}, {render(value)})"


def _is_basic_index(part: Expr) -> bool:
    """Basic indexing (an int, a slice, None, ...) selects each entry at
    most once, so ``+=`` adds correctly; anything else (lists, arrays, masks, names) may
    repeat entries and needs ``np.add.at``."""
    if isinstance(part, Slice):
        return True  # whatever its bounds, a slice never selects an entry twice
    value = literal_value(part)
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(part, Const) and (
        part.text in ("...", "None") or part.text.endswith(".newaxis")
    )


def _as_slice_call(part: Expr) -> Expr:
    """``1:`` as ``slice(1, None)``, ``:3`` as ``slice(3)``: the spelling ``np.add.at`` takes
    inside an index tuple."""
    if not isinstance(part, Slice):
        return part
    none = Const("None")
    lower, upper, step = (none if b is None else b for b in (part.lower, part.upper, part.step))
    if step != none:
        bounds: tuple[Expr, ...] = (lower, upper, step)
    elif lower != none:
        bounds = (lower, upper)
    else:
        bounds = (upper,)
    return Call(Func("builtins", "slice", "slice"), bounds)


def _gradients(gradients: tuple[str, ...]) -> str:
    """What the backward returns: a bare gradient, an empty tuple, or several."""
    if len(gradients) == 1:
        return gradients[0]
    if not gradients:
        return "()"
    return ", ".join(gradients)


def _docstring(backward: BackwardFunction) -> str:
    staged = backward.staged
    names = [p.name for p in staged.parameters] if backward.wrt is None else list(backward.wrt)
    names = user_names(tuple(names), staged.structured)
    if len(names) == 1:
        return f"Gradient of {staged.name} with respect to {names[0]}."
    if not names:
        return f"Gradients of {staged.name}: it has no parameters, so an empty tuple."
    listed = f"Gradients of {staged.name} with respect to ({', '.join(names)})."
    if len(listed) > 80:
        return f"Gradients of {staged.name} with respect to its parameters, in order."
    return listed


def _shorten(text: str) -> str:
    if len(text) <= COMMENT_WIDTH:
        return text
    return text[: COMMENT_WIDTH - 4].rstrip() + " ..."


def _constants_needed(used: set[str], context: ModuleContext) -> set[str]:
    """Module constants that the used constants are defined from, transitively."""
    needed: set[str] = set()
    pending = [n for n in used if n in context.constants]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        for node in walk(context.constants[name]):
            if not isinstance(node, Const):
                continue
            head = node.text.split(".")[0]
            if head in context.constants:
                pending.append(head)
            elif head in context.imports:
                needed.add(head)
    return needed


def _imports(used: set[str], context: ModuleContext, added: set[str]) -> list[str]:
    """The user's imports that the output uses, in the user's order (names imported from one
    module on one line), then the libraries only the backward needs."""
    modules: list[str] = []
    from_imports: dict[str, list[str]] = {}
    for name, binding in context.imports.items():
        if name not in used:
            continue
        if binding.attr is None:
            line = binding.statement()
            if line not in modules:
                modules.append(line)
            key = line
        else:
            key = f"from {binding.module} import"
            spelled = binding.attr if name == binding.attr else f"{binding.attr} as {name}"
            from_imports.setdefault(key, []).append(spelled)
            if key not in modules:
                modules.append(key)
    lines = [
        f"{key} {', '.join(from_imports[key])}" if key in from_imports else key for key in modules
    ]
    for library in sorted(added):
        line = f"import {library}"
        root = f"import {library.partition('.')[0]}"
        if line in lines:
            continue
        if root in lines:  # `import scipy.special` binds scipy too
            lines[lines.index(root)] = line
        else:
            lines.append(line)
    return lines
