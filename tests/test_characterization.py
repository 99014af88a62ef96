"""Pure helpers of the characterization plans (labcim.characterization)."""

from __future__ import annotations

import numpy as np
import pytest

from labcim.characterization import (
    bipolar_branches,
    cell_conductance,
    differential_weights,
    drift_by_level,
    error_stats,
    first_crossing,
    forming_steps,
    hermes_inputs,
    hermes_weights,
    ideal_outputs,
    quantize_inputs,
)


def test_hermes_distributions():
    rng = np.random.default_rng(0)
    w = hermes_weights(rng, 200, 300)
    x = hermes_inputs(rng, 400, 200)
    assert w.shape == (200, 300) and np.abs(w).max() <= 1
    assert (w == 0).mean() == pytest.approx(0.3, abs=0.01)
    assert (x == 0).mean() == pytest.approx(0.5, abs=0.01)


def test_quantize_and_ideal_outputs():
    x = np.array([[1.0, -1.0, 0.5, 0.0]])
    codes = quantize_inputs(x, 8)
    np.testing.assert_array_equal(codes, [[127, -127, 64, 0]])
    assert codes.dtype == np.int16
    w = np.arange(8.0).reshape(4, 2)  # uS
    y = ideal_outputs(codes, w, 0.2, 8)  # uA
    np.testing.assert_allclose(y, 0.2 / 127 * codes.astype(float) @ w)


def test_cell_sums_and_differential_weights():
    g = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)  # dpp = 2
    cells = cell_conductance(g, 2)
    np.testing.assert_allclose(cells[0], g[0] + g[1])
    np.testing.assert_allclose(cells[1], g[2] + g[3])
    np.testing.assert_allclose(differential_weights(g, 2), cells[0] - cells[1])


def test_error_stats():
    assert error_stats(np.array([1.0, -3.0])) == {"mean": -1.0, "std": 2.0, "max_abs": 3.0}
    assert error_stats(np.zeros(0))["std"] == 0.0


def test_sweep_shapes():
    up, down = bipolar_branches(2.0, -1.0, 5)
    assert len(up) == len(down) == 9
    assert up[0] == up[-1] == 0 and up.max() == 2.0 and down.min() == -1.0
    np.testing.assert_allclose(forming_steps(0.0, 1.0, 0.25), [0, 0.25, 0.5, 0.75, 1.0])
    assert first_crossing(np.array([0.1, -0.5, 0.9]), 0.5) == 1
    assert first_crossing(np.array([0.1]), 0.5) == -1


def test_drift_by_level_recovers_power_laws():
    rng = np.random.default_rng(1)
    g0 = rng.uniform(1.0, 20.0, 4000)
    nu = np.where(g0 < 10, 0.08, 0.02)
    t = np.array([10.0, 100.0, 1000.0, 1e4])
    g = g0 * (t[:, None] / t[0]) ** -nu * (1 + 0.002 * rng.standard_normal((4, 4000)))
    fit = drift_by_level(t, g, 2, 0.5)
    np.testing.assert_allclose(fit["nu"], [0.08, 0.02], rtol=0.05)
    assert fit["count"].sum() == 4000
    assert fit["ratio"].shape == (4, 2) and np.all(fit["ratio"][0] == 1)
    with pytest.raises(ValueError, match="min_conductance"):
        drift_by_level(t, g, 2, 100.0)
