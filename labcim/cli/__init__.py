"""The ``labcim`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed arguments and returning an exit code).  Importing the heavy libraries is left to
``func`` so that ``labcim --help`` stays fast.

An error a command does not handle itself is one line on stderr, ``labcim COMMAND:
error: ...`` (exit 1), and the log records of the libraries below (bluesky's "Run
aborted" with its traceback) are not shown; ``--debug`` shows both, with tracebacks.
A warning (a damaged run file skipped) is one line too, ``labcim: warning: ...``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

import labcim

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = (
    "demo",
    "run",
    "campaign",
    "station",
    "stations",
    "replay",
    "calibrate",
    "show",
    "sim",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="labcim",
        description="Instrument control and experiment orchestration for compute-in-memory chips.",
    )
    parser.add_argument("--version", action="version", version=f"labcim {labcim.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (CI, logs)")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the traceback and library logs"
    )
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
    if not args.debug:
        # bluesky logs a failed plan with its traceback ("Run aborted"); the command
        # reports the error itself, in one line.
        logging.getLogger("bluesky").addHandler(logging.NullHandler())
        logging.getLogger("bluesky").propagate = False
    warnings.showwarning = _show_warning  # e.g. a damaged run file skipped
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (labcim show ... | head): not an error
        sys.stderr.close()
        return 0
    except Exception as exc:
        if args.debug:
            raise
        message = one_line(exc)
        print(f"labcim {args.command}: error: {message} (--debug for details)", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """An exception as one line: the innermost cause bluesky or ophyd wrapped, with its
    type unless it is a plain ValueError (whose message names the field)."""
    while exc.__cause__ is not None and type(exc).__module__.startswith(("bluesky", "ophyd")):
        exc = exc.__cause__
    message = " ".join(str(exc).split()) or type(exc).__name__
    plain = type(exc) in (ValueError, FileNotFoundError)
    return message if plain else f"{type(exc).__name__}: {message}"


def tcp_port(text: str) -> int:
    """An argparse ``type``: a TCP port number, 0 (pick a free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return port


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` for the command line: the message alone, on one line."""
    print(f"labcim: warning: {message}", file=file or sys.stderr)
