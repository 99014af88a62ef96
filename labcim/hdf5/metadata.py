"""Documents as JSON text, with numpy arrays moved out into datasets.

No pickle anywhere: a value that JSON cannot hold is an error that names its key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from labcim.hdf5.layout import ARRAY_REF


def split_arrays(doc: Mapping[str, Any], what: str) -> tuple[str, dict[str, np.ndarray]]:
    """Encode ``doc`` as JSON text, replacing each numpy array by a reference.

    Parameters
    ----------
    doc : mapping
        A bluesky document (or any JSON-like mapping); numpy scalars become Python
        numbers, tuples become lists.
    what : str
        Name of the document for error messages, e.g. ``"start document"``.

    Returns
    -------
    text : str
        The JSON text; an array sits there as ``{"$labcim_array": "<name>"}``.
    arrays : dict of str to ndarray
        The arrays by ``name``: their dotted key path (``"plan_args.weights"``).

    Raises
    ------
    TypeError
        If a value is neither JSON-serializable nor a numpy array; the message names
        the dotted key path of the offending value.
    """
    arrays: dict[str, np.ndarray] = {}

    def convert(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, np.ndarray):
            name = ".".join(path).replace("/", "%2F")
            arrays[name] = value
            return {ARRAY_REF: name}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, Mapping):
            return {str(k): convert(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v, (*path, str(i))) for i, v in enumerate(value)]
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise TypeError(
            f"{what}: value of {'.'.join(path)!r} is a {type(value).__name__}, which is "
            "neither JSON-serializable nor a numpy array; labcim stores metadata as JSON "
            "(never pickle): pass numbers, strings, lists, dicts or numpy arrays"
        )

    return json.dumps(convert(doc, ())), arrays


def join_arrays(text: str, load: Callable[[str], Any]) -> Any:
    """Decode JSON text written by `split_arrays`, calling ``load(name)`` per array."""

    def hook(obj: dict[str, Any]) -> Any:
        return load(obj[ARRAY_REF]) if set(obj) == {ARRAY_REF} else obj

    return json.loads(text, object_hook=hook)
