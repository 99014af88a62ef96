"""The writer's flushes and the RunEngine: a slow disk does not hold up the events."""

import os
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
