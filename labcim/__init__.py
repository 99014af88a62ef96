"""labcim: instrument control and experiment orchestration for compute-in-memory chips.

The public face of the framework.  See ``docs/architecture.md`` for the layers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labcim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from labcim.hdf5 import HDF5Writer, open_runs

__all__ = ["HDF5Writer", "__version__", "open_runs"]
