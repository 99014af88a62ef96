"""ArC TWO boards (labcim.arc2) on the simulated instrument at pyarc2's API (arc2://0?sim=1).

The board plans run through ``labcim run`` in a subprocess on an ArC TWO and on the
simulated test board with the same crossbar, and the two files have the same layout;
out-of-limit settings are refused before any call reaches the instrument (the simulated
instrument counts its calls); without hardware pyarc2 finds nothing.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pyarc2", reason="pyarc2 is not installed (pip install labcim[arc2])")

import labcim
from drivers.board import BoardLimitError, BoardRefusedError, LinkError
from labcim.hdf5 import open_runs
from labcim.network.layers import Dense
from labcim.network.loaders import save_npz
from labcim.network.model import Model

ARC2 = "arc2://0?sim=1&seed=0"
# The same geometry, one core; square, as mock_hw's 1-phase MVM needs rows == cols.
ARC2_16 = "arc2://0?sim=1&seed=0&rows=16"
SIM = "sim://rram-small?cores=1&rows=16&cols=16&seed=0"

PLANS = {
    "adc_characterization": [
        "-p", "strategy=ispp", "-p", "repeats=2", "-p", "test_vectors=64",
    ],
    "conductance_map": [],
    "tdp_program": ["-p", "weights={file: w.npy}", "-p", "strategy=ispp"],
    "mvm_characterization": [
        "-p", "strategy=ispp", "-p", "n_vectors=64", "-p", "read_modes=[1-phase]",
    ],
    "retention": ["-p", "times=[0.2,0.5]", "-p", "strategy=ispp"],
    "network_inference": [
        "-p", "model=m.npz", "-p", "X={file: X.npy}", "-p", "strategy=ispp", "-p", "times=[0.5]",
    ],
}  # fmt: skip


def labcim_run(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labcim.cli", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def layout(path) -> dict:
    """What a run's file holds, by name: streams and their keys, start keys, identity keys."""
    (run,) = open_runs(path)
    ident = {k for k in run.start["board_identity"] if k != "sim_chip"}
    return {
        "streams": {name: sorted(stream) for name, stream in run.streams.items()},
        "start": sorted(run.start),
        "identity": sorted(ident),
        "exit": run.exit_status,
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arc2")
    rng = np.random.default_rng(1)
    np.save(folder / "w.npy", rng.uniform(-1, 1, (16, 16)))
    save_npz(Model([Dense(rng.normal(size=(12, 6)), np.zeros(6))], (12,)), folder / "m.npz")
    np.save(folder / "X.npy", rng.normal(size=(64, 12)))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_plan_runs_on_arc2_with_the_layout_of_sim(inputs, plan):
    runs = {}
    for name, url in (("arc2", ARC2_16), ("sim", SIM)):
        out = inputs / f"{plan}_{name}.h5"
        done = labcim_run(inputs, plan, "--chip", url, "--out", str(out), *PLANS[plan])
        assert done.returncode == 0, done.stderr
        runs[name] = layout(out)
    assert runs["arc2"] == runs["sim"]
    assert runs["arc2"]["exit"] == "success"
    (run,) = open_runs(inputs / f"{plan}_arc2.h5")
    assert run.start["board_identity"]["model"] == "ArC TWO"
    maps = [s["board_core0_conductance_map"] for s in run.streams.values()
            if "board_core0_conductance_map" in s]  # fmt: skip
    if maps:  # RRAM conductances (uS), read through pyarc2's read_slice_masked
        g = np.asarray(maps[-1])
        assert g.shape[1:] == (2, 16, 16) and 0.5 < float(g.mean()) < 40
    if plan in ("tdp_program", "mvm_characterization"):
        summary = run.streams["summary"]
        key = (
            "core0_converged_fraction"
            if plan == "tdp_program"
            else ("program_core0_converged_fraction")
        )
        assert float(np.asarray(summary[key]).ravel()[0]) > 0.9  # write-verify by pulses


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_four_phase_is_refused_by_the_plan_before_running(tmp_path):
    out = tmp_path / "r.h5"
    done = labcim_run(tmp_path, "mvm_characterization", "--chip", ARC2, "--out", str(out),
                      "-p", "strategy=ispp", "-p", "read_modes=[4-phase]")  # fmt: skip
    assert done.returncode == 1
    assert "ArC TWO cannot do the '4-phase' read mode; it offers ['1-phase']" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() or not open_runs(out)


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_without_hardware_no_arc2_is_found(tmp_path):
    with pytest.raises(LinkError, match="no ArC TWO found"):
        labcim.connect("arc2://0?firmware=fw.bin")
    done = labcim_run(tmp_path, "conductance_map", "--chip", "arc2://0", "--out", "r.h5")
    assert done.returncode != 0
    assert "no ArC TWO found" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("arc2://0?sim=1&set_max=12", "set_max = 12 V is outside the board's range"),
        ("arc2://0?sim=1&width_min=1e-9", "width_min = 1e-07"),
        ("arc2://0?sim=1&cols=17", "cols = 17 is outside [1, 16]"),
        ("arc2://0?sim=1&volts=1", "unknown option 'volts'"),
    ],
)
def test_settings_beyond_the_board_are_refused_before_opening(url, named):
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("+", r"\+")):
        labcim.connect(url)


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_the_cli_names_the_board_limit_in_one_line(tmp_path):
    url = "arc2://0?sim=1&set_max=12"
    done = labcim_run(tmp_path, "conductance_map", "--chip", url, "--out", "r.h5")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "set_max = 12 V is outside the board's range (0, voltage_max = 10 V]" in done.stderr
    assert not (tmp_path / "r.h5").exists()


@pytest.fixture
def board():
    board = labcim.connect(ARC2)
    yield board
    board.close()


def batch(amplitude: float, kind: int = 0, width: float = 1e-6) -> dict:
    return {"row": np.array([0, 1]), "col": np.array([2, 3]), "device": np.array([0, 1]),
            "kind": np.full(2, kind), "amplitude": np.full(2, amplitude),
            "width": np.full(2, width)}  # fmt: skip


def test_out_of_limit_pulses_never_reach_the_instrument(board):
    calls = board.client.instrument.calls
    before = dict(calls)
    with pytest.raises(BoardLimitError, match="set_max"):
        board.core0.program.set(batch(3.5)).wait(10)  # device check
    with pytest.raises(BoardLimitError, match="set_max"):
        board.client.apply_pulses(0, *batch(3.5).values())  # the backend checks again
    with pytest.raises(BoardLimitError, match="width_min"):
        board.client.apply_pulses(0, *batch(1.0, width=50e-9).values())
    with pytest.raises(BoardLimitError, match="read_voltage_max"):
        board.client.set_config(0, read_voltage=0.8)
    with pytest.raises(BoardRefusedError, match="read modes are"):
        board.client.set_config(0, read_mode="4-phase")
    assert dict(calls) == before
    assert board.client.get_config(0)["read_voltage"] == 0.2  # nothing changed


def test_pulses_go_as_pulse_slice_masked_and_an_op_id_applies_once(board):
    calls = board.client.instrument.calls
    b = {**batch(2.0, kind=1), "op_id": 0x1234}
    board.core0.program.set(b).wait(10)
    board.core0.program.set(b).wait(10)  # bluesky replaying the set after a pause
    assert calls["pulse_slice_masked"] == 2  # rows 0 and 1, once
    assert board.core0.program.applied.get() == 2


def test_the_simulated_instrument_refuses_beyond_its_output_range(board):
    from labcim.twin.arc2_sim import ArC2Error

    with pytest.raises(ArC2Error, match=r"outside the output range \+-10 V"):
        board.client.instrument.pulse_slice_masked(0, 12.0, 100, np.array([16], np.uint64))
