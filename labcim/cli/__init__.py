"""The ``labcim`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed arguments and returning an exit code).  Importing the heavy libraries is left to
``func`` so that ``labcim --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import labcim

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("demo", "run", "campaign", "replay", "calibrate", "show", "sim", "bench")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="labcim",
        description="Instrument control and experiment orchestration for compute-in-memory chips.",
    )
    parser.add_argument("--version", action="version", version=f"labcim {labcim.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (CI, logs)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"labcim.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labcim`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
