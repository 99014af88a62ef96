"""Programming a simulated chip's core with a write-verify strategy, for the physics tests."""

from __future__ import annotations

import numpy as np

from labcim.twin.simchip import chip_strategy
from labcim.writeverify import WriteVerifyState, run_write_verify
from mock_hw.chip import Chip


def write_verify(chip: Chip, name: str, targets: np.ndarray, core: int = 0) -> WriteVerifyState:
    """Program ``targets`` (uS, (2, rows, cols) at the top-left corner) into ``core`` of
    ``chip`` with the strategy ``name`` built from the chip's identity; the final state."""
    r, c = targets.shape[1:]
    return run_write_verify(
        chip_strategy(chip, name),
        targets,
        lambda: chip.read_conductance(core)[:, :r, :c],
        lambda b: chip.apply_pulses(core, b.row, b.col, b.device, b.kind, b.amplitude, b.width),
    )
