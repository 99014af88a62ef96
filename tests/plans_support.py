"""Running labcim's plans under a RunEngine with the HDF5 writer, for the plan tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bluesky import RunEngine

from labcim import HDF5Writer, connect, connect_smu, open_runs
from labcim.engine import run_engine
from labcim.twin.sim_url import connect_chip
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer
from plans import forming, iv_sweep

IV_LIMITS = {"current_limit": 5e-5, "reset_current_limit": 1e-3}
"""Compliance of the I-V cycles (A): SET and RESET."""


def run_plan(out: Path, plan: Any) -> Any:
    """Run ``plan`` with an HDF5 writer at ``out``; return the run read back from disk."""
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(out))
    RE(plan)
    return open_runs(out)[-1]


def on_board(url: str, out: Path, make_plan: Callable[[Any], Any]) -> tuple[Any, Any]:
    """Connect ``url``, run ``make_plan(board)``; return (board, run read back)."""
    board = connect(url)
    return board, run_plan(out, make_plan(board))


def on_chip(chip: Any, out: Path, make_plan: Callable[[Any], Any]) -> tuple[Any, Any]:
    """Run ``make_plan(board)`` on the board of a simulated ``chip`` the test built and
    keeps (``mock_hw.chip.Chip``: the simulator's ground truth, for physics checks);
    return (board, run read back).  The plan reads the chip only through the wire."""
    board = connect_chip(chip)
    return board, run_plan(out, make_plan(board))


def pulses_applied(board: Any) -> int:
    """Pulses the board has applied since it started (its STATUS reply)."""
    return board.client.status()["pulses_applied"]


def formed_and_swept(out: Path, cycles: int, **connect: Any) -> Any:
    """The runs at ``out`` of forming a simulated SMU's RRAM device (seed 3), then
    ``cycles`` I-V cycles of it (``connect``: `labcim.connect_smu`'s, e.g. ``name``)."""
    RE = run_engine(out, progress=False)
    with SMUServer(ProbedRRAM(np.random.default_rng(3))) as server:
        smu = connect_smu(server.resource, **connect)
        try:
            RE(forming(smu, target_current=50e-6, v_stop=4.5))
            RE(
                iv_sweep(
                    smu, 1.5, -1.5, cycles=cycles, current_limit=5e-5, reset_current_limit=1e-3
                )
            )
        finally:
            smu.close()
    return open_runs(out)
