"""Exact command/reply exchanges for the SMU drivers, written from the instruments' manuals.

In the manner of PyMeasure's ``expected_protocol``: a scripted VISA resource checks every
line a driver writes against the next expected one, answers queries with the scripted
reply, and fails if an exchange is left unused.  The tables come from the Keithley 2450
Reference Manual, the Keysight B2900 SCPI Command Reference and the B1500A/E5260 FLEX
programming guides, not from mock_hw, so a driver and a simulator cannot pass together by
misreading a manual the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

Exchange = tuple[str, str | None]
"""(line the driver writes, reply it reads or None for a command)."""


class ScriptedResource:
    """A VISA message-based resource that plays a table of exchanges."""

    def __init__(self, exchanges: Sequence[Exchange]) -> None:
        self.exchanges = list(exchanges)
        self.position = 0
        self.timeout = 2000.0
        self._reply: str | None = None

    def write(self, line: str) -> None:
        if line == "":
            return  # the drivers' link probe after a timeout; never expected here
        assert self.position < len(self.exchanges), f"unexpected extra write {line!r}"
        expected, reply = self.exchanges[self.position]
        assert line == expected, f"exchange {self.position}: wrote {line!r}, expected {expected!r}"
        self.position += 1
        self._reply = reply

    def read(self) -> str:
        assert self._reply is not None, "read without a pending query"
        reply, self._reply = self._reply, None
        return reply

    def close(self) -> None:
        pass

    def done(self) -> bool:
        return self.position == len(self.exchanges)


class ScriptedVisa:
    """A resource manager whose one resource plays ``exchanges``."""

    def __init__(self, exchanges: Sequence[Exchange]) -> None:
        self.resource = ScriptedResource(exchanges)

    def open_resource(self, name: str, **kwargs: object) -> ScriptedResource:
        return self.resource


# -- Keithley 2450 (Reference Manual 2450-901-01, section 6) ---------------------------

K2450_IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,04096331,1.7.12b"
K2450 = {
    "reset": [("*RST", None), (":SOUR:FUNC VOLT", None), (':SENS:FUNC "CURR"', None)],
    "limit": [(":SOUR:VOLT:ILIM 0.0001", None)],
    "level": [(":SOUR:VOLT 0.5", None)],
    "output": [(":OUTP ON", None)],
    "measure": [(":MEAS:CURR?", "+1.234560E-06")],
    "sweep": [
        (':TRAC:CLE "defbuffer1"', None),
        (':SOUR:SWE:VOLT:LIN 0, 2, 3, 0, 1, BEST, OFF, OFF, "defbuffer1"', None),
        ("*ESR?", "0"),  # cleared before the sweep starts
        (":INIT", None),
        ("*OPC", None),  # bit 0 of the event status register once the sweep is done
        ("*ESR?", "1"),
        (':TRAC:ACT? "defbuffer1"', "3"),
        (
            ':TRAC:DATA? 1, 3, "defbuffer1", SOUR, READ',
            "0.000000E+00,1.000000E-12,1.000000E+00,2.000000E-07,1.500000E+00,1.000000E-04",
        ),
    ],
    "errors": [(":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", '0,"No error"')],
}

# -- Keysight B2900 (SCPI Command Reference) ---------------------------------------------

B2900_IDN = "Keysight Technologies,B2902A,MY51140101,3.4.2011.5100"
B2900 = {
    "reset": [
        ("*RST", None),
        (":SOUR:FUNC:MODE VOLT", None),
        (':SENS:FUNC "VOLT","CURR"', None),
        (":FORM:ELEM:SENS VOLT,CURR", None),
    ],
    "limit": [(":SENS:CURR:PROT 0.0001", None)],
    "level": [(":SOUR:VOLT 0.5", None)],
    "output": [(":OUTP ON", None)],
    "measure": [(":MEAS:CURR? (@1)", "+1.234560E-06")],
    "sweep": [
        (":SOUR:VOLT:MODE SWE", None),
        (":SOUR:VOLT:STAR 0", None),
        (":SOUR:VOLT:STOP 2", None),
        (":SOUR:SWE:POIN 3", None),
        (":TRIG:SOUR AINT", None),
        (":TRIG:COUN 3", None),
        (":TRIG:ACQ:DEL 0", None),
        ("*ESR?", "0"),
        (":OUTP ON", None),
        (":INIT (@1)", None),
        ("*OPC", None),
        ("*ESR?", "1"),
        (
            ":FETC:ARR? (@1)",
            "+0.000000E+00,+1.000000E-12,+1.000000E+00,+2.000000E-07,+1.500000E+00,+1.000000E-04",
        ),
    ],
    "errors": [(":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", '+0,"No error"')],
}

# -- Keysight B1500A (FLEX; B1500A/B1505A and E5260/E5270 programming guides) -------------

B1500_IDN = "Agilent Technologies,B1500A,0,A.06.01.2019.0520"
B1500 = {
    "reset": [("*RST", None), ("FMT 21,0", None)],
    "limit": [],  # kept by the driver until the channel is enabled
    "level": [],
    "output": [("CN 1", None), ("DV 1,0,0.5,0.0001", None)],
    "measure": [("TI 1,0", "000AI+1.234560E-06")],
    "sweep": [
        ("CN 1", None),
        ("MM 2,1", None),
        ("CMM 1,4", None),
        ("WM 1,2", None),
        ("WT 0,0", None),
        ("WV 1,1,0,0,2,3,0.0001", None),
        ("BC", None),
        ("XE", None),
        (
            "RMD?",
            "000AI+1.000000E-12,000AV+0.000000E+00,000AI+2.000000E-07,000AV+1.000000E+00,"
            "008AI+1.000000E-04,008AV+1.500000E+00",
        ),
    ],
    "errors": [("ERRX?", '+120,"Incorrect parameter value."'), ("ERRX?", '+0,"No Error."')],
}

SWEEP_V = [0.0, 1.0, 1.5]
SWEEP_I = [1e-12, 2e-7, 1e-4]
"""What each table's sweep reply means: source readback (V) and current (A)."""
