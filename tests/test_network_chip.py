"""Networks on the simulated pcm-hermes chip (fixed seeds): the Must-shows of issue 7.

The engine against the simulator called directly; weights are programmed with TDP
write-verify through the chip's pulse/read interface (see labcim.twin.simchip).  Drift
times are counted from the end of programming; calibration and the drift reference are
read 1 s after it.  The same Must-shows through bluesky: tests/test_plans_inference.py.
"""

import json

import numpy as np
import pytest

from labcim.metrics import mvm_error
from labcim.network.execution import prepare, run_steps
from labcim.network.hybrid import select_digital, sensitivity
from labcim.network.model import ModelError
from labcim.network.placement import PlacementError
from labcim.network.tasks import diabetes_regressor, digits_cnn, digits_mlp
from labcim.network.tuning import tune
from labcim.twin.simchip import SimChipBackend, chip_strategy, deploy, identity_of
from mock_hw.chip import Chip

TIMES = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 month": 30 * 86400.0}
pytestmark = pytest.mark.slow


def at(chip: Chip, t_prog: float, t: float) -> None:
    """Move the chip's clock to ``t`` seconds after the end of programming."""
    chip.advance(max(t_prog + t - chip.time, 0.0))


@pytest.fixture(scope="module")
def mlp_drift():
    """Digits MLP accuracies at each drift time, without and with compensation."""
    task = digits_mlp()
    chip = Chip.from_preset("pcm-hermes", seed=1, cores=3)
    dep, backend, t_prog = deploy(chip, task.model, task.X_train[:300])
    hidden = dep.layer_rows(task.X_test)[0]
    acc, err = {}, {}
    for name, t in TIMES.items():
        at(chip, t_prog, t)
        for mode in ("none", "global", "column"):
            run_steps(backend, dep.compensate_drift(mode))
            acc[name, mode] = task.score(run_steps(backend, dep.predict(task.X_test)))
            product = run_steps(backend, dep.analog_product(0, hidden))
            err[name, mode] = mvm_error(product, hidden @ dep.layers[0].analog)
    sw = task.score(task.model.forward(task.X_test))
    return sw, acc, err, dep


def test_digits_mlp_within_one_point_at_one_hour(mlp_drift):
    sw, acc, _, _ = mlp_drift
    assert abs(acc["1 h", "global"] - sw) <= 1.0


def test_drift_lowers_accuracy_and_compensation_recovers_most_of_it(mlp_drift):
    sw, acc, err, _ = mlp_drift
    drop = sw - acc["1 month", "none"]
    assert acc["1 month", "none"] < acc["1 day", "none"] < acc["1 s", "none"]
    assert acc["1 month", "global"] - acc["1 month", "none"] > 0.5 * drop > 0
    for late in ("1 day", "1 month"):
        assert err[late, "column"] < err[late, "global"] < err[late, "none"]
    assert err["1 month", "none"] > 1.5 * err["1 s", "none"]


def test_deployment_metadata_is_json(mlp_drift):
    meta = json.loads(json.dumps(mlp_drift[3].metadata()))
    assert meta["placement"]["layers"][0]["tiles"][0][0] == 0
    assert meta["drift_compensation"] == "column"


def test_diabetes_hybrid_beats_pure_analog():
    task = diabetes_regressor()
    sw_out = task.model.forward(task.X_test)
    scores = sensitivity(task.model, task.X_train)
    res = {}
    for budget in (0.0, 0.10):
        chip = Chip.from_preset("pcm-hermes", seed=1, cores=2)
        dep, backend, t_prog = deploy(
            chip, task.model, task.X_train, digital_masks=select_digital(scores, budget)
        )
        at(chip, t_prog, TIMES["1 h"])
        run_steps(backend, dep.compensate_drift("global"))
        y = run_steps(backend, dep.predict(task.X_test))
        hw_error = float(np.sqrt(np.mean((y - sw_out) ** 2)))  # what the analog part adds
        at(chip, t_prog, TIMES["1 month"])
        late = {}
        for mode in ("none", "global"):
            run_steps(backend, dep.compensate_drift(mode))
            late[mode] = task.score(run_steps(backend, dep.predict(task.X_test)))
        res[budget] = hw_error, late
    assert res[0.10][0] < 0.8 * res[0.0][0]
    assert res[0.10][1]["none"] < res[0.0][1]["none"]
    # Regression outputs carry the scale: drift compensation shows in the RMSE.
    assert res[0.0][1]["global"] < res[0.0][1]["none"]


def test_digits_cnn_runs_on_chip_and_tuning_keeps_error_low():
    task = digits_cnn()
    chip = Chip.from_preset("pcm-hermes", seed=1, cores=3)
    dep, backend, t_prog = deploy(chip, task.model, task.X_train[:200])
    at(chip, t_prog, TIMES["1 h"])
    run_steps(backend, dep.compensate_drift("global"))
    acc = task.score(run_steps(backend, dep.predict(task.X_test)))
    sw = task.score(task.model.forward(task.X_test))
    assert acc > sw - 8.0
    report = run_steps(backend, tune(dep, task.X_train[:200]))
    assert all(r["error"] <= r["error_auto"] and r["evaluations"] <= 8 for r in report.values())


def test_errors_come_before_any_programming():
    chip = Chip.from_preset("pcm-hermes", seed=1, cores=1)
    task = digits_cnn()
    with pytest.raises(PlacementError, match=r"needs 3 cores.*only 1"):
        deploy(chip, task.model, task.X_train[:10])
    with pytest.raises(ModelError, match="does not match the model input shape"):
        deploy(chip, diabetes_regressor().model, task.X_train[:10])
    assert chip.pulse_counts.sum() == 0


@pytest.mark.parametrize("asked", [1e6, 1e-9])
def test_auto_ranged_gains_stay_in_the_range_the_board_reports(asked):
    chip = Chip.from_preset("pcm-hermes", seed=1, cores=3)
    backend = SimChipBackend(chip, chip_strategy(chip).g_cell_max)
    task = digits_mlp()
    dep = prepare(task.model, backend, task.X_train[:10])
    low, high = identity_of(chip).limits["adc_gain_min"], identity_of(chip).limits["adc_gain_max"]
    assert dep.adc_gain_range == backend.adc_gain_range == (low, high)
    core = dep.layers[0].tiles[0].core
    run_steps(backend, dep.set_gains(0, {core: asked}))
    assert chip.config(core).adc_gain == dep.layers[0].adc_gain[core] == min(max(asked, low), high)
