"""The index file: one external link per run file, for general HDF5/NeXus viewers.

labcim's reader never needs it (the run directory's listing is the truth); it is rebuilt
whole into a temporary file and renamed over the old one, so it is never half-written.
"""

from __future__ import annotations

import os

import h5py

from labcim.hdf5.layout import ENTRY, NX_CLASS, Location


def write_index(location: Location) -> None:
    """Rebuild ``location.index`` from the run files present now."""
    runs = location.run_files()
    tmp = location.index.with_name(f".{location.index.name}.{os.getpid()}.tmp")
    with h5py.File(tmp, "w") as index:
        index.attrs[NX_CLASS] = "NXroot"
        if runs:
            index.attrs["default"] = runs[-1].stem
        for run in runs:
            target = os.path.relpath(run, location.index.parent)
            index[run.stem] = h5py.ExternalLink(target, f"/{ENTRY}")
    os.replace(tmp, location.index)
