"""Reading sources and writing outputs: UTF-8 in, atomic replacement out, stable paths."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_ROOT_MARKERS = (".git", ".hg", "pyproject.toml")


def read_source(path: Path) -> str:
    """The text of a forward file; ``GradgenError`` if it is not UTF-8."""
    from gradgen.parse import decode  # reads libcst: not for package_of's light users

    return decode(path.read_bytes(), str(path))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: readers see the old file or the new, never half.

    The text goes to a temporary file in the same folder, which then replaces the target;
    on any failure the target is left as it was. A symbolic link is written through (its
    target replaced, the link kept); a target that is not a regular file (``/dev/null``,
    ``/dev/stdout``, a pipe) is written into, as a shell redirection does: replacing it
    would put a file where the device was.
    """
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def resolved(path: Path) -> Path:
    """``path.resolve()``; its absolute form where a loop of symbolic links stops resolving
    (which Python before 3.13 raises as RuntimeError): reading or writing it then fails
    with its own error, for that file alone."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def find_project_root(paths: Sequence[Path]) -> Path:
    """The nearest folder above all ``paths`` holding .git, .hg or pyproject.toml (as black
    finds it); the current folder when there is none. Paths in generated headers are written
    relative to it, so they do not depend on where gradgen was run from."""
    absolute = [resolved(p) for p in paths] or [Path.cwd()]
    common = Path(os.path.commonpath([str(p) for p in absolute]))
    if common.is_file() or not common.exists():
        common = common.parent
    for folder in (common, *common.parents):
        if any((folder / marker).exists() for marker in _ROOT_MARKERS):
            return folder
    return Path.cwd().resolve()


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes, as it appears in headers."""
    absolute = resolved(path)
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(absolute, root)).as_posix()


@dataclass(frozen=True)
class Package:
    """Where a forward file sits in a package: the folder its top-level package lies in
    (``src`` for ``src/nets/model.py``) and the module's dotted name (``nets.model``;
    ``nets`` for ``src/nets/__init__.py``)."""

    root: Path
    name: str

    @property
    def top(self) -> str:
        return self.name.partition(".")[0]


def package_of(path: Path) -> Package | None:
    """The package ``path`` is a module of: the folders with an ``__init__.py`` above it,
    as Python's import system names them. None outside a package (no ``__init__.py``
    beside it), or where a name on the way is no module name (``my-pkg``, ``a.b.py``):
    such a file runs as a script does."""
    path = path.absolute()
    if not path.stem.isidentifier():
        return None
    packages = []
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        packages.append(folder.name)
        folder = folder.parent
    if not packages:
        return None
    own = [] if path.stem == "__init__" else [path.stem]  # __init__.py is the package
    return Package(folder, ".".join([*reversed(packages), *own]))
