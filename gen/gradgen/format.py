"""The only module that imports black: generated text in, black-formatted text out.

black costs about half a millisecond a line here, and a backward pass has two or three lines
per forward line, so formatting everything would make a 20,000-line input take minutes.
The emitter already writes short lines as black would (``expr.render``); so black formats
the module's skeleton (header, imports, constants, signatures, docstrings) and only the body
lines that are too long to be left alone, all in one call. The test suite checks that black
leaves every generated file unchanged.
"""

from __future__ import annotations

import re

import black

from gradgen.emit import ModuleText

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
    """Indented body lines; the long ones formatted by black in a single call."""
    long_lines: list[str] = []
    for body in bodies:
        long_lines += [
            line for line in body if line and not line.startswith("#") and _needs_black(line)
        ]
    formatted = _format_statements(long_lines)
    result = []
    position = 0
    for body in bodies:
        lines: list[str] = []
        for line in body:
            if not line:
                lines.append("")
            elif not line.startswith("#") and _needs_black(line):
                lines += formatted[position]
                position += 1
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
