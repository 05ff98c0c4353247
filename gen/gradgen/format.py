"""The only module that imports black: generated text in, black-formatted text out.

black costs about half a millisecond a line here, and a backward pass has two or three lines
per forward line, so formatting everything would make a 20,000-line input take minutes.
The emitter already writes short lines as black would (``expr.render``); so black formats
the module's skeleton (header, imports, constants, signatures, docstrings) and only the body
lines that are too long to be left alone, all in one call. ``check_module``, which the command
line runs on everything before writing it, compiles the result and verifies that black leaves
it unchanged, giving black each form of line once (``black_digest``), not every line.
"""

from __future__ import annotations

import keyword
import re

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

    The command line runs this on everything before it writes it. Black over the whole text
    cost minutes on a 20,000-line function, so black reads a digest of it instead
    (``black_digest``): every line of a different form, each in a context that makes black
    format it as it formats the lines of that form it stands for. ``text`` is unchanged by
    black exactly when the digest is.
    """
    try:
        compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as error:
        problem = f"{error.msg} (line {error.lineno})"
        raise GeneratedCodeError(f"the generated code does not compile: {problem}") from None
    except ValueError as error:  # NUL bytes (before Python 3.12)
        raise GeneratedCodeError(f"the generated code does not compile: {error}") from None
    digest, numbers = black_digest(text)
    formatted = _black(digest)
    if isinstance(formatted, Exception):
        raise GeneratedCodeError(f"black cannot read the generated code: {formatted}")
    if formatted != digest:
        at = _first_difference(digest, formatted)
        line = numbers[at - 1] if at <= len(numbers) else text.count("\n") + 1
        raise GeneratedCodeError(f"black would change the generated code, from line {line}")


# black never tells one digit from another: a digit is part of a name or of a number, and
# whatever the digits, a name stays a name, a valid number stays one (with zeros only:
# "00", "0.0000", "0x0F") and every token keeps its width. So a line with its digits made
# zeros is a line black formats as it formats the line (digits aside): ``dh_17 += w * g_17``
# and ``dh_982 += w * g_982`` are one form, ``dh_00 += w * g_00``.
_ZEROS = str.maketrans("123456789", "000000000")

# Where a line may be left out of the digest: a complete statement on one line, or a
# comment, inside a block. Not a line that starts or ends a statement of several lines (an
# opening or closing bracket, a trailing comma or backslash, a leading operator or
# keyword: black's splits), a block's header, nor a line with a string (a docstring is
# formatted by its place) or a ``fmt:`` directive. Black formats such a line by its depth
# and the blank lines before it alone: it inserts or removes none between two of them.
_KEYWORDS = frozenset(keyword.kwlist) | {"match", "case", "type"}
_OPENERS, _CLOSERS = ("(", "[", "{", ",", "\\", ":"), (")", "]", "}")
_OPERATOR_START = frozenset("+-*/%@&|^~<>=!.")


def _plain(line: str) -> bool:
    """Is ``line`` one such line (a comment, or a one-line simple statement)?"""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) < len(INDENT) or not stripped or stripped != stripped.rstrip():
        return False
    if not line.isascii() or len(line) > LINE_LENGTH or "fmt:" in line:
        return False
    if stripped.startswith("#"):
        return True
    if "#" in stripped or '"' in stripped or "'" in stripped:
        return False
    if stripped.endswith(_OPENERS) or stripped.startswith(_CLOSERS):
        return False
    if stripped[0] in _OPERATOR_START:
        return False
    first = re.match(r"[A-Za-z_]\w*", stripped)
    return first is None or first.group() not in _KEYWORDS


def black_digest(text: str) -> tuple[str, list[int]]:
    """``text`` for black to read in its place, and the number in ``text`` of each line
    it keeps.

    A plain line between two plain lines at its depth is *inner*; of the inner lines of
    one form (digits made zeros) only the first is kept. Black formats an inner line by its
    form, its depth and the plain line before it with no blank line between: in the digest
    too, every kept line has a line of the same kind before it as in ``text`` (what follows
    a run of inner lines left out is a plain line after a plain line), no block is left
    empty and no blank lines are brought together. So if black leaves the digest unchanged,
    it leaves every line of ``text`` unchanged; a line it changes is a line of ``text``.
    """
    lines = text.split("\n")
    plain = [_plain(line) for line in lines]
    depth = [len(line) - len(line.lstrip(" ")) for line in lines]
    seen: set[str] = set()
    kept: list[str] = []
    numbers: list[int] = []
    for index, line in enumerate(lines):
        inner = (
            0 < index < len(lines) - 1
            and plain[index - 1]
            and plain[index]
            and plain[index + 1]
            and depth[index - 1] == depth[index] == depth[index + 1]
        )
        if inner:
            form = line.translate(_ZEROS)
            if form in seen:
                continue
            seen.add(form)
        kept.append(line)
        numbers.append(index + 1)
    return "\n".join(kept), numbers


def _black(text: str) -> str | Exception:
    """black's version of ``text``, or why black cannot read it."""
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
