"""THE table of derivative rules: one row per operation.

A row names the operation, the spellings (forms) it is recognised by in forward code, and
for each input the adjoint that input receives. In forms and templates:

- ``x``, ``y``, ``b`` are the operation's inputs, ``out`` its result, ``g`` the gradient
  flowing into ``out`` (the upstream gradient);
- ``math.f`` / ``numpy.f`` / ``abs``, ``max``, ``min`` are matched however the user's module
  spells them (``np.exp``, ``from math import exp``);
- an unqualified call in a template (``log(x)``) uses the library of the forward operation
  (``math.log`` for ``math.pow``, ``np.log`` for ``np.power``);
- parentheses in a template are kept in the output, so ``(2 * x) * g`` reads as the local
  gradient times the upstream gradient, the way the CS231n notes write it.

Rows whose form is larger (a fused gate such as the sigmoid written out) are tried before the
primitive rows they contain. Adding an operation is one row here and one row in the tests'
table (``tests/rule_points.py``); a test fails if either is missing.
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import libcst as cst

from gradgen import shapes
from gradgen.convert import convert
from gradgen.expr import (
    NOT_LITERAL,
    RULE,
    USER,
    Attribute,
    Call,
    Const,
    Expr,
    Func,
    Name,
    Sequence_,
    Subscript,
    literal_value,
    names_in,
    unwrap,
    walk,
)
from gradgen.shapes import SCALAR as SCALAR_SHAPE
from gradgen.shapes import Dim, Shape

LIBRARIES = (
    "math",
    "numpy",
    "numpy.linalg",
    "numpy.lib.stride_tricks",
    "scipy.special",
    "scipy.linalg",
    "scipy.signal",
    "scipy.stats.norm",
    "scipy.stats.multivariate_normal",
    "scipy.stats.t",
    "scipy.stats.gamma",
    "scipy.stats.beta",
    "scipy.stats.poisson",
    "scipy.stats.dirichlet",
    "scipy.stats.chi2",
)
# Libraries that are objects of a module, not modules (scipy.stats.norm is a distribution
# of scipy.stats): the generated code imports their module.
LIBRARY_MODULES = {
    library: "scipy.stats" for library in LIBRARIES if library.startswith("scipy.stats.")
}
BUILTINS = ("abs", "max", "min", "float", "sum")
HELPER_PREFIX = "_"  # template calls to helpers defined in the generated module: _unbroadcast


@dataclass(frozen=True)
class AdjointContext:
    """What an adjoint that depends on more than its inputs may look at."""

    literals: dict[str, object]  # literal values of the form's variables (NOT_LITERAL if not)
    shapes: dict[str, Shape | None]  # shapes of the inputs and of "out", where known

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)


@dataclass(frozen=True)
class Spread:
    """An adjoint that is a smaller value spread over the input's shape: a total's number
    (``numpy.full_like(x, g)``), a reduction's gradient broadcast back over the reduced axes.

    ``full`` is the adjoint as an array of the input's shape; ``value`` is what it spreads,
    which numpy broadcasting spreads by itself where it is added to an array of that shape
    or multiplied into an elementwise adjoint: the reverse pass then uses ``value`` alone.
    """

    full: str
    value: str


@dataclass(frozen=True)
class Scatter:
    """An adjoint that adds ``value`` into a gradient of the input's shape at ``index``
    (indexing: ``dx[i] += g``, or ``np.add.at`` where entries may repeat)."""

    index: str
    value: str


Template = str | Spread | Scatter


@dataclass(frozen=True)
class Depends:
    """An adjoint template chosen by literal arguments or shapes (``axis``, ranks)."""

    doc: str
    choose: Callable[[AdjointContext], Template]


@dataclass(frozen=True)
class Each:
    """The adjoint of an input of an operation with several results (``sign, logdet =
    np.linalg.slogdet(x)``): one template per result, in the order of ``Rule.results``,
    added up over the results that reach the loss. In each, ``g`` is that result's
    gradient and ``out`` that result; the results are read by their names. None: no
    gradient flows back from that result (slogdet's sign)."""

    templates: tuple[tuple[str, Template | Depends | None], ...]


@dataclass(frozen=True)
class Joined:
    """The adjoint of the input of an operation that splits it into pieces (``a, b =
    np.split(x, 2)``): one template over all the pieces at once, written by ``choose``. In
    it, ``g0``, ``g1``, ... are the pieces' gradients and ``out0``, ``out1``, ... the pieces;
    ``literals["reached"]`` says, piece by piece, whether a gradient reaches it (the
    template writes zeros of its shape for one that none reaches)."""

    doc: str
    choose: Callable[[AdjointContext], str]


def each(**templates: Template | Depends | None) -> Each:
    """``each(sign=None, logdet="g * ...")``: the templates of ``Each`` by result."""
    return Each(tuple(templates.items()))


@dataclass(frozen=True)
class SpreadAdjoint:
    """A ``Spread`` with its names filled in: ``full`` and ``value`` are expressions."""

    full: Expr
    value: Expr


@dataclass(frozen=True)
class ScatterAdjoint:
    """A ``Scatter`` with its names filled in: add ``value`` at ``index`` (a tuple of the
    index's parts, as the user wrote them, once filled in)."""

    index: Expr
    value: Expr


Adjoint = Expr | SpreadAdjoint | ScatterAdjoint


@dataclass(frozen=True)
class Rule:
    """One operation: how it is spelled and what each input's adjoint is."""

    name: str
    forms: tuple[Expr, ...]
    form_texts: tuple[str, ...]
    inputs: tuple[str, ...]  # differentiable inputs, in the order their adjoints are written
    adjoint_sources: tuple[Template | Depends | Each | Joined, ...]  # aligned with ``inputs``
    nondiff: tuple[str, ...] = ()  # form variables with no gradient (axis, condition, index)
    shape: Callable[[AdjointContext], Shape | None] | None = None
    broadcasts: bool = False  # elementwise on several operands: gradients are unbroadcast
    # The one input that is a list of operands (np.concatenate([a, b])); in its adjoint,
    # ``x`` is the item, ``x0``, ``x1``, ... all items, and literals["position"] its index.
    variadic: bool = False
    # Its list's items may be lists written out, each read as the same call of its own
    # (np.array([[c, -s], [s, c]]) as np.array([np.array([c, -s]), np.array([s, c])])).
    nests: bool = False
    # A selection (np.where): the form variable holding the condition; the first input is
    # taken where it holds, the second where it does not. Gradients flowing into the
    # branches stay masked by it (see reverse.py).
    selects_by: str | None = None
    # Its result may share memory with its first input (numpy returns a view: a reshape, a
    # transpose, basic indexing): what the program generator of the tests fans out through.
    view: bool = False
    # Nondiff arguments the backward is written for (an axis, keepdims): they must be
    # literals, known when the backward is generated.
    literal: tuple[str, ...] = ()
    # The arguments with which the operation has no gradient at all (an astype to whole
    # numbers): a predicate on the values bound to the form's variables.
    no_gradient_when: Callable[[dict[str, Expr]], bool] | None = None
    # The arguments it is not differentiated with (np.pad in a mode other than 'constant'):
    # a predicate on the values bound to the form's variables, giving the refusal's words.
    refuse_when: Callable[[dict[str, Expr]], str | None] | None = None
    # Nondiff arguments the function is smooth in but gradgen has no gradient for
    # (gammainc's shape a): accepted as data, refused where a gradient would have to flow
    # into them (reverse.opaque_refusals), never silently dropped.
    no_rule_for: tuple[str, ...] = ()
    # Its result is floating point whatever its inputs' dtypes (exp, division, mean); the
    # other operations give floats when one of their inputs is (infer.floating_values).
    floating: bool = False
    # Its result always has axes, whatever the shapes of its inputs (np.stack): a backward
    # of a function returning it takes an upstream array, with no default.
    axes: bool = False
    # What is wrong with the literal arguments of a call (``rule_literals``: np.einsum's
    # subscripts that do not fit its operands), refused where it is written; None: fine.
    check: Callable[[dict[str, object]], str | None] | None = None
    # Several results (``w, v = np.linalg.eigh(x)``): their names, each input's adjoint an
    # ``Each``, and their shapes. A call is unpacked into as many names, or one result is
    # taken (``np.linalg.slogdet(x)[1]``); anything else is refused.
    results: tuple[str, ...] = ()
    result_shapes: Callable[[AdjointContext], tuple[Shape | None, ...]] | None = None
    # Pieces (``a, b, c = np.split(x, [2, 5], axis=1)``): as many results as its literal
    # arguments say (None: not literals), each a view of its input, read like several
    # results; the input's adjoint is a ``Joined``. ``result_shapes`` gives their shapes.
    pieces: Callable[[dict[str, object]], int | None] | None = None

    # The literal arguments with which this row is the operation, where another row of the
    # same function is another one (np.linalg.svd with compute_uv=False gives the singular
    # values alone): a predicate on ``rule_literals``; a call it fails is not this row's.
    applies_when: Callable[[dict[str, object]], bool] | None = None
    # The shapes (and literals) with which gradgen has no correct gradient (the columns
    # np.linalg.svd's full_matrices=True adds to u of a matrix that is not square): given
    # the stage's context and the results a gradient flows back from (of an operation with
    # one result, "out"), the refusal's words; None: fine. reverse.opaque_refusals refuses
    # it, located at the call, only where a gradient flows through.
    refuse_shapes: Callable[[AdjointContext, frozenset[str]], str | None] | None = None

    def result_count(self, literals: dict[str, object]) -> int | None:
        """How many results a call with these literal arguments has (1: one result)."""
        if self.pieces is not None:
            return self.pieces(literals)
        return len(self.results) or 1

    @property
    def elementwise(self) -> bool:
        """Is each entry of the result computed from the same entry of each input?"""
        return self.shape in (_same, _broadcast)

    @property
    def keeps_shape(self) -> bool:
        """Has the result the shape of the (one) input, whatever it is?"""
        return self.shape is _same

    @property
    def adjoint_texts(self) -> tuple[str, ...]:
        return tuple(_template_text(a) for a in self.adjoint_sources)

    def passes_gradient(self, result: int) -> bool:
        """Does a gradient flow back from result ``result`` (of several) to some input?"""
        return any(
            isinstance(source, Joined)
            or (isinstance(source, Each) and source.templates[result][1] is not None)
            for source in self.adjoint_sources
        )

    @property
    def scatters(self) -> bool:
        """Does an adjoint add into the input at an index (so a number ``g`` broadcasts)?"""
        return any(isinstance(a, Scatter) for a in self.adjoint_sources)

    def adjoint(self, index: int, context: AdjointContext, result: int = 0) -> Adjoint | None:
        """The template of input ``index``'s adjoint, parsed: an expression over the form's
        variables, ``g`` and ``out``, or a structured adjoint (a spread, a scatter). Of an
        operation with several results, the term of result ``result`` (None: it has none)."""
        source = self.adjoint_sources[index]
        if isinstance(source, Joined):
            return _parse(source.choose(context))
        if isinstance(source, Each):
            chosen = source.templates[result][1]
            if chosen is None:
                return None
            source = chosen
        template = source.choose(context) if isinstance(source, Depends) else source
        if isinstance(template, Spread):
            return SpreadAdjoint(_parse(template.full), _parse(template.value))
        if isinstance(template, Scatter):
            return ScatterAdjoint(_parse_index(template.index), _parse(template.value))
        return _parse(template)


def _template_text(source: Template | Depends | Each | Joined) -> str:
    """How the README's table writes an adjoint."""
    if isinstance(source, Joined):
        return source.doc
    if isinstance(source, Each):
        return "; ".join(
            f"from {result}: {'none' if t is None else _template_text(t)}"
            for result, t in source.templates
        )
    if isinstance(source, Depends):
        return source.doc
    if isinstance(source, Spread):
        return source.full
    if isinstance(source, Scatter):
        return f"{source.value} added at [{source.index}]"
    return source


class _TemplateResolver:
    def is_value_name(self, name: str) -> bool:
        return name not in {library.partition(".")[0] for library in LIBRARIES}

    def attribute(self, node: cst.Attribute, value: Expr, name: str) -> Expr:
        return Attribute(value, name)

    def method(self, node: cst.Attribute, name: str) -> Func:
        return Func("numpy", METHODS.get(name, name), f".{name}")

    def value(self, node: cst.Name | cst.Attribute, dotted: str) -> Expr:
        if dotted in ("None", "True", "False"):
            return Const(dotted)
        if "." in dotted:
            return Const(dotted)
        return Name(dotted)

    def function(self, node: cst.BaseExpression, dotted: str | None) -> Func:
        if dotted is None:
            raise ValueError("a rule calls something that is not a name")
        lib, _, name = dotted.rpartition(".")
        if lib:
            if lib not in LIBRARIES:
                raise ValueError(f"unknown library {lib!r} in a rule")
            return Func(lib, name, None)
        if name in BUILTINS or name in ("list", "len"):
            return Func("builtins", name, name)
        if name.startswith(HELPER_PREFIX):
            return Func("helper", name, name)
        return Func(None, name, None)  # resolved with the stage's library

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        raise ValueError(f"bad rule text: {message}")


@functools.cache
def _parse(text: str) -> Expr:
    return convert(cst.parse_expression(text), _TemplateResolver())


@functools.cache
def _parse_index(text: str) -> Expr:
    """A scatter's index: an expression (``i``, the index as the user wrote it), or the
    parts of a subscript written out (``:, indices``; ``indices,`` one part, which a list
    of indices written out is too), as a tuple of them."""
    if ":" not in text and "..." not in text and not text.endswith(","):
        return _parse(text)
    subscript = _parse(f"_[{text}]")
    assert isinstance(subscript, Subscript)
    return Sequence_(subscript.index)


def rule(
    name: str,
    *forms: str,
    nondiff: tuple[str, ...] = (),
    shape: Callable[[AdjointContext], Shape | None] | None = None,
    broadcasts: bool = False,
    variadic: bool = False,
    nests: bool = False,
    selects_by: str | None = None,
    view: bool = False,
    literal: tuple[str, ...] = (),
    no_gradient_when: Callable[[dict[str, Expr]], bool] | None = None,
    refuse_when: Callable[[dict[str, Expr]], str | None] | None = None,
    no_rule_for: tuple[str, ...] = (),
    floating: bool = False,
    axes: bool = False,
    check: Callable[[dict[str, object]], str | None] | None = None,
    results: tuple[str, ...] = (),
    result_shapes: Callable[[AdjointContext], tuple[Shape | None, ...]] | None = None,
    pieces: Callable[[dict[str, object]], int | None] | None = None,
    applies_when: Callable[[dict[str, object]], bool] | None = None,
    refuse_shapes: Callable[[AdjointContext, frozenset[str]], str | None] | None = None,
    **adjoints: Template | Depends | Each | Joined,
) -> Rule:
    """A row of the table: ``rule("mul", "x * y", x="y * g", y="x * g")``."""
    parsed_forms = tuple(_parse(form) for form in forms)
    inputs = tuple(adjoints)
    for form, text in zip(parsed_forms, forms, strict=True):
        if sorted(names_in(form)) != sorted(inputs + nondiff):
            raise ValueError(f"rule {name}: form {text!r} must use exactly {inputs + nondiff}")
    if not set(literal) <= set(nondiff):
        raise ValueError(f"rule {name}: literal arguments must be nondiff ones")
    if not set(no_rule_for) <= set(nondiff):
        raise ValueError(f"rule {name}: arguments without a gradient must be nondiff ones")
    sources: list[Template | Depends | None] = []
    for source in adjoints.values():
        if isinstance(source, Joined) != (pieces is not None):
            raise ValueError(f"rule {name}: an operation into pieces has a Joined adjoint")
        if isinstance(source, Joined):
            continue
        if isinstance(source, Each):
            if tuple(r for r, _ in source.templates) != results:
                raise ValueError(f"rule {name}: an Each must name the results {results}")
            sources += [t for _, t in source.templates]
        elif results:
            raise ValueError(f"rule {name}: with several results, each adjoint is an Each")
        else:
            sources.append(source)
    for template in sources:
        # a typo in a template fails at import, not at use
        if isinstance(template, str):
            _parse(template)
        elif isinstance(template, Spread):
            _parse(template.full), _parse(template.value)
        elif isinstance(template, Scatter):
            _parse_index(template.index), _parse(template.value)
    return Rule(
        name=name,
        forms=parsed_forms,
        form_texts=forms,
        inputs=inputs,
        adjoint_sources=tuple(adjoints.values()),
        nondiff=nondiff,
        shape=shape,
        broadcasts=broadcasts,
        variadic=variadic,
        nests=nests,
        selects_by=selects_by,
        view=view,
        literal=literal,
        no_gradient_when=no_gradient_when,
        refuse_when=refuse_when,
        no_rule_for=no_rule_for,
        floating=floating,
        axes=axes,
        check=check,
        results=results,
        result_shapes=result_shapes,
        pieces=pieces,
        applies_when=applies_when,
        refuse_shapes=refuse_shapes,
    )


def several_results(call: Call) -> Rule | None:
    """The row of an operation with several results that ``call`` calls, if it is one (not
    where its literal arguments make it another row's: np.linalg.svd with compute_uv=False)."""
    found = _SEVERAL.get((call.func.lib or "", call.func.name))
    if found is None or found.applies_when is None:
        return found
    try:
        canonical = canonical_call(call)
    except ValueError:
        return found  # refused where the call is staged
    literals = rule_literals(found, call_bindings(found, canonical))
    return found if found.applies_when(literals) else None


def call_bindings(rule_: Rule, canonical: Call) -> dict[str, Expr]:
    """The values a canonical call (``canonical_call``) binds to the variables of the
    rule's first form, a call of names (``numpy.linalg.svd(x, full_matrices, ...)``)."""
    form = rule_.forms[0]
    assert isinstance(form, Call) and all(isinstance(a, Name) for a in form.args)
    return {a.id: v for a, v in zip(form.args, canonical.args, strict=False) if isinstance(a, Name)}


def result_count(rule_: Rule, call: Expr) -> int | None:
    """How many results ``call`` of ``rule_`` has (several for an operation such as
    np.linalg.eigh, as many as its literal sections say for np.split); None where that is
    not written out (refused where the call is lowered)."""
    if rule_.pieces is None:
        return rule_.result_count({})
    if not isinstance(call, Call):
        return None
    try:
        canonical = canonical_call(call)
    except ValueError:
        return None
    form = rule_.forms[0]
    assert isinstance(form, Call)
    if len(canonical.args) != len(form.args):
        return None
    bound = {
        unwrap(variable).id: value  # type: ignore[union-attr]
        for variable, value in zip(form.args, canonical.args, strict=True)
    }
    return rule_.result_count(rule_literals(rule_, bound))


def rule_literals(rule_: Rule, bindings: dict[str, Expr]) -> dict[str, object]:
    """The literal values of ``rule_``'s nondiff arguments as a call binds them
    (NOT_LITERAL where not literals) and, for a variadic rule, how many operands it has
    (``"operands"``): what its ``check`` looks at."""
    found: dict[str, object] = {n: literal_value(bindings[n]) for n in rule_.nondiff}
    if rule_.variadic:
        items = unwrap(bindings[rule_.inputs[0]])
        found["operands"] = len(items.items) if isinstance(items, Sequence_) else NOT_LITERAL
    return found


# Other names numpy accepts for an argument: np.clip(x, min=0.0) since numpy 2.1.
KEYWORD_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("numpy", "clip"): {"min": "a_min", "max": "a_max"},
}

# Methods of arrays and the numpy functions they stand for.
METHODS: dict[str, str] = {
    name: name
    for name in (
        "sum",
        "mean",
        "max",
        "min",
        "var",
        "std",
        "dot",
        "reshape",
        "transpose",
        "clip",
        "astype",
        "ravel",
        "swapaxes",
        "prod",
        "cumsum",
        "cumprod",
        "trace",
        "repeat",
        "take",
        "diagonal",
    )
}
METHODS["flatten"] = "ravel"  # a copy where ravel may give a view: the same gradient


# --- shapes of results ----------------------------------------------------------------------


def _same(c: AdjointContext) -> Shape | None:
    return c.shapes.get("x")


def _number(c: AdjointContext) -> Shape | None:
    """A Python number, whatever the input: ``float(x)``."""
    return shapes.SCALAR


def _same_not_elementwise(c: AdjointContext) -> Shape | None:
    """x's shape, of a result whose entries each depend on several of x's (a softmax): not
    ``_same``, which says the operation is elementwise (masks pass through it)."""
    return c.shapes.get("x")


def _broadcast(c: AdjointContext) -> Shape | None:
    # Every operand counts, the condition of np.where too: it can be the widest.
    return shapes.broadcast(*(shape for name, shape in c.shapes.items() if name != "out"))


def _reduced(c: AdjointContext) -> Shape | None:
    return shapes.reduce(c.shapes.get("x"), c.literals.get("axis"), c.literals.get("keepdims"))


# --- adjoints that depend on literal arguments or shapes ------------------------------------


def _expanded(c: AdjointContext, value: str) -> str:
    """``value`` (g or out of a reduction) with the reduced axes put back, to broadcast.

    numpy reduces a 0-d array (a number) over axis 0 or -1 too (sum, max, min), to itself:
    it has no axis to put back. Where x's rank is not known, it may be 0: a helper looks.
    """
    if c.literals.get("keepdims") is True or c.literals.get("axis") is None:
        return value
    rank = c.rank("x")
    if rank == 0:
        return value
    if rank is None:
        return f"_keepdims({value}, x, axis)"
    return f"numpy.expand_dims({value}, axis)"


def _count(c: AdjointContext) -> str:
    """How many entries a reduction combines, as an expression."""
    axis = c.literals.get("axis")
    axes = axis if isinstance(axis, tuple) else (axis,)
    count = "numpy.size(x)" if axis is None else " * ".join(f"x.shape[{a}]" for a in axes)
    ddof = c.literals.get("ddof", 0)
    return f"({count} - {ddof})" if ddof else (f"({count})" if " " in count else count)


REDUCED_SHAPE = _reduced  # the shape of a reduction of x over axis, keepdims or not


def _full_reduction(c: AdjointContext) -> bool:
    return c.literals.get("axis") is None and c.literals.get("keepdims") is not True


# A sum's gradient is g spread over the reduced axes: a broadcast view, no copy. The reverse
# pass knows it is a view: it never writes into it and copies it before returning it. A sum
# of everything has a number for g (the default upstream 1.0 is a Python float): full_like
# in x's floating type keeps float32 float32, and makes an integer x's gradient float.
def _sum_adjoint(c: AdjointContext) -> Spread:
    if _full_reduction(c):
        return Spread("numpy.full_like(x, g, dtype=numpy.result_type(x, g))", "g")
    expanded = _broadcastable(c, _expanded(c, "g"))
    return Spread(f"numpy.broadcast_to({expanded}, numpy.shape(x))", expanded)


def _mean_adjoint(c: AdjointContext) -> Spread:
    if _full_reduction(c):
        spread = f"g / {_count(c)}"
        return Spread(f"numpy.full_like(x, {spread}, dtype=numpy.result_type(x, g))", spread)
    spread = f"{_broadcastable(c, _expanded(c, 'g'))} / {_count(c)}"
    return Spread(f"numpy.broadcast_to({spread}, numpy.shape(x))", spread)


def _broadcastable(c: AdjointContext, expanded: str) -> str:
    """``expanded`` where numpy broadcasting needs the reduced axis back; ``g`` itself where
    it is a new leading axis (axis 0), which broadcasting adds anyway."""
    axis = c.literals.get("axis")
    if (
        expanded.startswith(("numpy.expand_dims(", "_keepdims("))
        and axis == 0
        and type(axis) is int
    ):
        return "g"  # (of a 0-d x too: g is a number then)
    return expanded


def _extreme_adjoint(c: AdjointContext) -> str:
    # Ties share the gradient equally: a valid sub-gradient that does not depend on order.
    # The count of ties is taken in x's dtype, so the mask divided by it keeps that dtype.
    winners = f"(x == {_expanded(c, 'out')})"
    count = f"numpy.sum({winners}, axis=axis, keepdims=True, dtype=numpy.result_type(x))"
    return f"{winners} / {count} * {_expanded(c, 'g')}"


def _var_adjoint(c: AdjointContext) -> str:
    centred = "(x - numpy.mean(x, axis=axis, keepdims=True))"
    return f"(2 / {_count(c)}) * {centred} * {_expanded(c, 'g')}"


def _std_adjoint(c: AdjointContext) -> str:
    centred = "(x - numpy.mean(x, axis=axis, keepdims=True))"
    return f"{centred} / ({_count(c)} * {_expanded(c, 'out')}) * {_expanded(c, 'g')}"


# With both ranks known and at most 2, the gradient is written out as the CS231n notes do;
# otherwise (unknown ranks, stacks of matrices) a helper applies numpy's matmul rules. np.dot
# differs from @ above 2 dimensions, so its helper refuses those at run time.
def _matmul_left(c: AdjointContext, helper: str = "_matmul_dx") -> str:
    ranks = (c.rank("x"), c.rank("y"))
    return {
        (2, 2): "g @ y.T",
        (2, 1): "numpy.outer(g, y)",
        (1, 2): "y @ g",
        (1, 1): "g * y",
    }.get(ranks, f"{helper}(g, x, y)")  # type: ignore[arg-type]


def _matmul_right(c: AdjointContext, helper: str = "_matmul_dy") -> str:
    ranks = (c.rank("x"), c.rank("y"))
    return {
        (2, 2): "x.T @ g",
        (2, 1): "x.T @ g",
        (1, 2): "numpy.outer(x, g)",
        (1, 1): "g * x",
    }.get(ranks, f"{helper}(g, x, y)")  # type: ignore[arg-type]


def _dot_shape(c: AdjointContext) -> Shape | None:
    left, right = c.rank("x"), c.rank("y")
    if left is None or right is None or max(left, right) > 2:
        return None
    return _matmul_shape(c)


def _transpose_adjoint(c: AdjointContext) -> str:
    axes = c.literals.get("axes")
    if isinstance(axes, tuple) and all(isinstance(a, int) for a in axes):
        # numpy counts a negative axis from the end: -1 is the last of len(axes)
        order = [a % len(axes) for a in axes]
        inverse = tuple(sorted(range(len(order)), key=lambda i: order[i]))
        return f"numpy.transpose(g, {inverse})"
    return "numpy.transpose(g)"


def _clip_adjoint(c: AdjointContext) -> str:
    # A bound written None is absent; any other bound (a number or a value) is compared with.
    # At a bound exactly the gradient goes to x.
    low = c.literals.get("low", NOT_LITERAL) is not None
    high = c.literals.get("high", NOT_LITERAL) is not None
    if low and high:
        return "((x >= low) * (x <= high)) * g"
    if low:
        return "(x >= low) * g"
    if high:
        return "(x <= high) * g"
    return "g"


def _clip_low_adjoint(c: AdjointContext) -> str:
    # np.clip is minimum(maximum(x, low), high): a low bound above high has no effect.
    if c.literals.get("high", NOT_LITERAL) is None:
        return "(x < low) * g"
    return "((x < low) * (low <= high)) * g"


def _clip_high_adjoint(c: AdjointContext) -> str:
    # Where low is above high, high is the result whatever x is.
    if c.literals.get("low", NOT_LITERAL) is None:
        return "(x > high) * g"
    return "(numpy.maximum(x, low) > high) * g"


def _div_right(c: AdjointContext) -> str:
    # -x of a mask (a boolean array) is an error in numpy; -(x / y**2) is not.
    if isinstance(c.literals.get("x", NOT_LITERAL), (int, float)):
        return "(-x / y**2) * g"
    return "-(x / y**2) * g"


def _pow_base(c: AdjointContext) -> str:
    # An exponent written out folds (x ** 2 gives 2 * x). Any other may be whole numbers (a
    # mask, a count) over a base of whole numbers (max(3, x) is the int 3), and numpy
    # refuses integers to the power -1: a float exponent makes the power a float.
    if isinstance(c.literals.get("y", NOT_LITERAL), (int, float)):
        return "(y * x ** (y - 1)) * g"
    return "(y * x ** (y - 1.0)) * g"


def _along(c: AdjointContext, start: str, stop: str) -> str:
    """``g`` sliced from ``start`` to ``stop`` along the literal axis."""
    axis = c.literals.get("axis")
    if isinstance(axis, int) and axis >= 0:
        span = f":{stop}" if start == "0" else f"{start} : {stop}"
        return "g[" + ":, " * axis + f"{span}]"
    return f"numpy.take(g, numpy.arange({start}, {stop}), axis=axis)"


def _concatenate_adjoint(c: AdjointContext) -> str:
    position = c.literals["position"]
    assert isinstance(position, int)
    axis = c.literals.get("axis")
    if axis is None:  # numpy flattens every item first
        sizes = [f"numpy.size(x{j})" for j in range(position)]
        start = " + ".join(sizes) or "0"
        stop = f"{start} + numpy.size(x)" if sizes else "numpy.size(x)"
        span = f":{stop}" if start == "0" else f"{start} : {stop}"
        return f"numpy.reshape(g[{span}], numpy.shape(x))"
    # numpy.shape, not .shape: an item may be a list written out
    sizes = [f"numpy.shape(x{j})[{axis}]" for j in range(position)]
    start = " + ".join(sizes) or "0"
    stop = f"{start} + x.shape[{axis}]" if sizes else f"x.shape[{axis}]"
    return _along(c, start, stop)


def _stack_adjoint(c: AdjointContext) -> str:
    axis = c.literals.get("axis")
    position = c.literals["position"]
    if isinstance(axis, int) and axis >= 0:
        return "g[" + ":, " * axis + f"{position}]"
    return f"numpy.take(g, {position}, axis=axis)"


def _matmul_shape(c: AdjointContext) -> Shape | None:
    return shapes.matmul(c.shapes.get("x"), c.shapes.get("y"))


def _ravel_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    return shape if shape is not None and len(shape) == 1 else None


def _outer_shape(c: AdjointContext) -> Shape | None:
    x, y = c.shapes.get("x"), c.shapes.get("y")
    if x is None or y is None or len(x) != 1 or len(y) != 1:
        return None
    return (x[0], y[0])


# np.outer flattens its inputs: the gradient is reshaped back unless both are known 1-D.
def _outer_left(c: AdjointContext) -> str:
    if c.rank("x") == 1 and c.rank("y") == 1:
        return "g @ y"
    return "numpy.reshape(g @ numpy.ravel(y), numpy.shape(x))"


def _outer_right(c: AdjointContext) -> str:
    if c.rank("x") == 1 and c.rank("y") == 1:
        return "x @ g"
    return "numpy.reshape(numpy.ravel(x) @ g, numpy.shape(y))"


def _transpose_shape(c: AdjointContext) -> Shape | None:
    return shapes.transpose(c.shapes.get("x"), c.literals.get("axes"))


# --- more shapes: joins, copies, flips, diagonals, takes, pads, windows ---------------------


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _wholes(value: object) -> tuple[int, ...] | None:
    """A literal whole number or tuple of them, as a tuple; None if it is not one."""
    if _whole(value):
        return (value,)
    if isinstance(value, tuple) and all(_whole(v) for v in value):
        return value
    return None


def _at_least(shape: Shape, ndmin: int, columns: bool = False) -> Shape:
    """``shape`` made at least ``ndmin``-D as numpy's atleast_1d/2d/3d make it (a 1-D array
    a row of a matrix, a matrix a plane of depth 1), or as np.column_stack (a column)."""
    if len(shape) >= ndmin:
        return shape
    if columns:
        return (*shape, 1) if shape else (1, 1)
    if ndmin == 3:
        return {0: (1, 1, 1), 1: (1, *shape, 1), 2: (*shape, 1)}[len(shape)]
    return (1,) * (ndmin - len(shape)) + shape


def _items(c: AdjointContext) -> list[str]:
    """The names of a variadic rule's items, ``x0``, ``x1``, ..."""
    count = sum(1 for name in c.shapes if name[:1] == "x" and name[1:].isdigit())
    return [f"x{j}" for j in range(count)]


def _join_axis(c: AdjointContext, axis: int | None) -> int | None:
    """The axis np.hstack (axis None) joins along: the first of 1-D items, else the second."""
    if axis is not None:
        return axis
    rank = c.rank("x0")
    return None if rank is None else (0 if rank <= 1 else 1)


def _joined_shape(axis: int | None, ndmin: int) -> Callable[[AdjointContext], Shape | None]:
    def shape(c: AdjointContext) -> Shape | None:
        along = _join_axis(c, axis)
        items = [c.shapes.get(name) for name in _items(c)]
        if along is None or not items:
            return None
        made = []
        for item in items:
            if item is None:
                return None
            made.append(_at_least(item, ndmin, columns=ndmin == 2 and axis == 1))
        return _joined(made, along)

    return shape


def _joined(items: list[Shape], along: int) -> Shape | None:
    """The shape of ``items`` joined along axis ``along`` (their lengths there added up,
    ``D`` and ``D`` to ``2D``), where they agree on every other axis."""
    first = items[0]
    if not -len(first) <= along < len(first):
        return None
    along %= len(first)
    for item in items:
        if len(item) != len(first) or item[:along] + item[along + 1 :] != (
            first[:along] + first[along + 1 :]
        ):
            return None
    total = shapes.combine(*((1, item[along]) for item in items))
    return None if total is None else (*first[:along], total, *first[along + 1 :])


def _concatenated_shape(c: AdjointContext) -> Shape | None:
    """``np.concatenate([a, b], axis)`` of known shapes (axis 0 unless given)."""
    axis = c.literals.get("axis", 0)
    items = [c.shapes.get(name) for name in _items(c)]
    if not _whole(axis) or not items or any(item is None for item in items):
        return None
    return _joined([item for item in items if item is not None], axis)


def _stacked_shape(c: AdjointContext) -> Shape | None:
    """``np.stack([a, b], axis)`` of one known shape: a new axis of their number."""
    axis = c.literals.get("axis", 0)
    items = {c.shapes.get(name) for name in _items(c)}
    if not _whole(axis) or len(items) != 1 or None in items:
        return None
    item = items.pop()
    assert item is not None
    if not -len(item) - 1 <= axis <= len(item):
        return None
    axis %= len(item) + 1
    return (*item[:axis], len(_items(c)), *item[axis:])


def _join_adjoint(axis: int | None, ndmin: int) -> Callable[[AdjointContext], str]:
    """The part of g an item of np.vstack (axis 0, ndmin 2), np.hstack (None, 1), np.dstack
    (2, 3) or np.column_stack (1, 2) became: a slice of g for an item of ``ndmin``
    dimensions, an entry along the axis for an item made one dimension more."""

    def choose(c: AdjointContext) -> str:
        position = c.literals["position"]
        assert isinstance(position, int)
        items = _items(c)
        along = _join_axis(c, axis)
        known = [c.rank(f"x{j}") for j in range(position + 1)]
        ranks = [rank for rank in known if rank is not None]
        if along is None or len(ranks) < len(known):
            written = "None" if axis is None else str(axis)
            listed = ", ".join(items) + ("," if len(items) == 1 else "")
            return f"_joined_piece(g, ({listed}), {position}, {written}, {ndmin})"
        ones = sum(1 for rank in ranks[:position] if rank < ndmin)
        sizes = [
            f"numpy.shape(x{j})[{along}]"
            for j, rank in enumerate(ranks[:position])
            if rank >= ndmin
        ]
        start = " + ".join([*sizes, str(ones)] if ones else sizes) or "0"
        before = "g[" + ":, " * along
        rank = ranks[position]
        if rank >= ndmin:
            stop = f"x.shape[{along}]" if start == "0" else f"{start} + x.shape[{along}]"
            return before + (f":{stop}]" if start == "0" else f"{start} : {stop}]")
        entry = before + f"{start}]"
        return entry if rank == ndmin - 1 else f"numpy.reshape({entry}, numpy.shape(x))"

    return choose


# --- pieces: np.split and its kin ------------------------------------------------------------


def _sections(value: object) -> int | tuple[int, ...] | None:
    """np.split's sections as written: a whole number of pieces (1 or more), or the indices
    it splits at (a list or tuple of whole numbers); None where it is neither."""
    if _whole(value):
        return value if value >= 1 else None
    if isinstance(value, tuple) and all(_whole(v) for v in value):
        return value
    return None


def _piece_count(literals: dict[str, object]) -> int | None:
    """How many pieces: the whole number written, or one more than the indices."""
    sections = _sections(literals.get("sections"))
    if sections is None:
        return None
    return sections if isinstance(sections, int) else len(sections) + 1


def _sections_check(literals: dict[str, object]) -> str | None:
    value, axis = literals.get("sections"), literals.get("axis", 0)
    if value is not NOT_LITERAL and _sections(value) is None:
        return (
            "the sections must be a whole number of pieces (1 or more) or a list of the "
            "indices to split at, written out (np.split(x, [2, 5]))"
        )
    if axis is not NOT_LITERAL and not _whole(axis):
        return "'axis' must be one whole number written out here: the backward is written for it"
    return None


def _split_axis(kind: str, rank: int | None, literals: dict[str, object]) -> int | None:
    """The axis ``kind`` splits along, counted from the start (None where not known):
    np.hsplit's is the first of a 1-D array, else the second; vsplit's the first (2-D or
    more), dsplit's the third (3-D or more)."""
    if kind in ("split", "array_split"):
        axis = literals.get("axis")
        if not _whole(axis) or rank is None or not -rank <= axis < rank:
            return None
        return axis % rank
    if rank is None:
        return None
    least, along = {"hsplit": (1, 0 if rank == 1 else 1), "vsplit": (2, 0), "dsplit": (3, 2)}[kind]
    return along if rank >= least else None


def _piece_sizes(size: int, sections: int | tuple[int, ...], even: bool) -> list[int] | None:
    """The pieces' lengths along the axis: equal ones (np.split: None if they cannot be),
    the first ``size % sections`` one longer (np.array_split), or between the indices as
    slices take them."""
    if isinstance(sections, int):
        each, extra = divmod(size, sections)
        if even and extra:
            return None
        return [each + 1] * extra + [each] * (sections - extra)
    bounds = [0, *sections, size]
    return [len(range(size)[start:stop]) for start, stop in itertools.pairwise(bounds)]


def _pieces_shapes(kind: str) -> Callable[[AdjointContext], tuple[Shape | None, ...]]:
    def shapes_of(c: AdjointContext) -> tuple[Shape | None, ...]:
        count = _piece_count(c.literals) or 0
        shape, sections = c.shapes.get("x"), _sections(c.literals.get("sections"))
        axis = _split_axis(kind, None if shape is None else len(shape), c.literals)
        along = None if shape is None or axis is None else shape[axis]
        if shape is None or axis is None or sections is None or not isinstance(along, int):
            return (None,) * count
        sizes = _piece_sizes(along, sections, even=kind != "array_split")
        if sizes is None:
            return (None,) * count
        return tuple((*shape[:axis], size, *shape[axis + 1 :]) for size in sizes)

    return shapes_of


def _joined_adjoint(kind: str) -> Callable[[AdjointContext], str]:
    """The pieces' gradients joined back along the axis they were split along, zeros of a
    piece's shape where no gradient reaches it: np.hstack undoes np.hsplit whatever the
    rank (as vstack vsplit, dstack dsplit), np.concatenate along the axis np.split."""

    def choose(c: AdjointContext) -> str:
        reached = c.literals["reached"]
        assert isinstance(reached, tuple)
        parts = ", ".join(
            f"g{k}" if hit else f"numpy.zeros_like(out{k})" for k, hit in enumerate(reached)
        )
        if kind in ("hsplit", "vsplit", "dsplit"):
            return f"numpy.{kind[0]}stack([{parts}])"
        axis = c.literals.get("axis")
        return f"numpy.concatenate([{parts}]" + ("" if axis == 0 else f", axis={axis}") + ")"

    return choose


def _split_rule(kind: str, axis: bool) -> Rule:
    joined = "numpy.concatenate" if axis else f"numpy.{kind[0]}stack"
    return rule(
        kind,
        f"numpy.{kind}(x, sections, axis)" if axis else f"numpy.{kind}(x, sections)",
        nondiff=("sections", "axis") if axis else ("sections",),
        literal=("sections", "axis") if axis else ("sections",),
        view=True,
        axes=True,  # every piece is an array with the input's axes
        check=_sections_check,
        pieces=_piece_count,
        result_shapes=_pieces_shapes(kind),
        x=Joined(
            f"{joined}([g0, g1, ...]{', axis' if axis else ''}), numpy.zeros_like(piece) "
            "for a piece no gradient reaches",
            _joined_adjoint(kind),
        ),
    )


def _at_least_shape(ndmin: int) -> Callable[[AdjointContext], Shape | None]:
    def shape(c: AdjointContext) -> Shape | None:
        given = c.shapes.get("x")
        return None if given is None else _at_least(given, ndmin)

    return shape


def _at_least_adjoint(ndmin: int) -> Callable[[AdjointContext], str]:
    def choose(c: AdjointContext) -> str:
        rank = c.rank("x")
        return "g" if rank is not None and rank >= ndmin else "numpy.reshape(g, numpy.shape(x))"

    return choose


def _flip_adjoint(c: AdjointContext) -> str:
    return "numpy.flip(g)" if c.literals.get("axis") is None else "numpy.flip(g, axis)"


def _roll_adjoint(c: AdjointContext) -> str:
    shift = c.literals.get("shift", NOT_LITERAL)
    if _whole(shift):
        back = str(-shift)
    elif isinstance(shift, tuple) and all(_whole(s) for s in shift):
        back = str(tuple(-s for s in shift))
    else:
        back = "-shift"  # a whole number; np.negative(shift) for a tuple that is a value
    if c.literals.get("axis") is None:
        return f"numpy.roll(g, {back})"
    return f"numpy.roll(g, {back}, axis)"


def _tile_shape(c: AdjointContext) -> Shape | None:
    shape, reps = c.shapes.get("x"), _wholes(c.literals.get("reps"))
    if shape is None or reps is None:
        return None
    ndim = max(len(reps), len(shape))
    reps = (1,) * (ndim - len(reps)) + reps
    dims = (1,) * (ndim - len(shape)) + shape
    if any(r != 1 and not _whole(d) for r, d in zip(reps, dims, strict=True)):
        return None
    return tuple(d if r == 1 else r * d for r, d in zip(reps, dims, strict=True))


def _repeat_shape(c: AdjointContext) -> Shape | None:
    shape, repeats, axis = c.shapes.get("x"), c.literals.get("repeats"), c.literals.get("axis")
    if shape is None or not _whole(repeats):
        return None
    if axis is None:
        if not all(_whole(d) for d in shape):
            return None
        return (int(numpy_size(shape)) * repeats,)
    if not _whole(axis) or not -len(shape) <= axis < len(shape):
        return None
    axis %= len(shape)
    dim = shape[axis]
    if not _whole(dim):
        return None
    return (*shape[:axis], dim * repeats, *shape[axis + 1 :])


def numpy_size(shape: Shape) -> int:
    size = 1
    for d in shape:
        assert isinstance(d, int)
        size *= d
    return size


def _broadcast_to_shape(c: AdjointContext) -> Shape | None:
    return _wholes(c.literals.get("shape"))


def _broadcast_to_adjoint(c: AdjointContext) -> str:
    """g summed back over the axes x was spread along, written out where the shapes are
    known; else the helper looks at run time."""
    return _summed_back("g", "x", c.shapes.get("x"), c.shapes.get("out"))


def _summed_back(total: str, name: str, given: Shape | None, spread: Shape | None) -> str:
    """``total``, of the broadcast shape ``spread``, summed back to ``name``'s shape
    ``given``: the sums written out where both are known, else ``_unbroadcast``."""
    if given is None or spread is None or len(given) > len(spread):
        return f"_unbroadcast({total}, {name})"
    leading, kept = shapes.unbroadcast_axes(given, spread)
    if leading:
        axes = str(leading[0]) if len(leading) == 1 else str(leading)
        total = f"numpy.sum({total}, axis={axes})"
    if kept:
        axes = str(kept[0]) if len(kept) == 1 else str(kept)
        total = f"numpy.sum({total}, axis={axes}, keepdims=True)"
    return total


def _moved_order(rank: int, source: object, destination: object) -> list[int] | None:
    """The axes of x in the order np.moveaxis(x, source, destination) puts them."""
    sources, destinations = _wholes(source), _wholes(destination)
    if sources is None or destinations is None or len(sources) != len(destinations):
        return None
    if not all(-rank <= a < rank for a in (*sources, *destinations)):
        return None
    sources = tuple(a % rank for a in sources)
    destinations = tuple(a % rank for a in destinations)
    order = [n for n in range(rank) if n not in sources]
    for destination_, source_ in sorted(zip(destinations, sources, strict=True)):
        order.insert(destination_, source_)
    return order


def _moveaxis_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    if shape is None:
        return None
    order = _moved_order(len(shape), c.literals.get("source"), c.literals.get("destination"))
    return None if order is None else tuple(shape[a] for a in order)


def _rolled(c: AdjointContext) -> tuple[int, int] | None:
    """np.rollaxis(x, axis, start) as np.moveaxis(x, axis, to): (axis, to), where x's rank
    is known and the arguments are written out."""
    rank, axis, start = c.rank("x"), c.literals.get("axis"), c.literals.get("start")
    if rank is None or not _whole(axis) or not _whole(start):
        return None
    if not -rank <= axis < rank or not -rank <= start <= rank:
        return None
    axis %= rank
    start = start + rank if start < 0 else start
    return axis, start - 1 if axis < start else start


def _rollaxis_shape(c: AdjointContext) -> Shape | None:
    shape, rolled = c.shapes.get("x"), _rolled(c)
    if shape is None or rolled is None:
        return None
    axis, to = rolled
    order = [a for a in range(len(shape)) if a != axis]
    order.insert(to, axis)
    return tuple(shape[a] for a in order)


def _rollaxis_adjoint(c: AdjointContext) -> str:
    rolled = _rolled(c)
    if rolled is None:
        return "_unrollaxis(g, x, axis, start)"
    axis, to = rolled
    return "g" if axis == to else f"numpy.moveaxis(g, {to}, {axis})"


def _diagonal_length(rows: Dim, columns: Dim, offset: object) -> Dim | None:
    if not _whole(offset):
        return None
    if offset == 0 and rows == columns:
        return rows
    if not (_whole(rows) and _whole(columns)):
        return None
    length = min(rows, columns - offset) if offset >= 0 else min(rows + offset, columns)
    return max(length, 0)


def _diag_shape(c: AdjointContext) -> Shape | None:
    shape, k = c.shapes.get("x"), c.literals.get("k")
    if shape is None or not _whole(k):
        return None
    if len(shape) == 1:
        if k == 0:
            return (shape[0], shape[0])
        if not _whole(shape[0]):
            return None
        side = shape[0] + abs(k)
        return (side, side)
    if len(shape) == 2:
        length = _diagonal_length(shape[0], shape[1], k)
        return None if length is None else (length,)
    return None


def _dims_text(c: AdjointContext, dims: Shape, name: str = "x") -> list[str]:
    """Each dimension written out: a number as it is, a name as ``x.shape[i]``."""
    return [str(d) if _whole(d) else f"{name}.shape[{i}]" for i, d in enumerate(dims)]


def _tuple_text(parts: list[str]) -> str:
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"


def _tile_adjoint(c: AdjointContext) -> str:
    """g cut into (copy, entry) along each axis and summed over the copies."""
    shape, reps = c.shapes.get("x"), _wholes(c.literals.get("reps"))
    if shape is None or reps is None:
        return "_untile(g, x, reps)"
    ndim = max(len(reps), len(shape))
    reps = (1,) * (ndim - len(reps)) + reps
    dims = ["1"] * (ndim - len(shape)) + _dims_text(c, shape)
    split = [part for r, d in zip(reps, dims, strict=True) for part in (str(r), d)]
    copies = tuple(range(0, 2 * ndim, 2))
    axes = str(copies[0]) if ndim == 1 else str(copies)
    summed = f"numpy.sum(numpy.reshape(g, {_tuple_text(split)}), axis={axes})"
    return summed if ndim == len(shape) else f"numpy.reshape({summed}, numpy.shape(x))"


def _repeat_adjoint(c: AdjointContext) -> str:
    """g cut into (entry, copy) along the axis and summed over the copies."""
    shape, repeats, axis = c.shapes.get("x"), c.literals.get("repeats"), c.literals.get("axis")
    if shape is None or not _whole(repeats):
        return "_unrepeat(g, x, repeats, axis)"
    if axis is None:
        summed = f"numpy.sum(numpy.reshape(g, (-1, {repeats})), axis=1)"
        return summed if len(shape) == 1 else f"numpy.reshape({summed}, numpy.shape(x))"
    if not _whole(axis) or not -len(shape) <= axis < len(shape):
        return "_unrepeat(g, x, repeats, axis)"
    axis %= len(shape)
    dims = _dims_text(c, shape)
    split = [*dims[:axis], dims[axis], str(repeats), *dims[axis + 1 :]]
    return f"numpy.sum(numpy.reshape(g, {_tuple_text(split)}), axis={axis + 1})"


def _diagonal_scatter(offset: object) -> Scatter | None:
    """g added along the diagonal ``offset`` of a matrix (rows, then columns)."""
    if not _whole(offset):
        return None
    steps = "numpy.arange(len(g))"
    rows = f"{steps} + {-offset}" if offset < 0 else steps
    columns = f"{steps} + {offset}" if offset > 0 else steps
    return Scatter(f"{rows}, {columns}", "g")


def _diag_adjoint(c: AdjointContext) -> Template:
    rank = c.rank("x")
    k = "" if c.literals.get("k") == 0 else ", k"
    if rank == 1:
        return f"numpy.diag(g{k})"
    if rank == 2:
        return _diagonal_scatter(c.literals.get("k")) or "_undiagonal(g, x, k, 0, 1)"
    return "_undiag(g, x, k)"


def _diagonal_adjoint(c: AdjointContext) -> Template:
    axes = (c.literals.get("axis1"), c.literals.get("axis2"))
    if c.rank("x") == 2 and axes in ((0, 1), (0, -1), (-2, 1), (-2, -1)):
        return _diagonal_scatter(c.literals.get("offset")) or "_undiagonal(g, x, offset, 0, 1)"
    return "_undiagonal(g, x, offset, axis1, axis2)"


def _take_adjoint(c: AdjointContext) -> Template:
    """g added back at the indices (np.add.at: repeated ones add up), along the axis."""
    rank, axis = c.rank("x"), c.literals.get("axis")
    if rank is None or (axis is None and rank != 1):
        return "_untake(g, x, indices, axis)"
    if axis is None:
        return Scatter("indices,", "g")  # one part, even a list written out
    if not _whole(axis) or not -rank <= axis < rank:
        return "_untake(g, x, indices, axis)"
    return Scatter(":, " * (axis % rank) + "indices,", "g")


def _diagonal_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    first, second = c.literals.get("axis1"), c.literals.get("axis2")
    if shape is None or not _whole(first) or not _whole(second) or len(shape) < 2:
        return None
    rank = len(shape)
    if not (-rank <= first < rank and -rank <= second < rank):
        return None
    first, second = first % rank, second % rank
    if first == second:
        return None
    length = _diagonal_length(shape[first], shape[second], c.literals.get("offset"))
    if length is None:
        return None
    return (*(d for a, d in enumerate(shape) if a not in (first, second)), length)


def _triangle_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    if shape is None or not shape:
        return None
    return (shape[0], shape[0]) if len(shape) == 1 else shape


def _triangle_adjoint(triangle: str) -> Callable[[AdjointContext], str]:
    # A 1-D x is the row of every row of the matrix: its gradient sums the rows.
    def choose(c: AdjointContext) -> str:
        kept = f"numpy.{triangle}(g)" if c.literals.get("k") == 0 else f"numpy.{triangle}(g, k)"
        rank = c.rank("x")
        if rank is not None and rank >= 2:
            return kept
        if rank == 1:
            return f"numpy.sum({kept}, axis=0)"
        return f"_unbroadcast({kept}, x)"

    return choose


def _indices_shape(c: AdjointContext) -> Shape | None:
    """The shape of the indices: of a list written out, its nesting (the shapes the
    context holds take a constant for a number)."""
    written = c.literals.get("indices", NOT_LITERAL)
    if written is NOT_LITERAL:
        return c.shapes.get("indices")
    dims: list[Dim] = []
    while isinstance(written, tuple):
        dims.append(len(written))
        nested = {isinstance(w, tuple) for w in written}
        lengths = {len(w) for w in written if isinstance(w, tuple)}
        if not written or len(nested) > 1 or len(lengths) > 1:
            return None
        written = written[0] if written else None
    return tuple(dims)


def _take_shape(c: AdjointContext) -> Shape | None:
    shape, indices, axis = c.shapes.get("x"), _indices_shape(c), c.literals.get("axis")
    if shape is None or indices is None:
        return None
    if axis is None:
        return indices
    if not _whole(axis) or not -len(shape) <= axis < len(shape):
        return None
    axis %= len(shape)
    return (*shape[:axis], *indices, *shape[axis + 1 :])


def _take_along_axis_shape(c: AdjointContext) -> Shape | None:
    shape, indices, axis = c.shapes.get("x"), _indices_shape(c), c.literals.get("axis")
    if shape is None or indices is None:
        return None
    if axis is None:
        return indices
    if len(shape) != len(indices) or not _whole(axis) or not -len(shape) <= axis < len(shape):
        return None
    axis %= len(shape)
    rest = (*shape[:axis], *shape[axis + 1 :])
    others = shapes.broadcast(rest, (*indices[:axis], *indices[axis + 1 :]))
    if others is None:
        return None
    return (*others[:axis], indices[axis], *others[axis:])


def _pad_widths(c: AdjointContext) -> list[tuple[int, int]] | None:
    """The literal pad_width as (before, after) per axis, where x's rank is known."""
    rank, widths = c.rank("x"), c.literals.get("pad_width")
    if rank is None:
        return None
    if _whole(widths):
        return [(widths, widths)] * rank
    if not isinstance(widths, tuple):
        return None
    if len(widths) == 1 and isinstance(widths[0], tuple):
        widths = widths[0]  # ((before, after),) for every axis
    if len(widths) in (1, 2) and all(_whole(w) for w in widths):
        before, after = widths[0], widths[-1]
        return [(before, after)] * rank
    if len(widths) == rank and all(_wholes(w) is not None and len(w) in (1, 2) for w in widths):
        return [(w[0], w[-1]) for w in widths]
    return None


def _pad_shape(c: AdjointContext) -> Shape | None:
    shape, widths = c.shapes.get("x"), _pad_widths(c)
    if shape is None or widths is None:
        return None
    padded: list[Dim] = []
    for d, (before, after) in zip(shape, widths, strict=True):
        grown = shapes.offset(d, before + after)  # "H" padded by 1 and 1 is "H+2"
        if grown is None:
            return None
        padded.append(grown)
    return tuple(padded)


def _unpadded(c: AdjointContext) -> str:
    """The part of g that was x: a slice of it, written out where the widths are known."""
    widths = _pad_widths(c)
    if widths is None:
        return "_unpad(g, pad_width)"
    parts = []
    for before, after in widths:
        start = str(before) if before else ""
        parts.append(f"{start}:{-after}" if after else f"{start}:")
    while parts and parts[-1] == ":":
        parts.pop()
    return f"g[{', '.join(parts)}]" if parts else "g"


def _pad_values_adjoint(c: AdjointContext) -> str:
    # Padding a mask or whole numbers casts c to their dtype, a step with no gradient:
    # only x's dtype at run time says which, the shapes do not.
    if c.shapes.get("c") == () and _pad_widths(c) is not None:
        return (
            f"(numpy.sum(g) - numpy.sum({_unpadded(c)}))"
            # x's dtype takes in a float unchanged: it is floating or complex
            " * (numpy.result_type(x, 1.0) == numpy.result_type(x))"
        )
    return "_pad_values_grad(g, pad_width, c, x)"


def _only_constant_mode(bound: dict[str, Expr]) -> str | None:
    """np.pad is differentiated in its constant mode only (what it pads with is given)."""
    mode = unwrap(bound["mode"])
    if isinstance(mode, Const) and mode.text.strip("'\"") == "constant":
        return None
    return "np.pad is differentiated in mode 'constant' (written out) only"


def _window_shape(c: AdjointContext) -> Shape | None:
    shape, windows = c.shapes.get("x"), _wholes(c.literals.get("window_shape"))
    if shape is None or windows is None:
        return None
    written = c.literals.get("axis")
    axes = tuple(range(len(shape))) if written is None else _wholes(written)
    if axes is None or len(axes) != len(windows):
        return None
    if not all(-len(shape) <= a < len(shape) for a in axes):
        return None
    trimmed = list(shape)
    for a, w in zip(axes, windows, strict=True):
        starts = shapes.offset(trimmed[a % len(shape)], 1 - w)  # "H+2" by 3 gives "H"
        if starts is None:
            return None
        trimmed[a % len(shape)] = starts
    return (*trimmed, *windows)


# --- rotations, appends, evenly spaced values, differences ----------------------


def _rot90_axes(c: AdjointContext) -> tuple[int, int] | None:
    """np.rot90's two axes, counted from the start, where x's rank is known and they are
    written out (or left to their default)."""
    rank, axes = c.rank("x"), c.literals.get("axes")
    if rank is None or not isinstance(axes, tuple) or len(axes) != 2:
        return None
    if not all(_whole(a) and -rank <= a < rank for a in axes):
        return None
    first, second = axes[0] % rank, axes[1] % rank
    return None if first == second else (first, second)


def _rot90_shape(c: AdjointContext) -> Shape | None:
    shape, axes, k = c.shapes.get("x"), _rot90_axes(c), c.literals.get("k")
    if shape is None or axes is None or not _whole(k):
        return None
    if k % 2 == 0:
        return shape
    turned = list(shape)
    turned[axes[0]], turned[axes[1]] = shape[axes[1]], shape[axes[0]]
    return tuple(turned)


def _rot90_adjoint(c: AdjointContext) -> str:
    """g turned back: np.rot90(g, -k) in the same plane."""
    k = c.literals.get("k")
    back = str(-k % 4) if _whole(k) else "-k"
    if back == "0":
        return "g"
    return (
        f"numpy.rot90(g, {back})"
        if c.literals.get("axes") == (0, 1)
        else (f"numpy.rot90(g, {back}, axes)")
    )


def _append_axis(c: AdjointContext) -> int | None:
    """np.append's axis counted from the start, where it and x's rank are known."""
    axis, rank = c.literals.get("axis"), c.rank("x")
    if not _whole(axis) or rank is None or not -rank <= axis < rank:
        return None
    return axis % rank


def _append_shape(c: AdjointContext) -> Shape | None:
    x, y, axis = c.shapes.get("x"), c.shapes.get("y"), c.literals.get("axis")
    if x is None or y is None:
        return None
    if axis is None:  # both flattened
        if not all(_whole(d) for d in (*x, *y)):
            return None
        return (numpy_size(x) + numpy_size(y),)
    along = _append_axis(c)
    if along is None or len(y) != len(x):
        return None
    first, second = x[along], y[along]
    if not (_whole(first) and _whole(second)):
        return None
    if any(x[i] != y[i] for i in range(len(x)) if i != along):
        return None
    return (*x[:along], first + second, *x[along + 1 :])


def _append_adjoint(first: bool) -> Callable[[AdjointContext], str]:
    """The part of g that was x (``first``) or y: np.append is np.concatenate of the two,
    flattened first where axis is None."""

    def choose(c: AdjointContext) -> str:
        name = "x" if first else "y"
        if c.literals.get("axis") is None:
            span = "g[: numpy.size(x)]" if first else "g[numpy.size(x) :]"
            return span if c.rank(name) == 1 else f"numpy.reshape({span}, numpy.shape({name}))"
        along = _append_axis(c)
        if along is None:
            if first:
                return "numpy.take(g, numpy.arange(numpy.shape(x)[axis]), axis=axis)"
            return (
                "numpy.take(g, numpy.arange(numpy.shape(x)[axis], numpy.shape(g)[axis]), axis=axis)"
            )
        shape = c.shapes.get("x")
        size = shape[along] if shape is not None else None
        # numpy.shape, not .shape: x may be a list written out
        stop = str(size) if _whole(size) else f"numpy.shape(x)[{along}]"
        return "g[" + ":, " * along + (f":{stop}]" if first else f"{stop}:]")

    return choose


def _linspace_axis(c: AdjointContext) -> int | None:
    """The axis np.linspace puts its values along, counted from the start, where the
    broadcast shape of start and stop is known."""
    axis = c.literals.get("axis")
    spread = shapes.broadcast(c.shapes.get("x"), c.shapes.get("y"))
    if not _whole(axis) or spread is None or not -len(spread) - 1 <= axis <= len(spread):
        return None
    return axis % (len(spread) + 1)


def _linspace_shape(c: AdjointContext) -> Shape | None:
    num, axis = c.literals.get("num"), _linspace_axis(c)
    spread = shapes.broadcast(c.shapes.get("x"), c.shapes.get("y"))
    if not _whole(num) or axis is None or spread is None:
        return None
    return (*spread[:axis], num, *spread[axis:])


def _linspace_adjoint(first: bool) -> Callable[[AdjointContext], str]:
    """Each value is start * (1 - t) + stop * t, t = np.linspace(0, 1, num, endpoint): g
    weighted by 1 - t (start) or t (stop), summed along the axis, then summed back to the
    argument's shape where start and stop broadcast."""

    def choose(c: AdjointContext) -> str:
        name = "x" if first else "y"
        ends = "1.0, 0.0" if first else "0.0, 1.0"
        endpoint = "" if c.literals.get("endpoint") is True else ", endpoint=endpoint"
        weights = f"numpy.linspace({ends}, num{endpoint})"
        axis = _linspace_axis(c)
        given = c.shapes.get(name)
        spread = shapes.broadcast(c.shapes.get("x"), c.shapes.get("y"))
        if axis is not None and given == () and spread == ():
            return f"{weights} @ g"
        along = "axis" if axis is None else str(axis)
        total = f"numpy.tensordot({weights}, g, (0, {along}))"
        return _summed_back(total, name, given, spread)

    return choose


def _select_shape(c: AdjointContext) -> Shape | None:
    """np.select's result: the conditions, choices and default broadcast together."""
    conditions = c.shapes.get("c")
    if conditions is None or not conditions:
        return None
    return shapes.broadcast(
        conditions[1:], *(c.shapes.get(name) for name in _items(c)), c.shapes.get("d")
    )


def _select_adjoint(c: AdjointContext) -> str:
    """g where the item was chosen (its condition the first to hold), 0 elsewhere."""
    position = c.literals["position"]
    assert isinstance(position, int)
    choices = ["g" if j == position else "0.0" for j in range(len(_items(c)))]
    return f"numpy.select(c, [{', '.join(choices)}])"


def _gradient_axis(c: AdjointContext) -> int | None:
    """The one axis np.gradient differentiates along, counted from the start, where x's
    rank is known (axis None: x must be 1-D, or numpy gives a list of arrays)."""
    rank, axis = c.rank("x"), c.literals.get("axis")
    if rank is None:
        return None
    if axis is None:
        return 0 if rank == 1 else None
    if not _whole(axis) or not -rank <= axis < rank:
        return None
    return axis % rank


def _gradient_shape(c: AdjointContext) -> Shape | None:
    return c.shapes.get("x") if _gradient_axis(c) is not None else None


def _gradient_adjoint(c: AdjointContext) -> str:
    """np.gradient's differences (unit spacing, edge_order 1) taken back: interior entries
    are (x[i+1] - x[i-1]) / 2, the edges x[1] - x[0] and x[-1] - x[-2]. With w = [-g[0],
    g[0], g[1:-1] / 2, g[-1], -g[-1]] along the axis, x's gradient is w[:-2] - w[2:], which
    is -2 times the interior of np.gradient(w)."""
    axis = _gradient_axis(c)
    if axis is None:
        return "_ungradient(g, x, axis)"
    at = "g[" + ":, " * axis
    parts = f"-{at}:1], {at}:1], {at}1:-1] / 2, {at}-1:], -{at}-1:]"
    along = "" if c.rank("x") == 1 else f", axis={axis}"
    inner = "[" + ":, " * axis + "1:-1]"
    return f"-2 * numpy.gradient(numpy.concatenate(({parts}){along}){along}){inner}"


def _gradient_check(literals: dict[str, object]) -> str | None:
    if literals.get("edge_order") != 1:
        return "np.gradient is differentiated with edge_order=1 only"
    axis = literals.get("axis")
    if axis is not None and not _whole(axis):
        return "np.gradient is differentiated along one axis (an int, or None for 1-D x)"
    return None


def _as_array_adjoint(c: AdjointContext) -> str:
    # With a dtype, the gradient goes back in x's floating type (float32 stays float32);
    # x may be a number, which has no .dtype of its own.
    if c.literals.get("dtype") is None:
        return "g"
    return "numpy.array(g, dtype=numpy.result_type(numpy.asarray(x).dtype, 1.0))"


_AS_ARRAY = Depends("g, in x's floating type where a dtype is given", _as_array_adjoint)


def _listed_shape(c: AdjointContext) -> Shape | None:
    """np.array([a, b, ...]) of items of one known shape: their count, then that shape."""
    items = [c.shapes.get(name) for name in _items(c)]
    if not items or items[0] is None or any(item != items[0] for item in items):
        return None
    return (len(items), *items[0])


def _listed_adjoint(c: AdjointContext) -> str:
    return f"g[{c.literals['position']}]"


# --- more products and linear algebra: shapes, adjoints, checks -----------------------------
# Where the ranks are known to be 2, a matrix's transpose is written ``.T``; otherwise (a
# stack of matrices, or a rank not known) ``numpy.swapaxes(a, -1, -2)``, numpy's own
# transpose of the last two axes, which is ``.T`` on a matrix too.


def _t(c: AdjointContext, name: str) -> str:
    """The transpose of matrix ``name`` (of the last two axes of a stack)."""
    return f"{name}.T" if c.rank(name) == 2 else f"numpy.swapaxes({name}, -1, -2)"


def _square_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    return shape if shape is not None and len(shape) >= 2 else None


def _det_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    return shape[:-2] if shape is not None and len(shape) >= 2 else None


def _inv_adjoint(c: AdjointContext) -> str:
    # d(A^-1) = -A^-1 dA A^-1: the gradient is -A^-T g A^-T, with out = A^-1.
    return f"-({_t(c, 'out')} @ g @ {_t(c, 'out')})"


def _times_inverse_t(c: AdjointContext, factor: str) -> str:
    """``factor`` times x^-T (each matrix's, for a stack: ``factor`` one number each)."""
    if c.rank("x") == 2:
        return f"{factor} * numpy.linalg.inv(x).T"
    inverse = "numpy.swapaxes(numpy.linalg.inv(x), -1, -2)"
    return f"numpy.expand_dims({factor.strip('()')}, (-1, -2)) * {inverse}"


def _det_adjoint(c: AdjointContext) -> str:
    # d det(A) = det(A) tr(A^-1 dA): the gradient is g det(A) A^-T (A invertible).
    return _times_inverse_t(c, "(g * out)")


def _solve_shape(c: AdjointContext) -> Shape | None:
    a, b = c.shapes.get("a"), c.shapes.get("b")
    if a is None or b is None or len(a) < 2 or not b:
        return None
    if len(b) == 1:  # numpy 2: b is a vector only where it is 1-D
        return (*a[:-2], a[-1])
    batch = shapes.broadcast(a[:-2], b[:-2])
    return None if batch is None else (*batch, *b[-2:])


def _solve_right(c: AdjointContext) -> str:
    # x = A^-1 b: db = A^-T g, one solve with the transpose, never an inverse.
    ranks = (c.rank("a"), c.rank("b"))
    if ranks in ((2, 1), (2, 2)):
        return "numpy.linalg.solve(a.T, g)"
    if _same_stacks(c):
        return "numpy.linalg.solve(numpy.swapaxes(a, -1, -2), g)"
    return "_solve_db(g, a, b)"


def _same_stacks(c: AdjointContext) -> bool:
    """Are a and b known stacks of matrices of the same stack shape (nothing broadcast)?"""
    a, b = c.shapes.get("a"), c.shapes.get("b")
    return a is not None and b is not None and len(a) == len(b) >= 2 and a[:-2] == b[:-2]


def _solve_left(c: AdjointContext) -> str:
    # dA = -db x^T, with db = A^-T g as for b.
    ranks = (c.rank("a"), c.rank("b"))
    if ranks == (2, 1):
        return "-numpy.outer(numpy.linalg.solve(a.T, g), out)"
    if ranks == (2, 2):
        return "-numpy.linalg.solve(a.T, g) @ out.T"
    if _same_stacks(c):
        solved = "numpy.linalg.solve(numpy.swapaxes(a, -1, -2), g)"
        return f"-{solved} @ numpy.swapaxes(out, -1, -2)"
    return "_solve_da(g, a, b, out)"


# --- np.einsum: the adjoint of each operand is an einsum with the subscripts rearranged -----

_ELLIPSIS = "..."


@dataclass(frozen=True)
class _Subscripts:
    """np.einsum's subscripts read: each operand's labels (``...`` one label) and the
    result's, made explicit where numpy infers it."""

    operands: tuple[tuple[str, ...], ...]
    result: tuple[str, ...]


def _labels(part: str) -> tuple[str, ...] | None:
    """``"...ij"`` as ("...", "i", "j"); None where it is not letters after an optional
    ``...`` (gradgen reads ``...`` at the start only)."""
    start = (_ELLIPSIS,) if part.startswith(_ELLIPSIS) else ()
    rest = part[len(_ELLIPSIS) :] if start else part
    if not all(letter in string.ascii_letters for letter in rest):
        return None
    return (*start, *rest)


def _einsum_subscripts(subscripts: object, count: object) -> _Subscripts | str:
    """The subscripts of an einsum of ``count`` operands, or why gradgen cannot read them."""
    if not isinstance(subscripts, str):
        return "np.einsum's subscripts must be a string written out ('ij,jk->ik')"
    left, arrow, right = subscripts.replace(" ", "").partition("->")
    parts = left.split(",")
    if len(parts) != count:
        return f"np.einsum's subscripts '{subscripts}' name {len(parts)} operands, not {count}"
    operands = tuple(_labels(part) for part in parts)
    result = _labels(right) if arrow else ()
    if result is None or any(o is None for o in operands):
        return (
            f"np.einsum's subscripts '{subscripts}': gradgen reads letters, with '...' only "
            "at the start of an operand's or the result's"
        )
    read = tuple(o for o in operands if o is not None)
    everywhere = [label for o in read for label in o]
    ellipsis = _ELLIPSIS in everywhere
    if not arrow:  # numpy's implicit result: the labels used once, in alphabetical order
        once = sorted(
            label for label in set(everywhere) - {_ELLIPSIS} if everywhere.count(label) == 1
        )
        result = ((_ELLIPSIS,) if ellipsis else ()) + tuple(once)
    if len(set(result)) != len(result) or not set(result) <= set(everywhere) | {_ELLIPSIS}:
        return f"np.einsum's subscripts '{subscripts}': a label of the result is not an operand's"
    if ellipsis and _ELLIPSIS not in result:
        return f"np.einsum's subscripts '{subscripts}': '...' of an operand must be in the result"
    return _Subscripts(read, result)


def _einsum_check(literals: dict[str, object]) -> str | None:
    found = _einsum_subscripts(literals.get("subscripts"), literals.get("operands"))
    return found if isinstance(found, str) else None


def _operand_count(c: AdjointContext) -> int:
    return sum(1 for name in c.shapes if name[:1] == "x" and name[1:].isdigit())


def _label_dims(
    subscripts: _Subscripts, operand_shapes: list[Shape]
) -> tuple[dict[str, shapes.Dim | None], list[Shape | None]]:
    """The dimension of each label (None where operands disagree beyond numpy's 1s), and
    the dimensions each operand's ``...`` stands for."""
    dims: dict[str, shapes.Dim | None] = {}
    ellipses: list[Shape | None] = []
    for labels, shape in zip(subscripts.operands, operand_shapes, strict=True):
        named = [label for label in labels if label != _ELLIPSIS]
        if len(shape) < len(named) or (_ELLIPSIS not in labels and len(shape) != len(named)):
            return {}, []
        ellipses.append(shape[: len(shape) - len(named)] if _ELLIPSIS in labels else None)
        for label, dim in zip(named, shape[len(shape) - len(named) :], strict=True):
            seen = dims.get(label, 1)
            dims[label] = dim if seen == 1 else seen if dim in (1, seen) else None
    return dims, ellipses


def _einsum_shape(c: AdjointContext) -> Shape | None:
    subscripts = _einsum_subscripts(c.literals.get("subscripts"), _operand_count(c))
    if isinstance(subscripts, str):
        return None
    if not subscripts.result:
        return SCALAR_SHAPE
    given = [c.shapes.get(f"x{j}") for j in range(len(subscripts.operands))]
    if any(shape is None for shape in given):
        return None
    dims, ellipses = _label_dims(subscripts, [s for s in given if s is not None])
    if not dims and not ellipses:
        return None
    found: list[shapes.Dim] = []
    for label in subscripts.result:
        if label == _ELLIPSIS:
            batch = shapes.broadcast(*(e for e in ellipses if e is not None))
            if batch is None:
                return None
            found += batch
        elif dims.get(label) is None:
            return None
        else:
            found.append(dims[label])  # type: ignore[arg-type]
    return tuple(found)


def _einsum_adjoint(c: AdjointContext) -> str:
    """``numpy.einsum("<result>,<the others>->x", g, <the others>)``: the gradient of an
    operand contracts the result's gradient with the other operands. A label the operand
    repeats (``"ii->i"``, a diagonal) gets a fresh label and an identity matrix joining
    the two; a label summed in the operand alone (``"ij->i"``) comes from ones of its
    shape (the gradient is spread along it)."""
    count = _operand_count(c)
    subscripts = _einsum_subscripts(c.literals.get("subscripts"), count)
    assert not isinstance(subscripts, str), subscripts  # refused where it is written
    position = c.literals["position"]
    assert isinstance(position, int)
    used = {label for o in (*subscripts.operands, subscripts.result) for label in o}
    fresh = [letter for letter in string.ascii_letters if letter not in used]
    ranks = [c.rank(f"x{j}") for j in range(count)]
    if _ELLIPSIS in used and all(rank is not None for rank in ranks):
        subscripts = _spelled_out(subscripts, [r for r in ranks if r is not None], fresh)
    own = subscripts.operands[position]
    target: list[str] = []
    inputs: list[tuple[str, ...]] = [subscripts.result]
    arguments = ["g"]
    for j, labels in enumerate(subscripts.operands):
        if j != position:
            inputs.append(labels)
            arguments.append(f"x{j}")
    for place, label in enumerate(own):
        if label in target:
            axis = place - len(own) if _ELLIPSIS in own else place
            new = fresh.pop(0)
            inputs.append((label, new))
            arguments.append(f"numpy.eye(x.shape[{axis}])")
            target.append(new)
        else:
            target.append(label)
    present = {label for labels in inputs for label in labels}
    if any(label not in present for label in target):
        inputs.append(own)
        arguments.append("numpy.ones_like(x)")
    batch = _ELLIPSIS in subscripts.result and _ELLIPSIS not in own
    if batch:
        # The others broadcast over axes this operand has not: its gradient is summed
        # over them (numpy's einsum keeps a '...' of its operands).
        target.insert(0, _ELLIPSIS)
    text = ",".join("".join(labels) for labels in inputs) + "->" + "".join(target)
    adjoint = f'numpy.einsum("{text}", {", ".join(arguments)})'
    if _einsum_fits(c, subscripts, position, count):
        return adjoint
    return f"_spread_or_sum({adjoint}, x)"


def _spelled_out(subscripts: _Subscripts, ranks: list[int], fresh: list[str]) -> _Subscripts:
    """The subscripts with each ``...`` written as labels of its own (taken from ``fresh``),
    where the operands' ranks are known: numpy lines them up from the right."""
    counts = [
        rank - (len(labels) - 1)
        for labels, rank in zip(subscripts.operands, ranks, strict=True)
        if _ELLIPSIS in labels
    ]
    batch = [fresh.pop(0) for _ in range(max(counts, default=0))]

    def written(labels: tuple[str, ...], rank: int | None) -> tuple[str, ...]:
        if _ELLIPSIS not in labels:
            return labels
        many = len(batch) if rank is None else rank - (len(labels) - 1)
        return (*batch[len(batch) - many :], *labels[1:])

    return _Subscripts(
        tuple(written(o, r) for o, r in zip(subscripts.operands, ranks, strict=True)),
        written(subscripts.result, None),
    )


def _einsum_fits(c: AdjointContext, subscripts: _Subscripts, position: int, count: int) -> bool:
    """Is the adjoint einsum known to have the operand's shape? Every shape known, and each
    label (each axis of a ``...``, spelled out) of one dimension wherever it is: none a 1
    numpy spread over a longer one (which the gradient is summed or spread back over)."""
    given = [c.shapes.get(f"x{j}") for j in range(count)]
    if any(shape is None for shape in given):
        return False
    known = [s for s in given if s is not None]
    if any(_ELLIPSIS in labels for labels in subscripts.operands):
        used = {label for o in (*subscripts.operands, subscripts.result) for label in o}
        fresh = [letter for letter in string.ascii_letters if letter not in used]
        subscripts = _spelled_out(subscripts, [len(s) for s in known], fresh)
    dims: dict[str, set[shapes.Dim]] = {}
    for labels, shape in zip(subscripts.operands, known, strict=True):
        if len(labels) != len(shape):
            return False
        for label, dim in zip(labels, shape, strict=True):
            dims.setdefault(label, set()).add(dim)
    return all(len(found) == 1 for found in dims.values())


# --- tensordot, inner, vdot, kron, cross, matrix_power -----------------------------------


def _summed_axes(axes: object, left: int, right: int) -> tuple[list[int], list[int]] | None:
    """The axes ``numpy.tensordot(x, y, axes)`` sums over, of x (rank ``left``) and of y
    (``right``), paired in order; None where ``axes`` is not a literal gradgen reads."""
    if isinstance(axes, int) and not isinstance(axes, bool):
        return list(range(left - axes, left)), list(range(axes))
    if not (isinstance(axes, tuple) and len(axes) == 2):
        return None
    pairs = [list(part) if isinstance(part, tuple) else [part] for part in axes]
    if not all(isinstance(a, int) for part in pairs for a in part):
        return None
    if len(pairs[0]) != len(pairs[1]):
        return None
    return [a % left for a in pairs[0]], [b % right for b in pairs[1]]


def _tensordot_parts(
    c: AdjointContext, axes: object
) -> tuple[list[int], list[int], list[int], list[int]] | None:
    left, right = c.rank("x"), c.rank("y")
    if left is None or right is None:
        return None
    summed = _summed_axes(axes, left, right)
    if summed is None:
        return None
    summed_x, summed_y = summed
    free_x = [a for a in range(left) if a not in summed_x]
    free_y = [b for b in range(right) if b not in summed_y]
    return summed_x, summed_y, free_x, free_y


def _put_back(value: str, order: list[int]) -> str:
    """``value`` whose axes are ``order`` of the operand's, transposed to the operand's."""
    inverse = tuple(sorted(range(len(order)), key=lambda i: order[i]))
    return value if inverse == tuple(range(len(order))) else f"numpy.transpose({value}, {inverse})"


def _tensordot_left(c: AdjointContext, axes: object = NOT_LITERAL) -> str:
    # x's gradient: g contracted with y over y's free axes; x's summed axes come after,
    # in the order of y's, and are put back in place.
    axes = c.literals.get("axes") if axes is NOT_LITERAL else axes
    parts = _tensordot_parts(c, axes)
    if parts is None:
        return f"_tensordot_dx(g, x, y, {axes!r})"
    summed_x, summed_y, free_x, free_y = parts
    g_axes = list(range(len(free_x), len(free_x) + len(free_y)))
    value = f"numpy.tensordot(g, y, axes=({g_axes}, {free_y}))"
    order = free_x + [summed_x[summed_y.index(b)] for b in sorted(summed_y)]
    return _put_back(value, order)


def _tensordot_right(c: AdjointContext, axes: object = NOT_LITERAL) -> str:
    axes = c.literals.get("axes") if axes is NOT_LITERAL else axes
    parts = _tensordot_parts(c, axes)
    if parts is None:
        return f"_tensordot_dy(g, x, y, {axes!r})"
    summed_x, summed_y, free_x, free_y = parts
    value = f"numpy.tensordot(x, g, axes=({free_x}, {list(range(len(free_x)))}))"
    order = [summed_y[summed_x.index(a)] for a in sorted(summed_x)] + free_y
    return _put_back(value, order)


def _tensordot_shape(c: AdjointContext, axes: object = NOT_LITERAL) -> Shape | None:
    axes = c.literals.get("axes") if axes is NOT_LITERAL else axes
    parts = _tensordot_parts(c, axes)
    x, y = c.shapes.get("x"), c.shapes.get("y")
    if parts is None or x is None or y is None:
        return None
    _, _, free_x, free_y = parts
    return (*(x[a] for a in free_x), *(y[b] for b in free_y))


def _tensordot_check(literals: dict[str, object]) -> str | None:
    if _summed_axes(literals.get("axes"), 64, 64) is None:
        return "np.tensordot's axes must be a whole number or a pair of lists of them"
    return None


_INNER = ((-1,), (-1,))  # np.inner(x, y) is np.tensordot(x, y, axes=([-1], [-1]))


# np.inner of a number is a product: with a rank unknown, a helper looks.
def _inner_left(c: AdjointContext) -> str:
    ranks = (c.rank("x"), c.rank("y"))
    if ranks == (1, 1) or ranks[1] == 0:
        return "g * y"
    if ranks[0] == 0:
        return "numpy.sum(g * y)"
    if None in ranks:
        return "_inner_dx(g, x, y)"
    return _tensordot_left(c, _INNER)


def _inner_right(c: AdjointContext) -> str:
    ranks = (c.rank("x"), c.rank("y"))
    if ranks == (1, 1) or ranks[0] == 0:
        return "g * x"
    if ranks[1] == 0:
        return "numpy.sum(g * x)"
    if None in ranks:
        return "_inner_dy(g, x, y)"
    return _tensordot_right(c, _INNER)


def _inner_shape(c: AdjointContext) -> Shape | None:
    if c.rank("x") == 0:
        return c.shapes.get("y")
    if c.rank("y") == 0:
        return c.shapes.get("x")
    return _tensordot_shape(c, _INNER)


def _vdot_left(c: AdjointContext) -> str:
    # np.vdot flattens both: each entry of x meets the entry of y at its place.
    if c.shapes.get("x") is not None and c.shapes.get("x") == c.shapes.get("y"):
        return "g * y"
    return "g * numpy.reshape(y, numpy.shape(x))"


def _vdot_right(c: AdjointContext) -> str:
    if c.shapes.get("x") is not None and c.shapes.get("x") == c.shapes.get("y"):
        return "g * x"
    return "g * numpy.reshape(x, numpy.shape(y))"


def _kron_shape(c: AdjointContext) -> Shape | None:
    x, y = c.shapes.get("x"), c.shapes.get("y")
    if x is None or y is None or len(x) != len(y):
        return None
    if not all(isinstance(d, int) for d in (*x, *y)):
        return None
    return tuple(a * b for a, b in zip(x, y, strict=True))  # type: ignore[operator]


# np.kron(x, y) of vectors is the outer product flattened, of matrices the blocks x[i, j] y:
# g is cut back into those (x's axes and y's interleaved) and contracted with the other.
def _kron_left(c: AdjointContext) -> str:
    ranks = (c.rank("x"), c.rank("y"))
    if ranks == (1, 1):
        return "numpy.reshape(g, (len(x), len(y))) @ y"
    if ranks == (2, 2):
        blocks = "numpy.reshape(g, (x.shape[0], y.shape[0], x.shape[1], y.shape[1]))"
        return f'numpy.einsum("ikjl,kl->ij", {blocks}, y)'
    return "_kron_dx(g, x, y)"


def _kron_right(c: AdjointContext) -> str:
    ranks = (c.rank("x"), c.rank("y"))
    if ranks == (1, 1):
        return "x @ numpy.reshape(g, (len(x), len(y)))"
    if ranks == (2, 2):
        blocks = "numpy.reshape(g, (x.shape[0], y.shape[0], x.shape[1], y.shape[1]))"
        return f'numpy.einsum("ikjl,ij->kl", {blocks}, x)'
    return "_kron_dy(g, x, y)"


def _cross_shape(c: AdjointContext) -> Shape | None:
    x, y = c.shapes.get("x"), c.shapes.get("y")
    if x is None or y is None or not x or not y or x[-1] != 3 or y[-1] != 3:
        return None
    return shapes.broadcast(x, y)


def _matrix_power_check(literals: dict[str, object]) -> str | None:
    n = literals.get("n")
    if type(n) is not int or n < 1:
        return (
            "np.linalg.matrix_power is differentiated for a whole number n >= 1 written out "
            "(for a negative power, take the power of np.linalg.inv(a))"
        )
    return None


def _matrix_power_adjoint(c: AdjointContext) -> str:
    # d(A^n) = sum over k of A^k dA A^(n-1-k): the gradient is the sum of
    # (A^k)^T g (A^(n-1-k))^T.
    n = c.literals.get("n")
    assert isinstance(n, int) and n >= 1, n

    def power(k: int) -> str | None:
        if k == 0:
            return None
        value = "x" if k == 1 else f"numpy.linalg.matrix_power(x, {k})"
        if c.rank("x") == 2:
            return f"{value}.T"
        return f"numpy.swapaxes({value}, -1, -2)"

    terms = []
    for k in range(n):
        factors = [f for f in (power(k), "g", power(n - 1 - k)) if f is not None]
        terms.append(" @ ".join(factors))
    return " + ".join(terms)


def _logdet_adjoint(c: AdjointContext) -> str:
    # d log|det(A)| = tr(A^-1 dA): the gradient is g A^-T.
    return _times_inverse_t(c, "g")


def _eigenvalues_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    return shape[:-1] if shape is not None and len(shape) >= 2 else None


def _eigh_w_adjoint(c: AdjointContext) -> str:
    # x = v diag(w) v^T: from w, v diag(g) v^T, a symmetric matrix; numpy reads x's lower
    # triangle, so an entry below the diagonal stands for two of it.
    if c.rank("x") == 2:
        return "numpy.tril((v * g) @ v.T) * (2 - numpy.eye(len(w)))"
    spread = "(v * numpy.expand_dims(g, -2)) @ numpy.swapaxes(v, -1, -2)"
    return f"numpy.tril({spread}) * (2 - numpy.eye(w.shape[-1]))"


def _pinv_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    return (*shape[:-2], shape[-1], shape[-2]) if shape is not None and len(shape) >= 2 else None


def _pinv_adjoint(c: AdjointContext) -> str:
    # dX = -X dA X + X X^T dA^T (I - A X) + (I - X A) dA^T X^T X (Golub and Pereyra): the
    # gradient is -X^T g X^T + (I - A X) g^T X X^T + X^T X g^T (I - X A).
    matrix = c.rank("x") == 2
    x_t = _t(c, "out")
    g_t = "g.T" if matrix else "numpy.swapaxes(g, -1, -2)"
    rows, columns = ("len(x)", "x.shape[1]") if matrix else ("x.shape[-2]", "x.shape[-1]")
    left = f"(numpy.eye({rows}) - x @ out)"
    right = f"(numpy.eye({columns}) - out @ x)"
    return f"-({x_t} @ g @ {x_t}) + {left} @ {g_t} @ out @ {x_t} + {x_t} @ out @ {g_t} @ {right}"


# --- scipy.linalg, np.linalg.svd, scipy.signal: shapes, adjoints, checks ----------------------

_TRANSPOSED = {0: False, "N": False, 1: True, "T": True, 2: True, "C": True}  # real: C is T


def _solve_triangular_check(literals: dict[str, object]) -> str | None:
    trans = literals.get("trans")
    if isinstance(trans, bool) or trans not in _TRANSPOSED:
        return (
            "scipy.linalg.solve_triangular is differentiated for trans written out as 0, 1, "
            "2, 'N', 'T' or 'C'"
        )
    for name in ("lower", "unit_diagonal"):
        if not isinstance(literals.get(name), bool):
            return f"scipy.linalg.solve_triangular's {name} must be True or False written out"
    return None


def _solve_triangular_shape(c: AdjointContext) -> Shape | None:
    a, b = c.shapes.get("a"), c.shapes.get("b")
    return b if a is not None and len(a) == 2 and b is not None and len(b) in (1, 2) else None


def _solve_triangular_matrix(c: AdjointContext, results: frozenset[str]) -> str | None:
    """A stack of triangular matrices, or of right-hand sides: scipy solves each, gradgen's
    gradient is of one matrix a and one vector or matrix b."""
    a, b = c.shapes.get("a"), c.shapes.get("b")
    if a is not None and len(a) != 2:
        return (
            "the gradient of scipy.linalg.solve_triangular is written for one matrix a "
            f"(2-D), and a has {len(a)} axes here"
        )
    if b is not None and len(b) > 2:
        return (
            "the gradient of scipy.linalg.solve_triangular is written for b a vector or a "
            f"matrix (1-D or 2-D), and b has {len(b)} axes here"
        )
    return None


def _triangular_call(c: AdjointContext, right: str) -> str:
    """a solved against ``right``: transposed where the forward is not."""
    transposed = _TRANSPOSED[c.literals["trans"]]
    keywords = "" if transposed else ", trans=1"
    if c.literals.get("lower"):
        keywords += ", lower=True"
    if c.literals.get("unit_diagonal"):
        keywords += ", unit_diagonal=True"
    return f"scipy.linalg.solve_triangular(a, {right}{keywords})"


def _solve_triangular_right(c: AdjointContext) -> str:
    # x = op(A)^-1 b: db = op(A)^-T g, one triangular solve with the other transpose.
    return _triangular_call(c, "g")


def _solve_triangular_left(c: AdjointContext) -> str:
    # d op(A) = -db x^T, on the triangle scipy reads (its diagonal not, with a unit one).
    solved = _triangular_call(c, "g")
    ranks = (c.rank("a"), c.rank("b"))
    if ranks == (2, 1):
        product = f"numpy.outer({solved}, out)"
    elif ranks == (2, 2):
        product = f"{solved} @ out.T"
    else:
        product = f"_solve_triangular_product({solved}, out, a)"
    if _TRANSPOSED[c.literals["trans"]]:
        product = f"({product}).T"  # a is a matrix: so is the product
    triangle = "tril" if c.literals.get("lower") else "triu"
    diagonal = c.literals.get("unit_diagonal")
    offset = "" if not diagonal else (", -1" if triangle == "tril" else ", 1")
    return f"-numpy.{triangle}({product}{offset})"


def _bands(c: AdjointContext) -> tuple[int, int]:
    bands = c.literals["l_and_u"]
    assert isinstance(bands, tuple) and len(bands) == 2, bands
    return bands[0], bands[1]


def _solve_banded_check(literals: dict[str, object]) -> str | None:
    bands = literals.get("l_and_u")
    if not (
        isinstance(bands, tuple)
        and len(bands) == 2
        and all(type(n) is int and n >= 0 for n in bands)
    ):
        return (
            "scipy.linalg.solve_banded is differentiated for l_and_u written out as a pair of "
            "whole numbers (lower, upper)"
        )
    return None


def _solve_banded_shape(c: AdjointContext) -> Shape | None:
    ab, b = c.shapes.get("ab"), c.shapes.get("b")
    return b if ab is not None and len(ab) == 2 and b is not None and len(b) in (1, 2) else None


def _solve_banded_matrix(c: AdjointContext, results: frozenset[str]) -> str | None:
    """A stack of banded matrices (scipy solves each): gradgen's gradient is of one."""
    ab = c.shapes.get("ab")
    if ab is not None and len(ab) != 2:
        return (
            "the gradient of scipy.linalg.solve_banded is written for one banded matrix ab "
            f"(2-D), and ab has {len(ab)} axes here"
        )
    return None


def _banded_solved(c: AdjointContext) -> str:
    # x = A^-1 b: db = A^-T g, a banded solve with the transpose (its bands swapped).
    lower, upper = _bands(c)
    transposed = f"_banded_transpose(ab, {lower}, {upper})"
    return f"scipy.linalg.solve_banded(({upper}, {lower}), {transposed}, g)"


def _banded_ab(c: AdjointContext) -> str:
    # dA = -db x^T, on A's band, in ab's storage.
    lower, upper = _bands(c)
    return f"_banded_grad({_banded_solved(c)}, out, ab, {lower}, {upper})"


def _sylvester_shape(c: AdjointContext) -> Shape | None:
    a, b, q = c.shapes.get("a"), c.shapes.get("b"), c.shapes.get("q")
    if a is None or b is None or q is None or min(len(a), len(b), len(q)) < 2:
        return None
    batch = shapes.broadcast(shapes.broadcast(a[:-2], b[:-2]) or (), q[:-2])
    return None if batch is None else (*batch, *q[-2:])


def _sylvester_solved(c: AdjointContext) -> str:
    # X solves A X + X B = Q: its adjoint Y solves A^T Y + Y B^T = g.
    return f"scipy.linalg.solve_sylvester({_t(c, 'a')}, {_t(c, 'b')}, g)"


def _sylvester_unbroadcast(c: AdjointContext, name: str, adjoint: str) -> str:
    """``adjoint`` summed back to ``name``'s shape where scipy broadcast a stack of them."""
    shape = c.shapes.get(name)
    if shape is not None and (shape == c.shapes.get("out") or c.rank("out") == len(shape) == 2):
        return adjoint
    return f"_matrices_unbroadcast({adjoint}, {name})"


def _matrices_only(
    function: str, names: tuple[str, ...], why: str
) -> Callable[[AdjointContext, frozenset[str]], str | None]:
    """A refusal (``refuse_shapes``) of a number or a vector where the gradient is written
    for matrices (or stacks of them): ``why`` says what scipy does with one instead."""

    def refusal(c: AdjointContext, results: frozenset[str]) -> str | None:
        for name in names:
            shape = c.shapes.get(name)
            if shape is not None and len(shape) < 2:
                return (
                    f"the gradient of {function} is written for matrices (or stacks of them),"
                    f" and {name} has {len(shape)} axes here"
                )
        return None

    refusal.__doc__ = why
    return refusal


_sylvester_matrices = _matrices_only(
    "scipy.linalg.solve_sylvester",
    ("a", "b", "q"),
    "scipy does not spread a number or a vector over a matrix of the equation as numpy "
    "broadcasts (a number q reads as a multiple of I).",
)
_sqrtm_matrix = _matrices_only(
    "scipy.linalg.sqrtm",
    ("x",),
    "scipy.linalg.sqrtm of a number is not its square root as a matrix of one entry.",
)


def _sylvester_a(c: AdjointContext) -> str:
    return _sylvester_unbroadcast(c, "a", f"-({_sylvester_solved(c)} @ {_t(c, 'out')})")


def _sylvester_b(c: AdjointContext) -> str:
    return _sylvester_unbroadcast(c, "b", f"-({_t(c, 'out')} @ {_sylvester_solved(c)})")


def _sylvester_q(c: AdjointContext) -> str:
    return _sylvester_unbroadcast(c, "q", _sylvester_solved(c))


def _sqrtm_adjoint(c: AdjointContext) -> str:
    # S S = A: dS S + S dS = dA, so the adjoint solves S^T Y + Y S^T = g.
    return f"scipy.linalg.solve_sylvester({_t(c, 'out')}, {_t(c, 'out')}, g)"


def _svd_literals(literals: dict[str, object]) -> str | None:
    for name in ("full_matrices", "compute_uv", "hermitian"):
        if not isinstance(literals.get(name), bool):
            return f"np.linalg.svd's {name} must be True or False written out"
    if literals.get("hermitian"):
        return (
            "np.linalg.svd is differentiated with hermitian=False (with True, numpy reads one "
            "triangle of a and its singular vectors' signs differ): leave it out"
        )
    return None


def _smaller(m: Dim, n: Dim) -> Dim | None:
    if m == n:
        return m
    if isinstance(m, int) and isinstance(n, int):
        return min(m, n)
    return None


def _singular_values_shape(c: AdjointContext) -> Shape | None:
    x = c.shapes.get("x")
    if x is None or len(x) < 2:
        return None
    k = _smaller(x[-2], x[-1])
    return None if k is None else (*x[:-2], k)


def _svd_shapes(c: AdjointContext) -> tuple[Shape | None, ...]:
    x = c.shapes.get("x")
    s = _singular_values_shape(c)
    if x is None or s is None:
        return (None, s, None)
    k = s[-1]
    m, n = x[-2], x[-1]
    full = c.literals.get("full_matrices") is not False
    return ((*x[:-2], m, m if full else k), s, (*x[:-2], n if full else k, n))


def _svd_full_refusal(c: AdjointContext, results: frozenset[str]) -> str | None:
    """u and vh of full_matrices=True of a matrix not square: the columns (rows) added to
    make them square are any basis of what x leaves out, with no gradient."""
    if c.literals.get("full_matrices") is False or not results & {"u", "vh"}:
        return None
    x = c.shapes.get("x")
    if x is not None and len(x) >= 2 and x[-1] == x[-2]:
        return None
    return (
        "the gradient of np.linalg.svd's u and vh is written for full_matrices=False (or a "
        "matrix known to be square): with full_matrices=True (numpy's default), u and vh "
        "get columns that x does not determine; write full_matrices=False"
    )


def _svd_s_adjoint(c: AdjointContext) -> str:
    # x = u diag(s) vh: from s, u diag(g) vh (u's and vh's first len(s) columns and rows).
    square = c.literals.get("full_matrices") is False or (
        (x := c.shapes.get("x")) is not None and len(x) >= 2 and x[-1] == x[-2]
    )
    if c.rank("x") == 2:
        return "(u * g) @ vh" if square else "(u[:, : len(s)] * g) @ vh[: len(s)]"
    if square:
        return "(u * numpy.expand_dims(g, -2)) @ vh"
    return "(u[..., : s.shape[-1]] * numpy.expand_dims(g, -2)) @ vh[..., : s.shape[-1], :]"


def _convolve_shape(c: AdjointContext) -> Shape | None:
    """scipy.signal's result: x's shape plus y's less 1 (full), x's (same), or the
    difference plus 1 (valid), axis by axis."""
    x, y, mode = c.shapes.get("x"), c.shapes.get("y"), c.literals.get("mode")
    if x is None or y is None or len(x) != len(y):
        return None
    if mode == "same":
        return x
    if not all(isinstance(d, int) for d in (*x, *y)):
        return None
    pairs = list(zip(x, y, strict=True))
    if mode == "full":
        return tuple(m + n - 1 for m, n in pairs)  # type: ignore[operator]
    if mode == "valid":
        return tuple(abs(m - n) + 1 for m, n in pairs)  # type: ignore[operator]
    return None


def _convolve_check(literals: dict[str, object]) -> str | None:
    if literals.get("mode") not in ("full", "valid", "same"):
        return "scipy.signal's mode must be 'full', 'valid' or 'same' written out"
    return None


_AXES = ("axis", "keepdims")  # a reduction's backward is written for its axes

# dtypes whose values are whole numbers: an astype to one is piecewise constant.
_WHOLE_NUMBER_DTYPES = frozenset(
    {
        "int",
        "bool",
        "bool_",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "intp",
    }
)


def _to_whole_numbers(bound: dict[str, Expr]) -> bool:
    """``int``, ``np.int64``, ``"int32"``, ``bool``: a dtype whose values have no gradient."""
    dtype = unwrap(bound["dtype"])
    if isinstance(dtype, Name):
        return dtype.id in _WHOLE_NUMBER_DTYPES
    if isinstance(dtype, Const):
        return dtype.text.strip("'\"").rpartition(".")[2] in _WHOLE_NUMBER_DTYPES
    return False


def _fill_adjoint(c: AdjointContext) -> str:
    """The gradient of a fill value: the upstream summed over the entries it filled (over
    the axes written out where both shapes are known)."""
    x, out = c.shapes.get("x"), c.shapes.get("out")
    if x == shapes.SCALAR:
        return "numpy.sum(g)"
    if x is None or out is None or len(out) < len(x):
        return "_unbroadcast(g, x)"
    extra = len(out) - len(x)
    summed = "g" if not extra else f"numpy.sum(g, axis={tuple(range(extra))})"
    ones = tuple(i for i, (d, o) in enumerate(zip(x, out[extra:], strict=True)) if d != o)
    return summed if not ones else f"numpy.sum({summed}, axis={ones}, keepdims=True)"


def _like_shape(c: AdjointContext) -> Shape | None:
    return c.shapes.get("like")


def _full_shape(c: AdjointContext) -> Shape | None:
    """``np.full((2, 3), x)``, ``np.full(3, x)``: a shape written out."""
    written = c.literals.get("shape")
    if isinstance(written, int):
        return (written,)
    if isinstance(written, tuple) and all(isinstance(d, int) for d in written):
        return written
    return None


# --- more reductions and scans: shapes and adjoints -------------------------------------


def _normal_axes(c: AdjointContext) -> tuple[int, ...] | None:
    """The reduced axes, counted from 0, where the axis and x's rank are known."""
    axis, rank = c.literals.get("axis"), c.rank("x")
    if rank is None:
        return None
    if axis is None:
        return tuple(range(rank))
    axes = axis if isinstance(axis, tuple) else (axis,)
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        return None
    return tuple(sorted({a % rank for a in axes})) if rank else ()


def _scanned(c: AdjointContext) -> Shape | None:
    """np.cumsum, np.cumprod: x's shape along an axis; flattened with axis None."""
    shape = c.shapes.get("x")
    if shape is None:
        return None
    if c.literals.get("axis") is None:
        size = 1
        for d in shape:
            if not isinstance(d, int):
                return None  # a dimension named, not known
            size *= d
        return (size,)
    if not isinstance(c.literals.get("axis"), int):
        return None
    return shape or (1,)  # numpy scans a number as an array of one entry


def _scan_adjoint(c: AdjointContext) -> str:
    # x's entry i reaches every later entry of the running total: the reversed running
    # total of g. axis None: numpy flattens x first; so it does a number, along any axis.
    rank = c.rank("x")
    if c.literals.get("axis") is None or rank == 0:
        return "numpy.reshape(numpy.cumsum(g[::-1])[::-1], numpy.shape(x))"
    reversed_total = "numpy.flip(numpy.cumsum(numpy.flip(g, axis), axis), axis)"
    if rank is None:
        return f"numpy.reshape({reversed_total}, numpy.shape(x))"  # x may be a number
    return reversed_total


def _prod_adjoint(c: AdjointContext) -> str:
    # The product of the other entries, by products from either side: no division by x,
    # so exact where x has zeros (one zero: its gradient is the product of the others,
    # every other entry's is 0; two zeros: all 0).
    return f"_prod_others(x, axis) * {_expanded(c, 'g')}"


def _nansum_adjoint(c: AdjointContext) -> str:
    return f"numpy.where(numpy.isnan(x), 0.0, {_expanded(c, 'g')})"


def _nanmean_adjoint(c: AdjointContext) -> str:
    along = "" if c.literals.get("axis") is None else ", axis=axis, keepdims=True"
    count = f"numpy.sum(numpy.logical_not(numpy.isnan(x)){along})"
    return f"numpy.where(numpy.isnan(x), 0.0, {_expanded(c, 'g')} / {count})"


def _ptp_adjoint(c: AdjointContext) -> str:
    # max - min: the gradient goes to the maximum and, negated, to the minimum; ties share
    # it equally as np.max's do.
    whole = c.literals.get("axis") is None
    along = "" if whole else ", axis=axis, keepdims=True"

    def share(extreme: str) -> str:
        winners = f"(x == numpy.{extreme}(x{along}))"
        count = f"numpy.sum({winners}{along}, dtype=numpy.result_type(x))"
        return f"{winners} / {count}"

    return f"({share('max')} - {share('min')}) * {_expanded(c, 'g')}"


def _sorted_shape(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    if shape is None:
        return None
    if c.literals.get("axis") is None:
        return _scanned(c)
    return shape if shape else None


def _sort_adjoint(c: AdjointContext) -> str:
    # Entry j of the result is x's entry argsort(x)[j]: g goes back through the inverse
    # permutation, argsort(argsort(x)). Ties: one of the tied entries gets each share.
    if c.literals.get("axis") is None:
        return "numpy.reshape(g[numpy.argsort(numpy.argsort(x, axis=None))], numpy.shape(x))"
    return "numpy.take_along_axis(g, numpy.argsort(numpy.argsort(x, axis), axis), axis)"


def _partition_adjoint(c: AdjointContext) -> str:
    # The result is a permutation of x along the axis (the kth entry in place, the others
    # on their sides in no set order): sorting both says where each entry went, whatever
    # order the partition left them in.
    if c.literals.get("axis") is None:
        back = "g[numpy.argsort(out)][numpy.argsort(numpy.argsort(x, axis=None))]"
        return f"numpy.reshape({back}, numpy.shape(x))"
    by_value = "numpy.take_along_axis(g, numpy.argsort(out, axis), axis)"
    return f"numpy.take_along_axis({by_value}, numpy.argsort(numpy.argsort(x, axis), axis), axis)"


def _diffed(c: AdjointContext) -> Shape | None:
    shape, n, axis = c.shapes.get("x"), c.literals.get("n"), c.literals.get("axis")
    if shape is None or not shape or not isinstance(n, int) or not isinstance(axis, int):
        return None
    if not -len(shape) <= axis < len(shape):
        return None
    axis %= len(shape)
    length = shape[axis]
    if not isinstance(length, int):
        return None  # a dimension named, not known
    return (*shape[:axis], max(length - n, 0), *shape[axis + 1 :])


def _diff_adjoint(c: AdjointContext) -> str:
    # np.diff is linear: y[i] = x[i + 1] - x[i], whose transpose gives x's entry i the
    # gradient g[i - 1] - g[i] (0 beyond the ends): a difference of g padded with zeros.
    # n differences: n transposes, in turn.
    n = c.literals.get("n")
    assert isinstance(n, int)
    adjoint = "g"
    for _ in range(n):
        adjoint = f"-numpy.diff({adjoint}, axis=axis, prepend=0, append=0)"
    return adjoint


def _traced(c: AdjointContext) -> Shape | None:
    shape = c.shapes.get("x")
    offset, axis1, axis2 = (c.literals.get(n) for n in ("offset", "axis1", "axis2"))
    known = all(isinstance(v, int) and not isinstance(v, bool) for v in (offset, axis1, axis2))
    if shape is None or len(shape) < 2 or not known:
        return None
    assert isinstance(offset, int) and isinstance(axis1, int) and isinstance(axis2, int)
    first, second = axis1 % len(shape), axis2 % len(shape)
    if first == second:
        return None
    return tuple(d for i, d in enumerate(shape) if i not in (first, second))


def _trace_adjoint(c: AdjointContext) -> str:
    # g on the diagonal the trace added up (numpy.eye's k is the offset), zeros elsewhere.
    diagonal = "" if c.literals.get("offset") == 0 else ", offset"
    eye = f"numpy.eye(x.shape[axis1], x.shape[axis2]{diagonal})"
    axis1, axis2 = c.literals.get("axis1"), c.literals.get("axis2")
    if c.rank("x") == 2 and (axis1, axis2) in ((0, 1), (-2, -1), (0, -1), (-2, 1)):
        return f"{eye} * g"
    if c.rank("x") == 2 and (axis1, axis2) in ((1, 0), (-1, -2), (-1, 0), (1, -2)):
        return f"numpy.transpose({eye}) * g"
    # the trace's result has x's other axes: g entry by entry times the diagonal's mask,
    # whose two axes then go back where axis1 and axis2 were
    spread = f"numpy.expand_dims(g, (-2, -1)) * {eye}"
    return f"numpy.moveaxis({spread}, (-2, -1), (axis1, axis2))"


def _weights_along(c: AdjointContext) -> tuple[str, tuple[int, ...] | None] | None:
    """np.average's weights lined up with x: ``w`` itself where it has x's shape, ``w``
    reshaped along the axis where it is 1-D (numpy's other case), with the axes the
    reshaped weights are spread over; None where the ranks are not known."""
    rank, weights_rank, axis = c.rank("x"), c.rank("w"), c.literals.get("axis")
    if rank is None or weights_rank is None:
        return None
    if weights_rank == rank:
        return "w", None
    if weights_rank == 1 and isinstance(axis, int) and rank >= 1:
        along = axis % rank
        trailing = rank - 1 - along
        lined = f"numpy.reshape(w, (-1,{' 1,' * trailing}))" if trailing else "w"
        return lined, tuple(a for a in range(rank) if a != along)
    return None


def _weights_total(
    c: AdjointContext, lined: tuple[str, tuple[int, ...] | None] | None, weights: str
) -> str:
    """The sum of the weights each entry of np.average's result divides by."""
    if lined is not None and (lined[1] is not None or _full_reduction(c)):
        return "numpy.sum(w)"  # 1-D weights, or all of them
    return f"numpy.sum({weights}, axis=axis, keepdims=True)"


def _average_x_adjoint(c: AdjointContext) -> str | Spread:
    if c.literals.get("w", NOT_LITERAL) is None:
        return _mean_adjoint(c)
    lined = _weights_along(c)
    weights = "_average_weights(w, x, axis)" if lined is None else lined[0]
    total = _weights_total(c, lined, weights)
    return f"{weights} / {total} * {_expanded(c, 'g')}"


def _average_w_adjoint(c: AdjointContext) -> str:
    # d(sum(w x) / sum(w)) / dw = (x - out) / sum(w), summed back over the axes 1-D
    # weights were spread over.
    lined = _weights_along(c)
    weights = "_average_weights(w, x, axis)" if lined is None else lined[0]
    total = _weights_total(c, lined, weights)
    local = f"(x - {_expanded(c, 'out')}) / {total} * {_expanded(c, 'g')}"
    if lined is None:
        return f"numpy.reshape(_unbroadcast({local}, {weights}), numpy.shape(w))"
    spread = lined[1]
    if not spread:
        return local
    return f"numpy.sum({local}, axis={spread[0] if len(spread) == 1 else spread})"


def _norm_adjoint(c: AdjointContext) -> str:
    """np.linalg.norm: a vector norm along an int axis (or of a 1-D x), a matrix norm over
    two axes (or of a 2-D x); x / norm for the 2-norm and the Frobenius norm, whatever x's
    rank, the sign of x where the norm sums absolute values, the sign where it takes the
    largest (ties share). Where the rank numpy decides by is not known, a helper decides
    when it runs. At x == 0 the 2-norm's gradient is nan (0 / 0): no gradient there."""
    order, axis, rank = c.literals.get("ord"), c.literals.get("axis"), c.rank("x")
    g, norm = _expanded(c, "g"), _expanded(c, "out")
    if order is None or order == "fro":
        return f"x / {norm} * {g}"
    if isinstance(axis, int) or (axis is None and rank == 1) or _one_axis(axis):
        local = _vector_norm_local(order, norm)
    elif (isinstance(axis, tuple) and len(axis) == 2) or (axis is None and rank == 2):
        rows, columns = axis if isinstance(axis, tuple) else (0, 1)
        local = _matrix_norm_local(order, norm, rows, columns)
    else:
        local = f"_norm_dx(x, ord, axis, {norm})"
    return f"{local} * {g}"


def _one_axis(axis: object) -> bool:
    return isinstance(axis, tuple) and len(axis) == 1


def _vector_norm_local(order: object, norm: str) -> str:
    if order == 2:
        return f"x / {norm}"
    if order == 1:
        return "numpy.sign(x)"
    if order in (math.inf, -math.inf):
        winners = f"(numpy.abs(x) == {norm})"
        count = f"numpy.sum({winners}, axis=axis, keepdims=True)"
        return f"numpy.sign(x) * {winners} / {count}"
    if order == 0:  # how many entries are not 0: piecewise constant
        return "numpy.zeros_like(x, dtype=numpy.result_type(x, 1.0))"
    return f"numpy.sign(x) * (numpy.abs(x) / {norm}) ** (ord - 1)"


def _matrix_norm_local(order: object, norm: str, rows: object, columns: object) -> str:
    if order in (1, -1, math.inf, -math.inf):
        # 1: the largest column sum of |x|; inf: the largest row sum; -1, -inf: smallest
        summed, across = (rows, columns) if order in (1, -1) else (columns, rows)
        sums = f"numpy.sum(numpy.abs(x), axis={summed}, keepdims=True)"
        winners = f"({sums} == {norm})"
        count = f"numpy.sum({winners}, axis={across}, keepdims=True)"
        return f"numpy.sign(x) * {winners} / {count}"
    # 2, -2, "nuc": the singular vectors of the largest or smallest singular value, or all
    return "_singular_norm_dx(x, ord, axis)"


# --- scipy.special and scipy.stats ------------------------------------------------------------

# 2 / sqrt(pi), sqrt(pi) / 2 and 1 / sqrt(2 pi), written as numbers: a template names no
# module constant.
_TWO_OVER_ROOT_PI = "1.1283791670955126"
_ROOT_PI_OVER_TWO = "0.886226925452758"
_ONE_OVER_ROOT_TWO_PI = "0.3989422804014327"
_ROOT_TWO_PI = "2.5066282746310002"
_LOG_TWO = "0.6931471805599453"


def _logsumexp_spread(c: AdjointContext) -> Shape | None:
    """The shape logsumexp reduces: x and b broadcast; at least 1-D with keepdims (scipy
    gives a number's logsumexp with keepdims=True the shape (1,))."""
    spread = c.shapes.get("x")
    if c.literals.get("b", NOT_LITERAL) is not None:
        spread = shapes.broadcast(spread, c.shapes.get("b"))
    if spread == () and c.literals.get("keepdims") is True:
        return (1,)
    return spread


def _logsumexp_shape(c: AdjointContext) -> Shape | None:
    return shapes.reduce(_logsumexp_spread(c), c.literals.get("axis"), c.literals.get("keepdims"))


def _summed_to(c: AdjointContext, value: str, name: str) -> str:
    """``value``, of the shape of x and b broadcast, summed back to input ``name``'s shape
    (scipy broadcasts the weights b against x, and makes a number 1-D with keepdims)."""
    if c.literals.get("b", NOT_LITERAL) is None and c.literals.get("keepdims") is not True:
        return value
    spread, own = _logsumexp_spread(c), c.shapes.get(name)
    if spread is None or own is None or len(own) > len(spread):
        return f"_unbroadcast({value}, {name})"
    if own == spread:
        return value
    if not own:
        return f"numpy.sum({value})"
    leading, kept = shapes.unbroadcast_axes(own, spread)
    if leading:
        value = f"numpy.sum({value}, axis={leading[0] if len(leading) == 1 else leading})"
    if kept:
        value = f"numpy.sum({value}, axis={kept[0] if len(kept) == 1 else kept}, keepdims=True)"
    return value


def _logsumexp_x(c: AdjointContext) -> str:
    # The softmax of x (weighted by b) along the axes, times g: exp(x - out) cannot
    # overflow, as out is at least the largest x of its group (with b = None).
    weights = f"numpy.exp(x - {_expanded(c, 'out')})"
    if c.literals.get("b", NOT_LITERAL) is not None:
        weights = f"b * {weights}"
    return _summed_to(c, f"{weights} * {_expanded(c, 'g')}", "x")


def _logsumexp_b(c: AdjointContext) -> str:
    value = f"numpy.exp(x - {_expanded(c, 'out')}) * {_expanded(c, 'g')}"
    # Where b has axes that x lacks and the sum takes away, value lacks them: spread it
    # over b's shape (numpy.ones_like(b)), so that each of b's entries gets its own.
    spread, x = _logsumexp_spread(c), c.shapes.get("x")
    kept = shapes.reduce(spread, c.literals.get("axis"), True)
    if spread is None or x is None or shapes.broadcast(x, kept) != spread:
        value = f"{value} * numpy.ones_like(b)"
    return _summed_to(c, value, "b")


# The adjoints of the log densities of scipy.stats, as data: their densities' adjoints are
# the same times the density (``_times_density``). Student's t: with z = (x - loc) / scale,
# log pdf = -(df + 1) / 2 * log1p(z**2 / df) - log(scale) + terms of df alone.
_T_LOGPDF = {
    "x": "-(df + 1) * (x - loc) / (scale**2 * df + (x - loc) ** 2) * g",
    "df": "0.5 * (scipy.special.digamma((df + 1) / 2) - scipy.special.digamma(df / 2)"
    " - 1 / df - numpy.log1p((x - loc) ** 2 / (scale**2 * df))"
    " + (df + 1) * (x - loc) ** 2 / (df * (scale**2 * df + (x - loc) ** 2))) * g",
    "loc": "(df + 1) * (x - loc) / (scale**2 * df + (x - loc) ** 2) * g",
    "scale": "((df + 1) * (x - loc) ** 2 / (scale**2 * df + (x - loc) ** 2) - 1) / scale * g",
}
_NORM_LOGPDF = {
    "x": "-(x - loc) / scale**2 * g",
    "loc": "(x - loc) / scale**2 * g",
    "scale": "(((x - loc) / scale) ** 2 - 1) / scale * g",
}
_GAMMA_LOGPDF = {
    "x": "((a - 1) / (x - loc) - 1 / scale) * g",
    "a": "(numpy.log((x - loc) / scale) - scipy.special.digamma(a)) * g",
    "loc": "(1 / scale - (a - 1) / (x - loc)) * g",
    "scale": "((x - loc) / scale - a) / scale * g",
}
_BETA_LOGPDF = {
    "x": "((a - 1) / x - (b - 1) / (1 - x)) * g",
    "a": "(numpy.log(x) - scipy.special.digamma(a) + scipy.special.digamma(a + b)) * g",
    "b": "(numpy.log1p(-x) - scipy.special.digamma(b) + scipy.special.digamma(a + b)) * g",
}
_POISSON_LOGPMF = {"mu": "(k / mu - 1) * g"}
# chi2: gamma with shape df / 2 and scale 2 (times scale): with y = (x - loc) / scale,
# log pdf = (df / 2 - 1) log y - y / 2 - log scale + terms of df alone.
_CHI2_LOGPDF = {
    "x": "((df / 2 - 1) / (x - loc) - 0.5 / scale) * g",
    "df": f"0.5 * (numpy.log((x - loc) / scale) - {_LOG_TWO} - scipy.special.digamma(df / 2)) * g",
    "loc": "(0.5 / scale - (df / 2 - 1) / (x - loc)) * g",
    "scale": "0.5 * ((x - loc) / scale - df) / scale * g",
}
# The adjoints of a cdf of a distribution with a loc and a scale whose density is ``pdf``
# (with the same arguments): the density at x, the negated density for loc, and for scale
# the negated density times (x - loc) / scale. A logcdf's are the same over the cdf, from
# the logarithms (finite far in the lower tail too).
_CDF = {
    "x": "pdf(ARGS) * g",
    "loc": "-pdf(ARGS) * g",
    "scale": "-pdf(ARGS) * (x - loc) / scale * g",
}
_LOGCDF = {
    "x": "numpy.exp(logpdf(ARGS) - out) * g",
    "loc": "-numpy.exp(logpdf(ARGS) - out) * g",
    "scale": "-numpy.exp(logpdf(ARGS) - out) * (x - loc) / scale * g",
}


def _with_arguments(arguments: str) -> Callable[[str], str]:
    """A change of ``_CDF``'s and ``_LOGCDF``'s templates: the distribution's arguments."""
    return lambda template: template.replace("ARGS", arguments)


def _times_density(template: str) -> str:
    """A log density's adjoint (``... * g``) made its density's: ``... * (out * g)``."""
    assert template.endswith(" * g"), template
    return template[: -len(" * g")] + " * (out * g)"


def _located(templates: dict[str, str], change: Callable[[str], str] = str) -> dict[str, Any]:
    """A distribution's adjoints with a loc and a scale (``_normal``), each changed by
    ``change`` first: keyword arguments of ``rule``."""
    return {name: _normal(change(template)) for name, template in templates.items()}


def _plain(templates: dict[str, str], change: Callable[[str], str] = str) -> dict[str, Any]:
    """A distribution's adjoints as they are (no loc or scale), each changed by ``change``
    first: keyword arguments of ``rule``."""
    return {name: change(template) for name, template in templates.items()}


def _normal(template: str) -> Depends:
    """An adjoint of ``norm.<f>(x, loc, scale)`` (or of another distribution with a loc and
    a scale), written without a default loc (0) or scale (1): ``-x * g`` for
    ``norm.logpdf(x)``."""

    def choose(c: AdjointContext) -> str:
        text = template
        standard_loc = c.literals.get("loc", NOT_LITERAL) == 0
        standard_scale = c.literals.get("scale", NOT_LITERAL) == 1
        if standard_loc:
            text = text.replace("(x - loc)", "x")
        if standard_scale:
            text = text.replace(" / scale**2", "").replace(" / scale", "")
            text = text.replace("scale**2 * ", "")
            text = text.replace(", loc, scale)", ")" if standard_loc else ", loc)")
        return text

    return Depends(template, choose)


def _quantile(template: str) -> Depends:
    """An adjoint of ``norm.ppf(q, loc, scale)`` or ``norm.isf``, written with the standard
    normal quantile z = (out - loc) / scale and without a default loc (0) or scale (1)."""

    def choose(c: AdjointContext) -> str:
        text = template
        if c.literals.get("loc", NOT_LITERAL) == 0:
            text = text.replace("(out - loc)", "out")
        if c.literals.get("scale", NOT_LITERAL) == 1:
            text = text.replace(" / scale", "").replace("scale * ", "")
        return text

    return Depends(template, choose)


# multivariate_normal.logpdf(x, mean, cov) = -(d log 2 pi + log det C + r C^-1 r) / 2 with
# r = x - mean, per row of x. scipy reads cov's lower triangle alone (it is symmetric), so
# the adjoints use that symmetric matrix, and cov's gradient is the derivative with respect
# to the entries scipy reads: the symmetric gradient S, doubled below the diagonal, 0 above.
# A 1-D cov is a diagonal (scipy's): the matrix is numpy.diag(cov), the gradient S's
# diagonal. Where cov's rank is not known, helpers tell the two apart when the code runs.


def _mvn_matrix(c: AdjointContext) -> str:
    """The covariance matrix scipy reads of cov."""
    rank = c.rank("cov")
    if rank == 2:
        return "(numpy.tril(cov) + numpy.tril(cov, -1).T)"
    return "numpy.diag(cov)" if rank == 1 else "_mvn_covariance(cov)"


def _mvn_read(c: AdjointContext, symmetric: str) -> str:
    """cov's gradient, of the symmetric matrix's ``symmetric``: of the entries scipy reads."""
    rank = c.rank("cov")
    if rank == 2:
        return f"numpy.tril({symmetric}) * (2 - numpy.eye(len(cov)))"
    return f"numpy.diag({symmetric})" if rank == 1 else f"_mvn_cov_gradient({symmetric}, cov)"


def _mvn_solved(c: AdjointContext) -> str:
    """C^-1 r, point by point (x is one point or any array of them): the whitened
    residuals."""
    residual = "x" if c.literals.get("mean", NOT_LITERAL) is None else "(x - mean)"
    if c.rank("x") in (1, 2) and _mvn_rows(c) is not None:
        return f"numpy.linalg.solve({_mvn_matrix(c)}, {residual}.T).T"
    return f"numpy.linalg.solve({_mvn_matrix(c)}, numpy.expand_dims({residual}, -1))[..., 0]"


def _mvn_rows(c: AdjointContext) -> int | None:
    """How many rows the result has: 0 for one point (a number), n for n > 1 rows, None
    where not known (scipy makes the logpdf of one row a number too). Known where x is one
    point or rows of points of cov's dimension and mean (if any) is one point of it: scipy
    also broadcasts x and mean against each other, which the adjoints then sum back."""
    x, cov = c.shapes.get("x"), c.shapes.get("cov")
    mean = c.shapes.get("mean") if c.literals.get("mean", NOT_LITERAL) is not None else cov
    if x is None or cov is None or mean is None or len(x) not in (1, 2):
        return None
    if len(cov) not in (1, 2):
        return None
    dimension = cov[0]
    if x[-1] != dimension or mean[-1:] != (dimension,) or not isinstance(dimension, int):
        return None
    if len(x) == 1:
        return 0 if dimension > 1 else None  # of dimension 1, x holds points
    rows = x[0]
    return rows if isinstance(rows, int) and rows > 1 else (0 if rows == 1 else None)


def _mvn_shape(c: AdjointContext) -> Shape | None:
    rows = _mvn_rows(c)
    return None if rows is None else (() if rows == 0 else (rows,))


def _mvn_x(c: AdjointContext) -> str:
    value = f"-numpy.expand_dims(g, -1) * {_mvn_solved(c)}"
    return value if _mvn_rows(c) is not None else f"_unbroadcast({value}, x)"


def _mvn_mean(c: AdjointContext) -> str:
    rows, solved = _mvn_rows(c), _mvn_solved(c)
    if rows == 0 and c.rank("x") == 1:
        return f"g * {solved}"
    if rows is not None and rows > 1 and c.rank("mean") == 1:
        return f"g @ {solved}"
    return f"_unbroadcast(numpy.expand_dims(g, -1) * {solved}, mean)"


def _mvn_cov(c: AdjointContext) -> str:
    solved = _mvn_solved(c)
    # the sum over rows of g times the outer product of each row's solved residual
    if c.rank("x") == 1:
        outer = f"g * numpy.outer({solved}, {solved})"
    elif c.rank("x") == 2:
        outer = f"(numpy.expand_dims(g, -1) * {solved}).T @ {solved}"
    else:
        rows = f"numpy.reshape({solved}, (-1, len(cov)))"
        outer = f"(numpy.reshape(g, (-1, 1)) * {rows}).T @ {rows}"
    symmetric = f"0.5 * ({outer} - numpy.sum(g) * numpy.linalg.inv({_mvn_matrix(c)}))"
    return _mvn_read(c, symmetric)


def _mvn_entropy_cov(c: AdjointContext) -> str:
    """entropy = (d (1 + log 2 pi) + log det C) / 2: C^-1 / 2 on the entries scipy reads."""
    return _mvn_read(c, f"0.5 * g * numpy.linalg.inv({_mvn_matrix(c)})")


def _density_of(log_adjoint: Callable[[AdjointContext], str]) -> Callable[[AdjointContext], str]:
    """A density's adjoint made of its logarithm's: each g there is out * g (the
    density's derivative is the density times its logarithm's)."""
    return lambda c: re.sub(r"\bg\b", "(out * g)", log_adjoint(c))


def _dirichlet_shape(c: AdjointContext) -> Shape | None:
    """One point (d,) gives a number; points as the columns of a (d, n) array, n values
    (a number for n = 1: scipy squeezes it)."""
    x = c.shapes.get("x")
    if x is None or len(x) not in (1, 2):
        return None
    return () if len(x) == 1 or x[1] == 1 else (x[1],)


def _dirichlet_rows(c: AdjointContext) -> str:
    """ "full" where x has a row for each of alpha's entries, "short" where it has one fewer
    (scipy appends the row 1 - sum(x)), "unknown" where the shapes do not say."""
    x, alpha = c.shapes.get("x"), c.shapes.get("alpha")
    if not x or not alpha or len(alpha) != 1:
        return "unknown"
    if x[0] == alpha[0]:
        return "full"
    if isinstance(x[0], int) and isinstance(alpha[0], int) and x[0] == alpha[0] - 1:
        return "short"
    return "unknown"


def _dirichlet_x(c: AdjointContext) -> str:
    rows = _dirichlet_rows(c)
    if rows == "full":
        return "((alpha - 1) / x.T).T * g"
    if rows == "short":  # the appended row's gradient flows back into every row
        first = "alpha[:-1, None]" if c.rank("x") == 2 else "alpha[:-1]"
        return f"(({first} - 1) / x - (alpha[-1] - 1) / (1 - numpy.sum(x, axis=0))) * g"
    return "_dirichlet_dx(g, x, alpha)"


def _of_density(
    log_density_adjoint: Callable[[AdjointContext], str],
) -> Callable[[AdjointContext], str]:
    """A log density's chosen adjoint made its density's: out * g read for g."""
    return lambda c: re.sub(r"\bg\b", "(out * g)", log_density_adjoint(c))


def _dirichlet_alpha(c: AdjointContext) -> str:
    points = {
        "full": "x",
        "short": "numpy.concatenate([x, [1 - numpy.sum(x, axis=0)]])",
    }.get(_dirichlet_rows(c), "_dirichlet_points(x, alpha)")
    return (
        f"numpy.reshape(numpy.log({points}), (len(alpha), -1)) @ numpy.ravel(g)"
        " + numpy.sum(g) * (scipy.special.digamma(numpy.sum(alpha))"
        " - scipy.special.digamma(alpha))"
    )


_SUM = Depends(
    "numpy.full_like(x, g) for a total; numpy.broadcast_to(g, x.shape) over axis", _sum_adjoint
)
_MEAN = Depends(
    "numpy.full_like(x, g / count) for a total; numpy.broadcast_to over axis", _mean_adjoint
)
_EXTREME = Depends("(x == out) / count of ties * g, expanded over axis", _extreme_adjoint)

# fmt: off
RULES: tuple[Rule, ...] = (
    # --- fused gates (tried first: their forms contain primitive forms) ----------------------
    rule("sigmoid", "1 / (1 + math.exp(-x))", "1 / (1 + numpy.exp(-x))",
         floating=True, shape=_same, x="((1 - out) * out) * g"),

    # --- arithmetic operators --------------------------------------------------------------
    rule("add", "x + y", "numpy.add(x, y)", broadcasts=True, shape=_broadcast, x="g", y="g"),
    rule("sub", "x - y", "numpy.subtract(x, y)", broadcasts=True, shape=_broadcast, x="g", y="-g"),
    rule("mul_self", "x * x", shape=_same, x="(2 * x) * g"),  # one pass, not two
    rule("mul", "x * y", "numpy.multiply(x, y)", broadcasts=True, shape=_broadcast,
         x="y * g", y="x * g"),
    rule("div", "x / y", "numpy.divide(x, y)", "numpy.true_divide(x, y)",
         broadcasts=True, floating=True, shape=_broadcast, x="g / y",
         y=Depends("(-x / y**2) * g", _div_right)),
    rule("pow", "x ** y", "math.pow(x, y)", "numpy.power(x, y)",
         broadcasts=True, shape=_broadcast,
         # d(x**y)/dy = x**y log x, whose limit at x == 0 is 0: log(1) there, no -inf.
         x=Depends("(y * x ** (y - 1)) * g", _pow_base),
         y="(out * log(abs(x) + (x == 0))) * g"),
    rule("neg", "-x", "numpy.negative(x)", shape=_same, x="-g"),
    rule("pos", "+x", "numpy.positive(x)", shape=_same, x="g"),

    # --- exponentials and logarithms -------------------------------------------------------
    rule("exp", "math.exp(x)", "numpy.exp(x)", floating=True, shape=_same, x="out * g"),
    rule("expm1", "math.expm1(x)", "numpy.expm1(x)", floating=True, shape=_same, x="(out + 1) * g"),
    rule("log", "math.log(x)", "numpy.log(x)", floating=True, shape=_same, x="g / x"),
    rule("log_base", "math.log(x, b)",
         floating=True, x="g / (x * log(b))", b="(-out / (b * log(b))) * g"),
    rule("log1p", "math.log1p(x)", "numpy.log1p(x)", floating=True, shape=_same, x="g / (1 + x)"),
    rule("log2", "math.log2(x)", "numpy.log2(x)", floating=True, shape=_same, x="g / (x * log(2))"),
    rule("log10", "math.log10(x)", "numpy.log10(x)", floating=True, shape=_same,
         x="g / (x * log(10))"),
    rule("sqrt", "math.sqrt(x)", "numpy.sqrt(x)", floating=True, shape=_same, x="(0.5 / out) * g"),
    rule("square", "numpy.square(x)", shape=_same, x="(2 * x) * g"),

    # --- trigonometric and hyperbolic --------------------------------------------------------
    rule("sin", "math.sin(x)", "numpy.sin(x)", floating=True, shape=_same, x="cos(x) * g"),
    rule("cos", "math.cos(x)", "numpy.cos(x)", floating=True, shape=_same, x="-sin(x) * g"),
    rule("tan", "math.tan(x)", "numpy.tan(x)", floating=True, shape=_same, x="(1 + out**2) * g"),
    rule("tanh", "math.tanh(x)", "numpy.tanh(x)", floating=True, shape=_same, x="(1 - out**2) * g"),
    rule("arctan", "math.atan(x)", "numpy.arctan(x)", floating=True, shape=_same,
         x="g / (1 + x**2)"),

    # --- more elementwise functions ----------------------------------------------------------
    # arctan2(x, y) is the angle of the point (y, x): numpy's x1 is the ordinate.
    rule("arctan2", "math.atan2(x, y)", "numpy.arctan2(x, y)", floating=True, broadcasts=True,
         shape=_broadcast, x="(y / (x**2 + y**2)) * g", y="-(x / (x**2 + y**2)) * g"),
    rule("arcsin", "math.asin(x)", "numpy.arcsin(x)", floating=True, shape=_same,
         x="g / sqrt(1 - x**2)"),
    rule("arccos", "math.acos(x)", "numpy.arccos(x)", floating=True, shape=_same,
         x="-g / sqrt(1 - x**2)"),
    rule("sinh", "math.sinh(x)", "numpy.sinh(x)", floating=True, shape=_same, x="cosh(x) * g"),
    rule("cosh", "math.cosh(x)", "numpy.cosh(x)", floating=True, shape=_same, x="sinh(x) * g"),
    rule("arcsinh", "math.asinh(x)", "numpy.arcsinh(x)", floating=True, shape=_same,
         x="g / sqrt(x**2 + 1)"),
    rule("arccosh", "math.acosh(x)", "numpy.arccosh(x)", floating=True, shape=_same,
         x="g / sqrt(x**2 - 1)"),
    rule("arctanh", "math.atanh(x)", "numpy.arctanh(x)", floating=True, shape=_same,
         x="g / (1 - x**2)"),
    rule("exp2", "numpy.exp2(x)", floating=True, shape=_same, x="(out * log(2)) * g"),
    # Each input's share of the sum of exponentials, computed from out: no overflow.
    rule("logaddexp", "numpy.logaddexp(x, y)", floating=True, broadcasts=True, shape=_broadcast,
         x="exp(x - out) * g", y="exp(y - out) * g"),
    rule("logaddexp2", "numpy.logaddexp2(x, y)", floating=True, broadcasts=True,
         shape=_broadcast, x="exp2(x - out) * g", y="exp2(y - out) * g"),
    rule("hypot", "math.hypot(x, y)", "numpy.hypot(x, y)", floating=True, broadcasts=True,
         shape=_broadcast, x="(x / out) * g", y="(y / out) * g"),
    # (cos(pi x) - sinc(x)) / x, and its series near 0, where the difference cancels.
    rule("sinc", "numpy.sinc(x)", floating=True, shape=_same, x="_sinc_derivative(x) * g"),
    # -1 / x**2 as -out**2: of whole numbers, numpy.reciprocal gives whole numbers (0 for 2),
    # constant where out is 0, and out**2 says so.
    rule("reciprocal", "numpy.reciprocal(x)", shape=_same, x="-(out**2) * g"),
    rule("cbrt", "numpy.cbrt(x)", floating=True, shape=_same, x="g / (3 * out**2)"),
    # Linear maps: their derivative is the map itself, at 1.
    rule("deg2rad", "numpy.deg2rad(x)", "numpy.radians(x)", "math.radians(x)", floating=True,
         shape=_same, x="radians(1.0) * g"),
    rule("rad2deg", "numpy.rad2deg(x)", "numpy.degrees(x)", "math.degrees(x)", floating=True,
         shape=_same, x="degrees(1.0) * g"),
    # fmax/fmin take the number where the other is nan; a tie goes to the first argument, as
    # max/min give it. out == x holds exactly where x was taken (where x is nan, never).
    rule("fmax", "numpy.fmax(x, y)", broadcasts=True, shape=_broadcast,
         x="(out == x) * g", y="(out != x) * g"),
    rule("fmin", "numpy.fmin(x, y)", broadcasts=True, shape=_broadcast,
         x="(out == x) * g", y="(out != x) * g"),
    # x % y is x - (x // y) * y, whose whole part x // y is constant between the jumps.
    rule("mod", "x % y", "numpy.mod(x, y)", "numpy.remainder(x, y)", broadcasts=True,
         shape=_broadcast, x="g", y="-(x // y) * g"),
    # fmod's whole part is x / y rounded toward 0.
    rule("fmod", "math.fmod(x, y)", "numpy.fmod(x, y)", broadcasts=True, shape=_broadcast,
         x="g", y="-trunc(x / y) * g"),
    # 1.1283791670955126 is 2 / sqrt(pi).
    rule("erf", "math.erf(x)", floating=True, shape=_same, x="1.1283791670955126 * exp(-x**2) * g"),
    rule("erfc", "math.erfc(x)", floating=True, shape=_same,
         x="-1.1283791670955126 * exp(-x**2) * g"),
    # nan and infinities are replaced by constants: the gradient passes where x is finite.
    rule("nan_to_num", "numpy.nan_to_num(x)", shape=_same, x="isfinite(x) * g"),
    # The math module has no digamma: the generated module defines one (helpers.py).
    rule("lgamma", "math.lgamma(x)", floating=True, shape=_same, x="_digamma(x) * g"),
    rule("gamma", "math.gamma(x)", floating=True, shape=_same, x="(out * _digamma(x)) * g"),

    # --- piecewise: one documented sub-gradient at the kinks -------------------------------
    # abs: 0 at x == 0 (numpy's sign convention).
    rule("abs", "abs(x)", "math.fabs(x)", "numpy.abs(x)", "numpy.absolute(x)", "numpy.fabs(x)",
         shape=_same, x="(x > 0) * g - (x < 0) * g"),
    # max/min: the gradient goes to the winner; a tie goes to the first argument, the one
    # Python's max() and min() return.
    rule("max", "max(x, y)", "numpy.maximum(x, y)", broadcasts=True, shape=_broadcast,
         x="(x >= y) * g", y="(x < y) * g"),
    rule("min", "min(x, y)", "numpy.minimum(x, y)", broadcasts=True, shape=_broadcast,
         x="(x <= y) * g", y="(x > y) * g"),
    # where/clip: the gradient passes where the value passed; clip's bounds count as inside.
    rule("where", "numpy.where(c, x, y)", nondiff=("c",), broadcasts=True, shape=_broadcast,
         selects_by="c",
         x="numpy.where(c, g, 0)", y="numpy.where(c, 0, g)"),
    # np.select: an item gets g where its condition is the first to hold; the default is
    # data (refused where a gradient would have to flow into it).
    rule("select", "numpy.select(c, x, d)", nondiff=("c", "d"), no_rule_for=("d",),
         variadic=True, broadcasts=True, shape=_select_shape,
         x=Depends("numpy.select(c, [0.0, ..., g at x's place, ..., 0.0])", _select_adjoint)),
    rule("clip", "numpy.clip(x, low, high)", broadcasts=True, shape=_broadcast,
         x=Depends("((x >= low) * (x <= high)) * g, without an absent bound", _clip_adjoint),
         low=Depends("((x < low) * (low <= high)) * g", _clip_low_adjoint),
         high=Depends("(numpy.maximum(x, low) > high) * g", _clip_high_adjoint)),

    # --- scipy.special and scipy.stats ---------------------------------------------------
    rule("logsumexp", "scipy.special.logsumexp(x, axis, b, keepdims)",
         nondiff=("axis", "keepdims"), literal=_AXES, floating=True, shape=_logsumexp_shape,
         x=Depends("b * numpy.exp(x - out) * g, expanded over axis", _logsumexp_x),
         b=Depends("numpy.exp(x - out) * g, expanded over axis", _logsumexp_b)),
    # norm's loc and scale default to 0 and 1; z = (x - loc) / scale.
    rule("norm_logpdf", "scipy.stats.norm.logpdf(x, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast, **_located(_NORM_LOGPDF)),
    rule("norm_pdf", "scipy.stats.norm.pdf(x, loc, scale)", broadcasts=True, floating=True,
         shape=_broadcast, **_located(_NORM_LOGPDF, _times_density)),
    rule("norm_cdf", "scipy.stats.norm.cdf(x, loc, scale)", broadcasts=True, floating=True,
         shape=_broadcast,
         x=_normal("pdf(x, loc, scale) * g"),
         loc=_normal("-pdf(x, loc, scale) * g"),
         scale=_normal("-pdf(x, loc, scale) * (x - loc) / scale * g")),
    # The pdf over the cdf, from their logarithms: finite far in the lower tail too.
    rule("norm_logcdf", "scipy.stats.norm.logcdf(x, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast,
         x=_normal("numpy.exp(logpdf(x, loc, scale) - out) * g"),
         loc=_normal("-numpy.exp(logpdf(x, loc, scale) - out) * g"),
         scale=_normal("-numpy.exp(logpdf(x, loc, scale) - out) * (x - loc) / scale * g")),
    # sf = 1 - cdf: the cdf's gradients negated; logsf from the logarithms, as logcdf.
    rule("norm_sf", "scipy.stats.norm.sf(x, loc, scale)", broadcasts=True, floating=True,
         shape=_broadcast,
         x=_normal("-pdf(x, loc, scale) * g"),
         loc=_normal("pdf(x, loc, scale) * g"),
         scale=_normal("pdf(x, loc, scale) * (x - loc) / scale * g")),
    rule("norm_logsf", "scipy.stats.norm.logsf(x, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast,
         x=_normal("-numpy.exp(logpdf(x, loc, scale) - out) * g"),
         loc=_normal("numpy.exp(logpdf(x, loc, scale) - out) * g"),
         scale=_normal("numpy.exp(logpdf(x, loc, scale) - out) * (x - loc) / scale * g")),
    rule("multivariate_normal_logpdf",
         "scipy.stats.multivariate_normal.logpdf(x, mean, cov)", floating=True,
         shape=_mvn_shape,
         x=Depends("-g * solve(cov, x - mean)", _mvn_x),
         mean=Depends("g * solve(cov, x - mean), summed over rows", _mvn_mean),
         cov=Depends("(outer(a, a) * g - g * inv(cov)) / 2 for a = solve(cov, x - mean), "
                     "on cov's lower triangle (which scipy reads)", _mvn_cov)),
    rule("multivariate_normal_pdf",
         "scipy.stats.multivariate_normal.pdf(x, mean, cov)", floating=True,
         shape=_mvn_shape,
         x=Depends("-out * g * solve(cov, x - mean)", _density_of(_mvn_x)),
         mean=Depends("out * g * solve(cov, x - mean), summed over rows",
                      _density_of(_mvn_mean)),
         cov=Depends("logpdf's, with out * g for g", _density_of(_mvn_cov))),
    # The entropy depends on cov alone: mean has no gradient.
    rule("multivariate_normal_entropy", "scipy.stats.multivariate_normal.entropy(mean, cov)",
         nondiff=("mean",), floating=True, shape=lambda c: (),
         cov=Depends("g * inv(cov) / 2, on cov's lower triangle (which scipy reads)",
                     _mvn_entropy_cov)),
    # Student's t: with z = (x - loc) / scale, log pdf = -(df + 1) / 2 * log1p(z**2 / df)
    # - log(scale) + terms of df alone.
    rule("t_logpdf", "scipy.stats.t.logpdf(x, df, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast, **_located(_T_LOGPDF)),
    # gamma: with y = (x - loc) / scale, log pdf = (a - 1) log y - y - gammaln(a) - log scale.
    rule("gamma_logpdf", "scipy.stats.gamma.logpdf(x, a, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast, **_located(_GAMMA_LOGPDF)),
    # beta on (0, 1) (no loc or scale): (a - 1) log x + (b - 1) log(1 - x) - betaln(a, b).
    rule("beta_logpdf", "scipy.stats.beta.logpdf(x, a, b)", broadcasts=True, floating=True,
         shape=_broadcast, **_plain(_BETA_LOGPDF)),
    # poisson: k log mu - mu - gammaln(k + 1); the counts k have no gradient.
    rule("poisson_logpmf", "scipy.stats.poisson.logpmf(k, mu)", nondiff=("k",),
         broadcasts=True, floating=True, shape=_broadcast, **_plain(_POISSON_LOGPMF)),
    # The densities themselves: exp of their logarithms, so each adjoint is the logarithm's
    # times the density (out).
    rule("t_pdf", "scipy.stats.t.pdf(x, df, loc, scale)", broadcasts=True, floating=True,
         shape=_broadcast, **_located(_T_LOGPDF, _times_density)),
    rule("gamma_pdf", "scipy.stats.gamma.pdf(x, a, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast, **_located(_GAMMA_LOGPDF, _times_density)),
    rule("beta_pdf", "scipy.stats.beta.pdf(x, a, b)", broadcasts=True, floating=True,
         shape=_broadcast, **_plain(_BETA_LOGPDF, _times_density)),
    rule("poisson_pmf", "scipy.stats.poisson.pmf(k, mu)", nondiff=("k",), broadcasts=True,
         floating=True, shape=_broadcast,
         **_plain(_POISSON_LOGPMF, _times_density)),
    # The normal quantiles: ppf(q) = loc + scale * z with z = ndtri(q), whose derivative is
    # scale over the standard density at z; isf(q) = ppf(1 - q).
    rule("norm_ppf", "scipy.stats.norm.ppf(q, loc, scale)", broadcasts=True, floating=True,
         shape=_broadcast,
         q=_quantile(f"{_ROOT_TWO_PI} * scale * numpy.exp(((out - loc) / scale) ** 2 / 2) * g"),
         loc="g", scale=_quantile("(out - loc) / scale * g")),
    rule("norm_isf", "scipy.stats.norm.isf(q, loc, scale)", broadcasts=True, floating=True,
         shape=_broadcast,
         q=_quantile(f"-{_ROOT_TWO_PI} * scale * numpy.exp(((out - loc) / scale) ** 2 / 2) * g"),
         loc="g", scale=_quantile("(out - loc) / scale * g")),
    # The cdfs of t, gamma and beta: smooth in their shapes (df, a, b) too, with no closed
    # form: those are refused where they need a gradient.
    rule("t_cdf", "scipy.stats.t.cdf(x, df, loc, scale)", nondiff=("df",),
         no_rule_for=("df",), broadcasts=True, floating=True, shape=_broadcast,
         **_located(_CDF, _with_arguments("x, df, loc, scale"))),
    rule("t_logcdf", "scipy.stats.t.logcdf(x, df, loc, scale)", nondiff=("df",),
         no_rule_for=("df",), broadcasts=True, floating=True, shape=_broadcast,
         **_located(_LOGCDF, _with_arguments("x, df, loc, scale"))),
    rule("gamma_cdf", "scipy.stats.gamma.cdf(x, a, loc, scale)", nondiff=("a",),
         no_rule_for=("a",), broadcasts=True, floating=True, shape=_broadcast,
         **_located(_CDF, _with_arguments("x, a, loc, scale"))),
    rule("beta_cdf", "scipy.stats.beta.cdf(x, a, b)", nondiff=("a", "b"),
         no_rule_for=("a", "b"), broadcasts=True, floating=True, shape=_broadcast,
         x="pdf(x, a, b) * g"),
    # chi2: gamma with shape df / 2 and scale 2; its cdf has no closed form in df.
    rule("chi2_logpdf", "scipy.stats.chi2.logpdf(x, df, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast, **_located(_CHI2_LOGPDF)),
    rule("chi2_pdf", "scipy.stats.chi2.pdf(x, df, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast, **_located(_CHI2_LOGPDF, _times_density)),
    rule("chi2_cdf", "scipy.stats.chi2.cdf(x, df, loc, scale)", nondiff=("df",),
         no_rule_for=("df",), broadcasts=True, floating=True, shape=_broadcast,
         **_located(_CDF, _with_arguments("x, df, loc, scale"))),
    # poisson's cdf sums the pmf up to floor(k): in mu, the last term's derivative is left,
    # -pmf(floor(k), mu) (the sum telescopes). The counts k have no gradient.
    rule("poisson_cdf", "scipy.stats.poisson.cdf(k, mu)", nondiff=("k",), broadcasts=True,
         floating=True, shape=_broadcast, mu="-pmf(numpy.floor(k), mu) * g"),
    # dirichlet: x a point of the simplex (d,) or points as columns (d, n), or one row short
    # of alpha (scipy appends 1 - sum(x)); a full x's gradient is one of the simplex (any
    # multiple of ones may be added: sum(x) stays 1).
    rule("dirichlet_logpdf", "scipy.stats.dirichlet.logpdf(x, alpha)", floating=True,
         shape=_dirichlet_shape,
         x=Depends("((alpha - 1) / x.T).T * g, x one row short of alpha as scipy reads it",
                   _dirichlet_x),
         alpha=Depends("log(x) @ g + sum(g) * (digamma(sum(alpha)) - digamma(alpha))",
                       _dirichlet_alpha)),
    # dirichlet's density: its adjoints are logpdf's with out * g for g.
    rule("dirichlet_pdf", "scipy.stats.dirichlet.pdf(x, alpha)", floating=True,
         shape=_dirichlet_shape,
         x=Depends("logpdf's with out * g for g", _of_density(_dirichlet_x)),
         alpha=Depends("logpdf's with out * g for g", _of_density(_dirichlet_alpha))),
    rule("expit", "scipy.special.expit(x)", floating=True, shape=_same,
         x="((1 - out) * out) * g"),
    rule("logit", "scipy.special.logit(x)", floating=True, shape=_same,
         x="g / (x * (1 - x))"),
    rule("special_erf", "scipy.special.erf(x)", floating=True, shape=_same,
         x=f"({_TWO_OVER_ROOT_PI} * numpy.exp(-(x**2))) * g"),
    rule("special_erfc", "scipy.special.erfc(x)", floating=True, shape=_same,
         x=f"(-{_TWO_OVER_ROOT_PI} * numpy.exp(-(x**2))) * g"),
    rule("erfinv", "scipy.special.erfinv(x)", floating=True, shape=_same,
         x=f"({_ROOT_PI_OVER_TWO} * numpy.exp(out**2)) * g"),
    rule("gammaln", "scipy.special.gammaln(x)", floating=True, shape=_same,
         x="digamma(x) * g"),
    rule("digamma", "scipy.special.digamma(x)", "scipy.special.psi(x)", floating=True,
         shape=_same, x="polygamma(1, x) * g"),
    # n may be an array of orders x broadcasts against: x's gradient is unbroadcast.
    rule("polygamma", "scipy.special.polygamma(n, x)", nondiff=("n",), broadcasts=True,
         floating=True, shape=_broadcast, x="polygamma(n + 1, x) * g"),
    # The regularized incomplete gamma functions, differentiated with respect to x: the
    # integrand x**(a-1) exp(-x) / gamma(a), from logarithms to stay finite for large a.
    # In a they are smooth too, with no closed form: refused where a needs a gradient.
    rule("gammainc", "scipy.special.gammainc(a, x)", nondiff=("a",), no_rule_for=("a",),
         broadcasts=True, floating=True, shape=_broadcast,
         x="numpy.exp((a - 1) * numpy.log(x) - x - gammaln(a)) * g"),
    rule("gammaincc", "scipy.special.gammaincc(a, x)", nondiff=("a",), no_rule_for=("a",),
         broadcasts=True, floating=True, shape=_broadcast,
         x="-numpy.exp((a - 1) * numpy.log(x) - x - gammaln(a)) * g"),
    # The regularized incomplete beta function, differentiated with respect to x: the beta
    # density x**(a-1) (1-x)**(b-1) / beta(a, b), from logarithms (xlogy: finite at x = 0
    # with a = 1). In a and b it is smooth too, with no closed form: refused there.
    rule("betainc", "scipy.special.betainc(a, b, x)", nondiff=("a", "b"),
         no_rule_for=("a", "b"), broadcasts=True, floating=True, shape=_broadcast,
         x="numpy.exp(xlogy(a - 1, x) + xlog1py(b - 1, -x) - betaln(a, b)) * g"),
    # The log of the multivariate gamma function of x (scipy's a): a sum of gammaln(x - j/2),
    # j < d. The dimension d is a whole number (scipy refuses others): it has no gradient.
    rule("multigammaln", "scipy.special.multigammaln(x, d)", nondiff=("d",), floating=True,
         shape=_same,
         x="numpy.sum(digamma(numpy.expand_dims(x, -1) - numpy.arange(d) / 2), axis=-1) * g"),
    # Bessel functions: I (modified, first kind), J (first kind), Y (second kind), by the
    # recurrences C_n' = (C_{n-1} - C_{n+1}) / 2 (J, Y) and (I_{n-1} + I_{n+1}) / 2 (I), with
    # C_{-1} = -C_1 for J and Y and I_{-1} = I_1.
    rule("i0", "scipy.special.i0(x)", floating=True, shape=_same, x="i1(x) * g"),
    rule("i1", "scipy.special.i1(x)", floating=True, shape=_same,
         x="((i0(x) + iv(2, x)) / 2) * g"),
    rule("j0", "scipy.special.j0(x)", floating=True, shape=_same, x="-j1(x) * g"),
    rule("j1", "scipy.special.j1(x)", floating=True, shape=_same,
         x="((j0(x) - jn(2, x)) / 2) * g"),
    rule("y0", "scipy.special.y0(x)", floating=True, shape=_same, x="-y1(x) * g"),
    rule("y1", "scipy.special.y1(x)", floating=True, shape=_same,
         x="((y0(x) - yn(2, x)) / 2) * g"),
    # Of the order (jn is jv, of any real order) gradgen has no gradient: refused where it
    # would need one. yn truncates a fractional order towards 0 (yn(0.5, x) is y0(x)): the
    # orders either side are those of the truncated one (yn(-0.5, x) is not its neighbour).
    rule("jn", "scipy.special.jn(n, x)", "scipy.special.jv(n, x)", nondiff=("n",),
         no_rule_for=("n",), broadcasts=True, floating=True, shape=_broadcast,
         x="((jn(n - 1, x) - jn(n + 1, x)) / 2) * g"),
    rule("yn", "scipy.special.yn(n, x)", nondiff=("n",), no_rule_for=("n",),
         broadcasts=True, floating=True, shape=_broadcast,
         x="((yn(numpy.trunc(n) - 1, x) - yn(numpy.trunc(n) + 1, x)) / 2) * g"),
    rule("iv", "scipy.special.iv(v, x)", nondiff=("v",), no_rule_for=("v",),
         broadcasts=True, floating=True, shape=_broadcast,
         x="((iv(v - 1, x) + iv(v + 1, x)) / 2) * g"),
    # ive(v, x) = iv(v, x) exp(-|x|)
    rule("ive", "scipy.special.ive(v, x)", nondiff=("v",), no_rule_for=("v",),
         broadcasts=True, floating=True, shape=_broadcast,
         x="((ive(v - 1, x) + ive(v + 1, x)) / 2 - numpy.sign(x) * out) * g"),
    rule("special_gamma", "scipy.special.gamma(x)", floating=True, shape=_same,
         x="(out * digamma(x)) * g"),
    rule("rgamma", "scipy.special.rgamma(x)", floating=True, shape=_same,  # 1 / gamma(x)
         x="(-out * digamma(x)) * g"),
    rule("erfcinv", "scipy.special.erfcinv(x)", floating=True, shape=_same,
         x=f"(-{_ROOT_PI_OVER_TWO} * numpy.exp(out**2)) * g"),
    # beta(x, y) = gamma(x) gamma(y) / gamma(x + y); betaln its log
    rule("beta", "scipy.special.beta(x, y)", broadcasts=True, floating=True, shape=_broadcast,
         x="(out * (digamma(x) - digamma(x + y))) * g",
         y="(out * (digamma(y) - digamma(x + y))) * g"),
    rule("betaln", "scipy.special.betaln(x, y)", broadcasts=True, floating=True,
         shape=_broadcast, x="(digamma(x) - digamma(x + y)) * g",
         y="(digamma(y) - digamma(x + y)) * g"),
    # numpy takes the log of a mask or of small integers (int8) in float16: the dtype says
    # y's floating type (float64 for those).
    rule("xlogy", "scipy.special.xlogy(x, y)", broadcasts=True, floating=True,
         shape=_broadcast, x="numpy.log(y, dtype=numpy.result_type(y, 1.0)) * g",
         y="(x / y) * g"),
    rule("xlog1py", "scipy.special.xlog1py(x, y)", broadcasts=True, floating=True,
         shape=_broadcast, x="numpy.log1p(y, dtype=numpy.result_type(y, 1.0)) * g",
         y="(x / (1 + y)) * g"),
    rule("entr", "scipy.special.entr(x)", floating=True, shape=_same,
         x="-(numpy.log(x) + 1) * g"),
    rule("ndtr", "scipy.special.ndtr(x)", floating=True, shape=_same,
         x=f"({_ONE_OVER_ROOT_TWO_PI} * numpy.exp(-(x**2) / 2)) * g"),
    # The pdf over the cdf, from their logarithms: finite far in the lower tail too.
    rule("log_ndtr", "scipy.special.log_ndtr(x)", floating=True, shape=_same,
         x=f"({_ONE_OVER_ROOT_TWO_PI} * numpy.exp(-(x**2) / 2 - out)) * g"),
    # scipy.linalg: triangular solves (a's triangle read, its diagonal not with a unit
    # one), Sylvester equations A X + X B = Q, the square root of a matrix (A symmetric
    # positive definite, as the tests take it: one with a real square root), by solves.
    rule("solve_triangular", "scipy.linalg.solve_triangular(a, b, trans, lower, unit_diagonal)",
         nondiff=("trans", "lower", "unit_diagonal"),
         literal=("trans", "lower", "unit_diagonal"), floating=True,
         shape=_solve_triangular_shape, check=_solve_triangular_check,
         refuse_shapes=_solve_triangular_matrix,
         a=Depends("-numpy.tril(db @ out.T), db as b's: triu for an upper a, transposed "
                   "for trans 'T', without the diagonal for a unit one", _solve_triangular_left),
         b=Depends("scipy.linalg.solve_triangular(a, g, the other trans, lower, "
                   "unit_diagonal)", _solve_triangular_right)),
    # A banded matrix in scipy's storage (ab[upper + i - j, j] = A[i, j]): its band only.
    rule("solve_banded", "scipy.linalg.solve_banded(l_and_u, ab, b)", nondiff=("l_and_u",),
         literal=("l_and_u",), floating=True, shape=_solve_banded_shape,
         check=_solve_banded_check, refuse_shapes=_solve_banded_matrix,
         ab=Depends("-(A^-T g) out^T on the band, in ab's storage", _banded_ab),
         b=Depends("scipy.linalg.solve_banded((upper, lower), ab of A^T, g)", _banded_solved)),
    rule("solve_sylvester", "scipy.linalg.solve_sylvester(a, b, q)", floating=True,
         shape=_sylvester_shape, refuse_shapes=_sylvester_matrices,
         a=Depends("-scipy.linalg.solve_sylvester(a.T, b.T, g) @ out.T", _sylvester_a),
         b=Depends("-out.T @ scipy.linalg.solve_sylvester(a.T, b.T, g)", _sylvester_b),
         q=Depends("scipy.linalg.solve_sylvester(a.T, b.T, g)", _sylvester_q)),
    rule("sqrtm", "scipy.linalg.sqrtm(x)", floating=True, shape=_square_shape,
         refuse_shapes=_sqrtm_matrix,
         x=Depends("scipy.linalg.solve_sylvester(out.T, out.T, g)", _sqrtm_adjoint)),
    # scipy.signal: the gradient put back where the mode cut it from the full result, then
    # correlated (convolved) with the other input over the valid part.
    rule("convolve", "scipy.signal.convolve(x, y, mode)", nondiff=("mode",),
         literal=("mode",), floating=True, check=_convolve_check, shape=_convolve_shape,
         x='scipy.signal.correlate(_convolve_full(g, x, y), y, mode="valid")',
         y='scipy.signal.correlate(_convolve_full(g, x, y), x, mode="valid")'),
    rule("correlate", "scipy.signal.correlate(x, y, mode)", nondiff=("mode",),
         literal=("mode",), floating=True, check=_convolve_check, shape=_convolve_shape,
         x='scipy.signal.convolve(_convolve_full(g, x, y), y, mode="valid")',
         y='numpy.flip(scipy.signal.correlate(_convolve_full(g, x, y), x, mode="valid"))'),
    rule("softmax", "scipy.special.softmax(x, axis)", nondiff=("axis",), floating=True,
         shape=_same_not_elementwise, x="out * (g - numpy.sum(g * out, axis=axis, keepdims=True))"),
    rule("log_softmax", "scipy.special.log_softmax(x, axis)", nondiff=("axis",),
         floating=True, shape=_same_not_elementwise,
         x="g - numpy.exp(out) * numpy.sum(g, axis=axis, keepdims=True)"),

    # --- linear algebra ------------------------------------------------------------------
    rule("matmul", "x @ y", "numpy.matmul(x, y)", shape=_matmul_shape,
         x=Depends("g @ y.T (by the ranks of x and y)", _matmul_left),
         y=Depends("x.T @ g (by the ranks of x and y)", _matmul_right)),
    # np.dot is @ for 1-D and 2-D arrays, the only ranks it is differentiated for.
    rule("dot", "numpy.dot(x, y)", shape=_dot_shape,
         x=Depends("g @ y.T (1-D or 2-D)", functools.partial(_matmul_left, helper="_dot_dx")),
         y=Depends("x.T @ g (1-D or 2-D)", functools.partial(_matmul_right, helper="_dot_dy"))),

    # --- more products and linear algebra ------------------------------------------------
    # einsum: the gradient of each operand is an einsum of the result's gradient with the
    # others, its subscripts rearranged when the backward is written (they are literal).
    rule("einsum", "numpy.einsum(subscripts, *x)", nondiff=("subscripts",),
         literal=("subscripts",), variadic=True, view=True, shape=_einsum_shape,
         check=_einsum_check,
         x=Depends('numpy.einsum("<result>,<others>-><operand>", g, <others>)',
                   _einsum_adjoint)),
    rule("tensordot", "numpy.tensordot(x, y, axes)", nondiff=("axes",), literal=("axes",),
         shape=_tensordot_shape, check=_tensordot_check,
         x=Depends("numpy.tensordot(g, y, axes=(y's free axes in g, y's free axes))",
                   _tensordot_left),
         y=Depends("numpy.tensordot(x, g, axes=(x's free axes, x's free axes in g))",
                   _tensordot_right)),
    rule("inner", "numpy.inner(x, y)", shape=_inner_shape,
         x=Depends("g * y (vectors); as tensordot over the last axes", _inner_left),
         y=Depends("g * x (vectors); as tensordot over the last axes", _inner_right)),
    rule("vdot", "numpy.vdot(x, y)", shape=lambda c: SCALAR_SHAPE,
         x=Depends("g * y, in x's shape", _vdot_left),
         y=Depends("g * x, in y's shape", _vdot_right)),
    rule("kron", "numpy.kron(x, y)", shape=_kron_shape,
         x=Depends('numpy.einsum("ikjl,kl->ij", g in blocks, y)', _kron_left),
         y=Depends('numpy.einsum("ikjl,ij->kl", g in blocks, x)', _kron_right)),
    # <g, x cross y> = <x, y cross g> = <y, g cross x>
    rule("cross", "numpy.cross(x, y)", broadcasts=True, shape=_cross_shape,
         x="numpy.cross(y, g)", y="numpy.cross(g, x)"),
    # The matrix-calculus adjoints, by solves where an inverse would be applied to a value;
    # A invertible (det, solve), symmetric positive definite (cholesky).
    rule("inv", "numpy.linalg.inv(x)", floating=True, shape=_square_shape,
         x=Depends("-(out.T @ g @ out.T)", _inv_adjoint)),
    rule("det", "numpy.linalg.det(x)", floating=True, shape=_det_shape,
         x=Depends("(g * out) * numpy.linalg.inv(x).T", _det_adjoint)),
    rule("solve", "numpy.linalg.solve(a, b)", floating=True, shape=_solve_shape,
         a=Depends("-numpy.linalg.solve(a.T, g) @ out.T", _solve_left),
         b=Depends("numpy.linalg.solve(a.T, g)", _solve_right)),
    rule("matrix_power", "numpy.linalg.matrix_power(x, n)", nondiff=("n",), literal=("n",),
         shape=_square_shape, check=_matrix_power_check,
         x=Depends("sum over k of (x^k).T @ g @ (x^(n-1-k)).T", _matrix_power_adjoint)),
    # pinv of a matrix of full rank (of a rank constant nearby: numpy's pinv jumps where the
    # rank changes); X = pinv(A) of A m x n.
    rule("pinv", "numpy.linalg.pinv(x)", floating=True, shape=_pinv_shape,
         x=Depends("-out.T @ g @ out.T + (I - x @ out) @ g.T @ out @ out.T"
                   " + out.T @ out @ g.T @ (I - out @ x)", _pinv_adjoint)),
    # Pieces (views of x, as many as the literal sections say): unpacked (a, b = ...), or
    # one taken by its place; their gradients joined back along the axis.
    _split_rule("split", axis=True),
    _split_rule("array_split", axis=True),
    _split_rule("hsplit", axis=False),
    _split_rule("vsplit", axis=False),
    _split_rule("dsplit", axis=False),
    # Several results: the sign has no gradient; log|det| has A^-T.
    rule("slogdet", "numpy.linalg.slogdet(x)", floating=True, results=("sign", "logdet"),
         result_shapes=lambda c: (_det_shape(c), _det_shape(c)),
         x=each(sign=None, logdet=Depends("g * numpy.linalg.inv(x).T", _logdet_adjoint))),
    # Distinct eigenvalues; numpy reads the lower triangle of x (as for cholesky).
    rule("eigh", "numpy.linalg.eigh(x)", floating=True, results=("w", "v"),
         result_shapes=lambda c: (_eigenvalues_shape(c), _square_shape(c)),
         x=each(w=Depends("numpy.tril((v * g) @ v.T) * (2 - numpy.eye(len(w)))",
                          _eigh_w_adjoint),
                v="_eigh_dv(g, w, v)")),
    # numpy reads the lower triangle of x only: the gradient is there (the diagonal once).
    rule("cholesky", "numpy.linalg.cholesky(x)", floating=True, shape=_square_shape,
         x="_cholesky_grad(g, out)"),
    # The singular values alone (compute_uv=False): u diag(g) vh of x's own svd.
    rule("svd_values", "numpy.linalg.svd(x, full_matrices, compute_uv, hermitian)",
         nondiff=("full_matrices", "compute_uv", "hermitian"),
         literal=("full_matrices", "compute_uv", "hermitian"), floating=True,
         shape=_singular_values_shape, check=_svd_literals,
         applies_when=lambda literals: literals.get("compute_uv") is False,
         x="_svd_values_dx(g, x)"),
    # u, s, vh with distinct singular values, none 0 (Townsend's adjoints; as eigh's);
    # u and vh of full_matrices=True only of a square matrix (refused otherwise).
    rule("svd", "numpy.linalg.svd(x, full_matrices, compute_uv, hermitian)",
         nondiff=("full_matrices", "compute_uv", "hermitian"),
         literal=("full_matrices", "compute_uv", "hermitian"), floating=True,
         results=("u", "s", "vh"), result_shapes=_svd_shapes, check=_svd_literals,
         applies_when=lambda literals: literals.get("compute_uv") is not False,
         refuse_shapes=_svd_full_refusal,
         x=each(u="_svd_du(g, u, s, vh)",
                s=Depends("(u * g) @ vh", _svd_s_adjoint),
                vh="_svd_dvh(g, u, s, vh)")),

    # --- reductions: the gradient spreads back over the reduced axes ---------------------
    rule("sum", "numpy.sum(x, axis, keepdims)", nondiff=("axis", "keepdims"), literal=_AXES,
         shape=_reduced, x=_SUM),
    rule("mean", "numpy.mean(x, axis, keepdims)", nondiff=("axis", "keepdims"), literal=_AXES,
         floating=True, shape=_reduced, x=_MEAN),
    # max/min over axes: ties share the gradient equally.
    rule("amax", "numpy.max(x, axis, keepdims)", "numpy.amax(x, axis, keepdims)",
         nondiff=("axis", "keepdims"), literal=_AXES, shape=_reduced, x=_EXTREME),
    rule("amin", "numpy.min(x, axis, keepdims)", "numpy.amin(x, axis, keepdims)",
         nondiff=("axis", "keepdims"), literal=_AXES, shape=_reduced, x=_EXTREME),
    rule("var", "numpy.var(x, axis, ddof, keepdims)", nondiff=("axis", "ddof", "keepdims"),
         literal=("axis", "ddof", "keepdims"),
         floating=True, shape=_reduced, x=Depends("(2 / count) * (x - mean) * g", _var_adjoint)),
    rule("std", "numpy.std(x, axis, ddof, keepdims)", nondiff=("axis", "ddof", "keepdims"),
         literal=("axis", "ddof", "keepdims"),
         floating=True, shape=_reduced, x=Depends("(x - mean) / (count * out) * g", _std_adjoint)),

    # --- more reductions and scans ---------------------------------------------------------
    # prod: the product of the other entries, never out / x (exact where x has zeros).
    rule("prod", "numpy.prod(x, axis, keepdims)", nondiff=("axis", "keepdims"), literal=_AXES,
         shape=_reduced, x=Depends("product of the other entries (no division) * g, over axis",
                                   _prod_adjoint)),
    rule("cumsum", "numpy.cumsum(x, axis)", nondiff=("axis",), literal=("axis",), shape=_scanned,
         axes=True, x=Depends("reversed running total of reversed g, along axis (None: flat)",
                              _scan_adjoint)),
    # cumprod: exact where x has zeros (a helper runs the reversed recurrence, no division).
    rule("cumprod", "numpy.cumprod(x, axis)", nondiff=("axis",), literal=("axis",),
         shape=_scanned, axes=True, x="_cumprod_dx(g, x, axis)"),
    # nansum, nanmean: nans are left out, and get gradient 0.
    rule("nansum", "numpy.nansum(x, axis, keepdims)", nondiff=("axis", "keepdims"),
         literal=_AXES, shape=_reduced,
         x=Depends("numpy.where(numpy.isnan(x), 0, g), expanded over axis", _nansum_adjoint)),
    rule("nanmean", "numpy.nanmean(x, axis, keepdims)", nondiff=("axis", "keepdims"),
         literal=_AXES, floating=True, shape=_reduced,
         x=Depends("numpy.where(numpy.isnan(x), 0, g / count of non-nans), expanded over axis",
                   _nanmean_adjoint)),
    rule("ptp", "numpy.ptp(x, axis, keepdims)", nondiff=("axis", "keepdims"), literal=_AXES,
         shape=_reduced,
         x=Depends("((x == max) / ties - (x == min) / ties) * g, expanded over axis",
                   _ptp_adjoint)),
    rule("trace", "numpy.trace(x, offset, axis1, axis2)", nondiff=("offset", "axis1", "axis2"),
         literal=("offset", "axis1", "axis2"), shape=_traced,
         x=Depends("numpy.eye(n, m, offset) * g, its axes at axis1 and axis2", _trace_adjoint)),
    rule("diff", "numpy.diff(x, n, axis)", nondiff=("n", "axis"), literal=("n", "axis"),
         shape=_diffed,  # n=0 gives x back, a number too
         x=Depends("-numpy.diff(g, axis=axis, prepend=0, append=0), n times", _diff_adjoint)),
    # sort, partition: the gradient goes back to where each entry came from (ties: to one).
    rule("sort", "numpy.sort(x, axis)", nondiff=("axis",), literal=("axis",),
         shape=_sorted_shape, axes=True,
         x=Depends("numpy.take_along_axis(g, argsort(argsort(x)), axis)", _sort_adjoint)),
    rule("partition", "numpy.partition(x, kth, axis)", nondiff=("kth", "axis"),
         literal=("axis",), shape=_sorted_shape, axes=True,
         x=Depends("g taken by argsort(out), then by argsort(argsort(x)), along axis",
                   _partition_adjoint)),
    # average: the mean without weights; with them, sum(w * x) / sum(w), whose weights get a
    # gradient too (weights of x's shape, or 1-D along an int axis, as numpy takes them).
    rule("average", "numpy.average(x, axis, w, keepdims)", nondiff=("axis", "keepdims"),
         literal=_AXES, floating=True, shape=_reduced,
         x=Depends("w / sum(w) * g, expanded over axis (the mean's without w)",
                   _average_x_adjoint),
         w=Depends("(x - out) / sum(w) * g, expanded over axis", _average_w_adjoint)),
    # linalg.norm: vector norms (ord None, 1, 2, inf, -inf, other p) along an axis, matrix
    # norms (None, "fro", 1, -1, inf, -inf, and 2, -2, "nuc" by the singular vectors, which
    # need distinct singular values) over two.
    rule("norm", "numpy.linalg.norm(x, ord, axis, keepdims)", nondiff=("ord", "axis", "keepdims"),
         literal=("ord", "axis", "keepdims"), floating=True, shape=_reduced,
         x=Depends("x / norm * g (2-norm, Frobenius); sign(x) * winners * g (1, inf)",
                   _norm_adjoint)),

    # --- shapes: the gradient is reshaped or transposed back ------------------------------
    rule("transpose_attribute", "x.T", shape=_transpose_shape, view=True,
         x=Depends("numpy.transpose(g)", _transpose_adjoint)),
    rule("transpose", "numpy.transpose(x, axes)", nondiff=("axes",), literal=("axes",), view=True,
         shape=_transpose_shape, x=Depends("numpy.transpose(g, inverse of axes)",
                                           _transpose_adjoint)),
    rule("reshape", "numpy.reshape(x, shape)", "numpy.expand_dims(x, shape)",
         "numpy.squeeze(x, shape)", nondiff=("shape",), view=True,
         x="numpy.reshape(g, numpy.shape(x))"),
    rule("swapaxes", "numpy.swapaxes(x, axis1, axis2)", nondiff=("axis1", "axis2"), view=True,
         x="numpy.swapaxes(g, axis1, axis2)"),
    rule("ravel", "numpy.ravel(x)", shape=_ravel_shape, view=True,
         x="numpy.reshape(g, numpy.shape(x))"),
    # float(x) is x as a Python number: the gradient passes through (int(x) has none).
    rule("float", "float(x)", shape=_number, x="g"),
    rule("outer", "numpy.outer(x, y)", shape=_outer_shape,
         x=Depends("g @ y (x, y 1-D)", _outer_left), y=Depends("x @ g (x, y 1-D)", _outer_right)),
    rule("concatenate", "numpy.concatenate(x, axis)", nondiff=("axis",), literal=("axis",),
         variadic=True, axes=True, shape=_concatenated_shape,
         x=Depends("the slice of g that was x", _concatenate_adjoint)),
    rule("stack", "numpy.stack(x, axis)", nondiff=("axis",), literal=("axis",), variadic=True,
         axes=True, shape=_stacked_shape,
         x=Depends("numpy.take(g, position of x, axis)", _stack_adjoint)),
    # --- more shapes ---------------------------------------------------------------------
    # numpy makes each item at least 2-D (vstack), 1-D (hstack), 3-D (dstack) or a column
    # (column_stack), then joins them: an item's gradient is its part of g.
    # np.row_stack: numpy 2 deprecates the alias (a DeprecationWarning) but still has it.
    rule("vstack", "numpy.vstack(x)", "numpy.row_stack(x)", variadic=True, axes=True,
         shape=_joined_shape(0, 2),
         x=Depends("the rows of g that were x", _join_adjoint(0, 2))),
    rule("hstack", "numpy.hstack(x)", variadic=True, axes=True, shape=_joined_shape(None, 1),
         x=Depends("the columns of g that were x", _join_adjoint(None, 1))),
    rule("dstack", "numpy.dstack(x)", variadic=True, axes=True, shape=_joined_shape(2, 3),
         x=Depends("the planes of g that were x", _join_adjoint(2, 3))),
    rule("column_stack", "numpy.column_stack(x)", variadic=True, axes=True,
         shape=_joined_shape(1, 2),
         x=Depends("the columns of g that were x", _join_adjoint(1, 2))),
    rule("atleast_1d", "numpy.atleast_1d(x)", view=True, shape=_at_least_shape(1),
         x=Depends("numpy.reshape(g, numpy.shape(x))", _at_least_adjoint(1))),
    rule("atleast_2d", "numpy.atleast_2d(x)", view=True, shape=_at_least_shape(2),
         x=Depends("numpy.reshape(g, numpy.shape(x))", _at_least_adjoint(2))),
    rule("atleast_3d", "numpy.atleast_3d(x)", view=True, shape=_at_least_shape(3),
         x=Depends("numpy.reshape(g, numpy.shape(x))", _at_least_adjoint(3))),
    rule("flip", "numpy.flip(x, axis)", nondiff=("axis",), view=True, shape=_same,
         x=Depends("numpy.flip(g, axis)", _flip_adjoint)),
    # A quarter turn k times in the plane of axes: turned back -k times.
    rule("rot90", "numpy.rot90(x, k, axes)", nondiff=("k", "axes"), view=True, axes=True,
         shape=_rot90_shape, x=Depends("numpy.rot90(g, -k, axes)", _rot90_adjoint)),
    rule("fliplr", "numpy.fliplr(x)", view=True, shape=_same, x="numpy.fliplr(g)"),
    rule("flipud", "numpy.flipud(x)", view=True, shape=_same, x="numpy.flipud(g)"),
    rule("roll", "numpy.roll(x, shift, axis)", nondiff=("shift", "axis"), shape=_same,
         x=Depends("numpy.roll(g, -shift, axis)", _roll_adjoint)),
    # The copies' gradients add up: g cut into (copy, entry) per axis, summed over copies.
    rule("tile", "numpy.tile(x, reps)", nondiff=("reps",), shape=_tile_shape,
         x=Depends("g summed over the copies", _tile_adjoint)),
    rule("repeat", "numpy.repeat(x, repeats, axis)", nondiff=("repeats", "axis"),
         shape=_repeat_shape, x=Depends("g summed over each entry's copies", _repeat_adjoint)),
    # np.append is np.concatenate of x and y (both flattened where axis is None).
    rule("array_append", "numpy.append(x, y, axis)", nondiff=("axis",), literal=("axis",),
         axes=True, shape=_append_shape,
         x=Depends("the part of g that was x", _append_adjoint(True)),
         y=Depends("the part of g that was y", _append_adjoint(False))),
    # The values are x * (1 - t) + y * t, t = numpy.linspace(0, 1, num, endpoint).
    rule("linspace", "numpy.linspace(x, y, num, endpoint, axis)",
         nondiff=("num", "endpoint", "axis"), literal=("axis",), floating=True, axes=True,
         shape=_linspace_shape,
         x=Depends("numpy.linspace(1.0, 0.0, num, endpoint) @ g, along axis",
                   _linspace_adjoint(True)),
         y=Depends("numpy.linspace(0.0, 1.0, num, endpoint) @ g, along axis",
                   _linspace_adjoint(False))),
    # Unit spacing, edge_order 1, along one axis: central differences inside, one-sided at
    # the edges (other spacings and orders are refused).
    rule("gradient", "numpy.gradient(x, axis, edge_order)", nondiff=("axis", "edge_order"),
         literal=("axis", "edge_order"), floating=True, axes=True, check=_gradient_check,
         shape=_gradient_shape,
         x=Depends("w[:-2] - w[2:], w = [-g[0], g[0], g[1:-1] / 2, g[-1], -g[-1]] along axis",
                   _gradient_adjoint)),
    rule("broadcast_to", "numpy.broadcast_to(x, shape)", nondiff=("shape",), view=True,
         shape=_broadcast_to_shape,
         x=Depends("g summed over the axes x was spread along", _broadcast_to_adjoint)),
    rule("moveaxis", "numpy.moveaxis(x, source, destination)",
         nondiff=("source", "destination"), view=True, shape=_moveaxis_shape,
         x="numpy.moveaxis(g, destination, source)"),
    rule("rollaxis", "numpy.rollaxis(x, axis, start)", nondiff=("axis", "start"), view=True,
         shape=_rollaxis_shape, x=Depends("numpy.moveaxis(g, start, axis)", _rollaxis_adjoint)),
    # A diagonal's gradient is on that diagonal, zeros elsewhere.
    rule("diag", "numpy.diag(x, k)", nondiff=("k",), view=True, shape=_diag_shape,
         x=Depends("numpy.diag(g, k) (x 1-D); g on the diagonal (x 2-D)", _diag_adjoint)),
    rule("diagonal", "numpy.diagonal(x, offset, axis1, axis2)",
         nondiff=("offset", "axis1", "axis2"), view=True, shape=_diagonal_shape,
         x=Depends("g on that diagonal, zeros elsewhere", _diagonal_adjoint)),
    rule("triu", "numpy.triu(x, k)", nondiff=("k",), shape=_triangle_shape,
         x=Depends("numpy.triu(g, k)", _triangle_adjoint("triu"))),
    rule("tril", "numpy.tril(x, k)", nondiff=("k",), shape=_triangle_shape,
         x=Depends("numpy.tril(g, k)", _triangle_adjoint("tril"))),
    # Taken entries: the gradient is added back where they were (repeated ones add up).
    rule("take", "numpy.take(x, indices, axis)", nondiff=("indices", "axis"),
         shape=_take_shape, x=Depends("g added at the indices along axis", _take_adjoint)),
    rule("take_along_axis", "numpy.take_along_axis(x, indices, axis)",
         nondiff=("indices", "axis"), shape=_take_along_axis_shape,
         x="_untake_along_axis(g, x, indices, axis)"),
    # mode 'constant' only; c (constant_values) gets the gradient of the entries it filled.
    rule("pad", "numpy.pad(x, pad_width, mode, c)", nondiff=("pad_width", "mode"),
         refuse_when=_only_constant_mode, shape=_pad_shape,
         x=Depends("the part of g that was x", _unpadded),
         c=Depends("the padded entries of g summed (none if x is a mask or whole numbers)",
                   _pad_values_adjoint)),
    # A window's entries are x's: each is added back where it was read.
    rule("sliding_window_view",
         "numpy.lib.stride_tricks.sliding_window_view(x, window_shape, axis)",
         nondiff=("window_shape", "axis"), view=True, shape=_window_shape,
         x="_unslide(g, x, window_shape, axis)"),
    # An array written out of values (np.array([[c, -s], [s, c]])): each gets its entry of g.
    rule("array", "numpy.array(x, dtype)", "numpy.asarray(x, dtype)", nondiff=("dtype",),
         variadic=True, nests=True, axes=True, shape=_listed_shape,
         no_gradient_when=_to_whole_numbers, x=Depends("g[position of x]", _listed_adjoint)),
    # An array of a value: a copy (np.array) or the value itself (np.asarray), as astype.
    rule("array_of_value", "numpy.array(x, dtype)", nondiff=("dtype",), shape=_same,
         no_gradient_when=_to_whole_numbers, x=_AS_ARRAY),
    rule("asarray", "numpy.asarray(x, dtype)", nondiff=("dtype",), shape=_same, view=True,
         no_gradient_when=_to_whole_numbers, x=_AS_ARRAY),
    # The gradient goes back as a new array (never the upstream object itself) in x's
    # floating type: float32 stays float32, an integer x gets float64, not truncated.
    rule("astype", "numpy.astype(x, dtype)", nondiff=("dtype",), shape=_same,
         no_gradient_when=_to_whole_numbers,
         x="numpy.array(g, dtype=numpy.result_type(x.dtype, 1.0))"),
    # indexing: the gradient is added back at the index (np.add.at for integer arrays, so
    # repeated indices add up).
    rule("index", "x[i]", nondiff=("i",), view=True, x=Scatter("i", "g")),
    # full/full_like: the fill value spread over a shape; its gradient is the upstream summed
    # back to the fill value's shape (none for a whole-number dtype).
    rule("full", "numpy.full(shape, x, dtype)", nondiff=("shape", "dtype"),
         no_gradient_when=_to_whole_numbers, shape=_full_shape,
         x=Depends("g summed to x's shape", _fill_adjoint)),
    rule("full_like", "numpy.full_like(like, x, dtype)", nondiff=("like", "dtype"),
         no_gradient_when=_to_whole_numbers, shape=_like_shape,
         x=Depends("g summed to x's shape", _fill_adjoint)),
)
# fmt: on

# Operations with several results, by the function their form calls.
_SEVERAL: dict[tuple[str, str], Rule] = {
    (form.func.lib or "", form.func.name): r
    for r in RULES
    if r.results or r.pieces is not None
    for form in r.forms
    if isinstance(form, Call)
}

# x[i]: its result's shape depends on what the index's names are (a loop's step takes an axis
# away), which infer.py knows.
INDEX = next(r for r in RULES if r.name == "index")
RESHAPE = next(r for r in RULES if r.name == "reshape")


def is_reshape(rule: Rule | None, expr: Expr) -> bool:
    """``np.reshape(x, shape)`` or ``x.reshape(...)``: not the other forms of its rule
    (``np.expand_dims``, ``np.squeeze``), whose argument is an axis."""
    return rule is RESHAPE and isinstance(expr, Call) and expr.func.name == "reshape"


# The functions acting entry by entry (np.exp, np.maximum): of arguments of known shapes,
# their result has the shapes' broadcast (``np.log(2 * np.pi)`` is a number).
ELEMENTWISE_FUNCTIONS = frozenset(
    (form.func.lib, form.func.name)
    for rule in RULES
    if rule.elementwise
    for form in rule.forms
    if isinstance(form, Call) and form.func.lib is not None
)

# How numpy functions take their arguments, to read ``np.sum(x, axis=0)``, ``x.sum(0)`` and
# ``np.sum(x, 0, keepdims=False)`` as the same call. "name=default" marks an optional one.
SIGNATURES: dict[tuple[str, str], tuple[str, ...]] = {
    **{
        ("numpy", f): ("a", "axis=None", "keepdims=False")
        for f in ("sum", "mean", "max", "min", "amax", "amin")
    },
    ("numpy", "var"): ("a", "axis=None", "ddof=0", "keepdims=False"),
    ("numpy", "std"): ("a", "axis=None", "ddof=0", "keepdims=False"),
    **{("numpy", f): ("a", "axis=None", "keepdims=False") for f in ("prod", "ptp", "nansum")},
    ("numpy", "nanmean"): ("a", "axis=None", "keepdims=False"),
    ("numpy", "average"): ("a", "axis=None", "weights=None", "keepdims=False"),
    ("numpy.linalg", "norm"): ("x", "ord=None", "axis=None", "keepdims=False"),
    **{("numpy", f): ("ary", "indices_or_sections", "axis=0") for f in ("split", "array_split")},
    **{("numpy", f): ("ary", "indices_or_sections") for f in ("hsplit", "vsplit", "dsplit")},
    ("numpy", "cumsum"): ("a", "axis=None"),
    ("numpy", "cumprod"): ("a", "axis=None"),
    ("numpy", "trace"): ("a", "offset=0", "axis1=0", "axis2=1"),
    ("numpy", "diff"): ("a", "n=1", "axis=-1"),
    ("numpy", "sort"): ("a", "axis=-1"),
    ("numpy", "partition"): ("a", "kth", "axis=-1"),
    ("numpy", "transpose"): ("a", "axes=None"),
    ("numpy", "swapaxes"): ("a", "axis1", "axis2"),
    ("numpy", "reshape"): ("a", "shape"),
    ("numpy", "expand_dims"): ("a", "axis"),
    ("numpy", "squeeze"): ("a", "axis=None"),
    ("numpy", "clip"): ("a", "a_min=None", "a_max=None"),
    ("numpy", "astype"): ("a", "dtype"),
    ("numpy", "where"): ("condition", "x", "y"),
    ("numpy", "concatenate"): ("arrays", "axis=0"),
    ("numpy", "full"): ("shape", "fill_value", "dtype=None"),
    ("numpy", "full_like"): ("a", "fill_value", "dtype=None"),
    ("numpy", "stack"): ("arrays", "axis=0"),
    **{("numpy", f): ("tup",) for f in ("vstack", "row_stack", "hstack", "dstack", "column_stack")},
    ("numpy", "rot90"): ("m", "k=1", "axes=(0, 1)"),
    ("numpy", "append"): ("arr", "values", "axis=None"),
    # retstep (the fifth by position) and dtype are not read: refused where written.
    ("numpy", "linspace"): ("start", "stop", "num=50", "endpoint=True", "axis=0"),
    # the spacings (numpy's *varargs) are not read: refused where written.
    ("numpy", "gradient"): ("f", "axis=None", "edge_order=1"),
    ("numpy", "select"): ("condlist", "choicelist", "default=0"),
    ("numpy", "flip"): ("m", "axis=None"),
    ("numpy", "roll"): ("a", "shift", "axis=None"),
    ("numpy", "tile"): ("A", "reps"),
    ("numpy", "repeat"): ("a", "repeats", "axis=None"),
    ("numpy", "broadcast_to"): ("array", "shape"),
    ("numpy", "moveaxis"): ("a", "source", "destination"),
    ("numpy", "rollaxis"): ("a", "axis", "start=0"),
    ("numpy", "diag"): ("v", "k=0"),
    ("numpy", "diagonal"): ("a", "offset=0", "axis1=0", "axis2=1"),
    ("numpy", "triu"): ("m", "k=0"),
    ("numpy", "tril"): ("m", "k=0"),
    ("numpy", "take"): ("a", "indices", "axis=None"),
    ("numpy", "take_along_axis"): ("arr", "indices", "axis=-1"),
    ("numpy", "array"): ("object", "dtype=None"),
    ("numpy", "asarray"): ("a", "dtype=None"),
    ("numpy", "pad"): ("array", "pad_width", "mode='constant'", "constant_values=0"),
    ("numpy.lib.stride_tricks", "sliding_window_view"): ("x", "window_shape", "axis=None"),
    ("numpy", "tensordot"): ("a", "b", "axes=2"),
    ("numpy.linalg", "matrix_power"): ("a", "n"),
    ("numpy.linalg", "svd"): ("a", "full_matrices=True", "compute_uv=True", "hermitian=False"),
    ("scipy.linalg", "solve_triangular"): (
        "a",
        "b",
        "trans=0",
        "lower=False",
        "unit_diagonal=False",
    ),
    ("scipy.linalg", "solve_sylvester"): ("a", "b", "q"),
    ("scipy.linalg", "solve_banded"): ("l_and_u", "ab", "b"),
    ("scipy.linalg", "sqrtm"): ("A",),
    ("scipy.signal", "convolve"): ("in1", "in2", "mode='full'"),
    ("scipy.signal", "correlate"): ("in1", "in2", "mode='full'"),
    ("scipy.special", "logsumexp"): ("a", "axis=None", "b=None", "keepdims=False"),
    ("scipy.special", "softmax"): ("x", "axis=None"),
    ("scipy.special", "log_softmax"): ("x", "axis=None"),
    ("scipy.special", "multigammaln"): ("a", "d"),
    ("scipy.stats.t", "logpdf"): ("x", "df", "loc=0", "scale=1"),
    ("scipy.stats.gamma", "logpdf"): ("x", "a", "loc=0", "scale=1"),
    ("scipy.stats.beta", "logpdf"): ("x", "a", "b"),
    ("scipy.stats.poisson", "logpmf"): ("k", "mu"),
    ("scipy.stats.t", "pdf"): ("x", "df", "loc=0", "scale=1"),
    ("scipy.stats.gamma", "pdf"): ("x", "a", "loc=0", "scale=1"),
    ("scipy.stats.beta", "pdf"): ("x", "a", "b"),
    ("scipy.stats.poisson", "pmf"): ("k", "mu"),
    ("scipy.stats.poisson", "cdf"): ("k", "mu"),
    ("scipy.stats.t", "cdf"): ("x", "df", "loc=0", "scale=1"),
    ("scipy.stats.t", "logcdf"): ("x", "df", "loc=0", "scale=1"),
    ("scipy.stats.gamma", "cdf"): ("x", "a", "loc=0", "scale=1"),
    ("scipy.stats.beta", "cdf"): ("x", "a", "b"),
    **{("scipy.stats.chi2", f): ("x", "df", "loc=0", "scale=1") for f in ("logpdf", "pdf", "cdf")},
    **{("scipy.stats.norm", f): ("q", "loc=0", "scale=1") for f in ("ppf", "isf")},
    # cov has a default (1: the identity) that gradgen does not read: refused without one.
    ("scipy.stats.multivariate_normal", "logpdf"): ("x", "mean=None", "cov"),
    ("scipy.stats.multivariate_normal", "pdf"): ("x", "mean=None", "cov"),
    ("scipy.stats.multivariate_normal", "entropy"): ("mean=None", "cov"),
    **{
        ("scipy.stats.norm", f): ("x", "loc=0", "scale=1")
        for f in ("logpdf", "pdf", "cdf", "logcdf", "sf", "logsf")
    },
}
# Keywords that say how numpy computes a value, not what it is (np.einsum's optimize): the
# rule's form is matched without them, and the forward line keeps them as written.
HOW_KEYWORDS: dict[tuple[str, str], frozenset[str]] = {
    ("numpy", "einsum"): frozenset({"optimize"}),
}
# Functions whose last parameters numpy takes by keyword only: how many it takes by position
# (np.average's fourth is ``returned``, not ``keepdims``: refused, never misread).
POSITIONAL: dict[tuple[str, str], int] = {
    ("numpy", "average"): 3,
    ("numpy", "linspace"): 4,
    ("numpy", "gradient"): 1,
}
VARIADIC_METHODS = ("reshape", "transpose")  # x.reshape(N, -1) is x.reshape((N, -1))
# Operators whose results have no gradient (x // y: whole numbers), as comparisons have none.
NO_GRADIENT_OPERATORS = frozenset({"//"})
# Functions whose results have no gradient: their values flow, no adjoint is computed.
NONDIFFERENTIABLE: frozenset[tuple[str, str]] = frozenset(
    [
        ("numpy", f)
        for f in (
            "arange",
            "zeros",
            "ones",
            "zeros_like",
            "ones_like",
            "eye",
            "shape",
            "ndim",
            "size",
            "argmax",
            "argmin",
            "sign",
            "floor",
            "ceil",
            "round",
            "around",
            "rint",
            "trunc",
            "fix",
            "floor_divide",
            "isfinite",
            "isnan",
            "isinf",
            "isneginf",
            "isposinf",
            "logical_and",
            "logical_or",
            "logical_not",
            "logical_xor",
            "greater",
            "greater_equal",
            "less",
            "less_equal",
            "equal",
            "not_equal",
            "isclose",
        )
    ]
    # Whole numbers: piecewise constant, their derivative 0 almost everywhere.
    + [("math", f) for f in ("floor", "ceil", "trunc")]
    + [("builtins", "len"), ("builtins", "int"), ("builtins", "round")]
    # The steps of a loop (for t in range(T)): numbers.
    + [("builtins", "range"), ("builtins", "reversed")]
)
# What a loop may go over (for t in range(T), for t in reversed(range(T))): numbers it can
# count before it starts.
STEPS = ("builtins", "range")
REVERSED = ("builtins", "reversed")
# How many items a list has (len(hs) of a list a loop filled): a number, no gradient.
LENGTH = ("builtins", "len")
# How many steps a loop over zip(xs, ys) takes: the shortest's length, as zip stops there.
SHORTEST = ("builtins", "min")
# What a loop may go over besides range: the items of parameters, numbered or side by side
# (for i, (W, b) in enumerate(layers), for x, y in zip(xs, ys)).
NUMBERED = "enumerate"
SIDE_BY_SIDE = "zip"
# What makes an array a loop may fill (hs = np.zeros(...), then hs[:, t, :] = h): constants.
ARRAY_MAKERS = frozenset(
    ("numpy", f"{kind}{like}") for kind in ("zeros", "ones", "empty") for like in ("", "_like")
)
# An identity matrix (np.eye(N)): its shape is (N, N).
IDENTITY = ("numpy", "eye")
# The user's mark on a value that is constant for gradients (the max-shift of a softmax):
# ``gradgen.stop_gradient(x)`` is the identity when it runs, so its value has no gradient and
# the generated code, which does not import gradgen, writes its argument alone.
STOP_GRADIENT = ("gradgen", "stop_gradient")


class Shift(enum.Enum):
    """How an operation's result moves when its inputs move with a shift d (a value ``c``
    added or subtracted, ``x - c``): the algebra ``invariance.py`` proves a softmax's
    max-shift has no gradient with. ``v0 + k*d`` is *additive*, ``v0 * exp(k*d)``
    *multiplicative*; an operation not in ``SHIFTS`` makes either unknown."""

    ADD = "x + y: additive k's add (a shift: c added here is a candidate)"
    SUBTRACT = "x - y: additive k's subtract (a shift: c subtracted here is a candidate)"
    MULTIPLY = "x * y: multiplicative k's add; additive times a number written out"
    DIVIDE = "x / y: multiplicative k's subtract; additive over a number written out"
    NEGATE = "-x: additive k negated; multiplicative kept"
    KEEP = "+x: kept"
    EXP = "exp: additive to multiplicative"
    LOG = "log: multiplicative to additive"
    POWER = "x ** p: multiplicative k times p, a number written out"
    SQUARE = "x * x: multiplicative k doubled"
    SQRT = "sqrt: multiplicative k halved"
    # Reductions, over axes along which d is constant (its size there is 1):
    SUM = "sum: multiplicative kept (a sum of additive ones adds d once per entry)"
    MEAN = "mean, max, min: additive and multiplicative kept"
    LOGSUMEXP = "logsumexp (no weights b): additive kept"
    NORMALIZE = "softmax, log_softmax: invariant to an additive d along the axis"


SHIFTS: dict[str, Shift] = {
    "add": Shift.ADD,
    "sub": Shift.SUBTRACT,
    "mul": Shift.MULTIPLY,
    "div": Shift.DIVIDE,
    "neg": Shift.NEGATE,
    "pos": Shift.KEEP,
    "exp": Shift.EXP,
    "log": Shift.LOG,
    "pow": Shift.POWER,
    "mul_self": Shift.SQUARE,
    "square": Shift.SQUARE,
    "sqrt": Shift.SQRT,
    "sum": Shift.SUM,
    "mean": Shift.MEAN,
    "amax": Shift.MEAN,
    "amin": Shift.MEAN,
    "logsumexp": Shift.LOGSUMEXP,
    "softmax": Shift.NORMALIZE,
    "log_softmax": Shift.NORMALIZE,
}
# Random draws (README "Random draws"): the functions of numpy.random and of the standard
# library's random, and the methods of a generator object (a numpy Generator or RandomState,
# a random.Random), that return new random values. A draw is a value with no gradient,
# computed once where the forward runs once; nothing that changes a value in place
# (shuffle) or makes a generator (default_rng, seed) is one.
NUMPY_DRAWS = frozenset(
    {
        # Generator and RandomState
        "beta",
        "binomial",
        "chisquare",
        "choice",
        "dirichlet",
        "exponential",
        "f",
        "gamma",
        "geometric",
        "gumbel",
        "hypergeometric",
        "laplace",
        "logistic",
        "lognormal",
        "logseries",
        "multinomial",
        "multivariate_normal",
        "negative_binomial",
        "noncentral_chisquare",
        "noncentral_f",
        "normal",
        "pareto",
        "permutation",
        "poisson",
        "power",
        "random",
        "rayleigh",
        "standard_cauchy",
        "standard_exponential",
        "standard_gamma",
        "standard_normal",
        "standard_t",
        "triangular",
        "uniform",
        "vonmises",
        "wald",
        "weibull",
        "zipf",
        # Generator only
        "integers",
        "multivariate_hypergeometric",
        "permuted",
        # RandomState (and numpy.random's functions) only
        "rand",
        "randn",
        "randint",
        "random_integers",
        "random_sample",
        "ranf",
        "sample",
    }
)
STDLIB_DRAWS = frozenset(
    {
        "betavariate",
        "binomialvariate",
        "choice",
        "choices",
        "expovariate",
        "gammavariate",
        "gauss",
        "getrandbits",
        "lognormvariate",
        "normalvariate",
        "paretovariate",
        "randint",
        "random",
        "randrange",
        "sample",
        "triangular",
        "uniform",
        "vonmisesvariate",
        "weibullvariate",
    }
)
# The modules whose functions draw, and what each draws with.
DRAW_MODULES: dict[str, frozenset[str]] = {"numpy.random": NUMPY_DRAWS, "random": STDLIB_DRAWS}
# Methods of a generator object: a parameter (``rng.normal(size=3)``) or module data
# (``rs = npr.RandomState(0)``; ``rs.randn(3)``) whose type gradgen cannot see, so any
# drawing method of either library.
DRAW_METHODS = NUMPY_DRAWS | STDLIB_DRAWS
# ``Func.lib`` of a method call on a generator object (the library of a function that draws
# is its module's: "numpy.random", "random").
GENERATOR = "generator"


# Draws whose every argument is a shape, a size or the bounds of whole numbers drawn
# (``randn(3, 2)``, ``integers(0, n)``): values with no gradient whatever their arguments, so
# a parameter passed there (``def noise(shape): return rs.randn(shape)``) is data.
NUMPY_SHAPE_ONLY = frozenset(
    {
        "rand",
        "randn",
        "random",
        "random_sample",
        "ranf",
        "sample",
        "standard_normal",
        "standard_cauchy",
        "standard_exponential",
        "integers",
        "randint",
        "random_integers",
    }
)
STDLIB_SHAPE_ONLY = frozenset({"random", "getrandbits", "randint", "randrange"})
# The distribution parameters numpy's other draws take first (``normal(loc, scale, size)``):
# the positional arguments after them, and the keywords of ``NO_GRADIENT_KEYWORDS``, say how
# many numbers are drawn and how, never their distribution. A gradient that would have to
# flow into a distribution parameter is refused (reverse.opaque_refusals), pointing at the
# reparameterization. The standard library's draws take distribution parameters only.
DISTRIBUTION_PARAMETERS: dict[str, int] = {
    **dict.fromkeys(
        (
            "chisquare",
            "dirichlet",
            "exponential",
            "geometric",
            "logseries",
            "pareto",
            "poisson",
            "power",
            "rayleigh",
            "standard_gamma",
            "standard_t",
            "weibull",
            "zipf",
            "choice",
            "permutation",
            "permuted",
        ),
        1,
    ),
    **dict.fromkeys(
        (
            "beta",
            "binomial",
            "f",
            "gamma",
            "gumbel",
            "laplace",
            "logistic",
            "lognormal",
            "multinomial",
            "multivariate_normal",
            "negative_binomial",
            "noncentral_chisquare",
            "normal",
            "uniform",
            "vonmises",
            "wald",
            "multivariate_hypergeometric",
        ),
        2,
    ),
    **dict.fromkeys(("hypergeometric", "noncentral_f", "triangular"), 3),
}
NO_GRADIENT_KEYWORDS = frozenset(
    {"size", "dtype", "endpoint", "replace", "axis", "out", "check_valid", "tol", "method"}
)


def is_draw(func: Func) -> bool:
    """Does ``func`` draw random numbers (``np.random.randn``, ``rng.normal``)?"""
    if func.lib == GENERATOR:
        return True
    return func.name in DRAW_MODULES.get(func.lib or "", frozenset())


def written_arguments(call: Call) -> tuple[Expr, ...]:
    """The arguments of a draw as written in its parentheses (positional, then keywords'
    values): without the generator a method is called on, which is data (``rng``)."""
    arguments = (*call.args, *(value for _, value in call.kwargs))
    on_value = call.func.lib == GENERATOR and (call.func.spelling or "").startswith(".")
    return arguments[1:] if on_value else arguments


def draw_parameters(call: Call) -> tuple[int, ...]:
    """The positions, among ``written_arguments(call)``, of the draw's distribution
    parameters: the arguments a gradient could be asked to flow into (``loc`` and
    ``scale`` of ``normal``; none of ``randn``'s)."""
    name, library = call.func.name, call.func.lib
    in_numpy = library == "numpy.random" or (library == GENERATOR and name in NUMPY_DRAWS)
    in_stdlib = library == "random" or (library == GENERATOR and name in STDLIB_DRAWS)
    # A method of a generator of either library: shape-only where it is in both.
    if (not in_numpy or name in NUMPY_SHAPE_ONLY) and (not in_stdlib or name in STDLIB_SHAPE_ONLY):
        return ()
    positional = len(written_arguments(call)) - len(call.kwargs)
    count = DISTRIBUTION_PARAMETERS.get(name, positional) if in_numpy else positional
    keywords = [
        positional + k for k, (key, _) in enumerate(call.kwargs) if key not in NO_GRADIENT_KEYWORDS
    ]
    return (*range(min(count, positional)), *keywords)


# Libraries whose functions are operations, whether the table knows them or not: a function
# of any other module is the user's (``from layers import affine``), and refused as such.
OPERATION_LIBRARIES = frozenset({"math", "numpy", "scipy", "cmath", "statistics"})
# The shapes of values with no gradient: of the first argument (astype is in the table, but
# an integer astype has no gradient), or the arrays' broadcast.
SHAPE_OF_FIRST = frozenset(
    {
        "astype",
        "array",  # np.array(x, dtype=int): of a value; of a list written out, unknown
        "asarray",
        "stop_gradient",
        "zeros_like",
        "ones_like",
        "sign",
        "floor",
        "ceil",
        "round",
        "around",
        "rint",
        "trunc",
        "fix",
        "isfinite",
        "isnan",
        "isinf",
        "isneginf",
        "isposinf",
        "logical_not",
    }
)
ELEMENTWISE_MASKS = frozenset(
    [
        "logical_and",
        "logical_or",
        "logical_xor",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "equal",
        "not_equal",
        "isclose",
    ]
)
# Values that are numbers whatever their argument's shape: len(x), np.size(x), x.size,
# x.shape[0].
NUMBER_VALUED = frozenset({("builtins", "len"), ("numpy", "size"), ("numpy", "ndim")})
NUMBER_ATTRIBUTES = ("size", "ndim")
SHAPE_ATTRIBUTE = "shape"
# The arguments of numpy functions adjoint templates call that are read for their shape
# and dtype alone (``np.zeros_like(x, dtype=np.result_type(x, 1.0))``).
SHAPE_READS: dict[tuple[str, str], tuple[int, ...]] = {
    ("numpy", "zeros_like"): (0,),
    ("numpy", "ones_like"): (0,),
    ("numpy", "full_like"): (0,),
    ("numpy", "result_type"): (0,),
    ("numpy", "shape"): (0,),
}
# Functions whose results never hold one entry twice (np.arange): an index built from one
# selects distinct rows, so the gradient is scattered with plain ``+=``, not np.add.at.
DISTINCT_ENTRIES = frozenset({("numpy", "arange")})


class Aliasing(enum.Enum):
    """What the result of a function called by adjoint code may share memory with."""

    NEW = "a new array"
    FIRST_OR_NEW = "its first argument itself, or a new array"
    VIEW_OF_FIRST = "a view of its first argument (or the argument itself)"


# The functions adjoint templates call, by what their results may share with their inputs:
# the ownership pass (ownership.py) writes in place only into arrays that share nothing.
# A function missing here is assumed to share memory with every array it is given.
TEMPLATE_ALIASING: dict[str, Aliasing] = {
    "asarray": Aliasing.FIRST_OR_NEW,
    **dict.fromkeys(
        (
            "reshape",
            "transpose",
            "swapaxes",
            "expand_dims",
            "squeeze",
            "broadcast_to",
            "ravel",
            "flip",
            "fliplr",
            "flipud",
            "moveaxis",
            "rot90",
            "diag",  # of a matrix: a view of its diagonal
        ),
        Aliasing.VIEW_OF_FIRST,
    ),
    **dict.fromkeys(
        (
            "full_like",
            "zeros_like",
            "solve_triangular",
            "solve_sylvester",
            "solve_banded",
            "convolve",
            "correlate",
            "sum",
            "mean",
            "where",
            "take",
            "roll",
            "triu",
            "tril",
            "array",
            "copy",
            "outer",
            "maximum",
            "log",
            "exp",
            "cos",
            "sin",
            "abs",
            "cumsum",
            "diff",
            "take_along_axis",
            "argsort",
            "eye",
            "isnan",
            "logical_not",
            "max",
            "min",
            "sign",
            "inv",
            "solve",
            "eye",
            "ones_like",
            "tril",
            "tensordot",
            "cross",
            "kron",
            # joins always copy their items into an array of their own
            "concatenate",
            "stack",
            "hstack",
            "vstack",
            "dstack",
            "zeros",
            "linspace",
            "gradient",
        ),
        Aliasing.NEW,
    ),
}

# Attributes of arrays: .T is differentiable (a rule above); these are not.
VALUE_ATTRIBUTES = ("T", "shape", "ndim", "size", "dtype")
NONDIFFERENTIABLE_ATTRIBUTES = ("shape", "ndim", "size", "dtype")

# Module attributes that are constants: no derivative, copied as written.
CONSTANTS: dict[str, tuple[str, ...]] = {
    "math": ("pi", "e", "tau", "inf"),
    "numpy": ("pi", "e", "inf", "nan", "newaxis", "float32", "float64", "int64", "int32"),
}


# --- reading calls -------------------------------------------------------------------------


def canonical_call(call: Call) -> Call:
    """``call`` with every argument of its signature in place, keywords resolved, so that
    ``x.sum(axis=1)`` and ``np.sum(x, 1)`` match the same rule. ValueError: not a call this
    table reads (an unknown keyword, a missing argument)."""
    key = (call.func.lib or "", call.func.name)
    args = list(call.args)
    method = (call.func.spelling or "").startswith(".")
    if method and call.func.name in VARIADIC_METHODS and len(args) > 2:
        args = [args[0], Sequence_(tuple(args[1:]))]
    signature = SIGNATURES.get(key)
    if signature is None:
        how = HOW_KEYWORDS.get(key, frozenset())
        if any(keyword not in how for keyword, _ in call.kwargs):
            raise ValueError(f"'{call.func.spelling}' takes no keyword arguments here")
        if call.kwargs:  # read past: the forward keeps them as written
            return Call(call.func, call.args, (), origin=call.origin)
        return call
    names = [p.split("=")[0] for p in signature]
    if len(args) > len(names):
        raise ValueError(f"'{call.func.spelling}' takes at most {len(names)} arguments")
    positional = POSITIONAL.get(key, len(names))
    if len(args) > positional:
        raise ValueError(
            f"'{call.func.spelling}' takes at most {positional} arguments by position here"
        )
    filled: dict[str, Expr] = dict(zip(names, args, strict=False))
    aliases = KEYWORD_ALIASES.get(key, {})
    for written, value in call.kwargs:
        key_name = aliases.get(written, written)
        if key_name not in names or key_name in filled:
            raise ValueError(f"'{call.func.spelling}' has no argument '{key_name}' here")
        filled[key_name] = value
    for parameter in signature:
        name, _, default = parameter.partition("=")
        if name not in filled:
            if not default:
                raise ValueError(f"'{call.func.spelling}' needs its argument '{name}'")
            # a tuple (np.rot90's axes=(0, 1)) as its items, so its literal value is read
            filled[name] = (
                _parse(default)
                if default.startswith("(")
                else Const(default, literal_number(default))
            )
    return Call(call.func, tuple(filled[n] for n in names), (), origin=call.origin)


def literal_number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        return None


def without_gradient(call: Call) -> bool:
    """Has the value of ``call`` no gradient, whatever its arguments hold? A function of
    ``NONDIFFERENTIABLE``, or an operation whose row says so for these arguments (an
    ``astype`` to whole numbers)."""
    if (call.func.lib, call.func.name) in NONDIFFERENTIABLE:
        return True
    if (call.func.lib, call.func.name) == STOP_GRADIENT:
        return len(call.args) == 1 and not call.kwargs  # else refused where it is lowered
    for rule_, form in _CONDITIONAL:
        assert isinstance(form, Call)
        if (form.func.lib, form.func.name) != (call.func.lib, call.func.name):
            continue
        try:
            canonical = canonical_call(call)
        except ValueError:
            return False  # refused where the call is lowered, with this message
        if len(canonical.args) != len(form.args):
            continue
        bound = {
            unwrap(variable).id: value  # type: ignore[union-attr]
            for variable, value in zip(form.args, canonical.args, strict=True)
        }
        assert rule_.no_gradient_when is not None
        if rule_.no_gradient_when(bound):
            return True
    return False


# Forms of rows with a no_gradient_when predicate: calls of these may have no gradient.
_CONDITIONAL = tuple((r, form) for r in RULES if r.no_gradient_when is not None for form in r.forms)


def _form_size(form: Expr) -> int:
    return sum(1 for _ in walk(form))


def _stacked_list(c: AdjointContext) -> Shape | None:
    """``np.stack(hs, axis)``: a filled list's shape is its length, then its items' shape
    (``infer._list_shape``); the stack moves the length to ``axis``."""
    listed, axis = c.shapes.get("xs"), c.literals.get("axis")
    if listed is None or not isinstance(axis, int) or not -len(listed) <= axis < len(listed):
        return None
    length, *item = listed
    axis %= len(listed)
    return (*item[:axis], length, *item[axis:])


# Reading a list a loop filled (``hs = []``, ``hs.append(h)`` in the loop, then
# ``np.stack(hs, axis=1)``): ``xs`` is the list, and its adjoint a list of the items'
# gradients, one per item in order, which the loop's backward takes back one by one.
LIST_RULES: dict[tuple[str, str], Rule] = {
    ("numpy", "stack"): rule(
        "stack_list", "numpy.stack(xs, axis)", nondiff=("axis",), literal=("axis",),
        shape=_stacked_list, axes=True, xs="list(numpy.moveaxis(g, axis, 0))",
    ),
    ("numpy", "concatenate"): rule(
        "concatenate_list", "numpy.concatenate(xs, axis)", nondiff=("axis",),
        literal=("axis",), axes=True, xs="_split_like(g, xs, axis)",
    ),
    ("builtins", "sum"): rule("sum_list", "sum(xs)", xs="[g] * len(xs)"),
}  # fmt: skip


def rules_by_priority() -> tuple[tuple[Rule, Expr], ...]:
    """(rule, form) pairs, larger forms first, so fused gates win over their parts."""
    pairs = [(r, f) for r in RULES for f in r.forms]
    pairs.sort(key=lambda pair: -_form_size(pair[1]))
    return tuple(pairs)


def known_functions() -> frozenset[tuple[str, str]]:
    """Every ``(library, name)`` some form calls, e.g. ``("math", "exp")``."""
    found: set[tuple[str, str]] = set()
    for r in RULES:
        for form in r.forms:
            for node in walk(form):
                if isinstance(node, Call) and node.func.lib is not None:
                    found.add((node.func.lib, node.func.name))
    return frozenset(found | NONDIFFERENTIABLE | {STOP_GRADIENT})


_KNOWN = known_functions()


def is_opaque(func: Func) -> bool:
    """Is ``func`` a library function the table knows nothing of (``scipy.special.gammaln``,
    ``np.linalg.qr``)? Its value is computed as written, and no gradient flows through
    it: gradgen refuses it only where one would have to (``reverse.opaque_refusals``)."""
    if func.lib is None or func.lib in ("builtins", "helper", USER, RULE):
        return False
    return (func.lib, func.name) not in _KNOWN


def form_library(form: Expr) -> str | None:
    """The library a form belongs to (``"math"`` for ``math.exp(x)``), None for operators."""
    for node in walk(form):
        if isinstance(node, Call) and node.func.lib in LIBRARIES:
            return node.func.lib
    return None


def operations_table() -> str:
    """The README's table of supported operations, written from the rules themselves."""
    lines = ["| operation | spellings | adjoint of each input |", "|---|---|---|"]
    for r in RULES:
        spellings = ", ".join(f"`{t}`" for t in r.form_texts)
        adjoints = ", ".join(
            f"`d{i}[{a.index}] += {a.value}`" if isinstance(a, Scatter) else f"`d{i} += {t}`"
            for i, a, t in zip(r.inputs, r.adjoint_sources, r.adjoint_texts, strict=True)
        )
        lines.append(f"| {r.name} | {spellings} | {adjoints} |")
    return "\n".join(lines)
