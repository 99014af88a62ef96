"""Reference tasks whose data ship inside scikit-learn (no download).

* :func:`digits_mlp`: 8 x 8 handwritten digits, an MLP 64-32-32-10 trained here.
* :func:`digits_cnn`: the same digits, a small CNN whose weights ship with labcim
  (trained by ``scripts/train_digits_cnn.py``).
* :func:`diabetes_regressor`: the diabetes progression regression, an MLP 10-32-1.
* :func:`breast_cancer_mlp`: the Wisconsin breast-cancer diagnosis, a binary classifier
  (MLP 30-16-1, one logistic output).
* :func:`friedman_regressor`, :func:`ripple_regressor`: smooth synthetic regressions with
  little noise (Friedman's function #1 of scikit-learn's ``make_friedman1``; a 3-input
  ripple), small MLPs: tasks where the analog error, not the targets' scatter, decides.

Splits and training are deterministic (fixed ``random_state``).

scikit-learn is imported by the functions that use it: importing it takes 2-3 s, and
every ``labcim`` command imports this module (``plans.inference`` names `Task`), most of
them to run plans that need no task.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np

from labcim.network.layers import Dense
from labcim.network.loaders import from_sklearn, load_npz
from labcim.network.model import Model
from labcim.network.scores import output_kind, predicted_labels

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
        ``"classification"`` (score: accuracy in percent; one output: a binary classifier
        whose output is the probability of class 1) or ``"regression"`` (RMSE).
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
            predicted = predicted_labels(outputs, output_kind(self.model))
            return float(100.0 * np.mean(predicted == y))
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
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

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
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

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


def regression_task(
    name: str, X: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], alpha: float
) -> Task:
    """An MLP regressor (ReLU) on standardized features, outputs in the target's units.

    70/30 split; the network is trained on the standardized target and the
    de-standardization ``y = mu + sigma * y_std`` is folded into the last dense layer, so
    the model's output is the target itself.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPRegressor

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    X_tr, X_te = (x / X.std(axis=0) for x in (X_tr, X_te))  # unit-variance features
    mu, sigma = y_tr.mean(), y_tr.std()
    mlp = MLPRegressor(hidden_layer_sizes=hidden, alpha=alpha, max_iter=2000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_tr, (y_tr - mu) / sigma)
    layers = from_sklearn(mlp).layers[:-1]  # a regressor's last layer is a plain dense
    out = Dense(mlp.coefs_[-1] * sigma, mlp.intercepts_[-1] * sigma + mu)
    return Task(name, Model([*layers, out], (X_tr.shape[1],)), X_tr, y_tr, X_te, y_te, "regression")


def diabetes_regressor() -> Task:
    """Diabetes progression with an MLP 10-32-1 (ReLU); outputs in the target's units."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    return regression_task("diabetes-mlp", d.data, d.target, (32,), 10.0)


def friedman_regressor() -> Task:
    """Friedman's function #1 (``make_friedman1``: 10 inputs in [0, 1], 5 of them unused,
    ``10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5``, noise 0.25) with an MLP
    10-32-32-1, 2000 samples."""
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=2000, noise=0.25, random_state=0)
    return regression_task("friedman-mlp", X, y, (32, 32), 1.0)


def ripple_regressor() -> Task:
    """A smooth ripple of 3 inputs uniform in [-1, 1],
    ``sin(2 x1) cos(1.5 x2) + 0.5 x3^2``, plus noise of std 0.02, with an MLP 3-32-32-1,
    2000 samples."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, (2000, 3))
    y = np.sin(2 * X[:, 0]) * np.cos(1.5 * X[:, 1]) + 0.5 * X[:, 2] ** 2
    y += rng.normal(0.0, 0.02, len(y))
    return regression_task("ripple-mlp", X, y, (32, 32), 1e-3)


def breast_cancer_mlp() -> Task:
    """Wisconsin breast-cancer diagnosis (569 patients, 30 features) with a binary
    MLPClassifier 30-16-1: one logistic output, the probability of class 1 (benign).

    Features standardized with the training split's means and deviations; 70/30
    stratified split.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    d = load_breast_cancer()
    X_tr, X_te, y_tr, y_te = train_test_split(
        d.data, d.target, test_size=0.3, random_state=0, stratify=d.target
    )
    mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
    X_tr, X_te = (X_tr - mu) / sd, (X_te - mu) / sd
    mlp = MLPClassifier(hidden_layer_sizes=(16,), alpha=1.0, max_iter=1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_tr, y_tr)
    return Task("breast-cancer-mlp", from_sklearn(mlp), X_tr, y_tr, X_te, y_te, "classification")
