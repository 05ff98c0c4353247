"""What a check reports: each gradient against central differences, the forward line named
for a wrong one, the report of one function; and the usage error of the command line."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.gradcheck.compare import DEFAULT_ATOL, DEFAULT_RTOL


class UsageError(Exception):
    """A command line the check cannot run (exit status 2)."""


@dataclass(frozen=True)
class GradientCheck:
    """One parameter's gradient against central differences.

    ``status`` is "pass", "FAIL" or "skip" (a parameter with no gradient, such as labels).
    At ``worst_index`` the backward gave ``actual`` where central differences give
    ``expected``.
    """

    parameter: str
    status: str
    max_rel_error: float = 0.0
    max_abs_error: float = 0.0
    worst_index: tuple[int, ...] = ()
    expected: float = 0.0
    actual: float = 0.0
    note: str = ""
    flat: bool = False  # central differences are zero everywhere: the check says little
    skipped: str = "None"  # why a "skip" is one, in the table: "None" (no gradient), "draws"

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"

    def describe(self) -> str:
        """One line on what went wrong, or why the parameter was skipped."""
        if self.status == "skip":
            return f"{self.parameter}: {self.note}"
        if self.note and not np.isfinite(self.max_abs_error):
            return f"d{self.parameter}: {self.note}"  # no numbers to compare: None, a shape
        where = f" at index {self.worst_index}" if self.worst_index else ""
        return (
            f"d{self.parameter}: max abs. error {self.max_abs_error:.3g}, max rel. error "
            f"{self.max_rel_error:.3g}{where}: the backward gives {self.actual:.6g}, central "
            f"differences {self.expected:.6g}"
        )


@dataclass(frozen=True)
class Culprit:
    """The forward line whose backward statements introduced the first wrong adjoint."""

    filename: str
    line: int
    message: str  # "the adjoint of 'h' disagrees (max rel. error 0.3)"
    source: str  # the forward statement at ``line``, on one line
    variable: str = ""
    notes: tuple[str, ...] = ()  # other lines that may be at fault, rendered

    def render(self) -> str:
        """``FILE:LINE: MESSAGE: SOURCE``, then a note per other suspect line."""
        return "\n".join(
            [f"{self.filename}:{self.line}: {self.message}: {self.source}", *self.notes]
        )


@dataclass
class FunctionReport:
    """The check of one forward function."""

    function: str
    gradients: list[GradientCheck] = field(default_factory=list)
    culprit: Culprit | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    # parameter -> the shapes tried, in order: "(3, 2)", "scalar", "scalar, (3,), (2, 3)"
    shapes: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the check could not run: why
    notes: list[str] = field(default_factory=list)
    # Where several shapes were tried: those of the failing check ("a: scalar, b: (3,)").
    failed_at: str = ""
    # The backward raised one of gradgen's documented refusals (np.dot of a number):
    # "ValueError: gradgen: ...". Set with ``error``.
    refusal: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(g.passed for g in self.gradients)

    def __str__(self) -> str:
        """The table ``gradgen check`` prints, then what failed (or "all ... match")."""
        rows = table_rows([self])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        return "\n".join([*lines, "", self._summary()])

    def _repr_html_(self) -> str:
        """The table as an HTML table, for a notebook (which calls this, as IPython's rich
        display protocol says), then what failed."""
        header, *body = table_rows([self])
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in body
        )
        summary = html.escape(self._summary())
        return f"<table><tr>{head}</tr>{rows}</table><pre>{summary}</pre>"

    def _summary(self) -> str:
        if self.passed:
            checked = sum(g.status != "skip" for g in self.gradients)
            return "\n".join(
                [f"all {checked} gradients match central differences"]
                + [f"note: {n}" for n in self.notes]
            )
        return self.message()

    def message(self, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> str:
        """What failed, for an assertion message: every wrong gradient, then the line."""
        if self.error is not None:
            return f"cannot check the gradients of {self.function}: {self.error}"
        at = f" with {self.failed_at}" if self.failed_at else ""
        lines = [
            f"the gradients of {self.function} do not match central differences{at} "
            f"(rtol={rtol:g}, atol={atol:g}):"
        ]
        lines += [f"  {g.describe()}" for g in self.gradients if not g.passed]
        if self.culprit is not None:
            lines.append(f"first disagreeing forward line: {self.culprit.render()}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def table_rows(reports: Sequence[FunctionReport]) -> list[tuple[str, str, str, str, str]]:
    """The check's table: a header, then (function, parameter, shape, max rel. error,
    result) per gradient checked, or an ERROR row for a function that could not be."""
    rows = [("function", "parameter", "shape", "max rel. error", "result")]
    for report in reports:
        if report.error is not None:
            rows.append((report.function, "-", "-", "-", "ERROR"))
            continue
        for check in report.gradients:
            error = "-" if check.status == "skip" else f"{check.max_rel_error:.1e}"
            result = f"skip ({check.skipped})" if check.status == "skip" else check.status
            shape = report.shapes.get(check.parameter, "")
            rows.append((report.function, check.parameter, shape, error, result))
    return rows
