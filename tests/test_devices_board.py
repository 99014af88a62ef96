"""The board devices through bluesky's RunEngine, against sim:// and a TCP board server."""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.suspenders import SuspendCeil
from devices_support import Collector, check_value

from drivers.board import BoardLimitError, BoardRefusedError
from labcim.connection import connect
from labcim.hdf5 import HDF5Writer, open_runs
from mock_hw.board_server import BoardHandler, Faults, FaultyHandler, TcpBoardServer
from mock_hw.chip import Chip

ROWS = COLS = 64
DPP = 2


@pytest.fixture(params=["sim", "tcp"])
def board(request):
    """A pcm-small board with 2 cores, in-process or through a real TCP socket."""
    if request.param == "sim":
        dev = connect("sim://pcm-small?cores=2&seed=5")
        yield dev
    else:
        chip = Chip.from_preset("pcm-small", cores=2, seed=5)
        with TcpBoardServer(BoardHandler(chip)).start() as server:
            dev = connect(server.url)
            yield dev
    dev.close()


@pytest.fixture
def engine():
    engine = RunEngine({}, call_returns_result=True)
    collector = Collector()
    engine.subscribe(collector)
    engine.collector = collector
    return engine


def pulses(n=8, amplitude=100.0):
    """A SET pulse batch on the first n cells of row 0, positive device 0."""
    return {
        "row": np.zeros(n, int),
        "col": np.arange(n),
        "device": np.zeros(n, int),
        "kind": np.zeros(n, int),
        "amplitude": np.full(n, amplitude),
        "width": np.full(n, 1e-6),
    }


def test_count_core_records_arrays_and_configuration_once(board, engine):
    core = board.core0
    core.mvm.inputs.set(np.ones((5, ROWS), np.int64)).wait()
    engine(bp.count([core, board.fpga], num=3))
    docs = engine.collector
    (descriptor,) = docs.of("descriptor")
    keys = descriptor["data_keys"]
    assert keys["board_core0_conductance_map"]["shape"] == [2 * DPP, ROWS, COLS]
    assert keys["board_core0_conductance_map"]["dtype_numpy"] == "<f4"
    assert keys["board_core0_conductance_map"]["units"] == "uS"
    assert keys["board_core0_mvm_codes"]["shape"] == [5, COLS]
    assert keys["board_core0_mvm_codes"]["dtype_numpy"] == "<i4"
    assert keys["board_core0_mvm_outputs"]["dtype_numpy"] == "<f8"
    assert keys["board_core0_mvm_inputs"]["shape"] == [5, ROWS]
    assert keys["board_fpga_clock"]["units"] == "s"
    config = descriptor["configuration"]
    assert set(config["board_core0"]["data"]) == set(core.read_configuration())
    assert config["board_core0"]["data"]["board_core0_adc_bits"] == 8
    assert config["board_fpga"]["data"]["board_fpga_firmware"] == board.fpga.firmware.get()
    assert descriptor["hints"]["board_core0"]["fields"] == [
        "board_core0_conductance_mean",
        "board_core0_mvm_mean_abs",
    ]
    events = docs.events()
    assert len(events) == 3
    for event in events:
        assert "board_core0_adc_bits" not in event["data"]  # configuration is not per event
        for key, value in event["data"].items():
            check_value(key, keys[key], value)
    g = np.asarray(events[-1]["data"]["board_core0_conductance_map"])
    assert np.all(np.isfinite(g)) and g.mean() > 0
    assert docs.of("stop")[0]["exit_status"] == "success"


def test_event_arrays_have_a_short_repr_and_are_the_recorded_data(board, engine, tmp_path):
    # event-model formats repr(event["data"]) while it validates each event: numpy's
    # repr of the arrays cost more than the rest of the event.
    core = board.core0
    core.mvm.inputs.set(np.ones((5, ROWS), np.int64)).wait()
    engine.subscribe(HDF5Writer(tmp_path))
    engine(bp.count([core], num=2))
    events = engine.collector.events()
    recorded = open_runs(tmp_path)[-1].streams["primary"]
    for i, event in enumerate(events):
        text = repr(event["data"])
        assert len(text) < 600, text
        assert "shape=(4, 64, 64), dtype=float32" in text
        for key in ("board_core0_conductance_map", "board_core0_mvm_codes"):
            value = np.asarray(event["data"][key])
            assert type(value) is np.ndarray
            np.testing.assert_array_equal(value, recorded[key][i])
    # What a callback computes from a reading is plain numpy, shown with its values.
    g = events[0]["data"]["board_core0_conductance_map"]
    for result in (g.mean(axis=0), g * 2, g[0, :2, :2]):
        assert "ReadingArray" not in repr(result)
    assert type(g.max()) is np.float32
    np.testing.assert_array_equal(
        g.mean(axis=0), recorded["board_core0_conductance_map"][0].mean(axis=0)
    )


def test_pulses_with_a_verify_id_are_read_back_in_the_same_status_once(board, engine):
    # plans.stubs.pulse_and_read: what bluesky replays after a pause is the same set.
    from plans.stubs import PulseArgument

    core = board.core1
    before = board.client.status()["pulses_applied"]
    core.conductance.trigger().wait(10)
    unpulsed = np.array(core.conductance.map.get())
    reset = {**pulses(8, amplitude=400.0), "kind": np.ones(8, int), "width": np.full(8, 1e-7)}
    argument = PulseArgument(reset, verify=True)
    maps = []
    for _ in range(2):  # the first execution and a replay of the same message
        core.program.set(argument).wait(10)
        maps.append(np.array(core.conductance.map.get()))
    assert board.client.status()["pulses_applied"] - before == 8
    np.testing.assert_array_equal(maps[0], maps[1])  # the replay's read is the first one
    assert maps[0].shape == (2 * DPP, ROWS, COLS)
    # Read after the pulses: the RESET cells are amorphous, the others as they were.
    assert np.all(maps[0][0, 0, :8] < 0.2 * unpulsed[0, 0, :8]), (maps[0][0, 0, :8], unpulsed)
    np.testing.assert_allclose(maps[0][0, 1:], unpulsed[0, 1:], atol=3.0)


def test_mv_program_and_trigger_and_read_loop(board, engine):
    """A write-verify-shaped plan: one pulse batch and one conductance map per iteration."""
    core = board.core1
    before = board.client.status()["pulses_applied"]  # the board's own count (STATUS)

    def plan():
        yield from bps.open_run()
        for _ in range(3):
            yield from bps.mv(core.program, pulses())
            yield from bps.trigger_and_read([core.conductance, core.program])
        yield from bps.close_run()

    engine(plan())
    events = engine.collector.events()
    assert [e["data"]["board_core1_program_applied"] for e in events] == [8, 8, 8]
    maps = [np.asarray(e["data"]["board_core1_conductance_map"]) for e in events]
    assert all(m.shape == (2 * DPP, ROWS, COLS) for m in maps)
    assert board.client.status()["pulses_applied"] - before == 24


def test_mv_configuration_and_clock(board, engine):
    core = board.core0
    engine(bps.mv(core.adc_bits, 6, core.read_mode, "1-phase", core.read_voltage, 0.25))
    assert board.client.get_config(0)["adc_bits"] == 6
    assert (core.adc_bits.get(), core.read_mode.get(), core.read_voltage.get()) == (
        6,
        "1-phase",
        0.25,
    )
    assert board.core1.adc_bits.get() == 8
    engine(bps.mv(board.fpga.wait_until, 3600.0))
    assert board.fpga.clock.get() == 3600.0 == board.client.clock()
    engine(bps.mv(board.fpga.wait_until, 3600.0))  # reached already: nothing moves
    assert board.client.clock() == 3600.0
    with pytest.raises(ValueError, match=r"clock target 1.7e\+308 s must be finite and within"):
        board.fpga.wait_until.set(1.7e308)


def test_mvm_outputs_are_codes_times_lsb(board):
    core = board.core0
    x = np.random.default_rng(0).integers(-127, 128, (4, ROWS))
    core.mvm.inputs.set(x).wait()
    core.mvm.trigger().wait(10)
    codes, outputs = core.mvm.codes.get(), core.mvm.outputs.get()
    assert codes.dtype == np.int32 and codes.shape == (4, COLS)
    np.testing.assert_array_equal(outputs, codes * core.adc_lsb.get())


def test_board_reports_adc_lsb(board):
    """The ADC step follows the configuration: its full scale (step x largest code) is
    fixed by the read voltage and the gain, and does not depend on the ADC's bits."""
    core = board.core0
    full = core.adc_lsb.get() * (2 ** (core.adc_bits.get() - 1) - 1)
    assert full > 0
    core.adc_bits.set(6).wait(5)
    assert core.adc_lsb.get() * 31 == pytest.approx(full)
    core.read_voltage.set(core.read_voltage.get() / 2).wait(5)
    assert core.adc_lsb.get() * 31 == pytest.approx(full / 2)
    core.adc_gain.set(4.0).wait(5)
    assert core.adc_lsb.get() * 31 == pytest.approx(full / 8)


def test_hdf5_writer_records_a_run(board, engine, tmp_path):
    core = board.core0
    core.mvm.inputs.set(np.full((3, ROWS), 5)).wait()
    engine.subscribe(HDF5Writer(tmp_path / "runs.h5", fsync=False))
    engine(bp.count([core], num=2))
    (run,) = open_runs(tmp_path / "runs.h5")
    stream = run.streams["primary"]
    assert np.asarray(stream["board_core0_conductance_map"]).shape == (2, 2 * DPP, ROWS, COLS)
    event = engine.collector.events()[-1]["data"]
    np.testing.assert_array_equal(
        np.asarray(stream["board_core0_mvm_codes"])[-1], event["board_core0_mvm_codes"]
    )
    assert run.config["primary"]["board_core0"]["board_core0_read_mode"] == "4-phase"


def test_best_effort_callback_takes_the_runs(board, engine):
    bec = BestEffortCallback()
    bec.disable_plots()
    engine.subscribe(bec)
    board.core0.mvm.inputs.set(np.ones((2, ROWS), int)).wait()
    engine(bp.count([board.core0, board.fpga], num=2))
    engine(bp.scan([board.core0.conductance], board.fpga.wait_until, 10, 20, 3))
    assert [d["exit_status"] for d in engine.collector.of("stop")] == ["success", "success"]


def test_board_error_fails_the_run_with_its_message(board, engine):
    with pytest.raises(Exception, match="adc_bits = 99 is outside"):
        engine(_mv_in_run(board.core0.adc_bits, 99))
    (stop,) = engine.collector.of("stop")
    assert stop["exit_status"] == "fail"
    assert "BoardRefusedError" in stop["reason"] and "adc_bits = 99 is outside" in stop["reason"]
    assert board.core0.adc_bits.get() == 8
    with pytest.raises(BoardRefusedError, match="adc_bits"):
        board.core0.adc_bits.set(99).wait(5)


def _mv_in_run(signal, value):
    yield from bps.open_run()
    yield from bps.mv(signal, value)
    yield from bps.close_run()


@pytest.mark.parametrize(
    ("attr", "value", "error", "match"),
    [
        ("mvm.inputs", np.ones((2, ROWS - 1), int), ValueError, r"shape \(batch >= 1, 64\)"),
        ("mvm.inputs", np.ones((2, ROWS)), ValueError, "integer DAC codes"),
        ("mvm.inputs", np.full((2, ROWS), 128), ValueError, r"within \+-127"),
        ("program", pulses(amplitude=1e4), BoardLimitError, "refused before sending"),
        ("program", {**pulses(), "row": np.full(8, ROWS)}, ValueError, r"row\[0\] = 64"),
        ("program", {**pulses(), "width": np.ones(7)}, ValueError, "equal length"),
        ("program", {"row": [0]}, ValueError, "lacks"),
    ],
)
def test_bad_input_fails_before_anything_is_sent(board, engine, attr, value, error, match):
    device = board.core0
    for part in attr.split("."):
        device = getattr(device, part)
    frames = board.client.stats.frames_sent
    applied = board.client.status()["pulses_applied"]
    with pytest.raises(error, match=match):
        device.set(value)
    with pytest.raises(error, match=match):
        engine(_mv_in_run(device, value))
    assert engine.collector.of("stop")[-1]["exit_status"] == "fail"
    assert board.client.stats.frames_sent == frames + 1  # the STATUS read above only
    assert board.client.status()["pulses_applied"] == applied


def test_unknown_core_and_missing_inputs(board):
    with pytest.raises(IndexError, match=r"core 2 does not exist; cores are 0..1"):
        board.core(2)
    assert board.core(1) is board.core1
    assert [c.name for c in board.cores] == ["board_core0", "board_core1"]
    with pytest.raises(AttributeError):
        board.core2  # noqa: B018
    with pytest.raises(ValueError, match="set board_core0_mvm_inputs before triggering"):
        board.core0.mvm.trigger()


def test_suspender_on_link_health_pauses_and_resumes():
    """A degraded link trips a SuspendCeil on retry_fraction; a clean link resumes the run."""
    board = connect("sim://pcm-small?cores=1")
    transport = board.client.transport
    handler = transport.board
    engine = RunEngine({})
    collector = Collector()
    engine.subscribe(collector)
    suspended = threading.Event()

    def on_suspend():
        suspended.set()
        yield from bps.null()

    suspender = SuspendCeil(board.fpga.retry_fraction, 0.2, sleep=0.05, pre_plan=on_suspend)
    engine.install_suspender(suspender)

    def heal():
        assert suspended.wait(10)
        transport.board = handler
        while board.fpga.retry_fraction.get() > 0.2:
            board.fpga.trigger().wait(5)  # clean probes refill the window

    def plan():
        yield from bps.open_run()
        for i in range(6):
            if i == 2:
                transport.board = FaultyHandler(handler, Faults(drop=0.5, seed=1))
            yield from bps.trigger_and_read([board.core0.conductance])
        yield from bps.close_run()

    board.client.timeout, board.client.retries = 0.01, 20
    healer = threading.Thread(target=heal)
    healer.start()
    engine(plan())
    healer.join()
    assert suspended.is_set()
    assert board.fpga.retries.get() > 0
    assert len(collector.events()) >= 6  # steps interrupted by the suspension are redone
    assert collector.of("stop")[0]["exit_status"] == "success"
    board.close()
