"""``labcim demo [--out DIR]``: the whole workflow on the embedded simulated chip."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="program, characterize and run a network on the embedded simulated chip",
        description="Program a weight matrix with TDP write-verify, characterize the MVM, "
        "follow drift and run a digits network on a simulated 8-core pcm-hermes chip; "
        "write one HDF5 results file and PNG figures, and print the key figures.",
    )
    parser.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from labcim.cli.pause import pause_handler
    from labcim.demo import format_table, run_demo
    from labcim.engine import PlanAbortedError
    from labcim.hdf5.output import ForeignFileError

    try:
        table = run_demo(args.out, progress=not args.quiet, on_pause=pause_handler())
    except ForeignFileError as exc:
        print(f"labcim demo: --out: {exc}", file=sys.stderr)
        return 2
    except (PlanAbortedError, KeyboardInterrupt) as exc:  # Ctrl-C: the finished runs stay
        what = str(exc) or "interrupted between two steps"
        print(f"labcim demo: {what}; the runs before it are in {args.out}", file=sys.stderr)
        return 130
    print(format_table(table))
    results = Path(args.out) / "demo.h5"
    # Quoted as a shell needs it, so the hint can be pasted as it is.
    print(f"results: {results} (see `labcim show {shlex.quote(str(results))}`)")
    return 0
