"""`HDF5Writer`: a bluesky callback that streams every run into its own HDF5 file."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from event_model import DocumentRouter

from labcim.file_locks import locked_directory
from labcim.hdf5.failures import DiskFullError, discard
from labcim.hdf5.index import write_index
from labcim.hdf5.layout import INTERRUPTIONS_STREAM, run_file_name, run_number
from labcim.hdf5.metadata import split_arrays
from labcim.hdf5.output import ForeignFileError, check_output
from labcim.hdf5.runfile import Pending, RunFile, Storage, StreamFile


class HDF5Writer(DocumentRouter):
    """Write bluesky runs to HDF5 (NeXus layout) as their documents arrive.

    Subscribe it to a RunEngine: ``RE.subscribe(HDF5Writer("results.h5"))``.  Each run
    becomes one file ``run_NNNNNN_<uid>.h5`` in a run directory, so a crash can only
    touch the run being written; see ``docs/data-layout.md``.

    Events and descriptors are buffered and written at most ``flush_interval`` seconds
    after they arrive (a timer thread flushes when the plan goes quiet), and always at
    the stop document.  A SIGKILL therefore loses at most the documents of the last
    ``flush_interval`` seconds.  While the timer writes and fsyncs, the RunEngine's
    documents go on into fresh buffers: only a start or stop document (and a buffer
    over ``max_buffer_bytes``) waits for the file.  Any
    error (unwritable path, full disk, metadata that JSON cannot hold) is raised into
    the RunEngine, so the run fails loudly instead of going unsaved; an error met by
    the timer thread is raised at the next document.  A write that would leave less
    than `failures.RESERVE_BYTES` on the disk is refused before it starts, and so is
    data that does not fit its datasets (e.g. a changed shape): the run file is then
    still closed with the stop document, exit status ``"fail"``.  After an I/O error
    the file is let go (`failures.discard`) and stays ``"incomplete"`` with what was
    flushed before.  Nothing is ever written over a file labcim did not write.

    An event whose ``seq_num`` its stream already holds is one that bluesky replayed
    after a pause or suspension (it restores the sequence counters of the last
    checkpoint); the recorded one is kept and the replay is not added again.  The
    ``interruptions`` stream is never replayed: each of its events is recorded.

    Parameters
    ----------
    path : str or Path
        An index file (``.h5``, ``.hdf5``, ``.nxs`` ...; its runs go in the directory
        ``<path>.runs``) or a directory (runs in it, index in ``<path>/index.h5``).
    flush_interval : float
        Longest time (s) an event stays in memory only.
    compression, compression_opts, shuffle
        HDF5 filters of the datasets.  Default none: the bulk of the data (conductance
        maps, MVM outputs) is noisy floats that gzip-1 + shuffle shrinks by only 1.1-1.3x
        at ~40 MB/s, slower than the instrument produces them.  ``"gzip"`` (level
        ``compression_opts``, with ``shuffle``) is built into every HDF5 library, so every
        viewer still reads such files.
    fsync : bool
        Also ``fsync`` at every flush, so that a power cut (not only a killed process)
        loses at most ``flush_interval`` of events.
    max_buffer_bytes : int
        Flush early when buffered event data exceed this size.

    Raises
    ------
    ForeignFileError
        If ``path`` (or its index or run directory) holds something labcim did not
        write (`labcim.hdf5.output.check_output`).
    OSError
        If the run directory cannot be created or written.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval: float = 0.5,
        compression: str | None = None,
        compression_opts: int | None = 1,
        shuffle: bool = True,
        fsync: bool = True,
        max_buffer_bytes: int = 64 * 2**20,
    ) -> None:
        super().__init__()
        self.location = check_output(path)
        self.flush_interval = flush_interval
        self.storage = Storage(compression, compression_opts if compression else None, shuffle)
        self.fsync = fsync
        self.max_buffer_bytes = max_buffer_bytes
        run_dir = self.location.run_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(exc.errno, f"HDF5Writer cannot create {run_dir}: {exc.strerror}") from exc
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise PermissionError(f"HDF5Writer cannot write in {run_dir}")
        self._runs: dict[str, RunFile] = {}  # by start uid
        self._streams: dict[str, tuple[RunFile, StreamFile]] = {}  # by descriptor uid
        self._last_seq: dict[str, int] = {}  # by descriptor uid
        # Two locks, always taken in this order: _file_lock for writing the files (one
        # flush at a time), _lock for the buffers and the tables above.  An event needs
        # only _lock, so a flush's disk time does not hold up the RunEngine.
        self._file_lock = threading.Lock()
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._deferred: Exception | None = None  # met by the timer thread

    def __repr__(self) -> str:
        return f"HDF5Writer({str(self.location.run_dir)!r}, open runs: {len(self._runs)})"

    def __call__(self, name: str, doc: dict, validate: bool = False) -> tuple[str, dict]:
        if name in ("event", "event_page", "descriptor"):
            with self._lock:
                result = self._handle(name, doc, validate)
                full = [r for r in self._runs.values() if r.pending_bytes >= self.max_buffer_bytes]
            for run in full:  # flushed early, outside _lock (the locks' order)
                with self._file_lock, self._lock:
                    self._flush(run, run.take())
                    self._raise_deferred()
            return result
        with self._file_lock, self._lock:
            return self._handle(name, doc, validate)

    def _handle(self, name: str, doc: dict, validate: bool) -> tuple[str, dict]:
        deferred, self._deferred = self._deferred, None
        result = super().__call__(name, doc, validate)  # a stop still closes its run
        if deferred is not None:
            raise deferred
        return result

    def _raise_deferred(self) -> None:
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            raise deferred

    def start(self, doc: dict) -> None:
        """Create the run file with the start metadata (checked JSON-able first)."""
        text, arrays = split_arrays(doc, f"HDF5Writer({self.location.run_dir}): start document")
        # One process at a time numbers a run, creates its file and rebuilds the index:
        # two writers on one location (two `labcim run`, a notebook beside a campaign)
        # would give two runs one number, or an index missing the other's run.
        with contextlib.ExitStack() as alone:
            with _naming(self.location.run_dir):  # e.g. removed since the writer made it
                alone.enter_context(locked_directory(self.location.run_dir))
            runs = self.location.run_files()
            number = run_number(runs[-1]) + 1 if runs else 1
            path = self.location.run_dir / run_file_name(number, doc["uid"])
            with _naming(path):
                self._runs[doc["uid"]] = RunFile.create(path, doc, text, arrays, self.fsync)
            self._flush_soon()  # its fsync
            with _naming(self.location.index):
                write_index(self.location)

    def descriptor(self, doc: dict) -> None:
        """Check the descriptor; the next flush writes the stream's group, config
        readings and (for primary) NXdata."""
        run = self._runs.get(doc["run_start"])
        if run is None:  # a run whose start failed, or that began before subscribing
            return
        with self._failing(run):
            self._streams[doc["uid"]] = (run, run.add_stream(doc, self.storage))
        self._flush_soon()

    def _last_recorded(self, descriptor: str) -> int:
        """The last seq_num of a stream recorded; an event at or below it is a replay.

        0 for the interruptions: bluesky emits those itself, never as a replay, but
        counts them with the data streams, so a rewind makes their seq_nums repeat (a
        pause during a suspension is recorded with the suspension's number).
        """
        stream = self._streams.get(descriptor)
        if stream is not None and stream[1].name == INTERRUPTIONS_STREAM:
            return 0
        return self._last_seq.get(descriptor, 0)

    def event(self, doc: dict) -> None:
        """Buffer one event (unless it replays one already recorded)."""
        if doc["seq_num"] <= self._last_recorded(doc["descriptor"]):
            return
        columns = {k: [doc[k]] for k in ("time", "seq_num", "uid")}
        page = {"data": _column(doc["data"]), "timestamps": _column(doc["timestamps"])}
        self._append(doc["descriptor"], {**page, **columns})

    def event_page(self, doc: dict) -> None:
        """Buffer a page of events (less those replaying events already recorded)."""
        last = self._last_recorded(doc["descriptor"])
        keep = [i for i, seq in enumerate(doc["seq_num"]) if seq > last]
        if len(keep) < len(doc["seq_num"]):
            doc = _rows(doc, keep)
        if keep:
            self._append(doc["descriptor"], doc)

    def stop(self, doc: dict) -> None:
        """Flush, write the stop document and close the run file."""
        run = self._runs.pop(doc["run_start"], None)
        if run is None:
            return
        self._forget_streams(run)
        with self._failing(run):
            run.close(doc)

    def _append(self, descriptor: str, page: Mapping[str, Any]) -> None:
        if descriptor not in self._streams:
            return
        run, stream = self._streams[descriptor]
        with self._failing(run):
            stream.append(page)
            self._last_seq[descriptor] = page["seq_num"][-1]
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Have the timer flush ``flush_interval`` after the first unwritten document."""
        if self._timer is None:
            self._timer = threading.Timer(self.flush_interval, self._flush_all)
            self._timer.daemon = True
            self._timer.start()

    def _flush_all(self) -> None:
        """Timer thread: write what has waited ``flush_interval``; keep errors for later.

        The buffers are taken under ``_lock`` and written with only ``_file_lock`` held,
        so the RunEngine buffers its next events meanwhile.
        """
        with self._file_lock:
            with self._lock:
                self._timer = None
                batches = [(run, taken) for run in self._runs.values() if (taken := run.take())]
            for run, taken in batches:
                self._flush(run, taken)

    def _flush(self, run: RunFile, pending: Pending) -> None:
        """Write what was taken from ``run`` (``_file_lock`` held); keep an error for
        the next document."""
        try:
            with self._failing(run):
                run.write(pending)
        except Exception as exc:
            with self._lock:
                self._deferred = exc

    @contextlib.contextmanager
    def _failing(self, run: RunFile) -> Iterator[None]:
        """Re-raise any error, naming the file if the OS failed; let go of a broken file.

        After an I/O error the file is abandoned; after any other (no room for the
        next write, data that do not fit their datasets) the events that could not be
        written are dropped and the run waits for its stop document.
        """
        try:
            with _naming(run.path):
                yield
        except DiskFullError as exc:  # refused before writing: the file is whole
            with self._lock:
                run.drop_pending(str(exc))
            raise
        except OSError:
            with self._lock:
                self._abandon(run)
            raise
        except Exception as exc:
            with self._lock:
                run.drop_pending(str(exc))
            raise

    def _forget_streams(self, run: RunFile) -> None:
        for uid in [u for u, (r, _) in self._streams.items() if r is run]:
            del self._streams[uid]
            self._last_seq.pop(uid, None)

    def _abandon(self, run: RunFile) -> None:
        """Drop a run whose file can no longer be written; what was flushed stays readable."""
        self._runs.pop(run.start["uid"], None)
        self._forget_streams(run)
        discard(run.file)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an I/O error as a one-line `OSError` naming the file not written.

    h5py reports a failed write as `OSError` but a failed flush (e.g. a full disk) as
    `RuntimeError`; both mean the file did not get the data.  Their text spans lines
    and names HDF5's internals; the system's error number it holds says what happened.
    """
    try:
        yield
    except (ForeignFileError, DiskFullError):  # already one line naming the file
        raise
    except (OSError, RuntimeError) as exc:
        code = getattr(exc, "errno", None) or _hdf5_errno(str(exc))
        detail = os.strerror(code) if code else " ".join(str(exc).split())
        message = f"cannot write {path}: {detail}"
        raise (OSError(code, message) if code else OSError(message)) from exc


def _hdf5_errno(text: str) -> int | None:
    """The system error number in an HDF5 error message (``errno = 28``), if any."""
    found = re.search(r"errno = (\d+)", text)
    return int(found[1]) if found and int(found[1]) else None


def _column(values: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {k: [v] for k, v in values.items()}


def _rows(page: Mapping[str, Any], rows: list[int]) -> dict[str, Any]:
    """The event page holding only ``rows`` of ``page``."""
    out: dict[str, Any] = {k: [page[k][i] for i in rows] for k in ("time", "seq_num", "uid")}
    for key in ("data", "timestamps"):
        out[key] = {k: [v[i] for i in rows] for k, v in page[key].items()}
    return {**page, **out}
