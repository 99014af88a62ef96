"""Iterative tuning of PCM devices by partial SET pulses with a learned per-device gain.

Model a lab characterizes once per technology (and the one documented for the simulated
devices in docs/physics.md): a SET pulse of current I (uA) and width w (s) moves a device
from G toward its own SET conductance ``level`` by the fraction ``1 - exp(-drive)``,
``drive = gain * (I - set_threshold) * w``.  Each device starts from the default ``gain``
and refines it from every partial SET it receives (geometric mean of the old estimate and
the observed one); a device that does not move has its gain divided by 4, so within a
few pulses it is sent a full SET, which either measures its level or reveals it dead.
An overshoot is undone by a full RESET (PCM RESET is history-free: it restarts the
device from the amorphous floor) and the climb starts again with the learned gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labcim.writeverify.base import (
    DEAD_FRACTION,
    Last,
    PulseKind,
    Pulses,
    Role,
    Strategy,
    Work,
    set_pulses,
)


@dataclass(frozen=True)
class PartialSetParams:
    """Pulse parameters of PCM tuning (defaults suit the simulated HERMES-like devices).

    Parameters
    ----------
    set_threshold : float
        Current (uA) below which a SET pulse does not crystallize.
    set_gain : float
        Initial crystallization drive per uA per s of pulse (1/(uA s)); 1e4 = a drive of
        1 for 100 uA above threshold during 1 us.
    set_width : float
        Width (s) of partial SET pulses; longer only when ``set_max`` is not enough.
    reset_width : float
        Width (s) of a full RESET pulse at ``reset_max`` (100 ns melts and quenches).
    aim : float
        Share of the remaining gap a partial SET aims for while the gap is large; it
        undershoots on purpose because an overshoot costs a RESET and a new climb.
    centre_band : float
        Below ``centre_band * tolerance`` of gap the pulse aims at the goal itself.
    full_fraction : float
        A step needing more than this share of the way to ``level`` is a full SET.
    dead_fraction : float
        A full SET leaves a working device above, a full RESET below,
        ``dead_fraction * g_max`` (uS).
    fill : float
        Share of the nominal maximum (used devices x g_max) that full-scale weights map
        to (:attr:`~labcim.writeverify.base.Strategy.g_cell_max`): HERMES SET
        conductances spread widely, so a full 20.7 uS leaves about 1 % of TDP cells
        beyond reach; 0.9 keeps that near 0.5 %.
    """

    set_threshold: float = 40.0
    set_gain: float = 1e4
    set_width: float = 1e-6
    reset_width: float = 100e-9
    aim: float = 0.6
    centre_band: float = 2.5
    full_fraction: float = 0.9
    dead_fraction: float = DEAD_FRACTION
    fill: float = 0.9


GAIN_RANGE = (1e-3, 1e3)
"""Learned gains stay within this factor range of the default (guards against noise)."""


class PartialSetStrategy(Strategy):
    """Shared PCM tuning: adaptive partial SETs up, full RESET and retry on overshoot.

    Parameters
    ----------
    params : PartialSetParams
        Pulse parameters.
    **kwargs
        Those of :class:`~labcim.writeverify.base.Strategy`.
    """

    unit = "uA"
    params_class = PartialSetParams
    device_types = ("pcm",)

    def __init__(self, params: PartialSetParams, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = params
        self.dead_fraction = params.dead_fraction
        if not params.set_threshold < self.limits["set_max"]:
            raise ValueError(
                f"set_threshold = {params.set_threshold} uA must be below set_max = "
                f"{self.limits['set_max']} uA"
            )
        if not 0 < params.fill <= 1:
            raise ValueError(f"fill = {params.fill} must be in (0, 1]")
        for name in ("set_width", "reset_width"):
            w = getattr(params, name)
            if not self.limits["width_min"] <= w <= self.limits["width_max"]:
                raise ValueError(f"{name} = {w} s is outside the width limits")

    @property
    def used(self) -> int:
        """Devices per polarity that carry conductance."""
        return self.dpp

    @property
    def max_target(self) -> float:
        """``used * g_max`` (uS)."""
        return self.used * self.g_max

    @property
    def default_tolerance(self) -> float:
        """2.5 % of ``max_target`` (uS): 0.52 uS for two HERMES devices per polarity."""
        return 0.025 * self.max_target

    @property
    def g_cell_max(self) -> float:
        """``fill * used * g_max`` (uS)."""
        return self.params.fill * self.max_target

    @property
    def reset_width(self) -> float:
        """Width (s) of a full RESET pulse."""
        return self.params.reset_width

    def _extra_device_arrays(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"gain": np.full(shape, np.log(self.params.set_gain), np.float32)}

    def _observe(self, w: Work, g: np.ndarray) -> None:
        self._observe_full(w, g)
        p, dev = self.params, w.devices
        # Only the devices given a partial SET teach anything: compute on them alone (a
        # minority after the first batches) instead of ten passes over the whole chip.
        at = np.flatnonzero(dev["last"] == Last.PARTIAL_SET)
        g, g0, level, tol, amp, width, gain = (
            np.take(a, at)
            for a in (
                g,
                dev["g_prev"],
                dev["level"],
                dev["tol"],
                dev["amp"],
                dev["width"],
                dev["gain"],
            )
        )
        room = level - g0
        informative = room > tol
        frac = np.divide(g - g0, room, out=np.zeros_like(g), where=informative)
        moved = informative & (frac > 0.02) & (frac < 0.95)
        over = np.maximum(amp - p.set_threshold, 1e-3) * width  # uA s
        drive = -np.log1p(-np.clip(frac, 0.0, 0.95))
        observed = np.log(np.divide(drive, over, out=np.ones_like(g), where=moved))
        np.copyto(gain, 0.5 * (gain + observed), where=moved)
        gain[informative & (frac <= 0.02)] -= np.log(4.0)
        # Every gain outside ``at`` was clipped when it last changed.
        lo, hi = np.log(p.set_gain * np.array(GAIN_RANGE))
        np.clip(gain, lo, hi, out=gain)
        np.put(dev["gain"], at, gain)
        # A device that climbs past its estimated level shows its level is higher.
        np.put(dev["level"], at, np.maximum(level, g))

    def _tune(self, w: Work, g: np.ndarray, pulses: Pulses) -> None:
        p, dev = self.params, w.devices
        # Only live tuned devices of open cells get a pulse here (at most one per
        # polarity in TDP): compute on them alone, gathered by one flat index, instead
        # of some forty passes and temporaries over the whole chip.
        at = np.flatnonzero((dev["role"] == Role.TUNE) & ~dev["dead"] & ~w.done[:, None])
        g, goal, tol, level, gain = (
            np.take(a, at) for a in (g, dev["goal"], dev["tol"], dev["level"], dev["gain"])
        )
        gap = goal - g
        up = (gap > tol) & ~short_of_goal(level, goal, tol)
        self._add_full(pulses, at[gap < -tol], PulseKind.RESET)
        step = np.where(gap <= p.centre_band * tol, gap, p.aim * gap)
        room = level - g
        frac = np.divide(step, room, out=np.ones_like(g), where=room > 0)
        full = frac >= p.full_fraction
        drive = -np.log1p(-np.minimum(frac, p.full_fraction))
        # Current for the default width; stretch the pulse when set_max is not enough.
        over = drive / np.exp(gain)  # uA s
        i_max = self.limits["set_max"] - p.set_threshold
        amp = p.set_threshold + np.minimum(over / p.set_width, i_max)
        width = np.maximum(over / i_max, p.set_width)
        full |= width > self.limits["width_max"]
        self._add_full(pulses, at[up & full], PulseKind.SET)
        partial = up & ~full
        set_pulses(pulses, at[partial], Last.PARTIAL_SET, amp[partial], width[partial])


def short_of_goal(level: np.ndarray, goal: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """A tuned device whose measured SET conductance ``level`` lies below its goal by more
    than ``tol`` (uS) cannot climb further."""
    return level < goal - tol


def stalled(w: Work) -> np.ndarray:
    """Tuned devices whose measured SET conductance lies below their goal: they cannot
    climb further (per device, bool)."""
    dev = w.devices
    return (dev["role"] == Role.TUNE) & short_of_goal(dev["level"], dev["goal"], dev["tol"])
