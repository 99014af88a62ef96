"""The board client against the simulated board: in-process, over TCP and over a pty."""

import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import protocol
from drivers.board import (
    BoardClient,
    BoardLimitError,
    BoardRefusedError,
    BoardTimeoutError,
    InProcessTransport,
    LinkError,
)
from drivers.protocol import Opcode, Status
from mock_hw.board_server import (
    BoardHandler,
    Faults,
    FaultyHandler,
    PtyBoardServer,
    TcpBoardServer,
)
from mock_hw.chip import Chip

PRESET, SEED = "pcm-small", 3
TIMEOUT = 0.3
ROUNDS = 30  # of run_session: ~125 commands, enough for every kind of fault to occur
WIRE_TYPES = ["<u2", "<u2", "u1", "u1", "<f8", "<f8"]  # row, col, device, kind, amplitude, width


def new_chip() -> Chip:
    return Chip.from_preset(PRESET, seed=SEED)


def open_client(handler, link: str, **kw):
    """A client of ``handler`` over ``link`` ("inproc", "tcp" or "pty"), and its server."""
    kw.setdefault("timeout", TIMEOUT)
    if link == "inproc":
        return BoardClient(InProcessTransport(handler), **kw), None
    server = (TcpBoardServer if link == "tcp" else PtyBoardServer)(handler).start()
    return BoardClient.open(server.url, **kw), server


def pulse_batch(rng, n=150):
    """``n`` distinct devices of a pcm-small core, with SET or RESET pulses in limits."""
    device, row, col = np.unravel_index(rng.choice(4 * 64 * 64, n, replace=False), (4, 64, 64))
    kind = rng.integers(0, 2, n)
    return row, col, device, kind, np.where(kind == 0, 150.0, 400.0), np.full(n, 1e-7)


def run_session(client, rounds):
    """identify, configure, program, read, MVM: everything a run returns, by name."""
    out = {
        "identify": client.identify(),
        "set_config": client.set_config(1, adc_bits=10, read_voltage=0.25),
        "get_config": client.get_config(1),
    }
    rng = np.random.default_rng(7)
    for r in range(rounds):
        out[f"applied{r}"] = client.apply_pulses(1, *pulse_batch(rng))
        out[f"g{r}"] = client.read_conductance(1, 4 * r % 48, 4 * r % 48 + 16)
        out[f"codes{r}"] = client.mvm(1, rng.integers(-127, 128, (32, 64)))
        out[f"clock{r}"] = client.wait_until(r + 1.0)
    out["g"] = client.read_conductance(1)
    client.reset()
    out["reset_config"] = client.get_config(1)
    out["clock"] = client.clock()
    return out


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


@pytest.fixture(scope="module")
def clean():
    """Results and pulse counts of a session on a clean in-process link."""
    chip = new_chip()
    client, _ = open_client(BoardHandler(chip), "inproc")
    return run_session(client, rounds=ROUNDS), chip.pulse_counts.copy()


def test_in_process_client_returns_what_the_chip_returns():
    chip, direct = new_chip(), new_chip()
    client, _ = open_client(BoardHandler(chip), "inproc")
    args = pulse_batch(np.random.default_rng(1))
    client.apply_pulses(2, *args)
    direct.apply_pulses(2, *args)
    np.testing.assert_array_equal(client.read_conductance(2), direct.read_conductance(2))
    x = np.random.default_rng(2).integers(-127, 128, (16, 64))
    np.testing.assert_array_equal(client.mvm(2, x), direct.mvm(2, x))
    assert client.clock() == direct.time
    assert client.info["chip"] == direct.identify()


@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_end_to_end_over_an_os_link_matches_in_process(link, clean):
    chip = new_chip()
    client, server = open_client(BoardHandler(chip), link)
    with server, client:
        got = run_session(client, rounds=ROUNDS)
    assert_same(got, clean[0])
    np.testing.assert_array_equal(chip.pulse_counts, clean[1])
    assert client.stats.retries == 0 and client.stats.bad_frames == 0


@pytest.mark.parametrize("link", ["inproc", "tcp"])
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_faulty_link_gives_clean_results_and_applies_every_pulse_once(link, clean):
    chip = new_chip()
    # Seed picked so that every kind of fault occurs in this session.
    faults = Faults(corrupt=0.02, drop=0.02, duplicate=0.01, seed=5)
    handler = BoardHandler(chip)
    faulty = FaultyHandler(handler, faults)
    client, server = open_client(faulty, link, retries=6)
    try:
        got = run_session(client, rounds=ROUNDS)
    finally:
        client.close()
        if server:
            server.close()
    assert_same(got, clean[0])
    np.testing.assert_array_equal(chip.pulse_counts, clean[1])
    kinds = {
        f"{what}_{way}" for what in ("corrupt", "drop", "duplicate") for way in ("request", "reply")
    }
    assert set(faulty.injected) == kinds, faulty.injected
    assert client.stats.retries > 0 and handler.replayed > 0


class LoseFirstReplies:
    """Board whose first ``count`` APPLY_PULSES replies are lost or damaged on the way back."""

    def __init__(self, handler, how, count=1):
        self.handler, self.how, self.count = handler, how, count

    def handle(self, frame):
        reply = self.handler.handle(frame)
        if not self.count or protocol.decode_frame(frame).opcode != Opcode.APPLY_PULSES:
            return reply
        self.count -= 1
        return b"" if self.how == "drop" else reply[:9] + bytes([reply[9] ^ 4]) + reply[10:]


@pytest.mark.parametrize(
    ("how", "n", "lost"), [("drop", 20, 1), ("corrupt", 20, 3), ("drop", 2000, 2)]
)
def test_a_retried_pulse_batch_is_applied_once(how, n, lost):
    chip = new_chip()
    handler = BoardHandler(chip)
    client, _ = open_client(LoseFirstReplies(handler, how, lost), "inproc")
    args = pulse_batch(np.random.default_rng(0), n=n)
    assert client.apply_pulses(0, *args) == n
    if n == 20:  # one frame at any limit: sent again as it was, answered from the last reply
        assert client.stats.retries == lost and handler.replayed == lost
    else:  # a long frame failing twice: cut again, the chunks recognized by their op id
        assert client.stats.recuts == 1 and client.frame_limit < client.max_frame
        assert handler.pulses_acknowledged > 0
    assert chip.pulse_counts.sum() == n
    assert chip.pulse_counts[0, args[2], args[0], args[1]].tolist() == [1] * n


def test_large_transfers_go_in_frames_and_the_chip_sees_whole_commands():
    chip, direct = new_chip(), new_chip()
    client, _ = open_client(BoardHandler(chip, max_payload=8192), "inproc")
    assert client.max_payload == 8192 and client.frame_limit == 8192
    rng = np.random.default_rng(5)
    args = pulse_batch(rng, n=1000)
    x = rng.integers(-127, 128, (300, 64))
    assert client.apply_pulses(0, *args) == 1000
    g = client.read_conductance(0)
    codes = client.mvm(0, x)
    # The board assembles each command from its frames and executes it whole.
    direct.apply_pulses(0, *args)
    np.testing.assert_array_equal(g, direct.read_conductance(0))
    np.testing.assert_array_equal(codes, direct.mvm(0, x))
    np.testing.assert_array_equal(chip.pulse_counts, direct.pulse_counts)
    assert chip.time == direct.time
    # Frames as docs/protocol.md sizes them: (frame limit - 64) // bytes per item.
    pulses, rows = -(-1000 // (8128 // 22)), -(-64 // (8128 // (4 * 64 * 4)))
    # Codes: the reply to the last input frame holds the first ones, as many as fit at
    # int32; the rest go in frames sized for the int8 an 8-bit ADC's are.
    first = 8128 // (64 * 4)
    upload, download = -(-300 // (8128 // 64)), -(-(300 - first) // (8128 // 64))
    assert client.stats.requests == 2 + pulses + rows + upload + download
    assert client.stats.retries == 0


@pytest.mark.parametrize("max_frame", [1024, 4096, 65536])
def test_what_the_chip_does_does_not_depend_on_the_frame_size(max_frame, clean):
    chip = new_chip()
    client, _ = open_client(BoardHandler(chip), "inproc", max_frame=max_frame)
    assert client.frame_limit == max_frame
    assert_same(run_session(client, rounds=ROUNDS), clean[0])
    np.testing.assert_array_equal(chip.pulse_counts, clean[1])


@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_pulled_cable_is_a_clear_link_error_within_the_timeout(link):
    faulty = FaultyHandler(BoardHandler(new_chip()), Faults())
    client, server = open_client(faulty, link, timeout=2.0)
    with server, client:
        faulty.faults = Faults(disconnect=1.0)
        t0 = time.monotonic()
        with pytest.raises(LinkError, match="link lost"):
            client.clock()
        assert time.monotonic() - t0 < 2.0


def test_a_link_the_server_closed_is_reopened_and_the_request_completes():
    chip = new_chip()
    client, server = open_client(BoardHandler(chip), "tcp")
    with server:
        server.disconnect()
        assert client.clock() == chip.time  # on a new connection, after a new HELLO
        assert client.stats.reconnects == 1
        client.close()
        with BoardClient.open(server.url, timeout=TIMEOUT) as again:  # still listening
            assert again.clock() == chip.time


def test_a_link_that_cannot_be_reopened_fails_naming_both_causes():
    client, server = open_client(BoardHandler(new_chip()), "tcp")
    server.close()  # the server is gone: the connection closes and nothing listens
    with pytest.raises(LinkError, match=r"link lost .*; reopening the link failed: cannot open"):
        client.clock()
    client.close()


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_a_board_that_stops_answering_times_out_after_bounded_retries():
    faulty = FaultyHandler(BoardHandler(new_chip()), Faults())
    client, server = open_client(faulty, "tcp", retries=2)
    with server, client:
        faulty.faults = Faults(drop=1.0)
        t0 = time.monotonic()
        with pytest.raises(BoardTimeoutError, match=r"CLOCK \(seq \d+\) failed after 3 attempts"):
            client.clock()
        assert time.monotonic() - t0 < 3 * TIMEOUT + 0.5
        assert client.stats.timeouts == 3


def test_an_instrument_that_never_reads_fails_to_open_within_the_timeout():
    with socket.create_server(("127.0.0.1", 0)) as mute:
        url = f"socket://127.0.0.1:{mute.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(BoardTimeoutError, match="HELLO"):
            BoardClient.open(url, timeout=0.2, retries=1)
        assert time.monotonic() - t0 < 1.0


def test_unreachable_url_is_a_link_error():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(LinkError, match="cannot open"):
        BoardClient.open(f"socket://127.0.0.1:{port}")


@pytest.fixture
def board():
    chip = new_chip()
    client, _ = open_client(BoardHandler(chip), "inproc")
    return client, chip


@pytest.mark.parametrize(
    ("kind", "amplitude", "width", "limit"),
    [(1, 700.0, 1e-7, "reset_max"), (0, 350.0, 1e-7, "set_max"), (0, 100.0, 1e-3, "width_max")],
)
def test_out_of_limit_pulses_are_refused_by_client_and_board(board, kind, amplitude, width, limit):
    client, chip = board
    pulses = [np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), np.array([0, kind])]
    pulses += [np.array([100.0, amplitude]), np.array([1e-7, width])]
    sent = client.stats.frames_sent
    with pytest.raises(BoardLimitError, match=f"refused before sending.*{limit}") as exc:
        client.apply_pulses(0, *pulses)
    assert exc.value.status == Status.OUT_OF_LIMITS
    assert client.stats.frames_sent == sent
    # The same batch sent raw, past the client's check: the board refuses it too.
    arrays = [a.astype(dt) for a, dt in zip(pulses, WIRE_TYPES, strict=True)]
    for op_id in (protocol.NO_OP_ID, 12345):  # (op id, core, offset, total)
        payload = protocol.encode_payload(
            protocol.REQUESTS[Opcode.APPLY_PULSES], (op_id, 0, 0, 2), arrays
        )
        with pytest.raises(BoardLimitError, match=f"board refused APPLY_PULSES.*{limit}") as exc:
            client.request(Opcode.APPLY_PULSES, payload)
        assert exc.value.status == Status.OUT_OF_LIMITS
    assert chip.pulse_counts.sum() == 0
    payload = protocol.encode_payload(protocol.REQUESTS[Opcode.APPLY_PULSES], (0, 0, 0, 2), arrays)
    with pytest.raises(BoardLimitError, match=f"board refused APPLY_PULSES.*{limit}") as exc:
        client.request(Opcode.APPLY_PULSES, payload)
    assert exc.value.status == Status.OUT_OF_LIMITS
    assert chip.pulse_counts.sum() == 0


def test_read_voltage_above_its_limit_is_refused_before_sending(board):
    client, chip = board
    with pytest.raises(BoardLimitError, match="read_voltage_max"):
        client.set_config(0, read_voltage=1.0)
    assert chip.config(0).read_voltage != 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.get_config(9), "core"),
        (lambda c: c.set_config(0, adc_bits=40), "adc_bits"),
        (lambda c: c.read_conductance(0, 10, 5), "row range"),
        (lambda c: c.mvm(0, np.full((2, 3), 1000)), "input codes"),
        (
            lambda c: c.apply_pulses(0, [0, 0], [1, 1], [0, 0], [0, 0], [1.0] * 2, [1e-7] * 2),
            "once",
        ),
    ],
)
def test_bad_arguments_are_refused_by_the_board_with_its_message(board, call, match):
    client, chip = board
    with pytest.raises(BoardRefusedError, match=match) as exc:
        call(client)
    assert exc.value.status == Status.BAD_ARGUMENT
    assert chip.pulse_counts.sum() == 0


def test_reply_larger_than_a_frame_is_refused_before_executing():
    chip = new_chip()
    client, _ = open_client(BoardHandler(chip, max_payload=4096), "inproc")
    t = chip.time
    # No op id: the board reads the part now, so the part must fit a reply.
    values = (protocol.NO_OP_ID, 0, 0, 64, 0, 64)
    payload = protocol.encode_payload(protocol.REQUESTS[Opcode.READ_CONDUCTANCE], values)
    with pytest.raises(BoardRefusedError, match="max_payload"):
        client.request(Opcode.READ_CONDUCTANCE, payload)
    assert chip.time == t


def test_version_handshake_refuses_a_host_of_another_version(board):
    client, _ = board
    payload = protocol.encode_payload(protocol.REQUESTS[Opcode.HELLO], (1, 2))
    with pytest.raises(BoardRefusedError, match=r"board speaks protocol 3, host 1\.\.2") as exc:
        client.request(Opcode.HELLO, payload)
    assert exc.value.status == Status.UNSUPPORTED


def test_link_statistics_count_the_traffic(board):
    client, _ = board
    client.clock()
    s = client.stats
    assert s.requests == s.frames_sent == s.frames_received == 3  # HELLO, IDENTIFY, CLOCK
    assert s.bytes_sent > s.payload_sent and s.bytes_received > s.payload_received
    assert s.last_rtt > 0 and s.mean_rtt > 0


# -- fuzzing the board ------------------------------------------------------------------


def board_state(chip):
    return (
        int(chip.pulse_counts.sum()),
        chip.time,
        [chip.config(c) for c in range(chip.spec.n_cores)],
        chip.rng.bit_generator.state["state"],
    )


def valid_requests():
    """Encoded requests that would change the board's state if executed."""
    rng = np.random.default_rng(0)
    arrays = [a.astype(dt) for a, dt in zip(pulse_batch(rng, 8), WIRE_TYPES, strict=True)]
    inputs = rng.integers(-9, 9, (2, 64)).astype(np.int8)
    calls = [
        (Opcode.APPLY_PULSES, (0, 0, 0, 8), arrays, None),
        (Opcode.APPLY_PULSES, (77, 0, 0, 8), arrays, None),
        (Opcode.SET_CONFIG, (0,), (), {"adc_bits": 6}),
        (Opcode.ADVANCE_CLOCK_TO, (100.0,), (), None),
        (Opcode.MVM, (0, 0, 0, 2, 0, 2, 0, 0, 64), [inputs], None),
        (Opcode.MVM, (78, 0, 0, 2, 0, 2, 0, 0, 64), [inputs], None),
        (Opcode.READ_CONDUCTANCE, (0, 0, 0, 4, 0, 4), (), None),
        (Opcode.READ_CONDUCTANCE, (79, 0, 0, 64, 0, 4), (), None),
        (Opcode.RESET, (), (), None),
    ]
    return [
        protocol.encode_frame(
            protocol.Frame(op, 100 + i, protocol.encode_payload(protocol.REQUESTS[op], v, a, o))
        )[:-1]
        for i, (op, v, a, o) in enumerate(calls)
    ]


FUZZ_CHIP = new_chip()
FUZZ_BOARD = BoardHandler(FUZZ_CHIP)
FUZZ_STATE = board_state(FUZZ_CHIP)
PAYLOAD_FUZZ_CHIP = new_chip()  # may legitimately change: random payloads can be valid


def assert_board_answers_without_state_change(frame):
    reply = FUZZ_BOARD.handle(frame)
    assert board_state(FUZZ_CHIP) == FUZZ_STATE
    for body in protocol.FrameSplitter().feed(reply):
        decoded = protocol.decode_frame(body)
        assert decoded.reply and decoded.status in (Status.BAD_FRAME, Status.UNSUPPORTED)


@settings(max_examples=1500, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_frames_never_change_the_board(data):
    assert_board_answers_without_state_change(data.replace(b"\x00", b""))


@settings(max_examples=1500, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(valid_requests()), st.data())
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_mutated_requests_never_change_the_board(frame, data):
    wire = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(wire) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if op == "flip":
            wire[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del wire[max(i, 1) :]
        elif op == "insert":
            wire.insert(i, data.draw(st.integers(1, 255)))
        elif len(wire) > 1:
            del wire[i]
    mutated = bytes(wire).replace(b"\x00", b"\x01")  # a 0x00 would end the frame
    if mutated != frame:
        assert_board_answers_without_state_change(mutated)


@settings(max_examples=500, deadline=1000)
@given(st.sampled_from(list(Opcode)), st.binary(max_size=200))
def test_random_payloads_in_valid_frames_get_an_answer(opcode, payload):
    frame = protocol.encode_frame(protocol.Frame(opcode, 7, payload))[:-1]
    (body,) = protocol.FrameSplitter().feed(BoardHandler(PAYLOAD_FUZZ_CHIP).handle(frame))
    reply = protocol.decode_frame(body)
    assert reply.reply and reply.seq == 7 and reply.opcode == opcode
    assert reply.status != Status.INTERNAL_ERROR, reply.payload


# -- command line -----------------------------------------------------------------------

SERVE = (
    "import argparse, sys; from labcim.cli import sim_serve; p = argparse.ArgumentParser(); "
    "sim_serve.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


@pytest.mark.parametrize("extra", [[], ["--pty"]])
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_sim_serve_prints_its_url_first_and_exits_0_on_ctrl_c(extra):
    cmd = [sys.executable, "-c", SERVE, "serve", "--preset", PRESET, "--seed", "4", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        with BoardClient.open(url, timeout=5.0) as client:
            assert client.info["chip"]["seed"] == 4
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    assert url.startswith("socket://127.0.0.1:" if not extra else "/dev/")


@pytest.mark.parametrize("command", [["sim", "serve", "--preset", PRESET], ["sim", "smu"]])
def test_a_server_started_as_a_scripts_background_job_stops_on_sigint(command):
    """A shell script's ``labcim sim serve &`` starts with SIGINT ignored (POSIX); the
    server still stops on ``kill -INT``, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labcim.cli", *command],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert proc.stdout.readline().strip()  # its URL or VISA resource: serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
