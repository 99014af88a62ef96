"""Board link: MVM batch throughput and small-command round trips, next to raw sockets.

The simulated board runs in its own process (as ``labcim sim serve`` would), so client
and board do not share an interpreter lock.  Baselines in the same run, alternating
with the measured calls repeat by repeat: a raw TCP copy of the very same byte counts
in as many request/reply exchanges as the MVM takes (its upload and download frames),
and a raw TCP ping-pong of a small frame of the same sizes.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection

import numpy as np

from benchmarks.harness import Record, interleave, main, timed
from drivers.board import BoardClient

PRESET = "pcm-hermes"  # 256 x 256 cores, 2 devices per polarity


def _serve_board(pipe: Connection, pty: bool) -> None:
    from mock_hw.board_server import BoardHandler, PtyBoardServer, TcpBoardServer
    from mock_hw.chip import Chip

    handler = BoardHandler(Chip.from_preset(PRESET, cores=1))
    server = PtyBoardServer(handler) if pty else TcpBoardServer(handler)
    pipe.send(server.url)
    server.serve_forever()


def _serve_raw(pipe: Connection, n_in: int, n_out: int) -> None:
    """Answer every ``n_in`` bytes received with ``n_out`` bytes, like a board would."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        pipe.send(listener.getsockname()[1])
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reply, buf = bytes(n_out), bytearray(n_in)
        while conn.recv_into(memoryview(buf), n_in, socket.MSG_WAITALL) == n_in:
            conn.sendall(reply)


def _spawn(target, *args) -> tuple[mp.Process, object]:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    return proc, parent.recv()


class _RawPeer:
    """A raw TCP peer in its own process answering ``n_in`` bytes with ``n_out``."""

    def __init__(self, n_in: int, n_out: int) -> None:
        self.proc, port = _spawn(_serve_raw, n_in, n_out)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.data, self.buf, self.n_out = bytes(n_in), bytearray(n_out), n_out

    def round_trip(self) -> None:
        """Send ``n_in`` bytes and receive the ``n_out`` of the answer."""
        self.sock.sendall(self.data)
        self.sock.recv_into(memoryview(self.buf), self.n_out, socket.MSG_WAITALL)

    def close(self) -> None:
        self.sock.close()
        self.proc.terminate()


def _replayed_round_trip(client: BoardClient, x: np.ndarray) -> Callable[[], None]:
    """The MVM of ``x`` under one operation id, answered from the board's record.

    The board runs an operation id once and answers every later request of that id
    from its record of recent operations, without running the chip: what remains is
    the codec at both ends and the link, for the same frames as a real MVM.
    """
    op_id = 0xBE4C_0000_0000_0001

    def once() -> None:
        client.mvm(0, x, op_id=op_id)

    once()  # executes the MVM; the timed calls are replays
    return once


def run(quick: bool = False) -> list[Record]:
    """Measure the link; ``quick`` uses fewer repeats."""
    repeats, calls = (3, 50) if quick else (9, 300)
    batch = 1024
    x = np.random.default_rng(0).integers(-127, 128, (batch, 256), dtype=np.int8)
    with contextlib.ExitStack() as stack:
        clients = []
        for pty in (False, True):
            proc, url = _spawn(_serve_board, pty)
            stack.callback(proc.terminate)
            clients.append(stack.enter_context(BoardClient.open(url, timeout=10.0)))
        tcp, pty_client = clients
        tcp.mvm(0, x)  # warm up the board's weight cache
        s = tcp.stats
        before = (s.bytes_sent, s.bytes_received, s.payload_sent + s.payload_received, s.requests)
        tcp.mvm(0, x)
        n_out, n_in = s.bytes_sent - before[0], s.bytes_received - before[1]
        payload = s.payload_sent + s.payload_received - before[2]
        exchanges = s.requests - before[3]  # an MVM is several frames (upload, download)
        before = s.bytes_sent
        tcp.clock()
        small_out = s.bytes_sent - before
        raw = _RawPeer(n_out // exchanges, n_in // exchanges)
        stack.callback(raw.close)
        raw_small = _RawPeer(small_out, small_out + 8)
        stack.callback(raw_small.close)
        big = interleave(
            {
                "mvm": timed(lambda: tcp.mvm(0, x), 3),
                "replay": timed(_replayed_round_trip(tcp, x), 3),
                "raw": timed(lambda: [raw.round_trip() for _ in range(exchanges)], 3),
            },
            repeats,
        )
        small = interleave(
            {
                "tcp": timed(tcp.clock, calls),
                "pty": timed(pty_client.clock, calls),
                "raw": timed(raw_small.round_trip, calls),
            },
            repeats,
        )
    wire = n_out + n_in
    name = f"mvm {batch}x256 int8 over socket://"
    raw_mb = (
        f"raw TCP, same bytes in {exchanges} exchanges ({wire / big.median('raw') / 1e6:.0f} MB/s)"
    )
    raw_rt = f"raw TCP ping-pong ({1 / small.median('raw'):.0f} /s)"
    return [
        big.plain(f"{name}: payload / wire bytes", payload / wire, "x", ">= 0.95"),
        big.rate(f"{name}: end to end", "mvm", wire / 1e6, "MB/s", raw_mb),
        big.rate(f"{name}: link only (board replays)", "replay", wire / 1e6, "MB/s", raw_mb),
        big.rate(
            f"raw TCP copy of the same bytes in {exchanges} exchanges", "raw", wire / 1e6, "MB/s"
        ),
        small.rate("CLOCK round trips over socket://", "tcp", 1, "1/s", raw_rt),
        small.rate("CLOCK round trips over a pty", "pty", 1, "1/s", raw_rt),
        small.rate("raw TCP ping-pong of the same sizes", "raw", 1, "1/s"),
    ]


if __name__ == "__main__":
    main(run)
