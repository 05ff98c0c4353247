"""The ``gradgen`` command: forward files in, backward files out; never runs the input.

Exit codes follow black's: 0 done (or nothing to change), 1 ``--check`` found files that
would change, 2 usage error, 123 an input was refused, an output could not be written, or
gradgen failed (an internal error: reported as one line, never a traceback, nothing written).
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gradgen import __version__
from gradgen.api import Options, compile_source, module_name, with_headroom
from gradgen.config import Config, ConfigError, Mapping, find_config, is_folder_forward_file
from gradgen.errors import GradgenError, describe
from gradgen.files import (
    display_path,
    find_project_root,
    package_of,
    read_source,
    resolved,
    write_atomic,
)
from gradgen.format import check_module

EXIT_OK = 0
EXIT_WOULD_CHANGE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 123


class _UsageError(Exception):
    pass


@dataclass(frozen=True)
class Job:
    """One forward file and where its backward goes (None: standard output)."""

    source: Path
    output: Path | None
    wrt: dict[str, list[str]] | None = None  # function (or "*") -> parameters
    pairs: bool = False  # F_forward returning a cache, F_backward(d<out>, cache)
    value_and_grad: bool = False  # F_value_and_grad too


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradgen",
        description="Generate readable backward (gradient) code from staged forward Python. "
        "The input is parsed, never run.",
        epilog="Exit status: 0 done, 1 --check found stale output, 2 usage error, "
        "123 input refused or output not written. The numerical gradient check, which runs "
        "the forward code: gradgen check FORWARD.py (see gradgen check -h).",
    )
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SRC",
        help="forward Python files, or directories searched for *.py files (those that "
        "define no function, such as __init__.py, left out); without any, "
        "every mapping of [tool.gradgen] in the project's pyproject.toml (a first SRC named "
        "check is the gradient check: write a path named check as ./check)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file (one input file) or directory (several inputs or a directory); "
        "standard output when omitted",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and show a diff if any output is not what gradgen "
        "would write now",
    )
    parser.add_argument(
        "--diff", action="store_true", help="write nothing; show what would change as a diff"
    )
    parser.add_argument(
        "--wrt",
        action="append",
        metavar="[FUNCTION=]NAMES",
        help="differentiate only with respect to these comma-separated parameters, for "
        "FUNCTION or for every function; repeatable (e.g. --wrt loss=W1,b1)",
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="also write F_forward(...) -> (value, cache), and make F_backward take "
        "(d<out>, cache) instead of recomputing the forward values",
    )
    parser.add_argument(
        "--value-and-grad",
        action="store_true",
        help="also write F_value_and_grad(...) -> (value, gradients) (always written for "
        "a function that draws random numbers, which has no recomputing F_backward)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="report errors only")
    parser.add_argument("--version", action="version", version=f"gradgen {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:
        # `gradgen check FORWARD.py`: the numerical gradient check (it runs the forward).
        # The subcommand wins over a file or folder named check, which is spelled as a
        # path (`gradgen ./check`): what the command does never depends on the folder.
        from gradgen.gradcheck import main as check_main

        return check_main(argv[1:])
    try:
        return _generate_files(argv)
    except Exception as error:  # a bug outside any one file (planning, the project root)
        print(f"gradgen: internal error: {describe(error)}; please report", file=sys.stderr)
        return EXIT_REFUSED


def _generate_files(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # -h, --version and usage errors
        return int(exit_.code or 0)
    try:
        if args.sources:
            jobs = _as_configured(plan_jobs([Path(s) for s in args.sources], args.output))
            root = find_project_root([job.source for job in jobs])
        else:
            jobs, root = _configured_jobs(args.output)
        if args.wrt:
            wrt = parse_wrt(args.wrt)
            jobs = [replace(job, wrt=wrt) for job in jobs]
        if args.pairs:
            jobs = [replace(job, pairs=True) for job in jobs]
        if args.value_and_grad:
            jobs = [replace(job, value_and_grad=True) for job in jobs]
        if (args.check or args.diff) and any(job.output is None for job in jobs):
            raise _UsageError("--check and --diff compare with existing files: give -o")
    except (_UsageError, ConfigError) as error:
        parser.print_usage(sys.stderr)
        print(f"gradgen: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not jobs:
        if not args.quiet:
            print("gradgen: no forward files found; nothing to do", file=sys.stderr)
        return EXIT_OK
    status = EXIT_OK
    for job in jobs:
        status = max(status, _run(job, args, root), key=_severity)
    return status


def main_entry() -> None:
    """Console-script entry point."""
    raise SystemExit(main())


def _severity(status: int) -> int:
    return {EXIT_OK: 0, EXIT_WOULD_CHANGE: 1, EXIT_REFUSED: 2}.get(status, 3)


def plan_jobs(sources: list[Path], output: str | None) -> list[Job]:
    """Which file goes where; raises ``_UsageError`` for impossible requests."""
    for source in sources:
        if not source.exists():
            raise _UsageError(f"{source}: no such file or directory")
    out = Path(output) if output is not None else None
    single_file = len(sources) == 1 and sources[0].is_file()
    if out is None:
        if not single_file:
            raise _UsageError("several inputs or a directory need -o DIR")
        return [Job(sources[0], None)]
    if single_file and not out.is_dir() and not output.endswith(("/", os.sep)):  # type: ignore[union-attr]
        jobs = [Job(sources[0], out)]
    else:
        jobs = []
        for source in sources:
            if source.is_dir():
                jobs += [
                    Job(file, out / file.relative_to(source))
                    for file in _python_files(source, exclude=out)
                ]
            else:
                jobs.append(Job(source, out / source.name))
    _check_outputs(jobs)
    return jobs


def parse_wrt(specs: list[str]) -> dict[str, list[str]]:
    """``["loss=W1,b1", "x"]`` -> ``{"loss": ["W1", "b1"], "*": ["x"]}``."""
    wrt: dict[str, list[str]] = {}
    for spec in specs:
        function, _, names = spec.rpartition("=")
        parameters = [n.strip() for n in names.split(",") if n.strip()]
        if not parameters or not all(p.isidentifier() for p in parameters):
            raise _UsageError(f"--wrt {spec!r}: give [FUNCTION=]NAME[,NAME...]")
        wrt.setdefault(function or "*", []).extend(parameters)
    return wrt


def _as_configured(jobs: list[Job]) -> list[Job]:
    """A file written where its ``[tool.gradgen]`` mapping puts it is generated as the
    mapping says (its ``wrt``, ``pairs`` and ``value_and_grad``), as a bare ``gradgen``
    would: the same file whichever way it is asked for. The options still override."""
    configs: dict[Path, Config | None] = {}
    result = []
    for job in jobs:
        if job.output is None:
            result.append(job)
            continue
        try:
            folder = job.source.resolve().parent
            if folder not in configs:
                configs[folder] = find_config(folder)
            config = configs[folder]
            mapping = None
            if config is not None:
                output = job.output.resolve()
                mapping = next(
                    (m for m in config.mappings if m.backward_for(job.source) == output), None
                )
        except (OSError, RuntimeError):  # a path that cannot be resolved: reading it says why
            mapping = None
        if mapping is None:
            result.append(job)
        else:
            result.append(_mapped_job(job.source, job.output, mapping))
    return result


def _mapped_job(source: Path, output: Path | None, mapping: Mapping) -> Job:
    return Job(source, output, mapping.wrt, mapping.pairs, mapping.value_and_grad)


def _configured_jobs(output: str | None) -> tuple[list[Job], Path]:
    """The jobs ``[tool.gradgen]`` describes, found from the current folder upwards."""
    if output is not None:
        raise _UsageError("-o needs SRC: without SRC, outputs come from [tool.gradgen]")
    config = find_config(Path.cwd())
    if config is None:
        raise _UsageError("no SRC given, and no pyproject.toml with [tool.gradgen] here or above")
    jobs: list[Job] = []
    for mapping in config.mappings:
        if not mapping.forward.exists():
            raise _UsageError(f"{config.path}: forward path {mapping.forward} does not exist")
        backward = str(mapping.backward) + (os.sep if mapping.forward.is_dir() else "")
        planned = plan_jobs([mapping.forward], backward)
        jobs += [_mapped_job(job.source, job.output, mapping) for job in planned]
    _check_outputs(jobs)
    return jobs, config.root


def _python_files(directory: Path, exclude: Path) -> list[Path]:
    # An output folder inside the input folder holds our own output: never read it as input.
    # (When the output folder is the input folder itself, every job would overwrite its
    # input, which _check_outputs refuses.)
    output, folder = resolved(exclude), resolved(directory)
    inside = output != folder and output.is_relative_to(folder)
    excluded = output if inside else None
    found = []
    for path in sorted(directory.rglob("*.py")):
        relative = path.relative_to(directory)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts[:-1]):
            continue
        if excluded is not None and resolved(path).is_relative_to(excluded):
            continue
        if not is_folder_forward_file(path):  # a package's __init__.py, a skip-file line
            continue
        found.append(path)
    return found


def _check_outputs(jobs: list[Job]) -> None:
    targets: dict[Path, Path] = {}
    for job in jobs:
        assert job.output is not None
        target = resolved(job.output)
        if target == resolved(job.source):
            raise _UsageError(f"{job.source}: the output would overwrite the input")
        if target in targets:
            raise _UsageError(
                f"{targets[target]} and {job.source} would both be written to {job.output}"
            )
        targets[target] = job.source


def _run(job: Job, args: argparse.Namespace, root: Path) -> int:
    source_name = display_path(job.source, root)
    command = f"gradgen {shlex.quote(source_name)}"
    if job.output is not None:
        command += f" -o {shlex.quote(display_path(job.output, root))}"
    for function, names in sorted((job.wrt or {}).items()):
        spec = ",".join(names) if function == "*" else f"{function}={','.join(names)}"
        command += f" --wrt {shlex.quote(spec)}"
    if job.pairs:
        command += " --pairs"
    if job.value_and_grad:
        command += " --value-and-grad"
    try:
        text = read_source(job.source)
    except GradgenError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"{source_name}: error: cannot read: {error.strerror or error}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as error:
        return _internal_error(source_name, error)
    shown = source_name if job.output is None else display_path(job.output, root)
    try:
        options = Options(
            wrt=job.wrt,
            pairs=job.pairs,
            value_and_grad=job.value_and_grad,
            command=command,
            forward_module=_import_name(job.source, source_name),
            path=job.source,
        )
        result = compile_source(text, source_name, options).text
        current = _current_text(job.output)
        if result != current:
            # The last line of defence before anything is written, printed or shown as a
            # diff: the text must compile and be black's own output. Black on a whole large
            # module takes longer than generating it, so an output already on disk as it
            # is (checked when it was written) is not checked again.
            with_headroom(lambda: check_module(result, shown))
    except GradgenError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_REFUSED
    except Exception as error:  # a bug in gradgen (InternalError): one line, the next file goes on
        return _internal_error(source_name, error)
    if job.output is None:
        try:
            sys.stdout.write(result)
        except OSError as error:
            print(f"{source_name}: error: cannot write: {error.strerror or error}", file=sys.stderr)
            return EXIT_REFUSED
        return EXIT_OK
    try:
        return _deliver(result, current, job.output, shown, args)
    except Exception as error:
        return _internal_error(source_name, error)


def _import_name(source: Path, source_name: str) -> str | None:
    """The name the forward module is imported by, for the module data the generated module
    imports from it: its package's dotted name inside a package (``nets.model`` for
    ``src/nets/model.py``), else its path from the project's root (``examples.fit``)."""
    package = package_of(source)
    return package.name if package is not None else module_name(source_name)


def _internal_error(source_name: str, error: Exception) -> int:
    print(f"{source_name}: internal error: {describe(error)}; please report", file=sys.stderr)
    return EXIT_REFUSED


def _current_text(output: Path | None) -> str | None:
    """The output file's text now; None when there is none, when it cannot be read, or when
    it is not a regular file (``/dev/null``, a pipe: reading it would wait or consume)."""
    if output is None:
        return None
    try:
        return output.read_text(encoding="utf-8") if output.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _deliver(
    result: str, current: str | None, output: Path, shown: str, args: argparse.Namespace
) -> int:
    if current == result:
        return EXIT_OK
    if args.check or args.diff:
        diff = difflib.unified_diff(
            (current or "").splitlines(keepends=True),
            result.splitlines(keepends=True),
            fromfile=f"{shown} (current)",
            tofile=f"{shown} (gradgen)",
        )
        sys.stdout.writelines(diff)
        if not args.quiet:
            print(f"would regenerate {shown}", file=sys.stderr)
        return EXIT_WOULD_CHANGE if args.check else EXIT_OK
    try:
        write_atomic(output, result)
    except OSError as error:
        print(f"{shown}: error: cannot write: {error.strerror or error}", file=sys.stderr)
        return EXIT_REFUSED
    if not args.quiet:
        print(f"wrote {shown}", file=sys.stderr)
    return EXIT_OK
