"""The README's benchmark table, made from a ``labcim bench --json`` file.

Prints the markdown (a line on the run and machine, then one row per record), or with
``--readme`` puts it into that file between the ``<!-- bench-table -->`` and
``<!-- /bench-table -->`` lines, so the README's figures are never typed by hand.

Usage: python scripts/bench_table.py bench.json [--readme README.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# benchmarks/ is in the source tree, not installed: import it from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import markdown_table, read_json

START, END = "<!-- bench-table -->", "<!-- /bench-table -->"


def replace_table(text: str, table: str) -> str:
    """``text`` with what lies between the START and END lines replaced by ``table``.

    Raises
    ------
    ValueError
        If the markers are missing or out of order.
    """
    a, b = text.find(START + "\n"), text.find("\n" + END)
    if a < 0 or b < a:
        raise ValueError(f"no {START} ... {END} lines to put the table between")
    return text[: a + len(START) + 1] + table + text[b:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="written by labcim bench --json")
    parser.add_argument("--readme", type=Path, help="put the table into this file")
    args = parser.parse_args(argv)
    try:
        table = markdown_table(*read_json(args.json))
        if args.readme is None:
            print(table)
        else:
            args.readme.write_text(replace_table(args.readme.read_text(), table))
    except (OSError, ValueError) as exc:
        print(f"bench_table: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
