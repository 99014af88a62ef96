"""A lab's own reference task, registered under ``labcim.tasks``: a network small enough
for two 8 x 8 cores, and labels its software model gets all right."""

import numpy as np

from labcim.network.layers import Dense
from labcim.network.model import Model
from labcim.network.tasks import Task


def tiny() -> Task:
    """A 6-3 linear classifier of 40 random inputs, labelled by its own argmax."""
    rng = np.random.default_rng(11)
    model = Model([Dense(rng.normal(size=(6, 3)), np.zeros(3))], (6,))
    X = rng.normal(size=(40, 6))
    y = np.argmax(model.forward(X), axis=1)
    return Task("lab-tiny", model, X[:20], y[:20], X[20:], y[20:], "classification")


def not_a_task() -> dict:
    """What a wrong entry point makes."""
    return {"model": None}
