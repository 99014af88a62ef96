"""The SCPI interpreter of a simulated Keithley 2450 SMU with one device under test.

:class:`SimulatedSMU` turns one received line into at most one reply line; it knows
nothing about sockets (see :mod:`mock_hw.smu_server`).  It serves the subset of the
2450 command set listed in ``docs/smu.md``: long or short mnemonics, any case, optional
nodes (``[:LEVel]``, ``[:SENSe1]`` ...) and the ``1`` suffix of ``SOURce1``.  Like the
real instrument, a bad command or query pushes an error (``-113,"Undefined header"``
and friends) to the error queue and a failed query sends no reply.  Compound commands
(``;``) are not served.

Units: V, A, s.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from mock_hw.iv_device import ProbedDevice

IDN = "KEITHLEY INSTRUMENTS,MODEL 2450,SIM2450,labcim-sim"
"""Reply to ``*IDN?``."""

VOLTAGE_MAX = 210.0
"""Largest |source voltage| of the 2450 (V)."""
CURRENT_LIMIT_RANGE = (1e-9, 1.05)
"""Settable current limit of the voltage source (A)."""
DEFAULT_CURRENT_LIMIT = 105e-6
"""Current limit after ``*RST`` (A)."""
LIST_CHUNK = 100
"""Most values one ``:SOUR:LIST:VOLT[:APP]`` command may carry."""
SWEEP_POINTS_MAX = 100_000
"""Capacity of ``defbuffer1`` (readings)."""
ERROR_QUEUE_SIZE = 100
"""Errors kept; the oldest are dropped beyond it."""

_LONG_FORMS = {
    "SOURCE": "SOUR",
    "SENSE": "SENS",
    "FUNCTION": "FUNC",
    "VOLTAGE": "VOLT",
    "CURRENT": "CURR",
    "LEVEL": "LEV",
    "IMMEDIATE": "IMM",
    "AMPLITUDE": "AMPL",
    "ILIMIT": "ILIM",
    "MEASURE": "MEAS",
    "OUTPUT": "OUTP",
    "STATE": "STAT",
    "SWEEP": "SWE",
    "LINEAR": "LIN",
    "APPEND": "APP",
    "INITIATE": "INIT",
    "ABORT": "ABOR",
    "TRACE": "TRAC",
    "CLEAR": "CLE",
    "ACTUAL": "ACT",
    "SYSTEM": "SYST",
    "ERROR": "ERR",
    "MODE": "MODE",
    "START": "STAR",
    "POINTS": "POIN",
    "PROTECTION": "PROT",
    "TRIGGER": "TRIG",
    "COUNT": "COUN",
    "ACQUIRE": "ACQ",
    "TRANSIENT": "TRAN",
    "DELAY": "DEL",
    "FETCH": "FETC",
    "ARRAY": "ARR",
    "FORMAT": "FORM",
    "ELEMENTS": "ELEM",
}
_OPTIONAL_NODES = {"LEV", "IMM", "AMPL", "DC", "STAT", "NEXT"}
_SUFFIXED = re.compile(r"^(SOURCE|SOUR|SENSE|SENS)1$")


class SCPIError(Exception):
    """A command the instrument refuses: (SCPI error code, message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def normalize_header(header: str) -> str:
    """Canonical short form of a command header, e.g. ``:SOURce1:VOLTage:LEVel`` -> ``SOUR:VOLT``.

    Optional nodes and the optional ``SENSe`` root are dropped; a trailing ``?`` is kept.
    """
    header = header.upper()
    query = header.endswith("?")
    nodes = [_SUFFIXED.sub(r"\1", n) for n in header.rstrip("?").lstrip(":").split(":")]
    nodes = [_LONG_FORMS.get(n, n) for n in nodes]
    nodes = nodes[:1] + [n for n in nodes[1:] if n not in _OPTIONAL_NODES]
    if nodes[0] == "SENS" and len(nodes) > 1:
        nodes = nodes[1:]
    return ":".join(nodes) + ("?" if query else "")


_NRF = re.compile(
    r"(?P<sign>[+-]?)(?P<mantissa>\d+(?:\.\d*)?|\.\d+)(?:\s*E\s*(?P<exponent>[+-]?\d+))?",
    re.IGNORECASE,
)
"""IEEE 488.2 decimal numeric program data (<NRf>): sign, mantissa, optional exponent,
white space allowed around the ``E``."""
_NUMBER_START = re.compile(r"[+\-.\d]")
_SPECIAL_NUMBERS = {"MIN": 0, "MINIMUM": 0, "MAX": 1, "MAXIMUM": 1, "DEF": 2, "DEFAULT": 2}


def parse_number(text: str, low: float, high: float, default: float | None = None) -> float:
    """A numeric parameter, parsed strictly as IEEE 488.2 <NRf> or MIN / MAX / DEF.

    Parameters
    ----------
    text : str
        The parameter as received (surrounding white space ignored).
    low, high : float
        Allowed range; ``MIN`` and ``MAX`` stand for its ends.
    default : float, optional
        Value of ``DEF``; without one ``DEF`` is refused.

    Raises
    ------
    SCPIError
        -121 Invalid character in number (``1_0``, ``0x10``, ``1.2.3``), -131 Invalid
        suffix (``5V``: the simulator takes no unit suffixes), -104 Data type error
        (character data such as ``inf``, ``nan``, ``ON``), -123 Exponent too large
        (beyond IEEE 488.2's 32000), -124 Too many digits (a mantissa of more than 255),
        -222 Data out of range (outside [low, high], including ``1e999``), -224 Illegal
        parameter value (``DEF`` without a default).
    """
    text = text.strip()
    special = _SPECIAL_NUMBERS.get(text.upper())
    if special is not None:
        if special == 2 and default is None:
            raise SCPIError(-224, "Illegal parameter value")
        return (low, high, default)[special]
    match = _NRF.fullmatch(text) or _NRF.match(text)
    if match is None:
        if _NUMBER_START.match(text):
            raise SCPIError(-121, "Invalid character in number")
        raise SCPIError(-104, "Data type error")
    rest = text[match.end() :].lstrip()
    if rest:
        if rest.isalpha() and rest.upper() != "E":  # a unit suffix such as V, mV, uA
            raise SCPIError(-131, "Invalid suffix")
        raise SCPIError(-121, "Invalid character in number")
    exponent = match["exponent"]
    if exponent is not None and abs(int(exponent)) > 32000:
        raise SCPIError(-123, "Exponent too large")
    if len(match["mantissa"].lstrip("0.").replace(".", "")) > 255:
        raise SCPIError(-124, "Too many digits")
    x = float(match[0].replace(" ", "").replace("\t", ""))
    if not low <= x <= high:  # 1e999 parses as inf
        raise SCPIError(-222, "Data out of range")
    return x


def _int(text: str, low: int, high: int) -> int:
    x = parse_number(text, low, high)
    if x != int(x):
        raise SCPIError(-104, "Data type error")
    return int(x)


def _switch(text: str) -> bool:
    try:
        return {"ON": True, "1": True, "OFF": False, "0": False}[text.upper()]
    except KeyError:
        raise SCPIError(-224, "Illegal parameter value") from None


def _buffer(args: list[str], index: int) -> None:
    """Check the optional buffer-name argument at ``index``: only defbuffer1 exists."""
    if len(args) > index and args[index].strip('"').lower() != "defbuffer1":
        raise SCPIError(-224, "Illegal parameter value")


def _arity(args: list[str], low: int, high: int) -> None:
    if len(args) < low:
        raise SCPIError(-109, "Missing parameter")
    if len(args) > high:
        raise SCPIError(-108, "Parameter not allowed")


def _fmt(x: float) -> str:
    return f"{x:.6E}"


_DURING_SWEEP = {"*ESR?", "*OPC", "*IDN?", "*ESE?", "ABOR", "SYST:ERR?", "TRAC:ACT?"}
"""Commands served while a sweep runs; any other first waits for its end, as ``*WAI``
would (so a client that does not poll sees the sweeps run one command after another)."""


@dataclass
class _Sweep:
    """A sweep the trigger model is running: point ``k`` is measured ``(k + 1) *
    delay`` s after ``start`` (monotonic time), into ``into``."""

    values: list[float]
    delay: float
    limit: float
    stop_at_limit: bool
    into: list[tuple[float, float]]
    start: float
    k: int = 0


class SimulatedSMU:
    """A 2450 in voltage-source / current-measure mode wired to one device.

    Not thread-safe on its own; the server serialises calls.

    Parameters
    ----------
    device : ProbedDevice
        The device under test; its state persists across ``*RST`` and clients.
    """

    terminator = "\n"
    """Terminator of every reply."""

    def __init__(self, device: ProbedDevice) -> None:
        self.device = device
        self.errors: collections.deque[tuple[int, str]] = collections.deque(maxlen=ERROR_QUEUE_SIZE)
        self.ese = 0
        self._handlers: dict[str, Callable[[list[str]], str | None]] = {
            "*IDN?": lambda a: IDN,
            "*RST": self._reset,
            "*CLS": lambda a: self.errors.clear(),
            "*WAI": lambda a: None,  # every command but a few waits for the sweep
            "*OPC?": lambda a: "1",
            "*OPC": self._operation_complete,
            "*ESR?": self._event_status,
            "ABOR": self._abort,
            "*ESE": self._set_ese,
            "*ESE?": lambda a: str(self.ese),
            "SOUR:FUNC": self._source_function,
            "SOUR:FUNC?": lambda a: "VOLT",
            "FUNC": self._sense_function,
            "FUNC?": lambda a: '"CURR:DC"',
            "SOUR:VOLT": self._set_level,
            "SOUR:VOLT?": lambda a: _fmt(self.level),
            "SOUR:VOLT:ILIM": self._set_limit,
            "SOUR:VOLT:ILIM?": lambda a: _fmt(self.i_limit),
            "OUTP": self._set_output,
            "OUTP?": lambda a: "1" if self.output else "0",
            "MEAS:CURR?": self._measure,
            "READ?": self._measure,
            "SOUR:LIST:VOLT": self._list_values,
            "SOUR:LIST:VOLT:APP": self._list_append,
            "SOUR:LIST:VOLT?": lambda a: ",".join(map(_fmt, self.source_list)),
            "SOUR:SWE:VOLT:LIN": self._linear_sweep,
            "SOUR:SWE:VOLT:LIST": self._list_sweep,
            "INIT": self._initiate,
            "TRAC:CLE": self._clear_buffer,
            "TRAC:ACT?": self._count,
            "TRAC:DATA?": self._data,
            "SYST:ERR?": self._next_error,
        }
        self._reset([])

    def input_overrun(self) -> None:
        """A line longer than the input buffer arrived and was discarded."""
        self.errors.append((-363, "Input buffer overrun"))

    def handle(self, line: str) -> str | None:
        """Execute one command line; return the reply line of a query, else None."""
        header, _, rest = line.strip().partition(" ")
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        name = normalize_header(header)
        handler = self._handlers.get(name)
        self._run_sweep(wait=name not in _DURING_SWEEP)
        try:
            if handler is None:
                raise SCPIError(-113, "Undefined header")
            return handler(args)
        except SCPIError as exc:
            self.errors.append((exc.code, exc.message))
            return None

    # -- settings ------------------------------------------------------------------------

    def _reset(self, args: list[str]) -> None:
        _arity(args, 0, 0)
        self.output = False
        self.level = 0.0
        self.i_limit = DEFAULT_CURRENT_LIMIT
        self.source_list: list[float] = []
        self.sweep: list[float] = []
        self.sweep_delay = 0.0
        self.fail_abort = True
        self.buffer: list[tuple[float, float]] = []
        self._running: _Sweep | None = None
        self._opc = False
        self.esr = 0

    def _operation_complete(self, args: list[str]) -> None:
        _arity(args, 0, 0)
        self._opc = True
        self._run_sweep(wait=False)

    def _event_status(self, args: list[str]) -> str:
        _arity(args, 0, 0)
        esr, self.esr = self.esr, 0
        return str(esr)

    def _abort(self, args: list[str]) -> None:
        """Stop the running sweep after the points measured so far; the output stays at
        the last level sourced."""
        _arity(args, 0, 1)
        self._channel(args, 0)
        self._running = None
        self._run_sweep(wait=False)

    def _channel(self, args: list[str], index: int) -> None:
        if len(args) > index:
            raise SCPIError(-108, "Parameter not allowed")

    def _start_sweep(
        self,
        values: list[float],
        delay: float,
        stop_at_limit: bool,
        into: list[tuple[float, float]],
    ) -> None:
        """Start measuring ``values`` in turn, ``delay`` s apart, appending the readings
        to ``into`` as they are taken."""
        self.output = True
        self._running = _Sweep(values, delay, self.i_limit, stop_at_limit, into, time.monotonic())
        self._run_sweep(wait=False)

    def _run_sweep(self, wait: bool) -> None:
        """Measure the running sweep's points whose time has come (with ``wait``: sleep
        until the sweep's end and measure them all); set bit 0 of the event status
        register once it is over and ``*OPC`` asked for that."""
        run = self._running
        if run is not None:
            end = run.start + run.delay * len(run.values)
            if wait and end > time.monotonic():
                time.sleep(end - time.monotonic())
            now = time.monotonic()
            while run.k < len(run.values) and run.start + run.delay * (run.k + 1) <= now:
                v = run.values[run.k]
                v_dev, i = self.device.apply(v, run.limit)
                run.into.append((v_dev, i))
                self.level, run.k = v, run.k + 1
                if run.stop_at_limit and abs(i) >= run.limit:
                    run.k = len(run.values)
            if run.k == len(run.values):
                self._running = None
        if self._running is None and self._opc:
            self.esr |= 1
            self._opc = False

    def _set_ese(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.ese = _int(args[0], 0, 255)

    def _source_function(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        if normalize_header(args[0]) != "VOLT":
            raise SCPIError(-221, "Settings conflict")  # the simulator only sources voltage

    def _sense_function(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        if normalize_header(args[0].strip('"')) != "CURR":
            raise SCPIError(-221, "Settings conflict")

    def _set_level(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.level = parse_number(args[0], -VOLTAGE_MAX, VOLTAGE_MAX, default=0.0)
        self._settle()

    def _set_limit(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.i_limit = parse_number(args[0], *CURRENT_LIMIT_RANGE, default=DEFAULT_CURRENT_LIMIT)
        self._settle()

    def _set_output(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.output = _switch(args[0])
        self._settle()

    def _settle(self) -> None:
        """Let the device see the present output: switching happens without a reading."""
        if self.output:
            self.device.apply(self.level, self.i_limit)

    # -- measurements and sweeps ---------------------------------------------------------

    def _measure(self, args: list[str]) -> str:
        _arity(args, 0, 1)
        _buffer(args, 0)
        v, i = self.device.apply(self.level if self.output else 0.0, self.i_limit)
        self.buffer.append((v, i))
        return _fmt(i)

    def _source_values(self, args: list[str]) -> list[float]:
        _arity(args, 1, LIST_CHUNK)
        return [parse_number(a, -VOLTAGE_MAX, VOLTAGE_MAX) for a in args]

    def _list_values(self, args: list[str]) -> None:
        self.source_list = self._source_values(args)

    def _list_append(self, args: list[str]) -> None:
        values = self._source_values(args)
        if len(self.source_list) + len(values) > SWEEP_POINTS_MAX:
            raise SCPIError(-223, "Too much data")
        self.source_list += values

    def _linear_sweep(self, args: list[str]) -> None:
        # start, stop, points[, delay, count, rangeType, failAbort, dual, bufferName]
        _arity(args, 3, 9)
        start, stop = (parse_number(a, -VOLTAGE_MAX, VOLTAGE_MAX) for a in args[:2])
        points = _int(args[2], 2, SWEEP_POINTS_MAX)
        sweep = [start + (stop - start) * k / (points - 1) for k in range(points)]
        if len(args) > 7 and _switch(args[7]):
            sweep += sweep[::-1]
        self._configure_sweep(sweep, args[3:5], args[6:7])
        _buffer(args, 8)

    def _list_sweep(self, args: list[str]) -> None:
        # startIndex[, delay, count, failAbort, bufferName]
        _arity(args, 1, 5)
        if not self.source_list:
            raise SCPIError(-221, "Settings conflict")
        first = _int(args[0], 1, len(self.source_list))
        self._configure_sweep(self.source_list[first - 1 :], args[1:3], args[3:4])
        _buffer(args, 4)

    def _configure_sweep(
        self, sweep: list[float], delay_count: list[str], fail_abort: list[str]
    ) -> None:
        delay = parse_number(delay_count[0], -1.0, 1e4) if delay_count else 0.0
        if len(delay_count) > 1 and _int(delay_count[1], 1, 1) != 1:
            raise SCPIError(-224, "Illegal parameter value")
        self.sweep = sweep
        self.sweep_delay = max(delay, 0.0)  # -1 is auto delay: none in the simulator
        self.fail_abort = _switch(fail_abort[0]) if fail_abort else True

    def _initiate(self, args: list[str]) -> None:
        _arity(args, 0, 0)
        if not self.sweep:
            raise SCPIError(-221, "Settings conflict")
        self._start_sweep(self.sweep, self.sweep_delay, self.fail_abort, self.buffer)

    def _clear_buffer(self, args: list[str]) -> None:
        _arity(args, 0, 1)
        _buffer(args, 0)
        self.buffer.clear()

    def _count(self, args: list[str]) -> str:
        _arity(args, 0, 1)
        _buffer(args, 0)
        return str(len(self.buffer))

    def _data(self, args: list[str]) -> str:
        # startIndex, endIndex[, bufferName, element, ...]
        _arity(args, 2, 16)
        first = _int(args[0], 1, max(len(self.buffer), 1))
        last = _int(args[1], first, len(self.buffer))
        _buffer(args, 2)
        columns = {"READ": 1, "READING": 1, "SOUR": 0, "SOURCE": 0}
        try:
            picks = [columns[e.upper()] for e in args[3:]] or [1]
        except KeyError:
            raise SCPIError(-224, "Illegal parameter value") from None
        rows = self.buffer[first - 1 : last]
        return ",".join(_fmt(row[c]) for row in rows for c in picks)

    def _next_error(self, args: list[str]) -> str:
        _arity(args, 0, 0)
        code, message = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code},"{message}"'


B2900_IDN = "Keysight Technologies,B2902A,SIM2900,labcim-sim"
"""Reply of the simulated B2900 to ``*IDN?``."""
B2900_CURRENT_LIMIT_RANGE = (1e-9, 3.03)
"""Settable current limit (``:SENS:CURR:PROT``, A) of the simulated B2900."""
B2900_POINTS_MAX = 2500
"""Most sweep points and list values of the B2900."""
_B2900_ELEMENTS = {"VOLT": 0, "CURR": 1}
_CHANNEL_LIST = "(@1)"
_SHARED_WITH_2450 = (
    *("*RST", "*CLS", "*WAI", "*OPC?", "*OPC", "*ESR?", "*ESE", "*ESE?", "OUTP", "OUTP?"),
    "ABOR",
    *("SOUR:VOLT", "SOUR:VOLT?", "SOUR:LIST:VOLT", "SOUR:LIST:VOLT:APP", "SOUR:LIST:VOLT?"),
)
"""Commands the B2900 spells and serves as the 2450 does."""


class SimulatedB2900(SimulatedSMU):
    """A B2900-series SMU (channel 1) in voltage-source mode wired to one device.

    The B2900's own command set where it differs from the 2450 (B2900 SCPI Command
    Reference): ``:SOUR:FUNC:MODE``, the current limit as ``:SENS:CURR:PROT``, sweeps set
    up by ``:SOUR:VOLT:MODE SWE|LIST``, ``:SOUR:VOLT:STAR/STOP``, ``:SOUR:SWE:POIN`` and
    ``:SOUR:LIST:VOLT``, run by ``:INIT`` with ``:TRIG:COUN`` points and ``:TRIG:ACQ:DEL``
    before each measurement, read by ``:FETC:ARR[:CURR|:VOLT]?`` in the
    ``:FORM:ELEM:SENS`` order; channel lists ``(@1)``; errors as ``+0,"No error"``.  A
    sweep never aborts at the limit, and leaves the output at its last value.
    """

    def __init__(self, device: ProbedDevice) -> None:
        super().__init__(device)
        self._handlers = {name: self._handlers[name] for name in _SHARED_WITH_2450}
        self._handlers |= {
            "*IDN?": lambda a: B2900_IDN,
            "SOUR:FUNC:MODE": self._source_function,
            "SOUR:FUNC:MODE?": lambda a: "VOLT",
            "FUNC": self._sense_functions,
            "FUNC?": lambda a: '"VOLT","CURR"',
            "CURR:PROT": self._set_protection,
            "CURR:PROT?": lambda a: _fmt(self.i_limit),
            "FORM:ELEM:SENS": self._elements,
            "FORM:ELEM:SENS?": lambda a: ",".join(self.elements),
            "MEAS:CURR?": self._measure_b2900,
            "SOUR:VOLT:MODE": self._source_mode,
            "SOUR:VOLT:MODE?": lambda a: self.source_mode,
            "SOUR:VOLT:STAR": lambda a: self._sweep_value(a, "start"),
            "SOUR:VOLT:STOP": lambda a: self._sweep_value(a, "stop"),
            "SOUR:SWE:POIN": self._sweep_points,
            "SOUR:SWE:POIN?": lambda a: str(self.points),
            "TRIG:SOUR": self._trigger_source,
            "TRIG:COUN": self._trigger_count,
            "TRIG:COUN?": lambda a: str(self.trigger_count),
            "TRIG:ACQ:DEL": self._acquire_delay,
            "INIT": self._initiate_b2900,
            "FETC:ARR?": lambda a: self._fetch(a, self.elements),
            "FETC:ARR:CURR?": lambda a: self._fetch(a, ["CURR"]),
            "FETC:ARR:VOLT?": lambda a: self._fetch(a, ["VOLT"]),
            "SYST:ERR?": self._next_error_b2900,
        }

    def _reset(self, args: list[str]) -> None:
        super()._reset(args)
        self.i_limit = 100e-6
        self.elements = ["VOLT", "CURR"]
        self.source_mode = "FIX"
        self.start = self.stop = 0.0
        self.points = 1
        self.trigger_count = 1
        self.acquire_delay = 0.0
        self.results: list[tuple[float, float]] = []

    def _source_values(self, args: list[str]) -> list[float]:
        _arity(args, 1, B2900_POINTS_MAX)
        return [parse_number(a, -VOLTAGE_MAX, VOLTAGE_MAX) for a in args]

    def _sense_functions(self, args: list[str]) -> None:
        _arity(args, 1, 3)
        for a in args:
            if normalize_header(a.strip('"')) not in ("VOLT", "CURR", "RES"):
                raise SCPIError(-224, "Illegal parameter value")

    def _set_protection(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.i_limit = parse_number(args[0], *B2900_CURRENT_LIMIT_RANGE, default=100e-6)
        self._settle()

    def _elements(self, args: list[str]) -> None:
        _arity(args, 1, 2)
        names = [normalize_header(a) for a in args]
        if any(n not in _B2900_ELEMENTS for n in names) or len(set(names)) < len(names):
            raise SCPIError(-224, "Illegal parameter value")
        self.elements = names

    def _channel(self, args: list[str], index: int) -> None:
        if len(args) > index and args[index].replace(" ", "") != _CHANNEL_LIST:
            raise SCPIError(-224, "Illegal parameter value")  # one channel simulated

    def _measure_b2900(self, args: list[str]) -> str:
        _arity(args, 0, 1)
        self._channel(args, 0)
        _, i = self.device.apply(self.level if self.output else 0.0, self.i_limit)
        return _fmt(i)

    def _source_mode(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        mode = normalize_header(args[0])
        if mode not in ("FIX", "FIXED", "SWE", "LIST"):
            raise SCPIError(-224, "Illegal parameter value")
        self.source_mode = "FIX" if mode.startswith("FIX") else mode

    def _sweep_value(self, args: list[str], which: str) -> None:
        _arity(args, 1, 1)
        setattr(self, which, parse_number(args[0], -VOLTAGE_MAX, VOLTAGE_MAX, default=0.0))

    def _sweep_points(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.points = _int(args[0], 1, B2900_POINTS_MAX)

    def _trigger_source(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        if normalize_header(args[0]) not in ("AINT", "BUS", "TIM", "TIMER", "INT1", "INT2"):
            raise SCPIError(-224, "Illegal parameter value")

    def _trigger_count(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.trigger_count = _int(args[0], 1, 100_000)

    def _acquire_delay(self, args: list[str]) -> None:
        _arity(args, 1, 1)
        self.acquire_delay = parse_number(args[0], 0.0, 100.0, default=0.0)

    def _initiate_b2900(self, args: list[str]) -> None:
        _arity(args, 0, 1)
        self._channel(args, 0)
        if self.source_mode == "SWE":
            n = self.points
            values = [self.start + (self.stop - self.start) * k / max(n - 1, 1) for k in range(n)]
        elif self.source_mode == "LIST":
            values = list(self.source_list)
        else:
            values = [self.level] * self.trigger_count
        if not values or len(values) != self.trigger_count:
            raise SCPIError(-221, "Settings conflict")  # one measurement per source point
        self.results = []
        self._start_sweep(values, self.acquire_delay, False, self.results)

    def _fetch(self, args: list[str], elements: list[str]) -> str:
        _arity(args, 0, 1)
        self._channel(args, 0)
        if not self.results:
            raise SCPIError(-230, "Data corrupt or stale")
        picks = [_B2900_ELEMENTS[e] for e in elements]
        return ",".join(_fmt(row[c]) for row in self.results for c in picks)

    def _next_error_b2900(self, args: list[str]) -> str:
        _arity(args, 0, 0)
        code, message = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code:+d},"{message}"'
