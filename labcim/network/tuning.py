"""Per-layer tuning of hardware parameters on the chip against the software layer output.

The idea of the Tsinghua full-stack CIM system (Nat. Commun. 2025): search hardware
parameters per layer automatically at inference time, on the chip, instead of tuning
them by hand.  Here the parameters are the layer's input scale (the input value of a
full-scale DAC code: smaller clips the rare large inputs but resolves the rest better)
and its ADC gain (larger resolves small outputs better but saturates large ones).

Starting from the auto-ranged values (:meth:`Deployment.auto_range`), a coordinate
search tries a few multipliers of the ADC gain, then of the input scale, and keeps the
pair with the smallest layer-output error on a calibration batch after the per-column
affine correction.  Each candidate costs one batched MVM per tile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labcim.metrics import mvm_error
from labcim.network.execution import Deployment, Steps, fit_affine

GAIN_FACTORS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
"""ADC-gain multipliers tried (the auto-range puts the largest calibration output at
full scale, so most outputs use a small part of it)."""

INPUT_FACTORS = (1.0, 0.75, 0.5)
"""Input-scale multipliers tried."""


def layer_error(dep: Deployment, index: int, a: np.ndarray, input_scale: float) -> Steps[float]:
    """Layer-output error (percent) of the analog product on rows ``a`` after affine fit.

    :func:`labcim.metrics.mvm_error` over the output columns (each column's batch of
    outputs is one vector), so every output channel weighs the same whatever its range.
    """
    al = dep.layers[index]
    y = dep.accumulate(index, (yield from dep.tile_outputs(index, a, input_scale)))
    ideal = a @ al.analog
    gain, offset = fit_affine(y, ideal)
    return mvm_error((y * gain + offset).T, ideal.T)


def tune_layer(
    dep: Deployment,
    index: int,
    a: np.ndarray,
    gain_factors: Sequence[float] = GAIN_FACTORS,
    input_factors: Sequence[float] = INPUT_FACTORS,
) -> Steps[dict[str, float]]:
    """Search ADC gain, then input scale, of layer ``index``; leave the best configured.

    Parameters
    ----------
    dep : Deployment
        The deployed model (programmed).
    index : int
        Weight layer index.
    a : ndarray, shape (n, inputs)
        Calibration input rows (software activations).
    gain_factors, input_factors : sequence of float
        Multipliers of the auto-ranged ADC gains and input scale to try.

    Returns
    -------
    dict
        ``gain_factor``, ``input_factor``, ``error`` (percent) of the best pair,
        ``error_auto`` of the auto-ranged one and ``evaluations`` (backend batches per tile).
    """
    yield from dep.auto_range(index, a)
    al = dep.layers[index]
    base_gains, base_scale = dict(al.adc_gain), al.input_scale
    errors: dict[tuple[float, float], float] = {}

    def trial(g: float, f: float) -> Steps[None]:
        if (g, f) not in errors:  # (1.0, 1.0) comes up in both searches
            yield from dep.set_gains(index, {c: v * g for c, v in base_gains.items()})
            errors[g, f] = yield from layer_error(dep, index, a, base_scale * f)

    for g in gain_factors:
        yield from trial(g, 1.0)
    best_g = min(gain_factors, key=lambda g: errors[g, 1.0])
    for f in input_factors:
        yield from trial(best_g, f)
    best_f = min(input_factors, key=lambda f: errors[best_g, f])
    yield from dep.set_gains(index, {c: v * best_g for c, v in base_gains.items()})
    al.input_scale = base_scale * best_f
    return {
        "gain_factor": best_g,
        "input_factor": best_f,
        "error": errors[best_g, best_f],
        "error_auto": errors.get((1.0, 1.0), float("nan")),
        "evaluations": len(errors),
    }


def tune(
    dep: Deployment, X_cal: np.ndarray, **kwargs: Sequence[float]
) -> Steps[dict[int, dict[str, float]]]:
    """Tune every weight layer on ``X_cal``, then recalibrate with the chosen parameters.

    Parameters
    ----------
    dep : Deployment
        The deployed model, right after programming.
    X_cal : ndarray
        Calibration inputs.
    **kwargs
        ``gain_factors`` / ``input_factors`` for :func:`tune_layer`.

    Returns
    -------
    dict of int to dict
        Per layer index, what :func:`tune_layer` returned.
    """
    report = {}
    for i, a in dep.layer_rows(X_cal).items():
        report[i] = yield from tune_layer(dep, i, a, **kwargs)
    yield from dep.calibrate(X_cal, auto=False)
    return report
