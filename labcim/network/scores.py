"""What a model's outputs are (class scores, one probability, values) and how to score them.

The kind follows from the model itself, so a saved model and a reference task are scored
alike: a model whose last layer is a :class:`~labcim.network.layers.Sigmoid` with one
output is a binary classifier (scikit-learn's ``MLPClassifier`` on two classes: one
logistic output, the probability of class 1); a model with more than one output is a
multi-class classifier (argmax); anything else with one output is a regressor.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from labcim.network.layers import Sigmoid
from labcim.network.model import Model

Kind = Literal["multiclass", "binary", "regression"]

SCORE_UNITS = {"accuracy": "%", "agreement": "%"}
"""Units of the :func:`scores` figures that have one (RMSE is in the target's units)."""


def output_kind(model: Model) -> Kind:
    """``"multiclass"``, ``"binary"`` or ``"regression"`` (see the module docstring)."""
    outputs = int(np.prod(model.output_shape))
    if outputs > 1:
        return "multiclass"
    return "binary" if isinstance(model.layers[-1], Sigmoid) else "regression"


def predicted_labels(outputs: np.ndarray, kind: Kind) -> np.ndarray:
    """Class labels (int) of classifier ``outputs``: argmax, or probability > 0.5."""
    if kind == "multiclass":
        return np.argmax(outputs, axis=1)
    if kind == "binary":
        return (np.asarray(outputs).reshape(len(outputs)) > 0.5).astype(np.int64)
    raise ValueError("a regressor's outputs have no class labels")


def scores(
    outputs: np.ndarray, y: np.ndarray | None, reference: np.ndarray, kind: Kind
) -> dict[str, float]:
    """Figures of model ``outputs`` against labels ``y`` and the software ``reference``.

    Classifiers (``multiclass`` and ``binary``): ``accuracy`` (percent, with labels) and
    ``agreement`` (percent of predictions equal to the software's).  Regressors: ``rmse``
    and ``r2`` (with targets) and ``rmse_vs_software`` (target units), the error the
    hardware adds to the software model.
    """
    out: dict[str, float] = {}
    if kind != "regression":
        predicted = predicted_labels(outputs, kind)
        out["agreement"] = float(100.0 * np.mean(predicted == predicted_labels(reference, kind)))
        if y is not None:
            out["accuracy"] = float(100.0 * np.mean(predicted == y))
        return out
    flat = outputs.reshape(len(outputs))
    out["rmse_vs_software"] = float(np.sqrt(np.mean((flat - reference.reshape(len(flat))) ** 2)))
    if y is not None:
        residual = float(np.mean((flat - y) ** 2))
        out["rmse"] = float(np.sqrt(residual))
        out["r2"] = float(1.0 - residual / np.var(y))
    return out
