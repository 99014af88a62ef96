"""Comparison of any two runs (labcim.compare): measured against measured, not only replays."""

from __future__ import annotations

import numpy as np
import pytest

import labcim
from labcim.compare import compare, format_comparison
from labcim.engine import run_engine
from plans import conductance_map


@pytest.fixture
def two_reads(tmp_path):
    """Two conductance_map runs of one chip, and one of a twin built from the same seed."""
    out = tmp_path / "r.h5"
    RE = run_engine(out, progress=False)
    for seed in (4, 4):
        board = labcim.connect(f"sim://pcm-small?cores=1&seed={seed}")
        RE(conductance_map(board, reads=2))
        RE(conductance_map(board, reads=2))
        board.close()
    return labcim.open_runs(out)


def test_two_chips_of_one_seed_measure_the_same(two_reads):
    c = compare(two_reads[0], two_reads[2])
    assert c.identical, format_comparison(c)
    assert c.names == ("first", "second") and c.a.startswith("run 1 ")


def test_two_reads_of_one_chip_differ_by_the_read_noise(two_reads):
    first, second = two_reads[0], two_reads[1]
    c = compare(first, second)
    assert not c.identical and not c.missing
    (maps,) = [d for d in c.data if d.key == "board_core0_conductance_map"]
    assert maps.events == (2, 2) and not maps.identical
    g = np.asarray(first.streams["primary"]["board_core0_conductance_map"], np.float64)
    h = np.asarray(second.streams["primary"]["board_core0_conductance_map"], np.float64)
    assert maps.std == pytest.approx(float(np.std(h - g)))
    noise = first.summary["core0_read_noise"]  # rms of consecutive reads / sqrt 2
    assert 0.5 * np.sqrt(2) * noise < maps.std < 2 * np.sqrt(2) * noise
    (mean,) = [f for f in c.figures if f.key == "core0_mean"]
    assert mean.diff == pytest.approx(second.summary["core0_mean"] - first.summary["core0_mean"])
    text = format_comparison(c, keys=["conductance_map"])
    assert text.splitlines()[0].endswith(": differs") and "first run 1 " in text
    assert "primary/board_core0_conductance_map" in text and "core0_mean" not in text
