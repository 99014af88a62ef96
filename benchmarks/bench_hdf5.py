"""HDF5 writer throughput for 256 x 256 float32 frames, against a raw h5py loop.

The writer is fed the event documents of a real bluesky run (collected beforehand, so
the RunEngine's own cost is not counted); the baseline appends the same frames one by
one to a resizable dataset with the same chunks and filters, and flushes once.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import h5py
import numpy as np

from benchmarks.common import Record, best_time, main
from labcim.hdf5 import HDF5Writer


def _documents(n: int) -> list[tuple[str, dict]]:
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import SynSignal

    rng = np.random.default_rng(0)
    frames = rng.random((8, 256, 256), dtype=np.float32)
    it = itertools.count()
    img = SynSignal(func=lambda: frames[next(it) % 8], name="img")
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(count([img], num=n))
    return docs


def _raw_loop(path: Path, frames: list[np.ndarray], **filters) -> None:
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "img", (0, 256, 256), "f4", maxshape=(None, 256, 256), chunks=(1, 256, 256), **filters
        )
        for i, frame in enumerate(frames):
            d.resize(i + 1, axis=0)
            d[i] = frame


def _writer(directory: Path, docs: list[tuple[str, dict]], **options) -> None:
    writer = HDF5Writer(directory, **options)
    for name, doc in docs:
        writer(name, doc)


def run(quick: bool = False) -> list[Record]:
    """Throughput ratios writer / raw h5py loop: no filter (default) and gzip-1+shuffle."""
    n = 50 if quick else 300
    docs = _documents(n)
    frames = [doc["data"]["img"] for name, doc in docs if name == "event"]
    records = []
    cases = [
        ("uncompressed (default)", {}, {}),
        (
            "gzip-1+shuffle",
            {"compression": "gzip"},
            {"compression": "gzip", "compression_opts": 1, "shuffle": True},
        ),
        ("uncompressed, no fsync", {"fsync": False}, {}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for label, options, filters in cases:
            counter = itertools.count()

            def raw(filters=filters, counter=counter) -> None:
                _raw_loop(Path(tmp) / f"raw{next(counter)}.h5", frames, **filters)

            def ours(options=options, counter=counter) -> None:
                _writer(Path(tmp) / f"w{next(counter)}", docs, **options)

            repeat = 2 if quick else 3
            t_raw, t_ours = best_time(raw, repeat), best_time(ours, repeat)
            mb = n * 256 * 256 * 4 / 2**20
            records.append(
                Record(
                    f"hdf5 writer {n} x 256x256 f32, {label}",
                    t_raw / t_ours,
                    "x",
                    "raw h5py resize+write loop, same filters",
                    ">= 0.8",
                )
            )
            records.append(Record(f"hdf5 writer throughput, {label}", mb / t_ours, "MB/s"))
    return records


if __name__ == "__main__":
    main(run)
