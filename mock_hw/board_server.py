"""The simulated test board: the board protocol (``docs/protocol.md``) served for a Chip.

:class:`BoardHandler` is the board's firmware: it decodes a request frame, validates it,
executes it on the chip and encodes the reply, keeping the last reply so that a repeated
request is answered without being executed twice.  The transports only move frames:

- in-process: pass the handler to ``drivers.board.InProcessTransport``;
- TCP: :class:`TcpBoardServer`, on 127.0.0.1 unless told otherwise;
- a pty pair: :class:`PtyBoardServer`, whose device path pyserial opens like a serial port.

:class:`FaultyHandler` wraps a handler to corrupt, drop, duplicate and delay frames and
to pull the cable, at given rates, from a seeded generator.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol, Self

import numpy as np

from drivers import protocol
from drivers.protocol import Frame, Opcode, Status
from mock_hw.chip import Chip
from mock_hw.errors import InvalidRequestError, SafetyLimitError

BOARD_NAME = "labcim simulated test board"
FIRMWARE = "mock_hw board 1"

_OPCODES = frozenset(Opcode)

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


class BoardHandler:
    """The board side of the protocol for one simulated chip.

    Parameters
    ----------
    chip : Chip
        The chip behind the board.
    max_payload : int
        Largest payload the board accepts and sends (bytes), reported by HELLO.

    Attributes
    ----------
    executed : int
        Requests executed.
    replayed : int
        Repeated requests answered from the last reply without executing them.
    """

    def __init__(self, chip: Chip, *, max_payload: int = protocol.MAX_PAYLOAD) -> None:
        if not 1024 <= max_payload <= protocol.MAX_PAYLOAD:
            raise ValueError(f"max_payload = {max_payload} is outside [1024, MAX_PAYLOAD]")
        self.chip = chip
        self.max_payload = max_payload
        self.executed = 0
        self.replayed = 0
        self._last: tuple[bytes, bytes] | None = None  # (request frame, reply wire bytes)
        self._commands: dict[Opcode, Callable[[protocol.Payload], bytes]] = {
            Opcode.HELLO: self._hello,
            Opcode.IDENTIFY: self._identify,
            Opcode.GET_CONFIG: self._get_config,
            Opcode.SET_CONFIG: self._set_config,
            Opcode.APPLY_PULSES: self._apply_pulses,
            Opcode.READ_CONDUCTANCE: self._read_conductance,
            Opcode.MVM: self._mvm,
            Opcode.CLOCK: self._clock,
            Opcode.ADVANCE_CLOCK: self._advance_clock,
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
            request = protocol.decode_frame(frame)
        except (protocol.VersionError, protocol.UnknownOpcodeError) as exc:
            return _reply(exc.opcode, exc.seq, Status.UNSUPPORTED, str(exc).encode())
        except protocol.ProtocolError as exc:
            if exc.seq is None or exc.opcode not in _OPCODES:
                return b""
            return _reply(exc.opcode, exc.seq, Status.BAD_FRAME, str(exc).encode())
        if request.reply:
            return b""
        self.executed += 1
        status, payload = Status.OK, b""
        try:
            args = protocol.decode_payload(protocol.REQUESTS[request.opcode], request.payload)
            payload = self._commands[request.opcode](args)
        except _RefusedError as exc:
            status, payload = exc.status, str(exc).encode()
        except protocol.PayloadError as exc:
            status, payload = Status.BAD_ARGUMENT, str(exc).encode()
        except SafetyLimitError as exc:
            status, payload = Status.OUT_OF_LIMITS, str(exc).encode()
        except InvalidRequestError as exc:
            status, payload = Status.BAD_ARGUMENT, str(exc).encode()
        except Exception as exc:  # firmware must answer, whatever went wrong
            status, payload = Status.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}".encode()
        reply = _reply(request.opcode, request.seq, status, payload)
        self._last = (frame, reply)
        return reply

    # -- commands: decoded request payload -> reply payload -----------------------------

    def _hello(self, p: protocol.Payload) -> bytes:
        lowest, highest = p.values
        if not lowest <= protocol.PROTOCOL_VERSION <= highest:
            raise _RefusedError(
                Status.UNSUPPORTED,
                f"board speaks protocol {protocol.PROTOCOL_VERSION}, host {lowest}..{highest}",
            )
        return _encode(Opcode.HELLO, (protocol.PROTOCOL_VERSION, self.max_payload))

    def _identify(self, p: protocol.Payload) -> bytes:
        info = {
            "board": BOARD_NAME,
            "firmware": FIRMWARE,
            "protocol": protocol.PROTOCOL_VERSION,
            "max_payload": self.max_payload,
            "simulated": True,
            "chip": self.chip.identify(),
        }
        return _encode(Opcode.IDENTIFY, obj=info)

    def _get_config(self, p: protocol.Payload) -> bytes:
        return _encode(Opcode.GET_CONFIG, obj=self._config_reply(p.values[0]))

    def _set_config(self, p: protocol.Payload) -> bytes:
        self.chip.configure(p.values[0], **p.obj)
        return _encode(Opcode.SET_CONFIG, obj=self._config_reply(p.values[0]))

    def _config_reply(self, core: int) -> dict[str, Any]:
        """The core's configuration plus the read-only ADC step it implies (uA per code)."""
        return {**self.chip.config(core).to_dict(), "adc_lsb_uA": self.chip.adc_lsb(core)}

    def _apply_pulses(self, p: protocol.Payload) -> bytes:
        a = p.arrays
        self.chip.apply_pulses(
            p.values[0], a["row"], a["col"], a["device"], a["kind"], a["amplitude"], a["width"]
        )
        return _encode(Opcode.APPLY_PULSES, (len(a["row"]),))

    def _read_conductance(self, p: protocol.Payload) -> bytes:
        core, start, stop = p.values
        spec = self.chip.spec
        self._check_reply_size(2 * spec.devices_per_polarity * max(stop - start, 0) * spec.cols * 4)
        g = self.chip.read_conductance(core, start, stop)
        return _encode(Opcode.READ_CONDUCTANCE, arrays=[g])

    def _mvm(self, p: protocol.Payload) -> bytes:
        core, inputs = p.values[0], p.arrays["inputs"]
        # Codes of an ADC of up to 16 bits fit int16: half the bytes of int32 on the wire.
        dtype = np.int16 if self.chip.config(core).adc_bits <= 16 else np.int32
        self._check_reply_size(len(inputs) * self.chip.spec.cols * np.dtype(dtype).itemsize)
        codes = self.chip.mvm(core, inputs)
        return _encode(Opcode.MVM, arrays=[codes.astype(dtype)])

    def _clock(self, p: protocol.Payload) -> bytes:
        return _encode(Opcode.CLOCK, (self.chip.time,))

    def _advance_clock(self, p: protocol.Payload) -> bytes:
        return _encode(Opcode.ADVANCE_CLOCK, (self.chip.advance(p.values[0]),))

    def _abort(self, p: protocol.Payload) -> bytes:
        # Commands run to completion before the next frame is read: nothing to stop.
        return b""

    def _reset(self, p: protocol.Payload) -> bytes:
        self.chip.reset_config()
        return b""

    def _check_reply_size(self, nbytes: int) -> None:
        """Refuse, before executing, a request whose reply would not fit one frame."""
        if nbytes + protocol.PAYLOAD_MARGIN > self.max_payload:
            raise _RefusedError(
                Status.BAD_ARGUMENT,
                f"reply of {nbytes} bytes would exceed max_payload = {self.max_payload}; "
                "ask for fewer rows or vectors",
            )


def _encode(
    opcode: Opcode,
    values: tuple[Any, ...] = (),
    arrays: list[np.ndarray] | None = None,
    obj: dict[str, Any] | None = None,
) -> bytes:
    return protocol.encode_payload(protocol.REPLIES[opcode], values, arrays or (), obj)


def _reply(opcode: int, seq: int, status: Status, payload: bytes) -> bytes:
    return protocol.encode_frame(Frame(opcode, seq, payload, status, reply=True))


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

    def _pump(self, fd: int, recv: Callable[[], bytes], send: Callable[[bytes], None]) -> None:
        """Answer the frames arriving on ``fd`` until the peer hangs up or we stop."""
        splitter = protocol.FrameSplitter()
        while not self._stop.is_set():
            if not select.select([fd], [], [], POLL_S)[0]:
                continue
            data = recv()
            if not data:
                return
            for frame in splitter.feed(data):
                reply = self.handler.handle(frame)
                if reply:
                    send(reply)


class TcpBoardServer(_StreamServer):
    """The board over TCP, one connection at a time (a board has one host).

    Parameters
    ----------
    handler : FrameHandler
        The board (:class:`BoardHandler`, possibly wrapped in :class:`FaultyHandler`).
    host : str
        Address to listen on; loopback unless a lab chooses otherwise.
    port : int
        TCP port; 0 picks a free one (read it from :attr:`url`).
    """

    def __init__(self, handler: FrameHandler, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(handler)
        self._listener = socket.create_server((host, port))
        host, port = self._listener.getsockname()[:2]
        self.url = f"socket://{host}:{port}"
        self._conn: socket.socket | None = None

    def serve_forever(self) -> None:
        """Accept and serve connections until :meth:`close`."""
        while not self._stop.is_set():
            if not select.select([self._listener], [], [], POLL_S)[0]:
                continue
            conn, _ = self._listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
            try:
                self._pump(conn.fileno(), lambda c=conn: c.recv(1 << 20), conn.sendall)
            except (ConnectionDroppedError, OSError):
                pass  # the cable was pulled, by the host or the fault injector
            finally:
                self._conn = None
                conn.close()

    def disconnect(self) -> None:
        """Pull the cable: close the current connection (the server keeps listening)."""
        conn = self._conn
        if conn is not None:
            conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop serving, close the connection and the listening socket."""
        super().close()
        self._listener.close()


class PtyBoardServer(_StreamServer):
    """The board behind a pseudo-terminal: :attr:`url` is a device path pyserial opens.

    Pulling the cable (a ``disconnect`` fault) closes the pty pair, like unplugging a
    USB-serial adapter: the device disappears.
    """

    def __init__(self, handler: FrameHandler) -> None:
        super().__init__(handler)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing, no CR/LF translation
        self.url = os.ttyname(self._slave)
        self._closed = False

    def serve_forever(self) -> None:
        """Serve until :meth:`close` or a pulled cable."""
        try:
            self._pump(self._master, lambda: os.read(self._master, 1 << 20), self._write)
        except (ConnectionDroppedError, OSError):
            self._release()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._master, view) :]

    def close(self) -> None:
        """Stop serving and close the pty pair."""
        super().close()
        self._release()

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._master)
            os.close(self._slave)
