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
        self, state: DeviceState, t: float, rng: np.random.Generator, *, read_noise: bool = True
    ) -> np.ndarray:
        """Conductance (uS, float64) of every device of ``state`` read at time ``t`` (s).

        Includes drift/relaxation and the slow accumulated (time-correlated) noise; with
        ``read_noise`` also the independent short-term noise of this one read.  May
        update slow-noise state in place (the arrays may be views into the chip state).
        """

    params: Any
    """The model's parameter dataclass; must have ``read_noise_rel``."""

    def read_noise_std(self, g: np.ndarray) -> np.ndarray:
        """Std (uS) of the independent short-term noise of a single read at conductance g (uS).

        ``read_noise_rel * |g|`` (about 1 %; aihwkit's suggestion for reads).  Used by the
        crossbar to draw MVM read noise output-referred.
        """
        return self.params.read_noise_rel * np.abs(g)

    def finish_read(self, g: np.ndarray, rng: np.random.Generator, read_noise: bool) -> np.ndarray:
        """Add one read's independent noise to conductances ``g`` (uS) if asked; float64."""
        if read_noise:
            n = standard_normal(rng, g.shape)
            n *= self.read_noise_std(g)
            g += n
        return g.astype(np.float64)
