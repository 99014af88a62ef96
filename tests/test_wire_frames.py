"""Frame sizes per link, frames cut anywhere on real links, and data through the views.

The in-process board of ``sim://`` advertises the protocol's largest frame; a board
served over TCP or a pty keeps a real FPGA's 64 KiB; what the codec returns must own
its memory whatever the framing (issue 18: the codec decodes into views, not copies).
"""

import os
import socket

import numpy as np
import pytest

from drivers import protocol
from drivers.board import BoardClient, InProcessTransport
from drivers.protocol import Frame, Opcode, Status
from labcim import connect
from mock_hw.board_server import BoardHandler, PtyBoardServer, TcpBoardServer
from mock_hw.chip import Chip

URL = "sim://pcm-hermes?cores=1&seed=3"
READ = protocol.REQUESTS[Opcode.READ_CONDUCTANCE]


def frames_sent(client: BoardClient, call):
    """``call()``'s result and the request frames it took."""
    before = client.stats.frames_sent
    out = call()
    return out, client.stats.frames_sent - before


def test_a_sim_board_takes_the_largest_frame_so_a_1_mb_read_is_one_frame():
    board = connect(URL)
    try:
        assert board.fpga.max_payload.get() == protocol.MAX_PAYLOAD
        client = board.client
        assert client.frame_limit == protocol.MAX_PAYLOAD
        g, n = frames_sent(client, lambda: client.read_conductance(0))
        assert n == 1 and g.shape == (4, 256, 256) and g.dtype == np.float32
        x = np.random.default_rng(0).integers(-127, 128, (1000, 256))
        codes, n = frames_sent(client, lambda: client.mvm(0, x))
        # One frame: the inputs go up and its reply brings the codes.
        assert n == 1 and codes.shape == (1000, 256) and codes.dtype == np.int32
    finally:
        board.close()


def test_a_frame_limit_given_to_a_sim_board_still_cuts_its_transfers():
    board = connect(URL, max_frame=8192)
    try:
        _, n = frames_sent(board.client, lambda: board.client.read_conductance(0))
        assert board.client.frame_limit == 8192 and n == 256 // ((8192 - 64) // 4096)
    finally:
        board.close()


def test_one_frame_and_many_frame_reads_agree_and_own_their_memory():
    handler = BoardHandler(Chip.from_preset("pcm-hermes", cores=1, seed=4), max_payload=2**21)
    whole = BoardClient(InProcessTransport(handler))
    cut = BoardClient(InProcessTransport(handler), max_frame=4096)
    op = 0x5EED
    g, n_whole = frames_sent(whole, lambda: whole.read_conductance(0, op_id=op))
    again, n_cut = frames_sent(cut, lambda: cut.read_conductance(0, op_id=op))
    assert (n_whole, n_cut) == (1, 256)
    np.testing.assert_array_equal(g, again)  # the board's one read of that op id
    # The caller's array is its own: writable, and not the board's record or a frame.
    assert g.flags.writeable and g.flags.owndata
    kept = again.copy()
    g[...] = -1.0
    np.testing.assert_array_equal(whole.read_conductance(0, op_id=op), kept)
    x = np.random.default_rng(1).integers(-127, 128, (300, 256), dtype=np.int8)
    codes = whole.mvm(0, x, op_id=op + 1)
    assert codes.flags.writeable and codes.flags.owndata
    np.testing.assert_array_equal(cut.mvm(0, x, op_id=op + 1), codes)


class _RawLink:
    """The host end of a served board as raw bytes: a TCP socket or the pty's device."""

    def __init__(self, kind: str, handler: BoardHandler) -> None:
        self.server = (TcpBoardServer if kind == "tcp" else PtyBoardServer)(handler).start()
        if kind == "tcp":
            host, port = self.server.url.removeprefix("socket://").split(":")
            self.sock = socket.create_connection((host, int(port)), timeout=5)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.write, self.fd = self.sock.sendall, None
        else:
            self.fd = os.open(self.server.url, os.O_RDWR | os.O_NOCTTY)
            self.write, self.sock = lambda data: os.write(self.fd, data), None
        self.splitter = protocol.FrameSplitter()

    def read_frame(self) -> Frame:
        while True:
            data = self.sock.recv(1 << 16) if self.sock else os.read(self.fd, 1 << 16)
            assert data, "the board closed the link"
            if frames := self.splitter.feed(data):
                return protocol.decode_frame(frames[0])

    def close(self) -> None:
        if self.sock:
            self.sock.close()
        else:
            os.close(self.fd)
        self.server.close()


@pytest.mark.parametrize("kind", ["tcp", "pty"])
def test_a_request_cut_into_pieces_anywhere_gets_the_same_reply(kind):
    chip = Chip.from_preset("pcm-small", seed=2, cores=1)  # 64 x 64: 32 rows are 32 kB
    link = _RawLink(kind, BoardHandler(chip))
    try:
        hello = Frame(Opcode.HELLO, 1, bytes([protocol.PROTOCOL_VERSION] * 2))
        for byte in protocol.encode_frame(hello):  # one byte per write
            link.write(bytes([byte]))
        reply = link.read_frame()
        version, max_payload = protocol.decode_payload(
            protocol.REPLIES[Opcode.HELLO], reply.payload
        ).values
        assert (reply.seq, version) == (1, protocol.PROTOCOL_VERSION)
        assert max_payload == protocol.BOARD_PAYLOAD  # a served board keeps an FPGA's
        payload = protocol.encode_payload(READ, (0xABC, 0, 0, 64, 0, 32))
        link.write(protocol.encode_frame(Frame(Opcode.READ_CONDUCTANCE, 2, payload)))
        whole = link.read_frame()
        assert whole.status == Status.OK and whole.seq == 2
        rng = np.random.default_rng(0)
        for seq in range(3, 8):
            wire = protocol.encode_frame(Frame(Opcode.READ_CONDUCTANCE, seq, payload))
            cuts = sorted({1, len(wire) - 1, *rng.integers(1, len(wire), 3).tolist()})
            for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
                link.write(wire[a:b])  # the last piece is the delimiter alone
            reply = link.read_frame()
            # Answered from the board's one read of op id 0xABC: the very same bytes.
            assert (reply.seq, reply.status, reply.payload) == (seq, Status.OK, whole.payload)
    finally:
        link.close()
