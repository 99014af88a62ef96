"""Client of the board wire protocol (``docs/protocol.md``), over any pyserial URL.

The same code drives a real FPGA test board (``serial:///dev/ttyUSB0?baudrate=N&...``,
:mod:`drivers.urlhandler.protocol_serial`, or any URL that :func:`serial.serial_for_url`
opens), the simulated board over TCP
(``socket://127.0.0.1:PORT``) or a pty (its device path), and the simulated board in the
same process (:class:`InProcessTransport`).

Every request has a fresh sequence number.  A request whose reply does not arrive within
``timeout``, or arrives corrupted, is sent again with the same sequence number, at most
``retries`` times: the board answers a repeated request from its copy of the last reply
without executing it again, so a retried pulse batch is applied once.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, Self

import numpy as np
import serial

import drivers.urlhandler  # noqa: F401  (registers serial://PORT?baudrate=... with pyserial)
from drivers import protocol
from drivers.protocol import Frame, Opcode, Status

_READ_CHUNK = 1 << 20


class BoardError(Exception):
    """Base of the errors of the board client.

    Parameters
    ----------
    message : str
        What went wrong.
    status : Status or None
        The board's status code, when the board replied.
    """

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        self.status = status


class LinkError(BoardError):
    """The link failed: closed, broken, or no valid reply after every retry."""


class BoardTimeoutError(LinkError, TimeoutError):
    """The board did not answer within the timeout, after every retry."""


class BoardRefusedError(BoardError):
    """The board answered with an error status (its message is the exception's)."""


class BoardLimitError(BoardRefusedError):
    """A pulse or setting outside the safe limits, refused by the client or the board."""


class BoardHeldError(BoardRefusedError):
    """Another host holds the board (status HELD); the message names it and since when.

    Not retried: the holder may keep the board for hours.  Try again once it is free.
    """


class HandlesFrames(Protocol):
    """Board side of an in-process link (``mock_hw.board_server.BoardHandler``)."""

    def handle(self, frame: bytes) -> bytes:
        """Wire bytes replying to one COBS frame (without delimiter); may be empty."""
        ...


class Transport(Protocol):
    """A byte stream to the board."""

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        ...

    def read(self, timeout: float) -> bytes:
        """Bytes received, waiting up to ``timeout`` s for the first; ``b""`` if none."""
        ...

    def close(self) -> None:
        """Release the link."""
        ...


class SerialTransport:
    """A pyserial port opened from a URL, read without blocking and waited on with select.

    Parameters
    ----------
    url : str
        Anything :func:`serial.serial_for_url` opens, e.g. ``socket://127.0.0.1:5000``,
        ``serial:///dev/ttyUSB0?baudrate=...`` or ``/dev/pts/3``.
    """

    def __init__(self, url: str) -> None:
        try:
            # timeout=0: reads return what has arrived; waiting is done with select.
            self.port = serial.serial_for_url(url, timeout=0)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise LinkError(f"cannot open {url}: {exc}") from exc
        sock = getattr(self.port, "_socket", None)
        if sock is not None:
            # pyserial's socket handler leaves Nagle on: small requests would wait ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._fd: int | None = self.port.fileno()
        except (AttributeError, OSError, NotImplementedError):
            self._fd = None  # e.g. loop:// and rfc2217://: polled instead

    def write(self, data: bytes) -> None:
        """Send all of ``data`` in one write call."""
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"link lost while sending: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        """Bytes received, waiting up to ``timeout`` s for the first; ``b""`` if none."""
        try:
            data = self.port.read(_READ_CHUNK)
            deadline = time.monotonic() + timeout
            while not data and (left := deadline - time.monotonic()) > 0:
                if self._fd is None:
                    time.sleep(min(left, 1e-3))
                else:
                    select.select([self._fd], [], [], left)
                data = self.port.read(_READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"link lost while receiving: {exc}") from exc
        return data

    def close(self) -> None:
        """Close the port."""
        self.port.close()


class InProcessTransport:
    """A link to a board object in the same process, through the full wire encoding.

    Parameters
    ----------
    board : HandlesFrames
        Object answering frames, e.g. ``mock_hw.board_server.BoardHandler``.
    """

    def __init__(self, board: HandlesFrames) -> None:
        self.board = board
        self._splitter = protocol.FrameSplitter()
        self._rx = bytearray()

    def write(self, data: bytes) -> None:
        """Hand every complete frame of ``data`` to the board and keep its replies."""
        for frame in self._splitter.feed(data):
            try:
                self._rx += self.board.handle(frame)
            except Exception as exc:  # the board "hung up": report it as a link failure
                raise LinkError(f"in-process board failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        """The replies produced so far; nothing more can arrive before the next write."""
        data = bytes(self._rx)
        self._rx.clear()
        return data

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class LinkStats:
    """Counters of one client's link, for display and diagnosis.

    Attributes
    ----------
    requests : int
        Commands completed (one per request frame, retries not counted).
    frames_sent, frames_received : int
        Frames written (including retries) and valid frames read.
    bytes_sent, bytes_received : int
        Wire bytes written and read.
    payload_sent, payload_received : int
        Payload bytes of the completed commands' requests and replies.
    retries : int
        Requests sent again after a timeout, a bad frame or a busy board.
    bad_frames : int
        Frames received that failed COBS, CRC or length checks, plus requests the board
        reported as damaged (status BAD_FRAME).
    timeouts : int
        Attempts that got no reply within the timeout.
    stale_replies : int
        Valid replies ignored because they answer an earlier request (late or duplicated).
    last_rtt : float
        Round-trip time of the last completed command, from its last send (s).
    total_rtt : float
        Sum of the round-trip times of completed commands (s).
    """

    requests: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    payload_sent: int = 0
    payload_received: int = 0
    retries: int = 0
    bad_frames: int = 0
    timeouts: int = 0
    stale_replies: int = 0
    last_rtt: float = 0.0
    total_rtt: float = 0.0

    @property
    def mean_rtt(self) -> float:
        """Mean round-trip time of completed commands (s); 0 before the first."""
        return self.total_rtt / self.requests if self.requests else 0.0


class _DamagedReplyError(Exception):
    """The current attempt received a damaged frame (or a BAD_FRAME status)."""


class BoardClient:
    """Commands of a CIM test board, over one link.

    Opening performs the version handshake (HELLO) and IDENTIFY; :attr:`info` holds the
    board's description and the limits the client enforces before sending any pulse.
    Thread-safe: one command at a time is on the wire.

    Parameters
    ----------
    transport : Transport
        The byte stream to the board.
    timeout : float
        Time to wait for each reply (s).  A command fails after ``retries + 1`` attempts,
        so after at most ``(retries + 1) * timeout`` s.
    retries : int
        Times a request is sent again after a timeout, a damaged reply or a busy board.
    """

    def __init__(self, transport: Transport, *, timeout: float = 2.0, retries: int = 3) -> None:
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.stats = LinkStats()
        self._splitter = protocol.FrameSplitter()
        self._seq = 0
        self._lock = threading.Lock()
        self._closed = False
        try:
            version, self.max_payload = self._call(
                Opcode.HELLO, (protocol.PROTOCOL_VERSION, protocol.PROTOCOL_VERSION)
            ).values
            self.info: dict[str, Any] = self.identify()
        except BaseException:
            self.close()
            raise
        self.protocol_version: int = version

    @classmethod
    def open(cls, url: str, *, timeout: float = 2.0, retries: int = 3) -> Self:
        """Connect to the board at a pyserial ``url`` (see :class:`SerialTransport`)."""
        return cls(SerialTransport(url), timeout=timeout, retries=retries)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the link; later commands raise :class:`LinkError`."""
        if not self._closed:
            self._closed = True
            self.transport.close()

    # -- commands ---------------------------------------------------------------------

    def identify(self) -> dict[str, Any]:
        """Board, firmware and chip description (see ``docs/protocol.md``)."""
        self.info = self._call(Opcode.IDENTIFY).obj
        return self.info

    def get_config(self, core: int) -> dict[str, Any]:
        """Configuration of ``core``: read_voltage (V), dac_bits, adc_bits, adc_gain, ..."""
        return self._call(Opcode.GET_CONFIG, (core,)).obj

    def set_config(self, core: int, **changes: Any) -> dict[str, Any]:
        """Change configuration fields of ``core``; returns the whole new configuration.

        Raises
        ------
        BoardLimitError
            ``read_voltage`` above the board's ``read_voltage_max``; nothing is sent.
        BoardRefusedError
            The board refused the change (unknown field, value out of range).
        """
        top = self.limits["read_voltage_max"]
        v = changes.get("read_voltage")
        if isinstance(v, int | float) and not v <= top:
            raise BoardLimitError(
                f"read_voltage = {v:g} V exceeds read_voltage_max = {top:g} V", Status.OUT_OF_LIMITS
            )
        return self._call(Opcode.SET_CONFIG, (core,), obj=changes).obj

    def apply_pulses(
        self,
        core: int,
        row: np.ndarray,
        col: np.ndarray,
        device: np.ndarray,
        kind: np.ndarray,
        amplitude: np.ndarray,
        width: np.ndarray,
    ) -> int:
        """Apply one programming pulse to each selected device of ``core``.

        Parameters
        ----------
        core : int
            Core index.
        row, col : array of int
            Cell coordinates.
        device : array of int
            Device within the cell, ``polarity * devices_per_polarity + index``.
        kind : array of int
            Pulse kinds: 0 SET, 1 RESET, 2 FORM.
        amplitude : array of float
            Amplitudes, V (RRAM) or uA (PCM): ``info["chip"]["limits"]["amplitude_unit"]``.
        width : array of float
            Widths (s).

        Returns
        -------
        int
            Pulses applied.  A batch larger than one frame goes as several commands.

        Raises
        ------
        BoardLimitError
            A pulse outside the limits the board reported (nothing is sent), or refused
            by the board's own check.
        ValueError
            Arrays of unequal length, not 1-D, or indices that do not fit the wire types.
        """
        arrays = [
            _wire_array(name, a, dt)
            for name, a, dt in (
                ("row", row, "<u2"),
                ("col", col, "<u2"),
                ("device", device, "u1"),
                ("kind", kind, "u1"),
                ("amplitude", amplitude, "<f8"),
                ("width", width, "<f8"),
            )
        ]
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError(f"pulse arrays differ in length: {[len(a) for a in arrays]}")
        if np.any(arrays[3] >= len(protocol.PULSE_KIND_LIMIT)):
            raise ValueError(f"kind codes must be in [0, {len(protocol.PULSE_KIND_LIMIT)})")
        if message := protocol.pulse_limit_violation(self.limits, *arrays[3:]):
            raise BoardLimitError(f"refused before sending: {message}", Status.OUT_OF_LIMITS)
        per_frame = max(
            1, (self.max_payload - protocol.PAYLOAD_MARGIN) // sum(a.itemsize for a in arrays)
        )
        applied = 0
        for start in range(0, max(n, 1), per_frame):
            chunk = [a[start : start + per_frame] for a in arrays]
            applied += self._call(Opcode.APPLY_PULSES, (core,), chunk).values[0]
        return applied

    def read_conductance(
        self, core: int, row_start: int = 0, row_stop: int | None = None
    ) -> np.ndarray:
        """Conductance (uS) of every device in rows [row_start, row_stop) of ``core``.

        Returns
        -------
        ndarray, float32, shape (2 * devices_per_polarity, row_stop - row_start, cols)
        """
        chip = self.info["chip"]
        row_stop = chip["rows"] if row_stop is None else row_stop
        per_row = 2 * chip["devices_per_polarity"] * chip["cols"] * 4
        per_frame = max(1, (self.max_payload - protocol.PAYLOAD_MARGIN) // per_row)
        parts = [
            self._call(Opcode.READ_CONDUCTANCE, (core, r, min(r + per_frame, row_stop))).arrays["g"]
            for r in range(row_start, max(row_stop, row_start + 1), per_frame)
        ]
        return np.concatenate(parts, axis=1)

    def mvm(self, core: int, inputs: np.ndarray) -> np.ndarray:
        """Run a batch of MVMs on ``core``.

        Parameters
        ----------
        core : int
            Core index.
        inputs : array of int, shape (batch, rows)
            DAC codes; sent as int8 when they fit, else int16.

        Returns
        -------
        ndarray, int32, shape (batch, cols)
            ADC codes.
        """
        x = np.asarray(inputs)
        if not np.issubdtype(x.dtype, np.integer) or x.ndim != 2:
            raise ValueError(f"inputs must be a 2-D integer array, got {x.dtype}[{x.ndim}d]")
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        for dt in (np.int8, np.int16):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                x = x.astype(dt, copy=False)
                break
        else:
            raise ValueError(f"input codes in [{lo}, {hi}] do not fit int16")
        per_vector = max(x.shape[1] * x.itemsize, self.info["chip"]["cols"] * 4)
        per_frame = max(1, (self.max_payload - protocol.PAYLOAD_MARGIN) // per_vector)
        parts = [
            self._call(Opcode.MVM, (core,), [x[b : b + per_frame]]).arrays["codes"]
            for b in range(0, max(len(x), 1), per_frame)
        ]
        return np.concatenate(parts).astype(np.int32)

    def clock(self) -> float:
        """The board clock (s)."""
        return self._call(Opcode.CLOCK).values[0]

    def advance_clock(self, seconds: float) -> float:
        """Move a simulated board's clock forward (s); real boards refuse (UNSUPPORTED)."""
        return self._call(Opcode.ADVANCE_CLOCK, (seconds,)).values[0]

    def abort(self) -> None:
        """Stop the command the board is executing at its next safe point."""
        self._call(Opcode.ABORT)

    def reset(self) -> None:
        """Restore the default configuration of every core (devices are untouched)."""
        self._call(Opcode.RESET)

    @property
    def limits(self) -> dict[str, Any]:
        """Safe operating limits the board reported (``info["chip"]["limits"]``)."""
        return self.info["chip"]["limits"]

    # -- transactions -----------------------------------------------------------------

    def request(self, opcode: Opcode, payload: bytes = b"") -> bytes:
        """Send a raw request payload and return the OK reply's payload.

        The low-level path under every command, for diagnosis and for testing a board's
        own checks.  Raises like the commands do.
        """
        return self._transact(opcode, payload)

    def _call(
        self,
        opcode: Opcode,
        values: tuple[Any, ...] = (),
        arrays: list[np.ndarray] | None = None,
        obj: dict[str, Any] | None = None,
    ) -> protocol.Payload:
        payload = protocol.encode_payload(protocol.REQUESTS[opcode], values, arrays or (), obj)
        reply = self._transact(opcode, payload)
        try:
            return protocol.decode_payload(protocol.REPLIES[opcode], reply)
        except protocol.PayloadError as exc:
            raise LinkError(f"malformed {opcode.name} reply: {exc}") from exc

    def _transact(self, opcode: Opcode, payload: bytes) -> bytes:
        with self._lock:
            if self._closed:
                raise LinkError("the link is closed")
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            seq = self._seq
            wire = protocol.encode_frame(Frame(opcode, seq, payload))
            failure, error = "", LinkError
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retries += 1
                # A leading delimiter ends any partial frame a broken attempt left behind.
                data = b"\x00" + wire if attempt else wire
                self.transport.write(data)
                self.stats.frames_sent += 1
                self.stats.bytes_sent += len(data)
                sent = time.perf_counter()
                try:
                    reply = self._await(seq, opcode, sent + self.timeout)
                except _DamagedReplyError as exc:
                    failure, error = str(exc), LinkError
                    continue
                if reply is None:
                    self.stats.timeouts += 1
                    failure, error = f"no reply within {self.timeout:g} s", BoardTimeoutError
                    continue
                if reply.status == Status.BUSY:
                    failure, error = "board busy", LinkError
                    time.sleep(min(0.05, self.timeout / 10))
                    continue
                rtt = time.perf_counter() - sent
                self.stats.requests += 1
                self.stats.last_rtt = rtt
                self.stats.total_rtt += rtt
                self.stats.payload_sent += len(payload)
                self.stats.payload_received += len(reply.payload)
                return _check_status(opcode, reply)
            raise error(
                f"{opcode.name} (seq {seq}) failed after {self.retries + 1} attempts: {failure}"
            )

    def _await(self, seq: int, opcode: Opcode, deadline: float) -> Frame | None:
        """The reply to ``seq``, or None at the deadline; raises _DamagedReplyError on damage."""
        while (left := deadline - time.perf_counter()) > 0:
            data = self.transport.read(left)
            if not data:
                return None
            self.stats.bytes_received += len(data)
            damaged = None
            for body in self._splitter.feed(data):
                try:
                    frame = protocol.decode_frame(body)
                except protocol.ProtocolError as exc:
                    self.stats.bad_frames += 1
                    damaged = f"damaged reply: {exc}"
                    continue
                self.stats.frames_received += 1
                if frame.seq != seq or frame.opcode != opcode or not frame.reply:
                    self.stats.stale_replies += 1
                elif frame.status == Status.BAD_FRAME:
                    self.stats.bad_frames += 1
                    damaged = "the board received a damaged request"
                else:
                    return frame
            if damaged:
                # Discard what else already arrived of the damaged reply before resending.
                self._splitter.feed(self.transport.read(0))
                raise _DamagedReplyError(damaged)
        return None


def _check_status(opcode: Opcode, reply: Frame) -> bytes:
    if reply.status == Status.OK:
        return reply.payload
    message = f"{opcode.name}: {reply.payload.decode('utf-8', 'replace')}"
    error = _REFUSALS.get(reply.status, BoardRefusedError)
    raise error(f"board refused {message} ({reply.status.name})", reply.status)


_REFUSALS: dict[Status, type[BoardRefusedError]] = {
    Status.OUT_OF_LIMITS: BoardLimitError,
    Status.HELD: BoardHeldError,
}
"""Error class of each refusal status with its own meaning to the host."""


def _wire_array(name: str, a: Any, dtype: str) -> np.ndarray:
    """``a`` as a 1-D array of the wire type ``dtype``, refusing values that would change."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if not np.issubdtype(np.dtype(dtype), np.integer):
        out = arr.astype(dtype)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{name} contains NaN or inf")
        return out
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got {arr.dtype}")
    out = arr.astype(dtype)
    if not np.array_equal(out, arr):
        raise ValueError(f"{name} has values outside the range of {out.dtype}")
    return out
