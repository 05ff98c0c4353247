"""``@gradgen.differentiable``: attach the backward of a forward function at import.

When the project maps the function's file to a committed backward file (``[tool.gradgen]``
in pyproject.toml, or ``generated=``) and that file's recorded digest matches the function's
current source, the committed code is what runs: the code that was reviewed, imported like
any module, with no parsing or formatting at import. Otherwise the backward is generated in
memory from the function's source (read with ``inspect``, never run), compiled under a
filename registered with ``linecache`` so tracebacks, pdb and ``inspect.getsource`` show it,
and run in the function's module globals. A stale committed file warns once, naming the
command that regenerates it; ``strict=True`` or ``GRADGEN_STRICT=1`` make that an error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import linecache
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, overload

from gradgen import display, provenance
from gradgen.config import Config, find_config, is_skipped
from gradgen.errors import Diagnostic, GradgenError
from gradgen.naming import (
    backward_function_name,
    forward_function_name,
    value_and_grad_function_name,
)

if TYPE_CHECKING:
    from gradgen.api import Compiled, FunctionSource

# The generator (libcst, black) is imported only when something must be generated, so a
# module whose committed backward files are current imports none of it.

F = TypeVar("F", bound=Callable[..., Any])

STRICT_ENVIRONMENT_VARIABLE = "GRADGEN_STRICT"


class StaleBackwardError(Exception):
    """A committed backward file does not match its forward source (strict mode)."""


class StaleBackwardWarning(UserWarning):
    """A committed backward file does not match its forward source; generated in memory."""


# Configurations by folder; committed modules by path; the compile behind each backward
# generated in memory (for the gradient check), as long as that function lives.
_CONFIGS: dict[Path, Config | None] = {}
_COMMITTED: dict[tuple[Path, int, int], ModuleType] = {}
_WARNED: set[Path] = set()
_COMPILED: weakref.WeakKeyDictionary[Callable[..., Any], Compiled] = weakref.WeakKeyDictionary()


@overload
def differentiable(
    func: F,
    /,
    *,
    generated: str | os.PathLike[str] | None = None,
    strict: bool | None = None,
    wrt: Sequence[str] | None = None,
    pairs: bool = False,
) -> F: ...
@overload
def differentiable(
    func: None = None,
    /,
    *,
    generated: str | os.PathLike[str] | None = None,
    strict: bool | None = None,
    wrt: Sequence[str] | None = None,
    pairs: bool = False,
) -> Callable[[F], F]: ...


def differentiable(
    func: F | None = None,
    /,
    *,
    generated: str | os.PathLike[str] | None = None,
    strict: bool | None = None,
    wrt: Sequence[str] | None = None,
    pairs: bool = False,
) -> F | Callable[[F], F]:
    """Attach ``func.backward``, ``func.value_and_grad`` and ``func.backward_source`` (the
    source of the generated functions); return ``func`` unchanged.

    ``func.backward`` takes ``func``'s parameters plus the upstream gradient and returns the
    gradients, like ``F_backward`` in a generated file; ``func.value_and_grad`` takes the
    same and returns ``(value, gradients)``, computing the forward once (taken from the
    committed file where it defines ``F_value_and_grad``, else generated in memory at its
    first call). With ``pairs``,
    ``func.forward`` returns ``(value, cache)`` and ``func.backward`` takes
    ``(upstream, cache)`` instead. ``generated`` names the committed
    backward file (relative to the function's file); by default ``[tool.gradgen]`` says.
    ``strict`` (default: the ``GRADGEN_STRICT`` environment variable) makes a stale committed
    file an error instead of a warning. ``wrt`` restricts the gradients to those parameters
    (in that order); the backward is then generated in memory. Raises ``GradgenError`` if
    gradgen refuses ``func``.
    """
    if isinstance(wrt, str):
        wrt = (wrt,)  # one name, not its letters
    if func is None:

        def decorate(function: F) -> F:
            return differentiable(
                function, generated=generated, strict=strict, wrt=wrt, pairs=pairs
            )

        return decorate
    committed = _committed_backward(func, generated, strict, pairs) if wrt is None else None
    if committed is not None:
        functions, source = committed
    else:
        # Generated in memory (no committed file, or a stale one): with respect to what the
        # project's mapping says, as the committed file is, so that what f.backward returns
        # does not change shape when the file goes stale.
        chosen = wrt if wrt is not None else _mapped_wrt(func, generated)
        # F_value_and_grad too: generating anyway, what it adds is small.
        functions, source = _generated_backward(func, chosen, pairs, value_and_grad=True)
    func.backward = functions[backward_function_name(func.__name__)]  # type: ignore[attr-defined]
    value_and_grad = functions.get(value_and_grad_function_name(func.__name__))
    if value_and_grad is None:
        # Not in a committed file by default (it is F_backward's body again): made when
        # first called, with respect to what the file's mapping says.
        chosen = wrt if wrt is not None else _mapped_wrt(func, generated)
        value_and_grad = _value_and_grad_on_demand(func, chosen, pairs)
    func.value_and_grad = value_and_grad  # type: ignore[attr-defined]
    if pairs:
        func.forward = functions[forward_function_name(func.__name__)]  # type: ignore[attr-defined]
    func.backward_source = source  # type: ignore[attr-defined]
    display.attach(func.backward)  # type: ignore[attr-defined]
    return func


def _mapped_wrt(
    func: Callable[..., Any], generated: str | os.PathLike[str] | None
) -> tuple[str, ...] | None:
    """The parameters the ``[tool.gradgen]`` mapping of ``func``'s file differentiates
    ``func`` with respect to (None: all, or no mapping; a file given with ``generated=``
    has no mapping)."""
    forward_file = _forward_file(func)
    if forward_file is None or generated is not None or is_skipped(forward_file):
        return None
    folder = forward_file.parent
    config = _config_for(folder)
    mapped = config.wrt_for(forward_file) if config is not None else None
    if not mapped:
        return None
    names = mapped.get(func.__name__, mapped.get("*"))
    return None if names is None else tuple(names)


def _config_for(folder: Path) -> Config | None:
    """The ``[tool.gradgen]`` configuration that applies to ``folder``, read once."""
    if folder not in _CONFIGS:
        _CONFIGS[folder] = find_config(folder)
    return _CONFIGS[folder]


def _generated_names(name: str, pairs: bool) -> list[str]:
    """The functions always generated for forward function ``name``, in the generated order
    (``F_value_and_grad``, written only when asked, follows them where it is)."""
    names = [backward_function_name(name)]
    return [forward_function_name(name), *names] if pairs else names


# --- the reviewed file ----------------------------------------------------------------------


def _committed_backward(
    func: Callable[..., Any],
    generated: str | os.PathLike[str] | None,
    strict: bool | None,
    pairs: bool,
) -> tuple[dict[str, Callable[..., Any]], str] | None:
    """The committed functions (by name) and their source when the file is current and
    generated the same way (``pairs``); None when there is none or it is stale."""
    forward_file = _forward_file(func)
    path: Path | None
    if forward_file is None:
        if generated is None:
            return None  # a notebook's function: no file, no mapping, nothing to compare
        # generated= in a notebook: the file is relative to the working folder, which a
        # kernel starts in the notebook's folder.
        path, root = (Path.cwd() / generated).resolve(), Path.cwd()
    else:
        path, root = _committed_path(forward_file, generated)
    if path is None:
        return None
    names = _generated_names(func.__name__, pairs)
    header = provenance.read_header(path)
    recorded, callees = header.get(func.__name__, (None, ()))
    if (
        recorded is not None
        and recorded == provenance.object_digest(func)
        and _callees_current(func, callees, header, provenance.read_header_origins(path))
    ):
        module = _load(path)
        functions = {name: getattr(module, name, None) for name in names}
        backward_name = backward_function_name(func.__name__)
        if functions[backward_name] is None and not pairs:
            # A function that draws random numbers has no recomputing F_backward.
            functions[backward_name] = _drawing_backward(func)
            names = [n for n in names if n != backward_name]
        value_and_grad_name = value_and_grad_function_name(func.__name__)
        value_and_grad = getattr(module, value_and_grad_name, None)
        if callable(value_and_grad):
            functions[value_and_grad_name] = value_and_grad
            names.append(value_and_grad_name)
        # A file written with (or without) --pairs has F_backward(d<out>, cache) (or taking
        # the parameters): it must match what was asked.
        other_kind = _takes_cache(functions[backward_function_name(func.__name__)]) != pairs
        if all(callable(f) for f in functions.values()) and not other_kind:
            source = "\n\n".join(provenance.top_level_function_text(path, n) for n in names)
            return functions, source  # type: ignore[return-value]
        if other_kind:
            _report_stale(func, path, root, forward_file, strict, pairs)
            return None
    _report_stale(func, path, root, forward_file, strict)
    return None


def _callees_current(
    func: Callable[..., Any],
    callees: tuple[str, ...],
    header: dict[str, tuple[str, tuple[str, ...]]],
    origins: dict[str, str],
) -> bool:
    """Are the functions ``func`` calls as they were when the file was generated? Their
    backwards are part of ``func``'s. Read from the module's text as it is now (a callee
    defined further down is not bound yet while the decorator runs), or from the file of
    the forward module it was imported from (``origins``, relative to this one's folder)."""
    if not callees:
        return True
    filename = func.__code__.co_filename
    if _forward_file(func) is None:
        # A notebook's function: the functions it calls are in other cells, read as the
        # decorator reads them.
        module_text = function_source(func)[0].module
    else:
        module_text = "".join(linecache.getlines(filename, func.__globals__))
    texts: dict[str | None, str] = {None: module_text}
    for name in callees:
        origin = origins.get(name)
        if origin is not None and origin not in texts:
            try:  # the file as it is now (linecache may hold an older text)
                texts[origin] = (Path(filename).parent / origin).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return False
    digests = {origin: provenance.function_digests(text) for origin, text in texts.items()}
    return all(
        digests[origins.get(name)].get(name) == header.get(name, ("", ()))[0] for name in callees
    )


def _takes_cache(backward: object) -> bool:
    """Is ``backward`` a pair's ``F_backward(d<out>, cache)``?"""
    try:
        parameters = list(inspect.signature(backward).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bool(parameters) and parameters[-1] == "cache"


def _forward_file(func: Callable[..., Any]) -> Path | None:
    filename = getattr(getattr(func, "__code__", None), "co_filename", "")
    path = Path(filename)
    return path.resolve() if filename and path.is_file() else None


def _committed_path(
    forward_file: Path, generated: str | os.PathLike[str] | None
) -> tuple[Path | None, Path]:
    if is_skipped(forward_file):
        return None, forward_file.parent  # not a forward file: nothing committed for it
    if generated is not None:
        path = Path(generated)
        path = path if path.is_absolute() else forward_file.parent / path
        return path.resolve(), forward_file.parent
    folder = forward_file.parent
    config = _config_for(folder)
    if config is None:
        return None, folder
    return config.backward_for(forward_file), config.root


def _load(path: Path) -> ModuleType:
    # Keyed on the file's size and modification time: a regenerated file is loaded anew.
    status = path.stat()
    key = (path, status.st_mtime_ns, status.st_size)
    if key not in _COMMITTED:
        tag = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        name = f"_gradgen_reviewed_{tag}_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # so inspect and pickle find it like any module
        spec.loader.exec_module(module)
        _COMMITTED[key] = module
    return _COMMITTED[key]


def _report_stale(
    func: Callable[..., Any],
    path: Path,
    root: Path,
    forward_file: Path | None,
    strict: bool | None,
    pairs: bool | None = None,
) -> None:
    """Warn (or raise, when strict) that the committed file cannot be used. ``pairs`` set:
    the file is current but was generated without (False: with) what the decorator asks."""
    command = provenance.read_header_command(path) if path.exists() else None
    if command is None:
        # A notebook's function is generated from the notebook's code exported to a file.
        shown = "FORWARD.py" if forward_file is None else _relative(forward_file, root)
        command = f"gradgen {shown} -o {_relative(path, root)}"
    state, reason = _why_unusable(func, path)
    if pairs is not None:
        state = "does not match"
        made = "without" if pairs else "with"
        reason = f"@differentiable(pairs={pairs}), the file was generated {made} --pairs"
        command = command.replace(" --pairs", "") + (" --pairs" if pairs else "")
    verb = "regenerate" if path.exists() else "generate"
    message = (
        f"{_relative(path, root)} {state} {func.__qualname__} ({reason}); "
        f"{verb} it from {root}: {command}"
    )
    if strict is None:
        strict = os.environ.get(STRICT_ENVIRONMENT_VARIABLE, "") not in ("", "0", "false", "no")
    if strict:
        raise StaleBackwardError(message)
    if path not in _WARNED:
        _WARNED.add(path)
        warnings.warn(message, StaleBackwardWarning, stacklevel=_caller_stack_level())


def _why_unusable(func: Callable[..., Any], path: Path) -> tuple[str, str]:
    """How the committed file stands to ``func`` and why, for the warning: each case says
    what to do about it, so a missing file is not called stale, nor a new function edited."""
    if not path.exists():
        return "does not exist yet for", "the file has not been generated"
    recorded = provenance.read_header_digests(path).get(func.__name__)
    if recorded is None:
        return "has no backward for", "the function is newer than the file"
    if recorded == provenance.object_digest(func):
        header = provenance.read_header(path)
        callees = header.get(func.__name__, ("", ()))[1]
        if not _callees_current(func, callees, header, provenance.read_header_origins(path)):
            return "is stale for", "a function it calls changed since the file was generated"
        # Generated from this very source, yet without the functions: edited since.
        return "is incomplete for", "it lacks functions gradgen writes for it"
    return "is stale for", "its forward source changed since the file was generated"


def _caller_stack_level() -> int:
    """The ``stacklevel`` that points a warning at the user's line that applied the decorator,
    however many of this module's frames (``@differentiable`` or ``@differentiable()``)
    lie between."""
    level = 1
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    return level


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --- generating in memory -----------------------------------------------------------------------


class ModuleNamespace(dict[str, Any]):
    """The generated functions' globals: their own names, then the forward module's (read
    when a function runs, as a function defined in the module reads them)."""

    def __init__(self, module_globals: dict[str, Any]) -> None:
        super().__init__()
        self.module_globals = module_globals

    def __missing__(self, name: str) -> Any:
        return self.module_globals[name]


def _generated_backward(
    func: Callable[..., Any],
    wrt: Sequence[str] | None = None,
    pairs: bool = False,
    value_and_grad: bool = False,
) -> tuple[dict[str, Callable[..., Any]], str]:
    compiled = compile_function(func, wrt, pairs, value_and_grad=value_and_grad)
    source = compiled.text
    name = backward_function_name(func.__name__)
    filename = f"<gradgen: {name} of {func.__module__}.{func.__qualname__}>"
    lines = source.splitlines(keepends=True)
    # mtime None keeps linecache.checkcache from dropping an entry with no file behind it.
    linecache.cache[filename] = (len(source), None, lines, filename)
    # The generated functions call one another (a caller's backward calls its callees'), and
    # read the module's imports and constants: names not defined here are the module's, read
    # when the function runs, as a function defined in the module would read them.
    namespace = ModuleNamespace(func.__globals__)
    exec(compile(source, filename, "exec"), namespace)
    # dict's own lookup: a name the module does not define is not the forward module's.
    names = _generated_names(func.__name__, pairs)
    if dict.get(namespace, value_and_grad_function_name(func.__name__)) is not None:
        names.append(value_and_grad_function_name(func.__name__))
    functions = {n: dict.get(namespace, n) or _drawing_backward(func, compiled) for n in names}
    for generated_name, function in functions.items():
        attribute = generated_name.removeprefix(func.__name__ + "_")
        function.__qualname__ = f"{func.__qualname__}.{attribute}"
    _COMPILED[functions[name]] = compiled
    return functions, source


def _value_and_grad_on_demand(
    func: Callable[..., Any], wrt: Sequence[str] | None, pairs: bool
) -> Callable[..., Any]:
    """``f.value_and_grad`` where the functions at hand lack it: generated in memory at its
    first call (an import stays as cheap as the committed file makes it), from the module's
    text as it was when ``func`` was decorated. Raises ``StaleBackwardError`` at that call
    if the file was edited since: generated from the new text, it would not be the
    gradient of the function that runs."""
    filename = getattr(getattr(func, "__code__", None), "co_filename", "")
    decorated = linecache.getlines(filename, func.__globals__)
    made: list[Callable[..., Any]] = []

    def value_and_grad(*args: Any, **kwargs: Any) -> Any:
        if not made:
            linecache.checkcache(filename)
            if linecache.getlines(filename, func.__globals__) != decorated:
                raise StaleBackwardError(
                    f"{filename} changed since {func.__qualname__} was decorated: reload "
                    f"the module to use {func.__name__}.value_and_grad"
                )
            functions, _ = _generated_backward(func, wrt, pairs, value_and_grad=True)
            made.append(functions[value_and_grad_function_name(func.__name__)])
        return made[0](*args, **kwargs)

    value_and_grad.__qualname__ = f"{func.__qualname__}.value_and_grad"
    value_and_grad.__doc__ = (
        f"{func.__name__} and its gradients: {value_and_grad_function_name(func.__name__)}, "
        "generated in memory at the first call."
    )
    return value_and_grad


def _drawing_backward(func: Callable[..., Any], compiled: Compiled | None = None) -> Any:
    """``f.backward`` for a function that draws random numbers (in its code or in a function
    it calls), which has no backward that recomputes its forward: a function raising a
    ``GradgenError`` located at the draw, naming what to call instead. None when ``func``
    does not draw (the committed file lacks F_backward for another reason)."""
    from gradgen.api import with_headroom

    if compiled is None:
        try:
            compiled = compile_function(func, text="none")
        except GradgenError:
            return None
    site = next(
        (f.draws for f in compiled.program.functions if f.staged.name == func.__name__), None
    )
    if site is None:
        return None
    public = compiled.backward(func.__name__)
    upstreams = ", ".join(public.upstreams) if public is not None else "dout"
    name = func.__name__
    message = (
        f"{site.reason(name)}: a backward that recomputes the forward would draw different "
        f"ones; use {name}.value_and_grad(...) (or pairs=True: {name}.forward then "
        f"{name}.backward({upstreams}, cache))"
    )
    parsed = compiled.parsed
    diagnostic = with_headroom(lambda: parsed.diagnostic(site.node, message))  # type: ignore[arg-type]

    def backward(*args: Any, **kwargs: Any) -> NoReturn:
        raise GradgenError([diagnostic])

    backward.__doc__ = f"Not available: {message}."
    return backward


def compiled_for(backward: Callable[..., Any]) -> Compiled | None:
    """The compile that made ``backward`` when the decorator generated it in memory (so the
    gradient check reads its gradient names and statements from there); None for any other
    function, such as one of a committed file."""
    try:
        return _COMPILED.get(backward)
    except TypeError:  # not weakly referenceable: not one of ours
        return None


def compile_function(
    func: Callable[..., Any],
    wrt: Sequence[str] | None = None,
    pairs: bool = False,
    text: Literal["functions", "none"] = "functions",
    value_and_grad: bool = False,
) -> Compiled:
    """``func``'s source, compiled (``gradgen.api.compile_source``): its backward functions,
    and their text, to run in ``func``'s module. Raises ``GradgenError`` when gradgen refuses
    it, or when there is no source to read."""
    from gradgen.api import Options, compile_source

    source, filename = function_source(func)
    only = None if wrt is None else {func.__name__: tuple(wrt)}
    options = Options(wrt=only, pairs=pairs, text=text, value_and_grad=value_and_grad)
    return compile_source(source, filename, options)


def function_source(func: Callable[..., Any]) -> tuple[FunctionSource, str]:
    """``func``'s own lines and its module's text, read as ``inspect`` reads them, and the
    file they are from."""
    from gradgen.api import FunctionSource

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
    module = "".join(module_lines)
    if _forward_file(func) is None:
        # No file behind it (a notebook cell): the names its cell does not bind are bound
        # as its globals bind them now, as Python resolves them.
        from gradgen.cells import with_free_names

        cell = with_free_names(func, module)
        own = "".join(lines)
        return FunctionSource(cell.text, func.__name__, own, first_line, cell.relocated), filename
    return FunctionSource(module, func.__name__, "".join(lines), first_line), filename
