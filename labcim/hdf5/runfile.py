"""One run's HDF5 file while it is written: stream buffers, datasets, flushes.

The file is created under a temporary name, filled with the start metadata, switched to
SWMR mode and only then renamed into place (never over an existing file), so a reader
never meets a run file that is not yet readable.  From then on everything is written in
SWMR mode: appends as HDF5 intends, and the few structural changes (a new stream, the
stop fields) followed at once by a flush.  See ``docs/data-layout.md``.

A new stream's group is created by the next flush, not when its descriptor arrives: the
descriptor is checked at once, on the caller's thread, and only its writing waits, so a
writer's flush thread does all of a run's file work between its start and its stop.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import labcim
from labcim.hdf5.failures import DiskFullError, check_room, discard, new_file
from labcim.hdf5.fields import write_document, write_field
from labcim.hdf5.layout import (
    DESCRIPTORS_ATTR,
    ENTRY,
    EVENT_FIELDS,
    FORMAT,
    FORMAT_ATTR,
    METADATA,
    NX_CLASS,
    NXDATA,
    PARTIAL_SUFFIX,
    STOP,
    STR_DTYPE,
    STREAM_CONFIG,
    STREAM_DATA,
    STREAM_TIMESTAMPS,
    dataset_dtype,
)
from labcim.hdf5.metadata import split_arrays
from labcim.hdf5.output import place_file

#: Target size of one chunk; a 256 x 256 float32 frame is exactly one chunk.
CHUNK_BYTES = 256 * 1024
MAX_CHUNK_ROWS = 4096
#: Readings at least this large are written row by row, not stacked into a column first.
ROW_WRITE_BYTES = 64 * 1024
#: What a new run file takes besides its start document: superblock, groups, fields.
START_BYTES = 64 * 1024


@dataclass(frozen=True)
class Storage:
    """How datasets are stored (h5py ``create_dataset`` filter options)."""

    compression: str | None = None
    compression_opts: int | None = None
    shuffle: bool = True

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_dataset``."""
        if self.compression is None:
            return {}
        return {
            "compression": self.compression,
            "compression_opts": self.compression_opts,
            "shuffle": self.shuffle,
        }


def chunk_rows(row_bytes: int) -> int:
    """Rows per chunk of a dataset whose rows take ``row_bytes``: about `CHUNK_BYTES`."""
    return int(np.clip(CHUNK_BYTES // max(1, row_bytes), 1, MAX_CHUNK_ROWS))


def iso_time(timestamp: float) -> str:
    """ISO 8601 local time with offset, as NeXus wants for ``start_time``."""
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat()


class Rows:
    """Buffered events of one stream, column by column, until a flush writes them.

    Parameters
    ----------
    keys : iterable of str
        The stream's data keys.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.data: dict[str, list[Any]] = {k: [] for k in keys}
        self.stamps: dict[str, list[float]] = {k: [] for k in self.data}
        self.events: dict[str, list[Any]] = {f: [] for f in EVENT_FIELDS}
        self.nbytes = 0  # of the readings

    def __len__(self) -> int:
        return len(self.events["time"])

    def append(self, page: Mapping[str, Any]) -> None:
        """Add the events of an event page (columns of equal length)."""
        data, stamps = page["data"], page["timestamps"]
        for key, column in self.data.items():
            column.extend(data[key])
            self.stamps[key].extend(stamps[key])
            self.nbytes += sum(getattr(v, "nbytes", 8) for v in data[key])
        for name, column in self.events.items():
            column.extend(page[name])


class StreamFile:
    """Buffered rows of one stream and the datasets they are appended to.

    Parameters
    ----------
    descriptor : mapping
        The stream's (first) descriptor document.
    storage : Storage
        Filter options for new datasets.

    Attributes
    ----------
    group : h5py.Group or None
        ``/entry/<stream name>``, once `RunFile.write` has created it.
    descriptors : list of dict
        The stream's descriptors as JSON (without configuration readings), in order.
    nxdata : (h5py.Group, set of str) or None
        For ``primary``, once written: the NXdata group and the fields it links once
        they exist.
    """

    def __init__(self, descriptor: Mapping[str, Any], storage: Storage) -> None:
        self.group: h5py.Group | None = None
        self.descriptor = descriptor
        self.descriptors: list[Any] = []
        self.nxdata: tuple[h5py.Group, set[str]] | None = None
        self.name: str = descriptor["name"]
        self.data_keys = {
            k: dk for k, dk in descriptor["data_keys"].items() if "external" not in dk
        }
        for key in self.data_keys:
            if "/" in key or key in (".", ""):
                raise ValueError(
                    f"stream {self.name!r}: data key {key!r} cannot name an HDF5 dataset"
                )
        self.storage = storage
        self.rows = Rows(self.data_keys)
        self._datasets: dict[tuple[str | None, str], h5py.Dataset] = {}
        self._length = 0  # rows with their event fields written

    @property
    def pending(self) -> int:
        """Number of buffered events not yet taken for writing."""
        return len(self.rows)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the buffered readings."""
        return self.rows.nbytes

    def take(self) -> Rows:
        """The buffered events, for writing; the buffer starts empty again."""
        rows, self.rows = self.rows, Rows(self.data_keys)
        return rows

    def needed_bytes(self, rows: Rows) -> int:
        """At most how much writing ``rows`` adds to the file (bytes).

        The chunks their rows start in every dataset (whole chunks are allocated), and
        the uids' text in the heap.
        """
        n = len(rows)
        if not n:
            return 0
        row_bytes = [8, 8, STR_DTYPE.itemsize]  # time, seq_num, uid
        for values in rows.data.values():
            row_bytes += [getattr(values[0], "nbytes", 8), 8]  # the reading, its timestamp
        total = n * 64
        for size in row_bytes:
            per_chunk = chunk_rows(size)
            chunks = -(-(self._length + n) // per_chunk) - -(-self._length // per_chunk)
            total += chunks * per_chunk * max(1, size)
        return total

    def append(self, page: Mapping[str, Any]) -> None:
        """Buffer the events of an event page (columns of equal length)."""
        self.rows.append(page)

    def write_data(self, rows: Rows, path: Path) -> None:
        """Write the readings of ``rows``: the first of `RunFile.flush`'s two steps."""
        if not rows:
            return
        for key, values in rows.data.items():
            if getattr(values[0], "nbytes", 0) >= ROW_WRITE_BYTES:
                self._put_rows(key, values, path)
            else:
                self._put(STREAM_DATA, key, self._column(key, values, path))
            self._put(STREAM_TIMESTAMPS, key, np.asarray(rows.stamps[key], "f8"))

    def write_events(self, rows: Rows) -> None:
        """Write the time, seq_num and uid of ``rows``, which make their rows count."""
        if not rows:
            return
        for name, dtype in (("time", "f8"), ("seq_num", "i8"), ("uid", STR_DTYPE)):
            self._put(None, name, np.asarray(rows.events[name], dtype))
        self._length += len(rows)

    def clear(self) -> None:
        """Forget the buffered events (they could not be written)."""
        self.take()

    def _column(self, key: str, rows: Sequence[Any], path: Path) -> np.ndarray:
        dtype = dataset_dtype(self.data_keys[key], rows[0])
        try:
            column = np.asarray(rows if dtype is STR_DTYPE else [np.asarray(r) for r in rows])
            return column.astype(dtype, copy=False)
        except ValueError as exc:
            raise ValueError(
                f"{path}: stream {self.name!r}, data key {key!r}: values of differing shapes "
                f"cannot be appended to one dataset ({exc})"
            ) from exc

    def _put(self, subgroup: str | None, name: str, column: np.ndarray) -> None:
        """Write ``column`` as the rows after the events counted so far, growing the dataset.

        Starting from the count, not the dataset's length, a batch that failed half way
        (no room, a shape that changed) leaves no misaligned rows behind: they are
        overwritten by the next batch.
        """
        self._dataset(subgroup, name, column.shape[1:], column.dtype, len(column))[
            self._length :
        ] = column

    def _put_rows(self, key: str, rows: Sequence[Any], path: Path) -> None:
        """`_put` for large readings: each row written from the event's own array.

        Stacking the rows into one column first would copy every frame once more in
        memory; h5py writes a row that is one chunk as fast as a slice of a column.
        """
        first = np.asarray(rows[0])
        for row in rows:
            if np.shape(row) != first.shape:
                raise ValueError(
                    f"{path}: stream {self.name!r}, data key {key!r}: values of differing "
                    f"shapes cannot be appended to one dataset ({np.shape(row)} after "
                    f"{first.shape})"
                )
        dtype = dataset_dtype(self.data_keys[key], first)
        dataset = self._dataset(STREAM_DATA, key, first.shape, dtype, len(rows))
        for i, row in enumerate(rows, start=self._length):
            dataset[i] = row

    def _dataset(
        self, subgroup: str | None, name: str, row_shape: tuple, dtype: np.dtype, rows: int
    ) -> h5py.Dataset:
        """The dataset ``name``, created if new, grown to hold ``rows`` more after the count."""
        # Datasets stay open until the file closes: closing one flushes it, and a flush
        # that fails (full disk) in a close would leave HDF5 unable to close the file.
        dataset = self._datasets.get((subgroup, name))
        if dataset is None:
            parent = self.group if subgroup is None else self.group.require_group(subgroup)
            dataset = self._datasets[subgroup, name] = self._create(parent, name, row_shape, dtype)
        if dataset.shape[1:] != row_shape:
            raise ValueError(
                f"{dataset.file.filename}: stream {self.name!r}, {name!r}: shape "
                f"{row_shape} differs from the earlier {dataset.shape[1:]}"
            )
        end = self._length + rows
        if dataset.shape[0] != end:
            dataset.resize(end, axis=0)
        return dataset

    def _create(
        self, parent: h5py.Group, name: str, row_shape: tuple, dtype: np.dtype
    ) -> h5py.Dataset:
        rows = chunk_rows(dtype.itemsize * int(np.prod(row_shape)))
        dataset = parent.create_dataset(
            name,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            chunks=(rows, *row_shape) if all(row_shape) else None,
            dtype=dtype,
            **self.storage.options(),
        )
        if self.nxdata is not None and parent.name.endswith(f"/{STREAM_DATA}"):
            group, fields = self.nxdata
            if name in fields:
                group[name] = dataset  # a hard link: NeXus viewers plot it
        return dataset


@dataclass
class Pending:
    """What one flush writes, taken from a run while the writer holds its buffers.

    Attributes
    ----------
    streams : list of (StreamFile, list of dict)
        Streams whose group or descriptors the file does not hold yet, each with its
        descriptors as they were when taken.
    rows : list of (StreamFile, Rows)
        The buffered events, stream by stream.
    sync : bool
        The file holds changes that have reached the OS but maybe not the disk.
    """

    streams: list[tuple[StreamFile, list[Any]]]
    rows: list[tuple[StreamFile, Rows]]
    sync: bool = False

    def __bool__(self) -> bool:
        return bool(self.streams or self.rows or self.sync)


class RunFile:
    """The open file of one run, from its start document to its stop document."""

    def __init__(self, path: Path, file: h5py.File, start: Mapping[str, Any], fsync: bool):
        self.path = path
        self.file = file
        self.start = start
        self.fsync = fsync
        self.streams: dict[str, StreamFile] = {}
        self.lost = ""  # why buffered events were dropped, if they were
        self._unwritten: list[StreamFile] = []  # descriptors not in the file yet
        self._unsynced = False  # handed to the OS, not yet to the disk

    @classmethod
    def create(
        cls,
        path: Path,
        start: Mapping[str, Any],
        text: str,
        arrays: Mapping[str, np.ndarray],
        fsync: bool,
    ) -> RunFile:
        """Create the run file at ``path`` with the start document, in SWMR mode.

        ``text`` and ``arrays`` are ``start`` split by `split_arrays`.
        """
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        check_room(path, len(text) + sum(a.nbytes for a in arrays.values()) + START_BYTES)
        file = new_file(partial, latest=True)
        try:
            file.attrs.update(
                {
                    NX_CLASS: "NXroot",
                    "default": ENTRY,
                    "creator": f"labcim {labcim.__version__}",
                    "file_time": iso_time(start["time"]),
                    "HDF5_Version": h5py.version.hdf5_version,
                    "h5py_version": h5py.version.version,
                    FORMAT_ATTR: FORMAT,
                }
            )
            entry = file.create_group(ENTRY)
            entry.attrs[NX_CLASS] = "NXentry"
            entry.attrs["default"] = NXDATA
            write_field(entry, "entry_identifier", start["uid"])
            write_field(entry, "title", start.get("plan_name", ""))
            write_field(entry, "start_time", iso_time(start["time"]))
            write_document(entry.create_group(METADATA), start, text, arrays)
            file.swmr_mode = True
            file.flush()
            place_file(partial, path)
        except BaseException:
            discard(file)
            partial.unlink(missing_ok=True)
            raise
        run = cls(path, file, start, fsync)
        run._unsynced = True  # the next flush (the writer's timer) puts it on the disk
        return run

    @property
    def entry(self) -> h5py.Group:
        return self.file[ENTRY]

    @property
    def pending_bytes(self) -> int:
        return sum(s.pending_bytes for s in self.streams.values())

    @property
    def pending(self) -> bool:
        return any(s.pending for s in self.streams.values())

    def add_stream(self, descriptor: Mapping[str, Any], storage: Storage) -> StreamFile:
        """Check a stream's descriptor and keep it for the next `write`.

        A new stream's group (with its configuration readings and, for ``primary``, the
        NXdata group) is created by the next `write`; a repeated descriptor is added to
        its stream's list there.  What would fail to be written is refused here.

        Returns
        -------
        StreamFile
            The stream, new or the one of an earlier descriptor of the same name.
        """
        name = descriptor["name"]
        text, arrays = split_arrays(_without_config_values(descriptor), f"descriptor {name!r}")
        if arrays:
            raise TypeError(
                f"{self.path}: descriptor {name!r} holds arrays outside its configuration"
            )
        stream = self.streams.get(name)
        if stream is not None:
            if descriptor["data_keys"].keys() != stream.data_keys.keys() | _external(descriptor):
                raise ValueError(f"{self.path}: stream {name!r} changed its data keys mid-run")
        else:
            if "/" in name or name in (METADATA, STOP, NXDATA, ""):
                raise ValueError(f"{self.path}: stream name {name!r} cannot name an HDF5 group")
            for obj, config in descriptor.get("configuration", {}).items():
                for key, value in config.get("data", {}).items():
                    split_arrays({key: value}, f"{self.path}: configuration of {obj!r}")
            stream = self.streams[name] = StreamFile(descriptor, storage)
        stream.descriptors.append(json.loads(text))
        if stream not in self._unwritten:
            self._unwritten.append(stream)
        return stream

    def _write_streams(self, streams: Sequence[tuple[StreamFile, list[Any]]]) -> None:
        """Create the groups of new streams and store every stream's descriptors."""
        for stream, descriptors in streams:
            if stream.group is not None:
                stream.group.attrs[DESCRIPTORS_ATTR] = json.dumps(descriptors)
                continue
            group = self.entry.create_group(stream.name)
            group.attrs[NX_CLASS] = "NXcollection"
            group.attrs[DESCRIPTORS_ATTR] = json.dumps(descriptors)
            self._write_config(group.create_group(STREAM_CONFIG), stream.descriptor)
            if stream.name == "primary":
                stream.nxdata = self._nxdata(stream.descriptor)
            stream.group = group

    def _write_config(self, group: h5py.Group, descriptor: Mapping[str, Any]) -> None:
        for obj, config in descriptor.get("configuration", {}).items():
            obj_group = group.create_group(obj)
            for key, value in config.get("data", {}).items():
                write_field(obj_group, key, value)
                obj_group[key].attrs["timestamp"] = config.get("timestamps", {}).get(key, np.nan)

    def _nxdata(self, descriptor: Mapping[str, Any]) -> tuple[h5py.Group, set[str]]:
        """NXdata group naming the hinted detector field as signal and the motors as axes."""
        keys = descriptor["data_keys"]
        axes = [
            f
            for fields, stream in self.start.get("hints", {}).get("dimensions", [])
            if stream == descriptor["name"]
            for f in fields
            if f in keys
        ]
        hinted = [
            f
            for h in descriptor.get("hints", {}).values()
            for f in h.get("fields", [])
            if f in keys
        ]
        signals = [f for f in hinted if f not in axes] or [k for k in keys if k not in axes]
        group = self.entry.create_group(NXDATA)
        group.attrs[NX_CLASS] = "NXdata"
        if signals:
            rank = 1 + len(keys[signals[0]].get("shape", []))
            group.attrs["signal"] = signals[0]
            group.attrs["axes"] = [axes[0] if axes else ".", *["."] * (rank - 1)]
            if len(signals) > 1:
                group.attrs["auxiliary_signals"] = signals[1:]
        for i, axis in enumerate(axes[:1]):
            group.attrs[f"{axis}_indices"] = i
        return group, {*signals, *axes}

    def drop_pending(self, reason: str) -> None:
        """Forget every buffered event: they found no room, or did not fit their datasets.

        ``reason`` is kept (the first one) for the stop document, see `close`.
        """
        for stream in self.streams.values():
            stream.clear()
        self.lost = self.lost or reason

    def flush(self) -> None:
        """Write every buffered event and push the file to the OS (and disk with fsync)."""
        self.write(self.take())

    def take(self) -> Pending:
        """What the file lacks: new descriptors, every stream's buffered events, a sync.

        For `write`; the buffers start empty again.  A writer takes them while it holds
        its buffers and writes them after it let go, so that documents arriving
        meanwhile are buffered without waiting for the disk.
        """
        streams = [(stream, list(stream.descriptors)) for stream in self._unwritten]
        self._unwritten = []
        sync, self._unsynced = self._unsynced, False
        rows = [(stream, stream.take()) for stream in self.streams.values() if stream.pending]
        return Pending(streams, rows, sync)

    def write(self, pending: Pending) -> None:
        """Write what `take` returned and push the file to the OS (and disk with fsync).

        New streams' groups come first, flushed at once (a structural change in SWMR
        mode).  The readings are pushed out before the events' time, seq_num and uid
        are written, and a reader counts only rows with a seq_num: HDF5 may store a
        dataset's new length even when writing its data failed (full disk), and rows
        of fill values must never pass for events.  Batches are written in the order
        they were taken (the caller keeps one flush at a time).

        Raises
        ------
        DiskFullError
            When the disk has no room for a stream's batch, after the batches before it
            are written (the streams in the order they began).
        """
        if pending.streams:
            self._write_streams(pending.streams)
            self.file.flush()
        batches, refused = self._fitting(pending.rows)
        for stream, rows in batches:
            stream.write_data(rows, self.path)
        if batches:
            self._sync()
            for stream, rows in batches:
                stream.write_events(rows)
        self._sync()
        if refused is not None:
            raise refused

    def _fitting(
        self, batches: list[tuple[StreamFile, Rows]]
    ) -> tuple[list[tuple[StreamFile, Rows]], DiskFullError | None]:
        """The leading ``batches`` the disk has room for, and the error refusing the rest."""
        if not batches:
            return batches, None
        size = os.fstat(self.file.id.get_vfd_handle()).st_size
        needed = 0
        for i, (stream, rows) in enumerate(batches):
            needed += stream.needed_bytes(rows)
            try:
                check_room(self.path, needed, size)
            except DiskFullError as exc:
                return batches[:i], exc
        return batches, None

    def _sync(self) -> None:
        self.file.flush()
        if self.fsync:
            os.fsync(self.file.id.get_vfd_handle())

    def close(self, stop: Mapping[str, Any]) -> None:
        """Flush, write the stop document and close the file.

        If events were dropped (`drop_pending`), also now because the last ones found
        no room or did not fit their datasets, the stop document is written all the
        same (into the reserve kept for it), with exit status ``"fail"`` and the reason.

        Raises
        ------
        DiskFullError, ValueError, TypeError
            Why the last events were dropped, after the stop document is written.
        """
        split_arrays(stop, f"{self.path}: stop document")  # checked before anything
        refused = None
        try:
            self.flush()
        except (DiskFullError, ValueError, TypeError) as exc:  # nothing of them written
            self.drop_pending(str(exc))
            refused = exc
        if self.lost and stop.get("exit_status") == "success":
            stop = {**stop, "exit_status": "fail", "reason": f"events not saved: {self.lost}"}
        text, arrays = split_arrays(stop, f"{self.path}: stop document")
        write_field(self.entry, "end_time", iso_time(stop["time"]))
        write_document(self.entry.create_group(STOP), stop, text, arrays)
        self._sync()
        self.file.close()
        if refused is not None:
            raise refused


def _external(descriptor: Mapping[str, Any]) -> set[str]:
    return {k for k, dk in descriptor["data_keys"].items() if "external" in dk}


def _without_config_values(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """The descriptor without configuration readings, which live in ``config/``."""
    config = {
        obj: {k: v for k, v in c.items() if k not in ("data", "timestamps")}
        for obj, c in descriptor.get("configuration", {}).items()
    }
    return {**descriptor, "configuration": config}
