"""``labcim bench [--quick] [--threads N] [--json FILE] [NAME ...]``: every benchmark, one table."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks and print one table of figures and ratios",
        description="Run every benchmarks/bench_*.py module (or those named) and print one "
        "table: median figure and its min-max over interleaved repeats, unit, the baseline "
        "measured in the same run, the target, the BLAS threads and the repeats.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="only these benchmarks, e.g. hdf5 chip"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="BLAS threads of every benchmark (default 1; the chip benchmark measures 1 and 2)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the records and a header (date, machine, versions, BLAS, load) "
        "as JSON; scripts/bench_table.py turns it into the README's table",
    )
    parser.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    """Run the benchmarks; exit 1 if one of them failed (the others are still reported)."""
    from tqdm import tqdm

    from benchmarks import harness

    found = harness.available()
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        print(f"labcim bench: unknown {', '.join(unknown)}; available: {', '.join(found)}")
        return 2
    threads = harness.DEFAULT_THREADS if args.threads is None else args.threads
    if threads < 1:
        print(f"labcim bench: --threads = {threads}; allowed: 1 or more")
        return 2

    def report(name: str, exc: Exception) -> None:
        tqdm.write(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    head, records, failed = harness.run_benchmarks(
        [n for n in found if not args.names or n in args.names],
        args.quick,
        threads,
        on_error=report,
        progress=lambda names: tqdm(names, unit="benchmark", disable=args.quiet),
    )
    if args.quick:
        print(harness.QUICK_NOTE)
    print(harness.format_table(records))
    if args.json:
        harness.write_json(args.json, head, records)
    return 1 if failed else 0
