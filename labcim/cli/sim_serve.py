"""``labcim sim serve``: the simulated test board, over TCP on 127.0.0.1 or over a pty."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``labcim sim`` group."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a simulated chip over the board protocol",
        description=(
            "Serve a simulated chip over the board wire protocol (docs/protocol.md) until "
            "interrupted.  The first line printed is the URL to connect to, e.g. "
            "socket://127.0.0.1:PORT or a pty device path."
        ),
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument("--pty", action="store_true", help="serve over a pty pair instead of TCP")
    parser.add_argument(
        "--preset",
        default="pcm-hermes",
        help="chip preset: pcm-hermes, pcm-small, rram-hfox, rram-small (default: %(default)s)",
    )
    parser.add_argument("--cores", type=int, help="number of cores (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the chip and the faults")
    parser.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help=(
            "link faults as rates per frame, e.g. corrupt=0.02,drop=0.02,duplicate=0.01,"
            "delay=0.01,delay_s=0.05,disconnect=0.001,seed=1 (default: none)"
        ),
    )
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Build the chip and serve it until Ctrl-C (exit 0)."""
    from mock_hw.board_server import (
        BoardHandler,
        Faults,
        FaultyHandler,
        PtyBoardServer,
        TcpBoardServer,
    )
    from mock_hw.chip import Chip

    try:
        faults = Faults.parse(args.faults, seed=args.seed)
        handler = BoardHandler(Chip.from_preset(args.preset, seed=args.seed, cores=args.cores))
        server = PtyBoardServer(handler) if args.pty else TcpBoardServer(handler, port=args.port)
    except (ValueError, OSError) as exc:
        print(f"labcim sim serve: error: {exc}", file=sys.stderr)
        return 2
    if faults.any():
        server.handler = FaultyHandler(handler, faults)
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
