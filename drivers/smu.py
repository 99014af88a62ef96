"""Source-measure unit (SMU) drivers over VISA: a model-independent API and its dialects.

:class:`SourceMeter` is the API a lab uses (source a voltage with a current limit,
measure current, run linear and list sweeps, read the error queue).  It holds the
algorithm, the safety checks and the error handling; a subclass such as
:class:`Keithley2450` holds only the instrument's SCPI dialect (command templates) and
its ranges.  A sibling model (e.g. a Keysight B2902) overrides those class attributes
and nothing else.

Units everywhere: volts (V), amperes (A), seconds (s); VISA timeouts in milliseconds
(ms) as pyvisa counts them.  Arrays are ``numpy.float64``.

Robustness, against the failure modes of pyvisa-py raw sockets:

- A timeout raises :class:`SMUTimeoutError`.  The late reply the instrument may still
  send is discarded before the next command: the driver re-synchronises on a unique
  ``*ESE`` token and drops every line before its echo.  (``resource.clear()`` is not
  used: in pyvisa-py 0.8 it spins forever on a socket whose peer has closed.)
- A closed connection (the peer sent FIN/RST) surfaces in pyvisa-py as a read timeout
  followed by raw ``OSError`` (``BrokenPipeError``, ``ConnectionResetError``) on write.
  After a timeout the driver probes the link with empty messages, so a dead peer raises
  a clear :class:`SMUError` at once; every later call fails fast with the same message.
  A truly pulled cable (no FIN/RST reaches the host) looks like a silent instrument
  until TCP gives up, so it raises :class:`SMUTimeoutError`.
"""

from __future__ import annotations

import itertools
import math
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import pyvisa
from pyvisa.constants import ResourceAttribute, StatusCode

DEFAULT_BACKEND = "@py"
"""pyvisa-py: the pure-Python VISA backend (no vendor library needed)."""

_MAX_DISCARDED_LINES = 1000
"""Stale reply lines tolerated while re-synchronising before giving up."""

_PROBE_GAP = 0.02
"""Time (s) between the two link probes: long enough for a peer's RST to come back."""


class SMUError(RuntimeError):
    """Any failure talking to an SMU; the message names the instrument and the command."""


class SMUTimeoutError(SMUError):
    """The instrument did not answer within the VISA timeout."""


class SMULimitError(SMUError, ValueError):
    """A requested value exceeds a safe limit; refused before anything is sent."""


class SMUAbortedError(SMUError):
    """A sweep stopped on request (its cancel flag) before its end; the instrument was
    told to abort it, and its output is left on at the last level it sourced."""


class Cancel(Protocol):
    """A flag a sweep checks while it runs (e.g. ``threading.Event``)."""

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s or until set; return whether it is set."""
        ...


class _Never:
    """The cancel flag of a sweep nobody can stop: waiting on it is sleeping."""

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return False


SWEEP_POLL = 0.01
"""Seconds between two questions whether a running sweep is done (its status byte)."""


@dataclass(frozen=True)
class InstrumentRanges:
    """What an SMU model can do at all (from its reference manual).

    Parameters
    ----------
    voltage_max : float
        Largest |source voltage| (V).
    current_limit_min, current_limit_max : float
        Range of the current limit (compliance) of the voltage source (A).
    sweep_points_max : int
        Most points one sweep may store (the default buffer's capacity).
    list_chunk : int
        Most source values one list command may carry; longer lists are appended.
    """

    voltage_max: float
    current_limit_min: float
    current_limit_max: float
    sweep_points_max: int
    list_chunk: int


def _num(x: float) -> str:
    """Format a number for SCPI (NRf), exact enough to round-trip a float64."""
    return f"{x:.12g}"


def _disable_nagle(resource: pyvisa.resources.MessageBasedResource) -> None:
    """Send small commands at once (TCP_NODELAY), as NI-VISA does on raw sockets.

    With Nagle's algorithm on, a command written right after another waits for the
    peer's delayed ACK (~40 ms on Linux).  pyvisa-py 0.8 leaves it on for ``SOCKET``
    resources and refuses ``VI_ATTR_TCPIP_NODELAY`` (UnknownAttribute), so the option
    is then set on the session's socket directly.  Other resources are left alone.
    """
    if not isinstance(resource, pyvisa.resources.TCPIPSocket):
        return
    try:
        resource.set_visa_attribute(ResourceAttribute.tcpip_nodelay, True)
    except Exception:  # pyvisa-py raises its own UnknownAttribute, not a pyvisa.Error
        session = getattr(resource.visalib, "sessions", {}).get(resource.session)
        sock = getattr(session, "interface", None)
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SourceMeter:
    """Model-independent SMU API over a VISA message-based resource.

    Subclasses define the class attributes below (command templates and ranges); the
    methods here never contain a command string.

    Parameters
    ----------
    resource_name : str
        VISA resource string, e.g. ``"TCPIP::192.0.2.7::5025::SOCKET"``.
    max_voltage : float
        Safe |voltage| limit (V) of this setup; anything beyond is refused.  Must not
        exceed the instrument's range.  Default 5 V, above RRAM forming (~3 V) and far
        below what breaks thin oxides.
    max_current : float
        Safe current-limit ceiling (A); larger compliance settings are refused.
        Default 1 mA.
    timeout : float
        VISA I/O timeout (ms) for ordinary queries.  Sweeps extend it by their
        expected duration.
    backend : str
        pyvisa backend; default pyvisa-py (``"@py"``).
    resource_manager : pyvisa.ResourceManager, optional
        An existing resource manager to open the resource with (then ``backend`` is
        ignored).  The driver never closes the manager, only its own resource.
    """

    model: ClassVar[str]
    """Human-readable model name, used in error messages."""
    names: ClassVar[tuple[str, ...]]
    """Names a user may give for this model (``connect_smu(..., driver="b1500a")``,
    ``labcim run --smu-model``), lower case."""
    idn_pattern: ClassVar[str]
    """Regular expression that the model's ``*IDN?`` reply matches (auto-detection)."""
    ranges: ClassVar[InstrumentRanges]
    """The instrument's own limits; safe limits must lie within them."""
    point_time: ClassVar[float]
    """Budget (s) per sweep point for the timeout, beyond the requested delay."""

    # Command templates: plain strings are one command, tuples are sent in order.
    # Fields in braces are filled by the methods (values already formatted for SCPI).
    cmd_identify: ClassVar[str]
    cmd_reset: ClassVar[tuple[str, ...]]
    """Reset and configure: voltage source, current measurement."""
    cmd_source_voltage: ClassVar[str]
    """Fields: ``{v}``."""
    cmd_current_limit: ClassVar[str]
    """Fields: ``{i}``."""
    cmd_measure_current: ClassVar[str]
    cmd_output: ClassVar[str]
    """Fields: ``{state}`` (``ON``/``OFF``)."""
    cmd_linear_sweep: ClassVar[tuple[str, ...]]
    """Fields: ``{start}``, ``{stop}``, ``{points}``, ``{delay}``."""
    cmd_list_values: ClassVar[str]
    """Fields: ``{values}`` (comma-separated)."""
    cmd_list_append: ClassVar[str]
    """Fields: ``{values}``."""
    cmd_list_sweep: ClassVar[tuple[str, ...]]
    """Fields: ``{points}``, ``{delay}``."""
    cmd_run_sweep: ClassVar[tuple[str, ...]]
    """Start the configured sweep; it runs in the instrument while the driver polls."""
    cmd_abort: ClassVar[str]
    """Abort a running sweep (the output stays at its last level)."""
    cmd_count_readings: ClassVar[str | None]
    """Query: number of readings the last sweep stored; None if the model has none (the
    fetched data are counted)."""
    cmd_fetch: ClassVar[str]
    """Query, fields ``{points}``: reply is ``V1, I1, V2, I2, ...``."""
    cmd_error: ClassVar[str]
    """Query: next ``code,"message"`` of the error queue; code 0 when empty."""
    cmd_sync_set: ClassVar[str]
    """Fields ``{token}`` (0-255): store a token the instrument echoes back."""
    cmd_sync_query: ClassVar[str]
    """Query returning the stored token."""

    def __init__(
        self,
        resource_name: str,
        *,
        max_voltage: float = 5.0,
        max_current: float = 1e-3,
        timeout: float = 2000.0,
        backend: str = DEFAULT_BACKEND,
        resource_manager: pyvisa.ResourceManager | None = None,
    ) -> None:
        self.name = f"{self.model} at {resource_name}"
        r = self.ranges
        if not 0 < max_voltage <= r.voltage_max:
            raise SMULimitError(
                f"{self.name}: max_voltage={max_voltage} V outside the instrument range "
                f"(0, {r.voltage_max}] V"
            )
        if not r.current_limit_min <= max_current <= r.current_limit_max:
            raise SMULimitError(
                f"{self.name}: max_current={max_current} A outside the instrument range "
                f"[{r.current_limit_min}, {r.current_limit_max}] A"
            )
        self.max_voltage = max_voltage
        self.max_current = max_current
        self.timeout = timeout
        self._stale = False
        self._lost: str | None = None
        self._tokens = itertools.cycle(range(1, 256))
        try:
            rm = resource_manager or pyvisa.ResourceManager(backend)
            self._resource = rm.open_resource(
                resource_name, read_termination="\n", write_termination="\n", timeout=timeout
            )
        except (pyvisa.Error, OSError, ValueError) as exc:
            raise SMUError(f"{self.name}: cannot open ({exc})") from exc
        _disable_nagle(self._resource)

    # -- public API ----------------------------------------------------------------------

    def identify(self) -> str:
        """Return the instrument's identification string (``*IDN?``)."""
        return self._query(self.cmd_identify).strip()

    def reset(self) -> None:
        """Reset the instrument, then configure a voltage source measuring current.

        The output is off afterwards and the instrument's default current limit applies.
        """
        for command in self.cmd_reset:
            self._write(command)

    def source_voltage(self, v: float) -> None:
        """Set the source voltage level.

        Parameters
        ----------
        v : float
            Voltage (V); ``|v|`` must not exceed ``max_voltage``.
        """
        self._check_voltages(np.array([v], dtype=float), "source voltage")
        self._write(self.cmd_source_voltage.format(v=_num(v)))

    def set_current_limit(self, i: float) -> None:
        """Set the current limit (compliance) of the voltage source.

        Parameters
        ----------
        i : float
            Current limit (A), within the instrument range and at most ``max_current``.
        """
        self._check_current_limit(i)
        self._write(self.cmd_current_limit.format(i=_num(i)))

    def measure_current(self) -> float:
        """Measure the current once (A)."""
        return float(self._floats(self.cmd_measure_current, self.timeout)[0])

    def output(self, on: bool) -> None:
        """Switch the output on (``True``) or off (``False``)."""
        self._write(self.cmd_output.format(state="ON" if on else "OFF"))

    def linear_sweep(
        self,
        start: float,
        stop: float,
        points: int,
        delay: float = 0.0,
        cancel: Cancel | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sweep the voltage linearly and measure the current at every point.

        The sweep runs to the end even when the current limit is reached.  The output
        is left on at the last level.

        Parameters
        ----------
        start, stop : float
            First and last voltage (V).
        points : int
            Number of points, >= 2.
        delay : float
            Delay before each measurement (s), >= 0.
        cancel : Cancel, optional
            Checked while the sweep runs: once set, the instrument is told to abort
            the sweep and :class:`SMUAbortedError` is raised.

        Returns
        -------
        v, i : numpy.ndarray
            Source readback (V; below the programmed level where the current is
            limited) and measured current (A), float64, ``points`` long.
        """
        self._check_voltages(np.array([start, stop], dtype=float), "sweep voltage")
        self._check_sweep(points, delay)
        fields = {"start": _num(start), "stop": _num(stop), "points": points, "delay": _num(delay)}
        for part in self.cmd_linear_sweep:
            self._write(part.format(**fields))
        return self._run_and_fetch(points, delay, cancel)

    def list_sweep(
        self,
        voltages: Sequence[float] | np.ndarray,
        delay: float = 0.0,
        cancel: Cancel | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Source each voltage of a list in turn and measure the current at each.

        Use it for bipolar loops (forming, SET/RESET) in one instrument run.  The
        output is left on at the last level.

        Parameters
        ----------
        voltages : sequence of float
            Voltages (V), at least 2, each ``|v| <= max_voltage``.
        delay : float
            Delay before each measurement (s), >= 0.
        cancel : Cancel, optional
            Checked while the sweep runs: once set, the instrument is told to abort
            the sweep and :class:`SMUAbortedError` is raised.

        Returns
        -------
        v, i : numpy.ndarray
            Source readback (V) and measured current (A), float64, one per voltage.
        """
        values = np.asarray(voltages, dtype=float).ravel()
        self._check_voltages(values, "list voltage")
        self._check_sweep(values.size, delay)
        chunk = self.ranges.list_chunk
        for k in range(0, values.size, chunk):
            template = self.cmd_list_values if k == 0 else self.cmd_list_append
            self._write(template.format(values=", ".join(map(_num, values[k : k + chunk]))))
        for part in self.cmd_list_sweep:
            self._write(part.format(points=values.size, delay=_num(delay)))
        return self._run_and_fetch(values.size, delay, cancel)

    def errors(self) -> list[tuple[int, str]]:
        """Drain the instrument's error queue.

        Returns
        -------
        list of (int, str)
            ``(code, message)`` pairs, oldest first; empty when there was no error.
        """
        found = []
        for _ in range(_MAX_DISCARDED_LINES):
            reply = self._query(self.cmd_error)
            code_text, _, message = reply.partition(",")
            try:
                code = int(code_text)
            except ValueError:
                raise SMUError(
                    f"{self.name}: unexpected reply {reply[:80]!r} to {self.cmd_error!r}"
                ) from None
            if code == 0:
                return found
            found.append((code, message.strip().strip('"')))
        raise SMUError(f"{self.name}: error queue did not empty")

    def close(self) -> None:
        """Close the VISA session (idempotent).  The output state is left as it is."""
        resource, self._resource = self._resource, None
        if resource is not None:
            # A dead link cannot be closed more than it already is.
            with suppress(pyvisa.Error, OSError):
                resource.close()

    def __enter__(self) -> SourceMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- checks --------------------------------------------------------------------------

    def _check_voltages(self, values: np.ndarray, what: str) -> None:
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise SMULimitError(f"{self.name}: {what} must be finite numbers")
        worst = float(np.max(np.abs(values)))
        if worst > self.max_voltage:
            raise SMULimitError(
                f"{self.name}: {what} {worst} V exceeds the safe limit "
                f"max_voltage={self.max_voltage} V"
            )

    def _check_current_limit(self, i: float) -> None:
        lo = self.ranges.current_limit_min
        if not (math.isfinite(i) and lo <= i <= self.max_current):
            raise SMULimitError(
                f"{self.name}: current limit {i} A outside [{lo}, {self.max_current}] A "
                f"(instrument minimum, safe limit max_current)"
            )

    def _check_sweep(self, points: int, delay: float) -> None:
        if not 2 <= points <= self.ranges.sweep_points_max:
            raise SMULimitError(
                f"{self.name}: {points} sweep points outside [2, {self.ranges.sweep_points_max}]"
            )
        if not (math.isfinite(delay) and delay >= 0):
            raise SMULimitError(f"{self.name}: sweep delay {delay} s must be >= 0")

    # -- I/O -----------------------------------------------------------------------------

    def _run_and_fetch(
        self, points: int, delay: float, cancel: Cancel | None
    ) -> tuple[np.ndarray, np.ndarray]:
        self._query("*ESR?")  # clears a bit 0 left by an earlier sweep (an aborted one)
        for command in self.cmd_run_sweep:
            self._write(command)
        self._wait_for_sweep(points, delay, cancel or _Never())
        if self.cmd_count_readings is not None:
            count = self._floats(self.cmd_count_readings, self.timeout)
            if count.size != 1 or count[0] != points:
                raise SMUError(
                    f"{self.name}: sweep stored {count.tolist()} readings, expected {points}; "
                    "see errors()"
                )
        data = self._floats(self.cmd_fetch.format(points=points), self.timeout)
        if data.size != 2 * points:
            raise SMUError(f"{self.name}: fetched {data.size} values, expected {2 * points}")
        return data[0::2].copy(), data[1::2].copy()

    def _wait_for_sweep(self, points: int, delay: float, cancel: Cancel) -> None:
        """Poll the standard event status register until the sweep is done (``*OPC``
        sets its bit 0 then); abort the sweep if ``cancel`` is set meanwhile.

        A reply that waited for the sweep (``*WAI``, ``*OPC?``) would leave nothing to
        stop it with: the instrument takes no command until it has answered.
        """
        self._write("*OPC")
        allowed = self.sweep_timeout(points, delay)
        deadline = time.monotonic() + allowed / 1000.0
        while not int(self._query("*ESR?")) & 1:
            if cancel.wait(SWEEP_POLL):
                self._write(self.cmd_abort)
                raise SMUAbortedError(f"{self.name}: sweep aborted on request")
            if time.monotonic() > deadline:
                self._write(self.cmd_abort)
                raise SMUTimeoutError(
                    f"{self.name}: the sweep of {points} points did not end within "
                    f"{allowed:g} ms; aborted"
                )

    def sweep_timeout(self, points: int, delay: float) -> float:
        """Timeout (ms) of a reply that waits for a sweep of ``points`` with ``delay`` (s)."""
        return self.timeout + 1000.0 * points * (delay + self.point_time)

    def _floats(self, command: str, timeout: float) -> np.ndarray:
        reply = self._query(command, timeout)
        try:
            return np.array(reply.split(","), dtype=np.float64)
        except ValueError:
            raise SMUError(f"{self.name}: unexpected reply {reply[:80]!r} to {command!r}") from None

    def _write(self, command: str) -> None:
        self._ready(command)
        with self._guard(command, self.timeout):
            self._resource.write(command)

    def _query(self, command: str, timeout: float | None = None) -> str:
        timeout = self.timeout if timeout is None else timeout
        self._ready(command)
        with self._guard(command, timeout):
            self._resource.write(command)
            return self._read(timeout)

    def _read(self, timeout: float) -> str:
        self._resource.timeout = timeout
        try:
            return self._resource.read()
        finally:
            self._resource.timeout = self.timeout

    def _ready(self, command: str) -> None:
        """Fail fast on a closed or lost session; drop a late reply before ``command``."""
        if self._resource is None:
            raise SMUError(f"{self.name}: session is closed (before {command!r})")
        if self._lost:
            raise SMUError(f"{self.name}: {self._lost}; cannot send {command!r}")
        if self._stale:
            self._resync(command)

    def _resync(self, command: str) -> None:
        token = str(next(self._tokens))
        where = f"re-synchronising before {command!r}"
        with self._guard(where, self.timeout):
            self._resource.write(self.cmd_sync_set.format(token=token))
            self._resource.write(self.cmd_sync_query)
            for _ in range(_MAX_DISCARDED_LINES):
                if self._read(self.timeout).strip() == token:
                    break
            else:
                raise SMUError(f"{self.name}: no end to stale replies while {where}")
            self._resource.write(self.cmd_sync_set.format(token="0"))
        self._stale = False

    @contextmanager
    def _guard(self, command: str, timeout: float) -> Iterator[None]:
        """Translate pyvisa/socket failures during ``command`` (timeout in ms)."""
        try:
            yield
        except pyvisa.VisaIOError as exc:
            if exc.error_code != StatusCode.error_timeout:
                raise SMUError(f"{self.name}: VISA error on {command!r}: {exc}") from exc
            lost = self._probe()
            if lost:
                raise self._lose(command, lost) from exc
            self._stale = True
            raise SMUTimeoutError(
                f"{self.name}: no reply to {command!r} within {timeout:g} ms"
            ) from exc
        except OSError as exc:
            raise self._lose(command, f"{type(exc).__name__}: {exc}") from exc
        except UnicodeDecodeError as exc:
            self._stale = True
            raise SMUError(f"{self.name}: garbled reply to {command!r}") from exc

    def _probe(self) -> str | None:
        """After a timeout, tell a dead peer from a slow one; the reason if dead.

        An empty message is a no-op for SCPI instruments.  The first write to a socket
        whose peer has closed still succeeds (and draws a RST); the second one fails.
        """
        try:
            self._resource.write("")
            time.sleep(_PROBE_GAP)
            self._resource.write("")
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def _lose(self, command: str, reason: str) -> SMUError:
        self._lost = f"connection lost ({reason})"
        return SMUError(f"{self.name}: {self._lost} during {command!r}")


class Keithley2450(SourceMeter):
    """Keithley (Tektronix) 2450 SourceMeter, SCPI command set.

    Syntax from the Model 2450 Reference Manual (2450-901-01), section 6.  Sweeps run
    with ``failAbort OFF`` so reaching the current limit (SET, forming) does not abort
    them, and store into ``defbuffer1``, which is cleared first.  Parameters as for
    :class:`SourceMeter`.
    """

    model = "Keithley 2450"
    names = ("2450", "keithley2450")
    idn_pattern = r"KEITHLEY INSTRUMENTS,MODEL 2450,"
    ranges = InstrumentRanges(
        voltage_max=210.0,
        current_limit_min=1e-9,
        current_limit_max=1.05,
        sweep_points_max=100_000,
        list_chunk=100,
    )
    point_time = 0.05  # one reading at 1 PLC plus autozero, generously

    cmd_identify = "*IDN?"
    cmd_reset = ("*RST", ":SOUR:FUNC VOLT", ':SENS:FUNC "CURR"')
    cmd_source_voltage = ":SOUR:VOLT {v}"
    cmd_current_limit = ":SOUR:VOLT:ILIM {i}"
    cmd_measure_current = ":MEAS:CURR?"
    cmd_output = ":OUTP {state}"
    cmd_linear_sweep = (
        ':TRAC:CLE "defbuffer1"',
        ':SOUR:SWE:VOLT:LIN {start}, {stop}, {points}, {delay}, 1, BEST, OFF, OFF, "defbuffer1"',
    )
    cmd_list_values = ":SOUR:LIST:VOLT {values}"
    cmd_list_append = ":SOUR:LIST:VOLT:APP {values}"
    cmd_list_sweep = (
        ':TRAC:CLE "defbuffer1"',
        ':SOUR:SWE:VOLT:LIST 1, {delay}, 1, OFF, "defbuffer1"',
    )
    cmd_run_sweep = (":INIT",)
    cmd_abort = ":ABOR"
    cmd_count_readings = ':TRAC:ACT? "defbuffer1"'
    cmd_fetch = ':TRAC:DATA? 1, {points}, "defbuffer1", SOUR, READ'
    cmd_error = ":SYST:ERR?"
    cmd_sync_set = "*ESE {token}"
    cmd_sync_query = "*ESE?"


class KeysightB2900(SourceMeter):
    """Keysight (Agilent) B2900 series precision SMU, channel 1, SCPI command set.

    Syntax from the B2900 SCPI Command Reference: the current limit is the sense
    subsystem's protection (``:SENS:CURR:PROT``), sweeps are set up in the source
    subsystem and run by the trigger system (``:TRIG:COUN`` points, ``:TRIG:ACQ:DEL``
    before each measurement), ``*OPC?`` waits for them and ``:FETC:ARR?`` returns the
    ``:FORM:ELEM:SENS VOLT,CURR`` pairs (measured voltage, current).  There is no
    fail-abort: a sweep always runs to its end.  Parameters as for :class:`SourceMeter`.
    """

    model = "Keysight B2900"
    names = ("b2900", "b2901a", "b2902a", "b2911a", "b2912a")
    idn_pattern = r"(Keysight|Agilent) Technologies,B29\d\d[AB]?,"
    ranges = InstrumentRanges(
        voltage_max=210.0,
        current_limit_min=1e-9,
        current_limit_max=3.03,
        sweep_points_max=2500,
        list_chunk=2500,
    )
    point_time = 0.05

    cmd_identify = "*IDN?"
    cmd_reset = (
        "*RST",
        ":SOUR:FUNC:MODE VOLT",
        ':SENS:FUNC "VOLT","CURR"',
        ":FORM:ELEM:SENS VOLT,CURR",
    )
    cmd_source_voltage = ":SOUR:VOLT {v}"
    cmd_current_limit = ":SENS:CURR:PROT {i}"
    cmd_measure_current = ":MEAS:CURR? (@1)"
    cmd_output = ":OUTP {state}"
    cmd_linear_sweep = (
        ":SOUR:VOLT:MODE SWE",
        ":SOUR:VOLT:STAR {start}",
        ":SOUR:VOLT:STOP {stop}",
        ":SOUR:SWE:POIN {points}",
        ":TRIG:SOUR AINT",
        ":TRIG:COUN {points}",
        ":TRIG:ACQ:DEL {delay}",
    )
    cmd_list_values = ":SOUR:LIST:VOLT {values}"
    cmd_list_append = ":SOUR:LIST:VOLT:APP {values}"  # unused: one command holds a list
    cmd_list_sweep = (
        ":SOUR:VOLT:MODE LIST",
        ":TRIG:SOUR AINT",
        ":TRIG:COUN {points}",
        ":TRIG:ACQ:DEL {delay}",
    )
    cmd_run_sweep = (":OUTP ON", ":INIT (@1)")
    cmd_abort = ":ABOR (@1)"
    cmd_count_readings = None
    cmd_fetch = ":FETC:ARR? (@1)"
    cmd_error = ":SYST:ERR?"
    cmd_sync_set = "*ESE {token}"
    cmd_sync_query = "*ESE?"


@dataclass(frozen=True)
class FlexDatum:
    """One element of FLEX ASCII output format 21 (``EEEFG`` header, 13-digit value).

    Attributes
    ----------
    status : int or str
        Three-digit status: bit sum of 1 A/D overflow, 2 oscillation, 4 another channel
        in compliance, 8 this channel in compliance, ..., 128 end of data; or ``W`` / ``E``
        (intermediate / last sweep step) for source data.
    channel : str
        Channel letter, ``A`` for channel 1.
    kind : str
        ``I`` / ``V`` measured current / voltage, ``i`` / ``v`` source setup data, ...
    value : float
        The number (A, V, s).
    """

    status: int | str
    channel: str
    kind: str
    value: float

    @classmethod
    def parse(cls, element: str) -> FlexDatum:
        """Parse one ``EEEFGsn.nnnnnnEsnn`` element; ValueError if malformed."""
        element = element.strip()
        if len(element) < 6:
            raise ValueError(f"FLEX data element {element!r} is too short")
        status = element[:3].strip()
        return cls(
            int(status) if status.isdigit() else status, element[3], element[4], float(element[5:])
        )

    @property
    def in_compliance(self) -> bool:
        """Whether this channel reached its compliance for this datum."""
        return isinstance(self.status, int) and bool(self.status & 8)


class KeysightB1500A(SourceMeter):
    """Keysight (Agilent) B1500A semiconductor parameter analyzer, one SMU, FLEX commands.

    Syntax from the B1500A/B1505A Programming Guide (FLEX): ``CN``/``CL`` enable and
    disable the channel, ``DV`` forces a voltage with its current compliance, ``TI``
    and ``TV`` are high-speed spot measurements, a staircase sweep is ``MM 2`` +
    ``CMM 4`` (current and force-side voltage) + ``WM 1,2`` (no automatic abort, output
    left at the stop value) + ``WT`` + ``WV`` + ``XE``, read back with ``RMD?``; data in
    ``FMT 21`` (13 digits with a status/channel/type header); errors from ``ERRX?``.

    FLEX has no source level without an output: the driver keeps the level and the
    compliance and sends them together in ``DV`` while the channel is enabled.  FLEX
    has no arbitrary-list staircase either: :meth:`list_sweep` forces each point with
    ``DV`` and measures it with ``TI``/``TV`` (spot measurements paced by the host).

    Parameters
    ----------
    resource_name : str
        VISA resource, e.g. ``GPIB0::17::INSTR`` (the simulator:
        ``TCPIP::127.0.0.1::PORT::SOCKET``).
    channel : int
        Slot of the SMU module (1-10).
    **options
        As for :class:`SourceMeter`.
    """

    model = "Keysight B1500A"
    names = ("b1500a", "b1500")
    idn_pattern = r"(Keysight|Agilent) Technologies,B1500A,"
    ranges = InstrumentRanges(
        voltage_max=100.0,  # HRSMU/MPSMU
        current_limit_min=1e-12,
        current_limit_max=0.1,
        sweep_points_max=10001,
        list_chunk=1,
    )
    point_time = 0.02

    cmd_identify = "*IDN?"
    cmd_reset = ("*RST", "FMT 21,0")
    cmd_error = "ERRX?"
    cmd_sync_set = "*ESE {token}"
    cmd_sync_query = "*ESE?"
    cmd_count_readings = None

    def __init__(self, resource_name: str, *, channel: int = 1, **options: object) -> None:
        if not (isinstance(channel, int) and 1 <= channel <= 10):
            raise SMULimitError(f"{self.model}: channel={channel!r} is not a slot 1-10")
        self.channel = channel
        self._level = 0.0
        self._enabled = False
        super().__init__(resource_name, **options)  # type: ignore[arg-type]
        self._limit = min(100e-6, self.max_current)

    def reset(self) -> None:
        """Reset (every channel disabled), select output format 21; output off, 0 V."""
        super().reset()
        self._level, self._enabled = 0.0, False

    def source_voltage(self, v: float) -> None:
        """Set the source level (V); forced at once if the channel is enabled."""
        self._check_voltages(np.array([v], dtype=float), "source voltage")
        self._level = float(v)
        if self._enabled:
            self._force()

    def set_current_limit(self, i: float) -> None:
        """Set the current compliance (A); forced at once if the channel is enabled."""
        self._check_current_limit(i)
        self._limit = float(i)
        if self._enabled:
            self._force()

    def output(self, on: bool) -> None:
        """Enable the channel and force the level (``CN``, ``DV``), or disable it (``CL``)."""
        if on:
            self._write(f"CN {self.channel}")
            self._enabled = True
            self._force()
        else:
            self._write(f"CL {self.channel}")
            self._enabled = False

    def measure_current(self) -> float:
        """High-speed spot current measurement (``TI``, A); the channel must be enabled."""
        return self._spot("TI").value

    def linear_sweep(
        self,
        start: float,
        stop: float,
        points: int,
        delay: float = 0.0,
        cancel: Cancel | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Staircase sweep (``WV`` linear single); see :meth:`SourceMeter.linear_sweep`.

        Returns the force-side voltage (the voltage actually forced, below the level in
        compliance) and the current of every step.  ``cancel`` is checked before the
        sweep starts only: ``RMD?`` answers once the staircase is done, and the
        instrument reads no command (``AB`` included) before it has answered.
        """
        self._check_voltages(np.array([start, stop], dtype=float), "sweep voltage")
        self._check_sweep(points, delay)
        if cancel is not None and cancel.wait(0.0):
            raise SMUAbortedError(f"{self.name}: sweep aborted on request before it started")
        ch = self.channel
        for command in (
            f"CN {ch}",
            f"MM 2,{ch}",
            f"CMM {ch},4",
            "WM 1,2",
            f"WT 0,{_num(delay)}",
            f"WV {ch},1,0,{_num(start)},{_num(stop)},{points},{_num(self._limit)}",
            "BC",
            "XE",
        ):
            self._write(command)
        self._enabled, self._level = True, float(stop)
        data = self._data("RMD?", self.sweep_timeout(points, delay))
        current = [d.value for d in data if d.kind == "I"]
        voltage = [d.value for d in data if d.kind == "V"]
        if len(current) != points or len(voltage) != points:
            raise SMUError(
                f"{self.name}: sweep returned {len(current)} currents and {len(voltage)} "
                f"voltages, expected {points}; see errors()"
            )
        return np.array(voltage), np.array(current)

    def list_sweep(
        self,
        voltages: Sequence[float] | np.ndarray,
        delay: float = 0.0,
        cancel: Cancel | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Force and measure each voltage in turn (``DV``, then ``TI`` and ``TV``).

        See :meth:`SourceMeter.list_sweep`; ``delay`` is waited by the host between
        forcing and measuring, and ``cancel`` is checked before every point and during
        the delay.  Every value is checked before the first is forced.
        """
        values = np.asarray(voltages, dtype=float).ravel()
        self._check_voltages(values, "list voltage")
        self._check_sweep(values.size, delay)
        if not self._enabled:
            self._write(f"CN {self.channel}")
            self._enabled = True
        v_out, i_out = np.empty(values.size), np.empty(values.size)
        cancel = cancel or _Never()
        for k, v in enumerate(values):
            if cancel.wait(0.0):
                raise SMUAbortedError(f"{self.name}: sweep aborted on request at point {k}")
            self._level = float(v)
            self._force()
            if cancel.wait(delay):
                raise SMUAbortedError(f"{self.name}: sweep aborted on request at point {k}")
            i_out[k] = self._spot("TI").value
            v_out[k] = self._spot("TV").value
        return v_out, i_out

    # -- FLEX I/O ------------------------------------------------------------------------

    def _force(self) -> None:
        self._write(f"DV {self.channel},0,{_num(self._level)},{_num(self._limit)}")

    def _spot(self, command: str) -> FlexDatum:
        if not self._enabled:
            raise SMUError(f"{self.name}: the channel is disabled (CL); switch the output on")
        (datum,) = self._data(f"{command} {self.channel},0", self.timeout)
        return datum

    def _data(self, command: str, timeout: float) -> list[FlexDatum]:
        reply = self._query(command, timeout)
        try:
            return [FlexDatum.parse(e) for e in reply.split(",")]
        except ValueError:
            raise SMUError(f"{self.name}: unexpected reply {reply[:80]!r} to {command!r}") from None


SMU_MODELS: tuple[type[SourceMeter], ...] = (Keithley2450, KeysightB2900, KeysightB1500A)
"""The models this module drives (``labcim`` also finds models through entry points)."""
