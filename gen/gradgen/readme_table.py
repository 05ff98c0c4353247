"""Write the README's table of supported operations from the rules table (a development tool).

``python -m gradgen.readme_table README.md`` replaces the table between the README's
``<!-- operations-table ... -->`` and ``<!-- end operations-table -->`` markers with
``gradgen.rules.operations_table()``; ``--check`` writes nothing and exits 1 when the table
is out of date. A test runs the check, so a new rule cannot land without its README row.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from gradgen.rules import operations_table

_BLOCK = re.compile(
    r"(<!-- operations-table:[^\n]*-->\n)(.*?)(\n<!-- end operations-table -->)", re.S
)


def with_current_table(text: str) -> str:
    """``text`` (a README) with its operations table written from the rules table."""
    if not _BLOCK.search(text):
        raise ValueError("no <!-- operations-table: ... --> ... <!-- end operations-table -->")
    table = operations_table()
    return _BLOCK.sub(lambda m: m.group(1) + table + m.group(3), text, count=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradgen.readme_table", description=__doc__)
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    try:
        updated = with_current_table(text)
    except ValueError as problem:
        print(f"{args.readme}: {problem}", file=sys.stderr)
        return 2
    if updated == text:
        return 0
    if args.check:
        print(
            f"{args.readme}: the operations table is out of date; run "
            f"python -m gradgen.readme_table {args.readme}",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(updated, encoding="utf-8")
    print(f"wrote the operations table of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
