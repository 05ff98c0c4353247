"""Odd input files: encodings, line endings, binary data, odd names, links back to the
input. Each is read or refused with a position; none gets a traceback, a half-written file
or a wrong one, and the output never overwrites the input.

Run the command line as users do: each test works in its own ``tmp_path`` holding a
``pyproject.toml`` (the project root) and runs ``gradgen.cli.main``.
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import gradgen
import gradgen.api
import gradgen.cli
import gradgen.format
from cli_project import GOOD, GOOD_2, Run, snapshot, write
from gradgen.format import check_module


def without_digests(text: str) -> str:
    """``text`` without the header's digest lines (a digest is of the source's own text)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("#   "))


# --- odd files -----------------------------------------------------------------------------
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
        "def f(x):\n    y = x << 2\n    return y\n",
    )
    status, _, err = run("f.py")
    assert status == 123
    assert err.splitlines() == [
        "f.py:5:11: error: the operator '<<' is not supported",
        "        y = x << 2",
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
    assert re.findall(r"^def (\w+)\(", out, re.MULTILINE) == ["f_backward"]
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
