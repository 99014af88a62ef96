"""Names and paths shared by the HDF5 writer and reader (see ``docs/data-layout.md``).

A *location* is what the user passes as ``path``: either a directory of run files, or an
index file (``results.h5``) next to which the run files live in ``results.h5.runs/``.
Each run is one HDF5 file, so a crash can only ever touch the run being written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: Suffixes that make ``path`` an index file rather than a directory.
FILE_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5")
INDEX_NAME = "index.h5"
RUNS_DIR_SUFFIX = ".runs"
RUN_FILE = re.compile(r"run_(\d+)_[0-9A-Za-z]*\.h5")
#: Suffix of a run file until its start metadata is complete and SWMR is on.
PARTIAL_SUFFIX = ".partial"

FORMAT = "labcim-run/1"
INDEX_FORMAT = "labcim-index/1"
ENTRY = "entry"
METADATA = "metadata"
STOP = "stop"
NXDATA = "data"
NX_CLASS = "NX_class"
# Attributes holding documents as JSON text: the reader's source of truth.
DOCUMENT_ATTR = "labcim_document"  # on /entry/metadata (start) and /entry/stop
DESCRIPTORS_ATTR = "labcim_descriptors"  # on each stream group: a JSON list
JSON_ATTR = "labcim_json"  # marks a readable field holding JSON text
FORMAT_ATTR = "labcim_format"  # FORMAT on a run file's root, INDEX_FORMAT on an index's


# Marker of an array stored as a dataset, in place of the value in the JSON metadata.
ARRAY_REF = "$labcim_array"

# Per-stream groups and datasets.
STREAM_DATA = "data"
STREAM_TIMESTAMPS = "timestamps"
STREAM_CONFIG = "config"
EVENT_FIELDS = ("time", "seq_num", "uid")  # written after the data keys of each batch
SUMMARY_STREAM = "summary"
#: The RunEngine's record of pauses, resumptions and suspensions (their reasons), one
#: event each; labcim's RunEngines keep it (``record_interruptions``).
INTERRUPTIONS_STREAM = "interruptions"

STR_DTYPE = h5py.string_dtype()
KIND_DTYPES = {"number": np.dtype("f8"), "integer": np.dtype("i8"), "boolean": np.dtype("?")}


@dataclass(frozen=True)
class Location:
    """Where the runs of one ``path`` live.

    Attributes
    ----------
    run_dir : Path
        Directory holding one ``run_NNNNNN_<uid>.h5`` file per run.
    index : Path
        File with one external link per run, for general HDF5/NeXus viewers.
    """

    run_dir: Path
    index: Path

    @classmethod
    def from_path(cls, path: str | Path) -> Location:
        """Resolve a user path: an index file (known HDF5 suffix) or a directory.

        An existing directory (also ``.``) is a directory location whatever its name;
        ``dir/index.h5`` with no ``dir/index.h5.runs`` beside it is the index of the
        directory location ``dir``.
        """
        path = Path(path)
        if not path.name or path.is_dir():  # ".", "/" have no name to add a suffix to
            return cls(path, path / INDEX_NAME)
        runs_beside = path.with_name(path.name + RUNS_DIR_SUFFIX)
        if path.name == INDEX_NAME and not runs_beside.is_dir():
            return cls(path.parent, path)
        if path.suffix.lower() in FILE_SUFFIXES:
            return cls(path.with_name(path.name + RUNS_DIR_SUFFIX), path)
        return cls(path, path / INDEX_NAME)

    def run_files(self) -> list[Path]:
        """Run files in run-number order (the directory listing is the source of truth)."""
        if not self.run_dir.is_dir():
            return []
        runs = [p for p in self.run_dir.iterdir() if RUN_FILE.fullmatch(p.name)]
        return sorted(runs, key=lambda p: (run_number(p), p.name))


def run_file_name(number: int, uid: str) -> str:
    """File name of run ``number`` (1-based) with start uid ``uid``."""
    return f"run_{number:06d}_{re.sub('[^0-9A-Za-z]', '', uid)[:8]}.h5"


def run_number(path: Path) -> int:
    """Run number encoded in a run file name."""
    return int(RUN_FILE.fullmatch(path.name)[1])


def dataset_dtype(data_key: Mapping[str, Any], sample: Any) -> np.dtype:
    """HDF5 dtype for a data key: descriptor first, the first value as a fallback."""
    if data_key.get("dtype") == "string":
        return STR_DTYPE
    if data_key.get("dtype_numpy"):
        spec = data_key["dtype_numpy"]
        dtype = np.dtype(spec if isinstance(spec, str) else [tuple(f) for f in spec])
    else:  # promote, e.g. ophyd.sim motors declare "integer" but read floats
        dtype = np.result_type(KIND_DTYPES.get(data_key.get("dtype"), "?"), np.asarray(sample))
    return STR_DTYPE if dtype.kind in "USO" else dtype


def format_mismatch(mark: object) -> str:
    """Why a file whose ``FORMAT_ATTR`` is ``mark`` (not `FORMAT`) is not read."""
    if isinstance(mark, str) and mark.startswith("labcim-run/"):
        return (
            f"a labcim run file of format {mark!r}, which this labcim ({FORMAT}) cannot "
            "read: update labcim"
        )
    return f"not a labcim run file (no {FORMAT!r} mark)"
