"""The other forward modules a module imports functions from, found and parsed.

``from layers import affine`` in ``model.py`` makes ``affine`` a function gradgen can see
into when ``layers.py`` is a file beside ``model.py`` (or, for a dotted name such as
``nets.layers``, under the project's root or the folder ``gradgen`` runs in): its text is
parsed, never run, and ``affine`` is differentiated like a function of ``model.py``; its
backward is generated into ``model.py``'s output, so the generated module stands alone.
Relative imports (``from .layers import affine``, ``from . import layers``) are found from
the importing file's folder. An import whose module is not such a file (numpy, scipy, a
package installed elsewhere) is left alone: its functions are operations of the rules
table or opaque.
"""

from __future__ import annotations

import os
from pathlib import Path

import libcst as cst

from gradgen.errors import Diagnostic, GradgenError
from gradgen.files import find_project_root, package_of
from gradgen.parse import Import, Linked, ParsedModule, decode, parse_module

# Modules that are never forward modules, whatever files lie around (a `math.py` beside the
# forward file would shadow the standard library when Python runs it, but gradgen's rules
# for `math` and `numpy` are about the real ones).
_LIBRARIES = frozenset({"math", "numpy", "scipy", "gradgen", "random", "builtins"})


def link_imports(parsed: ParsedModule, path: Path | None) -> None:
    """Let ``parsed`` (read from the file ``path``; None: a string, which imports nothing
    gradgen can find) find the functions it imports from other forward modules: each module
    is found and parsed when the parser first meets a call of one of its functions, so an
    imported module whose functions are never called (``from data import load``) is not
    read at all."""
    if path is None or not path.is_file():
        return
    _Linker(find_project_root([path])).attach(parsed, path)


class _Linker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[Path, ParsedModule] = {}

    def attach(self, parsed: ParsedModule, path: Path) -> None:
        self.modules[path.resolve()] = parsed
        parsed.find_linked = lambda called: self._linked(parsed, path.parent, called)

    def _linked(self, parsed: ParsedModule, folder: Path, called: str) -> Linked | None:
        """The function a call spelled ``called`` (``affine``, ``layers.affine``,
        ``nets.layers.affine``) reaches in another forward module, if any."""
        head, _, rest = called.partition(".")
        for relative, bindings in (
            (False, parsed.context.imports),
            (True, parsed.context.relative_imports),
        ):
            binding = bindings.get(head)
            if binding is None:
                continue
            target = _module_and_function(binding, rest)
            if target is None:
                return None
            module_name, function = target
            file = self._find(module_name, folder, relative)
            if file is None:
                return None
            module = self._parsed(file, parsed.filename, folder)
            if function not in module.function_names:
                return None
            origin = Path(os.path.relpath(file, folder.resolve())).as_posix()
            return Linked(module, function, origin, _import_node(parsed.module, head))
        return None

    def _parsed(self, file: Path, importer: str, folder: Path) -> ParsedModule:
        if file not in self.modules:
            # Shown as the importing file is shown (absolute, or relative to the project's
            # root or the working folder): from its folder as shown.
            relative = os.path.relpath(file, folder.resolve())
            shown = _normalised(os.path.join(os.path.dirname(importer), relative))
            try:
                data = file.read_bytes()
            except OSError as error:
                message = f"cannot read {shown}: {error.strerror}"
                raise GradgenError([Diagnostic(shown, 1, 1, message)]) from None
            module = parse_module(decode(data, shown), shown)
            self.attach(module, file)
        return self.modules[file]

    def _find(self, module: str, folder: Path, relative: bool) -> Path | None:
        """The file of ``module`` (``layers``, ``nets.layers``, ``.layers``, ``..nets``) as
        an import in a file of ``folder`` finds it, if it is a file gradgen can read."""
        if relative:
            dots = len(module) - len(module.lstrip("."))
            base = folder
            for _ in range(dots - 1):
                base = base.parent
            parts = [p for p in module[dots:].split(".") if p]
            roots = [base]
        else:
            if module.partition(".")[0] in _LIBRARIES:
                return None
            parts = module.split(".")
            # Beside the file; under its package's root (src/ in a src layout), the
            # project's root and the working folder, as installed or run from there.
            package = package_of(folder / "__init__.py")
            roots = [folder, *([package.root] if package else []), self.root, Path.cwd()]
        for root in roots:
            for file in (
                root.joinpath(*parts).with_suffix(".py") if parts else None,
                root.joinpath(*parts, "__init__.py"),
            ):
                if file is not None and file.is_file():
                    return file.resolve()
        return None


def _module_and_function(binding: Import, rest: str) -> tuple[str, str] | None:
    """The module and the function a call reaches through ``binding``, ``rest`` being what
    the call spells after the bound name: ``import nets.layers`` binds ``nets``, and
    ``nets.layers.affine`` is ``affine`` of ``nets.layers``; ``from nets import layers``
    then ``layers.affine``, too; ``from nets.layers import affine`` then ``affine``."""
    path = rest.split(".") if rest else []
    if binding.attr is None:  # import nets.layers [as L]
        if not path:
            return None
        return ".".join([binding.module, *path[:-1]]), path[-1]
    if not path:  # from layers import affine
        return binding.module, binding.attr
    # from nets import layers (a module, as the call through it says)
    joiner = "" if binding.module.endswith(".") else "."
    module = binding.module + joiner + ".".join([binding.attr, *path[:-1]])
    return module, path[-1]


def _normalised(path: str) -> str:
    return os.path.normpath(path).replace(os.sep, "/")


def _import_node(module: cst.Module, name: str) -> cst.CSTNode:
    """The alias of the import that binds ``name`` (where a refusal about it points)."""
    found: cst.CSTNode = module
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(
                small.names, cst.ImportStar
            ):
                for alias in small.names:
                    bound = alias.asname.name if alias.asname is not None else alias.name
                    text = cst.Module([]).code_for_node(bound)
                    if text == name or text.split(".")[0] == name:
                        found = alias
    return found
