"""Random staged programs built from gradgen's rules table, for ``test_properties.py``.

Nothing here names an operation: every expression applies a *form* of a row of
``gradgen.rules.RULES`` (``rule.form_texts``), with its differentiable inputs
(``rule.inputs``) replaced by sub-expressions and its non-differentiable arguments
(``rule.nondiff``: axis, keepdims, indices, shapes, conditions) by literals from
``NONDIFF_GENERATORS``, keyed by the argument's name. A new rule is fuzzed as soon as it is in
the table; a new nondiff name without a generator fails ``test_properties.py``.

How an application of a form is built (``Builder.try_form``):

1. its first input is drawn: a variable (fan-out: any earlier value, most recent first), a
   number, a comparison (a mask) or, while depth remains, another application;
2. its nondiff arguments are drawn by their generators, which look at the first input's
   value (its rank and shape) and at the form's function (``expand_dims`` takes an axis where
   ``reshape`` takes a shape);
3. its other inputs are drawn among the candidates with which the form evaluates: shapes
   that broadcast, matrix products that fit, lists that concatenate;
4. ``DOMAINS`` (keyed by rule name) wraps inputs outside a rule's domain (``1 + v * v`` under a
   log, a root, a denominator); spellings come from ``SIGNATURES`` (keywords with numpy's own
   names, positional where numpy takes them so) and ``METHODS`` (``x.sum(axis=0)``);
5. the application is evaluated at the program's arguments: it must give finite values of
   moderate size (``BOUND``), and ``KINKS`` (keyed by rule name) keeps every kink and tie at
   least ``MARGIN`` away (abs at 0, max/min ties, clip bounds, np.max ties, masks), so central
   differences are accurate. An application that fails is drawn again.

Values with no gradient come from the table too: the functions of ``NONDIFFERENTIABLE``
(``np.sign(x)``, ``np.floor(x)``, ``len(x)``, ``int(x)``, kept away from their jumps by
``FLOW_KINKS``), the attributes of ``NONDIFFERENTIABLE_ATTRIBUTES`` (``x.shape[0]``,
``x.size``) and the library constants of ``CONSTANTS`` (``math.pi``); besides them,
comparisons (masks) and integer labels used only as indices. Module constants (``EPS =
1e-3``) are defined and read.

In array code, two kinds of statement make gradients that share memory on purpose (see
``VIEW_FORMS``): a view of a value combined with another of its shape (``v + u.T``), and a
value fanned out into several broadcasting operations.

Some array parameters are integer arrays (their gradients must still be float arrays), and
a program that reads numpy only through array syntax (``x @ w``, ``x.T``, ``x[i]``) sometimes
leaves ``import numpy`` out (``Program.numpy_import``).

A program has 1 to 4 parameters (float64 arrays of shapes from ``ARRAY_SHAPES``: dimensions
3, 4, 2 and 1, so broadcasting between (N, D), (D,), (N, 1), (1, D) and numbers; Python floats
in scalar mode; magnitudes in [0.2, 2]), up to 5 statements binding new names, rebinding
names (``h = h * 2``, parameters too), renaming (``h = x``) or unpacking a tuple (``a, b = b,
a``, ``a, b = h * 2, x``), and a return of one value or several (``return h, c``); values no
later statement reads are returned or combined into the (first) result.

Programs of several functions (``build_program(..., modules=n)``: one program in n) are modules
where ``f`` calls 1 to 3 other functions, its *helpers* (``Helper``), each built the way ``f``
is (over the whole table, 1 to 3 parameters, the last ones numbers with a default sometimes),
each able to call the helpers built before it (so calls nest 2 and 3 deep, and never recurse),
written before or after their callers. A call (``Builder.call``) is a statement of its own
(``h = g(x, w)``; ``u, v = g(...)`` for a helper returning several, sometimes with only some of
them read again) or nested in an expression (``np.sin(g(x)) * 2``), also one with no gradient
(``g(x) > 0``, ``np.sign(g(x))``, ``g(x).shape[0]``), its arguments drawn like operands: the
same value twice (``g(x, x)``), a value an earlier call read (a weight used by two calls, whose
gradients add), constants, by keyword, or left to their defaults.

A helper is built at random arguments of its own; a call gives it others. Every value it
computes keeps the checks that made it well-conditioned where it was built (``Term.checks``:
domains, bounds, kinks and ties, the jumps of values with no gradient, known bugs'
exclusions), and calling it (which evaluating its caller does) runs its statements at the
call's arguments after those checks: a call where one fails is drawn again. A parameter is
annotated with its shape only where every call gives it that shape.

Programs with a loop (``build_program(..., loops=n)``: one program in n) have one ``for``
statement in ``f`` (``_function_body``'s ``looping``) over 1 to ``MAX_STEPS`` steps, counted
by a range written out (with a start, a step, reversed), by an integer parameter ``n``
(gradient None) or by the length of ``xs``, a parameter with an axis of steps
(``_plan_loop``). Its statements are built at the first step by the same machinery (any
kind of statement, a nested loop sometimes); one rebinds a value bound before the loop from
itself (carried), through a bounded function (``SQUASHING``) or a factor 0.5, so that it
stays bounded however many steps run; some read ``xs[t]`` (``Builder.steps_read``), index
values by the loop's variable (``_index``) or compute with it as a number; some append to a
list made empty before the loop and read whole after it (``np.stack``, ``np.concatenate``,
``sum``). Then every step is run (``Block``), each statement after the checks that made it
well-conditioned at the first step, as a helper's statements are at each call; a carried
value must keep its shape. A name a loop of the function's body binds in its own
statements (not in a nested loop or an ``if``) is sometimes read after it: the last step's
value, as in Python.

Programs with branches (``build_program(..., branches=n)``: one program in n) have ``if``
statements (``_function_body``'s ``branching``): at the top of ``f``, in its loop, nested in
a side, in a helper; with ``elif`` and ``else`` or neither. A test reads a flag parameter
of ``f`` (``if flag:``, ``if not flag:``; ``flag: bool``, with a default or not), a string
parameter (``mode == "a"``, ``mode != "b"``, ``mode in ("a", "b")``, an ``elif`` on another
value; ``mode: str``), the loop's step (``t > 0``, ``t == 0``, ``t < 2``), a value
(``x > 0.5`` for a number, ``np.sum(h) <= -0.5``, ``np.mean``, ``np.max``; at least
``DATA_MARGIN`` from its threshold, so central differences take the same sides), or two of
those joined by ``and``/``or``. Each side is built from the values before the ``if`` (any
kind of statement: calls, unpacking, in-place updates of fresh values; a loop sometimes): a
value from before that a side rebinds keeps its shape, and is left as it was by a side that
does not; a new name bound in every side is read after the ``if``, one bound in some sides
only is not (gradgen refuses that, and is right to). The forward runs an ``if`` as
``Branch`` says (the test, then the side it takes, each statement after its checks); the
program is built at one value of each flag, then run at every other combination of their
values (``_run_at``), where each of its checks must hold too: ``Program.variants`` lists the
combinations, at each of which the property tests check it. Two spellings of the same
``if`` are written too: an ``if``/``else`` of one statement a side binding one name as a
conditional expression (``h = a if test else b``), and a function ending in an ``if`` with an
``else`` (about half of them, by the text's hash) with its ``return`` at the end of each side.

A loop may also fill an array made just before it (``filling``): ``rows = np.zeros((4, 3))``
(``np.ones``, ``np.empty`` where the steps write every entry, or their ``_like`` of a value
of that shape), written once per entry at the loop's step (``rows[t] = h``, ``rows[:, t] =
v``, or ``rows[t, 0] = a`` and ``rows[t, 1] = c``), with items of the entries' shape or one
numpy spreads over them (a number into a row, leading 1s dropped), and read after the loop
as any value. A loop over ``range(K)`` is sometimes a ``while`` loop (``_bounded_while``):
``n = 0`` before it, ``while np.sum(h * h) > 0.35 and n < K:`` (``<``, ``abs(h)``, the
counter first), ``n = n + 1`` ending each step, the counter read as the step's number; the
threshold is drawn so that the test stops the loop after a number of steps drawn (or the
counter does), at least ``_while_margin`` from every value the test decides by, so that
central differences take as many steps (``WhileBlock`` checks this again wherever the loop
runs: a helper's calls). Helpers have a loop too (for or while) one time in three, and ``f``
sometimes calls one with a loop once more, most often with other arguments carrying
gradients (several backwards reading the steps its one ``F_forward`` keeps).

``f``'s loop sometimes goes over the items of a list parameter instead (``_plan_items``):
``for W, bias in layers:`` (parenthesized sometimes; ``for (W,) in layers:`` a tuple of one)
or ``for W in weights:`` (one array an item), numbered sometimes (``for i, (W, bias) in
enumerate(layers):``, ``i`` read as a range loop's variable is), or over two or three lists
of arrays side by side (``for W, bias in zip(Ws, biases):``, numbered too; the lists of
lengths drawn apart sometimes, the shortest setting the steps), 1 to ``MAX_ITEMS`` items of
1 to 3 arrays, of one shape per position in every item (one of ``f``'s parameters', a square
matrix ``h @ W`` keeps, a row, a number; numbers in scalar code), so that a carried value
keeps its shape. Its statements are built at the first item as another loop's
(``item_looping``: an accumulator, an append, an ``if``, a nested loop, a call of a helper
with the item's arrays; those rebound sometimes, most often reaching what the step hands on,
read after the loop sometimes: the last item's), then every item is run after their checks
(``ItemBlock``). The list is read by that loop and ``len(layers)`` only (gradgen refuses any
other read, and is right to); an annotated program annotates it as ``gradgen check`` reads
it (``layers: [("4, 4", "4"), ("4, 4", "4")]``).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import itertools
import math
import operator
import random
import re
import textwrap
import types
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy
import numpy.lib.stride_tricks
import scipy.linalg
import scipy.signal
import scipy.special
import scipy.stats
from hypothesis import strategies as st

from gradgen.rules import (
    BUILTINS,
    CONSTANTS,
    LIBRARIES,
    METHODS,
    NO_GRADIENT_OPERATORS,
    NONDIFFERENTIABLE,
    NONDIFFERENTIABLE_ATTRIBUTES,
    RULES,
    SIGNATURES,
    VARIADIC_METHODS,
    Rule,
)

# Shapes of array parameters, the most common first (hypothesis shrinks towards the first).
ARRAY_SHAPES: tuple[tuple[tuple[int, ...], int], ...] = (
    ((3, 4), 6),  # (N, D)
    ((4,), 3),  # (D,)
    ((3, 1), 2),  # (N, 1)
    ((1, 4), 2),  # (1, D)
    ((), 2),  # a number
    ((4, 2), 2),  # (D, M): matrix products
    ((3,), 1),  # (N,)
    ((2, 3, 4), 1),  # a stack of matrices
)
PARAMETER_NAMES = ("x", "y", "z", "w", "b", "v")
# Local names, with some that clash with names gradgen makes: gradients (dx, dout), bindings
# of a rebound name (h_2), stages of compound expressions (h_exp, out_sum).
LOCAL_NAMES = (
    ("h", 6),
    ("a", 4),
    ("s", 4),
    ("t", 3),
    ("out", 2),
    ("dx", 1),
    ("h_2", 1),
    ("dout", 1),
    ("h_exp", 1),
    ("out_sum", 1),
)
LABEL_NAME = "k"
NUMBERS = (2.0, 0.5, 1.5, 3, 0.25, 2)
MODULE_CONSTANTS = (("EPS", "1e-3"), ("HALF", "0.5"), ("SCALE", "2 * HALF + 0.5"))

BOUND = 100.0  # every value of the program stays within [-BOUND, BOUND]
MARGIN = 0.05  # distance of every value from a kink or tie
MAX_SIZE = 64  # entries of a value
ATTEMPTS = 12  # tries to build one application before giving up


class Unfit(Exception):
    """This choice does not give a well-conditioned, valid program: draw another one."""


class MissingGenerator(Exception):
    """A rule has a non-differentiable argument ``NONDIFF_GENERATORS`` cannot draw."""


OMIT = "<omit>"  # a generator's answer: leave the (optional) argument out


# --- choices: hypothesis draws in the property tests, a seeded Random elsewhere ---------------


class Chooser:
    def index(self, n: int) -> int:
        raise NotImplementedError

    def boolean(self) -> bool:
        return self.index(2) == 1

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.index(len(items))]

    def weighted(self, items: Sequence[tuple[Any, int]]) -> Any:
        """One of ``items``' values, chosen with its weight; the first is the simplest."""
        at = self.index(sum(w for _, w in items))
        for value, weight in items:
            if at < weight:
                return value
            at -= weight
        raise AssertionError("unreachable")


class HypothesisChooser(Chooser):
    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self.draw = draw

    def index(self, n: int) -> int:
        return 0 if n <= 1 else self.draw(st.integers(0, n - 1))


class RandomChooser(Chooser):
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def index(self, n: int) -> int:
        return 0 if n <= 1 else self.random.randrange(n)


# --- the forms of the table --------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """One spelling of one rule, read from ``rule.form_texts``."""

    rule: Rule
    text: str
    tree: ast.expr
    library: str | None  # "math", "numpy", "builtins"; None for operators
    function: str | None  # the function the form calls at its top (``sum``), if any

    @property
    def signature(self) -> tuple[str, ...] | None:
        if self.library is None or self.function is None:
            return None
        return SIGNATURES.get((self.library, self.function))

    def __repr__(self) -> str:
        return f"<{self.rule.name}: {self.text}>"


def _analyse(rule: Rule, text: str) -> Form:
    tree = ast.parse(text, mode="eval").body
    library = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and ast.unparse(func.value) in LIBRARIES:
                library = ast.unparse(func.value)  # "numpy", "scipy.special", ...
            elif isinstance(func, ast.Name) and func.id in BUILTINS:
                library = "builtins"
    function = None
    if isinstance(tree, ast.Call):
        func = tree.func
        function = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return Form(rule, text, tree, library, function)


FORMS: tuple[Form, ...] = tuple(_analyse(r, text) for r in RULES for text in r.form_texts)


def _scalar_probe(form: Form) -> bool:
    """Whether the form computes on Python floats (every name of it 0.7)."""
    if form.library == "numpy":
        return False
    names = {n.id for n in ast.walk(form.tree) if isinstance(n, ast.Name)}
    env = {n: 0.7 for n in names if n not in LIBRARIES and n not in BUILTINS}
    try:
        value = eval(compile(ast.Expression(form.tree), "<probe>", "eval"), {"math": math}, env)
    except Exception:
        return False
    return isinstance(value, (int, float))


SCALAR_FORMS = tuple(f for f in FORMS if _scalar_probe(f))
# In array code every form takes part; math functions and the builtins max/min only apply to
# numbers, so they are drawn less often (a try on an array fails and is drawn again).
ARRAY_FORMS = tuple(FORMS)


def forms_for(mode: str) -> tuple[Form, ...]:
    return SCALAR_FORMS if mode == "scalar" else ARRAY_FORMS


def _weight(form: Form, mode: str) -> int:
    if mode == "array" and form.library in ("math", "builtins") and form.rule.name != "abs":
        return 1
    return 4


def _named_constants(library: str) -> tuple[str, ...]:
    """The library's constants in the table that are moderate numbers (pi, e, tau)."""
    module = math if library == "math" else numpy
    found = []
    for name in CONSTANTS.get(library, ()):
        value = getattr(module, name, None)
        if isinstance(value, float) and math.isfinite(value) and abs(value) <= 10:
            found.append(name)
    return tuple(found)


# Functions and attributes whose values have no gradient (they flow through as constants):
# from the table's NONDIFFERENTIABLE and NONDIFFERENTIABLE_ATTRIBUTES. Those that take one
# value are drawn (np.sign(x), np.floor(x), x.shape[0], len(x)); the others fail to evaluate.
FLOW_FUNCTIONS = tuple(sorted(NONDIFFERENTIABLE))
FLOW_ATTRIBUTES = tuple(a for a in NONDIFFERENTIABLE_ATTRIBUTES if a != "dtype")

METHODS_OF: dict[str, list[str]] = {}
for _method, _function in METHODS.items():
    METHODS_OF.setdefault(_function, []).append(_method)


# The modules (or objects) of the libraries forms name: how a program evaluates them, and
# the parameters of their functions.
LIBRARY_OBJECTS: dict[str, Any] = {
    "math": math,
    "numpy": numpy,
    "numpy.linalg": numpy.linalg,
    "numpy.lib.stride_tricks": numpy.lib.stride_tricks,
    "scipy.special": scipy.special,
    "scipy.linalg": scipy.linalg,
    "scipy.signal": scipy.signal,
    "scipy.stats.norm": scipy.stats.norm,
    "scipy.stats.multivariate_normal": scipy.stats.multivariate_normal,
    "scipy.stats.t": scipy.stats.t,
    "scipy.stats.gamma": scipy.stats.gamma,
    "scipy.stats.beta": scipy.stats.beta,
    "scipy.stats.poisson": scipy.stats.poisson,
    "scipy.stats.dirichlet": scipy.stats.dirichlet,
    "scipy.stats.chi2": scipy.stats.chi2,
}
# What a program imports to read ``scipy.special.expit``, ``scipy.stats.norm.pdf``.
SCIPY_MODULES = ("scipy.special", "scipy.stats", "scipy.linalg", "scipy.signal")


def _numpy_parameters(function: str, library: str = "numpy") -> list[str]:
    try:
        return list(inspect.signature(getattr(LIBRARY_OBJECTS[library], function)).parameters)
    except (AttributeError, KeyError, TypeError, ValueError):
        return []


# --- values ----------------------------------------------------------------------------------


# The value of an expression, where it is well-conditioned (Unfit where it is not).
Check = Callable[["Builder"], Any]


@dataclass
class Term:
    node: ast.expr
    value: Any
    variables: frozenset[str] = frozenset()
    rules: tuple[str, ...] = ()
    # What makes it well-conditioned (its kinks, ties, domains, bounds), checked again where
    # it is computed from other values: a helper function's body at each call's arguments.
    checks: tuple[Check, ...] = ()

    @property
    def text(self) -> str:
        return ast.unparse(self.node)


def ndim(value: Any) -> int:
    return numpy.ndim(value)


def shape(value: Any) -> tuple[int, ...]:
    return numpy.shape(value)


def well_conditioned(value: Any) -> bool:
    array = numpy.asarray(value)
    if array.dtype.kind not in "fbiu" or array.size == 0 or array.size > MAX_SIZE:
        return False
    if array.dtype.kind in "iu" and array.dtype != numpy.int64:
        return False  # np.square of a mask is int8, whose log numpy takes in float16
    if array.dtype.kind == "f":
        if array.dtype != numpy.float64:
            return False  # np.exp of a mask is float16: not the float64 the test checks in
        return bool(numpy.all(numpy.isfinite(array)) and numpy.max(numpy.abs(array)) <= BOUND)
    return True


_RULES_BY_NAME = {rule.name: rule for rule in RULES}
_AUGMENTED = re.compile(r"^(\w+) ([-+*]|\*\*|/|@)= (.*)$")


def _statement_parts(line: str) -> tuple[str, str]:
    """A body line's targets and the value it binds them to: ``h += v`` binds ``h`` to
    ``h + v``."""
    augmented = _AUGMENTED.match(line)
    if augmented:
        name, op, value = augmented.groups()
        return name, f"{name} {op} ({value})"
    targets, _, value = line.partition(" = ")
    return targets, value


def _value_text(text: str) -> str:
    """The expression of a body line (its value) or of a returned expression (itself)."""
    if _AUGMENTED.match(text) or " = " in text:
        return _statement_parts(text)[1]
    return text


_APPEND = re.compile(r"^(\w+)\.append\((.*)\)$")
# ``if t == 2: continue``: the rest of the step skipped at one step (``Block``).
_CONTINUE = re.compile(r"if (\w+) == (\d+):\n    continue")
_WRITE = re.compile(r"^(\w+)\[([^=]*)\] = (.*)$")  # hs[t] = h: into an array a loop fills


def _is_loop(line: str) -> bool:
    """Is this body entry a block: a loop (``for t in range(3):`` and its statements, after
    the lists it fills made empty: ``hs = []``) or a branch (``if flag:`` and its sides)?"""
    return "\n" in line or line.startswith(("for ", "if "))


def _tree(text: str) -> ast.AST:
    """A body entry (a statement, a loop, an append) or a returned expression, parsed: what
    it reads and calls."""
    if _is_loop(text) or _APPEND.match(text) or _WRITE.match(text):
        return ast.parse(text)
    return _parse(_value_text(text))


def _entry_parts(line: str) -> tuple[list[str], set[str]]:
    """The names a body entry binds and those it reads (a loop: everything bound and read in
    it; an append: nothing bound, the list and the item read)."""
    if _is_loop(line) or _APPEND.match(line) or _WRITE.match(line):
        nodes = [n for n in ast.walk(ast.parse(line)) if isinstance(n, ast.Name)]
        bound = [n.id for n in nodes if isinstance(n.ctx, ast.Store)]
        return list(dict.fromkeys(bound)), {n.id for n in nodes if isinstance(n.ctx, ast.Load)}
    targets, value = _statement_parts(line)
    return targets.split(", "), {n.id for n in ast.walk(_parse(value)) if isinstance(n, ast.Name)}


def _broadcasts_into(shape: tuple[int, ...], into: tuple[int, ...]) -> bool:
    """Can a value of ``shape`` be added in place into one of shape ``into``?"""
    try:
        return numpy.broadcast_shapes(shape, into) == into
    except ValueError:
        return False


def is_float(value: Any) -> bool:
    return numpy.asarray(value).dtype.kind == "f"


def literal(text: str | None) -> Any:
    """The Python value of a generated literal (None for an omitted argument)."""
    if text is None or text == OMIT:
        return None
    try:
        return ast.literal_eval(text)
    except ValueError:
        return text


def _parse(text: str) -> ast.expr:
    """An expression, or the slice of a subscript (``1:, ::2``, the text of an index)."""
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        subscript = ast.parse(f"_[{text}]", mode="eval").body
        assert isinstance(subscript, ast.Subscript)
        return subscript.slice


class _Substitute(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, ast.expr], alias: str) -> None:
        self.mapping = mapping
        self.alias = alias

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self.mapping:
            return copy.deepcopy(self.mapping[node.id])
        if node.id == "numpy":
            return ast.Name(self.alias, ast.Load())
        return node


# --- what a generator of a nondiff argument sees -----------------------------------------------


@dataclass
class Context:
    builder: Builder
    form: Form
    first: Term  # the first differentiable input (the first item of a list of them)
    checks: list[Check] = field(default_factory=list)  # of the values a generator drew
    # How many operands a variadic form takes, where a literal argument says so
    # (np.einsum's subscripts); None: 2 or 3 (a list of them).
    operands: int | None = None

    @property
    def choose(self) -> Chooser:
        return self.builder.choose

    @property
    def function(self) -> str | None:
        return self.form.function


# --- one program -------------------------------------------------------------------------------


def _annotation(name: str, dims: tuple[int, ...] | None, annotated: bool) -> str:
    if not annotated or dims is None:
        return name
    if name == STEPS_NAME:
        return f"{name}: int"
    if name in FLAG_TYPES:
        return f"{name}: {FLAG_TYPES[name]}"
    if dims == ():
        return f"{name}: float"
    return f'{name}: "{", ".join(map(str, dims))}"'


@dataclass
class Function:
    """``def name(params): body; return results``: a helper of the module (``f`` is the
    program's own)."""

    name: str
    # (name, shape for an annotation (None: never annotated), default text or None)
    params: list[tuple[str, tuple[int, ...] | None, str | None]]
    body: list[str]
    results: list[str]
    # Annotations written as they are (a list parameter's: ``Items.annotation``), by name.
    annotations: dict[str, str] = field(default_factory=dict)

    def source(self, annotated: bool) -> str:
        params = []
        for name, dims, default in self.params:
            text = _annotation(name, dims, annotated)
            if annotated and name in self.annotations:
                text = self.annotations[name]
            if default is not None:
                text += f" = {default}" if text != name else f"={default}"
            params.append(text)
        returned = f"return {', '.join(self.results)}"
        lines = [*self.body, returned]
        last = self.body[-1] if self.body else ""
        if _ends_in_an_else(last) and zlib.crc32(last.encode()) % 2 == 0:
            # The same function, its return written at the end of each side of its last
            # ``if`` (as activation functions are often written): gradgen folds them back.
            lines = [*self.body[:-1], _returning_in_each_side(last, returned)]
        text = textwrap.indent("\n".join(lines), "    ")  # a loop's statements deeper
        return f"def {self.name}({', '.join(params)}):\n{text}\n"


def _returned_at_the_end(body: list[ast.stmt]) -> tuple[list[ast.stmt], ast.Return]:
    """A function's statements and its ``return``: the last statement, or the ``return``
    at the end of each side of its last ``if`` (``_returning_in_each_side``), taken out."""
    *top, last = body
    if isinstance(last, ast.Return):
        return top, last
    assert isinstance(last, ast.If), ast.dump(last)
    returns = [n for n in ast.walk(last) if isinstance(n, ast.Return)]
    assert returns, ast.dump(last)  # (a side that raises has none)
    returned = returns[0]

    def without_returns(node: ast.If) -> ast.If:
        orelse = node.orelse
        if len(orelse) == 1 and isinstance(orelse[0], ast.If):
            orelse = [without_returns(orelse[0])]
        else:
            orelse = [s for s in orelse if not isinstance(s, ast.Return)]
        body = [s for s in node.body if not isinstance(s, ast.Return)]
        return ast.If(node.test, body, orelse)

    return [*top, without_returns(last)], returned


def _ends_in_an_else(block: str) -> bool:
    """Is ``block`` an ``if`` statement with an ``else`` (a side taken whatever the tests)?"""
    return block.startswith("if ") and "\nelse:\n" in f"\n{block}\n"


def _returning_in_each_side(block: str, returned: str) -> str:
    """``block`` (an ``if``/``elif``/``else``) with ``returned`` at the end of each side."""
    lines: list[str] = []
    for line in block.split("\n"):
        if lines and not line.startswith(" ") and lines[-1] != f"    {RAISED}":
            lines.append(f"    {returned}")  # at the end of the side before this header
        lines.append(line)
    if lines[-1] != f"    {RAISED}":
        lines.append(f"    {returned}")
    return "\n".join(lines)


@dataclass
class Program:
    mode: str
    alias: str  # how the module spells numpy
    params: list[tuple[str, tuple[int, ...]]]
    labels: tuple[str, ...]  # integer parameters used only as indices: gradient None
    body: list[str]
    result: str  # the return expression (the first, when ``f`` returns several)
    args: dict[str, Any]
    upstream: Any  # None: the backward is called with its default
    out_shape: tuple[int, ...]
    rules: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()  # module-level lines: EPS = 1e-3
    verbatim: str | None = None  # a forward source given as it is (a known bug's repro)
    # Array code may leave numpy unimported where it uses only array syntax (x @ w, x.T,
    # x[i], x.sum()): gradgen must still take its values for arrays.
    numpy_import: bool = True
    # Scalar code in a module that also imports numpy: a function whose values are all
    # numbers is scalar code still (gradgen proves it of the values, whatever the imports).
    scalar_with_numpy: bool = False
    # ``f`` returning several values (``return h, c``): each one, its shape, and its upstream
    # (None: zero, passed as None or, where ``omitted``, left out); empty for one value.
    results: tuple[str, ...] = ()
    out_shapes: tuple[tuple[int, ...], ...] = ()
    upstreams: tuple[Any, ...] = ()
    omitted: tuple[bool, ...] = ()
    helpers: tuple[Function, ...] = ()  # the functions ``f`` calls (at any depth)
    main_at: int = 0  # the place of ``f`` among the module's functions
    # Branches: the defaults of f's flag parameters (``flag``, ``mode``; None: none), and the
    # values of the flags to check the program at (every combination; ``args`` has the first).
    defaults: dict[str, str | None] = field(default_factory=dict)
    variants: tuple[dict[str, Any], ...] = ({},)
    raising: tuple[dict[str, Any], ...] = ()  # the variants at which f raises (``RAISED``)
    # The list parameter f's loop goes over the items of (its argument a list of tuples of
    # arrays, or of arrays), if any.
    item_lists: tuple[Items, ...] = ()

    def main(self) -> Function:
        """``f`` as written in the module."""
        return Function(
            "f",
            [(n, s, self.defaults.get(n)) for n, s in self.params],
            self.body,
            list(self.results or (self.result,)),
            {n: a for items in self.item_lists for n, a in items.annotations().items()},
        )

    def at(self, variant: dict[str, Any]) -> Program:
        """The program with its flags at ``variant``'s values."""
        raising = (variant,) if variant in self.raising else ()
        return dataclasses.replace(
            self, args={**self.args, **variant}, variants=(variant,), raising=raising
        )

    @property
    def several(self) -> bool:
        return len(self.results) > 1

    def source(self, annotated: bool) -> str:
        if self.verbatim is not None:
            return self.verbatim
        imports = "import math\n"
        if self.numpy_import and (self.mode == "array" or self.scalar_with_numpy):
            imports += "import numpy\n" if self.alias == "numpy" else "import numpy as np\n"
        main = self.main()
        functions = list(self.helpers)
        functions.insert(self.main_at, main)
        texts = [f.source(annotated) for f in functions]
        for module in SCIPY_MODULES:
            if any(f"{module}." in text for text in texts):
                imports += f"import {module}\n"
        constants = "".join(f"{line}\n" for line in self.constants)
        if constants:
            constants = "\n" + constants
        return f"{imports}{constants}\n\n" + "\n\n".join(texts)

    def split_sources(self, annotated: bool) -> tuple[str, str]:
        """The module as two forward modules: ``helpers.py`` holding the functions ``f``
        calls, and ``forward.py`` holding ``f``, importing them (``from helpers import
        ...``); each with the imports and constants."""
        assert self.helpers and self.verbatim is None
        whole = self.source(annotated)
        preamble = whole[: whole.index("\ndef ")].rstrip("\n")
        names = ", ".join(sorted(h.name for h in self.helpers))
        helpers = preamble + "\n\n\n" + "\n\n".join(h.source(annotated) for h in self.helpers)
        main = self.main()
        forward = f"{preamble}\nfrom helpers import {names}\n\n\n{main.source(annotated)}"
        return helpers, forward

    def __repr__(self) -> str:
        def text(value: Any) -> str:
            if isinstance(value, (list, tuple)):  # a list parameter's items
                inner = ", ".join(map(text, value))
                return f"[{inner}]" if isinstance(value, list) else f"({inner},)"
            return numpy.array2string(numpy.asarray(value), precision=17, separator=", ")

        args = ", ".join(
            f"{n}={v!r}" if isinstance(v, (bool, str)) else f"{n}={text(v)}"
            for n, v in self.args.items()
        )
        if self.several:
            upstream = ", ".join(
                ("left out" if omitted else "None") if u is None else text(u)
                for u, omitted in zip(self.upstreams, self.omitted, strict=True)
            )
        else:
            upstream = "default" if self.upstream is None else text(self.upstream)
        return (
            f"\n{self.source(annotated=True)}\n# arguments: {args}\n# upstream: {upstream}\n"
            f"# rules: {', '.join(self.rules)}\n"
        )


# Compiled expressions, by node: a helper's statements are evaluated again at each call.
_COMPILED: dict[int, tuple[ast.expr, types.CodeType]] = {}


def _compiled(node: ast.expr) -> types.CodeType:
    known = _COMPILED.get(id(node))
    if known is not None and known[0] is node:
        return known[1]
    # Every node at line 1, column 0 (nodes are shared between expressions, never changed
    # otherwise): cheaper than a copy to locate.
    for part in ast.walk(node):
        if "lineno" in part._attributes and not hasattr(part, "lineno"):
            part.lineno = part.end_lineno = 1
            part.col_offset = part.end_col_offset = 0
    code = compile(ast.Expression(node), "<generated>", "eval")
    if len(_COMPILED) > 20000:
        _COMPILED.clear()
    _COMPILED[id(node)] = (node, code)  # the node kept alive: its id is not reused
    return code


class Builder:
    def __init__(
        self, choose: Chooser, mode: str, exclusions: Sequence[Callable[[Any], bool]] = ()
    ) -> None:
        self.choose = choose
        self.mode = mode
        self.alias = "np"
        self.env: dict[str, Any] = {}
        self.names: list[str] = []  # names bound so far, the most recent last
        self.labels: list[str] = []
        self.exclusions = exclusions
        self.excluded: list[str] = []  # texts of applications a known bug excludes
        self.forms = [(f, _weight(f, mode)) for f in forms_for(mode)]
        self.module_constants: list[str] = []
        self.read: set[str] = set()  # names the statements so far read
        self.callees: list[Helper] = []  # the functions of the module this one may call
        self.called: list[str] = []  # names read as arguments of the calls so far
        self.unused: set[str] = set()  # names a call binds that may stay unread
        # Parameters only loops read: a sequence (its name -> the axis its steps index,
        # read as xs[t] or xs[:, t]) and a number of steps; neither is a variable.
        self.sequences: dict[str, int] = {}
        self.hidden: set[str] = set()
        # A list parameter ``f``'s loop goes over the items of (``for W, bias in layers:``):
        # its name -> its value. Not a value of ``env`` (no statement reads it but that loop
        # and ``len(layers)``, gradgen refuses the others); ``evaluate`` sees it.
        self.item_lists: dict[str, list[Any]] = {}
        self.loops: list[Scope] = []  # the loops the statements being built are in
        # Branches: whether the statements may hold ``if``s, whether their tests may read a
        # flag parameter (``f`` only: a flag -> the values it is checked with, the one built
        # at first), and the values before each ``if`` being built (a side rebinding one of
        # them keeps its shape: both sides join into one value).
        self.branching = False
        self.flaggable = False
        self.flags: dict[str, tuple[Any, ...]] = {}
        self.branches: list[dict[str, Any]] = []

    # --- evaluation ---------------------------------------------------------------------

    def evaluate(self, node: ast.expr, strict: bool = True) -> Any:
        """The value of ``node`` at the program's arguments; Unfit if it fails (or, when
        ``strict``, warns or leaves its domain)."""
        namespace = {"np": numpy, "numpy": numpy, "math": math, "scipy": scipy}
        namespace.update((name, values[0]) for name, values in self.flags.items())
        namespace.update(self.item_lists)
        namespace.update(self.env)
        namespace.update((h.function.name, h) for h in self.callees)
        try:
            code = _compiled(node)
            with warnings.catch_warnings():
                warnings.simplefilter("error" if strict else "ignore")
                # numpy 2 deprecates np.row_stack, an alias of np.vstack it still has
                warnings.filterwarnings("ignore", "`row_stack`", DeprecationWarning)
                with numpy.errstate(all="raise" if strict else "ignore"):
                    return eval(code, namespace)
        except Exception as error:
            raise Unfit(f"{ast.unparse(node)}: {error}") from error

    def exclude(self, application: Application) -> None:
        """Unfit if a known bug (or a documented limit) excludes ``application``."""
        for excluded in self.exclusions:
            if excluded(application):
                self.excluded.append(application.text)
                raise Unfit(f"{application.text}: excluded")

    # --- leaves -------------------------------------------------------------------------

    def counted(self) -> list[Scope]:
        """The loops being built whose variable counts their steps (a number, an index): not
        a loop over a list's items, which has none."""
        return [scope for scope in self.loops if scope.variable]

    def variables(self) -> list[str]:
        """Names of float values, the most recent first (so shrinking prefers it)."""
        return [n for n in reversed(self.names) if n not in self.labels]

    def variable(self, fits: Callable[[Term], bool] | None = None) -> Term:
        candidates = [self.name_term(n) for n in self.variables()]
        # Recent values are read more often (chains of statements); any earlier value can be
        # read again (fan-out). In a loop, a sequence's step (xs[t]) as often.
        weighted = [(t, max(1, 4 - i)) for i, t in enumerate(candidates)]
        weighted += [(t, 3) for t in self.steps_read()]
        if fits is not None:
            weighted = [(t, w) for t, w in weighted if fits(t)]
        if not weighted:
            raise Unfit("no variable fits")
        return self.choose.weighted(weighted)

    def steps_read(self) -> list[Term]:
        """In a loop, each sequence read at its step: ``xs[t]``, ``xs[:, t]``,
        ``xs[:, t, :]``."""
        found = []
        for scope in self.counted():
            for name, axis in self.sequences.items():
                dims = shape(self.env[name])
                if len(dims) <= axis or max(scope.values) >= dims[axis]:
                    continue
                pieces = [":"] * axis + [scope.variable]
                if len(dims) > axis + 1 and (len(scope.variable) + len(dims)) % 2:
                    pieces.append(":")  # x[:, t, :] as the RNN's example writes it
                node = _parse(f"{name}[{', '.join(pieces)}]")
                found.append(Term(node, self.evaluate(node), frozenset([name]), ("index",)))
        return found

    def name_term(self, name: str) -> Term:
        return Term(ast.Name(name, ast.Load()), self.env[name], frozenset([name]))

    def constant(self) -> Term:
        kinds = [("number", 6), ("named", 1), ("module", 1)]
        if self.counted():
            kinds.append(("step", 4))  # the loop's variable, a number with no gradient
        if self.item_lists:
            kinds.append(("length", 4))  # len(layers): the one other read gradgen allows
        kind = self.choose.weighted(kinds)
        if kind == "step":
            return self.step_number()
        if kind == "length":
            node = _parse(f"len({self.choose.pick(sorted(self.item_lists))})")
            return Term(node, self.evaluate(node))
        if kind == "named":
            library = self.choose.pick(["math", "numpy"] if self.mode == "array" else ["math"])
            name = self.choose.pick(_named_constants(library))
            prefix = self.alias if library == "numpy" else library
            node = _parse(f"{prefix}.{name}")
            return Term(node, self.evaluate(node))
        if kind == "module" and self.module_constants:
            name = self.choose.pick(self.module_constants)
            return Term(ast.Name(name, ast.Load()), self.env[name])
        value = self.choose.pick(NUMBERS)
        return Term(ast.Constant(value), value)

    def step_number(self) -> Term:
        """In a loop, its variable: a number with no gradient (``h * t``)."""
        variable = self.choose.pick(self.counted()).variable
        return Term(ast.Name(variable, ast.Load()), self.env[variable])

    def source(self, depth: int, fits: Callable[[Term], bool] | None = None) -> Term:
        """What a value with no gradient is computed from: a variable, or now and then (with
        ``depth`` left and a helper to call) a call (``g(x) > 0``, ``g(x).shape[0]``), which
        gradgen makes a stage of its own all the same."""
        single = [h for h in self.callees if h.results == 1]
        if depth > 0 and single and self.choose.index(3) == 0:
            try:
                term = self.call(self.callee(single), depth - 1)
            except Unfit:
                term = None
            if term is not None and term.variables and (fits is None or fits(term)):
                return term
        return self.variable(fits)

    def flowing(self, depth: int = 0) -> Term:
        """A value with no gradient computed from a variable (or a call): np.sign(x),
        x.shape[0], ..."""
        source = self.source(depth)
        if self.choose.boolean():
            lib, name = self.choose.pick(FLOW_FUNCTIONS)
            if lib == "numpy" and self.mode != "array":
                raise Unfit("no numpy in scalar code")
            prefix = {"numpy": f"{self.alias}.", "math": "math."}.get(lib, "")
            node = _parse(f"{prefix}{name}({source.text})")
            check = FLOW_KINKS.get(name)
            what = f"{lib}.{name}"
        elif self.choose.index(4) == 0:
            # an operator with no gradient (x // 0.5), away from its jumps
            op = self.choose.pick(sorted(NO_GRADIENT_OPERATORS))
            divisor = self.choose.pick((0.5, 2.0, 3))
            node = _parse(f"({source.text}) {op} {divisor}")
            check = functools.partial(_off_whole_quotients, divisor=divisor)
            what = op
        else:
            attribute = self.choose.pick(FLOW_ATTRIBUTES)
            what = f".{attribute}"
            node = _parse(f"{source.text}.{attribute}")
            if attribute == "shape":
                dims = numpy.shape(source.value)
                if not dims:
                    raise Unfit("a number has no dimensions")
                node = ast.Subscript(node, ast.Constant(self.choose.index(len(dims))), ast.Load())
            check = None
        flow = _flow_check(node, source.node, what, check)
        rules, checks = (*source.rules, what), (*source.checks, flow)
        return Term(node, flow(self), source.variables, rules, checks)

    def mask(self, like: Term | None = None, depth: int = 0) -> Term:
        """A comparison, at least MARGIN from a tie everywhere; ``like``: of that shape."""
        left = self.source(
            depth, None if like is None else (lambda t: shape(t.value) == shape(like.value))
        )
        if self.choose.boolean() and len(self.variables()) > 1:
            right = self.variable(lambda t: t.variables != left.variables)
        else:
            number = self.choose.pick((0.3, 1.0, 0.0, -0.4))
            right = Term(_parse(str(number)), number)
        op = self.choose.pick((ast.Gt(), ast.Lt(), ast.GtE(), ast.LtE()))
        node = ast.Compare(left.node, [op], [right.node])
        check = _mask_check(node, left.node, right.node)
        variables = left.variables | right.variables
        return Term(node, check(self), variables, left.rules, (*left.checks, check))

    # --- operands and applications ------------------------------------------------------

    def operand(
        self, depth: int, fits: Callable[[Term], bool] | None = None, none_ok: bool = False
    ) -> Term:
        kinds: list[tuple[str, int]] = [
            ("variable", 10),
            ("constant", 2),
            ("mask", 1),
            ("flowing", 1),
        ]
        if depth > 0:
            kinds.insert(1, ("apply", 5))
            if any(h.results == 1 for h in self.callees):
                kinds.append(("call", 4))
        if none_ok:
            kinds.append(("none", 1))
        if self.counted():
            kinds.append(("step", 1))
        kind = self.choose.weighted(kinds)
        term: Term | None = None
        try:
            if kind == "step":
                term = self.step_number()
            elif kind == "constant":
                term = self.constant()
            elif kind == "none":
                term = Term(ast.Constant(None), None)
            elif kind == "mask":
                term = self.mask(depth=depth)
            elif kind == "flowing":
                term = self.flowing(depth)
            elif kind == "apply":
                term = self.apply(depth - 1)
            elif kind == "call":
                single = [h for h in self.callees if h.results == 1]
                term = self.call(self.callee(single), depth - 1)
        except Unfit:
            term = None
        if term is not None and (fits is None or fits(term)):
            return term
        return self.variable(fits)

    def apply(self, depth: int, form: Form | None = None) -> Term:
        """An application of ``form`` (or of a form drawn from the table)."""
        for _ in range(ATTEMPTS):
            chosen = form or self.choose.weighted(self.forms)
            try:
                return self.try_form(chosen, depth)
            except Unfit:
                continue
        raise Unfit(f"no application of {form or 'any form'} could be built")

    def try_form(self, form: Form, depth: int, given: dict[str, Term] | None = None) -> Term:
        """An application of ``form``, with the inputs ``given`` (the others drawn)."""
        given = given or {}
        rule = form.rule
        inputs: dict[str, Term | list[Term]] = {}
        first_name = rule.inputs[0]
        first = given[first_name] if first_name in given else self.operand(depth)
        early = getattr(DOMAINS.get(rule.name), "wraps", {}).get(first_name)
        if early is not None and first_name not in given:
            # In its domain before the others are drawn to fit it (a square matrix).
            first = early(self, first)
        inputs[first_name] = [first] if rule.variadic else first
        context = Context(self, form, first)
        nondiff: dict[str, str] = {}
        for name in rule.nondiff:
            generator = NONDIFF_GENERATORS.get(name)
            if generator is None:
                raise MissingGenerator(
                    f"rule {rule.name!r} has the nondiff argument {name!r}, which "
                    "NONDIFF_GENERATORS in tests/program_strategy.py has no generator for"
                )
            nondiff[name] = generator(context)

        def fits_as(name: str) -> Callable[[Term], bool]:
            def fits(term: Term) -> bool:
                trial = dict(inputs)
                for later in rule.inputs[rule.inputs.index(name) :]:
                    trial[later] = term
                if term.value is None:  # None for this bound; a number for the later ones
                    for later in rule.inputs[rule.inputs.index(name) + 1 :]:
                        trial[later] = Term(ast.Constant(0.5), 0.5)
                if rule.variadic:
                    trial[first_name] = [*inputs[first_name], term]  # type: ignore[misc]
                try:
                    fit = FIT_DOMAINS.get(rule.name)
                    if fit is not None:
                        trial = fit(self, trial)
                    node = self.render(form, trial, nondiff, spelling=0)
                    self.evaluate(node, strict=False)
                except Unfit:
                    return False
                return True

            return fits

        signature = form.signature or ()
        for position, name in enumerate(rule.inputs[1:], start=1):
            none_ok = position < len(signature) and signature[position].endswith("=None")
            if name in given:
                if not fits_as(name)(given[name]):
                    raise Unfit(f"{given[name].text} does not fit {form.text}")
                inputs[name] = given[name]
            else:
                inputs[name] = self.operand(depth, fits_as(name), none_ok=none_ok)
        if rule.variadic:
            more = self.choose.pick((1, 1, 2)) if context.operands is None else context.operands - 1
            for _ in range(more):
                inputs[first_name].append(self.operand(depth, fits_as(first_name)))  # type: ignore[union-attr]

        adapt = DOMAINS.get(rule.name)
        if adapt is not None:
            inputs = adapt(self, inputs)
        node = self.render(form, inputs, nondiff, spelling=self.choose.index(8))
        if rule.results:  # several results (np.linalg.slogdet): one taken by its place
            taken = ast.Constant(self.choose.index(len(rule.results)))
            node = ast.Subscript(node, taken, ast.Load())
        if rule.pieces is not None:  # pieces (np.split): one taken by its place
            sections = ast.literal_eval(nondiff["sections"])
            sections = tuple(sections) if isinstance(sections, list) else sections
            count = rule.result_count({"sections": sections}) or 1
            node = ast.Subscript(node, ast.Constant(self.choose.index(count)), ast.Load())
        value = self.evaluate(node)
        if not well_conditioned(value):
            raise Unfit(f"{ast.unparse(node)}: ill-conditioned value")
        terms = [t for v in inputs.values() for t in (v if isinstance(v, list) else [v])]
        variables = frozenset().union(*(t.variables for t in terms))
        if not variables:
            raise Unfit("only constants")
        application = Application(
            rule.name,
            {n: _values(v) for n, v in inputs.items()},
            nondiff,
            value,
            ast.unparse(node),
        )
        kink = KINKS.get(rule.name)
        if kink is not None and not kink(application):
            raise Unfit(f"{ast.unparse(node)}: near a kink or tie")
        self.exclude(application)
        used = (*(r for t in terms for r in t.rules), rule.name)
        checks = (
            *(c for t in terms for c in t.checks),
            *context.checks,
            _application_check(rule.name, inputs, nondiff, node),
        )
        return Term(node, value, variables, used, checks)

    def render(
        self,
        form: Form,
        inputs: dict[str, Term | list[Term]],
        nondiff: dict[str, str],
        spelling: int,
    ) -> ast.expr:
        """The form with its inputs and nondiff arguments in; ``spelling`` picks positional
        or keyword arguments and function or method spelling, where numpy allows both."""
        mapping: dict[str, ast.expr] = {}
        for name, value in inputs.items():
            if isinstance(value, list):
                elements = [copy.deepcopy(t.node) for t in value]
                mapping[name] = (
                    ast.Tuple(elements, ast.Load())
                    if spelling & 1
                    else ast.List(elements, ast.Load())
                )
            else:
                mapping[name] = value.node
        signature = form.signature
        if signature is not None and isinstance(form.tree, ast.Call):
            return self._render_call(form, signature, mapping, inputs, nondiff, spelling)
        for name, text in nondiff.items():
            if text == OMIT:
                raise Unfit(f"{form.text} cannot leave {name} out")
            mapping[name] = _parse(text)
        node = _Substitute(mapping, self.alias).visit(copy.deepcopy(form.tree))
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[-1], ast.Starred):
            # numpy.einsum(subscripts, *x): the operands written one by one
            listed = node.args[-1].value
            assert isinstance(listed, (ast.List, ast.Tuple))
            node.args[-1:] = listed.elts
        return node

    def _render_call(
        self,
        form: Form,
        signature: tuple[str, ...],
        mapping: dict[str, ast.expr],
        inputs: dict[str, Any],
        nondiff: dict[str, str],
        spelling: int,
    ) -> ast.expr:
        assert isinstance(form.tree, ast.Call) and form.function is not None
        assert form.library is not None
        numpy_names = _numpy_parameters(form.function, form.library)
        positional: list[ast.expr] = []
        keywords: list[ast.keyword] = []
        in_order = True
        for position, arg in enumerate(form.tree.args):
            assert isinstance(arg, ast.Name)
            parameter, _, default = signature[position].partition("=")
            if arg.id in inputs:
                node = copy.deepcopy(mapping[arg.id])
                as_keyword = not in_order
            else:
                text = nondiff[arg.id]
                if text == OMIT:
                    if not default:
                        raise Unfit(f"{form.text} needs {arg.id}")
                    in_order = False
                    continue
                node = _parse(text)
                # Positional only where numpy takes the argument at that place (np.sum's
                # third is dtype, not keepdims); the first always (np.where takes no keyword).
                numpy_agrees = position < len(numpy_names) and numpy_names[position] == parameter
                as_keyword = position > 0 and (not in_order or not numpy_agrees or not spelling & 2)
            if as_keyword:
                in_order = False
                keywords.append(ast.keyword(parameter, node))
            else:
                positional.append(node)
        methods = METHODS_OF.get(form.function) if form.library == "numpy" else None
        first = form.tree.args[0]
        if (
            methods
            and spelling & 1
            and isinstance(first, ast.Name)
            and not isinstance(inputs.get(first.id), list)
            and positional
        ):
            receiver, rest = positional[0], positional[1:]
            method = methods[spelling // 4 % len(methods)]
            splat = method in VARIADIC_METHODS and not keywords and spelling & 2
            if splat and len(rest) == 1 and isinstance(rest[0], ast.Tuple):
                rest = list(rest[0].elts)  # x.reshape(2, -1)
            return ast.Call(ast.Attribute(receiver, method, ast.Load()), rest, keywords)
        if form.library.split(".")[0] == "numpy":  # np.exp, np.linalg.norm
            module: ast.expr = ast.Name(self.alias, ast.Load())
            for part in form.library.split(".")[1:]:
                module = ast.Attribute(module, part, ast.Load())
            func: ast.expr = ast.Attribute(module, form.function, ast.Load())
        else:
            func = copy.deepcopy(form.tree.func)  # scipy.special.logsumexp, as the form is
        return ast.Call(func, positional, keywords)

    # --- calls of the module's other functions --------------------------------------------

    def callee(self, helpers: Sequence[Helper]) -> Helper:
        """One of ``helpers``, the last built most often: it may call the others (depth)."""
        return self.choose.weighted([(h, 1 + 2 * i) for i, h in enumerate(helpers)])

    def call(self, helper: Helper, depth: int) -> Term:
        """A call of ``helper`` (``g(x, h * 2, s=0.5)``): its arguments drawn like operands
        (nested calls too), sometimes the same one twice or one an earlier call read (a
        weight used by two calls), by keyword or left to their defaults; the value of a
        helper returning several is their tuple."""
        for _ in range(ATTEMPTS):
            try:
                return self._try_call(helper, depth)
            except Unfit:
                continue
        raise Unfit(f"no call of {helper.function.name} could be built")

    def _try_call(self, helper: Helper, depth: int) -> Term:
        choose = self.choose
        given: list[tuple[str, Term]] = []
        for name, _, default in helper.function.params:
            if default is not None and choose.boolean():
                continue  # left to its default
            kind = choose.weighted([("operand", 6), ("again", 1), ("earlier", 1)])
            earlier = [n for n in self.called if n in self.env and n not in self.labels]
            if kind == "again" and given:
                term = choose.pick(given)[1]  # g(x, x)
            elif kind == "earlier" and earlier:
                term = self.name_term(choose.pick(earlier))  # g(x, w) + g(h, w)
            else:
                like = helper.shapes[name][0]
                fits = None if choose.index(4) == 0 else (lambda t, s=like: shape(t.value) == s)
                term = self.operand(depth, fits)
            given.append((name, term))
        # Positional up to the first argument left out (or sooner), keywords after, in any order.
        names = [n for n, _, _ in helper.function.params]
        prefix = 0
        while prefix < len(given) and given[prefix][0] == names[prefix]:
            prefix += 1
        if choose.index(3) == 0:
            prefix = choose.index(prefix + 1)
        rest = list(given[prefix:])
        keywords = []
        while rest:
            name, term = rest.pop(choose.index(len(rest)))
            keywords.append(ast.keyword(name, copy.deepcopy(term.node)))
        positional = [copy.deepcopy(t.node) for _, t in given[:prefix]]
        node = ast.Call(ast.Name(helper.function.name, ast.Load()), positional, keywords)
        check = _call_check(node, helper.results)
        value = check(self)
        # Where no argument reads a variable (g(2.0), g()), the call is a constant.
        variables = frozenset().union(*(t.variables for _, t in given))
        self.called.extend(variables)
        rules = (*(r for _, t in given for r in t.rules), *helper.rules)
        checks = (*(c for _, t in given for c in t.checks), check)
        return Term(node, value, variables, rules, checks)

    # --- statements ---------------------------------------------------------------------

    def bind(self, name: str, value: Any) -> None:
        if name in self.names:
            self.names.remove(name)
        self.names.append(name)
        self.env[name] = value


@dataclass
class Application:
    """What a KINKS check or a known-bug exclusion looks at: one application of a form of a
    rule, or of a function with no gradient (``rule`` is then ``"builtins.float"``,
    ``"numpy.sign"``, ``".shape"``: how the table names it)."""

    rule: str
    inputs: dict[str, Any]  # values of the inputs (a list for a list input)
    nondiff: dict[str, str]  # texts of the nondiff arguments (OMIT when left out)
    value: Any
    text: str  # the application as written in the program


def _values(value: Term | list[Term]) -> Any:
    return [t.value for t in value] if isinstance(value, list) else value.value


# --- generators of nondiff arguments, by name ----------------------------------------------


def _axis(c: Context) -> str:
    rank = ndim(c.first.value)
    if c.function in ("stack", "linspace"):
        rank += 1  # a new axis
    if c.function == "gradient":  # one axis; None for a 1-D x only (else a list of arrays,
        # whose backward raises)
        omitted = [OMIT, "None"] if rank == 1 else []
        return c.choose.pick([*omitted, *(str(a) for a in range(-rank, rank))] or [OMIT])
    choices: list[str] = [OMIT, "None"] + [str(a) for a in range(-rank, rank)]
    if c.function in ("split", "array_split"):  # one axis of x, never None
        choices = [OMIT] + [str(a) for a in range(-rank, rank)]
    if rank >= 2 and c.function not in _ONE_AXIS:
        choices += [str(p) for p in itertools.combinations(range(rank), 2)]
        choices += [f"({a}, {b - rank})" for a, b in itertools.combinations(range(rank), 2)]
    return c.choose.pick(choices)


# Functions whose axis is one axis (or None), never a tuple of them.
_ONE_AXIS = (
    "concatenate",
    "stack",
    "repeat",
    "take",
    "take_along_axis",
    "rollaxis",
    "split",
    "array_split",
    "append",
    "linspace",
)


def _sections(c: Context) -> str:
    """np.split's sections: a number of pieces (one dividing every axis of x, as np.split
    needs of the one it splits; any for np.array_split), or the indices to split at (past
    the end too: an empty piece)."""
    dims = shape(c.first.value)
    common = math.gcd(*dims) if dims else 1
    counts = [str(n) for n in (1, 2, 3) if c.function == "array_split" or common % n == 0]
    return c.choose.pick([*counts, "[1]", "[1, 2]", "[0, 2]", "(1, 3)", "[-1]", "[2, 9]"])


def _keepdims(c: Context) -> str:
    return c.choose.pick((OMIT, "True", "False"))


def _ddof(c: Context) -> str:
    return c.choose.pick((OMIT, "0", "1"))


def _axes(c: Context) -> str:
    rank = ndim(c.first.value)
    if c.function == "tensordot":
        # how many of x's last axes meet y's first, or which meet which
        choices = [OMIT, *(str(n) for n in range(min(rank, 2) + 1))]
        choices += [f"([{a}], [0])" for a in range(-rank, rank)]
        if rank >= 2:
            choices += [f"([{rank - 1}, 0], [0, 1])", "((0, -1), (1, 0))"]
        return c.choose.pick(choices)
    if c.function == "rot90":  # the plane of two distinct axes, from either end
        pairs = [(a, b) for a in range(rank) for b in range(rank) if a != b]
        return c.choose.pick(
            [OMIT, *(str(p) for p in pairs), *(f"({a - rank}, {b})" for a, b in pairs)]
        )
    choices = [OMIT, "None"]
    for permutation in itertools.permutations(range(rank)):
        choices.append(str(permutation))
        # the same axes with some counted from the end: (0, -1, 1)
        choices.append(str(tuple(a - rank if i % 2 else a for i, a in enumerate(permutation))))
    return c.choose.pick(choices)


def _swapped_axis(c: Context) -> str:
    rank = ndim(c.first.value)
    return c.choose.pick([str(a) for a in range(-rank, rank)] or ["0"])


def _shape(c: Context) -> str:
    """``shape`` is a shape for reshape and an axis for expand_dims and squeeze."""
    dims = shape(c.first.value)
    rank = len(dims)
    if c.function == "reshape":
        size = int(numpy.prod(dims))
        choices = ["(-1,)", f"({size},)", str(tuple(reversed(dims))), str((*dims, 1))]
        choices += [f"({d}, -1)" for d in range(1, size + 1) if size % d == 0 and d > 1]
        choices += ["-1"]
        # the shape of another value of the same size: the view can be combined with it
        others = {shape(v) for v in c.builder.env.values() if numpy.size(v) == size}
        choices += [str(dims) for dims in sorted(others) if len(dims) >= 1]
        return c.choose.pick(choices)
    if c.function == "expand_dims":
        return c.choose.pick([str(a) for a in range(-rank - 1, rank + 1)])
    if c.function == "squeeze":
        ones = [i for i, d in enumerate(dims) if d == 1]
        return c.choose.pick([OMIT, *[str(i) for i in ones], *[str(i - rank) for i in ones]])
    if c.function == "full":  # a shape the fill value broadcasts to
        choices = [str(dims), str((2, *dims)), str((3, *dims))] if dims else ["3", "(2, 3)"]
        return c.choose.pick(choices)
    if c.function == "broadcast_to":  # a shape x broadcasts to: axes added, 1s spread
        spread = tuple(3 if d == 1 else d for d in dims)
        return c.choose.pick([str(dims), str((2, *dims)), str(spread), str((2, *spread))])
    raise MissingGenerator(f"no generator for the 'shape' argument of {c.form.text!r}")


def _like(c: Context) -> str:
    """A value the fill value broadcasts to (``np.full_like(h, x)``): its shape only."""
    dims = shape(c.first.value)
    names = sorted(
        name
        for name, value in c.builder.env.items()
        if name not in c.builder.hidden
        and isinstance(value, (float, numpy.ndarray))
        and _broadcasts_into(dims, shape(value))
    )
    if not names:
        raise Unfit("no value the fill value broadcasts to")
    return c.choose.pick(names)


def _power(c: Context) -> str:
    """np.linalg.matrix_power's n: a small whole number."""
    return c.choose.pick(("2", "1", "3"))


def _dtype(c: Context) -> str:
    return c.choose.pick(("float", f"{c.builder.alias}.float64", "int"))


def _condition(c: Context) -> str:
    """A mask (np.where's condition): a comparison of values, away from ties; for
    np.select, a list of one to three of them (as many as its choices)."""
    if c.function == "select":
        c.operands = c.choose.pick((1, 2, 3))
        masks = []
        for _ in range(c.operands):
            like = c.first if c.choose.boolean() and c.first.variables else None
            mask = c.builder.mask(like)
            c.checks.extend(mask.checks)
            masks.append(mask.text)
        return f"[{', '.join(masks)}]"
    like = c.first if c.choose.boolean() and c.first.variables else None
    mask = c.builder.mask(like)
    c.checks.extend(mask.checks)
    return mask.text


def _index(c: Context) -> str:
    """An index into the first input: numbers, slices, None, ..., integer lists (repeated
    entries), np.arange with labels, boolean masks."""
    dims = shape(c.first.value)
    if not dims:
        raise Unfit("no index into a number")
    choose = c.choose
    b = c.builder

    def number(d: int) -> str:
        return str(choose.pick(range(-d, d)))

    def piece(d: int) -> str:
        return choose.pick(
            [
                ":",
                number(d),
                "1:",
                ":2",
                "::2",
                "1:-1",
                ":-1",
                f"{choose.pick(range(d))}:",
                "None",
            ]
        )

    kinds = ["slices", "number", "list", "arange", "mask", "ellipsis", "label"]
    if b.counted():
        kinds += ["step"] * 4
    kind = choose.pick(kinds)
    if kind == "step":  # x[t], x[:, t]: the loop's variable, where every step is in range
        scope = choose.pick(b.counted())
        fitting = [axis for axis, d in enumerate(dims[:2]) if max(scope.values) < d]
        if fitting:
            return ", ".join([":"] * choose.pick(fitting) + [scope.variable])
        kind = "number"
    if kind == "number":
        return number(dims[0])
    if kind == "slices":
        pieces = [piece(d) for d in dims[: 1 + choose.index(len(dims))]]
        return ", ".join(pieces) if len(pieces) > 1 else pieces[0]
    if kind == "list":
        entries = [choose.pick(range(dims[0])) for _ in range(1 + choose.index(4))]
        text = str(entries)
        if len(dims) > 1 and choose.boolean():
            return f":, {[choose.pick(range(dims[1])) for _ in range(3)]}"
        return text
    if kind == "arange" and len(dims) >= 2:
        labels = [choose.pick(range(dims[1])) for _ in range(dims[0])]
        return f"{b.alias}.arange({dims[0]}), {labels}"
    if kind == "label" and b.labels:
        label = b.labels[0]
        values = b.env[label]
        if len(dims) >= 2 and len(values) == dims[0] and numpy.max(values) < dims[1]:
            return f"{b.alias}.arange({dims[0]}), {label}"
        if numpy.max(values) < dims[0]:
            return label
        raise Unfit("labels out of range")
    if kind == "mask" and c.first.variables:
        mask = b.mask(c.first)
        c.checks.extend(mask.checks)
        return mask.text
    if kind == "ellipsis" and len(dims) >= 2:
        return f"..., {number(dims[-1])}"
    return ":"


def _differences(c: Context) -> str:
    """np.diff's n: how many differences, fewer than the axis is long (checked when run);
    np.linalg.matrix_power's: a small power."""
    if c.function == "matrix_power":
        return _power(c)
    if c.function == "polygamma":  # the order of the derivative of digamma
        return c.choose.pick(("0", "1", "2"))
    if c.function in ("jn", "jv", "yn"):  # the order of a Bessel function: data
        return c.choose.pick(("0", "1", "2", "3"))
    return c.choose.pick((OMIT, "0", "1", "2"))


def _offset(c: Context) -> str:
    """np.trace's offset: a diagonal above or below the main one."""
    return c.choose.pick((OMIT, "0", "1", "-1"))


def _kth(c: Context) -> str:
    """np.partition's kth: an entry (or entries) along the axis, counted from either end."""
    dims = shape(c.first.value)
    length = min(dims) if dims else 1
    choices = [str(k) for k in range(-length, length)]
    if length >= 2:
        choices.append(str((0, length - 1)))
    return c.choose.pick(choices)


def _ord(c: Context) -> str:
    """np.linalg.norm's ord: vector and matrix norms (one that does not fit x's rank and
    axis is an error numpy raises: the application is drawn again)."""
    inf = f"{c.builder.alias}.inf"
    return c.choose.pick(
        (OMIT, "None", "1", "2", "-1", "-2", "3", inf, f"-{inf}", "'fro'", "'nuc'")
    )


def _whole_number(low: int, high: int, omit: bool = False) -> Callable[[Context], str]:
    """A whole number in [low, high] (or left out, for an argument with a default)."""

    def generate(c: Context) -> str:
        return c.choose.pick([*([OMIT] if omit else []), *map(str, range(low, high + 1))])

    return generate


def _small_axis(c: Context) -> str:
    """One axis of the first input, counted from either end (np.moveaxis, np.rollaxis)."""
    rank = ndim(c.first.value)
    return c.choose.pick([str(a) for a in range(-rank, rank)] or ["0"])


def _start(c: Context) -> str:
    """Where np.rollaxis puts the axis: before any axis, or at the end."""
    rank = ndim(c.first.value)
    return c.choose.pick([OMIT, *[str(a) for a in range(-rank, rank + 1)]])


def _shift(c: Context) -> str:
    """np.roll's shift: a whole number (for every axis rolled), or one per axis of a pair."""
    choices = ["1", "-1", "2", "5"]
    if ndim(c.first.value) >= 2:
        choices.append("(1, -2)")
    return c.choose.pick(choices)


def _reps(c: Context) -> str:
    """np.tile's copies: a whole number, or one per axis (fewer or more than x has)."""
    rank = ndim(c.first.value)
    tuples = [tuple(c.choose.pick((1, 2)) for _ in range(n)) for n in range(1, rank + 2)]
    return c.choose.pick(["2", "(1,)", *map(str, tuples)])


def _repeats(c: Context) -> str:
    """np.repeat's copies: as many of each entry, or a count per entry along the axis."""
    choices = ["2", "1", "3", "[2]"]
    dims = shape(c.first.value)
    if dims:
        choices.append(str([c.choose.pick((0, 1, 2)) for _ in range(dims[0])]))
    return c.choose.pick(choices)


def _pad_width(c: Context) -> str:
    """np.pad's widths: one for all, (before, after) for all, or a pair per axis."""
    rank = ndim(c.first.value)
    pairs = tuple((c.choose.pick((0, 1, 2)), c.choose.pick((0, 1))) for _ in range(rank))
    return c.choose.pick(["1", "(2, 1)", "((0, 1),)", str(pairs)])


def _mode(c: Context) -> str:
    """np.pad's mode ('constant'); scipy.signal's (the part of the full result kept)."""
    if c.form.library == "scipy.signal":
        return c.choose.pick((OMIT, "'full'", "'valid'", "'same'"))
    return c.choose.pick((OMIT, "'constant'"))


def _trans(c: Context) -> str:
    """scipy.linalg.solve_triangular's trans: a solved as it is, or transposed."""
    return c.choose.pick((OMIT, "0", "1", "2", "'N'", "'T'", "'C'"))


def _true_or_false(c: Context) -> str:
    """A True/False keyword (solve_triangular's lower, unit_diagonal), or left out."""
    return c.choose.pick((OMIT, "True", "False"))


def _bands(c: Context) -> str:
    """scipy.linalg.solve_banded's (lower, upper): as many bands as ab has rows, its
    middle row the diagonal (the one ``_banded`` makes large)."""
    dims = shape(c.first.value)
    if len(dims) != 2:
        raise Unfit("solve_banded takes one banded matrix ab")
    upper = dims[0] // 2
    return str((dims[0] - 1 - upper, upper))


def _full_matrices(c: Context) -> str:
    """np.linalg.svd's full_matrices: False where u or vh may be taken (gradgen refuses their
    gradient for True, numpy's default, unless x is known square); any with compute_uv=False."""
    if c.form.rule.name == "svd_values":
        return c.choose.pick((OMIT, "True", "False"))
    return "False"


def _compute_uv(c: Context) -> str:
    """np.linalg.svd's compute_uv: which of its rows the call is (u, s, vh or s alone)."""
    if c.form.rule.name == "svd_values":
        return "False"
    return c.choose.pick((OMIT, "True"))


def _hermitian(c: Context) -> str:
    return c.choose.pick((OMIT, "False"))


def _window_shape(c: Context) -> str:
    """sliding_window_view's window: one length (for one axis), or one per axis; never longer
    than the axes it slides along."""
    dims = shape(c.first.value)
    if not dims:
        raise Unfit("no window over a number")
    smallest = min(dims)
    choices = [str(c.choose.pick(range(1, smallest + 1)))]
    choices.append(str(tuple(c.choose.pick(range(1, d + 1)) for d in dims)))
    return c.choose.pick(choices)


def _indices(c: Context) -> str:
    """Indices valid along any axis of the first input (entries below its smallest dimension,
    repeated ones too): a list for np.take; for np.take_along_axis, of the input's rank."""
    dims = shape(c.first.value)
    smallest = min(dims) if dims else 1
    choose = c.choose

    def entry() -> int:
        return choose.pick(range(smallest))

    if c.function == "take_along_axis":
        if not dims:
            raise Unfit("np.take_along_axis of a number")
        ones = numpy.full((1,) * len(dims), entry())
        full = numpy.array([entry() for _ in range(int(numpy.prod(dims)))]).reshape(dims)
        # an array: np.take_along_axis reads its indices' ndim
        return f"{c.builder.alias}.array({choose.pick((ones, full)).tolist()})"
    return choose.pick([str(entry()), str([entry() for _ in range(1 + choose.index(4))])])


def _subscripts(c: Context) -> str:
    """np.einsum's subscripts for the first operand's rank, and how many operands they
    take (``Context.operands``): transposes, sums, traces and diagonals of one operand,
    products with a second that fits (a matrix product, a vector contracted), implicit
    results, '...'."""
    dims = shape(c.first.value)
    rank = len(dims)
    if rank == 0 or rank > 3:
        raise Unfit("np.einsum here takes operands with axes")
    letters = "ijk"[:rank]
    last, rest = letters[-1], letters[:-1]
    options: list[tuple[str, int]] = [
        (f"{letters}->{letters[::-1]}", 1),
        (f"{letters}->{rest}", 1),
        (f"{letters}", 1),  # implicit: the labels in alphabetical order
        (f"{letters}->", 1),
        (f"...{last}->...", 1),
        (f"{letters},{last}->{rest}", 2),
        (f"{letters},{letters}->{letters}", 2),
        (f"{letters},{letters}", 2),  # implicit
        (f"{letters},{last}m->{rest}m", 2),  # a matrix product over the last axis
        (f"...{last},...{last}->...", 2),
        (f"{letters},{last}m,m->{rest}", 3),
    ]
    if rank >= 2 and dims[-1] == dims[-2]:  # a diagonal and a trace
        options += [(f"{rest[:-1]}mm->{rest[:-1]}m", 1), ("...mm", 1), (f"{rest[:-1]}mm", 1)]
    text, count = c.choose.pick(options)
    c.operands = count
    return repr(text)


def _k(c: Context) -> str:
    """``k``: poisson's counts; the diagonal of np.triu, np.tril, np.diag."""
    if c.form.library == "scipy.stats.poisson":
        return _counts(c)
    return _whole_number(-2, 2, omit=True)(c)


def _counts(c: Context) -> str:
    """Counts (poisson's k): whole numbers. (Not a list written out: gradgen takes a list
    literal operand for a number, and undoes no broadcasting against it.)"""
    return str(c.choose.pick(["0", "1", "3", "2.0"]))


def _num(c: Context) -> str:
    """np.linspace's count of values."""
    return c.choose.pick([OMIT, "1", "2", "3", "5"])


def _endpoint(c: Context) -> str:
    return c.choose.pick((OMIT, "True", "False"))


def _default(c: Context) -> str:
    """np.select's default: data (a number), or left out (0)."""
    return c.choose.pick((OMIT, "0.5", "-1.0"))


def _dimension_or_default(c: Context) -> str:
    """The pattern variable d: multigammaln's dimension, np.select's default."""
    return _dimension(c) if c.function == "multigammaln" else _default(c)


def _edge_order(c: Context) -> str:
    """np.gradient's edges: one-sided differences of order 1 (order 2 is refused)."""
    return c.choose.pick((OMIT, "1"))


def _shape_number(c: Context) -> str:
    """A shape with no gradient rule (gammainc's a, betainc's a and b; the cdfs' df, a and
    b): a positive number, data (gradgen has no gradient with respect to it)."""
    return str(c.choose.pick(["0.5", "1.0", "2.5", "4"]))


def _bessel_order(c: Context) -> str:
    """iv's and ive's order v: a number, data (x > 0 makes fractional ones real)."""
    return str(c.choose.pick(["0", "1", "2", "0.5", "1.5"]))


def _dimension(c: Context) -> str:
    """multigammaln's d: a small whole number (its x is kept above (d - 1) / 2)."""
    return str(c.choose.pick(["1", "2", "3"]))


def _no_mean(c: Context) -> str:
    """multivariate_normal.entropy's mean, which its value does not depend on: None."""
    return "None"


NONDIFF_GENERATORS: dict[str, Callable[[Context], str]] = {
    "subscripts": _subscripts,
    "sections": _sections,
    "axis": _axis,
    "keepdims": _keepdims,
    "ddof": _ddof,
    "axes": _axes,
    "axis1": _swapped_axis,
    "axis2": _swapped_axis,
    "shape": _shape,
    "like": _like,
    "dtype": _dtype,
    "c": _condition,
    "i": _index,
    "n": _differences,
    "offset": _offset,
    "kth": _kth,
    "ord": _ord,
    "shift": _shift,
    "reps": _reps,
    "repeats": _repeats,
    "source": _small_axis,
    "destination": _small_axis,
    "start": _start,
    "k": _k,
    "a": _shape_number,
    "b": _shape_number,
    "v": _bessel_order,
    "df": _shape_number,
    "mean": _no_mean,
    "indices": _indices,
    "pad_width": _pad_width,
    "mode": _mode,
    "window_shape": _window_shape,
    "num": _num,
    "endpoint": _endpoint,
    "edge_order": _edge_order,
    "d": _dimension_or_default,
    "trans": _trans,
    "l_and_u": _bands,
    "lower": _true_or_false,
    "unit_diagonal": _true_or_false,
    "full_matrices": _full_matrices,
    "compute_uv": _compute_uv,
    "hermitian": _hermitian,
}


# --- domains: inputs wrapped into a rule's domain, by rule name ----------------------------


def _wrap(b: Builder, term: Term, template: str) -> Term:
    """``term`` put into ``template`` (``1 + v * v``) and evaluated."""
    node = _Substitute({"v": term.node}, b.alias).visit(_parse(template))
    return Term(node, b.evaluate(node), term.variables, term.rules, term.checks)


def _minimum(term: Term) -> float:
    return float(numpy.min(term.value))


def _positive(b: Builder, term: Term) -> Term:
    if term.value is not None and _minimum(term) >= 0.1:
        return term
    return _wrap(b, term, "1 + v * v")


def _away_from_singularity(b: Builder, term: Term) -> Term:
    """x >= 0.5: the Bessel functions of the second kind and their derivatives (yn(3, x)
    grows as x**-3) stay of moderate size for finite differences."""
    if term.value is not None and _minimum(term) >= 0.5:
        return term
    return _wrap(b, term, "0.5 + v * v")


def _away_from_zero(b: Builder, term: Term) -> Term:
    if term.value is not None and float(numpy.min(numpy.abs(term.value))) >= 0.2:
        return term
    return _wrap(b, term, "1 + v * v")


def _small(b: Builder, term: Term, limit: float) -> Term:
    if float(numpy.max(numpy.abs(term.value))) <= limit:
        return term
    return _wrap(b, term, "v / (1 + v * v)")  # within [-0.5, 0.5]


def _domain(**wraps: Callable[[Builder, Term], Term]) -> Callable[[Builder, dict], dict]:
    def adapt(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
        return {n: wraps[n](b, t) if n in wraps else t for n, t in inputs.items()}

    adapt.wraps = wraps  # type: ignore[attr-defined]  # the first input's: applied early
    return adapt


def _square_template(dims: tuple[int, ...]) -> str:
    """A symmetric positive definite matrix (a stack of them) made of ``v``: v v^T + 3 I,
    its eigenvalues 3 and more."""
    if len(dims) == 0:
        return "(1 + v * v) * numpy.eye(2)"
    if len(dims) == 1:
        return f"numpy.outer(v, v) + 3 * numpy.eye({dims[0]})"
    if len(dims) == 2:
        return f"v @ v.T + 3 * numpy.eye({dims[0]})"
    return f"v @ numpy.swapaxes(v, -1, -2) + 3 * numpy.eye({dims[-2]})"


def _well_conditioned(value: Any, square: bool) -> bool:
    """Is ``value`` a matrix (a stack of them), square where asked, whose singular values
    lie in [0.5, 20]: well away from a lower rank, central differences accurate?"""
    if value is None or numpy.ndim(value) < 2:
        return False
    if square and shape(value)[-1] != shape(value)[-2]:
        return False
    singular = numpy.linalg.svd(numpy.asarray(value, dtype=float), compute_uv=False)
    return bool(numpy.min(singular) >= 0.5 and numpy.max(singular) <= 20)


def _invertible(b: Builder, term: Term) -> Term:
    """A square matrix (a stack of them) well away from singular, or one made of it."""
    if _well_conditioned(term.value, square=True):
        return term
    return _wrap(b, term, _square_template(shape(term.value)))


def _square(b: Builder, term: Term) -> Term:
    """A square matrix (a stack of them), or a small one made of it (v v^T / 8)."""
    value = term.value
    if value is not None and numpy.ndim(value) >= 2 and shape(value)[-1] == shape(value)[-2]:
        return term
    dims = shape(value)
    if len(dims) == 0:
        return _wrap(b, term, "v * numpy.eye(2)")
    if len(dims) == 1:
        return _wrap(b, term, "numpy.outer(v, v) / 8")
    if len(dims) == 2:
        return _wrap(b, term, "v @ v.T / 8")
    return _wrap(b, term, "v @ numpy.swapaxes(v, -1, -2) / 8")


def _three_vectors(b: Builder, term: Term) -> Term:
    """Vectors of 3 entries along the last axis (np.cross): the first 3 of longer ones."""
    dims = shape(term.value)
    if dims and dims[-1] == 3:
        return term
    if not dims or dims[-1] < 3:
        raise Unfit("np.cross takes vectors of 3 entries")
    return _wrap(b, term, "v[..., :3]")


def _full_rank(b: Builder, term: Term) -> Term:
    """A matrix (a stack of them) of full rank, well away from a lower one, or a square
    one made of it."""
    if _well_conditioned(term.value, square=False):
        return term
    return _wrap(b, term, _square_template(shape(term.value)))


def _positive_definite(b: Builder, term: Term) -> Term:
    """A symmetric positive definite matrix well away from singular, or one made of it."""
    value = term.value
    if value is not None and numpy.ndim(value) >= 2 and shape(value)[-1] == shape(value)[-2]:
        array = numpy.asarray(value, dtype=float)
        if numpy.allclose(array, numpy.swapaxes(array, -1, -2), rtol=0, atol=1e-12):
            eigenvalues = numpy.linalg.eigvalsh(array)
            if numpy.min(eigenvalues) >= 0.5 and numpy.max(eigenvalues) <= 50:
                return term
    return _wrap(b, term, _square_template(shape(value)))


def _triangular(b: Builder, term: Term) -> Term:
    """A matrix both of whose triangles (with its diagonal, or ones in its place) are well
    away from singular, or one made of it: 3 I + v / (1 + v v) of a square v."""
    value = term.value
    dims = shape(value)
    if len(dims) != 2:
        raise Unfit("solve_triangular takes one matrix a")
    if dims[0] == dims[1]:
        array = numpy.asarray(value, dtype=float)
        eye = numpy.eye(dims[0])
        triangles = [numpy.tril(array), numpy.triu(array)]
        triangles += [numpy.tril(array, -1) + eye, numpy.triu(array, 1) + eye]
        if all(_well_conditioned(t, square=True) for t in triangles):
            return term
        return _wrap(b, term, f"3 * numpy.eye({dims[0]}) + v / (1 + v * v)")
    return _wrap(b, term, f"3 * numpy.eye({dims[0]}) + v @ v.T / (4 + v @ v.T)")


def _banded(b: Builder, term: Term) -> Term:
    """A banded matrix in scipy's storage (at most 4 rows of bands) whose middle row, the
    diagonal, is large and the others small (away from singular), or one made of it."""
    dims = shape(term.value)
    if len(dims) != 2 or not 1 <= dims[0] <= 4:
        raise Unfit("solve_banded's ab here is 2-D, with 1 to 4 rows of bands")
    middle = dims[0] // 2
    array = numpy.asarray(term.value, dtype=float)
    others = numpy.delete(array, middle, axis=0)
    if numpy.min(numpy.abs(array[middle])) >= 2.5 and numpy.all(numpy.abs(others) <= 0.5):
        return term
    return _wrap(b, term, f"v / (4 * (1 + v * v)) + 3 * numpy.eye({dims[0]}, 1, -{middle})")


def _matrices(b: Builder, term: Term) -> Term:
    """solve_sylvester's q: a matrix or a stack of them (scipy reads a number as a
    multiple of I, not spread as numpy broadcasts)."""
    if numpy.ndim(term.value) < 2:
        raise Unfit("q here is a matrix")
    return term


def _sylvester_domain(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
    """a and b positive definite; q a matrix (a stack) with a's rows and b's columns: one
    with a's rows made square (v v^T) where a and b have the same size."""
    a, b_ = _positive_definite(b, inputs["a"]), _positive_definite(b, inputs["b"])
    q = _matrices(b, inputs["q"])
    rows, columns = shape(a.value)[-1], shape(b_.value)[-1]
    if shape(q.value)[-2:] != (rows, columns):
        if shape(q.value)[-2] != rows or rows != columns:
            raise Unfit("q here has a's rows and b's columns")
        q = _wrap(b, q, "v @ numpy.swapaxes(v, -1, -2)")
    return {"a": a, "b": b_, "q": q}


def _right_side(b: Builder, term: Term) -> Term:
    """solve_triangular's and solve_banded's b: a vector or a matrix (scipy takes more
    axes as a stack)."""
    if numpy.ndim(term.value) not in (1, 2):
        raise Unfit("b here is 1-D or 2-D")
    return term


def _pow_domain(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
    x, y = inputs["x"], inputs["y"]
    y = _small(b, y, 3.0)
    whole = isinstance(y.node, ast.Constant) and float(y.node.value).is_integer()
    return {"x": x if whole else _positive(b, x), "y": y}


def _log_base_domain(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
    base = inputs["b"]
    if not (_minimum(base) >= 0.1 and float(numpy.min(numpy.abs(base.value - 1))) >= 0.2):
        base = _wrap(b, base, "2 + v * v")
    return {"x": _positive(b, inputs["x"]), "b": base}


def _tan_domain(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
    x = inputs["x"]
    if float(numpy.min(numpy.abs(numpy.cos(x.value)))) < 0.2:
        x = _wrap(b, x, "v / (1 + v * v)")
    return {"x": x}


def _above_one(b: Builder, term: Term) -> Term:
    if term.value is not None and _minimum(term) >= 1.1:
        return term
    return _wrap(b, term, "1.5 + v * v")


def _inside_one(b: Builder, term: Term) -> Term:
    """Inside (-1, 1), away from its ends (arcsin, arctanh)."""
    return _small(b, term, 0.8)


def _log1p_domain(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
    x = inputs["x"]
    return {"x": x if _minimum(x) >= -0.9 else _wrap(b, x, "v * v")}


def _probability(b: Builder, term: Term) -> Term:
    """Inside (0, 1), away from its ends: in [0.25, 0.75] once wrapped."""
    value = numpy.asarray(term.value, dtype=float)
    if float(numpy.min(value)) >= 0.1 and float(numpy.max(value)) <= 0.9:
        return term
    return _wrap(b, term, "0.5 + 0.5 * v / (1 + v * v)")


def _above_minus_one(b: Builder, term: Term) -> Term:
    return term if _minimum(term) >= -0.9 else _wrap(b, term, "v * v")


def _positive_or_none(b: Builder, term: Term) -> Term:
    """A positive value, or None where the argument may be left None (logsumexp's b)."""
    return term if term.value is None else _positive(b, term)


def _covariance(b: Builder, term: Term) -> Term:
    """A positive definite matrix made of ``term``: v @ v.T + I (np.outer(v, v) + I)."""
    rank = numpy.ndim(term.value)
    if rank == 2:
        return _wrap(b, term, "v @ v.T + numpy.eye(len(v))")
    if rank == 1:
        return _wrap(b, term, "numpy.outer(v, v) + numpy.eye(len(v))")
    raise Unfit(f"{term.text}: no covariance")


def _simplex(b: Builder, term: Term) -> Term:
    """Points of the simplex made of ``term``: its softmax over the first axis."""
    if numpy.ndim(term.value) not in (1, 2):
        raise Unfit(f"{term.text}: no points of a simplex")
    return _wrap(b, term, "scipy.special.softmax(v, axis=0)")


def _dirichlet_domain(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
    """Points of the simplex and positive alphas; x one row short of alpha (scipy appends the
    row 1 - sum(x)) sums to 0.8, so that the appended row is 0.2, not 0."""
    alpha, x = _positive(b, inputs["alpha"]), inputs["x"]
    if numpy.ndim(x.value) not in (1, 2):
        raise Unfit(f"{x.text}: no points of a simplex")
    short = numpy.ndim(alpha.value) == 1 and len(x.value) == len(alpha.value) - 1
    x = _wrap(b, x, "0.8 * scipy.special.softmax(v, axis=0)") if short else _simplex(b, x)
    return {"x": x, "alpha": alpha}


# Domains an input is put into before the form is tried with it: where almost no value
# drawn as it is fits (a covariance), the inputs are drawn among those that fit once wrapped.
FIT_DOMAINS: dict[str, Callable[[Builder, dict[str, Any]], dict[str, Any]]] = {
    "multivariate_normal_logpdf": _domain(cov=_covariance),
    "dirichlet_logpdf": _dirichlet_domain,
    "multivariate_normal_pdf": _domain(cov=_covariance),
    "multivariate_normal_entropy": _domain(cov=_covariance),
    "dirichlet_pdf": _dirichlet_domain,
    # b must be square too: drawn to fit it as it will be made, not left to chance
    "solve_sylvester": _sylvester_domain,
}


DOMAINS: dict[str, Callable[[Builder, dict[str, Any]], dict[str, Any]]] = {
    "log": _domain(x=_positive),
    "log2": _domain(x=_positive),
    "log10": _domain(x=_positive),
    "sqrt": _domain(x=_positive),
    "log_base": _log_base_domain,
    "log1p": _log1p_domain,
    "div": _domain(y=_away_from_zero),
    "pow": _pow_domain,
    "tan": _tan_domain,
    "exp": _domain(x=lambda b, t: _small(b, t, 4.0)),
    "expm1": _domain(x=lambda b, t: _small(b, t, 4.0)),
    "exp2": _domain(x=lambda b, t: _small(b, t, 4.0)),
    "sinh": _domain(x=lambda b, t: _small(b, t, 4.0)),
    "cosh": _domain(x=lambda b, t: _small(b, t, 4.0)),
    "arcsin": _domain(x=_inside_one),
    "arccos": _domain(x=_inside_one),
    "arctanh": _domain(x=_inside_one),
    "arccosh": _domain(x=_above_one),
    "reciprocal": _domain(x=_away_from_zero),
    "cbrt": _domain(x=_away_from_zero),
    "mod": _domain(y=_away_from_zero),
    "fmod": _domain(y=_away_from_zero),
    "lgamma": _domain(x=_positive),
    "gamma": _domain(x=_positive),
    # weights summing to about 0 divide by it; None: no weights
    "average": _domain(w=lambda b, t: t if t.value is None else _positive(b, t)),
    "inv": _domain(x=_invertible),
    "det": _domain(x=_invertible),
    "solve": _domain(a=_invertible),
    "cholesky": _domain(x=_positive_definite),
    "slogdet": _domain(x=_invertible),
    "pinv": _domain(x=lambda b, t: _full_rank(b, t)),
    "eigh": _domain(x=_positive_definite),
    "matrix_power": _domain(x=lambda b, t: _square(b, t)),
    "svd": _domain(x=lambda b, t: _full_rank(b, t)),
    "svd_values": _domain(x=lambda b, t: _full_rank(b, t)),
    "solve_triangular": _domain(a=_triangular, b=_right_side),
    "solve_sylvester": _sylvester_domain,
    "solve_banded": _domain(ab=_banded, b=_right_side),
    "sqrtm": _domain(x=_positive_definite),
    "cross": _domain(x=lambda b, t: _three_vectors(b, t)),
    # scipy.special and scipy.stats
    "logsumexp": _domain(b=_positive_or_none),
    "norm_logpdf": _domain(scale=_positive),
    "norm_pdf": _domain(scale=_positive),
    "norm_cdf": _domain(scale=_positive),
    "norm_logcdf": _domain(scale=_positive),
    "norm_sf": _domain(scale=_positive),
    "norm_logsf": _domain(scale=_positive),
    "logit": _domain(x=_probability),
    "erfinv": _domain(x=lambda b, t: _small(b, t, 0.9)),
    "gammaln": _domain(x=_positive),
    "digamma": _domain(x=_positive),
    "polygamma": _domain(x=_positive),
    "gammainc": _domain(x=_positive),
    "gammaincc": _domain(x=_positive),
    "betainc": _domain(x=_probability),
    # x - (d - 1) / 2 >= 0.5 for d <= 3: digamma well away from its poles
    "multigammaln": _domain(x=lambda b, t: _wrap(b, t, "1.5 + v * v")),
    # Y's log singularity at 0; fractional orders of I are complex for x < 0; ive's kink at 0
    "y0": _domain(x=_away_from_singularity),
    "y1": _domain(x=_away_from_singularity),
    "yn": _domain(x=_away_from_singularity),
    "iv": _domain(x=_positive),
    "ive": _domain(x=_positive),
    "special_gamma": _domain(x=lambda b, t: _wrap(b, t, "1.5 + v / (1 + v * v)")),
    "rgamma": _domain(x=lambda b, t: _wrap(b, t, "1.5 + v / (1 + v * v)")),
    "erfcinv": _domain(x=lambda b, t: _wrap(b, t, "1 + v / (1 + v * v)")),
    "beta": _domain(x=_positive, y=_positive),
    "betaln": _domain(x=_positive, y=_positive),
    "xlogy": _domain(y=_positive),
    "xlog1py": _domain(y=_above_minus_one),
    "entr": _domain(x=_positive),
    "multivariate_normal_logpdf": _domain(cov=_covariance),
    "dirichlet_logpdf": _dirichlet_domain,
    "multivariate_normal_pdf": _domain(cov=_covariance),
    "multivariate_normal_entropy": _domain(cov=_covariance),
    "dirichlet_pdf": _dirichlet_domain,
    "t_logpdf": _domain(df=_positive, scale=_positive),
    "gamma_logpdf": _domain(x=_positive, a=_positive, scale=_positive),
    "beta_logpdf": _domain(x=_probability, a=_positive, b=_positive),
    "poisson_logpmf": _domain(mu=_positive),
    "t_pdf": _domain(df=_positive, scale=_positive),
    "gamma_pdf": _domain(x=_positive, a=_positive, scale=_positive),
    "beta_pdf": _domain(x=_probability, a=_positive, b=_positive),
    "poisson_pmf": _domain(mu=_positive),
    "norm_ppf": _domain(q=_probability, scale=_positive),
    "norm_isf": _domain(q=_probability, scale=_positive),
    "t_cdf": _domain(scale=_positive),
    "t_logcdf": _domain(scale=_positive),
    "gamma_cdf": _domain(x=_positive, scale=_positive),
    "beta_cdf": _domain(x=_probability),
    "chi2_logpdf": _domain(x=_positive, df=_positive, scale=_positive),
    "chi2_pdf": _domain(x=_positive, df=_positive, scale=_positive),
    "chi2_cdf": _domain(x=_positive, scale=_positive),
    "poisson_cdf": _domain(mu=_positive),
}


# --- kinks and ties: every application at least MARGIN away, by rule name -----------------


def _apart(a: Any, b: Any) -> bool:
    gap = numpy.asarray(a, dtype=float) - numpy.asarray(b, dtype=float)
    return bool(numpy.all(numpy.abs(gap) >= MARGIN))


def _axis_of(app: Application) -> Any:
    axis = literal(app.nondiff.get("axis"))
    return axis if isinstance(axis, (int, tuple)) else None


def _unique_extreme(app: Application) -> bool:
    x = numpy.asarray(app.inputs["x"], dtype=float)
    axis = _axis_of(app)
    extreme = numpy.max if app.rule == "amax" else numpy.min
    top = extreme(x, axis=axis, keepdims=True)
    close = numpy.sum(numpy.abs(x - top) < MARGIN, axis=axis)
    return bool(numpy.all(close == 1))


def _clip_apart(app: Application) -> bool:
    x, low, high = app.inputs["x"], app.inputs["low"], app.inputs["high"]
    bounds_apart = low is None or high is None or _apart(low, high)  # whole numbers can tie
    return bounds_apart and (low is None or _apart(x, low)) and (high is None or _apart(x, high))


def _astype_apart(app: Application) -> bool:
    if literal(app.nondiff.get("dtype")) != "int":
        return True
    x = numpy.asarray(app.inputs["x"], dtype=float)
    return bool(numpy.all(numpy.abs(x - numpy.round(x)) >= MARGIN))


def _off_integers(x: Any) -> bool:
    return bool(numpy.all(numpy.abs(x - numpy.round(x)) >= MARGIN))


def _off_half_integers(x: Any) -> bool:
    return _off_integers(numpy.asarray(x) + 0.5)


def _off_whole_quotients(x: Any, divisor: Any) -> bool:
    """x // divisor, x % divisor: x at least MARGIN from a multiple of divisor, where the
    whole quotient jumps (and, for a divisor that is a value, so is divisor's move)."""
    x, divisor = numpy.asarray(x, dtype=float), numpy.asarray(divisor, dtype=float)
    quotient = x / divisor
    gap = numpy.abs(quotient - numpy.round(quotient))
    moves = numpy.minimum(numpy.abs(divisor), divisor**2 / numpy.maximum(numpy.abs(x), 1e-300))
    return bool(numpy.all(gap * moves >= MARGIN))


def _arctan2_apart(app: Application) -> bool:
    """arctan2(x, y) jumps by 2 pi where x crosses 0 with y < 0, and has no derivative at
    (0, 0): every point at least MARGIN from both."""
    x = numpy.asarray(app.inputs["x"], dtype=float)
    y = numpy.asarray(app.inputs["y"], dtype=float)
    off_cut = (numpy.abs(x) >= MARGIN) | (y >= MARGIN)
    return bool(numpy.all(off_cut & (x**2 + y**2 >= MARGIN**2)))


def _floats(app: Application) -> bool:
    """numpy.reciprocal of whole numbers is whole numbers (0 for 2): never one to take
    central differences of as if its neighbours were floats."""
    return numpy.asarray(app.inputs["x"]).dtype.kind == "f"


def _unique_top(x: Any, extreme: Callable[..., Any]) -> bool:
    return bool(numpy.sum(numpy.abs(x - extreme(x)) < MARGIN) == 1)


def _distinct_eigenvalues(x: Any) -> bool:
    """np.linalg.eigh's eigenvalues well apart (its eigenvectors' gradient divides by
    their gaps)."""
    eigenvalues = numpy.linalg.eigvalsh(numpy.asarray(x, dtype=float))
    return bool(numpy.all(numpy.diff(eigenvalues, axis=-1) >= 0.3))


def _distinct_singular_values(x: Any) -> bool:
    """np.linalg.svd's singular values well apart (the gradient of its vectors divides by
    the gaps between their squares)."""
    singular = numpy.linalg.svd(numpy.asarray(x, dtype=float), compute_uv=False)
    return bool(numpy.all(numpy.abs(numpy.diff(singular, axis=-1)) >= 0.3))


# Jumps of the functions with no gradient, by name: their values must not change within the
# finite differences' steps.
FLOW_KINKS: dict[str, Callable[[Any], bool]] = {
    "sign": lambda x: _apart(x, 0.0),
    "logical_not": lambda x: _apart(x, 0.0),
    "floor": _off_integers,
    "ceil": _off_integers,
    "trunc": _off_integers,
    "fix": _off_integers,
    "round": _off_half_integers,
    "around": _off_half_integers,
    "rint": _off_half_integers,
    "int": _off_integers,
    "argmax": lambda x: _unique_top(x, numpy.max),
    "argmin": lambda x: _unique_top(x, numpy.min),
}


def _distinct_along(app: Application) -> bool:
    """No two entries that sorting compares (along the axis; all with axis None) are
    within MARGIN of each other: the order is the same within the differences' steps."""
    x = numpy.asarray(app.inputs["x"], dtype=float)
    axis = literal(app.nondiff.get("axis"))
    if app.nondiff.get("axis") == OMIT:
        axis = -1
    if axis is None or x.ndim == 0:
        x, axis = numpy.ravel(x), -1
    ordered = numpy.sort(x, axis=axis)
    return bool(numpy.all(numpy.abs(numpy.diff(ordered, axis=axis)) >= MARGIN))


def _norm_apart(app: Application) -> bool:
    """np.linalg.norm away from its kinks: the norm from 0 (the 2-norm's), entries from 0
    (where the sign of x enters), the largest |x|, row or column sum unique, singular
    values distinct and away from 0."""
    x = numpy.asarray(app.inputs["x"], dtype=float)
    text = app.nondiff.get("ord")
    order = literal(text)
    if isinstance(order, str) and order.endswith(".inf"):
        order = -math.inf if order.startswith("-") else math.inf
    axis = literal(app.nondiff.get("axis"))
    if axis is None:
        axis = tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if not bool(numpy.all(numpy.asarray(app.value) >= 0.1)):
        return False
    if order is None or order == "fro" or (order == 2 and len(axes) == 1):
        return True
    if not _apart(x, 0.0):
        return False
    moved = numpy.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    if len(axes) == 1:
        lined = numpy.abs(moved)
    elif order in (2, -2, "nuc"):
        lined = numpy.linalg.svd(moved, compute_uv=False)
        if not _apart(lined, 0.0):
            return False
    else:
        summed = -2 if order in (1, -1) else -1
        lined = numpy.sum(numpy.abs(moved), axis=summed)
    ordered = numpy.sort(lined, axis=-1)
    return bool(numpy.all(numpy.diff(ordered, axis=-1) >= MARGIN))


def _unique_max_and_min(app: Application) -> bool:
    as_max = dataclasses.replace(app, rule="amax")
    return _unique_extreme(as_max) and _unique_extreme(dataclasses.replace(app, rule="amin"))


def _inside_gamma_support(app: Application) -> bool:
    """gamma's (and chi2's) x above its loc, not at the edge (x == loc: 0 / 0 in the
    gradient)."""
    x = numpy.asarray(app.inputs["x"], dtype=float)
    return bool(numpy.all(x - numpy.asarray(app.inputs["loc"], dtype=float) >= MARGIN))


KINKS: dict[str, Callable[[Application], bool]] = {
    "gamma_logpdf": _inside_gamma_support,
    "gamma_pdf": _inside_gamma_support,
    "gamma_cdf": _inside_gamma_support,
    "chi2_logpdf": _inside_gamma_support,
    "chi2_pdf": _inside_gamma_support,
    "chi2_cdf": _inside_gamma_support,
    "abs": lambda app: _apart(app.inputs["x"], 0.0),
    "max": lambda app: _apart(app.inputs["x"], app.inputs["y"]),
    "min": lambda app: _apart(app.inputs["x"], app.inputs["y"]),
    "clip": _clip_apart,
    "amax": _unique_extreme,
    "amin": _unique_extreme,
    "std": lambda app: bool(numpy.all(numpy.asarray(app.value) >= 0.1)),
    "astype": _astype_apart,
    "full": _astype_apart,  # np.full(shape, x, dtype=int): x off whole numbers
    "full_like": _astype_apart,
    "arctan2": _arctan2_apart,
    "hypot": lambda app: bool(numpy.all(numpy.asarray(app.value) >= MARGIN)),
    "fmax": lambda app: _apart(app.inputs["x"], app.inputs["y"]),
    "fmin": lambda app: _apart(app.inputs["x"], app.inputs["y"]),
    "mod": lambda app: _off_whole_quotients(app.inputs["x"], app.inputs["y"]),
    "fmod": lambda app: _off_whole_quotients(app.inputs["x"], app.inputs["y"]),
    "reciprocal": _floats,
    "ptp": _unique_max_and_min,
    "sort": _distinct_along,
    "partition": _distinct_along,
    "norm": _norm_apart,
    "array": _astype_apart,
    "array_of_value": _astype_apart,
    "asarray": _astype_apart,
    "eigh": lambda app: _distinct_eigenvalues(app.inputs["x"]),
    "svd": lambda app: _distinct_singular_values(app.inputs["x"]),
    "svd_values": lambda app: _distinct_singular_values(app.inputs["x"]),
}


# --- checks: what made a value well-conditioned, run again at other arguments ----------------


def _texts(value: Term | list[Term]) -> list[str]:
    return [t.text for t in value] if isinstance(value, list) else [value.text]


def _application_check(
    rule: str, inputs: dict[str, Term | list[Term]], nondiff: dict[str, str], node: ast.expr
) -> Check:
    """An application of a form of ``rule`` (the checks of ``Builder.try_form``): its inputs
    in their domains as they are (``DOMAINS`` would wrap none), its value bounded, its
    kinks and ties away (``KINKS``), no known bug's."""
    nodes = {n: [t.node for t in v] if isinstance(v, list) else v.node for n, v in inputs.items()}
    text = ast.unparse(node)

    def check(b: Builder) -> Any:
        terms: dict[str, Any] = {
            n: [Term(x, b.evaluate(x, strict=False)) for x in v]
            if isinstance(v, list)
            else Term(v, b.evaluate(v, strict=False))
            for n, v in nodes.items()
        }
        adapt = DOMAINS.get(rule)
        if adapt is not None:
            adapted = adapt(b, terms)
            if any(_texts(adapted[n]) != _texts(terms[n]) for n in terms):
                raise Unfit(f"{text}: out of its domain")
        value = b.evaluate(node)
        if not well_conditioned(value):
            raise Unfit(f"{text}: ill-conditioned value")
        application = Application(
            rule, {n: _values(v) for n, v in terms.items()}, nondiff, value, text
        )
        kink = KINKS.get(rule)
        if kink is not None and not kink(application):
            raise Unfit(f"{text}: near a kink or tie")
        b.exclude(application)
        return value

    return check


def _flow_check(
    node: ast.expr, source: ast.expr, what: str, jump: Callable[[Any], bool] | None
) -> Check:
    """A value with no gradient (``np.floor(x)``): one to compute with, away from its
    jumps (``FLOW_KINKS``)."""
    text = ast.unparse(node)

    def check(b: Builder) -> Any:
        value = b.evaluate(node)
        kind = numpy.asarray(value).dtype.kind
        if kind not in "fbiu" or not well_conditioned(value):
            raise Unfit(f"{text} is not a value to compute with")
        source_value = b.evaluate(source, strict=False)
        if jump is not None and not jump(numpy.asarray(source_value, dtype=float)):
            raise Unfit(f"{text}: near a jump")
        b.exclude(Application(what, {"x": source_value}, {}, value, text))
        return value

    return check


def _mask_check(node: ast.expr, left: ast.expr, right: ast.expr) -> Check:
    """A comparison, at least MARGIN from a tie everywhere."""

    def check(b: Builder) -> Any:
        gap = b.evaluate(ast.BinOp(left, ast.Sub(), right), strict=False)
        if not numpy.all(numpy.abs(gap) >= MARGIN):
            raise Unfit("a comparison near a tie")
        return b.evaluate(node)

    return check


def _call_check(node: ast.expr, results: int) -> Check:
    """A call of a helper (which checks its own statements): finite, bounded floats."""

    def check(b: Builder) -> Any:
        value = b.evaluate(node)
        values = value if results > 1 else (value,)
        if not all(well_conditioned(v) and is_float(v) for v in values):
            raise Unfit(f"{ast.unparse(node)}: ill-conditioned value")
        return value

    return check


# --- programs --------------------------------------------------------------------------------


# Names of the module's other functions (never a parameter's or a local's name).
HELPER_NAMES = ("g", "layer", "cell", "unit")


@dataclass
class Setting:
    """What the functions of one module share: the mode, how numpy is spelled, the module
    constants, the applications left out (known bugs)."""

    mode: str
    alias: str
    exclusions: Sequence[Callable[[Application], bool]]
    constants: dict[str, Any]
    branching: bool = False  # the functions may hold ``if``s

    def builder(self, choose: Chooser, callees: Sequence[Helper]) -> Builder:
        b = Builder(choose, self.mode, self.exclusions)
        b.branching = self.branching
        b.alias = self.alias
        b.env.update(self.constants)
        b.module_constants = list(self.constants)
        b.callees = list(callees)
        return b


def memo_key(value: Any) -> tuple[Any, ...]:
    """What a helper's result at ``value`` depends on. The type itself, not its name: numpy's
    booleans are named ``bool`` too, and ``np.True_ - np.False_`` raises where ``True - False``
    is 1 (a call with Python booleans memoized for one with numpy's built a forward that
    raised)."""
    array = numpy.asarray(value)
    return (type(value), array.dtype.str, array.shape, array.tobytes())


class Helper:
    """A function of the module that others call (``def g(x, s=0.5): ...``), built at random
    arguments (its prototype). Calling it (as the evaluation of its callers does) runs its
    statements at the call's arguments, each after the checks that made it well-conditioned
    where it was built (kinks, ties, domains, bounds): Unfit where one fails."""

    def __init__(
        self, function: Function, body: Body, setting: Setting, callees: Sequence[Helper]
    ) -> None:
        self.function = function
        self.body = body
        self.setting = setting
        self.callees = tuple(callees)
        self.results = len(body.results)  # how many values it returns
        self.rules = tuple(dict.fromkeys(body.rules))
        # The shapes of each parameter's arguments, the prototype's first: a parameter is
        # annotated only where every call gives it the same shape.
        self.shapes: dict[str, list[tuple[int, ...]]] = {
            name: [dims if dims is not None else ()] for name, dims, _ in function.params
        }
        self.memo: dict[tuple[Any, ...], Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        params = self.function.params
        bound = dict(zip((n for n, _, _ in params[: len(args)]), args, strict=True))
        bound.update(kwargs)
        for name, _, default in params:
            if name not in bound:
                bound[name] = literal(default)
        key = tuple(memo_key(bound[n]) for n, _, _ in params)
        if key not in self.memo:
            try:
                self.memo[key] = self._run(bound)
            except Unfit as error:
                self.memo[key] = error
        outcome = self.memo[key]
        if isinstance(outcome, Unfit):
            raise outcome
        for name, value in bound.items():
            if shape(value) not in self.shapes[name]:
                self.shapes[name].append(shape(value))
        return outcome

    def _run(self, bound: dict[str, Any]) -> Any:
        b = self.setting.builder(Chooser(), self.callees)  # the checks choose nothing
        for name, value in bound.items():
            b.bind(name, value)
        for line, checks in zip(self.body.lines, self.body.line_checks, strict=True):
            for check in checks:
                check(b)
            _execute(b, line)
        values = []
        for term, checks in zip(self.body.results, self.body.result_checks, strict=True):
            for check in checks:
                check(b)
            value = b.evaluate(term.node)
            if not (is_float(value) and well_conditioned(value)):
                raise Unfit(f"{self.function.name} returns an ill-conditioned value here")
            values.append(value)
        return tuple(values) if len(values) > 1 else values[0]

    def final(self) -> Function:
        """The function as written in the module: parameters annotated with their shape
        only where every call gives them that shape."""
        params = [
            (name, dims if len(self.shapes[name]) == 1 else None, default)
            for name, dims, default in self.function.params
        ]
        return Function(self.function.name, params, self.function.body, self.function.results)


def _execute(b: Builder, line: str) -> None:
    """Runs a body entry at ``b``'s values (after its checks: a loop's check runs it)."""
    if _is_loop(line):
        return
    append = _APPEND.match(line)
    if append:
        b.env[append.group(1)].append(b.evaluate(_parse(append.group(2))))
        return
    if _WRITE.match(line):
        _write(b, line)
        return
    targets, text = _statement_parts(line)
    names = targets.split(", ")
    value = b.evaluate(_parse(text))
    for name, item in zip(names, value if len(names) > 1 else [value], strict=True):
        b.bind(name, item)


def _build_helper(
    choose: Chooser,
    setting: Setting,
    name: str,
    callees: Sequence[Helper],
    rng: numpy.random.Generator,
    like: Sequence[tuple[int, ...]],
    loops: bool = False,
) -> Helper | None:
    """A helper function of 1 to 3 parameters (the last ones numbers with a default
    sometimes, the others most often of a shape in ``like``) that may call ``callees``,
    built at random arguments; None if none fits."""
    count = choose.weighted([(1, 3), (2, 3), (3, 2)])
    defaults = min(count - 1, choose.weighted([(0, 3), (1, 2), (2, 1)]))
    params: list[tuple[str, tuple[int, ...] | None, str | None]] = []
    prototype: dict[str, Any] = {}
    for position, param in enumerate(PARAMETER_NAMES[:count]):
        if position >= count - defaults:
            default = choose.pick(NUMBERS)
            params.append((param, (), repr(default)))
            prototype[param] = default
            continue
        dims: tuple[int, ...] = ()
        if setting.mode == "array":
            dims = choose.pick(like) if like and choose.index(4) else choose.weighted(ARRAY_SHAPES)
        value = rng.uniform(0.2, 2.0, size=dims) * rng.choice([-1.0, 1.0], size=dims)
        prototype[param] = float(value) if dims == () else value
        params.append((param, dims, None))
    for _ in range(3):
        b = setting.builder(choose, callees)
        for param, value in prototype.items():
            b.bind(param, value)
        statements = choose.weighted([(0, 2), (1, 3), (2, 3), (3, 2)])
        results = choose.weighted([(1, 5), (2, 3), (3, 1)])
        calls = bool(callees) and choose.boolean()  # a helper calling another: depth 2, 3
        branches = int(setting.branching and choose.index(3) == 0)  # tests of values only
        # A loop in a helper: its F_forward keeps the steps every caller's backward reads
        loop = _literal_steps(choose, 1 + choose.index(MAX_STEPS)) if loops else None
        if loops and choose.index(3):
            loop = None
        try:
            body = _function_body(
                b,
                list(prototype),
                None,
                statements,
                results,
                calls,
                True,
                branches=branches,
                loop=loop,
            )
        except Unfit:
            continue
        function = Function(name, params, body.lines, [t.text for t in body.results])
        helper = Helper(function, body, setting, callees)
        values = tuple(t.value for t in body.results)
        key = tuple(memo_key(prototype[n]) for n, _, _ in params)
        helper.memo[key] = values if len(values) > 1 else values[0]
        return helper
    return None


@dataclass
class Body:
    lines: list[str]
    results: list[Term]  # one per value returned
    rules: list[str]
    line_checks: list[tuple[Check, ...]]  # one per line: of the values it binds
    result_checks: list[tuple[Check, ...]]


# --- loops ------------------------------------------------------------------------------------

LOOP_VARIABLES = ("t", "i", "j", "step")  # never a parameter's or a local's name but t's
LIST_NAMES = ("hs", "terms", "outs")
SEQUENCE_NAME = "xs"  # a parameter with an axis of steps, read as xs[t] in a loop
STEPS_NAME = "n"  # an integer parameter: a loop's number of steps
MAX_STEPS = 4


@dataclass(frozen=True)
class Steps:
    """What a loop goes over (``range(3)``, ``reversed(range(n))``, ``range(1, 5, 2)``,
    ``range(xs.shape[1])``) and the values its variable takes."""

    iterable: str
    values: tuple[int, ...]


def _literal_steps(choose: Chooser, count: int) -> Steps:
    """``count`` steps over a range written out: with a start, a step, or reversed."""
    kind = choose.weighted([("range", 4), ("reversed", 2), ("start", 1), ("step", 1)])
    if kind == "reversed":
        return Steps(f"reversed(range({count}))", tuple(reversed(range(count))))
    if kind == "start":
        start = 1 + choose.index(2)
        return Steps(f"range({start}, {start + count})", tuple(range(start, start + count)))
    if kind == "step":
        start = choose.index(2)
        stop = start + 2 * count - 1
        return Steps(f"range({start}, {stop}, 2)", tuple(range(start, stop, 2)))
    return Steps(f"range({count})", tuple(range(count)))


@dataclass
class Scope:
    """A loop whose statements are being built: its variable (none, "", for a loop over a
    list's items), the values it takes, and the names bound before it (rebinding one of
    them carries it from step to step)."""

    variable: str
    values: tuple[int, ...]
    outside: frozenset[str]
    lists: tuple[str, ...]  # the lists it fills


@dataclass
class Block:
    """A loop as the forward runs it, the check of its ``for`` statement: every step, each
    statement after the checks that made it well-conditioned where it was built (at the
    first step), the lists it fills made empty first. A carried value must keep its shape
    and be a float at the end of every step."""

    variable: str
    steps: Steps
    lists: tuple[str, ...]
    lines: list[str]
    checks: list[tuple[Check, ...]]
    carried: tuple[str, ...]
    made: tuple[tuple[str, str], ...] = ()  # arrays it fills, made first (hs = np.zeros(3))

    def __call__(self, b: Builder) -> None:
        for name in self.lists:
            b.env[name] = []
        for name, text in self.made:
            b.env[name] = b.evaluate(_parse(text))
        shapes = {name: shape(b.env[name]) for name in self.carried}
        for value in self.steps.values:
            b.env[self.variable] = value
            for line, checks in zip(self.lines, self.checks, strict=True):
                skipping = _CONTINUE.fullmatch(line)
                if skipping is not None:
                    if value == int(skipping.group(2)):
                        break
                    continue
                for check in checks:
                    check(b)
                _execute(b, line)
            for name in self.carried:
                if shape(b.env[name]) != shapes[name] or not is_float(b.env[name]):
                    raise Unfit(f"{name} changes shape (or dtype) from step to step")

    def source(self) -> str:
        lists = "".join(f"{name} = []\n" for name in self.lists)
        lists += "".join(f"{name} = {text}\n" for name, text in self.made)
        body = textwrap.indent("\n".join(self.lines), "    ")
        return f"{lists}for {self.variable} in {self.steps.iterable}:\n{body}"


# --- loops over the items of a list parameter --------------------------------------------------

ITEM_LIST_NAMES = ("layers", "weights", "blocks")  # f's list parameter its loop goes over
ITEM_NAMES = ("W", "bias", "gain")  # the names of an item's arrays, by position
ZIPPED_NAMES = ("Ws", "biases", "gains")  # zip's lists, by position (for W, bias in zip(...)
ITEM_AT = "item_at"  # the place of the item a step reads: in the checks only, never written
MAX_ITEMS = 4


@dataclass(frozen=True)
class Items(Steps):
    """The items of a list parameter of ``f`` (``iterable``: its name; ``values``: the
    items' places), each a tuple of arrays bound to ``targets`` (``for W, bias in layers:``,
    ``for (W,) in layers:``) or, not ``tupled``, one array (``for W in weights:``); numbers
    in scalar code. Each position has one shape (``shapes``) in every item, so that a value
    carried through them keeps its shape."""

    targets: tuple[str, ...] = ()
    shapes: tuple[tuple[int, ...], ...] = ()
    tupled: bool = True
    target: str = ""  # as written: "W, bias", "(W, bias)", "W,", "(W,)", "W"
    number: str = ""  # enumerate's (for i, (W, bias) in enumerate(layers):), if numbered
    # zip's lists, one per target, each item one array (for W, bias in zip(Ws, biases):),
    # with their lengths (the steps: the shortest's; the longer ones' last items unread).
    zipped: tuple[str, ...] = ()
    lengths: tuple[int, ...] = ()
    # enumerate's first number (``enumerate(layers, start=1)``: ``values`` count from it),
    # and zip's check that the lengths agree (``zip(Ws, biases, strict=True)``).
    start: int = 0
    strict: bool = False

    @property
    def index(self) -> str:
        """What numbers the items in a step: enumerate's number, else ``ITEM_AT`` (the
        checks' only)."""
        return self.number or ITEM_AT

    def read(self) -> str:
        """The statement that binds a step's item (``W, bias = layers[item_at]``)."""
        at = f"{self.index} - {self.start}" if self.start else self.index
        if self.zipped:
            reads = [f"{name}[{at}]" for name in self.zipped]
            return f"{', '.join(self.targets)} = {', '.join(reads)}"
        if self.tupled and len(self.targets) == 1:
            return f"{self.targets[0]} = {self.iterable}[{at}][0]"
        return f"{', '.join(self.targets)} = {self.iterable}[{at}]"

    def header(self) -> str:
        """``for W, bias in layers:``, ``for i, (W, bias) in enumerate(layers):``, ``for W,
        bias in zip(Ws, biases):``, ``for i, (W, bias) in enumerate(zip(Ws, biases)):``."""
        strict = ", strict=True" if self.strict else ""
        iterable = f"zip({', '.join(self.zipped)}{strict})" if self.zipped else self.iterable
        if not self.number:
            return f"for {self.target} in {iterable}:"
        target = self.target
        if (self.tupled or self.zipped) and not target.startswith("("):
            target = f"({target})"
        start = f", start={self.start}" if self.start else ""
        return f"for {self.number}, {target} in enumerate({iterable}{start}):"

    def lists(self) -> tuple[Items, ...]:
        """The list parameters the loop reads, each as a loop over it alone would: zip's
        lists one by one (each item one array, all its items), else this one."""
        if not self.zipped:
            return (self,)
        return tuple(
            Items(name, tuple(range(length)), (target,), (dims,), False, target)
            for name, length, target, dims in zip(
                self.zipped, self.lengths, self.targets, self.shapes, strict=True
            )
        )

    def annotations(self) -> dict[str, str]:
        """Each list parameter's annotation (``annotation``), by name."""
        return {items.iterable: items.annotation() for items in self.lists()}

    def annotation(self) -> str:
        """The list's shapes as ``gradgen check`` reads them: a tuple of shapes per item
        (``layers: [("4, 4", "4"), ("4, 4", "4")]``), a shape per item where an item is one
        array (``weights: ["3, 4", "3, 4"]``); ``"()"`` for a number."""
        texts = [f'"{", ".join(map(str, dims)) or "()"}"' for dims in self.shapes]
        item = texts[0]
        if self.tupled:
            item = f"({', '.join(texts)}{',' if len(texts) == 1 else ''})"
        return f"{self.iterable}: [{', '.join([item] * len(self.values))}]"


@dataclass
class ItemBlock(Block):
    """A loop over the items of a list parameter as the forward runs it: a ``Block`` over
    the items' places whose first line binds the item (``Items.read``), which the loop's
    header does in the source (``for W, bias in layers:``)."""

    def source(self) -> str:
        items = self.steps
        assert isinstance(items, Items) and self.lines[0] == items.read()
        lists = "".join(f"{name} = []\n" for name in self.lists)
        body = textwrap.indent("\n".join(self.lines[1:]), "    ")
        return f"{lists}{items.header()}\n{body}"


def _plan_items(
    choose: Chooser,
    b: Builder,
    rng: numpy.random.Generator,
    params: list[tuple[str, tuple[int, ...]]],
    args: dict[str, Any],
    shapes: list[tuple[int, ...]],
) -> Items:
    """The list parameter ``f``'s loop goes over the items of: 1 to ``MAX_ITEMS`` items,
    each a tuple of 1 to 3 arrays or one array, of shapes drawn by ``_item_shape`` (numbers
    in scalar code). Read by that loop and ``len()`` only (``Builder.item_lists``)."""
    zipped = choose.index(5) == 0  # for W, bias in zip(Ws, biases):
    name = choose.pick(ITEM_LIST_NAMES)
    tupled = not zipped and choose.index(4) != 0
    width = 2 + choose.index(2) if zipped else 1 + choose.index(3) if tupled else 1
    count = 1 + choose.index(MAX_ITEMS)
    dims = tuple(_item_shape(choose, b.mode, shapes, position) for position in range(width))
    # zip's lists: the shortest sets the steps, the others have an item or two more sometimes
    lengths = tuple(count + choose.pick([0, 0, 0, 1, 2]) for _ in dims) if zipped else ()
    if zipped and min(lengths) > count:
        lengths = (count, *lengths[1:])

    def array(d: tuple[int, ...]) -> Any:
        a = rng.uniform(0.2, 2.0, size=d) * rng.choice([-1.0, 1.0], size=d)
        return float(a) if d == () else a

    targets = ITEM_NAMES[:width]
    target = ", ".join(targets) + ("," if tupled and width == 1 else "")
    if tupled and choose.index(4) == 0:
        target = f"({target})"  # for (W, bias) in layers:, for (W,) in layers:
    # for i, (W, bias) in enumerate(layers): the number a value, an index, a test's
    number = LOOP_VARIABLES[1] if choose.index(4) == 0 else ""
    if zipped:
        names = ZIPPED_NAMES[:width]
        drawn = zip(names, dims, lengths, strict=True)
        lists = {n: [array(d) for _ in range(k)] for n, d, k in drawn}
    else:
        names = (name,)
        items = [tuple(array(d) for d in dims) for _ in range(count)]
        lists = {name: items if tupled else [item[0] for item in items]}
    for listed, values in lists.items():
        args[listed] = values
        params.append((listed, ()))
        b.item_lists[listed] = values
        b.hidden.add(listed)  # never rebound, never a variable
    zip_names = names if zipped else ()
    start = 1 if number and choose.index(3) == 0 else 0  # enumerate(layers, start=1)
    # zip(Ws, biases, strict=True), of lists of one length (else the forward raises)
    strict = zipped and len(set(lengths)) == 1 and choose.index(3) == 0
    return Items(
        names[0],
        tuple(range(start, start + count)),
        targets,
        dims,
        tupled,
        target,
        number,
        zip_names,
        lengths,
        start,
        strict,
    )


def _item_shape(
    choose: Chooser, mode: str, shapes: list[tuple[int, ...]], position: int
) -> tuple[int, ...]:
    """The shape of the arrays at ``position`` of a list's items: one of ``f``'s
    parameters' (to combine with them), a square matrix a value of theirs is multiplied by
    (``h @ W`` keeps ``h``'s shape; the first position most often), a row, a number."""
    arrays = [dims for dims in shapes if dims]
    if mode != "array":
        return ()
    last = choose.pick([dims[-1] for dims in arrays]) if arrays else 4
    kind = choose.weighted(
        [
            ("like", 4 if arrays else 0),
            ("square", 3 if position == 0 else 1),
            ("row", 2),
            ("number", 1),
        ]
    )
    if kind == "like":
        return tuple(choose.pick(arrays))
    if kind == "square":
        return (last, last)
    return (last,) if kind == "row" else ()


# --- branches ---------------------------------------------------------------------------------

FLAG_TYPES = {"flag": "bool", "mode": "str"}  # f's parameters its tests read, never data
MODES = ("a", "b", "c")  # the values of ``mode`` (tests name the first two: "c" takes else)
DATA_THRESHOLDS = (0.0, 0.5, -0.5, 1.0, -1.0)
# How far a value a test compares is from its threshold, at least: central differences move
# the parameters by about 1e-4 of their size, so the forward takes the same sides through
# all of them (where it would not, two step sizes disagree and the example is discarded).
DATA_MARGIN = 0.1


@dataclass(frozen=True)
class Test:
    """The test of an ``if`` or ``elif``: its text, its kind (``flag``, ``mode``, ``step``,
    ``data``, ``and``/``or`` of two), and what it decides at a builder's values (Unfit where
    a value it compares is within ``DATA_MARGIN`` of its threshold)."""

    text: str
    kind: str
    decide: Check


def _flag(b: Builder, name: str) -> None:
    """``f``'s flag parameter ``name`` (``flag``: True, False; ``mode``: the MODES), made
    the first time a test reads it; the program is built at one of its values and checked
    at all of them."""
    if name in b.flags:
        return
    values = [True, False] if name == "flag" else list(MODES)
    first = values.pop(b.choose.index(len(values)))
    b.flags[name] = (first, *values)  # not a value of b.env: evaluate() reads them


def _draw_test(b: Builder, before: Sequence[Test] = ()) -> Test:
    """A test on a flag (``flag``, ``not flag``), a string (``mode == "a"``, ``mode in ("a",
    "b")``), the loop's step (``t > 0``) or a value (``np.sum(h) > 0.5``, ``x < 0.0``), or
    ``and``/``or`` of two. ``before``: the tests of the arms before (an ``elif`` after a test
    of ``mode`` most often tests another of its values)."""
    choose = b.choose
    if before and before[-1].kind == "mode" and choose.index(3):
        named = {m for t in before for m in MODES if f'"{m}"' in t.text}
        others = [m for m in MODES[:2] if m not in named]
        if others:
            return _mode_test(b, f'mode == "{choose.pick(others)}"')
    kinds = [("data", 3)]
    if b.flaggable:
        kinds += [("flag", 3), ("mode", 2)]
    if b.counted():
        kinds += [("step", 3)]
    if choose.index(6) == 0:
        first, second = _simple_test(b, choose.weighted(kinds)), None
        for _ in range(3):
            second = _simple_test(b, choose.weighted(kinds))
            if second.kind != first.kind:
                break
        assert second is not None
        if second.text == first.text:
            return first
        joiner = choose.pick(("and", "or"))
        a, c = first.decide, second.decide

        def both(b: Builder) -> Any:
            return a(b) and c(b) if joiner == "and" else a(b) or c(b)

        return Test(f"{first.text} {joiner} {second.text}", joiner, both)
    return _simple_test(b, choose.weighted(kinds))


def _mode_test(b: Builder, text: str) -> Test:
    _flag(b, "mode")
    node = _parse(text)
    return Test(text, "mode", lambda b: bool(b.evaluate(node)))


def _simple_test(b: Builder, kind: str) -> Test:
    choose = b.choose
    if kind == "flag":
        _flag(b, "flag")
        text = "not flag" if choose.index(3) == 0 else "flag"
        node = _parse(text)
        return Test(text, kind, lambda b: bool(b.evaluate(node)))
    if kind == "mode":
        text = choose.weighted(
            [
                (f'mode == "{choose.pick(MODES[:2])}"', 4),
                (f'mode != "{choose.pick(MODES[:2])}"', 1),
                ('mode in ("a", "b")', 1),
                ('mode not in ["b"]', 1),
            ]
        )
        return _mode_test(b, text)
    if kind == "step":
        variable = choose.pick(b.counted()).variable
        op, bound = choose.pick(((">", 0), ("==", 0), (">", 1), ("<", 2), (">=", 1), ("!=", 1)))
        node = _parse(f"{variable} {op} {bound}")
        return Test(ast.unparse(node), kind, lambda b: bool(b.evaluate(node)))
    source = b.source(1, lambda t: t.value is not None and is_float(t.value))
    quantity = source.node
    if ndim(source.value):
        reducer = choose.weighted([("sum", 3), ("mean", 1), ("max", 1)])
        quantity = _parse(f"{b.alias}.{reducer}({source.text})")
    threshold = choose.pick(DATA_THRESHOLDS)
    op = choose.pick((">", "<", ">=", "<="))
    node = _parse(f"{ast.unparse(quantity)} {op} {threshold}")
    checks = source.checks

    def decide(b: Builder) -> Any:
        for check in checks:
            check(b)
        value = b.evaluate(quantity)
        if not (numpy.ndim(value) == 0 and abs(float(value) - threshold) >= DATA_MARGIN):
            raise Unfit(f"{ast.unparse(quantity)} is near {threshold}")
        return bool(b.evaluate(node))

    b.read |= source.variables
    return Test(ast.unparse(node), "data", decide)


@dataclass
class Branch:
    """An ``if`` as the forward runs it, the check of its statement: the tests in order,
    then the statements of the first side whose test holds (the ``else`` side's where none
    does, if there is one), each after its checks; ``Raised`` for a side that raises. Of a
    conditional expression (``y = math.tanh(y) if x > 1.0 else math.log(y, math.exp(y))``)
    only the side's checks: its line binds the side's value itself (run here too, it
    rebound ``y``, which the line's own run then read: the log of another value than the
    forward's)."""

    tests: list[Check]
    sides: list[tuple[list[str], list[tuple[Check, ...]]]]  # each arm's, an ``else`` last
    expression: bool = False  # a conditional expression's

    def __call__(self, b: Builder) -> None:
        for index, (lines, checks) in enumerate(self.sides):
            if index < len(self.tests) and not self.tests[index](b):
                continue
            if lines == [RAISED]:
                raise Raised(RAISED)
            for line, line_checks in zip(lines, checks, strict=True):
                for check in line_checks:
                    check(b)
                if not self.expression:
                    _execute(b, line)
            return


# A side of an ``if`` on flags that raises (``else: raise ValueError(...)``): where the flags
# take it, the forward raises, and so must the backward (``Program.raising``).
RAISED = 'raise ValueError("not for these flags")'


class Raised(Exception):
    """The forward raised where a side that raises was taken (``RAISED``)."""


FILLED_NAMES = ("rows", "acc", "cols")  # arrays a loop fills (hs[t] = h)
COUNTER_NAMES = ("n", "m", "count")  # a while loop's counter: while ... and n < 3


@functools.lru_cache(maxsize=4096)
def _write_code(target: str) -> types.CodeType:
    return compile(f"{target} = _item", "<write>", "exec")


def _write(b: Builder, line: str) -> None:
    """``hs[t] = h``: the item written into the filled array at the step's entries (numpy
    spreads it over them, or drops its leading 1s); Unfit where numpy cannot."""
    target, _, value = line.partition(" = ")
    if not is_float(b.env[target.partition("[")[0]]):
        # np.zeros_like(x) of an integer x (a helper's call): the items would be truncated
        raise Unfit(f"{line}: into an array of integers")
    namespace = {**b.env, "_item": b.evaluate(_parse(value))}
    try:
        exec(_write_code(target), namespace)  # into the array b.env holds
    except Exception as error:
        raise Unfit(f"{line}: {error}") from error


def _whiling(choose: Chooser, steps: Steps) -> bool:
    """Is a loop over ``range(K)`` written as ``while <test> and n < K:`` (``n = 0`` before
    it, ``n = n + 1`` ending each step; the counter is the loop's variable)?"""
    count = len(steps.values)
    return steps.iterable == f"range({count})" and choose.index(3) == 0


def _while_margin(threshold: float) -> float:
    """How far every test a while loop decides by stays from its threshold: central
    differences (a relative step of 1e-4) must take as many steps as the forward."""
    return MARGIN * max(1.0, abs(threshold))


@dataclass
class WhileBlock(Block):
    """``while <quantity> > <threshold> and n < K:`` (``<``; the count first sometimes):
    the steps of a ``Block`` over ``range(K)``, its variable the counter, run while the
    test holds. Every test that decides stays ``_while_margin`` from the threshold (Unfit
    otherwise), so that central differences take as many steps."""

    quantity: str = ""  # of a carried value: np.sum(h * h), abs(h)
    threshold: float = 0.0
    above: bool = True
    test_first: bool = True

    def __call__(self, b: Builder) -> None:
        self.run(b, checked=True)

    def run(self, b: Builder, checked: bool) -> list[float]:
        """Runs the steps (all of them unless ``checked``): the quantity at each one's
        start."""
        for name in self.lists:
            b.env[name] = []
        for name, text in self.made:
            b.env[name] = b.evaluate(_parse(text))
        shapes = {name: shape(b.env[name]) for name in self.carried}
        node = _parse(self.quantity)
        seen: list[float] = []
        limit = len(self.steps.values)
        for count in range(limit + 1):
            b.env[self.variable] = count
            if count == limit:
                if checked and self.test_first:
                    b.evaluate(node)  # the forward tests once more: it must not warn
                break
            quantity = float(b.evaluate(node))
            seen.append(quantity)
            if checked:
                if abs(quantity - self.threshold) < _while_margin(self.threshold):
                    raise Unfit(f"{self.quantity} too near {self.threshold}")
                if (quantity > self.threshold) != self.above:
                    break
            for line, checks in zip(self.lines, self.checks, strict=True):
                for check in checks:
                    check(b)
                _execute(b, line)
            for name in self.carried:
                if shape(b.env[name]) != shapes[name] or not is_float(b.env[name]):
                    raise Unfit(f"{name} changes shape (or dtype) from step to step")
        if checked and any(not b.env[name] for name in self.lists):
            raise Unfit("a list the loop left empty (np.stack of none)")
        return seen

    def source(self) -> str:
        lists = "".join(f"{name} = []\n" for name in self.lists)
        lists += "".join(f"{name} = {text}\n" for name, text in self.made)
        body = textwrap.indent("\n".join(self.lines), "    ")
        test = f"{self.quantity} {'>' if self.above else '<'} {self.threshold!r}"
        counted = f"{self.variable} < {len(self.steps.values)}"
        tests = (test, counted) if self.test_first else (counted, test)
        return f"{lists}while {' and '.join(tests)}:\n{body}"


def _bounded_while(b: Builder, block: Block, outside: dict[str, Any]) -> WhileBlock:
    """``block`` (over ``range(K)``, its variable a counter) as a while loop stopped by a
    test of a carried value after a number of steps drawn (by the counter after K), the
    threshold apart from every value the test sees (Unfit where none is)."""
    choose = b.choose
    counter = block.variable
    name = choose.pick(block.carried)
    if ndim(outside[name]):
        texts = [f"{b.alias}.{r}({name})" for r in ("sum", "max", "mean")]
        texts.append(f"{b.alias}.sum({name} * {name})")
    else:
        texts = [name, f"{name} * {name}", f"abs({name})"]
    draft = WhileBlock(
        counter,
        block.steps,
        block.lists,
        [*block.lines, f"{counter} = {counter} + 1"],
        [*block.checks, ()],
        block.carried,
        (*block.made, (counter, "0")),
        quantity=choose.pick(texts),
    )
    b.env = dict(outside)
    seen = draft.run(b, checked=False)
    b.env = dict(outside)
    count = len(seen)
    stop = choose.weighted([(count, 1), *((m, 2) for m in range(1 if block.lists else 0, count))])
    for steps in dict.fromkeys((stop, count)):
        for above in (True, False) if choose.boolean() else (False, True):
            sign = 1.0 if above else -1.0
            taken = [sign * q for q in seen[:steps]]  # the test holds: above the threshold
            low = sign * seen[steps] if steps < count else min(taken) - 2.0
            high = min(taken) if taken else low + 2.0
            threshold = sign * round((low + high) / 2, 2)
            margin = _while_margin(threshold)
            if all(abs(q - threshold) >= margin for q in seen[: steps + 1]) and high - low > 0:
                return dataclasses.replace(
                    draft, threshold=threshold, above=above, test_first=choose.boolean()
                )
    raise Unfit("no threshold apart from the values the test sees")


# The bounded functions a carried value goes through (h = np.tanh(h * w + xs[t])), so that
# it stays bounded however many steps run.
SQUASHING = ("tanh", "sin", "cos", "sigmoid", "arctan")


def _function_body(
    b: Builder,
    params: list[str],
    focus: Form | None,
    statements: int,
    results: int,
    must_call: bool = False,
    bare_ok: bool = False,
    updates: bool = False,
    loop: Steps | None = None,
    branches: int = 0,
) -> Body:
    """Statements applying forms of the table (fan-out, rebinding, aliases, views, nested
    expressions, tuple unpacking, calls of ``b.callees``), then ``results`` values returned.
    The first statement applies ``focus`` (if given) where it can; ``must_call``: at least
    one call; ``bare_ok``: the function may return a parameter as it is; ``loop``: one of
    the statements is a loop over those steps (where one fits); ``branches``: so many of
    them are ``if`` statements (where they fit), and (``b.branching``) loops may hold
    some."""
    choose = b.choose
    body: list[str] = []
    rules: list[str] = []
    line_checks: list[tuple[Check, ...]] = []
    locals_: list[str] = []
    reserved: set[str] = set()  # the names of arrays loops fill
    kinds = [("new", 5), ("rebind", 3), ("alias", 1), ("unpack", 1)]
    if updates:
        # In place (h += v): in f only, whose values' dtypes are the ones planned (a helper
        # may be called with an int where it was planned with a float, and numpy refuses to
        # add a float into an int array in place).
        kinds += [("update", 1)]
    if b.mode == "array":
        kinds += [("view", 3), ("fan-out", 2), ("shift", 1)]
    if b.callees:
        kinds += [("call", 6)]

    def rebindable() -> list[str]:
        return [
            *reversed(locals_),
            *(n for n in params if n not in b.labels and n not in b.hidden),
        ]

    def keeps(name: str, term: Term) -> bool:
        """May ``name`` be bound to ``term`` here? In a loop, a name bound before it is
        carried to the next step: the value must keep its shape, a float."""
        for before in b.branches:  # both sides of an ``if`` join into one value
            if name in before and not (
                shape(before[name]) == shape(term.value)
                and is_float(before[name]) == is_float(term.value)
            ):
                return False
        if not b.loops or name not in b.loops[-1].outside:
            return True
        return shape(b.env[name]) == shape(term.value) and is_float(term.value)

    same_target: list[str] = []  # the name the other side of a conditional expression binds

    def fresh() -> list[tuple[str, int]]:
        return [(n, w) for n, w in LOCAL_NAMES if n not in b.env]

    def targets(count: int, read: frozenset[str]) -> list[str]:
        """``count`` distinct names to bind: new ones, or names bound already (often one
        the value reads: ``h, c = g(h)``)."""
        chosen: list[str] = []
        if count == 1 and same_target:  # the other side of a conditional expression
            return list(same_target)
        for position in range(count):
            old = [n for n in rebindable() if n not in chosen]
            new = [(n, w) for n, w in fresh() if n not in chosen]
            kind = choose.weighted([("new", 3), ("read", 1), ("old", 1)])
            if kind == "read" and [n for n in old if n in read]:
                chosen.append(choose.pick([n for n in old if n in read]))
            elif kind == "old" and old:
                chosen.append(choose.pick(old))
            elif new:
                chosen.append(choose.weighted(new))
            else:
                chosen.append(f"t{len(body)}_{position}")
        return chosen

    def bind(names: list[str], term: Term, values: Sequence[Any]) -> None:
        body.append(f"{', '.join(names)} = {term.text}")
        line_checks.append(term.checks)
        b.read |= term.variables
        rules.extend(term.rules)
        for name, value in zip(names, values, strict=True):
            b.unused.discard(name)
            b.bind(name, value)
            if name not in locals_ and name not in params:
                locals_.append(name)

    def drawn_statement(number: int) -> bool:
        """One statement of a kind drawn (an unpacking that does not fit: a new value)."""
        kind = choose.weighted(kinds)
        try:
            return statement(number, kind)
        except Unfit:
            if kind != "unpack":
                raise
            return statement(number, "new")

    def statement(number: int, kind: str) -> bool:
        """One statement of ``kind``; whether it calls a function of the module."""
        if kind == "update":
            return updated(number)
        if kind == "alias" and fresh():
            source = b.variable()
            target = choose.weighted(fresh())
            body.append(f"{target} = {source.text}")  # h = x: a new name, the same value
            line_checks.append(())
            b.bind(target, source.value)
            return False
        if number == 0 and focus is not None:
            terms = [_focused(b, focus)]
        elif kind == "shift":
            return shifted()
        elif kind == "unpack":
            names, values = _unpacked(b, rebindable(), targets)
            line = f"{', '.join(names)} = {', '.join(t.text for t in values)}"
            body.append(line)
            line_checks.append(tuple(c for t in values for c in t.checks))
            for name, term in zip(names, values, strict=True):
                rules.extend(term.rules)
                b.read |= term.variables
                b.unused.discard(name)
                b.bind(name, term.value)
                if name not in locals_ and name not in params:
                    locals_.append(name)
            return False
        elif kind == "call":
            helper = b.callee(b.callees)
            try:
                term = b.call(helper, choose.pick((1, 0, 2)))
            except Unfit:
                terms = [b.apply(1)]
            else:
                if helper.results > 1:  # u, v = g(x): sometimes only some are read
                    names = targets(helper.results, term.variables)
                    bind(names, term, term.value)
                    if choose.boolean():
                        kept = choose.pick(names)
                        b.unused.update(n for n in names if n != kept)
                    return True
                terms = [term]
                kind = choose.pick(("new", "rebind"))
        elif kind == "view":
            terms = _read_then_viewed(b)
        elif kind == "fan-out":
            terms = [_fanned_out(b)]
        else:
            terms = [b.apply(choose.pick((1, 2, 0)))]
        called = False
        for term in terms:
            several = _taken_from(term.node)
            if several is not None and choose.boolean():
                # w, v = np.linalg.eigh(...): every result bound, rather than one taken
                whole = Term(several[0], b.evaluate(several[0]), term.variables)
                whole = dataclasses.replace(whole, rules=term.rules, checks=term.checks)
                called |= _calls(term.node, b.callees)
                bind(targets(several[1], term.variables), whole, list(whole.value))
                continue
            old = [n for n in rebindable() if keeps(n, term)]
            read = [n for n in old if n in term.variables]
            if kind == "rebind" and read and choose.boolean():
                target = choose.pick(read)  # h = h * 2
            elif kind == "rebind" and old:
                target = choose.pick(old)
            else:
                target = choose.weighted(fresh()) if fresh() else f"t{len(body)}"
            called |= _calls(term.node, b.callees)
            bind([target], term, [term.value])
        return called

    def shifted() -> bool:
        """A shift bound to a name, then a value computed from the value shifted (a
        softmax, a log-sum-exp...): ``_shift``; a new value where none fits."""
        names = fresh()
        if len(names) < 2:
            return statement(1, "new")
        name = choose.weighted(names)
        try:
            shift, use = _shift(b, name)
        except Unfit:
            return statement(1, "new")
        bind([name], shift, [shift.value])
        target = choose.weighted(fresh()) if fresh() else f"t{len(body)}"
        bind([target], use, [use.value])
        return False

    def updated(number: int) -> bool:
        """A new value, then ``h += v`` (``-=``, ``*=``) on it: in place on an array the
        forward just computed, which nothing else shares (no view, no call: gradgen refuses
        an update of what may share memory, and is right to)."""
        applied = len(rules)
        called = statement(number, "new")
        name = body[-1].partition(" = ")[0]
        viewed = any(getattr(_RULES_BY_NAME.get(r), "view", False) for r in rules[applied:])
        if called or "," in name or viewed:
            return called
        value = b.env.get(name)
        if value is None or not is_float(value):
            return called
        shape = numpy.shape(value)
        others = sorted(
            n
            for n, v in b.env.items()
            if n != name
            and n not in b.hidden
            and is_float(v)
            and _broadcasts_into(numpy.shape(v), shape)
        )
        if not others:
            return called
        other = choose.pick(others)
        op = choose.pick(("+", "-", "*"))
        update = {"+": operator.iadd, "-": operator.isub, "*": operator.imul}[op]
        try:  # as the forward runs it: in place into an array (a copy here), else rebinding
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                warnings.filterwarnings("ignore", "`row_stack`", DeprecationWarning)
                new = update(
                    numpy.copy(value) if isinstance(value, numpy.ndarray) else value, b.env[other]
                )
        except (TypeError, ValueError, ArithmeticError, RuntimeWarning):
            return called
        if not well_conditioned(new):
            return called
        body.append(f"{name} {op}= {other}")
        line_checks.append(())
        b.read.add(other)
        b.unused.discard(other)
        b.bind(name, new)
        return called

    def looped(number: int, steps: Steps, depth: int) -> bool:
        """A loop over ``steps`` (``looping``), drawn again where one does not fit (all it
        bound undone); none after a few tries. Whether it calls a function of the module."""
        for _ in range(3):
            saved = (len(body), len(line_checks), len(rules), list(locals_), len(b.loops))
            state = (dict(b.env), list(b.names), set(b.read), set(b.unused), list(b.called))
            flags = dict(b.flags)
            try:
                if isinstance(steps, Items):
                    return item_looping(number, steps)
                return looping(number, steps, depth)
            except Unfit:
                del body[saved[0] :], line_checks[saved[1] :], rules[saved[2] :]
                locals_[:] = saved[3]
                del b.loops[saved[4] :]
                b.env, b.names, b.read, b.unused, b.called = state
                b.flags = flags
        return False

    def looping(number: int, steps: Steps, depth: int) -> bool:
        """``for t in range(3):`` and its statements, built at the first step: statements of
        every kind (``number``: the first one's), one rebinding a value bound before the
        loop (carried: ``h = np.tanh(h * w + xs[t])``), sometimes an accumulator made
        before it (``s = 0.0``), an append to a list made empty before it and read whole
        after it (``np.stack(hs, axis=1)``, ``np.concatenate``, ``sum``), a nested loop.
        Then every step is run after the checks of its statements (``Block``)."""
        if choose.index(4) == 0:
            target = choose.weighted(fresh()) if fresh() else None
            if target is not None:  # an accumulator: s = 0.0, then s = s + ... each step
                body.append(f"{target} = 0.0")
                line_checks.append(())
                b.bind(target, 0.0)
                if target not in locals_:
                    locals_.append(target)
        taken = {s.variable for s in b.loops}
        variable = next((v for v in LOOP_VARIABLES if v not in b.env and v not in taken), None)
        whiling = _whiling(choose, steps)  # while <test> and n < K: its counter the variable
        if whiling:
            variable = next((v for v in COUNTER_NAMES if v not in b.env and v not in taken), None)
        filled = {n for line in body for n in _entry_parts(line)[0]}
        filled |= {n for scope in b.loops for n in scope.lists}
        name = next((n for n in LIST_NAMES if n not in b.env and n not in filled), None)
        if variable is None or name is None:
            raise Unfit("no name for a loop")
        lists = (name,) if choose.boolean() else ()
        outside = dict(b.env)
        start = len(body)
        b.loops.append(Scope(variable, steps.values, frozenset(outside), lists))
        b.env[variable] = steps.values[0]
        called = False
        count = choose.weighted([(0, 1), (1, 3), (2, 3), (3, 1)])
        actions = ["statement"] * count
        actions.insert(count - choose.index(min(count, 2) + 1), "carry")  # most often last
        if lists:
            actions.insert(choose.index(len(actions) + 1), "append")
        arrays: list[tuple[str, str]] = []  # the arrays it fills: their names, how made
        if b.mode == "array" and not whiling and choose.index(3) == 0:
            actions.insert(choose.index(len(actions) + 1), "fill")
        if depth == 0 and choose.index(4) == 0:
            actions.insert(choose.index(len(actions) + 1), "nested")
        if b.branching and not b.branches and choose.boolean():
            actions.insert(choose.index(len(actions) + 1), "branch")
        if not whiling and len(steps.values) > 1 and choose.index(4) == 0:
            # if t == 2: continue, before no append or fill (gradgen refuses those in an
            # if, which the rest of the step is read as)
            last = max((i for i, a in enumerate(actions) if a in ("append", "fill")), default=-1)
            actions.insert(last + 1 + choose.index(len(actions) - last), "continue")
        try:
            for action in actions:
                if action == "statement":
                    called |= drawn_statement(number)
                    number += 1
                elif action == "carry":
                    called |= carry()
                elif action == "append":
                    item = (
                        b.variable(lambda t: is_float(t.value)) if choose.index(4) else b.apply(1)
                    )
                    if not is_float(item.value):
                        raise Unfit("a list of values with no gradient")
                    body.append(f"{name}.append({item.text})")
                    line_checks.append(item.checks)
                    rules.extend(item.rules)
                    b.read |= item.variables
                    called |= _calls(item.node, b.callees)
                elif action == "branch":
                    called |= branched(number, 0)
                elif action == "fill":
                    called |= filling(variable, steps, arrays)
                elif action == "continue":
                    body.append(f"if {variable} == {choose.pick(steps.values[1:])}:\n    continue")
                    line_checks.append(())
                else:
                    inner = _literal_steps(choose, 1 + choose.index(3))
                    called |= looped(number, inner, depth + 1)
        finally:
            b.loops.pop()
        lines, checks = body[start:], line_checks[start:]
        del body[start:], line_checks[start:]
        bound = [n for line in lines for n in _entry_parts(line)[0]]
        carried = tuple(n for n in dict.fromkeys(bound) if n in outside)
        if not carried:
            raise Unfit("a loop carrying nothing")
        block = Block(variable, steps, lists, lines, checks, carried, tuple(arrays))
        b.env = dict(outside)
        if whiling:
            block = _bounded_while(b, block, outside)
        block(b)  # every step, from the values before the loop
        after = b.env
        b.env = {n: after[n] for n in outside}
        b.names = [n for n in b.names if n in outside]
        locals_[:] = [n for n in locals_ if n in outside]
        if depth == 0 and not b.branches and choose.boolean():
            # Values its steps bind, read after it: the last step's, as in Python (gradgen
            # binds them to None before a loop of the function's body and carries them).
            # Not a name an earlier statement binds where it may not run (in some sides of
            # an ``if``, in a loop): gradgen refuses it, rightly (bound before the loop or
            # not, depending on a test).
            earlier = [n for line in body for n in _entry_parts(line)[0]]
            for name in _last_values(lines, outside, (variable, *lists, *earlier)):
                if name in after and is_float(after[name]) and choose.boolean():
                    b.bind(name, after[name])
                    locals_.append(name)
        body.append(block.source())
        line_checks.append((block,))
        for array, _ in arrays:  # read after the loop as any value
            b.bind(array, after[array])
            locals_.append(array)
        for filled_list in lists:
            b.env[filled_list] = after[filled_list]
            combined(filled_list)
            del b.env[filled_list]
        return called

    def branched(number: int, depth: int) -> bool:
        """An ``if`` (``branching``), drawn again where one does not fit (all it bound
        undone); none after a few tries. Whether it calls a function of the module."""
        for _ in range(3):
            saved = (len(body), len(line_checks), len(rules), list(locals_), len(b.branches))
            state = (dict(b.env), list(b.names), set(b.read), set(b.unused), list(b.called))
            flags = dict(b.flags)
            try:
                return branching(number, depth)
            except Unfit:
                del body[saved[0] :], line_checks[saved[1] :], rules[saved[2] :]
                locals_[:] = saved[3]
                del b.branches[saved[4] :]
                b.env, b.names, b.read, b.unused, b.called = state
                b.flags = flags
        return False

    def branching(number: int, depth: int) -> bool:
        """``if test:`` and its statements, sometimes ``elif`` and ``else``: each side built
        from the values before the ``if`` (statements of every kind, sometimes a nested
        ``if`` or a loop), the values after it those of the side the forward takes here. A
        value bound before the ``if`` that a side rebinds keeps its shape (the sides join
        into one value; a side that does not rebind it leaves it as it was); a new name
        bound in every side (with an ``else``) is read after it where the sides agree on
        its shape, one bound in some sides only is not (gradgen refuses that, and is
        right to). The forward runs the ``if`` as ``Branch`` says: the test, then the
        side it takes."""
        tests: list[Test] = []
        for _ in range(choose.weighted([(1, 5), (2, 2)])):
            tests.append(_draw_test(b, tests))
        has_else = choose.index(3) != 0
        # Sometimes one statement a side: where both bind one name, a conditional expression.
        single = has_else and len(tests) == 1 and choose.index(2) == 0
        taken: int | None = len(tests) if has_else else None
        for index, test in enumerate(tests):
            if test.decide(b):
                taken = index
                break
        before, before_names, before_locals = dict(b.env), list(b.names), list(locals_)
        arms: list[tuple[list[str], list[tuple[Check, ...]], dict[str, Any], list[str]]] = []
        called = False
        # A side that raises, one the flags do not take here: at the top of f, on flags.
        raising = -1
        flagged = all(t.kind in ("flag", "mode") for t in tests)
        if flagged and depth == 0 and not b.loops and not single and choose.index(3) == 0:
            others = [i for i in range(len(tests) + has_else) if i != taken]
            raising = choose.pick(others) if others else -1
        b.branches.append(before)
        try:
            for arm in range(len(tests) + has_else):
                b.env, b.names = dict(before), list(before_names)
                locals_[:] = before_locals
                if arm == raising:
                    arms.append(([RAISED], [()], dict(before), list(before_names)))
                    continue
                at = len(body)
                actions = ["statement"] * choose.weighted([(1, 4), (2, 3), (3, 1)])
                if single:
                    actions = ["statement"]
                    first = arms[0][0] if arms else []
                    bound_first = re.match(r"(\w+) = ", first[0]) if len(first) == 1 else None
                    same_target[:] = [bound_first.group(1)] if bound_first else []
                elif depth == 0 and choose.index(5) == 0:
                    actions.insert(choose.index(len(actions) + 1), "nested")
                if not single and not b.loops and choose.index(6) == 0:
                    actions.insert(choose.index(len(actions) + 1), "loop")
                for action in actions:
                    if action == "statement":
                        called |= drawn_statement(number)
                        number += 1
                    elif action == "nested":
                        called |= branched(number, depth + 1)
                    else:
                        called |= looped(number, _literal_steps(choose, 1 + choose.index(3)), 1)
                lines, checks = body[at:], line_checks[at:]
                del body[at:], line_checks[at:]
                if not lines:
                    raise Unfit("an empty side")
                arms.append((lines, checks, dict(b.env), list(b.names)))
        finally:
            b.branches.pop()
            same_target.clear()
        ran = [arm for arm in arms if arm[0] != [RAISED]]
        bound = [{n for line in arm[0] for n in _entry_parts(line)[0]} for arm in ran]
        # After the 'if', only the sides that do not raise have run.
        envs = [arm[2] for arm in ran] + ([] if has_else else [before])
        joined = []
        for name in dict.fromkeys(n for names in bound for n in sorted(names)):
            if name in before:
                if any(
                    shape(env[name]) != shape(before[name])
                    or is_float(env[name]) != is_float(before[name])
                    for env in envs
                ):
                    raise Unfit(f"{name} changes shape (or dtype) in a side")
            elif all(name in env for env in envs) and all(
                shape(env[name]) == shape(envs[0][name])
                and is_float(env[name]) == is_float(envs[0][name])
                for env in envs
            ):
                joined.append(name)
        after, after_names = (before, before_names) if taken is None else arms[taken][2:]
        b.env = {n: v for n, v in after.items() if n in before or n in joined}
        b.names = [n for n in after_names if n in b.env]
        locals_[:] = [*before_locals, *(n for n in joined if n not in before_locals)]
        bindings = [re.fullmatch(r"(\w+) = ([^\n]+)", arm[0][0]) for arm in arms]
        if (
            len(arms) == 2
            and has_else
            and all(len(arm[0]) == 1 for arm in arms)
            and bindings[0] is not None
            and bindings[1] is not None
            and bindings[0].group(1) == bindings[1].group(1)
        ):
            # The same, as a conditional expression: y = a if test else b.
            name, then, orelse = bindings[0].group(1), bindings[0].group(2), bindings[1].group(2)
            body.append(f"{name} = {then} if {tests[0].text} else {orelse}")
            sides = [a[:2] for a in arms]
            line_checks.append((Branch([t.decide for t in tests], sides, expression=True),))
            return called
        parts = []
        for index, (lines, _, _, _) in enumerate(arms):
            if index == 0:
                parts.append(f"if {tests[0].text}:")
            elif index < len(tests):
                parts.append(f"elif {tests[index].text}:")
            else:
                parts.append("else:")
            parts.append(textwrap.indent("\n".join(lines), "    "))
        body.append("\n".join(parts))
        line_checks.append((Branch([t.decide for t in tests], [a[:2] for a in arms]),))
        return called

    def carry() -> bool:
        """A value bound before the loop rebound from itself (and most often a sequence's
        step), through a bounded function or a small factor; whether it calls a function."""
        outside = b.loops[-1].outside
        candidates = [n for n in rebindable() if n in outside and is_float(b.env[n])]
        if not candidates:
            raise Unfit("nothing to carry")
        name = choose.weighted([(n, max(1, 4 - i)) for i, n in enumerate(candidates)])
        carried = b.name_term(name)
        dims = shape(carried.value)
        combining = [(f, 1 + 2 * (f.rule.name in ("add", "mul"))) for f in forms_for(b.mode)]
        combining = [(f, w) for f, w in combining if _combines(f)]
        squashing = [f for f in forms_for(b.mode) if f.rule.name in SQUASHING]
        scaling = next(f for f in forms_for(b.mode) if f.rule.name == "mul")
        for _ in range(ATTEMPTS):
            try:
                other = b.operand(
                    1,
                    lambda t: (
                        t.value is not None
                        and is_float(t.value)
                        and _broadcasts_into(shape(t.value), dims)
                    ),
                )
                pair = {"x": carried, "y": other}
                if choose.boolean():
                    pair = {"x": other, "y": carried}
                term = b.try_form(choose.weighted(combining), 0, pair)
                how = choose.weighted([("squash", 3), ("scale", 1), ("none", 1)])
                if how == "squash":
                    term = b.try_form(choose.pick(squashing), 0, {"x": term})
                elif how == "scale":
                    half = Term(ast.Constant(0.5), 0.5)
                    term = b.try_form(scaling, 0, {"x": term, "y": half})
            except Unfit:
                continue
            if shape(term.value) == dims and is_float(term.value):
                bind([name], term, [term.value])
                return _calls(term.node, b.callees)
        raise Unfit(f"no value carried in {name}")

    def combined(name: str) -> None:
        """The list ``name`` a loop filled, read whole after it (``np.stack(hs, axis=1)``,
        ``np.concatenate(hs)``, ``sum(hs)``), sometimes inside an application."""
        items = b.env[name]
        rank = ndim(items[0])
        kinds_ = [("sum", 1)]
        if b.mode == "array":
            kinds_ += [("stack", 3), ("concatenate", 2 if rank else 0)]
        kind = choose.weighted(kinds_)
        if kind == "sum":
            text = f"sum({name})"
        else:
            axes = range(-rank - 1, rank + 1) if kind == "stack" else range(-rank, rank)
            axis = choose.pick([None, *axes])
            text = f"{b.alias}.{kind}({name})"
            if axis is not None:
                spelled = f"axis={axis}" if choose.boolean() else str(axis)
                text = f"{b.alias}.{kind}({name}, {spelled})"
        node = _parse(text)

        def check(b: Builder) -> Any:
            value = b.evaluate(node)
            if not (well_conditioned(value) and is_float(value)):
                raise Unfit(f"{text}: ill-conditioned value")
            return value

        term = Term(node, check(b), frozenset([name]), (), (check,))
        if choose.boolean():
            for _ in range(ATTEMPTS // 2):
                form = choose.weighted(b.forms)
                try:
                    inside = b.try_form(form, 0, {form.rule.inputs[0]: term})
                except Unfit:
                    continue
                reads = [n for n in ast.walk(inside.node) if isinstance(n, ast.Name)]
                if sum(n.id == name for n in reads) == 1:  # a list is read once (1 + v * v)
                    term = inside
                    break
        target = choose.weighted(fresh()) if fresh() else f"t{len(body)}"
        bind([target], term, [term.value])

    def filling(variable: str, steps: Steps, made: list[tuple[str, str]]) -> bool:
        """Writes at the loop's step into an array made just before the loop (``hs[t] =
        h``, ``hs[:, t] = v``, or ``hs[t, 0] = a`` and ``hs[t, 1] = c``): of the item's
        shape, or one numpy spreads it over; made by np.zeros, np.ones, np.empty (where the
        loop writes every entry) or their ``_like`` of a value of its shape. Whether it
        calls a function of the module."""
        written = {n for line in body for part in _entry_parts(line) for n in part}
        names = [n for n in FILLED_NAMES if n not in b.env and n not in written]
        names = [n for n in names if n not in {m for scope in b.loops for m in scope.lists}]
        names = [n for n in names if n not in {m for m, _ in made} and n not in reserved]
        if not names:
            raise Unfit("no name for a filled array")
        name = names[0]
        item = b.variable(lambda t: is_float(t.value)) if choose.index(3) else b.apply(1)
        if not is_float(item.value):
            raise Unfit("an array of values with no gradient")
        dims = shape(item.value)
        entries = dims
        if dims and dims[0] == 1 and choose.index(3) == 0:
            entries = dims[1:]  # numpy drops the item's leading 1s
        elif choose.index(4) == 0:  # numpy spreads the item over its entries
            wider = {shape(b.env[n]) for n in b.names if n in b.env and is_float(b.env[n])}
            wider = {w for w in wider if w != dims and len(w) <= 2 and _broadcasts_into(dims, w)}
            if wider:
                entries = choose.pick(sorted(wider))
        size = max(steps.values) + 1
        kind = choose.weighted([("row", 4), ("column", 2 if entries else 0), ("pair", 2)])
        items = [item]
        if kind == "pair":  # two entries of one step, apart in a number
            items.append(
                b.operand(
                    1,
                    lambda t: is_float(t.value) and _broadcasts_into(shape(t.value), entries),
                )
            )
            indexes = [f"{variable}, 0", f"{variable}, 1"]
            if choose.boolean():
                indexes.reverse()
            dims = (size, 2, *entries)
        else:
            axis = 1 + choose.index(len(entries)) if kind == "column" else 0
            pieces = [":"] * axis + [variable]
            if axis < len(entries) and choose.boolean():
                pieces.append(":")  # hs[:, t, :] as the RNN's example writes it
            indexes = [", ".join(pieces)]
            dims = (*entries[:axis], size, *entries[axis:])
        how = [("zeros", 3), ("ones", 2)]
        if set(steps.values) == set(range(size)):
            how.append(("empty", 2))  # every entry written: none left as it was
        function = choose.weighted(how)
        like = [
            n
            for n in b.loops[-1].outside
            if is_float(b.env.get(n)) and shape(b.env.get(n)) == dims and n not in b.labels
        ]
        if like and choose.boolean():
            made.append((name, f"{b.alias}.{function}_like({choose.pick(sorted(like))})"))
        elif len(dims) == 1 and choose.boolean():
            made.append((name, f"{b.alias}.{function}({dims[0]})"))
        else:
            made.append((name, f"{b.alias}.{function}({dims!r})"))
        reserved.add(name)
        called = False
        for index, term in zip(indexes, items, strict=True):
            body.append(f"{name}[{index}] = {term.text}")
            line_checks.append(term.checks)
            rules.extend(term.rules)
            b.read |= term.variables
            called |= _calls(term.node, b.callees)
        return called

    def item_looping(number: int, items: Items) -> bool:
        """``for W, bias in layers:`` over the items of ``f``'s list parameter
        (``_plan_items``; ``for W in weights:``, ``for i, (W, bias) in enumerate(layers):``),
        its statements built at the first item as ``looping`` builds a loop's: the item's
        arrays read as values (and rebound sometimes), a value from before the loop carried
        through them, sometimes an accumulator made before it, an append, an ``if``, a loop
        nested in it, a call of a helper most likely reading the item; the item's arrays
        most often reach what the step hands on (``_reaches``). Then every item is run after
        the checks of its statements (``ItemBlock``); what the steps bind (the item's arrays
        too) is read after the loop sometimes, the last item's. Whether it calls a function
        of the module."""
        if choose.index(4) == 0 and fresh():  # an accumulator: loss = loss + np.sum(W * W)
            target = choose.weighted(fresh())
            body.append(f"{target} = 0.0")
            line_checks.append(())
            b.bind(target, 0.0)
            locals_.append(target)
        filled = {n for line in body for n in _entry_parts(line)[0]}
        name = next((n for n in LIST_NAMES if n not in b.env and n not in filled), None)
        lists = (name,) if name is not None and choose.boolean() else ()
        outside = dict(b.env)
        start = len(body)
        # Nothing counts the steps but enumerate's number, where it is written.
        b.loops.append(Scope(items.number, items.values, frozenset(outside), lists))
        b.env[items.index] = items.values[0]
        body.append(items.read())
        line_checks.append(())
        _execute(b, items.read())
        locals_.extend(items.targets)
        if not items.number:
            del b.env[ITEM_AT]
        called = False
        actions = ["statement"] * choose.weighted([(0, 1), (1, 3), (2, 3), (3, 1)])
        actions.insert(len(actions) - choose.index(min(len(actions), 2) + 1), "carry")
        if b.callees and choose.index(4):
            actions.insert(0, "call")  # first: the item's arrays the most recent values
        if lists:
            actions.insert(choose.index(len(actions) + 1), "append")
        if choose.index(4) == 0:
            actions.insert(choose.index(len(actions) + 1), "nested")
        if b.branching and not b.branches and choose.index(4):
            actions.insert(choose.index(len(actions) + 1), "branch")
        try:
            for action in actions:
                if action == "statement":
                    called |= drawn_statement(number)
                    number += 1
                elif action == "call":
                    called |= statement(number, "call")
                    number += 1
                elif action == "carry":
                    called |= carry()
                elif action == "append":
                    item = b.variable(lambda t: is_float(t.value))
                    body.append(f"{lists[0]}.append({item.text})")
                    line_checks.append(item.checks)
                    b.read |= item.variables
                elif action == "branch":
                    called |= branched(number, 0)
                else:
                    called |= looped(number, _literal_steps(choose, 1 + choose.index(3)), 1)
        finally:
            b.loops.pop()
        lines, checks = body[start:], line_checks[start:]
        del body[start:], line_checks[start:]
        bound = [n for line in lines for n in _entry_parts(line)[0]]
        carried = tuple(n for n in dict.fromkeys(bound) if n in outside)
        if not carried:
            raise Unfit("a loop carrying nothing")
        # The items' arrays reach what the step hands on (most often: otherwise the list's
        # gradient is None, which a few programs check).
        if not _reaches(lines[1:], items.targets, (*carried, *lists)) and choose.index(6):
            raise Unfit("a loop over a list's items whose steps hand none of them on")
        block = ItemBlock(items.index, items, lists, lines, checks, carried)
        b.env = dict(outside)
        block(b)  # every item, from the values before the loop
        after = b.env
        b.env = {n: after[n] for n in outside}
        b.names = [n for n in b.names if n in outside]
        locals_[:] = [n for n in locals_ if n in outside]
        if not b.branches and choose.boolean():
            # Values its steps bind (the item's arrays too), read after it: the last item's,
            # as after ``looping``'s loops.
            earlier = [n for line in body for n in _entry_parts(line)[0]]
            for name in _last_values(lines, outside, (items.index, *lists, *earlier)):
                if name in after and is_float(after[name]) and choose.boolean():
                    b.bind(name, after[name])
                    locals_.append(name)
        body.append(block.source())
        line_checks.append((block,))
        for filled_list in lists:
            b.env[filled_list] = after[filled_list]
            combined(filled_list)
            del b.env[filled_list]
        return called

    called = False
    loop_at = -1 if loop is None else choose.index(statements + 1)
    branch_at = [choose.index(statements + 1) for _ in range(branches)]
    for number in range(statements + 1):
        if number == loop_at:
            assert loop is not None
            called |= looped(number, loop, 0)
        for _ in range(branch_at.count(number)):
            called |= branched(number, 0)
        if number == statements:
            break
        called |= drawn_statement(number)
    if must_call and not called:
        called = statement(max(statements, 1), "call")  # (not the first: focus's)
    again = [h for h in b.callees if any(_is_loop(line) for line in h.body.lines)]
    if must_call and again and choose.boolean():
        # A helper with a loop called once more, most often with other arguments carrying
        # gradients: several backwards of it read its one F_forward's steps.
        callees, b.callees = b.callees, [choose.pick(again)]
        try:
            statement(max(statements, 1) + 1, "call")
        finally:
            b.callees = callees

    if body and choose.index(3) != 0:
        first = b.variable(lambda t: is_float(t.value))  # most often the last statement's
    elif bare_ok and choose.index(4) == 0:
        first = b.variable(lambda t: is_float(t.value))  # def g(x): return x
    else:
        first = _focused(b, focus) if not body else b.apply(1)
    outs = [first]
    bound = {n for line in body for n in _entry_parts(line)[0]}
    names = [*(n for n in locals_ if n in b.env), *(n for n in params if n in bound)]
    for _ in range(results - 1):
        unread = [
            n for n in _unread(body, ", ".join(t.text for t in outs), names) if n not in b.unused
        ]
        kind = choose.weighted([("unread", 3), ("variable", 2), ("apply", 2), ("again", 1)])
        if kind == "unread" and unread:
            outs.append(b.name_term(choose.pick(unread)))
        elif kind == "again":
            outs.append(choose.pick(outs))  # return h, h
        elif kind == "apply":
            outs.append(b.apply(1))
        else:
            outs.append(b.variable(lambda t: is_float(t.value)))
    # Values no later statement reads are combined into the (first) result, so that few
    # statements are dead (gradgen drops those, and they test nothing); where their shapes
    # do not broadcast, their total is.
    unread = _unread(body, ", ".join(t.text for t in outs), names)
    combiners = [(f, 1) for f in forms_for(b.mode) if _combines(f)]
    for name in [n for n in unread if n not in b.unused][:3]:
        read = b.name_term(name)
        for attempt in range(ATTEMPTS // 2):
            form = choose.weighted(combiners)
            try:
                if attempt == ATTEMPTS // 4 and b.mode == "array" and ndim(read.value):
                    read = _wrap(b, read, "numpy.sum(v)")
                outs[0] = b.try_form(form, 0, {"x": outs[0], "y": read})
                break
            except Unfit:
                continue
    for term in outs:
        rules.extend(term.rules)
        if not is_float(term.value):
            raise Unfit("a result is not a float")
    return Body(body, outs, rules, line_checks, [t.checks for t in outs])


def _last_values(lines: list[str], outside: dict[str, Any], others: tuple[str, ...]) -> list[str]:
    """The names the statements of a loop's steps bind (not in a nested loop or an ``if``)
    that were not bound before it, other than ``others`` (its variable, its lists)."""
    found = [
        name
        for line in lines
        if "\n" not in line and not _APPEND.match(line) and not _WRITE.match(line)
        for name in _entry_parts(line)[0]
    ]
    return [n for n in dict.fromkeys(found) if n not in outside and n not in others]


def _calls(node: ast.AST, callees: Sequence[Helper]) -> bool:
    """Does ``node`` call one of ``callees``?"""
    names = {h.function.name for h in callees}
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names
        for n in ast.walk(node)
    )


# The functions of the rules with several results (np.linalg.slogdet): how many each has.
SEVERAL_RESULTS = {
    form.function: len(form.rule.results) for form in FORMS if form.rule.results and form.function
}


def _taken_from(node: ast.expr) -> tuple[ast.expr, int] | None:
    """``np.linalg.eigh(...)[1]``: the call of an operation with several results, and how
    many it has; None for any other value."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call)):
        return None
    func = node.value.func
    if isinstance(func, ast.Attribute) and func.attr in SEVERAL_RESULTS:
        return node.value, SEVERAL_RESULTS[func.attr]
    return None


def _unpacked(
    b: Builder, rebindable: list[str], targets: Callable[[int, frozenset[str]], list[str]]
) -> tuple[list[str], list[Term]]:
    """``a, b = b, a`` (a swap) or ``a, b = h * 2, x``: the names and the values."""
    floats = [n for n in rebindable if is_float(b.env[n])]
    if len(floats) >= 2 and b.choose.boolean():
        first = floats.pop(b.choose.index(len(floats)))
        second = b.choose.pick(floats)
        return [first, second], [b.name_term(second), b.name_term(first)]
    values = [b.operand(1) for _ in range(b.choose.pick((2, 2, 3)))]
    read = frozenset().union(*(t.variables for t in values))
    return targets(len(values), read), values


def build_program(
    choose: Chooser,
    mode: str,
    exclusions: Sequence[Callable[[Application], bool]] = (),
    focus: Form | None = None,
    modules: int = 0,
    several: int = 0,
    loops: int = 0,
    branches: int = 0,
) -> Program:
    """A random program: parameters, statements applying forms of the table (fan-out,
    rebinding, aliases, nested expressions, tuple unpacking), a return. One in ``modules``
    programs (none if 0) is a module: ``f`` calls 1 to 3 other functions of it, which may
    call each other; one in ``several`` (none if 0) returns 2 or 3 values; one in ``loops``
    (none if 0) has a loop of 1 to ``MAX_STEPS`` steps (``_plan_loop``); one in ``branches``
    (none if 0) has ``if`` statements (at the top, in its loop, in its helpers: the flags
    their tests read are parameters of ``f``, and the program is checked at every
    combination of their values, ``Program.variants``). Unfit if it cannot be built."""
    b = Builder(choose, mode, exclusions)
    if mode == "array":
        b.alias = choose.weighted([("np", 4), ("numpy", 1)])
    rng = numpy.random.default_rng(choose.index(2**32))
    constants = []
    for name, text in MODULE_CONSTANTS[: choose.weighted([(0, 3), (1, 1), (2, 1), (3, 1)])]:
        constants.append(f"{name} = {text}")
        b.env[name] = eval(text, {}, dict(b.env))
        b.module_constants.append(name)
    branching = bool(branches) and choose.index(branches) == branches - 1  # none: simplest
    b.branching = b.flaggable = branching
    setting = Setting(mode, b.alias, exclusions, dict(b.env), branching)

    params: list[tuple[str, tuple[int, ...]]] = []
    args: dict[str, Any] = {}
    for name in PARAMETER_NAMES[: 1 + choose.index(4)]:
        dims = choose.weighted(ARRAY_SHAPES) if mode == "array" else ()
        value = rng.uniform(0.2, 2.0, size=dims) * rng.choice([-1.0, 1.0], size=dims)
        if dims and choose.index(8) == 0:
            # An integer array: its gradient must still be a float array of its shape.
            value = rng.choice([-2, -1, 1, 2], size=dims)
        args[name] = float(value) if dims == () else value
        params.append((name, dims))
        b.bind(name, args[name])
    if mode == "array" and choose.index(5) == 0:
        count = choose.pick((3, 2))
        args[LABEL_NAME] = rng.integers(0, 2, size=count)
        params.append((LABEL_NAME, (count,)))
        b.labels.append(LABEL_NAME)
        b.bind(LABEL_NAME, args[LABEL_NAME])

    # The helpers, each able to call those built before it (so no recursion), their
    # parameters most often of the shapes of f's.
    shapes = [dims for name, dims in params if name not in b.labels]
    helpers: list[Helper] = []
    if modules and choose.index(modules) == modules - 1:  # one function is the simplest
        names = list(HELPER_NAMES)
        for _ in range(1 + choose.index(3)):
            name = names.pop(choose.index(len(names)))
            helper = _build_helper(choose, setting, name, helpers, rng, shapes, bool(loops))
            if helper is not None:
                helpers.append(helper)
        if not helpers:
            raise Unfit("no helper could be built")
        b.callees = list(helpers)
    steps = None
    if loops and choose.index(loops) == loops - 1:  # no loop is the simplest
        steps = _plan_loop(choose, b, rng, params, args, shapes)

    statements = choose.index(6)
    results = 1
    if several and choose.index(several) == several - 1:  # one value is the simplest
        results = choose.pick((2, 2, 3))
    names = [n for n, _ in params]
    ifs = 0
    if branching:  # at the top, or (with a loop) in the loop only, sometimes
        ifs = choose.weighted([(0, 1), (1, 3)] if steps else [(1, 3), (2, 1)])
    body = _function_body(
        b,
        names,
        focus,
        statements,
        results,
        must_call=bool(helpers),
        updates=True,
        loop=steps,
        branches=ifs,
    )
    returned = [t.text for t in body.results]
    item_lists = (steps,) if isinstance(steps, Items) else ()
    for items in item_lists:  # its loop could not be built: the list would go unread
        if not any(f"{items.header()}\n" in f"\n{line}" for line in body.lines):
            raise Unfit(f"no loop over the items of {items.iterable}")
    flags = dict(b.flags)
    defaults: dict[str, str | None] = {}
    with_defaults = choose.index(4) != 0
    for name, values in flags.items():
        params.append((name, ()))
        args[name] = values[0]
        defaults[name] = repr(choose.pick(values)) if with_defaults else None
    variants = [dict(zip(flags, v, strict=True)) for v in itertools.product(*flags.values())]
    out_shapes = tuple(shape(t.value) for t in body.results)
    raising = []
    for variant in variants[1:]:  # the program at the other values of its flags
        try:
            _run_at(setting, helpers, {**args, **variant}, body, out_shapes)
        except Raised:
            raising.append(variant)

    # The helpers f calls, at any depth, in the module in any order (before or after f).
    reached: list[Helper] = []
    pending = [body.lines, returned]
    while pending:
        texts = pending.pop()
        for helper in helpers:
            if helper not in reached and any(_calls(_tree(t), [helper]) for t in texts):
                reached.append(helper)
                pending.append([*helper.function.body, *helper.function.results])
    if helpers and not reached:
        raise Unfit("f calls no helper")
    functions = [h.final() for h in helpers if h in reached]
    ordered = [functions.pop(choose.index(len(functions))) for _ in range(len(functions))]
    main_at = choose.index(len(ordered) + 1)

    upstream: Any = None
    upstreams: list[Any] = []
    omitted: list[bool] = []
    if results == 1:
        if out_shapes[0] == ():
            upstream = None if choose.boolean() else float(rng.normal())
        else:
            upstream = rng.normal(size=out_shapes[0])
    else:
        for dims in out_shapes:
            if choose.index(4) == 0:  # this result does not reach the loss
                upstreams.append(None)
                omitted.append(choose.boolean())
            else:
                upstreams.append(float(rng.normal()) if dims == () else rng.normal(size=dims))
                omitted.append(False)
    texts = [*constants, *body.lines, *returned]
    for function in ordered:
        texts += [*function.body, *function.results]
    drop_import = mode == "array" and choose.index(4) == 0
    # Scalar code in a module that also imports numpy: a function of numbers is still
    # scalar code (what gradgen proves of its values decides, not the module's imports).
    scalar_with_numpy = mode == "scalar" and choose.index(3) == 0
    return Program(
        scalar_with_numpy=scalar_with_numpy,
        numpy_import=not (drop_import and _array_syntax_only(texts, b.alias)),
        mode=mode,
        alias=b.alias,
        params=params,
        labels=(*b.labels, *([STEPS_NAME] if STEPS_NAME in b.hidden else []), *flags),
        body=body.lines,
        result=returned[0],
        args=args,
        upstream=upstream,
        out_shape=out_shapes[0],
        rules=tuple(dict.fromkeys(body.rules)),
        constants=tuple(constants),
        results=tuple(returned) if results > 1 else (),
        out_shapes=out_shapes if results > 1 else (),
        upstreams=tuple(upstreams),
        omitted=tuple(omitted),
        helpers=tuple(ordered),
        main_at=main_at,
        defaults=defaults,
        variants=tuple(variants),
        raising=tuple(raising),
        item_lists=item_lists,
    )


def _run_at(
    setting: Setting,
    helpers: Sequence[Helper],
    args: dict[str, Any],
    body: Body,
    out_shapes: tuple[tuple[int, ...], ...],
) -> None:
    """Runs ``f``'s body at ``args`` (another value of a flag: other sides of its ``if``s),
    each statement after the checks that made it well-conditioned where it was built:
    Unfit where one fails, or a result is ill-conditioned or of another shape."""
    b = setting.builder(Chooser(), helpers)  # the checks choose nothing
    b.env.update(args)
    for line, checks in zip(body.lines, body.line_checks, strict=True):
        for check in checks:
            check(b)
        _execute(b, line)
    for term, checks, dims in zip(body.results, body.result_checks, out_shapes, strict=True):
        for check in checks:
            check(b)
        value = b.evaluate(term.node)
        if not (is_float(value) and well_conditioned(value) and shape(value) == dims):
            raise Unfit("a result is ill-conditioned at other values of the flags")


def _plan_loop(
    choose: Chooser,
    b: Builder,
    rng: numpy.random.Generator,
    params: list[tuple[str, tuple[int, ...]]],
    args: dict[str, Any],
    shapes: list[tuple[int, ...]],
) -> Steps:
    """The steps of ``f``'s loop: 1 to ``MAX_STEPS``, counted by a range written out
    (``range(1, 5, 2)``, ``reversed(range(3))``), by the integer parameter ``n`` (gradient
    None) or by the length of the sequence ``xs``, a parameter with an axis of steps read at
    each step (``xs[t]``, ``xs[:, t]``; array code, sometimes with the other bounds too); or
    the items of a list parameter (``_plan_items``)."""
    count = 1 + choose.index(MAX_STEPS)
    bounds = [("literal", 3), ("sequence", 2 if b.mode == "array" else 0), ("parameter", 1)]
    bound = choose.weighted([*bounds, ("items", 2)])
    if bound == "items":
        return _plan_items(choose, b, rng, params, args, shapes)
    steps = _literal_steps(choose, count)
    size = max(steps.values) + 1
    backwards = choose.index(3) == 0
    values = tuple(reversed(range(count))) if backwards else tuple(range(count))
    if bound == "parameter":
        counted = f"range({STEPS_NAME})"
        steps = Steps(f"reversed({counted})" if backwards else counted, values)
        size = count
        args[STEPS_NAME] = count
        params.append((STEPS_NAME, ()))
        b.env[STEPS_NAME] = count
        b.hidden.add(STEPS_NAME)
    if b.mode == "array" and (bound == "sequence" or choose.index(3) == 0):
        small = [dims for dims in shapes if numpy.prod(dims) <= 12]
        base: tuple[int, ...] = (
            choose.pick(small) if small and choose.index(4) else choose.pick(((4,), (3,), ()))
        )
        axis = choose.index(2) if base else 0
        if bound == "sequence":
            size = count
            length = f"{SEQUENCE_NAME}.shape[{axis}]"
            if axis == 0 and choose.boolean():
                length = f"len({SEQUENCE_NAME})"
            steps = Steps(f"reversed(range({length}))" if backwards else f"range({length})", values)
        dims = (*base[:axis], size, *base[axis:])
        value = rng.uniform(0.2, 2.0, size=dims) * rng.choice([-1.0, 1.0], size=dims)
        args[SEQUENCE_NAME] = value
        params.append((SEQUENCE_NAME, dims))
        b.env[SEQUENCE_NAME] = value
        b.hidden.add(SEQUENCE_NAME)
        b.sequences[SEQUENCE_NAME] = axis
    return steps


def _array_syntax_only(texts: list[str], alias: str) -> bool:
    """Do ``texts`` (statements and expressions) use array syntax (``@``, an index, an
    attribute or method of a value) and never name numpy itself (so the import can be left
    out)?"""
    trees = [_tree(text) for text in texts]
    nodes = [node for tree in trees for node in ast.walk(tree)]
    if any(isinstance(n, ast.Name) and n.id == alias for n in nodes):
        return False
    return any(
        isinstance(n, ast.Subscript)
        or (isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult))
        or (
            isinstance(n, ast.Attribute)
            and n.attr != "append"  # a list's method: no array in sight
            and not (isinstance(n.value, ast.Name) and n.value.id == "math")
        )
        for n in nodes
    )


def _combines(form: Form) -> bool:
    """An operator of two values that broadcast (x + y, x * y, ...): to combine results."""
    rule = form.rule
    return rule.broadcasts and form.library is None and rule.inputs == ("x", "y")


def _unread(body: list[str], result: str, names: list[str]) -> list[str]:
    """Of ``names`` (bound by ``body``), those whose last binding nothing later reads."""
    reads = [_entry_parts(line) for line in body]
    read_by_result = {n.id for n in ast.walk(_parse(result)) if isinstance(n, ast.Name)}
    unread = []
    for name in names:
        last = max(i for i, (targets, _) in enumerate(reads) if name in targets)
        if name not in read_by_result and not any(name in used for _, used in reads[last + 1 :]):
            unread.append(name)
    return list(reversed(unread))


# Gradients that share memory: the add gate hands one gradient object to both inputs,
# ``_unbroadcast`` returns its argument, and the gradient of a view (a reshape, a transpose, an
# index) is a view of the gradient of its result. A backward that then accumulates in place
# into one of them silently changes the others. These statement kinds make such programs on
# purpose: views of values combined with other values of the same shape, and one value fanned
# out into several broadcasting operations.
VIEW_FORMS = tuple(f for f in ARRAY_FORMS if f.rule.view)
# Operators that pass the gradient on unchanged (``x + y``: both inputs get ``g`` itself) share
# one gradient object between their inputs: drawn more often.
COMBINING_FORMS = tuple(
    (f, 3 if "g" in f.rule.adjoint_texts else 1) for f in ARRAY_FORMS if _combines(f)
)


def _read_then_viewed(b: Builder) -> list[Term]:
    """Two statements: one reading a value (``a = v * 2``), then a view of another value
    combined with it (``t = v + q.reshape(3, 5)``): in the backward, ``dv`` and the gradient
    of the view share one object, and ``dv`` is added to after the view's gradient is made."""
    partner = b.variable(lambda t: ndim(t.value) >= 1)
    first = _fanned_out(b, partner)
    return [first, _viewed(b, partner)]


def _viewed(b: Builder, partner: Term) -> Term:
    """A view of a value (``u.T``, ``q.reshape(3, 5)``) combined by a broadcasting operator
    with ``partner``, a value of its shape (``v + q.reshape(3, 5)``), or alone."""
    for _ in range(ATTEMPTS):
        try:
            source = b.variable(
                lambda t: (
                    t.variables != partner.variables
                    and numpy.size(t.value) == numpy.size(partner.value)
                )
            )
            view = b.try_form(b.choose.pick(VIEW_FORMS), 0, {"x": source})
            if b.choose.index(4) == 0:
                return view
            if shape(view.value) != shape(partner.value):
                continue
            pair = {"x": view, "y": partner} if b.choose.boolean() else {"x": partner, "y": view}
            return b.try_form(b.choose.weighted(COMBINING_FORMS), 0, pair)
        except Unfit:
            continue
    return b.apply(1)


def _shaped_like(like: Term, term: Term) -> bool:
    return shape(term.value) == shape(like.value)


def _fanned_out(b: Builder, source: Term | None = None) -> Term:
    """A value read again by a broadcasting operator (``s = h + y`` after ``t = h * 2``),
    with a value of the same shape where there is one."""
    for _ in range(ATTEMPTS):
        try:
            read = source or b.variable()
            partner = b.operand(1, functools.partial(_shaped_like, read))
            pair = {"x": read, "y": partner} if b.choose.boolean() else {"x": partner, "y": read}
            return b.try_form(b.choose.weighted(COMBINING_FORMS), 0, pair)
        except Unfit:
            continue
    return b.apply(1)


# --- shifts: c = np.max(h, axis=1, keepdims=True), then a value computed from h - c -----------

# The shift, of the value shifted ({x}) along {a} (None: all its axes, a number): what
# gradgen proves a softmax invariant to, whatever it is (a max, a min, a mean).
SHIFT_FORMS: tuple[tuple[str, str], ...] = (
    ("amax", "{np}.max({x}, axis={a}, keepdims=True)"),
    ("amax", "{x}.max(axis={a}, keepdims=True)"),
    ("mean", "{np}.mean({x}, axis={a}, keepdims=True)"),
    ("amin", "{np}.min({x}, axis={a}, keepdims=True)"),
)
# What is computed from {x} - {c}: its kind, whether it is invariant to the shift (gradgen
# then leaves the shift's gradient out, where it can tell), its text ({b}: another axis).
SHIFT_USES: tuple[tuple[str, bool, str], ...] = (
    (
        "softmax",
        True,
        "{np}.exp({x} - {c}) / {np}.sum({np}.exp({x} - {c}), axis={a}, keepdims=True)",
    ),
    (
        "log-softmax",
        True,
        "{x} - {c} - {np}.log({np}.sum({np}.exp({x} - {c}), axis={a}, keepdims=True))",
    ),
    ("log-sum-exp", True, "{c} + {np}.log({np}.sum({np}.exp({x} - {c}), axis={a}, keepdims=True))"),
    ("scipy softmax", True, "scipy.special.softmax({x} - {c}, axis={a})"),
    ("scipy log_softmax", True, "scipy.special.log_softmax({x} - {c}, axis={a})"),
    ("scipy logsumexp", True, "scipy.special.logsumexp({x} - {c}, axis={a}, keepdims=True) + {c}"),
    ("sum of exponentials", False, "{np}.sum({np}.exp({x} - {c}), axis={a}, keepdims=True)"),
    (
        "softmax along another axis",
        False,
        "{np}.exp({x} - {c}) / {np}.sum({np}.exp({x} - {c}), axis={b}, keepdims=True)",
    ),
    ("softmax plus its shift", False, "scipy.special.softmax({x} - {c}, axis={a}) + 0.5 * {c}"),
)


def _shift(b: Builder, name: str) -> tuple[Term, Term]:
    """A shift of a value along an axis (``c = np.max(h, axis=1, keepdims=True)``, its
    name ``name``; now and then of another value of its shape), and a value computed from
    the value shifted (a softmax of it, a log-sum-exp, a sum of exponentials...): the two
    statements, checked (the max's top unique, the values bounded)."""
    choose = b.choose
    x = b.variable(
        lambda t: isinstance(t.node, ast.Name) and ndim(t.value) >= 1 and is_float(t.value)
    )
    rank = ndim(x.value)
    axis: int | None = None if choose.index(4) == 0 else choose.index(2 * rank) - rank
    source = x
    if choose.index(4) == 0:  # the shift of another value: gradgen can tell where shapes say
        source = b.variable(
            lambda t: (
                isinstance(t.node, ast.Name)
                and t.variables != x.variables
                and shape(t.value) == shape(x.value)
                and is_float(t.value)
            )
        )
    rule, form = choose.pick(SHIFT_FORMS)
    if axis is None:  # all of it: a number
        form = form.replace("axis={a}, keepdims=True", "")
        form = form.replace("({x}, )", "({x})")
    shift_node = _parse(form.format(np=b.alias, x=source.text, a=axis))
    nondiff = {"axis": str(axis), "keepdims": "False" if axis is None else "True"}
    shift_check = _application_check(rule, {"x": source}, nondiff, shift_node)
    shift_value = shift_check(b)
    kind, invariant, use = choose.pick(
        [u for u in SHIFT_USES if (axis is not None and rank >= 2) or "{b}" not in u[2]]
    )
    other = None
    if "{b}" in use:
        assert axis is not None
        other = choose.pick([a for a in range(rank) if a != axis % rank])
    node = _parse(use.format(np=b.alias, x=x.text, c=name, a=axis, b=other))
    text = ast.unparse(node)

    def check(b: Builder) -> Any:
        value = b.evaluate(node)
        if not (is_float(value) and well_conditioned(value)):
            raise Unfit(f"{text}: ill-conditioned value")
        return value

    b.env[name] = shift_value  # the use reads the shift by its name
    try:
        value = check(b)
    finally:
        del b.env[name]
    shift_term = Term(
        shift_node,
        shift_value,
        source.variables,
        (*source.rules, rule),
        (*source.checks, shift_check),
    )
    rules = (*x.rules, f"shift: {kind}" + ("" if invariant else " (not invariant)"))
    return shift_term, Term(node, value, x.variables | frozenset([name]), rules, (check,))


def _focused(b: Builder, focus: Form | None) -> Term:
    """An application of ``focus`` if one can be built here, else of any form."""
    if focus is not None:
        try:
            return b.apply(2, focus)
        except Unfit:
            pass
    return b.apply(2)


@st.composite
def programs(
    draw: Callable[[Any], Any],
    mode: str,
    exclusions: Sequence[Callable[[Application], bool]] = (),
    focus: Form | None = None,
    modules: int = 0,
    several: int = 0,
    loops: int = 0,
    branches: int = 0,
) -> Program:
    """Random well-conditioned programs of ``mode`` ("scalar": ``import math``, floats;
    "array": ``import numpy as np``, float64 arrays). The first statement applies ``focus``
    (a form drawn from the table if None) where it can; the rest draw from the whole table.
    One in ``modules`` (none if 0) is a module of several functions, one in ``several``
    (none if 0) returns several values, one in ``loops`` (none if 0) has a loop, one in
    ``branches`` (none if 0) has ``if`` statements."""
    from hypothesis import reject

    choose = HypothesisChooser(draw)
    if focus is None:
        focus = choose.pick(forms_for(mode))
    try:
        return build_program(choose, mode, exclusions, focus, modules, several, loops, branches)
    except Unfit:
        reject()


# --- what a program exercises ------------------------------------------------------------------


def features(program: Program) -> list[str]:
    """The constructs of modules (calls, unpacking, several results) and loops a program
    exercises, read from its text: for the statistics of the property tests."""
    if program.verbatim is not None:
        return []
    tree = ast.parse(program.source(annotated=False))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    helpers = set(functions) - {"f"}
    place = {name: i for i, name in enumerate(functions)}
    found = {f"{len(helpers)} helpers"} if helpers else set()
    calls: dict[str, set[str]] = {}
    for name, function in functions.items():
        calls[name] = set()
        top, last = _returned_at_the_end(function.body)
        found |= _loop_features([*top, last], {a.arg for a in function.args.args})
        found |= _branch_features(function, name != "f")
        if name != "f" and any(isinstance(s, (ast.For, ast.While)) for s in top):
            found.add("a helper with a loop")
        statements = _flattened(top)
        if isinstance(last.value, ast.Tuple):
            found.add("f returns several" if name == "f" else "a helper returns several")
        whole = {id(s.value) for s in statements if isinstance(s, ast.Assign)}
        for index, statement in enumerate(statements):
            if isinstance(statement, ast.AugAssign):
                found.add("in-place update (h += v)")
                continue
            assert isinstance(statement, ast.Assign)
            target, value = statement.targets[0], statement.value
            if not isinstance(target, ast.Tuple):
                continue
            bound = [t.id for t in target.elts if isinstance(t, ast.Name)]
            if isinstance(value, ast.Call):
                found.add("several results unpacked (u, v = g(...))")
                later = {
                    n.id
                    for s in [*statements[index + 1 :], last]
                    for n in ast.walk(s.value if s.value is not None else s)
                    if isinstance(n, ast.Name)
                }
                if any(n not in later for n in bound):
                    found.add("a result of a call left unread")
            elif isinstance(value, ast.Tuple):
                read = [v.id if isinstance(v, ast.Name) else None for v in value.elts]
                swap = len(bound) == 2 and read == bound[::-1]
                found.add("swap (a, b = b, a)" if swap else "tuple unpacking (a, b = x, y)")
        for flow in ast.walk(function):
            # A call in a value with no gradient: g(x) > 0, np.sign(g(x)), g(x).shape[0]
            inside = [n for n in ast.walk(flow) if n is not flow]
            if _without_gradient(flow) and any(_calls_one_of(n, helpers) for n in inside):
                found.add("call in a value with no gradient")
        reads: list[set[str]] = []
        for node in ast.walk(function):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in helpers
            ):
                continue
            callee = functions[node.func.id]
            calls[name].add(callee.name)
            found.add("call as a statement" if id(node) in whole else "call in an expression")
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if node.keywords:
                found.add("keyword argument")
            defaulted = [a.arg for a in callee.args.args[-len(callee.args.defaults) :]]
            if callee.args.defaults:
                given = {a.arg for a in callee.args.args[: len(node.args)]}
                given |= {k.arg for k in node.keywords if k.arg is not None}
                if any(d not in given for d in defaulted):
                    found.add("default left to itself")
                if any(d in given for d in defaulted):
                    found.add("default given")
            texts = [ast.unparse(a) for a in arguments]
            if len(set(texts)) < len(texts):
                found.add("the same argument twice")
            reads.append({n.id for a in arguments for n in ast.walk(a) if isinstance(n, ast.Name)})
            if place[callee.name] < place[name]:
                found.add("callee defined before its caller")
            else:
                found.add("callee defined after its caller")
        if any(reads[i] & reads[j] for i in range(len(reads)) for j in range(i)):
            found.add("a value read by two calls")

    def depth(name: str) -> int:
        return 1 + max(map(depth, calls[name])) if calls[name] else 0

    if helpers:
        found.add(f"call depth {depth('f')}")
    found |= _made_features(functions)
    if program.item_lists and program.mode == "scalar":
        found.add(f"{ITEM_LOOP}, of numbers")
    if program.several:
        found.add(f"f returns {len(program.results)}")
        if any(u is None for u in program.upstreams):
            found.add("an upstream None (zero)")
        if any(program.omitted):
            found.add("an upstream left out")
    return sorted(found)


def _flattened(statements: list[ast.stmt]) -> list[ast.Assign | ast.AugAssign]:
    """The assignments of ``statements``, those of loops' bodies in their place."""
    found: list[ast.Assign | ast.AugAssign] = []
    for statement in statements:
        if isinstance(statement, (ast.For, ast.While)):
            found += _flattened(statement.body)
        elif isinstance(statement, ast.If):
            found += _flattened([*statement.body, *statement.orelse])
        elif isinstance(statement, (ast.Assign, ast.AugAssign)):
            found.append(statement)
        elif not isinstance(statement, (ast.Raise, ast.Continue)):  # (they bind nothing)
            assert isinstance(statement, ast.Expr), ast.unparse(statement)  # hs.append(h)
    return found


def _stored(statements: list[ast.stmt]) -> set[str]:
    return {
        n.id
        for s in statements
        for n in ast.walk(s)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _loop_features(statements: list[ast.stmt], outside: set[str], depth: int = 0) -> set[str]:
    """What the loops among ``statements`` (``outside``: the names bound before them) do:
    how they count, what they carry, read and fill."""
    found: set[str] = set()
    statements = _unbranched(statements)
    for index, loop in enumerate(statements):
        if depth == 0 and isinstance(loop, (ast.For, ast.While)):
            inside = _stored(loop.body) - outside - _stored(statements[:index])
            later = {
                n.id
                for s in statements[index + 1 :]
                for n in ast.walk(s)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            }
            if inside & later - _stored(statements[index + 1 :]):
                found.add("loop: a value bound in it read after it (its last step's)")
        if isinstance(loop, ast.While):
            found |= _while_features(loop, outside | _stored(statements[:index]), depth)
        if not isinstance(loop, ast.For):
            continue
        before = outside | _stored(statements[:index])
        if _over_items(loop) is not None:  # for W, bias in layers:
            found |= _item_loop_features(loop, statements, before, depth)
            continue
        assert isinstance(loop.target, ast.Name)
        variable = loop.target.id
        found.add("loop" if depth == 0 else "nested loop")
        counted = ast.unparse(loop.iter)
        if counted.startswith("reversed("):
            found.add("loop: reversed(range(...))")
        if re.search(r"range\(\d+, ", counted):
            found.add("loop: range with a start (and a step)")
        if STEPS_NAME in counted.split("(") or f"({STEPS_NAME})" in counted:
            found.add("loop: range(n) of a parameter")
        if SEQUENCE_NAME in counted:
            found.add("loop: range over a length (len(xs), xs.shape[k])")
        body = loop.body
        if any(isinstance(node, ast.Continue) for node in ast.walk(ast.Module(body, []))):
            found.add("loop: a step ended early (if t == 2: continue)")
        if len(_stored(body) & before) > 1:
            found.add("loop: several values carried")
        for node in ast.walk(loop):
            if isinstance(node, ast.Subscript) and variable in {
                n.id for n in ast.walk(node.slice) if isinstance(n, ast.Name)
            }:
                found.add(
                    "loop: a sequence read at its step (xs[t])"
                    if ast.unparse(node.value) == SEQUENCE_NAME
                    else "loop: a value indexed by the loop's variable"
                )
            if isinstance(node, ast.AugAssign):
                found.add("loop: in-place update")
            called = node.func if isinstance(node, ast.Call) else None
            if isinstance(called, ast.Name) and called.id in HELPER_NAMES:
                found.add("loop: a call of a helper")
        indices = {
            id(n) for s in ast.walk(loop) if isinstance(s, ast.Subscript) for n in ast.walk(s.slice)
        }
        if any(
            isinstance(n, ast.Name) and n.id == variable and id(n) not in indices
            for s in body
            for n in ast.walk(s)
        ):
            found.add("loop: its variable as a number")
        for s in body:
            if isinstance(s, ast.Expr):
                found.add("loop: a list appended to")
        found |= _filling_features(body, variable)
        found |= _loop_features(body, before | {variable}, depth + 1)
    for statement in statements:
        if isinstance(statement, ast.Assign):
            for node in ast.walk(statement.value):
                first = node.args[0] if isinstance(node, ast.Call) and node.args else None
                if isinstance(first, ast.Name) and first.id in LIST_NAMES:
                    assert isinstance(node, ast.Call)
                    found.add(f"loop: a list read by {ast.unparse(node.func)}")
    return found


def _reaches(lines: list[str], sources: Sequence[str], sinks: Sequence[str]) -> bool:
    """Does a value computed from ``sources`` reach one of ``sinks`` through ``lines`` run
    in order (a loop or an ``if`` as a whole, an append into its list)?"""
    tainted = set(sources)
    for line in lines:
        bound, read = _entry_parts(line)
        append = _APPEND.match(line)
        if append:
            bound = [append.group(1)]
        if read & tainted:
            tainted.update(bound)
        elif not _is_loop(line):
            tainted.difference_update(bound)  # bound again from other values
    return bool(tainted & set(sinks))


ITEM_LOOP = "loop: over the items of a list parameter"


def _over_items(loop: ast.For) -> tuple[list[str], ast.expr, str] | None:
    """The list parameters a loop goes over the items of, the target of their items, and
    enumerate's number ("" for none): ``for W, bias in layers:``, ``for i, (W, bias) in
    enumerate(layers):``, ``for W, bias in zip(Ws, biases):`` (and enumerated); None for
    another loop."""

    def lists(iterable: ast.expr) -> list[str] | None:
        if isinstance(iterable, ast.Name):
            return [iterable.id]
        if (
            isinstance(iterable, ast.Call)
            and ast.unparse(iterable.func) == "zip"
            and all(isinstance(a, ast.Name) for a in iterable.args)
        ):
            return [a.id for a in iterable.args if isinstance(a, ast.Name)]
        return None

    call, target = loop.iter, loop.target
    if (
        isinstance(call, ast.Call)
        and ast.unparse(call.func) == "enumerate"
        and len(call.args) == 1
        and isinstance(target, ast.Tuple)
        and isinstance(target.elts[0], ast.Name)
    ):
        listed = lists(call.args[0])
        return None if listed is None else (listed, target.elts[1], target.elts[0].id)
    listed = lists(call)
    return None if listed is None else (listed, target, "")


def _item_loop_features(
    loop: ast.For, statements: list[ast.stmt], before: set[str], depth: int
) -> set[str]:
    """What a loop over the items of a list parameter (``for W, bias in layers:``) does:
    its target, enumerate's number, the item's arrays unread, read after it or passed to
    a helper, ``len()`` of the list read (in ``statements``, the function's), what its
    statements do."""
    over = _over_items(loop)
    assert over is not None
    sequences, target, number = over
    found = {ITEM_LOOP}
    if number:
        found.add(f"{ITEM_LOOP}, numbered by enumerate")
    if len(sequences) > 1:
        found.add(f"{ITEM_LOOP}, zip of lists{', numbered' if number else ''}")
    written = ast.unparse(loop.iter)
    if "start=" in written:
        found.add(f"{ITEM_LOOP}, numbered from a start")
    if "strict=True" in written:
        found.add(f"{ITEM_LOOP}, zip checking the lengths")
        assert isinstance(target, ast.Tuple)
        names = [e.id for e in target.elts if isinstance(e, ast.Name)]
    elif isinstance(target, ast.Name):
        found.add(f"{ITEM_LOOP}, one array per item")
        names = [target.id]
    else:
        assert isinstance(target, ast.Tuple)
        found.add(
            f"{ITEM_LOOP}, a tuple of one"
            if len(target.elts) == 1
            else f"{ITEM_LOOP}, with a tuple target"
        )
        names = [e.id for e in target.elts if isinstance(e, ast.Name)]
    read = {
        n.id
        for s in loop.body
        for n in ast.walk(s)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    if set(names) - read:
        found.add(f"{ITEM_LOOP}, an item's array unread")
    if set(names) & _stored(loop.body):
        found.add(f"{ITEM_LOOP}, an item's array rebound")
    for node in ast.walk(ast.Module(statements, [])):
        if isinstance(node, ast.Call) and ast.unparse(node) in {f"len({s})" for s in sequences}:
            found.add(f"{ITEM_LOOP}, its len() read")
    index = next(i for i, s in enumerate(statements) if s is loop)
    later = {
        n.id
        for s in statements[index + 1 :]
        for n in ast.walk(s)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    if set(names) & later:  # the last item's: no statement but the loop binds them
        found.add(f"{ITEM_LOOP}, an item's array read after it")
    for node in ast.walk(loop):
        if _calls_one_of(node, set(HELPER_NAMES)):
            assert isinstance(node, ast.Call)
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if {n.id for a in arguments for n in ast.walk(a) if isinstance(n, ast.Name)} & set(
                names
            ):
                found.add(f"{ITEM_LOOP}, a helper called with an item's array")
        if isinstance(node, ast.If):
            found.add(f"{ITEM_LOOP}, an if in it")
    if any(isinstance(s, ast.Expr) for s in loop.body):
        found.add(f"{ITEM_LOOP}, a list appended to")
    if len(_stored(loop.body) & before) > 1:
        found.add(f"{ITEM_LOOP}, several values carried")
    inner = _loop_features(loop.body, before | set(names), depth + 1)
    if "nested loop" in inner:
        found.add(f"{ITEM_LOOP}, a loop nested in it")
    return found | inner


def _unbranched(statements: list[ast.stmt]) -> list[ast.stmt]:
    """``statements`` with each ``if`` replaced by the statements of its sides."""
    found: list[ast.stmt] = []
    for statement in statements:
        if isinstance(statement, ast.If):
            found += _unbranched([*statement.body, *statement.orelse])
        else:
            found.append(statement)
    return found


def _test_kinds(test: ast.expr) -> set[str]:
    """What an ``if``'s test reads: a flag, a string, the loop's step, a value."""
    if isinstance(test, ast.BoolOp):
        return {"and/or"}.union(*(_test_kinds(v) for v in test.values))
    if isinstance(test, ast.UnaryOp):
        return _test_kinds(test.operand)
    names = {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
    if "flag" in names:
        return {"a flag"}
    if "mode" in names:
        return {
            "a string (in)"
            if isinstance(test, ast.Compare) and isinstance(test.ops[0], (ast.In, ast.NotIn))
            else "a string"
        }
    if (
        names & set(LOOP_VARIABLES)
        and isinstance(test, ast.Compare)
        and isinstance(test.comparators[0], ast.Constant)
        and isinstance(test.comparators[0].value, int)
    ):
        return {"the loop's step"}
    return {"a value"}


def _branch_features(function: ast.FunctionDef, helper: bool) -> set[str]:
    """What the ``if`` statements of ``function`` do: where they are, what they test, how
    many sides, what the sides bind."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt], bound: set[str], where: str) -> None:
        for statement in statements:
            if isinstance(statement, ast.If) and any(
                isinstance(inner, ast.Return) for inner in statement.body
            ):
                found.add("branch: a return in each side")
            if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.IfExp):
                found.add("branch: a conditional expression")
                found.update(f"branch: on {k}" for k in _test_kinds(statement.value.test))
            if isinstance(statement, ast.For):
                visit(statement.body, bound | _stored([statement]), "in a loop")
            elif isinstance(statement, ast.If):
                found.add(f"branch: {where}")
                if helper:
                    found.add("branch: in a helper")
                arms = [statement.body]
                test = statement.test
                found.update(f"branch: on {k}" for k in _test_kinds(test))
                rest = statement.orelse
                while len(rest) == 1 and isinstance(rest[0], ast.If):
                    found.add("branch: elif")
                    found.update(f"branch: on {k}" for k in _test_kinds(rest[0].test))
                    arms.append(rest[0].body)
                    rest = rest[0].orelse
                found.add("branch: else" if rest else "branch: no else")
                if rest:
                    arms.append(rest)
                stored = [_stored(arm) for arm in arms]
                if rest and set.intersection(*stored) - bound:
                    found.add("branch: a new name bound in every side")
                every = set.intersection(*stored) if rest else set()
                if (set.union(*stored) - every) & bound:
                    found.add("branch: a value from before left as it was by a side")
                for arm in arms:
                    if any(isinstance(s, ast.Raise) for s in arm):
                        found.add("branch: a side that raises")
                    for node in ast.walk(ast.Module(arm, [])):
                        if isinstance(node, ast.AugAssign):
                            found.add("branch: in-place update in a side")
                        if isinstance(node, ast.For):
                            found.add("branch: a loop in a side")
                        if isinstance(node, ast.Call) and _calls_one_of(node, set(HELPER_NAMES)):
                            found.add("branch: a call of a helper in a side")
                    visit(arm, bound | _stored(arm), "nested")
            bound = bound | _stored([statement])

    visit(function.body, {a.arg for a in function.args.args}, "at the top")
    return found


def _made_features(functions: dict[str, ast.FunctionDef]) -> set[str]:
    """How the arrays loops fill are made, and whether a helper with a loop is called with
    different arguments carrying gradients (non-constant ones): several backwards of it
    read its one F_forward's steps."""
    found: set[str] = set()
    makers = {f"{k}{like}" for k in ("zeros", "ones", "empty") for like in ("", "_like")}
    looped = {
        name
        for name, function in functions.items()
        if any(isinstance(n, (ast.For, ast.While)) for n in ast.walk(function))
    }
    given: dict[str, set[frozenset[str]]] = {}
    for function in functions.values():
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute) and node.func.attr in makers:
                found.add(f"loop: an array made by {node.func.attr.removesuffix('_like')}")
                if node.func.attr.endswith("_like"):
                    found.add("loop: an array made by a _like (np.zeros_like(x))")
            callee = functions.get(node.func.id) if isinstance(node.func, ast.Name) else None
            if callee is None or callee.name not in looped or callee.name == "f":
                continue
            params = [a.arg for a in callee.args.args]
            positional = zip(params, node.args, strict=False)  # (defaults left out)
            varying = {p for p, a in positional if not isinstance(a, ast.Constant)}
            varying |= {k.arg for k in node.keywords if not isinstance(k.value, ast.Constant)}
            given.setdefault(callee.name, set()).add(frozenset(v for v in varying if v))
    if any(len(g) > 1 for g in given.values()):
        found.add("a helper with a loop called with different arguments varying")
    return found


def _while_features(loop: ast.While, outside: set[str], depth: int) -> set[str]:
    """What a ``while`` loop does: its test, its steps' statements (loops too)."""
    found = {"loop: while" if depth == 0 else "nested loop: while"}
    tests = loop.test.values if isinstance(loop.test, ast.BoolOp) else [loop.test]
    counted = [t for t in tests if ast.unparse(t).split(" < ")[0] in COUNTER_NAMES]
    if counted and len(tests) == 2:
        found.add("loop: while <test> and n < K")
    if any(isinstance(s, ast.Expr) for s in loop.body):
        found.add("loop: a list appended to in a while loop")
    return found | _loop_features(loop.body, outside, depth + 1)


def _filling_features(body: list[ast.stmt], variable: str) -> set[str]:
    """How a loop's steps write into an array made for it (hs[t] = h, hs[:, t] = v, hs[t,
    0] = a with hs[t, 1] = b)."""
    found: set[str] = set()
    writes = [
        s.targets[0]
        for s in body
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Subscript)
    ]
    for write in writes:
        found.add("loop: an array filled (hs[t] = h)")
        parts = write.slice.elts if isinstance(write.slice, ast.Tuple) else [write.slice]
        first = parts[0]
        if isinstance(first, ast.Slice):
            found.add("loop: an array filled at a later axis (hs[:, t] = v)")
        if any(isinstance(p, ast.Constant) for p in parts):
            found.add("loop: an array filled twice a step (hs[t, 0], hs[t, 1])")
    return found


def _calls_one_of(node: ast.AST, functions: set[str]) -> bool:
    called = node.func if isinstance(node, ast.Call) else None
    return isinstance(called, ast.Name) and called.id in functions


def _without_gradient(node: ast.AST) -> bool:
    """Is ``node`` a value with no gradient the programs draw (``flowing``, ``mask``)?"""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.Attribute):
        return node.attr in FLOW_ATTRIBUTES
    if isinstance(node, ast.Call):
        name = ast.unparse(node.func).rpartition(".")[2]
        return any(function == name for _, function in FLOW_FUNCTIONS)
    return False


# --- programs that draw random numbers ---------------------------------------------------------

# How a program draws: (mode, the module-level line making a generator or None, the draw with
# {np} for the module's numpy alias and {size} for the result's shape). The draw is a factor
# in [0.5, 1.5] of the result, data with no gradient: the forward's values (and their
# distance from kinks) are unchanged, and a backward that drew again would be wrong.
DRAW_SPELLINGS: dict[str, tuple[str, str | None, str]] = {
    "np.random.uniform": ("array", None, "{np}.random.uniform(0.5, 1.5, size={size})"),
    "RandomState.uniform": (
        "array",
        "RS = {np}.random.RandomState(3)",
        "RS.uniform(0.5, 1.5, size={size})",
    ),
    "default_rng.random": ("array", "RS = {np}.random.default_rng(3)", "0.5 + RS.random({size})"),
    # A shape unpacked into the arguments (CS231n's dropout: np.random.rand(*x.shape)).
    "RandomState.rand-unpacked": (
        "array",
        "RS = {np}.random.RandomState(3)",
        "0.5 + RS.rand(*{size})",
    ),
    "random.uniform": ("scalar", None, "random.uniform(0.5, 1.5)"),
    "random.Random.uniform": ("scalar", "RS = random.Random(3)", "RS.uniform(0.5, 1.5)"),
}
DRAWN = "drawn_factor"  # no program names a value so


def drawing_source(program: Program, annotated: bool, spelling: str) -> str:
    """``program``'s source with its result multiplied by a draw (``DRAW_SPELLINGS``)."""
    mode, generator, draw_text = DRAW_SPELLINGS[spelling]
    assert mode == program.mode and not program.several
    size = repr(tuple(program.out_shape)) if program.out_shape else "None"
    draw_text = draw_text.format(np=program.alias, size=size)
    if program.mode == "scalar" or not program.out_shape:
        draw_text = draw_text.replace(", size=None", "").replace("(None)", "()")
        draw_text = draw_text.replace("(*None)", "()")
    drawing = dataclasses.replace(
        program,
        body=[*program.body, f"{DRAWN} = {draw_text}"],
        result=f"({program.result}) * {DRAWN}",
        constants=(
            *program.constants,
            *([generator.format(np=program.alias)] if generator else []),
        ),
    )
    source = drawing.source(annotated)
    if program.mode == "scalar":
        source = "import random\n" + source
    return source


# --- structured parameters: some of f's parameters passed in a dict or a list ---------------

STRUCTURED_FORMS = ("dict-assign", "dict-inline", "list-unpack", "nested-unpack", "chain")


@dataclass
class StructuredProgram:
    """``program`` with some of ``f``'s parameters (``wrapped``) passed inside one container
    parameter ``params``, read by ``form``: the source, and the arguments to call it with."""

    program: Program
    form: str
    wrapped: tuple[str, ...]
    source: str
    args: list[Any]  # f's arguments, the container last
    paths: dict[str, tuple[Any, ...]]  # each wrapped parameter -> its path in the container


class _Inline(ast.NodeTransformer):
    """Reads of the wrapped parameters as ``params["a"]``."""

    def __init__(self, paths: dict[str, tuple[Any, ...]]) -> None:
        self.paths = paths

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id not in self.paths or not isinstance(node.ctx, ast.Load):
            return node
        value: ast.expr = ast.Name("params", ast.Load())
        for key in self.paths[node.id]:
            value = ast.Subscript(value, ast.Constant(key), ast.Load())
        return ast.copy_location(value, node)


def structured_program(
    choose: Chooser, program: Program, annotated: bool, form: str
) -> StructuredProgram:
    """Wrap one or more of ``f``'s float parameters into ``params``, read by ``form`` (one
    of ``STRUCTURED_FORMS``; ``Unfit`` when the program has no parameter to wrap)."""
    names = [n for n, _ in program.params if n not in program.labels]
    if (
        program.verbatim is not None
        or program.several
        or not names
        or "params" in program.body
        or program.defaults
        or program.item_lists  # read by its loop only: gradgen refuses it in a container
    ):
        raise Unfit("no parameter to wrap")
    count = 1 + choose.index(len(names))
    start = choose.index(len(names) - count + 1)
    wrapped = tuple(names[start : start + count])
    tree = ast.parse(program.source(annotated))
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "f"]
    assigned = {
        node.id
        for node in ast.walk(main)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    }
    # params["x"][0] is ambiguous (a row of an array, or the first of a list of arrays):
    # gradgen refuses it and says to bind the array first, as dict-assign does.
    rows = {
        node.value.id
        for node in ast.walk(main)
        if isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and isinstance(node.slice, ast.Constant)
        and type(node.slice.value) is int
        and node.slice.value >= 0
    }
    if form == "dict-inline" and set(wrapped) & (assigned | rows):
        form = "dict-assign"  # a parameter rebound in the body is read once, at the top
    if form in ("list-unpack", "nested-unpack") and len(wrapped) < 2:
        form = "chain"
    if form in ("dict-assign", "dict-inline"):
        paths: dict[str, tuple[Any, ...]] = {n: (n,) for n in wrapped}
    elif form == "list-unpack":
        paths = {n: (k,) for k, n in enumerate(wrapped)}
    elif form == "nested-unpack":
        half = len(wrapped) // 2
        paths = {n: (0, k) for k, n in enumerate(wrapped[:half])}
        paths |= {n: (1, k) for k, n in enumerate(wrapped[half:])}
    else:
        paths = {n: (0, n) for n in wrapped}
    main.args.args = [a for a in main.args.args if a.arg not in wrapped]
    main.args.args.append(ast.arg("params"))
    if form == "dict-inline":
        main.body = [_Inline(paths).visit(statement) for statement in main.body]
    elif form in ("dict-assign", "chain"):
        reads = [f"{n} = params" + "".join(f"[{k!r}]" for k in paths[n]) for n in wrapped]
        main.body[:0] = [ast.parse(line).body[0] for line in reads]
    elif form == "list-unpack":
        main.body[:0] = ast.parse(f"{', '.join(wrapped)} = params").body
    else:
        half = len(wrapped) // 2
        groups = [wrapped[:half], wrapped[half:]]
        text = ", ".join("(" + ", ".join(g) + ("," if len(g) == 1 else "") + ")" for g in groups)
        main.body[:0] = ast.parse(f"{text} = params").body
    source = ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    container: Any = {} if form.startswith("dict") else [[], []] if form == "nested-unpack" else []
    if form == "chain":
        container = [{}]
    for name in wrapped:
        value = program.args[name]
        path = paths[name]
        if isinstance(container, dict):
            container[name] = value
        elif form == "list-unpack":
            container.append(value)
        elif form == "nested-unpack":
            container[path[0]].append(value)
        else:
            container[0][name] = value
    if form == "nested-unpack":
        container = [tuple(group) for group in container]  # tuples in: lists of gradients out
    args = [v for n, v in program.args.items() if n not in wrapped] + [container]
    return StructuredProgram(program, form, wrapped, source, args, paths)
