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
names (``h = h * 2``, parameters too) or renaming (``h = x``), and a return; values no later
statement reads are combined into the result.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import itertools
import math
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy
from hypothesis import strategies as st

from gradgen.rules import (
    BUILTINS,
    CONSTANTS,
    LIBRARIES,
    METHODS,
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
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if func.value.id in LIBRARIES:
                    library = func.value.id
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


def _numpy_parameters(function: str) -> list[str]:
    try:
        return list(inspect.signature(getattr(numpy, function)).parameters)
    except (AttributeError, TypeError, ValueError):
        return []


# --- values ----------------------------------------------------------------------------------


@dataclass
class Term:
    node: ast.expr
    value: Any
    variables: frozenset[str] = frozenset()
    rules: tuple[str, ...] = ()

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

    @property
    def choose(self) -> Chooser:
        return self.builder.choose

    @property
    def function(self) -> str | None:
        return self.form.function


# --- one program -------------------------------------------------------------------------------


@dataclass
class Program:
    mode: str
    alias: str  # how the module spells numpy
    params: list[tuple[str, tuple[int, ...]]]
    labels: tuple[str, ...]  # integer parameters used only as indices: gradient None
    body: list[str]
    result: str  # the return expression
    args: dict[str, Any]
    upstream: Any  # None: the backward is called with its default
    out_shape: tuple[int, ...]
    rules: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()  # module-level lines: EPS = 1e-3
    verbatim: str | None = None  # a forward source given as it is (a known bug's repro)
    # Array code may leave numpy unimported where it uses only array syntax (x @ w, x.T,
    # x[i], x.sum()): gradgen must still take its values for arrays.
    numpy_import: bool = True

    def source(self, annotated: bool) -> str:
        if self.verbatim is not None:
            return self.verbatim

        def annotate(name: str, dims: tuple[int, ...]) -> str:
            if not annotated:
                return name
            if dims == ():
                return f"{name}: float"
            return f'{name}: "{", ".join(map(str, dims))}"'

        imports = "import math\n"
        if self.mode == "array" and self.numpy_import:
            imports += "import numpy\n" if self.alias == "numpy" else "import numpy as np\n"
        params = ", ".join(annotate(n, s) for n, s in self.params)
        lines = [f"    {line}" for line in [*self.body, f"return {self.result}"]]
        constants = "".join(f"{line}\n" for line in self.constants)
        if constants:
            constants = "\n" + constants
        return f"{imports}{constants}\n\ndef f({params}):\n" + "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        args = ", ".join(
            f"{n}={numpy.array2string(numpy.asarray(v), precision=17, separator=', ')}"
            for n, v in self.args.items()
        )
        upstream = (
            "default"
            if self.upstream is None
            else numpy.array2string(numpy.asarray(self.upstream), precision=17, separator=", ")
        )
        return (
            f"\n{self.source(annotated=True)}\n# arguments: {args}\n# upstream: {upstream}\n"
            f"# rules: {', '.join(self.rules)}\n"
        )


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

    # --- evaluation ---------------------------------------------------------------------

    def evaluate(self, node: ast.expr, strict: bool = True) -> Any:
        """The value of ``node`` at the program's arguments; Unfit if it fails (or, when
        ``strict``, warns or leaves its domain)."""
        tree = ast.fix_missing_locations(ast.Expression(copy.deepcopy(node)))
        namespace = {"np": numpy, "numpy": numpy, "math": math, **self.env}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error" if strict else "ignore")
                with numpy.errstate(all="raise" if strict else "ignore"):
                    return eval(compile(tree, "<generated>", "eval"), namespace)
        except Exception as error:
            raise Unfit(f"{ast.unparse(node)}: {error}") from error

    def exclude(self, application: Application) -> None:
        """Unfit if a known bug (or a documented limit) excludes ``application``."""
        for excluded in self.exclusions:
            if excluded(application):
                self.excluded.append(application.text)
                raise Unfit(f"{application.text}: excluded")

    # --- leaves -------------------------------------------------------------------------

    def variables(self) -> list[str]:
        """Names of float values, the most recent first (so shrinking prefers it)."""
        return [n for n in reversed(self.names) if n not in self.labels]

    def variable(self, fits: Callable[[Term], bool] | None = None) -> Term:
        candidates = [self.name_term(n) for n in self.variables()]
        if fits is not None:
            candidates = [t for t in candidates if fits(t)]
        if not candidates:
            raise Unfit("no variable fits")
        # Recent values are read more often (chains of statements); any earlier value can be
        # read again (fan-out).
        return self.choose.weighted([(t, max(1, 4 - i)) for i, t in enumerate(candidates)])

    def name_term(self, name: str) -> Term:
        return Term(ast.Name(name, ast.Load()), self.env[name], frozenset([name]))

    def constant(self) -> Term:
        kind = self.choose.weighted([("number", 6), ("named", 1), ("module", 1)])
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

    def flowing(self) -> Term:
        """A value with no gradient computed from a variable: np.sign(x), x.shape[0], ..."""
        source = self.variable()
        if self.choose.boolean():
            lib, name = self.choose.pick(FLOW_FUNCTIONS)
            if lib == "numpy" and self.mode != "array":
                raise Unfit("no numpy in scalar code")
            prefix = f"{self.alias}." if lib == "numpy" else ""
            node = _parse(f"{prefix}{name}({source.text})")
            check = FLOW_KINKS.get(name)
            what = f"{lib}.{name}"
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
        value = self.evaluate(node)
        kind = numpy.asarray(value).dtype.kind
        if kind not in "fbiu" or not well_conditioned(value):
            raise Unfit(f"{ast.unparse(node)} is not a value to compute with")
        if check is not None and not check(numpy.asarray(source.value, dtype=float)):
            raise Unfit(f"{ast.unparse(node)}: near a jump")
        self.exclude(Application(what, {"x": source.value}, {}, value, ast.unparse(node)))
        return Term(node, value, source.variables, (what,))

    def mask(self, like: Term | None = None) -> Term:
        """A comparison, at least MARGIN from a tie everywhere; ``like``: of that shape."""
        left = self.variable(
            None if like is None else (lambda t: shape(t.value) == shape(like.value))
        )
        if self.choose.boolean() and len(self.variables()) > 1:
            right = self.variable(lambda t: t.variables != left.variables)
        else:
            number = self.choose.pick((0.3, 1.0, 0.0, -0.4))
            right = Term(_parse(str(number)), number)
        op = self.choose.pick((ast.Gt(), ast.Lt(), ast.GtE(), ast.LtE()))
        node = ast.Compare(left.node, [op], [right.node])
        gap = self.evaluate(ast.BinOp(left.node, ast.Sub(), right.node), strict=False)
        if not numpy.all(numpy.abs(gap) >= MARGIN):
            raise Unfit("a comparison near a tie")
        value = self.evaluate(node)
        return Term(node, value, left.variables | right.variables)

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
        if none_ok:
            kinds.append(("none", 1))
        kind = self.choose.weighted(kinds)
        term: Term | None = None
        try:
            if kind == "constant":
                term = self.constant()
            elif kind == "none":
                term = Term(ast.Constant(None), None)
            elif kind == "mask":
                term = self.mask()
            elif kind == "flowing":
                term = self.flowing()
            elif kind == "apply":
                term = self.apply(depth - 1)
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
            for _ in range(self.choose.pick((1, 1, 2))):
                inputs[first_name].append(self.operand(depth, fits_as(first_name)))  # type: ignore[union-attr]

        adapt = DOMAINS.get(rule.name)
        if adapt is not None:
            inputs = adapt(self, inputs)
        node = self.render(form, inputs, nondiff, spelling=self.choose.index(8))
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
        return Term(node, value, variables, used)

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
        if signature is not None and isinstance(form.tree, ast.Call) and form.library == "numpy":
            return self._render_call(form, signature, mapping, inputs, nondiff, spelling)
        for name, text in nondiff.items():
            if text == OMIT:
                raise Unfit(f"{form.text} cannot leave {name} out")
            mapping[name] = _parse(text)
        return _Substitute(mapping, self.alias).visit(copy.deepcopy(form.tree))

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
        numpy_names = _numpy_parameters(form.function)
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
        methods = METHODS_OF.get(form.function)
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
        func = ast.Attribute(ast.Name(self.alias, ast.Load()), form.function, ast.Load())
        return ast.Call(func, positional, keywords)

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
    if c.function == "stack":
        rank += 1  # a new axis
    choices: list[str] = [OMIT, "None"] + [str(a) for a in range(-rank, rank)]
    if rank >= 2 and c.function not in ("concatenate", "stack"):
        choices += [str(p) for p in itertools.combinations(range(rank), 2)]
        choices += [f"({a}, {b - rank})" for a, b in itertools.combinations(range(rank), 2)]
    return c.choose.pick(choices)


def _keepdims(c: Context) -> str:
    return c.choose.pick((OMIT, "True", "False"))


def _ddof(c: Context) -> str:
    return c.choose.pick((OMIT, "0", "1"))


def _axes(c: Context) -> str:
    rank = ndim(c.first.value)
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
    raise MissingGenerator(f"no generator for the 'shape' argument of {c.form.text!r}")


def _dtype(c: Context) -> str:
    return c.choose.pick(("float", f"{c.builder.alias}.float64", "int"))


def _condition(c: Context) -> str:
    """A mask (np.where's condition): a comparison of values, away from ties."""
    like = c.first if c.choose.boolean() and c.first.variables else None
    return c.builder.mask(like).text


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

    kind = choose.pick(("slices", "number", "list", "arange", "mask", "ellipsis", "label"))
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
        return b.mask(c.first).text
    if kind == "ellipsis" and len(dims) >= 2:
        return f"..., {number(dims[-1])}"
    return ":"


NONDIFF_GENERATORS: dict[str, Callable[[Context], str]] = {
    "axis": _axis,
    "keepdims": _keepdims,
    "ddof": _ddof,
    "axes": _axes,
    "axis1": _swapped_axis,
    "axis2": _swapped_axis,
    "shape": _shape,
    "dtype": _dtype,
    "c": _condition,
    "i": _index,
}


# --- domains: inputs wrapped into a rule's domain, by rule name ----------------------------


def _wrap(b: Builder, term: Term, template: str) -> Term:
    """``term`` put into ``template`` (``1 + v * v``) and evaluated."""
    node = _Substitute({"v": term.node}, b.alias).visit(_parse(template))
    return Term(node, b.evaluate(node), term.variables, term.rules)


def _minimum(term: Term) -> float:
    return float(numpy.min(term.value))


def _positive(b: Builder, term: Term) -> Term:
    if term.value is not None and _minimum(term) >= 0.1:
        return term
    return _wrap(b, term, "1 + v * v")


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

    return adapt


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


def _log1p_domain(b: Builder, inputs: dict[str, Any]) -> dict[str, Any]:
    x = inputs["x"]
    return {"x": x if _minimum(x) >= -0.9 else _wrap(b, x, "v * v")}


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


def _unique_top(x: Any, extreme: Callable[..., Any]) -> bool:
    return bool(numpy.sum(numpy.abs(x - extreme(x)) < MARGIN) == 1)


# Jumps of the functions with no gradient, by name: their values must not change within the
# finite differences' steps.
FLOW_KINKS: dict[str, Callable[[Any], bool]] = {
    "sign": lambda x: _apart(x, 0.0),
    "logical_not": lambda x: _apart(x, 0.0),
    "floor": _off_integers,
    "ceil": _off_integers,
    "int": _off_integers,
    "argmax": lambda x: _unique_top(x, numpy.max),
    "argmin": lambda x: _unique_top(x, numpy.min),
}

KINKS: dict[str, Callable[[Application], bool]] = {
    "abs": lambda app: _apart(app.inputs["x"], 0.0),
    "max": lambda app: _apart(app.inputs["x"], app.inputs["y"]),
    "min": lambda app: _apart(app.inputs["x"], app.inputs["y"]),
    "clip": _clip_apart,
    "amax": _unique_extreme,
    "amin": _unique_extreme,
    "std": lambda app: bool(numpy.all(numpy.asarray(app.value) >= 0.1)),
    "astype": _astype_apart,
}


# --- programs --------------------------------------------------------------------------------


def build_program(
    choose: Chooser,
    mode: str,
    exclusions: Sequence[Callable[[Application], bool]] = (),
    focus: Form | None = None,
) -> Program:
    """A random program: parameters, statements applying forms of the table (fan-out,
    rebinding, aliases, nested expressions), a return. Unfit if it cannot be built."""
    b = Builder(choose, mode, exclusions)
    if mode == "array":
        b.alias = choose.weighted([("np", 4), ("numpy", 1)])
    rng = numpy.random.default_rng(choose.index(2**32))
    constants = []
    for name, text in MODULE_CONSTANTS[: choose.weighted([(0, 3), (1, 1), (2, 1), (3, 1)])]:
        constants.append(f"{name} = {text}")
        b.env[name] = eval(text, {}, dict(b.env))
        b.module_constants.append(name)
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

    body: list[str] = []
    rules: list[str] = []
    locals_: list[str] = []
    statements = choose.index(6)
    kinds = [("new", 5), ("rebind", 3), ("alias", 1)]
    if mode == "array":
        kinds += [("view", 3), ("fan-out", 2)]
    for number in range(statements):
        kind = choose.weighted(kinds)
        fresh = [(n, w) for n, w in LOCAL_NAMES if n not in b.env]
        if kind == "alias" and fresh:
            source = b.variable()
            target = choose.weighted(fresh)
            body.append(f"{target} = {source.text}")  # h = x: a new name, the same value
            b.bind(target, b.env[source.text])
            continue
        if number == 0:
            terms = [_focused(b, focus)]
        elif kind == "view":
            terms = _read_then_viewed(b)
        elif kind == "fan-out":
            terms = [_fanned_out(b)]
        else:
            terms = [b.apply(choose.pick((1, 2, 0)))]
        for term in terms:
            rebindable = [*reversed(locals_), *(n for n, _ in params if n not in b.labels)]
            read = [n for n in rebindable if n in term.variables]
            fresh = [(n, w) for n, w in LOCAL_NAMES if n not in b.env]
            if kind == "rebind" and read and choose.boolean():
                target = choose.pick(read)  # h = h * 2
            elif kind == "rebind" and rebindable:
                target = choose.pick(rebindable)
            else:
                target = choose.weighted(fresh) if fresh else f"t{len(body)}"
            body.append(f"{target} = {term.text}")
            b.read |= term.variables
            rules += term.rules
            b.bind(target, term.value)
            if target not in locals_ and target not in args:
                locals_.append(target)

    if body and choose.index(3) != 0:
        result = b.variable()  # most often the value the last statement bound
    else:
        result = _focused(b, focus) if not body else b.apply(1)
    # Values no later statement reads are combined into the result, so that few statements
    # are dead (gradgen drops those, and they test nothing).
    for name in _unread(body, result.text, [n for n in locals_ if n in b.env])[:3]:
        combiners = [(f, 1) for f in forms_for(mode) if _combines(f)]
        for _ in range(ATTEMPTS // 2):
            form = choose.weighted(combiners)
            try:
                result = b.try_form(form, 0, {"x": result, "y": b.name_term(name)})
                break
            except Unfit:
                continue
    rules += result.rules
    if not is_float(result.value):
        raise Unfit("the result is not a float")
    out_shape = shape(result.value)
    upstream: Any
    if out_shape == ():
        upstream = None if choose.boolean() else float(rng.normal())
    else:
        upstream = rng.normal(size=out_shape)
    drop_import = mode == "array" and choose.index(4) == 0
    return Program(
        numpy_import=not (
            drop_import and _array_syntax_only([*constants, *body], result.text, b.alias)
        ),
        mode=mode,
        alias=b.alias,
        params=params,
        labels=tuple(b.labels),
        body=body,
        result=result.text,
        args=args,
        upstream=upstream,
        out_shape=out_shape,
        rules=tuple(dict.fromkeys(rules)),
        constants=tuple(constants),
    )


def _array_syntax_only(lines: list[str], result: str, alias: str) -> bool:
    """Do ``lines`` and ``result`` use array syntax (``@``, an index, an attribute or method
    of a value) and never name numpy itself (so the import can be left out)?"""
    trees = [_parse(line.partition(" = ")[2]) for line in lines] + [_parse(result)]
    nodes = [node for tree in trees for node in ast.walk(tree)]
    if any(isinstance(n, ast.Name) and n.id == alias for n in nodes):
        return False
    return any(
        isinstance(n, ast.Subscript)
        or (isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult))
        or (
            isinstance(n, ast.Attribute)
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
    reads: list[tuple[str, set[str]]] = []
    for line in body:
        target, _, value = line.partition(" = ")
        reads.append((target, {n.id for n in ast.walk(_parse(value)) if isinstance(n, ast.Name)}))
    read_by_result = {n.id for n in ast.walk(_parse(result)) if isinstance(n, ast.Name)}
    unread = []
    for name in names:
        last = max(i for i, (target, _) in enumerate(reads) if target == name)
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
) -> Program:
    """Random well-conditioned programs of ``mode`` ("scalar": ``import math``, floats;
    "array": ``import numpy as np``, float64 arrays). The first statement applies ``focus``
    (a form drawn from the table if None) where it can; the rest draw from the whole table."""
    from hypothesis import reject

    choose = HypothesisChooser(draw)
    if focus is None:
        focus = choose.pick(forms_for(mode))
    try:
        return build_program(choose, mode, exclusions, focus)
    except Unfit:
        reject()
