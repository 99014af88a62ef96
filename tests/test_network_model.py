"""labcim.network software side: layers, model, loaders, placement, hybrid selection."""

import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

from labcim.network.drift import drift_factors
from labcim.network.hybrid import select_digital, sensitivity
from labcim.network.layers import (
    Add,
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
    Tanh,
    fold_batchnorm,
)
from labcim.network.loaders import from_sklearn, from_torch, load_npz, save_npz
from labcim.network.model import Model, ModelError
from labcim.network.placement import Placement, PlacementError, place
from labcim.network.tasks import digits_cnn

rng = np.random.default_rng(0)


def small_cnn() -> Model:
    return Model(
        [
            Conv2D(rng.normal(size=(3 * 3 * 2, 4)), rng.normal(size=4), (3, 3), 1, 1),
            ReLU(),
            Conv2D(rng.normal(size=(3 * 3 * 4, 4)), rng.normal(size=4), (3, 3), 1, 1),
            Add(source=1),
            MaxPool2D(2),
            Conv2D(rng.normal(size=(2 * 2 * 4, 3)), rng.normal(size=3), (2, 2), 2, 0),
            Tanh(),
            Flatten(),
            Dense(rng.normal(size=(3, 5)), rng.normal(size=5)),
        ],
        (6, 6, 2),
    )


@pytest.mark.parametrize("kind", ["classifier", "binary", "regressor"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_forward_matches_sklearn(kind, activation):
    X = rng.normal(size=(60, 5))
    if kind == "regressor":
        est = MLPRegressor(
            hidden_layer_sizes=(7, 4), activation=activation, max_iter=50, random_state=0
        )
        y = X @ rng.normal(size=5)
    else:
        est = MLPClassifier(
            hidden_layer_sizes=(7, 4), activation=activation, max_iter=50, random_state=0
        )
        y = (X[:, 0] > 0).astype(int) + (kind == "classifier") * (X[:, 1] > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    out = from_sklearn(est).forward(X)
    if kind == "regressor":
        np.testing.assert_allclose(out.ravel(), est.predict(X), rtol=1e-12, atol=1e-12)
    else:
        proba = est.predict_proba(X)
        np.testing.assert_allclose(
            out if out.shape[1] > 1 else out[:, 0],
            proba[:, -1] if out.shape[1] == 1 else proba,
            rtol=1e-12,
            atol=1e-14,
        )
        pred = out.argmax(1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(int)
        np.testing.assert_array_equal(est.classes_[pred], est.predict(X))


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_conv_im2col_equals_direct_loop(stride, padding):
    x = rng.normal(size=(2, 7, 6, 3))
    k = rng.normal(size=(3, 2, 3, 4))  # kh, kw, cin, cout
    b = rng.normal(size=4)
    conv = Conv2D(k.reshape(-1, 4), b, (3, 2), stride, padding)
    xp = np.pad(x, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
    oh, ow, _ = conv.output_shape(x.shape[1:])
    ref = np.zeros((2, oh, ow, 4))
    for n in range(2):
        for i in range(oh):
            for j in range(ow):
                patch = xp[n, i * stride : i * stride + 3, j * stride : j * stride + 2]
                ref[n, i, j] = np.einsum("hwc,hwco->o", patch, k) + b
    np.testing.assert_allclose(conv.forward(x), ref, atol=1e-12)


def test_pooling_and_flatten_equal_loops():
    x = rng.normal(size=(2, 5, 4, 3))
    mx, av = MaxPool2D(2), AvgPool2D(2, 1)
    assert mx.output_shape(x.shape[1:]) == (2, 2, 3)
    np.testing.assert_allclose(mx.forward(x)[1, 1, 0, 2], x[1, 2:4, 0:2, 2].max())
    np.testing.assert_allclose(av.forward(x)[0, 3, 2, 1], x[0, 3:5, 2:4, 1].mean())
    np.testing.assert_array_equal(Flatten().forward(x)[1], x[1].ravel())


def test_batchnorm_folding_equals_batchnorm():
    dense = Dense(rng.normal(size=(4, 3)), rng.normal(size=3))
    g, be, mu, var = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.random(3)
    x = rng.normal(size=(5, 4))
    ref = g * (dense.forward(x) - mu) / np.sqrt(var + 1e-5) + be
    np.testing.assert_allclose(fold_batchnorm(dense, g, be, mu, var).forward(x), ref, atol=1e-12)


def test_npz_round_trip_is_exact(tmp_path):
    model = small_cnn()
    x = rng.normal(size=(3, 6, 6, 2))
    save_npz(model, tmp_path / "m.npz")
    back = load_npz(tmp_path / "m.npz")
    assert back.describe() == model.describe()
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    json.dumps(model.describe())
    save_npz(model, tmp_path / "m.npz")  # a saved model is replaced, another file is not
    np.savez(tmp_path / "data.npz", x=x)
    with pytest.raises(FileExistsError, match=r"data\.npz: exists and is not a saved model"):
        save_npz(model, tmp_path / "data.npz")
    with np.load(tmp_path / "data.npz") as kept:
        np.testing.assert_array_equal(kept["x"], x)


def test_shipped_cnn_loads_and_fits_cores():
    task = digits_cnn()
    assert task.model.input_shape == (8, 8, 1)
    assert all(max(la.matrix.shape) <= 256 for _, la in task.model.weight_layers())
    assert task.score(task.model.forward(task.X_test)) > 95


def test_from_torch_matches_torch_with_batchnorm_and_flatten():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Sequential(nn.Flatten(), nn.Dropout(0.3)),
        nn.Linear(4 * 3 * 2, 6),
        nn.BatchNorm1d(6),
        nn.Sigmoid(),
        nn.Linear(6, 3),
    )
    for bn in (net[1], net[6]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    net.eval()
    x = rng.normal(size=(5, 2, 6, 4))
    with torch.no_grad():
        ref = net(torch.tensor(x, dtype=torch.float64).float()).double().numpy()
    model = from_torch(net, (2, 6, 4))
    np.testing.assert_allclose(model.forward(x.transpose(0, 2, 3, 1)), ref, atol=1e-5)
    with pytest.raises(ModelError, match="LSTM"):
        from_torch(nn.Sequential(nn.LSTM(3, 3)), (3,))


def test_errors_are_clear():
    model = small_cnn()
    with pytest.raises(
        ModelError, match=r"input batch of shape \(2, 6, 6, 3\).*\(batch, 6, 6, 2\)"
    ):
        model.forward(np.zeros((2, 6, 6, 3)))
    with pytest.raises(ModelError, match=r"layer 1 \(dense\).*expects vectors of 4"):
        Model([Dense(np.ones((3, 5)), np.zeros(5)), Dense(np.ones((4, 2)), np.zeros(2))], (3,))
    with pytest.raises(ModelError, match="layer 0: str is not a supported layer type"):
        Model(["lstm"], (3,))
    with pytest.raises(ModelError, match=r"layer 1 \(add\).*shape \(5,\)"):
        Model([Dense(np.ones((3, 5)), np.zeros(5)), Add(-1)], (3,))


def test_unknown_kind_in_file_is_refused(tmp_path):
    save_npz(Model([Dense(np.ones((2, 2)), np.zeros(2))], (2,)), tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as d:
        arrays = dict(d)
    desc = json.loads(arrays["__model__"].tobytes())
    desc["layers"][0]["kind"] = "lstm"
    arrays["__model__"] = np.frombuffer(json.dumps(desc).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelError, match="unsupported kind 'lstm'"):
        load_npz(tmp_path / "bad.npz")


def test_placement_tiles_reports_and_refuses():
    model = Model(
        [Dense(np.ones((300, 20)), np.zeros(20)), ReLU(), Dense(np.ones((20, 3)), np.zeros(3))],
        (300,),
    )
    p = place(model, 256, 256, 4)
    assert [t.core for t in p.layer(0).tiles] == [0, 1] and p.layer(2).tiles[0].core == 2
    assert p.utilization()["cores"] == 0.75
    d = json.loads(json.dumps(p.to_dict()))
    assert Placement.from_dict(d) == p
    with pytest.raises(PlacementError, match=r"needs 3 cores.*layer 0 300x20: 2.*only 2"):
        place(model, 256, 256, 2)


def test_hybrid_selection_respects_budget_and_prefers_sensitive_weights():
    w = rng.normal(size=(6, 4))
    w[2, 1] = 30.0
    model = Model(
        [Dense(w, np.zeros(4)), ReLU(), Dense(rng.normal(size=(4, 1)), np.zeros(1))], (6,)
    )
    scores = sensitivity(model, rng.normal(size=(50, 6)))
    masks = select_digital(scores, 0.1)
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * 28)
    assert masks[0][2, 1]
    cols = select_digital(scores, 0.2, "columns")
    assert sum(int(m.any(axis=0).sum()) for m in cols.values()) == 1
    assert all(np.all(m == m[:1]) for m in cols.values())
    with pytest.raises(ValueError, match="outside"):
        select_digital(scores, 1.5)


def test_drift_factors():
    ref = rng.normal(size=(20, 5))
    cur = 0.8 * ref
    np.testing.assert_allclose(drift_factors(ref, cur, "global"), 1.25)
    cur[:, 3] *= 0.5
    f = drift_factors(ref, cur, "column")
    np.testing.assert_allclose(f[[0, 1, 2, 4]], 1.25)
    np.testing.assert_allclose(f[3], 2.5)
    np.testing.assert_allclose(drift_factors(ref, cur, "none"), 1.0)
