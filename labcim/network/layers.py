"""Layers of a feed-forward network and their software (numpy, float64) forward passes.

Activations are channels-last: a batch of images is ``(batch, height, width, channels)``
and a batch of vectors ``(batch, features)``.  Every layer knows its output shape for a
given input shape (without the batch axis) and raises ValueError when the input does not
fit it.  The two weight layers, :class:`Dense` and :class:`Conv2D`, reduce to one matrix
product ``rows @ matrix`` (conv2d through im2col), which is what runs on the crossbars;
their bias and every other layer run on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Shape = tuple[int, ...]


class Layer:
    """Base of every layer: a name for the JSON description, shape inference, forward."""

    kind: ClassVar[str] = ""

    def output_shape(self, shape: Shape) -> Shape:
        """Output shape (no batch axis) for an input of ``shape``; ValueError if it does not fit."""
        return shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Software forward pass of a batch ``x``."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """JSON-ready hyper-parameters (everything but the arrays)."""
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        """Parameter arrays by name."""
        return {}


class WeightLayer(Layer):
    """A layer whose core is one matrix product ``rows(x) @ matrix + bias``.

    ``matrix`` has shape (inputs, outputs): crossbar rows are inputs, columns outputs.
    """

    matrix: np.ndarray
    bias: np.ndarray

    def rows(self, x: np.ndarray) -> np.ndarray:
        """The input vectors of the matrix product, shape (n, inputs)."""
        raise NotImplementedError

    def unrows(self, y: np.ndarray, in_shape: Shape) -> np.ndarray:
        """Reshape matrix-product outputs (n, outputs) back to a batch of ``in_shape`` inputs."""
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.unrows(self.rows(x) @ self.matrix + self.bias, x.shape[1:])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"matrix": self.matrix, "bias": self.bias}

    def with_arrays(self, matrix: np.ndarray, bias: np.ndarray) -> WeightLayer:
        """A copy with new matrix and bias (same hyper-parameters)."""
        return type(self)(matrix=matrix, bias=bias, **self.params())


def _check_matrix(matrix: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(matrix, np.float64)
    b = np.asarray(bias, np.float64)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"weight matrix must be a non-empty 2-D array, got shape {m.shape}")
    if b.shape != (m.shape[1],):
        raise ValueError(f"bias shape {b.shape} does not match {m.shape[1]} outputs")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(b))):
        raise ValueError("weights and bias must be finite")
    return m, b


@dataclass(eq=False)
class Dense(WeightLayer):
    """Fully connected layer ``y = x @ matrix + bias`` on vectors.

    Parameters
    ----------
    matrix : ndarray, shape (inputs, outputs)
        Weights.
    bias : ndarray, shape (outputs,)
        Bias, added on the host.
    """

    kind: ClassVar[str] = "dense"
    matrix: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        self.matrix, self.bias = _check_matrix(self.matrix, self.bias)

    def output_shape(self, shape: Shape) -> Shape:
        if shape != (self.matrix.shape[0],):
            raise ValueError(
                f"dense layer expects vectors of {self.matrix.shape[0]} features, got shape {shape}"
            )
        return (self.matrix.shape[1],)

    def rows(self, x: np.ndarray) -> np.ndarray:
        return x

    def unrows(self, y: np.ndarray, in_shape: Shape) -> np.ndarray:
        return y


@dataclass(eq=False)
class Conv2D(WeightLayer):
    """2-D convolution (cross-correlation, as in every DL framework) via im2col.

    Parameters
    ----------
    matrix : ndarray, shape (kh * kw * in_channels, out_channels)
        Kernel flattened in (kh, kw, in_channels) order, one column per output channel.
    bias : ndarray, shape (out_channels,)
        Bias, added on the host.
    kernel : tuple of int
        (kh, kw).
    stride : int
        Step of the window in both directions.
    padding : int
        Zeros added on every side.
    """

    kind: ClassVar[str] = "conv2d"
    matrix: np.ndarray
    bias: np.ndarray
    kernel: tuple[int, int] = (3, 3)
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        self.matrix, self.bias = _check_matrix(self.matrix, self.bias)
        self.kernel = (int(self.kernel[0]), int(self.kernel[1]))
        if min(self.kernel) < 1 or self.stride < 1 or self.padding < 0:
            raise ValueError(
                f"conv2d needs kernel >= 1, stride >= 1, padding >= 0; got kernel "
                f"{self.kernel}, stride {self.stride}, padding {self.padding}"
            )
        if self.matrix.shape[0] % (self.kernel[0] * self.kernel[1]):
            raise ValueError(
                f"conv2d matrix has {self.matrix.shape[0]} rows, not a multiple of the "
                f"kernel size {self.kernel[0]} x {self.kernel[1]}"
            )

    @property
    def in_channels(self) -> int:
        """Input channels the kernel expects."""
        return self.matrix.shape[0] // (self.kernel[0] * self.kernel[1])

    def params(self) -> dict[str, Any]:
        return {"kernel": list(self.kernel), "stride": self.stride, "padding": self.padding}

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3 or shape[2] != self.in_channels:
            raise ValueError(
                f"conv2d expects images (height, width, {self.in_channels}), got shape {shape}"
            )
        h, w = (
            _window_count(n, k, self.stride, self.padding)
            for n, k in zip(shape[:2], self.kernel, strict=True)
        )
        if min(h, w) < 1:
            raise ValueError(f"conv2d kernel {self.kernel} does not fit an image of {shape[:2]}")
        return (h, w, self.matrix.shape[1])

    def rows(self, x: np.ndarray) -> np.ndarray:
        """im2col: one row per output pixel, shape (batch * oh * ow, kh * kw * channels)."""
        p = self.padding
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        win = sliding_window_view(x, self.kernel, axis=(1, 2))[:, :: self.stride, :: self.stride]
        # win: (batch, oh, ow, channels, kh, kw) -> patches flattened in (kh, kw, channels)
        return win.transpose(0, 1, 2, 4, 5, 3).reshape(-1, self.matrix.shape[0])

    def unrows(self, y: np.ndarray, in_shape: Shape) -> np.ndarray:
        return y.reshape(-1, *self.output_shape(in_shape))


def _window_count(n: int, k: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - k) // stride + 1


@dataclass(eq=False)
class ReLU(Layer):
    """max(x, 0)."""

    kind: ClassVar[str] = "relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


@dataclass(eq=False)
class Tanh(Layer):
    """tanh(x)."""

    kind: ClassVar[str] = "tanh"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)


@dataclass(eq=False)
class Sigmoid(Layer):
    """Logistic function 1 / (1 + exp(-x))."""

    kind: ClassVar[str] = "sigmoid"

    def forward(self, x: np.ndarray) -> np.ndarray:
        # Written with tanh so large |x| neither overflows nor loses precision.
        return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(eq=False)
class Softmax(Layer):
    """Softmax over the last axis (class probabilities of a classifier)."""

    kind: ClassVar[str] = "softmax"

    def forward(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


@dataclass(eq=False)
class _Pool2D(Layer):
    """Pooling over non-overlapping or strided windows of images (no padding)."""

    size: int = 2
    stride: int | None = None

    def __post_init__(self) -> None:
        self.stride = self.size if self.stride is None else self.stride
        if self.size < 1 or self.stride < 1:
            raise ValueError(f"pooling needs size, stride >= 1; got {self.size}, {self.stride}")

    def params(self) -> dict[str, Any]:
        return {"size": self.size, "stride": self.stride}

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise ValueError(f"{self.kind} expects images (height, width, channels), got {shape}")
        h, w = (_window_count(n, self.size, self.stride, 0) for n in shape[:2])
        if min(h, w) < 1:
            raise ValueError(f"{self.kind} window {self.size} does not fit an image of {shape[:2]}")
        return (h, w, shape[2])

    def _windows(self, x: np.ndarray) -> np.ndarray:
        win = sliding_window_view(x, (self.size, self.size), axis=(1, 2))
        return win[:, :: self.stride, :: self.stride]  # (batch, oh, ow, channels, k, k)


@dataclass(eq=False)
class MaxPool2D(_Pool2D):
    """Maximum over ``size x size`` windows moved by ``stride`` (default ``size``)."""

    kind: ClassVar[str] = "maxpool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._windows(x).max(axis=(-2, -1))


@dataclass(eq=False)
class AvgPool2D(_Pool2D):
    """Mean over ``size x size`` windows moved by ``stride`` (default ``size``)."""

    kind: ClassVar[str] = "avgpool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._windows(x).mean(axis=(-2, -1))


@dataclass(eq=False)
class Flatten(Layer):
    """Images to vectors in (height, width, channels) order."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, shape: Shape) -> Shape:
        return (int(np.prod(shape)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)


@dataclass(eq=False)
class Add(Layer):
    """Residual connection: add the output of an earlier layer.

    Parameters
    ----------
    source : int
        Index of the layer whose output is added; -1 is the model input.
    """

    kind: ClassVar[str] = "add"
    source: int = -1

    def params(self) -> dict[str, Any]:
        return {"source": self.source}

    def forward(self, x: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """``x + skip``; the model passes the output of layer ``source`` as ``skip``."""
        if skip is None:
            raise ValueError("add needs the output of its source layer")
        return x + skip


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (Dense, Conv2D, ReLU, Tanh, Sigmoid, Softmax, MaxPool2D, AvgPool2D, Flatten, Add)
}
"""Supported layer kinds by the name used in the JSON description."""


def fold_batchnorm(
    layer: WeightLayer,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float = 1e-5,
) -> WeightLayer:
    """Fold an inference-mode batch norm that follows ``layer`` into its matrix and bias.

    ``bn(y) = gamma (y - mean) / sqrt(var + eps) + beta`` is a per-output affine map, so
    ``bn(x @ W + b) = x @ (W * s) + (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.

    Parameters
    ----------
    layer : WeightLayer
        The dense or conv2d layer the batch norm follows.
    gamma, beta, mean, var : ndarray, shape (outputs,)
        Scale, shift, running mean and running variance of the batch norm.
    eps : float
        Variance floor of the batch norm.
    """
    s = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    if s.shape != layer.bias.shape:
        raise ValueError(
            f"batch norm has {s.shape[0] if s.ndim else 1} channels, the layer before it "
            f"{layer.bias.shape[0]} outputs"
        )
    return layer.with_arrays(layer.matrix * s, (layer.bias - mean) * s + beta)
