"""A plain loop around a strategy, for tests and benchmarks (plans use messages instead)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labcim.writeverify.base import PulseBatch, Strategy, WriteVerifyState


def run_write_verify(
    strategy: Strategy,
    targets: np.ndarray,
    read: Callable[[], np.ndarray],
    apply: Callable[[PulseBatch], None],
) -> WriteVerifyState:
    """Program ``targets`` (uS, (2, rows, cols)): read, step, apply, until nothing is left.

    Parameters
    ----------
    strategy : Strategy
        From :func:`~labcim.writeverify.make_strategy`.
    targets : ndarray
        Per-polarity targets (uS), checked before anything is read or pulsed.
    read : callable
        Returns the conductance map (uS, (2 * dpp, rows, cols)).
    apply : callable
        Sends one :class:`PulseBatch`.

    Returns
    -------
    WriteVerifyState
        The final state (every cell done).
    """
    state = strategy.start(targets)
    while len(batch := strategy.step(state, read())):
        apply(batch)
    return state
