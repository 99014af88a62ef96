"""network_inference through the full stack: RunEngine + devices + codec + HDF5 writer.

The issue-7 Must-shows on ``sim://pcm-hermes`` (fixed seeds), every figure read back
from the file (``open_runs(...)[-1].summary``).  Times count from the end of
programming (TDP write-verify in the same run).
"""

import json

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus
from plans_support import on_board, pulses_applied

from labcim import HDF5Writer, connect, open_runs
from labcim.network.loaders import save_npz
from labcim.network.model import ModelError
from labcim.network.placement import PlacementError
from labcim.network.tasks import diabetes_regressor, digits_cnn
from mock_hw.board_server import BoardHandler, TcpBoardServer
from mock_hw.chip import Chip
from plans.inference import network_inference

pytestmark = pytest.mark.slow

HOUR, DAY, MONTH = 3600.0, 86400.0, 30 * 86400.0


@pytest.fixture(scope="module")
def mlp_drift(tmp_path_factory):
    """Digits MLP at 1 s / 1 h / 1 day / 1 month, without and with global compensation."""
    out = tmp_path_factory.mktemp("mlp")
    board, run = on_board(
        "sim://pcm-hermes?cores=3&seed=1",
        out,
        lambda b: network_inference(
            b, "digits-mlp", times=[1.0, HOUR, DAY, MONTH], compensation=["none", "global"]
        ),
    )
    return board, run


def test_digits_mlp_within_one_point_of_software_at_one_hour(mlp_drift):
    s = mlp_drift[1].summary
    assert abs(s["t3600s_global_accuracy"] - s["software_accuracy"]) <= 1.0


def test_drift_drops_accuracy_and_global_compensation_recovers_most_of_it(mlp_drift):
    s = mlp_drift[1].summary
    none = [s[f"t{t}s_none_accuracy"] for t in (1, 3600, 86400, 2592000)]
    assert none[3] < none[2] < none[0]
    drop = s["software_accuracy"] - none[3]
    assert s["t2592000s_global_accuracy"] - none[3] > 0.5 * drop > 0


def test_inference_run_records_batches_and_metadata(mlp_drift):
    board, run = mlp_drift
    assert run.exit_status == "success"
    assert run.num_events["primary"] == 4 * 2 * 3  # times x modes x batches of 256
    assert run.num_events["evaluation"] == 8
    predictions = np.asarray(run.streams["primary"]["predictions"])
    assert predictions.shape == (24, 256) and (predictions[2, 540 - 512 :] == -1).all()
    errors = np.asarray(run.streams["primary"]["layer0_error"])
    assert (errors > 0).all() and (errors < 50).all()
    meta = run.metadata
    deployment = meta["deployment"]
    if isinstance(deployment, str):
        deployment = json.loads(deployment)
    assert [t[0] for t in deployment["placement"]["layers"][2]["tiles"]] == [2]
    assert run.summary["program_core0_converged_fraction"] > 0.95
    # the plan restores the cores' settings (auto-ranging changed the ADC gains)
    assert board.core0.adc_gain.get() == 1.0


def test_diabetes_hybrid_beats_pure_analog(tmp_path):
    res = {}
    for budget in (0.0, 0.10):
        _, run = on_board(
            "sim://pcm-hermes?cores=2&seed=1",
            tmp_path / f"b{budget}",
            lambda b, budget=budget: network_inference(
                b,
                "diabetes",
                times=[HOUR, MONTH],
                compensation=["none", "global"],
                digital_budget=budget,
            ),
        )
        res[budget] = run.summary
    analog, hybrid = res[0.0], res[0.10]
    assert hybrid["digital_fraction"] == pytest.approx(0.10, abs=0.005)
    # what the hardware adds to the software output, at 1 h with compensation
    key = "t3600s_global_rmse_vs_software"
    assert hybrid[key] < 0.8 * analog[key]
    # where the analog error is large (1 month, no compensation) it shows in the RMSE
    assert hybrid["t2592000s_none_rmse"] < analog["t2592000s_none_rmse"]
    assert analog["t2592000s_global_rmse"] < analog["t2592000s_none_rmse"]
    assert set(analog) >= {"software_rmse", "software_r2", "t3600s_global_r2"}


def test_digits_cnn_runs_end_to_end(tmp_path):
    _, run = on_board(
        "sim://pcm-hermes?cores=3&seed=1",
        tmp_path,
        lambda b: network_inference(b, "digits-cnn", X_cal=digits_cnn().X_train[:200]),
    )
    s = run.summary
    assert s["t3600s_global_accuracy"] > s["software_accuracy"] - 8.0


def _unsupported_model(tmp_path):
    path = tmp_path / "lstm.npz"
    save_npz(digits_cnn().model, path)
    with np.load(path, allow_pickle=False) as f:
        arrays = dict(f)
    description = json.loads(arrays["__model__"].tobytes())  # JSON as uint8 bytes
    description["layers"][1]["kind"] = "lstm"
    arrays["__model__"] = np.frombuffer(json.dumps(description).encode(), np.uint8)
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    ("cores", "args", "error", "match"),
    [
        (1, {"model": "digits-cnn"}, PlacementError, r"needs 3 cores.*only 1"),
        (
            3,
            {"model": "digits-cnn", "X": np.zeros((4, 64))},
            ModelError,
            "does not match the model input shape",
        ),
        (3, {"model": "UNSUPPORTED"}, ModelError, "unsupported kind 'lstm'"),
        (3, {"model": "digits-mlp", "times": [HOUR, 1.0]}, ValueError, "sorted"),
        (3, {"model": "digits-mlp", "digital_budget": 1.5}, ValueError, "digital_budget"),
        (3, {"model": "digits-mlp", "compensation": ["drift"]}, ValueError, "compensation"),
    ],
)
def test_errors_come_before_any_pulse(tmp_path, cores, args, error, match):
    if args["model"] == "UNSUPPORTED":
        args = {**args, "model": _unsupported_model(tmp_path)}
    board = None

    def plan(b):
        nonlocal board
        board = b
        return network_inference(b, **args)

    with pytest.raises(error, match=match):
        on_board(f"sim://pcm-hermes?cores={cores}&seed=1", tmp_path, plan)
    assert pulses_applied(board) == 0


def small_inference_mid_batch(out, act):
    """A diabetes inference on a TCP board (3 batches of 16) with ``act(server, board)``
    called in the board's worker thread after the first MVM of the 2nd batch (a batch is
    one device operation); returns the RunEngine's exception and the run read back."""
    task = diabetes_regressor()
    server = TcpBoardServer(BoardHandler(Chip.from_preset("pcm-small", cores=2, seed=5))).start()
    board = connect(server.url)
    board.client.timeout, board.client.retries = 0.2, 1
    updates = []

    def on_mvm(**kwargs):
        updates.append(1)
        if len(updates) == 4:  # calibration, drift reference, batch 0, batch 1's first
            act(server, board)

    board.core0.mvm.mean_abs.subscribe(on_mvm, run=False)
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(out))
    plan = network_inference(
        board,
        task.model,
        task.X_test[:48],
        task.y_test[:48],
        X_cal=task.X_train[:64],
        times=[1.0],
        batch_size=16,
        max_iterations=4,
    )
    try:
        with pytest.raises(Exception) as failed:
            RE(plan)
    finally:
        board.close()
        server.close()
    return failed.value, open_runs(out)[-1]


def test_a_link_lost_in_the_middle_of_a_batch_fails_the_run_keeping_earlier_batches(tmp_path):
    error, run = small_inference_mid_batch(tmp_path, lambda server, board: server.close())
    assert isinstance(error, FailedStatus)
    assert run.exit_status == "fail"
    assert "board_engine" in run.stop["reason"] and "LinkError" in run.stop["reason"]
    assert run.num_events["primary"] == 1  # batch 0 recorded, batch 1 not


def test_a_batch_stopped_without_a_replay_fails_instead_of_using_stale_codes(tmp_path):
    """The board's operations stopped as by a pause, but the RunEngine not paused (so
    nothing replays the batch): the run fails naming the batch, nothing is recorded."""
    error, run = small_inference_mid_batch(tmp_path, lambda server, board: board.stop(success=True))
    assert isinstance(error, RuntimeError) and "stopped before its end" in str(error)
    assert run.exit_status == "fail" and "board_engine" in run.stop["reason"]
    assert run.num_events["primary"] == 1
