"""Digits-MLP inference throughput: full stack vs the engine on the chip vs numpy float32.

The same work in each of the three, measured in one run (samples per second):

- full stack: ``network_inference`` under a RunEngine with the HDF5 writer subscribed,
  on ``sim://pcm-hermes`` (ophyd devices, board client, wire codec), ``program=False``
  (programming is not inference): calibration on 300 inputs, the drift reference and
  one global drift compensation, then every batch of 256 inputs with its event
  (predictions, per-layer errors);
- direct: the same engine steps on a ``mock_hw.chip.Chip`` called directly
  (``run_steps`` with a plain backend) with the same figures as the plan: the software
  reference outputs, calibrate, compensate, predict batch by batch with each batch's
  per-layer errors, the scores at the end;
- numpy: the software model's forward pass with float32 matrices;
- floor: the direct work with every MVM through the wire codec (a board client of the
  chip over the in-process link ``sim://`` opens) and each batch's predictions appended
  with plain h5py, fsynced at the end (``bench_plans.PlainSave``).

The test set (540 digits) is tiled to ``n`` inputs; the model is trained before the
timing (the plan is given the Model, not the task name).
"""

from __future__ import annotations

import time
import types

import numpy as np

from benchmarks.bench_plans import PlainSave, in_fresh_directory, stack_trial
from benchmarks.harness import Record, interleave, main, timed
from drivers.board import BoardClient
from labcim.network.execution import prepare, run_steps
from labcim.network.scores import output_kind
from labcim.network.tasks import digits_mlp
from labcim.twin.sim_url import open_chip
from labcim.twin.simchip import SimChipBackend, chip_strategy
from mock_hw.chip import Chip
from plans.inference import CALIBRATION_ROWS, layer_errors, network_inference, scores

URL = "sim://pcm-hermes?cores=3&seed=1"
BATCH = 256


class _WireBackend(SimChipBackend):
    """The direct backend with its MVMs sent through a board client of the chip."""

    def __init__(self, chip: Chip, g_cell_max: float) -> None:
        super().__init__(chip, g_cell_max)
        self.client = BoardClient(open_chip(chip))

    def mvm(self, core, codes, row_start=0, col_start=0, col_stop=None) -> np.ndarray:
        self.calls += 1
        return self.client.mvm(
            core, codes, row_start=row_start, col_start=col_start, col_stop=col_stop
        )


def _direct_trial(model, X: np.ndarray, X_cal: np.ndarray, save: str | None = None):
    """The engine on the chip; with ``save`` (a directory), the floor: MVMs through the
    wire codec and each batch's predictions saved there."""

    def trial() -> float:
        chip = Chip.from_preset("pcm-hermes", cores=3, seed=1)
        backend = (SimChipBackend if save is None else _WireBackend)(
            chip, chip_strategy(chip).g_cell_max
        )
        t0 = time.perf_counter()
        saved = None if save is None else PlainSave(save)
        reference = model.forward(X)
        dep = prepare(model, backend, X)
        run_steps(backend, dep.calibrate(X_cal))
        run_steps(backend, dep.compensate_drift("global"))
        job = types.SimpleNamespace(model=model)  # all that layer_errors reads of a job
        outputs = []
        for lo in range(0, len(X), BATCH):
            outs = run_steps(backend, dep.forward(X[lo : lo + BATCH]))
            outputs.append(outs[-1])
            predictions = outs[-1].argmax(axis=1)
            layer_errors(job, X[lo : lo + BATCH], outs)
            if saved:
                padded = np.full(BATCH, -1, np.int64)  # as the plan pads a short batch
                padded[: len(predictions)] = predictions
                saved.add("predictions", padded)
        scores(np.concatenate(outputs), None, reference, output_kind(model))
        if saved:
            saved.close()
        return time.perf_counter() - t0

    return trial


def _numpy_float32(model, X: np.ndarray):
    X32 = X.astype(np.float32)
    mats = {
        i: (la.matrix.astype(np.float32), la.bias.astype(np.float32))
        for i, la in model.weight_layers()
    }
    return lambda: model.run(X32, lambda i, la, x: x @ mats[i][0] + mats[i][1])


def run(quick: bool = False) -> list[Record]:
    """Samples per second of the three, and the ratios (``quick``: 2 repeats, 2,160
    inputs)."""
    task = digits_mlp()
    n = 2160 if quick else 10_800
    X = np.resize(task.X_test, (n, task.X_test.shape[1]))
    X_cal = task.X_train[:CALIBRATION_ROWS]
    t = interleave(
        {
            "stack": stack_trial(
                lambda board: network_inference(
                    board,
                    task.model,
                    X,
                    X_cal=X_cal,
                    times=[0.0],
                    program=False,
                    batch_size=BATCH,
                ),
                URL,
            ),
            "direct": _direct_trial(task.model, X, X_cal),
            "floor": in_fresh_directory(lambda d: _direct_trial(task.model, X, X_cal, save=d)),
            "numpy": timed(_numpy_float32(task.model, X), number=5),
        },
        2 if quick else 5,
    )
    name = f"digits MLP {n} samples, batch {BATCH}"
    return [
        t.ratio(
            f"{name}: full stack / direct",
            "stack",
            "direct",
            f"engine on Chip ({t.median('direct'):.3f} s)",
            "<= 1.5",
        ),
        t.ratio(
            f"{name}: full stack / floor",
            "stack",
            "floor",
            f"engine through the wire codec, predictions saved with plain h5py + fsync "
            f"({t.median('floor'):.3f} s)",
        ),
        t.rate(f"{name}: full stack", "stack", n, "1/s"),
        t.rate(f"{name}: engine on Chip directly", "direct", n, "1/s"),
        t.rate(f"{name}: numpy float32 forward", "numpy", n, "1/s"),
    ]


if __name__ == "__main__":
    main(run)
