"""The MVM kernel's noise draw and its one-phase branch, against what they must equal."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mock_hw.chip import Chip
from mock_hw.slow_noise import _normal_table, standard_normal


@pytest.mark.parametrize("bits", [np.random.PCG64, np.random.MT19937])
def test_standard_normal_is_the_quantile_table_at_the_generators_uint16_draws(bits):
    """Each draw is the table's entry at one uniform uint16: the raw 64-bit words split
    in four (PCG64), or ``integers`` for a generator with 32-bit words (MT19937)."""
    n = 1 << 18
    rng, twin = np.random.Generator(bits(7)), np.random.Generator(bits(7))
    out = np.empty((n // 256, 256), np.float32)
    z = standard_normal(rng, out.shape, out=out)
    if bits is np.random.PCG64:
        index = twin.bit_generator.random_raw(n // 4).view(np.uint16)
    else:
        index = twin.integers(0, 1 << 16, n, dtype=np.uint16)
    assert z is out
    np.testing.assert_array_equal(z.ravel(), _normal_table()[index.astype(np.intp)])
    np.testing.assert_array_equal(rng.random(8), twin.random(8))  # the same words used


def test_standard_normal_has_the_moments_and_tails_of_a_gaussian():
    z = standard_normal(np.random.default_rng(3), 1 << 20).astype(np.float64)
    # 1 M draws: the sampling errors are 0.001 (mean), 0.0007 (std), 0.005 (kurtosis)
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1.0) < 0.003
    assert abs(np.mean(z**4) - 3.0) < 0.03
    assert np.mean(np.abs(z) > 3.0) == pytest.approx(2.7e-3, rel=0.1)
    assert np.abs(z).max() < 4.5  # the table's outermost quantile is at 4.3 sigma


NO_ASYMMETRY = dict(asym_mean=0.0, asym_std=0.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_one_phase_mvm_differs_from_four_phase_by_the_asymmetry_alone(threads):
    """The one-phase branch adds the reverse-bias product to the signal and nothing else:
    with no polarity asymmetry its codes are the four-phase codes bit for bit (same
    seed, same noise draws), with the default asymmetry they differ on negative inputs."""
    rng = np.random.default_rng(1)
    x = rng.integers(-127, 128, (300, 256))
    with threadpool_limits(limits=threads, user_api="blas"):
        codes = {}
        for periphery in ({}, NO_ASYMMETRY):
            for mode in ("4-phase", "1-phase"):
                chip = Chip.from_preset("pcm-hermes", cores=1, seed=2, periphery=periphery)
                chip.configure(0, read_mode=mode)
                codes[bool(periphery), mode] = chip.mvm(0, x)
    np.testing.assert_array_equal(codes[True, "1-phase"], codes[True, "4-phase"])
    np.testing.assert_array_equal(codes[True, "4-phase"], codes[False, "4-phase"])
    differ = codes[False, "1-phase"] != codes[False, "4-phase"]
    assert 0.05 < differ.mean() < 0.95, differ.mean()
    # the asymmetry is seen through negative inputs only
    positive = Chip.from_preset("pcm-hermes", cores=1, seed=2)
    positive.configure(0, read_mode="1-phase")
    with threadpool_limits(limits=threads, user_api="blas"):
        four = Chip.from_preset("pcm-hermes", cores=1, seed=2).mvm(0, np.abs(x))
        np.testing.assert_array_equal(positive.mvm(0, np.abs(x)), four)
