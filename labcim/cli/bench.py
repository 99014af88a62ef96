"""``labcim bench [--quick] [--json FILE] [NAME ...]``: every benchmark, one table."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks and print one table of figures and ratios",
        description="Run every benchmarks/bench_*.py module (or those named) and print one "
        "table: figure, unit, the baseline it is compared with, and the target.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="only these benchmarks, e.g. hdf5 chip"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the records (name, value, unit, compared_with, target) as JSON",
    )
    parser.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    """Run the benchmarks; exit 1 if one of them failed (the others are still reported)."""
    import importlib
    import json
    import pkgutil
    from dataclasses import asdict, replace

    from tqdm import tqdm

    import benchmarks
    from benchmarks.common import format_table

    found = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    chosen = [m for m in found if not args.names or m.removeprefix("bench_") in args.names]
    unknown = set(args.names) - {m.removeprefix("bench_") for m in found}
    if unknown:
        names = ", ".join(m.removeprefix("bench_") for m in found)
        print(f"labcim bench: unknown {', '.join(sorted(unknown))}; available: {names}")
        return 2
    records, failed = [], []
    for name in tqdm(chosen, unit="benchmark", disable=args.quiet):
        try:
            records += importlib.import_module(f"benchmarks.{name}").run(args.quick)
        except Exception as exc:  # report it and still print the others' figures
            failed.append(name)
            tqdm.write(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    if args.quick:
        # Smaller sizes and fewer repeats change the ratios: a target met or missed here
        # says nothing about the full benchmark.
        records = [
            replace(r, target=f"({r.target}: not comparable, --quick)") if r.target else r
            for r in records
        ]
        print("--quick: smaller sizes and fewer repeats; the figures are not comparable with")
        print("the targets, which are for the full benchmark (labcim bench without --quick).")
    print(format_table(records))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in records], fh, indent=1)
    return 1 if failed else 0
