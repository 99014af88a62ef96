"""A feed-forward network: ordered layers, an input shape, validation, software forward."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from labcim.network.layers import LAYER_TYPES, Add, Layer, Shape, WeightLayer


class ModelError(ValueError):
    """A model that cannot be built or run: the message names the layer and the reason."""


class Model:
    """Ordered layers applied to inputs of a fixed shape.

    Construction checks every layer's type and infers every layer's output shape, so a
    model that exists is consistent; the first inconsistency raises :class:`ModelError`
    naming the layer.

    Parameters
    ----------
    layers : sequence of Layer
        Layers in execution order.
    input_shape : tuple of int
        Shape of one input sample: ``(features,)`` or ``(height, width, channels)``.
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int]) -> None:
        self.layers = list(layers)
        self.input_shape: Shape = tuple(int(n) for n in input_shape)
        if not self.layers:
            raise ModelError("a model needs at least one layer")
        if not self.input_shape or min(self.input_shape) < 1:
            raise ModelError(f"input shape {self.input_shape} must be non-empty and positive")
        self.shapes: list[Shape] = []
        """Output shape of every layer (no batch axis)."""
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            if type(layer) not in LAYER_TYPES.values():
                raise ModelError(
                    f"layer {i}: {type(layer).__name__} is not a supported layer type; "
                    f"supported: {sorted(LAYER_TYPES)}"
                )
            try:
                if isinstance(layer, Add):
                    skip = self._source_shape(i, layer.source)
                    if skip != shape:
                        raise ValueError(
                            f"adds the output of layer {layer.source} of shape {skip} to an "
                            f"input of shape {shape}"
                        )
                shape = layer.output_shape(shape)
            except ValueError as exc:
                raise ModelError(f"layer {i} ({layer.kind}): {exc}") from None
            self.shapes.append(shape)

    def _source_shape(self, i: int, source: int) -> Shape:
        if not -1 <= source < i:
            raise ValueError(f"source {source} must be -1 (the input) or an earlier layer")
        return self.input_shape if source == -1 else self.shapes[source]

    @property
    def output_shape(self) -> Shape:
        """Shape of one output sample."""
        return self.shapes[-1]

    def input_shape_of(self, i: int) -> Shape:
        """Shape of one input sample of layer ``i``."""
        return self.input_shape if i == 0 else self.shapes[i - 1]

    def weight_layers(self) -> list[tuple[int, WeightLayer]]:
        """(index, layer) of every layer with a weight matrix, in order."""
        return [(i, la) for i, la in enumerate(self.layers) if isinstance(la, WeightLayer)]

    def check_input(self, X: np.ndarray) -> np.ndarray:
        """``X`` as float64 with a batch axis, or ModelError if its shape does not fit."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1:] != self.input_shape:
            raise ModelError(
                f"input batch of shape {X.shape} does not match the model input shape "
                f"(batch, {', '.join(map(str, self.input_shape))})"
            )
        return X

    def forward(self, X: np.ndarray, *, keep: bool = False) -> np.ndarray | list[np.ndarray]:
        """Software (float64) forward pass.

        Parameters
        ----------
        X : ndarray, shape (batch, *input_shape)
            Inputs.
        keep : bool
            Return every layer's output (a list, one per layer) instead of the last.
        """
        outs = self.run(self.check_input(X), lambda i, layer, x: layer.forward(x))
        return outs if keep else outs[-1]

    def walk(
        self, X: np.ndarray
    ) -> Generator[tuple[int, WeightLayer, np.ndarray], np.ndarray, list[np.ndarray]]:
        """The one traversal shared by the software reference and the chip execution.

        A coroutine: it yields ``(index, layer, x)`` for every weight layer and expects
        that layer's output to be sent back; every other layer (activations, pooling,
        residual adds) it computes itself, so shapes and residual sources are handled
        in one place whether the weight layers run in software, on a backend or inside a
        bluesky plan.

        Returns
        -------
        list of ndarray
            Every layer's output.
        """
        outs: list[np.ndarray] = []
        x = X
        for i, layer in enumerate(self.layers):
            if isinstance(layer, WeightLayer):
                x = yield i, layer, x
            elif isinstance(layer, Add):
                x = layer.forward(x, X if layer.source == -1 else outs[layer.source])
            else:
                x = layer.forward(x)
            outs.append(x)
        return outs

    def run(
        self, X: np.ndarray, weight_op: Callable[[int, WeightLayer, np.ndarray], np.ndarray]
    ) -> list[np.ndarray]:
        """:meth:`walk` with ``weight_op(index, layer, x)`` computing every weight layer.

        Returns
        -------
        list of ndarray
            Every layer's output.
        """
        walk = self.walk(X)
        try:
            request = next(walk)
            while True:
                request = walk.send(weight_op(*request))
        except StopIteration as stop:
            return stop.value

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: input shape and each layer's kind and hyper-parameters."""
        return {
            "input_shape": list(self.input_shape),
            "layers": [
                {"kind": la.kind, **la.params(), "output_shape": list(s)}
                for la, s in zip(self.layers, self.shapes, strict=True)
            ],
        }

    def __repr__(self) -> str:
        body = ", ".join(f"{la.kind}->{s}" for la, s in zip(self.layers, self.shapes, strict=True))
        return f"Model(input {self.input_shape}: {body})"
