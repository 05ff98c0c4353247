"""Golden-file cases: a forward module, a ``# output`` line, the exact backward module.

Set ``GRADGEN_UPDATE_GOLDEN=1`` to rewrite the expected part from the current generator, then
read the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

CASES_DIR = Path(__file__).parent / "cases"
MARKER = "# output\n"


def case_paths() -> list[Path]:
    return sorted(CASES_DIR.glob("*.py"))


def read_case(path: Path) -> tuple[str, str]:
    """(forward source, expected output); the output is "" when the case has none yet."""
    text = path.read_text(encoding="utf-8")
    source, marker, expected = text.partition("\n" + MARKER)
    if not marker:
        return text, ""
    return source + "\n", expected.lstrip("\n")


def update_requested() -> bool:
    return os.environ.get("GRADGEN_UPDATE_GOLDEN") == "1"


def write_case(path: Path, source: str, output: str) -> None:
    path.write_text(f"{source}\n{MARKER}\n{output}", encoding="utf-8")
