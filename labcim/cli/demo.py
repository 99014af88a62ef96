"""``labcim demo [--out DIR]``: the whole workflow on the embedded simulated chip."""

from __future__ import annotations

import argparse


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
    from labcim.demo import format_table, run_demo

    table = run_demo(args.out, progress=not args.quiet)
    print(format_table(table))
    print(f"results: {args.out}/demo.h5 (see `labcim show {args.out}/demo.h5`)")
    return 0
