"""Another process reads a run while it is being written; several write to one location."""

import time

import numpy as np
import pytest
from hdf5_plans import run_until_killed, start_child, write_runs_together

from labcim.hdf5 import open_runs


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_reader_follows_a_growing_run(tmp_path):
    child = start_child(run_until_killed, tmp_path / "runs", tmp_path / "log.txt", 0.1, 0)
    seen = {}  # run uid -> event counts read while its exit status was "incomplete"
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and sum(len(set(c)) >= 3 for c in seen.values()) < 2:
            runs = open_runs(tmp_path / "runs") if (tmp_path / "runs").is_dir() else []
            for run in runs:
                primary = run.streams.get("primary")
                count = len(primary) if primary is not None else 0
                if count:  # every row read back whole, also in the middle of a write
                    np.testing.assert_array_equal(primary["n"], np.arange(1, count + 1))
                if run.exit_status == "incomplete":
                    counts = seen.setdefault(run.uid, [])
                    assert count >= max(counts, default=0)
                    counts.append(count)
            time.sleep(0.02)
    finally:
        child.kill()
        child.join()
    growing = [c for c in seen.values() if len(set(c)) >= 3]
    assert len(growing) >= 2, seen
    run = open_runs(tmp_path / "runs")[0]
    run.refresh()
    assert run.exit_status == "success"


@pytest.mark.slow  # four processes, a few seconds
def test_writers_in_several_processes_number_their_runs_apart(tmp_path):
    """Two ``labcim run`` at once, or a notebook beside a campaign, on one location:
    every run gets its own number and the index links every run."""
    import multiprocessing

    import h5py

    writers, runs = 4, 5
    barrier = multiprocessing.get_context("forkserver").Barrier(writers)
    out = tmp_path / "shared.h5"
    children = [start_child(write_runs_together, out, barrier, runs, tag) for tag in range(writers)]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    saved = open_runs(out)
    assert sorted(run.number for run in saved) == list(range(1, writers * runs + 1))
    assert sorted((r.start["tag"], r.start["i"]) for r in saved) == [
        (tag, i) for tag in range(writers) for i in range(runs)
    ]
    with h5py.File(out) as index:
        assert sorted(index) == sorted(run.path.stem for run in saved)


def test_a_file_system_without_locks_still_takes_one_writers_runs(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    for _ in range(2):
        write_runs_together(tmp_path / "out", NoBarrier(), 1, 0)
    assert [run.number for run in open_runs(tmp_path / "out")] == [1, 2]


class NoBarrier:
    def wait(self, timeout=None):
        return 0
