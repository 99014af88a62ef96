"""Accumulating, time-correlated noise shared by the device models.

PCM 1/f wander (HERMES) and RRAM relaxation (Wan 2022) are both published as the
*spread across devices at time t* since programming, ``sigma(t)``, growing with time.
A device's deviation is therefore modelled as a random walk in "variance time": on each
read at time ``t`` an independent Gaussian increment of variance
``sigma(t)^2 - sigma(t_last)^2`` is added to the deviation reached at the last read.
The spread across devices at any ``t`` then follows ``sigma(t)`` exactly, however the
reads were spaced, while two reads microseconds apart see almost the same deviation.

Per device the process keeps two arrays: ``value`` (the current deviation) and
``var`` (the variance ``sigma^2`` reached at the last update).  Keeping the variance
instead of the time of the last update avoids re-evaluating ``sigma(t_last)`` (which
depends on per-device statistics) and costs one float32 instead of one float64.  If
``sigma`` decreases (a read earlier than the last one, or a non-monotonic fit), the
increment is zero and the deviation is held.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np


def advance(
    value: np.ndarray, var: np.ndarray, var_now: np.ndarray, rng: np.random.Generator
) -> None:
    """Bring the deviation up to the variance ``var_now``, in place.

    Parameters
    ----------
    value : numpy.ndarray
        Current deviation of each device (same unit as sigma); updated in place (may be
        a view into the chip state).
    var : numpy.ndarray
        Variance reached at the last update (unit^2); updated in place to
        ``max(var, var_now)``.
    var_now : numpy.ndarray
        Target variance ``sigma(t)^2`` at the current time (unit^2); used as scratch
        space and overwritten.
    rng : numpy.random.Generator
        Source of the Gaussian increments (one :func:`standard_normal` per device).
    """
    np.maximum(var, var_now, out=var_now)
    increment = np.subtract(var_now, var, out=var)  # >= 0 by the line above; var is reset below
    np.sqrt(increment, out=increment)
    increment *= standard_normal(rng, value.shape)
    value += increment
    var[...] = var_now


def reset(value: np.ndarray, var: np.ndarray, index: tuple[np.ndarray, ...]) -> None:
    """Restart the process of the devices at ``index`` (after programming them)."""
    value[index] = 0.0
    var[index] = 0.0


@functools.cache
def _normal_table() -> np.ndarray:
    """Standard normal quantiles at the centres of 2^16 equal-probability bins (float32)."""
    inv_cdf = NormalDist().inv_cdf
    n = 1 << 16
    table = np.array([inv_cdf((k + 0.5) / n) for k in range(n)])
    return (table / table.std()).astype(np.float32)


_RAW_64_BIT = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)
"""Bit generators whose raw outputs are 64 uniform bits (MT19937's are 32)."""


def standard_normal(
    rng: np.random.Generator, shape: int | tuple[int, ...], out: np.ndarray | None = None
) -> np.ndarray:
    """Fast float32 standard normals for the per-read noise of whole chips.

    One random uint16 from ``rng`` picks one of 2^16 equiprobable normal quantiles
    (rescaled to unit variance; tails cut at 4.3 sigma).  Several times faster than
    ``rng.standard_normal`` (also in float32), which matters because every read of a
    chip needs two normals per device; the quantization is far below any noise level
    modelled here.  The uint16 indices are the bit generator's raw 64-bit words split in
    four (half the cost of ``rng.integers(..., dtype=np.uint16)``, the same uniform
    distribution).
    """
    n = math.prod(shape) if isinstance(shape, tuple) else shape
    bits = rng.bit_generator
    if isinstance(bits, _RAW_64_BIT):
        index = bits.random_raw(-(-n // 4)).view(np.uint16)[:n].reshape(shape)
    else:
        index = rng.integers(0, 1 << 16, shape, dtype=np.uint16)
    # A uint16 is always a valid index, so no mode changes one; numpy's "wrap" loop is
    # the fastest of the three (standard_normal of 2^18: 0.25 ms, 0.30 ms with "clip")
    return np.take(_normal_table(), index, out=out, mode="wrap")
