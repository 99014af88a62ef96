"""A lab's own write-verify strategy, registered under ``labcim.strategies``."""

from labcim.writeverify.tdp import TDP


class CarefulTDP(TDP):
    """TDP with a tighter default tolerance: half of TDP's (1.25 % of full scale)."""

    name = "careful-tdp"

    @property
    def default_tolerance(self) -> float:
        return super().default_tolerance / 2
