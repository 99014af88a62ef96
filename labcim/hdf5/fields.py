"""Readable HDF5 fields for JSON-like values, shared by the writer and the reader.

Documents are kept whole as JSON text in an attribute (the reader's source of truth);
their top-level values are also written as plain fields so that a person browsing the
file in a viewer reads ``plan_name``, ``scan_id`` or ``exit_status`` without parsing JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from labcim.hdf5.layout import DOCUMENT_ATTR, JSON_ATTR, NX_CLASS, STR_DTYPE


def write_field(group: h5py.Group, name: str, value: Any) -> None:
    """Write ``value`` as field ``name``: native when it is a string, number or array.

    Anything else (lists, dicts, ``None``) becomes JSON text marked with a
    ``labcim_json`` attribute; ``value`` must already be JSON-serializable.
    """
    if isinstance(value, str):
        group.create_dataset(name, data=value, dtype=STR_DTYPE)
    elif isinstance(value, bool | int | float | np.ndarray | np.generic):
        group.create_dataset(name, data=value)
    else:
        group.create_dataset(name, data=json.dumps(value), dtype=STR_DTYPE)
        group[name].attrs[JSON_ATTR] = True


def read_field(dataset: h5py.Dataset) -> Any:
    """Inverse of `write_field` (0-d numbers come back as numpy scalars)."""
    if dataset.attrs.get(JSON_ATTR, False):
        return json.loads(dataset.asstr()[()])
    if h5py.check_string_dtype(dataset.dtype):
        return dataset.asstr()[()]
    return dataset[()]


def write_document(
    group: h5py.Group, doc: Mapping[str, Any], text: str, arrays: Mapping[str, np.ndarray]
) -> None:
    """Store a document split by `labcim.hdf5.metadata.split_arrays` in ``group``.

    The JSON ``text`` goes to the ``labcim_document`` attribute, each array to a dataset
    named by its dotted key path, and every other top-level value to a readable field.
    """
    group.attrs[NX_CLASS] = "NXcollection"
    group.attrs[DOCUMENT_ATTR] = text
    for name, array in arrays.items():
        group.create_dataset(name, data=array)
    for key, value in json.loads(text).items():
        if key not in group:
            write_field(group, key.replace("/", "%2F"), value)
