"""Figures of merit shared by plans, inference and replay (pure numpy)."""

from __future__ import annotations

import numpy as np


def mvm_error(measured: np.ndarray, ideal: np.ndarray) -> float:
    """MVM error in percent: mean over the batch of ||y_meas - y_ideal||_2 / ||y_ideal||_2.

    The metric used with the HERMES chip data (Le Gallo et al., Nat. Electron. 6, 680
    (2023)).  Vectors whose ideal output is all zero are left out.

    Parameters
    ----------
    measured, ideal : ndarray, shape (batch, outputs)
        Measured and ideal MVM outputs in the same units.
    """
    measured = np.atleast_2d(np.asarray(measured, np.float64))
    ideal = np.atleast_2d(np.asarray(ideal, np.float64))
    if measured.shape != ideal.shape:
        raise ValueError(f"measured shape {measured.shape} != ideal shape {ideal.shape}")
    norm = np.linalg.norm(ideal, axis=1)
    keep = norm > 0
    if not keep.any():
        raise ValueError("every ideal output vector is zero; the MVM error is undefined")
    return float(100.0 * np.mean(np.linalg.norm(measured - ideal, axis=1)[keep] / norm[keep]))
