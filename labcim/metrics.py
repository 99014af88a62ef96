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


def linear_fit(measured: np.ndarray, ideal: np.ndarray) -> dict[str, float]:
    """Least-squares line ``measured = gain * ideal + offset`` over every output element.

    Returns ``gain``, ``offset`` (units of the outputs) and ``residual``: the rms of the
    deviation from the line relative to the rms of ``ideal`` (percent) — the part of the
    MVM error an affine calibration cannot remove.
    """
    m = np.asarray(measured, np.float64).ravel()
    i = np.asarray(ideal, np.float64).ravel()
    if m.shape != i.shape:
        raise ValueError(f"measured has {m.size} values, ideal has {i.size}")
    # Closed-form least squares: np.polyfit's SVD costs ~10x more on millions of points.
    i_mean, m_mean = i.mean(), m.mean()
    di = i - i_mean
    var = float(np.dot(di, di))
    gain = float(np.dot(di, m - m_mean)) / var if var else 0.0
    offset = m_mean - gain * i_mean
    resid = m - (gain * i + offset)
    scale = np.sqrt(np.mean(i * i))
    return {
        "gain": float(gain),
        "offset": float(offset),
        "residual": float(100.0 * np.sqrt(np.mean(resid * resid)) / scale) if scale else 0.0,
    }


def drift_exponent(times: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per-device drift exponent nu from conductances read at several times.

    Fits ``log G = log G_1 - nu log t`` by least squares for every device (the power law
    ``G(t) = G_1 (t / t_1)^-nu`` of PCM drift, valid for t much longer than the drift
    onset t0; Le Gallo et al. 2023).  Devices with a non-positive reading get NaN.

    Parameters
    ----------
    times : ndarray, shape (n,)
        Read times since the end of programming (s), at least two, all > 0.
    g : ndarray, shape (n, ...)
        Conductances (uS) read at those times.
    """
    t = np.asarray(times, np.float64)
    g = np.asarray(g, np.float64)
    if t.ndim != 1 or t.size < 2 or np.any(t <= 0):
        raise ValueError("times must be at least two positive times (s)")
    if g.shape[0] != t.size:
        raise ValueError(f"g has {g.shape[0]} time points, times has {t.size}")
    lt = np.log(t)
    lt -= lt.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        lg = np.where(g > 0, np.log(np.where(g > 0, g, 1.0)), np.nan)
    slope = np.tensordot(lt, lg - lg.mean(axis=0), axes=1) / np.dot(lt, lt)
    return -slope
