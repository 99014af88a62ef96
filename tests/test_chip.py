"""The simulated chip: MVM periphery effects, clock, determinism, save/load, bad input."""

import numpy as np
import pytest

from labcim.metrics import mvm_error
from mock_hw.chip import Chip
from mock_hw.devices import PulseKind
from mock_hw.errors import InvalidRequestError, SafetyLimitError
from mock_hw.periphery import dac_levels

IDEAL_DEVICES = dict(
    read_noise_rel=0.0,
    read_noise_scale=0.0,
    drift_nu_scale=0.0,
    drift_nu_std_scale=0.0,
    stuck_fraction=0.0,
)
IDEAL_PERIPHERY = dict(
    adc_noise=0.0, col_gain_std=0.0, col_offset_std=0.0, asym_mean=0.0, asym_std=0.0
)


def set_conductances(chip: Chip, core: int, g: np.ndarray) -> None:
    """Put devices of ``core`` at conductances ``g`` (uS, shape (2, dpp, rows, cols)) exactly.

    Bypasses write-verify (tested elsewhere) so that periphery effects are seen alone.
    """
    s = chip.state
    s["g_prog"][core] = g
    s["relax"][core] = 0.0
    s["t_p"][core] = chip.time
    s["noise"][core] = 0.0
    s["noise_var"][core] = 0.0
    chip.cores[core].programmed(chip.time)


def hermes_test_matrix(chip: Chip, rng: np.random.Generator) -> np.ndarray:
    """HERMES-style MVM test weights: uniform in [-1, 1] with 30 % zeros (facts file)."""
    s = chip.spec
    w = rng.uniform(-1, 1, (s.rows, s.cols))
    w[rng.random(w.shape) < 0.3] = 0
    g_cell = s.devices_per_polarity * chip.model.g_max * 0.9
    g = np.stack([np.maximum(w, 0), np.maximum(-w, 0)]) * g_cell  # per polarity
    per_device = np.repeat(g[:, None] / s.devices_per_polarity, s.devices_per_polarity, axis=1)
    return per_device


def hermes_inputs(chip: Chip, rng: np.random.Generator, n: int = 256) -> np.ndarray:
    top = dac_levels(8)
    x = rng.integers(-top, top + 1, (n, chip.spec.rows))
    x[rng.random(x.shape) < 0.5] = 0
    return x


def measured_error(chip: Chip, core: int, x: np.ndarray) -> float:
    """MVM error (%) of ``core`` against the ideal product with its present conductances.

    The reference is the mean of a few conductance reads just before, so drift and
    programming error are left out and the periphery is seen alone.
    """
    cfg = chip.config(core)
    dpp = chip.spec.devices_per_polarity
    g = np.mean([chip.read_conductance(core) for _ in range(4)], axis=0)
    w = g[:dpp].sum(0) - g[dpp:].sum(0)
    ideal = cfg.read_voltage * (x / dac_levels(cfg.dac_bits)) @ w
    return mvm_error(chip.mvm(core, x) * chip.adc_lsb(core), ideal)


@pytest.fixture(scope="module")
def hermes_core():
    """One full-size 256 x 256 pcm-hermes core with HERMES-style test weights."""
    rng = np.random.default_rng(5)
    chip = Chip.from_preset("pcm-hermes", cores=1, seed=5)
    g = hermes_test_matrix(chip, rng)
    set_conductances(chip, 0, g)
    chip.advance(60.0)
    return chip, hermes_inputs(chip, rng)


def test_four_phase_beats_one_phase(hermes_core):
    chip, x = hermes_core
    chip.configure(0, read_mode="4-phase")
    e4 = measured_error(chip, 0, x)
    chip.configure(0, read_mode="1-phase")
    e1 = measured_error(chip, 0, x)
    chip.reset_config()
    assert 0.3 < e4 < 6.0  # "within a few percent"
    assert e1 > 1.3 * e4, (e4, e1)


def test_error_grows_with_fewer_adc_bits(hermes_core):
    chip, x = hermes_core
    errors = []
    for bits in (10, 8, 6, 4):
        chip.configure(0, adc_bits=bits)
        errors.append(measured_error(chip, 0, x))
    chip.reset_config()
    assert errors == sorted(errors), errors
    assert errors[-1] > 3 * errors[1]


def test_ir_drop_adds_error():
    rng = np.random.default_rng(2)
    chip = Chip.from_preset(
        "pcm-hermes", cores=1, seed=2, model_params=IDEAL_DEVICES, periphery=IDEAL_PERIPHERY
    )
    set_conductances(chip, 0, hermes_test_matrix(chip, rng))
    x = hermes_inputs(chip, rng)
    chip.configure(0, ir_drop=False, adc_bits=12)
    off = measured_error(chip, 0, x)
    chip.configure(0, ir_drop=True)
    on = measured_error(chip, 0, x)
    assert off < 0.2  # only 12-bit quantization is left
    assert on > 5 * off, (off, on)


def test_ideal_chip_matches_numpy_within_quantization():
    rng = np.random.default_rng(1)
    chip = Chip.from_preset(
        "pcm-small", seed=1, model_params=IDEAL_DEVICES, periphery=IDEAL_PERIPHERY
    )
    chip.configure(1, adc_bits=16, adc_gain=0.25, ir_drop=False)  # no saturation
    g = hermes_test_matrix(chip, rng)
    set_conductances(chip, 1, g)
    x = hermes_inputs(chip, rng, 64)
    codes = chip.mvm(1, x)
    ideal = 0.2 * (x / 127) @ (g[0].sum(0) - g[1].sum(0)) / chip.adc_lsb(1)
    assert np.abs(codes - ideal).max() <= 0.5 + 1e-3


def test_clock_advances_with_operations_and_on_request():
    chip = Chip.from_preset("pcm-small", seed=0)
    t0 = chip.time
    chip.mvm(0, np.zeros((1000, 64), np.int8))
    assert chip.time - t0 == pytest.approx(1000 * 520e-9)
    chip.configure(0, read_mode="1-phase")
    t1 = chip.time
    chip.mvm(0, np.zeros((1000, 64), np.int8))
    assert chip.time - t1 == pytest.approx(1000 * 133e-9)
    t2 = chip.time
    chip.read_conductance(0)
    assert chip.time > t2
    assert chip.advance(30 * 86400) == pytest.approx(chip.time)
    assert chip.time > 30 * 86400


def pulse_some(chip: Chip, rng: np.random.Generator) -> None:
    n = 200
    cells = rng.choice(64 * 64 * 4, n, replace=False)
    dev, rest = np.divmod(cells, 64 * 64)
    row, col = np.divmod(rest, 64)
    chip.apply_pulses(
        2, row, col, dev, np.full(n, PulseKind.RESET), rng.uniform(150, 400, n), np.full(n, 50e-9)
    )


def run_session(chip: Chip) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    pulse_some(chip, rng)
    chip.advance(100.0)
    g = chip.read_conductance(2)
    return g, chip.mvm(2, hermes_inputs(chip, rng, 32))


def test_same_seed_gives_identical_results_and_other_seed_differs():
    a, b = run_session(Chip.from_preset("pcm-small", seed=4))
    c, d = run_session(Chip.from_preset("pcm-small", seed=4))
    e, _ = run_session(Chip.from_preset("pcm-small", seed=5))
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)
    assert not np.array_equal(a, e)


def test_save_load_round_trips_exactly(tmp_path):
    chip = Chip.from_preset("pcm-small", seed=2)
    pulse_some(chip, np.random.default_rng(0))
    chip.configure(2, adc_bits=6, read_mode="1-phase")
    chip.save(tmp_path / "chip.npz")
    loaded = Chip.load(tmp_path / "chip.npz")
    assert loaded.spec == chip.spec and loaded.time == chip.time
    assert loaded.config(2) == chip.config(2)
    for k in chip.state:
        np.testing.assert_array_equal(loaded.state[k], chip.state[k])
    a, b = run_session(chip), run_session(loaded)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_rram_chip_runs_the_same_operations():
    chip = Chip.from_preset("rram-small", seed=3)
    g = chip.read_conductance(0, 0, 8)
    assert g.shape == (2, 8, 64)
    codes = chip.mvm(0, hermes_inputs(chip, np.random.default_rng(0), 8))
    assert codes.shape == (8, 64)


def snapshot(chip: Chip):
    return chip.time, {k: v.copy() for k, v in chip.state.items()}, chip.rng.bit_generator.state


def assert_unchanged(chip: Chip, snap) -> None:
    t, state, rng_state = snap
    assert chip.time == t and chip.rng.bit_generator.state == rng_state
    for k, v in state.items():
        np.testing.assert_array_equal(chip.state[k], v)


ONE = dict(row=[0], col=[0], device=[0], kind=[int(PulseKind.SET)], amplitude=[100.0], width=[1e-6])


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(row=[64]), InvalidRequestError, r"row\[0\] = 64 is outside \[0, 64\)"),
        (dict(col=[-1]), InvalidRequestError, r"col\[0\] = -1"),
        (dict(device=[4]), InvalidRequestError, r"device\[0\] = 4 is outside \[0, 4\)"),
        (dict(kind=[7]), InvalidRequestError, r"kind\[0\] = 7 is not a pulse kind"),
        (dict(amplitude=[float("nan")]), InvalidRequestError, "amplitude contains NaN"),
        (dict(amplitude=[-1.0]), SafetyLimitError, r"amplitude\[0\] = -1 uA is outside"),
        (dict(amplitude=[301.0]), SafetyLimitError, r"set_max\] = \[0, 300\] uA"),
        (dict(width=[1.0]), SafetyLimitError, r"width\[0\] = 1 s is outside"),
        (dict(row=[0.5]), InvalidRequestError, "row must be integers"),
        (dict(row=[0, 1]), InvalidRequestError, "col has 1 entries, row has 2"),
        (dict(row=[[0]]), InvalidRequestError, "row must be a 1-D array"),
        (
            dict(
                row=[0, 0],
                col=[0, 0],
                device=[0, 0],
                kind=[0, 0],
                amplitude=[1.0, 1.0],
                width=[1e-6, 1e-6],
            ),
            InvalidRequestError,
            "more than once",
        ),
    ],
)
def test_bad_pulses_are_refused_without_any_change(change, error, match):
    chip = Chip.from_preset("pcm-small", seed=0)
    snap = snapshot(chip)
    with pytest.raises(error, match=match):
        chip.apply_pulses(0, **{**ONE, **change})
    assert_unchanged(chip, snap)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.mvm(4, np.zeros((1, 64), int)), "core 4 does not exist; cores are 0..3"),
        (lambda c: c.mvm(0, np.zeros((1, 63), int)), r"shape \(batch >= 1, 64\)"),
        (lambda c: c.mvm(0, np.zeros((1, 64))), "integer DAC codes"),
        (lambda c: c.mvm(0, np.full((1, 64), 128)), r"within \+-127"),
        (lambda c: c.read_conductance(0, 10, 5), r"row range \[10, 5\)"),
        (
            lambda c: c.configure(0, read_voltage=0.5),
            "read_voltage = 0.5 V exceeds read_voltage_max",
        ),
        (lambda c: c.configure(0, adc_bits=20), r"adc_bits = 20 is outside \[2, 16\]"),
        (lambda c: c.configure(0, read_mode="2-phase"), "allowed"),
        (lambda c: c.configure(0, adc_gain=float("nan")), "adc_gain"),
        (lambda c: c.configure(0, colour=1), r"unknown configuration field\(s\) \['colour'\]"),
        (lambda c: c.advance(float("inf")), "finite"),
        (lambda c: c.advance(-1), ">= 0"),
        (lambda c: c.advance(1.7e308), r"within \[0, 1e\+10\] s"),
        (lambda c: c.advance_to(float("nan")), "finite"),
    ],
)
def test_bad_requests_name_the_problem_and_change_nothing(call, match):
    chip = Chip.from_preset("pcm-small", seed=0)
    snap = snapshot(chip)
    cfg = chip.config(0)
    with pytest.raises(InvalidRequestError, match=match):
        call(chip)
    assert_unchanged(chip, snap)
    assert chip.config(0) == cfg


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(name="pcm-huge"), "unknown chip preset 'pcm-huge'"),
        (dict(cores=0), r"n_cores = 0 must be an integer in \[1, 1024\]"),
        (dict(devices_per_polarity=3), "devices_per_polarity = 3"),
        (dict(colour="red"), r"unknown chip option\(s\) \['colour'\]"),
        (dict(model_params={"g_set_men": 1.0}), "g_set_men"),
    ],
)
def test_bad_chip_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Chip.from_preset(**{"name": "pcm-small", **kwargs})


def test_loading_a_foreign_file_fails_clearly(tmp_path):
    bad = tmp_path / "not-a-chip.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(InvalidRequestError, match="not a"):
        Chip.load(bad)
    (tmp_path / "garbage").write_bytes(b"\x00garbage")
    with pytest.raises(InvalidRequestError, match="not a saved labcim chip"):
        Chip.load(tmp_path / "garbage")


def test_the_clock_stays_finite_and_advancing_to_a_time_reached_changes_nothing():
    chip = Chip.from_preset("pcm-small", seed=0)
    assert chip.advance_to(100.0) == 100.0
    assert chip.advance_to(50.0) == 100.0  # already there: a replayed wait is a no-op
    assert chip.advance_to(100.0) == 100.0
    for _ in range(2):  # issue 13: twice 1.7e308 made the clock infinite
        with pytest.raises(InvalidRequestError, match="within"):
            chip.advance(1.7e308)
    assert chip.time == 100.0
    assert np.isfinite(chip.read_conductance(0)).all()


# -- physics behind knobs: temperature, ADC INL, wear ---------------------------------


def drifting_chip(**model_params) -> Chip:
    """pcm-small with every core's devices at 5 uS, fresh (t_p = now), no wander/noise."""
    chip = Chip.from_preset(
        "pcm-small",
        seed=6,
        model_params={"read_noise_scale": 0.0, "read_noise_rel": 0.0, **model_params},
    )
    for core in range(chip.spec.n_cores):
        set_conductances(chip, core, np.full((2, 2, 64, 64), 5.0))
    return chip


def test_temperature_speeds_up_drift_by_the_arrhenius_factor():
    chip = drifting_chip()
    hot = 358.15  # 85 degC
    chip.configure(1, temperature=hot)
    start = chip.time
    chip.advance(86400.0)
    cold, warm = (chip.read_conductance(c)[0, 0, 0] for c in (0, 1))
    nu = float(chip.state["nu"][1, 0, 0, 0, 0])
    accel = chip.model.time_acceleration(hot)
    assert accel == pytest.approx(np.exp(0.3 / 8.617333262e-5 * (1 / 300 - 1 / hot)))
    assert accel > 5
    t0 = 300.0
    assert warm / 5.0 == pytest.approx(((accel * 86400.0 + t0) / t0) ** -nu, rel=1e-3)
    assert cold / 5.0 == pytest.approx(
        ((86400.0 + t0) / t0) ** -float(chip.state["nu"][0, 0, 0, 0, 0]), rel=1e-3
    )
    # cooling back: the device clock continues (no jump), then runs at the chip's rate
    t_dev = chip.cores[1].device_time(chip.time)
    chip.configure(1, temperature=300.0)
    assert chip.cores[1].device_time(chip.time) == pytest.approx(t_dev)
    chip.advance(100.0)
    assert chip.cores[1].device_time(chip.time) == pytest.approx(t_dev + 100.0)
    assert chip.cores[0].device_time(chip.time) == chip.time  # reference: exactly the clock
    assert start < chip.time


def test_temperature_raises_read_noise_and_round_trips(tmp_path):
    chip = Chip.from_preset("pcm-small", seed=7)
    chip.advance(10.0)
    spread = []
    for temperature in (300.0, 390.0):
        chip.configure(2, temperature=temperature)
        a, b = chip.read_conductance(2), chip.read_conductance(2)
        spread.append(np.std((b - a) / a))
    assert spread[1] / spread[0] == pytest.approx(np.sqrt(390.0 / 300.0), rel=0.05)
    chip.save(tmp_path / "hot.npz")
    loaded = Chip.load(tmp_path / "hot.npz")
    assert (
        loaded.cores[2].thermal == chip.cores[2].thermal and loaded.config(2).temperature == 390.0
    )
    info = chip.identify()["temperature"]
    assert info["unit"] == "K" and info["reference"] == 300.0 and info["max"] == 398.15
    with pytest.raises(
        InvalidRequestError, match=r"temperature = 500 is outside \[233.15, 398.15\] K"
    ):
        chip.configure(2, temperature=500)
    chip.reset_config()
    assert chip.config(2).temperature == 300.0


def test_adc_inl_bends_the_transfer_per_column():
    periphery = {
        **IDEAL_PERIPHERY,
        "adc_inl_even_std": 0.02,
        "adc_inl_odd_mean": 0.05,
        "adc_inl_odd_std": 0.01,
    }
    rng = np.random.default_rng(10)
    chip = Chip.from_preset("pcm-small", seed=10, model_params=IDEAL_DEVICES, periphery=periphery)
    chip.configure(0, ir_drop=False, adc_bits=10)
    set_conductances(chip, 0, hermes_test_matrix(chip, rng))
    x = hermes_inputs(chip, rng, 200)
    g = chip.state["g_prog"][0]
    linear = 0.2 * (x / 127) @ (g[0].sum(0) - g[1].sum(0)) / chip.adc_lsb(0)
    top = 511
    u = np.clip(linear / top, -1, 1)
    even, odd = chip.state["inl_even"][0], chip.state["inl_odd"][0]
    assert np.std(even) == pytest.approx(0.02, rel=0.25) and np.mean(odd) == pytest.approx(
        0.05, rel=0.1
    )
    expected = np.clip(np.rint(linear + top * (u**2 - 1) * (even + odd * u)), -top, top)
    np.testing.assert_array_equal(chip.mvm(0, x), expected)
    assert np.abs(chip.mvm(0, x) - np.rint(linear)).max() > 5  # it is not small
    plain = Chip.from_preset("pcm-small", seed=10)
    assert all(xbar.inl is None for xbar in plain.cores)  # off by default: nothing drawn


def test_device_pulsed_past_its_endurance_is_stuck_and_write_verify_reports_it():
    """A device that outlives its endurance during programming is found dead and named
    worn (it had responded before); its cell fails if the other device cannot cover."""
    from chip_support import write_verify

    chip = Chip.from_preset(
        "pcm-small",
        cores=1,
        seed=11,
        model_params={"stuck_fraction": 0.0, "endurance": 8.0, "endurance_log_std": 0.3},
    )
    counts = chip.state["pulse_counts"][0]
    state = write_verify(chip, "tdp", np.random.default_rng(12).uniform(1.0, 9.0, (2, 64, 64)))
    stuck = chip.state["stuck"][0]
    endurance = chip.state["endurance"][0]
    np.testing.assert_array_equal(stuck, counts >= endurance)  # worn = pulsed past endurance
    assert stuck.sum() > 100
    summary = state.summary()
    print(summary)
    assert not (state.dead & ~stuck).any()  # no working device is called dead
    assert summary["worn_devices"] > 0.5 * stuck.sum()
    assert summary["worn_devices"] == int((state.dead & state.devices["responded"]).sum())
    assert (state.failed | state.converged)[stuck.any(axis=1)].mean() > 0.9
    # a worn device ignores every further pulse
    g = chip.model.programmed_conductance(chip.state)[0][stuck]
    pol, d, r, c = np.nonzero(stuck)
    chip.apply_pulses(
        0,
        r,
        c,
        pol * 2 + d,
        np.full(len(r), PulseKind.RESET),
        np.full(len(r), 600.0),
        np.full(len(r), 1e-7),
    )
    np.testing.assert_array_equal(chip.model.programmed_conductance(chip.state)[0][stuck], g)
