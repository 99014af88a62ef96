"""HDF5 writer throughput for 256 x 256 float32 frames, against a raw h5py loop.

The writer is fed the event documents of a real bluesky run (collected beforehand, so
the RunEngine's own cost is not counted).  The baseline appends the same frames one by
one to a resizable dataset with the same chunks and filters, in the same file mode
(``libver="latest"``, SWMR) and with the writer's durability: ``flush`` (and ``fsync``,
when the writer fsyncs) after creating the file, after creating the stream, whenever
``max_buffer_bytes`` of frames or ``flush_interval`` seconds have gone unflushed (twice:
the frames, then the count of valid rows), and at the end (the last frames and their
count, then the stop record).  Writer and loop alternate repeat by repeat.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from ophyd import Signal

from benchmarks.harness import Record, interleave, main, timed
from labcim.hdf5 import HDF5Writer

FRAME = (256, 256)


class _Frames(Signal):
    """A detector reading the next of ``frames`` (in turn) at every trigger.

    ophyd.sim's SynSignal would do, but importing ophyd.sim leaves an empty temporary
    directory behind in every process.
    """

    def __init__(self, frames: np.ndarray, name: str) -> None:
        self._frames = itertools.cycle(frames)
        super().__init__(name=name, value=frames[-1])

    def trigger(self):
        self.put(next(self._frames))
        return super().trigger()


def _documents(n: int, frame: tuple[int, ...] = FRAME) -> list[tuple[str, dict]]:
    """The documents of a bluesky ``count`` of ``n`` float32 frames of shape ``frame``."""
    from bluesky import RunEngine
    from bluesky.plans import count

    rng = np.random.default_rng(0)
    img = _Frames(rng.random((8, *frame), dtype=np.float32), name="img")
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(count([img], num=n))
    return docs


def _raw_loop(path: Path, frames: list[np.ndarray], writer: HDF5Writer, **filters) -> None:
    """Append ``frames`` with plain h5py, flushing and fsyncing as ``writer`` would.

    As the writer does, a flush with new frames syncs twice: the frames first, then the
    count of valid rows (``seq_num``), so that a crash never leaves rows that pass for
    data without it.
    """

    def sync(f: h5py.File) -> None:
        f.flush()
        if writer.fsync:
            os.fsync(f.id.get_vfd_handle())

    with h5py.File(path, "w", libver="latest") as f:
        f.swmr_mode = True
        sync(f)
        d = f.create_dataset(
            "img", (0, *FRAME), "f4", maxshape=(None, *FRAME), chunks=(1, *FRAME), **filters
        )
        seq = f.create_dataset("seq_num", (0,), "i8", maxshape=(None,), chunks=(1024,))
        sync(f)

        def flush() -> None:
            sync(f)
            counted = len(seq)
            seq.resize(len(d), axis=0)
            seq[counted:] = np.arange(counted + 1, len(d) + 1)
            sync(f)

        pending, since = 0, 0.0
        for i, frame in enumerate(frames):
            d.resize(i + 1, axis=0)
            d[i] = frame
            if not pending:
                since = time.monotonic()
            pending += frame.nbytes
            if pending >= writer.max_buffer_bytes or time.monotonic() - since >= (
                writer.flush_interval
            ):
                flush()
                pending = 0
        if pending:
            flush()
        f.attrs["end_time"] = time.time()
        sync(f)


def run(quick: bool = False) -> list[Record]:
    """Throughput ratios writer / raw h5py loop: default (fsync), gzip-1+shuffle, no fsync."""
    n = 20 if quick else 300
    docs = _documents(n)
    frames = [doc["data"]["img"] for name, doc in docs if name == "event"]
    records = []
    cases = [
        ("uncompressed, fsync (default)", {}, {}),
        (
            "gzip-1+shuffle, fsync",
            {"compression": "gzip"},
            {"compression": "gzip", "compression_opts": 1, "shuffle": True},
        ),
        ("uncompressed, no fsync", {"fsync": False}, {}),
    ]
    mb = n * FRAME[0] * FRAME[1] * 4 / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        for label, options, filters in cases:
            counter = itertools.count()
            policy = HDF5Writer(Path(tmp) / "policy", **options)  # its flush settings

            def raw(policy=policy, filters=filters, counter=counter) -> None:
                _raw_loop(Path(tmp) / f"raw{next(counter)}.h5", frames, policy, **filters)

            def ours(options=options, counter=counter) -> None:
                writer = HDF5Writer(Path(tmp) / f"w{next(counter)}", **options)
                for name, doc in docs:
                    writer(name, doc)

            t = interleave({"raw": timed(raw), "writer": timed(ours)}, 3 if quick else 7)
            records += [
                t.ratio(
                    f"hdf5 writer {n} x 256x256 f32, {label}: raw time / writer time",
                    "raw",
                    "writer",
                    f"raw h5py loop, same filters and flushes ({t.median('raw'):.3f} s)",
                    ">= 0.9",
                ),
                t.rate(f"hdf5 writer throughput, {label}", "writer", mb, "MB/s"),
            ]
    return records


if __name__ == "__main__":
    main(run)
