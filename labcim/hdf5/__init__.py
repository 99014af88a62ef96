"""Results on disk: one HDF5 (NeXus) file per bluesky run, written as it streams.

``HDF5Writer`` is the bluesky callback, ``open_runs`` the reader.  The layout is described
in ``docs/data-layout.md``.
"""

from labcim.hdf5.reader import LazyArray, Run, Runs, Stream, open_runs
from labcim.hdf5.writer import HDF5Writer

__all__ = ["HDF5Writer", "LazyArray", "Run", "Runs", "Stream", "open_runs"]
