"""TDP: two-device programming of PCM unit cells (IBM HERMES).

Le Gallo et al., Nat. Electron. 6, 680 (2023), Extended Data Fig. 5: SET every device of
the unit cell and read its SET conductance (cells whose target is within tolerance of 0
are RESET at once instead); keep devices fully SET while their SET
conductances fit under the target (largest first), fully RESET the rest except one,
which is programmed iteratively so that the cell's summed conductance meets the target.
At most one device per polarity is left at an intermediate level, so only it carries
the post-programming relaxation error, and the wide spread of SET conductances is used
rather than suffered.  The same rule works for one device per polarity (it is then ODP
that knows each device's SET conductance).
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
    device_sum,
    new_pulses,
)
from labcim.writeverify.partial_set import PartialSetStrategy, stalled


class TDP(PartialSetStrategy):
    """Two-device programming; cells converge when ``|sum(G) - target| <= tolerance``.

    Cells whose devices' SET conductances add up to less than ``target - tolerance``
    are left with every device fully SET and reported ``saturated``.  A dead device is
    left alone and counted at its read conductance; its cell fails only if the other
    devices cannot make up for it.
    """

    name = "tdp"

    def _first_pulses(self, w: Work, g: np.ndarray) -> Pulses:
        """Full SET of the cells that need conductance; cells to be off go straight to
        a full RESET (their SET conductances are never used: fewer pulses, less wear)."""
        pulses = new_pulses(w)
        on = np.broadcast_to((w.goal > self.tolerance)[:, None], g.shape)
        self._add_full(pulses, on, PulseKind.SET)
        self._add_full(pulses, ~on, PulseKind.RESET)
        return pulses

    def _plan(self, w: Work, g: np.ndarray) -> None:
        """Greedy split over the live devices by descending measured SET conductance."""
        dev = w.devices
        dead, level = dev["dead"], dev["level"]
        tol = self.tolerance
        rest = w.goal - device_sum(np.where(dead, g, 0.0))
        w.cells["infeasible"] = rest < -tol
        # Rank devices by SET conductance, largest first (ties by index); dead ones last.
        left = np.where(dead, -np.inf, level)
        rank = np.zeros(dead.shape, np.int8)
        for d in range(self.dpp):
            for e in range(self.dpp):
                if e != d:
                    ahead = left[:, e] >= left[:, d] if e < d else left[:, e] > left[:, d]
                    rank[:, d] += ahead
        role = np.full(dead.shape, Role.OFF, np.int8)
        for r in range(self.dpp):
            this = rank == r
            s = device_sum(np.where(this, left, 0.0))
            live = device_any(this & ~dead)
            full = live & (rest >= s)
            tune = live & ~full & (rest > tol)
            np.copyto(role, Role.FULL, where=this & full[:, None])
            np.copyto(role, Role.TUNE, where=this & tune[:, None])
            rest = np.where(full, rest - s, np.where(tune, 0.0, rest))
        w.cells["unreachable"] = rest > tol
        open_ = ~w.done[:, None]
        np.copyto(dev["role"], role, where=open_)
        # The tuned device makes up whatever the others read now (wander, floors, dead).
        others = device_sum(g)[:, None] - g
        np.copyto(dev["goal"], w.goal[:, None] - others, where=open_)

    def _converged(self, w: Work, g: np.ndarray, fulfils: np.ndarray) -> np.ndarray:
        # Dead devices count at whatever they read; the others make up for them.
        ok = device_all(fulfils | w.dead)
        return ok & (np.abs(device_sum(g) - w.goal) <= self.tolerance)

    def _saturated(self, w: Work, g: np.ndarray, fulfils: np.ndarray) -> np.ndarray:
        unreachable = w.cells["unreachable"] & device_all(fulfils | w.dead)
        return unreachable | device_any(stalled(w))

    def _hopeless(self, w: Work, g: np.ndarray) -> np.ndarray:
        cells = w.cells
        return device_any(w.dead) & (cells["infeasible"] | cells["unreachable"])
