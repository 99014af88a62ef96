"""Reference tasks whose data ship inside scikit-learn (no download).

* :func:`digits_mlp`: 8 x 8 handwritten digits, an MLP 64-32-32-10 trained here.
* :func:`digits_cnn`: the same digits, a small CNN whose weights ship with labcim
  (trained by ``scripts/train_digits_cnn.py``).
* :func:`diabetes_regressor`: the diabetes progression regression, an MLP 10-32-1.

Splits and training are deterministic (fixed ``random_state``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor

from labcim.network.layers import Dense
from labcim.network.loaders import from_sklearn, load_npz
from labcim.network.model import Model

CNN_WEIGHTS = "digits_cnn.npz"
"""File name of the shipped CNN in the ``labcim.network.data`` package data."""


@dataclass
class Task:
    """A model with its data split.

    Parameters
    ----------
    name : str
        Task name.
    model : Model
        The trained network (software reference).
    X_train, y_train, X_test, y_test : ndarray
        Deterministic split; ``X`` already in the model's input shape and units.
    kind : str
        ``"classification"`` (score: accuracy in percent) or ``"regression"`` (RMSE).
    """

    name: str
    model: Model
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    kind: str

    def score(self, outputs: np.ndarray, y: np.ndarray | None = None) -> float:
        """Accuracy (percent) or RMSE (target units) of model ``outputs`` (test set default)."""
        y = self.y_test if y is None else y
        if self.kind == "classification":
            return float(100.0 * np.mean(np.argmax(outputs, axis=1) == y))
        return float(np.sqrt(np.mean(np.square(outputs.reshape(len(y)) - y))))


PIXEL_STD_FLOOR = 0.1
"""Added to every pixel's standard deviation when standardizing the MLP's inputs (pixels
in [0, 1]): border pixels that are almost always blank would otherwise become rare
inputs of tens of standard deviations, which would set the DAC's full scale."""


def digits_split(images: bool = False) -> tuple[np.ndarray, ...]:
    """Digits scaled to [0, 1], 70/30 stratified split: X_train, X_test, y_train, y_test.

    Parameters
    ----------
    images : bool
        Shape the inputs as (n, 8, 8, 1) images instead of (n, 64) vectors.
    """
    d = load_digits()
    X = d.data / 16.0
    if images:
        X = X.reshape(-1, 8, 8, 1)
    return tuple(train_test_split(X, d.target, test_size=0.3, random_state=0, stratify=d.target))


def digits_mlp() -> Task:
    """Digits with an MLP 64-32-32-10 (ReLU) on standardized pixels (about 1-2 s).

    Inputs are standardized with the training set's pixel means and standard deviations
    (plus :data:`PIXEL_STD_FLOOR`).  Two hidden layers and a strong L2 penalty
    (alpha 1) give a network whose hidden biases are about half of the weighted sums,
    as in networks with folded batch norm: its decisions depend on the scale of the
    matrix products, so conductance drift costs accuracy and drift compensation
    recovers it.  A one-hidden-layer MLP with small biases (the earlier reference,
    alpha 0.1) ignores a common scale of its products, so no compensation can show
    there (docs/inference.md).
    """
    X_tr, X_te, y_tr, y_te = digits_split()
    mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0) + PIXEL_STD_FLOOR
    X_tr, X_te = (X_tr - mu) / sd, (X_te - mu) / sd
    mlp = MLPClassifier(hidden_layer_sizes=(32, 32), alpha=1.0, max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_tr, y_tr)
    return Task("digits-mlp", from_sklearn(mlp), X_tr, y_tr, X_te, y_te, "classification")


def digits_cnn() -> Task:
    """Digits with the shipped CNN (conv 3x3x8, maxpool, conv 3x3x16, avgpool, dense 10)."""
    X_tr, X_te, y_tr, y_te = digits_split(images=True)
    with resources.files("labcim.network.data").joinpath(CNN_WEIGHTS).open("rb") as fh:
        model = load_npz(fh)
    return Task("digits-cnn", model, X_tr, y_tr, X_te, y_te, "classification")


def diabetes_regressor() -> Task:
    """Diabetes progression with an MLP 10-32-1 (ReLU); outputs in the target's units.

    The network is trained on the standardized target; the de-standardization
    ``y = mu + sigma * y_std`` is folded into the last dense layer so the model's
    output is the disease-progression score itself.
    """
    d = load_diabetes()
    X_tr, X_te, y_tr, y_te = train_test_split(d.data, d.target, test_size=0.3, random_state=0)
    X_tr, X_te = (x / d.data.std(axis=0) for x in (X_tr, X_te))  # unit-variance features
    mu, sigma = y_tr.mean(), y_tr.std()
    mlp = MLPRegressor(hidden_layer_sizes=(32,), alpha=10.0, max_iter=2000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_tr, (y_tr - mu) / sigma)
    hidden = from_sklearn(mlp).layers[:-1]  # a regressor's last layer is a plain dense
    out = Dense(mlp.coefs_[-1] * sigma, mlp.intercepts_[-1] * sigma + mu)
    model = Model([*hidden, out], (X_tr.shape[1],))
    return Task("diabetes-mlp", model, X_tr, y_tr, X_te, y_te, "regression")
