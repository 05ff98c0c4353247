"""Digests tying a generated backward to the exact forward source it came from.

A forward function's digest is the SHA-256 of its source text as ``inspect.getsource``
returns it (decorators included, line endings normalised, dedented). The command line and
the decorator compute it the same way from the same text, so the decorator can tell, without
parsing anything, whether the committed backward file was generated from the function it
decorates. Each function has its own digest: editing one function marks only its backward
stale.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

DIGEST_LENGTH = 16  # hex digits: enough to notice drift; this is not a security check
DIGESTS_TITLE = "# Forward source digests (a mismatch means this file is stale):"
_DIGEST_LINE = re.compile(
    rf"^#   ([A-Za-z_][A-Za-z0-9_]*): ([0-9a-f]{{{DIGEST_LENGTH}}})"
    r"(?: from (.+?))?(?: \(calls ([A-Za-z0-9_, ]+)\))?$"
)


def digest(function_source: str) -> str:
    """The digest of one function's source text."""
    text = textwrap.dedent(function_source.replace("\r\n", "\n").replace("\r", "\n"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


def function_digests(source: str) -> dict[str, str]:
    """Digest of each top-level function of ``source``, by name (the text is only parsed)."""
    # Split as linecache and inspect do (at newlines only, never at form feeds or U+2028),
    # so the lines numbered by ast are the lines inspect.getsource returns.
    lines = io.StringIO(source, newline=None).readlines()
    digests: dict[str, str] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return digests
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            block = inspect.getblock(lines[first - 1 :])
            digests[node.name] = digest("".join(block))
    return digests


def object_digest(func: object) -> str:
    """The digest of a live function, from ``inspect.getsource`` (no parsing)."""
    return digest(inspect.getsource(func))  # type: ignore[arg-type]


def header_lines(
    digests: dict[str, str],
    names: Iterable[str],
    calls: Mapping[str, Sequence[str]] | None = None,
    origins: Mapping[str, str] | None = None,
) -> list[str]:
    """The header block listing the digest of each differentiated function, the file it
    comes from when that is another forward module (relative to the forward file's folder),
    and the functions each calls (whose backwards its backward calls: a change to one of
    them makes its backward stale too)."""
    lines = [DIGESTS_TITLE]
    for name in names:
        if name not in digests:
            continue
        origin = (origins or {}).get(name)
        source = f" from {origin}" if origin else ""
        callees = (calls or {}).get(name, ())
        called = f" (calls {', '.join(callees)})" if callees else ""
        lines.append(f"#   {name}: {digests[name]}{source}{called}")
    return lines if len(lines) > 1 else []


def read_header_digests(path: Path) -> dict[str, str]:
    """The digests a generated file records in its header (empty if none or unreadable)."""
    return {name: recorded for name, (recorded, _) in read_header(path).items()}


def read_header_origins(path: Path) -> dict[str, str]:
    """The functions a generated file's header says come from another forward module, and
    that module's file, relative to the forward file's folder."""
    return {name: origin for name, (origin, _) in _header_matches(path).items() if origin}


def read_header(path: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Per function recorded in a generated file's header: its digest, and the functions
    it calls (empty if none or unreadable)."""
    return {
        name: (recorded, callees)
        for name, (_, (recorded, callees)) in _header_matches(path).items()
    }


def _header_matches(path: Path) -> dict[str, tuple[str | None, tuple[str, tuple[str, ...]]]]:
    found: dict[str, tuple[str | None, tuple[str, tuple[str, ...]]]] = {}
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                match = _DIGEST_LINE.match(line.rstrip("\n"))
                if match:
                    callees = tuple(n.strip() for n in (match.group(4) or "").split(",") if n)
                    found[match.group(1)] = (match.group(3), (match.group(2), callees))
    except (OSError, UnicodeDecodeError):
        return {}
    return found


def read_header_command(path: Path) -> str | None:
    """The regenerate command a generated file's header names."""
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                if line.startswith("# Command: "):
                    return line[len("# Command: ") :].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return None


def top_level_function_text(path: Path, name: str) -> str:
    """The text of ``def name`` in a generated file (black-formatted, so the function ends
    where the next line starts at column 0); "" when there is none."""
    lines: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if lines:
                if line.strip() and not line[0].isspace():
                    break
                lines.append(line)
            elif line.startswith(f"def {name}("):
                lines.append(line)
    return "".join(lines).rstrip("\n") + "\n" if lines else ""
