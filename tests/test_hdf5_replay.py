"""The HDF5 writer and bluesky's replay: an event replayed after a pause is kept once;
an interruption, which bluesky never replays, is always kept.

On resume from an immediate pause or a suspension, bluesky rewinds its sequence counters
to the last checkpoint and replays the messages since, so an event already emitted can
come again with the same ``seq_num``.
"""

import event_model
import numpy as np
from hdf5_plans import one_stream

from labcim import open_runs


def test_an_event_replayed_with_its_seq_num_is_recorded_once(tmp_path):
    writer, run, stream = one_stream(tmp_path, "primary", "x", "number")

    def event(seq, x):
        return stream.compose_event(data={"x": x}, timestamps={"x": 0.0}, seq_num=seq)

    for seq, x in ((1, 10.0), (2, 20.0), (2, 99.0), (3, 30.0), (1, 99.0)):
        writer("event", event(seq, x))
    page = event_model.pack_event_page(event(3, 99.0), event(4, 40.0), event(5, 50.0))
    writer("event_page", page)
    writer("stop", run.compose_stop())
    (saved,) = open_runs(tmp_path)
    primary = saved.streams["primary"]
    assert primary.seq_num.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(primary["x"], [10.0, 20.0, 30.0, 40.0, 50.0])


def test_every_interruption_is_recorded_though_bluesky_repeats_their_seq_nums(tmp_path):
    """bluesky counts the interruptions with the data streams and rewinds the count: a
    pause during a suspension comes with the suspension's seq_num.  Each is recorded."""
    writer, run, stream = one_stream(tmp_path, "interruptions", "interruption", "string")
    said = [("link bad", 1), ("pause", 1), ("resume", 2)]  # as bluesky 1.15 numbers them
    for what, seq in said:
        doc = stream.compose_event(
            data={"interruption": what}, timestamps={"interruption": 0.0}, seq_num=seq
        )
        writer("event", doc)
    writer("stop", run.compose_stop())
    (saved,) = open_runs(tmp_path)
    interruptions = saved.streams["interruptions"]
    assert list(interruptions["interruption"]) == ["link bad", "pause", "resume"]
    assert interruptions.seq_num.tolist() == [1, 1, 2]  # as sent
