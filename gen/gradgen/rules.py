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

LIBRARIES = (
    "math",
    "numpy",
    "numpy.linalg",
    "scipy.special",
    "scipy.stats.norm",
    "scipy.stats.multivariate_normal",
    "scipy.stats.t",
    "scipy.stats.gamma",
    "scipy.stats.beta",
    "scipy.stats.poisson",
    "scipy.stats.dirichlet",
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
    )
}
METHODS["flatten"] = "ravel"  # a copy where ravel may give a view: the same gradient


# --- shapes of results ----------------------------------------------------------------------


def _same(c: AdjointContext) -> Shape | None:
    return c.shapes.get("x")


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


# --- scipy.special and scipy.stats ------------------------------------------------------------

# 2 / sqrt(pi), sqrt(pi) / 2 and 1 / sqrt(2 pi), written as numbers: a template names no
# module constant.
_TWO_OVER_ROOT_PI = "1.1283791670955126"
_ROOT_PI_OVER_TWO = "0.886226925452758"
_ONE_OVER_ROOT_TWO_PI = "0.3989422804014327"


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


# multivariate_normal.logpdf(x, mean, cov) = -(d log 2 pi + log det C + r C^-1 r) / 2 with
# r = x - mean, per row of x. scipy reads cov's lower triangle alone (it is symmetric), so
# the adjoints use that symmetric matrix, and cov's gradient is the derivative with respect
# to the entries scipy reads: the symmetric gradient S, doubled below the diagonal, 0 above.
_MVN_COV = "(numpy.tril(cov) + numpy.tril(cov, -1).T)"


def _mvn_solved(c: AdjointContext) -> str:
    """C^-1 r, point by point (x is one point or any array of them): the whitened
    residuals."""
    residual = "x" if c.literals.get("mean", NOT_LITERAL) is None else "(x - mean)"
    if c.rank("x") in (1, 2) and _mvn_rows(c) is not None:
        return f"numpy.linalg.solve({_MVN_COV}, {residual}.T).T"
    return f"numpy.linalg.solve({_MVN_COV}, numpy.expand_dims({residual}, -1))[..., 0]"


def _mvn_rows(c: AdjointContext) -> int | None:
    """How many rows the result has: 0 for one point (a number), n for n > 1 rows, None
    where not known (scipy makes the logpdf of one row a number too). Known where x is one
    point or rows of points of cov's dimension and mean (if any) is one point of it: scipy
    also broadcasts x and mean against each other, which the adjoints then sum back."""
    x, cov = c.shapes.get("x"), c.shapes.get("cov")
    mean = c.shapes.get("mean") if c.literals.get("mean", NOT_LITERAL) is not None else cov
    if x is None or cov is None or mean is None or len(x) not in (1, 2) or len(cov) != 2:
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
    symmetric = f"0.5 * ({outer} - numpy.sum(g) * numpy.linalg.inv({_MVN_COV}))"
    return f"numpy.tril({symmetric}) * (2 - numpy.eye(len(cov)))"


def _dirichlet_shape(c: AdjointContext) -> Shape | None:
    """One point (d,) gives a number; points as the columns of a (d, n) array, n values
    (a number for n = 1: scipy squeezes it)."""
    x = c.shapes.get("x")
    if x is None or len(x) not in (1, 2):
        return None
    return () if len(x) == 1 or x[1] == 1 else (x[1],)


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

    # --- scipy.special and scipy.stats ---------------------------------------------------
    rule("logsumexp", "scipy.special.logsumexp(x, axis, b, keepdims)",
         nondiff=("axis", "keepdims"), literal=_AXES, floating=True, shape=_logsumexp_shape,
         x=Depends("b * numpy.exp(x - out) * g, expanded over axis", _logsumexp_x),
         b=Depends("numpy.exp(x - out) * g, expanded over axis", _logsumexp_b)),
    # norm's loc and scale default to 0 and 1; z = (x - loc) / scale.
    rule("norm_logpdf", "scipy.stats.norm.logpdf(x, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast,
         x=_normal("-(x - loc) / scale**2 * g"),
         loc=_normal("(x - loc) / scale**2 * g"),
         scale=_normal("(((x - loc) / scale) ** 2 - 1) / scale * g")),
    rule("norm_pdf", "scipy.stats.norm.pdf(x, loc, scale)", broadcasts=True, floating=True,
         shape=_broadcast,
         x=_normal("-out * (x - loc) / scale**2 * g"),
         loc=_normal("out * (x - loc) / scale**2 * g"),
         scale=_normal("out * (((x - loc) / scale) ** 2 - 1) / scale * g")),
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
    rule("multivariate_normal_logpdf",
         "scipy.stats.multivariate_normal.logpdf(x, mean, cov)", floating=True,
         shape=_mvn_shape,
         x=Depends("-g * solve(cov, x - mean)", _mvn_x),
         mean=Depends("g * solve(cov, x - mean), summed over rows", _mvn_mean),
         cov=Depends("(outer(a, a) * g - g * inv(cov)) / 2 for a = solve(cov, x - mean), "
                     "on cov's lower triangle (which scipy reads)", _mvn_cov)),
    # Student's t: with z = (x - loc) / scale, log pdf = -(df + 1) / 2 * log1p(z**2 / df)
    # - log(scale) + terms of df alone.
    rule("t_logpdf", "scipy.stats.t.logpdf(x, df, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast,
         x=_normal("-(df + 1) * (x - loc) / (scale**2 * df + (x - loc) ** 2) * g"),
         df=_normal("0.5 * (scipy.special.digamma((df + 1) / 2) - scipy.special.digamma(df / 2)"
                    " - 1 / df - numpy.log1p((x - loc) ** 2 / (scale**2 * df))"
                    " + (df + 1) * (x - loc) ** 2 / (df * (scale**2 * df + (x - loc) ** 2))) * g"),
         loc=_normal("(df + 1) * (x - loc) / (scale**2 * df + (x - loc) ** 2) * g"),
         scale=_normal("((df + 1) * (x - loc) ** 2 / (scale**2 * df + (x - loc) ** 2) - 1)"
                       " / scale * g")),
    # gamma: with y = (x - loc) / scale, log pdf = (a - 1) log y - y - gammaln(a) - log scale.
    rule("gamma_logpdf", "scipy.stats.gamma.logpdf(x, a, loc, scale)", broadcasts=True,
         floating=True, shape=_broadcast,
         x=_normal("((a - 1) / (x - loc) - 1 / scale) * g"),
         a=_normal("(numpy.log((x - loc) / scale) - scipy.special.digamma(a)) * g"),
         loc=_normal("(1 / scale - (a - 1) / (x - loc)) * g"),
         scale=_normal("((x - loc) / scale - a) / scale * g")),
    # beta on (0, 1) (no loc or scale): (a - 1) log x + (b - 1) log(1 - x) - betaln(a, b).
    rule("beta_logpdf", "scipy.stats.beta.logpdf(x, a, b)", broadcasts=True, floating=True,
         shape=_broadcast,
         x="((a - 1) / x - (b - 1) / (1 - x)) * g",
         a="(numpy.log(x) - scipy.special.digamma(a) + scipy.special.digamma(a + b)) * g",
         b="(numpy.log1p(-x) - scipy.special.digamma(b) + scipy.special.digamma(a + b)) * g"),
    # poisson: k log mu - mu - gammaln(k + 1); the counts k have no gradient.
    rule("poisson_logpmf", "scipy.stats.poisson.logpmf(k, mu)", nondiff=("k",),
         broadcasts=True, floating=True, shape=_broadcast, mu="(k / mu - 1) * g"),
    # dirichlet: x a point of the simplex (d,) or points as columns (d, n); x's gradient is
    # one of the simplex (any multiple of ones may be added: sum(x) stays 1).
    rule("dirichlet_logpdf", "scipy.stats.dirichlet.logpdf(x, alpha)", floating=True,
         shape=_dirichlet_shape,
         x="((alpha - 1) / x.T).T * g",
         alpha="numpy.reshape(numpy.log(x), (len(alpha), -1)) @ numpy.ravel(g)"
               " + numpy.sum(g) * (scipy.special.digamma(numpy.sum(alpha))"
               " - scipy.special.digamma(alpha))"),
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
    ("scipy.special", "logsumexp"): ("a", "axis=None", "b=None", "keepdims=False"),
    ("scipy.special", "softmax"): ("x", "axis=None"),
    ("scipy.special", "log_softmax"): ("x", "axis=None"),
    ("scipy.stats.t", "logpdf"): ("x", "df", "loc=0", "scale=1"),
    ("scipy.stats.gamma", "logpdf"): ("x", "a", "loc=0", "scale=1"),
    ("scipy.stats.beta", "logpdf"): ("x", "a", "b"),
    ("scipy.stats.poisson", "logpmf"): ("k", "mu"),
    # cov has a default (1: the identity) that gradgen does not read: refused without one.
    ("scipy.stats.multivariate_normal", "logpdf"): ("x", "mean=None", "cov"),
    **{
        ("scipy.stats.norm", f): ("x", "loc=0", "scale=1")
        for f in ("logpdf", "pdf", "cdf", "logcdf")
    },
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
        if call.kwargs:
            raise ValueError(f"'{call.func.spelling}' takes no keyword arguments here")
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
