"""ADC transfer curves: fit each column's integral nonlinearity and undo it (pure numpy).

Model of one column's transfer, in ADC codes (``L = 2**(bits - 1) - 1``, ``u = x / L``
the normalized linear input, ``x`` the code an ideal linear ADC would give)::

    y = L * f(u),   f(u) = u + (u^2 - 1) (even + odd u)

an *end-point* integral nonlinearity (INL): it vanishes at both ends of the range, so a
column's gain and offset errors stay separate (the inference engine's per-column affine
calibration takes them).  ``even`` is a bow (INL ``-even L`` at mid scale), ``odd`` an
S-shape (``odd > 0`` compresses toward full scale, as an oscillator-based ADC does).
Any smooth transfer curve is fitted by this cubic to first order; the simulated chip's
ADC has exactly this form (docs/physics.md).

:func:`fit_transfer` finds ``even`` and ``odd`` of every column from codes measured
against inputs known up to a per-column gain and offset (the ideal output on read-back
conductances); :func:`correct_codes` maps measured codes back to the linear code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

MIN_POINTS = 16
"""Unsaturated points a column needs for a fit."""


def fit_transfer(ideal: np.ndarray, codes: np.ndarray, top: int) -> dict[str, np.ndarray]:
    """Per-column INL coefficients from ADC codes measured against known inputs.

    Per column: least-squares cubic of the codes in the ideal input (saturated codes
    left out), its two end points where it reaches ``-top`` and ``top``, and the cubic
    rewritten in the normalized linear input ``u`` between them.  The ideal may be off
    by any per-column gain and offset (weights read back, column gain mismatch): they
    move the end points, not the shape.

    Parameters
    ----------
    ideal : ndarray, shape (n, cols)
        Ideal output of each measured vector (any unit proportional to the current).
    codes : ndarray, shape (n, cols)
        ADC codes measured for the same vectors.
    top : int
        Largest code, ``2**(bits - 1) - 1``.

    Returns
    -------
    dict of ndarray, shape (cols,)
        ``even``, ``odd`` (fractions of full scale), ``even_se``, ``odd_se`` (their
        standard errors from the fit's residual, the end points taken as exact),
        ``inl_max`` (largest |INL| over the range, LSB), ``residual`` (rms of the codes
        about the fitted curve, LSB), ``points`` (unsaturated points used); NaN where a
        column has fewer than :data:`MIN_POINTS` points or no increasing transfer.
    """
    x = np.asarray(ideal, np.float64)
    y = np.asarray(codes, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ideal {x.shape} and codes {y.shape} must be equal (n, cols) arrays")
    use = np.abs(y) < top
    scale = np.maximum(np.abs(np.where(use, x, 0.0)).max(axis=0), 1e-300)
    s = x / scale  # conditioning: the cubic in s = ideal / max |ideal| per column
    basis = np.stack([np.ones_like(s), s, s * s, s**3], axis=-1) * use[..., None]
    gram = np.einsum("nck,ncl->ckl", basis, basis)
    rhs = np.einsum("nck,nc->ck", basis, np.where(use, y, 0.0))
    points = use.sum(axis=0)
    ok = points >= MIN_POINTS
    gram[~ok] = np.eye(4)
    c = np.linalg.solve(gram, rhs[..., None])[..., 0]  # (cols, 4), ascending in s
    fitted = np.einsum("nck,ck->nc", basis, c)
    residual = np.sqrt(np.sum(np.where(use, y - fitted, 0.0) ** 2, axis=0) / np.maximum(points, 1))
    lo, hi = (_reach(c, target) for target in (-float(top), float(top)))
    ok &= np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
    mid, half = (hi + lo) / 2, (hi - lo) / 2
    # f(u) = cubic(mid + half u) / top, expanded in u: only its u^2 and u^3 terms are free.
    d2 = (c[:, 2] + 3 * c[:, 3] * mid) * half**2 / top
    d3 = c[:, 3] * half**3 / top
    u = np.linspace(-1.0, 1.0, 201)[:, None]
    inl = top * np.abs((u * u - 1.0) * (d2 + d3 * u)).max(axis=0)
    cov = np.linalg.inv(gram) * (residual**2 * points / np.maximum(points - 4, 1))[:, None, None]
    var2 = cov[:, 2, 2] + 6 * mid * cov[:, 2, 3] + 9 * mid**2 * cov[:, 3, 3]
    nan = np.where(ok, 1.0, np.nan)
    return {
        "even": d2 * nan,
        "odd": d3 * nan,
        "even_se": np.sqrt(np.maximum(var2, 0.0)) * half**2 / top * nan,
        "odd_se": np.sqrt(cov[:, 3, 3]) * np.abs(half) ** 3 / top * nan,
        "inl_max": inl * nan,
        "residual": residual * nan,
        "points": points,
    }


def _reach(c: np.ndarray, target: float, steps: int = 30) -> np.ndarray:
    """Where each column's cubic (ascending coefficients ``c``, (cols, 4)) equals
    ``target``: Newton from the root of its linear part; NaN where it does not converge."""
    s = (target - c[:, 0]) / np.where(c[:, 1] > 0, c[:, 1], np.nan)
    for _ in range(steps):
        value = c[:, 0] + s * (c[:, 1] + s * (c[:, 2] + s * c[:, 3])) - target
        slope = c[:, 1] + s * (2 * c[:, 2] + 3 * s * c[:, 3])
        s = s - value / np.where(slope > 0, slope, np.nan)
    value = c[:, 0] + s * (c[:, 1] + s * (c[:, 2] + s * c[:, 3])) - target
    return np.where(np.abs(value) < 1e-6 * max(abs(target), 1.0), s, np.nan)


def correct_codes(
    codes: np.ndarray, even: np.ndarray, odd: np.ndarray, top: int, steps: int = 4
) -> np.ndarray:
    """The linear codes (float) behind measured ``codes``: ``top * f^-1(codes / top)``.

    Newton iterations on ``f(u) = u + (u^2 - 1)(even + odd u)`` per column (``even``,
    ``odd`` of shape (cols,) from :func:`fit_transfer`; NaN is taken as 0).  Saturated
    codes stay at ``+-top``.  Four steps reach 1e-6 LSB for INL of a few percent.
    """
    a = np.nan_to_num(np.asarray(even, np.float64))
    b = np.nan_to_num(np.asarray(odd, np.float64))
    v = np.asarray(codes, np.float64) / top
    u = v.copy()
    for _ in range(steps):
        f = u + (u * u - 1.0) * (a + b * u) - v
        slope = 1.0 + 2.0 * u * (a + b * u) + b * (u * u - 1.0)
        u -= f / slope
    return top * np.clip(u, -1.0, 1.0)


_KEY = re.compile(r"^core(\d+)_inl_(even|odd)$")


def corrections_from_summary(summary: Mapping[str, Any]) -> dict[int, tuple[np.ndarray, ...]]:
    """Per core ``(even, odd)`` from the summary of an ``adc_characterization`` run.

    Keys ``core{N}_inl_even`` and ``core{N}_inl_odd`` (other keys are ignored).

    Raises
    ------
    ValueError
        If a core has only one of the two, or none is found.
    """
    found: dict[int, dict[str, np.ndarray]] = {}
    for key, value in summary.items():
        if m := _KEY.match(key):
            found.setdefault(int(m.group(1)), {})[m.group(2)] = np.asarray(value, np.float64)
    if not found:
        raise ValueError("adc_correction: no core{N}_inl_even / core{N}_inl_odd keys")
    out = {}
    for core, parts in sorted(found.items()):
        if set(parts) != {"even", "odd"}:
            raise ValueError(f"adc_correction: core{core} lacks inl_even or inl_odd")
        out[core] = (parts["even"], parts["odd"])
    return out
