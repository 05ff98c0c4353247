"""The command line ``gradgen check FORWARD.py``: its arguments, the backward generated or
read, every function checked, and the table of results printed; the exit status."""

from __future__ import annotations

import argparse
import linecache
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a test and check dependency
    np = None  # type: ignore[assignment]

from gradgen.errors import GradgenError, UnknownFunctionError, describe
from gradgen.gradcheck.compare import DEFAULT_ATOL, DEFAULT_RTOL
from gradgen.gradcheck.filecheck import (
    check_function,
    forward_module_name,
    last_line,
    load_forward,
    run_module,
)
from gradgen.gradcheck.inputs import Dims, parse_ints, parse_shapes, shape_annotations
from gradgen.gradcheck.results import FunctionReport, GradientCheck, UsageError, table_rows
from gradgen.naming import backward_function_name

if TYPE_CHECKING:
    from gradgen.emit import Tie
    from gradgen.ir import BackwardFunction
    from gradgen.program import DrawSite


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 123


def build_parser() -> argparse.ArgumentParser:
    """The ``gradgen check`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="gradgen check",
        description="Check the backward of each function of FORWARD.py against central "
        "differences, at random float64 arguments. Unlike plain gradgen, this RUNS the "
        "forward code (the file is loaded as a module and its functions are called).",
        epilog="Exit status: 0 every gradient matches, 1 some gradient does not (or a "
        "function could not be checked), 2 usage error, 123 gradgen refuses the file. "
        "Give FORWARD.py before options that take several values.",
    )
    parser.add_argument("forward", metavar="FORWARD.py", help="the forward file")
    parser.add_argument(
        "--function",
        action="append",
        metavar="F",
        help="check only this function (repeatable); default: every function",
    )
    parser.add_argument(
        "--shapes",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME=DIMS",
        help="the shape of a parameter (x=2,3; x=N,4; x= for a float) or the size of a "
        "dimension name of the annotations (N=4); default: from the annotations",
    )
    parser.add_argument(
        "--ints",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME[=HIGH]",
        help="fill this parameter with random integers in 0..HIGH-1 (a number or a dimension "
        "name; default: the smallest size), not differentiated; parameters the backward "
        "gives None (labels) are integers already",
    )
    parser.add_argument(
        "--backward",
        metavar="PATH",
        help="check the F_backward functions of this module (hand-written or hand-edited) "
        "instead of generating them",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--rtol",
        type=_positive_float,
        default=DEFAULT_RTOL,
        help=f"relative tolerance (default: {DEFAULT_RTOL:g})",
    )
    parser.add_argument(
        "--atol",
        type=_non_negative_float,
        default=DEFAULT_ATOL,
        help=f"absolute tolerance, for values near 0 (default: {DEFAULT_ATOL:g})",
    )
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gradgen check`` with ``argv`` (the arguments after ``check``; default:
    ``sys.argv[2:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as exit_:  # -h and usage errors
        return int(exit_.code or 0)
    if np is None:
        print("gradgen check: error: the gradient check needs numpy", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _check_file(args)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"gradgen check: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug in gradgen (the user's code is run under guards)
        print(f"{args.forward}: internal error: {describe(error)}; please report", file=sys.stderr)
        return EXIT_REFUSED


def _configured_wrt(path: Path) -> dict[str, list[str]] | None:
    """The ``wrt`` of the ``[tool.gradgen]`` mapping that generates ``path``, if any."""
    from gradgen.config import ConfigError, find_config

    try:
        config = find_config(path)
    except ConfigError:
        return None  # a bad configuration is the generating command's to report
    if config is None:
        return None
    return config.wrt_for(path)


def _check_file(args: argparse.Namespace) -> int:
    from gradgen.api import Options, compile_source
    from gradgen.files import read_source

    path = Path(args.forward)
    shown = args.forward
    if not path.is_file():
        raise UsageError(f"{shown}: no such file")
    shapes = parse_shapes(args.shapes)
    ints = parse_ints(args.ints)
    foreign = Path(args.backward) if args.backward is not None else None
    if foreign is not None and not foreign.is_file():
        raise UsageError(f"--backward {args.backward}: no such file")
    try:
        source = read_source(path)
        # What `gradgen FORWARD.py` writes (for --function, those functions alone: another
        # one may be refused), compiled as gradgen compiles it, under the same guard.
        only = tuple(args.function) if args.function else None
        # A backward given with --backward is checked instead: no text is made. With respect
        # to what the project's mapping of the file says (`wrt`), as `gradgen` generates it.
        options = Options(
            only=only,
            text="none" if foreign is not None else "module",
            wrt=_configured_wrt(path),
            forward_module=forward_module_name(path),
            path=path,
        )
        compiled = compile_source(source, shown, options)
    except UnknownFunctionError as error:
        known = ", ".join(error.defined) or "none"
        message = f"{shown} defines no function '{error.name}' (it defines: {known})"
        raise UsageError(message) from None
    except GradgenError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"{shown}: error: cannot read: {error.strerror or error}", file=sys.stderr)
        return EXIT_REFUSED
    backwards, generated = compiled.backwards, compiled.text
    _check_names(backwards, source, shapes, ints)

    if foreign is not None:
        backward_name = str(foreign)
        try:
            backward_text = foreign.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"--backward {foreign}: cannot read: {error}") from None
    else:
        backward_name = f"<gradgen check: backward of {shown}>"
        backward_text = generated
        lines = generated.splitlines(keepends=True)
        linecache.cache[backward_name] = (len(generated), None, lines, backward_name)
    print(f"gradgen check {shown} (seed {args.seed}, rtol {args.rtol:g}, atol {args.atol:g})")
    try:
        forward_namespace = load_forward(path)
    except Exception as error:
        print(f"{shown}: error: loading it raised {last_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    try:
        forward = (forward_module_name(path), forward_namespace)
        backward_namespace = run_module(backward_text, backward_name, foreign, forward)
    except Exception as error:
        print(f"{backward_name}: error: running it raised {last_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    # A user rule's backward is checked like any other, against its forward function.
    from gradgen.program import rule_backward  # the generator: here only, as compile_source

    checked: list[tuple[BackwardFunction, Sequence[Tie | None] | None, str | None]] = [
        # What each statement of gradgen's own backward writes; a backward given with
        # --backward is read as it is.
        (b, compiled.ties.get(backward_function_name(b.staged.name)), None)
        if foreign is None
        else (b, None, None)
        for b in backwards
    ]
    checked += [
        (rule_backward(rule, compiled.array_code), None, rule.backward)
        for rule in compiled.program.rules
    ]
    draws = {f.staged.name: f.draws for f in compiled.program.functions}
    reports = [
        _drawing_report(backward, site)
        if named is None and (site := draws.get(backward.staged.name)) is not None
        else check_function(
            backward,
            source,
            shown,
            forward_namespace,
            backward_namespace,
            backward_text,
            backward_name,
            shapes,
            ints,
            args,
            backward.staged.array_mode,
            ties,
            backward_function=named,
        )
        for backward, ties, named in checked
    ]
    _print_reports(reports)
    return EXIT_OK if all(r.passed for r in reports) else EXIT_FAILED


def _drawing_report(backward: BackwardFunction, site: DrawSite) -> FunctionReport:
    """The report of a function that draws random numbers: not checked, and why. Central
    differences run the forward again and again, and each run draws other numbers, so they
    would disagree with any backward: a false failure."""
    name = backward.staged.name
    report = FunctionReport(name)
    report.gradients = [
        GradientCheck(p.name, "skip", note="not checked: the forward draws", skipped="draws")
        for p in backward.staged.parameters
    ]
    report.notes.append(
        f"not checked: {site.reason(name)}, and central differences run the forward again, "
        f"drawing other numbers; check {name}_value_and_grad in a test with the draws fixed "
        "(the generator seeded alike before each run of the forward)"
    )
    return report


def _check_names(
    backwards: Sequence[BackwardFunction],
    source: str,
    shapes: dict[str, Dims],
    ints: dict[str, int | str | None],
) -> None:
    """Every name of --shapes and --ints is a parameter or a dimension of some function."""
    parameters: set[str] = set()
    dimensions: set[str] = set()
    for backward in backwards:
        for name, (dims, _) in shape_annotations(source, backward.staged.name).items():
            parameters.add(name)
            dimensions.update(d for d in dims or () if isinstance(d, str))
        parameters.update(p.name for p in backward.staged.parameters)
    for dims in shapes.values():
        dimensions.update(d for d in dims if isinstance(d, str))
    for name, dims in shapes.items():
        if name in parameters:
            continue
        if name not in dimensions:
            raise UsageError(
                f"--shapes names '{name}', neither a parameter nor a dimension name of the "
                "functions checked"
            )
        if len(dims) != 1 or not isinstance(dims[0], int):
            raise UsageError(f"--shapes {name}=...: a dimension takes one size, such as {name}=4")
    for name, high in ints.items():
        if name not in parameters:
            raise UsageError(f"--ints names '{name}', not a parameter of the functions checked")
        if isinstance(high, str) and high not in dimensions:
            raise UsageError(f"--ints {name}={high}: '{high}' is not a dimension name")


def _print_reports(reports: Sequence[FunctionReport]) -> None:
    """The table (function, parameter, shape, max rel. error, result), then the details of
    each failure and the line it comes from."""
    for report in reports:
        if report.sizes:
            sizes = ", ".join(f"{k}={v}" for k, v in report.sizes.items())
            print(f"{report.function}: sizes {sizes}")
    rows = table_rows(reports)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    checked = [g for r in reports for g in r.gradients if g.status != "skip"]
    failed = [g for g in checked if not g.passed]
    for report in reports:
        if report.passed:
            if report.notes:
                print()
            for note in report.notes:
                print(f"{report.function}: note: {note}")
            continue
        print()
        if report.failed_at:
            print(f"{report.function}: with {report.failed_at}")
        if report.error is not None:
            print(f"{report.function}: error: {report.error}")
        for check in report.gradients:
            if not check.passed:
                print(f"{report.function}: {check.describe()}")
        if report.culprit is not None:
            print(report.culprit.render())
        for note in report.notes:
            print(f"{report.function}: note: {note}")
    errors = sum(r.error is not None for r in reports)
    print()
    if not failed and not errors:
        count = len(checked)
        if count == 0:
            print("no gradient checked")
        else:
            print(f"all {count} gradients match" if count != 1 else "the gradient matches", end="")
            print(" central differences")
    else:
        parts = []
        if failed:
            parts.append(f"{len(failed)} of {len(checked)} gradients do not match")
        if errors:
            parts.append(f"{errors} function(s) could not be checked")
        print("; ".join(parts))
