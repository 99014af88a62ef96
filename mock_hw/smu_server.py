"""A simulated SMU (Keithley 2450, Keysight B2900 or B1500A) served over TCP on loopback.

Reachable from pyvisa-py as ``TCPIP::127.0.0.1::PORT::SOCKET`` (raw socket,
newline-terminated lines, like the instrument's port 5025).  Clients may come and go
one after another; they share one instrument and one device under test.

Fault injection for tests:

- :attr:`SMUServer.silent`: lines are received (and logged) but never executed or
  answered, like a hung instrument.
- :attr:`SMUServer.reply_delay`: every reply is sent this late (s), so a client with a
  shorter timeout later finds a stale reply in its way.
- :meth:`SMUServer.drop_connections`: the server closes every open connection, as when
  the instrument reboots or its cable is pulled at the far end.

The server only binds to loopback addresses: it has no authentication.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import socket
import socketserver
import threading
import time
from collections.abc import Callable

from mock_hw.iv_device import ProbedDevice
from mock_hw.smu_flex import SimulatedB1500
from mock_hw.smu_scpi import SimulatedB2900, SimulatedSMU

MODELS: dict[str, type[SimulatedSMU] | type[SimulatedB1500]] = {
    "2450": SimulatedSMU,
    "b2900": SimulatedB2900,
    "b1500a": SimulatedB1500,
}
"""Simulated instruments by model name (``labcim sim smu --model``): SCPI for the
Keithley 2450 and the Keysight B2900, FLEX for the Keysight B1500A."""

MAX_LINE = 65536
"""Longest accepted command line (bytes, without its terminator), the simulated input
buffer.  A longer line is discarded whole, up to its terminator, and queues the
instrument's input-buffer-overrun error (SCPI -363): none of it is executed."""

RECEIVED_KEPT = 1000
"""Lines kept in :attr:`SMUServer.received` (the most recent ones)."""

RECEIVED_CHARS = 1000
"""Characters of each line kept in :attr:`SMUServer.received` (longer lines end in ...)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: read lines, answer queries."""

    server: _TCPServer

    def handle(self) -> None:
        owner = self.server.owner
        owner._register(self.connection)
        try:
            while chunk := self.rfile.readline(MAX_LINE + 1):
                if len(chunk) > MAX_LINE and not chunk.endswith(b"\n"):
                    # Too long: skip to the terminator without keeping it, execute none.
                    while chunk and not chunk.endswith(b"\n"):
                        chunk = self.rfile.readline(MAX_LINE + 1)
                    owner._overrun()
                    continue
                reply = owner._execute(chunk.decode("ascii", errors="replace"))
                if reply is not None:
                    self.wfile.write((reply + owner.instrument.terminator).encode("ascii"))
        except OSError:
            pass  # the client went away, or drop_connections() cut it
        finally:
            owner._unregister(self.connection)


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # close() joins the client threads
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: SMUServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class SMUServer:
    """A simulated SMU listening on ``host:port`` until :meth:`close`.

    Parameters
    ----------
    device : ProbedDevice
        The device under test wired to the SMU.
    host : str
        Loopback address to bind (default ``127.0.0.1``); others are refused.
    port : int
        TCP port; 0 picks a free one (see :attr:`port`).
    model : str
        Instrument simulated: ``"2450"`` (default), ``"b2900"`` or ``"b1500a"``.
    on_line : callable, optional
        Called with every non-empty line received (stripped), before it is executed,
        from the connection's thread: for tests that need more than :attr:`received`.
    """

    def __init__(
        self,
        device: ProbedDevice,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = "2450",
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the SMU simulator only binds to loopback, not {host!r}")
        if model not in MODELS:
            raise ValueError(f"model {model!r} is not one of {sorted(MODELS)}")
        self.instrument = MODELS[model](device)
        self.silent = False
        """When True, received lines are logged but never executed nor answered."""
        self.reply_delay = 0.0
        """Delay (s) before each reply is sent."""
        self._received: collections.deque[str] = collections.deque(maxlen=RECEIVED_KEPT)
        self.on_line = on_line
        self._lock = threading.Lock()  # guards the log and the connection set
        self._busy = threading.Lock()  # one command at a time, like the instrument
        self._connections: set[socket.socket] = set()
        self._tcp = _TCPServer((host, port), self)
        self.host = host
        self.port: int = self._tcp.server_address[1]
        self._thread = threading.Thread(
            target=self._tcp.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def resource(self) -> str:
        """VISA resource string of this server."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    @property
    def received(self) -> list[str]:
        """The last :data:`RECEIVED_KEPT` non-empty lines received, oldest first (a copy),
        each cut to :data:`RECEIVED_CHARS` characters."""
        with self._lock:
            return list(self._received)

    def probe(self, device: ProbedDevice) -> None:
        """Land the probes on another device, as a probe station steps to the next die.

        Waits for the command being executed; the instrument's settings (output,
        level, limits) are kept, so a plan that sets them per device, as ``forming``
        and ``iv_sweep`` do, sees each device from a fresh start.
        """
        with self._busy:
            self.instrument.device = device

    def drop_connections(self) -> None:
        """Close every open client connection (the server keeps listening)."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already gone
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop listening, cut the clients and wait for their threads (idempotent)."""
        if self._thread.is_alive():
            self._tcp.shutdown()
            self._thread.join()
        self.drop_connections()
        self._tcp.server_close()

    def __enter__(self) -> SMUServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- called from the connection threads ----------------------------------------------

    def _register(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _overrun(self) -> None:
        with self._busy:
            self.instrument.input_overrun()

    def _execute(self, line: str) -> str | None:
        line = line.strip()
        if not line:
            return None  # an empty program message is a no-op
        with self._lock:
            cut = len(line) > RECEIVED_CHARS
            self._received.append(line[: RECEIVED_CHARS - 3] + "..." if cut else line)
        if self.on_line is not None:
            self.on_line(line)
        if self.silent:
            return None
        with self._busy:
            reply = self.instrument.handle(line)
        if reply is not None and self.reply_delay > 0:
            time.sleep(self.reply_delay)
        return reply
