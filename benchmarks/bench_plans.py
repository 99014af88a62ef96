"""Full-stack overhead of the plans: RunEngine + devices + codec + HDF5 writer vs the chip.

Each figure is the wall time of a plan on ``sim://pcm-hermes`` (RunEngine, ophyd
devices, board client and wire codec, HDF5 writer subscribed) divided by the time of the
same work done on a ``mock_hw.chip.Chip`` directly with no framework, measured in the
same run on a chip built with the same seed:

- ``tdp_program`` of one full 256 x 256 core (two devices per polarity) vs
  ``labcim.writeverify.run_write_verify`` with the same strategy and targets;
- ``mvm_characterization`` of 10,000 input vectors (batches of 1,000, 8-bit in/out,
  4-phase, no programming) vs the same characterization by hand on the chip: a reference
  conductance read, a ``Chip.mvm`` loop over the same batches, the ideal outputs, the MVM
  error and the affine fit (everything but recording).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
from bluesky import RunEngine

from benchmarks.common import Record, main
from labcim.characterization import (
    differential_weights,
    hermes_inputs,
    hermes_weights,
    ideal_outputs,
    quantize_inputs,
)
from labcim.connection import connect
from labcim.hdf5 import HDF5Writer
from labcim.mapping import weight_scale, weights_to_targets
from labcim.metrics import linear_fit, mvm_error
from labcim.writeverify import run_write_verify, strategy_for_chip
from mock_hw.chip import Chip
from plans import mvm_characterization, tdp_program

PRESET = "pcm-hermes"
SEED = 0


def _stack_seconds(plan_factory, repeat: int) -> float:
    """Best wall time (s) of ``RE(plan)`` on a fresh board, HDF5 writer subscribed."""
    best = float("inf")
    for _ in range(repeat):
        board = connect(f"sim://{PRESET}?cores=1&seed={SEED}")
        with tempfile.TemporaryDirectory() as out:
            RE = RunEngine({})
            RE.subscribe(HDF5Writer(out))
            t0 = time.perf_counter()
            RE(plan_factory(board))
            best = min(best, time.perf_counter() - t0)
        board.close()
    return best


def _direct_program_seconds(weights: np.ndarray, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        info = chip.identify()
        strategy = strategy_for_chip("tdp", info)
        targets = weights_to_targets(weights, strategy.g_cell_max, weight_scale(weights))
        t0 = time.perf_counter()
        run_write_verify(
            strategy,
            targets,
            lambda chip=chip: chip.read_conductance(0),
            lambda b, chip=chip: chip.apply_pulses(
                0, b.row, b.col, b.device, b.kind, b.amplitude, b.width
            ),
        )
        best = min(best, time.perf_counter() - t0)
    return best


def _direct_mvm_seconds(codes: np.ndarray, batch: int, repeat: int) -> float:
    """The plan's characterization done by hand on the chip: reference read, MVM batches,
    ideal outputs from the reference, MVM error and affine fit; nothing recorded."""
    best = float("inf")
    for _ in range(repeat):
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        t0 = time.perf_counter()
        dpp = chip.spec.devices_per_polarity
        reference = differential_weights(chip.read_conductance(0), dpp)
        cfg, lsb = chip.config(0), chip.adc_lsb(0)
        measured, ideal = [], []
        for lo in range(0, len(codes), batch):
            x = codes[lo : lo + batch]
            measured.append(chip.mvm(0, x) * lsb)
            ideal.append(ideal_outputs(x, reference, cfg.read_voltage, cfg.dac_bits))
        y, y_ideal = np.concatenate(measured), np.concatenate(ideal)
        mvm_error(y, y_ideal)
        linear_fit(y, y_ideal)
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False) -> list[Record]:
    """The two overhead ratios (``quick``: one trial each and 2,000 vectors)."""
    repeat = 1 if quick else 3
    rows = cols = 256
    weights = hermes_weights(np.random.default_rng(1), rows, cols)
    direct_tdp = _direct_program_seconds(weights, repeat)
    stack_tdp = _stack_seconds(lambda b: tdp_program(b, weights, cores=[0]), repeat)

    n, batch = (2000, 1000) if quick else (10_000, 1000)
    codes = quantize_inputs(hermes_inputs(np.random.default_rng(SEED), n, rows), 8)
    direct_mvm = _direct_mvm_seconds(codes, batch, repeat)
    stack_mvm = _stack_seconds(
        lambda b: mvm_characterization(b, n_vectors=n, batch_size=batch, program=False),
        repeat,
    )
    return [
        Record(
            "tdp_program 1 core 256x256 dpp=2: full stack / direct",
            stack_tdp / direct_tdp,
            "x",
            f"run_write_verify on Chip: {direct_tdp:.3f} s",
            "<= 1.5",
        ),
        Record(
            f"mvm_characterization {n} vectors: full stack / direct",
            stack_mvm / direct_mvm,
            "x",
            f"same work on Chip: {direct_mvm:.3f} s",
            "<= 1.5",
        ),
    ]


if __name__ == "__main__":
    main(run)
