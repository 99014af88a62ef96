"""Another process reads a run while it is being written."""

import time

import numpy as np
import pytest
from hdf5_plans import run_until_killed, start_child

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
