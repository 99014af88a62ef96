"""``python -m benchmarks`` (what ``labcim bench`` runs): every benchmark, one table.

Run from the checkout's root.  Exit status 0, 1 if a benchmark failed (the others are
still reported), 2 for a bad option.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from benchmarks import harness
from labcim.cli.bench import add_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labcim bench", description=__doc__)
    add_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    found = harness.available()
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        print(f"labcim bench: unknown {', '.join(unknown)}; available: {', '.join(found)}")
        return 2
    threads = harness.DEFAULT_THREADS if args.threads is None else args.threads
    if threads < 1:
        print(f"labcim bench: --threads = {threads}; allowed: 1 or more")
        return 2
    if args.json:
        try:
            harness.check_json_target(args.json)
        except ValueError as exc:
            print(f"labcim bench: {exc}")
            return 2

    def report(name: str, exc: Exception) -> None:
        tqdm.write(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    head, records, failed = harness.run_benchmarks(
        [n for n in found if not args.names or n in args.names],
        args.quick,
        threads,
        on_error=report,
        progress=lambda names: tqdm(names, unit="benchmark", disable=args.quiet),
        huge_pages=args.huge_pages,
    )
    if args.quick:
        print(harness.QUICK_NOTE, flush=True)
    print(harness.format_table(records), flush=True)
    if args.json:
        harness.write_json(args.json, head, records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
