"""The twin served to other programs: what ``labcim sim serve`` and ``labcim sim smu`` run.

The simulated board of a ``sim://`` URL (parsed by `labcim.twin.sim_url`, as
``labcim.connect`` parses it) behind a TCP server on 127.0.0.1 or a pty, with link faults
if asked; and a simulated SMU whose device under test is one device of the board model's
RRAM or PCM population, with the device parameters of a model file if given.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from os import PathLike
from typing import Any

import numpy as np

from labcim.twin.model_file import PARAMS, load_model
from labcim.twin.sim_url import chip_from_url
from mock_hw.board_server import (
    MAX_CLIENTS,
    BoardHandler,
    Faults,
    FaultyHandler,
    PtyBoardServer,
    TcpBoardServer,
)
from mock_hw.iv_device import DEVICES
from mock_hw.smu_server import SMUServer


def board_server(
    chip_url: str,
    *,
    pty: bool = False,
    port: int = 0,
    faults: str = "",
    idle_timeout: float | None = None,
    max_clients: int = MAX_CLIENTS,
    log: Callable[[str], None] | None = None,
) -> TcpBoardServer | PtyBoardServer:
    """A server of the simulated board with the chip ``chip_url`` names, not yet serving.

    Parameters
    ----------
    chip_url : str
        A ``sim://`` URL: preset and options, ``model=``, or a saved chip.
    pty : bool
        Serve over a pty pair (its device path is the server's ``url``) instead of TCP.
    port : int
        TCP port on 127.0.0.1 (0: a free one).
    faults : str
        Link faults as rates per frame (``mock_hw.board_server.Faults.parse``), seeded
        by the chip's seed unless the spec gives ``seed=``.
    idle_timeout : float, optional
        TCP: seconds without a request after which a connection is closed.
    max_clients : int
        TCP: connections served at once.
    log : callable, optional
        TCP: called with one line per connection event.

    Raises
    ------
    ValueError
        A bad URL or fault spec (naming it).
    OSError
        The port cannot be bound, no pty.
    """
    chip = chip_from_url(chip_url)
    parsed = Faults.parse(faults, seed=chip.spec.seed)
    handler = BoardHandler(chip)
    if pty:
        server: TcpBoardServer | PtyBoardServer = PtyBoardServer(handler)
    else:
        server = TcpBoardServer(
            handler, port=port, idle_timeout=idle_timeout, max_clients=max_clients, log=log
        )
    if parsed.any():
        server.handler = FaultyHandler(handler, parsed)
    return server


def smu_server(
    *,
    model: str = "2450",
    device: str = "rram",
    seed: int | None = None,
    device_model: str | PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> SMUServer:
    """A simulated SMU probing one device, not yet started.

    Parameters
    ----------
    model : str
        ``"2450"``, ``"b2900"`` or ``"b1500a"`` (``mock_hw.smu_server``).
    device : str
        ``"rram"`` or ``"pcm"`` (``mock_hw.iv_device.DEVICES``).
    device_model : path, optional
        A model file (``labcim calibrate``) whose device parameters the device uses.
    seed : int, optional
        Seed of the device's random draws.

    Raises
    ------
    labcim.twin.model_file.ModelFileError
        A bad model file.
    ValueError
        A model file of another device type, a host that is not loopback.
    OSError
        The port cannot be bound.
    """
    params: Any = None
    if device_model is not None:
        loaded = load_model(device_model)
        if loaded.device_type != device:
            raise ValueError(
                f"--device-model {device_model} is a {loaded.device_type} model, "
                f"--device is {device}"
            )
        params = PARAMS[loaded.device_type].from_dict(loaded.model_params)
    probed = DEVICES[device](np.random.default_rng(seed), params)
    return SMUServer(probed, host=host, port=port, model=model)


def stop_on_sigint() -> None:
    """Make SIGINT (Ctrl-C, ``kill -INT``) raise KeyboardInterrupt in this process, as
    a simulated instrument's server expects to be stopped.

    A shell script's background job (``labcim sim serve &``) starts with SIGINT
    ignored, and Python then installs no handler of its own: the server would outlive
    every ``kill -INT``.  Only the main thread can set a handler; elsewhere this does
    nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
