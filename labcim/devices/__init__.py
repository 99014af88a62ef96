"""ophyd devices of labcim: the chip test board, its cores and FPGA, and the SMU.

See ``docs/devices.md`` for the device trees, signal names and kinds.
"""

from labcim.devices.board import ChipTestBoard, FPGAInterface
from labcim.devices.core import CIMCore
from labcim.devices.smu import SMU

__all__ = ["SMU", "CIMCore", "ChipTestBoard", "FPGAInterface"]
