"""Baselines that split a cell's target by the nominal device maximum: max-fill and ODP.

Le Gallo et al., Nat. Electron. 6, 680 (2023), Extended Data Fig. 5c: "TDP max-fill"
fills the devices of a polarity in turn up to the nominal maximum ``g_max`` and programs
each of them iteratively; ODP (one-device programming) uses a single device per
polarity.  Neither reads the devices' SET conductances first, so a device whose SET
conductance is below its share cannot reach it (the cell saturates) and every device
left at an intermediate level adds its own relaxation error.  Both start by fully
RESETting every device and tune each device to its own share, within
``tolerance / (tuned devices of the cell)`` so the sum stays within ``tolerance``.
"""

from __future__ import annotations

import numpy as np

from labcim.writeverify.base import (
    PulseKind,
    Pulses,
    Role,
    Work,
    device_all,
    device_any,
    new_pulses,
)
from labcim.writeverify.partial_set import PartialSetStrategy, stalled


class MaxFill(PartialSetStrategy):
    """Fill devices 0, 1, ... of each polarity up to ``g_max`` each; tune every share."""

    name = "max-fill"

    def _first_pulses(self, w: Work, g: np.ndarray) -> Pulses:
        pulses = new_pulses(w)
        self._add_full(pulses, np.ones(g.shape, bool), PulseKind.RESET)
        return pulses

    def _plan(self, w: Work, g: np.ndarray) -> None:
        if w.iteration > 1:
            return  # the split depends on the targets only
        dev = w.devices
        index = np.arange(self.dpp).reshape(1, -1)
        share = np.clip(w.goal[:, None] - index * self.g_max, 0.0, self.g_max)
        tune = (share > self.tolerance / self.used) & (index < self.used)
        dev["role"][:] = np.where(tune, Role.TUNE, Role.OFF)
        dev["goal"][:] = np.where(tune, share, 0.0)
        n_tuned = np.maximum(tune.sum(axis=1, keepdims=True), 1)
        dev["tol"][:] = self.tolerance / n_tuned

    def _converged(self, w: Work, g: np.ndarray, fulfils: np.ndarray) -> np.ndarray:
        return device_all(fulfils)

    def _saturated(self, w: Work, g: np.ndarray, fulfils: np.ndarray) -> np.ndarray:
        short = stalled(w)
        return device_any(short) & device_all(fulfils | short)


class ODP(MaxFill):
    """One device per polarity (device 0) tuned to the whole target; the others OFF."""

    name = "odp"

    @property
    def used(self) -> int:
        """Devices per polarity that carry conductance."""
        return 1
