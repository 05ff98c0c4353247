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
import math
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
    names_in,
    unwrap,
    walk,
)
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
    adjoint_sources: tuple[Template | Depends, ...]  # aligned with ``inputs``
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

    @property
    def scatters(self) -> bool:
        """Does an adjoint add into the input at an index (so a number ``g`` broadcasts)?"""
        return any(isinstance(a, Scatter) for a in self.adjoint_sources)

    def adjoint(self, index: int, context: AdjointContext) -> Adjoint:
        """The template of input ``index``'s adjoint, parsed: an expression over the form's
        variables, ``g`` and ``out``, or a structured adjoint (a spread, a scatter)."""
        source = self.adjoint_sources[index]
        template = source.choose(context) if isinstance(source, Depends) else source
        if isinstance(template, Spread):
            return SpreadAdjoint(_parse(template.full), _parse(template.value))
        if isinstance(template, Scatter):
            return ScatterAdjoint(_parse(template.index), _parse(template.value))
        return _parse(template)


def _template_text(source: Template | Depends) -> str:
    """How the README's table writes an adjoint."""
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
    **adjoints: Template | Depends,
) -> Rule:
    """A row of the table: ``rule("mul", "x * y", x="y * g", y="x * g")``."""
    parsed_forms = tuple(_parse(form) for form in forms)
    inputs = tuple(adjoints)
    for form, text in zip(parsed_forms, forms, strict=True):
        if sorted(names_in(form)) != sorted(inputs + nondiff):
            raise ValueError(f"rule {name}: form {text!r} must use exactly {inputs + nondiff}")
    if not set(literal) <= set(nondiff):
        raise ValueError(f"rule {name}: literal arguments must be nondiff ones")
    for source in adjoints.values():
        # a typo in a template fails at import, not at use
        if isinstance(source, str):
            _parse(source)
        elif isinstance(source, Spread):
            _parse(source.full), _parse(source.value)
        elif isinstance(source, Scatter):
            _parse(source.index), _parse(source.value)
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
    )


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
    **{("numpy", f): ("a", "axis=None", "keepdims=False") for f in ("prod", "ptp", "nansum")},
    ("numpy", "nanmean"): ("a", "axis=None", "keepdims=False"),
    ("numpy", "average"): ("a", "axis=None", "weights=None", "keepdims=False"),
    ("numpy.linalg", "norm"): ("x", "ord=None", "axis=None", "keepdims=False"),
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
}
# Functions whose last parameters numpy takes by keyword only: how many it takes by position
# (np.average's fourth is ``returned``, not ``keepdims``: refused, never misread).
POSITIONAL: dict[tuple[str, str], int] = {("numpy", "average"): 3}
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
            "moveaxis",
        ),
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
        if call.kwargs:
            raise ValueError(f"'{call.func.spelling}' takes no keyword arguments here")
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
    ``np.linalg.slogdet``)? Its value is computed as written, and no gradient flows through
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
