"""Issue 13: big transfers through a link that corrupts and loses bytes.

A TCP proxy written here sits between the client and the simulated board: it flips a
byte in 5 % of the chunks it forwards and drops 2 % of them, both ways.  Reading full
256 x 256 core maps (1 MiB each) and a programming run must still give exactly the data
of a clean link: bounded frames get through where one 1 MiB frame never would, and the
board executes each command once whatever the framing.
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from bluesky import RunEngine

from drivers.board import BoardClient
from labcim import connect
from labcim.characterization import hermes_weights
from mock_hw.board_server import BoardHandler, TcpBoardServer
from mock_hw.chip import Chip
from plans import tdp_program

PRESET, SEED = "pcm-hermes", 21
FLIP, DROP = 0.05, 0.02


class CorruptingProxy:
    """Forwards TCP between a client and ``target``; per forwarded chunk (what one
    ``recv`` returns) flips one byte with probability ``flip``, drops the chunk with
    probability ``drop``.

    Attributes
    ----------
    flipped, dropped, chunks : int
        What it did so far, both directions together.
    """

    def __init__(self, target: str, seed: int, flip: float = FLIP, drop: float = DROP) -> None:
        host, port = target.removeprefix("socket://").split(":")
        self.target = (host, int(port))
        self.flip, self.drop = flip, drop
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.flipped = self.dropped = self.chunks = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            board = socket.create_connection(self.target)
            self.sockets += [client, board]
            for a, b in ((client, board), (board, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    return
                with self.lock:
                    self.chunks += 1
                    if self.rng.random() < self.drop:
                        self.dropped += 1
                        continue
                    if self.rng.random() < self.flip:
                        self.flipped += 1
                        buf = bytearray(data)
                        buf[self.rng.integers(len(buf))] ^= int(self.rng.integers(1, 256))
                        data = bytes(buf)
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.fixture
def noisy_board():
    """A fresh pcm-hermes core served over TCP, reached through the corrupting proxy."""
    servers = []

    def start(seed):
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        server = TcpBoardServer(BoardHandler(chip)).start()
        proxy = CorruptingProxy(server.url, seed)
        servers.append((server, proxy))
        return proxy

    yield start
    for server, proxy in servers:
        proxy.close()
        server.close()


LINK = {"timeout": 0.2, "retries": 8}  # a lost frame costs one timeout


@pytest.mark.slow
def test_twenty_core_map_reads_through_a_corrupting_link_equal_a_clean_link(noisy_board):
    chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
    with TcpBoardServer(BoardHandler(chip)) as server:
        server.start()
        proxy = noisy_board(seed=1)
        with BoardClient.open(server.url) as clean, BoardClient.open(proxy.url, **LINK) as noisy:
            for _ in range(20):
                np.testing.assert_array_equal(noisy.read_conductance(0), clean.read_conductance(0))
            assert noisy.clock() == clean.clock()
    assert proxy.flipped > 20 and proxy.dropped > 5  # the link really was that bad
    assert noisy.stats.bad_frames + noisy.stats.timeouts > 20


@pytest.mark.slow
def test_a_programming_run_through_a_corrupting_link_equals_a_clean_link(noisy_board, tmp_path):
    weights = hermes_weights(np.random.default_rng(3), 256, 256)
    results = []
    for url in (f"sim://{PRESET}?cores=1&seed={SEED}", noisy_board(seed=2).url):
        board = connect(url, **LINK) if url.startswith("socket") else connect(url)
        docs = []
        RE = RunEngine({})
        RE.subscribe(lambda name, doc, docs=docs: docs.append((name, doc)))
        RE(tdp_program(board, weights, cores=[0], max_iterations=6))
        results.append((docs, board.client.status(), board.client.stats))
        board.close()
    (want, want_status, _), (got, got_status, stats) = results
    assert got_status["pulses_applied"] == want_status["pulses_applied"]
    assert got_status["clock"] == want_status["clock"]
    events = [[d for n, d in docs if n == "event"] for docs in (want, got)]
    assert len(events[0]) == len(events[1])
    for a, b in zip(*events, strict=True):
        for key, value in a["data"].items():
            if "fpga" not in key:  # link counters differ, of course
                np.testing.assert_array_equal(np.asarray(b["data"][key]), np.asarray(value), key)
    assert [d["exit_status"] for n, d in got if n == "stop"] == ["success"]
    assert stats.retries + stats.recuts > 0
