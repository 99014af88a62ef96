"""HfOx RRAM devices as on the NeuRRAM chip (Wan et al., Nature 608, 504 (2022)).

Range g_min = 1 uS .. g_max = 40 uS, programmed by incremental voltage pulses (NeuRRAM
starts at 1.2 V and steps +0.1 V, up to 3.3 V for SET and 2.5 V for RESET, 100 ns - 1 us
wide).  A pulse moves the conductance toward g_max (SET) or g_min (RESET) by the
fraction ``1 - exp(-drive)`` with

    drive = gain * rate * (V - V_th)_+^2 * (w / width_ref)^width_exponent * LN(c2c),

so pulses below the device's threshold V_th (about 1.0-1.3 V) do almost nothing and the
response saturates.  Fresh devices may be unformed (0.01-0.1 uS) and ignore SET/RESET
until a FORM pulse exceeds their forming voltage (about 2.8-3.8 V).  After each pulse
the conductance relaxes: a time-correlated deviation (:mod:`mock_hw.slow_noise`) whose
spread across devices follows the Wan 2022 fit at 1 s, 1 day and 2 days
(:mod:`mock_hw.rram_stats`).  The pulse-response numbers are choices of this simulator,
documented in ``docs/physics.md``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mock_hw import rram_stats, slow_noise
from mock_hw.device_base import DeviceParams, flat_state
from mock_hw.devices import DeviceModel, DeviceState, Index, PulseKind, PulseLimits

G_MIN = 1.0
"""Lowest programmed conductance (uS) used by NeuRRAM."""
G_MAX = rram_stats.G_MAX
"""Highest programmed conductance (uS) used by NeuRRAM (40 uS)."""


@dataclasses.dataclass(frozen=True)
class RRAMParams(DeviceParams):
    """Parameters of :class:`RRAMDevice`.

    Fabrication (device-to-device variation)

    v_set_mean, v_set_std : float
        SET threshold voltage across devices (V), clipped to mean +- 2 std (1.0-1.3 V), so
        NeuRRAM's first 1.2 V pulse moves some devices and not others.
    v_reset_mean, v_reset_std : float
        RESET threshold voltage across devices (V), clipped likewise.
    v_form_mean, v_form_std, v_form_min, v_form_max : float
        Forming voltage across devices (V), clipped to [v_form_min, v_form_max] (2.8-3.8 V).
    gain_log_std : float
        Log-normal device-to-device spread of the switching rate.
    unformed_g_min, unformed_g_max : float
        Range (uS) of log-uniform conductances of unformed devices (0.01-0.1 uS).
    formed_g_mean, formed_g_std : float
        Conductance (uS) right after forming, clipped to [g_min, g_max].
    formed_at_start : bool
        Fresh chip already formed (convenient default) or unformed (needs FORM pulses).

    Pulse response

    set_rate, reset_rate : float
        Drive per V^2 of overdrive of SET and RESET pulses of width ``width_ref``.
    width_ref : float
        Reference pulse width (s).
    width_exponent : float
        Drive grows as (w / width_ref)^width_exponent.
    c2c_log_std : float
        Cycle-to-cycle log-normal spread of the drive.

    Relaxation and noise (calibration knobs: 1.0 = the published fit)

    relax_scale : float
        Scales the Wan 2022 relaxation sigma.
    relax_onset : float
        Time (s) after a pulse at which relaxation starts to show (model assumption);
        the variance grows linearly in log10(t) from here to its 1-s value.
    relax_late_slope : float
        Beyond 2 days (where the Wan 2022 data stop) the relaxation variance grows per
        decade of time by this fraction of its growth per decade between 1 and 2 days
        (*assumed*; 0, the default, holds it at its 2-day value).
    drift_nu : float
        Exponent of a drift of the programmed conductance,
        ``G(t) = G_p ((t - t_p + drift_t0) / drift_t0)^-drift_nu`` (*assumed* form; 0, the
        default, as the Wan 2022 fits have no mean drift).
    drift_t0 : float
        Onset (s) of that drift.
    read_noise_rel : float
        Relative std of the independent short-term noise of one read (about 1 %).
    stuck_fraction : float
        Fraction of devices stuck at g_min or g_max (NeuRRAM-class arrays: 99.8 % yield).
    stuck_high_share : float
        Share of stuck devices stuck at g_max.
    """

    v_set_mean: float = 1.15
    v_set_std: float = 0.075
    v_reset_mean: float = 1.15
    v_reset_std: float = 0.075
    v_form_mean: float = 3.3
    v_form_std: float = 0.25
    v_form_min: float = 2.8
    v_form_max: float = 3.8
    gain_log_std: float = 0.3
    unformed_g_min: float = 0.01
    unformed_g_max: float = 0.1
    formed_g_mean: float = 25.0
    formed_g_std: float = 8.0
    formed_at_start: bool = True
    set_rate: float = 0.4
    reset_rate: float = 0.4
    width_ref: float = 1e-6
    width_exponent: float = 0.5
    c2c_log_std: float = 0.3
    relax_scale: float = 1.0
    relax_onset: float = 1e-4
    relax_late_slope: float = 0.0
    drift_nu: float = 0.0
    drift_t0: float = 1.0
    read_noise_rel: float = 0.01
    stuck_fraction: float = 0.002
    stuck_high_share: float = 0.5


class RRAMDevice(DeviceModel):
    """NeuRRAM-like HfOx RRAM device (g_min 1 uS, g_max 40 uS, amplitudes in V).

    State fields (all of the population's shape):

    ``g`` (float32, uS)
        Conductance right after the last pulse, before relaxation and noise.
    ``v_set``, ``v_reset``, ``v_form`` (float32, V)
        The device's SET/RESET threshold and forming voltages.
    ``gain`` (float32)
        The device's switching-rate multiplier.
    ``relax_1s``, ``relax_1d``, ``relax_2d`` (float32, uS)
        Relaxation sigma at 1 s / 1 day / 2 days for the programmed level (0 for unformed
        and stuck devices).
    ``noise``, ``noise_var`` (float32, uS, uS^2)
        Relaxation deviation and the variance it has reached (:mod:`mock_hw.slow_noise`).
    ``t_p`` (float64, s)
        Time of the device's last effective pulse.
    ``formed``, ``stuck`` (bool)
        Device has been formed; device ignores every pulse (stuck devices count as formed).

    Parameters
    ----------
    params : RRAMParams, optional
        Model parameters.
    """

    name = "rram-hfox"
    g_max = G_MAX
    t_read = 1e-6
    """One verify read (s); NeuRRAM averages several reads at about 0.2 V (assumed 1 us)."""
    limits = PulseLimits(
        amplitude_unit="V",
        set_max=3.3,
        reset_max=2.5,
        form_max=4.5,
        width_min=10e-9,
        width_max=10e-6,
        read_voltage_max=0.5,
    )
    """NeuRRAM's ranges: SET <= 3.3 V, RESET <= 2.5 V; FORM <= 4.5 V; widths 10 ns -
    10 us (NeuRRAM uses 100 ns - 1 us); reads (0.2 V in NeuRRAM) <= 0.5 V."""

    def __init__(self, params: RRAMParams | None = None) -> None:
        self.params = params or RRAMParams()

    def new_state(self, shape: tuple[int, ...], rng: np.random.Generator) -> DeviceState:
        """Fresh devices: formed at a random level, or unformed (``formed_at_start``)."""
        p = self.params

        def normal(mean: float, std: float) -> np.ndarray:
            x = slow_noise.standard_normal(rng, shape)
            x *= std
            x += mean
            return x

        def threshold(mean: float, std: float) -> np.ndarray:
            return np.clip(normal(mean, std), mean - 2 * std, mean + 2 * std)

        v_form = np.clip(normal(p.v_form_mean, p.v_form_std), p.v_form_min, p.v_form_max)
        gain = np.exp(normal(0.0, p.gain_log_std))
        if p.formed_at_start:
            g = self._formed_level(slow_noise.standard_normal(rng, shape))
        else:
            lo, hi = np.log(p.unformed_g_min), np.log(p.unformed_g_max)
            g = np.exp(lo + (hi - lo) * rng.random(shape, dtype=np.float32))
        u = rng.random(shape, dtype=np.float32)
        stuck = u < p.stuck_fraction
        g[stuck] = np.where(u[stuck] < p.stuck_fraction * p.stuck_high_share, G_MAX, G_MIN)
        formed = stuck | p.formed_at_start
        state = {
            "g": g,
            "v_set": threshold(p.v_set_mean, p.v_set_std),
            "v_reset": threshold(p.v_reset_mean, p.v_reset_std),
            "v_form": v_form,
            "gain": gain,
            "noise": np.zeros(shape, np.float32),
            "noise_var": np.zeros(shape, np.float32),
            "t_p": np.zeros(shape, np.float64),
            "formed": formed,
            "stuck": stuck,
        }
        relaxing = formed & ~stuck
        for key, sigma in zip(self._RELAX_KEYS, self._relax_anchors(g), strict=True):
            state[key] = np.where(relaxing, sigma, np.float32(0.0))
        return state

    _RELAX_KEYS = ("relax_1s", "relax_1d", "relax_2d")

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
        """Incremental SET/RESET of formed devices; FORM of unformed devices.

        A FORM pulse on a formed device acts as a SET pulse of that amplitude (same
        polarity).  Pulses that change nothing (below threshold, unformed, stuck) leave
        the device's state untouched.
        """
        p = self.params
        state, index = flat_state(state, index)
        kind = np.asarray(kind)
        amp = np.asarray(amplitude, dtype=np.float32)
        width = np.asarray(width, dtype=np.float32)
        formed = state["formed"][index]
        active = ~state["stuck"][index]
        upward = (kind == PulseKind.SET) | ((kind == PulseKind.FORM) & formed)
        v_th = np.where(upward, state["v_set"][index], state["v_reset"][index])
        rate = np.where(upward, np.float32(p.set_rate), np.float32(p.reset_rate))
        switch = active & formed & (amp > v_th)
        forming = active & ~formed & (kind == PulseKind.FORM)
        forming &= amp >= state["v_form"][index]

        pos = np.flatnonzero(switch)
        z = slow_noise.standard_normal(rng, pos.size)
        overdrive = amp[pos] - v_th[pos]
        drive = state["gain"][index][pos] * rate[pos] * overdrive * overdrive
        drive *= (width[pos] * (1.0 / p.width_ref)) ** p.width_exponent
        drive *= np.exp(p.c2c_log_std * z)
        g_now = state["g"][index][pos]
        if p.drift_nu:  # a pulse starts from the drifted conductance
            dt = np.maximum(t - state["t_p"][index][pos], 0.0)
            g_now = g_now * (((dt + p.drift_t0) / p.drift_t0) ** -p.drift_nu).astype(np.float32)
        g_now = g_now + state["noise"][index][pos]
        end = np.where(upward[pos], np.float32(G_MAX), np.float32(G_MIN))
        g_switched = g_now - np.expm1(-drive) * (end - g_now)

        pos_form = np.flatnonzero(forming)
        g_formed = self._formed_level(slow_noise.standard_normal(rng, pos_form.size))

        pos = np.concatenate([pos, pos_form])
        g_new = np.concatenate([g_switched, g_formed])
        sub = tuple(i[pos] for i in index)
        state["g"][sub] = g_new
        state["formed"][sub] = True
        for key, sigma in zip(self._RELAX_KEYS, self._relax_anchors(g_new), strict=True):
            state[key][sub] = sigma
        state["t_p"][sub] = t
        slow_noise.reset(state["noise"], state["noise_var"], sub)

    def conductance(
        self,
        state: DeviceState,
        t: float,
        rng: np.random.Generator,
        *,
        read_noise: bool | float = True,
    ) -> np.ndarray:
        """Programmed conductance (drifted, with ``drift_nu``) plus relaxation deviation
        (and one read's noise), in uS."""
        p = self.params
        dt = np.subtract(t, state["t_p"], out=np.empty(state["t_p"].shape, np.float32))
        var = rram_stats.relaxation_variance(
            dt,
            *(state[k] for k in self._RELAX_KEYS),
            onset=p.relax_onset,
            late_slope=p.relax_late_slope,
        )
        slow_noise.advance(state["noise"], state["noise_var"], var, rng)
        if p.drift_nu:
            g = self.drifted_conductance(state, t).astype(np.float32)
            g += state["noise"]
        else:
            g = np.add(state["g"], state["noise"], out=var)
        np.maximum(g, 0.0, out=g)
        return self.finish_read(g, rng, read_noise)

    def drifted_conductance(self, state: DeviceState, t: float) -> np.ndarray:
        """Ground truth (uS, float64) at ``t`` (s): programmed conductance and its drift
        (``drift_nu``), without relaxation deviation or read noise."""
        p = self.params
        g = state["g"].astype(np.float64)
        if p.drift_nu:
            dt = np.maximum(t - state["t_p"], 0.0)
            g *= np.where(state["stuck"], 1.0, ((dt + p.drift_t0) / p.drift_t0) ** -p.drift_nu)
        return g

    def stick(self, state: DeviceState, index: Index, high: np.ndarray) -> None:
        """Stuck at g_max (``high``) or g_min; stuck devices do not relax."""
        state["g"][index] = np.where(high, np.float32(G_MAX), np.float32(G_MIN))
        for key in self._RELAX_KEYS:
            state[key][index] = 0.0
        slow_noise.reset(state["noise"], state["noise_var"], index)
        state["stuck"][index] = True

    def programmed_conductance(self, state: DeviceState) -> np.ndarray:
        """Ground truth (uS, float64): conductance right after the last pulse, no relaxation."""
        return state["g"].astype(np.float64)

    def _formed_level(self, z: np.ndarray) -> np.ndarray:
        """Conductance (uS, float32) right after forming, from standard normals ``z``."""
        p = self.params
        return np.clip(p.formed_g_mean + p.formed_g_std * z, G_MIN, G_MAX).astype(np.float32)

    def _relax_anchors(self, g: np.ndarray) -> tuple[np.ndarray, ...]:
        """Relaxation sigma (uS, float32) at 1 s / 1 day / 2 days for conductance g (uS)."""
        return tuple(
            (s * self.params.relax_scale).astype(np.float32)
            for s in rram_stats.relaxation_sigma_anchors(g / G_MAX)
        )
