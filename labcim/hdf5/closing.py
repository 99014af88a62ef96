"""Letting go of an HDF5 file that can no longer be written (full disk, I/O error).

After a failed write, HDF5 (2.0) can neither flush nor close the file: closing a dataset
fails, the failed dataset stays registered while its memory is freed, and a later close
of the group or file, or the library's shutdown at exit, uses it: "Can't decrement id
ref count" for every open object, then a segmentation fault.  `discard` first points the
file's descriptor at the null device, so the writes the close still attempts succeed
and go nowhere, then closes the objects in HDF5's own order.  What reached the disk
before the failure stays as it was, like a run whose writer was killed.
"""

from __future__ import annotations

import contextlib
import os

import h5py


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
