"""The simulated test board: the board protocol (``docs/protocol.md``) served for a Chip.

:class:`BoardHandler` is the board's firmware: it decodes a request frame, validates it,
executes it on the chip and encodes the reply.  It keeps the last reply, so that a
repeated request is answered without being executed twice, and a bounded record of
recent operation ids (:class:`OperationRecord`), so that a pulse batch a plan replays
after a pause is acknowledged without being applied again and a replayed read or MVM
returns the very data it returned the first time.  The transports only move frames:

- in-process: pass the handler to ``drivers.board.InProcessTransport``;
- TCP: :class:`TcpBoardServer`, on 127.0.0.1 unless told otherwise, several clients of
  which one at a time owns the board;
- a pty pair: :class:`PtyBoardServer`, whose device path pyserial opens like a serial port.

:class:`FaultyHandler` wraps a handler to corrupt, drop, duplicate and delay frames and
to pull the cable, at given rates, from a seeded generator.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import os
import select
import selectors
import socket
import threading
import time
import tty
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, Self

import numpy as np

from drivers import protocol
from drivers.protocol import Opcode, Status
from mock_hw.chip import Chip
from mock_hw.errors import InvalidRequestError, SafetyLimitError

BOARD_NAME = "labcim simulated test board"
FIRMWARE = "mock_hw board 3"

_OPCODES = frozenset(Opcode)

Parts = list[protocol.Buffer]
"""A reply payload as its parts (`protocol.payload_parts`), encoded with one copy."""

POLL_S = 0.05
"""How often the server threads check whether they were asked to stop (s)."""


class ConnectionDroppedError(Exception):
    """Raised by a fault injector to make the transport pull the cable."""


class _RefusedError(Exception):
    """A request the board refuses with ``status``."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


class FrameHandler(Protocol):
    """Anything that answers one request frame with the wire bytes of its reply."""

    def handle(self, frame: bytes) -> bytes:
        """Reply wire bytes (possibly several frames or none) to one COBS frame."""
        ...


@dataclass
class _Operation:
    """What the board keeps of one operation id (docs/protocol.md, section 2)."""

    opcode: Opcode
    core: int
    key: tuple[int, ...]
    """What else names the command: (total,) of a batch, (row_start, row_stop) of a read."""
    received: int = 0
    """Leading pulses or input vectors of the batch received so far."""
    data: list[np.ndarray] = field(default_factory=list)
    """The batch as received: pulse arrays, or the input vectors."""
    result: np.ndarray | None = None
    """Conductances read or ADC codes, once executed."""
    done: bool = False
    """Whether the command was executed."""
    sent: set[tuple[int, int]] = field(default_factory=set)
    """Parts of the result sent so far (to count the ones sent again)."""
    chunks: dict[tuple[int, int], int] = field(default_factory=dict)
    """(offset, count) -> CRC-32 of each pulse chunk received: an applied batch keeps
    only these to recognize its chunks."""
    size: int = 0
    """Bytes the record counts for it (:attr:`nbytes` when last kept)."""

    @property
    def nbytes(self) -> int:
        """Bytes the board holds for it."""
        held = sum(a.nbytes for a in self.data)
        return held + (0 if self.result is None else self.result.nbytes)

    def release(self) -> None:
        """Drop the data held, keeping what makes a replay safe: an applied pulse batch
        stays applied; a read or MVM will be executed again; an upload starts over."""
        self.data, self.result, self.sent = [], None, set()
        if self.opcode != Opcode.APPLY_PULSES or not self.done:
            self.received, self.done, self.chunks = 0, False, {}


class OperationRecord:
    """The bounded record of recent operation ids a board keeps.

    Beyond ``max_operations`` ids the oldest are forgotten.  Beyond ``max_bytes`` bytes
    of batches received and results kept, the oldest operations release their data
    first (:meth:`_Operation.release`): an applied pulse batch is still recognized, a
    read or MVM is executed again if replayed.  The operation just executed keeps its
    data.

    Parameters
    ----------
    max_operations : int
        Operation ids remembered.
    max_bytes : int
        Bytes of batches and results kept.
    """

    def __init__(self, max_operations: int, max_bytes: int) -> None:
        self.max_operations = max_operations
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._ops: OrderedDict[int, _Operation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ops)

    def find(self, op_id: int, opcode: Opcode, core: int, key: tuple[int, ...]) -> _Operation:
        """The operation ``op_id`` names, new if unknown; refuses an id kept for another
        command."""
        op = self._ops.get(op_id)
        if op is None:
            return _Operation(opcode, core, key)
        if (op.opcode, op.core, op.key) != (opcode, core, key):
            raise _RefusedError(
                Status.BAD_ARGUMENT,
                f"op_id {op_id:#x} names {op.opcode.name} on core {op.core} {op.key}; "
                "an operation id names one command",
            )
        return op

    def keep(self, op_id: int, op: _Operation) -> None:
        """Remember ``op`` as the newest operation, then forget the oldest beyond bounds."""
        old = self._ops.pop(op_id, None)
        self.nbytes -= 0 if old is None else old.size
        op.size = op.nbytes
        self.nbytes += op.size
        self._ops[op_id] = op
        while len(self._ops) > self.max_operations:
            _, old = self._ops.popitem(last=False)
            self.nbytes -= old.size
        for old in self._ops.values():
            if self.nbytes <= self.max_bytes or old is op:
                break
            self.nbytes -= old.size
            old.release()
            old.size = 0


class BoardHandler:
    """The board side of the protocol for one simulated chip.

    Parameters
    ----------
    chip : Chip
        The chip behind the board.
    max_payload : int
        Largest payload the board accepts and sends (bytes), reported by HELLO.
    record_operations, record_bytes : int
        Bounds of the record of operation ids (:class:`OperationRecord`): ids kept, and
        bytes of read and MVM replies kept so that a replayed one returns the same data.

    Attributes
    ----------
    executed : int
        Requests executed.
    replayed : int
        Repeated requests answered from the last reply without executing them.
    pulses_applied : int
        Pulses applied to the chip since the board started.
    pulses_acknowledged : int
        Pulses of replayed batches acknowledged without being applied again.
    replies_replayed : int
        Parts of read or MVM results sent again (a replayed read or MVM).
    """

    def __init__(
        self,
        chip: Chip,
        *,
        max_payload: int = protocol.BOARD_PAYLOAD,
        record_operations: int = 4096,
        record_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if not 1024 <= max_payload <= protocol.MAX_PAYLOAD:
            raise ValueError(f"max_payload = {max_payload} is outside [1024, MAX_PAYLOAD]")
        self.chip = chip
        self.max_payload = max_payload
        self.record = OperationRecord(record_operations, record_bytes)
        self.executed = 0
        self.replayed = 0
        self.pulses_applied = 0
        self.pulses_acknowledged = 0
        self.replies_replayed = 0
        self._last: tuple[bytes, bytes] | None = None  # (request frame, reply wire bytes)
        self._commands: dict[Opcode, Callable[[protocol.Payload], Parts]] = {
            Opcode.HELLO: self._hello,
            Opcode.IDENTIFY: self._identify,
            Opcode.GET_CONFIG: self._get_config,
            Opcode.SET_CONFIG: self._set_config,
            Opcode.STATUS: self._status,
            Opcode.APPLY_PULSES: self._apply_pulses,
            Opcode.READ_CONDUCTANCE: self._read_conductance,
            Opcode.MVM: self._mvm,
            Opcode.CLOCK: self._clock,
            Opcode.ADVANCE_CLOCK_TO: self._advance_clock_to,
            Opcode.ABORT: self._abort,
            Opcode.RESET: self._reset,
        }

    def handle(self, frame: bytes) -> bytes:
        """Answer one COBS frame (without delimiter) with the wire bytes of the reply.

        Returns ``b""`` for frames that cannot be answered (too damaged to hold a header,
        or replies).  Never raises.
        """
        if self._last is not None and frame == self._last[0]:
            self.replayed += 1
            return self._last[1]
        try:
            request = protocol.decode_frame(frame, view=True)
        except protocol.VersionError as exc:
            # Refused in the host's own version, so that a host of another version reads
            # why (a version-2 host's HELLO gets "protocol version 2 (this end speaks 3)").
            message = [str(exc).encode()]
            return _reply(exc.opcode, exc.seq, Status.UNSUPPORTED, message, exc.version)
        except protocol.UnknownOpcodeError as exc:
            return _reply(exc.opcode, exc.seq, Status.UNSUPPORTED, [str(exc).encode()])
        except protocol.ProtocolError as exc:
            if exc.seq is None or exc.opcode not in _OPCODES:
                return b""
            return _reply(exc.opcode, exc.seq, Status.BAD_FRAME, [str(exc).encode()])
        if request.reply:
            return b""
        self.executed += 1
        status, payload = Status.OK, []
        try:
            args = protocol.decode_payload(protocol.REQUESTS[request.opcode], request.payload)
            payload = self._commands[request.opcode](args)
        except _RefusedError as exc:
            status, payload = exc.status, [str(exc).encode()]
        except protocol.PayloadError as exc:
            status, payload = Status.BAD_ARGUMENT, [str(exc).encode()]
        except SafetyLimitError as exc:
            status, payload = Status.OUT_OF_LIMITS, [str(exc).encode()]
        except InvalidRequestError as exc:
            status, payload = Status.BAD_ARGUMENT, [str(exc).encode()]
        except Exception as exc:  # firmware must answer, whatever went wrong
            status, payload = Status.INTERNAL_ERROR, [f"{type(exc).__name__}: {exc}".encode()]
        reply = _reply(request.opcode, request.seq, status, payload)
        self._last = (frame, reply)
        return reply

    # -- commands: decoded request payload -> reply payload -----------------------------

    def _hello(self, p: protocol.Payload) -> Parts:
        lowest, highest = p.values
        if not lowest <= protocol.PROTOCOL_VERSION <= highest:
            raise _RefusedError(
                Status.UNSUPPORTED,
                f"board speaks protocol {protocol.PROTOCOL_VERSION}, host {lowest}..{highest}",
            )
        return _encode(Opcode.HELLO, (protocol.PROTOCOL_VERSION, self.max_payload))

    def _identify(self, p: protocol.Payload) -> Parts:
        return _encode(Opcode.IDENTIFY, obj=self.identity())

    def identity(self) -> dict[str, Any]:
        """The IDENTIFY reply as it would be sent now (docs/protocol.md)."""
        return {
            "board": BOARD_NAME,
            "firmware": FIRMWARE,
            "protocol": protocol.PROTOCOL_VERSION,
            "max_payload": self.max_payload,
            "record": {"operations": self.record.max_operations, "bytes": self.record.max_bytes},
            "simulated": True,
            "chip": self.chip.identify(),
            "simulator": self.chip.record(),
        }

    def _status(self, p: protocol.Payload) -> Parts:
        status = {
            "clock": self.chip.time,
            "pulses_applied": self.pulses_applied,
            "pulses_acknowledged": self.pulses_acknowledged,
            "replies_replayed": self.replies_replayed,
            "operations": len(self.record),
            "record_bytes": self.record.nbytes,
        }
        return _encode(Opcode.STATUS, obj=status)

    def _get_config(self, p: protocol.Payload) -> Parts:
        return _encode(Opcode.GET_CONFIG, obj=self._config_reply(p.values[0]))

    def _set_config(self, p: protocol.Payload) -> Parts:
        self.chip.configure(p.values[0], **p.obj)
        return _encode(Opcode.SET_CONFIG, obj=self._config_reply(p.values[0]))

    def _config_reply(self, core: int) -> dict[str, Any]:
        """The core's configuration plus the read-only ADC step it implies (uA per code)."""
        return {**self.chip.config(core).to_dict(), "adc_lsb_uA": self.chip.adc_lsb(core)}

    def _apply_pulses(self, p: protocol.Payload) -> Parts:
        op_id, core, offset, total = p.values
        pulses = [p.arrays[spec.name] for spec in protocol.PULSE_ARRAYS]
        n = len(pulses[0])
        if op_id == protocol.NO_OP_ID:
            if (offset, total) != (0, n):
                raise _RefusedError(
                    Status.BAD_ARGUMENT,
                    f"offset = {offset}, total = {total}: a batch without op_id is one "
                    f"frame (offset 0, total {n})",
                )
            self.chip.apply_pulses(core, *pulses)
            self.pulses_applied += n
            return _encode(Opcode.APPLY_PULSES, (n, n))
        spec = self.chip.spec
        self._check_batch(
            op_id, offset, n, total, 2 * spec.devices_per_polarity * spec.rows * spec.cols
        )
        op = self.record.find(op_id, Opcode.APPLY_PULSES, core, (total,))
        crc = _crc(pulses)
        if op.chunks.setdefault((offset, n), crc) != crc:
            raise _different(op_id)
        if op.done:
            self.pulses_acknowledged += n
        else:
            self._receive(op_id, op, offset, total, pulses, self._check_pulse_limits)
            self.record.keep(op_id, op)  # what it holds counts, even if the chip refuses
            if op.received == total:
                # The whole batch at once: what the chip does never depends on framing.
                self.chip.apply_pulses(core, *op.data)
                op.done, op.data = True, []
                self.pulses_applied += total
        self.record.keep(op_id, op)
        return _encode(Opcode.APPLY_PULSES, (op.received, total if op.done else 0))

    def _read_conductance(self, p: protocol.Payload) -> Parts:
        op_id, core, start, stop, part_start, part_stop = p.values
        spec = self.chip.spec
        nbytes = 2 * spec.devices_per_polarity * max(part_stop - part_start, 0) * spec.cols * 4
        self._check_reply_size(nbytes)
        if op_id == protocol.NO_OP_ID:
            g = self.chip.read_conductance(core, part_start, part_stop)
            return _encode(Opcode.READ_CONDUCTANCE, arrays=[g])
        if not 0 <= start < stop <= spec.rows:
            raise _RefusedError(
                Status.BAD_ARGUMENT, f"row range [{start}, {stop}) is not inside [0, {spec.rows})"
            )
        if not start <= part_start < part_stop <= stop:
            raise _RefusedError(
                Status.BAD_ARGUMENT,
                f"part [{part_start}, {part_stop}) is not inside the read [{start}, {stop})",
            )
        op = self.record.find(op_id, Opcode.READ_CONDUCTANCE, core, (start, stop))
        self._count_part(op, part_start, part_stop)
        if not op.done:
            # Read once, as a whole; every part is sent from what was read.
            op.result = self.chip.read_conductance(core, start, stop)
            op.done = True
        self.record.keep(op_id, op)
        part = op.result[:, part_start - start : part_stop - start]
        return _encode(Opcode.READ_CONDUCTANCE, arrays=[part])

    def _mvm(self, p: protocol.Payload) -> Parts:
        op_id, core, offset, total, out_start, out_stop, row_start, col_start, col_stop = p.values
        inputs = p.arrays["inputs"]
        n, k = inputs.shape
        spec = self.chip.spec
        if message := protocol.mvm_window_violation(
            spec.rows, spec.cols, row_start, k, col_start, col_stop
        ):
            raise _RefusedError(Status.BAD_ARGUMENT, message)
        # The smallest type holding the ADC's codes: an 8-bit ADC's codes go as int8.
        dtype = protocol.mvm_code_dtype(self.chip.config(core).adc_bits)
        width = col_stop - col_start
        self._check_reply_size(max(out_stop - out_start, 0) * width * dtype.itemsize)

        def run(x: np.ndarray) -> np.ndarray:
            # Exactly the full MVM: the rows outside the window at 0 V, all columns
            # computed (IR drop, noise), the window's columns sent.
            codes = self.chip.mvm(core, protocol.pad_window(x, spec.rows, row_start))
            return codes[:, col_start:col_stop].astype(dtype)

        if op_id == protocol.NO_OP_ID:
            if (offset, total, out_start, out_stop) != (0, n, 0, n):
                raise _RefusedError(
                    Status.BAD_ARGUMENT,
                    "a batch without op_id is one frame (offset 0, total, out_start 0 and "
                    f"out_stop all {n})",
                )
            return _encode(Opcode.MVM, arrays=[run(inputs)])
        # A batch's int16 inputs fill at most the record, its codes (at most int32) at
        # most twice that: the bound of a full core's batch, whatever the window.
        largest = self.record.max_bytes // (2 * max(k, width))
        self._check_batch(op_id, offset, n, total, largest)
        key = (total, row_start, k, col_start, col_stop)
        op = self.record.find(op_id, Opcode.MVM, core, key)
        self._receive(op_id, op, offset, total, [inputs])
        if out_stop > out_start:
            self._count_part(op, out_start, out_stop)
        if not op.done and op.received == total:
            # The whole batch at once: what the chip does never depends on the framing.
            op.result = run(op.data[0])
            op.done = True
        self.record.keep(op_id, op)
        if out_stop <= out_start:
            codes = np.zeros((0, width), dtype)
        elif not (op.done and out_stop <= total):
            raise _RefusedError(
                Status.BAD_ARGUMENT,
                f"out [{out_start}, {out_stop}): results of op_id {op_id:#x} not available "
                f"({op.received} of {total} vectors received)",
            )
        else:
            codes = op.result[out_start:out_stop]
        return _encode(Opcode.MVM, arrays=[codes])

    def _count_part(self, op: _Operation, start: int, stop: int) -> None:
        if (start, stop) in op.sent:
            self.replies_replayed += 1
        op.sent.add((start, stop))

    def _check_batch(self, op_id: int, offset: int, n: int, total: int, largest: int) -> None:
        """Refuse a part that does not fit its batch, or a batch larger than ``largest``."""
        if total > largest:
            raise _RefusedError(
                Status.BAD_ARGUMENT, f"total = {total} is more than this board takes ({largest})"
            )
        if offset + n > total:
            raise _RefusedError(
                Status.BAD_ARGUMENT,
                f"op_id {op_id:#x}: items [{offset}, {offset + n}) do not fit total = {total}",
            )

    def _check_pulse_limits(self, pulses: list[np.ndarray]) -> None:
        """Refuse pulses outside the safe limits as they arrive (the chip checks again)."""
        kind = pulses[3]
        if np.any(kind >= len(protocol.PULSE_KIND_LIMIT)):
            raise InvalidRequestError(
                f"kind codes must be in [0, {len(protocol.PULSE_KIND_LIMIT)})"
            )
        if message := protocol.pulse_limit_violation(self.chip.limits.to_dict(), *pulses[3:]):
            raise SafetyLimitError(message)

    def _receive(
        self,
        op_id: int,
        op: _Operation,
        offset: int,
        total: int,
        parts: list[np.ndarray],
        check: Callable[[list[np.ndarray]], None] | None = None,
    ) -> None:
        """Add the items [offset, offset + n) of a batch of ``total``; refuse a gap or
        changed content."""
        n = len(parts[0])
        if not op.data and offset == 0 and n == total:
            # The whole batch in one frame: held as it arrived (read-only views into the
            # request), not copied into a buffer of its own.
            if check is not None:
                check(parts)
            op.data, op.received = list(parts), n
            return
        if not op.data:
            op.data = [np.zeros((total, *part.shape[1:]), part.dtype) for part in parts]
        if offset > op.received:
            raise _RefusedError(
                Status.BAD_ARGUMENT,
                f"op_id {op_id:#x}: items [{op.received}, {offset}) were never received; "
                "send a batch's parts in order",
            )
        known = min(op.received, offset + n) - offset  # items received before
        for held, part in zip(op.data, parts, strict=True):
            same = np.array_equal(held[offset : offset + known], part[:known])
            if part.dtype != held.dtype or not same:
                raise _different(op_id)
        if known < n:
            if check is not None:
                check([part[known:] for part in parts])
            for held, part in zip(op.data, parts, strict=True):
                held[offset + known : offset + n] = part[known:]
            op.received = offset + n

    def _clock(self, p: protocol.Payload) -> Parts:
        return _encode(Opcode.CLOCK, (self.chip.time,))

    def _advance_clock_to(self, p: protocol.Payload) -> Parts:
        return _encode(Opcode.ADVANCE_CLOCK_TO, (self.chip.advance_to(p.values[0]),))

    def _abort(self, p: protocol.Payload) -> Parts:
        # Commands run to completion before the next frame is read: nothing to stop.
        return []

    def _reset(self, p: protocol.Payload) -> Parts:
        self.chip.reset_config()
        return []

    def _check_reply_size(self, nbytes: int) -> None:
        """Refuse, before executing, a request whose reply would not fit one frame."""
        if nbytes + protocol.PAYLOAD_MARGIN > self.max_payload:
            raise _RefusedError(
                Status.BAD_ARGUMENT,
                f"reply of {nbytes} bytes would exceed max_payload = {self.max_payload}; "
                "ask for fewer rows or vectors",
            )


def _different(op_id: int) -> _RefusedError:
    return _RefusedError(
        Status.BAD_ARGUMENT,
        f"op_id {op_id:#x} was used for a different batch; an operation id names one command",
    )


def _crc(arrays: list[np.ndarray]) -> int:
    """CRC-32 of arrays' contents: what recognizes a chunk sent again."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).data, crc)
    return crc


def _encode(
    opcode: Opcode,
    values: tuple[Any, ...] = (),
    arrays: list[np.ndarray] | None = None,
    obj: dict[str, Any] | None = None,
) -> Parts:
    return protocol.payload_parts(protocol.REPLIES[opcode], values, arrays or (), obj)


def _reply(
    opcode: int,
    seq: int,
    status: Status,
    payload: Parts,
    version: int = protocol.PROTOCOL_VERSION,
) -> bytes:
    return protocol.encode_message(opcode, seq, payload, status, reply=True, version=version)


# -- fault injection --------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Rates of injected link faults, each a probability per frame in [0, 1].

    Parameters
    ----------
    corrupt : float
        Flip one random bit of a request or reply.
    drop : float
        Lose a request or reply.
    duplicate : float
        Deliver a request or reply twice.
    delay : float
        Hold a reply back by ``delay_s``.
    delay_s : float
        Length of a delay (s).
    disconnect : float
        Pull the cable on receiving a request.
    seed : int
        Seed of the fault generator.
    """

    corrupt: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.05
    disconnect: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("corrupt", "drop", "duplicate", "delay", "disconnect"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"fault rate {name} = {getattr(self, name)} is outside [0, 1]")
        if self.delay_s < 0:
            raise ValueError(f"delay_s = {self.delay_s} must be >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"fault seed = {self.seed!r} must be a non-negative integer")

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> Faults:
        """Faults from ``"corrupt=0.02,drop=0.02,duplicate=0.01"`` (empty: none).

        ``seed`` is used unless the spec names one.
        """
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {"seed": seed}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name.strip() not in kinds:
                raise ValueError(f"fault {item!r} is not NAME=VALUE with NAME in {list(kinds)}")
            convert = int if kinds[name.strip()] == "int" else float
            try:
                values[name.strip()] = convert(value)
            except ValueError:
                raise ValueError(f"fault {item!r}: {value!r} is not a number") from None
        return cls(**values)

    def any(self) -> bool:
        """Whether any fault can happen."""
        return any((self.corrupt, self.drop, self.duplicate, self.delay, self.disconnect))


class FaultyHandler:
    """A frame handler whose link misbehaves: wraps ``handler`` with :class:`Faults`.

    Attributes
    ----------
    injected : collections.Counter
        Faults injected so far, by name (``corrupt_request``, ``drop_reply``, ...).
    """

    def __init__(self, handler: FrameHandler, faults: Faults) -> None:
        self.handler = handler
        self.faults = faults
        self.injected: Counter[str] = Counter()
        self._rng = np.random.default_rng(faults.seed)

    def handle(self, frame: bytes) -> bytes:
        """Reply to ``frame`` as seen through the faulty link."""
        f = self.faults
        if self._happens(f.disconnect, "disconnect"):
            raise ConnectionDroppedError("fault injection pulled the cable")
        if self._happens(f.drop, "drop_request"):
            return b""
        if self._happens(f.corrupt, "corrupt_request"):
            frame = self._flip_bit(frame)
        copies = 2 if self._happens(f.duplicate, "duplicate_request") else 1
        out = []
        for reply in (self.handler.handle(frame) for _ in range(copies)):
            if not reply or self._happens(f.drop, "drop_reply"):
                continue
            if self._happens(f.corrupt, "corrupt_reply"):
                reply = self._flip_bit(reply[:-1]) + reply[-1:]
            out.append(reply * (2 if self._happens(f.duplicate, "duplicate_reply") else 1))
        if out and self._happens(f.delay, "delay"):
            time.sleep(f.delay_s)
        return b"".join(out)

    def _happens(self, rate: float, name: str) -> bool:
        if rate and self._rng.random() < rate:
            self.injected[name] += 1
            return True
        return False

    def _flip_bit(self, data: bytes) -> bytes:
        out = bytearray(data)
        out[self._rng.integers(len(out))] ^= 1 << int(self._rng.integers(8))
        return bytes(out)


# -- transports -------------------------------------------------------------------------

OUTBOX_HIGH = 256 * 1024
"""Unsent reply bytes (per TCP client) above which the server executes none of that
client's queued requests and reads nothing more from it, until the client reads."""

RECV_CHUNK = 1 << 16
"""Bytes read from a client at a time."""

MAX_CLIENTS = 64
"""Default limit of simultaneous TCP connections; further ones are closed at once."""

PTY_WRITE_STALL_S = 2.0
"""Default time (s) a pty reply may wait for the reader before the rest is discarded."""


def _local_time(t: float) -> str:
    """Wall-clock time ``t`` (s since the epoch) as ISO 8601 with the UTC offset."""
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


class _StreamServer:
    """Serves a frame handler over a byte stream in a background thread."""

    url: str
    """What :func:`serial.serial_for_url` opens to reach this board."""

    def __init__(self, handler: FrameHandler) -> None:
        self.handler = handler
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name=self.url, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until :meth:`close`."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop serving and release the link."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PeerClosedError(Exception):
    """The client closed its end of the connection."""


@dataclass(eq=False)
class _Client:
    """One TCP connection: its buffers and when it last sent a complete frame."""

    sock: socket.socket
    peer: str
    last_frame: float
    """``time.monotonic()`` of the last complete frame received (or of the connection)."""
    splitter: protocol.FrameSplitter = field(default_factory=protocol.FrameSplitter)
    inbox: collections.deque[bytes] = field(default_factory=collections.deque)
    outbox: bytearray = field(default_factory=bytearray)
    closed: bool = False


class TcpBoardServer(_StreamServer):
    """The board over TCP: several clients may connect, one of them owns the board.

    A client takes the board with its first valid request (a host session starts with
    HELLO) while nobody holds it, and keeps it until it disconnects or, with an
    ``idle_timeout``, until it sends no complete frame for that long: then the server
    closes its connection (its next command fails with a link error) and the board is
    free.  Every request of another client is answered with status ``HELD`` and the
    message ``board busy, held by 127.0.0.1:PORT since <time> (...)``; nothing of it is
    executed.  One thread serves every connection without blocking: a client that stops
    reading, or sends half a frame and stalls, holds up only itself (its unsent replies
    are bounded by :data:`OUTBOX_HIGH` plus one frame, as nothing more of it is read or
    executed until it reads).

    Parameters
    ----------
    handler : FrameHandler
        The board (:class:`BoardHandler`, possibly wrapped in :class:`FaultyHandler`).
    host : str
        Address to listen on; loopback unless a lab chooses otherwise.
    port : int
        TCP port; 0 picks a free one (read it from :attr:`url`).
    idle_timeout : float or None
        Close a connection (owner or not) that sent no complete frame for this long (s);
        None never does.
    max_clients : int
        Connections served at once; a connection beyond it is closed at once.
    log : callable, optional
        Called with a one-line message when a client takes or releases the board or is
        refused or dropped (the CLI prints them to stderr).
    """

    def __init__(
        self,
        handler: FrameHandler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float | None = None,
        max_clients: int = MAX_CLIENTS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout = {idle_timeout} s must be > 0 (or None: never)")
        if max_clients < 1:
            raise ValueError(f"max_clients = {max_clients} must be >= 1")
        super().__init__(handler)
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self._log = log or (lambda message: None)
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        host, port = self._listener.getsockname()[:2]
        self.url = f"socket://{host}:{port}"
        self._clients: set[_Client] = set()
        self._clients_lock = threading.Lock()  # disconnect() reads the set from any thread
        self._owner: _Client | None = None
        self._owner_since = 0.0

    @property
    def owner(self) -> str | None:
        """``HOST:PORT`` of the client that holds the board, or None."""
        owner = self._owner
        return None if owner is None else owner.peer

    def serve_forever(self) -> None:
        """Accept and serve connections until :meth:`close`."""
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, mask in sel.select(POLL_S):
                    if key.fileobj is self._listener:
                        self._accept(sel)
                    elif not key.data.closed:
                        self._service(sel, key.data, mask)
                self._expire(sel)
        finally:
            for client in list(self._clients):
                self._drop(sel, client, "server stopped")
            sel.close()

    def disconnect(self) -> None:
        """Pull the cable: close every connection (the server keeps listening)."""
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):  # already gone
                client.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop serving, close the connections and the listening socket."""
        super().close()
        self._listener.close()

    # -- the event loop ---------------------------------------------------------------

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            sock, address = self._listener.accept()
        except BlockingIOError:
            return
        peer = f"{address[0]}:{address[1]}"
        if len(self._clients) >= self.max_clients:
            self._log(f"refused {peer}: {self.max_clients} connections already open")
            sock.close()
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = _Client(sock, peer, time.monotonic())
        with self._clients_lock:
            self._clients.add(client)
        sel.register(sock, selectors.EVENT_READ, client)

    def _service(self, sel: selectors.BaseSelector, client: _Client, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                self._receive(client)
            while True:
                self._work(client)
                self._flush(client)
                if not client.inbox or len(client.outbox) >= OUTBOX_HIGH:
                    break
        except _PeerClosedError:
            self._drop(sel, client, "disconnected")
            return
        except (ConnectionDroppedError, OSError) as exc:
            self._drop(sel, client, f"link lost ({exc})")
            return
        events = selectors.EVENT_WRITE if client.outbox else 0
        if not client.inbox and len(client.outbox) < OUTBOX_HIGH:
            events |= selectors.EVENT_READ
        sel.modify(client.sock, events, client)

    def _receive(self, client: _Client) -> None:
        try:
            data = client.sock.recv(RECV_CHUNK)
        except BlockingIOError:
            return
        if not data:
            raise _PeerClosedError
        frames = client.splitter.feed(data)
        if frames:
            client.last_frame = time.monotonic()
            client.inbox.extend(frames)

    def _work(self, client: _Client) -> None:
        """Answer queued frames while the client's unsent replies stay below the mark."""
        while client.inbox and len(client.outbox) < OUTBOX_HIGH:
            client.outbox += self._answer(client, client.inbox.popleft())

    def _answer(self, client: _Client, frame: bytes) -> bytes:
        if self._owner is None and _is_request(frame):
            self._owner, self._owner_since = client, time.time()
            self._log(f"{client.peer} holds the board")
        if self._owner is client:
            return self.handler.handle(frame)
        try:
            request = protocol.decode_frame(frame)
        except protocol.VersionError:
            # A host of another protocol is told so, whoever holds the board: the handler
            # only refuses the frame, and the sender takes nothing.
            return self.handler.handle(frame)
        except protocol.ProtocolError:
            return b""  # unreadable: the client resends or gives up, as on any link
        if request.reply:
            return b""
        message = self._held_message()
        self._log(f"refused {client.peer}: {message}")
        return _reply(request.opcode, request.seq, Status.HELD, [message.encode()])

    def _held_message(self) -> str:
        owner = self._owner
        assert owner is not None
        idle = time.monotonic() - owner.last_frame
        release = (
            "" if self.idle_timeout is None else f"; released after {self.idle_timeout:g} s idle"
        )
        return (
            f"board busy, held by {owner.peer} since {_local_time(self._owner_since)} "
            f"(last request {idle:.0f} s ago{release})"
        )

    def _flush(self, client: _Client) -> None:
        while client.outbox:
            try:
                sent = client.sock.send(client.outbox)
            except BlockingIOError:
                return
            del client.outbox[:sent]

    def _expire(self, sel: selectors.BaseSelector) -> None:
        if self.idle_timeout is None:
            return
        now = time.monotonic()
        for client in list(self._clients):
            if now - client.last_frame > self.idle_timeout:
                self._drop(sel, client, f"idle for more than {self.idle_timeout:g} s")

    def _drop(self, sel: selectors.BaseSelector, client: _Client, reason: str) -> None:
        if client.closed:
            return
        client.closed = True
        with self._clients_lock:
            self._clients.discard(client)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(client.sock)
        client.sock.close()
        if self._owner is client:
            self._owner = None
            self._log(f"{client.peer} released the board: {reason}")


def _is_request(frame: bytes) -> bool:
    """Whether ``frame`` is a valid request (what lets a client take a free board)."""
    try:
        return not protocol.decode_frame(frame).reply
    except protocol.ProtocolError:
        return False


class PtyBoardServer(_StreamServer):
    """The board behind a pseudo-terminal: :attr:`url` is a device path pyserial opens.

    A pty is one serial line: every process that opens the device shares one byte
    stream (their writes interleave, a read takes whatever bytes arrived), and the board
    cannot tell writers apart, so it has no owner and no ``HELD`` status: serve over TCP
    for several clients.  A reader that stops reading cannot block the board: a reply
    that waits longer than ``write_stall`` for room in the pty is discarded (as bytes
    sent down a serial line nobody listens to are lost), and the next reply starts with
    a delimiter so the reader resynchronises.

    Pulling the cable (a ``disconnect`` fault) closes the pty pair, like unplugging a
    USB-serial adapter: the device disappears.

    Parameters
    ----------
    handler : FrameHandler
        The board.
    write_stall : float
        Time (s) a reply may wait for the reader before the rest of it is discarded.

    Attributes
    ----------
    discarded : int
        Reply bytes discarded because nobody read them.
    """

    def __init__(self, handler: FrameHandler, *, write_stall: float = PTY_WRITE_STALL_S) -> None:
        super().__init__(handler)
        self.write_stall = write_stall
        self.discarded = 0
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing, no CR/LF translation
        os.set_blocking(self._master, False)
        self.url = os.ttyname(self._slave)
        self._closed = False
        self._resync = False

    def serve_forever(self) -> None:
        """Serve until :meth:`close` or a pulled cable."""
        splitter = protocol.FrameSplitter()
        try:
            while not self._stop.is_set():
                if not select.select([self._master], [], [], POLL_S)[0]:
                    continue
                try:
                    data = os.read(self._master, RECV_CHUNK)
                except BlockingIOError:
                    continue
                for frame in splitter.feed(data):
                    if reply := self.handler.handle(frame):
                        self._write(reply)
        except (ConnectionDroppedError, OSError):
            self._release()

    def _write(self, data: bytes) -> None:
        if self._resync:
            data, self._resync = b"\x00" + data, False
        view = memoryview(data)
        progress = time.monotonic()
        while view and not self._stop.is_set():
            try:
                view = view[os.write(self._master, view) :]
                progress = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - progress > self.write_stall:
                    self.discarded += len(view)
                    self._resync = True
                    return
                select.select([], [self._master], [], POLL_S)

    def close(self) -> None:
        """Stop serving and close the pty pair."""
        super().close()
        self._release()

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._master)
            os.close(self._slave)
