"""Generated code shown in a notebook: ``gradgen.show(f)`` and ``f.backward`` displayed.

Jupyter and IPython ask an object for its rich forms through the ``_repr_html_`` and
``_repr_markdown_`` methods: gradgen answers them, so nothing here imports IPython (or
makes it a dependency). The HTML is highlighted with pygments, which IPython itself needs,
when it can be imported; otherwise it is the code, escaped, in a ``<pre>`` block.
"""

from __future__ import annotations

import html
import importlib
import inspect
from collections.abc import Callable
from typing import Any


class Code:
    """Python source that a notebook shows highlighted; ``str()`` and ``repr()`` give the
    text itself, so a terminal prints it as it is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return as_markdown(self.text)

    def _repr_html_(self) -> str:
        return as_html(self.text)


def show(f: Callable[..., Any] | str) -> Code:
    """The code gradgen generated for ``f``, to display (a notebook highlights it; ``print``
    shows the text).

    ``f`` decorated with ``@gradgen.differentiable`` shows ``f.backward_source`` (its
    backward, its value and gradients, the functions they call); a plain function shows
    what the decorator would generate for it (raising ``GradgenError`` if gradgen refuses
    it); a string is shown as it is.
    """
    if isinstance(f, str):
        return Code(f)
    source = getattr(f, "backward_source", None)
    if isinstance(source, str):
        return Code(source)
    from gradgen.decorator import compile_function

    return Code(compile_function(f).text)


def attach(function: Callable[..., Any]) -> None:
    """Let a notebook display ``function`` (a generated ``f.backward``) as its source,
    highlighted, instead of ``<function ...>``; its plain ``repr`` is left alone."""

    def text() -> str:
        try:
            return inspect.getsource(function)
        except (OSError, TypeError):
            return function.__doc__ or repr(function)

    try:
        function._repr_markdown_ = lambda: as_markdown(text())  # type: ignore[attr-defined]
        function._repr_html_ = lambda: as_html(text())  # type: ignore[attr-defined]
    except AttributeError:  # an object that takes no attributes: shown as Python shows it
        pass


def as_markdown(text: str) -> str:
    """``text`` as a fenced Python block."""
    fence = "```"
    while fence in text:  # a fence the code holds would end the block early
        fence += "`"
    return f"{fence}python\n{text.rstrip()}\n{fence}\n"


def as_html(text: str) -> str:
    """``text`` highlighted as Python (inline styles: no stylesheet needed)."""
    try:  # imported by name: pygments is optional, and has no type stubs
        pygments = importlib.import_module("pygments")
        formatters = importlib.import_module("pygments.formatters")
        lexers = importlib.import_module("pygments.lexers")
    except ImportError:
        return f"<pre>{html.escape(text)}</pre>"
    formatter = formatters.HtmlFormatter(noclasses=True)
    return str(pygments.highlight(text, lexers.PythonLexer(), formatter))
