"""Each SMU driver writes exactly the documented commands and reads the documented replies.

The exchange tables (tests/smu_exchanges.py) come from the manuals; the drivers play
against them here, and the simulators answer the same queries in the same formats.
"""

import re

import numpy as np
import pytest
import smu_exchanges as tables

from drivers.smu import Keithley2450, KeysightB1500A, KeysightB2900, SMUError
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer

MODELS = [
    (Keithley2450, tables.K2450, tables.K2450_IDN, "2450"),
    (KeysightB2900, tables.B2900, tables.B2900_IDN, "b2900"),
    (KeysightB1500A, tables.B1500, tables.B1500_IDN, "b1500a"),
]
IDS = ["2450", "b2900", "b1500a"]


def play(cls, exchanges):
    visa = tables.ScriptedVisa(exchanges)
    return cls("SCRIPTED::INSTR", resource_manager=visa), visa.resource


@pytest.mark.parametrize(("cls", "table", "idn", "model"), MODELS, ids=IDS)
def test_a_session_writes_exactly_the_documented_commands(cls, table, idn, model):
    script = [("*IDN?", idn)] + table["reset"] + table["limit"] + table["level"]
    script += table["output"] + table["measure"] + table["sweep"] + table["errors"]
    smu, resource = play(cls, script)
    assert smu.identify() == idn
    smu.reset()
    smu.set_current_limit(1e-4)
    smu.source_voltage(0.5)
    smu.output(True)
    assert smu.measure_current() == 1.23456e-06
    v, i = smu.linear_sweep(0.0, 2.0, 3)
    np.testing.assert_array_equal(v, tables.SWEEP_V)
    np.testing.assert_array_equal(i, tables.SWEEP_I)
    code, message = smu.errors()[0]
    assert code in (-222, 120) and message.startswith(("Data out of range", "Incorrect"))
    assert resource.done()


@pytest.mark.parametrize(("cls", "table", "idn", "model"), MODELS, ids=IDS)
def test_a_sweep_reply_of_the_wrong_length_is_an_error(cls, table, idn, model):
    script = list(table["sweep"])
    command, reply = script[-1]
    script[-1] = (command, reply.rsplit(",", 2)[0])  # one point missing
    smu, _ = play(cls, script)
    with pytest.raises(SMUError, match=r"expected \d"):
        smu.linear_sweep(0.0, 2.0, 3)


# The simulators answer the documented queries in the documented formats.

NR3 = r"[+-]?\d\.\d{6}E[+-]\d\d"
REPLY_FORMATS = {
    "2450": [
        ("*IDN?", r"KEITHLEY INSTRUMENTS,MODEL 2450,[^,]+,[^,]+"),
        (":MEAS:CURR?", NR3),
        (':TRAC:ACT? "defbuffer1"', r"\d+"),
        ("*OPC", None),
        ("*ESR?", "1"),  # no sweep running: operation complete at once
        ("*ESR?", "0"),  # read and cleared
        (":SYST:ERR?", r'0,"No error"'),
    ],
    "b2900": [
        ("*IDN?", r"Keysight Technologies,B29\d\dA,[^,]+,[^,]+"),
        (":MEAS:CURR? (@1)", NR3),
        ("*OPC?", "1"),
        ("*OPC", None),
        ("*ESR?", "1"),
        (":SYST:ERR?", r'\+0,"No error"'),
    ],
    "b1500a": [
        ("*IDN?", r"Keysight Technologies,B1500A,[^,]+,[^,]+"),
        ("UNT?", r"B1517A,0(;0,0){9}"),
        ("CN 1", None),
        ("TI 1,0", r"[NC]AI[+-]\d\.\d{5}E[+-]\d\d"),  # FMT 1 after *RST: 12 digits
        ("FMT 21,0", None),
        ("TI 1,0", r"0[0-9]{2}AI" + NR3),
        ("TV 1,0", r"0[0-9]{2}AV" + NR3),
        ("ERRX?", r'\+0,"No Error\."'),
        ("XE", None),  # no measurement mode: an error, answered by ERRX?
        ("ERRX?", r'\+201,"No measurement mode set; enter MM first\."'),
        ("ERR?", r"0,0,0,0"),
    ],
}


@pytest.mark.parametrize("model", IDS)
def test_the_simulators_answer_in_the_documented_formats(model):
    import pyvisa

    with SMUServer(ProbedRRAM(np.random.default_rng(0)), model=model) as server:
        rm = pyvisa.ResourceManager("@py")
        session = rm.open_resource(
            server.resource, read_termination="\n", write_termination="\n", timeout=2000
        )
        try:
            for command, pattern in REPLY_FORMATS[model]:
                if pattern is None:
                    session.write(command)
                else:
                    reply = session.query(command).rstrip("\r")
                    assert re.fullmatch(pattern, reply), (command, reply)
        finally:
            session.close()


def test_the_b1500_sweep_table_is_what_the_simulator_sends():
    """The table's RMD? reply and the simulator's have the same element layout."""
    import pyvisa

    with SMUServer(ProbedRRAM(np.random.default_rng(0)), model="b1500a") as server:
        session = pyvisa.ResourceManager("@py").open_resource(
            server.resource, read_termination="\n", write_termination="\n", timeout=2000
        )
        try:
            for command, reply in tables.B1500["reset"] + tables.B1500["sweep"]:
                if reply is None:
                    session.write(command)
                else:
                    got = session.query(command).rstrip("\r").split(",")
                    want = reply.split(",")
                    assert len(got) == len(want)
                    layout = re.compile(r"(\d{3})A([IV])" + NR3)
                    for g, w in zip(got, want, strict=True):
                        assert layout.fullmatch(g).group(2) == layout.fullmatch(w).group(2)
        finally:
            session.close()
