"""Write-verify programming strategies as pure step functions (numpy only).

``make_strategy(name, ...)`` builds one of :data:`STRATEGIES`; ``state =
strategy.start(targets)`` then ``batch = strategy.step(state, readback)`` until the
batch is empty.  See docs/programming.md.
"""

from labcim.writeverify.base import PulseBatch, PulseKind, Strategy, WriteVerifyState
from labcim.writeverify.driver import run_write_verify
from labcim.writeverify.ispp import ISPPParams
from labcim.writeverify.partial_set import PartialSetParams
from labcim.writeverify.registry import STRATEGIES, make_strategy, strategy_for_chip

__all__ = [
    "STRATEGIES",
    "ISPPParams",
    "PartialSetParams",
    "PulseBatch",
    "PulseKind",
    "Strategy",
    "WriteVerifyState",
    "make_strategy",
    "run_write_verify",
    "strategy_for_chip",
]
