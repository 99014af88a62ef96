"""The writer's flushes and the RunEngine: a slow disk holds up neither events nor
descriptors."""

import os
import threading
import time

import event_model
import numpy as np
import pytest

from labcim.hdf5 import HDF5Writer, open_runs

FSYNC_S = 0.4  # how long the slow disk takes to fsync in the flush timer's thread


def slow_disk(monkeypatch) -> threading.Event:
    """Make the flush timer's fsyncs take `FSYNC_S`; the event is set at the first one."""
    real_fsync = os.fsync
    in_timer_fsync = threading.Event()

    def slow_fsync(fd):
        if isinstance(threading.current_thread(), threading.Timer):
            in_timer_fsync.set()
            time.sleep(FSYNC_S)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    return in_timer_fsync


def timed(call, *args) -> float:
    t0 = time.perf_counter()
    call(*args)
    return time.perf_counter() - t0


def test_events_are_buffered_while_the_timer_flushes_to_a_slow_disk(tmp_path, monkeypatch):
    in_timer_fsync = slow_disk(monkeypatch)
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


def test_a_new_stream_waits_neither_for_a_flush_nor_for_the_disk(tmp_path, monkeypatch):
    in_timer_fsync = slow_disk(monkeypatch)
    writer = HDF5Writer(tmp_path, flush_interval=0.01)
    run = event_model.compose_run(metadata={"plan_name": "slow_disk"})
    writer("start", run.start_doc)
    keys = {"x": {"source": "test", "dtype": "number", "shape": []}}
    primary = run.compose_descriptor(name="primary", data_keys=keys)
    writer("descriptor", primary.descriptor_doc)
    writer("event", primary.compose_event(data={"x": 1.0}, timestamps={"x": time.time()}))
    assert in_timer_fsync.wait(5), "the flush timer did not flush the first event"
    # While the timer's fsync sleeps: a second stream's descriptor and its event.
    config = {"det": {"data": {"gain": 2.0}, "timestamps": {"gain": 1.0}, "data_keys": {}}}
    summary = run.compose_descriptor(name="summary", data_keys=keys, configuration=config)
    waits = [
        timed(writer, "descriptor", summary.descriptor_doc),
        timed(writer, "event", summary.compose_event(data={"x": 7.0}, timestamps={"x": 2.0})),
    ]
    assert max(waits) < FSYNC_S / 4, waits
    writer("stop", run.compose_stop())
    (recorded,) = open_runs(tmp_path)
    assert recorded.exit_status == "success"
    assert recorded.streams["summary"]["x"][:].tolist() == [7.0]
    assert recorded.streams["primary"]["x"][:].tolist() == [1.0]
    assert recorded.config["summary"]["det"]["gain"] == 2.0


def test_a_bad_descriptor_is_refused_at_once(tmp_path):
    writer = HDF5Writer(tmp_path, flush_interval=60)
    run = event_model.compose_run(metadata={"plan_name": "bad_descriptor"})
    writer("start", run.start_doc)
    keys = {"x": {"source": "test", "dtype": "number", "shape": []}}
    bad = run.compose_descriptor(name="a/b", data_keys=keys)
    with pytest.raises(ValueError, match="stream name 'a/b' cannot name an HDF5 group"):
        writer("descriptor", bad.descriptor_doc)
    writer("stop", run.compose_stop())
    (recorded,) = open_runs(tmp_path)
    assert "a/b" not in recorded.streams and "a" not in recorded.streams
