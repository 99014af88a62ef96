"""labcim.connect URL forms: sim presets with typed options, saved chips, pyserial URLs."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.board import LinkError
from labcim.connection import connect
from labcim.twin.sim_url import save_chip
from mock_hw.board_server import BoardHandler, PtyBoardServer
from mock_hw.chip import Chip


def test_sim_preset_with_options():
    board = connect("sim://rram-small?cores=2&rows=16&cols=8&seed=7", name="chipA")
    assert [c.name for c in board.cores] == ["chipA_core0", "chipA_core1"]
    assert (board.rows.get(), board.cols.get(), board.devices_per_polarity.get()) == (16, 8, 1)
    assert board.client.info["chip"]["seed"] == 7  # what IDENTIFY says
    assert board.simulated.get() is True
    board.close()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sim://pcm-small?core=2", r"unknown option 'core'; allowed: cols, cores"),
        ("sim://pcm-small?cores=two", "cores='two' is not of type int"),
        ("sim://pcm-small?cores=1&cores=2", "given twice"),
        ("sim://pcm-small?cores", "malformed query"),
        ("sim://pcm-tiny", "neither a chip preset"),
        ("sim://./missing.npz?seed=1", "takes no query options"),
    ],
)
def test_bad_sim_urls_name_the_problem(url, match):
    with pytest.raises(ValueError, match=match):
        connect(url)


def test_unknown_connect_option():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['retry'\]"):
        connect("sim://pcm-small?cores=1", retry=3)


def test_saved_chip_absolute_and_relative(tmp_path, monkeypatch):
    board = connect("sim://pcm-small?cores=1&seed=2")
    x = np.eye(64, dtype=int)[:4] * 100
    board.fpga.wait_until.set(10.0).wait(5)
    save_chip(board, tmp_path / "chip.npz")
    board.close()
    monkeypatch.chdir(tmp_path)
    for url in (f"sim://{tmp_path}/chip.npz", "sim://./chip.npz"):
        again = connect(url)
        assert again.fpga.clock.get() >= 10.0 and again.chip.get() == "pcm-small"
        again.core0.mvm.inputs.set(x).wait()
        again.core0.mvm.trigger().wait(5)
        again.close()


def test_a_saved_chip_is_saved_again_but_another_npz_is_refused(tmp_path):
    board = connect("sim://pcm-small?cores=1&seed=2")
    try:
        save_chip(board, tmp_path / "chip.npz")
        board.fpga.wait_until.set(20.0).wait(5)
        save_chip(board, tmp_path / "chip.npz")  # its own file: replaced
        np.savez(tmp_path / "mine.npz", weights=np.ones(3))  # a lab's own arrays
        with pytest.raises(FileExistsError, match=r"mine\.npz: exists and is not a chip state"):
            save_chip(board, tmp_path / "mine.npz")
    finally:
        board.close()
    again = connect(f"sim://{tmp_path}/chip.npz")
    assert again.fpga.clock.get() >= 20.0  # the second save is the one kept
    again.close()
    with np.load(tmp_path / "mine.npz") as kept:
        assert kept.files == ["weights"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip.npz", "mine.npz"]


def test_pyserial_url_through_a_pty():
    chip = Chip.from_preset("pcm-small", cores=1, seed=1)
    with PtyBoardServer(BoardHandler(chip)).start() as server:
        board = connect(server.url, timeout=1.0)
        board.core0.conductance.trigger().wait(10)
        assert board.core0.conductance.map.get().shape == (4, 64, 64)
        board.close()


def test_only_a_board_simulated_here_can_be_saved(tmp_path):
    chip = Chip.from_preset("pcm-small", cores=1, seed=1)
    with PtyBoardServer(BoardHandler(chip)).start() as server:
        board = connect(server.url, timeout=1.0)
        with pytest.raises(ValueError, match="not a board simulated in this process"):
            save_chip(board, tmp_path / "chip.npz")
        board.close()
    assert not (tmp_path / "chip.npz").exists()


def test_unreachable_board():
    with pytest.raises(LinkError):
        connect("socket://127.0.0.1:1", timeout=0.1, retries=0)


def test_one_phase_mvm_on_a_core_that_is_not_square():
    """1-phase reads of a 16 x 8 core through the board and the MVM device: the reverse-bias
    term of negative inputs is a (batch, rows) array, the output a (batch, cols) one."""
    board = connect("sim://pcm-small?cores=1&rows=16&cols=8&seed=3")
    core = board.core0
    x = np.random.default_rng(0).integers(-127, 128, (32, 16))
    codes = {}
    for mode in ("4-phase", "1-phase"):
        core.read_mode.set(mode).wait(5)
        core.mvm.inputs.set(x).wait(5)
        core.mvm.trigger().wait(10)
        codes[mode] = core.mvm.codes.get()
    board.close()
    assert codes["1-phase"].shape == codes["4-phase"].shape == (32, 8)
    # the same weights read both ways: a few % polarity error and noise apart
    assert np.corrcoef(codes["4-phase"].ravel(), codes["1-phase"].ravel())[0, 1] > 0.95
