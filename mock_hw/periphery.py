"""Crossbar periphery: input DAC, output ADC and wire (IR-drop) effects, as pure functions.

Conventions shared with :mod:`mock_hw.core`:

* An input vector is a row of integer DAC codes ``x`` with ``|x| <= dac_levels(bits)``.
  HERMES encodes inputs as pulse durations (PWM) at a fixed read voltage, so code ``x``
  contributes a charge proportional to ``V_read * x / dac_levels``; we express MVM outputs
  as the equivalent current ``I_j = V_read * sum_i (x_i / L) * W_ij`` in uA (W in uS).
* The ADC maps that current to a signed integer code with ``adc_levels(bits)`` steps
  either side of zero and saturates beyond them; its transfer may bend by a per-column
  integral nonlinearity (:func:`apply_inl`).
"""

from __future__ import annotations

import numpy as np

FULL_SCALE_ROWS_FRACTION = 1.0 / 16.0
"""ADC full scale, as the fraction of (rows x largest cell conductance) it spans at gain 1.

With 256 rows that is 16 fully-on cells: random weights and inputs of the HERMES-style MVM
test (weights uniform in [-1, 1] with 30 % zeros, inputs with 50 % zeros) produce outputs
with an rms of about 3 cells, so the ADC saturates only in the far tail.  An assumption
of this simulator (the HERMES ADC range is set by its CCO gain, not published as a
number); the ``adc_gain`` configuration scales it.
"""


def dac_levels(bits: int) -> int:
    """Largest input code of a signed DAC of ``bits`` bits (sign by polarity)."""
    return (1 << (bits - 1)) - 1


def adc_levels(bits: int) -> int:
    """Largest output code of a signed ADC of ``bits`` bits."""
    return (1 << (bits - 1)) - 1


def adc_full_scale(read_voltage: float, g_cell_max: float, rows: int, adc_gain: float) -> float:
    """Output current (uA) at which the ADC saturates.

    Parameters
    ----------
    read_voltage : float
        Read voltage applied for a full-scale input (V).
    g_cell_max : float
        Largest conductance of one polarity of a cell, devices_per_polarity x g_max (uS).
    rows : int
        Number of crossbar rows.
    adc_gain : float
        ADC gain; higher gain = smaller full scale = finer resolution.
    """
    return read_voltage * g_cell_max * rows * FULL_SCALE_ROWS_FRACTION / adc_gain


def quantize_adc(
    current: np.ndarray, lsb: float, bits: int, out: np.ndarray | None = None
) -> np.ndarray:
    """ADC codes (int32) of output currents ``current`` (uA) for a step ``lsb`` (uA).

    Rounds to the nearest code and saturates at +-adc_levels(bits).  ``out`` (float, the
    shape of ``current``, may be ``current`` itself) is used as work space.  Saturation
    comes first (rounding commutes with clipping at the integer limits) so the float to
    int32 conversion never sees an out-of-range value, and the rounding writes the int32
    codes directly: two passes, one when ``lsb`` is 1 (currents already in codes).
    """
    top = adc_levels(bits)
    scaled = current if lsb == 1.0 else np.divide(current, np.float32(lsb), out=out)
    scaled = np.clip(scaled, -top, top, out=out)
    return np.rint(scaled, out=np.empty(scaled.shape, np.int32), casting="unsafe")


def apply_inl(
    codes: np.ndarray,
    even: np.ndarray,
    odd: np.ndarray,
    top: int,
    work: tuple[np.ndarray, np.ndarray],
) -> None:
    """Bend the ideal ADC codes ``codes`` (float, (batch, cols)) by the INL, in place.

    ``codes += top * (u^2 - 1) (even + odd u)`` with ``u = clip(codes / top, -1, 1)``:
    per column a bow (``even``) and an S-shaped compression (``odd`` > 0), fractions of
    full scale, both zero at the two ends of the range (end-point INL; gain and offset
    errors are separate).  The largest |INL| is ``|even|`` at mid scale and
    ``0.385 |odd|`` at ``u = 1/sqrt(3)``.  ``work``: two float arrays of the shape of
    ``codes``.  Five passes: what an MVM pays only when INL is on.
    """
    u, w = work
    np.multiply(codes, np.float32(1.0 / top), out=u)
    np.clip(u, -1.0, 1.0, out=u)
    np.multiply(u, u, out=w)
    w -= 1.0
    u *= odd
    u += even
    w *= u
    w *= np.float32(top)
    codes += w


def ir_drop_weights(g: np.ndarray, r_wire: float) -> np.ndarray:
    """Effective conductance matrix (uS) of one crossbar polarity with wire resistance.

    Geometry: row ``i`` is driven at its left end (column 0) by the input voltage; column
    ``j`` is sensed at its bottom end (row ``N-1``) by a virtual-ground ADC; every cell
    is separated from the next along its row and column wire by a segment of resistance
    ``r_wire``, and one more segment joins each wire to its driver or sense amplifier.

    First-order model: the device currents ``I_ij = G_ij x_i`` of the ideal array flow
    through the wire segments; the resulting voltage drops along the row wire (current
    beyond each node, ``E_nj = min(j, n) + 1`` segments shared) and along the column
    wire (``D_im = N - max(i, m)`` shared segments) reduce the voltage across each device.
    Since the network is linear, the corrected output is still ``y = x @ W_eff`` with::

        W_eff = G * (1 - r (G @ E + D @ G))

    (``r`` in ohm, ``G`` in S), i.e. the correction is folded into the weights once, and
    an MVM batch costs nothing extra.  The error of this first-order model against the
    exact nodal solution grows as ``(r * G * N)^2``; ``tests/test_periphery.py`` checks
    it against a direct circuit solve.

    Parameters
    ----------
    g : ndarray, shape (rows, cols)
        Device (or summed cell-polarity) conductances (uS).
    r_wire : float
        Resistance of one wire segment between adjacent cells (ohm).

    Returns
    -------
    ndarray, shape (rows, cols), float32
        Effective conductances (uS).
    """
    n_rows, n_cols = g.shape
    gs = g.astype(np.float64) * 1e-6
    rows_idx = np.arange(n_rows)
    cols_idx = np.arange(n_cols)
    D = n_rows - np.maximum.outer(rows_idx, rows_idx)  # shared column-wire segments
    E = np.minimum.outer(cols_idx, cols_idx) + 1  # shared row-wire segments
    drop = r_wire * (gs @ E + D @ gs)
    return (g * (1.0 - drop)).astype(np.float32)
