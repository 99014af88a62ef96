"""Simulator speed: one MVM batch with every non-ideality on vs a plain numpy matmul.

Issue 18 target: a batch of 1024 input vectors through one 256 x 256 ``pcm-hermes`` core
(4-phase, IR drop, read noise, ADC mismatch and quantization) costs at most 3x a float32
numpy matmul of the same shapes (the floor is 2x: a 4-phase read is two matmuls), with 1
and with 2 BLAS threads.  Both thread counts are measured here whatever ``--threads``
says; the matmul and the MVM alternate repeat by repeat.
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness import Record, interleave, main, timed, using_blas_threads
from mock_hw.chip import Chip

THREADS = (1, 2)


def run(quick: bool = False) -> list[Record]:
    """The MVM batch ratio, the ratio right after programming, and vectors/s per thread count."""
    rng = np.random.default_rng(0)
    chip = Chip.from_preset("pcm-hermes", cores=1, seed=0)
    x = rng.integers(-127, 128, (1024, 256)).astype(np.int8)
    x[rng.random(x.shape) < 0.5] = 0
    xf = x.astype(np.float32)
    w = rng.standard_normal((256, 256), dtype=np.float32)
    repeats = 5 if quick else 21

    def refresh() -> None:
        chip.cores[0].programmed(chip.time)  # drop the cached effective weights
        chip.mvm(0, x)

    records = []
    for threads in THREADS:
        blas = f"{threads} BLAS thread{'s' if threads > 1 else ''}"
        with using_blas_threads(threads):
            # A minute after the last pulse (the previous thread count's refresh trials
            # count as pulses): the cached weights then last ~110 batches, not two
            chip.advance(60.0)
            chip.mvm(0, x)  # the weights are cached from here on
            t = interleave(
                {
                    "mvm": timed(lambda: chip.mvm(0, x), number=5),
                    "matmul": timed(lambda: xf @ w, number=5),
                },
                repeats,
            )
            matmul = f"numpy float32 matmul ({1e3 * t.median('matmul'):.2f} ms)"
            records += [
                t.ratio(
                    f"mvm 1024x256 @ 256x256, all non-idealities, {blas}",
                    "mvm",
                    "matmul",
                    matmul,
                    "<= 3",
                ),
                t.rate(f"mvm vectors per second (one core), {blas}", "mvm", 1024, "1/s"),
            ]
            t = interleave(
                {"refresh": timed(refresh), "matmul": timed(lambda: xf @ w, number=5)},
                3 if quick else 11,
            )
            records.append(
                t.ratio(
                    f"mvm batch right after programming (weights recomputed), {blas}",
                    "refresh",
                    "matmul",
                    "numpy float32 matmul",
                )
            )
    return records


if __name__ == "__main__":
    main(run)
