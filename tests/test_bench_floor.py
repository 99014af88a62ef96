"""The benchmarks' floor does the plans' work and saves what they record.

``labcim bench plans`` divides the full stack by a floor (the direct work through the
wire codec, with every recorded array appended by plain h5py and fsynced).  That ratio
means something only if the floor writes what the plan's run file holds.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from bluesky import RunEngine

from benchmarks import bench_inference, bench_plans, bench_program
from labcim.characterization import hermes_weights
from labcim.connection import connect
from labcim.hdf5 import HDF5Writer
from labcim.network.tasks import digits_mlp
from plans import mvm_characterization, tdp_program
from plans.inference import CALIBRATION_ROWS, network_inference

BIG = 100_000  # bytes: the arrays that decide the cost; figures and metadata are small


def _arrays(path) -> dict[str, int]:
    """{dtype: bytes} of the datasets of ``path`` larger than BIG."""
    found: dict[str, int] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.nbytes > BIG:
            found[obj.dtype.str] = found.get(obj.dtype.str, 0) + obj.nbytes

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def _plan_file(plan, tmp_path, cores: int = 1):
    board = connect(f"sim://{bench_plans.PRESET}?cores={cores}&seed={bench_plans.SEED}")
    try:
        RE = RunEngine({})
        RE.subscribe(HDF5Writer(tmp_path / "run"))
        RE(plan(board))
    finally:
        board.close()
    (path,) = (tmp_path / "run").glob("run_*.h5")
    return path


@pytest.mark.slow  # three plan runs and three trials: several seconds
@pytest.mark.parametrize("case", ["tdp", "mvm", "cores"])
def test_the_floor_writes_the_arrays_the_plan_records(case, tmp_path):
    cores = 1
    if case == "cores":  # the 64-core benchmark's trial, on 2 cores
        cores = 2
        weights = bench_program._weights(cores * 256, 256, 1)
        plan = lambda board: tdp_program(board, weights)  # noqa: E731
        trial = bench_program._direct_trial(cores, weights, {}, str(tmp_path))
    elif case == "tdp":
        weights = hermes_weights(np.random.default_rng(1), 256, 256)
        plan = lambda board: tdp_program(board, weights, cores=[0])  # noqa: E731
        trial = bench_plans.direct_program_trial(weights, wire=True, save=str(tmp_path))
    else:
        plan = lambda board: mvm_characterization(  # noqa: E731
            board, n_vectors=2000, batch_size=1000, seed=bench_plans.SEED, program=False
        )
        trial = bench_plans.direct_mvm_trial(2000, 256, 1000, wire=True, save=str(tmp_path))
    recorded = _arrays(_plan_file(plan, tmp_path, cores))
    assert trial() > 0
    (floor,) = tmp_path.glob("plain_*.h5")
    saved = _arrays(floor)
    # The same bytes of each type: a run of the same seed takes the same iterations or
    # batches either way (maps float32, inputs int16, codes int32, float64 figures).
    assert saved.keys() == recorded.keys()
    for key, size in recorded.items():
        assert saved[key] == pytest.approx(size, rel=0.05), key
    with h5py.File(floor, "r") as f:  # closed as the writer closes: rows counted, ended
        assert "end_time" in f.attrs and len(f["seq_num"]) >= 2


@pytest.mark.slow  # a plan run and a trial: a few seconds
def test_the_inference_floor_is_the_same_work_as_the_plan(tmp_path):
    """Same chip seed, same engine steps, every MVM through the same codec: the floor's
    saved predictions are the plan's, bit for bit."""
    task = digits_mlp()
    X = np.resize(task.X_test, (600, task.X_test.shape[1]))
    X_cal = task.X_train[:CALIBRATION_ROWS]
    board = connect(bench_inference.URL)
    try:
        RE = RunEngine({})
        RE.subscribe(HDF5Writer(tmp_path / "run"))
        RE(
            network_inference(
                board, task.model, X, X_cal=X_cal, times=[0.0], program=False, batch_size=256
            )
        )
    finally:
        board.close()
    assert bench_inference._direct_trial(task.model, X, X_cal, save=str(tmp_path))() > 0
    (run,) = (tmp_path / "run").glob("run_*.h5")
    (floor,) = tmp_path.glob("plain_*.h5")
    with h5py.File(run, "r") as a, h5py.File(floor, "r") as b:
        recorded = a["entry/primary/data/predictions"][()]
        np.testing.assert_array_equal(b["predictions"][()], recorded)
    assert recorded.shape == (3, 256) and (recorded[-1, 600 - 512 :] == -1).all()
