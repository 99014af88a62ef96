"""Replication of small layers, scoring of binary classifiers, ADC code correction."""

import itertools
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from labcim.adc_transfer import correct_codes
from labcim.mapping import tile_matrix, weight_scale, weights_to_targets
from labcim.network.execution import Deployment
from labcim.network.layers import Dense, ReLU
from labcim.network.loaders import from_sklearn
from labcim.network.model import Model
from labcim.network.placement import Placement, place, replicate
from labcim.network.scores import output_kind, predicted_labels, scores
from labcim.network.tasks import breast_cancer_mlp

rng = np.random.default_rng(3)


def mlp(sizes) -> Model:
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers += [Dense(rng.normal(size=(a, b)), rng.normal(size=b)), ReLU()]
    return Model(layers[:-1], (sizes[0],))


def test_replicate_fills_idle_rows_and_cores():
    model = mlp([10, 32, 300, 1])  # 1 core; 2 column tiles; 2 row tiles
    base = place(model, 256, 256, 12)
    assert base.cores_used == [0, 1, 2, 3, 4]
    rep = replicate(base)
    assert sorted(rep.cores_used) == list(range(10))  # 2 copies of 5 cores, 2 cores idle
    assert [lp.row_copies for lp in rep.layers] == [25, 8, 1]  # 256 // 10, 256 // 32, none
    lp = rep.layer(0)
    assert [t.core for t in lp.tiles] == [0, 5] and lp.copies(lp.tiles[1]) == 2
    assert [t.core for t in rep.layer(4).tiles] == [3, 4, 8, 9]
    assert Placement.from_dict(rep.to_dict()) == rep
    assert replicate(base, cores=[0, 1, 2, 3, 4]) == replace_rows(base, rep)  # no idle core
    assert replicate(base, max_copies=2).layer(0).row_copies == 2


def replace_rows(base, rep):
    """``base`` with the row copies of ``rep`` (what a chip without idle cores gets)."""
    from dataclasses import replace

    layers = [
        replace(b, row_copies=r.row_copies) for b, r in zip(base.layers, rep.layers, strict=True)
    ]
    return Placement(layers, base.rows, base.cols, base.n_cores)


def test_programmed_matrices_program_exactly_the_targets():
    model = mlp([10, 32, 1])
    placement = replicate(place(model, 256, 256, 6))
    dep = Deployment(model, placement, 18.63)
    targets = dep.targets()
    assert set(targets) == set(range(6))
    assert targets[0].shape == (2, 250, 32)  # 25 copies of 10 rows
    seen = set()
    for i, matrix, cores in dep.programmed_matrices():
        scale = weight_scale(matrix, "percentile")  # what the programming plan computes
        assert scale == dep.layers[i].w_scale
        for t in tile_matrix(matrix.shape, 256, 256, cores):
            block = matrix[t.row0 : t.row1, t.col0 : t.col1]
            np.testing.assert_array_equal(weights_to_targets(block, 18.63, scale), targets[t.core])
            seen.add(t.core)
    assert seen == set(range(6))


def test_binary_classifier_is_scored_by_accuracy():
    d = load_breast_cancer()
    X = (d.data - d.data.mean(axis=0)) / d.data.std(axis=0)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, d.target)
    model = from_sklearn(clf)
    assert model.output_shape == (1,) and output_kind(model) == "binary"
    out = model.forward(X)
    np.testing.assert_array_equal(predicted_labels(out, "binary"), clf.predict(X))
    s = scores(out, d.target, out, "binary")
    assert s == {"agreement": 100.0, "accuracy": pytest.approx(100 * clf.score(X, d.target))}
    flipped = scores(1.0 - out, d.target, out, "binary")
    assert flipped["agreement"] == 0.0
    assert (
        output_kind(mlp([3, 4, 1])) == "regression" and output_kind(mlp([3, 4, 2])) == "multiclass"
    )
    task = breast_cancer_mlp()
    assert task.score(task.model.forward(task.X_test)) > 93.0


@pytest.mark.parametrize(("even", "odd"), [(0.0, 0.0), (0.03, 0.08), (-0.05, -0.02)])
def test_code_correction_inverts_the_inl(even, odd):
    top = 127
    x = np.linspace(-top, top, 501)[:, None] * np.ones(3)
    u = x / top
    y = x + top * (u * u - 1) * (np.array([even, 0.0, -even]) + np.array([odd, odd, 0.0]) * u)
    back = correct_codes(y, np.array([even, 0.0, -even]), np.array([odd, odd, 0.0]), top)
    np.testing.assert_allclose(back, x, atol=1e-6)
