"""What the command-line tests share: a throwaway project, a runner that never allows a
traceback, and small file helpers. The fixtures are registered in ``conftest.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gradgen.cli import main

Run = Callable[..., tuple[int, str, str]]

# Two small forward files every command-line test can use.
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


def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding a ``pyproject.toml`` (the project root), made the current folder."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_runner(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv) -> (status, stdout, stderr)``; no run may ever print a traceback."""

    def run_(*argv: str | Path) -> tuple[int, str, str]:
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        assert "Traceback" not in out
        return status, out, err

    return run_


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder``: relative path -> (content, mtime_ns)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
