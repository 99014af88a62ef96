"""Several clients of one simulated board: one owns it, the others are told who does.

From the outside: ``labcim sim serve`` in a subprocess and `TcpBoardServer`, reached by
the real client and by raw sockets that misbehave (idle, slowloris, never reading).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from drivers import protocol
from drivers.board import BoardClient, BoardHeldError
from drivers.protocol import Frame, Opcode, Status
from mock_hw.board_server import BoardHandler, PtyBoardServer, TcpBoardServer
from mock_hw.chip import Chip

LABCIM = [sys.executable, "-m", "labcim.cli"]
HELD = re.compile(
    r"board busy, held by 127\.0\.0\.1:(\d+) since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
)


def serve(*extra: str) -> tuple[subprocess.Popen, str]:
    """``labcim sim serve`` in a subprocess, and the URL it prints first."""
    proc = subprocess.Popen(
        [*LABCIM, "sim", "serve", "--preset", "pcm-small", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


@pytest.fixture(scope="module")
def server():
    """One board for the tests that leave it free when they end."""
    proc, url = serve("--cores", "1")
    yield proc, url
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()
    proc.stderr.close()


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("socket://").split(":")
    return host, int(port)


def request(opcode: Opcode, seq: int, payload: bytes = b"") -> bytes:
    return protocol.encode_frame(Frame(opcode, seq, payload))


HELLO = request(Opcode.HELLO, 1, bytes([protocol.PROTOCOL_VERSION] * 2))


def read_frame(sock: socket.socket, timeout: float = 2.0) -> Frame:
    """The next frame the board sends on a raw socket."""
    sock.settimeout(timeout)
    splitter = protocol.FrameSplitter()
    while True:
        data = sock.recv(1 << 16)
        assert data, "the board closed the connection"
        if frames := splitter.feed(data):
            return protocol.decode_frame(frames[0])


def local_port(client: BoardClient) -> int:
    return client.transport.port._socket.getsockname()[1]


def test_sim_serve_advertises_a_real_fpga_boards_frame_size(server):
    # In-process sim:// boards take 2 MiB frames; a served one stays a real board's size,
    # so clients over TCP (and pty) still cut large transfers into frames.
    _, url = server
    with BoardClient.open(url) as client:
        assert client.max_payload == protocol.BOARD_PAYLOAD == client.frame_limit
        before = client.stats.frames_sent
        assert client.read_conductance(0).shape == (4, 64, 64)  # pcm-small: 64 kB
        assert client.stats.frames_sent - before == 2  # 63 rows of 1 kB a frame


def test_a_second_client_is_told_who_holds_the_board_at_once(server):
    _, url = server
    with BoardClient.open(url) as first:
        t0 = time.monotonic()
        with pytest.raises(BoardHeldError) as refused:
            BoardClient.open(url, timeout=2.0)
        assert time.monotonic() - t0 < 0.5  # not retried, not a 2 s timeout
        assert refused.value.status == Status.HELD
        holder = HELD.search(str(refused.value))
        assert holder, str(refused.value)
        assert int(holder.group(1)) == local_port(first)
        assert first.clock() >= 0.0  # the owner is undisturbed
    with BoardClient.open(url) as second:  # a disconnect frees the board at once
        assert second.info["chip"]["cores"] == 1


@pytest.mark.slow  # subprocesses: several seconds
def test_labcim_run_prints_one_line_naming_the_holder(server, tmp_path):
    _, url = server
    with BoardClient.open(url) as first:
        out = tmp_path / "runs.h5"
        run = subprocess.run(
            [*LABCIM, "--quiet", "run", "conductance_map", "--chip", url, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 1
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert "Traceback" not in run.stderr
        holder = HELD.search(lines[0])
        assert holder and int(holder.group(1)) == local_port(first)


@pytest.mark.slow  # subprocesses: several seconds
def test_an_idle_owner_is_released_after_the_idle_timeout():
    proc, url = serve("--idle-timeout", "0.5")
    try:
        idle = BoardClient.open(url, timeout=0.5, retries=0)
        with pytest.raises(BoardHeldError):
            BoardClient.open(url)
        time.sleep(1.0)
        with BoardClient.open(url) as fresh:
            assert fresh.clock() >= 0.0
            # The idle session reconnects, and learns who holds the board now.
            with pytest.raises(BoardHeldError, match=f"held by 127.0.0.1:{local_port(fresh)}"):
                idle.clock()
        assert idle.clock() >= 0.0  # free again: the idle session goes on (a paused run)
        assert idle.stats.reconnects == 1  # refused on the new link, which stays open
        idle.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        log = proc.stderr.read()
    assert "released the board: idle for more than 0.5 s" in log


def test_a_slowloris_neither_blocks_nor_takes_the_board(server):
    _, url = server
    with socket.create_connection(address(url)) as loris:
        loris.sendall(HELLO[: len(HELLO) // 2])  # half a frame, then nothing
        time.sleep(0.2)
        t0 = time.monotonic()
        with BoardClient.open(url) as client:  # half a frame does not own the board
            assert client.clock() >= 0.0
        assert time.monotonic() - t0 < 1.0


def test_an_owner_stalled_in_mid_frame_keeps_the_board_and_blocks_nobody(server):
    _, url = server
    with socket.create_connection(address(url)) as owner:
        owner.sendall(HELLO)
        assert read_frame(owner).status == Status.OK
        owner.sendall(request(Opcode.CLOCK, 2)[:5])  # stalls in mid-frame
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(BoardHeldError, match="board busy"):
                BoardClient.open(url)
            assert time.monotonic() - t0 < 0.5
        owner.sendall(request(Opcode.CLOCK, 2)[5:])  # the owner finishes its frame
        assert read_frame(owner).status == Status.OK


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])


@pytest.mark.slow  # subprocesses: several seconds
def test_a_client_that_never_reads_megabyte_replies_blocks_nobody():
    proc, url = serve("--preset", "pcm-hermes", "--cores", "1")
    try:
        with BoardClient.open(url) as probe:
            max_payload = probe.max_payload
        # As many rows per reply as a frame holds (61 kB at the default 64 KiB).
        rows = min(256, (max_payload - protocol.PAYLOAD_MARGIN) // (2 * 2 * 256 * 4))
        layout = protocol.REQUESTS[Opcode.READ_CONDUCTANCE]  # op id 0: read the rows now
        read = protocol.encode_payload(layout, (0, 0, 0, rows, 0, rows))
        reply_size = rows * 2 * 2 * 256 * 4
        with socket.create_connection(address(url)) as hog:
            hog.sendall(HELLO)
            assert read_frame(hog).status == Status.OK
            rss_before = _rss_kb(proc.pid)
            hog.settimeout(0.2)
            sent = 0
            with pytest.raises(TimeoutError):  # the board stops reading it: TCP pushes back
                for first in range(2, 10**7, 1000):
                    hog.sendall(
                        b"".join(
                            request(Opcode.READ_CONDUCTANCE, first + k, read) for k in range(1000)
                        )
                    )
                    sent += 1000
            assert sent * reply_size > 200e6  # far more than the board may buffer
            for _ in range(5):
                t0 = time.monotonic()
                with pytest.raises(BoardHeldError):
                    BoardClient.open(url)
                assert time.monotonic() - t0 < 0.5
            assert _rss_kb(proc.pid) - rss_before < 40_000  # kB: no reply pile-up
        with BoardClient.open(url) as next_owner:
            assert next_owner.clock() >= 0.0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_tcp_server_counts_its_clients_and_reports_its_owner():
    chip = Chip.from_preset("pcm-small", seed=1, cores=1)
    log: list[str] = []
    with TcpBoardServer(BoardHandler(chip), max_clients=2, log=log.append).start() as board:
        assert board.owner is None
        first = BoardClient.open(board.url)
        assert board.owner == f"127.0.0.1:{local_port(first)}"
        with socket.create_connection(address(board.url)) as second:
            with socket.create_connection(address(board.url)) as third:
                third.settimeout(2.0)
                assert third.recv(1) == b""  # beyond max_clients: closed at once
            second.sendall(HELLO)
            reply = read_frame(second)
            assert (reply.status, reply.seq, reply.opcode) == (Status.HELD, 1, Opcode.HELLO)
            assert HELD.search(reply.payload.decode())
        first.close()
        deadline = time.monotonic() + 2.0
        while board.owner is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert board.owner is None
    assert any("holds the board" in line for line in log)
    assert any("released the board: disconnected" in line for line in log)
    assert any("2 connections already open" in line for line in log)


def test_idle_timeout_and_max_clients_are_checked():
    handler = BoardHandler(Chip.from_preset("pcm-small", seed=1, cores=1))
    with pytest.raises(ValueError, match="idle_timeout"):
        TcpBoardServer(handler, idle_timeout=0)
    with pytest.raises(ValueError, match="max_clients"):
        TcpBoardServer(handler, max_clients=0)
    run = subprocess.run(
        [*LABCIM, "sim", "serve", "--idle-timeout", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "labcim sim serve: error: --idle-timeout -1: must be >= 0 s (0: never)"
    )


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_a_pty_reader_that_stops_reading_does_not_block_the_board():
    chip = Chip.from_preset("pcm-small", seed=1, cores=1)
    board = PtyBoardServer(BoardHandler(chip), write_stall=0.3).start()
    fd = os.open(board.url, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, HELLO)
        layout = protocol.REQUESTS[Opcode.READ_CONDUCTANCE]  # op id 0: read the rows now
        read = protocol.encode_payload(layout, (0, 0, 0, 63, 0, 63))
        for seq in range(2, 5):  # 63 kB replies into a pty buffer of a few kB
            os.write(fd, request(Opcode.READ_CONDUCTANCE, seq, read))
        time.sleep(4 * 0.3 + 0.5)  # each reply waits at most write_stall for the reader
        assert board.discarded > 0
        # The reader comes back: after draining the line it gets whole replies again.
        os.set_blocking(fd, False)
        while True:
            try:
                os.read(fd, 1 << 16)
            except BlockingIOError:
                break
        os.set_blocking(fd, True)
        os.write(fd, request(Opcode.CLOCK, 99))
        splitter, frames = protocol.FrameSplitter(), []
        while not frames:
            frames = [f for f in splitter.feed(os.read(fd, 1 << 16)) if _valid(f)]
        assert protocol.decode_frame(frames[0]).seq == 99
    finally:
        os.close(fd)
        t0 = time.monotonic()
        board.close()
        assert time.monotonic() - t0 < 2.0


def _valid(frame: bytes) -> bool:
    try:
        protocol.decode_frame(frame)
    except protocol.ProtocolError:
        return False
    return True
