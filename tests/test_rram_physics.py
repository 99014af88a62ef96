"""Statistical tests of the RRAM device model against NeuRRAM / Wan 2022."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mock_hw import rram_stats
from mock_hw.devices import PulseKind
from mock_hw.rram import G_MAX, G_MIN, RRAMDevice, RRAMParams

WIDTH = 1e-6


def pulse_all(model, state, kind, volts, t, rng):
    """One pulse of ``volts`` (V) to every device of a 1-D population."""
    n = state["g"].size
    model.apply_pulses(
        state, (np.arange(n),), np.full(n, kind), np.full(n, volts), np.full(n, WIDTH), t, rng
    )


def test_relaxation_spread_follows_wan_2022():
    rng = np.random.default_rng(21)
    model = RRAMDevice(RRAMParams(stuck_fraction=0.0))
    state = model.new_state((60_000,), rng)
    g = model.programmed_conductance(state)
    for t, which in ((1.0, 0), (86400.0, 1), (2 * 86400.0, 2)):
        dev = model.conductance(state, t, rng, read_noise=False) - g
        for lo, hi in ((8.0, 12.0), (18.0, 22.0), (28.0, 32.0)):
            sel = (g >= lo) & (g < hi)
            sigma = rram_stats.relaxation_sigma_anchors(g[sel] / G_MAX)[which]
            assert np.std(dev[sel]) == pytest.approx(np.sqrt(np.mean(sigma**2)), rel=0.25)
    # Right after a pulse the relaxation has not started: verify reads see the target.
    pulse_all(model, state, PulseKind.SET, 1.6, 10.0, rng)
    dev = model.conductance(state, 10.0 + 1e-6, rng, read_noise=False) - state["g"]
    assert np.std(dev) < 0.05


def test_incremental_response_saturates_and_grows_with_voltage():
    rng = np.random.default_rng(22)
    model = RRAMDevice(RRAMParams(stuck_fraction=0.0))
    state = model.new_state((5000,), rng)
    pulse_all(model, state, PulseKind.RESET, 2.5, 0.0, rng)
    for _ in range(20):
        pulse_all(model, state, PulseKind.RESET, 2.5, 0.0, rng)
    assert np.median(state["g"]) < G_MIN + 0.5
    g0 = state["g"].copy()
    pulse_all(model, state, PulseKind.SET, 0.9, 0.0, rng)  # below every threshold
    np.testing.assert_array_equal(state["g"], g0)
    steps = []
    for volts in (1.4, 1.8, 2.4):
        before = state["g"].copy()
        pulse_all(model, state, PulseKind.SET, volts, 0.0, rng)
        steps.append(np.median((state["g"] - before) / (G_MAX - before)))
    assert 0 < steps[0] < steps[1] < steps[2] < 0.8
    for _ in range(20):
        pulse_all(model, state, PulseKind.SET, 3.3, 0.0, rng)
    assert np.median(state["g"]) > 0.95 * G_MAX and state["g"].max() <= G_MAX


def test_forming():
    rng = np.random.default_rng(23)
    model = RRAMDevice(RRAMParams(formed_at_start=False, stuck_fraction=0.0))
    state = model.new_state((4000,), rng)
    assert not state["formed"].any()
    assert state["g"].min() >= 0.01 and state["g"].max() <= 0.1
    g0 = state["g"].copy()
    pulse_all(model, state, PulseKind.SET, 3.3, 0.0, rng)
    pulse_all(model, state, PulseKind.FORM, 2.7, 0.0, rng)  # below every forming voltage
    np.testing.assert_array_equal(state["g"], g0)
    pulse_all(model, state, PulseKind.FORM, 3.3, 1.0, rng)
    assert 0.3 < state["formed"].mean() < 0.7  # forming voltages spread over 2.8-3.8 V
    pulse_all(model, state, PulseKind.FORM, 4.5, 2.0, rng)
    assert state["formed"].all()
    assert state["g"].min() >= G_MIN and state["g"].max() <= G_MAX


def test_stuck_devices_ignore_pulses():
    rng = np.random.default_rng(24)
    model = RRAMDevice(RRAMParams(stuck_fraction=0.05))
    state = model.new_state((20_000,), rng)
    stuck = state["stuck"]
    assert stuck.mean() == pytest.approx(0.05, rel=0.15)
    assert set(np.unique(state["g"][stuck])) == {G_MIN, G_MAX}
    for kind, volts in ((PulseKind.SET, 3.3), (PulseKind.RESET, 2.5), (PulseKind.FORM, 4.5)):
        pulse_all(model, state, kind, volts, 1.0, rng)
        assert set(np.unique(state["g"][stuck])) == {G_MIN, G_MAX}
    assert np.all(state["relax_1s"][stuck] == 0.0)


def test_same_seed_is_bit_identical():
    def run():
        rng = np.random.default_rng(7)
        model = RRAMDevice()
        state = model.new_state((2, 2, 64, 64), rng)
        index = np.nonzero(np.ones((2, 2, 64, 64), bool))
        n = index[0].size
        model.apply_pulses(
            state, index, np.full(n, PulseKind.SET), np.full(n, 1.8), np.full(n, WIDTH), 0.5, rng
        )
        return state, [model.conductance(state, t, rng) for t in (1.0, 10.0, 1e5)]

    (s1, r1), (s2, r2) = run(), run()
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])
    for a, b in zip(r1, r2, strict=True):
        np.testing.assert_array_equal(a, b)


def test_params_round_trip_and_unknown_key():
    p = RRAMParams(relax_scale=0.7, formed_at_start=False)
    assert RRAMParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="v_sett"):
        RRAMParams.from_dict({"v_sett": 1.0})


def test_relaxation_beyond_two_days_is_held_or_extrapolated():
    """Wan 2022 stops at 2 days: held by default, or the 1-2 day trend continued."""
    g_r = np.array([0.25, 0.5, 0.75])
    s1, s2, s3 = rram_stats.relaxation_sigma_anchors(g_r)
    args = (s1, s2, s3)
    week = 7 * 86400.0
    held = rram_stats.relaxation_variance(week, *args, onset=1e-4)
    np.testing.assert_allclose(held, s3**2)
    grown = rram_stats.relaxation_variance(week, *args, onset=1e-4, late_slope=1.0)
    decades = np.log10(week / 172800.0) / np.log10(2.0)  # in units of the 1-2 day span
    expected = s3**2 + np.maximum(s3**2 - s2**2, 0.0) * decades
    np.testing.assert_allclose(grown, expected, rtol=1e-6)
    assert np.all(grown >= held)


def test_drift_beyond_the_fit_is_an_opt_in_power_law():
    rng = np.random.default_rng(25)
    model = RRAMDevice(RRAMParams(stuck_fraction=0.0, drift_nu=0.01, relax_scale=0.0))
    state = model.new_state((5000,), rng)
    g0 = model.programmed_conductance(state)
    month = 30 * 86400.0
    g = model.conductance(state, month, rng, read_noise=False)
    np.testing.assert_allclose(g / g0, (month + 1.0) ** -0.01, rtol=1e-5)
    plain = RRAMDevice(RRAMParams(stuck_fraction=0.0, relax_scale=0.0))
    state = plain.new_state((5000,), rng)
    np.testing.assert_allclose(
        plain.conductance(state, month, rng, read_noise=False),
        plain.programmed_conductance(state),
        rtol=1e-6,
    )


def test_worn_rram_device_is_stuck_at_a_rail():
    rng = np.random.default_rng(26)
    model = RRAMDevice(RRAMParams(stuck_fraction=0.0, endurance=10.0, endurance_log_std=0.1))
    state = model.new_state((1000,), rng)
    state.update(model.new_wear_state((1000,), rng))
    counts = np.zeros(1000, np.uint32)
    for k in range(30):
        pulse_all(model, state, PulseKind.SET if k % 2 else PulseKind.RESET, 2.5, float(k), rng)
        counts += 1
        model.wear(state, (np.arange(1000),), counts, rng)
    assert state["stuck"].all()
    assert set(np.unique(state["g"])) == {G_MIN, G_MAX}
