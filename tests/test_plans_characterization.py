"""mvm_characterization, conductance_map, retention, iv_sweep and forming end to end:
RunEngine + devices + codec (or VISA) + HDF5 writer, figures recomputed from the file."""

from __future__ import annotations

import numpy as np
import pytest
from bluesky import RunEngine
from plans_support import on_board, on_chip, pulses_applied, run_plan

from drivers.smu import SMULimitError
from labcim.characterization import differential_weights, drift_by_level, ideal_outputs
from labcim.connection import connect_smu
from labcim.metrics import linear_fit, mvm_error
from mock_hw import pcm_stats
from mock_hw.chip import Chip
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer
from plans import conductance_map, forming, iv_sweep, mvm_characterization, retention

HERMES = "sim://pcm-hermes?cores=1&seed=0"


@pytest.mark.slow
def test_mvm_error_four_phase_within_a_few_percent_and_below_one_phase(tmp_path):
    board, run = on_board(
        HERMES,
        tmp_path,
        lambda b: mvm_characterization(
            b, read_modes=["4-phase", "1-phase"], n_vectors=1000, batch_size=500, seed=3
        ),
    )
    assert run.exit_status == "success", run.reason
    s = run.summary
    four, one = s["core0_4phase_d8_a8_mvm_error"], s["core0_1phase_d8_a8_mvm_error"]
    print(f"MVM error 4-phase {four:.2f} %, 1-phase {one:.2f} %")
    print(f"vs targets 4-phase {s['core0_4phase_d8_a8_mvm_error_target']:.2f} %")
    assert four < 5.0 and four < one
    assert board.core0.read_mode.get() == "4-phase"  # restored
    # The file alone: ideal outputs from the stored inputs and reference map.
    md, primary = run.metadata, run.streams["primary"]
    dpp = md["board_identity"]["devices_per_polarity"]
    w_ref = differential_weights(run.streams["reference"]["board_core0_conductance_map"][0], dpp)
    modes = primary["board_core0_read_mode"]
    for mode, key in (("4-phase", "4phase"), ("1-phase", "1phase")):
        rows = np.flatnonzero(modes == mode)
        x = np.concatenate(primary["board_core0_mvm_inputs"][rows])
        y = np.concatenate(primary["board_core0_mvm_outputs"][rows])
        v = primary["board_core0_read_voltage"][rows[0]]
        ideal = ideal_outputs(x, w_ref, v, primary["board_core0_dac_bits"][rows[0]])
        np.testing.assert_allclose(
            ideal, np.concatenate(primary["board_core0_mvm_ideal_readback"][rows])
        )
        prefix = f"core0_{key}_d8_a8_"
        assert mvm_error(y, ideal) == pytest.approx(s[prefix + "mvm_error"], rel=1e-9)
        assert linear_fit(y, ideal)["gain"] == pytest.approx(s[prefix + "gain"], rel=1e-9)
        target = md["programming"]["targets"]["core0"]
        ideal_t = ideal_outputs(x, target[0] - target[1], v, 8)
        assert mvm_error(y, ideal_t) == pytest.approx(s[prefix + "mvm_error_target"], rel=1e-9)


@pytest.mark.slow
def test_retention_drift_exponent_matches_the_simulator(tmp_path):
    times = [1e4, 3e4, 1e5, 3e5, 1e6]
    chip = Chip.from_preset("pcm-hermes", cores=1, seed=0)
    _, run = on_chip(chip, tmp_path, lambda b: retention(b, times, t0=200.0))
    assert run.exit_status == "success", run.reason
    s, primary = run.summary, run.streams["primary"]
    maps = primary["board_core0_conductance_map"]
    elapsed = primary["elapsed"]
    np.testing.assert_allclose(elapsed, times, rtol=1e-3)
    fit = drift_by_level(elapsed + 200.0, maps, len(s["core0_nu"]), 1.0)
    np.testing.assert_allclose(fit["nu"], s["core0_nu"])  # recomputed from the file
    state = chip.state  # the simulator's ground truth
    truth = state["nu"][0].reshape(maps.shape[1:])
    working = ~state["stuck"][0].reshape(maps.shape[1:])
    for b, nu in enumerate(s["core0_nu"]):
        sel = (fit["bin"].reshape(truth.shape) == b) & working
        true = np.median(truth[sel])
        print(f"level {s['core0_level'][b]:6.2f} uS: nu {nu:.4f}, truth {true:.4f}")
        assert nu == pytest.approx(true, rel=0.10)
    # Per cell: the summed conductance of each polarity, on the two-device fit.
    cells = maps.astype(np.float64).reshape(len(times), 2, 2, *maps.shape[2:]).sum(axis=2)
    cell_fit = drift_by_level(elapsed + 200.0, cells, len(s["core0_cell_nu"]), 1.0)
    np.testing.assert_allclose(cell_fit["nu"], s["core0_cell_nu"])
    np.testing.assert_allclose(cell_fit["ratio"], s["core0_cell_ratio"])
    cell_truth = state["nu"][0].max(axis=1)  # shared by the cell's devices (0 if stuck)
    g_cell = chip.model.programmed_conductance(chip.cores[0].devices).sum(axis=1)
    cell_working = working.reshape(2, 2, *maps.shape[2:]).all(axis=1)
    for b, nu in enumerate(s["core0_cell_nu"]):
        sel = (cell_fit["bin"].reshape(cell_truth.shape) == b) & cell_working
        true = np.median(cell_truth[sel])
        published = np.median(pcm_stats.drift_nu_mean(g_cell[sel] / pcm_stats.G_MAX[2]))
        level = s["core0_cell_level"][b]
        print(f"cell level {level:6.2f} uS: nu {nu:.4f}, truth {true:.4f}, HERMES {published:.4f}")
        assert nu == pytest.approx(true, rel=0.10)
        assert nu == pytest.approx(published, rel=0.10)


def test_conductance_map_summary_from_file(tmp_path):
    _, run = on_board(
        "sim://pcm-small?seed=1", tmp_path, lambda b: conductance_map(b, cores=[1, 2], reads=2)
    )
    assert run.exit_status == "success", run.reason
    g = run.streams["primary"]["board_core2_conductance_map"]
    assert g.shape == (2, 4, 64, 64)
    assert run.summary["core2_mean"] == pytest.approx(float(g[-1].astype(float).mean()))
    assert 0 < run.summary["core2_read_noise"] < 0.5


def test_mvm_without_programming_and_bad_arguments(tmp_path):
    board, run = on_board(
        "sim://pcm-small?seed=1",
        tmp_path,
        lambda b: mvm_characterization(
            b, cores=[0, 1], dac_bits=[4, 8], n_vectors=64, batch_size=32, program=False
        ),
    )
    assert run.exit_status == "success", run.reason
    assert "program" not in run.streams and len(run.streams["primary"]) == 4
    assert {"core1_4phase_d4_a8_mvm_error", "core0_4phase_d8_a8_gain"} <= set(run.summary)
    assert np.abs(run.streams["primary"]["board_core0_mvm_inputs"][0]).max() <= 7
    # A computed value is data, not a setting: the run's configuration holds the cores'
    # settings only, not the first batch's ideal outputs again.
    fields = [key for obj in run.streams["primary"].config.values() for key in obj]
    assert {"board_core0_adc_bits", "board_core1_read_mode"} <= set(fields)
    assert not [key for key in fields if "ideal" in key]
    RE = RunEngine({})
    cases = [
        (dict(read_modes=["2-phase"]), "read_modes.*allowed"),
        (dict(adc_bits=[17]), r"adc_bits\[0\] = 17 .*\[2, 16\]"),
        (dict(n_vectors=10, batch_size=3), "batch_size = 3 must divide"),
        (dict(cores=[4]), "cores.*does not exist"),
    ]
    before = pulses_applied(board)
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            RE(mvm_characterization(board, **kwargs))
    with pytest.raises(ValueError, match="times"):
        RE(retention(board, [10.0, 5.0]))
    assert pulses_applied(board) == before


@pytest.fixture
def smu_setup():
    with SMUServer(ProbedRRAM(np.random.default_rng(3))) as server:
        smu = connect_smu(server.resource, current_limit=50e-6, max_voltage=4.0, max_current=1e-3)
        yield server, smu
        smu.close()


def test_forming_stops_at_the_target_and_switches_off(smu_setup, tmp_path):
    _, smu = smu_setup
    run = run_plan(tmp_path, forming(smu, target_current=20e-6, v_stop=4.0, current_limit=50e-6))
    assert run.exit_status == "success", run.reason
    s, primary = run.summary, run.streams["primary"]
    i = np.abs(primary["smu_current"])
    assert s["formed"] and s["steps"] == len(primary)
    assert i[-1] >= 20e-6 and np.all(i[:-1] < 20e-6)  # stopped at the step that reached it
    assert s["forming_voltage"] == pytest.approx(primary["smu_voltage"][-1])
    assert 2.8 <= s["forming_voltage"] <= 3.8  # RRAMParams: forming at 2.8-3.8 V
    assert smu.output.get() is False and smu.voltage.get() == 0.0


def test_bipolar_sweep_records_both_branches(smu_setup, tmp_path):
    _, smu = smu_setup
    run_plan(tmp_path, forming(smu, target_current=20e-6, v_stop=4.0, current_limit=50e-6))
    run = run_plan(
        tmp_path,
        iv_sweep(smu, 1.5, -1.5, points=16, current_limit=50e-6, reset_current_limit=200e-6),
    )
    assert run.exit_status == "success", run.reason
    primary, s = run.streams["primary"], run.summary
    assert list(primary["branch"]) == [0, 1] and primary["smu_sweep_current"].shape == (2, 31)
    assert np.all(np.abs(primary["smu_sweep_current"][0]) <= 50e-6 * (1 + 1e-6))
    assert s["set_i_max"][0] == pytest.approx(np.abs(primary["smu_sweep_current"][0]).max())
    assert s["g_on"][0] > 10 * s["g_off"][0]  # SET then RESET
    assert smu.output.get() is False


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(v_set=5.0, v_reset=-1.0), SMULimitError, "within"),
        (dict(v_set=1.0, v_reset=-1.0, current_limit=2e-3), Exception, "max_current"),
        (dict(v_set=1.0, v_reset=1.0), ValueError, "v_reset"),
        (dict(v_set=np.nan, v_reset=-1.0), ValueError, "v_set"),
    ],
)
def test_bad_sweeps_send_nothing(smu_setup, kwargs, error, match):
    server, smu = smu_setup
    sent = len(server.received)
    with pytest.raises(error, match=match):
        RunEngine({})(iv_sweep(smu, **kwargs))
    assert server.received[sent:] == []


def test_forming_target_above_limit_is_refused(smu_setup):
    server, smu = smu_setup
    sent = len(server.received)
    with pytest.raises(ValueError, match="never reached"):
        RunEngine({})(forming(smu, target_current=1e-3, v_stop=3.0, current_limit=1e-4))
    assert server.received[sent:] == []
