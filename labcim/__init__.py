"""labcim: instrument control and experiment orchestration for compute-in-memory chips.

The public face of the framework.  See ``docs/architecture.md`` for the layers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labcim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from labcim.connection import connect, connect_smu
from labcim.devices import SMU, ChipTestBoard, CIMCore
from labcim.engine import session
from labcim.hdf5 import HDF5Writer, open_runs

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
