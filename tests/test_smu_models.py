"""The Keysight B1500A (FLEX) and B2900 (SCPI) beside the 2450: plans, detection, limits.

From the outside: the simulated instruments over pyvisa-py, the plans through the real
RunEngine and HDF5 writer, ``labcim run`` in a subprocess, PyMeasure's own B1500 driver.
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from bluesky import RunEngine
from plans_support import run_plan

from drivers.smu import Keithley2450, KeysightB1500A, KeysightB2900, SMUError, SMULimitError
from labcim import connect_smu, open_runs
from labcim.connection import detect_smu, smu_models
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer
from plans.iv import forming, iv_sweep

NEW_MODELS = [("b1500a", KeysightB1500A), ("b2900", KeysightB2900)]


def server_for(model: str, seed: int = 3) -> SMUServer:
    return SMUServer(ProbedRRAM(np.random.default_rng(seed)), model=model)


@pytest.mark.parametrize(
    ("model", "cls"), [("2450", Keithley2450), *NEW_MODELS], ids=["2450", "b1500a", "b2900"]
)
def test_the_model_is_detected_from_idn(model, cls):
    with server_for(model) as server:
        assert detect_smu(server.resource) is cls
        smu = connect_smu(server.resource)
        try:
            assert isinstance(smu.driver, cls)
        finally:
            smu.close()


def test_an_explicit_model_overrides_detection_and_unknown_names_are_refused():
    with server_for("b2900") as server:
        with pytest.raises(ValueError, match=r"'hp4156' is not one of \[.*'b1500a'.*\]"):
            connect_smu(server.resource, driver="hp4156")
        before = len(server.received)
        smu = connect_smu(server.resource, driver="B2900")  # names are case-insensitive
        smu.close()
        assert server.received[before] == "*RST"  # no *IDN? probe before the driver's own
    assert {"2450", "b2900", "b1500a"} <= set(smu_models())


def test_an_instrument_no_model_matches_is_named_with_its_reply():
    with server_for("2450") as server:
        server.instrument._handlers["*IDN?"] = lambda a: "ACME,SMU-9,1,1"
        with pytest.raises(SMUError, match=r"answered 'ACME,SMU-9,1,1'.*Keysight B1500A"):
            connect_smu(server.resource)


@pytest.mark.parametrize(("model", "cls"), NEW_MODELS, ids=["b1500a", "b2900"])
def test_forming_and_iv_sweep_run_on_the_new_instruments(model, cls, tmp_path):
    with server_for(model) as server:
        smu = connect_smu(server.resource, current_limit=50e-6, max_voltage=4.5)
        try:
            assert isinstance(smu.driver, cls)
            run = run_plan(tmp_path / "f.h5", forming(smu, 20e-6, 4.5, v_start=2.0))
            assert run.exit_status == "success", run.reason
            s = run.summary
            assert s["formed"] and 2.8 <= s["forming_voltage"] <= 3.8  # RRAMParams' range
            assert smu.output.get() is False and smu.voltage.get() == 0.0
            plan = iv_sweep(smu, 1.5, -1.5, points=11, current_limit=50e-6,
                            reset_current_limit=1e-3, cycles=2)  # fmt: skip
            sweep = run_plan(tmp_path / "iv.h5", plan)
            assert sweep.exit_status == "success", sweep.reason
            g_on, g_off = sweep.summary["g_on"], sweep.summary["g_off"]
            assert np.all(g_on > 5 * g_off)  # SET and RESET switched the device each cycle
            assert smu.driver.errors() == []
        finally:
            smu.close()


@pytest.mark.parametrize(
    ("model", "call", "named"),
    [
        ("b1500a", lambda s: s.source_voltage(4.6), "max_voltage=4.5"),
        ("b1500a", lambda s: s.set_current_limit(2e-3), "max_current"),
        ("b1500a", lambda s: s.linear_sweep(0.0, 5.0, 11), "max_voltage=4.5"),
        ("b1500a", lambda s: s.list_sweep([0.0, -4.7]), "max_voltage=4.5"),
        ("b1500a", lambda s: s.linear_sweep(0.0, 1.0, 10002), "sweep points"),
        ("b2900", lambda s: s.source_voltage(-4.6), "max_voltage=4.5"),
        ("b2900", lambda s: s.set_current_limit(1e-12), "instrument minimum"),
        ("b2900", lambda s: s.list_sweep(np.zeros(2501)), "sweep points"),
        ("b2900", lambda s: s.linear_sweep(0.0, np.nan, 5), "finite"),
    ],
)
def test_out_of_limit_settings_are_refused_before_anything_is_sent(model, call, named):
    cls = dict(NEW_MODELS)[model]
    with server_for(model) as server, cls(server.resource, max_voltage=4.5) as smu:
        with pytest.raises(SMULimitError, match=named):
            call(smu)
        time.sleep(0.05)
        assert server.received == []


@pytest.mark.parametrize(
    ("cls", "kwargs", "named"),
    [
        (KeysightB1500A, {"max_voltage": 150.0}, r"\(0, 100.0\] V"),
        (KeysightB1500A, {"max_current": 0.2}, r"0.1\] A"),
        (KeysightB1500A, {"channel": 11}, "slot 1-10"),
        (KeysightB2900, {"max_voltage": 300.0}, r"\(0, 210.0\] V"),
    ],
)
def test_safe_limits_beyond_the_instrument_are_refused(cls, kwargs, named):
    with server_for("b1500a") as server:
        with pytest.raises(SMULimitError, match=named):
            cls(server.resource, **kwargs)
        assert server.received == []


def test_pymeasures_b1500_driver_reads_the_currents_labcims_driver_reads():
    pymeasure = pytest.importorskip("pymeasure.instruments.agilent.agilentB1500")
    with server_for("b1500a", seed=11) as server, KeysightB1500A(server.resource) as ours:
        ours.reset()
        ours.set_current_limit(1e-4)
        _, i_ours = ours.linear_sweep(0.0, 4.0, 41)
    with server_for("b1500a", seed=11) as server:
        b1500 = pymeasure.AgilentB1500(server.resource)
        b1500.reset()
        b1500.initialize_all_smus()
        b1500.data_format(21, mode=1)
        b1500.smu1.enable()
        b1500.meas_mode("STAIRCASE_SWEEP", b1500.smu1)
        b1500.smu1.meas_op_mode = "COMPLIANCE_SIDE"
        b1500.sweep_timing(0, 0)
        b1500.sweep_auto_abort(False, post="STOP")
        b1500.smu1.staircase_sweep_source("VOLTAGE", "LINEAR_SINGLE", "Auto Ranging",
                                          0, 4, 41, 1e-4)  # fmt: skip
        b1500.clear_buffer()
        b1500.send_trigger()
        assert b1500.check_idle() == "1"
        # One point at a time: PyMeasure 0.16's read_data needs pandas < 3 (applymap).
        points = [b1500.read_channels(2) for _ in range(41)]
        b1500.adapter.close()
    i_theirs = np.array([p[0][3] for p in points])
    v_source = np.array([p[1][3] for p in points])
    assert [p[0][2] for p in points] == ["Current Measurement (A)"] * 41
    np.testing.assert_allclose(v_source, np.linspace(0, 4, 41), atol=1e-9)
    np.testing.assert_array_equal(i_theirs, i_ours)  # same seed, same 13 digits
    assert np.abs(i_ours).max() == 1e-4  # the device formed during the sweep


@pytest.mark.slow  # subprocesses: several seconds
def test_labcim_run_drives_a_b1500a_named_or_detected(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "labcim.cli", "sim", "smu", "--model", "b1500a", "--seed", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        resource = proc.stdout.readline().strip()
        out = str(tmp_path / "iv.h5")
        for extra in ([], ["--smu-model", "b1500a"]):
            run = subprocess.run(
                [sys.executable, "-m", "labcim.cli", "--quiet", "run", "forming", "--chip",
                 resource, "--out", out, *extra, "-p", "target_current=10e-6",
                 "-p", "v_stop=4.0", "-p", "v_start=2.5"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr
        wrong = subprocess.run(
            [sys.executable, "-m", "labcim.cli", "--quiet", "run", "forming", "--chip",
             "sim://pcm-small", "--out", out, "--smu-model", "b1500a"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert wrong.returncode == 2
        assert wrong.stderr.strip() == (
            "labcim run: --smu-model needs a VISA resource as --chip, not sim://pcm-small"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    first, second = open_runs(out)
    assert first.exit_status == second.exit_status == "success"
    assert first.summary["formed"]  # the device formed in the first run
    assert second.summary["steps"] == 1  # and conducts from the first step of the second


def test_run_engine_stays_usable_after_a_refused_plan():
    with server_for("b2900") as server:
        smu = connect_smu(server.resource, max_voltage=4.0)
        try:
            with pytest.raises(ValueError, match=r"max_voltage=4.0 V \(largest \|v\| = 4.5 V\)"):
                RunEngine({})(forming(smu, 10e-6, 4.5))
            assert smu.driver.errors() == []
        finally:
            smu.close()


def test_sim_smu_takes_a_model_file_for_its_device(tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(
        "format: labcim-model\nversion: 1\npreset: rram-small\n"
        "model_params: {v_form_mean: 2.9, v_form_std: 0.01}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "labcim.cli", "sim", "smu", "--model", "b2900",
         "--device-model", str(model), "--seed", "2"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        resource = proc.stdout.readline().strip()
        smu = connect_smu(resource, max_voltage=4.0)
        try:
            assert isinstance(smu.driver, KeysightB2900)
            run = run_plan(tmp_path / "f.h5", forming(smu, 10e-6, 4.0, v_start=2.5))
        finally:
            smu.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    assert run.summary["forming_voltage"] == pytest.approx(2.9, abs=0.051)  # the file's


def test_sim_smu_refuses_a_model_file_of_the_other_device_type(tmp_path):
    model = tmp_path / "pcm.yaml"
    model.write_text("format: labcim-model\nversion: 1\npreset: pcm-small\n")
    run = subprocess.run(
        [sys.executable, "-m", "labcim.cli", "sim", "smu", "--device-model", str(model)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"labcim sim smu: --device-model {model} is a pcm model, --device is rram"
    )
