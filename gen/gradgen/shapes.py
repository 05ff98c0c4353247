"""Symbolic array shapes, known where the forward code makes them evident.

A shape is a tuple of dimensions, each a number or a name from an annotation (``"N, D"``);
None means unknown. Shapes decide how a gradient is written: with known shapes
``db = dout.sum(axis=0)``; with unknown ones a small helper sums the gradient back to the
operand's shape at run time, which is always correct.
"""

from __future__ import annotations

import math
import re

Dim = int | str
Shape = tuple[Dim, ...]
SCALAR: Shape = ()


# A dimension is a number or a name, or an expression of them kept as an opaque name
# ("4H", "4*H", "T+1"): two dimensions written the same are the same size.
_DIMENSION = re.compile(r"^[A-Za-z0-9_*+\-]+$")


# A dimension as a sum of whole multiples of names and a number: "4H" is {H: 4}, "H+2" is
# {H: 1} and 2, "2*H-1" is {H: 2} and -1. Dimensions written differently but equal ("4*H",
# "4H") are written one way (``canonical``), so that they compare equal.
_TERM = re.compile(r"([+-]?)(\d*)\*?([A-Za-z_][A-Za-z0-9_]*)?")


def _linear(dim: Dim) -> tuple[dict[str, int], int] | None:
    if isinstance(dim, int):
        return {}, dim
    names: dict[str, int] = {}
    number = 0
    for term in re.split(r"(?=[+-])", dim.replace(" ", "")):
        if not term:
            continue
        match = _TERM.fullmatch(term)
        if match is None or not (match.group(2) or match.group(3)):
            return None
        sign = -1 if match.group(1) == "-" else 1
        if match.group(3):
            coefficient = sign * int(match.group(2) or 1)
            names[match.group(3)] = names.get(match.group(3), 0) + coefficient
        else:
            number += sign * int(match.group(2))
    return {k: v for k, v in names.items() if v}, number


def _written(names: dict[str, int], number: int) -> Dim:
    if not names:
        return number
    terms = []
    for name in sorted(names):
        coefficient = names[name]
        text = name if abs(coefficient) == 1 else f"{abs(coefficient)}{name}"
        terms.append(("-" if coefficient < 0 else "+") + text)
    text = "".join(terms).lstrip("+")
    return f"{text}{number:+d}" if number else text


def canonical(dim: Dim) -> Dim:
    """``dim`` written the one way gradgen writes dimensions ("4*H" as "4H")."""
    form = _linear(dim)
    return dim if form is None else _written(*form)


def combine(*terms: tuple[int, Dim]) -> Dim | None:
    """The sum of ``coefficient * dim`` over ``terms`` (a slice's length ``upper - lower``,
    a length joined), where each is a whole multiple of names and a number; None where a
    dimension is not such a sum, or where the result is not a size (negative)."""
    names: dict[str, int] = {}
    number = 0
    for coefficient, dim in terms:
        form = _linear(dim)
        if form is None:
            return None
        for name, value in form[0].items():
            names[name] = names.get(name, 0) + coefficient * value
        number += coefficient * form[1]
    names = {k: v for k, v in names.items() if v}
    if (not names and number < 0) or any(v < 0 for v in names.values()):
        return None
    return _written(names, number)


_PRODUCT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|[0-9]+)(\*([A-Za-z_][A-Za-z0-9_]*|[0-9]+))+$")


def names_in_dimension(dim: Dim) -> list[str]:
    """The names a dimension is made of ("4H" and "H+2": H; "C*H*W" is a name of its own)."""
    if isinstance(dim, int):
        return []
    form = _linear(dim)
    if form is None and _PRODUCT.match(dim):  # "C*H*W": each factor a name or a number
        return [f for f in dim.split("*") if not f.isdigit()]
    return [dim] if form is None else sorted(form[0])


def size_of(dim: Dim, sizes: dict[str, int]) -> int:
    """The size of ``dim`` given the sizes of the names it is made of."""
    if isinstance(dim, int):
        return dim
    form = _linear(dim)
    if form is None and _PRODUCT.match(dim):
        return math.prod(int(f) if f.isdigit() else sizes[f] for f in dim.split("*"))
    if form is None:
        return sizes[dim]
    return sum(coefficient * sizes[name] for name, coefficient in form[0].items()) + form[1]


def parse_annotation(text: str) -> Shape | None:
    """``"N, D"``, ``"N D"``, ``"(N, D)"``, ``"N, 4H"`` or ``"()"`` -> a shape; None if it
    is not one. A lone word that reads as a type (``"ndarray"``, ``"Tensor"``) is not a
    shape: taking it for a 1-D one could make gradients of the wrong shape."""
    words = text.strip().strip("()[]").replace(",", " ").split()
    if len(words) == 1 and _looks_like_a_type(words[0]):
        return None
    dims: list[Dim] = []
    for word in words:
        if word.isdigit():
            dims.append(int(word))
        elif _DIMENSION.match(word):
            dims.append(canonical(word))
        else:
            return None
    return tuple(dims)


def _looks_like_a_type(word: str) -> bool:
    if word.lower() in ("ndarray", "array", "float", "int", "any", "object"):
        return True
    # CapWords (Array, NDArray, Tensor), not a dimension name (N, D, H, NC)
    return word[0].isupper() and any(c.islower() for c in word)


# A dimension a padding or a window moved by a whole number: "H", "H+2", "T-1".
_OFFSET = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)([+-][0-9]+)?$")


def offset(dim: Dim, by: int) -> Dim | None:
    """``dim + by``, written as an annotation would write it (``H`` and 2 give ``H+2``,
    ``H+2`` and -2 give ``H``); None where ``dim`` is not a name or a name moved by a
    whole number (``4H``, ``N*T``): those stay unknown rather than be guessed."""
    if isinstance(dim, int):
        return dim + by
    match = _OFFSET.match(dim)
    if match is None:
        return None
    total = int(match.group(2) or 0) + by
    return match.group(1) if total == 0 else f"{match.group(1)}{total:+d}"


def broadcast(*shapes: Shape | None) -> Shape | None:
    """numpy's broadcast of ``shapes``; None when unknown or not provably compatible."""
    if any(s is None for s in shapes):
        return None
    known = [s for s in shapes if s is not None]
    ndim = max((len(s) for s in known), default=0)
    result: list[Dim] = []
    for position in range(ndim):
        dims = {s[len(s) - ndim + position] for s in known if len(s) - ndim + position >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return None
        result.append(dims.pop() if dims else 1)
    return tuple(result)


def reduce(shape: Shape | None, axis: object, keepdims: object) -> Shape | None:
    """The shape of a reduction over ``axis`` (None: all axes)."""
    if axis is None and keepdims is False:
        return SCALAR
    if shape is None or not isinstance(keepdims, bool):
        return None
    if axis is None:
        return tuple(1 for _ in shape) if keepdims else SCALAR
    axes = axis if isinstance(axis, tuple) else (axis,)
    if not all(isinstance(a, int) for a in axes):
        return None
    normal = {a % len(shape) if shape else a for a in axes}
    if keepdims:
        return tuple(1 if i in normal else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in normal)


def matmul(left: Shape | None, right: Shape | None) -> Shape | None:
    """The shape of ``left @ right``: a 1-D operand loses its dimension in the result, and
    stacks of matrices broadcast their leading dimensions."""
    if left is None or right is None or not left or not right:
        return None
    rows = left[-2:-1]
    columns = right[-1:] if len(right) >= 2 else ()
    stack = broadcast(left[:-2], right[:-2])
    return None if stack is None else (*stack, *rows, *columns)


def transpose(shape: Shape | None, axes: object) -> Shape | None:
    if shape is None:
        return None
    if axes is None:
        return tuple(reversed(shape))
    if isinstance(axes, tuple) and all(isinstance(a, int) for a in axes):
        order = [a % len(shape) if -len(shape) <= a < len(shape) else -1 for a in axes]
        if sorted(order) == list(range(len(shape))):
            return tuple(shape[a] for a in order)
    return None


def unbroadcast_axes(operand: Shape, result: Shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Axes to sum a gradient of shape ``result`` over to get ``operand``'s shape: the leading
    axes numpy added (summed away), then the axes where ``operand`` had size 1 (kept)."""
    extra = len(result) - len(operand)
    leading = tuple(range(extra))
    kept = tuple(i for i, d in enumerate(operand) if d == 1 and result[extra + i] != 1)
    return leading, kept
