"""Devices and plans shared by the HDF5 tests, including the kill-test child processes."""

from __future__ import annotations

import random
import time
from pathlib import Path

import event_model
import numpy as np
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from ophyd import Signal

from labcim.hdf5 import HDF5Writer


class Counter(Signal):
    """A signal whose reading counts its triggers: event ``k`` reads ``k``."""

    def trigger(self):
        self.put(self.get() + 1)
        return super().trigger()


class Images(Signal):
    """A detector reading a fresh float32 array of ``shape`` per event.

    Not ophyd.sim's SynSignal: its import leaves an empty temporary directory behind in
    every process, and the kill tests' children are killed before any clean-up.
    """

    def __init__(self, seed: int, shape: tuple[int, ...], name: str) -> None:
        self._rng, self._shape = np.random.default_rng(seed), shape
        super().__init__(name=name, value=np.zeros(shape, np.float32))

    def trigger(self):
        self.put(self._rng.random(self._shape, dtype=np.float32))
        return super().trigger()


def image_detector(seed: int = 0, shape=(256, 256), name: str = "img") -> Images:
    """A detector reading a fresh float32 array per event."""
    return Images(seed, shape, name)


def ticking(n: int, period: float, md: dict | None = None):
    """``n`` counter events ``period`` s apart in ``primary``, then one ``summary`` event."""
    sig = Counter(name="n", value=0)
    summary = Signal(name="mvm_error", value=0.0)
    md = {"plan_name": "ticking", "plan_args": {"n": n, "period": period}, **(md or {})}

    @bpp.run_decorator(md=md)
    def inner():
        for _ in range(n):
            yield from bps.trigger_and_read([sig])
            yield from bps.sleep(period)
        yield from bps.mv(summary, 0.125)
        yield from bps.trigger_and_read([summary], name="summary")

    return (yield from inner())


def run_until_killed(directory: Path, log: Path, flush_interval: float, seed: int) -> None:
    """Child process: run ``ticking`` plans forever, logging each document's arrival.

    The log line of an event is written after the writer has taken the event, with
    the wall time, so the parent knows which events were older than the flush interval
    when it killed the process.
    """
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(directory, flush_interval=flush_interval))
    streams: dict[str, str] = {}  # descriptor uid -> "run-uid stream-name"
    with open(log, "a", buffering=1) as out:

        def note(name, doc):
            if name == "descriptor":
                streams[doc["uid"]] = f"{doc['run_start']} {doc['name']}"
            elif name == "start":
                out.write(f"start {doc['uid']} - 0 {time.time()!r}\n")
            elif name == "stop":
                out.write(f"stop {doc['run_start']} - 0 {time.time()!r}\n")
            elif name == "event":
                out.write(f"event {streams[doc['descriptor']]} {doc['seq_num']} {time.time()!r}\n")

        RE.subscribe(note)
        rng = random.Random(seed)
        while True:
            RE(ticking(rng.randint(5, 80), 0.004))


def fill_disk(directory: Path, limit: int, checked: bool = True) -> None:
    """Child process: a run of 256 x 256 frames whose file may not grow beyond ``limit``.

    Writes past the limit fail with EFBIG as they would with ENOSPC on a full disk.
    With ``checked`` false the writer's room check is switched off, as if another
    program filled the disk between the check and the write: HDF5's write then fails.
    The child exits 0 only if the run failed with an `OSError` naming the run file, and
    then leaves through the interpreter's normal teardown (which crashed on a broken file).
    """
    import re
    import resource
    import signal

    from bluesky.plans import count

    import labcim.hdf5.runfile

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    if not checked:
        labcim.hdf5.runfile.check_room = lambda *args: None
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(directory, compression=None, max_buffer_bytes=2**20))
    try:
        RE(count([image_detector()], num=40))
    except OSError as exc:
        named = re.search(r"run_000001_\w+\.h5: File too large", str(exc))
        raise SystemExit(0 if named and "\n" not in str(exc) else 2) from None
    raise SystemExit(1)


def start_child(target, *args):
    """Start ``target(*args)`` in a process forked from a server with bluesky imported."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hdf5_plans"])
    process = ctx.Process(target=target, args=args, daemon=True)
    process.start()
    return process


def write_runs_together(out: Path, barrier, runs: int, tag: int) -> None:
    """``runs`` one-event runs into ``out``, each started when every process sharing
    ``barrier`` is about to start one: writers numbering their runs at the same moment."""
    writer = HDF5Writer(out, fsync=False)
    for i in range(runs):
        run = event_model.compose_run(metadata={"tag": tag, "i": i})
        barrier.wait(30)
        writer("start", run.start_doc)
        keys = {"x": {"source": "test", "dtype": "number", "shape": []}}
        stream = run.compose_descriptor(data_keys=keys, name="primary")
        writer("descriptor", stream.descriptor_doc)
        writer("event", stream.compose_event(data={"x": tag}, timestamps={"x": 0.0}))
        writer("stop", run.compose_stop())


def one_stream(tmp_path, name, key, dtype):
    """A writer at ``tmp_path`` with a run started and its stream ``name`` of one data
    key described: ``(writer, run, stream)`` from event-model."""
    writer = HDF5Writer(tmp_path, fsync=False)
    run = event_model.compose_run()
    writer("start", run.start_doc)
    keys = {key: {"source": "test", "dtype": dtype, "shape": []}}
    stream = run.compose_descriptor(data_keys=keys, name=name)
    writer("descriptor", stream.descriptor_doc)
    return writer, run, stream
