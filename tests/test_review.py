"""Generated code as a reviewed artifact: ``[tool.gradgen]``, provenance, committed backwards.

A project maps forward files to committed backward files in ``pyproject.toml``. A bare
``gradgen`` regenerates every mapping, ``gradgen --check`` verifies them (also as pre-commit
hooks), each generated file records a digest of every forward function it came from, and
``@gradgen.differentiable`` runs the committed (reviewed) backward when its digest matches,
warning and generating in memory when it does not.

Every test builds its own project in ``tmp_path``; gradgen's per-process caches of configs,
committed modules and warned files are replaced by empty ones for each test.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import inspect
import itertools
import math
import os
import re
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import gradgen
import gradgen.cli
from gradgen import decorator, provenance
from gradgen.cli import main
from gradgen.config import find_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent

PYPROJECT = """\
[project]
name = "demo"

[[tool.gradgen.files]]
forward = "models"
backward = "generated"
"""

NET = """\
import math

import gradgen


@gradgen.differentiable
def f(x, y):
    a = x * y
    b = math.tanh(a)  # squash
    return a + b * x


@gradgen.differentiable
def g(x):
    return math.exp(x) * x * 2.0
"""

# Edits that change what f and g compute (so a stale backward gives wrong gradients).
EDIT_F = ("return a + b * x\n", "return a + b * x * 3.0\n")
EDIT_G = ("* x * 2.0\n", "* x * 5.0\n")

LAYER = """\
def h(x):
    return x * x * 3.0
"""

OTHER = """\
def k(x, y):
    return x * y + y
"""


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_gradgen_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Empty decorator caches, no GRADGEN_STRICT, no .pyc files that could go stale."""
    monkeypatch.setattr(decorator, "_CONFIGS", {})
    monkeypatch.setattr(decorator, "_COMMITTED", {})
    monkeypatch.setattr(decorator, "_WARNED", set())
    monkeypatch.delenv(decorator.STRICT_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("_gradgen_reviewed_", "gradgen_review_")):
            del sys.modules[name]


_counter = itertools.count()


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as a module under a name no other import uses."""
    name = f"gradgen_review_{next(_counter)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_recording_warnings(path: Path) -> tuple[ModuleType, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = import_file(path)
    return module, list(caught)


def stale_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, gradgen.StaleBackwardWarning)]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run(*argv) -> (status, stdout, stderr)``; no run may print a traceback."""

    def run_(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return status, out, err

    return run_


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, (old, text)
    path.write_text(text.replace(old, new), encoding="utf-8")
    # A later mtime, so nothing keyed on (size, mtime) can mistake the new text for the old.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def make_project(root: Path) -> Path:
    """``models/net.py`` and ``models/sub/layer.py`` mapped to ``generated/``."""
    write(root / "pyproject.toml", PYPROJECT)
    write(root / "models" / "net.py", NET)
    write(root / "models" / "sub" / "layer.py", LAYER)
    return root


def expected_output(root: Path, forward: str, backward: str) -> str:
    text = (root / forward).read_text(encoding="utf-8")
    return gradgen.generate(text, forward, command=f"gradgen {forward} -o {backward}")


def central_differences(
    f: Callable[..., float], args: tuple[float, ...], h: float = 1e-6
) -> tuple[float, ...]:
    grads = []
    for i in range(len(args)):
        up, down = list(args), list(args)
        up[i] += h
        down[i] -= h
        grads.append((f(*up) - f(*down)) / (2 * h))
    return tuple(grads)


def assert_gradients(f: Callable[..., float], args: tuple[float, ...]) -> None:
    expected = central_differences(f, args)
    actual = f.backward(*args)  # type: ignore[attr-defined]
    if len(args) == 1:
        actual = (actual,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-8), (actual, expected)


def changed_lines(old: str, new: str) -> list[str]:
    """The ``-`` and ``+`` lines of a unified diff of ``old`` and ``new`` (headers excluded)."""
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    return [
        line for line in diff if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]


def header(text: str) -> list[str]:
    """The comment block a generated file starts with."""
    return list(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines()))


def functions(text: str) -> dict[str, str]:
    """Each top-level ``def`` of generated ``text`` with its body, by name."""
    blocks: dict[str, str] = {}
    for chunk in re.split(r"^(?=def )", text, flags=re.MULTILINE)[1:]:
        name = re.match(r"def (\w+)", chunk)
        assert name is not None
        blocks[name.group(1)] = chunk.rstrip()
    return blocks


# --- 1. configuration discovery ---------------------------------------------------------------


def test_bare_gradgen_from_a_subfolder_regenerates_every_mapped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path / "models" / "sub")

    status, out, err = run()

    assert status == 0, err
    assert out == ""
    files = snapshot(tmp_path)
    assert sorted(files) == [
        "generated/net.py",
        "generated/sub/layer.py",
        "models/net.py",
        "models/sub/layer.py",
        "pyproject.toml",
    ]
    # Paths in the output are relative to pyproject.toml, not to the current folder.
    assert files["generated/net.py"].decode() == expected_output(
        tmp_path, "models/net.py", "generated/net.py"
    )
    assert files["generated/sub/layer.py"].decode() == expected_output(
        tmp_path, "models/sub/layer.py", "generated/sub/layer.py"
    )


def test_check_from_a_subfolder_passes_then_fails_with_a_diff_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path / "models" / "sub")
    assert run()[0] == 0

    assert run("--check") == (0, "", "")

    edit(tmp_path / "models" / "net.py", *EDIT_F)
    before = snapshot(tmp_path)
    status, out, err = run("--check")

    assert status == 1
    assert "--- generated/net.py (current)" in out
    assert "+++ generated/net.py (gradgen)" in out
    assert re.search(r"^-#   f: [0-9a-f]{16}$", out, re.MULTILINE)
    assert re.search(r"^\+#   f: [0-9a-f]{16}$", out, re.MULTILINE)
    assert "layer.py" not in out  # the current file is not reported
    assert "generated/net.py" in err
    assert snapshot(tmp_path) == before


def test_file_to_file_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[[tool.gradgen.files]]\nforward = "a.py"\nbackward = "gen/a_backward.py"\n',
    )
    write(tmp_path / "a.py", OTHER)
    write(tmp_path / "docs" / "README.txt", "not a project folder\n")
    monkeypatch.chdir(tmp_path / "docs")

    assert run()[0] == 0

    target = tmp_path / "gen" / "a_backward.py"
    assert target.read_text() == expected_output(tmp_path, "a.py", "gen/a_backward.py")
    assert sorted(snapshot(tmp_path)) == [
        "a.py",
        "docs/README.txt",
        "gen/a_backward.py",
        "pyproject.toml",
    ]
    assert run("--check") == (0, "", "")
    edit(tmp_path / "a.py", "x * y + y", "x * y + x")
    status, out, _ = run("--check")
    assert status == 1
    assert "--- gen/a_backward.py (current)" in out


def test_every_entry_of_the_config_is_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    with (tmp_path / "pyproject.toml").open("a") as config:
        config.write('\n[[tool.gradgen.files]]\nforward = "other.py"\nbackward = "other_bw.py"\n')
    write(tmp_path / "other.py", OTHER)
    monkeypatch.chdir(tmp_path)

    assert run()[0] == 0

    assert (tmp_path / "generated" / "net.py").is_file()
    assert (tmp_path / "generated" / "sub" / "layer.py").is_file()
    assert (tmp_path / "other_bw.py").read_text() == expected_output(
        tmp_path, "other.py", "other_bw.py"
    )


# --- 2. the command line overrides the config -------------------------------------------------


def test_sources_on_the_command_line_override_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    write(tmp_path / "other.py", OTHER)
    monkeypatch.chdir(tmp_path)

    status, _, err = run("other.py", "-o", "x.py")

    assert status == 0, err
    assert not (tmp_path / "generated").exists()
    assert sorted(snapshot(tmp_path)) == [
        "models/net.py",
        "models/sub/layer.py",
        "other.py",
        "pyproject.toml",
        "x.py",
    ]
    assert (tmp_path / "x.py").read_text() == expected_output(tmp_path, "other.py", "x.py")
    # --check with SRC checks only that output, not the configured (missing) ones.
    assert run("--check", "other.py", "-o", "x.py") == (0, "", "")


# --- 3. usage errors --------------------------------------------------------------------------


def test_no_config_and_no_sources_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "demo"\n')
    write(tmp_path / "a.py", OTHER)
    monkeypatch.chdir(tmp_path)
    assert find_config(tmp_path) is None

    status, out, err = run()

    assert status == 2
    assert out == ""
    assert "[tool.gradgen]" in err
    assert sorted(snapshot(tmp_path)) == ["a.py", "pyproject.toml"]
    assert run("--check")[0] == 2


def test_output_without_sources_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)

    status, _, err = run("-o", "out")

    assert status == 2
    assert "-o" in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "generated").exists()


@pytest.mark.parametrize(
    "config, named",
    [
        pytest.param(
            '[tool.gradgen]\nbogus = 1\n\n[[tool.gradgen.files]]\nforward = "models"\n'
            'backward = "generated"\n',
            "bogus",
            id="unknown-key",
        ),
        pytest.param(
            '[[tool.gradgen.files]]\nforward = "models"\nbackward = "generated"\nbackwards = "x"\n',
            "backwards",
            id="unknown-entry-key",
        ),
        pytest.param(
            '[[tool.gradgen.files]]\nforward = "modles"\nbackward = "generated"\n',
            "modles",
            id="missing-forward",
        ),
        pytest.param('[[tool.gradgen.files]]\nforward = "models"\n', "backward", id="no-backward"),
    ],
)
def test_bad_config_is_a_usage_error_naming_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run, config: str, named: str
) -> None:
    make_project(tmp_path)
    write(tmp_path / "pyproject.toml", config)
    monkeypatch.chdir(tmp_path / "models")

    for argv in ([], ["--check"]):
        status, out, err = run(*argv)
        assert status == 2
        assert out == ""
        assert "pyproject.toml" in err
        assert named in err
    assert not (tmp_path / "generated").exists()


# --- 4. the pre-commit hooks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hooks() -> dict[str, dict]:
    from pre_commit.clientlib import load_manifest  # validates against pre-commit's schema

    return {hook["id"]: hook for hook in load_manifest(str(REPO / ".pre-commit-hooks.yaml"))}


def test_hook_manifest(hooks: dict[str, dict]) -> None:
    assert set(hooks) == {"gradgen", "gradgen-check"}
    for hook in hooks.values():
        assert hook["pass_filenames"] is False
        assert hook["language"] == "python"
        assert shlex.split(hook["entry"])[0] == "gradgen"
    assert shlex.split(hooks["gradgen"]["entry"]) + hooks["gradgen"]["args"] == ["gradgen"]
    check = shlex.split(hooks["gradgen-check"]["entry"]) + hooks["gradgen-check"]["args"]
    assert check == ["gradgen", "--check"]


def test_hook_entry_is_the_console_script() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["gradgen"] == "gradgen.cli:main_entry"
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="gradgen")
    assert script.load() is gradgen.cli.main_entry


def test_console_entry_exits_with_the_status_of_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gradgen", "--check"])
    with pytest.raises(SystemExit) as exit_:
        gradgen.cli.main_entry()
    assert exit_.value.code == 1
    monkeypatch.setattr(sys, "argv", ["gradgen"])
    with pytest.raises(SystemExit) as exit_:
        gradgen.cli.main_entry()
    assert exit_.value.code == 0
    capsys.readouterr()


def test_hooks_regenerate_and_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run, hooks: dict[str, dict]
) -> None:
    def run_hook(hook_id: str) -> int:
        hook = hooks[hook_id]
        argv = shlex.split(hook["entry"]) + hook["args"]
        assert argv[0] == "gradgen"
        return run(*argv[1:])[0]

    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)

    assert run_hook("gradgen-check") == 1  # nothing generated yet
    assert not (tmp_path / "generated").exists()
    assert run_hook("gradgen") == 0
    assert run_hook("gradgen-check") == 0

    edit(tmp_path / "models" / "net.py", *EDIT_G)
    assert run_hook("gradgen-check") == 1
    assert run_hook("gradgen") == 0
    assert (tmp_path / "generated" / "net.py").read_text() == expected_output(
        tmp_path, "models/net.py", "generated/net.py"
    )
    assert run_hook("gradgen-check") == 0


# --- 5. stable, minimal diffs -----------------------------------------------------------------

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
    assert _assigned(before) <= _assigned(after)
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
    before = gradgen.generate(TWO_FUNCTIONS, "two.py")
    after = gradgen.generate(TWO_FUNCTIONS.replace("c * x * 2.0", "c * x * 4.0"), "two.py")

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

    after_f = gradgen.generate(TWO_FUNCTIONS.replace("(1.0 + y)", "(3.0 + y)"), "two.py")
    (digest_change,) = digest_line_changes(before, after_f)
    assert digest_change[0].startswith("#   f: ")
    assert functions(before)["g_backward"] == functions(after_f)["g_backward"]


# --- 6. provenance ----------------------------------------------------------------------------


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


# --- 7. the decorator runs the reviewed file --------------------------------------------------


def plant_marker(backward_file: Path) -> None:
    """Make the committed f_backward distinguishable without touching the header."""
    text = backward_file.read_text()
    head = header(text)
    assert text.count("    return dx, dy\n") == 1
    backward_file.write_text(text.replace("    return dx, dy\n", "    return dx + 1000.0, dy\n"))
    assert header(backward_file.read_text()) == head


def assert_runs_committed_code(f: Callable[..., float], backward_file: Path) -> None:
    dx, dy = f.backward(0.3, -0.7)  # type: ignore[attr-defined]
    ex, ey = central_differences(f, (0.3, -0.7))
    assert math.isclose(dx, ex + 1000.0, rel_tol=1e-9)
    assert math.isclose(dy, ey, rel_tol=1e-6)
    source = inspect.getsource(f.backward)  # type: ignore[attr-defined]
    assert source.startswith("def f_backward(x, y, dout=1.0):")
    assert "return dx + 1000.0, dy" in source
    assert f.backward_source.startswith(source)  # type: ignore[attr-defined]
    source_file = inspect.getsourcefile(f.backward)  # type: ignore[attr-defined]
    assert source_file is not None
    assert Path(source_file).resolve() == backward_file.resolve()


def test_decorator_runs_the_committed_backward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    committed = tmp_path / "generated" / "net.py"
    plant_marker(committed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # found from the function's file, not the current folder

    module, caught = import_recording_warnings(tmp_path / "models" / "net.py")

    assert stale_warnings(caught) == []
    assert_runs_committed_code(module.f, committed)
    assert module.g.backward_source.startswith(inspect.getsource(module.g.backward))
    assert_gradients(module.g, (0.4,))
    a = 0.3 * -0.7
    assert module.f(0.3, -0.7) == pytest.approx(a + math.tanh(a) * 0.3)  # forward untouched


def test_generated_argument_names_the_committed_file_without_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "demo"\n')
    forward = write(
        tmp_path / "pkg" / "net.py",
        NET.replace(
            "@gradgen.differentiable\ndef f",
            '@gradgen.differentiable(generated="../reviewed/net_backward.py")\ndef f',
        ),
    )
    monkeypatch.chdir(tmp_path)
    assert run("pkg/net.py", "-o", "reviewed/net_backward.py")[0] == 0
    committed = tmp_path / "reviewed" / "net_backward.py"
    plant_marker(committed)
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # generated= is relative to the forward file, not to here

    module, caught = import_recording_warnings(forward)

    assert stale_warnings(caught) == []
    assert_runs_committed_code(module.f, committed)
    # g has no generated= and there is no config: generated in memory, silently.
    assert "1000" not in module.g.backward_source
    assert_gradients(module.g, (0.4,))


# --- 8. stale committed files -----------------------------------------------------------------


def generated_and_edited_project(root: Path, run, net: str = NET) -> Path:
    """A configured project whose committed backward is then made stale for f and g."""
    make_project(root)
    forward = write(root / "models" / "net.py", net)
    assert run()[0] == 0  # the caller has changed into root
    plant_marker(root / "generated" / "net.py")
    edit(forward, *EDIT_F)
    edit(forward, *EDIT_G)
    return forward


def test_stale_file_warns_once_and_generates_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(tmp_path, run)
    monkeypatch.chdir(tmp_path / "models")

    module, caught = import_recording_warnings(forward)

    (message,) = stale_warnings(caught)  # one warning for the file, though f and g are stale
    assert "generated/net.py" in message
    assert "gradgen models/net.py -o generated/net.py" in message
    assert "1000" not in module.f.backward_source
    assert_gradients(module.f, (0.3, -0.7))  # the edited f, not the committed backward
    assert_gradients(module.g, (0.4,))
    assert module.f.backward.__code__.co_filename.startswith("<gradgen")


def test_each_stale_file_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    make_project(tmp_path)
    second = write(tmp_path / "models" / "net2.py", NET)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    edit(tmp_path / "models" / "net.py", *EDIT_F)
    edit(second, *EDIT_F)

    _, caught = import_recording_warnings(tmp_path / "models" / "net.py")
    _, caught_2 = import_recording_warnings(second)
    _, caught_again = import_recording_warnings(tmp_path / "models" / "net.py")

    assert len(stale_warnings(caught)) == 1
    (message,) = stale_warnings(caught_2)
    assert "gradgen models/net2.py -o generated/net2.py" in message
    assert stale_warnings(caught_again) == []  # once per file per process


@pytest.mark.parametrize("form", ["@gradgen.differentiable", "@gradgen.differentiable()"])
def test_stale_warning_points_at_the_forward_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run, form: str
) -> None:
    # Python shows a warning once per (file, line) it is attributed to: attributed to a line
    # of gradgen, the first stale file's warning would hide every later one, and users could
    # not filter the warnings of their own modules.
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(
        tmp_path, run, NET.replace("@gradgen.differentiable\ndef f", f"{form}\ndef f")
    )

    _, caught = import_recording_warnings(forward)

    (warning,) = [w for w in caught if issubclass(w.category, gradgen.StaleBackwardWarning)]
    assert Path(warning.filename).resolve() == forward.resolve()


def test_strict_argument_makes_stale_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(
        tmp_path,
        run,
        NET.replace(
            "@gradgen.differentiable\ndef f", "@gradgen.differentiable(strict=True)\ndef f"
        ),
    )

    with pytest.raises(
        gradgen.StaleBackwardError, match=re.escape("gradgen models/net.py -o generated/net.py")
    ):
        import_file(forward)


def test_strict_environment_variable_makes_stale_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(tmp_path, run)
    monkeypatch.setenv("GRADGEN_STRICT", "1")

    with pytest.raises(gradgen.StaleBackwardError, match=re.escape("generated/net.py")):
        import_file(forward)


def test_strict_false_overrides_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(
        tmp_path,
        run,
        NET.replace(
            "@gradgen.differentiable\ndef f", "@gradgen.differentiable(strict=False)\ndef f"
        ).replace("@gradgen.differentiable\ndef g", "@gradgen.differentiable(strict=False)\ndef g"),
    )
    monkeypatch.setenv("GRADGEN_STRICT", "1")

    module, caught = import_recording_warnings(forward)

    assert len(stale_warnings(caught)) == 1
    assert_gradients(module.f, (0.3, -0.7))


def test_missing_committed_file_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path / "models" / "sub")  # paths are shown relative to the project

    module, caught = import_recording_warnings(tmp_path / "models" / "net.py")

    (message,) = stale_warnings(caught)
    assert "generated/net.py" in message
    assert "gradgen models/net.py -o generated/net.py" in message
    assert not (tmp_path / "generated").exists()  # the decorator never writes
    assert_gradients(module.f, (0.3, -0.7))
    assert_gradients(module.g, (0.4,))

    monkeypatch.setenv("GRADGEN_STRICT", "1")
    monkeypatch.setattr(decorator, "_WARNED", set())
    with pytest.raises(gradgen.StaleBackwardError):
        import_file(tmp_path / "models" / "net.py")


def _nothing_generated(root: Path, run) -> None:
    make_project(root)


def _forward_edited(root: Path, run) -> None:
    generated_and_edited_project(root, run)


def _function_added(root: Path, run) -> None:
    make_project(root)
    assert run()[0] == 0
    added = NET.replace("@gradgen.differentiable\ndef f", "@gradgen.differentiable\ndef f0")
    write(root / "models" / "net.py", NET + "\n\n" + added.split("import gradgen\n")[1])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            _nothing_generated,
            "generated/net.py does not exist yet for f (the file has not been generated); "
            "generate it from ",
            id="missing-file",
        ),
        pytest.param(
            _forward_edited,
            "generated/net.py is stale for f (its forward source changed since the file was "
            "generated); regenerate it from ",
            id="stale-file",
        ),
        pytest.param(
            _function_added,
            "generated/net.py has no backward for f0 (the function is newer than the file); "
            "regenerate it from ",
            id="function-newer-than-the-file",
        ),
    ],
)
def test_why_the_committed_file_cannot_be_used(
    make: Callable[..., None], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path, run)

    _, caught = import_recording_warnings(tmp_path / "models" / "net.py")

    (message,) = stale_warnings(caught)
    assert message.startswith(expected), message
    assert message.endswith(": gradgen models/net.py -o generated/net.py"), message


def test_regenerated_file_is_used_after_reimport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    # A session that imports, edits the forward, regenerates and imports again (as in a
    # notebook with importlib.reload) must get the new committed backward, not the old one.
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    forward = tmp_path / "models" / "net.py"
    first, _ = import_recording_warnings(forward)
    assert_gradients(first.f, (0.3, -0.7))

    edit(forward, *EDIT_F)
    assert run()[0] == 0
    second, caught = import_recording_warnings(forward)

    assert stale_warnings(caught) == []
    assert "* 3.0" in second.f.backward_source
    assert_gradients(second.f, (0.3, -0.7))


# --- 9. no configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pyproject",
    [
        pytest.param(None, id="no-pyproject"),
        pytest.param('[project]\nname = "demo"\n', id="no-tool-gradgen"),
        pytest.param(
            '[[tool.gradgen.files]]\nforward = "other"\nbackward = "generated"\n',
            id="file-not-mapped",
        ),
    ],
)
def test_unmapped_function_is_generated_in_memory_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyproject: str | None
) -> None:
    if pyproject is not None:
        write(tmp_path / "pyproject.toml", pyproject)
        (tmp_path / "other").mkdir()
    else:
        assert find_config(tmp_path) is None
    forward = write(tmp_path / "models" / "net.py", NET)
    monkeypatch.chdir(tmp_path)

    module, caught = import_recording_warnings(forward)

    assert [str(w.message) for w in caught] == []
    assert module.f.backward_source.startswith("def f_backward(x, y, dout=1.0):")
    assert module.f.backward.__code__.co_filename.startswith("<gradgen")
    assert_gradients(module.f, (0.3, -0.7))
    assert_gradients(module.g, (0.4,))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["models", *(["pyproject.toml", "other"] if pyproject else [])]
    )
