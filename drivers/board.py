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

Large transfers (pulse batches, conductance reads, MVM batches) go in bounded frames, no
larger than the client's frame limit and the board's ``max_payload``.  The limit halves
each time a frame fails twice in a row and grows back after a run of good frames, so a
link whose errors hit long frames gets frames short enough to get through.  Each such
transfer carries an operation id (the caller's, or a fresh one): the board assembles
the command from its frames and executes it once, as a whole, so a frame that failed
can be cut again smaller, and what the chip does never depends on the framing.  Every
chunked command checks a cancel flag between frames: ``stop()`` on the devices ends a
long batch there (see :class:`BoardAbortedError`).
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self

import numpy as np
import serial

import drivers.urlhandler  # noqa: F401  (registers serial://PORT?baudrate=... with pyserial)
from drivers import protocol
from drivers.protocol import Frame, Opcode, Status

_READ_CHUNK = 1 << 20

MIN_FRAME = 1024
"""Smallest frame limit (payload bytes) the adaptation goes down to."""

GROW_AFTER = 32
"""Good frames since the frame limit last halved after which it doubles (up to
``max_frame``)."""

CLOCK_POLL_S = 1.0
"""Longest sleep between clock reads while waiting for a real board's clock (s)."""


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


class LinkLostError(LinkError):
    """The link itself failed (a port closed, a connection reset), not a reply.

    Raised by transports; the client reopens a transport that can be reopened (see
    :meth:`SerialTransport.reopen`) and goes on.
    """


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


class BoardAbortedError(BoardError):
    """A command stopped on request (its cancel flag) before it was complete.

    Parameters
    ----------
    message : str
        What was stopped.
    done : int
        Items (pulses, rows, vectors) completed before the stop; for a pulse batch with
        an operation id, re-sending it completes the rest.
    """

    def __init__(self, message: str, done: int) -> None:
        super().__init__(message)
        self.done = done


class Cancel(Protocol):
    """A flag a chunked command checks between frames (e.g. ``threading.Event``)."""

    def is_set(self) -> bool:
        """Whether the command should stop."""
        ...

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s or until set; return whether it is set."""
        ...


class HandlesFrames(Protocol):
    """Board side of an in-process link (``mock_hw.board_server.BoardHandler``)."""

    def handle(self, frame: bytes) -> bytes:
        """Wire bytes replying to one COBS frame (without delimiter); may be empty."""
        ...


class Transport(Protocol):
    """A byte stream to the board.

    A transport may also have a ``max_frame`` attribute (payload bytes): the frame
    limit a client on it starts from unless told otherwise (`InProcessTransport`).
    """

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
        ``serial:///dev/ttyUSB0?baudrate=...`` or ``/dev/pts/3``.  A local port is
        opened for this process alone (pyserial's ``exclusive``, a ``flock`` on POSIX;
        Windows ports always are): a second program writing to the same board would
        interleave its commands with ours.  ``serial://PORT?exclusive=0`` shares it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._open()

    def _open(self) -> None:
        url = self.url
        local = "://" not in url or url.lower().startswith("serial://")
        alone = {"exclusive": True} if local and os.name == "posix" else {}
        try:
            # timeout=0: reads return what has arrived; waiting is done with select.
            self.port = serial.serial_for_url(url, timeout=0, **alone)
        except (serial.SerialException, ValueError, OSError) as exc:
            if "exclusively lock" in str(exc):
                raise LinkError(
                    f"cannot open {url}: another program has the port open (it holds its "
                    f"exclusive lock); close that program first"
                ) from exc
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
            raise LinkLostError(f"link lost while sending: {exc}") from exc

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
            raise LinkLostError(f"link lost while receiving: {exc}") from exc
        return data

    def reopen(self) -> None:
        """Close the port and open it again from its URL.

        For a board server that closed an idle connection (``labcim sim serve
        --idle-timeout``: a paused run sends nothing for as long as the pause lasts), or a
        USB serial adapter that came back under the same name.  Raises `LinkError` if
        the URL does not open.
        """
        with contextlib.suppress(serial.SerialException, OSError):
            self.port.close()
        self._open()

    def close(self) -> None:
        """Close the port."""
        self.port.close()


class InProcessTransport:
    """A link to a board object in the same process, through the full wire encoding.

    Parameters
    ----------
    board : HandlesFrames
        Object answering frames, e.g. ``mock_hw.board_server.BoardHandler``.

    Attributes
    ----------
    max_frame : int
        Frame limit (payload bytes) a client on this link starts from unless told
        otherwise: :data:`protocol.MAX_PAYLOAD`, as a function call loses no bytes and
        takes no transfer time (see :class:`BoardClient`).
    """

    max_frame = protocol.MAX_PAYLOAD

    def __init__(self, board: HandlesFrames) -> None:
        self.board = board
        self._splitter = protocol.FrameSplitter()
        self._rx: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Hand every complete frame of ``data`` to the board and keep its replies."""
        for frame in self._splitter.feed(data):
            try:
                reply = self.board.handle(frame)
            except Exception as exc:  # the board "hung up": report it as a link failure
                raise LinkError(f"in-process board failed: {exc}") from exc
            if reply:
                self._rx.append(reply)

    def read(self, timeout: float) -> bytes:
        """The replies produced so far; nothing more can arrive before the next write."""
        # One reply (the usual case) is handed over as it is, without a copy.
        data = self._rx[0] if len(self._rx) == 1 else b"".join(self._rx)
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
    recuts : int
        Chunks of a transfer cut again into smaller frames after a failed attempt.
    reconnects : int
        Times the link was lost and reopened (each followed by a new HELLO).
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
    recuts: int = 0
    reconnects: int = 0
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

    A lost link (`LinkLostError` from the transport) costs one attempt of the request:
    a transport with a ``reopen()`` method is reopened, the handshake is done again, and
    the request is sent on the new link.  Replaying it there is safe for the same reason
    a retry is (reads and MVMs repeat; pulse batches and clock advances carry operation
    ids the board executes once).  Another host that took the board meanwhile makes it
    fail with `BoardHeldError`, naming that host.

    Parameters
    ----------
    transport : Transport
        The byte stream to the board.
    timeout : float
        Time to wait for each reply (s).  A frame fails after ``retries + 1`` attempts,
        so after at most ``(retries + 1) * timeout`` s.
    retries : int
        Times a request is sent again after a timeout, a damaged reply or a busy board.
    max_frame : int, optional
        Largest payload (bytes) the client puts in one frame, whatever the board
        accepts: the start of the adaptive :attr:`frame_limit`.  By default the
        transport's ``max_frame`` attribute if it has one (an in-process link:
        :data:`protocol.MAX_PAYLOAD`), else :data:`protocol.BOARD_PAYLOAD`: on a serial
        line or a socket, frames of 64 KiB get through a noisy link and within the
        reply timeout at serial speeds (3 Mbaud moves 64 KiB in 0.2 s, 2 MiB in 7 s).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        timeout: float = 2.0,
        retries: int = 3,
        max_frame: int | None = None,
    ) -> None:
        if max_frame is None:
            max_frame = getattr(transport, "max_frame", protocol.BOARD_PAYLOAD)
        if not MIN_FRAME <= max_frame <= protocol.MAX_PAYLOAD:
            raise ValueError(
                f"max_frame = {max_frame} bytes is outside [{MIN_FRAME}, {protocol.MAX_PAYLOAD}]"
            )
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.stats = LinkStats()
        self._splitter = protocol.FrameSplitter()
        self._seq = 0
        self._lock = threading.Lock()
        self._closed = False
        self.max_frame = max_frame
        self.frame_limit = MIN_FRAME  # until HELLO says what the board takes
        self._good_frames = 0
        self._clock_settable = True
        # True while a handshake runs (at open, or on a reopened link): a link lost then
        # fails the request, and the lock is held already.
        self._handshaking = True
        try:
            self.protocol_version, self.max_payload = self._hello()
            self.max_frame = min(max_frame, self.max_payload)
            self.frame_limit = self.max_frame
            self.info: dict[str, Any] = self.identify()
        except BaseException:
            self.close()
            raise
        self._handshaking = False

    @classmethod
    def open(cls, url: str, **options: Any) -> Self:
        """Connect to the board at a pyserial ``url`` (see :class:`SerialTransport`);
        ``options`` as for the constructor."""
        return cls(SerialTransport(url), **options)

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

    def status(self) -> dict[str, Any]:
        """The board's counters: clock (s), pulses applied and acknowledged, replays."""
        return self._call(Opcode.STATUS).obj

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
        *,
        op_id: int = protocol.NO_OP_ID,
        cancel: Cancel | None = None,
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
        op_id : int
            Operation id of the batch (u64; 0: the client picks a fresh one).  The board
            applies the batch once, as a whole, however often and in whatever frames it
            is sent.
        cancel : Cancel, optional
            Checked before every frame; once set, the batch stops there.

        Returns
        -------
        int
            Pulses of the batch the board has applied (now or by an earlier send of the
            same ``op_id``).

        Raises
        ------
        BoardLimitError
            A pulse outside the limits the board reported (nothing is sent), or refused
            by the board's own check.
        BoardAbortedError
            ``cancel`` was set before the batch was complete.
        ValueError
            Arrays of unequal length, not 1-D, or indices that do not fit the wire types.
        """
        arrays = [
            _wire_array(spec.name, a, spec.dtypes[0])
            for spec, a in zip(
                protocol.PULSE_ARRAYS, (row, col, device, kind, amplitude, width), strict=True
            )
        ]
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError(f"pulse arrays differ in length: {[len(a) for a in arrays]}")
        if np.any(arrays[3] >= len(protocol.PULSE_KIND_LIMIT)):
            raise ValueError(f"kind codes must be in [0, {len(protocol.PULSE_KIND_LIMIT)})")
        if message := protocol.pulse_limit_violation(self.limits, *arrays[3:]):
            raise BoardLimitError(f"refused before sending: {message}", Status.OUT_OF_LIMITS)
        op_id = self._op_id(op_id)

        def send(start: int, stop: int, retries: int) -> int:
            chunk = [a[start:stop] for a in arrays]
            values = (op_id, core, start, n)
            return self._call(Opcode.APPLY_PULSES, values, chunk, retries=retries).values[1]

        per_pulse = sum(a.itemsize for a in arrays)
        return self._chunked("APPLY_PULSES", n, lambda: per_pulse, send, cancel)[-1]

    def read_conductance(
        self,
        core: int,
        row_start: int = 0,
        row_stop: int | None = None,
        *,
        op_id: int = protocol.NO_OP_ID,
        cancel: Cancel | None = None,
    ) -> np.ndarray:
        """Conductance (uS) of every device in rows [row_start, row_stop) of ``core``.

        ``op_id`` (u64; 0: the client picks a fresh one) names the read: the board reads
        the rows once, as a whole, and answers every request of that id with those data
        while its record holds them.

        Returns
        -------
        ndarray, float32, shape (2 * devices_per_polarity, row_stop - row_start, cols)
        """
        chip = self.info["chip"]
        row_stop = chip["rows"] if row_stop is None else row_stop
        op_id = self._op_id(op_id)

        def send(start: int, stop: int, retries: int) -> np.ndarray:
            values = (op_id, core, row_start, row_stop, row_start + start, row_start + stop)
            return self._call(Opcode.READ_CONDUCTANCE, values, retries=retries).arrays["g"]

        per_row = 2 * chip["devices_per_polarity"] * chip["cols"] * 4
        rows = max(row_stop - row_start, 1)  # an empty range is sent, for the board to refuse
        parts = self._chunked("READ_CONDUCTANCE", rows, lambda: per_row, send, cancel)
        return np.concatenate(parts, axis=1)

    def mvm(
        self,
        core: int,
        inputs: np.ndarray,
        *,
        row_start: int = 0,
        col_start: int = 0,
        col_stop: int | None = None,
        op_id: int = protocol.NO_OP_ID,
        cancel: Cancel | None = None,
    ) -> np.ndarray:
        """Run a batch of MVMs on ``core``, on a window of its rows and columns.

        The board computes the full MVM of the core with the rows outside the window at
        0 V and sends only the window's columns: the result is the full MVM's columns
        [col_start, col_stop) bit for bit, at the bytes of the window.

        Parameters
        ----------
        core : int
            Core index.
        inputs : array of int, shape (batch, k)
            DAC codes of rows [row_start, row_start + k) (k = rows: the whole core); sent
            as int8 when they fit, else int16.
        row_start : int
            First row the inputs drive.
        col_start, col_stop : int
            Columns to read, [col_start, col_stop); ``col_stop`` None: to the last one.
        op_id : int
            Operation id of the batch (u64; 0: the client picks a fresh one): the board
            runs the batch once, as a whole, and answers every request of that id with
            the same codes while its record holds them.
        cancel : Cancel, optional
            Checked before every frame; once set, the batch stops there.

        Returns
        -------
        ndarray, int32, shape (batch, col_stop - col_start)
            ADC codes.

        Raises
        ------
        ValueError
            Inputs not 2-D integers, without a vector or beyond int16, or a window
            outside the core; nothing is sent.
        """
        x = np.asarray(inputs)
        if not np.issubdtype(x.dtype, np.integer) or x.ndim != 2:
            raise ValueError(f"inputs must be a 2-D integer array, got {x.dtype}[{x.ndim}d]")
        if not len(x):
            raise ValueError(f"inputs must hold at least one vector, got shape {x.shape}")
        chip = self.info["chip"]
        col_stop = chip["cols"] if col_stop is None else col_stop
        window = (row_start, x.shape[1], col_start, col_stop)
        if message := protocol.mvm_window_violation(chip["rows"], chip["cols"], *window):
            raise ValueError(message)
        lo, hi = int(x.min()), int(x.max())  # not empty: both checks above
        for dt in (np.int8, np.int16):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                x = x.astype(dt, copy=False)
                break
        else:
            raise ValueError(f"input codes in [{lo}, {hi}] do not fit int16")
        op_id = self._op_id(op_id)
        n, width = len(x), col_stop - col_start
        nothing = x[:0]
        # The codes' size per element: 4 (int32) until the board's first reply shows it
        # sends 1 (int8) or 2 (int16), so the first part fits a frame whatever it is.
        code_bytes = [4]
        parts: list[np.ndarray] = []

        def upload(start: int, stop: int, retries: int) -> None:
            # The last part of the inputs also asks for the first codes, as many as one
            # reply holds: a batch that fits a frame each way takes one round trip.
            got = self._items_per_frame(self.frame_limit, width * code_bytes[0])
            out = (0, min(n, got)) if stop == n else (0, 0)
            values = (op_id, core, start, n, *out, row_start, col_start, col_stop)
            reply = self._call(Opcode.MVM, values, [x[start:stop]], retries=retries)
            if out[1]:
                parts[:] = [reply.arrays["codes"]]
                code_bytes[0] = parts[0].itemsize

        def download(start: int, stop: int, retries: int) -> np.ndarray:
            done = len(parts[0])  # the codes the last upload's reply held
            values = (op_id, core, n, n, done + start, done + stop, row_start, col_start, col_stop)
            codes = self._call(Opcode.MVM, values, [nothing], retries=retries).arrays["codes"]
            code_bytes[0] = codes.itemsize
            return codes

        self._chunked("MVM", n, lambda: x.shape[1] * x.itemsize, upload, cancel)
        rest = n - len(parts[0])
        if rest:
            parts += self._chunked("MVM", rest, lambda: width * code_bytes[0], download, cancel)
        return np.concatenate(parts, dtype=np.int32)  # one copy, out of the frames

    def clock(self) -> float:
        """The board clock (s)."""
        return self._call(Opcode.CLOCK).values[0]

    def wait_until(self, target: float, *, cancel: Cancel | None = None) -> float:
        """Let the board clock reach ``target`` (s); returns the clock afterwards.

        A simulated board moves its clock to ``target`` at once (ADVANCE_CLOCK_TO); a
        real one refuses that, and the client sleeps until its clock gets there,
        reading it at least every :data:`CLOCK_POLL_S`.  Asking again for a time already
        reached does nothing, so a replayed wait never advances a clock twice.

        Raises
        ------
        ValueError
            ``target`` not finite or outside [0, MAX_CLOCK]; nothing is sent.
        BoardAbortedError
            ``cancel`` was set while sleeping.
        """
        if not (
            isinstance(target, int | float)
            and math.isfinite(target)
            and 0 <= target <= protocol.MAX_CLOCK
        ):
            raise ValueError(
                f"clock target = {target!r} s must be finite and within "
                f"[0, {protocol.MAX_CLOCK:g}] s"
            )
        if self._clock_settable:
            try:
                return self._call(Opcode.ADVANCE_CLOCK_TO, (float(target),)).values[0]
            except BoardRefusedError as exc:
                if exc.status != Status.UNSUPPORTED:
                    raise
                self._clock_settable = False
        while (now := self.clock()) < target:
            left = min(target - now, CLOCK_POLL_S)
            if cancel is None:
                time.sleep(left)
            elif cancel.wait(left):
                raise BoardAbortedError(f"wait for clock {target:g} s stopped at {now:g} s", 0)
        return now

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

    # -- bounded frames ---------------------------------------------------------------

    def _chunked(
        self,
        name: str,
        total: int,
        item_bytes: Callable[[], int],
        send: Callable[[int, int, int], Any],
        cancel: Cancel | None,
    ) -> list[Any]:
        """``send(start, stop, retries)`` for consecutive item ranges covering [0, total).

        Each range fits the current :attr:`frame_limit` at ``item_bytes()`` bytes an item
        (asked before every frame: an MVM's codes turn out int8, int16 or int32).  A range that
        the halved limit
        would cut gets two attempts: if both fail, the (now halved) limit cuts it again;
        other ranges get every retry.  Safe because every chunked command carries an
        operation id: the board assembles and executes it once.
        """
        results, start = [], 0
        while True:
            if cancel is not None and cancel.is_set():
                if start:  # let a board that runs frames in the background stop too
                    with contextlib.suppress(BoardError):
                        self._call(Opcode.ABORT)
                raise BoardAbortedError(
                    f"{name} stopped on request after {start} of {total} items", start
                )
            size = item_bytes()
            stop = min(total, start + self._items_per_frame(self.frame_limit, size))
            # Would the halved limit cut this range?  Then two failed attempts re-cut it,
            # else the same frame is retried (the board answers a repeat from its last reply).
            half = self._items_per_frame(max(MIN_FRAME, self.frame_limit // 2), size)
            shrinkable = stop - start > half
            try:
                results.append(
                    send(start, stop, min(1, self.retries) if shrinkable else self.retries)
                )
            except LinkError:
                if not shrinkable or self._closed:
                    raise
                self.stats.recuts += 1
                continue
            start = stop
            if start >= total:
                return results

    @staticmethod
    def _items_per_frame(limit: int, item_bytes: int) -> int:
        return max(1, (limit - protocol.PAYLOAD_MARGIN) // item_bytes)

    def _op_id(self, op_id: Any) -> int:
        """``op_id`` checked to fit u64, or a fresh random one for 0."""
        if isinstance(op_id, bool) or not isinstance(op_id, int | np.integer):
            raise ValueError(f"op_id = {op_id!r} must be an integer")
        if not 0 <= op_id < 2**64:
            raise ValueError(f"op_id = {op_id} is outside [0, 2**64)")
        return int(op_id) or protocol.new_op_id()

    def _frame_failed(self, attempt: int) -> None:
        """Attempt ``attempt`` (0 first) of a frame failed: a frame failing again means
        frames this large rarely get through, so the limit halves."""
        if attempt:
            self._good_frames = 0
            self.frame_limit = max(MIN_FRAME, self.frame_limit // 2)

    def _frame_ok(self) -> None:
        """A frame got through: after :data:`GROW_AFTER` of them since the limit last
        halved, it doubles (a link that got better gets its long frames back)."""
        self._good_frames += 1
        if self._good_frames >= GROW_AFTER and self.frame_limit < self.max_frame:
            self._good_frames = 0
            self.frame_limit = min(self.max_frame, 2 * self.frame_limit)

    # -- transactions -----------------------------------------------------------------

    def request(self, opcode: Opcode, payload: bytes = b"") -> bytes:
        """Send a raw request payload and return the OK reply's payload.

        The low-level path under every command, for diagnosis and for testing a board's
        own checks.  Raises like the commands do.
        """
        return bytes(self._transact(opcode, [payload]))

    def _call(
        self,
        opcode: Opcode,
        values: tuple[Any, ...] = (),
        arrays: list[np.ndarray] | None = None,
        obj: dict[str, Any] | None = None,
        *,
        retries: int | None = None,
    ) -> protocol.Payload:
        parts = protocol.payload_parts(protocol.REQUESTS[opcode], values, arrays or (), obj)
        reply = self._transact(opcode, parts, retries)
        try:
            return protocol.decode_payload(protocol.REPLIES[opcode], reply)
        except protocol.PayloadError as exc:
            raise LinkError(f"malformed {opcode.name} reply: {exc}") from exc

    def _hello(self) -> tuple[int, int]:
        """The version handshake: the protocol version and the board's ``max_payload``."""
        version, max_payload = self._call(
            Opcode.HELLO, (protocol.PROTOCOL_VERSION, protocol.PROTOCOL_VERSION)
        ).values
        return version, max_payload

    def _transact(
        self, opcode: Opcode, parts: list[protocol.Buffer], retries: int | None = None
    ) -> memoryview:
        """The OK reply's payload (a view into the reply) to the request of ``parts``."""
        retries = self.retries if retries is None else retries
        if self._handshaking:
            return self._exchange(opcode, parts, retries)
        with self._lock:
            if self._closed:
                raise LinkError("the link is closed")
            return self._exchange(opcode, parts, retries)

    def _next_frame(self, opcode: Opcode, parts: list[protocol.Buffer]) -> tuple[int, bytes]:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq, protocol.encode_message(opcode, self._seq, parts)

    def _exchange(self, opcode: Opcode, parts: list[protocol.Buffer], retries: int) -> memoryview:
        seq, wire = self._next_frame(opcode, parts)
        failure, error = "", LinkError
        for attempt in range(retries + 1):
            if attempt:
                self.stats.retries += 1
            # A leading delimiter ends any partial frame a broken attempt left behind.
            data = b"\x00" + wire if attempt else wire
            try:
                self.transport.write(data)
                self.stats.frames_sent += 1
                self.stats.bytes_sent += len(data)
                sent = time.perf_counter()
                reply = self._await(seq, opcode, sent + self.timeout)
            except LinkLostError as exc:
                self._relink(exc)
                # A new sequence number: the request is new to the new link.
                seq, wire = self._next_frame(opcode, parts)
                failure, error = str(exc), LinkError
                continue
            except _DamagedReplyError as exc:
                failure, error = str(exc), LinkError
                self._frame_failed(attempt)
                continue
            if reply is None:
                self.stats.timeouts += 1
                self._frame_failed(attempt)
                failure, error = f"no reply within {self.timeout:g} s", BoardTimeoutError
                continue
            if reply.status == Status.BUSY:
                failure, error = "board busy", LinkError
                time.sleep(min(0.05, self.timeout / 10))
                continue
            rtt = time.perf_counter() - sent
            self._frame_ok()
            self.stats.requests += 1
            self.stats.last_rtt = rtt
            self.stats.total_rtt += rtt
            self.stats.payload_sent += sum(len(part) for part in parts)
            self.stats.payload_received += len(reply.payload)
            return _check_status(opcode, reply)
        raise error(f"{opcode.name} (seq {seq}) failed after {retries + 1} attempts: {failure}")

    def _relink(self, lost: LinkLostError) -> None:
        """Reopen the transport after ``lost`` and shake hands again; else raise ``lost``."""
        reopen = getattr(self.transport, "reopen", None)
        if reopen is None or self._handshaking:
            raise lost
        try:
            reopen()
        except LinkError as exc:
            raise LinkError(f"{lost}; reopening the link failed: {exc}") from exc
        self.stats.reconnects += 1
        self._splitter = protocol.FrameSplitter()  # what half arrived on the old link
        self._handshaking = True
        try:
            version, max_payload = self._hello()
        finally:
            self._handshaking = False
        if (version, max_payload) != (self.protocol_version, self.max_payload):
            raise LinkError(
                f"{lost}; the reopened link reached another board (protocol {version}, "
                f"max_payload {max_payload})"
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
                    frame = protocol.decode_frame(body, view=True)
                except protocol.ProtocolError as exc:
                    answer = (exc.seq, exc.opcode) == (seq, opcode)
                    if answer and isinstance(exc, protocol.VersionError):
                        # An intact reply in another version: a board of another
                        # protocol refusing the HELLO (retrying would not change that).
                        raise BoardRefusedError(
                            f"board refused {opcode.name}: it answered in protocol version "
                            f"{exc.version}, this host speaks {protocol.PROTOCOL_VERSION}",
                            Status.UNSUPPORTED,
                        ) from None
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


def _check_status(opcode: Opcode, reply: Frame) -> memoryview:
    if reply.status == Status.OK:
        return reply.payload
    message = f"{opcode.name}: {bytes(reply.payload).decode('utf-8', 'replace')}"
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
