"""adc_characterization through RunEngine + devices + codec + HDF5 writer (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from plans_support import on_board, on_chip, pulses_applied

from labcim.adc_transfer import correct_codes, corrections_from_summary, fit_transfer
from labcim.network.execution import fit_affine
from labcim.twin.sim_url import chip_from_url
from plans import adc_characterization

INL = {"adc_inl_even_std": 0.015, "adc_inl_odd_mean": 0.04, "adc_inl_odd_std": 0.01}


def model_file(tmp_path, periphery):
    path = tmp_path / "adc.yaml"
    path.write_text(
        yaml.safe_dump(
            {"format": "labcim-model", "version": 1, "preset": "pcm-small", "periphery": periphery}
        )
    )
    return path


def inl_curve(even, odd, u):
    """End-point INL (fraction of full scale) at normalized inputs u, per column."""
    return (u[:, None] ** 2 - 1.0) * (even + odd * u[:, None])


def rms_error(run, core: int, correct: bool) -> float:
    """rms error (LSB) of the test stream's codes after each column's affine fit."""
    test = run.streams["test"]
    codes = test[f"board_core{core}_mvm_codes"][0].astype(float)
    outputs = test[f"board_core{core}_mvm_outputs"][0]
    lsb = float(np.median(outputs[codes != 0] / codes[codes != 0]))  # uA per code
    ideal = test[f"board_core{core}_test_ideal"][0] / lsb
    if correct:
        s = run.summary
        codes = correct_codes(codes, s[f"core{core}_inl_even"], s[f"core{core}_inl_odd"], 127)
    gain, offset = fit_affine(codes, ideal)
    return float(np.sqrt(np.mean((codes * gain + offset - ideal) ** 2)))


@pytest.mark.slow
def test_recovers_a_known_inl_and_its_correction_lowers_the_mvm_error(tmp_path):
    chip = chip_from_url(f"sim://pcm-small?seed=5&model={model_file(tmp_path, INL)}")
    _, run = on_chip(chip, tmp_path / "inl", lambda b: adc_characterization(b, cores=[0, 2]))
    assert run.exit_status == "success", run.reason
    _, linear = on_board(
        "sim://pcm-small?seed=5",
        tmp_path / "linear",
        lambda b: adc_characterization(b, cores=[0, 2]),
    )
    s = run.summary
    state = chip.state  # the simulator's ground truth
    u = np.linspace(-1.0, 1.0, 101)
    for core in (0, 2):
        true = inl_curve(state["inl_even"][core], state["inl_odd"][core], u)
        fit = inl_curve(s[f"core{core}_inl_even"], s[f"core{core}_inl_odd"], u)
        rel = np.sqrt(np.mean((fit - true) ** 2) / np.mean(true**2))
        raw, fixed = s[f"core{core}_mvm_error"], s[f"core{core}_mvm_error_corrected"]
        floor = rms_error(linear, core, False)
        e_raw, e_fixed = rms_error(run, core, False), rms_error(run, core, True)
        removed = 1 - (e_fixed**2 - floor**2) / (e_raw**2 - floor**2)
        print(
            f"core{core}: INL (max |INL| {s[f'core{core}_inl_max_median']:.2f} LSB) recovered "
            f"within {100 * rel:.1f} %; MVM error {raw:.2f} -> {fixed:.2f} % (linear ADC "
            f"{linear.summary[f'core{core}_mvm_error']:.2f} %); rms error {e_raw:.3f} -> "
            f"{e_fixed:.3f} LSB (linear {floor:.3f}): {100 * removed:.0f} % of the INL's removed"
        )
        assert rel < 0.10
        assert fixed < raw
        assert removed > 0.7
    # every figure comes back from the file alone
    primary = run.streams["primary"]
    codes = primary["board_core2_mvm_codes"]
    ideal = primary["board_core2_adc_ideal"]
    refit = fit_transfer(ideal.reshape(-1, 64), codes.reshape(-1, 64), 127)
    np.testing.assert_allclose(refit["even"], s["core2_inl_even"])
    corrections = corrections_from_summary(s)
    assert sorted(corrections) == [0, 2]


def test_a_linear_adc_is_found_linear(tmp_path):
    board, run = on_board(
        "sim://pcm-small?seed=5", tmp_path, lambda b: adc_characterization(b, cores=[1])
    )
    assert run.exit_status == "success", run.reason
    s = run.summary
    assert s["core1_inl_max_median"] < 0.5  # LSB: noise only
    assert s["core1_mvm_error_corrected"] == pytest.approx(s["core1_mvm_error"], rel=0.05)
    assert board.core1.read_mode.get() == "4-phase"  # restored (it was the default)


def test_bad_arguments_are_refused_before_anything_is_sent():
    from bluesky import RunEngine

    from labcim import connect

    board = connect("sim://pcm-small?seed=5")
    RE = RunEngine({})
    before = pulses_applied(board)
    for kwargs, match in (
        ({"repeats": 0}, "repeats = 0 must be an integer >= 1"),
        ({"cores": [9]}, "cores.*does not exist"),
        ({"test_vectors": 1.5}, "test_vectors = 1.5 must be an integer"),
    ):
        with pytest.raises(ValueError, match=match):
            RE(adc_characterization(board, **kwargs))
    assert pulses_applied(board) == before
    with pytest.raises(ValueError, match="core0 lacks inl_even or inl_odd"):
        corrections_from_summary({"core0_inl_even": [0.0]})
    with pytest.raises(ValueError, match="no core"):
        corrections_from_summary({"mvm_error": 1.0})
