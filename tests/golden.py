"""Golden-file cases: a forward module, a ``# output`` line, the exact backward module.

Set ``GRADGEN_UPDATE_GOLDEN=1`` to rewrite the expected part from the current generator, then
read the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

CASES_DIR = Path(__file__).parent / "cases"
MARKER = "# output\n"
# A case whose source starts with this line is generated with F_value_and_grad too.
VALUE_AND_GRAD = "# generated with value_and_grad=True\n"


def case_paths() -> list[Path]:
    return sorted(CASES_DIR.glob("*.py"))


def read_case(path: Path) -> tuple[str, str]:
    """(forward source, expected output); the output is "" when the case has none yet."""
    text = path.read_text(encoding="utf-8")
    source, marker, expected = text.partition("\n" + MARKER)
    if not marker:
        return text, ""
    return source + "\n", expected.lstrip("\n")


def options(source: str) -> dict[str, bool]:
    """The keyword arguments of ``gradgen.generate`` the case asks for."""
    return {"value_and_grad": True} if source.startswith(VALUE_AND_GRAD) else {}


def update_requested() -> bool:
    return os.environ.get("GRADGEN_UPDATE_GOLDEN") == "1"


def write_case(path: Path, source: str, output: str) -> None:
    path.write_text(f"{source}\n{MARKER}\n{output}", encoding="utf-8")
