"""Statistics of PCM devices as fitted to the IBM HERMES chip.

Pure functions of the normalized conductance ``g_r = G / g_max`` (and of time), taken
from the fitted model that aihwkit calls ``HermesNoiseModel`` (data of Le Gallo et al.,
Nat. Electron. 6, 680 (2023)); numbers from ``docs/physics.md`` / the shared physics
facts.  Each statistic exists for one device per polarity (``devices=1``,
g_max = 10.35 uS) and for two devices per polarity (``devices=2``, g_max = 20.7 uS).

Results keep the floating dtype of the input (float32 stays float32, other input gives
float64), so per-pulse statistics of millions of devices stay cheap.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mock_hw.device_base import poly_ascending

Devices = Literal[1, 2]

G_MAX: dict[int, float] = {1: 10.35, 2: 20.7}
"""Nominal maximum conductance (uS) of one polarity with 1 or 2 devices (HERMES)."""

T0: dict[int, float] = {1: 200.0, 2: 300.0}
"""Drift reference time t0 (s) with 1 or 2 devices per polarity (HERMES fit)."""

T_READ = 512e-9
"""Duration of one read (s) in the HERMES accumulated 1/f noise formula."""

_PROG_SIGMA = {
    1: (0.15781817, 2.32443916, -2.16310839, 0.68841818),
    2: (0.16603222, 4.71806468, -8.48101252, 4.68961419),
}
"""Ascending cubic coefficients of the programming-error sigma (uS) in g_r (HERMES)."""

_G_R_MIN = 1e-6
"""Floor of g_r before taking its logarithm (a fully RESET device has g_r ~ 0)."""


def _log_branch(g_r: np.ndarray, slope: float, offset: float, lo: float, hi: float) -> np.ndarray:
    """``clip(slope * ln g_r + offset, lo, hi)``, the low-conductance branch of the fits."""
    return np.clip(slope * np.log(np.maximum(g_r, _G_R_MIN)) + offset, lo, hi)


def _clip_g_r(g_r: np.ndarray | float) -> np.ndarray:
    """``g_r`` as a float array clipped to [0, 1], the range the fits were made over."""
    arr = np.asarray(g_r)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return np.clip(arr, 0.0, 1.0)


def prog_sigma(g_r: np.ndarray | float, devices: Devices = 1) -> np.ndarray:
    """Std (uS) of the programming error at normalized target conductance ``g_r``.

    Cubic fit of HERMES (aihwkit ``HermesNoiseModel``): one device
    0.15781817 + 2.32443916 g_r - 2.16310839 g_r^2 + 0.68841818 g_r^3 (g_max 10.35 uS);
    two devices 0.16603222 + 4.71806468 g_r - 8.48101252 g_r^2 + 4.68961419 g_r^3
    (g_max 20.7 uS).  ``g_r`` is clipped to [0, 1].
    """
    return poly_ascending(_clip_g_r(g_r), _PROG_SIGMA[devices])


def drift_nu_mean(g_r: np.ndarray | float) -> np.ndarray:
    """Mean drift exponent nu at normalized conductance ``g_r`` (HERMES fit).

    g_r < 0.0945: clip(-0.0387 ln g_r - 0.0182, 0.072, 0.13);
    else -0.0436 g_r^2 - 0.0126 g_r + 0.0736.  The same fit serves 1 and 2 devices.
    """
    g_r = _clip_g_r(g_r)
    high = poly_ascending(g_r, (0.0736, -0.0126, -0.0436))
    return np.where(g_r < 0.0945, _log_branch(g_r, -0.0387, -0.0182, 0.072, 0.13), high)


def drift_nu_std(g_r: np.ndarray | float, devices: Devices = 1) -> np.ndarray:
    """Std of the drift exponent nu across devices at normalized conductance ``g_r``.

    HERMES fit.  One device: g_r < 0.3039: clip(-0.0120 ln g_r - 0.0023, 0.0124, 0.04),
    else -0.0165 g_r^2 + 0.0116 g_r + 0.0104.  Two devices: g_r < 0.3055:
    clip(-0.0117 ln g_r - 0.0057, 0.0091, 0.04), else -0.0118 g_r^2 + 0.0093 g_r + 0.0073.
    """
    g_r = _clip_g_r(g_r)
    if devices == 1:
        thr, low = 0.3039, (-0.0120, -0.0023, 0.0124, 0.04)
        high = (0.0104, 0.0116, -0.0165)
    else:
        thr, low = 0.3055, (-0.0117, -0.0057, 0.0091, 0.04)
        high = (0.0073, 0.0093, -0.0118)
    return np.where(g_r < thr, _log_branch(g_r, *low), poly_ascending(g_r, high))


def read_noise_qs(g_r: np.ndarray | float, devices: Devices = 1) -> np.ndarray:
    """Amplitude Q_s (relative) of the accumulated 1/f read noise at ``g_r`` (HERMES fit).

    One device: g_r < 0.1591: clip(-0.0078 ln g_r + 0.0038, 0.0179, 0.04), else
    0.0664 g_r^3 - 0.1352 g_r^2 + 0.0768 g_r + 0.0088.  Two devices: g_r < 0.16:
    clip(-0.0117 ln g_r - 0.0069, 0.015, 0.04), else
    0.0069 g_r^3 - 0.0280 g_r^2 + 0.0211 g_r + 0.0123.
    """
    g_r = _clip_g_r(g_r)
    if devices == 1:
        thr, low = 0.1591, (-0.0078, 0.0038, 0.0179, 0.04)
        high = (0.0088, 0.0768, -0.1352, 0.0664)
    else:
        thr, low = 0.16, (-0.0117, -0.0069, 0.015, 0.04)
        high = (0.0123, 0.0211, -0.0280, 0.0069)
    return np.where(g_r < thr, _log_branch(g_r, *low), poly_ascending(g_r, high))


def accumulated_noise_log(t: np.ndarray | float, t_read: float = T_READ) -> np.ndarray:
    """``max(ln((t + t_read) / (2 t_read)), 0)``: the time factor of the 1/f noise variance.

    ``t`` (s) is the time since programming.  The accumulated relative noise variance is
    ``Q_s^2`` times this (HERMES fit), so the relative std is
    ``Q_s * sqrt(accumulated_noise_log(t))``.  Clipped at 0 for ``t < t_read``.
    """
    t = np.asarray(t)
    return np.maximum(np.log((t + t_read) * (0.5 / t_read)), 0.0)


def accumulated_noise_sigma_rel(
    t: np.ndarray | float, q_s: np.ndarray | float, t_read: float = T_READ
) -> np.ndarray:
    """Relative std of the accumulated 1/f noise, ``Q_s sqrt(ln((t + t_read)/(2 t_read)))``.

    ``t`` (s) is the time since programming, ``t_read`` = 512 ns (HERMES fit); the
    logarithm is clipped at 0.  This is the spread across devices at time ``t`` around
    the drift prediction, not independent noise of each read (see :mod:`mock_hw.slow_noise`).
    """
    return np.asarray(q_s) * np.sqrt(accumulated_noise_log(t, t_read))


def drift_factor(t: np.ndarray | float, nu: np.ndarray | float, t0: float) -> np.ndarray:
    """Drift factor ``((t + t0) / t0)^(-nu)`` for time ``t`` (s) since programming.

    ``t0`` (s) is 200 s for one device and 300 s for two devices per polarity (HERMES).
    """
    return np.exp(-np.asarray(nu) * np.log1p(np.asarray(t) / t0))
