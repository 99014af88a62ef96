"""HDF5 writer and reader: documents of real bluesky plans come back equal."""

import json
import re

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from hdf5_plans import image_detector, ticking
from ophyd.sim import det, motor

from labcim.cli import show
from labcim.hdf5 import HDF5Writer, LazyArray, open_runs


class Collector:
    """Keeps every document, to compare with what the file gives back."""

    def __init__(self):
        self.docs = []

    def __call__(self, name, doc):
        self.docs.append((name, doc))

    def events(self, run_uid, stream="primary"):
        descriptors = {
            d["uid"]
            for n, d in self.docs
            if n == "descriptor" and d["run_start"] == run_uid and d["name"] == stream
        }
        return [d for n, d in self.docs if n == "event" and d["descriptor"] in descriptors]


@pytest.fixture
def engine():
    RE = RunEngine({})
    collector = Collector()
    RE.subscribe(collector)
    return RE, collector


def assert_stream_equal(stream, events):
    assert len(stream) == len(events)
    np.testing.assert_array_equal(stream.seq_num, [e["seq_num"] for e in events])
    np.testing.assert_array_equal(stream.time, [e["time"] for e in events])
    assert list(stream.uid) == [e["uid"] for e in events]
    for key in events[0]["data"]:
        expected = np.asarray([e["data"][key] for e in events])
        got = stream[key]
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        np.testing.assert_array_equal(got, expected)
        stamps = [e["timestamps"][key] for e in events]
        np.testing.assert_array_equal(stream.timestamps(key), stamps)


@pytest.mark.parametrize("target", ["results.h5", "results_dir"])
def test_count_scan_and_images_round_trip(tmp_path, engine, target):
    RE, collected = engine
    RE.subscribe(HDF5Writer(tmp_path / target))
    img = image_detector(seed=1)
    uids = [
        *RE(count([det], num=5), sample="GST-12"),
        *RE(scan([det], motor, -1, 1, 7)),
        *RE(count([img, det], num=6)),
    ]
    runs = open_runs(tmp_path / target)
    assert [r.uid for r in runs] == uids
    assert [r.plan_name for r in runs] == ["count", "scan", "count"]
    for run in runs:
        assert run.exit_status == "success"
        assert_stream_equal(run.streams["primary"], collected.events(run.uid))
    start = next(d for n, d in collected.docs if n == "start" and d["uid"] == uids[0])
    assert runs[0].metadata == json.loads(json.dumps(start))  # JSON: tuples become lists
    assert runs[0].metadata["sample"] == "GST-12"
    assert runs[1].plan_args["num"] == 7
    assert runs[0].stop["num_events"] == {"primary": 5}
    assert runs[0].config["primary"]["det"]["det_noise"] == "none"
    frames = runs[2].streams["primary"]["img"]
    assert frames.shape == (6, 256, 256) and frames.dtype == np.float32


def test_big_array_argument_is_a_dataset_referenced_from_json(tmp_path, engine):
    RE, _ = engine
    RE.subscribe(HDF5Writer(tmp_path))
    weights = np.arange(12, dtype=np.int16).reshape(3, 4)
    RE(ticking(3, 0.0, md={"plan_args": {"n": 3, "period": 0.0, "weights": weights}}))
    (run,) = open_runs(tmp_path)
    got = run.plan_args["weights"]
    assert got.dtype == weights.dtype
    np.testing.assert_array_equal(got, weights)
    with h5py.File(run.path, "r") as f:
        meta = f["entry/metadata"]
        assert '"$labcim_array": "plan_args.weights"' in meta.attrs["labcim_document"]
        np.testing.assert_array_equal(meta["plan_args.weights"], weights)
        assert meta["plan_name"].asstr()[()] == "ticking"  # readable without JSON


def test_summary_stream_and_extra_stop_fields(tmp_path, engine):
    RE, _ = engine
    RE.subscribe(HDF5Writer(tmp_path))
    RE(ticking(4, 0.0))
    (run,) = open_runs(tmp_path)
    assert run.summary == {"mvm_error": 0.125}
    assert run.num_events == {"primary": 4, "summary": 1}
    np.testing.assert_array_equal(run.streams["primary"]["n"], [1, 2, 3, 4])
    assert "ticking" in repr(run) and "success" in repr(run)


def test_nexus_attributes_and_index_for_general_viewers(tmp_path, engine):
    RE, _ = engine
    RE.subscribe(HDF5Writer(tmp_path / "results.nxs", compression="gzip"))
    RE(scan([det], motor, 0, 1, 3))
    RE(count([image_detector()], num=2))
    with h5py.File(tmp_path / "results.nxs", "r") as index:
        assert index.attrs["NX_class"] == "NXroot"
        first, second = (index[name] for name in index)
        assert first.attrs["NX_class"] == "NXentry"
        data = first["data"]
        assert data.attrs["NX_class"] == "NXdata"
        assert data.attrs["signal"] == "det" and list(data.attrs["axes"]) == ["motor"]
        np.testing.assert_array_equal(data["motor"], [0, 0.5, 1])
        assert list(second["data"].attrs["axes"]) == [".", ".", "."]
        assert second["primary/data/img"].compression == "gzip"
        assert second["primary/data/img"].chunks == (1, 256, 256)


def test_lazy_array_slices_on_demand(tmp_path, engine):
    RE, _ = engine
    RE.subscribe(HDF5Writer(tmp_path))
    RE(count([image_detector(seed=3, shape=(8, 8))], num=5))
    stream = open_runs(tmp_path)[0].streams["primary"]
    lazy, full = stream.lazy("img"), stream["img"]
    assert isinstance(lazy, LazyArray) and len(lazy) == 5 and lazy.shape == full.shape
    np.testing.assert_array_equal(lazy[-1], full[-1])
    np.testing.assert_array_equal(lazy[::2, 3], full[::2, 3])
    np.testing.assert_array_equal(lazy[[0, 4]], full[[0, 4]])
    np.testing.assert_array_equal(np.asarray(lazy), full)


def test_strings_round_trip_as_str(tmp_path, engine):
    from ophyd import Signal

    RE, _ = engine
    RE.subscribe(HDF5Writer(tmp_path))
    RE(count([Signal(name="label", value="héllo")], num=3))
    run = open_runs(tmp_path)[0]
    assert list(run.streams["primary"]["label"]) == ["héllo"] * 3


def test_show_prints_one_line_per_run(tmp_path, engine, capsys):
    import argparse

    RE, _ = engine
    RE.subscribe(HDF5Writer(tmp_path / "r.h5"))
    RE(count([det], num=2))
    RE(ticking(3, 0.0))
    parser = argparse.ArgumentParser()
    show.register(parser.add_subparsers())
    args = parser.parse_args(["show", str(tmp_path / "r.h5")])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'r.h5'}: 2 run(s)"
    assert lines[1].startswith("run 1  count  success") and "events: primary 2" in lines[1]
    assert lines[2].startswith("run 2  ")
    assert re.fullmatch(r"    mvm error\s+0.125", lines[-1]), lines
