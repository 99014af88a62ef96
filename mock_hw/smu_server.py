"""A simulated Keithley 2450 SMU served over TCP on loopback, with fault injection.

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

import contextlib
import ipaddress
import socket
import socketserver
import threading
import time

from mock_hw.iv_device import IVDevice
from mock_hw.smu_scpi import SimulatedSMU

MAX_LINE = 65536
"""Longest accepted command line (bytes); longer lines are cut and fail to parse."""


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
            while line := self.rfile.readline(MAX_LINE):
                reply = owner._execute(line.decode("ascii", errors="replace"))
                if reply is not None:
                    self.wfile.write(reply.encode("ascii") + b"\n")
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
    """A simulated 2450 SMU listening on ``host:port`` until :meth:`close`.

    Parameters
    ----------
    device : IVDevice
        The device under test wired to the SMU.
    host : str
        Loopback address to bind (default ``127.0.0.1``); others are refused.
    port : int
        TCP port; 0 picks a free one (see :attr:`port`).
    """

    def __init__(self, device: IVDevice, host: str = "127.0.0.1", port: int = 0) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the SMU simulator only binds to loopback, not {host!r}")
        self.instrument = SimulatedSMU(device)
        self.silent = False
        """When True, received lines are logged but never executed nor answered."""
        self.reply_delay = 0.0
        """Delay (s) before each reply is sent."""
        self._received: list[str] = []
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
        """Every non-empty line received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

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

    def _execute(self, line: str) -> str | None:
        line = line.strip()
        if not line:
            return None  # an empty program message is a no-op
        with self._lock:
            self._received.append(line)
        if self.silent:
            return None
        with self._busy:
            reply = self.instrument.handle(line)
        if reply is not None and self.reply_delay > 0:
            time.sleep(self.reply_delay)
        return reply
