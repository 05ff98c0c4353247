"""Project configuration: ``[tool.gradgen]`` in ``pyproject.toml``.

::

    [[tool.gradgen.files]]
    forward = "examples"      # a forward file or folder, relative to pyproject.toml
    backward = "generated"    # the backward file or folder it generates
    wrt = { loss = ["W1", "b1"] }  # optional: only these gradients of loss
    pairs = true              # optional: F_forward -> (value, cache), F_backward(dout, cache)
    value_and_grad = true     # optional: F_value_and_grad too

With this, a bare ``gradgen`` anywhere in the project regenerates every mapping and
``gradgen --check`` verifies them all, as ``black .`` does; paths on the command line
override it. The decorator uses the same mapping to find a function's committed backward.

A file in a mapped folder that defines no function at top level (a package's
``__init__.py``, a module of constants) is not a forward file: it is left out. Any other
file that is not one (a training script that uses the decorator) opts out with a line
``# gradgen: skip-file``, as ``# isort: skip_file`` does.

Mappings may overlap: a file of a mapped folder mapped on its own (to give it a ``wrt``,
``pairs`` or ``value_and_grad`` of its own), or a subfolder mapped apart from its parent. The
most specific mapping of a file wins: a file mapping over the folder holding it, a folder over
the folders above it. The others leave that file alone: a folder holding a more specific
mapping's path is read as one mapping per forward file of its own (``Config.mappings``).
"""

from __future__ import annotations

import ast
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FILE = "pyproject.toml"
SKIP_FILE_COMMENT = "# gradgen: skip-file"


def is_skipped(path: Path) -> bool:
    """Does ``path`` opt out of folder mappings with a ``# gradgen: skip-file`` line?"""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return False
    return any(line.strip() == SKIP_FILE_COMMENT.encode() for line in lines)


def defines_function(path: Path) -> bool:
    """Does ``path`` define a function at top level, as every forward file does? A file that
    cannot be read or parsed counts as one: generating it says what is wrong, where leaving
    it out would hide a broken forward file. Read with ``ast``: parsed, never run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a SyntaxWarning (an escape such as "\d") is not ours
            tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in tree.body)


def is_folder_forward_file(path: Path) -> bool:
    """Is ``path``, a ``*.py`` file found in a folder (mapped, or given on the command
    line), a forward file of it: a function defined, no skip-file line? Every package has
    an ``__init__.py`` with no function (empty, imports, ``__all__``): refusing it would
    make a folder that is a package impossible to map. A file named on its own is always
    read (and refused when it has no function)."""
    return not is_skipped(path) and defines_function(path)


class ConfigError(Exception):
    """The configuration is present but unusable; the message says what to fix."""


@dataclass(frozen=True)
class Mapping:
    """One ``[[tool.gradgen.files]]`` entry, with absolute paths."""

    forward: Path
    backward: Path
    wrt: dict[str, list[str]] | None = None  # function -> parameters (``wrt`` key)
    pairs: bool = False  # forward/backward pairs sharing a cache (``pairs`` key)
    value_and_grad: bool = False  # F_value_and_grad too (``value_and_grad`` key)

    def backward_for(self, forward_file: Path) -> Path | None:
        """Where this mapping puts the backward of ``forward_file``; None if not covered."""
        forward_file = forward_file.resolve()
        if forward_file == self.forward:
            return self.backward
        if forward_file.is_relative_to(self.forward) and self.forward.is_dir():
            return self.backward / forward_file.relative_to(self.forward)
        return None


@dataclass(frozen=True)
class Config:
    path: Path  # the pyproject.toml it came from
    mappings: tuple[Mapping, ...]  # what gradgen generates: no two cover one file

    @property
    def root(self) -> Path:
        return self.path.parent

    def backward_for(self, forward_file: Path) -> Path | None:
        for mapping in self.mappings:
            found = mapping.backward_for(forward_file)
            if found is not None:
                return found
        return None

    def wrt_for(self, forward_file: Path) -> dict[str, list[str]] | None:
        """The ``wrt`` of the mapping that generates ``forward_file``, if it has one."""
        for mapping in self.mappings:
            if mapping.backward_for(forward_file) is not None:
                return mapping.wrt
        return None


def find_config(start: Path) -> Config | None:
    """The nearest ``pyproject.toml`` at or above ``start`` that has ``[tool.gradgen]``."""
    start = start.resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        path = candidate / CONFIG_FILE
        if path.is_file():
            config = load_config(path)
            if config is not None:
                return config
    return None


def load_config(path: Path) -> Config | None:
    """The gradgen configuration in ``path``; None when it has no ``[tool.gradgen]``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    section = data.get("tool", {}).get("gradgen")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.gradgen] must be a table")
    unknown = set(section) - {"files"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in [tool.gradgen]: {', '.join(sorted(unknown))}")
    entries = section.get("files", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [tool.gradgen] files must be an array of tables")
    mappings = tuple(_mapping(path, entry, index) for index, entry in enumerate(entries))
    return Config(path.resolve(), _most_specific(mappings))


def _mapping(path: Path, entry: Any, index: int) -> Mapping:
    where = f"{path}: [[tool.gradgen.files]] entry {index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(entry) - {"forward", "backward", "wrt", "pairs", "value_and_grad"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
    for key in ("forward", "backward"):
        if not isinstance(entry.get(key), str):
            raise ConfigError(f"{where}: '{key}' must be a path string")
    wrt = entry.get("wrt")
    if wrt is not None and not (
        isinstance(wrt, dict)
        and all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in wrt.values()
        )
    ):
        raise ConfigError(f"{where}: 'wrt' must map function names to lists of parameters")
    pairs, value_and_grad = entry.get("pairs", False), entry.get("value_and_grad", False)
    for key, value in (("pairs", pairs), ("value_and_grad", value_and_grad)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false")
    root = path.resolve().parent
    forward, backward = (root / entry["forward"]).resolve(), (root / entry["backward"]).resolve()
    return Mapping(forward, backward, wrt, pairs, value_and_grad)


def _most_specific(mappings: tuple[Mapping, ...]) -> tuple[Mapping, ...]:
    """``mappings`` with each file left to the most specific mapping that covers it: a folder
    that holds another mapping's forward path gives way to it, read as one mapping per forward
    file of its own (those a run over the folder generates), in the folder's place."""
    kept: list[Mapping] = []
    for mapping in mappings:
        inner = [
            other.forward
            for other in mappings
            if other.forward != mapping.forward and other.forward.is_relative_to(mapping.forward)
        ]
        if not inner or not mapping.forward.is_dir():
            kept.append(mapping)
            continue
        for file in _forward_files(mapping.forward, mapping.backward):
            if not any(file.is_relative_to(forward) for forward in inner):
                backward = mapping.backward / file.relative_to(mapping.forward)
                kept.append(
                    Mapping(file, backward, mapping.wrt, mapping.pairs, mapping.value_and_grad)
                )
    return tuple(kept)


def _forward_files(folder: Path, backward: Path) -> list[Path]:
    """The files a run over ``folder`` (output ``backward``) generates, as the command line
    finds them: ``*.py`` below it, outside hidden folders and ``__pycache__``, outside the
    output folder, forward files (``is_folder_forward_file``)."""
    inside = backward != folder and backward.is_relative_to(folder)
    found = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts[:-1]):
            continue
        if inside and path.resolve().is_relative_to(backward):
            continue
        if is_folder_forward_file(path):
            found.append(path)
    return found
