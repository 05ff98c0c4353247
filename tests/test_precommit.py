"""The pre-commit hooks (``.pre-commit-hooks.yaml``): ``gradgen`` regenerates and
``gradgen-check`` verifies the committed backward files, through the console script.

Every test builds its own project in ``tmp_path``; gradgen's per-process caches of configs,
committed modules and warned files are replaced by empty ones for each test.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

import gradgen
import gradgen.cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

from review_project import (
    EDIT_G,
    REPO,
    edit,
    expected_output,
    make_project,
)

pytestmark = pytest.mark.usefixtures("fresh_gradgen_state")


# --- the pre-commit hooks ------------------------------------------------------------------


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
