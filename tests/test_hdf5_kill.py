"""A writer SIGKILLed at random moments loses at most its last flush interval."""

import random
import time

import numpy as np
import pytest
from hdf5_plans import run_until_killed, start_child

from labcim.hdf5 import open_runs

FLUSH = 0.2
SLACK = 0.3  # timer latency and the flush itself, on a shared 2-core machine


def read_log(path):
    lines = [line.split() for line in path.read_text().splitlines() if line.count(" ") == 4]
    return [(kind, run, stream, int(seq), float(t)) for kind, run, stream, seq, t in lines]


def snapshot(run):
    key = {"primary": "n", "summary": "mvm_error"}
    return run.exit_status, {n: s[key[n]] for n, s in run.streams.items()}


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_only_the_last_flush_interval(tmp_path):
    rng = random.Random(20260509)
    kept = {}  # uid -> snapshot of every run seen after earlier kills
    worst_loss = 0.0
    for i in range(12):
        log = tmp_path / f"log{i}.txt"
        child = start_child(run_until_killed, tmp_path / "runs", log, FLUSH, i)
        deadline = time.monotonic() + 20
        while not log.exists() and time.monotonic() < deadline:  # the child is ready
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 1.2))
        killed_at = time.time()
        child.kill()
        child.join()
        runs = {run.uid: run for run in open_runs(tmp_path / "runs")}
        for uid, before in kept.items():  # earlier runs are untouched
            status, streams = snapshot(runs[uid])
            assert status == before[0]
            for name, data in streams.items():
                np.testing.assert_array_equal(data, before[1][name])
        entries = read_log(log)
        stopped = {run for kind, run, *_ in entries if kind == "stop"}
        for uid in {run for kind, run, *_ in entries if kind == "start"}:
            run = runs[uid]
            # The stop is logged just after the writer has saved it, so a kill between
            # the two leaves a complete run the log does not know about yet.
            allowed = {"success"} if uid in stopped else {"incomplete", "success"}
            assert run.exit_status in allowed
            primary = run.streams.get("primary")
            on_disk = len(primary) if primary is not None else 0
            if on_disk:
                np.testing.assert_array_equal(primary["n"], np.arange(1, on_disk + 1))
                np.testing.assert_array_equal(primary.seq_num, np.arange(1, on_disk + 1))
            received = [(seq, t) for kind, r, s, seq, t in entries if r == uid and s == "primary"]
            lost = [t for seq, t in received if seq > on_disk]
            if lost:
                worst_loss = max(worst_loss, killed_at - min(lost))
            assert all(killed_at - t < FLUSH + SLACK for t in lost), (i, uid, on_disk)
        kept = {uid: snapshot(run) for uid, run in runs.items()}
    assert any(run[0] == "incomplete" for run in kept.values())
    print(f"oldest event lost by a SIGKILL: {worst_loss:.3f} s (flush interval {FLUSH} s)")
