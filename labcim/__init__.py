"""labcim: instrument control and experiment orchestration for compute-in-memory chips.

The public face of the framework.  See ``docs/architecture.md`` for the layers.

The names below are imported on first use (PEP 562): ``import labcim`` alone loads none
of bluesky, ophyd or h5py, so a command that needs none of them (``labcim --help``, a
simulated board's server, a one-line error) starts without paying for them.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("labcim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from labcim.connection import connect, connect_smu
    from labcim.devices import SMU, ChipTestBoard, CIMCore
    from labcim.engine import session
    from labcim.hdf5 import HDF5Writer, open_runs

# Public name -> the module that defines it.
_LAZY = {
    "connect": "labcim.connection",
    "connect_smu": "labcim.connection",
    "SMU": "labcim.devices",
    "ChipTestBoard": "labcim.devices",
    "CIMCore": "labcim.devices",
    "session": "labcim.engine",
    "HDF5Writer": "labcim.hdf5",
    "open_runs": "labcim.hdf5",
}

__all__ = [
    "SMU",
    "CIMCore",
    "ChipTestBoard",
    "HDF5Writer",
    "__version__",
    "connect",
    "connect_smu",
    "open_runs",
    "session",
]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'labcim' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
