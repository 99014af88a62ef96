"""Operation ids on the wire (protocol 2): what a board does with a command it sees again.

A mock_hw-level test: raw frames over a real TCP socket to the simulated board, and the
chip behind it looked at directly where the point is what it did.
"""

from __future__ import annotations

import math
import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import protocol
from drivers.board import BoardAbortedError, BoardClient, InProcessTransport
from drivers.protocol import Frame, Opcode, Status
from mock_hw.board_server import BoardHandler, TcpBoardServer
from mock_hw.chip import Chip

PRESET, SEED = "pcm-small", 11


class RawHost:
    """A host speaking frames over a plain socket: what a third-party client sends."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("socket://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.splitter = protocol.FrameSplitter()
        self.seq = 0
        hello = self.call(Opcode.HELLO, (protocol.PROTOCOL_VERSION, protocol.PROTOCOL_VERSION))
        assert hello.status == Status.OK

    def frame(self, opcode, values=(), arrays=(), obj=None) -> bytes:
        self.seq += 1
        payload = protocol.encode_payload(protocol.REQUESTS[opcode], values, arrays, obj)
        return protocol.encode_frame(Frame(opcode, self.seq, payload))

    def send(self, wire: bytes) -> Frame:
        self.sock.sendall(wire)
        while True:
            for body in self.splitter.feed(self.sock.recv(1 << 20)):
                return protocol.decode_frame(body)

    def call(self, opcode, values=(), arrays=(), obj=None) -> Frame:
        return self.send(self.frame(opcode, values, arrays, obj))

    def status(self) -> dict:
        reply = self.call(Opcode.STATUS)
        return protocol.decode_payload(protocol.REPLIES[Opcode.STATUS], reply.payload).obj

    def close(self) -> None:
        self.sock.close()


def pulses(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    device, row, col = np.unravel_index(rng.choice(4 * 64 * 64, n, replace=False), (4, 64, 64))
    return [
        row.astype("<u2"),
        col.astype("<u2"),
        device.astype("u1"),
        np.zeros(n, "u1"),
        np.full(n, 150.0),
        np.full(n, 1e-7),
    ]


@pytest.fixture
def board():
    chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
    with TcpBoardServer(BoardHandler(chip)) as server:
        server.start()
        host = RawHost(server.url)
        yield host, chip
        host.close()


def applied(reply: Frame) -> tuple[int, int]:
    assert reply.status == Status.OK, reply.payload
    return protocol.decode_payload(protocol.REPLIES[Opcode.APPLY_PULSES], reply.payload).values


def test_a_replayed_pulse_batch_is_not_applied_twice_over_a_socket(board):
    host, chip = board
    batch = pulses(50, np.random.default_rng(0))
    op = protocol.new_op_id()
    wire = host.frame(Opcode.APPLY_PULSES, (op, 0, 0, 50), batch)
    assert applied(host.send(wire)) == (50, 50)
    # The very frame again (a retry whose first reply was lost): answered, not applied.
    assert applied(host.send(wire)) == (50, 50)
    # The same operation in a new frame (bluesky replaying the message after a pause).
    assert applied(host.call(Opcode.APPLY_PULSES, (op, 0, 0, 50), batch)) == (50, 50)
    # ... and cut differently (a client that lowered its frame limit meanwhile).
    for start, stop in ((0, 20), (20, 50)):
        part = [a[start:stop] for a in batch]
        assert applied(host.call(Opcode.APPLY_PULSES, (op, 0, start, 50), part)) == (50, 50)
    status = host.status()
    assert status["pulses_applied"] == 50 and status["pulses_acknowledged"] == 100
    counts = chip.pulse_counts[0]
    assert counts.sum() == 50 and counts[batch[2], batch[0], batch[1]].tolist() == [1] * 50


def test_an_operation_id_reused_for_other_content_is_refused_and_applies_nothing(board):
    host, chip = board
    rng = np.random.default_rng(1)
    op = protocol.new_op_id()
    assert applied(host.call(Opcode.APPLY_PULSES, (op, 0, 0, 10), pulses(10, rng))) == (10, 10)
    other = pulses(10, rng)
    for values in ((op, 0, 0, 10), (op, 0, 0, 12)):  # same size; another size
        arrays = other if values[3] == 10 else pulses(12, rng)
        reply = host.call(Opcode.APPLY_PULSES, values, arrays)
        assert reply.status == Status.BAD_ARGUMENT
        assert b"an operation id names one command" in reply.payload
    read = host.call(Opcode.READ_CONDUCTANCE, (op, 0, 0, 4, 0, 4))  # another command
    assert read.status == Status.BAD_ARGUMENT
    assert host.status()["pulses_applied"] == 10 == chip.pulse_counts.sum()


def test_a_batch_arrives_in_parts_and_is_applied_once_complete(board):
    host, chip = board
    batch = pulses(30, np.random.default_rng(2))
    op = protocol.new_op_id()
    first = [a[:10] for a in batch]
    assert applied(host.call(Opcode.APPLY_PULSES, (op, 0, 0, 30), first)) == (10, 0)
    gap = host.call(Opcode.APPLY_PULSES, (op, 0, 20, 30), [a[20:] for a in batch])
    assert gap.status == Status.BAD_ARGUMENT and b"never received" in gap.payload
    assert chip.pulse_counts.sum() == 0  # nothing before the batch is complete
    rest = [a[10:] for a in batch]
    assert applied(host.call(Opcode.APPLY_PULSES, (op, 0, 10, 30), rest)) == (30, 30)
    assert chip.pulse_counts.sum() == 30


def test_a_replayed_read_and_mvm_return_their_first_data_without_touching_the_chip(board):
    host, chip = board
    op_read, op_mvm = protocol.new_op_id(), protocol.new_op_id()
    first = host.call(Opcode.READ_CONDUCTANCE, (op_read, 0, 0, 64, 0, 32))  # a frame of rows
    inputs = np.random.default_rng(3).integers(-100, 100, (8, 64)).astype(np.int8)
    mvm = host.call(Opcode.MVM, (op_mvm, 0, 0, 8, 0, 8, 0, 0, 64), [inputs])
    clock, rng_state = chip.time, chip.rng.bit_generator.state
    again = host.call(Opcode.READ_CONDUCTANCE, (op_read, 0, 0, 64, 16, 32))
    g = protocol.decode_payload(protocol.REPLIES[Opcode.READ_CONDUCTANCE], first.payload)
    g_part = protocol.decode_payload(protocol.REPLIES[Opcode.READ_CONDUCTANCE], again.payload)
    np.testing.assert_array_equal(g_part.arrays["g"], g.arrays["g"][:, 16:32])
    assert host.call(Opcode.MVM, (op_mvm, 0, 0, 8, 0, 8, 0, 0, 64), [inputs]).payload == mvm.payload
    assert chip.time == clock and chip.rng.bit_generator.state == rng_state
    changed = inputs.copy()
    changed[0, 0] += 1
    refused = host.call(Opcode.MVM, (op_mvm, 0, 0, 8, 0, 8, 0, 0, 64), [changed])
    assert refused.status == Status.BAD_ARGUMENT
    assert host.status()["replies_replayed"] == 1  # the MVM part; rows 16-32 were new


def test_clock_targets_are_bounded_and_a_target_reached_changes_nothing(board):
    host, chip = board

    def clock_to(target):
        return host.call(Opcode.ADVANCE_CLOCK_TO, (target,))

    reply = clock_to(3600.0)
    (now,) = protocol.decode_payload(
        protocol.REPLIES[Opcode.ADVANCE_CLOCK_TO], reply.payload
    ).values
    assert now == 3600.0 == chip.time
    assert clock_to(10.0).status == Status.OK and chip.time == 3600.0
    for bad in (1.7e308, 1.7e308, math.inf, math.nan, -1.0, protocol.MAX_CLOCK * 2):
        reply = clock_to(bad)
        assert reply.status == Status.BAD_ARGUMENT, bad
        assert b"must be finite and within [0, 1e+10] s" in reply.payload
    assert chip.time == 3600.0 and host.status()["clock"] == 3600.0


def client_of(chip: Chip, **kw) -> tuple[BoardClient, BoardHandler]:
    handler = BoardHandler(chip, **kw)
    return BoardClient(InProcessTransport(handler), max_frame=1024), handler


def test_the_client_refuses_bad_clock_targets_before_sending():
    client, _ = client_of(Chip.from_preset(PRESET, cores=1, seed=SEED))
    sent = client.stats.frames_sent
    for bad in (1.7e308, math.nan, -1.0):
        with pytest.raises(ValueError, match=r"clock target .* must be finite and within"):
            client.wait_until(bad)
    assert client.stats.frames_sent == sent


class Countdown:
    """A cancel flag that turns set after ``checks`` checks (a stop between frames)."""

    def __init__(self, checks: int) -> None:
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks < 0

    def wait(self, timeout: float) -> bool:
        return self.is_set()


def test_a_batch_stopped_between_frames_applies_nothing_and_completes_when_resent():
    chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
    client, handler = client_of(chip)
    batch = pulses(500, np.random.default_rng(4))  # 12 frames of 43 pulses
    op = protocol.new_op_id()
    executed = handler.executed
    with pytest.raises(BoardAbortedError, match=r"after 215 of 500") as exc:
        client.apply_pulses(0, *batch, op_id=op, cancel=Countdown(5))
    assert exc.value.done == 215
    assert handler.executed - executed == 5 + 1  # five frames, then ABORT
    assert chip.pulse_counts.sum() == 0
    assert client.apply_pulses(0, *batch, op_id=op) == 500  # the replay completes it
    assert chip.pulse_counts.sum() == 500 == client.status()["pulses_applied"]


def test_a_full_record_releases_data_but_never_forgets_an_applied_batch():
    chip = Chip.from_preset(PRESET, cores=1, seed=SEED)
    client, handler = client_of(chip, record_bytes=200_000)  # ~3 core maps
    batch = pulses(100, np.random.default_rng(5))
    op = protocol.new_op_id()
    client.apply_pulses(0, *batch, op_id=op)
    ids = [protocol.new_op_id() for _ in range(6)]
    maps = [client.read_conductance(0, op_id=i) for i in ids]
    assert handler.record.nbytes <= 200_000
    assert client.apply_pulses(0, *batch, op_id=op) == 100  # still recognized
    assert chip.pulse_counts.sum() == 100
    np.testing.assert_array_equal(client.read_conductance(0, op_id=ids[-1]), maps[-1])
    clock = chip.time
    client.read_conductance(0, op_id=ids[0])  # released: read again (a real board may)
    assert chip.time > clock


class WallClockBoard:
    """A board like real hardware: its clock runs in real time; ADVANCE_CLOCK_TO is
    UNSUPPORTED."""

    def __init__(self, handler: BoardHandler) -> None:
        self.handler, self.t0 = handler, time.monotonic()

    def handle(self, frame: bytes) -> bytes:
        request = protocol.decode_frame(frame)
        if request.opcode == Opcode.ADVANCE_CLOCK_TO:
            status, payload = Status.UNSUPPORTED, b"this board's clock runs on its own"
        elif request.opcode == Opcode.CLOCK:
            now = time.monotonic() - self.t0
            status, payload = (
                Status.OK,
                protocol.encode_payload(protocol.REPLIES[Opcode.CLOCK], (now,)),
            )
        else:
            return self.handler.handle(frame)
        return protocol.encode_frame(
            Frame(request.opcode, request.seq, payload, status, reply=True)
        )


def test_on_real_hardware_wait_until_sleeps_until_the_board_clock_and_can_be_stopped():
    board = WallClockBoard(BoardHandler(Chip.from_preset(PRESET, cores=1, seed=SEED)))
    client = BoardClient(InProcessTransport(board))
    t0 = time.monotonic()
    assert client.wait_until(0.3) >= 0.3
    assert 0.2 < time.monotonic() - t0 < 2.0
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(BoardAbortedError, match="wait for clock 60 s stopped"):
        client.wait_until(60.0, cancel=stop)
    assert time.monotonic() - t0 < 1.0


@settings(max_examples=25, deadline=None)
@given(st.data())
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_any_framing_and_repetition_of_a_batch_applies_it_once_as_a_whole(data):
    """Parts of random sizes, each sent any number of times, re-cut and replayed after
    completion: the chip ends exactly as if the batch had been applied once, directly."""
    n = data.draw(st.integers(1, 120))
    batch = pulses(n, np.random.default_rng(data.draw(st.integers(0, 2**16))))
    chip, direct = (Chip.from_preset(PRESET, cores=1, seed=SEED) for _ in range(2))
    handler = BoardHandler(chip)
    op = protocol.new_op_id()
    sent = 0
    while sent < n or data.draw(st.booleans()):  # and a few replays once complete
        start = data.draw(st.integers(0, sent)) if sent < n else data.draw(st.integers(0, n - 1))
        stop = data.draw(st.integers(start + 1, min(n, max(start + 1, sent) + 40)))
        payload = protocol.encode_payload(
            protocol.REQUESTS[Opcode.APPLY_PULSES],
            (op, 0, start, n),
            [a[start:stop] for a in batch],
        )
        wire = protocol.encode_frame(Frame(Opcode.APPLY_PULSES, sent + 1, payload))[:-1]
        reply = protocol.decode_frame(handler.handle(wire)[:-1])
        received, applied_now = applied(reply)
        sent = max(sent, stop)
        assert received == sent and applied_now == (n if sent == n else 0)
    direct.apply_pulses(0, *batch)
    np.testing.assert_array_equal(chip.pulse_counts, direct.pulse_counts)
    assert chip.time == direct.time and handler.pulses_applied == n
    for key, value in direct.state.items():  # every device variable, bit for bit
        np.testing.assert_array_equal(chip.state[key], value, err_msg=key)
