"""The arguments of a check of a forward file: ``--shapes`` and ``--ints`` parsed, shapes
read from the annotations, sizes for the dimension names and random values drawn until
the forward runs on them and gives finite values."""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.gradcheck.results import UsageError
from gradgen.shapes import names_in_dimension, parse_annotation, size_of

if TYPE_CHECKING:
    from gradgen.ir import BackwardFunction


_SIZES = (2, 3, 4, 5)  # sizes of named dimensions: small, and never 1 (1 broadcasts)
_VALUE_ATTEMPTS = 8  # draws of values per set of sizes before trying other sizes
_POSITIVE_AFTER = 4  # draws after which values are drawn positive (logs, square roots)
_MULTIPLES = (1, 2, 3, 4)  # other sizes tried: one dimension k times another
# Shapes tried for a parameter of array code with none given: a vector, then a matrix whose
# last dimension is the vector's, so that the two broadcast against each other.
VECTOR: tuple[int, ...] = (3,)
MATRIX: tuple[int, ...] = (2, 3)


Dims = tuple[int | str, ...]


def parse_shapes(specs: Sequence[str]) -> dict[str, Dims]:
    """``["x=2,3", "N=4", "s="]`` -> ``{"x": (2, 3), "N": (4,), "s": ()}``; entries are
    positive sizes or dimension names. Raises ``UsageError``."""
    shapes: dict[str, Dims] = {}
    for spec in specs:
        name, equals, text = spec.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise UsageError(f"--shapes {spec!r}: give NAME=DIMS, such as x=2,3 or N=4")
        words = text.strip().strip("()").replace(",", " ").split()
        dims: list[int | str] = []
        for word in words:
            if word.isdigit() and int(word) > 0:
                dims.append(int(word))
            elif word.isidentifier():
                dims.append(word)
            else:
                raise UsageError(f"--shapes {spec!r}: {word!r} is not a positive size or a name")
        shapes[name] = tuple(dims)
    return shapes


def parse_ints(specs: Sequence[str]) -> dict[str, int | str | None]:
    """``["y", "z=3", "k=C"]`` -> ``{"y": None, "z": 3, "k": "C"}``. Raises ``UsageError``."""
    ints: dict[str, int | str | None] = {}
    for spec in specs:
        name, equals, text = spec.partition("=")
        name, text = name.strip(), text.strip()
        if not name.isidentifier() or (equals and not text):
            raise UsageError(f"--ints {spec!r}: give NAME or NAME=HIGH")
        if not equals:
            ints[name] = None
        elif text.isdigit() and int(text) > 0:
            ints[name] = int(text)
        elif text.isidentifier():
            ints[name] = text
        else:
            raise UsageError(f"--ints {spec!r}: HIGH must be a positive number or a dimension")
    return ints


@dataclass(frozen=True)
class ParameterSpec:
    """How to draw one parameter."""

    name: str
    dims: Dims | None  # None: a Python float
    integer: bool = False
    high: int | str | None = None  # integers: exclusive bound (None: the smallest size)
    default: float | None = None  # a number default: used for a scalar parameter
    note: str = ""
    # A flag or a string the function branches on: the values tried, one per check (the
    # default first), so that every side of an ``if`` on it is checked (``choices``).
    choices: tuple[bool | str, ...] = ()
    # Defaulting to None, tested ``is None``: tried drawn and as None (``none``: this check).
    optional: bool = False
    none: bool = False


def shape_annotations(source: str, function: str) -> dict[str, tuple[Dims | None, str]]:
    """Parameter -> (shape from its annotation, or None; a warning, or "")."""
    found: dict[str, tuple[Dims | None, str]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.FunctionDef) and node.name == function):
            continue
        for arg in node.args.args:
            annotation = arg.annotation
            dims: Dims | None = None
            note = ""
            if isinstance(annotation, ast.Name) and annotation.id in ("float", "int"):
                dims = ()
            elif isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                dims = parse_annotation(annotation.value)
                if dims is None:
                    note = (
                        f"annotation {annotation.value!r} is not a shape: drawn as for no "
                        "annotation"
                    )
            found[arg.arg] = (dims, note)
    return found


def choices(source: str, function: str) -> dict[str, tuple[bool | str, ...]]:
    """Parameter -> the values to check it at, for a flag or a string the function tests:
    a parameter defaulting to ``True``/``False`` or annotated ``bool`` is tried both ways;
    one defaulting to a string or annotated ``str`` at its default, at every string it is
    compared with (``mode == "relu"``, ``mode in ("a", "b")``), in order of appearance, and
    at one equal to none of them (``'other'``: the ``else`` side).
    """
    found: dict[str, tuple[bool | str, ...]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.FunctionDef) and node.name == function):
            continue
        defaults = dict(
            zip([a.arg for a in node.args.args][::-1], node.args.defaults[::-1], strict=False)
        )
        for arg in node.args.args:
            default = defaults.get(arg.arg)
            value = default.value if isinstance(default, ast.Constant) else None
            kind = arg.annotation.id if isinstance(arg.annotation, ast.Name) else None
            if isinstance(value, bool) or (default is None and kind == "bool"):
                first = value if isinstance(value, bool) else True
                found[arg.arg] = (first, not first)
            elif isinstance(value, str) or (default is None and kind == "str"):
                compared = _compared_strings(node, arg.arg)
                start = (value,) if isinstance(value, str) else ()
                tried = list(dict.fromkeys((*start, *compared)))
                if compared:
                    # One more, equal to none of them: the 'else' side (gradgen refuses
                    # 'raise', so a function it differentiates takes any string).
                    other = "other"
                    while other in tried:
                        other += "_"
                    tried.append(other)
                found[arg.arg] = tuple(tried)
    return {name: values for name, values in found.items() if values}


def _iterated(loop: ast.AST) -> list[tuple[str, ast.expr]]:
    """The names a ``for`` loop goes over the items of, each with the target its items are
    bound to: ``for W, b in layers:``, ``enumerate(layers)``, ``zip(xs, ys)``."""
    if not isinstance(loop, ast.For):
        return []
    if isinstance(loop.iter, ast.Name):
        return [(loop.iter.id, loop.target)]
    call = loop.iter
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and all(isinstance(a, ast.Name) for a in call.args)
        and isinstance(loop.target, (ast.Tuple, ast.List))
    ):
        return []
    names = [a.id for a in call.args if isinstance(a, ast.Name)]
    targets = loop.target.elts
    if call.func.id == "enumerate" and len(names) == 1 and len(targets) == 2:
        return [(names[0], targets[1])]
    if call.func.id == "zip" and len(names) == len(targets):
        return list(zip(names, targets, strict=True))
    return []


def looped_lists(source: str, function: str) -> list[str]:
    """The parameters a loop goes over the items of, unpacking each (``for W, b in
    layers:``): lists of tuples of arrays, which only an annotation can give shapes."""
    found: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            parameters = {a.arg for a in node.args.args}
            for loop in ast.walk(node):
                for name, target in _iterated(loop):
                    if name in parameters and isinstance(target, (ast.Tuple, ast.List)):
                        found.append(name)
    return list(dict.fromkeys(found))


def item_shapes(source: str, function: str) -> dict[str, list[tuple[Dims, ...]]]:
    """Parameter -> the shapes of its items' arrays, for a list a loop goes over the items of
    (``for W, b in layers:``) annotated with them: ``layers: [("D, H", "H"), ("H, C", "C")]``."""
    found: dict[str, list[tuple[Dims, ...]]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.FunctionDef) and node.name == function):
            continue
        iterated = {name for loop in ast.walk(node) for name, _ in _iterated(loop)}
        for arg in node.args.args:
            if arg.arg not in iterated or arg.annotation is None:
                continue
            try:
                literal = ast.literal_eval(arg.annotation)
            except (ValueError, SyntaxError):
                continue
            if not isinstance(literal, (list, tuple)):
                continue
            items: list[tuple[Dims, ...]] = []
            for item in literal:
                parts = item if isinstance(item, (list, tuple)) else (item,)
                dims = [parse_annotation(part) if isinstance(part, str) else None for part in parts]
                if any(d is None for d in dims):
                    break
                items.append(tuple(d for d in dims if d is not None))
            else:
                found[arg.arg] = items
    return found


def optional_parameters(source: str, function: str) -> set[str]:
    """The parameters defaulting to None that the function tests with ``is None`` or ``is
    not None`` (``dropout_mask=None``): checked drawn, and as None, so that both sides of
    the ``if`` on them are."""
    found: set[str] = set()
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.FunctionDef) and node.name == function):
            continue
        names = [a.arg for a in node.args.args]
        defaults = dict(zip(names[::-1], node.args.defaults[::-1], strict=False))
        for test in ast.walk(node):
            if not isinstance(test, ast.Compare) or not isinstance(test.left, ast.Name):
                continue
            name = test.left.id
            default = defaults.get(name)
            against_none = [
                isinstance(op, (ast.Is, ast.IsNot))
                and isinstance(right, ast.Constant)
                and right.value is None
                for op, right in zip(test.ops, test.comparators, strict=True)
            ]
            if isinstance(default, ast.Constant) and default.value is None and any(against_none):
                found.add(name)
    return found


def _compared_strings(function: ast.FunctionDef, name: str) -> list[str]:
    """The string literals ``name`` is compared with in ``function``."""
    strings: list[str] = []
    for node in ast.walk(function):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if not any(isinstance(o, ast.Name) and o.id == name for o in operands):
            continue
        for operand in operands:
            elements = (
                operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            )
            strings += [
                e.value
                for e in elements
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
    return sorted(set(strings), key=strings.index)


def choice_settings(specs: Sequence[ParameterSpec]) -> list[list[ParameterSpec]]:
    """``specs`` at each setting of the flags and strings to try: every one at its first
    value, then each other value of each one in turn (the rest at their first): each side
    of each ``if`` on one of them is checked, without trying every combination."""
    first = [replace(s, choices=s.choices[:1]) for s in specs]
    settings = [first]
    for position, spec in enumerate(specs):
        for value in spec.choices[1:]:
            setting = list(first)
            setting[position] = replace(spec, choices=(value,))
            settings.append(setting)
        if spec.optional:
            setting = list(first)
            setting[position] = replace(spec, none=True)
            settings.append(setting)
    return settings


def parameter_specs(
    backward: BackwardFunction,
    source: str,
    shapes: dict[str, Dims],
    ints: dict[str, int | str | None],
) -> list[ParameterSpec]:
    """How to draw each parameter of ``backward``'s forward function."""
    from gradgen.expr import literal_value

    annotated = shape_annotations(source, backward.staged.name)
    tried = choices(source, backward.staged.name)
    optional = optional_parameters(source, backward.staged.name)
    specs = []
    data = backward.data_parameters()  # labels and indices: drawn as integers
    for parameter in backward.staged.parameters:
        # A leaf of a dict or list of arrays: its shape from the literal annotation of the
        # container, if any (``params: {"W1": "D, H"}``; gradgen.structure).
        dims, note = annotated.get(parameter.name, (parameter.shape, ""))
        if parameter.name in shapes:
            dims, note = shapes[parameter.name], ""
        integer = parameter.name in data or parameter.name in ints
        default = literal_value(parameter.default) if parameter.default is not None else None
        number = float(default) if isinstance(default, (int, float)) else None
        if parameter.name in tried and parameter.name not in ints:
            specs.append(ParameterSpec(parameter.name, (), choices=tried[parameter.name]))
            continue
        spec = ParameterSpec(parameter.name, dims, integer, ints.get(parameter.name), number, note)
        specs.append(replace(spec, optional=parameter.name in optional))
    return specs


def unshaped(specs: Sequence[ParameterSpec]) -> list[str]:
    """The parameters no shape is given for: no shape annotation, no ``--shapes``, no number
    default, not integers. Drawn as numbers, and in array code as arrays too."""
    return [s.name for s in specs if s.dims is None and not s.integer and s.default is None]


def shape_variants(specs: Sequence[ParameterSpec], array_code: bool) -> list[dict[str, Dims]]:
    """The shapes to try for the parameters with none given (``unshaped``), as overrides of
    ``specs``: numbers first (``{}``: as they are drawn); in array code then every one a
    vector, every one a matrix, and, with two or more, each one in turn a number among
    vectors and a vector among matrices: broadcasting bugs show only where shapes differ."""
    free = unshaped(specs)
    if not array_code or not free:
        return [{}]
    variants: list[dict[str, Dims]] = [
        {},
        dict.fromkeys(free, VECTOR),
        dict.fromkeys(free, MATRIX),
    ]
    if len(free) > 1:
        variants += [{**dict.fromkeys(free, VECTOR), name: ()} for name in free]
        variants += [{**dict.fromkeys(free, MATRIX), name: VECTOR} for name in free]
    return variants


def with_shapes(specs: Sequence[ParameterSpec], overrides: dict[str, Dims]) -> list[ParameterSpec]:
    """``specs`` with the shapes of ``overrides`` (``()``: a number)."""
    return [replace(s, dims=overrides[s.name]) if s.name in overrides else s for s in specs]


def dimension_names(specs: Sequence[ParameterSpec]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        for dim in (*(spec.dims or ()), spec.high):
            # "4H" is four times H: one name to size, so that the sizes agree
            for name in names_in_dimension(dim) if dim is not None else ():
                if name not in names:
                    names.append(name)
    return names


def _size_candidates(
    symbols: Sequence[str], fixed: dict[str, int], rng: Any
) -> Iterator[dict[str, int]]:
    """Sizes for the dimension names: distinct small ones first, then, for forwards that
    need a relation between them (an LSTM's ``G == 4 * H``), one name k times another."""
    free = [s for s in symbols if s not in fixed]
    pool = list(_SIZES) + list(range(len(_SIZES) + 2, len(free) + 2))
    drawn = [int(pool[i]) for i in rng.permutation(len(pool))[: len(free)]]
    base = {**fixed, **dict(zip(free, drawn, strict=True))}
    yield base
    for multiple in _MULTIPLES:
        for name in free:
            for other in symbols:
                if other != name:
                    yield {**base, name: multiple * base[other]}


def _draw(
    specs: Sequence[ParameterSpec], sizes: dict[str, int], rng: Any, positive: bool
) -> list[Any]:
    """Random arguments: float64 arrays and Python floats, integers for indices."""

    def size(dim: int | str) -> int:
        return size_of(dim, sizes)

    array_dims = [size(d) for s in specs if not s.integer for d in (s.dims or ())]
    smallest = min(array_dims, default=min(sizes.values(), default=2))
    values: list[Any] = []
    for spec in specs:
        shape = tuple(size(d) for d in spec.dims) if spec.dims else ()
        if spec.none:
            values.append(None)
        elif spec.choices:
            values.append(spec.choices[0])
        elif spec.integer:
            high = size(spec.high) if spec.high is not None else max(smallest, 1)
            drawn = rng.integers(0, high, size=shape)
            values.append(int(drawn) if not shape else drawn)
        elif not shape:
            if spec.default is not None:
                values.append(spec.default)
            elif positive:
                values.append(float(rng.uniform(0.5, 1.5)))
            else:
                values.append(float(rng.standard_normal()))
        elif positive:
            values.append(rng.uniform(0.5, 1.5, size=shape))
        else:
            values.append(rng.standard_normal(shape))
    return values


def _finite(value: Any) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def draw_arguments(
    forward: Callable[..., Any],
    specs: Sequence[ParameterSpec],
    fixed: dict[str, int],
    rng: Any,
) -> tuple[list[Any], dict[str, int]] | str:
    """Arguments on which ``forward`` runs and gives finite values, and the sizes used; or
    why none were found."""
    first_problem = ""
    symbols = dimension_names(specs)
    for tried, sizes in enumerate(_size_candidates(symbols, fixed, rng)):
        for attempt in range(_VALUE_ATTEMPTS if tried == 0 else 2):
            # Positive values last: they keep logs and square roots defined.
            positive = attempt >= _POSITIVE_AFTER if tried == 0 else attempt == 1
            values = _draw(specs, sizes, rng, positive)
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    result = forward(*values)
            except Exception as error:
                first_problem = first_problem or f"{type(error).__name__}: {error}"
                continue
            if _finite(result):
                return values, sizes
            first_problem = first_problem or "the result is not finite (NaN or infinity)"
    return first_problem


def redrawn(
    forward: Callable[..., Any], specs: Sequence[ParameterSpec], sizes: dict[str, int], rng: Any
) -> list[Any] | None:
    """Other arguments of the same sizes on which ``forward`` gives finite values."""
    for attempt in range(_VALUE_ATTEMPTS):
        values = _draw(specs, sizes, rng, positive=attempt >= _POSITIVE_AFTER)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                if _finite(forward(*values)):
                    return values
            except Exception:  # the user's forward, at values it may not take
                continue
    return None


def shape_text(value: Any, integer: bool) -> str:
    if value is None or isinstance(value, (bool, str)):  # a choice tried (``choices``)
        return repr(value)
    if np.ndim(value) == 0:
        return "int" if integer else "scalar"
    text = str(tuple(np.shape(value)))
    return f"int {text}" if integer else text
