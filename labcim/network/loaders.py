"""Build a :class:`~labcim.network.model.Model` from scikit-learn, PyTorch or a saved file.

The file format is one ``.npz`` (no pickle): a JSON description under ``__model__``
(format name, version, input shape, each layer's kind and hyper-parameters) and each
layer's arrays under ``"{index}.{name}"``.
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from labcim.network.layers import (
    LAYER_TYPES,
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    WeightLayer,
    fold_batchnorm,
)
from labcim.network.model import Model, ModelError
from labcim.output_files import npz_holding, write_file

FORMAT, VERSION = "labcim-model", 1

_SKLEARN_ACTIVATIONS: dict[str, type[Layer] | None] = {
    "identity": None,
    "relu": ReLU,
    "tanh": Tanh,
    "logistic": Sigmoid,
    "softmax": Softmax,
}


def from_sklearn(mlp: Any) -> Model:
    """Model of a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor``.

    The last layer carries the estimator's output activation (softmax or logistic for
    classifiers, none for regressors), so :meth:`Model.forward` equals ``predict_proba``
    (classifiers) or ``predict`` (regressors).
    """
    if not (hasattr(mlp, "coefs_") and hasattr(mlp, "out_activation_")):
        raise ModelError(f"{type(mlp).__name__} is not a fitted scikit-learn MLP estimator")
    layers: list[Layer] = []
    n = len(mlp.coefs_)
    for k, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        layers.append(Dense(w, b))
        name = mlp.activation if k < n - 1 else mlp.out_activation_
        if name not in _SKLEARN_ACTIVATIONS:
            raise ModelError(f"activation {name!r} of {type(mlp).__name__} is not supported")
        act = _SKLEARN_ACTIVATIONS[name]
        if act is not None:
            layers.append(act())
    return Model(layers, (mlp.coefs_[0].shape[0],))


def save_npz(model: Model, path: str | PathLike[str]) -> None:
    """Write ``model`` to ``path`` (``.npz`` with a JSON description; no pickle).

    Raises
    ------
    ForeignFileError
        ``path`` holds a file that is not a saved model (it is left as it is).
    """
    desc = {"format": FORMAT, "version": VERSION, **model.describe()}
    arrays = {
        f"{i}.{name}": a for i, la in enumerate(model.layers) for name, a in la.arrays().items()
    }
    raw = np.frombuffer(json.dumps(desc).encode(), np.uint8)

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as fh:
            np.savez_compressed(fh, __model__=raw, **arrays)

    write_file(path, write, npz_holding("__model__"), "saved model")


def load_npz(path: Any) -> Model:
    """Read a model written by :func:`save_npz` (a path or a binary file object)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            desc = json.loads(data["__model__"].tobytes())
            arrays = {k: data[k] for k in data.files if k != "__model__"}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: not a saved labcim model ({exc})") from exc
    if desc.get("format") != FORMAT or desc.get("version") != VERSION:
        raise ModelError(f"{path}: not a {FORMAT} file of version {VERSION}")
    layers = []
    for i, spec in enumerate(desc["layers"]):
        spec = {k: v for k, v in spec.items() if k != "output_shape"}
        kind = spec.pop("kind")
        if kind not in LAYER_TYPES:
            raise ModelError(
                f"{path}: layer {i} has unsupported kind {kind!r}; supported: {sorted(LAYER_TYPES)}"
            )
        own = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.split(".", 1)[0] == str(i)}
        try:
            layers.append(LAYER_TYPES[kind](**spec, **own))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path}: layer {i} ({kind}): {exc}") from None
    return Model(layers, desc["input_shape"])


def from_torch(module: Any, input_shape: tuple[int, ...]) -> Model:
    """Model of a PyTorch ``nn.Sequential``-style module (needs torch installed).

    Supported children: ``Linear``, ``Conv2d`` (groups 1, dilation 1, symmetric zero
    padding, equal strides), ``BatchNorm1d/2d`` (folded into the preceding weight layer),
    ``ReLU``, ``Tanh``, ``Sigmoid``, ``Softmax``, ``MaxPool2d``/``AvgPool2d`` (square, no
    padding), ``Flatten``, and ``Dropout``/``Identity`` (dropped at inference).  Nested
    ``Sequential`` containers are unrolled.

    Parameters
    ----------
    module : torch.nn.Module
        The network, evaluated in inference mode.
    input_shape : tuple of int
        One sample in PyTorch order: ``(features,)`` or ``(channels, height, width)``.
        The labcim model is channels-last ``(height, width, channels)``; the first dense
        layer after a flatten has its rows permuted to match.
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "from_torch needs PyTorch, an optional dependency: pip install torch"
        ) from exc
    nn = torch.nn
    elementwise = {nn.ReLU: ReLU, nn.Tanh: Tanh, nn.Sigmoid: Sigmoid, nn.Softmax: Softmax}
    shape = _channels_last(input_shape)
    layers: list[Layer] = []
    perm: np.ndarray | None = None  # channels-last positions in PyTorch's flatten order

    def arr(t: Any) -> np.ndarray:
        return t.detach().cpu().double().numpy()

    for i, m in enumerate(_unroll(module, nn)):
        if isinstance(m, nn.Linear):
            w = arr(m.weight).T
            if perm is not None:
                w, perm = w[perm], None
            b = arr(m.bias) if m.bias is not None else np.zeros(w.shape[1])
            layer: Layer = Dense(w, b)
        elif isinstance(m, nn.Conv2d):
            _check_conv(i, m)
            w = arr(m.weight).transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
            b = arr(m.bias) if m.bias is not None else np.zeros(w.shape[3])
            layer = Conv2D(w.reshape(-1, w.shape[3]), b, w.shape[:2], m.stride[0], m.padding[0])
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not (layers and isinstance(layers[-1], WeightLayer)):
                raise ModelError(f"module {i} (batch norm) must follow a Linear or Conv2d")
            gamma = arr(m.weight) if m.affine else 1.0
            beta = arr(m.bias) if m.affine else 0.0
            layers[-1] = fold_batchnorm(
                layers[-1], gamma, beta, arr(m.running_mean), arr(m.running_var), m.eps
            )
            continue
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            layer = _pool(i, m, MaxPool2D if isinstance(m, nn.MaxPool2d) else AvgPool2D)
        elif isinstance(m, nn.Flatten):
            if len(shape) == 3:
                h, w_, c = shape
                perm = np.arange(h * w_ * c).reshape(c, h, w_).transpose(1, 2, 0).ravel()
            layer = Flatten()
        elif isinstance(m, (nn.Dropout, nn.Identity)):
            continue
        elif type(m) in elementwise:
            layer = elementwise[type(m)]()
        else:
            raise ModelError(f"module {i}: {type(m).__name__} is not a supported layer type")
        try:
            shape = layer.output_shape(shape)
        except ValueError as exc:
            raise ModelError(f"module {i} ({type(m).__name__}): {exc}") from None
        layers.append(layer)
    return Model(layers, _channels_last(input_shape))


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    s = tuple(int(n) for n in shape)
    return (s[1], s[2], s[0]) if len(s) == 3 else s


def _unroll(module: Any, nn: Any) -> list[Any]:
    if isinstance(module, nn.Sequential):
        return [m for child in module for m in _unroll(child, nn)]
    return [module]


def _check_conv(i: int, m: Any) -> None:
    pad = m.padding
    if (
        m.groups != 1
        or tuple(m.dilation) != (1, 1)
        or isinstance(pad, str)
        or pad[0] != pad[1]
        or m.stride[0] != m.stride[1]
        or m.padding_mode != "zeros"
    ):
        raise ModelError(
            f"module {i}: Conv2d with groups {m.groups}, dilation {m.dilation}, padding "
            f"{pad!r} ({m.padding_mode}), stride {m.stride} is not supported (needs groups 1, "
            "dilation 1, equal zero padding and strides)"
        )


def _pool(i: int, m: Any, cls: type[Layer]) -> Layer:
    def one(v: Any) -> int:
        v = (v, v) if isinstance(v, int) else tuple(v)
        if v[0] != v[1]:
            raise ModelError(f"module {i}: {type(m).__name__} must be square, got {v}")
        return int(v[0])

    if one(m.padding) != 0 or getattr(m, "ceil_mode", False):
        raise ModelError(
            f"module {i}: {type(m).__name__} with padding or ceil_mode is not supported"
        )
    return cls(size=one(m.kernel_size), stride=one(m.stride or m.kernel_size))
