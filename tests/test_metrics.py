"""Figures of merit: MVM error, affine fit, drift exponent."""

import numpy as np
import pytest

from labcim.metrics import drift_exponent, linear_fit, mvm_error


def test_mvm_error_is_mean_relative_l2_in_percent():
    ideal = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    measured = ideal + np.array([[0.5, 0.0], [0.0, 0.2], [9.0, 9.0]])
    # third vector has a zero ideal output and is left out
    assert mvm_error(measured, ideal) == pytest.approx(100 * (0.5 / 5 + 0.2 / 1) / 2)
    with pytest.raises(ValueError, match="shape"):
        mvm_error(measured[:2], ideal)
    with pytest.raises(ValueError, match="zero"):
        mvm_error(np.ones((1, 2)), np.zeros((1, 2)))


def test_linear_fit_recovers_gain_offset_and_residual():
    rng = np.random.default_rng(0)
    ideal = rng.normal(size=(200, 50))
    noise = rng.normal(scale=0.01, size=ideal.shape)
    fit = linear_fit(0.9 * ideal + 0.3 + noise, ideal)
    assert fit["gain"] == pytest.approx(0.9, abs=1e-3)
    assert fit["offset"] == pytest.approx(0.3, abs=1e-3)
    assert fit["residual"] == pytest.approx(1.0, rel=0.05)


def test_drift_exponent_recovers_power_law():
    rng = np.random.default_rng(1)
    nu = rng.uniform(0.02, 0.12, 1000)
    t = np.array([3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0])
    g = 10.0 * (t[:, None] / 3600.0) ** -nu
    np.testing.assert_allclose(drift_exponent(t, g), nu, rtol=1e-9)
    g[1, 0] = 0.0
    assert np.isnan(drift_exponent(t, g)[0])
    with pytest.raises(ValueError, match="positive"):
        drift_exponent(np.array([0.0, 1.0]), g[:2])
