"""``labcim sim smu``: serve a simulated Keithley 2450 SMU wired to one device.

The first line printed is the VISA resource string to open, e.g.
``TCPIP::127.0.0.1::5025::SOCKET``; the server then runs until interrupted (Ctrl-C
exits with status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``smu`` subcommand to the ``labcim sim`` group."""
    parser = subparsers.add_parser(
        "smu",
        help="a simulated Keithley 2450 SMU (SCPI over TCP) with one RRAM or PCM device",
        description="Serve a simulated Keithley 2450 SMU on a loopback TCP port. The first "
        "line of output is the VISA resource string; Ctrl-C stops the server.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: pick a free one)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the device model")
    parser.add_argument(
        "--device", choices=("rram", "pcm"), default="rram", help="device under test"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; return the exit status."""
    import numpy as np

    from mock_hw.iv_device import DEVICES
    from mock_hw.smu_server import SMUServer

    device = DEVICES[args.device](np.random.default_rng(args.seed))
    try:
        server = SMUServer(device, host=args.host, port=args.port)
    except (ValueError, OSError) as exc:  # not loopback, port taken
        print(f"labcim sim smu: {exc}", file=sys.stderr)
        return 2
    with server:
        print(server.resource, flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
            threading.Event().wait()
    return 0
