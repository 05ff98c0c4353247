"""``@gradgen.differentiable``: generate the backward when the forward is defined.

The decorator reads the function's source (it never needs to run it), generates the backward
in memory, compiles it under a filename registered with ``linecache`` so tracebacks, pdb and
``inspect.getsource`` show the generated code, runs it in the forward's module globals, and
attaches it as ``f.backward`` (and its text as ``f.backward_source``). The forward function is
returned unchanged.
"""

from __future__ import annotations

import inspect
import linecache
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar, overload

import libcst as cst

from gradgen.api import generate_function
from gradgen.errors import Diagnostic, GradgenError
from gradgen.parse import ModuleContext, ParsedModule, parse_module

F = TypeVar("F", bound=Callable[..., Any])

# Module contexts (imports, constants) by file, so decorating many functions of one module
# parses it once.
_CONTEXTS: dict[tuple[str, int], ModuleContext] = {}


@overload
def differentiable(func: F, /) -> F: ...
@overload
def differentiable(func: None = None, /) -> Callable[[F], F]: ...


def differentiable(func: F | None = None, /) -> F | Callable[[F], F]:
    """Attach ``func.backward`` (same parameters plus the upstream gradient, returns the
    gradients) and ``func.backward_source``; raise ``GradgenError`` if gradgen refuses it.

    Usable as ``@differentiable`` and ``@differentiable()``.
    """
    if func is None:
        return differentiable
    source = backward_source(func)
    backward_name = f"{func.__name__}_backward"
    filename = f"<gradgen: {backward_name} of {func.__module__}.{func.__qualname__}>"
    lines = source.splitlines(keepends=True)
    # mtime None keeps linecache.checkcache from dropping an entry with no file behind it.
    linecache.cache[filename] = (len(source), None, lines, filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), func.__globals__, namespace)
    backward = namespace[backward_name]
    backward.__qualname__ = f"{func.__qualname__}.backward"
    func.backward = backward  # type: ignore[attr-defined]
    func.backward_source = source  # type: ignore[attr-defined]
    return func


def backward_source(func: Callable[..., Any]) -> str:
    """The source of ``func``'s backward function, generated from ``func``'s source."""
    code = getattr(func, "__code__", None)
    if code is None:
        raise TypeError(f"{func!r} is not a Python function")
    filename = code.co_filename
    module_lines = linecache.getlines(filename, func.__globals__)
    try:
        lines, first_line = inspect.getsourcelines(func)
    except (OSError, TypeError):
        lines, first_line = [], 0
    if not module_lines or not lines:
        message = (
            f"no source for '{func.__qualname__}': gradgen reads a function's source, so "
            "define it in a file (functions typed at an interactive prompt have none)"
        )
        raise GradgenError([Diagnostic(filename, code.co_firstlineno, 1, message)])
    module_text = "".join(module_lines)
    context = _module_context(filename, module_text)
    snippet = "".join(lines)
    dedented = textwrap.dedent(snippet)
    indent = len(lines[0]) - len(lines[0].lstrip())
    try:
        module = cst.parse_module(dedented)
    except cst.ParserSyntaxError:
        raise GradgenError(
            [Diagnostic(filename, first_line, 1, "gradgen could not read this function's source")]
        ) from None
    parsed = ParsedModule(filename, module_text, module, context, [])
    parsed.functions = [s for s in module.body if isinstance(s, cst.FunctionDef)]
    parsed.line_offset = first_line - 1
    parsed.column_offset = indent
    return generate_function(parsed, func.__name__)


def _module_context(filename: str, text: str) -> ModuleContext:
    key = (filename, hash(text))
    if key not in _CONTEXTS:
        _CONTEXTS[key] = parse_module(text, filename).context
    return _CONTEXTS[key]
