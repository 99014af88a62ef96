"""SMU driver against the simulated Keithley 2450 through pyvisa-py, and the I-V model."""

import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import pyvisa

from drivers.smu import Keithley2450, SMUError, SMULimitError, SMUTimeoutError
from mock_hw.iv_device import ProbedPCM, ProbedRRAM
from mock_hw.smu_scpi import SimulatedSMU, normalize_header
from mock_hw.smu_server import SMUServer

TIMEOUT_MS = 250.0


@pytest.fixture
def server():
    with SMUServer(ProbedRRAM(np.random.default_rng(7))) as srv:
        yield srv


@pytest.fixture
def smu(server):
    with Keithley2450(server.resource, timeout=TIMEOUT_MS) as driver:
        yield driver


def sweep(device, voltages, i_limit):
    return np.array([device.apply(v, i_limit) for v in voltages]).T


def loop(v_max, n=16):
    """0 -> v_max -> 0 (V)."""
    return np.r_[np.linspace(0.0, v_max, n), np.linspace(v_max, 0.0, n)]


# -- the I-V model ---------------------------------------------------------------------


def test_compliance_is_exact_and_lowers_the_device_voltage():
    device = ProbedRRAM(np.random.default_rng(1))
    v, i = sweep(device, np.linspace(0, 4, 81), 1e-4)
    assert np.all(np.abs(i) <= 1e-4)
    limited = np.abs(i) == 1e-4
    assert limited.any()
    assert np.all(v[limited] < np.linspace(0, 4, 81)[limited])


def test_forming_happens_at_the_board_models_forming_voltage_then_leakage_is_gone():
    device = ProbedRRAM(np.random.default_rng(2))
    p = device.model.params
    volts = np.linspace(0, 4.5, 451)
    _, i = sweep(device, volts, 1e-4)
    formed_at = volts[np.argmax(np.abs(i) >= 1e-4)]
    assert p.v_form_min <= formed_at <= p.v_form_max  # the board's RRAMParams: 2.8-3.8 V
    assert np.all(np.abs(i[volts < 2.0]) < 1e-6)  # sub-uA leakage before forming
    assert device.g >= 1e-6  # formed: at least the board model's g_min


def test_lrs_conductance_follows_the_compliance_up_to_the_models_g_max():
    g = {}
    for limit in (5e-6, 2e-5, 2e-4):
        # the median of 15 devices: one device's SET overshoots by its own noise (at 5 uA
        # its quartiles are about 6 and 10 uS)
        levels = []
        for seed in range(15):
            device = ProbedRRAM(np.random.default_rng(seed))
            sweep(device, loop(4.0), 1e-4)  # form
            sweep(device, loop(-2.0), 1e-3)  # RESET to near g_min
            sweep(device, loop(2.5, 60), limit)  # SET under this compliance
            levels.append(device.g)
        g[limit] = np.median(levels)
    # The SET stops once the limited voltage I_C / g falls to the SET threshold (~1.15 V).
    assert 4e-6 < g[5e-6] < 10e-6 and 12e-6 < g[2e-5] < 25e-6
    assert g[2e-4] == pytest.approx(40e-6, rel=0.1)  # RRAMDevice's G_MAX


def test_same_seed_same_curve():
    curves = [sweep(ProbedRRAM(np.random.default_rng(4)), loop(4.0), 1e-4) for _ in range(2)]
    np.testing.assert_array_equal(*curves)


def test_pcm_sets_below_and_resets_above_its_melting_current():
    device = ProbedPCM(np.random.default_rng(5))
    assert not device.amorphous  # the board model's fresh PCM is crystalline
    sweep(device, [3.0], 1e-4)  # limited to 100 uA < ~180 uA: no melting
    assert not device.amorphous
    sweep(device, [3.0], 1e-3)
    assert device.amorphous
    sweep(device, [0.5], 1e-3)  # below the threshold-switching voltage
    assert device.amorphous
    sweep(device, [1.3], 1e-4)  # snaps on, 100 uA crystallizes it
    assert not device.amorphous
    sweep(device, [1.3], 1e-3)  # crystalline: ~40 uA at 1.3 V, nothing to snap
    assert not device.amorphous
    sweep(device, [3.0], 1e-3)
    assert device.amorphous


# -- the SCPI interpreter --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "canonical"),
    [
        (":SOURce1:VOLTage:LEVel:IMMediate", "SOUR:VOLT"),
        ("sour:volt:ilim?", "SOUR:VOLT:ILIM?"),
        (":SENSe:FUNCtion", "FUNC"),
        (":SYSTem:ERRor:NEXT?", "SYST:ERR?"),
        (":OUTPut:STATe", "OUTP"),
        ("*idn?", "*IDN?"),
    ],
)
def test_long_short_and_optional_forms_are_one_header(header, canonical):
    assert normalize_header(header) == canonical


def test_bad_commands_queue_scpi_errors_and_queries_then_stay_silent():
    smu = SimulatedSMU(ProbedRRAM(np.random.default_rng(0)))
    assert smu.handle(":NOPE:CMD 1") is None
    assert smu.handle(":SOUR:VOLT 500") is None
    assert smu.handle(":TRAC:DATA? 1, 5") is None  # empty buffer
    assert [code for code, _ in smu.errors] == [-113, -222, -222]
    assert smu.handle(":SYST:ERR?") == '-113,"Undefined header"'


# -- the driver through pyvisa-py ------------------------------------------------------


def test_identify(smu):
    assert smu.identify().startswith("KEITHLEY INSTRUMENTS,MODEL 2450")


def test_reset_configures_a_voltage_source_measuring_current(smu, server):
    smu.reset()
    assert smu.errors() == []
    assert server.received[:3] == ["*RST", ":SOUR:FUNC VOLT", ':SENS:FUNC "CURR"']
    assert not server.instrument.output


def test_source_and_measure_a_fresh_device(smu, server):
    smu.reset()
    smu.set_current_limit(1e-4)
    smu.source_voltage(0.2)
    smu.output(True)
    i = smu.measure_current()
    assert 0 < i < 1e-8  # nA-scale leakage of an unformed device
    smu.output(False)
    assert server.instrument.i_limit == 1e-4
    assert smu.errors() == []


def test_forming_then_bipolar_set_reset_loop(smu):
    smu.reset()
    smu.set_current_limit(1e-4)
    v, i = smu.linear_sweep(0.0, 4.0, 41)
    assert v.dtype == np.float64 and v.shape == i.shape == (41,)
    assert np.all(np.abs(i) <= 1e-4)
    assert i[-1] == 1e-4 and v[-1] < 3.0  # formed, in compliance: 100 uA / 40 uS = 2.5 V
    smu.source_voltage(0.0)  # the output stays on: a higher limit at 4 V would SET further

    reads = []
    for _ in range(3):
        smu.set_current_limit(1e-3)  # RESET draws more than the SET compliance
        v, i = smu.list_sweep(loop(-1.5))
        assert np.all(np.abs(i) <= 1e-3)
        reads.append(smu.list_sweep([0.2, 0.2])[1].mean())
        smu.set_current_limit(1e-4)
        v, i = smu.list_sweep(loop(1.5))
        assert np.all(np.abs(i) <= 1e-4)
        up, down = i[:16], i[16:][::-1]
        assert down[5] > 10 * up[5]  # hysteresis: same voltage, SET changed the current
        reads.append(smu.list_sweep([0.2, 0.2])[1].mean())
    hrs, lrs = np.array(reads[0::2]), np.array(reads[1::2])
    assert np.all(lrs > 10 * hrs)
    assert smu.errors() == []


def test_long_lists_are_sent_in_chunks(smu, server):
    v, _ = smu.list_sweep(np.linspace(0, 0.5, 250))
    assert v.size == 250
    np.testing.assert_allclose(v, np.linspace(0, 0.5, 250), rtol=1e-6)  # 7 digits on the wire
    headers = [line.split(" ")[0] for line in server.received]
    assert headers.count(":SOUR:LIST:VOLT") == 1
    assert headers.count(":SOUR:LIST:VOLT:APP") == 2


def test_error_queue_reports_what_another_client_did_wrong(server):
    rm = pyvisa.ResourceManager("@py")
    raw = rm.open_resource(server.resource, read_termination="\n", write_termination="\n")
    raw.write(":BOGUS:COMMAND 1")
    raw.write(":SOUR:VOLT 500")
    # Each connection has its own server thread: without this query the next client's
    # error query could be served before these writes were.
    assert raw.query("*OPC?") == "1"
    raw.close()
    with Keithley2450(server.resource, timeout=TIMEOUT_MS) as smu:
        assert smu.errors() == [(-113, "Undefined header"), (-222, "Data out of range")]
        assert smu.errors() == []


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda s: s.source_voltage(5.5), "max_voltage=5.0"),
        (lambda s: s.source_voltage(math.nan), "finite"),
        (lambda s: s.set_current_limit(2e-3), "max_current"),
        (lambda s: s.set_current_limit(1e-12), "instrument minimum"),
        (lambda s: s.linear_sweep(0.0, 6.0, 11), "max_voltage=5.0"),
        (lambda s: s.list_sweep([0.0, 1.0, -7.0]), "max_voltage=5.0"),
        (lambda s: s.linear_sweep(0.0, 1.0, 1), "sweep points"),
    ],
)
def test_out_of_limit_values_are_refused_before_sending(smu, server, call, named):
    with pytest.raises(SMULimitError, match=named):
        call(smu)
    time.sleep(0.05)
    assert server.received == []


def test_safe_limits_beyond_the_instrument_are_refused(server):
    with pytest.raises(SMULimitError, match="210"):
        Keithley2450(server.resource, max_voltage=300.0)
    with pytest.raises(SMULimitError, match=r"1\.05"):
        Keithley2450(server.resource, max_current=2.0)


def test_silent_instrument_times_out_instead_of_hanging(smu, server):
    server.silent = True
    t0 = time.perf_counter()
    with pytest.raises(SMUTimeoutError, match=r"'\*IDN\?' within 250 ms"):
        smu.identify()
    assert time.perf_counter() - t0 < TIMEOUT_MS / 1000 + 0.5


def test_closed_connection_gives_a_clear_error_then_fails_fast(smu, server):
    assert smu.identify()
    server.drop_connections()
    time.sleep(0.05)
    with pytest.raises(SMUError, match="connection lost") as exc:
        smu.measure_current()
    assert not isinstance(exc.value, SMUTimeoutError)
    assert "MEAS:CURR?" in str(exc.value) and server.resource in str(exc.value)
    t0 = time.perf_counter()
    with pytest.raises(SMUError, match="connection lost"):
        smu.identify()
    assert time.perf_counter() - t0 < 0.05


@pytest.mark.parametrize("pause", [0.0, 0.6])  # late reply still in flight / already there
def test_late_reply_after_a_timeout_is_not_taken_for_the_next_answer(smu, server, pause):
    server.reply_delay = 0.5
    with pytest.raises(SMUTimeoutError):
        smu.identify()
    server.reply_delay = 0.0
    time.sleep(pause)
    i = smu.measure_current()  # a stale "KEITHLEY..." here would not parse as a float
    assert abs(i) < 1e-8
    assert smu.identify().startswith("KEITHLEY")
    assert server.instrument.ese == 0  # the sync token is cleared again


def test_server_refuses_non_loopback_addresses():
    with pytest.raises(ValueError, match="loopback"):
        SMUServer(ProbedRRAM(np.random.default_rng(0)), host="0.0.0.0")


def test_commands_written_back_to_back_are_not_held_by_nagle(smu):
    # With Nagle on, each write after a write waits ~40 ms for the server's delayed ACK.
    smu.identify()
    t0 = time.perf_counter()
    for _ in range(20):
        smu.set_current_limit(1e-4)
        smu.source_voltage(0.2)
        smu.measure_current()
    assert (time.perf_counter() - t0) / 20 < 0.02


# -- the command line ------------------------------------------------------------------

# Stand-in for ``labcim sim smu`` while the ``sim`` group is not wired in labcim.cli.
_REGISTER_ONLY = """
import argparse, sys
from labcim.cli import sim_smu
sub = argparse.ArgumentParser().add_subparsers()
sim_smu.register(sub)
args = sub._name_parser_map["smu"].parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def _sim_smu_command() -> list[str]:
    from labcim.cli import build_parser

    try:
        parser = build_parser()
    except ImportError:  # the sim group names a module that does not exist yet
        return [sys.executable, "-c", _REGISTER_ONLY]
    sub = next(a for a in parser._actions if a.dest == "command")
    if "sim" in sub.choices:
        return [sys.executable, "-m", "labcim.cli", "sim", "smu"]
    return [sys.executable, "-c", _REGISTER_ONLY]


def test_cli_prints_the_resource_first_serves_and_exits_0_on_ctrl_c():
    proc = subprocess.Popen(
        [*_sim_smu_command(), "--port", "0", "--seed", "3", "--device", "pcm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        resource = proc.stdout.readline().strip()
        assert resource.startswith("TCPIP::127.0.0.1::") and resource.endswith("::SOCKET")
        with Keithley2450(resource, timeout=2000) as smu:
            assert "2450" in smu.identify()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
