"""`open_runs`: the runs of a location as plain Python objects and numpy arrays.

Files are opened only for the moment of a read, so any number of runs can be listed, a
run still being written can be read (``refresh()`` shows its growth), and a run whose
writer was killed opens like any other, reported as ``"incomplete"``.  Each open takes
bounded time (`labcim.hdf5.opening`); a damaged run file (truncated, not HDF5, a stored
document that is not valid) is skipped with a `DamagedRunWarning` naming it and the
reason, never hiding its neighbours.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, overload

import h5py
import numpy as np

from labcim.hdf5.fields import read_field
from labcim.hdf5.layout import (
    DESCRIPTORS_ATTR,
    DOCUMENT_ATTR,
    ENTRY,
    EVENT_FIELDS,
    FORMAT,
    FORMAT_ATTR,
    INTERRUPTIONS_STREAM,
    METADATA,
    RUN_FILE,
    STOP,
    STREAM_CONFIG,
    STREAM_DATA,
    STREAM_TIMESTAMPS,
    SUMMARY_STREAM,
    Location,
    dataset_dtype,
    format_mismatch,
    run_number,
)
from labcim.hdf5.metadata import join_arrays
from labcim.hdf5.opening import DamagedFileError, open_readable

T = TypeVar("T")

#: Datasets larger than this are handed out as `LazyArray` rather than read whole.
LAZY_ABOVE_BYTES = 32 * 2**20
#: Pauses (s) between the attempts to read a file its writer is changing right now.
RETRY_DELAYS = (0.02, 0.05, 0.1, 0.2)


class DamagedRunWarning(UserWarning):
    """A run file that `open_runs` skipped; the message names it and the reason."""


def _retrying(read: Callable[[], T]) -> T:
    """``read()``, retried while it fails on a file its writer has open (`RETRY_DELAYS`).

    A SWMR writer adds groups and datasets in steps a reader may catch half done (an
    object address past the end of the file, a link without its object); that resolves
    once the writer flushes.  A file no writer has open fails at once.
    """
    for delay in (*RETRY_DELAYS, None):
        try:
            return read()
        except DamagedFileError as exc:
            if not exc.transient or delay is None:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _open(path: Path) -> Iterator[h5py.File]:
    """Open a run file for reading, retrying briefly while its writer adds structure."""
    with _retrying(lambda: open_readable(path)) as file:
        yield file


@contextlib.contextmanager
def _structure(path: Path) -> Iterator[h5py.File]:
    """`_open`, and any error of finding labcim's layout in the file as `DamagedFileError`."""
    with _open(path) as file:
        try:
            yield file
        except DamagedFileError:
            raise
        except _CONTENT_ERRORS as exc:  # what the file holds is not what labcim writes
            reason = " ".join(str(exc).split())
            if not isinstance(exc, _BadContentError):
                reason = f"{type(exc).__name__}: {reason}"
            raise DamagedFileError(path, reason, transient=file.swmr_mode) from exc


class _BadContentError(ValueError):
    """A stored document or descriptor that labcim cannot have written."""


#: Errors of reading a file whose content is not laid out as labcim writes it.
_CONTENT_ERRORS = (
    KeyError,
    OSError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    RecursionError,
)
#: Keys (and their types) every stored start / stop document must have.
START_KEYS: dict[str, type | tuple[type, ...]] = {"uid": str, "time": (int, float)}
STOP_KEYS: dict[str, type | tuple[type, ...]] = {"exit_status": str}


def _json(text: Any, what: str, kind: type) -> Any:
    """Parse stored JSON ``text`` expected to hold a ``kind``; ValueError says what is wrong."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _BadContentError(f"{what} is nested too deeply to read") from None
    except (TypeError, ValueError) as exc:
        raise _BadContentError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise _BadContentError(f"{what} is a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def _document(group: h5py.Group, what: str, keys: Mapping[str, Any]) -> dict[str, Any]:
    """The document stored on ``group``, checked to have ``keys`` of their types."""
    doc = _json(group.attrs[DOCUMENT_ATTR], f"the stored {what} document", dict)
    for key, kind in keys.items():
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            raise _BadContentError(f"the stored {what} document has no valid {key!r}")
    return doc


class LazyArray:
    """A dataset read on demand: slice it like numpy, or ``np.asarray`` it whole.

    Only the first ``len(self)`` rows are visible: the events complete when the run was
    opened (or last refreshed).
    """

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.name, self.shape, self.dtype = path, name, shape, dtype

    def __repr__(self) -> str:
        return f"<LazyArray {self.name} shape={self.shape} dtype={self.dtype}>"

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: Any) -> Any:
        index = index if isinstance(index, tuple) else (index,)
        if index and index[0] is not Ellipsis:
            # numpy resolves negative indices, slices and masks against the visible rows
            rows, rest = np.arange(len(self))[index[0]], index[1:]
        else:
            rows, rest = np.arange(len(self)), index
        with _open(self.path) as file:
            dataset = file[self.name]
            if h5py.check_string_dtype(dataset.dtype):
                dataset = dataset.asstr()
            if rows.ndim == 0:
                return dataset[(int(rows), *rest)]
            if rows.size == 0:
                return np.asarray(dataset[(slice(0, 0), *rest)])
            lo, hi = int(rows.min()), int(rows.max()) + 1
            return np.take(np.asarray(dataset[(slice(lo, hi), *rest)]), rows - lo, axis=0)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self[...], dtype=dtype)


def _complete_rows(group: h5py.Group, data: Mapping[str, h5py.Dataset], stop: Any) -> int:
    """Number of events of a stream whose every field is on disk.

    Every dataset has a row for them.  In a file its writer has open (or left when it
    died or its disk filled), also only rows with a seq_num: the writer stores the
    readings before the seq_num, and HDF5 may store a dataset's length without its data.
    A stopped run has at most the stop document's count (a rewound plan's last events),
    except the interruptions: bluesky records them itself, never twice, but a rewind
    resets its count of them (a suspension's reason is recorded before the rewind).
    """
    lengths = [len(group[f]) if f in group else 0 for f in EVENT_FIELDS]
    length = min([*lengths, *(len(data[k]) for k in data)])
    if group.file.swmr_mode and length:
        unset = np.flatnonzero(group["seq_num"][:length] < 1)
        length = int(unset[0]) if unset.size else length
    name = group.name.rsplit("/", 1)[-1]
    if name == INTERRUPTIONS_STREAM:
        return length
    counted = (stop or {}).get("num_events", {}).get(name)
    return min(length, counted) if isinstance(counted, int) and counted >= 0 else length


class Stream(Mapping[str, "np.ndarray | LazyArray"]):
    """One stream of a run: ``stream["det"]`` is that data key over the events.

    Arrays come back as numpy (strings as ``str`` objects), or as `LazyArray` when larger
    than ``LAZY_ABOVE_BYTES``; ``stream.lazy(key)`` always gives a `LazyArray`.
    """

    def __init__(self, run: Run, group: h5py.Group) -> None:
        self.run = run
        self.name: str = group.name.rsplit("/", 1)[-1]
        what = f"the stored descriptors of stream {self.name!r}"
        self.descriptors: list[dict[str, Any]] = _json(group.attrs[DESCRIPTORS_ATTR], what, list)
        if not self.descriptors or not all(isinstance(d, dict) for d in self.descriptors):
            raise _BadContentError(f"{what} are not a list of documents")
        self.data_keys: dict[str, dict[str, Any]] = self.descriptors[0].get("data_keys")
        if not isinstance(self.data_keys, dict) or not all(
            isinstance(k, dict) for k in self.data_keys.values()
        ):
            raise _BadContentError(f"{what} have no valid 'data_keys'")
        data = group.get(STREAM_DATA, {})
        self._len = _complete_rows(group, data, run.stop)
        self._datasets = {k: (data[k].shape[1:], data[k].dtype) for k in data}
        for key, data_key in self.data_keys.items():  # not written yet: empty
            if "external" not in data_key and key not in self._datasets:
                shape = tuple(data_key.get("shape") or ())
                self._datasets[key] = (shape, dataset_dtype(data_key, 0.0))
        self.config: dict[str, dict[str, Any]] = {
            obj: {k: _plain(read_field(v)) for k, v in fields.items()}
            for obj, fields in group.get(STREAM_CONFIG, {}).items()
        }

    def __repr__(self) -> str:
        return f"<Stream {self.name!r}: {self._len} events, keys {list(self)}>"

    def __len__(self) -> int:
        """Number of events."""
        return self._len

    def __iter__(self) -> Iterator[str]:
        return iter(self._datasets)

    def __getitem__(self, key: str) -> np.ndarray | LazyArray:
        lazy = self.lazy(key)
        if not len(lazy):  # maybe not even created: the writer creates at the first flush
            return np.empty(lazy.shape, lazy.dtype)
        if lazy.dtype.itemsize * int(np.prod(lazy.shape)) > LAZY_ABOVE_BYTES:
            return lazy
        return lazy[...]

    def lazy(self, key: str) -> LazyArray:
        """Data key ``key`` as a `LazyArray`, read only when sliced."""
        if key not in self._datasets:
            raise KeyError(f"stream {self.name!r} of {self.run.path} has no data key {key!r}")
        shape, dtype = self._datasets[key]
        name = f"/{ENTRY}/{self.name}/{STREAM_DATA}/{key}"
        return LazyArray(self.run.path, name, (self._len, *shape), dtype)

    def timestamps(self, key: str) -> np.ndarray:
        """Reading timestamps (s since the epoch) of data key ``key``."""
        self.lazy(key)  # a KeyError naming the stream for a key it does not have
        return self._read(f"{STREAM_TIMESTAMPS}/{key}")

    @property
    def time(self) -> np.ndarray:
        """Event times (s since the epoch)."""
        return self._read("time")

    @property
    def seq_num(self) -> np.ndarray:
        """Event sequence numbers (1-based)."""
        return self._read("seq_num")

    @property
    def uid(self) -> np.ndarray:
        """Event uids."""
        return self._read("uid")

    def _read(self, name: str) -> np.ndarray:
        if not self._len:  # nothing written yet, maybe not even the dataset
            return np.empty(0, {"seq_num": "i8", "uid": object}.get(name, "f8"))
        with _open(self.run.path) as file:
            dataset = file[f"{ENTRY}/{self.name}/{name}"]
            if h5py.check_string_dtype(dataset.dtype):
                dataset = dataset.asstr()
            return dataset[: self._len]


class Run:
    """One run: metadata, stop status, streams.  Built by `open_runs`.

    Attributes
    ----------
    path : Path
        The run's file.
    number : int
        Run number within its location (1-based, from the file name).
    start : dict
        The start document as JSON, arrays left as ``{"$labcim_array": name}``
        references; `metadata` resolves them.
    stop : dict or None
        The stop document, or ``None`` if the run never finished (killed writer).
    streams : dict of str to Stream
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file: a run still being written shows its new events.

        Raises
        ------
        DamagedFileError
            The file is not a readable labcim run (truncated, not HDF5, a stored
            document that is not valid JSON or lacks its keys); names the file.
        """
        _retrying(self._read)
        self.__dict__.pop("metadata", None)

    def _read(self) -> None:
        with _structure(self.path) as file:
            mark = file.attrs.get(FORMAT_ATTR)
            if mark != FORMAT:
                raise DamagedFileError(self.path, format_mismatch(mark))
            entry = file[ENTRY]
            self.start: dict[str, Any] = _document(entry[METADATA], "start", START_KEYS)
            # A SWMR reader may see the link to a group the writer has just created
            # before the group itself: h5py then gives None for it.  Such a group is
            # treated as not there yet, like the stop group of a writer killed while closing.
            groups = {name: group for name, group in entry.items() if group is not None}
            stop = groups.get(STOP)
            written = stop is not None and DOCUMENT_ATTR in stop.attrs
            self.stop: dict[str, Any] | None = (
                _document(stop, "stop", STOP_KEYS) if written else None
            )
            self.streams: dict[str, Stream] = {
                name: Stream(self, group)
                for name, group in groups.items()
                if DESCRIPTORS_ATTR in group.attrs
            }

    @property
    def number(self) -> int:
        return run_number(self.path)

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """The start document, with its arrays (e.g. a weight matrix) as numpy."""
        with _structure(self.path) as file:
            group = file[f"{ENTRY}/{METADATA}"]
            return join_arrays(group.attrs[DOCUMENT_ATTR], lambda name: group[name][()])

    @property
    def uid(self) -> str:
        return self.start["uid"]

    @property
    def scan_id(self) -> int | None:
        return self.start.get("scan_id")

    @property
    def time(self) -> float:
        """Start time (s since the epoch)."""
        return self.start["time"]

    @property
    def plan_name(self) -> str | None:
        return self.start.get("plan_name")

    @property
    def plan_args(self) -> dict[str, Any]:
        """The plan's arguments, arrays included: with `plan_name`, enough to re-run it."""
        return self.metadata.get("plan_args", {})

    @property
    def exit_status(self) -> str:
        """``"success"``, ``"fail"``, ``"abort"``, or ``"incomplete"`` if never stopped."""
        return self.stop["exit_status"] if self.stop else "incomplete"

    @property
    def reason(self) -> str:
        return self.stop.get("reason", "") if self.stop else ""

    @property
    def num_events(self) -> dict[str, int]:
        """Events on disk per stream."""
        return {name: len(stream) for name, stream in self.streams.items()}

    @property
    def config(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Configuration readings: ``config[stream][device][key]``."""
        return {name: stream.config for name, stream in self.streams.items()}

    @property
    def summary(self) -> dict[str, Any] | None:
        """Last event of the ``summary`` stream as ``{key: value}``, if there is one."""
        stream = self.streams.get(SUMMARY_STREAM)
        if stream is None or not len(stream):
            return None
        return {key: _plain(stream.lazy(key)[-1]) for key in stream}

    @property
    def interruptions(self) -> list[tuple[float, str]]:
        """``(time, what)`` of every pause (``"pause"``), resumption (``"resume"``) and
        suspension (the suspender's reason) recorded, in order; time in s since the
        epoch.  Empty for a run without any, or written without bluesky's
        ``record_interruptions``."""
        stream = self.streams.get(INTERRUPTIONS_STREAM)
        if stream is None or not len(stream):
            return []
        times, said = stream.time, stream["interruption"]
        return [(float(t), str(what)) for t, what in zip(times, said, strict=True)]

    def __repr__(self) -> str:
        events = ", ".join(f"{n}={c}" for n, c in self.num_events.items())
        return (
            f"<Run {self.number} {self.plan_name} uid={self.uid[:8]} {self.exit_status}"
            f" events: {events or 'none'}>"
        )


class Runs(Sequence[Run]):
    """The runs of a location, oldest first; index by position or by uid (prefix).

    Attributes
    ----------
    damaged : list of DamagedFileError
        The run files that were skipped, each naming its file and the reason.
    """

    def __init__(self, runs: list[Run], damaged: Sequence[DamagedFileError] = ()) -> None:
        self._runs = runs
        self.damaged = list(damaged)

    @overload
    def __getitem__(self, index: int | str) -> Run: ...
    @overload
    def __getitem__(self, index: slice) -> Runs: ...
    def __getitem__(self, index: int | str | slice) -> Run | Runs:
        if isinstance(index, slice):
            return Runs(self._runs[index])
        if isinstance(index, str):
            found = [r for r in self._runs if r.uid.startswith(index)]
            if len(found) != 1:
                raise KeyError(f"{len(found)} runs have a uid starting with {index!r}")
            return found[0]
        return self._runs[index]

    def __len__(self) -> int:
        return len(self._runs)

    def __repr__(self) -> str:
        return "\n".join(["<Runs>", *(describe(run) for run in self._runs)])


def started(run: Run) -> str:
    """The run's start as local ``YYYY-mm-dd HH:MM:SS``, or the number if no date has it."""
    try:
        return datetime.datetime.fromtimestamp(run.time).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # a stored time no calendar holds
        return f"{run.time:<19}"


def describe(run: Run) -> str:
    """One line about ``run``: number, start time, plan, exit status, events, summary."""
    when = started(run)
    events = " ".join(f"{n}={c}" for n, c in run.num_events.items()) or "no events"
    plan = str(run.plan_name or "?")
    line = f"{run.number:>5}  {when}  {plan:<16} {run.exit_status:<10} {events}"
    figures = {k: v for k, v in (run.summary or {}).items() if np.ndim(v) == 0}
    if figures:
        line += "  | " + " ".join(f"{k}={_figure(v)}" for k, v in figures.items())
    return line


def open_runs(path: str | Path) -> Runs:
    """Open the runs written by `HDF5Writer` at ``path``.

    Parameters
    ----------
    path : str or Path
        What was given to the writer (index file or directory), or one run file.

    Returns
    -------
    Runs
        The runs, oldest first; a run whose writer died is there with
        ``exit_status == "incomplete"`` and every event flushed before.  A damaged run
        file is left out, with a `DamagedRunWarning` and an entry in ``Runs.damaged``.

    Raises
    ------
    FileNotFoundError
        If nothing was ever written at ``path``.
    DamagedFileError
        If ``path`` is one run file, and it is damaged.
    """
    path = Path(path)
    if RUN_FILE.fullmatch(path.name) and not path.is_dir():
        return Runs([Run(path)])
    location = Location.from_path(path)
    if not location.run_dir.is_dir():
        raise FileNotFoundError(f"no labcim runs at {path} (looked in {location.run_dir})")
    runs, damaged = [], []
    for file in location.run_files():
        try:
            runs.append(Run(file))
        except DamagedFileError as exc:
            damaged.append(exc)
            warnings.warn(f"skipped damaged run file {exc}", DamagedRunWarning, stacklevel=2)
    return Runs(runs, damaged)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
