"""Periphery: ADC quantization and the first-order IR-drop model vs a direct circuit solve."""

import numpy as np
import pytest

from mock_hw.periphery import adc_levels, dac_levels, ir_drop_weights, quantize_adc


def solve_crossbar(g_us: np.ndarray, x: np.ndarray, r_wire: float) -> np.ndarray:
    """Exact output currents (uA) of a resistive crossbar by nodal analysis.

    Same geometry as ir_drop_weights: rows driven at column 0, columns sensed at the
    last row by a virtual ground, one wire segment of ``r_wire`` ohm between neighbours
    and between each wire end and its driver / sense amplifier.
    """
    n, m = g_us.shape
    g = g_us * 1e-6
    gw = 1.0 / r_wire
    u = lambda i, j: i * m + j  # noqa: E731  row-wire node
    v = lambda i, j: n * m + i * m + j  # noqa: E731  column-wire node
    a = np.zeros((2 * n * m, 2 * n * m))
    b = np.zeros(2 * n * m)
    for i in range(n):
        for j in range(m):
            k, q = u(i, j), v(i, j)
            # row node: left segment (to driver or neighbour), right segment, device
            a[k, k] += gw + g[i, j]
            if j == 0:
                b[k] += gw * x[i]
            else:
                a[k, u(i, j - 1)] -= gw
            if j < m - 1:
                a[k, k] += gw
                a[k, u(i, j + 1)] -= gw
            a[k, q] -= g[i, j]
            # column node: device, upper segment, lower segment (to neighbour or ground)
            a[q, q] += g[i, j] + gw
            a[q, k] -= g[i, j]
            if i > 0:
                a[q, q] += gw
                a[q, v(i - 1, j)] -= gw
            if i < n - 1:
                a[q, v(i + 1, j)] -= gw
    sol = np.linalg.solve(a, b)
    return gw * sol[[v(n - 1, j) for j in range(m)]] * 1e6


@pytest.mark.parametrize("r_wire", [2.0, 5.0, 20.0])
def test_first_order_ir_drop_matches_direct_solve(r_wire):
    rng = np.random.default_rng(3)
    g = rng.uniform(0, 20.7, size=(16, 12))
    x = rng.uniform(-0.2, 0.2, size=16)
    exact = solve_crossbar(g, x, r_wire)
    ideal = x @ g
    approx = x @ ir_drop_weights(g, r_wire).astype(np.float64)
    drop = np.linalg.norm(exact - ideal) / np.linalg.norm(ideal)
    err = np.linalg.norm(exact - approx) / np.linalg.norm(ideal)
    assert drop > 1e-3  # the effect is really there
    # second-order residual: much smaller than the drop itself
    assert err < 0.1 * drop + 1e-6, (drop, err)


def test_ir_drop_reduces_outputs_more_far_from_the_drivers():
    g = np.full((32, 32), 10.0)
    w = ir_drop_weights(g, 1.0)
    assert np.all(w < g)
    # cells far from the row drivers (high column) and far from the ADC (low row) lose most
    assert w[0, -1] < w[-1, 0]


def test_quantize_rounds_and_saturates():
    lsb = 0.5
    cur = np.array([[0.0, 0.24, 0.26, -0.76, 1000.0, -1000.0]], np.float32)
    codes = quantize_adc(cur, lsb, 8)
    assert codes.dtype == np.int32
    assert codes.tolist() == [[0, 0, 1, -2, 127, -127]]
    assert adc_levels(4) == 7 and dac_levels(8) == 127
