"""Phase-change memory devices as on the IBM HERMES chip.

Statistics (programming error, drift, 1/f wander) follow the HERMES fit of
:mod:`mock_hw.pcm_stats` (Le Gallo et al., Nat. Electron. 6, 680 (2023); aihwkit
``HermesNoiseModel``).  The pulse response (partial crystallization by SET, history-free
melt-quench by RESET) is a physically plausible model chosen for this simulator; its
numbers are parameters of :class:`PCMParams`, documented in ``docs/physics.md``.

Programming error.  After every pulse that leaves a device at an intermediate level, a
relaxation offset ``delta ~ N(0, sigma1(G / 10.35 uS) * prog_noise_scale)`` is drawn,
where ``sigma1`` is the *one-device* HERMES programming-error polynomial.  It becomes
visible as ``delta * (1 - exp(-(t - t_p) / relax_tau))``: a verify read microseconds
after the pulse does not see it, a read seconds later does, so write-verify cannot
remove it.  Fully SET (crystalline) devices do not relax; fully RESET (amorphous) ones
relax by a log-normal factor, so zero-target cells keep the polynomials' intercept while
staying positive.  With two-device programming (TDP: one intermediate device per polarity, the
other fully SET or RESET) the error of the summed conductance then reproduces the
HERMES *two-device* polynomial: sigma1(2 uS) = 0.53 vs 0.55 uS, sigma1(10 uS) = 1.00
vs 0.995 uS.

Drift ``G(t) = G_prog ((t - t_p + t0) / t0)^(-nu)`` and the accumulated 1/f wander
(HERMES ``Q_s`` fit, t_read = 512 ns; a time-correlated relative deviation,
:mod:`mock_hw.slow_noise`, restarted at every pulse) are statistics of the *cell*: the
devices of one polarity of a unit cell share one drift exponent, drawn after every
pulse into the cell from the HERMES fit for that many devices at the cell's summed
conductance, and their wander amplitudes are set so that the cell's wander follows the
``Q_s`` fit at the cell's conductance (``docs/physics.md`` explains why a per-device
draw cannot reproduce the two-device fits).  A model built without a cell axis treats
every device as a one-device cell.  Each read adds independent short-term noise (about
1 % relative).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mock_hw import pcm_stats, slow_noise
from mock_hw.device_base import DeviceParams, flat_state
from mock_hw.devices import DeviceModel, DeviceState, Index, PulseKind, PulseLimits

G_MAX = pcm_stats.G_MAX[1]
"""Nominal maximum conductance of one PCM device (uS): HERMES, one device per polarity."""


@dataclasses.dataclass(frozen=True)
class PCMParams(DeviceParams):
    """Parameters of :class:`PCMDevice`.

    Fabrication (device-to-device variation)

    g_set_mean : float
        Mean SET (fully crystalline) conductance, in units of g_max = 10.35 uS.  HERMES
        reports a wide SET distribution: some devices cannot reach g_max, others go far
        above it (value chosen for this simulator).
    g_set_spread : float
        Relative std of the SET conductance across devices (chosen: 22 %).
    g_set_min : float
        Lower clip of the SET conductance, in units of g_max (keeps it positive).
    reset_current_mean, reset_current_std : float
        Mean and std across devices of the RESET threshold current (uA): below it a
        RESET pulse does not melt enough material to lower the conductance.

    SET pulses (partial crystallization)

    set_current_min : float
        Current (uA) below which a SET pulse does not heat above crystallization.
    set_current_ref : float
        Overdrive current scale (uA) of the crystallization rate.
    set_width_ref : float
        Pulse width scale (s): drive = (I - set_current_min)/set_current_ref * w/set_width_ref;
        the device moves toward its SET level by the fraction 1 - exp(-drive).
    set_drive_log_std : float
        Cycle-to-cycle log-normal spread of the SET drive.
    set_level_noise : float
        Relative std of the level a saturated SET reaches (1-2 % per the brief).

    RESET pulses (melt-quench, history-free)

    reset_span : float
        The programming curve falls from the SET level at the threshold current ``I_th``
        to the amorphous floor at ``I_th * (1 + reset_span)`` (uA), as a half cosine.
    reset_width_ref : float
        Heating time (s): the effective current is ``I (1 - exp(-w / reset_width_ref))``.
    reset_current_noise : float
        Cycle-to-cycle relative std of the effective RESET current.
    reset_floor : float
        Median conductance (uS) left by a full RESET (0.05-0.2 uS).
    reset_floor_log_std : float
        Log-normal spread of the RESET floor.

    Post-programming relaxation

    relax_tau : float
        Time constant (s) with which the relaxation offset becomes visible.
    relax_full_set : float
        Devices at or above this fraction of their SET level count as fully crystalline
        and do not relax; the relaxation weight ramps to 1 over ``relax_set_ramp`` below it.
    relax_set_ramp : float
        Width of that ramp, as a fraction of the SET level.
    relax_low_g : float
        Below this conductance (uS) the Gaussian relaxation fades out linearly and the
        log-normal relaxation of the amorphous RESET state takes over.
    relax_floor_log_std : float
        Log-normal spread of the relaxation of a fully RESET device: the melt-quenched
        state keeps relaxing for tens of ms, so the spread of zero-target cells follows
        the HERMES polynomials' intercept (0.16 uS) while staying positive, and a verify
        read right after the RESET does not see it.

    Calibration knobs (1.0 = the published HERMES fit)

    prog_noise_scale : float
        Scales the relaxation (programming-error) sigma.
    drift_nu_scale : float
        Scales the mean drift exponent nu.
    drift_nu_std_scale : float
        Scales the std of nu across devices.
    read_noise_scale : float
        Scales Q_s of the accumulated 1/f wander.
    read_noise_rel : float
        Relative std of the independent short-term noise of one read.
    stuck_fraction : float
        Fraction of devices that ignore pulses (stuck).
    stuck_set_share : float
        Share of stuck devices stuck at their SET level; the rest are stuck at the floor.
    cell_statistics : bool
        Drift and wander are statistics of the cell (HERMES fits for the chip's devices
        per polarity at the cell's summed conductance; default), or of each device on its
        own (one-device fits at its conductance, t0 = 200 s), which gives two-device
        cells 2-2.5x too little drift (docs/physics.md).
    """

    g_set_mean: float = 1.05
    g_set_spread: float = 0.22
    g_set_min: float = 0.2
    reset_current_mean: float = 180.0
    reset_current_std: float = 15.0
    set_current_min: float = 40.0
    set_current_ref: float = 100.0
    set_width_ref: float = 1e-6
    set_drive_log_std: float = 0.3
    set_level_noise: float = 0.015
    reset_span: float = 1.2
    reset_width_ref: float = 5e-9
    reset_current_noise: float = 0.03
    reset_floor: float = 0.1
    reset_floor_log_std: float = 0.4
    relax_tau: float = 0.05
    relax_full_set: float = 0.95
    relax_set_ramp: float = 0.10
    relax_low_g: float = 0.5
    relax_floor_log_std: float = 0.7
    prog_noise_scale: float = 1.0
    drift_nu_scale: float = 1.0
    drift_nu_std_scale: float = 1.0
    read_noise_scale: float = 1.0
    read_noise_rel: float = 0.01
    stuck_fraction: float = 0.005
    stuck_set_share: float = 0.5
    cell_statistics: bool = True


class PCMDevice(DeviceModel):
    """HERMES-like PCM device, one per polarity and unit cell slot (g_max 10.35 uS).

    State fields (all of the population's shape):

    ``g_prog`` (float32, uS)
        Conductance right after the last pulse, before relaxation, drift and noise.
    ``relax`` (float32, uS)
        Post-programming relaxation offset drawn at the last pulse.
    ``g_set`` (float32, uS)
        The device's SET (fully crystalline) conductance, fixed at fabrication.
    ``i_reset`` (float32, uA)
        The device's RESET threshold current, fixed at fabrication.
    ``nu`` (float32)
        Drift exponent, shared by the devices of a cell, drawn at the cell's last pulse.
    ``q_s`` (float32)
        Amplitude of the device's 1/f wander, set at the cell's last pulse so that the
        cell's wander follows the HERMES Q_s fit (times read_noise_scale).
    ``noise``, ``noise_var`` (float32)
        Relative 1/f wander and the variance it has reached (:mod:`mock_hw.slow_noise`).
    ``t_p`` (float64, s)
        Time of the device's last effective pulse.
    ``stuck`` (bool)
        Device ignores every pulse.

    Parameters
    ----------
    params : PCMParams, optional
        Model parameters; defaults reproduce the HERMES statistics.
    cell_size : int
        Devices per polarity of a unit cell (1 or 2): cells of two devices follow the
        HERMES two-device fits for drift and wander, single devices the one-device fits.
    cell_axis : int, optional
        Axis of the state arrays that holds the devices of one cell (required when
        ``cell_size`` is 2; the chip's arrays are (cores, 2, dpp, rows, cols): axis 2).
    """

    name = "pcm-hermes"
    g_max = G_MAX
    t_read = pcm_stats.T_READ
    limits = PulseLimits(
        amplitude_unit="uA",
        set_max=300.0,
        reset_max=600.0,
        form_max=600.0,
        width_min=10e-9,
        width_max=10e-6,
        read_voltage_max=0.3,
    )
    """Current-steering DACs as on HERMES: SET <= 300 uA, RESET <= 600 uA (above the
    full-RESET current of nearly every device), widths 10 ns - 10 us; FORM is accepted
    (and ignored) up to 600 uA; reads up to 0.3 V so they do not disturb the phase."""

    def __init__(
        self, params: PCMParams | None = None, *, cell_size: int = 1, cell_axis: int | None = None
    ) -> None:
        if cell_size not in pcm_stats.G_MAX:
            raise ValueError(f"cell_size = {cell_size!r}; allowed: {sorted(pcm_stats.G_MAX)}")
        if cell_size > 1 and cell_axis is None:
            raise ValueError("cell_axis is needed for cells of more than one device")
        self.params = params or PCMParams()
        self.cell_size = cell_size
        self.cell_axis = cell_axis if cell_size > 1 else None

    def new_state(self, shape: tuple[int, ...], rng: np.random.Generator) -> DeviceState:
        """Fresh devices, all fully SET (crystalline as fabricated), with their variation."""
        p = self.params
        g_set = slow_noise.standard_normal(rng, shape)
        g_set *= p.g_set_spread * p.g_set_mean
        g_set += p.g_set_mean
        np.maximum(g_set, p.g_set_min, out=g_set)
        g_set *= G_MAX
        i_reset = slow_noise.standard_normal(rng, shape)
        i_reset *= p.reset_current_std
        i_reset += p.reset_current_mean
        # One uniform decides both "stuck" and "stuck at SET".
        u = rng.random(shape, dtype=np.float32)
        stuck = u < p.stuck_fraction
        stuck_reset = stuck & (u >= p.stuck_fraction * p.stuck_set_share)
        g_prog = g_set.copy()
        g_prog[stuck_reset] = self._reset_floor(rng.standard_normal(np.count_nonzero(stuck_reset)))
        z = slow_noise.standard_normal(rng, shape)
        state = {
            "g_prog": g_prog,
            "relax": np.zeros(shape, np.float32),
            "g_set": g_set,
            "i_reset": i_reset,
            "nu": np.zeros(shape, np.float32),
            "q_s": np.zeros(shape, np.float32),
            "noise": np.zeros(shape, np.float32),
            "noise_var": np.zeros(shape, np.float32),
            "t_p": np.zeros(shape, np.float64),
            "stuck": stuck,
        }
        n, a = self._cells(shape), self.cell_axis
        if n == 1:
            state["nu"][...] = self._draw_nu(g_prog, z, 1)
            state["q_s"][...] = self._q_s(g_prog, 1)
        else:  # one draw per cell: the normal of its first device
            cell = g_prog.sum(axis=a, keepdims=True)
            norm = np.sqrt(np.square(g_prog).sum(axis=a, keepdims=True))
            state["nu"][...] = self._draw_nu(cell, z.take([0], axis=a), n)
            state["q_s"][...] = self._cell_q_s(cell, norm, n)
        state["nu"][stuck] = 0.0
        return state

    def apply_pulses(
        self,
        state: DeviceState,
        index: Index,
        kind: np.ndarray,
        amplitude: np.ndarray,
        width: np.ndarray,
        t: float,
        rng: np.random.Generator,
    ) -> None:
        """SET: partial crystallization toward ``g_set``; RESET: ``min(G, g_curve(I))``.

        Pulses that leave a device unchanged (SET below ``set_current_min``, RESET weaker
        than the existing amorphous region, stuck devices, FORM) leave its state untouched;
        a changed device gets a new relaxation offset, drift exponent and wander.
        """
        p = self.params
        shape = state["g_prog"].shape
        state, index = flat_state(state, index)
        kind = np.asarray(kind)
        amp = np.asarray(amplitude, dtype=np.float32)
        width = np.asarray(width, dtype=np.float32)
        free = ~state["stuck"][index]
        g_now = self._deterministic(
            state["g_prog"][index],
            state["relax"][index],
            state["nu"][index],
            np.maximum(t - state["t_p"][index], 0.0).astype(np.float32),
        )
        g_now *= 1.0 + state["noise"][index]
        g_set = state["g_set"][index]

        pos_set = np.flatnonzero(free & (kind == PulseKind.SET) & (amp > p.set_current_min))
        z = slow_noise.standard_normal(rng, (2, pos_set.size))
        g_after_set = self._set_result(
            g_now[pos_set], g_set[pos_set], amp[pos_set], width[pos_set], z
        )
        pos_reset = np.flatnonzero(free & (kind == PulseKind.RESET))
        z = slow_noise.standard_normal(rng, (2, pos_reset.size))
        g_curve = self._reset_curve(
            g_set[pos_reset],
            state["i_reset"][index][pos_reset],
            amp[pos_reset],
            width[pos_reset],
            z,
        )
        melted = g_curve < g_now[pos_reset]  # a weaker RESET than the amorphous region: no-op

        pos = np.concatenate([pos_set, pos_reset[melted]])
        g_new = np.concatenate([g_after_set, g_curve[melted]])
        sub = tuple(i[pos] for i in index)
        z = slow_noise.standard_normal(rng, (2, pos.size))
        state["g_prog"][sub] = g_new
        state["relax"][sub] = self._relaxation(g_new, g_set[pos], z[0])
        state["t_p"][sub] = t
        slow_noise.reset(state["noise"], state["noise_var"], sub)
        if self._cells(shape) == 1:
            g_relaxed = np.maximum(g_new + state["relax"][sub], 0.0)
            state["nu"][sub] = self._draw_nu(g_relaxed, z[1], 1)
            state["q_s"][sub] = self._q_s(g_relaxed, 1)
        else:
            self._update_cells(state, shape, sub, z[1], t)

    def conductance(
        self,
        state: DeviceState,
        t: float,
        rng: np.random.Generator,
        *,
        read_noise: bool | float = True,
    ) -> np.ndarray:
        """Relaxed, drifted conductance with 1/f wander (and one read's noise), in uS."""
        dt = np.subtract(t, state["t_p"], out=np.empty(state["t_p"].shape, np.float32))
        np.maximum(dt, 0.0, out=dt)
        g = self._deterministic(state["g_prog"], state["relax"], state["nu"], dt)
        var = pcm_stats.accumulated_noise_log(dt)
        var *= state["q_s"]
        var *= state["q_s"]
        slow_noise.advance(state["noise"], state["noise_var"], var, rng)
        var = np.multiply(g, state["noise"], out=var)
        g += var
        np.maximum(g, 0.0, out=g)
        return self.finish_read(g, rng, read_noise)

    def stick(self, state: DeviceState, index: Index, high: np.ndarray) -> None:
        """Stuck at the device's SET level (``high``) or at the RESET floor; no drift."""
        state["g_prog"][index] = np.where(
            high, state["g_set"][index], np.float32(self.params.reset_floor)
        )
        state["relax"][index] = 0.0
        state["nu"][index] = 0.0
        state["stuck"][index] = True

    def programmed_conductance(self, state: DeviceState) -> np.ndarray:
        """Ground truth (uS, float64): programmed and fully relaxed, before drift and noise."""
        return np.maximum(state["g_prog"].astype(np.float64) + state["relax"], 0.0)

    def drifted_conductance(self, state: DeviceState, t: float) -> np.ndarray:
        """Ground truth (uS, float64) at time ``t`` (s): relaxation and drift, no wander or
        read noise (what the wander and the read noise deviate from)."""
        dt = np.maximum(t - state["t_p"], 0.0).astype(np.float32)
        g = self._deterministic(state["g_prog"], state["relax"], state["nu"], dt)
        return np.maximum(g, 0.0).astype(np.float64)

    def _deterministic(
        self, g_prog: np.ndarray, relax: np.ndarray, nu: np.ndarray, dt: np.ndarray
    ) -> np.ndarray:
        """``(g_prog + relax (1 - exp(-dt/tau))) ((dt + t0)/t0)^-nu`` (uS) at ``dt`` (s)."""
        g = np.expm1(dt * (-1.0 / self.params.relax_tau))  # minus the visible fraction
        g *= relax
        np.subtract(g_prog, g, out=g)
        g *= pcm_stats.drift_factor(dt, nu, self._t0)
        return g

    def _set_result(
        self,
        g_now: np.ndarray,
        g_set: np.ndarray,
        amp: np.ndarray,
        width: np.ndarray,
        z: np.ndarray,
    ) -> np.ndarray:
        """Conductance (uS) after SET pulses of ``amp`` (uA) and ``width`` (s).

        The device moves toward its (noisy) SET level by the fraction ``1 - exp(-drive)``,
        drive = (I - set_current_min) / set_current_ref * w / set_width_ref with a
        log-normal cycle-to-cycle factor; ``z`` holds two standard normals per device.
        """
        p = self.params
        drive = (amp - p.set_current_min) * (width / (p.set_current_ref * p.set_width_ref))
        drive *= np.exp(p.set_drive_log_std * z[0])
        level = g_set * (1.0 + p.set_level_noise * z[1])
        return g_now - np.expm1(-drive) * (level - g_now)

    def _reset_curve(
        self,
        g_set: np.ndarray,
        i_th: np.ndarray,
        amp: np.ndarray,
        width: np.ndarray,
        z: np.ndarray,
    ) -> np.ndarray:
        """History-free RESET programming curve g_curve (uS) for ``amp`` (uA), ``width`` (s).

        Effective current ``I (1 - exp(-w / reset_width_ref))`` with a relative
        cycle-to-cycle jitter; ``g_set (1 + cos(pi u)) / 2`` plus the amorphous floor with
        ``u = (I_eff - I_th) / (I_th reset_span)`` clipped to [0, 1].  ``z`` holds two
        standard normals per device.
        """
        p = self.params
        i_eff = amp * -np.expm1(width * (-1.0 / p.reset_width_ref))
        i_eff *= 1.0 + p.reset_current_noise * z[0]
        u = np.clip((i_eff - i_th) / (i_th * p.reset_span), 0.0, 1.0)
        return g_set * 0.5 * (1.0 + np.cos(np.pi * u)) + self._reset_floor(z[1])

    def _draw_nu(self, g: np.ndarray, z: np.ndarray, devices: int) -> np.ndarray:
        """Drift exponent ``|mu + sigma z|`` (float32) from the HERMES fit for a cell of
        ``devices`` devices at summed conductance g (uS)."""
        p = self.params
        g_r = g / pcm_stats.G_MAX[devices]
        mu = pcm_stats.drift_nu_mean(g_r) * p.drift_nu_scale
        sd = pcm_stats.drift_nu_std(g_r, devices=devices) * p.drift_nu_std_scale
        return np.abs(mu + sd * z).astype(np.float32)

    def _q_s(self, g: np.ndarray, devices: int) -> np.ndarray:
        """Q_s (float32) of a cell of ``devices`` devices at summed conductance g (uS),
        times read_noise_scale."""
        g_r = g / pcm_stats.G_MAX[devices]
        q = pcm_stats.read_noise_qs(g_r, devices=devices) * self.params.read_noise_scale
        return q.astype(np.float32)

    def _cell_q_s(self, cell: np.ndarray, norm: np.ndarray, devices: int) -> np.ndarray:
        """Wander amplitude of each device of a multi-device cell (float32).

        The devices keep independent wander processes; each gets
        ``Q_s(cell) * G_cell / sqrt(sum G_k^2)`` so that the spread of the summed
        conductance is ``Q_s(cell) * G_cell``, the HERMES fit for the cell.
        """
        ratio = np.divide(cell, norm, out=np.ones_like(cell), where=norm > 0)
        return (self._q_s(cell, devices) * ratio).astype(np.float32)

    @property
    def _t0(self) -> float:
        """Drift onset t0 (s) of the cells (HERMES: 200 s for one device per polarity,
        300 s for two)."""
        return pcm_stats.T0[self.cell_size if self.params.cell_statistics else 1]

    def _cells(self, shape: tuple[int, ...]) -> int:
        """Devices per cell whose drift and wander are shared (1: every device alone),
        checked against a population of ``shape``."""
        if self.cell_axis is not None and shape[self.cell_axis] != self.cell_size:
            raise ValueError(
                f"state shape {shape} has {shape[self.cell_axis]} devices on the cell axis "
                f"{self.cell_axis}, the model cells of {self.cell_size}"
            )
        return self.cell_size if self.params.cell_statistics else 1

    def _update_cells(
        self, state: DeviceState, shape: tuple[int, ...], sub: Index, z: np.ndarray, t: float
    ) -> None:
        """Drift exponent and wander amplitude of every cell with a device in ``sub``.

        Each cell gets one drift exponent from the HERMES fit for its number of devices
        at its summed conductance after the pulses, ``z`` being the normal of the cell's
        first pulsed device.  Its devices that were not pulsed keep their drift clock:
        their conductance is rescaled so that it is continuous at ``t`` under the new
        exponent.  Stuck devices keep nu = 0.
        """
        members, leader = cell_members(shape, self.cell_axis, sub)
        n = len(members)
        g = [np.maximum(state["g_prog"][m] + state["relax"][m], 0.0) for m in members]
        g_cell = sum(g)
        norm = np.sqrt(sum(np.square(x) for x in g))
        nu = self._draw_nu(g_cell, z[leader], n)
        q_s = self._cell_q_s(g_cell, norm, n)
        for m in members:
            nu_m = np.where(state["stuck"][m], np.float32(0.0), nu)
            dt = np.maximum(t - state["t_p"][m], 0.0).astype(np.float32)
            rescale = pcm_stats.drift_factor(dt, state["nu"][m] - nu_m, self._t0)
            state["g_prog"][m] *= rescale
            state["relax"][m] *= rescale
            state["nu"][m] = nu_m
            state["q_s"][m] = q_s

    def _reset_floor(self, z: np.ndarray) -> np.ndarray:
        """Conductance (uS) left by a full RESET: log-normal around ``reset_floor``."""
        p = self.params
        return p.reset_floor * np.exp(p.reset_floor_log_std * z)

    def _relaxation(self, g: np.ndarray, g_set: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Relaxation offset (uS, float32) of devices just programmed to g (uS).

        Intermediate levels: ``sigma1(g / 10.35 uS) * prog_noise_scale * z``, sigma1 the
        one-device HERMES polynomial, fading to 0 toward full SET (a crystalline device
        does not relax).  Toward the RESET floor (below ``relax_low_g``) the melt-quenched
        amorphous state relaxes by a log-normal factor of spread ``relax_floor_log_std``
        instead, so it stays positive.  ``z``: one standard normal per device.
        """
        p = self.params
        sigma = pcm_stats.prog_sigma(g / G_MAX, devices=1)
        sigma *= p.prog_noise_scale * z
        from_set = (p.relax_full_set - g / g_set) * (1.0 / p.relax_set_ramp)
        sigma *= np.clip(from_set, 0.0, 1.0)
        low = np.clip(g * (1.0 / p.relax_low_g), 0.0, 1.0)
        floor = np.expm1((p.relax_floor_log_std * p.prog_noise_scale) * z)
        floor *= g * (1.0 - low)
        sigma *= low
        sigma += floor
        return sigma.astype(np.float32)


def cell_members(
    shape: tuple[int, ...], cell_axis: int, index: Index
) -> tuple[list[Index], np.ndarray]:
    """The devices of every cell that has a device at ``index``, one entry per cell.

    Parameters
    ----------
    shape : tuple of int
        Shape of the population; axis ``cell_axis`` holds the devices of one cell.
    cell_axis : int
        The cell axis of ``shape``.
    index : Index
        Devices, each at most once: a tuple of index arrays into ``shape`` or one flat
        index (:func:`mock_hw.device_base.flat_state`).

    Returns
    -------
    members : list of Index
        For each device k of a cell, its index (in the form of ``index``), one entry per
        cell that has a device at ``index``.
    leader : ndarray of int
        The position in ``index`` of the device that stands for each of those cells (its
        device with the smallest k), in the order of ``members``.
    """
    n = shape[cell_axis]
    stride = int(np.prod(shape[cell_axis + 1 :], dtype=np.int64))
    flat = index[0] if len(index) == 1 else np.ravel_multi_index(index, shape)
    k = (flat // stride) % n
    base = flat - k * stride
    # A device leads its cell unless a device of the cell with a smaller k is in `index`.
    lead = np.ones(flat.size, bool)
    if flat.size:
        lo = int(base.min())
        mark = np.zeros(int(flat.max()) - lo + 1, bool)
        mark[flat - lo] = True
        for j in range(n - 1):
            lead &= ~((k > j) & mark[base + (j * stride - lo)])
    leader = np.flatnonzero(lead)
    if len(index) == 1:
        return [(base[leader] + j * stride,) for j in range(n)], leader
    cells = tuple(i[leader] for i in index)
    return [
        (*cells[:cell_axis], np.full_like(cells[cell_axis], j), *cells[cell_axis + 1 :])
        for j in range(n)
    ], leader
