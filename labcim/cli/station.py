"""``labcim station BOARD_URL --name NAME``: one board behind a bluesky-queueserver queue."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labcim.cli import suspend


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``station`` subcommand."""
    parser = subparsers.add_parser(
        "station",
        help="run a test station: one board behind a bluesky-queueserver RE Manager",
        description="Start a bluesky-queueserver RE Manager for one board (docs/stations.md): "
        "its worker connects BOARD_URL, registers every plan of the labcim.plans entry "
        "points and writes each run to the results directory.  Clients queue plans with "
        "bluesky-queueserver-api (labcim campaign --stations, qserver, the status page).  "
        "Runs until Ctrl-C or SIGTERM.  Needs pip install 'labcim[stations]'.",
    )
    parser.add_argument(
        "chip", metavar="BOARD_URL", help="board URL (sim://..., socket://...) or VISA resource"
    )
    parser.add_argument("--name", required=True, help="station name (letters, digits, _ and -)")
    parser.add_argument("--results", type=Path, help="results directory (default: results/NAME)")
    parser.add_argument(
        "--control-addr",
        default="tcp://127.0.0.1:60615",
        help="0MQ control address the RE Manager binds (default: %(default)s); beyond "
        "127.0.0.1 it needs QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER",
    )
    parser.add_argument(
        "--info-addr",
        default="tcp://127.0.0.1:60625",
        help="0MQ address publishing the console output (default: %(default)s)",
    )
    parser.add_argument(
        "--redis",
        default="",
        metavar="HOST:PORT",
        help="your Redis server for the queue (default: start one on 127.0.0.1, no persistence)",
    )
    parser.add_argument(
        "--files",
        type=Path,
        default=Path(),
        help="directory of the {file: ...} arrays items refer to (default: here)",
    )
    suspend.add_option(parser)
    parser.set_defaults(func=station)


def station(args: argparse.Namespace) -> int:
    """Run the station; return its exit status."""
    from labcim.stations.registry import StationError
    from labcim.stations.server import StationOptions, run_station

    try:
        watched = suspend.read_option(args.suspend, args.chip)
    except ValueError as exc:
        print(f"labcim station: {exc}", file=sys.stderr)
        return 2
    options = StationOptions(
        chip=args.chip,
        name=args.name,
        results=args.results or Path("results") / args.name,
        control_addr=args.control_addr,
        info_addr=args.info_addr,
        redis=args.redis,
        files=args.files,
        suspend=watched,
    )
    try:
        return run_station(options)
    except (StationError, RuntimeError) as exc:
        print(f"labcim station: {exc}", file=sys.stderr)
        return 2
