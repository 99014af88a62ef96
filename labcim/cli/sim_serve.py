"""``labcim sim serve``: the simulated test board, over TCP on 127.0.0.1 or over a pty."""

from __future__ import annotations

import argparse
import math
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``labcim sim`` group."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a simulated chip over the board protocol",
        description=(
            "Serve a simulated chip over the board wire protocol (docs/protocol.md) until "
            "interrupted.  The first line printed is the URL to connect to, e.g. "
            "socket://127.0.0.1:PORT or a pty device path.  Over TCP several clients may "
            "connect; the first to send a request holds the board until it disconnects or "
            "stays idle for --idle-timeout, and the others are told who holds it."
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
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="S",
        help=(
            "TCP: close a connection that sends no request for S seconds, releasing the "
            "board if it held it; 0 never does (default: %(default)g)"
        ),
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=None,
        metavar="N",
        help="TCP: connections served at once (default: 64)",
    )
    parser.set_defaults(func=serve)


DEFAULT_IDLE_TIMEOUT = 600.0
"""Seconds without a request after which ``labcim sim serve`` frees the board: long enough
for a person thinking at a notebook, short enough that a forgotten kernel does not hold
the board all day."""


def serve(args: argparse.Namespace) -> int:
    """Build the chip and serve it until Ctrl-C (exit 0)."""
    from mock_hw.board_server import (
        MAX_CLIENTS,
        BoardHandler,
        Faults,
        FaultyHandler,
        PtyBoardServer,
        TcpBoardServer,
    )
    from mock_hw.chip import Chip

    try:
        if args.idle_timeout < 0 or not math.isfinite(args.idle_timeout):
            raise ValueError(f"--idle-timeout {args.idle_timeout:g}: must be >= 0 s (0: never)")
        faults = Faults.parse(args.faults, seed=args.seed)
        handler = BoardHandler(Chip.from_preset(args.preset, seed=args.seed, cores=args.cores))
        if args.pty:
            server = PtyBoardServer(handler)
        else:
            server = TcpBoardServer(
                handler,
                port=args.port,
                idle_timeout=args.idle_timeout or None,
                max_clients=MAX_CLIENTS if args.max_clients is None else args.max_clients,
                log=lambda message: print(f"labcim sim serve: {message}", file=sys.stderr),
            )
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
