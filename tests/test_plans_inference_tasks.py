"""Binary classifiers, replicated regression and ADC correction through network_inference.

Full stack (RunEngine + devices + codec + HDF5 writer) on ``sim://pcm-hermes``, fixed
seeds; every figure read back from the file.  The issue-16 Must-shows.
"""

import numpy as np
import pytest
import yaml
from plans_support import on_board

from labcim.network.tasks import breast_cancer_mlp
from plans import adc_characterization
from plans.inference import network_inference

pytestmark = pytest.mark.slow

HOUR, MONTH = 3600.0, 30 * 86400.0


def test_binary_classifier_scores_accuracy_within_two_points(tmp_path):
    _, run = on_board(
        "sim://pcm-hermes?cores=2&seed=1",
        tmp_path,
        lambda b: network_inference(b, "breast-cancer", times=[HOUR], compensation=["global"]),
    )
    assert run.exit_status == "success", run.reason
    s = run.summary
    print({k: v for k, v in s.items() if "accuracy" in k or "agreement" in k})
    assert "t3600s_global_rmse" not in s  # scored as a classifier, not a regressor
    assert abs(s["t3600s_global_accuracy"] - s["software_accuracy"]) <= 2.0
    assert s["software_accuracy"] > 93.0
    # predictions are class labels 0/1 (-1 past the test set)
    predictions = np.asarray(run.streams["primary"]["predictions"]).ravel()
    assert set(np.unique(predictions)) <= {-1, 0, 1} and (predictions == 1).sum() > 50
    labels = predictions[predictions >= 0]
    assert 100 * np.mean(labels == breast_cancer_mlp().y_test) == pytest.approx(
        s["t3600s_global_accuracy"]
    )


@pytest.mark.parametrize("task", ["ripple", "friedman"])
def test_replication_plus_hybrid_regression_within_15_percent_of_software(tmp_path, task):
    _, run = on_board(
        "sim://pcm-hermes?cores=6&seed=1",
        tmp_path,
        lambda b: network_inference(
            b,
            task,
            times=[HOUR, MONTH],
            compensation=["none", "global"],
            digital_budget=0.10,
            replicate=True,
        ),
    )
    assert run.exit_status == "success", run.reason
    s = run.summary
    software, chip = s["software_rmse"], s["t3600s_global_rmse"]
    print(
        f"{task}: software RMSE {software:.4f}, chip 1 h global {chip:.4f} ({chip / software:.3f}x)"
    )
    assert chip <= 1.15 * software
    layers = run.metadata["deployment"]["layers"]
    assert layers[0]["row_copies"] > 8 and layers[0]["core_copies"] == 2
    assert s["utilization_cores"] == 1.0  # every core holds a copy
    assert s["digital_fraction"] == pytest.approx(0.10, abs=0.005)


def test_adc_correction_from_a_characterization_run_lowers_the_layer_error(tmp_path):
    """Characterize the ADCs of a chip with INL, then infer with and without the fitted
    correction.  The devices are made quiet (no relaxation, drift, wander or read noise)
    so that the ADC is what the layer errors show; same seed, so both inference runs see
    the same chip."""
    model = tmp_path / "inl.yaml"
    quiet = {
        "prog_noise_scale": 0.0,
        "drift_nu_scale": 0.0,
        "drift_nu_std_scale": 0.0,
        "read_noise_scale": 0.0,
        "read_noise_rel": 0.0,
        "stuck_fraction": 0.0,
    }
    periphery = {"adc_inl_even_std": 0.03, "adc_inl_odd_mean": 0.08, "adc_inl_odd_std": 0.02}
    model.write_text(
        yaml.safe_dump(
            {
                "format": "labcim-model",
                "version": 1,
                "preset": "pcm-hermes",
                "model_params": quiet,
                "periphery": periphery,
            }
        )
    )
    url = f"sim://pcm-hermes?cores=3&seed=2&model={model}"
    _, adc = on_board(url, tmp_path / "adc", lambda b: adc_characterization(b, cores=[0, 1, 2]))
    assert adc.exit_status == "success", adc.reason
    errors = {}
    for name, correction in (("raw", None), ("corrected", adc.summary)):
        _, run = on_board(
            url,
            tmp_path / name,
            lambda b, c=correction: network_inference(b, "digits-mlp", adc_correction=c),
        )
        assert run.exit_status == "success", run.reason
        primary = run.streams["primary"]
        errors[name] = [float(np.mean(primary[f"layer{i}_error"])) for i in (0, 2, 4)]
    print("layer errors (%)", errors)
    for raw, corrected in zip(errors["raw"], errors["corrected"], strict=True):
        assert corrected < raw  # same chip, same reads: only the correction differs
    assert sum(errors["corrected"]) < 0.95 * sum(errors["raw"])
    meta = run.metadata["plan_args"]["adc_correction"]
    assert len(meta["core0_inl_even"]) == 256
