"""Running labcim's plans under a RunEngine with the HDF5 writer, for the plan tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bluesky import RunEngine

from labcim import HDF5Writer, connect, open_runs


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
