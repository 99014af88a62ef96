"""Issue 13: big transfers through a link that corrupts and loses bytes.

A TCP proxy written here sits between the client and the simulated board: it flips a
byte in 5 % of the chunks it forwards and drops 2 % of them, both ways.  Reading full
256 x 256 core maps (1 MiB each) and a programming run must still give exactly the data
of a clean link: bounded frames get through where one 1 MiB frame never would, and the
board executes each command once whatever the framing.
"""

from __future__ import annotations

import numpy as np
import pytest
from bluesky import RunEngine
from link_support import CorruptingProxy

from drivers.board import BoardClient
from labcim import connect
from labcim.characterization import hermes_weights
from mock_hw.board_server import BoardHandler, TcpBoardServer
from mock_hw.chip import Chip
from plans import tdp_program

PRESET, SEED = "pcm-hermes", 21
FLIP, DROP = 0.05, 0.02


@pytest.fixture
def noisy_board():
    """A fresh pcm-hermes core served over TCP, reached through the corrupting proxy."""
    servers = []

    def start(seed):
        chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
        server = TcpBoardServer(BoardHandler(chip)).start()
        proxy = CorruptingProxy(server.url, seed, FLIP, DROP)
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
