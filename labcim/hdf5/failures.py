"""Write failures: room kept to close a run cleanly, and letting go of a broken file.

A run file is only written when the disk (and the process's file size limit) has room
for the write plus `RESERVE_BYTES`, so that a full disk ends the run with its stop
document written (exit status ``"fail"``, the reason saying so) instead of an HDF5 write
failing half way.  `check_room` raises `DiskFullError` before anything is written.

If a write fails anyway (another program filled the disk in between, an I/O error),
HDF5 (2.0) can neither flush nor close the file: closing a dataset fails, the failed
dataset stays registered while its memory is freed, and a later close of the group or
file, or the library's shutdown at exit, uses it: "Can't decrement id ref count" for
every open object, then a segmentation fault.  `discard` first points the file's
descriptor at the null device, so the writes the close still attempts succeed and go
nowhere, then closes the objects in HDF5's own order.  What reached the disk before the
failure stays as it was, like a run whose writer was killed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

import h5py

#: Bytes kept free for closing a run (stop document, final flush, index).
RESERVE_BYTES = 2**20


class DiskFullError(OSError):
    """No room for the next write; nothing of it was written, the file is intact."""


def check_room(path: Path, needed: int, size: int = 0) -> None:
    """Raise `DiskFullError` unless a file at ``path`` of ``size`` bytes may grow by
    ``needed`` bytes and still leave `RESERVE_BYTES`.

    Both the free space of the file system (as the process's user sees it) and the
    process's file size limit (``RLIMIT_FSIZE``, where the platform has one) count.
    """
    usage = shutil.disk_usage(path if path.is_dir() else path.parent)
    free = usage.free
    if usage.total and free < needed + RESERVE_BYTES:  # a total of 0: the size is unknown
        raise DiskFullError(
            errno.ENOSPC,
            f"cannot write {path}: {os.strerror(errno.ENOSPC)} ({_size(free)} free, "
            f"{_size(needed)} needed and {_size(RESERVE_BYTES)} kept to close the run)",
        )
    limit = _file_size_limit()
    if limit is not None and size + needed + RESERVE_BYTES > limit:
        raise DiskFullError(
            errno.EFBIG,
            f"cannot write {path}: {os.strerror(errno.EFBIG)} ({_size(size)} written, "
            f"{_size(needed)} more needed and {_size(RESERVE_BYTES)} kept to close the "
            f"run; files may have {_size(limit)})",
        )


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def new_file(path: Path, *, latest: bool = False) -> h5py.File:
    """Create ``path`` for writing (failing if it exists), each write reaching the OS at once.

    HDF5's sieve buffer would hold small raw data (the start document's fields) until a
    dataset is closed, and a dataset closed by the garbage collector cannot report a
    failed write but corrupts HDF5's state (see `discard`).  Without it the write call
    itself fails, in order.

    Parameters
    ----------
    latest : bool
        HDF5's latest file format (needed for SWMR), else the most widely readable.
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    low = h5py.h5f.LIBVER_LATEST if latest else h5py.h5f.LIBVER_EARLIEST
    fapl.set_libver_bounds(low, h5py.h5f.LIBVER_LATEST)
    fapl.set_sieve_buf_size(0)
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_EXCL, fapl=fapl))


def discard(file: h5py.File) -> None:
    """Close ``file`` after a write to it failed, dropping whatever it had not written.

    Never raises: the write error is the one worth reporting.  Every h5py object of the
    file (datasets, groups) becomes invalid.
    """
    with contextlib.suppress(Exception):
        if not file.id.valid:
            return
        descriptor = file.id.get_vfd_handle()
        sink = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(sink, descriptor)
        finally:
            os.close(sink)
    with contextlib.suppress(Exception):
        file.close()
