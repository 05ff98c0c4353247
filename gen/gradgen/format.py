"""The only module that imports black: generated text in, black-formatted text out.

black costs about half a millisecond a line here, and a backward pass has two or three lines
per forward line, so formatting everything would make a 20,000-line input take minutes.
The emitter already writes short lines as black would (``expr.render``); so black formats
the module's skeleton (header, imports, constants, signatures, docstrings) and only the body
lines that are too long to be left alone, all in one call. ``check_module``, which the command
line runs on everything before writing it, verifies that black leaves the result unchanged.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import re
import sys

import black

from gradgen.emit import ModuleText
from gradgen.errors import GeneratedCodeError

LINE_LENGTH = 88
INDENT = "    "
_MODE = black.Mode(line_length=LINE_LENGTH)
_PLACEHOLDER = "__gradgen_body_{}__"
_WRAPPER = re.compile(r"^def __gradgen_line_(\d+)\(\):$")


def format_module(text: ModuleText) -> str:
    """The module as black would write it."""
    skeleton: list[str] = [*text.header, ""]
    if text.preamble:
        skeleton += [*text.preamble, ""]
    for index, function in enumerate(text.functions):
        skeleton += [
            "",
            "",
            *(f"# {line}" for line in function.comment),
            function.signature,
            f'{INDENT}"""{function.docstring}"""',
            f"{INDENT}{_PLACEHOLDER.format(index)}",
        ]
    formatted = black.format_str("\n".join(skeleton) + "\n", mode=_MODE)
    bodies = _format_bodies([f.body for f in text.functions], [f.verbatim for f in text.functions])
    out: list[str] = []
    for line in formatted.splitlines():
        stripped = line.strip()
        if stripped.startswith("__gradgen_body_"):
            index = int(stripped[len("__gradgen_body_") : -2])
            out += bodies[index]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _needs_black(line: str) -> bool:
    # black measures width in terminal cells; a non-ASCII line is left to black to measure.
    # An indented line is part of a block: a helper defined in the body (short lines,
    # written as black writes them) or a loop's body, whose long lines black formats.
    # A raise is the user's expression as ast writes it (quotes, spacing): black's to write.
    long = len(INDENT) + len(line) > LINE_LENGTH or not line.isascii()
    return long or line.lstrip().startswith("raise ")


def _format_bodies(bodies: list[list[str]], verbatim: list[int]) -> list[list[str]]:
    """Indented body lines; the long ones formatted by black in a single call, each
    different one once (F_value_and_grad repeats F_backward's statements); the first
    ``verbatim`` lines of each body as they are."""
    long_lines = {
        line: None
        for body, kept in zip(bodies, verbatim, strict=True)
        for line in body[kept:]
        if line and not line.lstrip().startswith("#") and _needs_black(line)
    }
    formatted = dict(zip(long_lines, _format_statements(list(long_lines)), strict=True))
    result = []
    for body, kept in zip(bodies, verbatim, strict=True):
        lines: list[str] = [INDENT + line if line else "" for line in body[:kept]]
        for line in body[kept:]:
            if not line:
                lines.append("")
            elif line in formatted:
                lines += formatted[line]
            else:
                lines.append(INDENT + line)
        result.append(lines)
    return result


def _format_statements(statements: list[str]) -> list[list[str]]:
    """Each statement as black writes it inside a function body (indented lines)."""
    if not statements:
        return []
    source = "\n\n\n".join(_wrapped(i, s) for i, s in enumerate(statements))
    formatted = black.format_str(source + "\n", mode=_MODE)
    result: list[list[str]] = [[] for _ in statements]
    current = -1
    for line in formatted.splitlines():
        match = _WRAPPER.match(line)
        if match:
            current = int(match.group(1))
        elif line and current >= 0 and line.strip() not in (_BLOCK, _BLOCK_BODY):
            result[current].append(line)
    return result


_BLOCK = "for _ in _:"
_BLOCK_BODY = "__gradgen_block_body"


def _wrapped(index: int, statement: str) -> str:
    """A statement inside a function (and, for a line of a loop's body, inside as many
    blocks as it is indented), so black formats it at its own depth. A block's first line
    (``for t, h, ... in reversed(t_steps):``, whose statements are lines of their own) is
    given a body, left out again."""
    depth = (len(statement) - len(statement.lstrip(" "))) // len(INDENT)
    lines = [f"def __gradgen_line_{index}():"]
    lines += [f"{INDENT * (level + 1)}{_BLOCK}" for level in range(depth)]
    lines.append(f"{INDENT * (depth + 1)}{statement.lstrip(' ')}")
    if statement.endswith(":"):
        lines.append(f"{INDENT * (depth + 2)}{_BLOCK_BODY}")
    return "\n".join(lines)


def check_module(text: str, filename: str) -> None:
    """Raise ``GeneratedCodeError`` unless ``text`` compiles and black leaves it unchanged.

    This runs black over the whole text, which ``format_module`` is built to avoid: for the
    20,000-line function of ``benchmarks/bench_scale.py`` the check costs about what
    generating does, even with a long text's functions checked in parallel processes, so
    it is the command line's, before it writes, and not part of ``generate``.
    """
    try:
        compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as error:
        problem = f"{error.msg} (line {error.lineno})"
        raise GeneratedCodeError(f"the generated code does not compile: {problem}") from None
    except ValueError as error:  # NUL bytes (before Python 3.12)
        raise GeneratedCodeError(f"the generated code does not compile: {error}") from None
    chunks = _top_level_chunks(text)
    if len(chunks) < 2 or text.count("\n") < PARALLEL_CHECK_LINES or (os.cpu_count() or 1) < 2:
        chunks = [(1, text)]
    changed = _changed_chunks(chunks)
    if changed is not None:
        start, chunk, formatted = changed
        line = start - 1 + _first_difference(chunk, formatted)
        raise GeneratedCodeError(f"black would change the generated code, from line {line}")


# A long output is checked in parallel, a top-level function per task: black formats each
# top-level statement on its own, so the file is unchanged exactly when every chunk is and
# the chunks are joined by two blank lines, as black separates functions.
PARALLEL_CHECK_LINES = 20_000


def _top_level_chunks(text: str) -> list[tuple[int, str]]:
    """``text`` cut before each top-level ``def``: (first line number, chunk without its
    trailing blank lines); [] when the text is not two blank lines between the chunks."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("def ")]
    if not starts or starts[0] == 0:
        return []
    bounds = [0, *starts, len(lines)]
    chunks = []
    for begin, end in itertools.pairwise(bounds):
        chunks.append((begin + 1, "".join(lines[begin:end]).rstrip("\n") + "\n"))
    if "\n\n".join(chunk for _, chunk in chunks) != text:
        return []
    return chunks


def _changed_chunks(chunks: list[tuple[int, str]]) -> tuple[int, str, str] | None:
    """The first chunk black would change: (its first line, it, black's version)."""
    texts = [chunk for _, chunk in chunks]
    if len(texts) == 1:
        results = [_black(texts[0])]
    else:
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        workers = min(os.cpu_count() or 1, 8)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(_black, texts, chunksize=max(1, len(texts) // workers)))
    for (start, chunk), formatted in zip(chunks, results, strict=True):
        if isinstance(formatted, Exception):
            message = f"black cannot read the generated code: {formatted}"
            raise GeneratedCodeError(message)
        if formatted != chunk:
            return start, chunk, formatted
    return None


def _black(text: str) -> str | Exception:
    """black's version of ``text``, or why black cannot read it (returned, not raised, so
    that it comes back from a worker process as it is)."""
    try:
        return black.format_str(text, mode=_MODE)
    except ValueError as error:  # black.InvalidInput
        return error


def _first_difference(text: str, other: str) -> int:
    lines, others = text.splitlines(keepends=True), other.splitlines(keepends=True)
    for number, (line, another) in enumerate(zip(lines, others, strict=False), start=1):
        if line != another:
            return number
    return min(len(lines), len(others)) + 1
