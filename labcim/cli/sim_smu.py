"""``labcim sim smu``: serve a simulated SMU (Keithley 2450, Keysight B2900 or B1500A).

The first line printed is the VISA resource string to open, e.g.
``TCPIP::127.0.0.1::5025::SOCKET``; the server then runs until interrupted (Ctrl-C
exits with status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from labcim.cli import tcp_port

SIM_MODELS = ("2450", "b2900", "b1500a")
"""Instruments ``--model`` names (``mock_hw.smu_server.MODELS``)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``smu`` subcommand to the ``labcim sim`` group."""
    parser = subparsers.add_parser(
        "smu",
        help="a simulated SMU (Keithley 2450, Keysight B2900 or B1500A) with one device",
        description="Serve a simulated SMU on a loopback TCP port: SCPI for the 2450 and the "
        "B2900, FLEX for the B1500A.  The device under test is one device of the board "
        "simulator's RRAM or PCM population (with --device-model, of a calibrated one).  "
        "The first line of output is the VISA resource string; Ctrl-C stops the server.",
    )
    parser.add_argument(
        "--port", type=tcp_port, default=0, help="TCP port (default 0: pick a free one)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)"
    )
    parser.add_argument(
        "--model", choices=SIM_MODELS, default="2450", help="instrument (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the device model")
    parser.add_argument(
        "--device", choices=("rram", "pcm"), default="rram", help="device under test"
    )
    parser.add_argument(
        "--device-model",
        metavar="FILE",
        help="labcim model file (labcim calibrate) whose device parameters the device uses",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; return the exit status."""
    from labcim.twin.model_file import ModelFileError
    from labcim.twin.serve import smu_server, stop_on_sigint

    stop_on_sigint()

    try:
        server = smu_server(
            model=args.model,
            device=args.device,
            seed=args.seed,
            device_model=args.device_model,
            host=args.host,
            port=args.port,
        )
    except (ModelFileError, ValueError, OSError) as exc:  # bad file, not loopback, port taken
        print(f"labcim sim smu: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C is the normal way to stop; one sent right after the resource is read (a
    # script that only needed one query) stops it as cleanly.
    with server, contextlib.suppress(KeyboardInterrupt):
        print(server.resource, flush=True)
        threading.Event().wait()
    return 0
