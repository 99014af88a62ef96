"""`open_runs`: the runs of a location as plain Python objects and numpy arrays.

Files are opened in SWMR read mode only for the moment of a read, so any number of runs
can be listed, a run still being written can be read (``refresh()`` shows its growth),
and a run whose writer was killed opens like any other, reported as ``"incomplete"``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, overload

import h5py
import numpy as np

from labcim.hdf5.fields import read_field
from labcim.hdf5.layout import (
    DESCRIPTORS_ATTR,
    DOCUMENT_ATTR,
    ENTRY,
    EVENT_FIELDS,
    FORMAT_ATTR,
    METADATA,
    RUN_FILE,
    STOP,
    STREAM_CONFIG,
    STREAM_DATA,
    STREAM_TIMESTAMPS,
    SUMMARY_STREAM,
    Location,
    dataset_dtype,
    run_number,
)
from labcim.hdf5.metadata import join_arrays

#: Datasets larger than this are handed out as `LazyArray` rather than read whole.
LAZY_ABOVE_BYTES = 32 * 2**20


@contextlib.contextmanager
def _open(path: Path, attempts: int = 5) -> Iterator[h5py.File]:
    """Open a run file for reading, retrying briefly while its writer adds structure."""
    for attempt in range(attempts):
        try:
            file = h5py.File(path, "r", swmr=True)
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
        else:
            break
    with file:
        yield file


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


class Stream(Mapping[str, "np.ndarray | LazyArray"]):
    """One stream of a run: ``stream["det"]`` is that data key over the events.

    Arrays come back as numpy (strings as ``str`` objects), or as `LazyArray` when larger
    than ``LAZY_ABOVE_BYTES``; ``stream.lazy(key)`` always gives a `LazyArray`.
    """

    def __init__(self, run: Run, group: h5py.Group) -> None:
        self.run = run
        self.name: str = group.name.rsplit("/", 1)[-1]
        self.descriptors: list[dict[str, Any]] = json.loads(group.attrs[DESCRIPTORS_ATTR])
        self.data_keys: dict[str, dict[str, Any]] = self.descriptors[0]["data_keys"]
        data = group.get(STREAM_DATA, {})
        # Rows complete in every dataset; the writer appends the event fields last.
        lengths = [len(group[f]) if f in group else 0 for f in EVENT_FIELDS]
        lengths += [len(data[k]) for k in data]
        self._len = min(lengths)
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

    def refresh(self, attempts: int = 5) -> None:
        """Re-read the file: a run still being written shows its new events.

        The writer adds groups and datasets (a new stream) while in SWMR mode, which
        HDF5 does not make atomic for readers: a reader may catch the structure half
        written (an object address past the end of the file, a link without its
        object).  That is retried briefly, as it resolves once the writer flushes.
        """
        for attempt in range(attempts):
            try:
                self._read()
                break
            except (KeyError, OSError):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.__dict__.pop("metadata", None)

    def _read(self) -> None:
        with _open(self.path) as file:
            if file.attrs.get(FORMAT_ATTR) is None:
                raise ValueError(f"{self.path} is not a labcim run file")
            entry = file[ENTRY]
            self.start: dict[str, Any] = json.loads(entry[METADATA].attrs[DOCUMENT_ATTR])
            # A SWMR reader may see the link to a group the writer has just created
            # before the group itself: h5py then gives None for it.  Such a group is
            # treated as not there yet, like the stop group of a writer killed while closing.
            groups = {name: group for name, group in entry.items() if group is not None}
            stop = groups[STOP].attrs.get(DOCUMENT_ATTR) if STOP in groups else None
            self.stop: dict[str, Any] | None = json.loads(stop) if stop is not None else None
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
        with _open(self.path) as file:
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

    def __repr__(self) -> str:
        events = ", ".join(f"{n}={c}" for n, c in self.num_events.items())
        return (
            f"<Run {self.number} {self.plan_name} uid={self.uid[:8]} {self.exit_status}"
            f" events: {events or 'none'}>"
        )


class Runs(Sequence[Run]):
    """The runs of a location, oldest first; index by position or by uid (prefix)."""

    def __init__(self, runs: list[Run]) -> None:
        self._runs = runs

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


def describe(run: Run) -> str:
    """One line about ``run``: number, start time, plan, exit status, events, summary."""
    when = datetime.datetime.fromtimestamp(run.time).strftime("%Y-%m-%d %H:%M:%S")
    events = " ".join(f"{n}={c}" for n, c in run.num_events.items()) or "no events"
    line = f"{run.number:>5}  {when}  {run.plan_name or '?':<16} {run.exit_status:<10} {events}"
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
        ``exit_status == "incomplete"`` and every event flushed before.

    Raises
    ------
    FileNotFoundError
        If nothing was ever written at ``path``.
    """
    path = Path(path)
    if RUN_FILE.fullmatch(path.name):
        return Runs([Run(path)])
    location = Location.from_path(path)
    if not location.run_dir.is_dir():
        raise FileNotFoundError(f"no labcim runs at {path} (looked in {location.run_dir})")
    return Runs([Run(p) for p in location.run_files()])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
