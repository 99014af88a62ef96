"""What the simulated SCPI instrument does with hostile input: long lines, odd numbers.

From the outside: raw sockets and pyvisa-py sessions against `SMUServer` and against
``labcim sim smu`` in a subprocess.
"""

import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import pyvisa

from mock_hw.iv_device import DEVICES
from mock_hw.smu_server import MAX_LINE, RECEIVED_KEPT, SMUServer


@pytest.fixture
def server():
    with SMUServer(DEVICES["rram"](np.random.default_rng(0))) as srv:
        yield srv


@pytest.fixture
def raw(server):
    rm = pyvisa.ResourceManager("@py")
    session = rm.open_resource(
        server.resource, read_termination="\n", write_termination="\n", timeout=2000
    )
    yield session
    session.close()


def errors(session) -> list[int]:
    codes = []
    while (code := int(session.query(":SYST:ERR?").split(",")[0])) != 0:
        codes.append(code)
    return codes


def test_a_line_over_the_input_buffer_is_refused_whole(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        # Before: the first 64 KiB were read as one line and the tail executed as another.
        sock.sendall(b" " * (MAX_LINE + 10) + b":SOUR:VOLT 3\n")
        sock.sendall(b":SOUR:VOLT?\n:SYST:ERR?\n:SYST:ERR?\n")
        replies = _lines(sock, 3)
    assert float(replies[0]) == 0.0
    assert replies[1:] == ['-363,"Input buffer overrun"', '0,"No error"']


def test_a_line_as_long_as_the_buffer_is_executed(server):
    line = b":SOUR:VOLT 1.5"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(line + b" " * (MAX_LINE - len(line)) + b"\n:SOUR:VOLT?\n:SYST:ERR?\n")
        assert _lines(sock, 2) == ["1.500000E+00", '0,"No error"']


def _lines(sock: socket.socket, n: int) -> list[str]:
    sock.settimeout(5.0)
    data = b""
    while data.count(b"\n") < n:
        chunk = sock.recv(1 << 16)
        assert chunk, "the instrument closed the connection"
        data += chunk
    return data.decode().splitlines()[:n]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("1_0", -121),  # Python's float() took it as 10 V
        ("0x10", -121),
        ("1.2.3", -121),
        ("inf", -104),
        ("nan", -104),
        ("ON", -104),
        ("1e999", -222),
        ("1e40000", -123),
        ("5V", -131),
        ("5 mV", -131),
    ],
)
def test_malformed_numbers_are_refused_and_change_nothing(raw, value, code):
    raw.write(":SOUR:VOLT 0.25")
    raw.write(f":SOUR:VOLT {value}")
    raw.write(f":SOUR:VOLT:ILIM {value}")
    assert float(raw.query(":SOUR:VOLT?")) == 0.25
    assert float(raw.query(":SOUR:VOLT:ILIM?")) == 105e-6
    assert errors(raw) == [code, code]


@pytest.mark.parametrize(
    ("value", "volts"),
    [("+.5", 0.5), ("5.", 5.0), ("-1.5E-1", -0.15), ("2.5e 0", 2.5), ("1E+2", 100.0)],
)
def test_every_nrf_form_is_accepted(raw, value, volts):
    raw.write(f":SOUR:VOLT {value}")
    assert float(raw.query(":SOUR:VOLT?")) == volts
    assert errors(raw) == []


def test_min_max_and_def_stand_for_the_range_ends_and_the_reset_value(raw):
    raw.write(":SOUR:VOLT:ILIM MAX")
    assert float(raw.query(":SOUR:VOLT:ILIM?")) == 1.05
    raw.write(":SOUR:VOLT:ILIM minimum")
    assert float(raw.query(":SOUR:VOLT:ILIM?")) == 1e-9
    raw.write(":SOUR:VOLT:ILIM DEF")
    assert float(raw.query(":SOUR:VOLT:ILIM?")) == 105e-6
    raw.write(":SOUR:VOLT MIN")
    assert float(raw.query(":SOUR:VOLT?")) == -210.0
    assert errors(raw) == []


def test_the_log_is_bounded_and_the_hook_sees_every_line():
    seen = []
    with SMUServer(DEVICES["rram"](np.random.default_rng(0)), on_line=seen.append) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"".join(b"*CLS %d\n" % k for k in range(3 * RECEIVED_KEPT)))
            sock.sendall(b"*OPC?\n")
            assert _lines(sock, 1) == ["1"]
        assert len(seen) == 3 * RECEIVED_KEPT + 1
        log = server.received
    assert len(log) == RECEIVED_KEPT
    assert log[-1] == "*OPC?" and log[0] == f"*CLS {2 * RECEIVED_KEPT + 1}"


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])


def test_the_simulator_does_not_keep_what_it_received():
    proc = subprocess.Popen(
        [sys.executable, "-m", "labcim.cli", "sim", "smu", "--seed", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline().split("::")[2])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"*OPC?\n")
            _lines(sock, 1)
            before = _rss_kb(proc.pid)
            line = b"*CLS " + b"x" * (MAX_LINE - 10) + b"\n"  # 64 KiB, read and refused
            t0 = time.monotonic()
            for _ in range(1600):  # 100 MiB in all
                sock.sendall(line)
            sock.sendall(b"*CLS\n*OPC?\n")
            assert _lines(sock, 1) == ["1"]
            assert time.monotonic() - t0 < 30
            assert _rss_kb(proc.pid) - before < 20_000  # kB
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
