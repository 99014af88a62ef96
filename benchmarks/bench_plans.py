"""Full-stack overhead of the plans: RunEngine + devices + codec + HDF5 writer vs the chip.

Each figure is the wall time of a plan on ``sim://pcm-hermes`` (RunEngine, ophyd
devices, board client and wire codec, HDF5 writer subscribed) divided by the time of the
same work done on a ``mock_hw.chip.Chip`` directly with no framework, on a chip built
with the same seed; the two alternate repeat by repeat, each on a fresh chip:

- ``tdp_program`` of one full 256 x 256 core (two devices per polarity) vs
  ``labcim.writeverify.run_write_verify`` with the same strategy, the targets computed
  from the weights in the timed part as the plan does, the plan's per-read error
  figures (cells out of tolerance, error statistics), the settle time and the final
  verify read with its weight error;
- ``mvm_characterization`` of 10,000 input vectors (batches of 1,000, 8-bit in/out,
  4-phase, no programming) vs the same characterization by hand on the chip: the inputs
  drawn from the plan's seed, a reference conductance read, a ``Chip.mvm`` loop over the
  same batches, the ideal outputs, the MVM error and the affine fit (everything but
  recording).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
from bluesky import RunEngine

from benchmarks.harness import Record, interleave, main
from drivers.board import BoardClient
from labcim.characterization import (
    cell_conductance,
    differential_weights,
    error_stats,
    hermes_inputs,
    hermes_weights,
    ideal_outputs,
    quantize_inputs,
)
from labcim.connection import connect
from labcim.hdf5 import HDF5Writer
from labcim.mapping import weight_scale, weights_to_targets
from labcim.metrics import linear_fit, mvm_error
from labcim.twin.sim_url import open_chip
from labcim.twin.simchip import chip_strategy
from labcim.writeverify import run_write_verify
from mock_hw.chip import Chip
from plans import mvm_characterization, tdp_program

PRESET = "pcm-hermes"
SEED = 0
SETTLE = 1.0  # s, tdp_program's default wait before the verify read


def stack_trial(
    plan_factory, url: str = f"sim://{PRESET}?cores=1&seed={SEED}", writer: bool = True
):
    """A trial: wall time (s) of ``RE(plan)`` on a fresh board, HDF5 writer subscribed
    (without ``writer``: none, to measure the writer's share)."""

    def trial() -> float:
        board = connect(url)
        try:
            with tempfile.TemporaryDirectory() as out:
                RE = RunEngine({})
                if writer:
                    RE.subscribe(HDF5Writer(out))
                t0 = time.perf_counter()
                RE(plan_factory(board))
                return time.perf_counter() - t0
        finally:
            board.close()

    return trial


def _through(chip: Chip, wire: bool) -> Chip | BoardClient:
    """What the direct side calls: ``chip`` itself, or with ``wire`` a board client of it
    over the in-process link ``sim://`` opens (codec, framing, CRC; no RunEngine, devices
    or writer)."""
    return BoardClient(open_chip(chip)) if wire else chip


def direct_program_trial(weights: np.ndarray, wire: bool = False):
    """A trial of ``tdp_program``'s work on a fresh chip (see the module docstring)."""

    def trial() -> float:
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        board = _through(chip, wire)
        t0 = time.perf_counter()
        strategy = chip_strategy(chip)
        targets = weights_to_targets(weights, strategy.g_cell_max, weight_scale(weights))

        def read() -> np.ndarray:  # with the figures the plan records of every read
            g = board.read_conductance(0)
            err = cell_conductance(g, strategy.dpp) - targets  # TDP's goal is the targets
            error_stats(err)
            int((np.abs(err) > strategy.tolerance).sum())
            return g

        state = run_write_verify(
            strategy,
            targets,
            read,
            lambda b: board.apply_pulses(0, b.row, b.col, b.device, b.kind, b.amplitude, b.width),
        )
        if wire:  # as the plan waits: to the clock read now plus the settle time
            board.wait_until(board.clock() + SETTLE)
        else:
            chip.advance(SETTLE)
        g = cell_conductance(board.read_conductance(0), strategy.dpp)
        float((g - state.goal)[~state.failed].std())
        return time.perf_counter() - t0

    return trial


def direct_mvm_trial(n: int, rows: int, batch: int, wire: bool = False):
    """The plan's characterization done by hand on the chip: inputs from the seed,
    reference read, MVM batches, ideal outputs from the reference, MVM error and affine
    fit; nothing recorded."""

    def trial() -> float:
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        board = _through(chip, wire)
        t0 = time.perf_counter()
        cfg, lsb = chip.config(0), chip.adc_lsb(0)
        codes = quantize_inputs(hermes_inputs(np.random.default_rng(SEED), n, rows), cfg.dac_bits)
        reference = differential_weights(board.read_conductance(0), chip.spec.devices_per_polarity)
        measured, ideal = [], []
        for lo in range(0, n, batch):
            x = codes[lo : lo + batch]
            measured.append(board.mvm(0, x) * lsb)
            ideal.append(ideal_outputs(x, reference, cfg.read_voltage, cfg.dac_bits))
        y, y_ideal = np.concatenate(measured), np.concatenate(ideal)
        mvm_error(y, y_ideal)
        linear_fit(y, y_ideal)
        return time.perf_counter() - t0

    return trial


def run(quick: bool = False) -> list[Record]:
    """The two overhead ratios (``quick``: 2 repeats each and 2,000 vectors)."""
    repeats = 2 if quick else 7
    rows = 256
    weights = hermes_weights(np.random.default_rng(1), rows, rows)
    tdp = interleave(
        {
            "stack": stack_trial(lambda b: tdp_program(b, weights, cores=[0])),
            "direct": direct_program_trial(weights),
        },
        repeats,
    )
    n, batch = (2000, 1000) if quick else (10_000, 1000)
    mvm = interleave(
        {
            "stack": stack_trial(
                lambda b: mvm_characterization(
                    b, n_vectors=n, batch_size=batch, seed=SEED, program=False
                )
            ),
            "direct": direct_mvm_trial(n, rows, batch),
        },
        repeats,
    )
    return [
        tdp.ratio(
            "tdp_program 1 core 256x256 dpp=2: full stack / direct",
            "stack",
            "direct",
            f"run_write_verify on Chip ({tdp.median('direct'):.3f} s)",
            "<= 1.3",
        ),
        mvm.ratio(
            f"mvm_characterization {n} vectors: full stack / direct",
            "stack",
            "direct",
            f"same work on Chip ({mvm.median('direct'):.3f} s)",
            "<= 1.3",
        ),
    ]


if __name__ == "__main__":
    main(run)
