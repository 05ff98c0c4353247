"""Source text to validated forward functions, or a refusal naming every problem.

This is gradgen's fence: what passes is straight-line code that the rules table can
differentiate; everything else is reported with its file, line and column. Nothing here
runs the user's code: the text is parsed by libcst and read as data.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import io
import tokenize
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradgen.convert import convert, convert_condition, dotted_name
from gradgen.cstwalk import contains, descendants
from gradgen.errors import Diagnostic, GradgenError, source_line
from gradgen.expr import (
    RULE,
    USER,
    Attribute,
    BinOp,
    Call,
    Compare,
    Const,
    Expr,
    Func,
    Name,
    Sequence_,
    Subscript,
    UnaryOp,
    children,
    is_constant,
    names_in,
    render,
    unwrap,
    walk,
)
from gradgen.rules import (
    BUILTINS,
    CONSTANTS,
    DRAW_METHODS,
    DRAW_MODULES,
    GENERATOR,
    LENGTH,
    METHODS,
    NONDIFFERENTIABLE,
    NUMBERED,
    REVERSED,
    SHORTEST,
    SIDE_BY_SIDE,
    STEPS,
    STOP_GRADIENT,
    VALUE_ATTRIBUTES,
    draw_parameters,
    is_draw,
    several_results,
)
from gradgen.shapes import SCALAR, Shape, parse_annotation
from gradgen.structure import Layout, Structured, find_structure

_LIBRARY_MODULES = {"math": "math", "numpy": "numpy"}
_DECORATOR = "differentiable"
# Names that are values with no gradient: None for np.newaxis and clip bounds, the dtypes.
_LITERAL_NAMES = ("None", "True", "False", "float", "int", "bool")


@dataclass(frozen=True)
class Import:
    """One name an import binds: ``np`` -> numpy, ``exp`` -> math.exp."""

    name: str
    module: str
    attr: str | None = None  # set for ``from module import attr``

    def statement(self) -> str:
        if self.attr is None:
            if self.name == self.module:
                return f"import {self.module}"
            return f"import {self.module} as {self.name}"
        if self.name == self.attr:
            return f"from {self.module} import {self.attr}"
        return f"from {self.module} import {self.attr} as {self.name}"


@dataclass
class ModuleContext:
    """What the module's top level binds, read without running it."""

    imports: dict[str, Import] = field(default_factory=dict)
    constants: dict[str, Expr] = field(default_factory=dict)  # in definition order
    other_names: set[str] = field(default_factory=set)  # functions, classes, computed values
    # Values the module computes by running code (``inputs, targets = load()``): data,
    # constant for gradients, read from the forward module where the backward runs.
    data: set[str] = field(default_factory=set)
    star_imports: list[str] = field(default_factory=list)
    # ``from .layers import affine`` (module ".layers"), ``from . import layers`` (module
    # ".", attr "layers"): found next to the file when it is a forward module (linking.py).
    relative_imports: dict[str, Import] = field(default_factory=dict)

    def module_alias(self, library: str) -> str | None:
        """The name the module binds to ``library`` (``np`` for numpy), if any; for a
        submodule, its own name (``la`` of ``import numpy.linalg as la``, ``linalg`` of
        ``from numpy import linalg``) or its parent's (``np.linalg``)."""
        for binding in self.imports.values():
            if binding.module == library and binding.attr is None:
                return binding.name
        parent, _, child = library.rpartition(".")
        if not parent:
            return None
        for binding in self.imports.values():
            if binding.module == parent and binding.attr == child:
                return binding.name
        alias = self.module_alias(parent)
        return None if alias is None else f"{alias}.{child}"

    def imports_library(self, library: str) -> bool:
        """Does the module import ``library`` or one of its submodules, in any form?

        ``import numpy``, ``import numpy as np``, ``import numpy.linalg [as la]``, ``from
        numpy import exp [as e]``, ``from numpy.linalg import norm``, ``from numpy import *``
        all say the module works with numpy values; ``module_alias`` finds only the first
        two, which is how the module is spelled, not whether it uses the library.
        """
        modules = [binding.module for binding in self.imports.values()] + self.star_imports
        return any(module.partition(".")[0] == library for module in modules)


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Expr | None
    shape: Shape | None = None  # from an annotation: x: "N, D" or x: float


@dataclass(frozen=True)
class Assignment:
    """``target = value`` (or ``a, b = value``: ``targets`` holds each name) in the forward
    function, as the user wrote it."""

    target: str  # the first (or only) name assigned
    value: Expr
    text: str  # the statement, rendered on one line, for comments in the output
    targets: tuple[str, ...] = ()  # ``a, b = ...``: every name, in order; () for one name
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)
    # ``h += x``: ``value`` is ``h + x``. On an array it writes into ``h``'s memory, which
    # staging allows only where nothing else may share it (stages.refuse_shared_update).
    augmented: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the statement binds, in order."""
        return self.targets or (self.target,)


@dataclass(frozen=True)
class Append:
    """One item more in what the forward fills in a loop: ``hs.append(h)`` (a list), or
    ``hs[:, t, :] = h`` (an array the forward made: ``index`` is ``(:, t, :)``)."""

    target: str  # the list or the array
    value: Expr
    text: str
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)
    index: tuple[Expr, ...] | None = None  # an array's entries written; None: a list


@dataclass(frozen=True)
class Loop:
    """``for t in range(T):`` and the statements it repeats, as the user wrote them; or
    ``while test:`` (``target`` is "", ``iterable`` the test, read before each step)."""

    target: str  # the loop variable ("": a while loop)
    iterable: Expr  # range(...) or reversed(range(...)): numbers, no gradient; or the test
    body: tuple[Statement, ...]
    text: str  # ``for t in range(T):``
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Item:
    """``W, b = layers[i]``: the item of a list parameter a loop over it reads at step
    ``index`` (``for W, b in layers:``, read as a loop over ``range(len(layers))``)."""

    names: tuple[str, ...]  # the names it is unpacked into
    sequence: str  # the list parameter
    index: str  # the loop's variable
    text: str
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)

    @property
    def value(self) -> Expr:
        """``layers[i]``: what it reads."""
        return Subscript(Name(self.sequence), (Name(self.index),))


@dataclass(frozen=True)
class Branch:
    """``if test:`` its statements, ``else:`` the others (an ``elif`` is a Branch there).
    A guard (``if mode not in ...: raise ValueError(...)``, read from an ``if`` a side of
    which raises, the other side's statements following it) has no statements: ``raises``
    holds, for each side, what it raises (the text after ``raise``), or None."""

    test: Expr
    body: tuple[Statement, ...]
    orelse: tuple[Statement, ...]
    text: str  # ``if t > 0:``
    origin: cst.CSTNode | None = field(default=None, compare=False, repr=False)
    raises: tuple[str | None, str | None] = (None, None)


Statement = Assignment | Append | Loop | Branch | Item


def flat_statements(body: Sequence[Statement]) -> Iterator[Assignment | Append | Item]:
    """The assignments and appends of ``body``, those inside loops and branches too, in
    order."""
    for statement in body:
        if isinstance(statement, Loop):
            yield from flat_statements(statement.body)
        elif isinstance(statement, Branch):
            yield from flat_statements(statement.body)
            yield from flat_statements(statement.orelse)
        else:
            yield statement


@dataclass(frozen=True)
class ForwardFunction:
    """A forward function that passed the fence."""

    name: str
    parameters: tuple[Parameter, ...]
    body: tuple[Statement, ...]
    results: tuple[Expr, ...]  # one per value returned (``return h, c``: two)
    result_names: tuple[str | None, ...]  # the returned variables, where ``return`` names them
    result_text: str
    used_globals: frozenset[str]  # module-level names the function reads
    node: cst.FunctionDef = field(compare=False, repr=False)
    # The functions of the module it calls, in order of first call.
    calls: tuple[str, ...] = ()
    # Module data it reads (computed at import: ``inputs = load()``), and where first.
    data: tuple[tuple[str, cst.CSTNode], ...] = field(default=(), compare=False, repr=False)
    # Parameters that are dicts, lists or tuples of arrays (structure.py): ``parameters``
    # holds their leaves in their place, ``signature`` the parameters as written.
    structured: tuple[Structured, ...] = ()
    signature: tuple[Parameter, ...] = ()


@dataclass(frozen=True)
class Linked:
    """A function of another forward module that this one imports (``from layers import
    affine``, ``from .layers import affine as aff``, ``import layers`` then
    ``layers.affine``): differentiated from that module's text, and its backward generated
    into this module's output."""

    module: ParsedModule  # the module that defines it
    name: str  # its name there (the generated functions are named after it)
    origin: str  # that module's file, relative to the importing file's folder
    node: cst.CSTNode = field(compare=False, repr=False)  # the import, in this module


@dataclass
class ParsedModule:
    filename: str
    text: str
    module: cst.Module
    context: ModuleContext
    functions: list[cst.FunctionDef]
    problems: list[tuple[cst.CSTNode, str]] = field(default_factory=list)
    # Where ``module`` starts in ``text`` when it was parsed from a piece of the file (the
    # decorator reads one function): added to positions in messages.
    line_offset: int = 0
    column_offset: int = 0
    # Lines of ``text`` that come from elsewhere (a function of a notebook's earlier cell,
    # appended by cells.py): line -> (file, line there, its text), where refusals point.
    relocated: Mapping[int, tuple[str, int, str]] = field(default_factory=dict)
    # Functions of other forward modules this one calls, by the name that calls them here
    # (``aff``, ``layers.affine``), as ``find_linked`` (set by linking.py) found them.
    linked: dict[str, Linked] = field(default_factory=dict)
    find_linked: Callable[[str], Linked | None] | None = field(default=None, repr=False)
    not_linked: set[str] = field(default_factory=set, repr=False)

    def linked_function(self, called: str) -> Linked | None:
        """The function of another forward module a call spelled ``called`` reaches."""
        if called not in self.linked and self.find_linked is not None:
            if called in self.not_linked:
                return None
            found = self.find_linked(called)
            if found is None:
                self.not_linked.add(called)  # looked for once: files are not read again
                return None
            self.linked[called] = found
        return self.linked.get(called)

    @property
    def function_names(self) -> set[str]:
        """The functions defined at the top level (``def``)."""
        return {function.name.value for function in self.functions}

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        self.problems.append((node, message))

    def diagnostic(self, node: cst.CSTNode, message: str) -> Diagnostic:
        """``message`` located at ``node`` (a node of ``module``), as a refusal is."""
        wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        start = wrapper.resolve(PositionProvider)[node].start
        return self._located(start.line, start.column, message)

    def raise_problems(self) -> None:
        """Raise one ``GradgenError`` holding every problem found, in source order. A
        problem may lie in a module this one imports functions from: it is reported in
        that module's file."""
        if not self.problems:
            return
        # Positions cost a full pass over the tree, so they are computed only on refusal.
        modules = self.imported_modules()
        positions: dict[int, Mapping[cst.CSTNode, CodeRange]] = {}
        found = []
        for node, message in self.problems:
            for module in modules:
                if id(module) not in positions:
                    wrapper = MetadataWrapper(module.module, unsafe_skip_copy=True)
                    positions[id(module)] = wrapper.resolve(PositionProvider)
                if node in positions[id(module)]:
                    found.append(module._diagnostic(positions[id(module)][node], message))
                    break
            else:  # not a node of any module read: a bug, reported at the top of the file
                found.append(Diagnostic(self.filename, 1, 1, message))
        found.sort(key=lambda d: (d.filename != self.filename, d.filename, d.line, d.column))
        # One problem met twice (a function staged for each of its callers) is said once.
        said = {(d.filename, d.line, d.column, d.message): d for d in found}
        raise GradgenError(list(said.values()))

    def _diagnostic(self, where: CodeRange, message: str) -> Diagnostic:
        return self._located(where.start.line, where.start.column, message)

    def _located(self, line: int, column: int, message: str) -> Diagnostic:
        """``message`` at ``line`` and ``column`` (of ``module``, 1- and 0-based), in the
        file and at the line the text there comes from."""
        line += self.line_offset
        column += 1 + self.column_offset
        if line in self.relocated:
            filename, line, text = self.relocated[line]
            return Diagnostic(filename, line, column, message, text)
        return Diagnostic(self.filename, line, column, message, source_line(self.text, line))

    def imported_modules(self) -> list[ParsedModule]:
        """This module, then every forward module it imports functions from, at any depth."""
        found: dict[int, ParsedModule] = {id(self): self}
        pending = [self]
        while pending:
            for linked in pending.pop().linked.values():
                if id(linked.module) not in found:
                    found[id(linked.module)] = linked.module
                    pending.append(linked.module)
        return list(found.values())

    def defining_module(self, function: str) -> ParsedModule | None:
        """The module whose ``def`` a call of ``function`` (a name in the program: its
        own name in its module) here reaches: this one, or one it imports it from."""
        if function in self.function_names:
            return self
        for linked in self.linked.values():
            if linked.name == function:
                return linked.module
        return None


def is_array_code(context: ModuleContext, functions: Sequence[ForwardFunction]) -> bool:
    """Are the module's values numpy arrays? When it imports numpy or scipy (whose
    functions take and give arrays) in any form, or when its functions use syntax that only
    arrays support (``x @ w``, ``x.T``, ``x.sum()``, ``x[i]``): such values are not Python
    numbers, and scalar code would neither undo broadcasting nor keep ``+=`` out of arrays it
    does not own."""
    if context.imports_library("numpy") or context.imports_library("scipy"):
        return True
    return any(
        _array_syntax(expr)
        for function in functions
        for expr in [
            *(a.value for a in flat_statements(function.body)),
            *function.results,
            *_loop_iterables(function.body),  # range(xs.shape[0])
        ]
    )


def _array_syntax(expr: Expr) -> bool:
    for node in walk(expr):
        if isinstance(node, BinOp) and node.op == "@":
            return True
        if isinstance(node, (Attribute, Subscript)):
            return True  # value attributes (x.T, x.shape) and indexing; math.pi is a Const
        if isinstance(node, Call) and (node.func.spelling or "").startswith("."):
            # a method: x.sum(axis=0); not a draw of a generator (rng.normal()), which
            # may be the standard library's
            return node.func.lib != GENERATOR
    return False


def _loop_iterables(body: Sequence[Statement]) -> Iterator[Expr]:
    """What the loops of ``body`` go over, nested ones too."""
    for statement in body:
        if isinstance(statement, Loop):
            yield statement.iterable
            yield from _loop_iterables(statement.body)


# --- reading the text -----------------------------------------------------------------------


def decode(data: bytes, filename: str) -> str:
    """Source bytes to text: UTF-8, with or without a byte-order mark."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, column = _byte_position(data, error.start)
        message = f"not valid UTF-8 (byte 0x{data[error.start]:02x}): gradgen reads UTF-8 source"
        raise GradgenError([Diagnostic(filename, line, column, message)]) from None
    if "\0" in text:
        # Valid UTF-8 can hold NUL bytes, which no Python source does: a binary file.
        line, column = _byte_position(data, data.index(b"\0"))
        message = "NUL byte in the file: this is not Python source (a binary file?)"
        raise GradgenError([Diagnostic(filename, line, column, message)])
    return text


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of byte ``offset``; the column counts bytes."""
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


# The deepest expression gradgen reads, counting every subexpression on the way down
# (`x + x + x` is 3 deep, `-(-x)` too). Parsing and generating are recursive, here and in
# libcst and black: the limit bounds the stack they need (see ``api.with_headroom``) and
# keeps the time reasonable (libcst's parser alone is quadratic in the depth). CPython 3.11,
# at its default recursion limit, refuses to compile expressions two to three times deeper.
MAX_NESTING = 1000
TOO_DEEP = (
    f"expression nested too deeply (more than {MAX_NESTING} levels): split it into several lines"
)


def parse_module(text: str, filename: str) -> ParsedModule:
    """Parse ``text`` and read its top level; raises ``GradgenError`` on a syntax error."""
    # CPython's parser reads the text first: it refuses what Python cannot run (more than
    # 200 nested parentheses, which libcst's parser accepts slowly or crashes on), words
    # syntax errors best, and runs nothing. Then nesting is bounded before libcst sees it.
    _check_nesting(_python_tree(text, filename), text, filename)
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError:
        raise _syntax_error(text, filename) from None
    parsed = ParsedModule(filename, text, module, ModuleContext(), [])
    _read_top_level(parsed)
    return parsed


def _python_tree(text: str, filename: str) -> ast.Module:
    try:
        return ast.parse(text, filename=filename)
    except SyntaxError as error:
        raise GradgenError([_syntax_diagnostic(error, text, filename)]) from None
    except (RecursionError, MemoryError):
        # CPython's parser ran out of its own stack ("too complex"): an expression so deep
        # that the line holding it has more tokens than MAX_NESTING. Without such a line,
        # memory did run out.
        (line, column), tokens = _longest_logical_line(text)
        if tokens <= MAX_NESTING:
            raise
        diagnostic = Diagnostic(filename, line, column, TOO_DEEP, source_line(text, line))
        raise GradgenError([diagnostic]) from None


def _longest_logical_line(text: str) -> tuple[tuple[int, int], int]:
    """Where the logical line with the most tokens starts (1-based line and column), and
    how many tokens it has."""
    best, best_count, start, count = (1, 1), 0, None, 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if start is not None and count > best_count:
                    best, best_count = start, count
                start, count = None, 0
            elif token.type not in _LAYOUT_TOKENS:
                if start is None:
                    start = (token.start[0], token.start[1] + 1)
                count += 1
    except (tokenize.TokenError, SyntaxError):
        pass
    return best, best_count


_LAYOUT_TOKENS = frozenset(
    {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
)


def _check_nesting(tree: ast.Module, text: str, filename: str) -> None:
    """Refuse every outermost expression holding one more than ``MAX_NESTING`` deep."""
    found: list[Diagnostic] = []
    # (node, depth of expressions above it, the outermost of them); a stack, not recursion.
    pending: list[tuple[ast.AST, int, ast.AST | None]] = [(tree, 0, None)]
    refused: set[int] = set()
    while pending:
        node, depth, outermost = pending.pop()
        if isinstance(node, ast.expr):
            depth += 1
            outermost = outermost or node
            if depth > MAX_NESTING:
                if id(outermost) not in refused:
                    refused.add(id(outermost))
                    found.append(_ast_diagnostic(outermost, text, filename, TOO_DEEP))
                continue
        for name in node._fields:
            child = getattr(node, name, None)
            if isinstance(child, ast.AST):
                pending.append((child, depth, outermost))
            elif isinstance(child, list):
                pending.extend((c, depth, outermost) for c in child if isinstance(c, ast.AST))
    if found:
        found.sort(key=lambda d: (d.line, d.column))
        raise GradgenError(found)


def _ast_diagnostic(node: ast.AST, text: str, filename: str, message: str) -> Diagnostic:
    line = getattr(node, "lineno", 1)
    code = source_line(text, line)
    # ast counts columns in UTF-8 bytes; messages count characters, as libcst does.
    offset = getattr(node, "col_offset", 0)
    column = len(code.encode("utf-8")[:offset].decode("utf-8", errors="ignore")) + 1
    return Diagnostic(filename, line, column, message, code)


def _syntax_error(text: str, filename: str) -> GradgenError:
    # CPython's own parser words syntax errors best and places them precisely; compiling to
    # an AST runs nothing.
    try:
        ast.parse(text, filename=filename)
    except SyntaxError as error:
        return GradgenError([_syntax_diagnostic(error, text, filename)])
    return GradgenError(
        [Diagnostic(filename, 1, 1, "invalid syntax: this file is not Python that gradgen reads")]
    )


def _syntax_diagnostic(error: SyntaxError, text: str, filename: str) -> Diagnostic:
    line = error.lineno or 1
    column = error.offset or 1
    message = f"invalid syntax: {error.msg}"
    return Diagnostic(filename, line, column, message, source_line(text, line))


def _read_top_level(parsed: ParsedModule) -> None:
    context = parsed.context
    for statement in parsed.module.body:
        if isinstance(statement, cst.FunctionDef):
            parsed.functions.append(statement)
            context.other_names.add(statement.name.value)
            context.constants.pop(statement.name.value, None)
        elif isinstance(statement, cst.ClassDef):
            context.other_names.add(statement.name.value)
        elif isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                _read_top_level_statement(small, context)


def _read_top_level_statement(small: cst.BaseSmallStatement, context: ModuleContext) -> None:
    if isinstance(small, cst.Import):
        for alias in small.names:
            dotted = dotted_name(alias.name) or ""
            if alias.asname is not None:
                name = _alias_name(alias)
                context.imports[name] = Import(name, dotted)
            else:
                head = dotted.split(".")[0]
                context.imports[head] = Import(head, head)
    elif isinstance(small, cst.ImportFrom):
        module = dotted_name(small.module) if small.module is not None else None
        if small.relative or module is None:
            names = [] if isinstance(small.names, cst.ImportStar) else small.names
            context.other_names.update(_alias_name(a) for a in names)
            dots = "." * len(small.relative)
            for alias in names:
                attr = dotted_name(alias.name) or ""
                name = _alias_name(alias)
                context.relative_imports[name] = Import(name, dots + (module or ""), attr)
        elif isinstance(small.names, cst.ImportStar):
            context.star_imports.append(module)
        else:
            for alias in small.names:
                attr = dotted_name(alias.name) or ""
                name = _alias_name(alias)
                context.imports[name] = Import(name, module, attr)
    elif isinstance(small, (cst.Assign, cst.AnnAssign)):
        targets = (
            [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
        )
        for target in targets:
            if not isinstance(target, cst.Name):
                if small.value is not None and _constant_tuple(target, small.value, context):
                    continue  # ROWS, COLS = 40, 60
                for name in _bound_names(target):  # inputs, targets = load()
                    context.constants.pop(name, None)
                    context.other_names.add(name)
                    context.data.add(name)
                continue
            name = target.value
            value = _module_constant(small.value, context) if small.value is not None else None
            context.constants.pop(name, None)
            if value is None:
                context.other_names.add(name)
                context.data.add(name)
            else:
                context.other_names.discard(name)
                context.data.discard(name)
                context.constants[name] = value


def _constant_tuple(
    target: cst.BaseExpression, value: cst.BaseExpression, context: ModuleContext
) -> bool:
    """``ROWS, COLS = 40, 60``: names bound to constants element by element, recorded as
    constants (each its own line in the generated module); False, recording nothing, for
    anything else (``X, y = load()``)."""
    if not isinstance(target, (cst.Tuple, cst.List)) or not isinstance(
        value, (cst.Tuple, cst.List)
    ):
        return False
    names = [e.value for e in target.elements]
    values = [e.value for e in value.elements]
    if len(names) != len(values) or not all(isinstance(n, cst.Name) for n in names):
        return False
    if any(isinstance(e, cst.StarredElement) for e in (*target.elements, *value.elements)):
        return False
    constants = [_module_constant(v, context) for v in values]
    if any(c is None for c in constants):
        return False
    for name, constant in zip(names, constants, strict=True):
        assert isinstance(name, cst.Name) and constant is not None
        context.constants.pop(name.value, None)
        context.other_names.discard(name.value)
        context.data.discard(name.value)
        context.constants[name.value] = constant
    return True


def _alias_name(alias: cst.ImportAlias) -> str:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return (dotted_name(alias.name) or "").split(".")[0]


class _ConstantResolver:
    """Reads a module-level right-hand side; succeeds only for constant arithmetic."""

    def __init__(self, context: ModuleContext) -> None:
        self.context = context
        self.ok = True

    def is_value_name(self, name: str) -> bool:
        return name not in self.context.imports

    def attribute(self, node: cst.Attribute, value: Expr, name: str) -> Expr | None:
        self.ok = False
        return None

    def method(self, node: cst.Attribute, name: str) -> Func | None:
        self.ok = False
        return None

    def value(self, node: cst.Name | cst.Attribute, dotted: str) -> Expr | None:
        constant = _library_constant(dotted, self.context)
        if constant is not None or dotted in self.context.constants:
            return Const(dotted)
        self.ok = False
        return None

    def function(self, node: cst.BaseExpression, dotted: str | None) -> Func | None:
        self.ok = False
        return None

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        self.ok = False


def _module_constant(node: cst.BaseExpression, context: ModuleContext) -> Expr | None:
    resolver = _ConstantResolver(context)
    value = convert(node, resolver)
    return value if resolver.ok and is_constant(value) else None


def _library_constant(dotted: str, context: ModuleContext) -> str | None:
    """``"math"`` for ``math.pi`` / ``np.pi`` / ``pi`` imported from math; else None."""
    head, _, attr = dotted.partition(".")
    binding = context.imports.get(head)
    if binding is None:
        return None
    if binding.attr is None and attr and "." not in attr:
        library = _LIBRARY_MODULES.get(binding.module)
        if library and attr in CONSTANTS[library]:
            return library
    if binding.attr is not None and not attr:
        library = _LIBRARY_MODULES.get(binding.module)
        if library and binding.attr in CONSTANTS[library]:
            return library
    return None


# --- the fence: one function ------------------------------------------------------------------

_REFUSED_STATEMENTS: dict[type[cst.CSTNode], str] = {
    cst.For: "loops are not supported: gradgen differentiates straight-line code "
    "(unroll the loop, or vectorize it)",
    cst.While: "'while' loops are not supported here",
    cst.Try: "'try' is not supported: gradgen differentiates straight-line code",
    cst.TryStar: "'try' is not supported: gradgen differentiates straight-line code",
    cst.With: "'with' is not supported: gradgen differentiates straight-line code",
    cst.FunctionDef: "nested functions are not supported: define helpers at module level "
    "and inline them",
    cst.ClassDef: "classes inside functions are not supported",
    cst.Match: "'match' is not supported: gradgen differentiates straight-line code",
    cst.Global: "'global' is not supported: the backward must not depend on module state",
    cst.Nonlocal: "'nonlocal' is not supported",
    cst.Del: "'del' is not supported",
    cst.Import: "imports inside functions are not supported: import at module level",
    cst.ImportFrom: "imports inside functions are not supported: import at module level",
    cst.Raise: "'raise' is supported as the last statement of a side of an 'if' only",
    cst.Assert: "'assert' is not supported: the backward would silently skip the check",
    cst.Break: "'break' is not supported",
    cst.Continue: "'continue' is not supported",
}


_GENERATOR_PLACES = (
    "'.{method}()' draws random numbers from a generator gradgen cannot see: draw from a "
    "parameter of the function (def f(x, rng): ... rng.{method}(...)) or from a module-level "
    "name (rng = np.random.default_rng(0))"
)


class _FunctionResolver:
    """What names mean inside one forward function, statement by statement."""

    def __init__(self, parsed: ParsedModule, assigned_later: set[str]) -> None:
        self.parsed = parsed
        self.context = parsed.context
        self.local: set[str] = set()
        self.assigned_later = assigned_later
        self.used_globals: set[str] = set()
        self.calls: dict[str, None] = {}  # functions of the module called, in order
        self.data: dict[str, cst.CSTNode] = {}  # module data read, and where first
        self.generators: set[str] = set()  # parameters a method may draw from
        self.layout = Layout()  # the structured parameters, once the parameters are read
        # Conditional expressions read as an ``if`` binding a name of their own (by node).
        self.conditionals: dict[int, str] = {}
        self.taken: set[str] = set()  # every name the function's text uses
        self.kinds: set[type] = set()  # every kind of libcst node in the function
        self.returned: list[str] = []  # the names returns in the sides of an if bind
        self.parameters: set[str] = set()
        self.rebound: set[str] = set()  # every name some statement of the function binds

    def conditional(self, node: cst.IfExp) -> Expr | None:
        name = self.conditionals.get(id(node))
        return None if name is None else Name(name, origin=node)

    def fresh(self, base: str) -> str:
        """A name the function does not use: ``base``, else ``base_2``, ``base_3``, ..."""
        name, number = base, 1
        while name in self.taken:
            number += 1
            name = f"{base}_{number}"
        self.taken.add(name)
        return name

    def leaf(self, node: cst.Subscript) -> Expr | None:
        name = self.layout.leaf_of(node)
        return None if name is None else Name(name, origin=node)

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        self.parsed.refuse(node, message)

    def is_value_name(self, name: str) -> bool:
        # Module data is a value too: LABELS.shape[0], W0.T, LABELS.reshape(3, 1).
        return name in self.local or name in self.assigned_later or self._is_data(name)

    def _is_data(self, name: str) -> bool:
        return (
            name in self.context.data
            and name not in self.parsed.function_names
            and name not in self.context.imports
        )

    def attribute(self, node: cst.Attribute, value: Expr, name: str) -> Expr | None:
        if name not in VALUE_ATTRIBUTES:
            self.refuse(
                node.attr,
                f"the attribute '.{name}' is not supported: gradgen knows "
                + ", ".join(f".{a}" for a in VALUE_ATTRIBUTES),
            )
            return None
        return Attribute(value, name, origin=node)

    def method(self, node: cst.Attribute, name: str) -> Func | None:
        if name not in METHODS and name in DRAW_METHODS:
            receiver = node.value
            if isinstance(receiver, cst.Name) and (
                receiver.value in self.generators or self._is_data(receiver.value)
            ):
                # rng.normal(size=3) with rng a parameter, or module data (rs =
                # np.random.RandomState(0)): a draw; rng is data.
                return Func(GENERATOR, name, f".{name}")
            self.refuse(node, _GENERATOR_PLACES.format(method=name))
            return None
        if name not in METHODS:
            self.refuse(node.attr, f"the method '.{name}()' is not an operation gradgen knows")
            return None
        return Func("numpy", METHODS[name], f".{name}")

    def value(self, node: cst.Name | cst.Attribute, dotted: str) -> Expr | None:
        head, _, rest = dotted.partition(".")
        if head in self.local:
            return Name(head, origin=node)
        if dotted in _LITERAL_NAMES and dotted not in self.context.other_names:
            return Const(dotted, origin=node)
        if head in self.assigned_later:
            self.refuse(node, f"'{head}' is used before it is assigned")
            return None
        if _library_constant(dotted, self.context) is not None:
            self.used_globals.add(head)
            return Const(dotted, origin=node)
        if not rest and head in self.context.constants:
            self.used_globals.add(head)
            return Const(dotted, origin=node)
        if not rest and head in self.context.data and head not in self.parsed.function_names:
            # Module data: a value of unknown shape with no gradient (no parameter reaches
            # it), read where the backward runs.
            self.used_globals.add(head)
            self.data.setdefault(head, node)
            return Name(head, origin=node)
        self.refuse(node, self._unknown_value(head, dotted))
        return None

    def _unknown_value(self, head: str, dotted: str) -> str:
        binding = self.context.imports.get(head)
        if binding is not None:
            if binding.attr is None and not dotted.count("."):
                return f"the module '{head}' is not a value"
            return f"'{dotted}' is not a constant gradgen knows"
        if head in self.context.other_names:
            return (
                f"'{head}' is defined at module level by code gradgen does not run; "
                "only constants (NAME = number or arithmetic on numbers) can be used"
            )
        hint = (
            f" (star imports from {', '.join(self.context.star_imports)} are not read)"
            if self.context.star_imports
            else ""
        )
        return f"undefined name '{head}'{hint}"

    def function(self, node: cst.BaseExpression, dotted: str | None) -> Func | None:
        if dotted is None:
            self.refuse(node, "only named functions can be called")
            return None
        head, _, attr = dotted.partition(".")
        if head in self.local:
            self.refuse(node, f"'{head}' is a value here, not a function gradgen knows")
            return None
        linked = self.parsed.linked_function(dotted)
        if linked is not None:
            # A function of another forward module: differentiated like one of this module,
            # and the generated functions are named after it, so its name must be its own.
            if linked.name in self.parsed.function_names or any(
                other.name == linked.name and other.module is not linked.module
                for other in self.parsed.linked.values()
            ):
                self.refuse(
                    node,
                    f"'{dotted}' is '{linked.name}' of {linked.module.filename}, and another "
                    f"function called here is named '{linked.name}' too: the generated "
                    "module names its functions after them; rename one",
                )
                return None
            self.calls.setdefault(linked.name)
            return Func(USER, linked.name, dotted)
        binding = self.context.imports.get(head)
        if binding is not None:
            return self._imported_function(node, dotted, binding, attr)
        builtin = ("builtins", head)
        usable = head in BUILTINS or builtin in NONDIFFERENTIABLE
        if not attr and usable and head not in self.context.other_names:
            return Func("builtins", head, head)
        if not attr and head in self.parsed.function_names:
            # A function of this module: differentiated too, its backward called by ours.
            self.calls.setdefault(head)
            return Func(USER, head, head)
        if attr in DRAW_METHODS and head in self.context.data:
            if head in self.parsed.function_names:
                self.refuse(node, _GENERATOR_PLACES.format(method=attr))
                return None
            # rs.randn(3) with rs = np.random.RandomState(0) at module level: a draw from
            # module data, which the generated module imports from the forward module.
            self.used_globals.add(head)
            self.data.setdefault(head, node)
            return Func(GENERATOR, attr, dotted)

        relative = self.context.relative_imports.get(head)
        if relative is not None:
            self.refuse(
                node,
                f"'{dotted}' is imported from '{relative.module}', which gradgen found no "
                "forward module for next to this file, so it cannot see inside it",
            )
        elif head in self.context.other_names:
            self.refuse(
                node,
                f"'{head}' is not a function defined with 'def' in this module, so gradgen "
                "cannot see inside it; define it with 'def' at top level, or write the "
                "computation out in this function",
            )
        elif hasattr(builtins, head):
            self.refuse(node, f"'{dotted}' is not an operation gradgen can differentiate")
        else:
            self.refuse(node, f"undefined name '{head}'")
        return None

    def _imported_function(
        self, node: cst.BaseExpression, dotted: str, binding: Import, attr: str
    ) -> Func | None:
        if binding.attr is None and not attr:
            self.refuse(node, f"'{dotted}' is not an operation gradgen can differentiate")
            return None
        # The function's full name: np.linalg.slogdet -> numpy.linalg, slogdet.
        parts = (binding.module, binding.attr, attr)
        module, _, name = ".".join(p for p in parts if p).rpartition(".")
        if module.startswith("numpy.random") or module == "random":
            if name not in DRAW_MODULES.get(module, frozenset()):
                self.refuse(
                    node,
                    f"'{dotted}' does not draw random numbers, and gradgen reads nothing "
                    "else of the random modules inside a forward function: make a generator "
                    "at module level (rs = np.random.RandomState(0)) or pass one in as a "
                    "parameter, and draw from it (rs.randn(3))",
                )
                return None
            # A draw: a value with no gradient, drawn once where the forward runs once.
            self.used_globals.add(binding.name)
            return Func(module, name, dotted)
        if (module, name) == STOP_GRADIENT:
            return Func(module, name, dotted)  # written as its argument: gradgen not imported
        if module.partition(".")[0] == "gradgen":
            self.refuse(node, f"'{dotted}' is not an operation gradgen can differentiate")
            return None
        # A function the rules table does not know is opaque (rules.is_opaque): computed as
        # written, refused only where a gradient would have to flow through it.
        self.used_globals.add(binding.name)
        return Func(module, name, dotted)


def not_forward(parsed: ParsedModule) -> set[str]:
    """The module's functions that are not forward functions of their own, left out when
    every function is generated (a forward function may still call one; asked for by name,
    one is differentiated): those its top level calls (``inputs, targets = load()``), which
    make data when the module runs, and those with no parameter (a script's ``main()``),
    which have no gradient to give. Calls under ``if __name__ == "__main__":`` are a
    script's use of the module, not data it makes."""
    defined = parsed.function_names
    found = {
        f.name.value
        for f in parsed.functions
        if not (
            f.params.params
            or f.params.posonly_params
            or f.params.kwonly_params
            or isinstance(f.params.star_arg, cst.Param)
            or f.params.star_kwarg is not None
        )
    }

    class _Calls(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return False  # a body runs when called, not at import

        def visit_Lambda(self, node: cst.Lambda) -> bool:
            return False

        def visit_ClassDef(self, node: cst.ClassDef) -> bool:
            return False

        def visit_If(self, node: cst.If) -> bool:
            return not _is_main_guard(node.test)

        def visit_Call(self, node: cst.Call) -> None:
            if isinstance(node.func, cst.Name) and node.func.value in defined:
                found.add(node.func.value)

    parsed.module.visit(_Calls())
    return found


def _is_main_guard(test: cst.BaseExpression) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return False
    sides = [test.left, test.comparisons[0].comparator]
    names = [s.value for s in sides if isinstance(s, cst.Name)]
    strings = [s.evaluated_value for s in sides if isinstance(s, cst.SimpleString)]
    return names == ["__name__"] and strings == ["__main__"]


def read_functions(
    parsed: ParsedModule, only: str | None = None, skip: Collection[str] = ()
) -> list[ForwardFunction]:
    """Validate the module's top-level functions (or just ``only``), except those ``skip``
    names (the functions of user rules, which are not differentiated); refuse with every
    problem."""
    functions = [
        f
        for f in parsed.functions
        if (only is None and f.name.value not in skip) or f.name.value == only
    ]
    if not functions:
        if only is None:
            message = "no function to differentiate: define one with 'def' at top level"
        else:
            message = f"no function '{only}' defined with 'def' in this source"
        parsed.refuse(parsed.module, message)
        parsed.raise_problems()
    seen: set[str] = set()
    result = []
    for function in functions:
        if function.name.value in seen:
            parsed.refuse(function.name, f"function '{function.name.value}' is defined twice")
        seen.add(function.name.value)
        forward = _read_function(parsed, function)
        if forward is not None:
            result.append(forward)
    parsed.raise_problems()
    return result


def _read_function(parsed: ParsedModule, function: cst.FunctionDef) -> ForwardFunction | None:
    errors_before = len(parsed.problems)
    if function.asynchronous is not None:
        parsed.refuse(function, "async functions are not supported")
    for decorator in function.decorators:
        _check_decorator(parsed, decorator)
    statements = _block_statements(parsed, function.body, top=True)
    flat = list(_flat_nodes(statements))
    assigned = {
        name
        for s in flat
        if isinstance(s, (cst.Assign, cst.AnnAssign))
        for t in _targets(s)
        for name in _bound_names(t)
    }
    assigned |= {name for s in flat if isinstance(s, _ForBlock) for name in s.target_names}
    resolver = _FunctionResolver(parsed, assigned)
    resolver.taken, resolver.kinds = _names_in(function)
    signature = _read_parameters(parsed, function.params, resolver)
    resolver.local.update(p.name for p in signature)
    resolver.parameters = {p.name for p in signature}
    resolver.rebound = set(assigned)
    small = [s for s in flat if not isinstance(s, (_ForBlock, _IfBlock, _Returned))]
    parameters = _with_leaves(parsed, function, signature, small, resolver)
    # A parameter the body never rebinds can be a generator: rng.normal(size=3) draws.
    resolver.generators = {p.name for p in signature} - assigned
    body: list[Statement] = []
    result: tuple[tuple[Expr, ...], tuple[str | None, ...], str] | None = None
    returns_in_sides = any(isinstance(s, _IfBlock) and _returns_inside(s) for s in statements)
    if returns_in_sides:
        statements = _folded_returns(parsed, statements, (), None)
        result = _result_names(parsed, statements, resolver)
    for statement in statements:
        if result is not None and not returns_in_sides:
            parsed.refuse(_node_of(statement), "code after 'return' never runs")
            break
        if isinstance(statement, cst.Return):
            if statement.value is not None:
                body += _hoisted_conditionals(parsed, statement.value, "result", resolver)
            result = _read_return(parsed, statement, resolver)
        else:
            body += _read_statements(parsed, statement, resolver)
    if result is None and len(parsed.problems) == errors_before:
        parsed.refuse(
            function.name,
            f"function '{function.name.value}' has no return statement: gradgen "
            "differentiates the value a function returns",
        )
    if result is not None:
        _check_item_loops(parsed, body, result[0])
        _refuse_unpacked_arguments(parsed, body, result[0])
        body = _last_values(body, result[0], {p.name for p in signature})
    if len(parsed.problems) != errors_before or result is None:
        return None
    values, names, text = result
    return ForwardFunction(
        name=function.name.value,
        parameters=tuple(parameters),
        body=tuple(body),
        results=values,
        result_names=names,
        result_text=text,
        used_globals=frozenset(resolver.used_globals),
        node=function,
        calls=tuple(resolver.calls),
        data=tuple(resolver.data.items()),
        structured=tuple(resolver.layout.structured.values()),
        signature=tuple(signature) if resolver.layout.structured else (),
    )


def _with_leaves(
    parsed: ParsedModule,
    function: cst.FunctionDef,
    signature: list[Parameter],
    statements: list[cst.BaseSmallStatement],
    resolver: _FunctionResolver,
) -> list[Parameter]:
    """The parameters with each structured one replaced by its leaves (structure.py)."""
    context = parsed.context
    taken = set(context.imports) | set(context.constants) | context.other_names | context.data
    # What a loop goes over reads leaves too: range(len(params["xs"])).
    loops = _Loops()
    if resolver.kinds & {cst.For, cst.While}:  # a visit costs a copy of the body
        function.body.visit(loops)
    statements = [*statements, *(cst.Expr(iterable) for iterable in loops.iterables)]
    # A list a loop goes over (for W, b in layers:) is no structured parameter: its items
    # are read by the loop (Item), whatever its annotation says of their shapes.
    iterated = set(loops.names) - resolver.rebound
    params = function.params.with_changes(
        params=[
            p.with_changes(annotation=None) if p.name.value in iterated else p
            for p in function.params.params
        ]
    )
    layout = find_structure(params, statements, taken, parsed.function_names, parsed.refuse)
    resolver.layout = layout
    parameters = []
    for parameter, param in zip(signature, function.params.params, strict=True):
        structured = layout.structured.get(parameter.name)
        if structured is None:
            parameters.append(parameter)
            continue
        if parameter.default is not None:
            parsed.refuse(param.default or param, "a structured parameter cannot have a default")
        for leaf in structured.leaves:
            parameters.append(Parameter(leaf.name, None, leaf.shape))
            resolver.local.add(leaf.name)
    return parameters


class _Loops(cst.CSTVisitor):
    """What each ``for`` loop goes over, in order."""

    def __init__(self) -> None:
        self.iterables: list[cst.BaseExpression] = []
        self.names: list[str] = []  # what loops go over the items of (for W, b in layers:)

    def visit_For(self, node: cst.For) -> None:
        self.iterables.append(node.iter)
        if isinstance(node.iter, cst.Name):
            self.names.append(node.iter.value)

    def visit_While(self, node: cst.While) -> None:
        self.iterables.append(node.test)


def _leaf_assignment(statement: cst.Assign, bound: list[tuple[str, str]]) -> Assignment | None:
    """``W1, b1 = params`` (each name -> its leaf) as the renaming it is; None when every
    name is its leaf's own (nothing to bind)."""
    renamed = [(name, leaf) for name, leaf in bound if name != leaf]
    if not renamed:
        return None
    text = cst.Module([]).code_for_node(statement).strip()
    if len(renamed) == 1:
        name, leaf = renamed[0]
        return Assignment(name, Name(leaf), text)
    names = tuple(name for name, _ in renamed)
    value = Sequence_(tuple(Name(leaf) for _, leaf in renamed), "()")
    return Assignment(names[0], value, text, names, origin=statement)


def _check_decorator(parsed: ParsedModule, decorator: cst.Decorator) -> None:
    target = decorator.decorator
    if isinstance(target, cst.Call):
        target = target.func
    dotted = dotted_name(target) or ""
    head, _, attr = dotted.partition(".")
    binding = parsed.context.imports.get(head)
    is_gradgen = (
        binding is not None
        and binding.module.split(".")[0] == "gradgen"
        and _DECORATOR in (binding.attr, attr)
    )
    if not is_gradgen:
        parsed.refuse(
            decorator,
            f"decorator '@{dotted or '...'}' is not supported: gradgen cannot see what it "
            "does to the function",
        )


@dataclass
class _ForBlock:
    """A ``for`` (or ``while``) loop the fence lets through, and its statements, read once."""

    node: cst.For | cst.While
    body: list[_Node]

    @property
    def target_names(self) -> list[str]:
        return _bound_names(self.node.target) if isinstance(self.node, cst.For) else []


@dataclass
class _IfBlock:
    """An ``if`` statement, its statements and those of its ``else`` (an ``elif``: one
    ``_IfBlock``), read once."""

    node: cst.If
    body: list[_Node]
    orelse: list[_Node]


@dataclass
class _Returned:
    """A ``return`` at the end of a side of an ``if`` (``_folded_returns``): read as the
    binding of the function's result names (``out``), which the function returns once."""

    node: cst.Return


_Node = cst.BaseSmallStatement | _ForBlock | _IfBlock | _Returned


def _node_of(statement: _Node) -> cst.CSTNode:
    if isinstance(statement, (_ForBlock, _IfBlock, _Returned)):
        return statement.node
    return statement


def _returns_inside(block: _IfBlock) -> bool:
    """Does a side of ``block`` (or of an ``if`` in it) return?"""
    return any(
        isinstance(s, cst.Return) or (isinstance(s, _IfBlock) and _returns_inside(s))
        for s in (*block.body, *block.orelse)
    )


def _folded_returns(
    parsed: ParsedModule,
    block: list[_Node],
    rest: tuple[list[_Node], ...],
    within: cst.If | None,
) -> list[_Node]:
    """``block`` (then ``rest``: the statements after the ``if`` it is a side of, and after
    the ``if`` that one is a side of, ...) with each
    ``return`` in the sides of an ``if`` the end of that side: a side that does not return
    goes on with what follows the ``if``, copied into it. ``if c: return a`` then ``return
    b`` reads as ``if c: out = a else: out = b`` and ``return out``."""
    folded: list[_Node] = []
    for position, statement in enumerate(block):
        if isinstance(statement, cst.Return):
            if position + 1 < len(block):
                parsed.refuse(_node_of(block[position + 1]), "code after 'return' never runs")
            folded.append(_Returned(statement))
            return folded
        if isinstance(statement, cst.Raise) and within is not None:
            # A side that raises ends there: what follows the 'if' is not its to run.
            folded += block[position:]
            return folded
        if isinstance(statement, _IfBlock) and _returns_inside(statement):
            after = (block[position + 1 :], *rest)
            body = _folded_returns(parsed, statement.body, after, statement.node)
            orelse = _folded_returns(parsed, statement.orelse, after, statement.node)
            folded.append(_IfBlock(statement.node, body, orelse))
            return folded
        folded.append(statement)
    if rest:
        return folded + _folded_returns(parsed, rest[0], rest[1:], within)
    if within is not None:
        parsed.refuse(
            within,
            "a side of this if ends without 'return' while another returns: return in "
            "every side, or after the if",
        )
    return folded


def _continues_inside(block: _IfBlock) -> bool:
    """Does a side of ``block`` (or of an ``if`` in it, not of a loop) ``continue``?"""
    return any(
        isinstance(s, cst.Continue) or (isinstance(s, _IfBlock) and _continues_inside(s))
        for s in (*block.body, *block.orelse)
    )


def _folded_continues(
    parsed: ParsedModule, block: list[_Node], rest: Sequence[_Node] = ()
) -> list[_Node]:
    """A loop's statements (``block``, then ``rest``: those after the ``if`` it is a side
    of) with each ``continue`` the end of its step: the statements after an ``if`` a side
    of which continues go on in its other sides (``if j == y[i]: continue`` then ``loss +=
    margin`` reads as ``if j == y[i]: pass else: loss += margin``), as Python runs them."""
    folded: list[_Node] = []
    for position, statement in enumerate(block):
        if isinstance(statement, cst.Continue):
            if position + 1 < len(block):
                parsed.refuse(_node_of(block[position + 1]), "code after 'continue' never runs")
            return folded
        if isinstance(statement, _IfBlock) and _continues_inside(statement):
            after = [*block[position + 1 :], *rest]
            body = _folded_continues(parsed, statement.body, after)
            orelse = _folded_continues(parsed, statement.orelse, after)
            folded.append(_IfBlock(statement.node, body, orelse))
            return folded
        folded.append(statement)
    return folded + _folded_continues(parsed, list(rest)) if rest else folded


def _flat_nodes(statements: list[_Node]) -> Iterator[_Node]:
    """Every statement, those inside loops and branches too, in order."""
    for statement in statements:
        yield statement
        if isinstance(statement, _ForBlock):
            yield from _flat_nodes(statement.body)
        elif isinstance(statement, _IfBlock):
            yield from _flat_nodes(statement.body)
            yield from _flat_nodes(statement.orelse)


def _if_block(parsed: ParsedModule, node: cst.If) -> _IfBlock:
    orelse: list[_Node] = []
    if isinstance(node.orelse, cst.If):
        orelse = [_if_block(parsed, node.orelse)]
    elif isinstance(node.orelse, cst.Else):
        orelse = _block_statements(parsed, node.orelse.body)
    return _IfBlock(node, _block_statements(parsed, node.body), orelse)


def _block_statements(parsed: ParsedModule, block: cst.BaseSuite, top: bool = False) -> list[_Node]:
    """A block's simple statements and ``for`` loops in order; other compound statements
    are refused."""
    lines: Sequence[cst.CSTNode] = (
        [block]
        if isinstance(block, cst.SimpleStatementSuite)
        else [line for line in block.body if isinstance(line, cst.CSTNode)]
    )
    found: list[_Node] = []
    for position, line in enumerate(lines):
        if isinstance(line, cst.For) and line.asynchronous is None:
            if line.orelse is not None:
                parsed.refuse(line.orelse, "'for ... else' is not supported")
            body = _folded_continues(parsed, _block_statements(parsed, line.body))
            found.append(_ForBlock(line, body))
            continue
        if isinstance(line, cst.While):
            if line.orelse is not None:
                parsed.refuse(line.orelse, "'while ... else' is not supported")
            body = _folded_continues(parsed, _block_statements(parsed, line.body))
            found.append(_ForBlock(line, body))
            continue
        if isinstance(line, cst.If):
            found.append(_if_block(parsed, line))
            continue
        if not isinstance(line, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
            message = _REFUSED_STATEMENTS.get(type(line), f"{type(line).__name__} is not supported")
            if isinstance(line, (cst.For, cst.With)) and line.asynchronous is not None:
                message = "'async' statements are not supported"
            parsed.refuse(line, message)
            continue
        for small in line.body:
            if isinstance(small, cst.Pass):
                continue
            if isinstance(small, cst.Break) and not top:
                parsed.refuse(
                    small,
                    "'break' is not supported: a loop runs all its steps (compute the "
                    "number of steps first, or use np.where inside the step)",
                )
                continue
            if isinstance(small, cst.Continue) and not top:
                found.append(small)  # read by the loop it ends a step of (_folded_continues)
                continue
            if isinstance(small, cst.Expr):
                if _is_append(small):
                    found.append(small)
                    continue
                is_docstring = (
                    top
                    and position == 0
                    and isinstance(small.value, (cst.SimpleString, cst.ConcatenatedString))
                )
                if not is_docstring:
                    parsed.refuse(
                        small,
                        "expression statements are not supported: the value is discarded, "
                        "and a call could have side effects the backward would not repeat",
                    )
                continue
            found.append(small)
    return found


def _is_append(statement: cst.Expr) -> bool:
    """``hs.append(h)``: a list filled in a loop."""
    call = statement.value
    return (
        isinstance(call, cst.Call)
        and isinstance(call.func, cst.Attribute)
        and isinstance(call.func.value, cst.Name)
        and call.func.attr.value == "append"
        and len(call.args) == 1
        and call.args[0].keyword is None
        and not call.args[0].star
    )


def _result_names(
    parsed: ParsedModule, statements: list[_Node], resolver: _FunctionResolver
) -> tuple[tuple[Expr, ...], tuple[str | None, ...], str] | None:
    """The names the folded ``return`` statements bind (``out``, or ``out``, ``out_2``, ...
    for several values), as the function's result; None after refusing returns of
    different numbers of values."""
    returns = [s.node for s in _flat_nodes(statements) if isinstance(s, _Returned)]
    counts = {_returned_count(r) for r in returns}
    if len(counts) != 1:
        parsed.refuse(returns[-1], "every 'return' must give the same number of values")
        return None
    count = counts.pop()
    names = [resolver.fresh("out") for _ in range(count)]
    resolver.returned = names
    values = tuple(Name(n) for n in names)
    return values, tuple(names), f"return {', '.join(names)}"


def _returned_count(statement: cst.Return) -> int:
    value = statement.value
    return len(value.elements) if isinstance(value, cst.Tuple) else 1


def _read_statements(
    parsed: ParsedModule, statement: _Node, resolver: _FunctionResolver
) -> list[Statement]:
    """``statement`` read, after the ``if`` statements its conditional expressions are
    read as (``y = a if c else b`` is itself one)."""
    if isinstance(statement, _Returned):
        value = statement.node.value
        if not resolver.returned:
            return []  # returns of different numbers of values: refused already
        if value is None:
            parsed.refuse(
                statement.node, "'return' needs a value: gradgen differentiates that value"
            )
            return []
        nodes: list[cst.BaseExpression] = [value]
        if isinstance(value, cst.Tuple):
            nodes = []
            for element in value.elements:
                if isinstance(element, cst.StarredElement):
                    parsed.refuse(element, "a starred value in 'return' is not supported")
                    return []
                nodes.append(element.value)
        return [
            read
            for node, name in zip(nodes, resolver.returned, strict=True)
            for read in _bound_to(parsed, node, name, resolver)
        ]
    hoisted: list[Statement] = []
    if isinstance(statement, (cst.Assign, cst.AnnAssign)) and statement.value is not None:
        targets = _targets(statement)
        value = statement.value
        if len(targets) == 1 and isinstance(targets[0], cst.Name) and isinstance(value, cst.IfExp):
            name = targets[0].value
            if resolver.layout.bindings.get(id(statement)) is None:
                return _bound_to(parsed, value, name, resolver)
        base = (
            targets[0].value if len(targets) == 1 and isinstance(targets[0], cst.Name) else "value"
        )
        hoisted = _hoisted_conditionals(parsed, value, base, resolver)
    elif isinstance(statement, cst.AugAssign) and isinstance(statement.target, cst.Name):
        hoisted = _hoisted_conditionals(parsed, statement.value, statement.target.value, resolver)
    elif isinstance(statement, cst.Expr) and isinstance(statement.value, cst.Call):
        for argument in statement.value.args:
            hoisted += _hoisted_conditionals(parsed, argument.value, "item", resolver)
    if isinstance(statement, _IfBlock):
        return [*hoisted, *_read_branch(parsed, statement, resolver)]
    if isinstance(statement, _ForBlock):
        return [*hoisted, *_read_loop(parsed, statement, resolver)]
    read = _read_statement(parsed, statement, resolver)
    return hoisted if read is None else [*hoisted, read]


def _bound_to(
    parsed: ParsedModule, node: cst.BaseExpression, name: str, resolver: _FunctionResolver
) -> list[Statement]:
    """``name = node`` as statements: a conditional expression ``a if c else b`` as the
    ``if`` statement binding ``name`` to ``a`` or to ``b`` (the backward takes the side the
    forward took, as for any ``if``), each side read the same way."""
    if isinstance(node, cst.IfExp):
        test = convert_condition(node.test, resolver)
        then = _bound_to(parsed, node.body, name, resolver)
        orelse = _bound_to(parsed, node.orelse, name, resolver)
        return [Branch(test, tuple(then), tuple(orelse), f"if {render(test)}:", origin=node)]
    hoisted = _hoisted_conditionals(parsed, node, name, resolver)
    value = convert(node, resolver)
    resolver.local.add(name)
    resolver.assigned_later.discard(name)
    return [*hoisted, Assignment(name, value, f"{name} = {render(value)}")]


def _hoisted_conditionals(
    parsed: ParsedModule, node: cst.BaseExpression, base: str, resolver: _FunctionResolver
) -> list[Statement]:
    """The conditional expressions within ``node`` (not inside one another), each read as
    an ``if`` statement binding a name of its own (``{base}_if``), which ``convert`` reads
    in its place: ``y = 2.0 * (a if c else b)`` as ``if c: y_if = a else: y_if = b`` and
    ``y = 2.0 * y_if``."""
    statements: list[Statement] = []
    # The walk below costs a copy of each node: only where there is something to find.
    if cst.IfExp not in resolver.kinds or not contains(node, cst.IfExp):
        return statements
    for found in _outer_conditionals(node):
        name = resolver.fresh(f"{base}_if")
        statements += _bound_to(parsed, found, name, resolver)
        resolver.conditionals[id(found)] = name
    return statements


def _outer_conditionals(node: cst.CSTNode) -> list[cst.IfExp]:
    """The conditional expressions in ``node``, outermost first, not those inside one
    another or inside a lambda or comprehension (refused where they are)."""
    if isinstance(node, cst.IfExp):
        return [node]
    if isinstance(node, (cst.Lambda, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)):
        return []
    return [found for child in node.children for found in _outer_conditionals(child)]


def _names_in(function: cst.FunctionDef) -> tuple[set[str], set[type]]:
    """Every name ``function``'s text uses (so a name gradgen makes up is new), and every
    kind of node in it (so a pass that finds none of its kind is skipped)."""
    nodes = list(descendants(function))
    return {n.value for n in nodes if isinstance(n, cst.Name)}, {type(n) for n in nodes}


def _read_statement(
    parsed: ParsedModule, statement: _Node, resolver: _FunctionResolver
) -> Statement | None:
    # read by _read_statements
    assert not isinstance(statement, (_Returned, _ForBlock, _IfBlock))
    if isinstance(statement, cst.Return):
        parsed.refuse(
            statement,
            "'return' inside a loop is not supported: return once, after the loop (bind "
            "the value in the loop)",
        )
        return None
    if isinstance(statement, cst.Expr):
        call = statement.value
        assert isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
        assert isinstance(call.func.value, cst.Name)
        name = call.func.value.value
        if name not in resolver.local:
            resolver.refuse(call.func.value, f"'{name}' is used before it is assigned")
            return None
        value = convert(call.args[0].value, resolver)
        return Append(name, value, f"{name}.append({render(value)})", origin=statement)
    return _read_assignment(parsed, statement, resolver, 0)


def _read_loop(
    parsed: ParsedModule, block: _ForBlock, resolver: _FunctionResolver
) -> list[Statement]:
    """``for t in range(...):``: the steps are numbers the forward can count (a loop over
    ``zip(xs, ys, strict=True)`` follows the guard that its lengths agree)."""
    node = block.node
    if isinstance(node, cst.While):
        read = _read_while(parsed, node, block, resolver)
        return [] if read is None else [read]
    looped = _looped_items(node, resolver)
    if looped is not None:
        return _read_items_loop(parsed, node, block, resolver, looped)
    iterable = convert(node.iter, resolver)
    if not isinstance(node.target, cst.Name):
        parsed.refuse(
            node.target,
            "a loop unpacking into several names goes over the items of a parameter (for W, "
            "b in layers:), enumerate(layers) or zip(xs, ys) of parameters the function "
            "never rebinds; else loop over range(len(xs)) and index",
        )
        return []
    plain = unwrap(iterable)
    several = several_results(plain) if isinstance(plain, Call) else None
    if several is not None and several.pieces is not None:
        parsed.refuse(
            node.iter,
            "gradgen does not loop over the pieces of a split: unpack them into names "
            "(a, b, c = np.split(x, 3)) and write each step out, or loop over range(...) "
            "and slice x",
        )
        return []
    if not _counted(iterable):
        parsed.refuse(
            node.iter,
            "gradgen loops over range(...), reversed(range(...)) or the items of a parameter "
            "the function never rebinds (for W, b in layers:), whose steps the forward can "
            "count: loop over range(len(xs)) and index",
        )
        return []
    target = node.target.value
    resolver.local.add(target)
    resolver.assigned_later.discard(target)
    body = [read for s in block.body for read in _read_statements(parsed, s, resolver)]
    text = f"for {target} in {render(iterable)}:"
    return [Loop(target, iterable, tuple(body), text, origin=node)]


@dataclass(frozen=True)
class _Looped:
    """What a loop over the items of parameters goes over: each parameter with the target
    its items are bound to, the name that numbers them (``enumerate``'s) or None, the number
    of the first (``enumerate(xs, start=1)``), and whether ``zip`` checks that the lengths
    agree (``zip(xs, ys, strict=True)``)."""

    sequences: list[tuple[cst.Name, cst.BaseExpression]]
    number: cst.Name | None = None
    start: int = 0
    strict: bool = False


def _integer(node: cst.BaseExpression) -> int | None:
    """The value of an integer literal (``1``, ``-1``), else None."""
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        value = _integer(node.expression)
        return None if value is None else -value
    return int(node.value, 0) if isinstance(node, cst.Integer) else None


def _looped_items(node: cst.For | cst.While, resolver: _FunctionResolver) -> _Looped | None:
    """What a loop over the items of parameters goes over (``_Looped``), for ``for W, b in
    layers:``, ``for i, (W, b) in enumerate(layers, start=1):`` and ``for x, y in zip(xs,
    ys, strict=True):`` of parameters the function never rebinds; None for any other loop."""
    if not isinstance(node, cst.For):
        return None

    def parameter(expr: cst.BaseExpression) -> bool:
        return (
            isinstance(expr, cst.Name)
            and expr.value in resolver.parameters
            and expr.value not in resolver.rebound
        )

    def called(
        expr: cst.BaseExpression, function: str, keyword: str
    ) -> tuple[list[cst.BaseExpression], cst.BaseExpression | None] | None:
        """The arguments of ``function(...)`` (a builtin: not rebound), if ``expr`` is one,
        and the value of its one ``keyword`` argument, if given."""
        if not (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Name)
            and expr.func.value == function
            and expr.func.value not in resolver.local
            and expr.func.value not in resolver.parameters
            and not any(arg.star for arg in expr.args)
        ):
            return None
        given = {arg.keyword.value: arg.value for arg in expr.args if arg.keyword is not None}
        if set(given) - {keyword}:
            return None
        return [arg.value for arg in expr.args if arg.keyword is None], given.get(keyword)

    def names(target: cst.BaseExpression) -> list[cst.BaseExpression] | None:
        if not isinstance(target, (cst.Tuple, cst.List)) or any(
            isinstance(e, cst.StarredElement) for e in target.elements
        ):
            return None
        return [element.value for element in target.elements]

    def side_by_side(expr: cst.BaseExpression, target: cst.BaseExpression) -> _Looped | None:
        """``zip(xs, ys)`` of parameters, each bound to its own target (``strict=True``
        or ``False`` written out)."""
        zipped, targets = called(expr, SIDE_BY_SIDE, "strict"), names(target)
        if zipped is None or targets is None:
            return None
        sequences, strict = zipped
        if not len(sequences) == len(targets) >= 2 or not all(parameter(s) for s in sequences):
            return None
        if strict is not None and not (
            isinstance(strict, cst.Name) and strict.value in ("True", "False")
        ):
            return None
        named = [s for s in sequences if isinstance(s, cst.Name)]
        checked = isinstance(strict, cst.Name) and strict.value == "True"
        return _Looped(list(zip(named, targets, strict=True)), strict=checked)

    looped = node.iter
    if parameter(looped):
        assert isinstance(looped, cst.Name)
        return _Looped([(looped, node.target)])
    numbered, targets = called(looped, NUMBERED, "start"), names(node.target)
    if numbered is None or targets is None or len(targets) != 2:
        return side_by_side(looped, node.target)
    arguments, start = numbered
    if len(arguments) == 2 and start is None:
        arguments, start = arguments[:1], arguments[1]  # enumerate(xs, 1)
    first = 0 if start is None else _integer(start)
    number, items = targets
    if len(arguments) != 1 or first is None or not isinstance(number, cst.Name):
        return None
    sequence = arguments[0]
    if parameter(sequence):
        assert isinstance(sequence, cst.Name)
        return _Looped([(sequence, items)], number, first)
    zipped = side_by_side(sequence, items)  # for i, (x, y) in enumerate(zip(xs, ys)):
    if zipped is None:
        return None
    return dataclasses.replace(zipped, number=number, start=first)


def _read_items_loop(
    parsed: ParsedModule,
    node: cst.For,
    block: _ForBlock,
    resolver: _FunctionResolver,
    looped: _Looped,
) -> list[Statement]:
    """``for W, b in layers:`` over a list parameter: a loop over ``range(len(layers))``
    whose steps first read their item (``W, b = layers[i]``); the loop's variable is
    ``enumerate``'s number where given (counting from 0: else the step binds it, ``i = k +
    1``). ``zip(xs, ys)``: over the shortest's length, each step reading each one's item;
    with ``strict=True``, after the guard that raises where the lengths differ, as zip
    does."""
    sequences, number = looped.sequences, looped.number
    for sequence, _ in sequences:
        if sequence.value in resolver.layout.structured:
            parsed.refuse(
                sequence,
                f"'{sequence.value}' is read by its entries elsewhere ({sequence.value}[0]...): "
                "read its items in this loop only",
            )
            return []
    if len(sequences) > 1:
        for _, target in sequences:
            if not isinstance(target, cst.Name):
                # Each list's items set its gradient's once per step, by a statement of its
                # own: one loop over one list of tuples is what that is built for.
                parsed.refuse(
                    target,
                    "zip over lists of tuples is not supported: name each item (for x, y in "
                    "zip(xs, ys):), or loop over the list of tuples alone",
                )
                return []
    counted = number is not None and not looped.start
    index = number.value if number is not None and counted else resolver.fresh("i")
    steps = Func(*STEPS, STEPS[1])
    length = Func(*LENGTH, LENGTH[1])
    lengths = tuple(Call(length, (Name(s.value),), ()) for s, _ in sequences)
    count = lengths[0] if len(lengths) == 1 else Call(Func(*SHORTEST, SHORTEST[1]), lengths, ())
    iterable = Call(steps, (count,), ())
    first: list[Statement] = []
    names: list[str] = []
    for sequence, target in sequences:
        read = Subscript(Name(sequence.value), (Name(index),))
        if isinstance(target, cst.Name):
            # An array's rows (or a list of arrays of one shape): indexed, as numpy does.
            name = target.value
            first.append(Assignment(name, read, f"{name} = {render(read)}", origin=target))
            names.append(name)
        elif isinstance(target, (cst.Tuple, cst.List)):
            # A list of tuples of arrays (for W, b in layers:): its gradient a list of lists.
            unpacked = _unpacked_names(parsed, target)
            if unpacked is None:
                return []
            names += unpacked
            targets = f"({unpacked[0]},)" if len(unpacked) == 1 else ", ".join(unpacked)
            text = f"{targets} = {render(read)}"
            first.append(Item(tuple(unpacked), sequence.value, index, text, origin=target))
        else:
            parsed.refuse(target, "loop over a list with names: for W, b in layers:")
            return []
    if number is not None and not counted:
        # enumerate(xs, start=1): the step's number, bound first (i = i_2 + 1)
        value = BinOp("+", Name(index), Const(str(looped.start)))
        text = f"{number.value} = {render(value)}"
        first.insert(0, Assignment(number.value, value, text, origin=number))
        names.append(number.value)
    if index in names or len(set(names)) != len(names):
        parsed.refuse(node.target, "a name is bound twice by this loop")
        return []
    resolver.local.update([*names, index])
    resolver.assigned_later.difference_update(names)
    body = [read for s in block.body for read in _read_statements(parsed, s, resolver)]
    code = cst.Module([]).code_for_node
    header = f"for {code(node.target).strip()} in {code(node.iter).strip()}:"
    loop = Loop(index, iterable, (*first, *body), header, origin=node)
    if not (looped.strict and len(lengths) > 1):
        return [loop]
    # zip(..., strict=True) raises ValueError where the lengths differ: so does the guard
    # before the loop (zip raises after the shortest's steps, which change nothing else).
    test: Expr = Compare("!=", lengths[0], lengths[1])
    for other in lengths[2:]:
        test = BinOp("or", test, Compare("!=", lengths[0], other))
    raised = 'ValueError("zip() arguments have different lengths")'
    guard = Branch(test, (), (), f"if {render(test)}:", origin=node.iter, raises=(raised, None))
    return [guard, loop]


def _last_values(
    body: list[Statement], results: Sequence[Expr], parameters: set[str]
) -> list[Statement]:
    """``body`` where a name a top-level loop binds, bound nowhere before it and read after
    it, is first bound to None (``outputs = None``): after the loop it holds what the last
    step bound (``for W, b in params: outputs = ...`` then ``return outputs``), as in
    Python; the loop carries it, and with no step it is None (Python: a NameError)."""
    found: list[Statement] = []
    bound = set(parameters)
    for position, statement in enumerate(body):
        if isinstance(statement, Loop):
            inside = {n for s in _statements_within(statement.body) for n in _binds(s)}
            read = _read_before_bound(body[position + 1 :], results)
            for name in sorted((inside - bound - {statement.target}) & read):
                found.append(Assignment(name, Const("None"), f"{name} = None"))
        found.append(statement)
        bound |= {n for s in _statements_within((statement,)) for n in _binds(s)}
    return found


def _refuse_unpacked_arguments(
    parsed: ParsedModule, body: Sequence[Statement], results: Sequence[Expr]
) -> None:
    """An argument unpacked with ``*`` is data in a random draw's shape
    (``np.random.rand(*x.shape)``); anywhere else it would hide from the rules how many
    operands there are."""
    exprs = [e for s in body for e in _exprs_of(s)] + list(results)
    for expr in exprs:
        for node in walk(expr):
            if not isinstance(node, Call):
                continue
            unpacked = [a for a in node.args if isinstance(a, UnaryOp) and a.op == "*"]
            if unpacked and not (is_draw(node.func) and not draw_parameters(node)):
                parsed.refuse(
                    unpacked[0].origin or parsed.module,
                    "unpacking arguments with * is supported in the shape of a random draw "
                    "only (np.random.rand(*x.shape))",
                )


def _read_before_bound(body: Sequence[Statement], results: Sequence[Expr]) -> set[str]:
    """The names ``body`` (then ``results``) reads before an assignment of its own level
    binds them again (``t = np.stack(hs)`` after a loop over ``t`` does not read the loop's
    ``t``). A binding inside a loop or an ``if`` may not run, so it hides nothing."""
    read: set[str] = set()
    rebound: set[str] = set()
    for statement in body:
        read |= {n for e in _exprs_of(statement) for n in names_in(e)} - rebound
        if isinstance(statement, (Assignment, Item)):
            rebound |= set(statement.names)
    return read | {n for e in results for n in names_in(e)} - rebound


def _statements_within(body: Sequence[Statement]) -> list[Statement]:
    found: list[Statement] = []
    for statement in body:
        found.append(statement)
        if isinstance(statement, Loop):
            found += _statements_within(statement.body)
        elif isinstance(statement, Branch):
            found += _statements_within(statement.body) + _statements_within(statement.orelse)
    return found


def _binds(statement: Statement) -> tuple[str, ...]:
    if isinstance(statement, (Assignment, Item)):
        return statement.names
    if isinstance(statement, Loop) and statement.target:
        return (statement.target,)
    return ()


def _exprs_of(statement: Statement) -> list[Expr]:
    """Every expression ``statement`` reads, those of the statements inside it too."""
    found: list[Expr] = []
    for inner in _statements_within((statement,)):
        if isinstance(inner, Assignment):
            found.append(inner.value)
        elif isinstance(inner, Append):
            found += [inner.value, *(inner.index or ())]
        elif isinstance(inner, Loop):
            found.append(inner.iterable)
        elif isinstance(inner, Branch):
            found.append(inner.test)
    return found


def _check_item_loops(
    parsed: ParsedModule, body: Sequence[Statement], results: Sequence[Expr]
) -> None:
    """A list a loop goes over (``for W, b in layers:``) is read by that loop alone (and
    ``len``), once: each step sets its item's gradient in the list's, which a second read
    of an item (another loop, an outer loop's next step, ``layers[0]``) would overwrite."""
    loops: dict[str, Loop] = {}

    def visit(statements: Sequence[Statement], depth: int) -> None:
        for statement in statements:
            if isinstance(statement, Loop):
                item = statement.body[0] if statement.body else None
                if isinstance(item, Item):
                    name = item.sequence
                    if depth or name in loops:
                        where = "inside another loop" if depth else "a second time"
                        parsed.refuse(
                            statement.origin or parsed.module,
                            f"a loop over '{name}' {where} is not supported: each item's "
                            "gradient is set once; loop over the list once, at the top",
                        )
                    loops.setdefault(name, statement)
                visit(statement.body, depth + 1)
            elif isinstance(statement, Branch):
                visit(statement.body, depth)
                visit(statement.orelse, depth)

    visit(body, 0)
    if not loops:
        return
    exprs: list[Expr] = [*results]
    for statement in flat_statements(body):
        if isinstance(statement, Append):
            exprs += [statement.value, *(statement.index or ())]
        elif isinstance(statement, Assignment):
            exprs.append(statement.value)
    for name, loop in loops.items():
        if any(_reads_besides_len(expr, name) for expr in exprs):
            parsed.refuse(
                loop.origin or parsed.module,
                f"'{name}' is read besides by this loop over its items: read its items in "
                "the loop only (len() aside)",
            )


def _reads_besides_len(expr: Expr, name: str) -> bool:
    """Does ``expr`` read ``name`` other than as ``len(name)``?"""
    if isinstance(expr, Name):
        return expr.id == name
    if isinstance(expr, Call) and (expr.func.lib, expr.func.name) == LENGTH:
        return False
    return any(_reads_besides_len(child, name) for child in children(expr))


def _read_while(
    parsed: ParsedModule, node: cst.While, block: _ForBlock, resolver: _FunctionResolver
) -> Loop | None:
    """``while test:``: the forward counts the steps as it runs them (each one kept for
    the backward, which walks them back); the test decides, as an ``if``'s does."""
    test = convert_condition(node.test, resolver)
    rebound = {n for s in _flat_nodes(block.body) for n in _node_binds(s)}
    if not set(names_in(test)) & rebound:
        # 'while True:' or a test of nothing the steps change: it never ends.
        parsed.refuse(
            node.test,
            "this 'while' never ends: its test reads nothing the loop changes, and 'break' "
            "is not supported; test what decides the end (while err > tol:), or loop over "
            "range(max_steps)",
        )
        return None
    called = [c for c in walk(test) if isinstance(c, Call) and c.func.lib in (USER, RULE)]
    if called:
        parsed.refuse(
            called[0].origin or node.test,
            "a call of a function of the module in a 'while' test is not supported: call it "
            "before the loop and at the end of each step, and test its result",
        )
        return None
    body = [read for s in block.body for read in _read_statements(parsed, s, resolver)]
    return Loop("", test, tuple(body), f"while {render(test)}:", origin=node)


def _node_binds(statement: _Node) -> list[str]:
    """The names a statement of a block binds (an assignment's targets, a loop's variable)."""
    if isinstance(statement, _ForBlock):
        return statement.target_names
    if isinstance(statement, (cst.Assign, cst.AnnAssign)):
        return [n for t in _targets(statement) for n in _bound_names(t)]
    if isinstance(statement, cst.AugAssign):
        return _bound_names(statement.target)
    return []


def _read_branch(
    parsed: ParsedModule, block: _IfBlock, resolver: _FunctionResolver
) -> list[Statement]:
    """``if test: ... else: ...``: the backward takes the branch the forward took. A side
    that raises (``else: raise ValueError(...)``) makes the ``if`` a guard, which raises
    where the forward would, followed by the other side's statements, which run whenever
    the guard does not raise (and the backward raises it again for the same arguments)."""
    test = convert_condition(block.node.test, resolver)
    sides: list[list[Statement]] = []
    raises: list[str | None] = []
    for side in (block.body, block.orelse):
        raised = None
        if side and isinstance(side[-1], cst.Raise):
            raised = _raised(parsed, side[-1], resolver)
            if len(side) > 1:
                parsed.refuse(
                    _node_of(side[0]),
                    "a side of an 'if' that raises may hold the 'raise' only: compute its "
                    "message in the 'raise' itself",
                )
            side = []
        for position, statement in enumerate(side[:-1]):
            if isinstance(statement, cst.Raise):
                parsed.refuse(_node_of(side[position + 1]), "code after 'raise' never runs")
                side = side[:position]
                break
        sides.append([read for s in side for read in _read_statements(parsed, s, resolver)])
        raises.append(raised)
    text = f"if {render(test)}:"
    if raises[0] is not None and raises[1] is not None:
        parsed.refuse(
            block.node, "every side of this 'if' raises: nothing after it runs (raise before it)"
        )
        return []
    if raises[0] is not None or raises[1] is not None:
        guard = Branch(test, (), (), text, origin=block.node, raises=(raises[0], raises[1]))
        return [guard, *sides[0], *sides[1]]
    return [Branch(test, tuple(sides[0]), tuple(sides[1]), text, origin=block.node)]


def _raised(parsed: ParsedModule, node: cst.Raise, resolver: _FunctionResolver) -> str | None:
    """What ``raise`` raises, as it is written again in the backward (``ValueError(f"...
    {mode}")``): it may read the function's parameters (never rebound) and builtins only,
    which the backward has under the same names."""
    if node.exc is None:
        parsed.refuse(node, "a bare 'raise' is not supported: raise an exception here")
        return None
    statement = ast.parse(cst.Module([]).code_for_node(node).strip()).body[0]
    assert isinstance(statement, ast.Raise)
    readable = (resolver.parameters - resolver.rebound) | set(dir(builtins))
    for name in ast.walk(statement):
        if isinstance(name, ast.Name) and name.id not in readable:
            parsed.refuse(
                node,
                f"this 'raise' reads '{name.id}': an exception raised in a side of an 'if' "
                "may read the function's parameters (never rebound) and builtins only, as "
                "the backward raises it again",
            )
            return None
    assert statement.exc is not None
    text = ast.unparse(statement.exc)
    return text if statement.cause is None else f"{text} from {ast.unparse(statement.cause)}"


def _counted(iterable: Expr) -> bool:
    """range(...) or reversed(range(...)), with numbers only."""
    if isinstance(iterable, Call) and (iterable.func.lib, iterable.func.name) == REVERSED:
        if len(iterable.args) != 1 or iterable.kwargs:
            return False
        iterable = iterable.args[0]
    return (
        isinstance(iterable, Call)
        and (iterable.func.lib, iterable.func.name) == STEPS
        and 1 <= len(iterable.args) <= 3
        and not iterable.kwargs
    )


def _targets(statement: cst.Assign | cst.AnnAssign) -> list[cst.BaseAssignTargetExpression]:
    if isinstance(statement, cst.Assign):
        return [t.target for t in statement.targets]
    return [statement.target]


def _bound_names(target: cst.BaseExpression) -> list[str]:
    """The plain names an assignment target binds (``h``; ``h, c``; ``(a, [b, c])``)."""
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [name for element in target.elements for name in _bound_names(element.value)]
    if isinstance(target, cst.StarredElement):
        return _bound_names(target.value)
    return []


def _unpacked_names(parsed: ParsedModule, target: cst.Tuple | cst.List) -> list[str] | None:
    """``a, b`` as ["a", "b"]; refuses starred, nested and non-name targets."""
    names = []
    for element in target.elements:
        if isinstance(element, cst.StarredElement):
            parsed.refuse(element, "starred unpacking (*rest) is not supported: name each value")
            return None
        if not isinstance(element.value, cst.Name):
            parsed.refuse(element.value, "unpacking supports plain names only: a, b = ...")
            return None
        names.append(element.value.value)
    named = [n for n in names if n != "_"]  # `a, _, _ = f()`: _ is the throwaway, as in Python
    if len(set(named)) != len(named):
        parsed.refuse(target, "a name is assigned twice in one unpacking")
        return None
    return names


def _read_parameters(
    parsed: ParsedModule, params: cst.Parameters, resolver: _FunctionResolver
) -> list[Parameter]:
    for param in (*params.posonly_params, *params.kwonly_params):
        parsed.refuse(param, "positional-only and keyword-only parameters are not supported")
    for star in (params.star_arg, params.star_kwarg):
        if isinstance(star, cst.Param):
            parsed.refuse(star, "*args and **kwargs are not supported: name each parameter")
    result = []
    for param in params.params:
        default = None
        if param.default is not None:
            # A string chooses a branch (mode="relu"): a constant, as numbers are.
            default = convert_condition(param.default, resolver)
            is_string = isinstance(default, Const) and default.text.endswith(("'", '"'))
            if not is_string and not is_constant(default):
                parsed.refuse(param.default, "a parameter's default must be a constant")
        result.append(Parameter(param.name.value, default, annotated_shape(param.annotation)))
    return result


def read_parameters(parsed: ParsedModule, function: cst.FunctionDef) -> list[Parameter]:
    """The parameters of ``function`` (defaults read as constants), problems refused."""
    return _read_parameters(parsed, function.params, _FunctionResolver(parsed, set()))


def annotated_shape(annotation: cst.Annotation | None) -> Shape | None:
    """``x: "N, D"`` -> ("N", "D"); ``x: float`` -> (); anything else: unknown."""
    if annotation is None:
        return None
    node = annotation.annotation
    if isinstance(node, cst.Name) and node.value in ("float", "int"):
        return SCALAR
    if isinstance(node, cst.SimpleString):
        return parse_annotation(
            node.evaluated_value if isinstance(node.evaluated_value, str) else ""
        )
    return None


# ``h += x`` and its kin: the operator each writes out.
_AUGMENTED = {
    cst.AddAssign: "+",
    cst.SubtractAssign: "-",
    cst.MultiplyAssign: "*",
    cst.DivideAssign: "/",
    cst.FloorDivideAssign: "//",
    cst.ModuloAssign: "%",
    cst.PowerAssign: "**",
    cst.MatrixMultiplyAssign: "@",
}


def _read_augmented(
    parsed: ParsedModule, statement: cst.AugAssign, resolver: _FunctionResolver
) -> Assignment | None:
    """``h += x`` as ``h = h + x``, marked: on an array it updates ``h`` in place, which the
    stager checks nothing else shares."""
    op = _AUGMENTED.get(type(statement.operator))
    if op is None:
        symbol = cst.Module([]).code_for_node(statement.operator).strip()
        parsed.refuse(statement.operator, f"the operator '{symbol}' is not supported")
        return None
    if not isinstance(statement.target, cst.Name):
        parsed.refuse(
            statement.target,
            "augmented assignment to an element or an attribute is not supported: it "
            "changes an array or an object in place",
        )
        return None
    name = statement.target.value
    current = convert(statement.target, resolver)  # refused if not bound yet
    value = convert(statement.value, resolver)
    text = f"{name} {op}= {render(value)}"
    combined = BinOp(op, current, value, origin=statement)
    return Assignment(name, combined, text, origin=statement, augmented=True)


def _read_assignment(
    parsed: ParsedModule,
    statement: cst.BaseSmallStatement,
    resolver: _FunctionResolver,
    index: int,
) -> Assignment | Append | None:
    if isinstance(statement, cst.AugAssign):
        return _read_augmented(parsed, statement, resolver)
    if not isinstance(statement, (cst.Assign, cst.AnnAssign)):
        message = _REFUSED_STATEMENTS.get(
            type(statement), f"{type(statement).__name__} is not supported"
        )
        parsed.refuse(statement, message)
        return None
    targets = _targets(statement)
    bound = [name for target in targets for name in _bound_names(target)]
    leaves = resolver.layout.bindings.get(id(statement))
    if leaves is not None and isinstance(statement, cst.Assign):
        # Entries of a structured parameter bound whole (structure.py).
        resolver.local.update(bound)
        resolver.assigned_later.difference_update(bound)
        return _leaf_assignment(statement, leaves)
    value = None
    if statement.value is not None:
        # Read before the statement binds anything: ``a, b = b, a`` swaps.
        value = convert(statement.value, resolver)
    # Whatever becomes of the statement, its names are defined from here on: a refused line
    # is reported once, not again as "undefined name" wherever its names are read.
    resolver.local.update(bound)
    resolver.assigned_later.difference_update(bound)
    if len(targets) != 1:
        parsed.refuse(statement, "chained assignment is not supported: one name per statement")
        return None
    target = targets[0]
    names: list[str] | None = None
    if isinstance(target, (cst.Tuple, cst.List)):
        names = _unpacked_names(parsed, target)
        if names is None:
            return None
    elif isinstance(target, cst.Attribute):
        parsed.refuse(target, "assignment to an attribute is not supported: it changes an object")
        return None
    elif isinstance(target, cst.Subscript):
        return _read_write(parsed, statement, target, value, resolver)
    elif not isinstance(target, cst.Name):
        parsed.refuse(target, "only assignment to a plain name is supported")
        return None
    if value is None:
        parsed.refuse(statement, "an annotation without a value assigns nothing")
        return None
    if names is None:
        assert isinstance(target, cst.Name)
        return Assignment(target.value, value, f"{target.value} = {render(value)}")
    unpacked = f"({names[0]},)" if len(names) == 1 else ", ".join(names)  # (a,) = ...
    text = f"{unpacked} = {render(value)}"
    return Assignment(names[0], value, text, tuple(names), origin=statement)


def _read_write(
    parsed: ParsedModule,
    statement: cst.BaseSmallStatement,
    target: cst.Subscript,
    value: Expr | None,
    resolver: _FunctionResolver,
) -> Append | None:
    """``hs[:, t, :] = h``: an entry of an array the forward made, written by a loop
    (staging checks where it is and what the array is)."""
    written = target.value
    if not isinstance(written, cst.Name):
        parsed.refuse(target, "write into an element of a variable: name[index] = value")
        return None
    name = written.value
    if name not in resolver.local:
        parsed.refuse(written, f"'{name}' is used before it is assigned")
        return None
    if value is None:
        parsed.refuse(statement, "an annotation without a value assigns nothing")
        return None
    entry = convert(target, resolver)
    if not isinstance(entry, Subscript):
        return None  # refused while converting
    text = f"{render(entry)} = {render(value)}"
    return Append(name, value, text, origin=statement, index=entry.index)


def _read_return(
    parsed: ParsedModule, statement: cst.Return, resolver: _FunctionResolver
) -> tuple[tuple[Expr, ...], tuple[str | None, ...], str] | None:
    if statement.value is None:
        parsed.refuse(statement, "'return' needs a value: gradgen differentiates that value")
        return None
    nodes: list[cst.BaseExpression] = [statement.value]
    if isinstance(statement.value, cst.Tuple):
        nodes = []
        for element in statement.value.elements:
            if isinstance(element, cst.StarredElement):
                parsed.refuse(element, "a starred value in 'return' is not supported")
                return None
            nodes.append(element.value)
        if len(nodes) < 2:
            parsed.refuse(
                statement.value,
                "return the value itself, or several: a one-element tuple is not supported",
            )
            return None
    values = []
    names: list[str | None] = []
    for node in nodes:
        value = convert(node, resolver)
        name = node.value if isinstance(node, cst.Name) else None
        if name is not None and not isinstance(value, Name):
            name = None  # a module constant: the result is constant
        values.append(value)
        names.append(name)
    text = ", ".join(render(v) for v in values)
    return tuple(values), tuple(names), f"return {text}"
