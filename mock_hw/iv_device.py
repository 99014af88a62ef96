"""Quasi-static I-V model of one two-terminal memory device behind a source-measure unit.

The SMU simulator (:mod:`mock_hw.smu_server`) sources a voltage with a current limit
(compliance) and asks the device what happens: :meth:`IVDevice.apply` returns the
voltage actually across the device and the current through it.  The state is
path-dependent (forming, SET, RESET), so points are applied one after another.

Compliance is honoured exactly: when the device would draw more than the limit, the
SMU regulates the current to the limit and the voltage across the device drops to the
value at which the device carries exactly that current, which is what a real SMU's
source readback reports.

Units: V, A, S (siemens).  Every random draw comes from the seeded
``numpy.random.Generator`` given to the constructor, so a seed reproduces a run.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


def _sinh_current(g: float, v: float, v_nl: float | None) -> float:
    """Current (A) of conductance g (S) at v (V): ohmic if v_nl is None, else sinh-shaped."""
    if v_nl is None:
        return g * v
    return g * v_nl * math.sinh(v / v_nl)


def _sinh_voltage(g: float, i: float, v_nl: float | None) -> float:
    """Inverse of :func:`_sinh_current`: voltage (V) at which the device carries i (A)."""
    if v_nl is None:
        return i / g
    return v_nl * math.asinh(i / (g * v_nl))


class IVDevice(ABC):
    """One device under test: conduction law of its present state plus switching rules.

    Subclasses define the state (:attr:`g`, :meth:`_nonlinearity`) and
    :meth:`_switch`; this class applies the compliance and the measurement noise.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw (variability and noise).
    noise_rel : float
        Relative standard deviation of the measured current (dimensionless).
    noise_floor : float
        Absolute standard deviation of the measured current (A), the SMU's floor.
    """

    g: float
    """Conductance of the present state (S); for sinh-shaped states the small-signal value."""

    def __init__(self, rng: np.random.Generator, noise_rel: float, noise_floor: float) -> None:
        self._rng = rng
        self._noise_rel = noise_rel
        self._noise_floor = noise_floor

    @abstractmethod
    def _nonlinearity(self) -> float | None:
        """Voltage scale (V) of the sinh conduction of the present state; None for ohmic."""

    @abstractmethod
    def _switch(self, v: float, i: float, i_limit: float) -> bool:
        """Update the state for v (V) across the device carrying i (A); True if it changed."""

    def _limited(self, v: float, i_limit: float) -> tuple[float, float]:
        """Voltage across the device (V) and current (A) when v is sourced with i_limit."""
        v_nl = self._nonlinearity()
        i = _sinh_current(self.g, v, v_nl)
        if abs(i) <= i_limit:
            return v, i
        i = math.copysign(i_limit, v)
        return _sinh_voltage(self.g, i, v_nl), i

    def apply(self, v: float, i_limit: float) -> tuple[float, float]:
        """Source v with a current limit; return what the SMU measures.

        Parameters
        ----------
        v : float
            Programmed source voltage (V).
        i_limit : float
            Current limit (compliance, A), > 0.

        Returns
        -------
        v_dev : float
            Voltage actually across the device (V); below ``|v|`` when in compliance.
        i : float
            Measured current (A); exactly ``+-i_limit`` in compliance, never beyond.
        """
        v_dev, i = self._limited(v, i_limit)
        # Switching happens while the level settles; the reading is taken afterwards.
        if self._switch(v_dev, i, i_limit):
            v_dev, i = self._limited(v, i_limit)
        if abs(i) >= i_limit:
            return v_dev, i
        sigma = math.hypot(self._noise_rel * i, self._noise_floor)
        i_meas = float(np.clip(i + sigma * self._rng.standard_normal(), -i_limit, i_limit))
        return v_dev, i_meas


class RRAMState(enum.Enum):
    """Filament state of a bipolar RRAM device."""

    FRESH = "fresh"
    """As fabricated, before forming: leakage only."""
    LRS = "lrs"
    """Low-resistance state: a conductive filament bridges the oxide."""
    HRS = "hrs"
    """High-resistance state: the filament is ruptured near one electrode."""


@dataclass(frozen=True)
class RRAMParams:
    """Parameters of a bipolar HfOx RRAM device (1R, compliance set by the SMU).

    Voltages and conductances follow the NeuRRAM device (Wan et al., Nature 608, 504
    (2022)): HRS near g_min = 1 uS, LRS ~40 uS at the ~16 uA compliance used there;
    forming ~3 V (its SET pulses go up to 3.3 V).  The LRS conductance follows the
    compliance current as R_LRS = V_C / I_C, the relation reported for bipolar
    HfOx/NiO RRAM (Ielmini, IEEE Trans. Electron Devices 58, 4309 (2011)).

    Parameters
    ----------
    g_fresh : float
        Small-signal conductance of a fresh, unformed device (S); ~nA at 0.5 V.
    v_form_mean, v_form_std : float
        Forming voltage (V), drawn once per device, clipped to [2.5, 3.5] V.
    v_set_mean, v_set_std : float
        SET threshold (V, > 0), redrawn each cycle, clipped to [0.8, 1.2] V.
    v_reset_mean, v_reset_std : float
        RESET threshold (V, < 0), redrawn each cycle, clipped to [-1.3, -0.8] V.
    v_c : float
        Voltage scale relating LRS conductance to the compliance, g = I_C / v_c (V).
    g_lrs_max : float
        Largest LRS conductance, reached at high compliance (S).
    g_lrs_sigma : float
        Log-normal cycle-to-cycle spread of the LRS conductance (dimensionless).
    g_hrs_median, g_hrs_sigma : float
        Log-normal HRS small-signal conductance after RESET (S, dimensionless).
    v_nl : float
        Voltage scale of the sinh conduction of fresh and HRS devices (V).
    noise_rel, noise_floor : float
        Measurement noise: relative (dimensionless) and absolute (A).
    """

    g_fresh: float = 1e-9
    v_form_mean: float = 3.0
    v_form_std: float = 0.15
    v_set_mean: float = 1.0
    v_set_std: float = 0.06
    v_reset_mean: float = -1.05
    v_reset_std: float = 0.08
    v_c: float = 0.4
    g_lrs_max: float = 1e-3
    g_lrs_sigma: float = 0.05
    g_hrs_median: float = 1e-6
    g_hrs_sigma: float = 0.3
    v_nl: float = 0.5
    noise_rel: float = 0.005
    noise_floor: float = 1e-12


class RRAMDevice(IVDevice):
    """Bipolar filamentary RRAM: forming, SET at positive, RESET at negative voltage.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    params : RRAMParams
        Device parameters.
    """

    def __init__(self, rng: np.random.Generator, params: RRAMParams | None = None) -> None:
        self.params = params or RRAMParams()
        super().__init__(rng, self.params.noise_rel, self.params.noise_floor)
        p = self.params
        self.state = RRAMState.FRESH
        self.g = p.g_fresh
        self.v_form = float(np.clip(rng.normal(p.v_form_mean, p.v_form_std), 2.5, 3.5))
        self._draw_thresholds()

    def _draw_thresholds(self) -> None:
        p = self.params
        self.v_set = float(np.clip(self._rng.normal(p.v_set_mean, p.v_set_std), 0.8, 1.2))
        self.v_reset = float(np.clip(self._rng.normal(p.v_reset_mean, p.v_reset_std), -1.3, -0.8))

    def _nonlinearity(self) -> float | None:
        return None if self.state is RRAMState.LRS else self.params.v_nl

    def _switch(self, v: float, i: float, i_limit: float) -> bool:
        p = self.params
        threshold = self.v_form if self.state is RRAMState.FRESH else self.v_set
        if v >= threshold:
            # The filament grows until the compliance stops it: higher limit, thicker
            # filament; a formed filament only thickens if the limit allows more.
            g_target = min(i_limit / p.v_c, p.g_lrs_max)
            if self.state is RRAMState.LRS and g_target <= self.g:
                return False
            self.state = RRAMState.LRS
            self.g = g_target * self._rng.lognormal(0.0, p.g_lrs_sigma)
        elif v <= self.v_reset and self.state is RRAMState.LRS:
            self.state = RRAMState.HRS
            self.g = p.g_hrs_median * self._rng.lognormal(0.0, p.g_hrs_sigma)
        else:
            return False
        self._draw_thresholds()
        return True


@dataclass(frozen=True)
class PCMParams:
    """Parameters of a mushroom-cell phase-change memory device (1R).

    The crystalline conductance sits above the ~25 uS nominal maximum of programmed
    states (Nandakumar et al. 2019, aihwkit ``PCMLikeNoiseModel``) because a DC SET
    fully crystallizes the cell; it varies widely from device to device as HERMES data
    show (Le Gallo et al., Nat. Electron. 6, 680 (2023)).

    Parameters
    ----------
    v_th_mean, v_th_std : float
        Threshold-switching voltage of the amorphous state (V), redrawn each cycle.
    g_amorphous : float
        Small-signal conductance of the amorphous (RESET) state (S).
    g_set_median, g_set_sigma : float
        Log-normal conductance of the crystalline (SET) state (S, dimensionless).
    i_reset : float
        Current that melts the cell (A); the cell then quenches amorphous.
    v_nl : float
        Voltage scale of the sinh subthreshold conduction of the amorphous state (V).
    noise_rel, noise_floor : float
        Measurement noise: relative (dimensionless) and absolute (A).
    """

    v_th_mean: float = 1.0
    v_th_std: float = 0.05
    g_amorphous: float = 1e-7
    g_set_median: float = 1e-4
    g_set_sigma: float = 0.3
    i_reset: float = 2e-4
    v_nl: float = 0.3
    noise_rel: float = 0.005
    noise_floor: float = 1e-12


class PCMDevice(IVDevice):
    """Unipolar PCM: threshold switching then SET above v_th; RESET above i_reset.

    A DC sweep cannot quench, so real RESETs use ns pulses; here the cell is taken
    amorphous as soon as the current reaches ``i_reset``, which needs a current limit
    at least that high.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    params : PCMParams
        Device parameters.
    """

    def __init__(self, rng: np.random.Generator, params: PCMParams | None = None) -> None:
        self.params = params or PCMParams()
        super().__init__(rng, self.params.noise_rel, self.params.noise_floor)
        self.amorphous = True
        self.g = self.params.g_amorphous
        self._draw_threshold()

    def _draw_threshold(self) -> None:
        self.v_th = float(self._rng.normal(self.params.v_th_mean, self.params.v_th_std))

    def _nonlinearity(self) -> float | None:
        return self.params.v_nl if self.amorphous else None

    def _switch(self, v: float, i: float, i_limit: float) -> bool:
        p = self.params
        if self.amorphous and abs(v) >= self.v_th:
            self.amorphous = False
            self.g = p.g_set_median * self._rng.lognormal(0.0, p.g_set_sigma)
        elif not self.amorphous and abs(i) >= p.i_reset:
            self.amorphous = True
            self.g = p.g_amorphous
            self._draw_threshold()
        else:
            return False
        return True


DEVICES: dict[str, type[IVDevice]] = {"rram": RRAMDevice, "pcm": PCMDevice}
"""Device models by name, as the simulator's ``--device`` option spells them."""
