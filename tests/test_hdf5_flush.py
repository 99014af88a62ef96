"""The writer's flushes and the RunEngine: a slow disk does not hold up the events."""

import os
import subprocess
import sys
import threading
import time

import event_model
import numpy as np

from labcim.hdf5 import HDF5Writer, open_runs

FSYNC_S = 0.4  # how long the slow disk takes to fsync in the flush timer's thread


def test_events_are_buffered_while_the_timer_flushes_to_a_slow_disk(tmp_path, monkeypatch):
    real_fsync = os.fsync
    in_timer_fsync = threading.Event()

    def slow_fsync(fd):
        if isinstance(threading.current_thread(), threading.Timer):
            in_timer_fsync.set()
            time.sleep(FSYNC_S)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    writer = HDF5Writer(tmp_path, flush_interval=0.01)
    run = event_model.compose_run(metadata={"plan_name": "slow_disk"})
    writer("start", run.start_doc)
    keys = {"frame": {"source": "test", "dtype": "array", "shape": [64, 64]}}
    stream = run.compose_descriptor(name="primary", data_keys=keys)
    writer("descriptor", stream.descriptor_doc)
    frames = [np.full((64, 64), i, np.float32) for i in range(10)]

    def event(i):
        now = time.time()
        doc = stream.compose_event(data={"frame": frames[i]}, timestamps={"frame": now})
        t0 = time.perf_counter()
        writer("event", doc)
        return time.perf_counter() - t0

    event(0)
    assert in_timer_fsync.wait(5), "the flush timer did not flush the first event"
    waits = [event(i) for i in range(1, 10)]  # while the timer's fsync sleeps
    assert max(waits) < FSYNC_S / 4, waits
    writer("stop", run.compose_stop())
    (recorded,) = open_runs(tmp_path)
    assert recorded.exit_status == "success"
    primary = recorded.streams["primary"]
    np.testing.assert_array_equal(primary.seq_num, np.arange(1, 11))
    np.testing.assert_array_equal(primary["frame"][:], np.stack(frames))


def test_large_readings_are_on_disk_long_before_the_flush_interval(tmp_path):
    """Readings over ``write_ahead_bytes`` are written at once, in the writer's thread,
    while the run goes on: a reader in another process sees them with the run open."""
    writer = HDF5Writer(tmp_path, flush_interval=60.0, write_ahead_bytes=2**20)
    run = event_model.compose_run(metadata={"plan_name": "big_frames"})
    writer("start", run.start_doc)
    keys = {"frame": {"source": "test", "dtype": "array", "shape": [256, 256]}}
    stream = run.compose_descriptor(name="primary", data_keys=keys)
    writer("descriptor", stream.descriptor_doc)
    frames = [np.full((256, 256), i, np.float32) for i in range(6)]  # 256 KiB each
    for frame in frames:
        now = time.time()
        writer("event", stream.compose_event(data={"frame": frame}, timestamps={"frame": now}))
    reader = (
        "import sys; from labcim.hdf5 import open_runs; (run,) = open_runs(sys.argv[1]); "
        "frames = run.streams['primary']['frame'][:]; "
        "print(run.exit_status, len(frames), *frames[:, 0, 0].astype(int))"
    )
    deadline = time.monotonic() + 20
    while True:  # the first 1 MiB, without waiting 60 s or for the stop
        seen = subprocess.run(
            [sys.executable, "-c", reader, str(tmp_path)], capture_output=True, text=True
        ).stdout.split()
        if (len(seen) > 1 and int(seen[1]) >= 4) or time.monotonic() > deadline:
            break
    assert seen[0] == "incomplete" and int(seen[1]) >= 4, seen  # no stop yet
    assert seen[2:] == [str(i) for i in range(int(seen[1]))]
    writer("stop", run.compose_stop())
    (recorded,) = open_runs(tmp_path)
    np.testing.assert_array_equal(recorded.streams["primary"]["frame"][:], np.stack(frames))
