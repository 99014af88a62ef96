"""Issue 9: exact replay of simulated runs, and clear errors for runs that cannot be replayed."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import h5py
import numpy as np
import pytest

import labcim
from labcim.characterization import hermes_weights
from labcim.cli import replay as replay_cli
from labcim.engine import run_engine
from labcim.recorded import RecordedRunError
from labcim.replay import replay
from labcim.twin.model_file import load_model
from plans import conductance_map, mvm_characterization, retention, tdp_program


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-q", "--quiet", action="store_true")
    replay_cli.register(parser.add_subparsers())
    args = parser.parse_args(["-q", *argv])
    return args.func(args)


@pytest.fixture
def campaign(tmp_path):
    """Four runs on one pcm-small chip, as a campaign records them (only the first on a
    fresh chip)."""
    out = tmp_path / "results.h5"
    RE = run_engine(out, progress=False)
    board = labcim.connect("sim://pcm-small?cores=2&seed=4")
    try:
        RE(tdp_program(board, hermes_weights(np.random.default_rng(1), 64, 100), cores=[0, 1]))
        RE(mvm_characterization(board, cores=[1], n_vectors=200, batch_size=100))
        RE(retention(board, [10.0, 100.0, 1000.0], cores=[0]))
        RE(conductance_map(board, reads=2))
    finally:
        board.close()
    return out


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_replay_of_simulated_runs_is_exact(campaign, capsys):
    done = replay(campaign)
    assert [d.call.run.plan_name for d in done] == [
        "tdp_program",
        "mvm_characterization",
        "retention",
        "conductance_map",
    ]
    for item in done:
        assert item.exact and item.comparison.identical, item.comparison
        assert item.run.metadata["replay_of"]["uid"] == item.call.run.uid
        assert item.run.path.parent == item.call.run.path.parent  # next to the recorded
        for a, b in ((item.call.run, item.run),):
            for name, stream in a.streams.items():
                for key in stream:
                    if "rtt" not in key and "frames" not in key:
                        np.testing.assert_array_equal(stream[key], b.streams[name][key])
    assert _cli("replay", str(campaign), "--run", "1", "--keys", "weight_error") == 0
    text = capsys.readouterr().out
    assert "identical" in text and "core0_weight_error" in text


def test_later_run_alone_is_not_exact_and_another_chip_differs(campaign, capsys):
    (item,) = replay(campaign, ["3"])
    assert not item.exact and not item.comparison.identical
    assert _cli("replay", str(campaign), "--run", "2", "--chip", "sim://pcm-small?seed=9") == 0
    assert "differs" in capsys.readouterr().out


def _bare_run(out, md):
    RE = run_engine(out, progress=False)

    def plan():
        yield from bps.open_run(md)
        yield from bps.close_run()

    RE(plan())


def test_clear_errors(tmp_path, capsys):
    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(RecordedRunError, match="another program"):
        replay(foreign)
    (tmp_path / "text.h5").write_text("not hdf5")
    assert _cli("replay", str(tmp_path / "text.h5")) == 2
    assert "not an HDF5 file" in capsys.readouterr().err

    missing = tmp_path / "missing.h5"
    _bare_run(missing, {"plan_name": "tdp_program", "plan_args": {"cores": [0]}})
    with pytest.raises(RecordedRunError, match="missing required argument 'weights'"):
        replay(missing)

    gone = tmp_path / "gone.h5"
    _bare_run(gone, {"plan_name": "old_sweep", "plan_args": {}})
    with pytest.raises(RecordedRunError, match=r"plan no longer exists.*'old_sweep'.*tdp_program"):
        replay(gone)

    noplan = tmp_path / "noplan.h5"
    _bare_run(noplan, {})
    assert _cli("replay", str(noplan)) == 2
    assert "no 'plan_args'" in capsys.readouterr().err  # bluesky names it 'plan'
    with pytest.raises(RecordedRunError, match="--run 7x: names 0 runs"):
        replay(noplan, ["7x"])  # neither a run number nor a uid prefix (uids are hex)


def _labcim(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labcim.cli", "-q", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # three labcim processes, two of them replaying four runs
def test_replaying_again_replays_the_records_and_calibrate_leaves_replays_out(campaign, tmp_path):
    recorded = {run.uid: run.number for run in labcim.open_runs(campaign)}
    for _ in range(2):
        done = _labcim("replay", str(campaign))
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("(exact)") == 4
    runs = labcim.open_runs(campaign)
    replays = [run for run in runs if "replay_of" in run.start]
    assert len(runs) == 12 and len(replays) == 8  # not 4 + 4 + 8
    assert sorted(r.start["replay_of"]["uid"] for r in replays) == sorted(2 * list(recorded))

    done = _labcim("calibrate", str(campaign), "-o", str(tmp_path / "twin.yaml"))
    assert done.returncode == 0, done.stderr
    for run in replays:
        skipped = rf"skipped run {run.number} \(.*\): a replay on the simulator"
        assert re.search(skipped, done.stdout), done.stdout
    fitted = load_model(tmp_path / "twin.yaml").provenance["runs"]
    assert {r["uid"] for r in fitted} <= set(recorded)

    notes = tmp_path / "notes.h5"
    notes.write_text("not labcim's\n")
    done = _labcim("replay", str(campaign), "--out", str(notes))
    assert done.returncode == 2 and done.stderr.startswith(f"labcim replay: --out: {notes}: ")
    assert notes.read_text() == "not labcim's\n" and len(labcim.open_runs(campaign)) == 12

    only_replays = tmp_path / "replays.h5"
    done = _labcim("replay", str(campaign), "--run", "1", "--out", str(only_replays))
    assert done.returncode == 0, done.stderr
    done = _labcim("replay", str(only_replays))
    assert done.returncode == 2
    assert "every run there is a replay; name the ones to replay again with --run" in done.stderr
    assert _labcim("replay", str(only_replays), "--run", "1").returncode == 0  # named: replayed


@pytest.mark.slow  # a labcim process replaying until it is interrupted
def test_an_interrupted_replay_aborts_its_run_and_keeps_the_replays_before_it(campaign, tmp_path):
    out = tmp_path / "replays.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "labcim.cli", "-q", "replay", str(campaign), "--out", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list(Path(f"{out}.runs").glob("run_*.h5"))) < 3:  # the third replay runs
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.splitlines() == ["labcim replay: aborted by the operator after a pause"]
    statuses = [run.exit_status for run in labcim.open_runs(out)]
    assert statuses == ["success", "success", "abort"], statuses
