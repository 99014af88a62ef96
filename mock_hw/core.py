"""One crossbar core: differential unit cells, MVM with DAC/ADC, IR drop and read noise.

A core is a view onto the chip's device-state arrays (shape ``(2, dpp, rows, cols)``:
polarity, device within the polarity, row, column) plus the core's own periphery
arrays.  Unit cell (HERMES 8T4R-like): weight ~ sum_d G[0, d] - sum_d G[1, d].

MVM pipeline (all vectorized, one pass per batch):

1. Effective conductances at the current time: every device read without per-read
   noise (drift, relaxation, slow 1/f wander), summed per polarity, IR drop folded in
   (:func:`mock_hw.periphery.ir_drop_weights`), ``W = W+ - W-``.  Cached until the core
   is programmed or simulated time moves by more than 0.1 % of the time since its last
   pulse, and at least every millisecond (every time dependence of the device models is
   a function of log-time, so this keeps the weights within about 1e-4 of exact).
2. ``I = V_read * (x / L) @ W`` in float32 (uA).
3. One-phase mode only: inputs of negative sign see the devices under reverse bias,
   whose conductance differs by the per-device polarity asymmetry ``a``:
   ``I += V_read * (min(x, 0) / L) @ (a * G)`` (differential).
4. Read noise drawn output-referred: its variance ``(V_read x / L)^2 @ S`` with
   ``S = sum over the cell's devices of read_noise_std(G)^2`` is one more matrix
   product, not a draw per device per vector; plus ADC noise.
5. Per-column ADC gain/offset mismatch, the per-column integral nonlinearity if the
   chip has one (:func:`mock_hw.periphery.apply_inl`), then quantization and saturation.
   Scale factors (volts per input code, column gain, 1/LSB) are folded into the cached
   matrices so a batch costs two matrix products and a few elementwise passes.

Temperature.  A core's ``temperature`` (K) speeds up every time dependence of its devices
(Arrhenius, the model's ``time_acceleration``): the core keeps a *device clock* that runs
that much faster than the chip's clock, and the devices see it instead.  The short-term
read noise grows as ``sqrt(T / T_ref)``.  At the reference temperature the device clock
is the chip's clock exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from mock_hw.devices import T_REF, DeviceModel, DeviceState
from mock_hw.errors import InvalidRequestError, SafetyLimitError
from mock_hw.periphery import (
    adc_full_scale,
    adc_levels,
    apply_inl,
    dac_levels,
    ir_drop_weights,
    quantize_adc,
)
from mock_hw.slow_noise import standard_normal

READ_MODES = ("4-phase", "1-phase")

MVM_TIME = {"4-phase": 520e-9, "1-phase": 133e-9}
"""Simulated time of one MVM per core (s), from the HERMES throughput (16.1 / 63.1 TOPS
over 64 cores of 256 x 256 at 8-bit; see physics-facts.md)."""

CACHE_REL_TIME = 1e-3
"""Relative change of the time since the last pulse that invalidates cached weights."""

CACHE_MIN_AGE = 1.0
"""Floor (s) of the age used with CACHE_REL_TIME: within the first second after a pulse
the weights are refreshed every millisecond of simulated time."""

TEMPERATURE_RANGE = (233.15, 398.15)
"""Allowed core temperature (K): -40 to 125 degC, the industrial range."""


ADC_GAIN_RANGE = (1 / 64, 64.0)
"""Allowed ``adc_gain`` of a core (IDENTIFY reports it as ``adc_gain_min``, ``adc_gain_max``
among the chip's limits)."""


@dataclass(frozen=True)
class CoreConfig:
    """Run-time configuration of one core (what the board's get/set config exposes).

    Parameters
    ----------
    read_voltage : float
        Read voltage of MVMs and conductance reads (V).
    dac_bits : int
        Input DAC resolution including sign (2-16); inputs are ``|x| <= 2**(bits-1)-1``.
    adc_bits : int
        Output ADC resolution including sign (2-16).
    adc_gain : float
        ADC gain (1/64 - 64); full scale shrinks as the gain grows.
    read_mode : str
        ``"4-phase"`` (accurate) or ``"1-phase"`` (about 4x faster, polarity error).
    ir_drop : bool
        Whether wire resistance is simulated.
    temperature : float
        Temperature of the core's array (K), in :data:`TEMPERATURE_RANGE`; the published
        fits hold at the reference 300 K (the default).
    """

    read_voltage: float = 0.2
    dac_bits: int = 8
    adc_bits: int = 8
    adc_gain: float = 1.0
    read_mode: str = "4-phase"
    ir_drop: bool = True
    temperature: float = T_REF

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the configuration."""
        return asdict(self)

    def replace(self, read_voltage_max: float, **changes: Any) -> CoreConfig:
        """A validated copy with ``changes`` applied; raises InvalidRequestError naming the field.

        Parameters
        ----------
        read_voltage_max : float
            The chip's safe read-voltage limit (V).
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidRequestError(
                f"unknown configuration field(s) {unknown}; allowed: {sorted(known)}"
            )
        new = replace(self, **changes)
        new._validate(read_voltage_max)
        return new

    def _validate(self, read_voltage_max: float) -> None:
        v = self.read_voltage
        if not isinstance(v, (int, float)) or not v > 0:
            raise InvalidRequestError(f"read_voltage = {v!r} V must be a number > 0")
        if not v <= read_voltage_max:
            raise SafetyLimitError(
                f"read_voltage = {v:g} V exceeds read_voltage_max = {read_voltage_max:g} V"
            )
        for name in ("dac_bits", "adc_bits"):
            bits = getattr(self, name)
            if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
                raise InvalidRequestError(f"{name} = {bits!r} must be an integer in [2, 16]")
            if not 2 <= bits <= 16:
                raise InvalidRequestError(f"{name} = {bits} is outside [2, 16]")
        g, (low, high) = self.adc_gain, ADC_GAIN_RANGE
        if not isinstance(g, (int, float)) or not (low <= g <= high):
            raise InvalidRequestError(f"adc_gain = {g!r} is outside [1/64, 64]")
        if self.read_mode not in READ_MODES:
            raise InvalidRequestError(f"read_mode = {self.read_mode!r}; allowed: {READ_MODES}")
        if not isinstance(self.ir_drop, (bool, np.bool_)):
            raise InvalidRequestError(f"ir_drop = {self.ir_drop!r} must be true or false")
        temp, (lo, hi) = self.temperature, TEMPERATURE_RANGE
        if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not lo <= temp <= hi:
            raise InvalidRequestError(f"temperature = {temp!r} is outside [{lo}, {hi}] K")


@dataclass(frozen=True)
class Periphery:
    """Fixed (fabrication) parameters of a core's periphery.

    Parameters
    ----------
    r_wire : float
        Wire resistance between adjacent cells (ohm).  Not published for HERMES; 0.1 ohm
        gives a few percent of IR drop on a full 256 x 256 array at high conductance.
    adc_noise : float
        Std of the ADC's own noise as a fraction of full scale.
    col_gain_std : float
        Std of the per-column ADC gain mismatch (relative).
    col_offset_std : float
        Std of the per-column ADC offset, as a fraction of full scale.
    asym_mean, asym_std : float
        Mean and std of the per-device relative conductance change under reverse read
        bias, seen by negative inputs in one-phase mode (HERMES: one-phase needs a
        calibration of the polarity dependence of PCM conductance).
    adc_inl_even_std : float
        Std across columns of the ADC's bow (even) integral nonlinearity, a fraction of
        full scale at mid scale (:func:`mock_hw.periphery.apply_inl`; 0: none).
    adc_inl_odd_mean, adc_inl_odd_std : float
        Mean and std across columns of its S-shaped (odd) nonlinearity coefficient
        (> 0: compression toward full scale, as of an oscillator-based ADC; 0: none).
        The HERMES CCO ADC's linearity is not published: *assumed*, off by default.
    """

    r_wire: float = 0.1
    adc_noise: float = 0.002
    col_gain_std: float = 0.01
    col_offset_std: float = 0.002
    asym_mean: float = -0.04
    asym_std: float = 0.02
    adc_inl_even_std: float = 0.0
    adc_inl_odd_mean: float = 0.0
    adc_inl_odd_std: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def new_periphery_state(
    periphery: Periphery, n_cores: int, shape: tuple[int, ...], rng: np.random.Generator
) -> DeviceState:
    """Draw fabrication mismatch: per-device polarity asymmetry and per-column ADC errors.

    ``shape`` is the device-state shape ``(cores, 2, dpp, rows, cols)``.  The INL
    coefficients are drawn only if the periphery has any (so a chip without INL draws
    the same numbers as before it existed).
    """
    cols = shape[-1]
    asym = rng.normal(periphery.asym_mean, periphery.asym_std, size=shape).astype(np.float32)
    col_gain = (1 + rng.normal(0, periphery.col_gain_std, (n_cores, cols))).astype(np.float32)
    col_offset = rng.normal(0, periphery.col_offset_std, (n_cores, cols)).astype(np.float32)
    state = {"asym": asym, "col_gain": col_gain, "col_offset": col_offset}
    p, size = periphery, (n_cores, cols)
    if p.adc_inl_even_std or p.adc_inl_odd_mean or p.adc_inl_odd_std:
        state["inl_even"] = rng.normal(0.0, p.adc_inl_even_std, size).astype(np.float32)
        state["inl_odd"] = rng.normal(p.adc_inl_odd_mean, p.adc_inl_odd_std, size).astype(
            np.float32
        )
    else:
        state["inl_even"] = np.zeros(size, np.float32)
        state["inl_odd"] = np.zeros(size, np.float32)
    return state


class Crossbar:
    """The simulated crossbar of one core (a view onto the chip's state arrays).

    Parameters
    ----------
    model : DeviceModel
        Device technology.
    devices : DeviceState
        This core's device-state views, each of shape ``(2, dpp, rows, cols)``.
    asym : ndarray
        This core's polarity-asymmetry view, shape ``(2, dpp, rows, cols)``.
    col_gain, col_offset : ndarray
        This core's per-column ADC mismatch views, shape ``(cols,)``.
    periphery : Periphery
        Fixed periphery parameters.
    inl : tuple of ndarray, optional
        This core's per-column INL coefficients (even, odd), shape ``(cols,)`` each;
        none or all zeros: a linear ADC.

    Attributes
    ----------
    thermal : tuple of float
        The device clock (:meth:`device_time`): ``(t_ref, offset, acceleration)``.
    """

    def __init__(
        self,
        model: DeviceModel,
        devices: DeviceState,
        asym: np.ndarray,
        col_gain: np.ndarray,
        col_offset: np.ndarray,
        periphery: Periphery,
        inl: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.model = model
        self.devices = devices
        self.asym = asym
        self.col_gain = col_gain
        self.col_offset = col_offset
        self.periphery = periphery
        self.inl = inl if inl is not None and any(np.any(a) for a in inl) else None
        _, self.dpp, self.rows, self.cols = asym.shape
        self.config = CoreConfig()
        self.last_pulse_time = 0.0
        self.thermal = (0.0, 0.0, 1.0)
        self._cache: dict[str, Any] | None = None
        self._work: tuple[np.ndarray, ...] | None = None

    def device_time(self, t: float) -> float:
        """The devices' clock (s) at chip time ``t``: it runs ``acceleration`` times as
        fast as the chip's since the temperature last changed (Arrhenius), and equals
        ``t`` while the core has always been at the reference temperature."""
        t_ref, offset, accel = self.thermal
        if accel == 1.0 and offset == 0.0:
            return t
        return t + offset + (accel - 1.0) * (t - t_ref)

    def set_temperature(self, t: float, acceleration: float) -> None:
        """The core's temperature changes at chip time ``t`` (s) to one whose time
        acceleration is ``acceleration``: the device clock continues from where it is."""
        t_ref, offset, accel = self.thermal
        self.thermal = (t, offset + (accel - 1.0) * (t - t_ref), acceleration)
        self._cache = None

    @property
    def noise_factor(self) -> float:
        """Factor on the std of the short-term read noise: ``sqrt(T / T_ref)`` (assumed
        thermal)."""
        return math.sqrt(self.config.temperature / T_REF)

    @property
    def g_cell_max(self) -> float:
        """Largest conductance of one polarity of a cell (uS)."""
        return self.dpp * self.model.g_max

    def adc_lsb(self) -> float:
        """Output current (uA) of one ADC code at the current configuration."""
        c = self.config
        full = adc_full_scale(c.read_voltage, self.g_cell_max, self.rows, c.adc_gain)
        return full / (2 ** (c.adc_bits - 1) - 1)

    def programmed(self, t: float) -> None:
        """Note that devices of this core were pulsed at time ``t`` (s): drop cached weights."""
        self.last_pulse_time = t
        self._cache = None

    def _weights(self, t: float, rng: np.random.Generator) -> dict[str, Any]:
        """Effective MVM matrices at time ``t`` (s), recomputed only when stale."""
        c = self._cache
        age = max(t - self.last_pulse_time, CACHE_MIN_AGE)
        fresh = c is not None and abs(t - c["t"]) <= CACHE_REL_TIME * age
        if fresh and c["ir_drop"] == self.config.ir_drop:
            return c
        g = self.model.conductance(self.devices, t, rng, read_noise=False)
        g_pol = g.sum(axis=1)  # (2, rows, cols): devices of a polarity are in parallel
        if self.config.ir_drop:
            w_pol = [ir_drop_weights(g_pol[p], self.periphery.r_wire) for p in (0, 1)]
        else:
            w_pol = [g_pol[p].astype(np.float32) for p in (0, 1)]
        ga = (g * self.asym).sum(axis=1)
        s = np.square(self.model.read_noise_std(g)).sum(axis=(0, 1))
        if self.config.temperature != T_REF:
            s *= np.float32(self.config.temperature / T_REF)
        self._cache = {
            "t": t,
            "ir_drop": self.config.ir_drop,
            "w": w_pol[0] - w_pol[1],
            "dw": (ga[0] - ga[1]).astype(np.float32),
            "s": s.astype(np.float32),
        }
        return self._cache

    def _buffers(self, batch: int) -> tuple[np.ndarray, ...]:
        """Work arrays of one batch size, kept between batches: two (batch, rows), three
        (batch, cols), float32.

        Fresh megabyte-sized temporaries are page-faulted in on every batch, which cost
        as much as the matrix products themselves.
        """
        if self._work is None or len(self._work[0]) != batch:
            self._work = (
                *(np.empty((batch, self.rows), np.float32) for _ in range(2)),
                *(np.empty((batch, self.cols), np.float32) for _ in range(3)),
            )
        return self._work

    def mvm(self, x: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
        """ADC codes (int32, shape (batch, cols)) of the MVM of validated input codes ``x``.

        Parameters
        ----------
        x : ndarray of int, shape (batch, rows)
            DAC input codes.
        t : float
            Simulated (chip) time of the operation (s).
        rng : numpy.random.Generator
            Source of read and ADC noise.
        """
        c = self.config
        w = self._weights(self.device_time(t), rng)
        lsb = self.adc_lsb()
        full = adc_full_scale(c.read_voltage, self.g_cell_max, self.rows, c.adc_gain)
        # Work in ADC codes: volts per input code, column gain and 1/LSB are folded into
        # the matrices (once per configuration) so a batch is two matrix products and a
        # few elementwise passes.
        key = (c.read_voltage, c.dac_bits, c.adc_bits, c.adc_gain)
        if w.get("key") != key:
            to_code = (c.read_voltage / dac_levels(c.dac_bits)) * self.col_gain / np.float32(lsb)
            w.update(
                key=key,
                w_code=w["w"] * to_code,
                dw_code=w["dw"] * to_code,
                s_code=w["s"] * np.square(to_code),
                offset_code=self.col_offset * np.float32(full / lsb),
                adc_var_code=np.float32((self.periphery.adc_noise * full / lsb) ** 2),
            )
        xv, x_neg, y, std, noise = self._buffers(len(x))
        np.copyto(xv, x, casting="unsafe")
        np.matmul(xv, w["w_code"], out=y)
        if c.read_mode == "1-phase":
            np.minimum(xv, 0, out=x_neg)
            y += np.matmul(x_neg, w["dw_code"], out=std)
        np.square(xv, out=xv)
        np.matmul(xv, w["s_code"], out=std)
        std += w["adc_var_code"]
        np.sqrt(std, out=std)
        std *= standard_normal(rng, y.shape, out=noise)
        y += std
        y += w["offset_code"]
        if self.inl is not None:
            apply_inl(y, *self.inl, adc_levels(c.adc_bits), (std, noise))
        return quantize_adc(y, 1.0, c.adc_bits, out=y)
