"""Refusals: what went wrong, where, and how it is shown to the user.

Every refusal carries a file, a line and a column, and renders as compilers do::

    forward.py:3:5: error: loops are not supported ...
        for i in range(3):
        ^

``GradgenError`` subclasses ``SyntaxError`` so that a refusal raised at import time by the
decorator is shown by Python itself with the user's file, line and caret.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One refused construct. ``line`` and ``column`` are 1-based."""

    filename: str
    line: int
    column: int
    message: str
    source_line: str = ""

    def render(self) -> str:
        """``FILE:LINE:COL: error: MESSAGE``, then the source line and a caret."""
        head = f"{self.filename}:{self.line}:{self.column}: error: {self.message}"
        if not self.source_line.strip():
            return head
        text = self.source_line.rstrip("\r\n")
        # Copy tabs from the line itself so the caret lines up however tabs are shown.
        lead = "".join(ch if ch == "\t" else " " for ch in text[: self.column - 1])
        return f"{head}\n    {text}\n    {lead}^"


class GradgenError(SyntaxError):
    """Raised when gradgen refuses its input; holds every problem found in one run."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("GradgenError needs at least one diagnostic")
        first = diagnostics[0]
        message = first.message
        if len(diagnostics) > 1:
            rest = "\n".join(d.render() for d in diagnostics[1:])
            message = f"{message}\n(and {len(diagnostics) - 1} more)\n{rest}"
        super().__init__(
            message, (first.filename, first.line, first.column, first.source_line or None)
        )
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)

    def render(self) -> str:
        """All diagnostics, one block each, as the CLI prints them."""
        return "\n".join(d.render() for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


def source_line(text: str, line: int) -> str:
    """Line ``line`` (1-based) of ``text``, or "" when there is no such line."""
    lines = _lines(text)
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return ""


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@functools.lru_cache(maxsize=4)
def _lines(text: str) -> tuple[str, ...]:
    # Python's line breaks only: str.splitlines also breaks at form feeds, U+2028 and other
    # characters that Python (and libcst, which numbers the lines) reads as part of a line.
    # Cached: a refusal of many problems asks for many lines of the same text.
    return tuple(_LINE_BREAK.split(text))


class UnknownFunctionError(GradgenError):
    """A function asked for by name (``gradgen check --function``, the decorator's function)
    that the source does not define with ``def``; ``defined`` names those it does."""

    def __init__(
        self, diagnostics: Sequence[Diagnostic], name: str, defined: Sequence[str]
    ) -> None:
        super().__init__(diagnostics)
        self.name = name
        self.defined: tuple[str, ...] = tuple(defined)


class InternalError(Exception):
    """A bug in gradgen, not a problem with the input: ``error`` is what was raised inside
    the compile path, which every entry point reports the same way (one line, "please
    report"); it is also the ``__cause__``, so a traceback shows where it happened."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"internal error: {describe(error)}; please report")
        self.error = error


def describe(error: BaseException) -> str:
    """``ExceptionType: message`` on one line, for an internal error (of the error inside,
    for an ``InternalError``)."""
    if isinstance(error, InternalError):
        error = error.error
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class GeneratedCodeError(Exception):
    """The generated text failed its final check (it does not compile, or black would
    change it): a bug in gradgen, never a problem with the input."""
