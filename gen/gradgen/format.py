"""The only module that imports black: generated text in, black-formatted text out.

black costs about half a millisecond a line here, and a backward pass has two or three lines
per forward line, so formatting everything would make a 20,000-line input take minutes.
The emitter already writes short lines as black would (``expr.render``); so black formats
the module's skeleton (header, imports, constants, signatures, docstrings) and only the body
lines that are too long to be left alone, all in one call. ``check_module``, which the command
line runs on everything before writing it, verifies that black leaves the result unchanged.
"""

from __future__ import annotations

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
            function.signature,
            f'{INDENT}"""{function.docstring}"""',
            f"{INDENT}{_PLACEHOLDER.format(index)}",
        ]
    formatted = black.format_str("\n".join(skeleton) + "\n", mode=_MODE)
    bodies = _format_bodies([f.body for f in text.functions])
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
    # An indented line is part of a block (a helper defined in the body), written as black
    # writes it already.
    if line.startswith(" "):
        return False
    return len(INDENT) + len(line) > LINE_LENGTH or not line.isascii()


def _format_bodies(bodies: list[list[str]]) -> list[list[str]]:
    """Indented body lines; the long ones formatted by black in a single call, each
    different one once (F_value_and_grad repeats F_backward's statements)."""
    long_lines = {
        line: None
        for body in bodies
        for line in body
        if line and not line.startswith("#") and _needs_black(line)
    }
    formatted = dict(zip(long_lines, _format_statements(list(long_lines)), strict=True))
    result = []
    for body in bodies:
        lines: list[str] = []
        for line in body:
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
    source = "\n\n\n".join(
        f"def __gradgen_line_{i}():\n{INDENT}{s}" for i, s in enumerate(statements)
    )
    formatted = black.format_str(source + "\n", mode=_MODE)
    result: list[list[str]] = [[] for _ in statements]
    current = -1
    for line in formatted.splitlines():
        match = _WRAPPER.match(line)
        if match:
            current = int(match.group(1))
        elif line and current >= 0:
            result[current].append(line)
    return result


def check_module(text: str, filename: str) -> None:
    """Raise ``GeneratedCodeError`` unless ``text`` compiles and black leaves it unchanged.

    This runs black over the whole text, which ``format_module`` is built to avoid: for the
    20,000-line function of ``benchmarks/bench_scale.py`` the check takes longer than
    generating (and twice the memory), so it is the command line's, before it writes, and
    not part of ``generate``.
    """
    try:
        compile(text, filename, "exec", dont_inherit=True)
    except SyntaxError as error:
        problem = f"{error.msg} (line {error.lineno})"
        raise GeneratedCodeError(f"the generated code does not compile: {problem}") from None
    except ValueError as error:  # NUL bytes (before Python 3.12)
        raise GeneratedCodeError(f"the generated code does not compile: {error}") from None
    try:
        formatted = black.format_str(text, mode=_MODE)
    except ValueError as error:  # black.InvalidInput
        raise GeneratedCodeError(f"black cannot read the generated code: {error}") from None
    if formatted != text:
        line = _first_difference(text, formatted)
        raise GeneratedCodeError(f"black would change the generated code, from line {line}")


def _first_difference(text: str, other: str) -> int:
    lines, others = text.splitlines(keepends=True), other.splitlines(keepends=True)
    for number, (line, another) in enumerate(zip(lines, others, strict=False), start=1):
        if line != another:
            return number
    return min(len(lines), len(others)) + 1
