"""MVM windows and int8 codes on the wire (protocol 3), from the board client's side.

A windowed MVM drives only rows [row_start, row_start + k) and reads only columns
[col_start, col_stop): the board must give exactly the full MVM of the zero-padded
inputs, columns sliced.  Twin chips (same preset, same seed, same history) are compared
through the wire: one asked for the window, the other for the full core; in-process
(``sim://``) and ``labcim sim serve`` over a real TCP socket.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from cobs import cobs
from plans_support import on_board

from drivers import protocol
from drivers.board import BoardClient, BoardRefusedError, InProcessTransport
from drivers.protocol import Opcode, Status
from labcim import connect
from labcim.devices.core import WindowedInputs
from mock_hw.board_server import BoardHandler, TcpBoardServer
from mock_hw.chip import Chip
from plans.inference import network_inference

SEED = 5
LABCIM = [sys.executable, "-m", "labcim.cli"]


def program_some_weights(client: BoardClient, core: int = 0) -> None:
    """The same SET pulses on both twins, so that rows and columns differ (a window in the
    wrong place gives other codes)."""
    rng = np.random.default_rng(1)
    chip = client.info["chip"]
    rows, cols = chip["rows"], chip["cols"]
    n = rows * cols // 2
    cell = rng.choice(rows * cols, n, replace=False)
    device = rng.integers(0, 2 * chip["devices_per_polarity"], n)
    amplitude = rng.uniform(80, chip["limits"]["set_max"], n)
    width = np.full(n, 1e-6)
    client.apply_pulses(core, cell // cols, cell % cols, device, np.zeros(n, int), amplitude, width)


def twins(link: str, preset: str = "pcm-small"):
    """Two boards of twin chips over ``link``: their clients, and what to close."""
    if link == "sim":
        boards = [connect(f"sim://{preset}?cores=1&seed={SEED}") for _ in range(2)]
        return [b.client for b in boards], boards
    procs = [
        subprocess.Popen(
            [*LABCIM, "sim", "serve", "--preset", preset, "--cores", "1", "--seed", str(SEED)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    clients = [BoardClient.open(p.stdout.readline().strip(), timeout=10) for p in procs]
    return clients, procs


def close(clients, handles) -> None:
    for c in clients:
        c.close()
    for h in handles:
        if isinstance(h, subprocess.Popen):
            h.send_signal(signal.SIGINT)
            assert h.wait(timeout=10) == 0
            h.stdout.close()
            h.stderr.close()
        else:
            h.close()


@pytest.fixture(params=["sim", "tcp"])
def pair(request):
    clients, handles = twins(request.param)
    for c in clients:
        program_some_weights(c)
    yield clients
    close(clients, handles)


def test_a_windowed_mvm_is_the_full_mvm_of_zero_padded_inputs_columns_sliced(pair):
    windowed, full = pair
    rows = 64
    rng = np.random.default_rng(2)
    # Two windows away from the corner and one at it; IR drop is on (the default).
    for row_start, k, col_start, col_stop in [(10, 30, 7, 50), (0, 64, 63, 64), (40, 1, 0, 64)]:
        x = rng.integers(-127, 128, (200, k))
        padded = np.zeros((200, rows), int)
        padded[:, row_start : row_start + k] = x
        got = windowed.mvm(0, x, row_start=row_start, col_start=col_start, col_stop=col_stop)
        want = full.mvm(0, padded)
        assert got.dtype == np.int32 and got.shape == (200, col_stop - col_start)
        np.testing.assert_array_equal(got, want[:, col_start:col_stop])
        assert np.count_nonzero(got) > 0.5 * got.size  # a product, not zeros
        assert windowed.clock() == full.clock()  # the chips stay twins, noise draws included
    # The window is where it says: the same inputs one row lower give other codes.
    x = rng.integers(-127, 128, (200, 30))
    here = windowed.mvm(0, x, row_start=10, col_start=7, col_stop=50)
    lower = full.mvm(0, x, row_start=11, col_start=7, col_stop=50)
    assert np.mean(here != lower) > 0.5


def test_a_windowed_mvm_sends_only_its_rows_and_columns_as_int8(pair):
    windowed, full = pair
    x = np.random.default_rng(3).integers(-127, 128, (100, 20))
    padded = np.zeros((100, 64), int)
    padded[:, :20] = x
    # Each request: its fixed fields and a 2-D array (10 bytes of header, then data).
    request = protocol.REQUESTS[Opcode.MVM].fixed.size + 10
    sent, received = windowed.stats.payload_sent, windowed.stats.payload_received
    windowed.mvm(0, x, col_stop=10)
    # One frame: 100 x 20 int8 inputs up, and in its reply 100 x 10 int8 codes.
    assert windowed.stats.payload_sent - sent == request + 100 * 20
    assert windowed.stats.payload_received - received == 10 + 100 * 10
    sent, received = full.stats.payload_sent, full.stats.payload_received
    full.mvm(0, padded)
    assert full.stats.payload_sent - sent == request + 100 * 64
    assert full.stats.payload_received - received == 10 + 100 * 64  # 1 byte a code


@pytest.mark.parametrize(("adc_bits", "itemsize"), [(8, 1), (12, 2), (16, 2), (None, 4)])
def test_codes_go_in_the_smallest_type_and_frames_are_sized_for_it(monkeypatch, adc_bits, itemsize):
    """4 KiB frames: the reply to the last input frame holds the first codes, as many
    as fit at int32 (the host cannot know the type yet); the frames after it are sized
    for the type the board sends.  No simulated ADC has more than 16
    bits: the int32 case is a board whose codes type says int32 for every ADC."""
    if adc_bits is None:
        monkeypatch.setattr(protocol, "mvm_code_dtype", lambda bits: np.dtype("<i4"))
    chip, twin = (Chip.from_preset("pcm-small", cores=1, seed=SEED) for _ in range(2))
    client = BoardClient(InProcessTransport(BoardHandler(chip)), max_frame=4096)
    direct = BoardClient(InProcessTransport(BoardHandler(twin)))
    for c in (client, direct):
        if adc_bits is not None:
            c.set_config(0, adc_bits=adc_bits, adc_gain=8.0)
        program_some_weights(c)
    x = np.random.default_rng(4).integers(-127, 128, (1000, 64), dtype=np.int8)
    before = client.stats.requests
    codes = client.mvm(0, x, row_start=0, col_start=14, col_stop=54)
    per_frame = 4096 - protocol.PAYLOAD_MARGIN
    upload = -(-1000 // (per_frame // 64))
    first = per_frame // (40 * 4)
    download = -(-(1000 - first) // (per_frame // (40 * itemsize)))
    assert client.stats.requests - before == upload + download
    np.testing.assert_array_equal(codes, direct.mvm(0, x)[:, 14:54])
    top = 2 ** ((adc_bits or 8) - 1) - 1
    assert np.abs(codes).max() <= top and np.abs(codes).max() > top // 4


@pytest.mark.slow
def test_a_chunked_windowed_mvm_over_64_kib_frames_is_replayed_by_its_op_id():
    """``labcim sim serve`` takes 64 KiB frames: 5000 vectors of a 200-row window go up in
    16 frames, the last one's reply brings the first 163 vectors' 100 columns of codes
    and 8 more frames the rest; asking again by op id gets the first execution's codes
    without running the chip again."""
    clients, handles = twins("tcp", "pcm-hermes")
    try:
        windowed, full = clients
        for c in clients:
            program_some_weights(c)
        assert windowed.max_payload == protocol.BOARD_PAYLOAD
        x = np.random.default_rng(5).integers(-127, 128, (5000, 200))
        op = protocol.new_op_id()
        before = windowed.stats.requests
        codes = windowed.mvm(0, x, row_start=50, col_start=100, col_stop=200, op_id=op)
        per_frame = protocol.BOARD_PAYLOAD - protocol.PAYLOAD_MARGIN
        first = per_frame // (100 * 4)
        up, down = -(-5000 // (per_frame // 200)), -(-(5000 - first) // (per_frame // 100))
        assert (first, up, down) == (163, 16, 8)
        assert windowed.stats.requests - before == up + down
        padded = np.zeros((5000, 256), int)
        padded[:, 50:250] = x
        np.testing.assert_array_equal(codes, full.mvm(0, padded)[:, 100:200])
        clock, replayed = windowed.clock(), windowed.status()["replies_replayed"]
        again = windowed.mvm(0, x, row_start=50, col_start=100, col_stop=200, op_id=op)
        np.testing.assert_array_equal(again, codes)
        assert windowed.clock() == clock  # the chip did not run the batch again
        assert windowed.status()["replies_replayed"] - replayed == 1 + down  # with the first
        # The id names that window: another window under it is refused, nothing runs.
        with pytest.raises(BoardRefusedError, match="an operation id names one command"):
            windowed.mvm(0, x, row_start=50, col_start=100, col_stop=199, op_id=op)
        assert windowed.clock() == clock
    finally:
        close(clients, handles)


BAD_WINDOWS = [
    # row_start, input rows, col_start, col_stop, message
    (64, 1, 0, 64, r"row_start = 64 is outside \[0, 64\)"),
    (60, 10, 0, 64, r"inputs of 10 rows from row_start = 60: .* 1 to 4 \(the core has 64\)"),
    (0, 0, 0, 64, r"inputs of 0 rows from row_start = 0"),
    (0, 64, 64, 64, r"col_start = 64 is outside \[0, 64\)"),
    (0, 64, 10, 10, r"col_stop = 10 is outside \[col_start \+ 1, 64\] = \[11, 64\]"),
    (0, 64, 0, 65, r"col_stop = 65 is outside \[col_start \+ 1, 64\] = \[1, 64\]"),
]


@pytest.fixture(scope="module")
def board():
    b = connect(f"sim://pcm-small?cores=1&seed={SEED}")
    yield b
    b.close()


@pytest.mark.parametrize(("row_start", "k", "col_start", "col_stop", "match"), BAD_WINDOWS)
def test_a_bad_window_is_refused_by_the_client_before_sending(
    board, row_start, k, col_start, col_stop, match
):
    client = board.client
    frames = client.stats.frames_sent
    with pytest.raises(ValueError, match=match):
        client.mvm(
            0, np.ones((3, k), int), row_start=row_start, col_start=col_start, col_stop=col_stop
        )
    assert client.stats.frames_sent == frames


def test_a_batch_without_vectors_is_refused_by_the_client_before_sending(board):
    client = board.client
    frames = client.stats.frames_sent
    with pytest.raises(ValueError, match=r"at least one vector, got shape \(0, 64\)"):
        client.mvm(0, np.ones((0, 64), int))
    assert client.stats.frames_sent == frames


@pytest.mark.parametrize("op_id", [protocol.NO_OP_ID, 0xABC])
@pytest.mark.parametrize(("row_start", "k", "col_start", "col_stop", "match"), BAD_WINDOWS)
def test_a_bad_window_is_refused_by_the_board_before_running(
    board, op_id, row_start, k, col_start, col_stop, match
):
    client = board.client
    clock = client.clock()
    values = (op_id, 0, 0, 3, 0, 3, row_start, col_start, col_stop)
    inputs = np.ones((3, k), np.int8)
    payload = protocol.encode_payload(protocol.REQUESTS[Opcode.MVM], values, [inputs])
    with pytest.raises(BoardRefusedError, match=match) as exc:
        client.request(Opcode.MVM, payload)
    assert exc.value.status == Status.BAD_ARGUMENT
    assert "\n" not in str(exc.value)
    assert client.clock() == clock  # no MVM ran


def test_a_bad_window_on_the_device_fails_before_anything_is_sent(board):
    inputs = board.core0.mvm.inputs
    frames = board.client.stats.frames_sent
    with pytest.raises(ValueError, match=r"board_core0_mvm_inputs: col_stop = 80 is outside"):
        inputs.put(WindowedInputs(np.ones((2, 8), int), row_start=4, col_stop=80))
    assert inputs.window == (0, 0, None)  # the last good value's
    inputs.put(WindowedInputs(np.ones((2, 8), int), row_start=4, col_start=2, col_stop=9))
    board.core0.mvm.trigger().wait(10)
    assert board.core0.mvm.codes.get().shape == (2, 7)
    assert board.client.stats.frames_sent > frames


@pytest.mark.slow
def test_network_inference_predicts_the_same_with_windows_as_with_full_mvms(tmp_path, monkeypatch):
    """The plan on twin boards: once as it runs (each tile's window), once with every MVM
    widened to the full core on the host (inputs zero-padded, all columns asked for, the
    tile's sliced out: what labcim sent before windows).  Same run, fewer bytes."""
    window_mvm = BoardClient.mvm
    mvm_bytes = []

    def counted(self, core, inputs, *, row_start=0, col_start=0, col_stop=None, **kw):
        """The MVM as the plan asks for it, or widened to the full core (``widen``)."""
        before = self.stats.payload_sent + self.stats.payload_received
        window = {"row_start": row_start, "col_start": col_start, "col_stop": col_stop}
        if widen:
            padded = protocol.pad_window(np.asarray(inputs), self.info["chip"]["rows"], row_start)
            codes = window_mvm(self, core, padded, **kw)[:, col_start:col_stop]
        else:
            codes = window_mvm(self, core, inputs, **window, **kw)
        mvm_bytes[-1] += self.stats.payload_sent + self.stats.payload_received - before
        return codes

    monkeypatch.setattr(BoardClient, "mvm", counted)
    runs = []
    for widen in (False, True):
        mvm_bytes.append(0)
        _, run = on_board(
            "sim://pcm-hermes?cores=2&seed=1",
            tmp_path / str(widen),
            lambda b: network_inference(
                b, "breast-cancer", times=[3600.0], compensation=["global"]
            ),
        )
        assert run.exit_status == "success", run.reason
        runs.append(run)
    windowed, full = runs
    predictions = [np.asarray(r.streams["primary"]["predictions"]) for r in runs]
    np.testing.assert_array_equal(*predictions)
    keys = [k for k in windowed.summary if "accuracy" in k or "error" in k]
    assert keys and all(windowed.summary[k] == full.summary[k] for k in keys)
    assert mvm_bytes[0] < 0.1 * mvm_bytes[1]  # small tiles on 256 x 256 cores


def test_a_version_2_host_reads_why_a_version_3_board_refuses_it():
    """A host of protocol 2 (before windows) gets an UNSUPPORTED reply in its own
    version over a real socket, so it can show the board's reason."""
    handler = BoardHandler(Chip.from_preset("pcm-small", cores=1, seed=SEED))
    with TcpBoardServer(handler).start() as server:
        host, port = server.url.removeprefix("socket://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(protocol.encode_message(Opcode.HELLO, 7, [bytes([2, 2])], version=2))
            splitter, frames = protocol.FrameSplitter(), []
            while not frames:
                frames = splitter.feed(sock.recv(1 << 16))
    raw = cobs.decode(frames[0])
    version, opcode, _, status, seq, length = protocol.HEADER.unpack_from(raw)
    assert (version, opcode, seq, status) == (2, Opcode.HELLO, 7, Status.UNSUPPORTED)
    message = raw[protocol.HEADER.size : protocol.HEADER.size + length].decode()
    assert message == "protocol version 2 (this end speaks 3)"


class Version2Board:
    """What a board of protocol 2 answers a version-3 frame: UNSUPPORTED, in version 2."""

    def handle(self, frame: bytes) -> bytes:
        _, opcode, _, _, seq, _ = protocol.HEADER.unpack_from(cobs.decode(frame))
        message = [b"protocol version 3 (this end speaks 2)"]
        return protocol.encode_message(
            opcode, seq, message, Status.UNSUPPORTED, reply=True, version=2
        )


def test_a_version_3_host_says_which_version_an_older_board_speaks():
    with pytest.raises(
        BoardRefusedError, match="HELLO: it answered in protocol version 2, this host speaks 3"
    ) as exc:
        BoardClient(InProcessTransport(Version2Board()), timeout=1)
    assert exc.value.status == Status.UNSUPPORTED
