"""Digits-MLP inference throughput: full stack vs the engine on the chip vs numpy float32.

The same work in each of the three, measured in one run (samples per second):

- full stack: ``network_inference`` under a RunEngine with the HDF5 writer subscribed,
  on ``sim://pcm-hermes`` (ophyd devices, board client, wire codec), ``program=False``
  (programming is not inference): calibration on 300 inputs, the drift reference and
  one global drift compensation, then every batch of 256 inputs with its event
  (predictions, per-layer errors);
- direct: the same engine steps on a ``mock_hw.chip.Chip`` called directly
  (``run_steps`` with a plain backend): calibrate, compensate, predict batch by batch;
- numpy: the software model's forward pass with float32 matrices.

The test set (540 digits) is tiled to ``n`` inputs; the model is trained before the
timing (the plan is given the Model, not the task name).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
from bluesky import RunEngine

from benchmarks.common import Record, best_time, main
from labcim.connection import connect
from labcim.hdf5 import HDF5Writer
from labcim.network.execution import prepare, run_steps
from labcim.network.simchip import SimChipBackend, chip_strategy
from labcim.network.tasks import digits_mlp
from mock_hw.chip import Chip
from plans.inference import CALIBRATION_ROWS, network_inference

URL = "sim://pcm-hermes?cores=3&seed=1"
BATCH = 256


def _stack_seconds(model, X: np.ndarray, X_cal: np.ndarray, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        board = connect(URL)
        with tempfile.TemporaryDirectory() as out:
            RE = RunEngine({})
            RE.subscribe(HDF5Writer(out))
            plan = network_inference(
                board, model, X, X_cal=X_cal, times=[0.0], program=False, batch_size=BATCH
            )
            t0 = time.perf_counter()
            RE(plan)
            best = min(best, time.perf_counter() - t0)
        board.close()
    return best


def _direct_seconds(model, X: np.ndarray, X_cal: np.ndarray, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        chip = Chip.from_preset("pcm-hermes", cores=3, seed=1)
        backend = SimChipBackend(chip, chip_strategy(chip).g_cell_max)
        t0 = time.perf_counter()
        dep = prepare(model, backend, X)
        run_steps(backend, dep.calibrate(X_cal))
        run_steps(backend, dep.compensate_drift("global"))
        for lo in range(0, len(X), BATCH):
            run_steps(backend, dep.forward(X[lo : lo + BATCH]))
        best = min(best, time.perf_counter() - t0)
    return best


def _numpy_float32(model, X: np.ndarray):
    X32 = X.astype(np.float32)
    mats = {
        i: (la.matrix.astype(np.float32), la.bias.astype(np.float32))
        for i, la in model.weight_layers()
    }
    return lambda: model.run(X32, lambda i, la, x: x @ mats[i][0] + mats[i][1])


def run(quick: bool = False) -> list[Record]:
    """Samples per second of the three, and the ratios (``quick``: one trial, 2,160 inputs)."""
    task = digits_mlp()
    n = 2160 if quick else 10_800
    repeat = 1 if quick else 3
    X = np.resize(task.X_test, (n, task.X_test.shape[1]))
    X_cal = task.X_train[:CALIBRATION_ROWS]
    stack = _stack_seconds(task.model, X, X_cal, repeat)
    direct = _direct_seconds(task.model, X, X_cal, repeat)
    software = best_time(_numpy_float32(task.model, X), repeat=5)
    return [
        Record(f"digits MLP {n} samples: full stack", n / stack, "1/s"),
        Record(f"digits MLP {n} samples: engine on Chip directly", n / direct, "1/s"),
        Record(f"digits MLP {n} samples: numpy float32 forward", n / software, "1/s"),
        Record(
            "full stack / direct (time)",
            stack / direct,
            "x",
            f"engine on Chip: {direct:.3f} s",
        ),
    ]


if __name__ == "__main__":
    main(run)
