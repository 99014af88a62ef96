"""TDP write-verify of every device of a simulated 64-core HERMES-like chip.

Direct: all cores are programmed by one strategy state on a ``mock_hw.chip.Chip``: the
cores are stacked along the rows (``(2, cores * 256, 256)`` targets), so each step is one
vectorized pass over the whole chip (16.8 M devices).  Each core is read right after its
own pulses, as HERMES's per-core programming units would; the simulator has one clock
for the whole chip, and reading every core only after pulsing all of them would let the
50 ms PCM relaxation show up in verify reads.  Weights are uniform in [-1, 1] with 30 %
zeros (the HERMES MVM test distribution).  The timed part also holds what
``tdp_program`` does beyond the strategy: the targets from the weights, each read's
error figures, the settle time and the final verify read.

Full stack: ``tdp_program`` of the same weights over every core of
``sim://pcm-hermes`` under a RunEngine with the HDF5 writer subscribed (one strategy
state per core).

Floor: the direct work through the wire codec (a board client of the chip over the
in-process link ``sim://`` opens), with every core's map of every iteration appended
with plain h5py and fsynced at the end (``bench_plans.PlainSave``), as the plan's events
hold them.  The three alternate repeat by repeat.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.bench_plans import SETTLE, PlainSave, in_fresh_directory, stack_trial, through
from benchmarks.harness import Record, interleave, main
from labcim.characterization import cell_conductance, error_stats
from labcim.mapping import weight_scale, weights_to_targets
from labcim.twin.simchip import chip_strategy
from labcim.writeverify import PulseBatch, run_write_verify
from mock_hw.chip import Chip
from plans import tdp_program


def _weights(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1.0, 1.0, (rows, cols))
    w[rng.random((rows, cols)) < 0.3] = 0.0
    return w


def _per_cell(a: np.ndarray) -> np.ndarray:
    """(cores, 2, rows, cols) -> (2, cores * rows, cols), the stacked layout."""
    return a.transpose(1, 0, 2, 3).reshape(2, -1, a.shape[-1])


def _direct_trial(cores: int, weights: np.ndarray, last: dict, save: str | None = None):
    """A trial programming every core directly; leaves chip, state, pulses in ``last``.

    With ``save`` (a directory), the floor: the chip is reached through the wire codec
    and the maps are saved there (see the module docstring).
    """

    def trial() -> float:
        last.clear()
        chip = Chip.from_preset("pcm-hermes", cores=cores, seed=0)
        board = through(chip, save is not None)
        t0 = time.perf_counter()
        saved = None if save is None else PlainSave(save)
        info = chip.identify()
        rows, dpp = info["rows"], info["devices_per_polarity"]
        strategy = chip_strategy(chip)
        targets = weights_to_targets(weights, strategy.g_cell_max, weight_scale(weights))
        readback = np.empty((2 * dpp, cores * rows, info["cols"]), np.float32)
        pulses = 0

        def read_core(c: int) -> None:  # with the figures tdp_program records of a read
            block = slice(c * rows, (c + 1) * rows)
            readback[:, block] = board.read_conductance(c)
            err = cell_conductance(readback[:, block], dpp) - targets[:, block]
            error_stats(err)
            int((np.abs(err) > strategy.tolerance).sum())

        def apply(batch: PulseBatch) -> None:
            nonlocal pulses
            pulses += len(batch)
            for c in range(cores):
                b = batch.rows_between(c * rows, (c + 1) * rows)
                board.apply_pulses(
                    c, b.row - c * rows, b.col, b.device, b.kind, b.amplitude, b.width
                )
                read_core(c)
            if saved:  # an event of the plan: every core's map of the iteration
                saved.add("maps", readback)

        for c in range(cores):
            read_core(c)
        if saved:
            saved.add("weights", weights)
            saved.add("targets", targets)
            saved.add("maps", readback)
        state = run_write_verify(strategy, targets, lambda: readback, apply)
        if saved:  # as the plan waits: to the clock read now plus the settle time
            board.wait_until(board.clock() + SETTLE)
        else:
            chip.advance(SETTLE)
        for c in range(cores):
            readback[:, c * rows : (c + 1) * rows] = board.read_conductance(c)
        g = cell_conductance(readback, dpp)
        float((g - state.goal)[~state.failed].std())
        if saved:
            saved.add("verify_maps", readback)
            saved.close()
        seconds = time.perf_counter() - t0
        last.update(chip=chip, state=state, strategy=strategy, pulses=pulses)
        return seconds

    return trial


def run(quick: bool = False) -> list[Record]:
    """Program a full 64-core chip (``quick``: 4 cores) with TDP, directly and through the
    full stack; time and error figures."""
    cores = 4 if quick else 64
    weights = _weights(cores * 256, 256, 1)
    last: dict = {}
    t = interleave(
        {
            "direct": _direct_trial(cores, weights, last),
            "stack": stack_trial(
                lambda board: tdp_program(board, weights), f"sim://pcm-hermes?cores={cores}&seed=0"
            ),
            "floor": in_fresh_directory(lambda d: _direct_trial(cores, weights, {}, d)),
        },
        1 if quick else 3,
    )
    chip, state, strategy = last["chip"], last["state"], last["strategy"]
    chip.advance(1.0)  # let the relaxation show: the error HERMES reports
    g = _per_cell(chip.model.programmed_conductance(chip.state).sum(axis=2))
    working = ~_per_cell(chip.state["stuck"].any(axis=2))
    err = (g - state.goal)[working]
    std = float(err.std())
    devices = chip.state["stuck"].size
    label = f"tdp pcm-hermes {cores} cores ({devices / 1e6:.1f} M devices)"
    direct = f"direct ({t.median('direct'):.1f} s)"
    return [
        t.duration(f"{label}: direct, total", "direct", "<= 30"),
        t.ratio(f"{label}: full stack / direct", "stack", "direct", direct, "<= 1.3"),
        t.ratio(
            f"{label}: full stack / floor",
            "stack",
            "floor",
            f"direct through the wire codec, maps saved with plain h5py + fsync "
            f"({t.median('floor'):.1f} s)",
        ),
        t.rate(f"{label}: device-pulse updates, direct", "direct", last["pulses"], "1/s"),
        t.plain(f"{label}: pulses per device", last["pulses"] / devices, ""),
        t.plain(f"{label}: pulse batches", state.iteration, ""),
        t.plain(f"{label}: weight error", std, "uS"),
        t.plain(f"{label}: weight error / g_cell_max", 100 * std / strategy.g_cell_max, "%"),
        t.plain(f"{label}: converged (working cells)", 100 * state.converged[working].mean(), "%"),
        t.plain(f"{label}: saturated (working cells)", 100 * state.saturated[working].mean(), "%"),
    ]


if __name__ == "__main__":
    main(run)
