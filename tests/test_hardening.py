"""Hardening: no input, however odd, gets a traceback, a half-written file or a wrong one.

- a bug inside gradgen is one line on stderr, exit 123, nothing written, and the other files
  of the run go on;
- what is written has been compiled and checked unchanged by black first;
- odd files (encodings, line endings, binary data, links back to the input) are read or
  refused with a position;
- deep and long expressions are handled, or refused where they are too deep, at their line
  and column; a thousand functions are no problem;
- the output depends on nothing but the inputs (not their order on the command line, not
  the hash seed, not where gradgen runs).

Each test works in its own ``tmp_path`` holding a ``pyproject.toml`` (the project root) and
runs ``gradgen.cli.main`` as the command line does.
"""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import black
import pytest

import gradgen
import gradgen.api
import gradgen.cli
import gradgen.format
from cli_project import Run, snapshot, write
from gradgen.api import with_headroom
from gradgen.errors import GeneratedCodeError, GradgenError
from gradgen.format import check_module
from gradgen.parse import MAX_NESTING

GOOD = """\
import math


def f(x, y):
    a = x * y
    b = math.sin(a)
    return a + b
"""

GOOD_2 = """\
def g(x):
    return x * x * 3.0
"""

INTERNAL = re.compile(r"^(\S+): internal error: (.+); please report$")


def without_digests(text: str) -> str:
    """``text`` without the header's digest lines (a digest is of the source's own text)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("#   "))


# --- 1. a bug in gradgen is an internal error -------------------------------------------------


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
    monkeypatch.setattr(gradgen.api, "stage_function", _raise(ValueError("boom")))
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
    real = gradgen.api.stage_function

    def fails_on_g(function: object, *args: object, **kwargs: object) -> object:
        if getattr(function, "name", None) == "g":
            raise KeyError("g")
        return real(function, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gradgen.api, "stage_function", fails_on_g)
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


# --- 2. what is written is checked first ------------------------------------------------------


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


CHUNKED = (
    "import math\n\n\n"
    "def f(x):\n    return math.exp(x)\n\n\n"
    "def g(x):\n    return x * 2.0\n\n\n"
    "def h(x):\n    y = x\n    return y\n"
)


@pytest.fixture
def parallel_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every text a top-level function per worker process, as for a long output."""
    monkeypatch.setattr(gradgen.format, "PARALLEL_CHECK_LINES", 0)
    monkeypatch.setattr(gradgen.format.os, "cpu_count", lambda: 2)


@pytest.mark.usefixtures("parallel_check")
def test_parallel_check_accepts_what_black_leaves_alone() -> None:
    check_module(CHUNKED, "out.py")
    check_module(gradgen.generate(GOOD, "f.py"), "out.py")


@pytest.mark.parametrize(
    "text, line",
    [
        pytest.param(CHUNKED.replace("x * 2.0", "x*2.0"), 9, id="inside-a-function"),
        pytest.param(CHUNKED.replace("return y\n", "return  y\n"), 14, id="last-function"),
        pytest.param(CHUNKED.replace("\n\n\ndef g", "\n\n\n\ndef g"), 8, id="blank-lines"),
        pytest.param(CHUNKED.replace("import math", "import  math"), 1, id="imports"),
    ],
)
@pytest.mark.usefixtures("parallel_check")
def test_parallel_check_names_the_first_line_black_changes(text: str, line: int) -> None:
    with pytest.raises(GeneratedCodeError, match=rf"from line {line}$"):
        check_module(text, "out.py")


# --- 3. odd files -----------------------------------------------------------------------------
# Already in test_cli: UTF-8 with a byte-order mark, bytes that are not UTF-8, an empty file,
# a missing file, an empty folder, -o into a missing folder, a read-only folder, -o the
# input itself (also as ./sub/../f.py). In test_determinism: CRLF line endings.


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda t: t.replace("    ", "\t"), id="tabs"),
        pytest.param(lambda t: t.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda t: t.replace("\n", "\r"), id="old-mac-cr"),
        pytest.param(lambda t: "\ufeff" + t.replace("\n", "\r\n"), id="bom-and-crlf"),
        pytest.param(lambda t: t.replace("\n\n\n", "\n\x0c\n\n"), id="form-feed"),
    ],
)
def test_layout_of_the_input_does_not_change_the_output(
    project: Path, run: Run, transform: Callable[[str], str]
) -> None:
    write(project / "plain.py", GOOD)
    write(project / "odd.py", transform(GOOD).encode("utf-8"))
    assert run("plain.py", "-o", "out/plain.py")[0] == 0
    status, _, err = run("odd.py", "-o", "out/odd.py")
    assert status == 0, err
    plain = (project / "out/plain.py").read_bytes()
    odd = (project / "out/odd.py").read_bytes()
    assert b"\r" not in odd
    assert without_digests(odd.decode().replace("odd.py", "plain.py")) == without_digests(
        plain.decode()
    )


def test_inconsistent_tabs_are_refused_at_their_line(project: Path, run: Run) -> None:
    write(project / "f.py", "def f(x):\n    y = x * x\n\treturn y\n")
    status, _, err = run("f.py", "-o", "out.py")
    assert status == 123
    assert err.startswith("f.py:3:")
    assert "inconsistent use of tabs and spaces" in err
    assert not (project / "out.py").exists()


def test_nul_bytes_are_refused_at_their_position(project: Path, run: Run) -> None:
    write(project / "f.py", b"def f(x):\n    return x\x00 * 2\n")
    status, _, err = run("f.py", "-o", "out.py")
    assert status == 123
    assert err.startswith("f.py:2:13: error: NUL byte in the file")
    assert not (project / "out.py").exists()


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_refused(project: Path, run: Run, seed: int) -> None:
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(rng.choice([1, 10, 1000, 20_000])))
    write(project / "blob.py", data)
    status, out, err = run("blob.py", "-o", "out.py")
    assert (status, out) == (123, "")
    assert re.match(r"^blob\.py:\d+:\d+: error: ", err), err
    assert not (project / "out.py").exists()


@pytest.mark.parametrize("seed", range(8))
def test_random_text_is_refused(project: Path, run: Run, seed: int) -> None:
    # Valid UTF-8, so it gets as far as the parsers: punctuation, letters, line breaks,
    # control characters, characters outside the BMP.
    rng = random.Random(seed)
    alphabet = "()[]{}:=+-*/%@.,;'\"#\\ \t\n\r\x0b\x0c\x1b\x7f\u2028\u00e9\U0001f600abcdefxyz019_"
    text = "".join(rng.choice(alphabet) for _ in range(rng.choice([5, 100, 3000])))
    write(project / "noise.py", text.encode("utf-8", "surrogatepass"))
    status, out, err = run("noise.py", "-o", "out.py")
    assert (status, out) == (123, "")
    assert re.match(r"^noise\.py:\d+:\d+: error: ", err), err
    assert not (project / "out.py").exists()


def test_binary_file_with_an_image_header(project: Path, run: Run) -> None:
    write(project / "image.py", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    status, _, err = run("image.py")
    assert status == 123
    assert err.startswith("image.py:1:1: error: not valid UTF-8 (byte 0x89)")


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("# only\n# comments\n", id="comments"),
        pytest.param("#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n", id="shebang-coding"),
        pytest.param("\n\n   \n\t\n", id="whitespace"),
        pytest.param("\x0c\n", id="form-feed"),
    ],
)
def test_file_without_code(project: Path, run: Run, source: str) -> None:
    write(project / "f.py", source)
    status, _, err = run("f.py", "-o", "out.py")
    assert status == 123
    assert err.startswith("f.py:1:1: error: no function to differentiate")
    assert not (project / "out.py").exists()


def test_error_line_after_a_form_feed_or_line_separator_in_a_comment(
    project: Path, run: Run
) -> None:
    # Python (and libcst) do not break lines at a form feed or U+2028; str.splitlines does,
    # which once showed the wrong source line under the message.
    write(
        project / "f.py",
        "import math\n\x0c\n# a comment \u2028 with a line separator\n"
        "def f(x):\n    y = x // 2\n    return y\n",
    )
    status, _, err = run("f.py")
    assert status == 123
    assert err.splitlines() == [
        "f.py:5:11: error: the operator '//' is not supported",
        "        y = x // 2",
        "              ^",
    ]


def test_folder_without_python_files(project: Path, run: Run) -> None:
    write(project / "src/notes.txt", "def f(x):\n    return x\n")
    write(project / "src/data/table.json", "{}\n")
    write(project / "src/script.pyw", "def f(x):\n    return x\n")
    status, out, err = run("src", "-o", "out")
    assert (status, out) == (0, "")
    assert "nothing to do" in err
    assert not (project / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["f.py", "-o", "link.py"], id="output-is-a-link-to-the-input"),
        pytest.param(["link.py", "-o", "f.py"], id="input-is-a-link-to-the-output"),
        pytest.param(["f.py", "-o", "linked/f.py"], id="output-in-a-linked-folder"),
        pytest.param(["f.py", "-o", "."], id="output-folder-is-the-input-folder"),
        pytest.param(["f.py", "-o", "./"], id="output-folder-with-slash"),
        pytest.param(["ABSOLUTE", "-o", "f.py"], id="absolute-input"),
        pytest.param(["f.py", "-o", "ABSOLUTE"], id="absolute-output"),
    ],
)
def test_output_never_overwrites_the_input(project: Path, run: Run, argv: list[str]) -> None:
    write(project / "f.py", GOOD)
    try:
        (project / "link.py").symlink_to("f.py")
        (project / "linked").symlink_to(".", target_is_directory=True)
    except OSError:
        pytest.skip("no symbolic links here")
    argv = [str(project / "f.py") if a == "ABSOLUTE" else a for a in argv]
    before = snapshot(project)
    status, _, err = run(*argv)
    assert status == 2
    assert "would overwrite the input" in err
    assert (project / "f.py").read_text() == GOOD
    assert snapshot(project) == before


def test_input_that_cannot_be_read_fails_alone(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreadable file, as root sees none; or a file removed after the folder was listed.
    write(project / "src/a.py", GOOD)
    write(project / "src/b.py", GOOD_2)
    real = gradgen.cli.read_source

    def read(path: Path) -> str:
        if path.name == "a.py":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(gradgen.cli, "read_source", read)
    status, _, err = run("src", "-o", "gen")
    assert status == 123
    assert "src/a.py: error: cannot read: Permission denied" in err.splitlines()
    assert sorted(p.name for p in (project / "gen").iterdir()) == ["b.py"]


def test_symbolic_link_loops_fail_alone(project: Path, run: Run) -> None:
    write(project / "src/a.py", GOOD)
    try:
        (project / "src/loop.py").symlink_to("loop.py")
        (project / "out.py").symlink_to("out.py")
    except OSError:
        pytest.skip("no symbolic links here")
    status, _, err = run("src", "-o", "gen")
    assert status == 123
    assert "src/loop.py: error: cannot read: " in err
    assert sorted(p.name for p in (project / "gen").iterdir()) == ["a.py"]
    status, _, err = run("src/a.py", "-o", "out.py")
    assert status == 123
    assert err.startswith("out.py: error: cannot write: ")


def test_output_hard_linked_to_the_input_replaces_the_link_only(project: Path, run: Run) -> None:
    # A hard link is another name for the same file; the atomic write replaces the name,
    # so the forward keeps its text.
    write(project / "f.py", GOOD)
    try:
        os.link(project / "f.py", project / "hard.py")
    except OSError:
        pytest.skip("no hard links here")
    assert run("f.py", "-o", "hard.py")[0] == 0
    assert (project / "f.py").read_text() == GOOD
    assert "def f_backward" in (project / "hard.py").read_text()


LEAKY = '''\
"""Module docstring with code in it:

def leak_module_doc(x):
    return x  # LEAK 1
"""

import math

CODE = "def leak_string(x):\\n    return x  # LEAK 2"
TEMPLATE = """
def leak_template(y):
    return y  # LEAK 3
"""
RAW = r"return x  # LEAK 4 \\n"


# def leak_comment(x):
#     return x  # LEAK 5
def f(x, y):
    """Docstring with code:

    def leak_docstring():
        return 1  # LEAK 6
    """
    # return x  # LEAK 7
    a = x * y  # return a  # LEAK 8
    # a = 0.0  # LEAK 9
    b = math.sin(
        a  # ) + leak  # LEAK 10
    )
    return a + b  # LEAK 11
    # after the return  # LEAK 12
'''


def test_comments_and_strings_do_not_leak_into_the_output(project: Path, run: Run) -> None:
    write(project / "f.py", LEAKY)
    status, out, err = run("f.py")
    assert status == 0, err
    assert "LEAK" not in out
    assert "leak" not in out
    assert re.findall(r"^def (\w+)\(", out, re.MULTILINE) == ["f_backward", "f_value_and_grad"]
    assert without_digests(out) == without_digests(gradgen.generate(GOOD, "f.py"))
    check_module(out, "out.py")


@pytest.mark.skipif(sys.platform != "linux", reason="file names with any bytes: Linux")
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(b"two\nlines.py", id="newline"),
        pytest.param(b"caf\xe9.py", id="not-utf8"),
        pytest.param(b"tab\tand \x1b escape.py", id="control"),
    ],
)
def test_odd_file_names_stay_inside_the_header_comment(
    project: Path, run: Run, name: bytes
) -> None:
    source = project / os.fsdecode(name)
    write(source, GOOD)
    status, _, err = run(source.name, "-o", "out.py")
    assert status == 0, err
    text = (project / "out.py").read_text(encoding="utf-8")
    check_module(text, "out.py")
    header = text.split("\n\n")[0].splitlines()
    assert all(line.startswith("# ") for line in header)
    assert len(header) == 4  # generated-from, command, digests title, one digest


# --- 4. scale ---------------------------------------------------------------------------------

DEPTH = 500


def _nested(prefix: str, middle: str, suffix: str, depth: int) -> str:
    return prefix * depth + middle + suffix * depth


DEEP = [
    pytest.param(" + ".join(["x"] * DEPTH), "", id="sum-500-terms"),
    pytest.param(" - ".join(["x"] * DEPTH), "", id="difference-500-terms"),
    pytest.param(" * ".join(["x"] * DEPTH), "", id="product-500-terms"),
    pytest.param(" / ".join(["x"] * DEPTH), "", id="quotient-500-terms"),
    pytest.param(" ** ".join(["x"] * DEPTH), "", id="power-tower-500"),
    pytest.param("-" * DEPTH + "x", "", id="minus-500-deep"),
    pytest.param(
        " + ".join(f"math.tanh(x * {i}.0)" for i in range(DEPTH // 3)), "", id="sum-of-calls"
    ),
    pytest.param(_nested("(", "x", " + 1)", 199), "", id="parentheses-199-deep"),
    pytest.param(_nested("-(", "x", ")", 199), "", id="negation-199-deep"),
    pytest.param(_nested("math.tanh(", "x", ")", 199), "", id="calls-199-deep"),
    pytest.param(_nested("np.tanh(", "x", ")", 199), "numpy", id="numpy-calls-199-deep"),
    pytest.param("np.sum(x" + ".T" * DEPTH + ")", "numpy", id="attributes-500-deep"),
    pytest.param("x * (" + " + ".join(["1.0"] * DEPTH) + ")", "", id="constant-500-terms"),
    pytest.param("x * (" + " + ".join(["x"] * (DEPTH - 4)) + " > 0)", "numpy", id="mask-500-terms"),
]


@pytest.mark.parametrize("expression, library", DEEP)
def test_deep_and_long_expressions_are_handled(expression: str, library: str) -> None:
    imports = "import numpy as np\n" if library else "import math\n"
    source = f"{imports}\n\ndef f(x):\n    y = {expression}\n    return y\n"
    output = gradgen.generate(source, "deep.py")
    check_module(output, "deep_backward.py")  # compiles, and black leaves it as it is
    assert "def f_backward(x, " in output
    paired = gradgen.generate(source, "deep.py", pairs=True)
    compile(paired, "deep_backward.py", "exec")
    assert "def f_backward(dy, cache):" in paired


def test_deep_module_constant_and_default() -> None:
    source = (
        f"C = {' + '.join(['1.0'] * DEPTH)}\n\n\n"
        f"def f(x, a={'-' * DEPTH}1.0):\n    return x * C * a\n"
    )
    check_module(gradgen.generate(source, "deep.py"), "deep_backward.py")


def test_deep_expression_from_the_command_line(project: Path, run: Run) -> None:
    write(project / "deep.py", f"def f(x):\n    y = {' + '.join(['x'] * DEPTH)}\n    return y\n")
    status, _, err = run("deep.py", "-o", "out.py")
    assert status == 0, err
    assert "dx = " in (project / "out.py").read_text()


def test_deep_expression_with_a_refusal_inside_is_placed(project: Path, run: Run) -> None:
    terms = " + ".join(["x"] * (DEPTH - 1))
    write(project / "deep.py", f"def f(x):\n    y = {terms} + foo(x)\n    return y\n")
    status, _, err = run("deep.py")
    assert status == 123
    assert err.startswith(f"deep.py:2:{9 + len(terms) + 3}: error: undefined name 'foo'")


def test_more_than_200_nested_parentheses_are_refused_as_python_does(
    project: Path, run: Run
) -> None:
    # CPython cannot read this file (so it could never run it); libcst can, slowly.
    write(
        project / "deep.py",
        f"import numpy as np\n\n\ndef f(x):\n    y = {_nested('np.tanh(', 'x', ')', DEPTH)}\n"
        "    return y\n",
    )
    status, _, err = run("deep.py", "-o", "out.py")
    assert status == 123
    column = len("    y = ") + 201 * len("np.tanh(")  # the 201st opening parenthesis
    assert err.startswith(f"deep.py:5:{column}: error: invalid syntax: too many nested parentheses")
    assert not (project / "out.py").exists()


def test_too_deep_is_refused_at_the_outermost_expression(project: Path, run: Run) -> None:
    too_deep = " + ".join(["x"] * (MAX_NESTING + 1))
    just_right = " + ".join(["x"] * MAX_NESTING)
    write(
        project / "deep.py",
        "def f(xé):\n"
        "    x = xé\n"
        f"    é = {just_right}\n"
        f"    é2 = x * ({too_deep})\n"
        f"    return {'-' * (MAX_NESTING + 5)}é2\n",
    )
    status, _, err = run("deep.py", "-o", "out.py")
    assert status == 123
    message = (
        f"error: expression nested too deeply (more than {MAX_NESTING} levels): split it "
        "into several lines"
    )
    heads = [line for line in err.splitlines() if line.startswith("deep.py:")]
    assert heads == [f"deep.py:4:10: {message}", f"deep.py:5:12: {message}"]
    assert not (project / "out.py").exists()


def test_too_deep_for_python_s_own_parser_is_refused_at_its_line() -> None:
    # Ten thousand unary minus signs overflow CPython's parser stack before gradgen counts.
    source = f"def f(x):\n    y = x\n    z = {'-' * 10_000}x\n    return z\n"
    with pytest.raises(GradgenError) as caught:
        gradgen.generate(source, "deep.py")
    diagnostic = caught.value.diagnostics[0]
    assert (diagnostic.line, diagnostic.column) == (3, 5)
    assert "nested too deeply" in diagnostic.message


def test_a_thousand_functions() -> None:
    functions = [
        f"def f{i}(x, w):\n    h = math.tanh(x * w + {i}.0)\n    return h * h\n"
        for i in range(1000)
    ]
    source = "import math\n\n\n" + "\n\n".join(functions)
    output = gradgen.generate(source, "many.py")
    # Not check_module: black on all 29,000 lines takes twice as long as generating them.
    assert len(re.findall(r"^def f\d+_backward\(x, w, dout=1\.0\):$", output, re.MULTILINE)) == 1000
    namespace: dict[str, object] = {}
    exec(compile(output, "many_backward.py", "exec"), namespace)
    dx, dw = namespace["f0_backward"](0.5, 0.25)  # type: ignore[operator]
    h = math.tanh(0.5 * 0.25)
    assert dx == pytest.approx(2 * h * (1 - h * h) * 0.25)
    assert dw == pytest.approx(2 * h * (1 - h * h) * 0.5)


def test_headroom_restores_the_recursion_limit_and_passes_results_and_errors() -> None:
    limit = sys.getrecursionlimit()
    assert with_headroom(lambda: sys.getrecursionlimit()) > limit
    assert sys.getrecursionlimit() == limit

    def fail() -> None:
        raise LookupError("inside")

    with pytest.raises(LookupError, match="inside"):
        with_headroom(fail)
    assert sys.getrecursionlimit() == limit


# --- 5. determinism ---------------------------------------------------------------------------


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.py"))}


def test_input_order_does_not_change_the_output(project: Path, run: Run) -> None:
    write(project / "a.py", GOOD)
    write(project / "b.py", GOOD_2)
    assert run("b.py", "a.py", "-o", "out")[0] == 0
    first = _outputs(project / "out")
    for file in (project / "out").iterdir():
        file.unlink()
    assert run("a.py", "b.py", "-o", "out")[0] == 0
    assert _outputs(project / "out") == first
    assert sorted(first) == ["a.py", "b.py"]


def test_output_names_no_absolute_path_nor_date(project: Path, run: Run) -> None:
    write(project / "models/net.py", GOOD)
    source, target = project / "models/net.py", project / "gen/net.py"
    assert run(source, "-o", target, "--wrt", "x")[0] == 0
    text = target.read_text()
    assert str(project) not in text
    assert os.sep + "tmp" not in text
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d:\d\d:\d\d\b", text)
    assert text.splitlines()[:2] == [
        "# Generated by gradgen from models/net.py. Do not edit: regenerate.",
        "# Command: gradgen models/net.py -o gen/net.py --wrt x",
    ]


def test_command_line_output_is_the_same_in_every_process(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "")
    write(tmp_path / "src/a.py", GOOD)
    write(tmp_path / "src/b.py", GOOD_2)
    write(
        tmp_path / "src/c.py",
        "import numpy as np\n\nEPS = 1e-5\n\n\n"
        "def norm(x, g, b):\n"
        "    mu = np.mean(x, axis=0)\n"
        "    xc = x - mu\n"
        "    var = np.mean(xc * xc, axis=0)\n"
        "    return g * xc / np.sqrt(var + EPS) + b\n",
    )
    results = []
    for seed in ("0", "1", "4242"):
        out = tmp_path / f"out_{seed}"
        completed = subprocess.run(
            [sys.executable, "-m", "gradgen", "src", "-o", "out", "--pairs"],
            cwd=tmp_path,
            env=dict(os.environ, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        (tmp_path / "out").rename(out)
        results.append(_outputs(out))
    assert results[0] == results[1] == results[2]
    assert sorted(results[0]) == ["a.py", "b.py", "c.py"]
    for text in results[0].values():
        assert black.format_str(text.decode(), mode=black.Mode()) == text.decode()
