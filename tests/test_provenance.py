"""Provenance: each generated file names its source and command (relative, nothing
variable) and records a digest of every forward function it came from; a one-line edit of
the forward gives a small diff of the generated file.

Every test builds its own project in ``tmp_path``; gradgen's per-process caches of configs,
committed modules and warned files are replaced by empty ones for each test.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

import gradgen
import gradgen.cli
from gradgen import provenance
from review_project import (
    EDIT_G,
    NET,
    changed_lines,
    functions,
    header,
    import_recording_warnings,
    make_project,
    write,
)

pytestmark = pytest.mark.usefixtures("fresh_gradgen_state")


# --- stable, minimal diffs -----------------------------------------------------------------

LONG = """\
import math


def f(x, y):
    v1 = x * y
    v2 = v1 + x
    v3 = math.exp(v2 / 10.0)
    v4 = v3 * y
    v5 = math.tanh(v4)
    v6 = v5 + v1
    v7 = v6 * v6
    v8 = v7 / (1.0 + v3)
    v9 = v8 + x
    v10 = math.exp(-v9)
    v11 = v10 * v2
    v12 = v11 + v5
    v13 = math.tanh(v12)
    v14 = v13 * 2.0
    v15 = v14 * x
    v16 = v15 + v6
    v16 = v16 * v4
    v17 = math.tanh(v16 / 3.0)
    v18 = v17 + v13
    v19 = v18 * y
    v20 = v19 / (2.0 + v10)
    v21 = math.exp(v20 / 5.0)
    v22 = v21 + v18
    v23 = v22 * v1
    v24 = math.tanh(v23)
    v25 = v24 + v20
    v26 = v25 * 0.5
    v27 = v26 + v22
    return v27 * v19
"""


def generate_long(source: str) -> str:
    return gradgen.generate(source, "long.py", command="gradgen long.py -o long_backward.py")


def digest_line_changes(old: str, new: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(header(old), header(new), strict=True) if a != b]


@pytest.mark.parametrize(
    "old, new, at_most",
    [
        # digest (2), then in f_backward and again in f_value_and_grad: recomputed line
        # (2) + backprop comment (2) + adjoint (2)
        pytest.param("v14 = v13 * 2.0", "v14 = v13 * 3.0", 2 + 2 * 6, id="constant"),
        # as above, plus the adjoint now adds to dy, and dx's first write moves from that
        # line to a later one (`dx += dv9` becomes `dx = dv9`): 2 more each, twice.
        pytest.param("v15 = v14 * x", "v15 = v14 * y", 2 + 2 * 10, id="variable"),
    ],
)
def test_one_line_edit_gives_a_small_diff(old: str, new: str, at_most: int) -> None:
    edited = LONG.replace(old, new)
    assert edited != LONG
    before, after = generate_long(LONG), generate_long(edited)

    changed = changed_lines(before, after)

    assert 0 < len(changed) <= at_most, "\n".join(changed)
    (digest_change,) = digest_line_changes(before, after)
    assert digest_change[0].startswith("#   f: ")
    assert digest_change[1].startswith("#   f: ")
    # The statement itself is quoted, and changed, in the recomputation and its comment.
    assert f"+    {new}" in changed
    assert f"+    # backprop {new}" in changed


def _recomputes_comment(text: str) -> set[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# Recomputes"))
    block = itertools.takewhile(lambda line: line.strip().startswith("#"), lines[start:])
    return set(block)


def _assigned(text: str) -> set[str]:
    return set(re.findall(r"^\s+(\w+) \+?= ", text, flags=re.MULTILINE))


def test_inserting_a_line_renames_nothing_else() -> None:
    # One new line in the middle, rebinding v14 (so v14's later uses read the new value).
    edited = LONG.replace("    v15 = v14 * x\n", "    v14 = v14 + y\n    v15 = v14 * x\n")
    before, after = generate_long(LONG), generate_long(edited)
    related = re.compile(r"\bd?v1[45](_\d+)?\b")  # the new line and the one reading it

    def unrelated(text: str) -> list[str]:
        skip = _recomputes_comment(text)  # lists (and counts) every recomputed value
        return [
            line
            for line in text.splitlines()
            if line not in skip and not line.startswith("#   f: ") and not related.search(line)
        ]

    # Every other line is unchanged and in the same place relative to the others: no
    # temporary, helper or gradient elsewhere is renamed, reordered or re-accumulated.
    assert unrelated(before) == unrelated(after)
    # (v14's gradient may now be its rebinding's, dv14_2: ``v14 = v14 + y`` hands it on)
    assert {n for n in _assigned(before) if not related.search(n)} <= _assigned(after)
    for name in ("v8_add", "v16_2", "v20_add", "dv10_neg", "dv17_div", "dv21_div", "dv3_div"):
        assert name in _assigned(after)
    removed = set(before.splitlines()) - set(after.splitlines())
    added = set(after.splitlines()) - set(before.splitlines())
    comments = _recomputes_comment(before) | _recomputes_comment(after)
    for line in removed | added:
        assert line.startswith("#   f: ") or line in comments or related.search(line), line


TWO_FUNCTIONS = """\
import math


def f(x, y):
    a = x * y
    b = math.exp(a)
    return b / (1.0 + y)


def g(x):
    c = math.tanh(x)
    return c * x * 2.0
"""


def test_editing_one_function_changes_only_its_digest_and_body() -> None:
    before = gradgen.generate(TWO_FUNCTIONS, "two.py", value_and_grad=True)
    changed = TWO_FUNCTIONS.replace("c * x * 2.0", "c * x * 4.0")
    after = gradgen.generate(changed, "two.py", value_and_grad=True)

    (digest_change,) = digest_line_changes(before, after)
    assert digest_change[0].startswith("#   g: ")
    for name in ("f_backward", "f_value_and_grad"):
        assert functions(before)[name] == functions(after)[name]
    for name in ("g_backward", "g_value_and_grad"):
        assert functions(before)[name] != functions(after)[name]
    g_lines = {
        line
        for text in (before, after)
        for name in ("g_backward", "g_value_and_grad")
        for line in functions(text)[name].splitlines()
    }
    for line in changed_lines(before, after):
        assert line[1:].startswith("#   g: ") or line[1:] in g_lines, line

    changed = TWO_FUNCTIONS.replace("(1.0 + y)", "(3.0 + y)")
    after_f = gradgen.generate(changed, "two.py", value_and_grad=True)
    (digest_change,) = digest_line_changes(before, after_f)
    assert digest_change[0].startswith("#   f: ")
    assert functions(before)["g_backward"] == functions(after_f)["g_backward"]


# --- provenance ----------------------------------------------------------------------------


def test_header_names_source_and_command_relatively_and_nothing_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path / "models" / "sub")
    assert run()[0] == 0
    text = (tmp_path / "generated" / "net.py").read_text()

    digest_line = re.compile(r"^#   (f|g): [0-9a-f]{16}$")
    lines = header(text)
    assert lines[0] == "# Generated by gradgen from models/net.py. Do not edit: regenerate."
    assert lines[1] == "# Command: gradgen models/net.py -o generated/net.py"
    assert lines[2] == provenance.DIGESTS_TITLE
    assert [line for line in lines if digest_line.match(line)] == lines[3:]
    assert [line[4] for line in lines[3:]] == ["f", "g"]
    assert provenance.read_header_command(tmp_path / "generated" / "net.py") == (
        "gradgen models/net.py -o generated/net.py"
    )
    layer = (tmp_path / "generated" / "sub" / "layer.py").read_text()
    assert "# Command: gradgen models/sub/layer.py -o generated/sub/layer.py" in layer

    for output in (text, layer):
        assert str(tmp_path) not in output
        assert str(tmp_path.resolve()) not in output
        assert "\\" not in "\n".join(header(output))
        assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}", output)  # no date or time
        assert str(Path.home()) not in output


DIGEST_CASES = [
    pytest.param(NET, id="decorated"),
    pytest.param(TWO_FUNCTIONS, id="plain"),
    pytest.param(
        TWO_FUNCTIONS.replace(
            "def g(x):", "@gradgen.differentiable(\n    strict=False,\n)\ndef g(x):"
        ).replace("import math\n", "import math\n\nimport gradgen\n"),
        id="decorator-over-several-lines",
    ),
    pytest.param(
        TWO_FUNCTIONS.replace("return b / (1.0 + y)\n", "return b / (1.0 + y)\n    # done\n"),
        id="trailing-comment",
    ),
    pytest.param(TWO_FUNCTIONS.replace("\n", "\r\n"), id="crlf"),
    # A form feed (a page break, as in some of the standard library) is whitespace to
    # Python and ends no line for inspect, so the lines of the functions below it are the same.
    pytest.param(TWO_FUNCTIONS.replace("\n\n\ndef g", "\n\n\x0c\ndef g"), id="form-feed"),
    pytest.param(
        TWO_FUNCTIONS.replace("import math\n", "import math\n\n# see \u2028 below\n"),
        id="line-separator-in-comment",
    ),
]


@pytest.mark.parametrize("source", DIGEST_CASES)
def test_recorded_digest_is_the_digest_of_the_imported_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run, source: str
) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "demo"\n')
    (tmp_path / "fwd.py").write_bytes(source.encode("utf-8"))
    monkeypatch.chdir(tmp_path)
    assert run("fwd.py", "-o", "bwd.py")[0] == 0

    recorded = provenance.read_header_digests(tmp_path / "bwd.py")
    module, _ = import_recording_warnings(tmp_path / "fwd.py")

    assert set(recorded) == {"f", "g"}
    for name, value in recorded.items():
        assert value == provenance.object_digest(getattr(module, name)), name


def test_digest_follows_the_text_of_each_function_only() -> None:
    base = provenance.function_digests(NET)
    commented = provenance.function_digests(NET.replace("# squash", "# squash to (-1, 1)"))
    other_edited = provenance.function_digests(NET.replace(*EDIT_G))

    assert set(base) == {"f", "g"}
    assert commented["f"] != base["f"]  # the text changed, so the digest does
    assert commented["g"] == base["g"]
    assert other_edited["f"] == base["f"]
    assert other_edited["g"] != base["g"]

    # In a generated file, a comment edit changes that function's digest line and nothing else.
    before = gradgen.generate(NET, "net.py")
    after = gradgen.generate(NET.replace("# squash", "# squash to (-1, 1)"), "net.py")
    assert changed_lines(before, after) == [f"-#   f: {base['f']}", f"+#   f: {commented['f']}"]
