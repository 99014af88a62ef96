"""Statistical tests of the PCM device model against the HERMES fits."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from mock_hw import pcm_stats
from mock_hw.devices import PulseKind
from mock_hw.pcm import G_MAX, PCMDevice, PCMParams

T_MAX_SET, W_MAX = 300.0, 10e-6
STRONG_RESET, RESET_W = 600.0, 100e-9
SET_W = 1e-6
T_STEP = 1e-4
"""Time (s) between verify steps: reading a 256-row array row by row takes ~130 us."""


def pulse(model, state, mask, kind, amp, width, t, rng):
    """Pulse the devices where ``mask`` is true with per-device amplitudes."""
    index = np.nonzero(mask)
    n = index[0].size
    model.apply_pulses(
        state,
        index,
        np.full(n, kind),
        np.broadcast_to(amp, mask.shape)[index].astype(float),
        np.full(n, width),
        t,
        rng,
    )


def tdp_program(model, state, targets, rng, tol=0.25, max_iter=60):
    """TDP-like program-and-verify of one polarity with two devices per cell.

    Returns the mask of cells whose target was reachable.
    """
    n = targets.size
    t = 1.0
    every = np.ones((n, 2), bool)
    pulse(model, state, every, PulseKind.SET, T_MAX_SET, W_MAX, t, rng)
    t += T_STEP
    g_set = model.conductance(state, t, rng)
    big = np.argmax(g_set, axis=1)
    rows = np.arange(n)
    gs_big, gs_small = g_set[rows, big], g_set[rows, 1 - big]
    below = targets <= gs_big
    inter = np.where(below, big, 1 - big)  # the one intermediate device of each cell
    reachable = targets <= gs_big + 0.9 * gs_small
    full_reset = np.zeros((n, 2), bool)
    full_reset[rows[below], 1 - big[below]] = True
    full_reset[rows, inter] = True  # the intermediate device climbs from the floor
    t += T_STEP
    pulse(model, state, full_reset, PulseKind.RESET, STRONG_RESET, RESET_W, t, rng)
    gs_inter = g_set[rows, inter]
    active = reachable.copy()
    for _ in range(max_iter):
        t += T_STEP
        g = model.conductance(state, t, rng)
        err = targets - g.sum(axis=1)
        active &= np.abs(err) > tol
        if not active.any():
            break
        g_inter = g[rows, inter]
        climb = active & (err > 0)
        frac = np.clip(0.6 * err / np.maximum(gs_inter - g_inter, 0.1), 1e-3, 0.93)
        amp = np.clip(40.0 - 100.0 * np.log1p(-frac), 40.5, T_MAX_SET)
        mask = np.zeros((n, 2), bool)
        mask[rows[climb], inter[climb]] = True
        t += T_STEP
        pulse(model, state, mask, PulseKind.SET, amp[:, None], SET_W, t, rng)
        mask[:] = False
        over = active & (err < 0)
        mask[rows[over], inter[over]] = True  # overshoot: restart from the floor
        pulse(model, state, mask, PulseKind.RESET, STRONG_RESET, RESET_W, t, rng)
    return reachable & ~active


def test_tdp_error_follows_hermes_two_device_polynomial():
    rng = np.random.default_rng(11)
    model = PCMDevice(PCMParams(stuck_fraction=0.0))
    n = 25_000
    state = model.new_state((n, 2), rng)
    targets = rng.uniform(0.0, 2 * G_MAX, n)
    done = tdp_program(model, state, targets, rng)
    assert done.mean() > 0.85
    err = model.programmed_conductance(state).sum(axis=1) - targets
    edges = np.linspace(0.0, 2 * G_MAX, 6)
    for lo, hi in itertools.pairwise(edges):
        sel = done & (targets >= lo) & (targets < hi)
        expected = np.sqrt(np.mean(pcm_stats.prog_sigma(targets[sel] / (2 * G_MAX), 2) ** 2))
        assert np.std(err[sel]) == pytest.approx(expected, rel=0.25), (lo, hi)


def programmed_population(n=20_000, seed=3):
    """Devices left at intermediate levels 2-8 uS by one partial SET from the floor."""
    rng = np.random.default_rng(seed)
    model = PCMDevice(PCMParams(stuck_fraction=0.0))
    state = model.new_state((n,), rng)
    every = np.ones(n, bool)
    pulse(model, state, every, PulseKind.RESET, STRONG_RESET, RESET_W, 0.0, rng)
    amp = rng.uniform(60.0, 140.0, n)
    pulse(model, state, every, PulseKind.SET, amp, SET_W, 0.0, rng)
    return model, state, rng


@pytest.mark.parametrize("t", [3600.0, 86400.0, 30 * 86400.0])
def test_drift_median_follows_mean_nu(t):
    model, state, rng = programmed_population()
    g0 = model.programmed_conductance(state)
    ratio = model.conductance(state, t, rng, read_noise=False) / g0
    expected = pcm_stats.drift_factor(t, pcm_stats.drift_nu_mean(g0 / G_MAX), 200.0)
    assert np.median(ratio) == pytest.approx(np.median(expected), rel=0.10)
    assert np.median(ratio) < 0.95  # it does drift


def test_wander_spread_follows_qs_and_is_time_correlated():
    model, state, rng = programmed_population()
    t = 3600.0
    g0 = model.programmed_conductance(state)
    det = g0 * pcm_stats.drift_factor(t, state["nu"], 200.0)
    g1 = model.conductance(state, t, rng, read_noise=False)
    g2 = model.conductance(state, t + 1e-6, rng, read_noise=False)
    expected = pcm_stats.accumulated_noise_sigma_rel(t, pcm_stats.read_noise_qs(g0 / G_MAX))
    rel = g1 / det - 1.0
    assert np.std(rel) == pytest.approx(np.sqrt(np.mean(expected**2)), rel=0.25)
    assert np.max(np.abs(g2 / g1 - 1.0)) < 1e-3  # 1 us apart: same wander
    g3 = model.conductance(state, t + 2e-6, rng)  # with the ~1 % read noise
    assert np.std(g3 / g2 - 1.0) == pytest.approx(0.01, rel=0.2)


def test_relaxation_appears_after_the_pulse_not_at_verify():
    model, state, rng = programmed_population()
    relax = state["relax"].astype(float)
    assert np.std(relax) > 0.3
    early = model.conductance(state, 1e-6, rng, read_noise=False) - state["g_prog"]
    late = model.conductance(state, 5.0, rng, read_noise=False) - state["g_prog"]
    assert abs(np.corrcoef(early, relax)[0, 1]) < 0.1
    assert np.corrcoef(late, relax)[0, 1] > 0.8


def test_full_set_does_not_relax_and_full_reset_is_low():
    rng = np.random.default_rng(5)
    model = PCMDevice(PCMParams(stuck_fraction=0.0))
    state = model.new_state((5000,), rng)
    every = np.ones(5000, bool)
    pulse(model, state, every, PulseKind.SET, T_MAX_SET, W_MAX, 0.0, rng)
    relax = state["relax"]
    assert np.mean(relax != 0.0) < 0.01 and np.max(np.abs(relax)) < 0.2
    assert np.std(state["g_prog"] / state["g_set"]) == pytest.approx(0.015, rel=0.2)
    pulse(model, state, every, PulseKind.RESET, STRONG_RESET, RESET_W, 1.0, rng)
    verify = model.conductance(state, 1.0 + 1e-6, rng)  # right after the RESET
    assert 0.05 < np.median(verify) < 0.2 and np.percentile(verify, 99) < 0.4
    assert verify.max() < 0.1 * G_MAX  # never mistaken for a stuck device
    # Relaxed: positive, with the spread of the HERMES one-device intercept (0.158 uS).
    g = model.programmed_conductance(state)
    assert g.min() >= 0.0 and 0.05 < np.median(g) < 0.2
    assert np.std(g) == pytest.approx(pcm_stats.prog_sigma(0.0, 1), rel=0.25)


def test_reset_curve_is_history_free_and_set_grows_with_amplitude():
    rng = np.random.default_rng(6)
    model = PCMDevice(PCMParams(stuck_fraction=0.0))
    state = model.new_state((4000,), rng)
    every = np.ones(4000, bool)
    pulse(model, state, every, PulseKind.RESET, 260.0, RESET_W, 0.0, rng)
    g_mid = state["g_prog"].copy()
    assert 0.2 < np.median(g_mid / state["g_set"]) < 0.8
    pulse(model, state, every, PulseKind.RESET, 200.0, RESET_W, 0.0, rng)  # weaker: no-op
    np.testing.assert_array_equal(state["g_prog"], g_mid)
    steps = []
    for amp in (80.0, 160.0, 240.0):
        before = model.programmed_conductance(state)
        pulse(model, state, every, PulseKind.SET, amp, 100e-9, 2.0, rng)
        steps.append(np.median((state["g_prog"] - before) / (state["g_set"] - before + 1e-3)))
    assert 0 < steps[0] < steps[1] < steps[2] < 0.5


def test_stuck_devices_ignore_pulses():
    rng = np.random.default_rng(7)
    model = PCMDevice(PCMParams(stuck_fraction=0.05))
    state = model.new_state((20_000,), rng)
    stuck = state["stuck"]
    assert stuck.mean() == pytest.approx(0.05, rel=0.15)
    g = state["g_prog"][stuck].copy()
    every = np.ones(stuck.size, bool)
    pulse(model, state, every, PulseKind.RESET, STRONG_RESET, RESET_W, 1.0, rng)
    np.testing.assert_array_equal(state["g_prog"][stuck], g)
    assert (g < 0.5).any() and (g > 5.0).any()  # stuck-RESET and stuck-SET both occur
    assert np.all(state["g_prog"][~stuck] < 1.0)


def test_same_seed_is_bit_identical_and_views_update_in_place():
    def run():
        rng = np.random.default_rng(42)
        model = PCMDevice()
        state = model.new_state((2, 2, 64, 64), rng)
        pulse(model, state, np.ones((2, 2, 64, 64), bool), PulseKind.SET, 90.0, SET_W, 1.0, rng)
        view = {k: v[1] for k, v in state.items()}
        reads = [model.conductance(view, t, rng) for t in (1.1, 2.0, 100.0)]
        return state, reads

    (s1, r1), (s2, r2) = run(), run()
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])
    for a, b in zip(r1, r2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.any(s1["noise"][1] != 0.0) and np.all(s1["noise"][0] == 0.0)
    assert all(a.dtype != object and isinstance(a, np.ndarray) for a in s1.values())


def test_params_round_trip_and_unknown_key():
    p = PCMParams(prog_noise_scale=1.3, drift_nu_scale=0.8)
    assert PCMParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="bogus, typo_scale"):
        PCMParams.from_dict({"bogus": 1, "typo_scale": 2.0, "stuck_fraction": 0.0})


def test_read_noise_grows_toward_low_conductance_with_its_exponent():
    """Nandakumar et al. 2019 form: relative std rel * (g / g_max)^-k, capped."""
    flat, bent = PCMDevice(), PCMDevice(PCMParams(read_noise_exponent=0.65))
    g = np.array([0.1, 1.0, 5.0, G_MAX])
    np.testing.assert_allclose(flat.read_noise_std(g) / g, 0.01)
    rel = bent.read_noise_std(g) / g
    np.testing.assert_allclose(rel[1:], 0.01 * (g[1:] / G_MAX) ** -0.65, rtol=1e-6)
    assert rel[0] == pytest.approx(0.2)  # capped at read_noise_rel_max
    # and a read shows it: spread of repeated reads of devices at 1 uS
    rng = np.random.default_rng(8)
    state = bent.new_state((20_000,), rng)
    every = np.ones(20_000, bool)
    pulse(bent, state, every, PulseKind.RESET, STRONG_RESET, RESET_W, 0.0, rng)
    pulse(bent, state, every, PulseKind.SET, 62.0, SET_W, 0.0, rng)
    a, b = (bent.conductance(state, 10.0 + k * 1e-6, rng) for k in range(2))
    sel = (a > 0.8) & (a < 1.2)
    expected = 0.01 * (1.0 / G_MAX) ** -0.65
    assert np.std((b - a)[sel] / a[sel]) / np.sqrt(2) == pytest.approx(expected, rel=0.15)


def test_device_pulsed_past_its_endurance_is_stuck():
    rng = np.random.default_rng(9)
    model = PCMDevice(PCMParams(stuck_fraction=0.0, endurance=40.0, endurance_log_std=0.3))
    n = 2000
    state = model.new_state((n,), rng)
    state.update(model.new_wear_state((n,), rng))
    assert np.median(state["endurance"]) == pytest.approx(40.0, rel=0.05)
    counts = np.zeros(n, np.uint32)
    index = (np.arange(n),)
    every = np.ones(n, bool)
    for k in range(120):
        kind, amp, width = (
            (PulseKind.RESET, STRONG_RESET, RESET_W) if k % 2 else (PulseKind.SET, T_MAX_SET, W_MAX)
        )
        pulse(model, state, every, kind, amp, width, float(k), rng)
        counts += 1
        model.wear(state, index, counts, rng)
    worn = state["stuck"]
    assert worn.mean() > 0.99  # 120 pulses is 3x the median endurance
    np.testing.assert_array_equal(worn, counts >= state["endurance"])
    # stuck at SET or at the floor, about half each, and deaf to further pulses
    g = model.programmed_conductance(state)
    high = g > 1.0
    assert 0.4 < high.mean() < 0.6
    pulse(model, state, every, PulseKind.RESET, STRONG_RESET, RESET_W, 200.0, rng)
    np.testing.assert_array_equal(model.programmed_conductance(state), g)
    assert np.all(state["nu"] == 0.0)


def test_wear_is_off_by_default():
    model = PCMDevice()
    assert model.new_wear_state((10,), np.random.default_rng(0)) == {}
