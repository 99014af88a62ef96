"""The SMU device against the simulated Keithley 2450, over loopback TCP with pyvisa-py."""

from __future__ import annotations

import importlib.util
import re

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus
from devices_support import Collector, check_compliance, check_value

from drivers.smu import SMUError, SMULimitError
from labcim.connection import connect_smu
from labcim.devices import SMU
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer


@pytest.fixture
def server():
    with SMUServer(ProbedRRAM(np.random.default_rng(3))) as srv:
        yield srv


@pytest.fixture
def smu(server):
    dev = connect_smu(server.resource, current_limit=50e-6, max_voltage=4.0)
    yield dev
    dev.close()


@pytest.fixture
def engine():
    engine = RunEngine({})
    engine.collector = Collector()
    engine.subscribe(engine.collector)
    return engine


def test_connect_resets_and_reads_back(smu, server):
    assert isinstance(smu, SMU)
    assert "2450" in smu.idn.get()
    assert (smu.voltage.get(), smu.output.get(), smu.current_limit.get()) == (0.0, False, 50e-6)
    assert any(line.upper().startswith("*RST") for line in server.received)


def test_mv_and_count(smu, engine):
    engine(bps.mv(smu.voltage, 0.2, smu.output, 1))
    assert smu.output.get() is True
    engine(bp.count([smu], num=3))
    (descriptor,) = engine.collector.of("descriptor")
    assert descriptor["data_keys"]["smu_current"]["units"] == "A"
    assert descriptor["configuration"]["smu"]["data"]["smu_current_limit"] == 50e-6
    assert descriptor["hints"]["smu"]["fields"] == ["smu_voltage", "smu_current"]
    events = engine.collector.events()
    assert [e["data"]["smu_voltage"] for e in events] == [0.2] * 3
    assert all(0 < abs(e["data"]["smu_current"]) <= 50e-6 for e in events)
    check_compliance(smu)


def test_sweep_through_trigger_and_read(smu, engine):
    points = np.r_[np.linspace(0, 3.5, 8), np.linspace(3.5, 0, 8)]
    smu.sweep.points.set(points).wait()
    engine(bps.mv(smu.sweep.delay, 0.0))
    engine(bp.count([smu.sweep]))
    (descriptor,) = engine.collector.of("descriptor")
    keys = descriptor["data_keys"]
    assert keys["smu_sweep_current"]["shape"] == [16]
    (event,) = engine.collector.events()
    for key, value in event["data"].items():
        check_value(key, keys[key], value)
    i = np.asarray(event["data"]["smu_sweep_current"])
    assert np.all(np.abs(i) <= 50e-6 * (1 + 1e-6))
    assert smu.output.get() is True and smu.voltage.get() == 0.0
    check_compliance(smu.sweep)


def test_bad_values_fail_before_sending(smu, server, engine):
    sent = len(server.received)
    with pytest.raises(SMULimitError, match="within"):
        smu.sweep.points.set([0.0, 5.0])
    with pytest.raises(FailedStatus, match=r"SMULimitError.*max_voltage"):
        engine(bps.mv(smu.voltage, 4.5))
    with pytest.raises(ValueError, match="set smu_sweep_points before triggering"):
        smu.sweep.trigger()
    assert len(server.received) == sent


def test_instrument_failure_fails_the_run(smu, server, engine):
    server.silent = True
    smu.driver.timeout = 200.0  # ms

    def plan():
        yield from bps.open_run()
        yield from bps.trigger_and_read([smu])
        yield from bps.close_run()

    with pytest.raises(Exception, match="SMUTimeoutError"):
        engine(plan())
    (stop,) = engine.collector.of("stop")
    assert stop["exit_status"] == "fail" and "SMUTimeoutError" in stop["reason"]


def test_stage_restores_output(smu):
    smu.stage_sigs["output"] = True
    smu.stage()
    assert smu.output.get() is True
    smu.unstage()
    assert smu.output.get() is False


@pytest.mark.parametrize(
    ("resource", "module", "extra"),
    [("USB0::0x05E6::0x2450::04096331::INSTR", "usb", "usb"), ("GPIB0::18::INSTR", "gpib", "gpib")],
)
def test_a_bench_resource_pyvisa_py_cannot_open_names_the_extra(resource, module, extra):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed: pyvisa-py opens {resource.split('::')[0]}")
    with pytest.raises(SMUError, match=re.escape(f'pip install "labcim[{extra}]"')):
        connect_smu(resource)
