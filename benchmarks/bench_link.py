"""Board link: MVM batch throughput and small-command round trips, next to raw sockets.

The simulated board runs in its own process (as ``labcim sim serve`` would), so client
and board do not share an interpreter lock.  Baselines in the same run: a raw TCP copy of
the very same byte counts, a raw TCP ping-pong of a small frame, and ``Chip.mvm`` alone.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
from multiprocessing.connection import Connection

import numpy as np

from benchmarks.common import Record, best_time, main
from drivers import protocol
from drivers.board import BoardClient, Transport

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


def _raw_round_trip(n_in: int, n_out: int, repeat: int, number: int) -> float:
    """Best time (s) of sending ``n_in`` bytes and receiving ``n_out`` over raw TCP."""
    proc, port = _spawn(_serve_raw, n_in, n_out)
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data, buf = bytes(n_in), bytearray(n_out)

            def once() -> None:
                s.sendall(data)
                s.recv_into(memoryview(buf), n_out, socket.MSG_WAITALL)

            return best_time(once, repeat=repeat, number=number)
    finally:
        proc.terminate()


def _replayed_round_trip(transport: Transport, x: np.ndarray, repeat: int) -> float:
    """Best time (s) of an MVM request answered from the board's reply cache.

    Sending the same frame again makes the board replay its last reply without running
    the chip: what remains is the codec at both ends and the link.
    """
    request = protocol.Frame(
        protocol.Opcode.MVM,
        0xFFFF_FFF0,
        protocol.encode_payload(protocol.REQUESTS[protocol.Opcode.MVM], (0,), [x]),
    )
    splitter = protocol.FrameSplitter()

    def once() -> None:
        transport.write(protocol.encode_frame(request))
        while not (frames := splitter.feed(transport.read(10.0))):
            pass
        protocol.decode_frame(frames[0])

    once()  # executes the MVM; the timed calls are replays
    return best_time(once, repeat=repeat)


def run(quick: bool = False) -> list[Record]:
    """Measure the link; ``quick`` uses fewer repeats."""
    repeat, calls = (3, 50) if quick else (5, 300)
    batch = 1024
    x = np.random.default_rng(0).integers(-127, 128, (batch, 256), dtype=np.int8)
    records = []

    proc, url = _spawn(_serve_board, False)
    try:
        with BoardClient.open(url, timeout=10.0) as client:
            client.mvm(0, x)  # warm up the board's weight cache
            s = client.stats
            sent, received, payload = (
                s.bytes_sent,
                s.bytes_received,
                s.payload_sent + s.payload_received,
            )
            t_mvm = best_time(lambda: client.mvm(0, x), repeat=repeat)
            n_out = (s.bytes_sent - sent) // repeat
            n_in = (s.bytes_received - received) // repeat
            payload = (s.payload_sent + s.payload_received - payload) / repeat
            t_link = _replayed_round_trip(client.transport, x, repeat)
            sent = s.bytes_sent
            t_clock_tcp = best_time(client.clock, repeat=repeat, number=calls)
            small_out = (s.bytes_sent - sent) // (repeat * calls)
    finally:
        proc.terminate()

    t_raw = _raw_round_trip(n_out, n_in, repeat, 1)
    wire = n_out + n_in
    raw_mbps = wire / t_raw / 1e6
    name = f"mvm {batch}x256 int8 over socket://"
    raw = f"raw TCP copy {raw_mbps:.0f} MB/s"
    records += [
        Record(f"{name}: payload / wire bytes", payload / wire, "x", "", ">= 0.95"),
        Record(f"{name}: end to end", wire / t_mvm / 1e6, "MB/s", raw),
        Record(f"{name}: link only (board replays)", wire / t_link / 1e6, "MB/s", raw),
        Record("raw TCP copy of the same bytes", raw_mbps, "MB/s"),
    ]

    t_raw_small = _raw_round_trip(small_out, small_out + 8, repeat, calls)
    proc, url = _spawn(_serve_board, True)
    try:
        with BoardClient.open(url, timeout=10.0) as client:
            t_clock_pty = best_time(client.clock, repeat=repeat, number=calls)
    finally:
        proc.terminate()
    raw_rt = f"raw TCP ping-pong {1 / t_raw_small:.0f} /s"
    records += [
        Record("CLOCK round trips over socket://", 1 / t_clock_tcp, "1/s", raw_rt),
        Record("CLOCK round trips over a pty", 1 / t_clock_pty, "1/s", raw_rt),
        Record("raw TCP ping-pong of the same sizes", 1 / t_raw_small, "1/s"),
    ]
    return records


if __name__ == "__main__":
    main(run)
