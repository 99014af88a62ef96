"""Hybrid analog/digital mapping: keep the weights analog arrays would ruin on the host.

The idea of AnDi (Wang et al., Nat. Electron. 8, 276 (2025)): one system with analog
CIM arrays and digital MAC units; a mapper keeps the weights the output is most
sensitive to in digital units at full precision (decisive for regression) and runs the
rest in analog.  Here the digital part is computed on the host, ``a @ W_digital``, and
the analog arrays are programmed with those weights set to zero; since the largest
weights are usually among the sensitive ones, the analog part's mapping scale also
shrinks and the remaining weights get more of the conductance range.

Sensitivity is a first-order estimate of how much a relative error on weight ``w_ij``
of layer ``l`` moves the model output (PCM programming error, drift and 1/f wander all
grow with the programmed conductance, i.e. with |w|):

    s_ij = |w_ij| * rms(a_i) * d_j

with ``rms(a_i)`` the rms of the layer's input row ``i`` over a calibration batch and
``d_j`` the rms over the batch of the model output's change per unit change of the
layer's output ``j`` (a finite difference through the software model).
"""

from __future__ import annotations

import numpy as np

from labcim.network.model import Model

UNITS = ("weights", "columns")

STEP = 1e-3
"""Finite-difference step, relative to the rms of the layer output it perturbs."""


def sensitivity(model: Model, X_cal: np.ndarray) -> dict[int, np.ndarray]:
    """Per weight layer, the sensitivity ``s_ij`` (model-output units) of every weight.

    Parameters
    ----------
    model : Model
        The network.
    X_cal : ndarray
        Calibration inputs (a slice of the training set).

    Returns
    -------
    dict of int to ndarray
        Layer index -> array of the weight matrix's shape.
    """
    X = model.check_input(X_cal)
    outs = model.forward(X, keep=True)
    base = outs[-1]
    scores = {}
    for i, layer in model.weight_layers():
        a = layer.rows(X if i == 0 else outs[i - 1])
        y = outs[i]
        d = np.empty(layer.matrix.shape[1])
        for j in range(len(d)):
            step = STEP * (float(np.sqrt(np.mean(y[..., j] ** 2))) or 1.0)
            bump = np.zeros(len(d))
            bump[j] = step

            def op(k, la, x, i=i, bump=bump):
                return la.forward(x) + (bump if k == i else 0.0)

            moved = model.run(X, op)[-1] - base
            d[j] = np.sqrt(np.mean(np.sum(moved.reshape(len(X), -1) ** 2, axis=1))) / step
        rms_a = np.sqrt(np.mean(a**2, axis=0))
        scores[i] = np.abs(layer.matrix) * rms_a[:, None] * d[None, :]
    return scores


def select_digital(
    scores: dict[int, np.ndarray], budget: float, unit: str = "weights"
) -> dict[int, np.ndarray]:
    """Masks of the weights kept digital: the most sensitive ones within ``budget``.

    Parameters
    ----------
    scores : dict of int to ndarray
        :func:`sensitivity` of every weight layer.
    budget : float
        Fraction in [0, 1] of all weights (``unit="weights"``) or of all weight-matrix
        columns (``unit="columns"``, whole output columns digital) kept digital;
        selected across layers by descending sensitivity.
    unit : str
        ``"weights"`` or ``"columns"``.

    Returns
    -------
    dict of int to ndarray of bool
        Layer index -> mask of the weight matrix's shape, True where digital.
    """
    if unit not in UNITS:
        raise ValueError(f"hybrid budget unit {unit!r}; allowed: {UNITS}")
    if not 0 <= budget <= 1:
        raise ValueError(f"digital budget {budget} is outside [0, 1]")
    keys = list(scores)
    per_unit = [scores[k] if unit == "weights" else scores[k].sum(axis=0) for k in keys]
    flat = np.concatenate([s.ravel() for s in per_unit])
    n = round(budget * flat.size)
    chosen = np.zeros(flat.size, bool)
    chosen[np.argsort(-flat, kind="stable")[:n]] = True
    masks, start = {}, 0
    for k, s in zip(keys, per_unit, strict=True):
        m = chosen[start : start + s.size].reshape(s.shape)
        masks[k] = m if unit == "weights" else np.broadcast_to(m, scores[k].shape).copy()
        start += s.size
    return masks
