"""``labcim sim``: serve simulated instruments (the board, an SMU) for other programs."""

from __future__ import annotations

import argparse
import importlib

# Modules of this package providing ``register(subparsers)`` for one simulated instrument.
SIM_COMMANDS = ("sim_serve", "sim_smu")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sim`` command group."""
    parser = subparsers.add_parser(
        "sim",
        help="serve simulated instruments on 127.0.0.1 or a pty",
        description="Serve simulated instruments that speak the real protocols.",
    )
    sub = parser.add_subparsers(dest="sim_command", metavar="INSTRUMENT")
    for name in SIM_COMMANDS:
        importlib.import_module(f"labcim.cli.{name}").register(sub)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
