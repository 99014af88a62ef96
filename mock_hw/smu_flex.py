"""The FLEX command interpreter of a simulated Keysight B1500A with one SMU and one device.

:class:`SimulatedB1500` turns one received line into at most one reply; the socket side
is :mod:`mock_hw.smu_server`.  It serves the subset of the FLEX command set listed in
``docs/smu.md`` for one high-resolution SMU (B1517A) in slot 1, from the documented
behaviour of the B1500A/B1505A and E5260/E5270 programming guides:

- a command is its letters (``DV``, ``WV``, ``ERRX?``...) followed by comma-separated
  numeric parameters, with or without a space (``WV1,1,0,...`` and ``WV 1,1,0,...``);
  one command per line;
- measurement data (``XE``) go to the data output buffer; a raw socket has no talk
  request, so the buffer is sent after the reply to the next ``*OPC?`` (the usual way
  a program waits for a measurement before reading it) or as the reply to ``RMD?``;
  high-speed spot measurements (``TI``, ``TV``) are answered at once;
- ASCII data formats with a CR/LF terminator (``FMT`` 1, 2, 11, 12, 21, 22) and data
  output modes 0 (measurement data) and 1 (plus the sweep source's setup data);
- errors are queued with FLEX's positive codes and read by ``ERRX?`` (``+0,"No
  Error."`` when empty) or ``ERR?`` (four codes).

Units: V, A, s.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mock_hw.iv_device import ProbedDevice
from mock_hw.smu_scpi import SCPIError, parse_number

IDN = "Keysight Technologies,B1500A,SIM1500,labcim-sim"
"""Reply to ``*IDN?``."""

SLOTS = 10
"""Module slots of the mainframe; the simulated SMU (B1517A HRSMU) sits in slot 1."""
CHANNEL = 1
VOLTAGE_MAX = 100.0
"""Largest |output| of the HRSMU (V)."""
CURRENT_MAX = 0.1
"""Largest |current| and compliance of the HRSMU (A)."""
DEFAULT_COMPLIANCE = 100e-6
"""Current compliance (A) until a ``DV`` names one; the simulator's choice."""
SWEEP_STEPS_MAX = 10001
VOLTAGE_RANGES = frozenset({0, 5, 11, 20, 50, 12, 200, 13, 400, 14, 1000})
"""Voltage output range indices of the HRSMU (0: auto); measurement ranges also take
their negatives (fixed ranging)."""
CURRENT_RANGES = frozenset({0, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19})
"""Current range indices of the HRSMU (0: auto, 8 = 1 pA with ASU ... 19 = 100 mA)."""
ERROR_QUEUE_SIZE = 100

ERRORS = {
    100: "Undefined GPIB command.",
    102: "Incorrect numeric data syntax.",
    120: "Incorrect parameter value.",
    150: "Command input buffer overrun.",
    200: "Channel output switch is off; enter CN first.",
    201: "No measurement mode set; enter MM first.",
}
"""FLEX error codes and messages.  100 and 102 follow Keysight's list; 120 stands for the
"incorrect nth parameter" family; 150, 200 and 201 are this simulator's numbers."""

_FORMATS = {1: (5, "letter"), 2: (5, None), 11: (6, "letter"), 12: (6, None)}
_FORMATS |= {21: (6, "digits"), 22: (6, None)}
"""Supported ``FMT`` formats: (digits after the decimal point, header style)."""
_COMMAND = re.compile(r"\s*(\*?[A-Za-z]+\??)\s*(.*?)\s*")


class FlexError(Exception):
    """A command the instrument refuses, with its FLEX error code."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.message = ERRORS[code] + (f" ({detail})" if detail else "")


def _number(text: str, low: float, high: float, what: str) -> float:
    try:
        return parse_number(text, low, high)
    except SCPIError as exc:
        if exc.code == -222:
            raise FlexError(120, f"{what} {text.strip()} outside [{low:g}, {high:g}]") from None
        raise FlexError(102, f"{what} {text.strip()!r}") from None


def _integer(text: str, allowed: range | frozenset[int], what: str) -> int:
    x = _number(text, -1e9, 1e9, what)
    if x != int(x) or int(x) not in allowed:
        raise FlexError(120, f"{what} {text.strip()}")
    return int(x)


def _arity(args: list[str], low: int, high: int, command: str) -> None:
    if not low <= len(args) <= high:
        raise FlexError(120, f"{command} takes {low} to {high} parameters, got {len(args)}")


@dataclass
class _Sweep:
    """The staircase sweep source set by ``WV``."""

    mode: int
    start: float
    stop: float
    steps: int
    compliance: float

    def values(self) -> np.ndarray:
        if self.mode in (2, 4):  # logarithmic, start and stop of one polarity
            stairs = np.geomspace(self.start, self.stop, self.steps)
        else:
            stairs = np.linspace(self.start, self.stop, self.steps)
        return np.r_[stairs, stairs[::-1]] if self.mode in (3, 4) else stairs


class SimulatedB1500:
    """A B1500A mainframe with one SMU in slot 1 wired to one device.

    Not thread-safe on its own; the server serialises calls.

    Parameters
    ----------
    device : ProbedDevice
        The device under test; its state persists across ``*RST`` and clients.
    """

    terminator = "\r\n"
    """Terminator of every reply (FLEX ASCII formats end with CR/LF)."""

    def __init__(self, device: ProbedDevice) -> None:
        self.device = device
        self.errors: collections.deque[tuple[int, str]] = collections.deque(maxlen=ERROR_QUEUE_SIZE)
        self.ese = 0
        self._commands: dict[str, Callable[[list[str]], str | None]] = {
            "*IDN?": lambda a: IDN,
            "*RST": self._reset,
            "*CLS": lambda a: self.errors.clear(),
            "*OPC?": self._operation_complete,
            "*ESE": self._set_ese,
            "*ESE?": lambda a: str(self.ese),
            "UNT?": lambda a: ";".join(["B1517A,0"] + ["0,0"] * (SLOTS - 1)),
            "CN": self._enable,
            "CL": self._disable,
            "DV": self._force_voltage,
            "DZ": self._zero,
            "RZ": self._restore,
            "TI": lambda a: self._spot(a, "I"),
            "TV": lambda a: self._spot(a, "V"),
            "MM": self._measurement_mode,
            "CMM": self._operation_mode,
            "RI": lambda a: self._range(a, CURRENT_RANGES),
            "RV": lambda a: self._range(a, VOLTAGE_RANGES),
            "RM": self._auto_range,
            "AV": self._averaging,
            "AAD": lambda a: self._channel_setting(a, range(0, 3)),
            "AZ": lambda a: self._switch(a),
            "WT": self._sweep_timing,
            "WM": self._sweep_abort,
            "WV": self._sweep_source,
            "XE": self._execute,
            "RMD?": self._read_data,
            "NUB?": lambda a: str(len(self.buffer)),
            "BC": lambda a: self.buffer.clear(),
            "TSR": lambda a: None,
            "FMT": self._format,
            "ERR?": self._error_codes,
            "ERRX?": self._next_error,
        }
        self._reset([])

    def handle(self, line: str) -> str | None:
        """Execute one command line; return the reply text of a query, else None."""
        match = _COMMAND.fullmatch(line)
        try:
            if match is None:
                raise FlexError(100, line.strip()[:20])
            name, rest = match[1].upper(), match[2]
            command = self._commands.get(name)
            if command is None:
                raise FlexError(100, name)
            return command([a.strip() for a in rest.split(",")] if rest else [])
        except FlexError as exc:
            self.errors.append((exc.code, exc.message))
            return None

    def input_overrun(self) -> None:
        """A line longer than the input buffer arrived and was discarded."""
        self.errors.append((150, ERRORS[150]))

    # -- state ---------------------------------------------------------------------------

    def _reset(self, args: list[str]) -> None:
        _arity(args, 0, 0, "*RST")
        self.enabled = False
        self.level = 0.0
        self.compliance = DEFAULT_COMPLIANCE
        self._zeroed: float | None = None
        self.format, self.output_mode = 1, 0
        self.mode: int | None = None
        self.op_mode = 0
        self.hold, self.delay = 0.0, 0.0
        self.abort, self.post = 1, 1
        self.sweep: _Sweep | None = None
        self.buffer: list[str] = []

    def _set_ese(self, args: list[str]) -> None:
        _arity(args, 1, 1, "*ESE")
        self.ese = _integer(args[0], range(256), "*ESE")

    def _channels(self, args: list[str], command: str) -> None:
        for a in args:
            _integer(a, range(1, 2), f"{command} channel")

    def _enable(self, args: list[str]) -> None:
        self._channels(args, "CN")
        self.enabled = True
        self.level = 0.0  # CN connects the output at 0 V

    def _disable(self, args: list[str]) -> None:
        self._channels(args, "CL")
        self.enabled = False
        self.level = 0.0

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise FlexError(200)

    def _force_voltage(self, args: list[str]) -> None:
        # DV chnum,vrange,output[,Icomp[,comp_polarity[,irange]]]
        _arity(args, 3, 6, "DV")
        self._channels(args[:1], "DV")
        _integer(args[1], VOLTAGE_RANGES, "DV range")
        level = _number(args[2], -VOLTAGE_MAX, VOLTAGE_MAX, "DV output")
        compliance = self.compliance
        if len(args) > 3:
            compliance = _number(args[3], -CURRENT_MAX, CURRENT_MAX, "DV Icomp")
            compliance = abs(compliance)
            if compliance == 0:
                raise FlexError(120, "DV Icomp 0")
        if len(args) > 4:
            _integer(args[4], range(2), "DV polarity")
        if len(args) > 5:
            _integer(args[5], CURRENT_RANGES, "DV irange")
        self._require_enabled()
        self.level, self.compliance = level, compliance
        self.device.apply(level, compliance)  # the device sees the forced output

    def _zero(self, args: list[str]) -> None:
        self._channels(args, "DZ")
        self._zeroed, self.level = self.level, 0.0

    def _restore(self, args: list[str]) -> None:
        self._channels(args, "RZ")
        if self._zeroed is not None:
            self.level, self._zeroed = self._zeroed, None

    def _measurement_mode(self, args: list[str]) -> None:
        _arity(args, 1, 11, "MM")
        mode = _integer(args[0], frozenset({1, 2}), "MM mode (1 spot, 2 staircase)")
        self._channels(args[1:], "MM")
        self.mode = mode

    def _operation_mode(self, args: list[str]) -> None:
        _arity(args, 2, 2, "CMM")
        self._channels(args[:1], "CMM")
        self.op_mode = _integer(args[1], range(5), "CMM mode")

    def _range(self, args: list[str], ranges: frozenset[int]) -> None:
        _arity(args, 2, 2, "range")
        self._channels(args[:1], "range")
        _integer(args[1], ranges | {-r for r in ranges}, "range index")

    def _auto_range(self, args: list[str]) -> None:
        _arity(args, 2, 3, "RM")
        self._channels(args[:1], "RM")
        _integer(args[1], range(1, 4), "RM mode")
        if len(args) > 2:
            _integer(args[2], range(11, 101), "RM rate")

    def _averaging(self, args: list[str]) -> None:
        _arity(args, 1, 2, "AV")
        _integer(args[0], frozenset(range(-100, 0)) | frozenset(range(1, 1024)), "AV number")
        if len(args) > 1:
            _integer(args[1], range(2), "AV mode")

    def _channel_setting(self, args: list[str], values: range) -> None:
        _arity(args, 2, 2, "setting")
        self._channels(args[:1], "setting")
        _integer(args[1], values, "setting")

    def _switch(self, args: list[str]) -> None:
        _arity(args, 1, 1, "switch")
        _integer(args[0], range(2), "switch")

    def _format(self, args: list[str]) -> None:
        _arity(args, 1, 2, "FMT")
        self.format = _integer(args[0], frozenset(_FORMATS), "FMT format (ASCII, CR/LF)")
        self.output_mode = _integer(args[1], range(2), "FMT mode") if len(args) > 1 else 0

    # -- sweeps and measurements ---------------------------------------------------------

    def _sweep_timing(self, args: list[str]) -> None:
        # WT hold,delay[,sdelay[,tdelay[,mdelay]]]
        _arity(args, 2, 5, "WT")
        self.hold = _number(args[0], 0.0, 655.35, "WT hold")
        self.delay = _number(args[1], 0.0, 65.535, "WT delay")
        for a in args[2:]:
            _number(a, 0.0, 65.535, "WT delay")

    def _sweep_abort(self, args: list[str]) -> None:
        _arity(args, 1, 2, "WM")
        self.abort = _integer(args[0], range(1, 3), "WM abort")
        self.post = _integer(args[1], range(1, 3), "WM post") if len(args) > 1 else 1

    def _sweep_source(self, args: list[str]) -> None:
        # WV chnum,mode,range,start,stop,step[,Icomp[,Pcomp]]
        _arity(args, 6, 8, "WV")
        self._channels(args[:1], "WV")
        mode = _integer(args[1], range(1, 5), "WV mode")
        _integer(args[2], VOLTAGE_RANGES, "WV range")
        start, stop = (_number(a, -VOLTAGE_MAX, VOLTAGE_MAX, "WV start/stop") for a in args[3:5])
        steps = _integer(args[5], range(1, SWEEP_STEPS_MAX + 1), "WV step")
        compliance = self.compliance
        if len(args) > 6:
            compliance = abs(_number(args[6], -CURRENT_MAX, CURRENT_MAX, "WV Icomp"))
        if mode in (2, 4) and (start * stop <= 0):
            raise FlexError(120, "WV log sweep needs start and stop of one polarity")
        self.sweep = _Sweep(mode, start, stop, steps, compliance)

    def _execute(self, args: list[str]) -> None:
        _arity(args, 0, 0, "XE")
        self._require_enabled()
        if self.mode is None:
            raise FlexError(201)
        if self.mode == 1:
            v_dev, i = self.device.apply(self.level, self.compliance)
            self.buffer += self._measured(v_dev, i, self.compliance, last=True)
            return
        if self.sweep is None:
            raise FlexError(120, "XE staircase sweep without WV")
        values = self.sweep.values()
        time.sleep(self.hold)
        for k, v in enumerate(values):
            time.sleep(self.delay)
            v_dev, i = self.device.apply(float(v), self.sweep.compliance)
            stop = self.abort == 2 and abs(i) >= self.sweep.compliance
            last = stop or k == len(values) - 1
            self.buffer += self._measured(v_dev, i, self.sweep.compliance, last=last)
            if self.output_mode == 1:
                self.buffer.append(self._element(float(v), "v", "E" if last else "W"))
            self.level = float(v)
            if stop:
                break
        self.compliance = self.sweep.compliance
        self.level = float(values[-1] if self.post == 2 else values[0])
        self.device.apply(self.level, self.compliance)

    def _measured(self, v_dev: float, i: float, compliance: float, last: bool) -> list[str]:
        """Data elements of one measurement point per the CMM operation mode."""
        status = 8 if abs(i) >= compliance else 0
        kinds = {0: "I", 1: "I", 2: "V", 3: "V", 4: "IV"}[self.op_mode]
        return [self._element(i if k == "I" else v_dev, k, status) for k in kinds]

    def _spot(self, args: list[str], kind: str) -> str:
        _arity(args, 1, 2, f"T{kind}")
        self._channels(args[:1], f"T{kind}")
        if len(args) > 1:
            _integer(args[1], CURRENT_RANGES if kind == "I" else VOLTAGE_RANGES, "range")
        self._require_enabled()
        v_dev, i = self.device.apply(self.level, self.compliance)
        status = 8 if abs(i) >= self.compliance else 0
        return self._element(i if kind == "I" else v_dev, kind, status)

    def _element(self, value: float, kind: str, status: int | str) -> str:
        """One data element in the present ``FMT`` format."""
        digits, header = _FORMATS[self.format]
        number = f"{value:+.{digits}E}"
        if header is None:
            return number
        if header == "digits":
            code = f"{status:03d}" if isinstance(status, int) else f"{status:>3}"
            return f"{code}A{kind}{number}"
        letter = status if isinstance(status, str) else ("C" if status & 8 else "N")
        return f"{letter}A{kind}{number}"

    def _take_buffer(self) -> str:
        data, self.buffer = ",".join(self.buffer), []
        return data

    def _read_data(self, args: list[str]) -> str:
        _arity(args, 0, 1, "RMD?")
        return self._take_buffer()

    def _operation_complete(self, args: list[str]) -> str:
        _arity(args, 0, 0, "*OPC?")
        return "1" + (self.terminator + self._take_buffer() if self.buffer else "")

    # -- errors --------------------------------------------------------------------------

    def _error_codes(self, args: list[str]) -> str:
        _arity(args, 0, 1, "ERR?")
        codes = [self.errors.popleft()[0] for _ in range(min(4, len(self.errors)))]
        return ",".join(str(c) for c in codes + [0] * (4 - len(codes)))

    def _next_error(self, args: list[str]) -> str:
        _arity(args, 0, 1, "ERRX?")
        code, message = self.errors.popleft() if self.errors else (0, "No Error.")
        return f'{code:+d},"{message}"'
