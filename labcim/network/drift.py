"""Drift compensation: rescale analog outputs to what they were right after programming.

Right after programming (and calibration), a fixed input is run through every tile and
the outputs are stored as the reference.  At inference time the same input is run
again and the outputs are multiplied by ``reference / current``: one factor per tile
("global", as aihwkit's ``GlobalDriftCompensation`` used with the HERMES data, Le Gallo
et al., Nat. Electron. 6, 680 (2023)) or one per tile column (aihwkit's per-column
variant).  PCM drift ``G(t) = G0 ((t + t0) / t0)^-nu`` shrinks every conductance by a
similar factor, so one scale recovers most of it; the spread of ``nu`` across devices is
what neither mode can undo.
"""

from __future__ import annotations

import numpy as np

DRIFT_MODES = ("none", "global", "column")

MIN_SIGNAL = 1e-3
"""Columns whose reference signal is below this fraction of the mean column signal get
the tile's global factor: their ratio would be mostly noise."""


def readout(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Signal of each column: mean over the batch of ``outputs * sign(reference)``.

    For the reference itself this is the mean |y| of aihwkit's readout.  Projecting a
    later read on the reference's signs instead of taking its own |y| keeps the read
    noise and the 1/f wander (zero-mean, growing with time) from inflating the current
    signal and biasing the factor low.

    Parameters
    ----------
    outputs, reference : ndarray, shape (batch, cols)
        Outputs of the fixed drift-reference input, now and right after programming.
    """
    return (np.asarray(outputs, np.float64) * np.sign(reference)).mean(axis=0)


def drift_factors(reference: np.ndarray, current: np.ndarray, mode: str) -> np.ndarray:
    """Factors that bring ``current`` outputs back to the ``reference`` ones.

    Parameters
    ----------
    reference, current : ndarray, shape (batch, cols)
        Outputs of the same fixed input right after programming and now (any units).
    mode : str
        ``"none"`` (ones), ``"global"`` (one factor for the whole tile) or ``"column"``.

    Returns
    -------
    ndarray, shape (cols,)
        Multiply the tile's outputs by these.
    """
    if mode not in DRIFT_MODES:
        raise ValueError(f"drift compensation mode {mode!r}; allowed: {DRIFT_MODES}")
    ref, cur = readout(reference, reference), readout(current, reference)
    if mode == "none":
        return np.ones_like(ref)
    total = cur.sum()
    glob = ref.sum() / total if total > 0 else 1.0
    if mode == "global":
        return np.full_like(ref, glob)
    weak = (ref < MIN_SIGNAL * ref.mean()) | (cur <= 0)
    return np.where(weak, glob, ref / np.where(weak, 1.0, cur))


def time_key(t: float) -> str:
    """Summary key prefix of a drift time point (s): ``t3600s``, ``t0p5s`` (no dots in keys)."""
    return f"t{t:.0f}s" if float(t).is_integer() else f"t{t}s".replace(".", "p")
