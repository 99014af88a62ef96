"""The board wire protocol: framing, integrity checks and payload layouts.

Shared by both ends of the link: the host client (``drivers.board``) and the simulated
board (``mock_hw.board_server``).  ``docs/protocol.md`` is the specification; this module
is its reference implementation, so the two must agree.

A frame on the wire is ``COBS(header | payload | crc32) 0x00``:

- header (12 bytes, little-endian): version u8, opcode u8, flags u8, status u8, seq u32,
  payload length u32;
- payload: the message body, at most :data:`MAX_PAYLOAD` bytes;
- crc32: CRC-32 (IEEE 802.3, as ``zlib.crc32``) of header and payload, u32.

COBS removes every zero byte, so 0x00 only ever delimits frames and a receiver resyncs
on the next delimiter after garbage, a dropped byte or a cable unplugged mid-frame.
"""

from __future__ import annotations

import enum
import json
import math
import secrets
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cobs import cobs

PROTOCOL_VERSION = 3
"""Version written in every frame's header; negotiated by HELLO.  Version 2 added
operation ids, ADVANCE_CLOCK_TO and STATUS; version 3 the MVM window (row_start,
col_start, col_stop) and int8 MVM codes (docs/protocol.md)."""

MAX_PAYLOAD = 2 * 1024 * 1024
"""Largest payload any receiver accepts (bytes).  A board may advertise less in HELLO."""

BOARD_PAYLOAD = 64 * 1024
"""Payload a board buffers whole before checking its CRC (bytes): what the simulated
board advertises when served over TCP or a pty, and the host's default frame limit on
such links (docs/protocol.md, section 1; the in-process ``sim://`` board takes
:data:`MAX_PAYLOAD`)."""

MAX_CLOCK = 1e10
"""Largest board clock a host may ask for (s, about 317 years): ADVANCE_CLOCK_TO targets
must be finite and within [0, MAX_CLOCK]."""

Buffer = bytes | bytearray | memoryview
"""A part of a payload: any contiguous bytes-like object whose ``len`` is its size."""

NO_OP_ID = 0
"""Operation id of a command that carries none: executed every time it arrives."""


def new_op_id() -> int:
    """A fresh operation id: 64 random bits, never :data:`NO_OP_ID` (two ids collide
    with a chance of about 1 in 2**32 after 2**16 operations on one board)."""
    return secrets.randbits(64) or 1


PAYLOAD_MARGIN = 64
"""Bytes of a payload beyond its array data (fixed fields, array headers), at most: both
ends size chunked transfers so that data plus this margin fits a frame."""

HEADER = struct.Struct("<BBBBII")
"""version, opcode, flags, status, seq, payload length."""

CRC = struct.Struct("<I")

FLAG_REPLY = 0x01
"""Flags bit set in every board-to-host frame; the other bits are reserved (zero)."""

MAX_FRAME = HEADER.size + MAX_PAYLOAD + CRC.size
"""Largest decoded frame (bytes)."""

MAX_WIRE_FRAME = MAX_FRAME + MAX_FRAME // 254 + 2
"""Largest COBS-encoded frame including its delimiter (bytes)."""


class PulseKind(enum.IntEnum):
    """Kinds of programming pulse; the values are the wire codes."""

    SET = 0
    """Increase conductance (PCM: crystallize; RRAM: grow the filament)."""
    RESET = 1
    """Decrease conductance (PCM: melt-quench; RRAM: rupture the filament)."""
    FORM = 2
    """One-time forming of a fresh RRAM device (PCM devices ignore it)."""


PULSE_KIND_LIMIT: tuple[str, ...] = tuple(f"{k.name.lower()}_max" for k in PulseKind)
"""Identify limit bounding the amplitude of each pulse kind, indexed by its wire code."""


def pulse_limit_violation(
    limits: Mapping[str, Any], kind: np.ndarray, amplitude: np.ndarray, width: np.ndarray
) -> str | None:
    """Describe the first pulse outside the safe limits, or return None if all are inside.

    Parameters
    ----------
    limits : mapping
        The ``limits`` object of IDENTIFY: ``amplitude_unit``, ``set_max``, ``reset_max``,
        ``form_max`` (amplitude_unit), ``width_min``, ``width_max`` (s).
    kind : array of int
        Pulse kind wire codes (valid codes only).
    amplitude : array of float
        Pulse amplitudes (amplitude_unit); must be >= 0.
    width : array of float
        Pulse widths (s).

    Returns
    -------
    str or None
        A message naming the pulse index, its value and the limit it breaks.
    """
    table = np.array([limits[name] for name in PULSE_KIND_LIMIT], dtype=np.float64)
    top = table.take(kind)
    lo, hi = limits["width_min"], limits["width_max"]
    # Every side of this check runs it on every batch (client, device, board, chip): a
    # few reductions clear a valid batch, the element-wise search below only names the
    # culprit.  NaN fails every comparison, so a NaN anywhere takes the search.
    if amplitude.size == 0 or (
        amplitude.min() >= 0
        and np.subtract(amplitude, top, out=top).max() <= 0
        and width.min() >= lo
        and width.max() <= hi
    ):
        return None
    unit = limits["amplitude_unit"]
    top = table.take(kind)
    bad = ~((amplitude >= 0) & (amplitude <= top))
    if bad.any():
        i = int(np.argmax(bad))
        name = PULSE_KIND_LIMIT[kind[i]]
        return (
            f"amplitude[{i}] = {amplitude[i]:g} {unit} is outside [0, {name}] = "
            f"[0, {top[i]:g}] {unit}"
        )
    bad = ~((width >= lo) & (width <= hi))
    if bad.any():
        i = int(np.argmax(bad))
        return (
            f"width[{i}] = {width[i]:g} s is outside [width_min, width_max] = "
            f"[{limits['width_min']:g}, {limits['width_max']:g}] s"
        )
    return None


class Opcode(enum.IntEnum):
    """Commands; a reply carries the opcode of its request."""

    HELLO = 0x01
    IDENTIFY = 0x02
    GET_CONFIG = 0x03
    SET_CONFIG = 0x04
    STATUS = 0x05
    APPLY_PULSES = 0x10
    READ_CONDUCTANCE = 0x11
    MVM = 0x12
    CLOCK = 0x20
    ADVANCE_CLOCK_TO = 0x22
    ABORT = 0x30
    RESET = 0x31


class Status(enum.IntEnum):
    """Outcome of a request, in the header of its reply (0 in requests)."""

    OK = 0
    BAD_FRAME = 1
    """The request failed its CRC or length check; resend it."""
    BAD_ARGUMENT = 2
    """Malformed payload or a value outside what the chip accepts (index, shape...)."""
    OUT_OF_LIMITS = 3
    """A pulse or read voltage outside the safe operating limits; nothing was applied."""
    BUSY = 4
    """The board is still executing an earlier command; retry later."""
    INTERNAL_ERROR = 5
    """The board failed while executing; the message says how."""
    UNSUPPORTED = 6
    """Unknown opcode, protocol version, or a command this board does not offer."""
    HELD = 7
    """Another host connection owns the board; the message names it and since when.
    Nothing was executed; the host does not retry (the holder may keep it for hours)."""


class ProtocolError(ValueError):
    """A frame or payload that does not follow the protocol.

    Parameters
    ----------
    message : str
        What is wrong.
    seq, opcode : int or None
        Sequence number and opcode read from the header, when the frame was long enough
        to hold one.  Untrusted unless the CRC passed: use them only to ask for a resend.
    """

    def __init__(self, message: str, seq: int | None = None, opcode: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq
        self.opcode = opcode


class FramingError(ProtocolError):
    """Invalid COBS encoding, or a frame too short or too long to hold a message."""


class CrcError(ProtocolError):
    """The CRC-32 does not match the frame."""


class LengthError(ProtocolError):
    """The header's payload length disagrees with the frame."""


class VersionError(ProtocolError):
    """A protocol version this end does not speak.

    ``version`` is the frame's: the CRC passed before the version was checked, so it,
    ``seq`` and ``opcode`` are what the other end sent (a board answers in that version,
    so that a host of another version can read the refusal).
    """

    def __init__(self, message: str, seq: int, opcode: int, version: int) -> None:
        super().__init__(message, seq, opcode)
        self.version = version


class UnknownOpcodeError(ProtocolError):
    """An opcode this end does not know."""


class PayloadError(ProtocolError):
    """A payload that does not match its message's layout."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded message.

    Parameters
    ----------
    opcode : int
        Command (:class:`Opcode`).
    seq : int
        Sequence number, u32; a reply echoes its request's.
    payload : bytes or memoryview
        Message body (layouts in :data:`REQUESTS` / :data:`REPLIES`; UTF-8 text for a
        reply whose status is not OK); a read-only memoryview from
        ``decode_frame(..., view=True)``.
    status : int
        :class:`Status` of a reply; 0 in requests.
    reply : bool
        True for board-to-host frames.
    version : int
        Protocol version of the frame.
    """

    opcode: int
    seq: int
    payload: bytes | memoryview = b""
    status: int = Status.OK
    reply: bool = False
    version: int = PROTOCOL_VERSION


def encode_frame(frame: Frame) -> bytes:
    """Wire bytes of ``frame``: COBS-encoded, ending with the 0x00 delimiter."""
    return encode_message(
        frame.opcode, frame.seq, (frame.payload,), frame.status, frame.reply, frame.version
    )


def encode_message(
    opcode: int,
    seq: int,
    parts: Sequence[Buffer],
    status: int = Status.OK,
    reply: bool = False,
    version: int = PROTOCOL_VERSION,
) -> bytes:
    """Wire bytes of one frame whose payload is the concatenation of ``parts``.

    What both ends send with: the payload's parts (fixed fields, array headers, the
    arrays' own memory, see :func:`payload_parts`) are copied once, into the buffer COBS
    encodes, with the CRC computed over them in place.  Each part is a bytes-like object
    whose ``len`` is its size in bytes.
    """
    length = sum(len(part) for part in parts)
    if length > MAX_PAYLOAD:
        raise ValueError(f"payload of {length} bytes exceeds {MAX_PAYLOAD}")
    header = HEADER.pack(version, opcode, FLAG_REPLY if reply else 0, status, seq, length)
    crc = zlib.crc32(header)
    for part in parts:
        crc = zlib.crc32(part, crc)
    # One join and one encode; the delimiter is the only further copy (cobs returns bytes).
    return cobs.encode(b"".join((header, *parts, CRC.pack(crc)))) + b"\x00"


def decode_frame(data: bytes, *, view: bool = False) -> Frame:
    """Decode one COBS-encoded frame (without its delimiter).

    Checks, in order: COBS encoding, size, CRC-32, payload length, version, flags, opcode.
    With ``view`` the payload is a read-only ``memoryview`` into the decoded frame rather
    than a copy of it (what the two ends use: a payload's arrays are views anyway).

    Raises
    ------
    ProtocolError
        The subclass names the first check that failed.  Nothing else is raised.
    """
    if len(data) > MAX_WIRE_FRAME:
        raise FramingError(f"frame of {len(data)} bytes exceeds {MAX_WIRE_FRAME}")
    try:
        raw = cobs.decode(data)
    except cobs.DecodeError as exc:
        raise FramingError(f"invalid COBS encoding: {exc}") from None
    if len(raw) < HEADER.size + CRC.size:
        raise FramingError(f"frame of {len(raw)} bytes is shorter than header and CRC")
    version, opcode, flags, status, seq, length = HEADER.unpack_from(raw)
    (crc,) = CRC.unpack_from(raw, len(raw) - CRC.size)
    if zlib.crc32(memoryview(raw)[: -CRC.size]) != crc:
        raise CrcError("CRC-32 mismatch", seq, opcode)
    if length != len(raw) - HEADER.size - CRC.size:
        raise LengthError(
            f"header says {length} payload bytes, frame holds {len(raw) - HEADER.size - CRC.size}",
            seq,
            opcode,
        )
    if version != PROTOCOL_VERSION:
        raise VersionError(
            f"protocol version {version} (this end speaks {PROTOCOL_VERSION})",
            seq,
            opcode,
            version,
        )
    if flags & ~FLAG_REPLY:
        raise FramingError(f"reserved flag bits set: {flags:#04x}", seq, opcode)
    if opcode not in _OPCODES:
        raise UnknownOpcodeError(f"unknown opcode {opcode:#04x}", seq, opcode)
    try:
        status = Status(status)
    except ValueError:
        raise FramingError(f"unknown status {status}", seq, opcode) from None
    body = memoryview(raw)[HEADER.size : -CRC.size] if view else raw[HEADER.size : -CRC.size]
    return Frame(
        opcode=Opcode(opcode),
        seq=seq,
        payload=body,
        status=status,
        reply=bool(flags & FLAG_REPLY),
        version=version,
    )


_OPCODES = frozenset(Opcode)


class FrameSplitter:
    """Cut a byte stream into COBS frames at 0x00 delimiters.

    Empty frames (consecutive delimiters) are skipped.  A frame that grows beyond
    :data:`MAX_WIRE_FRAME` without a delimiter is discarded up to the next one, so
    garbage never makes the buffer grow without bound.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False
        self.overflows = 0
        """Number of overlong frames discarded."""

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames they complete (without delimiters)."""
        frames = []
        start = 0
        view = memoryview(data)  # appends to the buffer without a slice copy first
        while (end := data.find(0, start)) >= 0:
            if self._buf:
                self._buf += view[start:end]
                frame = bytes(self._buf)
                self._buf.clear()
            else:
                frame = data[start:end]
            if self._skipping:
                self._skipping = False
            elif frame:
                frames.append(frame)
            start = end + 1
        if not self._skipping:
            self._buf += view[start:]
            if len(self._buf) > MAX_WIRE_FRAME:
                self._buf.clear()
                self._skipping = True
                self.overflows += 1
        return frames


# --- payloads --------------------------------------------------------------------------

DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(s) for s in ("<i1", "<u1", "<i2", "<u2", "<i4", "<u4", "<f4", "<f8")
)
"""Array element types, indexed by their wire code."""

_DTYPE_CODE = {dt.str: code for code, dt in enumerate(DTYPES)}


@dataclass(frozen=True)
class ArraySpec:
    """One array field of a payload: its name, accepted element types and rank."""

    name: str
    dtypes: tuple[str, ...]
    ndim: int


@dataclass(frozen=True)
class Layout:
    """Payload of one message: fixed little-endian fields, then arrays, then JSON.

    Parameters
    ----------
    fields : str
        :mod:`struct` format of the fixed fields without byte order, e.g. ``"HHH"``.
    arrays : tuple of ArraySpec
        Arrays following the fixed fields, each as dtype code u8, ndim u8, ndim u32
        dimensions, then the elements (little-endian, C order, no padding).
    json : bool
        Whether a UTF-8 JSON object fills the rest of the payload.
    """

    fields: str = ""
    arrays: tuple[ArraySpec, ...] = ()
    json: bool = False
    fixed: struct.Struct = field(init=False, repr=False, compare=False)
    """Compiled :mod:`struct` of the fixed fields."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", struct.Struct("<" + self.fields))


@dataclass(frozen=True)
class Payload:
    """A decoded payload: fixed field values, arrays by name, and the JSON object."""

    values: tuple[Any, ...] = ()
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    obj: dict[str, Any] | None = None


def payload_parts(
    layout: Layout,
    values: Sequence[Any] = (),
    arrays: Sequence[np.ndarray] = (),
    obj: dict[str, Any] | None = None,
) -> list[Buffer]:
    """The parts of a payload following ``layout``, for :func:`encode_message`.

    An array that is already little-endian and C-contiguous is a view of its own memory,
    not a copy: the frame encoder copies it once, with everything else.
    """
    parts: list[Buffer] = [layout.fixed.pack(*values)]
    for spec, a in zip(layout.arrays, arrays, strict=True):
        a = np.asarray(a)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt.str not in spec.dtypes or a.ndim != spec.ndim:
            raise ValueError(f"{spec.name}: {a.dtype}[{a.ndim}d] is not one of {spec.dtypes}")
        parts.append(struct.pack(f"<BB{a.ndim}I", _DTYPE_CODE[dt.str], a.ndim, *a.shape))
        flat = np.ascontiguousarray(a, dtype=dt).reshape(-1)
        parts.append(memoryview(flat.view(np.uint8)))
    if layout.json:
        parts.append(json.dumps(obj, separators=(",", ":")).encode())
    return parts


def encode_payload(
    layout: Layout,
    values: Sequence[Any] = (),
    arrays: Sequence[np.ndarray] = (),
    obj: dict[str, Any] | None = None,
) -> bytes:
    """Bytes of a payload following ``layout``; arrays are converted to little-endian."""
    return b"".join(payload_parts(layout, values, arrays, obj))


def decode_payload(layout: Layout, payload: bytes | memoryview) -> Payload:
    """Decode ``payload`` following ``layout``.

    Arrays are read-only views into ``payload``.

    Raises
    ------
    PayloadError
        The payload does not match the layout; nothing else is raised.
    """
    end = len(payload)
    if end < layout.fixed.size:
        raise PayloadError(f"payload of {end} bytes, fixed fields need {layout.fixed.size}")
    values = layout.fixed.unpack_from(payload)
    pos = layout.fixed.size
    arrays = {}
    for spec in layout.arrays:
        if end - pos < 2:
            raise PayloadError(f"{spec.name}: payload ends before the array header")
        code, ndim = payload[pos], payload[pos + 1]
        if code >= len(DTYPES) or DTYPES[code].str not in spec.dtypes:
            raise PayloadError(f"{spec.name}: element type code {code} not in {spec.dtypes}")
        if ndim != spec.ndim:
            raise PayloadError(f"{spec.name}: {ndim} dimensions, expected {spec.ndim}")
        if end - pos - 2 < 4 * ndim:
            raise PayloadError(f"{spec.name}: payload ends inside the array header")
        shape = struct.unpack_from(f"<{ndim}I", payload, pos + 2)
        pos += 2 + 4 * ndim
        count = math.prod(shape)
        nbytes = DTYPES[code].itemsize * count
        if nbytes > end - pos:
            raise PayloadError(f"{spec.name}: shape {shape} needs {nbytes} bytes, {end - pos} left")
        arrays[spec.name] = np.frombuffer(payload, DTYPES[code], count, pos).reshape(shape)
        pos += nbytes
    obj = None
    if layout.json:
        obj = _decode_json(bytes(payload[pos:]))
    elif pos != end:
        raise PayloadError(f"{end - pos} unexpected bytes after the payload")
    return Payload(values, arrays, obj)


def _decode_json(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise PayloadError("JSON payload is not an object")
    return obj


def mvm_code_dtype(adc_bits: int) -> np.dtype:
    """Element type of the MVM codes a board sends for an ADC of ``adc_bits`` bits.

    The smallest of int8, int16 and int32 that holds the signed codes
    ``|c| <= 2**(adc_bits - 1) - 1``: a quarter of the bytes of int32 for an 8-bit ADC.
    """
    return np.dtype("|i1" if adc_bits <= 8 else "<i2" if adc_bits <= 16 else "<i4")


def mvm_window_violation(
    rows: int, cols: int, row_start: int, n_rows: int, col_start: int, col_stop: int
) -> str | None:
    """Describe what is wrong with an MVM window on a core, or return None if it fits.

    The window drives rows [row_start, row_start + n_rows) (every other row at 0 V) and
    reads columns [col_start, col_stop) of a core of ``rows`` x ``cols``.

    Returns
    -------
    str or None
        A message naming the field as the protocol names it and its allowed range.
    """
    if not 0 <= row_start < rows:
        return f"row_start = {row_start} is outside [0, {rows})"
    if not 1 <= n_rows <= rows - row_start:
        return (
            f"inputs of {n_rows} rows from row_start = {row_start}: the rows they drive "
            f"must be 1 to {rows - row_start} (the core has {rows})"
        )
    if not 0 <= col_start < cols:
        return f"col_start = {col_start} is outside [0, {cols})"
    if not col_start < col_stop <= cols:
        return (
            f"col_stop = {col_stop} is outside [col_start + 1, {cols}] = [{col_start + 1}, {cols}]"
        )
    return None


def pad_window(inputs: np.ndarray, rows: int, row_start: int) -> np.ndarray:
    """Full-core inputs (batch, ``rows``) of windowed ones: ``inputs`` [n, k] on rows
    [row_start, row_start + k), zero (0 V) on every other row, in ``inputs``' dtype.
    The inputs themselves when they already cover the core."""
    if row_start == 0 and inputs.shape[1] == rows:
        return inputs
    full = np.zeros((len(inputs), rows), inputs.dtype)
    full[:, row_start : row_start + inputs.shape[1]] = inputs
    return full


_CORE = "H"
_OP = "Q"  # operation id, u64; 0 = none
_NO_PAYLOAD = Layout()

PULSE_ARRAYS = (
    ArraySpec("row", ("<u2",), 1),
    ArraySpec("col", ("<u2",), 1),
    ArraySpec("device", ("|u1",), 1),
    ArraySpec("kind", ("|u1",), 1),
    ArraySpec("amplitude", ("<f8",), 1),  # V (RRAM) or uA (PCM)
    ArraySpec("width", ("<f8",), 1),  # s
)
"""The arrays of an APPLY_PULSES request, in order."""

REQUESTS: dict[Opcode, Layout] = {
    Opcode.HELLO: Layout("BB"),  # lowest, highest protocol version the host speaks
    Opcode.IDENTIFY: _NO_PAYLOAD,
    Opcode.GET_CONFIG: Layout(_CORE),
    Opcode.SET_CONFIG: Layout(_CORE, json=True),  # the fields to change
    Opcode.STATUS: _NO_PAYLOAD,
    # op id, core, offset of these pulses in the batch, pulses in the whole batch
    Opcode.APPLY_PULSES: Layout(_OP + _CORE + "II", PULSE_ARRAYS),
    # op id, core, row_start, row_stop of the whole read; part_start, part_stop to send
    Opcode.READ_CONDUCTANCE: Layout(_OP + _CORE + "HHHH"),
    # op id, core, offset of these inputs in the batch, vectors in the whole batch,
    # out_start, out_stop: the result vectors to send; the window: row_start (inputs
    # [n, k] drive rows [row_start, row_start + k)), col_start, col_stop (columns read)
    Opcode.MVM: Layout(_OP + _CORE + "IIIIHHH", (ArraySpec("inputs", ("|i1", "<i2"), 2),)),
    Opcode.CLOCK: _NO_PAYLOAD,
    Opcode.ADVANCE_CLOCK_TO: Layout("d"),  # target clock, s
    Opcode.ABORT: _NO_PAYLOAD,
    Opcode.RESET: _NO_PAYLOAD,
}
"""Payload layout of each request."""

REPLIES: dict[Opcode, Layout] = {
    Opcode.HELLO: Layout("BI"),  # version chosen, board's max payload (bytes)
    Opcode.IDENTIFY: Layout(json=True),
    Opcode.GET_CONFIG: Layout(json=True),
    Opcode.SET_CONFIG: Layout(json=True),  # the whole configuration after the change
    Opcode.STATUS: Layout(json=True),
    # pulses of the batch the board holds, pulses of the batch applied
    Opcode.APPLY_PULSES: Layout("II"),
    Opcode.READ_CONDUCTANCE: Layout(arrays=(ArraySpec("g", ("<f4",), 3),)),  # uS
    # ADC codes of the window's columns, in mvm_code_dtype(adc_bits)
    Opcode.MVM: Layout(arrays=(ArraySpec("codes", ("|i1", "<i2", "<i4"), 2),)),
    Opcode.CLOCK: Layout("d"),  # s
    Opcode.ADVANCE_CLOCK_TO: Layout("d"),  # s, the clock afterwards
    Opcode.ABORT: _NO_PAYLOAD,
    Opcode.RESET: _NO_PAYLOAD,
}
"""Payload layout of each OK reply; other statuses carry a UTF-8 message."""
