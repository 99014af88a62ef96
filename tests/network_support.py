"""Test support for labcim.network: a backend around the simulated chip and a programmer.

``labcim.writeverify`` has not landed yet, so weights are programmed here with
:func:`program_targets_simple_tdp`, a deliberately plain two-device verify loop through
the chip's public ``apply_pulses`` / ``read_conductance`` (no direct writes into
``chip.state``).  Swap it for the write-verify strategies once they are committed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labcim.network.execution import Deployment, prepare
from mock_hw.chip import Chip
from mock_hw.devices import PulseKind

SET_FULL = (300.0, 10e-6)  # uA, s: a full SET to the device's own SET conductance
RESET_FULL = (600.0, 100e-9)  # uA, s: RESET to the floor (about 0.1 uS)
SET_ONSET, SET_SLOPE = 40.0, 100.0  # uA: SET drive per 1 us pulse = (I - onset) / slope
SETTLE = 0.5  # s after the last pulse before calibrating (PCM relaxation: ~50 ms)


class SimChipBackend:
    """:class:`labcim.network.execution.Backend` over a :class:`mock_hw.chip.Chip`."""

    def __init__(self, chip: Chip) -> None:
        self.chip = chip
        self.rows, self.cols, self.n_cores = chip.spec.rows, chip.spec.cols, chip.spec.n_cores
        self.g_cell_max = chip.spec.devices_per_polarity * chip.model.g_max
        self.calls = 0

    def mvm(self, core: int, codes: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.chip.mvm(core, codes)

    def adc_lsb(self, core: int) -> float:
        return self.chip.adc_lsb(core)

    def config(self, core: int) -> dict[str, Any]:
        return self.chip.config(core).to_dict()

    def configure(self, core: int, **changes: Any) -> None:
        self.chip.configure(core, **changes)


def _pulse(chip: Chip, core: int, idx: tuple[np.ndarray, ...], kind: int, amp, width) -> None:
    """Pulse the devices ``idx`` = (polarity, device, row, col) arrays of one core."""
    if len(idx[0]) == 0:
        return
    n = len(idx[0])
    dpp = chip.spec.devices_per_polarity
    chip.apply_pulses(
        core,
        idx[2],
        idx[3],
        idx[0] * dpp + idx[1],
        np.full(n, kind),
        np.broadcast_to(np.asarray(amp, float), n).copy(),
        np.broadcast_to(np.asarray(width, float), n).copy(),
    )


def _read(chip: Chip, core: int) -> np.ndarray:
    s = chip.spec
    g = chip.read_conductance(core).astype(np.float64)
    return g.reshape(2, s.devices_per_polarity, s.rows, s.cols)


def program_targets_simple_tdp(
    chip: Chip, core: int, targets: np.ndarray, tol: float = 0.25, iterations: int = 30
) -> dict[str, int]:
    """Program a PCM core to per-polarity targets with a plain two-device verify loop.

    SET every device and read its SET conductance; per cell polarity keep devices
    fully SET (largest first) while they fit under the target, program one more device
    from RESET with partial SETs sized to ~70 % of the remaining gap (RESET and retry on
    overshoot) and RESET the rest.  Cells outside the targets' block are RESET.

    Parameters
    ----------
    chip : Chip
        A PCM chip.
    core : int
        Core to program.
    targets : ndarray, shape (2, r, c)
        Summed conductance per polarity (uS), placed at the core's top-left corner.
    tol : float
        Verify tolerance on the summed conductance (uS).
    iterations : int
        Largest number of verify iterations.

    Returns
    -------
    dict
        ``cells`` and ``converged`` counts.
    """
    s = chip.spec
    if s.device_type != "pcm":
        raise ValueError("program_targets_simple_tdp programs PCM chips only")
    goal = np.zeros((2, s.rows, s.cols))
    goal[:, : targets.shape[1], : targets.shape[2]] = targets
    everything = np.nonzero(np.ones((2, s.devices_per_polarity, s.rows, s.cols), bool))
    _pulse(chip, core, everything, PulseKind.SET, *SET_FULL)
    level = _read(chip, core)
    order = np.argsort(-level, axis=1)
    rest = goal.copy()
    full = np.zeros(level.shape, bool)
    tune = np.zeros(level.shape, bool)
    for rank in range(s.devices_per_polarity):
        pick = order[:, rank : rank + 1]
        lv = np.take_along_axis(level, pick, 1)[:, 0]
        is_full = rest >= lv
        is_tune = ~is_full & (rest > tol)  # at most one: rest is 0 after it
        np.put_along_axis(full, pick, is_full[:, None], 1)
        np.put_along_axis(tune, pick, is_tune[:, None], 1)
        rest = np.where(is_full, rest - lv, np.where(is_tune, 0.0, rest))
    _pulse(chip, core, np.nonzero(~full), PulseKind.RESET, *RESET_FULL)
    done = ~tune.any(axis=1)
    for _ in range(iterations):
        g = _read(chip, core)
        err = goal - g.sum(axis=1)
        done |= np.abs(err) <= tol
        if done.all():
            break
        open_tune = tune & ~done[:, None]
        over = open_tune & (err[:, None] < -tol)
        under = open_tune & (err[:, None] > tol)
        _pulse(chip, core, np.nonzero(over), PulseKind.RESET, *RESET_FULL)
        idx = np.nonzero(under)
        gap = np.maximum(level[idx] - g[idx], 1e-3)
        frac = np.clip(0.7 * err[idx[0], idx[2], idx[3]] / gap, 0.0, 0.95)
        amp = np.clip(SET_ONSET + SET_SLOPE * -np.log1p(-frac), SET_ONSET + 1.0, SET_FULL[0])
        _pulse(chip, core, idx, PulseKind.SET, amp, 1e-6)
    return {"cells": int(goal.size), "converged": int(done.sum())}


def deploy(
    chip: Chip, model, X_cal: np.ndarray, *, cores: list[int] | None = None, **kwargs: Any
) -> tuple[Deployment, SimChipBackend, float]:
    """Place, program and calibrate ``model`` on ``chip``.

    Returns the deployment, the backend and the simulated time at which programming
    ended (drift times are counted from it).  ``kwargs`` go to :class:`Deployment`.
    """
    backend = SimChipBackend(chip)
    dep = prepare(model, backend, X_cal, cores=cores, **kwargs)
    for core, g in dep.targets().items():
        program_targets_simple_tdp(chip, core, g)
    t_prog = chip.time
    chip.advance(SETTLE)
    dep.calibrate(backend, X_cal)
    return dep, backend, t_prog
