"""``labcim sim serve``: the simulated test board, over TCP on 127.0.0.1 or over a pty."""

from __future__ import annotations

import argparse
import math
import sys

from labcim.cli import tcp_port


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
            "stays idle for --idle-timeout, and the others are told who holds it.  A run "
            "recorded on it replays exactly on sim:// (labcim replay)."
        ),
    )
    parser.add_argument(
        "--port", type=tcp_port, default=0, help="TCP port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument("--pty", action="store_true", help="serve over a pty pair instead of TCP")
    parser.add_argument(
        "--chip",
        metavar="URL",
        help=(
            "the simulated chip, as a sim:// URL of labcim.connect: a preset and its "
            "options, model=FILE.yaml, or a saved chip, e.g. "
            "'sim://pcm-hermes?cores=2&seed=3&model=twin.yaml' (default: "
            f"{DEFAULT_CHIP}); its seed also seeds the faults"
        ),
    )
    parser.add_argument(
        "--preset", help="shorthand: sim://PRESET (not with --chip; default: pcm-hermes)"
    )
    parser.add_argument("--cores", type=int, help="shorthand: cores=N of the chip URL")
    parser.add_argument("--seed", type=int, help="shorthand: seed=S of the chip URL")
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


DEFAULT_CHIP = "sim://pcm-hermes"
"""The chip served when neither --chip nor a shorthand names one."""

DEFAULT_IDLE_TIMEOUT = 600.0
"""Seconds without a request after which ``labcim sim serve`` frees the board: long enough
for a person thinking at a notebook, short enough that a forgotten kernel does not hold
the board all day."""


def chip_url(args: argparse.Namespace) -> str:
    """The sim:// URL of the chip to serve: ``--chip``, or the one the shorthands name.

    Raises
    ------
    ValueError
        ``--chip`` together with a shorthand.
    """
    shorthands = {"preset": args.preset, "cores": args.cores, "seed": args.seed}
    given = [f"--{k}" for k, v in shorthands.items() if v is not None]
    if args.chip is not None:
        if given:
            raise ValueError(f"{', '.join(given)}: give them in the --chip URL instead")
        return args.chip
    query = "&".join(f"{k}={v}" for k, v in shorthands.items() if k != "preset" and v is not None)
    base = f"sim://{args.preset}" if args.preset is not None else DEFAULT_CHIP
    return base + ("?" + query if query else "")


def serve(args: argparse.Namespace) -> int:
    """Build the chip and serve it until Ctrl-C (exit 0)."""
    from labcim.twin.serve import board_server, stop_on_sigint

    stop_on_sigint()

    try:
        if args.idle_timeout < 0 or not math.isfinite(args.idle_timeout):
            raise ValueError(f"--idle-timeout {args.idle_timeout:g}: must be >= 0 s (0: never)")
        options = {} if args.max_clients is None else {"max_clients": args.max_clients}
        server = board_server(
            chip_url(args),
            pty=args.pty,
            port=args.port,
            faults=args.faults,
            idle_timeout=args.idle_timeout or None,
            log=lambda message: print(f"labcim sim serve: {message}", file=sys.stderr),
            **options,
        )
    except (ValueError, OSError) as exc:
        print(f"labcim sim serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        print(server.url, flush=True)  # in the try: a Ctrl-C right after it stops cleanly
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
