"""Running labcim's plans under a RunEngine with the HDF5 writer, for the plan tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bluesky import RunEngine

from labcim import HDF5Writer, connect, open_runs
from labcim.twin.sim_url import connect_chip


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
