"""The index file: one external link per run file, for general HDF5/NeXus viewers.

labcim's reader never needs it (the run directory's listing is the truth); it is rebuilt
whole into a temporary file and renamed over the old one, so it is never half-written,
and only ever over a labcim index (`labcim.hdf5.output.check_index`).
"""

from __future__ import annotations

import os
import secrets

import h5py

import labcim
from labcim.hdf5.failures import discard, new_file
from labcim.hdf5.layout import ENTRY, FORMAT_ATTR, INDEX_FORMAT, NX_CLASS, Location
from labcim.hdf5.output import check_index


def write_index(location: Location) -> None:
    """Rebuild ``location.index`` from the run files present now.

    Raises
    ------
    ForeignFileError
        If something other than a labcim index has appeared at the index path.
    OSError
        If the index cannot be written (the old one is then left as it was).
    """
    runs = location.run_files()
    check_index(location)
    tmp = location.index.with_name(f".{location.index.name}.{secrets.token_hex(6)}.tmp")
    try:
        index = new_file(tmp)  # a new, random name: never another file
        try:
            creator = f"labcim {labcim.__version__}"
            index.attrs.update({NX_CLASS: "NXroot", FORMAT_ATTR: INDEX_FORMAT, "creator": creator})
            if runs:
                index.attrs["default"] = runs[-1].stem
            for run in runs:
                target = os.path.relpath(run, location.index.parent)
                index[run.stem] = h5py.ExternalLink(target, f"/{ENTRY}")
            index.close()
        except BaseException:
            discard(index)
            raise
        os.replace(tmp, location.index)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
