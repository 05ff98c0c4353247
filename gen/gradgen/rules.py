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
import string
from collections.abc import Callable
from dataclasses import dataclass

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
    literal_value,
    names_in,
    unwrap,
    walk,
)
from gradgen.shapes import SCALAR as SCALAR_SHAPE
from gradgen.shapes import Shape

LIBRARIES = ("math", "numpy", "numpy.linalg", "scipy.special")
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
    adjoint_sources: tuple[Template | Depends | Each, ...]  # aligned with ``inputs``
    nondiff: tuple[str, ...] = ()  # form variables with no gradient (axis, condition, index)
    shape: Callable[[AdjointContext], Shape | None] | None = None
    broadcasts: bool = False  # elementwise on several operands: gradients are unbroadcast
    # The one input that is a list of operands (np.concatenate([a, b])); in its adjoint,
    # ``x`` is the item, ``x0``, ``x1``, ... all items, and literals["position"] its index.
    variadic: bool = False
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
            isinstance(source, Each) and source.templates[result][1] is not None
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
        if isinstance(source, Each):
            chosen = source.templates[result][1]
            if chosen is None:
                return None
            source = chosen
        template = source.choose(context) if isinstance(source, Depends) else source
        if isinstance(template, Spread):
            return SpreadAdjoint(_parse(template.full), _parse(template.value))
        if isinstance(template, Scatter):
            return ScatterAdjoint(_parse(template.index), _parse(template.value))
        return _parse(template)


def _template_text(source: Template | Depends | Each) -> str:
    """How the README's table writes an adjoint."""
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


def rule(
    name: str,
    *forms: str,
    nondiff: tuple[str, ...] = (),
    shape: Callable[[AdjointContext], Shape | None] | None = None,
    broadcasts: bool = False,
    variadic: bool = False,
    selects_by: str | None = None,
    view: bool = False,
    literal: tuple[str, ...] = (),
    no_gradient_when: Callable[[dict[str, Expr]], bool] | None = None,
    floating: bool = False,
    axes: bool = False,
    check: Callable[[dict[str, object]], str | None] | None = None,
    results: tuple[str, ...] = (),
    result_shapes: Callable[[AdjointContext], tuple[Shape | None, ...]] | None = None,
    **adjoints: Template | Depends | Each,
) -> Rule:
    """A row of the table: ``rule("mul", "x * y", x="y * g", y="x * g")``."""
    parsed_forms = tuple(_parse(form) for form in forms)
    inputs = tuple(adjoints)
    for form, text in zip(parsed_forms, forms, strict=True):
        if sorted(names_in(form)) != sorted(inputs + nondiff):
            raise ValueError(f"rule {name}: form {text!r} must use exactly {inputs + nondiff}")
    if not set(literal) <= set(nondiff):
        raise ValueError(f"rule {name}: literal arguments must be nondiff ones")
    sources: list[Template | Depends | None] = []
    for source in adjoints.values():
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
            _parse(template.index), _parse(template.value)
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
        selects_by=selects_by,
        view=view,
        literal=literal,
        no_gradient_when=no_gradient_when,
        floating=floating,
        axes=axes,
        check=check,
        results=results,
        result_shapes=result_shapes,
    )


def several_results(call: Call) -> Rule | None:
    """The row of an operation with several results that ``call`` calls, if it is one."""
    return _SEVERAL.get((call.func.lib or "", call.func.name))


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
    )
}
METHODS["flatten"] = "ravel"  # a copy where ravel may give a view: the same gradient


# --- shapes of results ----------------------------------------------------------------------


def _same(c: AdjointContext) -> Shape | None:
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


def _full_reduction(c: AdjointContext) -> bool:
    return c.literals.get("axis") is None and c.literals.get("keepdims") is not True


# A sum's gradient is g spread over the reduced axes: a broadcast view, no copy. The reverse
# pass knows it is a view: it never writes into it and copies it before returning it. A sum
# of everything has a number for g (the default upstream 1.0 is a Python float): full_like
# in x's floating type keeps float32 float32, and makes an integer x's gradient float.
def _sum_adjoint(c: AdjointContext) -> Spread:
    if _full_reduction(c):
        return Spread("numpy.full_like(x, g, dtype=numpy.result_type(x, g))", "g")
    expanded = _expanded(c, "g")
    return Spread(f"numpy.broadcast_to({expanded}, numpy.shape(x))", _broadcastable(c, expanded))


def _mean_adjoint(c: AdjointContext) -> Spread:
    if _full_reduction(c):
        spread = f"g / {_count(c)}"
        return Spread(f"numpy.full_like(x, {spread}, dtype=numpy.result_type(x, g))", spread)
    spread = f"{_expanded(c, 'g')} / {_count(c)}"
    return Spread(f"numpy.broadcast_to({spread}, numpy.shape(x))", spread)


def _broadcastable(c: AdjointContext, expanded: str) -> str:
    """``expanded`` where numpy broadcasting needs the reduced axis back; ``g`` itself where
    it is a new leading axis (axis 0), which broadcasting adds anyway."""
    if expanded.startswith("numpy.expand_dims(") and c.literals.get("axis") == 0:
        return "g"
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


def _det_adjoint(c: AdjointContext) -> str:
    # d det(A) = det(A) tr(A^-1 dA): the gradient is g det(A) A^-T (A invertible).
    if c.rank("x") == 2:
        return "(g * out) * numpy.linalg.inv(x).T"
    inverse = "numpy.swapaxes(numpy.linalg.inv(x), -1, -2)"
    return f"numpy.expand_dims(g * out, (-1, -2)) * {inverse}"


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
    if c.rank("x") == 2:
        return "g * numpy.linalg.inv(x).T"
    inverse = "numpy.swapaxes(numpy.linalg.inv(x), -1, -2)"
    return f"numpy.expand_dims(g, (-1, -2)) * {inverse}"


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
    rule("add", "x + y", broadcasts=True, shape=_broadcast, x="g", y="g"),
    rule("sub", "x - y", broadcasts=True, shape=_broadcast, x="g", y="-g"),
    rule("mul_self", "x * x", shape=_same, x="(2 * x) * g"),  # one pass, not two
    rule("mul", "x * y", broadcasts=True, shape=_broadcast, x="y * g", y="x * g"),
    rule("div", "x / y", broadcasts=True, floating=True, shape=_broadcast, x="g / y",
         y=Depends("(-x / y**2) * g", _div_right)),
    rule("pow", "x ** y", "math.pow(x, y)", "numpy.power(x, y)",
         broadcasts=True, shape=_broadcast,
         # d(x**y)/dy = x**y log x, whose limit at x == 0 is 0: log(1) there, no -inf.
         x=Depends("(y * x ** (y - 1)) * g", _pow_base),
         y="(out * log(abs(x) + (x == 0))) * g"),
    rule("neg", "-x", shape=_same, x="-g"),
    rule("pos", "+x", shape=_same, x="g"),

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

    # --- piecewise: one documented sub-gradient at the kinks -------------------------------
    # abs: 0 at x == 0 (numpy's sign convention).
    rule("abs", "abs(x)", "math.fabs(x)", "numpy.abs(x)", "numpy.absolute(x)",
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
    rule("clip", "numpy.clip(x, low, high)", broadcasts=True, shape=_broadcast,
         x=Depends("((x >= low) * (x <= high)) * g, without an absent bound", _clip_adjoint),
         low=Depends("((x < low) * (low <= high)) * g", _clip_low_adjoint),
         high=Depends("(numpy.maximum(x, low) > high) * g", _clip_high_adjoint)),

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
    rule("float", "float(x)", shape=_same, x="g"),
    rule("outer", "numpy.outer(x, y)", shape=_outer_shape,
         x=Depends("g @ y (x, y 1-D)", _outer_left), y=Depends("x @ g (x, y 1-D)", _outer_right)),
    rule("concatenate", "numpy.concatenate(x, axis)", nondiff=("axis",), literal=("axis",),
         variadic=True, axes=True,
         x=Depends("the slice of g that was x", _concatenate_adjoint)),
    rule("stack", "numpy.stack(x, axis)", nondiff=("axis",), literal=("axis",), variadic=True,
         axes=True, x=Depends("numpy.take(g, position of x, axis)", _stack_adjoint)),
    # The gradient goes back as a new array (never the upstream object itself) in x's
    # floating type: float32 stays float32, an integer x gets float64, not truncated.
    rule("astype", "numpy.astype(x, dtype)", nondiff=("dtype",), shape=_same,
         no_gradient_when=_to_whole_numbers,
         x="numpy.array(g, dtype=numpy.result_type(x.dtype, 1.0))"),
    # indexing: the gradient is added back at the index (np.add.at for integer arrays, so
    # repeated indices add up).
    rule("index", "x[i]", nondiff=("i",), view=True, x=Scatter("i", "g")),
)
# fmt: on

# Operations with several results, by the function their form calls.
_SEVERAL: dict[tuple[str, str], Rule] = {
    (form.func.lib or "", form.func.name): r
    for r in RULES
    if r.results
    for form in r.forms
    if isinstance(form, Call)
}

# x[i]: its result's shape depends on what the index's names are (a loop's step takes an axis
# away), which infer.py knows.
INDEX = next(r for r in RULES if r.name == "index")

# How numpy functions take their arguments, to read ``np.sum(x, axis=0)``, ``x.sum(0)`` and
# ``np.sum(x, 0, keepdims=False)`` as the same call. "name=default" marks an optional one.
SIGNATURES: dict[tuple[str, str], tuple[str, ...]] = {
    **{
        ("numpy", f): ("a", "axis=None", "keepdims=False")
        for f in ("sum", "mean", "max", "min", "amax", "amin")
    },
    ("numpy", "var"): ("a", "axis=None", "ddof=0", "keepdims=False"),
    ("numpy", "std"): ("a", "axis=None", "ddof=0", "keepdims=False"),
    ("numpy", "transpose"): ("a", "axes=None"),
    ("numpy", "swapaxes"): ("a", "axis1", "axis2"),
    ("numpy", "reshape"): ("a", "shape"),
    ("numpy", "expand_dims"): ("a", "axis"),
    ("numpy", "squeeze"): ("a", "axis=None"),
    ("numpy", "clip"): ("a", "a_min=None", "a_max=None"),
    ("numpy", "astype"): ("a", "dtype"),
    ("numpy", "where"): ("condition", "x", "y"),
    ("numpy", "concatenate"): ("arrays", "axis=0"),
    ("numpy", "stack"): ("arrays", "axis=0"),
    ("numpy", "tensordot"): ("a", "b", "axes=2"),
    ("numpy.linalg", "matrix_power"): ("a", "n"),
}
# Keywords that say how numpy computes a value, not what it is (np.einsum's optimize): the
# rule's form is matched without them, and the forward line keeps them as written.
HOW_KEYWORDS: dict[tuple[str, str], frozenset[str]] = {
    ("numpy", "einsum"): frozenset({"optimize"}),
}
VARIADIC_METHODS = ("reshape", "transpose")  # x.reshape(N, -1) is x.reshape((N, -1))
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
            "full",
            "full_like",
            "eye",
            "shape",
            "ndim",
            "size",
            "argmax",
            "argmin",
            "sign",
            "floor",
            "ceil",
            "isfinite",
            "isnan",
            "logical_and",
            "logical_or",
            "logical_not",
        )
    ]
    + [("builtins", "len"), ("builtins", "int")]
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
        "stop_gradient",
        "zeros_like",
        "ones_like",
        "sign",
        "floor",
        "ceil",
        "isfinite",
        "isnan",
        "logical_not",
    }
)
ELEMENTWISE_MASKS = frozenset(["logical_and", "logical_or"])
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
        ("reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "broadcast_to", "ravel"),
        Aliasing.VIEW_OF_FIRST,
    ),
    **dict.fromkeys(
        (
            "full_like",
            "zeros_like",
            "sum",
            "mean",
            "where",
            "take",
            "array",
            "copy",
            "outer",
            "maximum",
            "log",
            "exp",
            "cos",
            "sin",
            "abs",
            "inv",
            "solve",
            "eye",
            "ones_like",
            "tril",
            "tensordot",
            "cross",
            "kron",
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
    "numpy": ("pi", "e", "inf", "newaxis", "float32", "float64", "int64", "int32"),
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
            filled[name] = Const(default, literal_number(default))
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
