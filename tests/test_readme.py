"""The README tells the truth: its operations table is the rules table, and the commands it
shows do what it says they do (run here, not searched for)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from gradgen import readme_table
from gradgen.cli import main
from gradgen.rules import operations_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def section(title: str) -> str:
    """The text of the README's ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README lost its {title!r} section"
    return match.group(1)


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M)


def try_it_command(tool: str) -> tuple[str, list[str]]:
    """From the "Try it" section, the ``pip install`` target of the command that runs
    ``.venv/bin/<tool>``, and the arguments ``tool`` is run with."""
    for block in code_blocks(section("Try it")):
        for line in block.splitlines():
            steps = [shlex.split(step) for step in line.split("&&")]
            runs = [s for s in steps if s and s[0] == f".venv/bin/{tool}"]
            if runs:
                (install,) = [s for s in steps if s[:2] == [".venv/bin/pip", "install"]]
                return install[-1], runs[0][1:]
    raise AssertionError(f"README's Try it section has no command running .venv/bin/{tool}")


def distribution(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group()).lower()


def test_operations_table_is_the_rules_table() -> None:
    """The command that writes the table (``python -m gradgen.readme_table``) would change
    nothing: the README's table is the rules table."""
    assert readme_table.main([str(ROOT / "README.md"), "--check"]) == 0


def test_the_table_command_rewrites_a_stale_table(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(README.replace("| exp |", "| exponential |"), encoding="utf-8")
    assert readme_table.main([str(stale), "--check"]) == 1
    assert readme_table.main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == README
    assert operations_table() in README


def test_before_and_after_command_writes_the_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The "Before and after" section: the forward shown is the example's code, and the
    command shown, run on the example, writes exactly the file shown."""
    text = section("Before and after")
    before, after = code_blocks(text)[:2]
    commands = re.findall(r"^`(gradgen [^`]+)` writes:$", text, re.M)
    assert len(commands) == 1, "the section must name the command that writes the after"
    argv = shlex.split(commands[0])[1:]
    source = Path(argv[0])
    assert before in (ROOT / source).read_text(encoding="utf-8")

    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / source).parent.mkdir(parents=True)
    shutil.copy(ROOT / source, tmp_path / source)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0, capsys.readouterr().err
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    (output,) = set(written) - {Path("pyproject.toml"), source}
    assert output.read_text(encoding="utf-8") == after


def test_generate_command_writes_the_committed_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "Try it": the generate command, as the README spells it, gives exactly the committed
    ``generated/`` (checked with ``--check``: it writes nothing), with what ``pip install``
    installs: the command is one of the project's scripts."""
    target, argv = try_it_command("gradgen")
    assert target == "."
    assert "gradgen" in PYPROJECT["project"]["scripts"]
    monkeypatch.chdir(ROOT)
    status = main(["--check", *argv])
    assert status == 0, f"the README's `gradgen {shlex.join(argv)}` would change files:\n" + (
        capsys.readouterr().out
    )


def test_test_command_installs_what_the_tests_need() -> None:
    """ "Try it": the test command installs an extra that holds pytest, the plugins of the
    pytest options, and every package the tests import; CI runs the same pytest command."""
    target, argv = try_it_command("pytest")
    extra = re.fullmatch(r"\.\[(\w+)\]", target)
    assert extra, f"the README installs {target!r}, not the project with a test extra"
    installed = {
        distribution(r)
        for r in PYPROJECT["project"]["dependencies"]
        + PYPROJECT["project"]["optional-dependencies"][extra.group(1)]
    }
    assert "pytest" in installed

    options = shlex.split(PYPROJECT["tool"]["pytest"]["ini_options"]["addopts"]) + argv
    plugins = {"-n": "pytest-xdist", "--dist": "pytest-xdist", "--cov": "pytest-cov"}
    needed = {plugins[o.split("=")[0]] for o in options if o.split("=")[0] in plugins}

    tests = ROOT / "tests"
    local = {p.stem for p in tests.glob("*.py")} | {"gradgen"}
    modules: set[str] = set()
    for path in tests.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    # tomllib: the standard library from Python 3.11 (tomli, a dependency, before).
    third_party = modules - local - set(sys.stdlib_module_names) - {"tomllib"}
    by_module = importlib.metadata.packages_distributions()
    for module in third_party:
        needed |= {distribution(d) for d in by_module.get(module, [module])}
    assert needed <= installed, f"the tests need {sorted(needed - installed)}, not installed"

    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_runs = [shlex.split(line) for line in ci.splitlines() if "/bin/pytest" in line]
    assert [run[1:] for run in ci_runs] == [argv], "CI does not run the README's test command"


def test_programs_section_shows_the_committed_composed_backward() -> None:
    """The "Programs" section quotes the composed net's backward as gradgen writes it."""
    text = section("Programs: calls, several results, your own rules, constants")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    quoted = next(b for b in blocks if b.startswith("def two_layer_loss_backward"))
    generated = (ROOT / "generated" / "two_layer_composed.py").read_text(encoding="utf-8")
    assert quoted in generated
    forward = (ROOT / "examples" / "two_layer_composed.py").read_text(encoding="utf-8")
    shown = next(b for b in blocks if b.startswith("def affine"))
    for function in shown.split("\n\n\n"):
        assert function.strip() in forward
