"""ISPP: incremental-step pulse programming of RRAM, as on NeuRRAM.

Wan et al., Nature 608, 504 (2022), and its public control code: a device below its goal
gets SET pulses starting at 1.2 V and growing by 0.1 V per pulse up to 3.3 V; above its
goal, RESET pulses from 1.2 V up to 2.5 V likewise; a change of direction restarts the
ramp.  Write-verify tolerance +-1 uS over a 1-40 uS range, so a weight maps to
``g_min + target`` on each polarity (the common ``g_min`` cancels in the difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labcim.writeverify.base import (
    Last,
    Pulses,
    Role,
    Strategy,
    Work,
    device_all,
    set_pulses,
)


@dataclass(frozen=True)
class ISPPParams:
    """NeuRRAM's incremental pulses (Wan et al. 2022).

    Parameters
    ----------
    set_start, set_step, set_stop : float
        SET ramp: first amplitude, increment per pulse and ceiling (V).
    reset_start, reset_step, reset_stop : float
        RESET ramp likewise (V).
    width : float
        Pulse width (s); NeuRRAM uses 100 ns - 1 us.
    g_min : float
        Lowest programmed conductance of a device (uS); targets sit on top of it.
    patience : int
        A device whose ramp has run ``patience`` pulses is dead (stuck) if it has not
        moved a ``stuck_fraction`` of its distance to the rail it is driven toward
        (``g_max`` for SET, ``g_min`` for RESET): a working device always has by then,
        as every pulse moves it by a share of that distance.
    stuck_fraction : float
        See ``patience``.
    """

    set_start: float = 1.2
    set_step: float = 0.1
    set_stop: float = 3.3
    reset_start: float = 1.2
    reset_step: float = 0.1
    reset_stop: float = 2.5
    width: float = 1e-6
    g_min: float = 1.0
    patience: int = 14
    stuck_fraction: float = 0.1


class ISPP(Strategy):
    """Per-device incremental-step ramps; a cell converges when each of its devices is
    within ``tolerance / dpp`` of ``g_min + target / dpp``.

    Parameters
    ----------
    params : ISPPParams
        Ramp parameters.
    **kwargs
        Those of :class:`~labcim.writeverify.base.Strategy`.
    """

    name = "ispp"
    unit = "V"
    params_class = ISPPParams
    device_types = ("rram",)

    def __init__(self, params: ISPPParams, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = params
        lim = self.limits
        for kind in ("set", "reset"):
            start, stop = getattr(params, f"{kind}_start"), getattr(params, f"{kind}_stop")
            if not 0 < start <= stop <= lim[f"{kind}_max"]:
                raise ValueError(
                    f"{kind} ramp {start}-{stop} V must rise within (0, {kind}_max = "
                    f"{lim[f'{kind}_max']} V]"
                )
        if not lim["width_min"] <= params.width <= lim["width_max"]:
            raise ValueError(f"width = {params.width} s is outside the width limits")
        if not 0 <= params.g_min < self.g_max:
            raise ValueError(f"g_min = {params.g_min} uS must be in [0, g_max = {self.g_max})")
        if isinstance(params.patience, bool) or not (
            isinstance(params.patience, int) and params.patience >= 1
        ):
            raise ValueError(f"patience = {params.patience!r} must be an integer >= 1")

    @property
    def max_target(self) -> float:
        """``dpp * (g_max - g_min)`` (uS)."""
        return self.dpp * (self.g_max - self.params.g_min)

    @property
    def default_tolerance(self) -> float:
        """NeuRRAM's +-1 uS per device, times ``dpp`` for the cell (uS)."""
        return 1.0 * self.dpp

    @property
    def g_cell_max(self) -> float:
        """Full-scale weights map to the whole range, ``max_target`` (uS)."""
        return self.max_target

    def _goal(self, targets: np.ndarray) -> np.ndarray:
        return targets + self.dpp * self.params.g_min

    def _extra_device_arrays(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"ramp": np.zeros(shape, np.int16), "g0": np.zeros(shape, np.float32)}

    def _plan(self, w: Work, g: np.ndarray) -> None:
        if w.iteration > 0:
            return
        dev = w.devices
        dev["role"][:] = Role.TUNE
        dev["goal"][:] = (w.goal / self.dpp)[:, None]
        dev["tol"][:] = self.tolerance / self.dpp

    def _observe(self, w: Work, g: np.ndarray) -> None:
        dev = w.devices
        p, ramp, g0 = self.params, dev["ramp"], dev["g0"]
        span = np.where(ramp > 0, self.g_max, p.g_min) - g0
        moved = np.divide(g - g0, span, out=np.ones_like(g), where=np.abs(span) > 1e-6)
        dev["dead"] |= (np.abs(ramp) >= p.patience) & (moved < p.stuck_fraction)

    def _converged(self, w: Work, g: np.ndarray, fulfils: np.ndarray) -> np.ndarray:
        return device_all(fulfils)

    def _tune(self, w: Work, g: np.ndarray, pulses: Pulses) -> None:
        p, dev = self.params, w.devices
        live = ~dev["dead"] & ~w.done[:, None]
        gap = dev["goal"] - g
        direction = np.where(
            live & (gap > dev["tol"]), 1, np.where(live & (gap < -dev["tol"]), -1, 0)
        )
        ramp = dev["ramp"]
        fresh = (direction != 0) & (np.sign(ramp) != direction)
        np.copyto(dev["g0"], g, where=fresh)
        ramp[:] = np.where(direction == 0, 0, np.where(fresh, direction, ramp + direction))
        n = np.abs(ramp) - 1
        up, down = direction > 0, direction < 0
        set_pulses(
            pulses,
            up,
            Last.PARTIAL_SET,
            np.minimum(p.set_start + p.set_step * n, p.set_stop),
            p.width,
        )
        set_pulses(
            pulses,
            down,
            Last.PARTIAL_RESET,
            np.minimum(p.reset_start + p.reset_step * n, p.reset_stop),
            p.width,
        )
