"""The compile path: forward source in, a typed result out (``compile_source``); the
pipeline in one place.

text -> validated forward functions (parse) -> stages -> adjoints (reverse) -> lines (emit)
-> black (format). Each step reads only what the one before produced. Every entry point
(the command line, the decorator, ``gradgen check``, ``gradgen.testing``) calls
``compile_source`` once and reads what it needs from the ``Compiled`` result: the text, the
staged forms, the backward functions, and what each statement of the text writes
(``Compiled.ties``), so no tool parses gradgen's own output to learn what gradgen knew.

``compile_source`` runs under one guard. The steps walk expressions recursively (as do libcst
and black), so an expression nested a few hundred levels deep needs more stack than Python's
defaults allow: the pipeline runs on a thread of its own with a large stack and a raised
recursion limit (see ``with_headroom``). How deep an expression may be is bounded when it is
read (``parse.MAX_NESTING``), which is what makes the headroom enough. A refusal raises
``GradgenError``; anything else raised inside is a bug in gradgen, raised as
``InternalError``, which every entry point reports the same way.
"""

from __future__ import annotations

import gc
import keyword
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

import libcst as cst

from gradgen import provenance
from gradgen.emit import ModuleText, Tie, emit_functions_only, emit_module
from gradgen.errors import Diagnostic, GradgenError, InternalError, UnknownFunctionError
from gradgen.format import format_module
from gradgen.ir import BackwardFunction
from gradgen.linking import link_imports
from gradgen.parse import ParsedModule, parse_module
from gradgen.program import Program, compile_program
from gradgen.stages import StagedFunction

_T = TypeVar("_T")

# Measured on CPython 3.11 at parse.MAX_NESTING levels: the pipeline, libcst and black need
# about 4 frames a level (4,000 in all; Python's default limit is 1,000) and under 4 MiB of
# stack. The limit and the stack leave five and thirty times that; the stack is virtual
# memory, only touched as deep as the recursion goes.
RECURSION_LIMIT = 20_000
STACK_BYTES = 128 * 2**20
_headroom_lock = threading.Lock()
_headroom_users = 0
_saved_limit = 0


def with_headroom(call: Callable[[], _T]) -> _T:
    """``call()`` on a thread with a large stack and a raised recursion limit; its result,
    or its exception re-raised here."""
    global _headroom_users, _saved_limit
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the calling thread, which re-raises it
            failure.append(error)

    with _headroom_lock:
        # The limit is the interpreter's, shared by all threads: raised while any call
        # needs it, put back by the last one.
        if _headroom_users == 0:
            _saved_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_saved_limit, RECURSION_LIMIT))
        _headroom_users += 1
    try:
        _start_with_large_stack(target).join()
    finally:
        with _headroom_lock:
            _headroom_users -= 1
            if _headroom_users == 0:
                sys.setrecursionlimit(_saved_limit)
    if failure:
        raise failure[0]
    return outcome[0]


_collection_lock = threading.Lock()
_collection_users = 0
_collection_was_enabled = False


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Python's cycle collector off while any compile runs. A compile builds a million
    objects for a long function (libcst's tree, gradgen's expressions), all trees freed by
    reference counting, and the collector walked them again and again as they piled up: a
    quarter of the time of a 20,000-line function. Put back as it was by the last compile
    to end (the setting is the interpreter's); cycles made meanwhile are collected then."""
    global _collection_users, _collection_was_enabled
    with _collection_lock:
        if _collection_users == 0:
            _collection_was_enabled = gc.isenabled()
            gc.disable()
        _collection_users += 1
    try:
        yield
    finally:
        with _collection_lock:
            _collection_users -= 1
            if _collection_users == 0 and _collection_was_enabled:
                gc.enable()


def _start_with_large_stack(target: Callable[[], None]) -> threading.Thread:
    with _headroom_lock:  # the stack size is for every thread started meanwhile
        try:
            previous_size: int | None = threading.stack_size(STACK_BYTES)
        except (ValueError, RuntimeError):  # a platform where threads cannot choose
            previous_size = None
        try:
            worker = threading.Thread(target=target, name="gradgen", daemon=True)
            worker.start()
        finally:
            if previous_size is not None:
                threading.stack_size(previous_size)
    return worker


@dataclass(frozen=True)
class FunctionSource:
    """One function's own lines in its module: what the decorator (and ``gradgen.testing``)
    read from a live function. Only the function is read; the module gives the imports and
    constants its code may use."""

    module: str  # the whole module's text
    name: str  # the function
    lines: str  # its lines as in the file (indented when it is nested)
    first_line: int  # the line of the file where ``lines`` start (1-based)
    # Lines of ``module`` from elsewhere (a notebook's earlier cell: see cells.py), where
    # refusals located there point: line -> (file, line there, its text).
    relocated: Mapping[int, tuple[str, int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """What to generate, and what text to make of it."""

    # Function (or "*", every function) -> the parameters to differentiate with respect to.
    wrt: Mapping[str, Sequence[str]] | None = None
    # F_forward returning (value, cache), and F_backward(d<out>, cache).
    pairs: bool = False
    # F_value_and_grad too (returning the value and the gradients).
    value_and_grad: bool = False
    # These functions only, in this order (each read on its own, so another function of the
    # source may be refused); None: every top-level function. A FunctionSource: its own.
    only: Sequence[str] | None = None
    # The command the module's header says regenerates it (default: gradgen FILE).
    command: str | None = None
    # The forward module's import name (``examples.fit`` for examples/fit.py): the generated
    # module imports the module data the functions read (``inputs = load()``) from it.
    forward_module: str | None = None
    # The forward file on disk (default: ``filename``, where it names one): the forward
    # modules it imports functions from are looked for beside it. The command line gives it,
    # since its ``filename`` is shown relative to the project's root, not the working folder.
    path: Path | None = None
    # "module": the file ``gradgen`` writes (header, imports, helpers, functions);
    # "functions": the functions alone, to run in the forward's module (the decorator);
    # "none": no text (the gradient check naming lines of a backward it was given).
    text: Literal["module", "functions", "none"] = "module"


@dataclass(frozen=True)
class Compiled:
    """What one compile produced. A refusal is not a result: it raises ``GradgenError``,
    whose ``diagnostics`` name every problem."""

    parsed: ParsedModule
    backwards: tuple[BackwardFunction, ...]  # one per forward function asked for, in order
    text: str
    # Generated function name (``f_backward``) -> per statement of its body, in order, what
    # the statement writes (``Tie``), None for the statements that write no gradient; empty
    # when no text was made.
    ties: Mapping[str, tuple[Tie | None, ...]] = field(default_factory=dict)
    # Everything generated per forward function, the functions called by others included.
    program: Program = field(default_factory=lambda: Program(()))

    @property
    def staged(self) -> tuple[StagedFunction, ...]:
        """The staged form of each forward function."""
        return tuple(b.staged for b in self.backwards)

    @property
    def array_code(self) -> bool:
        """Are the module's values arrays (it imports numpy in any form, or its code uses
        array syntax)? Every staged function of a module shares the answer."""
        if self.backwards:
            return self.backwards[0].staged.array_mode
        return self.parsed.context.imports_library("numpy")

    def backward(self, name: str) -> BackwardFunction | None:
        """The backward of forward function ``name``, if it was compiled."""
        return next((b for b in self.backwards if b.staged.name == name), None)


_DEFAULT = Options()


def compile_source(
    source: str | FunctionSource, filename: str = "<string>", options: Options = _DEFAULT
) -> Compiled:
    """Compile ``source`` (a module's text, or one function of it) as ``options`` say.

    ``filename`` is used in diagnostics and in the generated header. Runs under the guard
    every entry point shares: on a thread with room for deep expressions; a refusal raises
    ``GradgenError`` (``UnknownFunctionError`` when ``options.only`` names a function the
    source does not define), any other exception is a bug and raises ``InternalError``.
    """
    with _cycle_collection_paused():
        return with_headroom(lambda: _guarded(source, filename, options))


def _guarded(source: str | FunctionSource, filename: str, options: Options) -> Compiled:
    try:
        return _compile(source, filename, options)
    except GradgenError:
        raise
    except Exception as error:  # a bug in gradgen, whatever the input
        raise InternalError(error) from error


def _compile(source: str | FunctionSource, filename: str, options: Options) -> Compiled:
    if isinstance(source, FunctionSource):
        parsed = _parse_function(source, filename)
        only: Sequence[str] | None = (source.name,)
        text = source.module
    else:
        parsed = parse_module(source, filename)
        only = options.only
        text = source
    if only is not None:
        _require_defined(parsed, only)
    link_imports(parsed, options.path or _file_of(filename))
    program = compile_program(parsed, only, options.wrt, options.pairs)
    backwards = tuple(f.public for f in program.functions if f.public is not None)
    if options.text == "none":
        return Compiled(parsed, backwards, "", program=program)
    if options.text == "functions":
        # The module the functions run in defines the user rules' functions already.
        module = emit_functions_only(program, parsed.context, options.pairs, options.value_and_grad)
        formatted = format_module(module).lstrip("\n")
    else:
        _require_module_name(parsed, program, options.forward_module, filename)
        header = _header(text, filename, options.command, program)
        module = emit_module(
            program, parsed, header, options.pairs, options.forward_module, options.value_and_grad
        )
        formatted = format_module(module)
    return Compiled(parsed, backwards, formatted, _ties(module), program)


def _file_of(filename: str) -> Path | None:
    """The file a source was read from, where ``filename`` names one (not ``<string>``)."""
    path = Path(filename)
    return path if not filename.startswith("<") and path.is_file() else None


def _require_module_name(
    parsed: ParsedModule, program: Program, module: str | None, filename: str
) -> None:
    """Module data needs an import of the forward module in the generated one: refuse it
    where the forward module has no import name (a file outside the project, a string)."""
    if module is not None:
        return
    for function in program.functions:
        for name, node in function.staged.data:
            assert isinstance(node, cst.CSTNode)
            parsed.refuse(
                node,
                f"'{name}' is module data (computed when the module runs): the generated "
                f"module imports it from the forward module, and {filename} has no module "
                "name to import (run gradgen on a file of the project, by a relative path "
                "such as examples/fit.py; or pass the value in as a parameter)",
            )
    parsed.raise_problems()


def module_name(path: str) -> str | None:
    """``examples.fit`` for the relative path ``examples/fit.py``; None where the path is
    not a module's (absolute, ``..``, not identifiers)."""
    parts = path.replace("\\", "/").split("/")
    if not parts[-1].endswith(".py") or path.startswith("/"):
        return None
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        return None
    return ".".join(parts)


def _header(source: str, filename: str, command: str | None, program: Program) -> list[str]:
    shown = comment_text(filename)
    header = [f"# Generated by gradgen from {shown}. Do not edit: regenerate."]
    header.append(f"# Command: {comment_text(command) if command else f'gradgen {shown}'}")
    names = [f.staged.name for f in program.functions]
    names += [name for rule in program.rules for name in (rule.forward, rule.backward)]
    digests = provenance.function_digests(source)
    origins = {name: origin for name, (_, origin) in program.origins.items()}
    for name, (module, _) in program.origins.items():
        digests[name] = provenance.function_digests(module.text)[name]
    for rule in program.rules:
        if rule.forward in program.origins:
            module, origin = program.origins[rule.forward]
            digests[rule.backward] = provenance.function_digests(module.text)[rule.backward]
            origins[rule.backward] = origin
    return header + provenance.header_lines(digests, names, calls_of(program), origins)


def calls_of(program: Program) -> dict[str, tuple[str, ...]]:
    """Each function and the functions its backward depends on, at any depth (in the
    program's order): the functions it calls, and the backwards of the user rules."""
    backward_of_rule = {rule.forward: rule.backward for rule in program.rules}
    direct: dict[str, set[str]] = {}
    for function in program.functions:
        called = {s.call.function for s in function.staged.all_stages if s.call is not None}
        called |= {backward_of_rule[n] for n in called if n in backward_of_rule}
        direct[function.staged.name] = called
    for rule in program.rules:
        direct[rule.forward] = set()
        direct[rule.backward] = set()
    order = list(direct)
    found: dict[str, tuple[str, ...]] = {}
    for name in order:
        reached: set[str] = set()
        pending = list(direct[name])
        while pending:
            callee = pending.pop()
            if callee not in reached:
                reached.add(callee)
                pending.extend(direct.get(callee, ()))
        found[name] = tuple(n for n in order if n in reached)
    return found


def _ties(module: ModuleText) -> dict[str, tuple[Tie | None, ...]]:
    return {function.name: tuple(function.ties) for function in module.functions}


def _require_defined(parsed: ParsedModule, names: Sequence[str]) -> None:
    """Refuse the first of ``names`` the source does not define, as ``read_functions`` does,
    saying which functions it does define."""
    defined = [f.name.value for f in parsed.functions]
    for name in names:
        if name not in defined:
            parsed.refuse(parsed.module, f"no function '{name}' defined with 'def' in this source")
            try:
                parsed.raise_problems()
            except GradgenError as error:
                raise UnknownFunctionError(error.diagnostics, name, defined) from None


# Parsed modules by file, so that compiling many functions of one module (the decorator)
# reads the module once.
_MODULES: dict[tuple[str, int, int], ParsedModule] = {}


def _parse_function(source: FunctionSource, filename: str) -> ParsedModule:
    """The module the function is in, parsed; or, for a function nested in another (whose
    module-level neighbours it cannot call), the function's own lines, parsed, with the
    module's imports and constants."""
    key = (filename, hash(source.module), hash(tuple(source.relocated.items())))
    if key not in _MODULES:
        _MODULES[key] = parse_module(source.module, filename)
        _MODULES[key].relocated = source.relocated
    whole = _MODULES[key]
    lines = source.lines.splitlines(keepends=True)
    indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    defined = [f for f in whole.functions if f.name.value == source.name]
    if indent == 0 and len(defined) == 1:
        return replace(whole, problems=[], linked={}, not_linked=set())
    try:
        module = cst.parse_module(textwrap.dedent(source.lines))
    except cst.ParserSyntaxError:
        message = "gradgen could not read this function's source"
        raise GradgenError([Diagnostic(filename, source.first_line, 1, message)]) from None
    parsed = ParsedModule(filename, source.module, module, whole.context, [])
    parsed.functions = [s for s in module.body if isinstance(s, cst.FunctionDef)]
    parsed.line_offset = source.first_line - 1
    parsed.column_offset = indent
    return parsed


def generate(
    source: str,
    filename: str = "<string>",
    *,
    command: str | None = None,
    wrt: Mapping[str, Sequence[str]] | None = None,
    pairs: bool = False,
    value_and_grad: bool = False,
) -> str:
    """The backward module for every top-level function of ``source``.

    ``filename`` is used in error messages and in the generated header; ``command`` is the
    command line the header says regenerates the file. ``wrt`` maps a function name (or
    ``"*"``, every function) to the parameters to differentiate with respect to. ``pairs``
    adds ``F_forward`` returning ``(value, cache)`` and makes ``F_backward`` take
    ``(d<out>, cache)`` instead of recomputing the forward values. ``value_and_grad`` adds
    ``F_value_and_grad``, returning the value and the gradients. Raises ``GradgenError``
    when the source cannot be differentiated, naming every problem.
    """
    options = Options(wrt=wrt, pairs=pairs, command=command, value_and_grad=value_and_grad)
    return compile_source(source, filename, options).text


def comment_text(text: str) -> str:
    """``text`` made safe for a one-line comment: a file name may hold a newline (which would
    end the comment and turn the rest into code) or bytes that are not UTF-8 (surrogates,
    which cannot be written): those are written as escapes."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def backward_functions(
    parsed: ParsedModule,
    only: str | None = None,
    wrt: Mapping[str, Sequence[str]] | None = None,
) -> list[BackwardFunction]:
    """The backward passes of the module's functions (or of ``only``)."""
    program = compile_program(parsed, None if only is None else (only,), wrt, pairs=False)
    return [f.public for f in program.functions if f.public is not None]
