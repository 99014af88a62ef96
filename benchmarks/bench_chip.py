"""Simulator speed: one MVM batch with every non-ideality on vs a plain numpy matmul.

Issue 2 target: a batch of 1024 input vectors through one 256 x 256 ``pcm-hermes`` core
(4-phase, IR drop, read noise, ADC mismatch and quantization) costs at most 4x a float32
numpy matmul of the same shapes, measured in the same run.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Record, best_time, main
from mock_hw.chip import Chip


def run(quick: bool = False) -> list[Record]:
    """Measure the MVM batch ratio and the cost of refreshing the cached weights."""
    rng = np.random.default_rng(0)
    chip = Chip.from_preset("pcm-hermes", cores=1, seed=0)
    chip.advance(60.0)  # a core is used some time after programming, as in the lab
    x = rng.integers(-127, 128, (1024, 256)).astype(np.int8)
    x[rng.random(x.shape) < 0.5] = 0
    xf = x.astype(np.float32)
    w = rng.standard_normal((256, 256), dtype=np.float32)
    repeat = 5 if quick else 20
    t_np = best_time(lambda: xf @ w, repeat=repeat, number=5)
    chip.mvm(0, x)
    t_batch = best_time(lambda: chip.mvm(0, x), repeat=repeat, number=5)

    def refresh() -> None:
        chip.cores[0].programmed(chip.time)  # drop the cached effective weights
        chip.mvm(0, x)

    t_refresh = best_time(refresh, repeat=3 if quick else 10)
    return [
        Record(
            "mvm 1024x256 @ 256x256, all non-idealities",
            t_batch / t_np,
            "x",
            "numpy float32 matmul",
            "<= 4",
        ),
        Record(
            "mvm batch right after programming (weights recomputed)",
            t_refresh / t_np,
            "x",
            "numpy float32 matmul",
        ),
        Record("mvm vectors per second (one core)", 1024 / t_batch, "1/s"),
    ]


if __name__ == "__main__":
    main(run)
