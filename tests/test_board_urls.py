"""Issue 14: the board URLs the docs promise open a real link: ``serial://PORT``,
``serial://PORT?baudrate=N&...`` and the bare device path, against ``labcim sim serve
--pty`` started as its own process; bad URLs are refused before anything is opened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import termios

import numpy as np
import pytest

import labcim
from drivers.board import BoardClient, LinkError
from labcim.engine import run_engine
from labcim.transports import board_link
from plans import conductance_map, tdp_program


@pytest.fixture(scope="module")
def pty_board():
    """``labcim sim serve --pty`` in a subprocess; yields the device path it prints."""
    cmd = [sys.executable, "-m", "labcim.cli", "sim", "serve", "--pty"]
    proc = subprocess.Popen(
        [*cmd, "--preset", "pcm-small", "--cores", "2", "--seed", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/"), path
        yield path
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def _urls(path: str) -> dict[str, str]:
    return {
        "serial": f"serial://{path}",
        "serial-baudrate": f"serial://{path}?baudrate=115200",
        "bare": path,
    }


@pytest.mark.parametrize("form", ["serial", "serial-baudrate", "bare"])
def test_each_url_form_programs_and_reads_the_board(pty_board, form, tmp_path):
    url = _urls(pty_board)[form]
    RE = run_engine(tmp_path / "r.h5", progress=False)
    weights = np.random.default_rng(0).uniform(-1, 1, (16, 16))
    board = labcim.connect(url, timeout=10.0)
    try:
        assert board.client.info["chip"]["seed"] == 5
        if form == "serial-baudrate":
            fd = board.client.transport.port.fileno()
            assert termios.tcgetattr(fd)[4] == termios.B115200  # the line speed was set
        (programmed,) = RE(tdp_program(board, weights, cores=[0]))
        (read,) = RE(conductance_map(board, cores=[0], reads=2))
    finally:
        board.close()
    runs = labcim.open_runs(tmp_path / "r.h5")
    assert runs[programmed].summary["core0_converged_fraction"] > 0.9
    assert runs[read].summary["core0_mean"] > 0


@pytest.mark.slow
def test_cli_run_takes_a_serial_url_with_settings(pty_board, tmp_path):
    url = f"serial://{pty_board}?baudrate=115200&parity=N&timeout=10"
    out = tmp_path / "cli.h5"
    cli = [sys.executable, "-m", "labcim.cli", "-q", "run", "conductance_map"]
    done = subprocess.run(
        [*cli, "--chip", url, "--out", str(out), "-p", "cores=[1]"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (run,) = labcim.open_runs(out)
    assert run.exit_status == "success" and run.summary["core1_mean"] > 0


def test_the_serial_scheme_is_a_pyserial_handler_for_drivers_alone(pty_board):
    # A lab using drivers/ without labcim gets the same URLs.
    with BoardClient.open(f"serial://{pty_board}?baudrate=57600", timeout=10.0) as client:
        assert client.info["chip"]["cores"] == 2
        assert client.transport.port.baudrate == 57600
        assert client.transport.port.name == pty_board


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("serial:///dev/ttyUSB0?baud=9600", "unknown setting 'baud'; allowed: baudrate"),
        ("serial:///dev/ttyUSB0?baudrate=fast", "baudrate='fast' must be a positive integer"),
        ("serial:///dev/ttyUSB0?parity=X", "parity='X' must be one of N, E, O, M, S"),
        ("serial:///dev/ttyUSB0?stopbits=3", "stopbits='3' must be one of 1, 1.5, 2"),
        ("serial:///dev/ttyUSB0?rtscts=maybe", "rtscts='maybe' must be one of 1, true"),
        ("serial://?baudrate=9600", "no port"),
        ("serail:///dev/ttyUSB0", "unknown URL scheme 'serail'"),
        ("socket://127.0.0.1:5000?timeout=-1", "timeout='-1' must be a number of seconds > 0"),
        ("socket://127.0.0.1:5000?retries=2&retries=3", "'retries' given twice"),
    ],
)
def test_bad_urls_are_refused_before_opening(url, message):
    with pytest.raises(ValueError, match="^" + url.replace("?", r"\?") + ": .*" + message):
        labcim.connect(url)


def test_url_settings_and_client_options_are_split():
    link, client = board_link("serial:///dev/ttyS1?baudrate=3000000&timeout=0.5&retries=0")
    assert link == "serial:///dev/ttyS1?baudrate=3000000"
    assert client == {"timeout": 0.5, "retries": 0}
    assert board_link("/dev/pts/9") == ("/dev/pts/9", {})
    with pytest.raises(ValueError, match="both in the URL and as an option"):
        labcim.connect("socket://127.0.0.1:1?timeout=1", timeout=2)


def test_a_missing_port_is_a_link_error_naming_it(tmp_path):
    missing = tmp_path / "ttyNONE"
    with pytest.raises(LinkError, match=f"cannot open serial://{missing}"):
        labcim.connect(f"serial://{missing}?baudrate=9600")
    assert not os.path.exists(missing)


@pytest.mark.slow  # a CLI subprocess
@pytest.mark.parametrize("form", ["serial", "bare"])
def test_a_port_in_use_is_refused_to_a_second_program(pty_board, form, tmp_path):
    """Two processes writing to one board would interleave their commands: the second
    to open a local port is refused, naming why; the port is free again once closed."""
    url = _urls(pty_board)[form]
    first = BoardClient.open(url, timeout=10.0)
    try:
        second = [sys.executable, "-m", "labcim.cli", "-q", "run", "conductance_map"]
        done = subprocess.run(
            [*second, "--chip", url, "--out", str(tmp_path / "r.h5")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr  # as for any board that cannot be reached
        assert done.stderr.splitlines() == [
            f"labcim run: cannot connect to {url}: LinkError: cannot open {url}: another "
            "program has the port open (it holds its exclusive lock); close that program first"
        ]
        assert first.clock() >= 0  # the first is undisturbed
        assert not (tmp_path / "r.h5").exists()
    finally:
        first.close()
    with BoardClient.open(url, timeout=10.0) as again:
        assert again.info["chip"]["cores"] == 2


def test_a_port_opened_with_exclusive_0_is_shared(pty_board):
    url = f"serial://{pty_board}?exclusive=0"
    with BoardClient.open(url, timeout=10.0), BoardClient.open(url, timeout=10.0) as second:
        assert second.transport.port.exclusive is False
