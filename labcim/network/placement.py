"""Placement of a model's weight matrices onto crossbar cores, and their replication.

Every weight matrix (inputs x outputs; a conv2d's im2col matrix) is split into
core-sized tiles with :func:`labcim.mapping.tile_matrix`, one tile per core, layers in
order on consecutive cores.  A tile sits at its core's top-left corner.  The whole
model is checked before anything is assigned, so a model that does not fit is refused
with the per-layer core count before any device is programmed.

Replication (:func:`replicate`) spends the chip's idle capacity on copies of small
layers so that device noise averages out: a layer whose matrix fits in at most half a
core's rows is stacked ``row_copies`` times down its core's rows (the same inputs drive
every copy and the column sums them), and the whole placement is copied onto idle cores
(``copies`` of each block; the engine averages them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
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
        Its blocks, row tiles outer, column tiles inner; with core copies, every copy's
        tiles follow (the same blocks on other cores).
    row_copies : int
        Copies of each block stacked down its core's rows (1: none).
    """

    layer: int
    shape: tuple[int, int]
    tiles: list[Tile]
    row_copies: int = 1

    def copies(self, tile: Tile) -> int:
        """How many tiles of the layer hold the block of ``tile`` (on different cores)."""
        block = (tile.row0, tile.row1, tile.col0, tile.col1)
        return sum((t.row0, t.row1, t.col0, t.col1) == block for t in self.tiles)


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
        """Fractions of the chip's cores used, and of the used cores' cells holding weights
        (row copies included)."""
        cells = sum(t.shape[0] * t.shape[1] * lp.row_copies for lp in self.layers for t in lp.tiles)
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
                    "row_copies": lp.row_copies,
                }
                for lp in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Placement:
        """The placement described by :meth:`to_dict` (e.g. read back from a run)."""
        return cls(
            [
                LayerPlacement(
                    lp["layer"],
                    tuple(lp["shape"]),
                    [Tile(*t) for t in lp["tiles"]],
                    lp.get("row_copies", 1),
                )
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


def replicate(
    placement: Placement, cores: Sequence[int] | None = None, max_copies: int = 64
) -> Placement:
    """The placement with copies of its blocks on idle rows and idle cores.

    Row copies: a layer held in a single row tile of ``r`` rows gets
    ``min(rows // r, max_copies)`` copies stacked down its cores (one copy: layers of
    more than half a core's rows).  Core copies: ``min(len(cores) // used,
    max_copies)`` copies of every layer's tiles, on the next cores of ``cores`` (default
    all) not used yet, in order.  Copies of a block carry independent device errors, so
    summing ``n`` of them divides their share of the output error by about ``sqrt(n)``.

    Parameters
    ----------
    placement : Placement
        From :func:`place`.
    cores : sequence of int, optional
        The cores the model may use (those given to :func:`place`).
    max_copies : int
        Largest number of row copies, and of core copies.
    """
    cores = list(range(placement.n_cores) if cores is None else cores)
    used = placement.cores_used
    idle = [c for c in cores if c not in used]
    k = max(1, min(1 + len(idle) // len(used), max_copies)) if used else 1
    layers = []
    for lp in placement.layers:
        tiles = list(lp.tiles)
        for copy in range(1, k):
            offset = (copy - 1) * len(used)
            for t in lp.tiles:
                core = idle[offset + used.index(t.core)]
                tiles.append(replace(t, core=core))
        single = len({(t.row0, t.row1) for t in lp.tiles}) == 1
        rows = lp.tiles[0].shape[0]
        row_copies = min(placement.rows // rows, max_copies) if single else 1
        layers.append(replace(lp, tiles=tiles, row_copies=max(row_copies, 1)))
    return Placement(layers, placement.rows, placement.cols, placement.n_cores)
