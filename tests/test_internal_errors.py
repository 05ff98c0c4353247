"""A bug inside gradgen is an internal error, never a traceback or a wrong file.

- a bug inside gradgen is one line on stderr, exit 123, nothing written, and the other files
  of the run go on;
- what is written has been compiled and checked unchanged by black first, so a bug that
  makes bad code is caught before anything is written.

Run the command line as users do: each test works in its own ``tmp_path`` holding a
``pyproject.toml`` (the project root) and runs ``gradgen.cli.main``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import black
import pytest

import gradgen
import gradgen.api
import gradgen.cli
import gradgen.format
import gradgen.program
from cli_project import GOOD, GOOD_2, Run, snapshot, write
from gradgen.errors import GeneratedCodeError
from gradgen.format import check_module

INTERNAL = re.compile(r"^(\S+): internal error: (.+); please report$")


# --- a bug in gradgen is an internal error -------------------------------------------------


def _raise(error: BaseException) -> Callable[..., object]:
    def raiser(*args: object, **kwargs: object) -> object:
        raise error

    return raiser


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["f.py"], id="stdout"),
        pytest.param(["f.py", "-o", "out.py"], id="file"),
        pytest.param(["--check", "f.py", "-o", "out.py"], id="check"),
        pytest.param(["--diff", "f.py", "-o", "out.py"], id="diff"),
    ],
)
def test_internal_error_is_one_line_exit_123_nothing_written(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    write(project / "f.py", GOOD)
    monkeypatch.setattr(gradgen.program, "stage_function", _raise(ValueError("boom")))
    status, out, err = run(*argv)
    assert status == 123
    assert out == ""
    assert err == "f.py: internal error: ValueError: boom; please report\n"
    assert sorted(p.name for p in project.iterdir()) == ["f.py", "pyproject.toml"]


def test_internal_error_leaves_existing_output_alone(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project / "f.py", GOOD)
    write(project / "out.py", "# hand-written, must survive\n")
    os.utime(project / "out.py", ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(project)
    monkeypatch.setattr(gradgen.api, "format_module", _raise(RuntimeError("bad")))
    assert run("f.py", "-o", "out.py")[0] == 123
    assert snapshot(project) == before


def test_other_files_of_the_run_go_on(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project / "src/a.py", GOOD)
    write(project / "src/b.py", GOOD_2)
    write(project / "src/c.py", GOOD.replace("math.sin", "math.cos"))
    real = gradgen.program.stage_function

    def fails_on_g(function: object, *args: object, **kwargs: object) -> object:
        if getattr(function, "name", None) == "g":
            raise KeyError("g")
        return real(function, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gradgen.program, "stage_function", fails_on_g)
    status, _, err = run("src", "-o", "out")
    assert status == 123
    assert "src/b.py: internal error: KeyError: 'g'; please report" in err.splitlines()
    assert sorted(p.name for p in (project / "out").iterdir()) == ["a.py", "c.py"]
    assert "math.cos" in (project / "out/c.py").read_text()


@pytest.mark.parametrize(
    "error, shown",
    [
        pytest.param(RecursionError("maximum recursion depth exceeded"), None, id="recursion"),
        pytest.param(MemoryError(), "MemoryError", id="no-message"),
        pytest.param(AssertionError("two\nlines"), "AssertionError: two lines", id="multiline"),
        pytest.param(OSError(5, "Input/output error"), None, id="os-error-inside"),
    ],
)
def test_any_exception_is_reported_on_one_line(
    project: Path,
    run: Run,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    shown: str | None,
) -> None:
    write(project / "f.py", GOOD)
    monkeypatch.setattr(gradgen.api, "format_module", _raise(error))
    status, _, err = run("f.py", "-o", "out.py")
    assert status == 123
    assert len(err.splitlines()) == 1
    match = INTERNAL.match(err.rstrip("\n"))
    assert match is not None, err
    assert match.group(1) == "f.py"
    assert match.group(2) == (shown or f"{type(error).__name__}: {error}")
    assert not (project / "out.py").exists()


def test_internal_error_outside_any_file(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project / "f.py", GOOD)
    monkeypatch.setattr(gradgen.cli, "find_project_root", _raise(RuntimeError("no root")))
    status, out, err = run("f.py", "-o", "out.py")
    assert (status, out) == (123, "")
    assert err == "gradgen: internal error: RuntimeError: no root; please report\n"
    assert not (project / "out.py").exists()


def test_internal_error_while_writing(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An OSError while writing is the disk's problem (see test_cli); anything else is ours.
    write(project / "f.py", GOOD)
    monkeypatch.setattr(gradgen.cli, "write_atomic", _raise(TypeError("unexpected")))
    status, _, err = run("f.py", "-o", "out.py")
    assert status == 123
    assert err == "f.py: internal error: TypeError: unexpected; please report\n"
    assert not (project / "out.py").exists()


# --- what is written is checked first ------------------------------------------------------


def _formatter_returning(change: Callable[[str], str]) -> Callable[..., str]:
    real = gradgen.api.format_module

    def formatter(*args: object, **kwargs: object) -> str:
        return change(real(*args, **kwargs))  # type: ignore[arg-type]

    return formatter


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["f.py"], id="stdout"),
        pytest.param(["f.py", "-o", "out.py"], id="file"),
        pytest.param(["--check", "f.py", "-o", "out.py"], id="check"),
    ],
)
def test_output_that_does_not_compile_is_not_written(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    write(project / "f.py", GOOD)
    good = gradgen.generate(GOOD, "f.py")
    broken_line = len(good.splitlines()) + 1
    monkeypatch.setattr(
        gradgen.api, "format_module", _formatter_returning(lambda t: t + "def broken(:\n")
    )
    status, out, err = run(*argv)
    assert (status, out) == (123, "")
    match = INTERNAL.match(err.rstrip("\n"))
    assert match is not None, err
    assert match.group(2).startswith(
        "GeneratedCodeError: the generated code does not compile: invalid syntax"
    )
    assert match.group(2).endswith(f"(line {broken_line})")
    assert sorted(p.name for p in project.iterdir()) == ["f.py", "pyproject.toml"]


def test_output_black_would_change_is_not_written(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project / "f.py", GOOD)
    good = gradgen.generate(GOOD, "f.py")
    # Valid Python, but not as black writes it.
    line = next(n for n, text in enumerate(good.splitlines(), 1) if " = " in text)
    monkeypatch.setattr(
        gradgen.api, "format_module", _formatter_returning(lambda t: t.replace(" = ", "=", 1))
    )
    status, _, err = run("f.py", "-o", "out.py")
    assert status == 123
    assert err == (
        "f.py: internal error: GeneratedCodeError: black would change the generated code, "
        f"from line {line}; please report\n"
    )
    assert not (project / "out.py").exists()


def test_output_already_on_disk_is_not_checked_again(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Black on a large module costs more than generating it: an output that is already
    # what gradgen writes was checked when it was written.
    write(project / "f.py", GOOD)
    assert run("f.py", "-o", "out.py")[0] == 0
    monkeypatch.setattr(gradgen.cli, "check_module", _raise(GeneratedCodeError("checked")))
    assert run("f.py", "-o", "out.py")[0] == 0
    assert run("--check", "f.py", "-o", "out.py")[0] == 0
    assert run("f.py", "-o", "other.py")[0] == 123
    assert not (project / "other.py").exists()


@pytest.mark.parametrize(
    "text, words",
    [
        pytest.param("x = (\n", "does not compile: '(' was never closed (line 1)", id="syntax"),
        pytest.param("x = 1\0\n", "does not compile:", id="nul"),
        pytest.param("x=1\n", "black would change the generated code, from line 1", id="black"),
        pytest.param("x = 1\n\n\n\ny = 2\n", "from line 4", id="blank-lines"),
        pytest.param("x = 1", "from line 1", id="no-final-newline"),
    ],
)
def test_check_module_refuses(text: str, words: str) -> None:
    with pytest.raises(GeneratedCodeError) as caught:
        check_module(text, "out.py")
    assert words in str(caught.value)


def test_check_module_accepts_what_gradgen_writes() -> None:
    numpy_source = (
        "import numpy as np\n\n\n"
        "def loss(W, x, b):\n"
        "    h = np.maximum(0.0, x @ W + b)\n"
        "    return np.sum(h * h) / h.shape[0]\n"
    )
    for source in (GOOD, GOOD_2, numpy_source):
        check_module(gradgen.generate(source, "f.py"), "out.py")
        check_module(gradgen.generate(source, "f.py", pairs=True), "out.py")


# A function of many lines of one form, as a long staged function's backward is: black
# reads the first of each form only (format.black_digest), so a change black would make to
# any other line must still be found, at its own line number.
REPEATED = (
    "import numpy as np\n\n\n"
    "def f_backward(h, w, dloss=1.0):\n"
    "    h_1 = h * w\n"
    + "".join(f"    h_{i} = np.sin(h_{i - 1}) * w\n" for i in range(2, 300))
    + "\n"
    + "".join(
        f"    # backprop h = np.sin(h) * w\n    dh_{i} = w * dh_{i + 1}\n"
        for i in range(298, 1, -1)
    )
    + "    return dh_2, w\n"
)


def test_digest_reads_each_form_once() -> None:
    digest, numbers = gradgen.format.black_digest(REPEATED)
    assert len(digest.splitlines()) < 30 < 800 < len(REPEATED.splitlines())
    lines = REPEATED.split("\n")
    assert [lines[n - 1] for n in numbers] == digest.split("\n")
    check_module(REPEATED, "out.py")


@pytest.mark.parametrize(
    "old, new",
    [
        pytest.param("h_150 = np.sin(h_149) * w", "h_150 = np.sin(h_149)*w", id="spacing"),
        pytest.param("h_150 = np.sin(h_149) * w", "h_150 = (np.sin(h_149) * w)", id="parens"),
        pytest.param("h_150 = np.sin(h_149) * w", "h_150 = np.sin(h_149,) * w", id="comma"),
        pytest.param("dh_150 = w * dh_151", "dh_150 = w * dh_151;", id="semicolon"),
        pytest.param("dh_150 = w * dh_151\n", "dh_150 = w * dh_151\n\n\n", id="blank-lines"),
        pytest.param(
            "    # backprop h = np.sin(h) * w\n    dh_150",
            "    #backprop\n    dh_150",
            id="comment",
        ),
        pytest.param("h_150 = np.sin(h_149) * w", "h_150 = np.sin(h_149) * 1E5", id="number"),
    ],
)
def test_check_finds_a_change_among_lines_of_one_form(old: str, new: str) -> None:
    assert REPEATED.count(old) == 1
    text = REPEATED.replace(old, new)
    # The line black's own run over the whole text shows first.
    formatted = black.format_str(text, mode=black.Mode())
    line = gradgen.format._first_difference(text, formatted)
    assert formatted != text
    with pytest.raises(
        GeneratedCodeError, match=rf"black would change the generated code, from line {line}$"
    ):
        check_module(text, "out.py")
