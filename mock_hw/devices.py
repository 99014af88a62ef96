"""The interface every simulated memory-device model implements.

A model holds *parameters* only.  The state of many devices lives in a dict of numpy
arrays (``DeviceState``) that the chip owns, shaped ``(cores, 2, devices_per_polarity,
rows, cols)``; a model reads and writes it through index tuples or views, so whole
cores or whole chips are updated in one vectorized call.  Every random draw comes from
the ``numpy.random.Generator`` passed in, so a seed reproduces a run bit for bit.

Units: conductance in uS, time in s, pulse amplitude in V (RRAM) or uA (PCM, the
programming current), pulse width in s.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from drivers.protocol import PulseKind
from mock_hw.slow_noise import standard_normal

DeviceState = dict[str, np.ndarray]
"""Named per-device arrays (all of one shape); what a model needs to evolve devices."""

Index = tuple[np.ndarray, ...]
"""A tuple of integer index arrays into the state arrays (numpy advanced indexing)."""


@dataclass(frozen=True)
class PulseLimits:
    """Safe operating limits of a device technology, enforced before any pulse.

    Parameters
    ----------
    amplitude_unit : str
        ``"V"`` or ``"uA"``: the unit of pulse amplitudes for this technology.
    set_max, reset_max, form_max : float
        Largest allowed amplitude of SET, RESET and FORM pulses (amplitude_unit).
    width_min, width_max : float
        Allowed pulse width range (s).
    read_voltage_max : float
        Largest allowed read voltage (V).
    """

    amplitude_unit: str
    set_max: float
    reset_max: float
    form_max: float
    width_min: float
    width_max: float
    read_voltage_max: float

    def amplitude_max(self, kind: PulseKind) -> float:
        """Largest allowed amplitude for ``kind`` (amplitude_unit)."""
        return getattr(self, f"{PulseKind(kind).name.lower()}_max")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the limits."""
        return asdict(self)


class DeviceModel(ABC):
    """A memory-device technology: how pulses change devices and what a read returns.

    Subclasses are vectorized over whole arrays; they never loop over devices.
    """

    name: str
    """Preset name of the technology, e.g. ``"pcm-hermes"``."""
    g_max: float
    """Nominal maximum conductance of one device (uS); weights map onto [0, g_max]."""
    limits: PulseLimits
    """Safe operating limits; the chip refuses pulses outside them."""
    t_read: float
    """Duration of one read/verify operation of one row of devices (s)."""

    @abstractmethod
    def new_state(self, shape: tuple[int, ...], rng: np.random.Generator) -> DeviceState:
        """Draw a fresh population of devices (as fabricated, before any programming).

        Device-to-device variation (SET conductance, thresholds, stuck devices, ...) is
        drawn here.  Time of last programming is 0 s.
        """

    @abstractmethod
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
        """Apply one pulse to each selected device at simulated time ``t`` (s), in place.

        ``kind``, ``amplitude`` and ``width`` are 1-D arrays as long as the index arrays;
        each selected device appears at most once.  Inputs are already validated by the
        chip (limits, finiteness, shapes).
        """

    @abstractmethod
    def conductance(
        self,
        state: DeviceState,
        t: float,
        rng: np.random.Generator,
        *,
        read_noise: bool | float = True,
    ) -> np.ndarray:
        """Conductance (uS, float64) of every device of ``state`` read at time ``t`` (s).

        Includes drift/relaxation and the slow accumulated (time-correlated) noise; with
        ``read_noise`` also the independent short-term noise of this one read (a number
        scales its std: the chip's temperature factor).  May update slow-noise state in
        place (the arrays may be views into the chip state).
        """

    params: Any
    """The model's parameter dataclass; must have the read-noise, wear and temperature
    fields of :class:`mock_hw.device_base.DeviceParams` subclasses (``read_noise_rel``,
    ``read_noise_exponent``, ``read_noise_rel_max``, ``endurance``,
    ``endurance_log_std``, ``worn_high_share``, ``activation_energy``)."""

    def read_noise_std(self, g: np.ndarray) -> np.ndarray:
        """Std (uS) of the independent short-term noise of a single read at conductance g (uS).

        ``read_noise_rel * |g|`` (about 1 %; aihwkit's suggestion for reads), or with a
        ``read_noise_exponent`` k > 0 the relative std
        ``min(read_noise_rel * (|g| / g_max)^-k, read_noise_rel_max)``: the form of the
        PCM 1/f amplitude of Nandakumar et al. 2019 (aihwkit ``PCMLikeNoiseModel``,
        ``0.0088 / g_r^0.65`` capped at 0.2), relative noise growing toward low
        conductance.  Used by the crossbar to draw MVM read noise output-referred.
        """
        p = self.params
        g = np.abs(g)
        if not p.read_noise_exponent:
            return p.read_noise_rel * g
        ratio = np.maximum(g, np.float32(1e-6 * self.g_max)) * np.float32(1.0 / self.g_max)
        rel = np.minimum(
            p.read_noise_rel * ratio ** -np.float32(p.read_noise_exponent),
            np.float32(p.read_noise_rel_max),
        )
        return rel * g

    def finish_read(
        self, g: np.ndarray, rng: np.random.Generator, read_noise: bool | float
    ) -> np.ndarray:
        """Add one read's independent noise to conductances ``g`` (uS) if asked; float64.

        ``read_noise``: True, False, or a factor on the noise std.
        """
        if read_noise:
            n = standard_normal(rng, g.shape)
            n *= self.read_noise_std(g)
            if read_noise is not True and read_noise != 1:
                n *= np.float32(read_noise)
            g += n
        return g.astype(np.float64)

    # -- wear and temperature ----------------------------------------------------------

    def new_wear_state(self, shape: tuple[int, ...], rng: np.random.Generator) -> DeviceState:
        """Per-device endurance (pulses, float32) if wear is modelled, else nothing.

        Endurance is log-normal around ``endurance`` pulses with spread
        ``endurance_log_std``; ``endurance`` = 0 turns wear off (nothing is drawn).
        """
        p = self.params
        if not p.endurance:
            return {}
        z = standard_normal(rng, shape)
        z *= np.float32(p.endurance_log_std)
        return {"endurance": (np.float32(p.endurance) * np.exp(z)).astype(np.float32)}

    def wear(
        self, state: DeviceState, index: Index, pulses: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Devices at ``index`` whose pulse count reached their endurance become stuck.

        ``pulses``: their pulse counts after the batch.  A worn device is stuck high
        (share ``worn_high_share``) or low, like a device stuck from fabrication.
        """
        if "endurance" not in state:
            return
        worn = (pulses >= state["endurance"][index]) & ~state["stuck"][index]
        if not worn.any():
            return
        sub = tuple(i[worn] for i in index)
        high = rng.random(worn.sum()) < self.params.worn_high_share
        self.stick(state, sub, high)

    @abstractmethod
    def stick(self, state: DeviceState, index: Index, high: np.ndarray) -> None:
        """Make the devices at ``index`` stuck at their high (``high``) or low level."""

    def time_acceleration(self, temperature: float) -> float:
        """Factor by which drift and relaxation run faster at ``temperature`` (K).

        Arrhenius: ``exp(E_a / k_B (1 / T_ref - 1 / T))`` with ``activation_energy``
        E_a (eV) and T_ref = :data:`T_REF` (*assumed*, docs/physics.md).
        """
        if temperature == T_REF:
            return 1.0
        return math.exp(self.params.activation_energy / K_B * (1.0 / T_REF - 1.0 / temperature))


T_REF = 300.0
"""Reference temperature (K): the published fits were measured at room temperature."""

K_B = 8.617333262e-5
"""Boltzmann constant (eV/K)."""
