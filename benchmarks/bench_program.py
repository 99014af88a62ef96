"""TDP write-verify of every device of a simulated 64-core HERMES-like chip.

All cores are programmed by one strategy state: the cores are stacked along the rows
(``(2, cores * 256, 256)`` targets), so each step is one vectorized pass over the whole
chip (16.8 M devices).  Each core is read right after its own pulses, as HERMES's
per-core programming units would; the simulator has one clock for the whole chip, and
reading every core only after pulsing all of them would let the 50 ms PCM relaxation
show up in verify reads.  Weights are uniform in [-1, 1] with 30 % zeros (the HERMES MVM
test distribution).
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import Record, main
from labcim.mapping import weights_to_targets
from labcim.writeverify import PulseBatch, run_write_verify, strategy_for_chip
from mock_hw.chip import Chip


def _weights(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1.0, 1.0, (rows, cols))
    w[rng.random((rows, cols)) < 0.3] = 0.0
    return w


def _per_cell(a: np.ndarray) -> np.ndarray:
    """(cores, 2, rows, cols) -> (2, cores * rows, cols), the stacked layout."""
    return a.transpose(1, 0, 2, 3).reshape(2, -1, a.shape[-1])


def run(quick: bool = False) -> list[Record]:
    """Program a full 64-core chip (``quick``: 4 cores) with TDP; time and error figures."""
    cores = 4 if quick else 64
    chip = Chip.from_preset("pcm-hermes", cores=cores, seed=0)
    info = chip.identify()
    rows, dpp = info["rows"], info["devices_per_polarity"]
    strategy = strategy_for_chip("tdp", info)
    targets = weights_to_targets(_weights(cores * rows, info["cols"], 1), strategy.g_cell_max, 1.0)
    readback = np.empty((2 * dpp, cores * rows, info["cols"]), np.float32)
    pulses = 0

    def read_core(c: int) -> None:
        readback[:, c * rows : (c + 1) * rows] = chip.read_conductance(c)

    def apply(batch: PulseBatch) -> None:
        nonlocal pulses
        pulses += len(batch)
        for c in range(cores):
            b = batch.rows_between(c * rows, (c + 1) * rows)
            chip.apply_pulses(c, b.row - c * rows, b.col, b.device, b.kind, b.amplitude, b.width)
            read_core(c)

    def read() -> np.ndarray:
        return readback

    t0 = time.perf_counter()
    for c in range(cores):
        read_core(c)
    state = run_write_verify(strategy, targets, read, apply)
    seconds = time.perf_counter() - t0

    chip.advance(1.0)  # let the relaxation show: the error HERMES reports
    g = _per_cell(chip.model.programmed_conductance(chip.state).sum(axis=2))
    working = ~_per_cell(chip.state["stuck"].any(axis=2))
    err = (g - state.goal)[working]
    std = float(err.std())
    devices = chip.state["stuck"].size
    label = f"tdp pcm-hermes {cores} cores ({devices / 1e6:.1f} M devices)"
    return [
        Record(f"{label}: total", seconds, "s", "", "< 60" if not quick else ""),
        Record(f"{label}: device-pulse updates", pulses / seconds, "1/s"),
        Record(f"{label}: pulses per device", pulses / devices, ""),
        Record(f"{label}: pulse batches", state.iteration, ""),
        Record(f"{label}: weight error", std, "uS"),
        Record(f"{label}: weight error / g_cell_max", 100 * std / strategy.g_cell_max, "%"),
        Record(f"{label}: converged (working cells)", 100 * state.converged[working].mean(), "%"),
        Record(f"{label}: saturated (working cells)", 100 * state.saturated[working].mean(), "%"),
    ]


if __name__ == "__main__":
    main(run)
