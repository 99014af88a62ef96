"""Relaxation statistics of HfOx RRAM as fitted to NeuRRAM data (Wan et al. 2022).

After write-verify, RRAM conductances relax: the spread of the deviation from the
programmed value widens with time.  aihwkit's ``ReRamWan2022NoiseModel`` fits that
spread (uS, g_max reference 40 uS) as a 4th-order polynomial in ``g_r = G / 40 uS`` at
three times after programming: 1 s, 1 day and 2 days (Wan et al., Nature 608, 504
(2022)).  Between those anchors this module interpolates the *variance* linearly in
``log10(t)`` (an accumulating 1/f-like process has a variance that grows with
``log t``); before 1 s the variance ramps linearly in ``log10(t)`` from 0 at an onset
time to its 1-s value; after 2 days it is held by default (the data stop there and
relaxation is reported to saturate), or extrapolated at a chosen fraction of its 1-2 day
growth.
"""

from __future__ import annotations

import math

import numpy as np

from mock_hw.device_base import poly_ascending

G_MAX = 40.0
"""Reference maximum conductance (uS) of the Wan 2022 fit (NeuRRAM g_max)."""

ANCHOR_TIMES = (1.0, 86400.0, 172800.0)
"""Times (s) after programming at which the relaxation spread was fitted: 1 s, 1 d, 2 d."""

_SIGMA_COEFFS = (
    (0.348, 16.030, -43.853, 45.393, -16.815),
    (0.701, 22.086, -50.773, 47.095, -16.458),
    (0.782, 20.274, -43.507, 37.062, -11.934),
)
"""Ascending coefficients of the relaxation sigma (uS) in g_r at 1 s, 1 day, 2 days."""


def relaxation_sigma_anchors(g_r: np.ndarray | float) -> tuple[np.ndarray, ...]:
    """Relaxation sigma (uS) at 1 s, 1 day and 2 days for normalized conductance ``g_r``.

    Wan 2022 fits (aihwkit ``ReRamWan2022NoiseModel``), ascending coefficients
    1 s: [0.348, 16.030, -43.853, 45.393, -16.815];
    1 day: [0.701, 22.086, -50.773, 47.095, -16.458];
    2 days: [0.782, 20.274, -43.507, 37.062, -11.934].
    ``g_r`` is clipped to [0, 1], the fitted range; a float32 input stays float32.
    """
    g_r = np.asarray(g_r)
    if not np.issubdtype(g_r.dtype, np.floating):
        g_r = g_r.astype(np.float64)
    g_r = np.clip(g_r, 0.0, 1.0)
    return tuple(poly_ascending(g_r, coeffs) for coeffs in _SIGMA_COEFFS)


def relaxation_variance(
    t: np.ndarray | float,
    sigma_1s: np.ndarray | float,
    sigma_1d: np.ndarray | float,
    sigma_2d: np.ndarray | float,
    onset: float,
    late_slope: float = 0.0,
) -> np.ndarray:
    """Variance (uS^2) of the relaxation at time ``t`` (s) after programming.

    Piecewise linear in ``x = log10(t)`` through the squared anchors: 0 at ``t = onset``
    (s), ``sigma_1s^2`` at 1 s, ``sigma_1d^2`` at 1 day, ``sigma_2d^2`` at 2 days; later
    held, or with ``late_slope`` > 0 growing on by ``late_slope`` times the growth per
    decade between 1 and 2 days (where that growth is positive; an extrapolation, the
    data stop at 2 days).  Written as a sum of clipped ramps so it costs a few passes
    over the arrays: each ramp only starts once the previous one has reached 1.

    Parameters
    ----------
    t : array_like
        Time since programming (s); values <= onset give 0.
    sigma_1s, sigma_1d, sigma_2d : array_like
        Relaxation sigma (uS) at the anchors, e.g. from :func:`relaxation_sigma_anchors`.
    onset : float
        Time (s) at which relaxation starts to be visible (model assumption, < 1 s).
    """
    x = np.log10(np.maximum(t, onset))
    # Python floats keep float32 arrays float32.
    x1, x2, x_on = math.log10(ANCHOR_TIMES[1]), math.log10(ANCHOR_TIMES[2]), math.log10(onset)
    v0 = np.square(sigma_1s)
    v1 = np.square(sigma_1d)
    v2 = np.square(sigma_2d)
    var = v0 * np.clip((x - x_on) * (1.0 / -x_on), 0.0, 1.0)
    var += (v1 - v0) * np.clip(x * (1.0 / x1), 0.0, 1.0)
    var += (v2 - v1) * np.clip((x - x1) * (1.0 / (x2 - x1)), 0.0, 1.0)
    if late_slope:
        var += late_slope * np.maximum(v2 - v1, 0.0) * np.maximum((x - x2) * (1.0 / (x2 - x1)), 0.0)
    return var
