"""``labcim bench [--quick] [--threads N] [--huge-pages] [--json FILE] [NAME ...]``.

Every benchmark, one table.

The benchmarks are not part of the installed framework: they live in the source tree's
``benchmarks/`` (they drive the simulated chip directly and the full stack side by side,
importing every layer), and labcim imports nothing of them.  ``labcim bench`` runs them
as their own program, ``python -m benchmarks``, in the checkout that holds them, with the
options given here; the options are defined once, here, and the benchmarks' program
reads the same ones.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import labcim


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``labcim bench`` and of ``python -m benchmarks``."""
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
        "--huge-pages",
        action="store_true",
        help="keep numpy's huge-page advice for large arrays (default off: where the "
        "kernel compacts memory for it, page faults cost more than the work)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the records and a header (date, machine, versions, BLAS, load) "
        "as JSON; scripts/bench_table.py turns it into the README's table",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks and print one table of figures and ratios",
        description="Run every benchmarks/bench_*.py module (or those named) and print one "
        "table: median figure and its min-max over interleaved repeats, unit, the baseline "
        "measured in the same run, the target, the BLAS threads and the repeats.  The "
        "benchmarks are in labcim's source tree (a checkout), not in the installed package.",
    )
    add_options(parser)
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="the benchmarks/ directory (default: ./benchmarks, or the one beside the "
        "labcim package of an editable install)",
    )
    parser.set_defaults(func=bench)


def benchmarks_dir(given: str | None) -> Path:
    """The ``benchmarks/`` directory to run; `FileNotFoundError` naming where it looked."""
    if given is not None:
        candidates = [Path(given)]
    else:
        candidates = [Path.cwd() / "benchmarks", Path(labcim.__file__).parents[1] / "benchmarks"]
    for candidate in candidates:
        if (candidate / "harness.py").is_file():
            return candidate.resolve()
    looked = " or ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no benchmarks in {looked}: they are in labcim's source tree; run from a checkout "
        "or give --dir"
    )


def bench(args: argparse.Namespace) -> int:
    """Run ``python -m benchmarks`` with the same options; its exit status."""
    try:
        directory = benchmarks_dir(args.dir)
    except FileNotFoundError as exc:
        print(f"labcim bench: {exc}", file=sys.stderr)
        return 2
    if directory.name != "benchmarks":
        print(f"labcim bench: --dir {directory}: expected a directory named benchmarks")
        return 2
    argv = [*args.names, *(["--quick"] if args.quick else [])]
    argv += [] if args.threads is None else ["--threads", str(args.threads)]
    argv += ["--huge-pages"] if args.huge_pages else []
    argv += [] if args.json is None else ["--json", str(Path(args.json).resolve())]
    argv += ["--quiet"] if args.quiet else []
    command = [sys.executable, "-m", "benchmarks", *argv]
    return subprocess.run(command, cwd=directory.parent, check=False).returncode
