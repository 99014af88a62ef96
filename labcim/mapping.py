"""Mapping weight matrices to differential conductance targets, and tiling them over cores.

Pure numpy.  A weight ``w`` maps to a cell whose positive polarity holds
``G+ = max(w, 0) / scale * g_cell_max`` and negative polarity ``G- = max(-w, 0) / scale *
g_cell_max`` (the other polarity is left fully off), where ``g_cell_max`` is the largest
summed conductance of one polarity (``devices_per_polarity * g_max``) and ``scale`` the
weight magnitude that maps to it.  Weights beyond ``scale`` are clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALINGS = ("max", "percentile")


def check_weights(weights: np.ndarray) -> np.ndarray:
    """Return ``weights`` as a finite 2-D float64 array or raise ValueError saying why."""
    w = np.asarray(weights)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"weights must be a non-empty 2-D matrix, got shape {w.shape}")
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise ValueError(f"weights must be numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    bad = ~np.isfinite(w)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"weights[{i}, {j}] = {w[i, j]} is not finite")
    return w


def weight_scale(weights: np.ndarray, method: str = "max", percentile: float = 99.0) -> float:
    """The weight magnitude that maps to the largest conductance.

    Parameters
    ----------
    weights : ndarray
        Weight matrix.
    method : str
        ``"max"``: max |W| (nothing clipped); ``"percentile"``: the given percentile of
        |W| (outliers clipped, the rest gets more conductance range; NeuRRAM uses 95).
    percentile : float
        Percentile (0-100] for ``method="percentile"``.
    """
    w = np.abs(check_weights(weights))
    if method == "max":
        s = float(w.max())
    elif method == "percentile":
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile = {percentile} is outside (0, 100]")
        s = float(np.percentile(w, percentile))
    else:
        raise ValueError(f"scaling method {method!r}; allowed: {SCALINGS}")
    return s if s > 0 else 1.0  # an all-zero matrix maps to all-off cells


def weights_to_targets(weights: np.ndarray, g_cell_max: float, scale: float) -> np.ndarray:
    """Differential conductance targets (uS), shape (2, rows, cols): [G+, G-].

    Parameters
    ----------
    weights : ndarray, shape (rows, cols)
        Weight matrix.
    g_cell_max : float
        Largest summed conductance of one polarity of a cell (uS).
    scale : float
        Weight magnitude mapped to ``g_cell_max`` (see :func:`weight_scale`).
    """
    w = np.clip(check_weights(weights) / scale, -1.0, 1.0) * g_cell_max
    return np.stack([np.maximum(w, 0), np.maximum(-w, 0)])


def targets_to_weights(g: np.ndarray, g_cell_max: float, scale: float) -> np.ndarray:
    """Weights represented by per-polarity conductances ``g`` (uS), shape (2, rows, cols)."""
    return (g[0] - g[1]) * (scale / g_cell_max)


@dataclass(frozen=True)
class Tile:
    """A block of a weight matrix placed on one core.

    Parameters
    ----------
    core : int
        Core holding the block.
    row0, row1, col0, col1 : int
        The block is ``W[row0:row1, col0:col1]``; it sits at the core's top-left corner.
    """

    core: int
    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the block."""
        return (self.row1 - self.row0, self.col1 - self.col0)


def tile_matrix(shape: tuple[int, int], rows: int, cols: int, cores: list[int]) -> list[Tile]:
    """Split a matrix of ``shape`` into core-sized blocks and assign them to ``cores`` in order.

    Parameters
    ----------
    shape : tuple of int
        (rows, cols) of the weight matrix (inputs x outputs).
    rows, cols : int
        Size of one core's crossbar.
    cores : list of int
        Cores available, used in order.

    Raises
    ------
    ValueError
        If the matrix needs more cores than given.
    """
    n_r, n_c = -(-shape[0] // rows), -(-shape[1] // cols)
    if n_r * n_c > len(cores):
        raise ValueError(
            f"a {shape[0]} x {shape[1]} matrix needs {n_r * n_c} cores of {rows} x {cols}, "
            f"only {len(cores)} given"
        )
    return [
        Tile(
            cores[i * n_c + j],
            i * rows,
            min((i + 1) * rows, shape[0]),
            j * cols,
            min((j + 1) * cols, shape[1]),
        )
        for i in range(n_r)
        for j in range(n_c)
    ]


def untile(blocks: dict[int, np.ndarray], tiles: list[Tile], shape: tuple[int, int]) -> np.ndarray:
    """Reassemble a matrix of ``shape`` from per-core blocks (each at least the tile's shape)."""
    out = np.empty(shape, dtype=np.result_type(*blocks.values()))
    for t in tiles:
        out[t.row0 : t.row1, t.col0 : t.col1] = blocks[t.core][: t.shape[0], : t.shape[1]]
    return out
