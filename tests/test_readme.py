"""The README tells the truth: its operations table is the rules table, its example current."""

from __future__ import annotations

import re
from pathlib import Path

from gradgen.rules import operations_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_operations_table_is_the_rules_table() -> None:
    match = re.search(
        r"<!-- operations-table:[^\n]*-->\n(.*?)\n<!-- end operations-table -->", README, re.S
    )
    assert match, "README lost its operations-table markers"
    assert match.group(1) == operations_table()


def test_before_and_after_example_is_the_generated_file() -> None:
    generated = (ROOT / "generated" / "staged.py").read_text(encoding="utf-8")
    assert f"```python\n{generated}```" in README


def test_readme_has_the_two_commands() -> None:
    assert "pip install . && .venv/bin/gradgen examples -o generated" in README
    assert 'pip install ".[test]" && .venv/bin/pytest' in README
