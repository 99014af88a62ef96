"""labcim's bluesky plans: programming, characterization, inference, I-V work with an SMU.

Every public plan opens one bluesky run whose start metadata holds ``plan_name``,
``plan_args`` and what a replay needs, records each step in ``primary`` and ends with a
``summary`` event (``labcim.open_runs(path)[-1].summary``).  See docs/plans.md.
"""

from plans.adc import adc_characterization
from plans.characterization import conductance_map, mvm_characterization, retention
from plans.inference import network_inference
from plans.iv import forming, iv_sweep
from plans.programming import program_cores, tdp_program, verify

__all__ = [
    "adc_characterization",
    "conductance_map",
    "forming",
    "iv_sweep",
    "mvm_characterization",
    "network_inference",
    "program_cores",
    "retention",
    "tdp_program",
    "verify",
]
