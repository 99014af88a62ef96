"""labcim: instrument control and experiment orchestration for compute-in-memory chips.

The public face of the framework.  See ``docs/architecture.md`` for the layers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labcim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
