"""Placement of a model's weight matrices onto crossbar cores.

Every weight matrix (inputs x outputs; a conv2d's im2col matrix) is split into
core-sized tiles with :func:`labcim.mapping.tile_matrix`, one tile per core, layers in
order on consecutive cores.  A tile sits at its core's top-left corner.  The whole
model is checked before anything is assigned, so a model that does not fit is refused
with the per-layer core count before any device is programmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labcim.mapping import Tile, tile_matrix
from labcim.network.model import Model


class PlacementError(ValueError):
    """The model cannot be placed on the cores given."""


@dataclass(frozen=True)
class LayerPlacement:
    """Where one weight layer lives.

    Parameters
    ----------
    layer : int
        Index of the layer in the model.
    shape : tuple of int
        (inputs, outputs) of its weight matrix.
    tiles : list of Tile
        Its blocks, row tiles outer, column tiles inner.
    """

    layer: int
    shape: tuple[int, int]
    tiles: list[Tile]


@dataclass(frozen=True)
class Placement:
    """Every weight layer's tiles on a chip of ``n_cores`` cores of ``rows x cols`` cells."""

    layers: list[LayerPlacement]
    rows: int
    cols: int
    n_cores: int

    def layer(self, index: int) -> LayerPlacement:
        """Placement of model layer ``index``."""
        for lp in self.layers:
            if lp.layer == index:
                return lp
        raise KeyError(f"layer {index} has no weights placed")

    @property
    def cores_used(self) -> list[int]:
        """Cores holding a tile, in order."""
        return [t.core for lp in self.layers for t in lp.tiles]

    def utilization(self) -> dict[str, float]:
        """Fractions of the chip's cores used, and of the used cores' cells holding weights."""
        cells = sum(t.shape[0] * t.shape[1] for lp in self.layers for t in lp.tiles)
        used = len(self.cores_used)
        return {
            "cores": used / self.n_cores,
            "cells_of_used_cores": cells / (used * self.rows * self.cols),
            "cells_of_chip": cells / (self.n_cores * self.rows * self.cols),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description for run metadata (see :meth:`from_dict`)."""
        return {
            "rows": self.rows,
            "cols": self.cols,
            "n_cores": self.n_cores,
            "utilization": self.utilization(),
            "layers": [
                {
                    "layer": lp.layer,
                    "shape": list(lp.shape),
                    "tiles": [[t.core, t.row0, t.row1, t.col0, t.col1] for t in lp.tiles],
                }
                for lp in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Placement:
        """The placement described by :meth:`to_dict` (e.g. read back from a run)."""
        return cls(
            [
                LayerPlacement(lp["layer"], tuple(lp["shape"]), [Tile(*t) for t in lp["tiles"]])
                for lp in d["layers"]
            ],
            d["rows"],
            d["cols"],
            d["n_cores"],
        )


def tiles_needed(shape: tuple[int, int], rows: int, cols: int) -> int:
    """Number of ``rows x cols`` cores a matrix of ``shape`` occupies."""
    return -(-shape[0] // rows) * -(-shape[1] // cols)


def place(
    model: Model, rows: int, cols: int, n_cores: int, cores: Sequence[int] | None = None
) -> Placement:
    """Place every weight layer of ``model`` on cores, one tile per core.

    Parameters
    ----------
    model : Model
        The network.
    rows, cols : int
        Crossbar size of one core.
    n_cores : int
        Number of cores of the chip.
    cores : sequence of int, optional
        Cores to use, in order (default: all, from 0).

    Raises
    ------
    PlacementError
        If the model needs more cores than given (the message lists each layer's need).
    """
    cores = list(range(n_cores) if cores is None else cores)
    bad = [c for c in cores if not 0 <= c < n_cores]
    if bad or len(set(cores)) != len(cores):
        raise PlacementError(f"cores {cores} must be distinct and within 0..{n_cores - 1}")
    shapes = [(i, la.matrix.shape) for i, la in model.weight_layers()]
    need = [tiles_needed(s, rows, cols) for _, s in shapes]
    if sum(need) > len(cores):
        per_layer = ", ".join(
            f"layer {i} {s[0]}x{s[1]}: {n}" for (i, s), n in zip(shapes, need, strict=True)
        )
        raise PlacementError(
            f"the model needs {sum(need)} cores of {rows} x {cols} ({per_layer}); "
            f"only {len(cores)} available"
        )
    layers, start = [], 0
    for (i, s), n in zip(shapes, need, strict=True):
        layers.append(LayerPlacement(i, s, tile_matrix(s, rows, cols, cores[start : start + n])))
        start += n
    return Placement(layers, rows, cols, n_cores)
