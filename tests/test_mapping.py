"""Weight mapping and tiling (pure numpy)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labcim.mapping import (
    check_weights,
    targets_to_weights,
    tile_matrix,
    untile,
    weight_scale,
    weights_to_targets,
)

finite = st.floats(-5, 5, allow_nan=False, width=64)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=finite))
def test_targets_round_trip_and_stay_in_range(w):
    g_cell_max = 20.7
    scale = weight_scale(w)
    g = weights_to_targets(w, g_cell_max, scale)
    assert g.shape == (2, *w.shape)
    assert np.all((g >= 0) & (g <= g_cell_max + 1e-12))
    assert np.all(np.minimum(g[0], g[1]) == 0)  # one polarity of every cell is off
    np.testing.assert_allclose(targets_to_weights(g, g_cell_max, scale), w, atol=1e-12)


def test_percentile_scaling_clips_outliers():
    w = np.r_[np.linspace(-1, 1, 99), 50.0].reshape(10, 10)
    s = weight_scale(w, "percentile", 95)
    assert s < 2
    g = weights_to_targets(w, 10.0, s)
    assert g.max() == 10.0
    assert weight_scale(np.zeros((2, 2))) == 1.0


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.array([[1.0, np.nan]]), r"weights\[0, 1\] = nan"),
        (np.ones(3), "2-D"),
        (np.array([["a"]]), "numbers"),
    ],
)
def test_bad_weights_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        check_weights(bad)


def test_bad_scaling_names_allowed_values():
    with pytest.raises(ValueError, match="allowed"):
        weight_scale(np.ones((2, 2)), "median")
    with pytest.raises(ValueError, match="percentile"):
        weight_scale(np.ones((2, 2)), "percentile", 0)


def test_tiling_covers_matrix_exactly_and_reassembles():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(300, 130))
    tiles = tile_matrix(w.shape, 128, 64, cores=list(range(10, 20)))
    assert [t.core for t in tiles] == list(range(10, 19))  # 3 row x 3 col blocks
    cover = np.zeros(w.shape, int)
    blocks = {}
    for t in tiles:
        cover[t.row0 : t.row1, t.col0 : t.col1] += 1
        block = np.zeros((128, 64))
        block[: t.shape[0], : t.shape[1]] = w[t.row0 : t.row1, t.col0 : t.col1]
        blocks[t.core] = block
    assert np.all(cover == 1)
    np.testing.assert_array_equal(untile(blocks, tiles, w.shape), w)


def test_tiling_refuses_a_matrix_larger_than_the_cores():
    with pytest.raises(ValueError, match="needs 4 cores of 64 x 64, only 3 given"):
        tile_matrix((100, 100), 64, 64, cores=[0, 1, 2])
