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

A second ratio divides the full stack by the floor the project's own rules set: the
same direct work through the wire codec (the simulator is reached through the protocol)
with every array the plan records appended as it is produced to an HDF5 file with plain
h5py and fsynced before the end (data reaches disk before the run ends).  What is left
above that floor is the framework's own cost: RunEngine, devices, documents, writer.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
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


class PlainSave:
    """The arrays a plan records, appended with plain h5py as they are produced.

    One resizable dataset per name, chunked by row, in a SWMR file as the writer opens
    it; at :meth:`close` the data is flushed and fsynced, then the count of rows, then
    the end: the writer's durability at the end of a run that is shorter than its flush
    interval, with no RunEngine, documents or validation.

    Parameters
    ----------
    directory : str
        Where the file goes (a fresh name per instance; the caller removes it:
        `in_fresh_directory`).
    """

    def __init__(self, directory: str) -> None:
        self.path = Path(directory) / f"plain_{time.perf_counter_ns()}.h5"
        self.file = h5py.File(self.path, "w", libver="latest")
        self.file.swmr_mode = True
        self.rows = 0
        self._datasets: dict[str, h5py.Dataset] = {}  # kept open, as the writer does

    def add(self, name: str, array: np.ndarray) -> None:
        """Append ``array`` as the next row of dataset ``name``."""
        a = np.asarray(array)
        d = self._datasets.get(name)
        if d is None:
            d = self._datasets[name] = self.file.create_dataset(
                name, (0, *a.shape), a.dtype, maxshape=(None, *a.shape), chunks=(1, *a.shape)
            )
        n = d.shape[0]
        d.resize(n + 1, axis=0)
        d[n] = a
        self.rows = max(self.rows, n + 1)

    def close(self) -> None:
        """Flush and fsync the data, then the row count and the end, and close."""
        self._sync()
        self.file.create_dataset("seq_num", data=np.arange(1, self.rows + 1))
        self.file.attrs["end_time"] = time.time()
        self._sync()
        self.file.close()

    def _sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.id.get_vfd_handle())


def in_fresh_directory(make_trial: Callable[[str], Callable[[], float]]) -> Callable[[], float]:
    """A trial of ``make_trial(directory)`` in a temporary directory of its own, made
    before and removed after the timed part (a floor writes up to 1.6 GB a trial)."""

    def trial() -> float:
        with tempfile.TemporaryDirectory() as directory:
            return make_trial(directory)()

    return trial


def through(chip: Chip, wire: bool) -> Chip | BoardClient:
    """What the direct side calls: ``chip`` itself, or with ``wire`` a board client of it
    over the in-process link ``sim://`` opens (codec, framing, CRC; no RunEngine, devices
    or writer)."""
    return BoardClient(open_chip(chip)) if wire else chip


def direct_program_trial(weights: np.ndarray, wire: bool = False, save: str | None = None):
    """A trial of ``tdp_program``'s work on a fresh chip (see the module docstring);
    with ``save`` (a directory) every map read is also appended there (`PlainSave`)."""

    def trial() -> float:
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        board = through(chip, wire)
        t0 = time.perf_counter()
        saved = None if save is None else PlainSave(save)
        strategy = chip_strategy(chip)
        targets = weights_to_targets(weights, strategy.g_cell_max, weight_scale(weights))
        if saved:  # the arrays of the plan's start document
            saved.add("weights", weights)
            saved.add("targets", targets)

        def read() -> np.ndarray:  # with the figures the plan records of every read
            g = board.read_conductance(0)
            err = cell_conductance(g, strategy.dpp) - targets  # TDP's goal is the targets
            error_stats(err)
            int((np.abs(err) > strategy.tolerance).sum())
            if saved:
                saved.add("conductance_map", g)
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
        final = board.read_conductance(0)
        g = cell_conductance(final, strategy.dpp)
        float((g - state.goal)[~state.failed].std())
        if saved:
            saved.add("verify_map", final)
            saved.close()
        return time.perf_counter() - t0

    return trial


def direct_mvm_trial(n: int, rows: int, batch: int, wire: bool = False, save: str | None = None):
    """The plan's characterization done by hand on the chip: inputs from the seed,
    reference read, MVM batches, ideal outputs from the reference, MVM error and affine
    fit; nothing recorded, or with ``save`` (a directory) what the plan records of each
    batch (inputs, codes, outputs, ideal outputs) and the reference map (`PlainSave`)."""

    def trial() -> float:
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        board = through(chip, wire)
        t0 = time.perf_counter()
        saved = None if save is None else PlainSave(save)
        cfg, lsb = chip.config(0), chip.adc_lsb(0)
        codes = quantize_inputs(hermes_inputs(np.random.default_rng(SEED), n, rows), cfg.dac_bits)
        g_ref = board.read_conductance(0)
        reference = differential_weights(g_ref, chip.spec.devices_per_polarity)
        measured, ideal = [], []
        for lo in range(0, n, batch):
            x = codes[lo : lo + batch]
            out = board.mvm(0, x)
            measured.append(out * lsb)
            ideal.append(ideal_outputs(x, reference, cfg.read_voltage, cfg.dac_bits))
            if saved:
                for name, a in (("inputs", x), ("codes", out), ("outputs", measured[-1])):
                    saved.add(name, a)
                saved.add("ideal", ideal[-1])
        y, y_ideal = np.concatenate(measured), np.concatenate(ideal)
        mvm_error(y, y_ideal)
        linear_fit(y, y_ideal)
        if saved:
            saved.add("reference_map", g_ref)
            saved.close()
        return time.perf_counter() - t0

    return trial


def run(quick: bool = False) -> list[Record]:
    """The overhead ratios, over the direct work and over the floor (``quick``: 2
    repeats each and 2,000 vectors)."""
    repeats = 2 if quick else 7
    rows = 256
    weights = hermes_weights(np.random.default_rng(1), rows, rows)
    n, batch = (2000, 1000) if quick else (10_000, 1000)
    tdp = interleave(
        {
            "stack": stack_trial(lambda b: tdp_program(b, weights, cores=[0])),
            "direct": direct_program_trial(weights),
            "floor": in_fresh_directory(lambda d: direct_program_trial(weights, wire=True, save=d)),
        },
        repeats,
    )
    mvm = interleave(
        {
            "stack": stack_trial(
                lambda b: mvm_characterization(
                    b, n_vectors=n, batch_size=batch, seed=SEED, program=False
                )
            ),
            "direct": direct_mvm_trial(n, rows, batch),
            "floor": in_fresh_directory(
                lambda d: direct_mvm_trial(n, rows, batch, wire=True, save=d)
            ),
        },
        repeats,
    )
    floor = "direct through the wire codec, arrays saved with plain h5py + fsync"
    tdp_name = "tdp_program 1 core 256x256 dpp=2"
    mvm_name = f"mvm_characterization {n} vectors"
    return [
        tdp.ratio(
            f"{tdp_name}: full stack / direct",
            "stack",
            "direct",
            f"run_write_verify on Chip ({tdp.median('direct'):.3f} s)",
            "<= 1.3",
        ),
        tdp.ratio(
            f"{tdp_name}: full stack / floor",
            "stack",
            "floor",
            f"{floor} ({tdp.median('floor'):.3f} s)",
        ),
        mvm.ratio(
            f"{mvm_name}: full stack / direct",
            "stack",
            "direct",
            f"same work on Chip ({mvm.median('direct'):.3f} s)",
            "<= 1.3",
        ),
        mvm.ratio(
            f"{mvm_name}: full stack / floor",
            "stack",
            "floor",
            f"{floor} ({mvm.median('floor'):.3f} s)",
        ),
    ]


if __name__ == "__main__":
    main(run)
