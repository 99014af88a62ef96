"""Issue 12: every plan pauses, suspends, stops and aborts at its iteration boundaries,
and what bluesky replays after a resume is harmless.

Real plans from the ``labcim.plans`` entry points, a real RunEngine and HDF5 writer, the
simulated chip over ``sim://`` and over a TCP socket, the simulated SMU over its VISA
socket.  Pulses are counted through the board's own STATUS reply; data are compared
with an uninterrupted run of the same seed, read back from the files.
"""

from __future__ import annotations

import threading
import time
from importlib.metadata import entry_points

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.suspenders import SuspendBoolHigh, SuspendCeil
from bluesky.utils import RunEngineInterrupted
from ophyd import Signal
from pause_support import (
    Interrupt,
    assert_same_data,
    defer_pause,
    execute,
    pause_now,
    raise_for,
)

from labcim import connect, connect_smu
from labcim.network.tasks import diabetes_regressor
from mock_hw.board_server import BoardHandler, Faults, FaultyHandler, TcpBoardServer
from mock_hw.chip import Chip
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer
from plans.stubs import PulseArgument

PRESET, SEED = "pcm-small", 5
DIABETES = diabetes_regressor()


def weights(shape=(64, 128)):
    return np.random.default_rng(2).uniform(-1, 1, shape)


BOARD_PLANS = {
    "tdp_program": lambda p, b: p(b, weights(), cores=[0, 1], max_iterations=8),
    "mvm_characterization": lambda p, b: p(
        b, cores=[0, 1], n_vectors=64, batch_size=16, max_iterations=4
    ),
    "conductance_map": lambda p, b: p(b, cores=[0, 1], reads=4),
    "adc_characterization": lambda p, b: p(
        b, cores=[0, 1], repeats=4, test_vectors=64, max_iterations=4
    ),
    "retention": lambda p, b: p(b, times=[10.0, 100.0, 1000.0], max_iterations=4),
    "network_inference": lambda p, b: p(
        b,
        DIABETES.model,
        DIABETES.X_test[:48],
        DIABETES.y_test[:48],
        X_cal=DIABETES.X_train[:64],
        times=[1.0, 100.0],
        batch_size=16,
        max_iterations=4,
    ),
}
SMU_PLANS = {
    "iv_sweep": lambda p, s: p(s, 1.5, -1.5, points=6, cycles=2, reset_current_limit=200e-6),
    "forming": lambda p, s: p(s, 10e-6, 4.0, v_start=2.0, v_step=0.1),
}
PLANS = {ep.name: ep.load() for ep in entry_points(group="labcim.plans")}


def test_every_registered_plan_is_covered():
    assert set(PLANS) <= set(BOARD_PLANS) | set(SMU_PLANS)


def sim_board():
    return connect(f"sim://{PRESET}?cores=2&seed={SEED}"), None


def socket_board():
    server = TcpBoardServer(BoardHandler(Chip.from_preset(PRESET, cores=2, seed=SEED))).start()
    return connect(server.url), server


LINKS = {"sim": sim_board, "socket": socket_board}


def on_board(name, link, out, interrupt=None, **options):
    """Run plan ``name`` on a fresh board; the run, whether it paused, the board STATUS."""
    board, server = LINKS[link]()
    if interrupt is not None:
        interrupt.attach(board)
    try:
        run, paused = execute(out, BOARD_PLANS[name](PLANS[name], board), interrupt, **options)
        return run, paused, board.client.status()
    finally:
        board.close()
        if server is not None:
            server.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each board plan run once without interruption, on sim://."""
    out = tmp_path_factory.mktemp("plain")
    return {name: on_board(name, "sim", out / name) for name in BOARD_PLANS}


def recorded_pulses(run):
    """Pulses the run says it applied: the sum of every ``*_pulses`` figure."""
    total = 0
    for name in ("primary", "program"):
        stream = run.streams.get(name)
        if stream is not None:
            total += sum(int(np.sum(stream[k])) for k in stream if k.endswith("_pulses"))
    return total


LINK_PARAMS = [
    pytest.param("sim", id="sim"),
    pytest.param("socket", id="socket", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("link", LINK_PARAMS)
@pytest.mark.parametrize("name", list(BOARD_PLANS))
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_a_deferred_pause_then_resume_changes_nothing(name, link, uninterrupted, tmp_path):
    run, paused, status = on_board(name, link, tmp_path, Interrupt(2, defer_pause))
    want, _, want_status = uninterrupted[name]
    assert paused and run.exit_status == "success"
    assert_same_data(run, want)
    assert status["pulses_applied"] == want_status["pulses_applied"] == recorded_pulses(run)
    assert status["clock"] == want_status["clock"]
    assert status["pulses_acknowledged"] == 0  # a deferred pause replays nothing


MID_ITERATION_3 = {
    # tdp_program: core 0's pulse batch of iteration 3 acknowledged, core 1's queued or
    # not yet applied.
    "tdp_program": lambda board: board.core0.program.applied,
    # mvm_characterization: core 0's MVM of the 3rd batch done, core 1's not yet.
    "mvm_characterization": lambda board: board.core0.mvm.mean_abs,
    # network_inference: core 0's MVM of the first batch done (after the calibration's
    # and the drift reference's), the batch's later MVMs not yet: one device operation
    # stopped in the middle, replayed with the same operation ids.
    "network_inference": lambda board: board.core0.mvm.mean_abs,
    # conductance_map: core 0's read of the 3rd pass done, core 1's not yet; the clock
    # read before them is replayed too, and must give the clock of its first pass.
    "conductance_map": lambda board: board.core0.conductance.mean,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MID_ITERATION_3))
def test_an_immediate_pause_mid_iteration_replays_harmlessly(name, uninterrupted, tmp_path):
    """A second Ctrl-C mid-iteration: the messages of the iteration are replayed."""
    interrupt = Interrupt(3, pause_now, signal=MID_ITERATION_3[name])
    run, paused, status = on_board(name, "socket", tmp_path, interrupt)
    want, _, want_status = uninterrupted[name]
    assert paused and run.exit_status == "success"
    assert_same_data(run, want)
    assert status["pulses_applied"] == want_status["pulses_applied"]
    assert status["clock"] == want_status["clock"]
    assert status["pulses_acknowledged"] + status["replies_replayed"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BOARD_PLANS))
def test_an_immediate_pause_after_the_2nd_event_resumes_to_the_same_data(
    name, uninterrupted, tmp_path
):
    run, paused, status = on_board(name, "socket", tmp_path, Interrupt(2, pause_now))
    want, _, want_status = uninterrupted[name]
    assert paused and run.exit_status == "success"
    assert_same_data(run, want)
    assert status["pulses_applied"] == want_status["pulses_applied"]
    assert status["clock"] == want_status["clock"]


@pytest.mark.parametrize("name", list(MID_ITERATION_3))
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_a_suspender_raised_after_iteration_2_suspends_and_resumes(name, uninterrupted, tmp_path):
    flag = Signal(name="cable_swap", value=0)
    suspender = SuspendBoolHigh(flag, sleep=0.05)
    interrupt = Interrupt(3, raise_for(flag, 1.0), signal=MID_ITERATION_3[name])
    t0 = time.monotonic()
    run, paused, status = on_board(name, "sim", tmp_path, interrupt, suspenders=(suspender,))
    want, _, want_status = uninterrupted[name]
    assert not paused and run.exit_status == "success"
    assert time.monotonic() - t0 > 1.0  # it did wait for the flag to go low
    assert_same_data(run, want)
    assert status["pulses_applied"] == want_status["pulses_applied"]
    assert status["pulses_acknowledged"] + status["replies_replayed"] > 0  # it did replay


@pytest.mark.slow
def test_a_suspender_on_the_link_health_suspends_while_the_link_is_bad(uninterrupted, tmp_path):
    """SuspendCeil on retry_fraction, as the README offers: a degraded link suspends
    tdp_program, a healed one resumes it, and the results are those of a clean run."""
    board, _ = sim_board()
    transport = board.client.transport
    handler = transport.board
    board.client.timeout, board.client.retries = 0.02, 20
    suspended = []

    def on_suspend():
        suspended.append(time.monotonic())
        transport.board = handler  # the link recovers while suspended
        while board.fpga.retry_fraction.get() > 0.2:
            board.fpga.trigger().wait(5)  # clean probes refill the window
        yield from []

    def degrade(RE):
        transport.board = FaultyHandler(handler, Faults(drop=0.5, seed=1))

    suspender = SuspendCeil(board.fpga.retry_fraction, 0.2, sleep=0.05, pre_plan=on_suspend)
    plan = BOARD_PLANS["tdp_program"](PLANS["tdp_program"], board)
    run, _ = execute(tmp_path, plan, Interrupt(2, degrade, "primary"), suspenders=(suspender,))
    status = board.client.status()
    board.close()
    want, _, want_status = uninterrupted["tdp_program"]
    assert suspended and run.exit_status == "success"
    assert_same_data(run, want)
    assert status["pulses_applied"] == want_status["pulses_applied"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pause", "suspend"])
def test_retention_interrupted_after_a_read_keeps_the_times_of_its_reads(how, tmp_path):
    """Paused or suspended after core 0's read at the 2nd time (core 1's not yet): the
    replayed wait for that time leaves the clock of its first pass, so the recorded
    read times (``board_fpga_clock``, ``elapsed``) are those of an uninterrupted run."""

    def retention_run(out, interrupt=None, suspenders=()):
        board, _ = sim_board()
        if interrupt is not None:
            interrupt.attach(board)
        plan = PLANS["retention"](board, times=[10.0, 100.0, 1000.0], program=False)
        try:
            return execute(out, plan, interrupt, suspenders=suspenders)
        finally:
            board.close()

    want, _ = retention_run(tmp_path / "plain")
    flag = Signal(name="cable_swap", value=0)
    action = pause_now if how == "pause" else raise_for(flag, 0.5)
    interrupt = Interrupt(2, action, signal=lambda board: board.core0.conductance.mean)
    got, paused = retention_run(tmp_path / how, interrupt, (SuspendBoolHigh(flag, sleep=0.05),))
    assert interrupt.seen >= 2 and paused == (how == "pause")
    assert got.exit_status == "success"
    assert_same_data(got, want)


@pytest.mark.parametrize(("how", "exit_status"), [("stop", "success"), ("abort", "abort")])
@pytest.mark.parametrize("name", list(BOARD_PLANS))
def test_stop_and_abort_end_every_plan_promptly(name, how, exit_status, uninterrupted, tmp_path):
    stopped = []

    def interrupt(RE):
        stopped.append(time.monotonic())
        getattr(RE, how)()

    t0 = time.monotonic()
    run, _, status = on_board(name, "sim", tmp_path, Interrupt(2, interrupt))
    assert stopped and time.monotonic() - stopped[0] < 5.0
    assert run.exit_status == exit_status
    want, _, want_status = uninterrupted[name]
    assert sum(run.num_events.values()) < sum(want.num_events.values())
    assert status["pulses_applied"] <= want_status["pulses_applied"]
    assert time.monotonic() - t0 < 60


@pytest.fixture
def smu_server():
    def start():
        return SMUServer(ProbedRRAM(np.random.default_rng(7)))

    return start


@pytest.mark.parametrize("how", ["defer", "now"])
@pytest.mark.parametrize("name", list(SMU_PLANS))
def test_smu_plans_pause_and_resume_without_switching_the_device_again(
    name, how, smu_server, tmp_path
):
    runs = []
    for interrupt in (None, Interrupt(2, defer_pause if how == "defer" else pause_now)):
        with smu_server() as server:
            smu = connect_smu(server.resource)
            try:
                plan = SMU_PLANS[name](PLANS[name], smu)
                runs.append(execute(tmp_path / str(len(runs)), plan, interrupt))
            finally:
                smu.close()
    (want, _), (run, paused) = runs
    assert paused and run.exit_status == "success"
    if how == "now" and name == "forming":
        # The interrupted step is measured again (that is how it re-reads the device):
        # one more reading from the noise generator, but the same steps, no higher
        # voltage, and the same forming voltage.
        np.testing.assert_array_equal(
            run.streams["primary"]["smu_voltage"], want.streams["primary"]["smu_voltage"]
        )
        for key in ("formed", "forming_voltage", "steps"):
            assert run.summary[key] == want.summary[key], key
        return
    # The same instrument readings: no sweep, step or setting was sent twice (the
    # simulated device's noise and switching come from one seeded generator).
    assert_same_data(run, want)


class SlowReplies:
    """A board whose every reply takes ``seconds``: long batches take a while to send."""

    def __init__(self, handler, seconds):
        self.handler, self.seconds = handler, seconds

    def handle(self, frame):
        time.sleep(self.seconds)
        return self.handler.handle(frame)


def long_batch(n=2000):
    """``n`` SET pulses on distinct devices of core 0 of a pcm-small chip."""
    device, row, col = np.unravel_index(np.arange(n), (4, 64, 64))
    kind = np.zeros(n, int)
    return {
        "row": row,
        "col": col,
        "device": device,
        "kind": kind,
        "amplitude": np.full(n, 150.0),
        "width": np.full(n, 1e-7),
    }


@pytest.mark.parametrize("how", ["abort", "pause"])
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_a_long_pulse_batch_is_interrupted_between_frames(how):
    """RE.abort() ends a 47-frame batch between two frames, promptly, with nothing
    applied; an immediate pause replays it on resume and it is applied exactly once."""
    chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
    server = TcpBoardServer(SlowReplies(BoardHandler(chip), 0.02)).start()
    board = connect(server.url, max_frame=1024)  # 43 pulses a frame: ~1 s for the batch
    batch = PulseArgument(long_batch())
    RE = RunEngine({})
    asked = []

    @bpp.run_decorator()
    def plan():
        yield from bps.checkpoint()
        yield from bps.mv(board.core0.program, batch)

    def interrupt():
        time.sleep(0.3)
        asked.append(time.monotonic())
        RE.abort() if how == "abort" else RE.request_pause(defer=False)

    thread = threading.Thread(target=interrupt)
    try:
        thread.start()
        with pytest.raises(RunEngineInterrupted):
            RE(plan())
        assert time.monotonic() - asked[0] < 0.5
        thread.join()
        assert board.client.status()["pulses_applied"] == 0  # half a batch is never applied
        if how == "pause":
            RE.resume()
            status = board.client.status()
            assert status["pulses_applied"] == len(batch)  # exactly once, as a whole
    finally:
        board.close()
        server.close()
