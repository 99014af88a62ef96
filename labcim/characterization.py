"""Pure numpy pieces of the characterization plans: test data, ideal MVMs, statistics.

The plans in ``plans/`` wire these to devices; nothing here talks to hardware, so a
test, a replay or a notebook recomputes every figure a plan records from its file.
Test distributions follow the HERMES MVM test (Le Gallo et al., Nat. Electron. 6, 680
(2023)): weights uniform in [-1, 1] with 30 % zeros, inputs with 50 % zeros.
"""

from __future__ import annotations

import numpy as np

from labcim.metrics import drift_exponent

READ_MODES = ("4-phase", "1-phase")
"""Core read modes of the board protocol (docs/protocol.md, SET_CONFIG)."""

BITS_RANGE = (2, 16)
"""Allowed ``dac_bits`` and ``adc_bits`` of the board protocol, sign bit included."""


def hermes_weights(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Weights uniform in [-1, 1] with 30 % exact zeros, shape (rows, cols)."""
    w = rng.uniform(-1.0, 1.0, (rows, cols))
    w[rng.random((rows, cols)) < 0.3] = 0.0
    return w


def hermes_inputs(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """Input vectors uniform in [-1, 1] with 50 % exact zeros, shape (n, rows)."""
    x = rng.uniform(-1.0, 1.0, (n, rows))
    x[rng.random((n, rows)) < 0.5] = 0.0
    return x


def dac_levels(dac_bits: int) -> int:
    """Largest input code magnitude, ``2**(dac_bits - 1) - 1``."""
    return 2 ** (dac_bits - 1) - 1


def quantize_inputs(x: np.ndarray, dac_bits: int) -> np.ndarray:
    """Inputs in [-1, 1] as int16 DAC codes of ``dac_bits`` (rounded, full scale = 1)."""
    top = dac_levels(dac_bits)
    return np.clip(np.rint(np.asarray(x) * top), -top, top).astype(np.int16)


def differential_weights(g_map: np.ndarray, devices_per_polarity: int) -> np.ndarray:
    """``G+ - G-`` (uS, (rows, cols)) from a device-major map (2 * dpp, rows, cols)."""
    g = cell_conductance(g_map, devices_per_polarity)
    return g[0] - g[1]


def cell_conductance(g_map: np.ndarray, devices_per_polarity: int) -> np.ndarray:
    """Summed conductance of each polarity (uS, (2, rows, cols)) from a device-major map."""
    g = np.asarray(g_map, np.float64)
    return g.reshape(2, devices_per_polarity, *g.shape[1:]).sum(axis=1)


def ideal_outputs(
    codes: np.ndarray, weights: np.ndarray, read_voltage: float, dac_bits: int
) -> np.ndarray:
    """Noise-free MVM output currents (uA) of DAC ``codes`` on ``weights`` (uS).

    ``I_j = V_read * sum_i (x_i / L) W_ij`` with ``L = 2**(dac_bits - 1) - 1``: inputs
    are pulse durations at the read voltage, expressed as the equivalent current
    (docs/physics.md, MVM).

    Parameters
    ----------
    codes : ndarray of int, shape (batch, rows)
        DAC input codes.
    weights : ndarray, shape (rows, cols)
        Differential conductance ``G+ - G-`` (uS).
    read_voltage : float
        Read voltage (V).
    dac_bits : int
        Input DAC resolution, sign included.
    """
    scale = read_voltage / dac_levels(dac_bits)
    return (np.asarray(codes, np.float64) @ np.asarray(weights, np.float64)) * scale


def error_stats(error: np.ndarray) -> dict[str, float]:
    """``mean``, ``std`` and ``max_abs`` of an error array (its units); zeros if empty."""
    e = np.asarray(error, np.float64)
    if not e.size:
        return {"mean": 0.0, "std": 0.0, "max_abs": 0.0}
    return {"mean": float(e.mean()), "std": float(e.std()), "max_abs": float(np.abs(e).max())}


def bipolar_branches(v_set: float, v_reset: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Voltage lists (V) of the two branches of a bipolar I-V sweep.

    The SET branch goes 0 -> ``v_set`` -> 0 and the RESET branch 0 -> ``v_reset`` -> 0,
    ``points`` values each way, so both have ``2 * points - 1`` values and every branch
    starts and ends at 0 V (a current limit may only change at 0 V).
    """
    up = np.linspace(0.0, 1.0, points)
    ramp = np.concatenate([up, up[-2::-1]])
    return v_set * ramp, v_reset * ramp


def forming_steps(v_start: float, v_stop: float, v_step: float) -> np.ndarray:
    """Staircase ``v_start, v_start + v_step, ...`` up to ``v_stop`` included (V)."""
    n = int(np.floor((v_stop - v_start) / v_step + 1e-9)) + 1
    return v_start + v_step * np.arange(n)


def first_crossing(values: np.ndarray, threshold: float) -> int:
    """Index of the first ``|values| >= threshold``, or -1 if none."""
    hit = np.abs(np.asarray(values)) >= threshold
    return int(np.argmax(hit)) if hit.any() else -1


def drift_by_level(
    times: np.ndarray, g: np.ndarray, n_levels: int, min_conductance: float
) -> dict[str, np.ndarray]:
    """Drift exponent per conductance level from maps read at several times.

    Every device is fitted on its own (:func:`labcim.metrics.drift_exponent`); devices
    are binned by their first reading into ``n_levels`` bins of equal population among
    those reading at least ``min_conductance`` (devices near the RESET floor are
    dominated by read noise).

    Parameters
    ----------
    times : ndarray, shape (n,)
        Read times (s) since programming (plus any drift onset), all > 0.
    g : ndarray, shape (n, ...)
        Conductances (uS) of the same devices at those times.
    n_levels : int
        Number of bins.
    min_conductance : float
        Smallest first reading (uS) of a device taken into the bins.

    Returns
    -------
    dict
        ``edges`` (n_levels + 1, uS), ``level`` (median first reading per bin, uS),
        ``nu`` (median fitted exponent per bin), ``count`` (devices per bin),
        ``ratio`` (n, n_levels: median of G(t) / G(t_first) per time and bin) and
        ``bin`` (per device: its bin, -1 if left out), ``nu_device`` (per device, NaN
        if left out).
    """
    g = np.asarray(g, np.float64).reshape(len(times), -1)
    g0 = g[0]
    keep = g0 >= min_conductance
    if keep.sum() < n_levels:
        raise ValueError(
            f"only {int(keep.sum())} devices read >= min_conductance = {min_conductance} uS; "
            f"need at least n_levels = {n_levels}"
        )
    edges = np.quantile(g0[keep], np.linspace(0.0, 1.0, n_levels + 1))
    bins = np.where(
        keep, np.clip(np.searchsorted(edges, g0, side="right") - 1, 0, n_levels - 1), -1
    )
    nu = drift_exponent(np.asarray(times, np.float64), g)
    ratio = g / np.where(g0 > 0, g0, np.nan)
    levels = range(n_levels)
    return {
        "edges": edges,
        "level": np.array([np.median(g0[bins == b]) for b in levels]),
        "nu": np.array([np.nanmedian(nu[bins == b]) for b in levels]),
        "count": np.array([int((bins == b).sum()) for b in levels]),
        "ratio": np.stack([np.nanmedian(ratio[:, bins == b], axis=1) for b in levels], axis=1),
        "bin": bins,
        "nu_device": np.where(bins >= 0, nu, np.nan),
    }
