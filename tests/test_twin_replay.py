"""A simulated chip reached only through the wire records and replays the same over every link.

From the outside: ``labcim sim serve --chip URL`` in a subprocess (TCP or pty), ``labcim
run`` and ``labcim replay`` in subprocesses.  What a replay needs about the chip travels
in the IDENTIFY reply, so a run recorded over ``socket://`` replays exactly on ``sim://``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import yaml

from labcim import open_runs
from labcim.characterization import hermes_weights
from labcim.compare import compare

LABCIM = [sys.executable, "-m", "labcim.cli"]

MODEL = {
    "format": "labcim-model",
    "version": 1,
    "preset": "pcm-hermes",
    "model_params": {"prog_noise_scale": 1.4, "drift_nu_scale": 1.2, "stuck_fraction": 0.01},
    "periphery": {"col_gain_std": 0.02},
}
"""A twin unlike the preset: a replay on the preset alone would differ."""


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "M.yaml"
    path.write_text(yaml.safe_dump(MODEL))
    return path


@contextmanager
def served(*args: str):
    """``labcim sim serve ARGS`` in a subprocess; yields the URL it prints first."""
    proc = subprocess.Popen(
        [*LABCIM, "sim", "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = proc.stdout.readline().strip()
        assert url, proc.stderr.read()
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
        proc.stderr.close()


def labcim(*args: str, cwd=None) -> subprocess.CompletedProcess:
    run = subprocess.run([*LABCIM, "-q", *args], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stderr
    return run


def record(chip: str, out, tmp_path) -> None:
    """Two runs on one board, as a campaign makes them: the second finds the chip the
    first left (clock > 0)."""
    weights = tmp_path / "w.npy"
    np.save(weights, hermes_weights(np.random.default_rng(1), 96, 80))
    labcim("run", "tdp_program", "--chip", chip, "--out", str(out),
           "-p", f"weights={{file: {weights}}}", "-p", "cores=[0]")  # fmt: skip
    labcim("run", "mvm_characterization", "--chip", chip, "--out", str(out),
           "-p", "cores=[1]", "-p", "n_vectors=200", "-p", "program=false")  # fmt: skip


def same_data(a, b) -> None:
    """Every data key of every stream of two runs equal, the board's link health aside."""
    diff = compare(a, b)
    assert not diff.missing
    assert all(f.identical for f in diff.figures)
    for d in diff.data:
        assert d.identical or d.link, d  # the wire and the host clock may differ


@pytest.mark.slow
def test_a_run_recorded_over_a_socket_replays_exactly_on_sim(tmp_path, model):
    chip = f"sim://pcm-hermes?cores=2&seed=3&model={model}"
    out = tmp_path / "socket.h5"
    with served("--chip", chip) as url:
        assert url.startswith("socket://127.0.0.1:")
        record(url, out, tmp_path)
    recorded = open_runs(out)
    identity = recorded[0].metadata["board_identity"]
    assert identity["sim_chip"]["spec"]["model_params"] == MODEL["model_params"]
    assert identity["sim_chip"]["spec"]["periphery"] == MODEL["periphery"]
    assert identity["sim_chip"]["clock"] == 0.0 < recorded[1].metadata["board_identity"][
        "sim_chip"]["clock"]  # fmt: skip
    text = labcim("replay", str(out)).stdout
    assert text.count("(as recorded) (exact)") == 2, text
    assert text.count(": identical") == 2 and "differs" not in text, text
    runs = open_runs(out)
    assert len(runs) == 4
    for original, again in zip(runs[:2], runs[2:], strict=True):
        assert again.metadata["replay_of"]["uid"] == original.uid
        assert again.metadata["replay_of"]["exact"] is True
        same_data(original, again)


SESSION = """
import sys
import numpy as np
import labcim
from labcim.characterization import hermes_weights
from plans import mvm_characterization, tdp_program

RE, board = labcim.session(sys.argv[1], sys.argv[2], quiet=True)
RE(tdp_program(board, hermes_weights(np.random.default_rng(1), 96, 80), cores=[0]))
RE(mvm_characterization(board, cores=[1], n_vectors=200, program=False))
board.close()
"""
"""Two plans on one connection, in a process of their own."""


def session(chip: str, out) -> None:
    run = subprocess.run([sys.executable, "-c", SESSION, chip, str(out)], capture_output=True)
    assert run.returncode == 0, run.stderr.decode()


@pytest.mark.slow
def test_sim_socket_and_pty_record_the_same(tmp_path, model):
    chip = f"sim://pcm-hermes?cores=2&seed=3&model={model}"
    session(chip, tmp_path / "sim.h5")
    with served("--chip", chip) as url:
        session(url, tmp_path / "socket.h5")
    with served("--pty", "--chip", chip) as path:
        assert path.startswith("/dev/")
        session(path, tmp_path / "pty.h5")
    runs = {link: open_runs(tmp_path / f"{link}.h5") for link in ("sim", "socket", "pty")}
    for i in range(2):
        records = [r[i].metadata["board_identity"]["sim_chip"] for r in runs.values()]
        assert records[0] == records[1] == records[2]
        same_data(runs["sim"][i], runs["socket"][i])
        same_data(runs["sim"][i], runs["pty"][i])


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_serve_takes_what_connect_takes_and_refuses_what_it_refuses(tmp_path):
    bad = subprocess.run(
        [*LABCIM, "sim", "serve", "--chip", "sim://pcm-small?core=2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "labcim sim serve: error: sim://pcm-small?core=2: unknown option 'core'; "
        "allowed: cols, cores, devices_per_polarity, model, rows, seed"
    )
    both = subprocess.run(
        [*LABCIM, "sim", "serve", "--chip", "sim://pcm-small", "--cores", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert both.returncode == 2
    assert "--cores: give them in the --chip URL instead" in both.stderr
